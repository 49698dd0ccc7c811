//! `clawnode`: a headless OpenClaw node host.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use async_signal::{Signal, Signals};
use clap::{Parser, Subcommand, ValueEnum};
use clawnode_smol::core::{ClientOptions, DeviceIdentity, GatewayUrl};
use clawnode_smol::file_config::{Settings, SettingsError};
use clawnode_smol::{Event, NodeBuilder, StateDir};
use smol::future::FutureExt as _;
use smol::stream::StreamExt as _;

/// Exit status for bad usage or configuration.
const EXIT_USAGE: u8 = 2;
/// Exit status when `--exit-on-pause` is given and the session pauses.
const EXIT_PAUSED: u8 = 3;

#[derive(Parser, Debug)]
#[command(name = "clawnode", version, about = "A headless OpenClaw node host")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Connect to a gateway and serve its invokes until stopped.
    Run(RunArgs),
    /// Print the device id and public key (creating the identity if missing).
    Identity {
        /// State directory [default: $XDG_STATE_HOME/clawnode or ~/.local/state/clawnode].
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Print a TLS gateway's certificate pin, subject and validity.
    Probe {
        /// The gateway, wss://HOST:PORT.
        #[arg(long, value_name = "URL")]
        url: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum EventFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The gateway URL: ws://127.0.0.1:PORT (loopback) or wss://HOST:PORT.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// The gateway token (also read from OPENCLAW_GATEWAY_TOKEN).
    #[arg(long, value_name = "T")]
    token: Option<String>,
    /// The gateway password.
    #[arg(long, value_name = "P")]
    password: Option<String>,
    /// Accept the gateway's certificate iff its SHA-256 is this (repeatable).
    #[arg(long = "tls-fingerprint", value_name = "FP")]
    tls_fingerprints: Vec<String>,
    /// Trust the certificate seen on first use and enforce it from then on.
    #[arg(long, conflicts_with = "tls_fingerprints")]
    tofu: bool,
    /// State directory [default: $XDG_STATE_HOME/clawnode or ~/.local/state/clawnode].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The name shown to operators [default: the host name].
    #[arg(long, value_name = "NAME")]
    display_name: Option<String>,
    /// A TOML file with the same settings; SIGHUP re-reads it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// How events are printed on stdout.
    #[arg(long, value_enum, default_value = "text", value_name = "FORMAT")]
    events: EventFormat,
    /// Exit with status 3 when the session pauses (needs a person).
    #[arg(long)]
    exit_on_pause: bool,
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("clawnode: error: {message}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Run(args) => run(args),
        Command::Identity { state_dir } => identity(state_dir),
        Command::Probe { url } => probe(&url),
    }
}

fn init_tracing() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let spec = std::env::var("CLAWNODE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_default();
    let filter = spec
        .parse::<Targets>()
        .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO));
    let filter = if spec.is_empty() {
        Targets::new().with_default(LevelFilter::INFO)
    } else {
        filter
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .with_filter(filter),
        )
        .init();
}

fn state_dir(given: Option<PathBuf>) -> Result<StateDir, ExitCode> {
    match given {
        Some(d) => Ok(StateDir::new(d)),
        None => StateDir::default_location().map_err(|e| fail(EXIT_USAGE, e)),
    }
}

fn identity(dir: Option<PathBuf>) -> ExitCode {
    let store = match state_dir(dir) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match store.load_or_create_identity() {
        Ok(key) => {
            let id = DeviceIdentity::new(key);
            println!("device_id: {}", id.device_id());
            println!("public_key: {}", id.public_key());
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, e),
    }
}

fn probe(url_text: &str) -> ExitCode {
    let url = match GatewayUrl::parse(url_text) {
        Ok(u) if u.is_secure() => u,
        Ok(_) => {
            return fail(
                EXIT_USAGE,
                format!("probe needs a wss:// URL, not {url_text:?}"),
            );
        }
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let report = match smol::block_on(clawnode_smol::probe(&url)) {
        Ok(r) => r,
        Err(e) => return fail(1, format!("probing {url}: {e:?}")),
    };
    println!("pin: sha256:{}", report.pin);
    use x509_cert::der::Decode as _;
    match x509_cert::Certificate::from_der(&report.der) {
        Ok(cert) => {
            let tbs = &cert.tbs_certificate;
            println!("subject: {}", tbs.subject);
            println!("issuer: {}", tbs.issuer);
            println!("not_before: {}", tbs.validity.not_before);
            println!("not_after: {}", tbs.validity.not_after);
        }
        Err(e) => eprintln!("clawnode: warning: could not decode the certificate: {e}"),
    }
    println!("use: --tls-fingerprint sha256:{}", report.pin);
    ExitCode::SUCCESS
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Everything that makes up the run's settings, re-evaluated on SIGHUP.
struct Sources {
    file: Option<PathBuf>,
    cli: Settings,
    env_token: Option<String>,
    client: ClientOptions,
}

impl Sources {
    fn config(&self) -> Result<clawnode_smol::core::SessionConfig, SettingsError> {
        let env = Settings {
            token: self.env_token.clone(),
            ..Settings::default()
        };
        let file = match &self.file {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        env.overlaid_with(file)
            .overlaid_with(self.cli.clone())
            .session_config(self.client.clone())
    }
}

fn run(args: RunArgs) -> ExitCode {
    let client = ClientOptions {
        display_name: host_name(),
        ..ClientOptions::default()
    };
    let sources = Sources {
        file: args.config.clone(),
        cli: Settings {
            url: args.url.clone(),
            token: args.token.clone(),
            password: args.password.clone(),
            tls_fingerprints: Some(args.tls_fingerprints.clone()),
            tls: args
                .tofu
                .then_some(clawnode_smol::file_config::TlsMode::Tofu),
            display_name: args.display_name.clone(),
            session_id: None,
        },
        env_token: std::env::var("OPENCLAW_GATEWAY_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        client,
    };
    let config = match sources.config() {
        Ok(c) => c,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let store = match state_dir(args.state_dir.clone()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut builder = NodeBuilder::new(config, store).with_system_which();
    let events = builder.events();
    let node = match builder.spawn() {
        Ok(n) => n,
        Err(e) => return fail(1, e),
    };
    tracing::info!(device_id = node.device_id(), "node started");
    let mut signals = match Signals::new([Signal::Hup, Signal::Term, Signal::Int]) {
        Ok(s) => s,
        Err(e) => return fail(1, format!("cannot install signal handlers: {e}")),
    };

    enum Wake {
        Event(Option<Event>),
        Signal(Option<Signal>),
    }
    smol::block_on(async move {
        loop {
            let wake = async { Wake::Event(events.recv().await.ok()) }
                .or(async { Wake::Signal(signals.next().await.and_then(Result::ok)) })
                .await;
            match wake {
                // Gateway events are the embedder's business; the node
                // host only logs them (at debug level).
                Wake::Event(Some(Event::GatewayEvent { .. })) => {}
                Wake::Event(Some(event)) => {
                    print_event(args.events, &event);
                    if args.exit_on_pause && matches!(event, Event::Paused { .. }) {
                        node.shutdown().await;
                        return ExitCode::from(EXIT_PAUSED);
                    }
                }
                Wake::Event(None) => return ExitCode::SUCCESS,
                Wake::Signal(Some(Signal::Hup)) => match sources.config() {
                    Ok(config) => {
                        node.reconfigure(config).await;
                    }
                    Err(e) => tracing::error!(
                        error = %e,
                        "configuration not reloaded; the one in force stays"
                    ),
                },
                Wake::Signal(Some(sig)) => {
                    tracing::info!(signal = ?sig, "stopping (send it again to exit at once)");
                    let second = async {
                        signals.next().await;
                        false
                    };
                    let stopped = async {
                        node.shutdown().await;
                        true
                    };
                    if !stopped.or(second).await {
                        return ExitCode::from(130);
                    }
                    // Print what the stop itself reported.
                    while let Ok(event) = events.try_recv() {
                        if !matches!(event, Event::GatewayEvent { .. }) {
                            print_event(args.events, &event);
                        }
                    }
                    return ExitCode::SUCCESS;
                }
                Wake::Signal(None) => {}
            }
        }
    })
}

fn print_event(format: EventFormat, event: &Event) {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let mut out = std::io::stdout().lock();
    let _ = match format {
        EventFormat::Json => writeln!(out, "{}", event.to_json(ts)),
        EventFormat::Text => writeln!(out, "{event}"),
    };
    let _ = out.flush();
}
