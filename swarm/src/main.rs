//! `clawnode-swarm`: load-test a gateway by holding many real node sessions
//! in this process (the token from `OPENCLAW_GATEWAY_TOKEN`), and report
//! what they cost. A binary of its own so that its counting allocator and
//! its tokio runtime cost the node host (`clawnode run`) nothing.

mod heap;
mod swarm;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use async_signal::{Signal, Signals};
use clap::Parser;
use clawnode::StateDir;
use clawnode::policy::{Credentials, Secret, SessionConfig, TlsPolicy};
use smol::stream::StreamExt as _;

use swarm::{SwarmSpec, run};

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

/// Exit status for bad arguments, as `clawnode`'s.
const EXIT_USAGE: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "clawnode-swarm",
    version,
    about = "Load-test a gateway: hold many real node sessions in this process (the token from OPENCLAW_GATEWAY_TOKEN) and report what they cost"
)]
struct SwarmArgs {
    /// The gateway URL.
    #[arg(long, value_name = "URL")]
    url: String,
    /// How many sessions.
    #[arg(long, value_name = "N")]
    count: usize,
    /// At most this many sessions connecting at once.
    #[arg(long, value_name = "K", default_value_t = 16)]
    inflight: usize,
    /// How long to hold the sessions once up, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    hold: u64,
    /// Give up on the ramp after this many seconds and hold what is up.
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    ramp_limit: u64,
    /// Where the sessions' identities live (node-NNNN below it; reused).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Accept the gateway's certificate iff its SHA-256 is this (repeatable).
    #[arg(long = "tls-fingerprint", value_name = "FP")]
    tls_fingerprints: Vec<String>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    match swarm(SwarmArgs::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("clawnode-swarm: error: {message}");
            ExitCode::from(code)
        }
    }
}

/// The sessions' config: the URL, the token from the environment, and the
/// pins if any (else the system's trust), as `clawnode run` builds it.
fn session_config(args: &SwarmArgs) -> Result<SessionConfig, String> {
    let tls = if args.tls_fingerprints.is_empty() {
        TlsPolicy::SystemTrust
    } else {
        TlsPolicy::pinned(&args.tls_fingerprints).map_err(|e| e.to_string())?
    };
    let token = std::env::var("OPENCLAW_GATEWAY_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    Ok(SessionConfig::parse(&args.url, tls)
        .map_err(|e| e.to_string())?
        .with_credentials(Credentials {
            token: token.map(Secret::new),
            ..Credentials::default()
        }))
}

fn swarm(args: SwarmArgs) -> Result<(), (u8, String)> {
    use std::io::IsTerminal as _;
    let usage = |e: String| (EXIT_USAGE, e);
    if args.count == 0 || args.inflight == 0 {
        return Err(usage("--count and --inflight must be at least 1".into()));
    }
    let config = session_config(&args).map_err(usage)?;
    let state = match args.state_dir.clone() {
        Some(d) => d,
        None => StateDir::default_location()
            .map_err(|e| usage(e.to_string()))?
            .path()
            .join("swarm"),
    };
    // Every session on this one thread, which also waits for their I/O.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (1, format!("cannot start the runtime: {e}")))?;
    let spec = SwarmSpec {
        config,
        count: args.count,
        inflight: args.inflight,
        hold: Duration::from_secs(args.hold),
        ramp_limit: Duration::from_secs(args.ramp_limit),
        state,
        heap_bytes: Some(heap::in_use),
        runtime: runtime.handle().clone(),
    };
    let mut signals = Signals::new([Signal::Term, Signal::Int])
        .map_err(|e| (1, format!("cannot install signal handlers: {e}")))?;
    let (stop_tx, stop_rx) = smol::channel::bounded(1);
    drop(runtime.spawn(async move {
        if signals.next().await.is_some() {
            let _ = stop_tx.send(()).await;
        }
    }));
    let live = std::io::stderr().is_terminal();
    let count = args.count;
    let result = runtime.block_on(run(spec, stop_rx, |up, connecting| {
        if live {
            eprint!("\r{up}/{count} connected, {connecting} connecting   ");
        }
    }));
    if live {
        eprintln!();
    }
    let v = result.map_err(|e| (1, e))?.to_json();
    if args.json {
        println!("{v}");
    } else {
        println!("{}", serde_json::to_string_pretty(&v).expect("JSON"));
    }
    Ok(())
}
