//! `clawnode run`: connect to a gateway and serve its invokes until
//! stopped; SIGHUP reloads the settings, SIGTERM or SIGINT stops within
//! [`STOP_BUDGET`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use async_signal::{Signal, Signals};
use clawnode::policy::{ClientOptions, TlsPolicy};
use clawnode::{Event, NodeBuilder, NodeHandle, PairedGateway, StateDir};
use clawnode_host::HostCommands as _;
use smol::channel::Receiver;
use smol::future::FutureExt as _;
use smol::stream::StreamExt as _;

use crate::Error;
use crate::args::{SecretArg, env_token, state_dir};
use crate::file_config::{Settings, TlsMode};
use crate::printer::{EventFormat, Printer, wall_ms};
use crate::sources::{Sources, host_name};

/// Exit status when `--exit-on-pause` is given and the session pauses.
const EXIT_PAUSED: u8 = 3;
/// Exit status when a second signal cuts the stop short.
const EXIT_INTERRUPTED: u8 = 130;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The gateway URL: ws://127.0.0.1:PORT (loopback) or wss://HOST:PORT.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// The gateway token. Visible to every local user in the process list
    /// (/proc/PID/cmdline): prefer OPENCLAW_GATEWAY_TOKEN or `token` in the
    /// --config file.
    #[arg(long, value_name = "T")]
    token: Option<SecretArg>,
    /// The gateway password. Visible to every local user in the process
    /// list (/proc/PID/cmdline): prefer `password` in the --config file.
    #[arg(long, value_name = "P")]
    password: Option<SecretArg>,
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
    /// Pair with the setup code an operator minted (`oc-pair://…`): its
    /// URL, certificate pin and single-use bootstrap token, re-pairing
    /// even if a device token is stored. --url and --tls-fingerprint
    /// override the code's. The gateway remembered, later runs need none
    /// of it. The code works once and for minutes only, but while it is
    /// on the command line, local users can read it in the process list.
    #[arg(long, value_name = "CODE", conflicts_with_all = ["token", "password", "pair_if_needed"])]
    pair: Option<SecretArg>,
    /// As --pair, but a device token already stored for the gateway is
    /// used instead of the code when there is one.
    #[arg(long, value_name = "CODE", conflicts_with_all = ["token", "password"])]
    pair_if_needed: Option<SecretArg>,
    /// Declare only these commands, comma-separated [default: all of
    /// system.which, system.run.prepare, system.run,
    /// system.execApprovals.get, system.execApprovals.set].
    #[arg(long, value_delimiter = ',', value_name = "CMD,...")]
    commands: Vec<String>,
}

/// Runs the node until a signal, a pause with `--exit-on-pause`, or the
/// session's end.
pub fn run(args: Args) -> Result<ExitCode, Error> {
    // This process's only children are runs: what a run's command leaves
    // when it kills its own reaper comes here and is killed
    // (docs/exec-host.md §11.3).
    if let Err(e) = clawnode_host::exec::run::adopt_orphans() {
        tracing::warn!(error = %e, "cannot adopt what runs leave behind");
    }
    let sources = sources(&args)?;
    let store = state_dir(args.state_dir.clone())?;
    let config = sources.load(&store)?;
    let remember = sources.pairing.is_some().then(|| PairedGateway {
        url: config.url().as_str().to_owned(),
        tls_fingerprints: match config.tls() {
            TlsPolicy::Pinned(set) => set.iter().map(|p| format!("sha256:{p}")).collect(),
            _ => Vec::new(),
        },
    });
    let mut builder = NodeBuilder::new(config, store.clone());
    if args.pair.is_some() {
        // --pair pairs again: the bootstrap token goes first, and the stored
        // device token is replaced only once the gateway issues a new one.
        builder = builder.ignore_stored_token();
    }
    let mut builder = commands(builder, &args.commands)?;
    let events = builder.events();
    let node = builder.spawn()?;
    tracing::info!(device_id = node.device_id(), "node started");
    let signals = Signals::new([Signal::Hup, Signal::Term, Signal::Int])
        .map_err(|e| Error::Failed(format!("cannot install signal handlers: {e}")))?;
    let serve = Serve {
        node,
        events,
        signals,
        printer: Printer::start(args.events),
        sources,
        store,
        remember,
        exit_on_pause: args.exit_on_pause,
    };
    Ok(smol::block_on(serve.run()))
}

/// The run's settings from the command line, the environment and a setup
/// code.
fn sources(args: &Args) -> Result<Sources, Error> {
    let pair_code = args
        .pair
        .as_ref()
        .or(args.pair_if_needed.as_ref())
        .map(|c| c.0.clone());
    let pairing = match pair_code.as_deref() {
        Some(text) => Some(
            clawnode::setup_code::decode(text, wall_ms())
                .map_err(|e| Error::Usage(e.to_string()))?,
        ),
        None => None,
    };
    Ok(Sources {
        file: args.config.clone(),
        cli: Settings {
            url: args.url.clone(),
            token: args.token.clone().map(|t| t.0),
            password: args.password.clone().map(|p| p.0),
            tls_fingerprints: Some(args.tls_fingerprints.clone()),
            tls: args.tofu.then_some(TlsMode::Tofu),
            display_name: args.display_name.clone(),
            session_id: None,
            exec: None,
        },
        // As upstream, pairing does not use the shared token.
        env_token: env_token().filter(|_| pairing.is_none()),
        client: ClientOptions {
            display_name: host_name(),
            ..ClientOptions::default()
        },
        pairing,
    })
}

/// The host's commands, or only those of `--commands`.
fn commands(builder: NodeBuilder, only: &[String]) -> Result<NodeBuilder, Error> {
    let builder = builder
        .with_system_which()
        .with_system_run()
        .with_exec_approvals();
    if only.is_empty() {
        // As upstream: a restricted surface publishes no host stats.
        return Ok(builder.with_host_stats());
    }
    let known = builder.command_names();
    let unknown: Vec<&String> = only.iter().filter(|c| !known.contains(*c)).collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        return Err(Error::Usage(format!(
            "--commands: unknown command {unknown:?}; this host serves {}",
            known.join(", ")
        )));
    }
    Ok(builder.only_commands(only))
}

/// The running node and what its loop reads.
struct Serve {
    node: NodeHandle,
    events: Receiver<Event>,
    signals: Signals,
    printer: Printer,
    sources: Sources,
    store: StateDir,
    /// The gateway to remember once paired (`--pair`).
    remember: Option<PairedGateway>,
    exit_on_pause: bool,
}

/// What woke the loop.
enum Wake {
    Event(Option<Event>),
    Signal(Option<Signal>),
}

impl Serve {
    /// Prints events and answers signals until the node stops; the exit
    /// status.
    async fn run(self) -> ExitCode {
        let Serve {
            node,
            events,
            mut signals,
            mut printer,
            sources,
            store,
            mut remember,
            exit_on_pause,
        } = self;
        let code = loop {
            // Signals first: a flood of events must not keep a stop waiting
            // (`or` polls its first future first).
            let wake = async { Wake::Signal(signals.next().await.and_then(Result::ok)) }
                .or(async { Wake::Event(events.recv().await.ok()) })
                .await;
            match wake {
                // Gateway events are the embedder's business; the node
                // host only logs them (at debug level).
                Wake::Event(Some(Event::Broadcast { .. })) => {}
                Wake::Event(Some(event)) => {
                    printer.print(&event);
                    if matches!(event, Event::Connected { .. })
                        && let Some(gateway) = remember.take()
                    {
                        remember_paired(&store, &gateway);
                    }
                    if exit_on_pause && matches!(event, Event::Paused { .. }) {
                        let stop_by = Instant::now() + STOP_BUDGET;
                        stop(node, stop_by).await;
                        break ExitCode::from(EXIT_PAUSED);
                    }
                }
                Wake::Event(None) => break ExitCode::SUCCESS,
                Wake::Signal(Some(Signal::Hup)) => match sources.load(&store) {
                    Ok(config) => {
                        node.reconfigure(config).await;
                    }
                    Err(e) => tracing::error!(
                        error = %e,
                        "configuration not reloaded; the one in force stays"
                    ),
                },
                Wake::Signal(Some(sig)) => {
                    // The budget starts at the signal, whatever stdout does:
                    // the writer thread is not waited for here.
                    let stop_by = Instant::now() + STOP_BUDGET;
                    tracing::info!(signal = ?sig, "stopping (send it again to exit at once)");
                    let second = async {
                        signals.next().await;
                        false
                    };
                    if !stop(node, stop_by).or(second).await {
                        return ExitCode::from(EXIT_INTERRUPTED);
                    }
                    break ExitCode::SUCCESS;
                }
                Wake::Signal(None) => {}
            }
        };
        // Print what the stop itself reported, as far as stdout takes it.
        while let Ok(event) = events.try_recv() {
            if !matches!(event, Event::Broadcast { .. }) {
                printer.print(&event);
            }
        }
        printer.finish(FLUSH_BUDGET);
        code
    }
}

/// Paired: later runs find the gateway in the state directory.
fn remember_paired(store: &StateDir, gateway: &PairedGateway) {
    match store.store_paired_gateway(gateway) {
        Ok(()) => tracing::info!(url = gateway.url, "paired; gateway remembered"),
        Err(e) => tracing::error!(error = %e, "could not remember the paired gateway"),
    }
}

/// How long a stop may take from the signal (or the pause) until the
/// process moves on to exit, whatever the gateway or stdout do.
///
/// A graceful stop lets running invokes answer and closes the socket with
/// 1000, but it waits on the gateway (the close
/// handshake, up to 3 s) and on command handlers (up to 2 s): a supervisor
/// sending SIGTERM expects an exit within a few seconds, so the host cuts
/// the wait short. The close frame itself goes out at once; only waiting
/// for its answer is cut.
///
/// With [`FLUSH_BUDGET`] this keeps the exit within 1.4 s of the signal,
/// leaving a margin under the 2 s a supervisor should ever have to wait.
const STOP_BUDGET: Duration = Duration::from_millis(1200);
/// How long the exit waits for stdout to take the lines still queued.
const FLUSH_BUDGET: Duration = Duration::from_millis(200);

/// Stops the session gracefully, giving up at `deadline`; `true` either way
/// (it is what a second signal races against).
async fn stop(node: NodeHandle, deadline: Instant) -> bool {
    let stopped = async {
        node.shutdown().await;
        true
    };
    let late = async {
        smol::Timer::at(deadline).await;
        false
    };
    if !stopped.or(late).await {
        tracing::warn!(
            budget_ms = STOP_BUDGET.as_millis() as u64,
            "the session did not stop in time; exiting anyway"
        );
    }
    true
}
