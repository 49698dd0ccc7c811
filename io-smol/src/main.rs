//! `clawnode`: a headless OpenClaw node host.

mod heap;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_signal::{Signal, Signals};
use clap::{Parser, Subcommand, ValueEnum};
use clawnode_smol::core::{ClientOptions, DeviceIdentity, GatewayUrl};
use clawnode_smol::exec::approvals::{Ask, Security};
use clawnode_smol::file_config::Settings;
use clawnode_smol::setup_code::SetupCode;
use clawnode_smol::{Event, NodeBuilder, PairedGateway, StateDir};
use smol::future::FutureExt as _;
use smol::stream::StreamExt as _;

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

/// The environment variable the gateway token comes from, as for the
/// official host.
const TOKEN_VAR: &str = "OPENCLAW_GATEWAY_TOKEN";

/// The gateway token from [`TOKEN_VAR`]; an empty one is none.
fn env_token() -> Option<String> {
    std::env::var(TOKEN_VAR).ok().filter(|t| !t.is_empty())
}

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
        /// One JSON line, exactly as `openclaw node identity --json` prints
        /// it (what the gateway's SSH auto-approval probe reads); with no
        /// identity yet, an error and exit status 1, creating nothing.
        #[arg(long)]
        json: bool,
    },
    /// Show or change what `system.run` may run on this host (the exec
    /// approvals document; with none, nothing runs).
    Approvals {
        /// State directory [default: $XDG_STATE_HOME/clawnode or ~/.local/state/clawnode].
        #[arg(long, value_name = "DIR", global = true)]
        state_dir: Option<PathBuf>,
        #[command(subcommand)]
        action: ApprovalsAction,
    },
    /// Install, remove or inspect the systemd unit that keeps `clawnode
    /// run` up (needs a systemd host).
    Service {
        #[command(subcommand)]
        action: ServiceAction,
    },
    /// Load-test a gateway: hold many real node sessions in this process
    /// (the token from OPENCLAW_GATEWAY_TOKEN) and report what they cost.
    Swarm(SwarmArgs),
    /// Print a TLS gateway's certificate pin, subject and validity.
    Probe {
        /// The gateway, wss://HOST:PORT.
        #[arg(long, value_name = "URL")]
        url: String,
    },
}

#[derive(clap::Args, Debug)]
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

#[derive(Subcommand, Debug)]
enum ServiceAction {
    /// Write the unit (and, from OPENCLAW_GATEWAY_TOKEN, a 0600
    /// environment file), then enable and start it.
    Install {
        /// The system manager (root) instead of the user's.
        #[arg(long)]
        system: bool,
        /// Write the files only; do not call systemctl.
        #[arg(long)]
        no_start: bool,
        /// State directory [default: the user's, or /var/lib/clawnode with --system].
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// The gateway URL [default: the one paired with, or --config's].
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Certificate pins (repeatable).
        #[arg(long = "tls-fingerprint", value_name = "FP")]
        tls_fingerprints: Vec<String>,
        /// A TOML config file (read by the service; SIGHUP or a restart re-reads it).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The name shown to operators.
        #[arg(long, value_name = "NAME")]
        display_name: Option<String>,
        /// Declare only these commands.
        #[arg(long, value_delimiter = ',', value_name = "CMD,...")]
        commands: Vec<String>,
    },
    /// Stop, disable and delete the unit and its environment file.
    Uninstall {
        /// The system manager's unit.
        #[arg(long)]
        system: bool,
    },
    /// Where the unit is, and whether systemd runs it.
    Status {
        /// The system manager's unit.
        #[arg(long)]
        system: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ApprovalsAction {
    /// Print the document (without its socket token) and its hash.
    Show,
    /// Set the policy: of one agent with --agent, else the defaults.
    Set {
        /// The agent id (`*` for every agent).
        #[arg(long, value_name = "ID")]
        agent: Option<String>,
        /// deny, allowlist or full.
        #[arg(long, value_parser = parse_policy::<Security>)]
        security: Option<Security>,
        /// off, on-miss or always.
        #[arg(long, value_parser = parse_policy::<Ask>)]
        ask: Option<Ask>,
        /// What runs when approval is needed and nobody answers: deny, allowlist or full.
        #[arg(long, value_parser = parse_policy::<Security>)]
        ask_fallback: Option<Security>,
    },
    /// Allow a program: a glob over its real path, or a bare name.
    Allow {
        /// The agent id [default: `*`, every agent].
        #[arg(long, value_name = "ID", default_value = "*")]
        agent: String,
        /// E.g. /usr/bin/uname or "~/bin/**".
        pattern: String,
    },
    /// Remove an allowlist entry.
    Disallow {
        /// The agent id [default: `*`, every agent].
        #[arg(long, value_name = "ID", default_value = "*")]
        agent: String,
        /// The pattern as it was added.
        pattern: String,
    },
}

/// A policy value by its wire name (`on-miss`, `allowlist`, ...).
fn parse_policy<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|e| e.to_string())
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

/// A secret given on the command line: kept out of `Debug` output (clap's
/// derive needs `Debug`, and a stray `{:?}` must not print it).
#[derive(Clone)]
struct SecretArg(String);

impl From<String> for SecretArg {
    fn from(s: String) -> Self {
        SecretArg(s)
    }
}

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("clawnode: error: {message}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    if let Some(code) = as_openclaw_probe() {
        return code;
    }
    let cli = Cli::parse();
    init_tracing();
    match cli.command {
        Command::Run(args) => run(args),
        Command::Identity { state_dir, json } => identity(state_dir, json),
        Command::Probe { url } => probe(&url),
        Command::Approvals { state_dir, action } => approvals(state_dir, action),
        Command::Service { action } => service(action),
        Command::Swarm(args) => swarm(args),
    }
}

/// Invoked as `openclaw` (a link to this binary): the gateway's SSH
/// auto-approval probe runs `sh -lc 'openclaw node identity --json'` on the
/// node's host, and this answers it as the official host does. Nothing
/// else is served under that name.
fn as_openclaw_probe() -> Option<ExitCode> {
    let mut args = std::env::args_os();
    let argv0 = PathBuf::from(args.next()?);
    if argv0.file_name()? != "openclaw" {
        return None;
    }
    let rest: Vec<_> = args.collect();
    if rest == ["node", "identity", "--json"] {
        return Some(identity(None, true));
    }
    Some(fail(
        EXIT_USAGE,
        "this is clawnode under the name `openclaw`: it answers only `openclaw node identity --json` \
         (the gateway's SSH probe); run `clawnode --help`",
    ))
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

fn identity(dir: Option<PathBuf>, json: bool) -> ExitCode {
    let store = match state_dir(dir) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let key = if json {
        // A probe reads the identity; it must not make one.
        match store.load_identity() {
            Ok(Some(k)) => Ok(k),
            Ok(None) => {
                return fail(
                    1,
                    format!(
                        "no device identity in {} (start the node once with `clawnode run`)",
                        store.path().display()
                    ),
                );
            }
            Err(e) => Err(e),
        }
    } else {
        store.load_or_create_identity()
    };
    match key {
        Ok(key) => {
            let id = DeviceIdentity::new(key);
            if json {
                // Key order and compact form as the official host prints them.
                let text = |s: &str| serde_json::Value::from(s).to_string();
                println!(
                    "{{\"deviceId\":{},\"publicKey\":{}}}",
                    text(id.device_id()),
                    text(id.public_key())
                );
            } else {
                println!("device_id: {}", id.device_id());
                println!("public_key: {}", id.public_key());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, e),
    }
}

fn approvals(dir: Option<PathBuf>, action: ApprovalsAction) -> ExitCode {
    use clawnode_smol::exec::approvals::AllowEntry;
    use clawnode_smol::exec::commands::{approvals_get, edit_local};
    let store = match state_dir(dir) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let result = match action {
        ApprovalsAction::Show => approvals_get(&store, &serde_json::json!({})),
        ApprovalsAction::Set {
            agent,
            security,
            ask,
            ask_fallback,
        } => edit_local(&store, |f| {
            let fields = match agent {
                Some(a) => {
                    let e = f.agents.entry(a).or_default();
                    (&mut e.security, &mut e.ask, &mut e.ask_fallback)
                }
                None => (
                    &mut f.defaults.security,
                    &mut f.defaults.ask,
                    &mut f.defaults.ask_fallback,
                ),
            };
            *fields.0 = security.or(*fields.0);
            *fields.1 = ask.or(*fields.1);
            *fields.2 = ask_fallback.or(*fields.2);
        }),
        ApprovalsAction::Allow { agent, pattern } => edit_local(&store, |f| {
            let list = &mut f.agents.entry(agent).or_default().allowlist;
            if !list.iter().any(|e| e.pattern == pattern) {
                list.push(AllowEntry {
                    pattern,
                    ..AllowEntry::default()
                });
            }
        }),
        ApprovalsAction::Disallow { agent, pattern } => edit_local(&store, |f| {
            if let Some(a) = f.agents.get_mut(&agent) {
                a.allowlist.retain(|e| e.pattern != pattern);
            }
        }),
    };
    match result {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v).expect("JSON"));
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, e),
    }
}

fn swarm(args: SwarmArgs) -> ExitCode {
    use clawnode_smol::swarm::{SwarmSpec, run};
    use std::io::IsTerminal as _;
    if args.count == 0 || args.inflight == 0 {
        return fail(EXIT_USAGE, "--count and --inflight must be at least 1");
    }
    let settings = Settings {
        url: Some(args.url.clone()),
        token: env_token(),
        tls_fingerprints: Some(args.tls_fingerprints.clone()),
        ..Settings::default()
    };
    let config = match settings.session_config(ClientOptions::default()) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let state = match args.state_dir.clone() {
        Some(d) => d,
        None => match StateDir::default_location() {
            Ok(s) => s.path().join("swarm"),
            Err(e) => return fail(EXIT_USAGE, e),
        },
    };
    // Every session on this one thread, which also waits for their I/O.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(1, format!("cannot start the runtime: {e}")),
    };
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
    let mut signals = match Signals::new([Signal::Term, Signal::Int]) {
        Ok(s) => s,
        Err(e) => return fail(1, format!("cannot install signal handlers: {e}")),
    };
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
    match result {
        Ok(summary) => {
            let v = summary.to_json();
            if args.json {
                println!("{v}");
            } else {
                println!("{}", serde_json::to_string_pretty(&v).expect("JSON"));
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, e),
    }
}

fn service(action: ServiceAction) -> ExitCode {
    use clawnode_smol::service::{
        Scope, UNIT, UnitSpec, lingering, paths, render_env, render_unit,
    };
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let scope_of = |system: bool| if system { Scope::System } else { Scope::User };
    let systemctl = |scope: Scope, args: &[&str]| {
        let mut cmd = std::process::Command::new("systemctl");
        if scope == Scope::User {
            cmd.arg("--user");
        }
        cmd.args(args).status()
    };
    match action {
        ServiceAction::Install {
            system,
            no_start,
            state_dir,
            url,
            tls_fingerprints,
            config,
            display_name,
            commands,
        } => {
            let scope = scope_of(system);
            let (unit_path, env_path) = paths(scope, &home);
            let state = match (state_dir, scope) {
                (Some(d), Scope::System) if d != std::path::Path::new("/var/lib/clawnode") => {
                    return fail(
                        EXIT_USAGE,
                        "a system unit keeps its state in /var/lib/clawnode (it runs as a dynamic \
                         user that may write nowhere else); drop --state-dir, or install a user unit",
                    );
                }
                (Some(d), _) => d,
                (None, Scope::System) => PathBuf::from("/var/lib/clawnode"),
                (None, Scope::User) => match StateDir::default_location() {
                    Ok(s) => s.path().to_path_buf(),
                    Err(e) => return fail(EXIT_USAGE, e),
                },
            };
            let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
            let state = absolute(state);
            let paired = StateDir::new(&state).load_paired_gateway().ok().flatten();
            if url.is_none() && config.is_none() && paired.is_none() {
                return fail(
                    EXIT_USAGE,
                    format!(
                        "nothing to connect to: no --url, no --config, and no gateway paired in {}; \
                         pair first with `clawnode run --pair CODE --state-dir {}`",
                        state.display(),
                        state.display()
                    ),
                );
            }
            let binary = match std::env::current_exe().and_then(std::fs::canonicalize) {
                Ok(b) => b,
                Err(e) => return fail(1, format!("cannot find this binary: {e}")),
            };
            let mut run_args = vec!["--state-dir".to_owned(), state.display().to_string()];
            if let Some(c) = config {
                run_args.extend(["--config".to_owned(), absolute(c).display().to_string()]);
            }
            if let Some(u) = url {
                run_args.extend(["--url".to_owned(), u]);
            }
            for fp in tls_fingerprints {
                run_args.extend(["--tls-fingerprint".to_owned(), fp]);
            }
            if let Some(n) = display_name {
                run_args.extend(["--display-name".to_owned(), n]);
            }
            if !commands.is_empty() {
                run_args.extend(["--commands".to_owned(), commands.join(",")]);
            }
            let token = env_token();
            let vars: Vec<(&str, &str)> = token
                .as_deref()
                .map(|t| (TOKEN_VAR, t))
                .into_iter()
                .collect();
            let env_text = match render_env(&vars) {
                Ok(t) => t,
                Err(e) => return fail(EXIT_USAGE, e),
            };
            let unit = render_unit(&UnitSpec {
                scope,
                binary,
                run_args,
                env_file: env_path.clone(),
            });
            // Without a token now, an existing environment file (with the
            // token of an earlier install) is kept, not emptied.
            let keep_env = token.is_none() && env_path.exists();
            let written = if keep_env {
                Ok(())
            } else {
                write_private(&env_path, env_text.as_bytes(), 0o600)
            }
            .and_then(|()| write_private(&unit_path, unit.as_bytes(), 0o644));
            if let Err(e) = written {
                return fail(1, e);
            }
            println!("unit: {}", unit_path.display());
            println!(
                "environment file (mode 0600){}: {}",
                if keep_env { ", kept" } else { "" },
                env_path.display()
            );
            if scope == Scope::User {
                let user = std::env::var("USER")
                    .or_else(|_| std::env::var("LOGNAME"))
                    .unwrap_or_default();
                if !lingering(&user) {
                    let who = if user.is_empty() { "$(id -un)" } else { &user };
                    eprintln!(
                        "clawnode: warning: lingering is off for {who}: the node stops at logout and \
                         does not start at boot; to keep it up, run `loginctl enable-linger {who}`"
                    );
                }
            }
            if no_start {
                return ExitCode::SUCCESS;
            }
            let flag = if scope == Scope::User { " --user" } else { "" };
            for args in [&["daemon-reload"][..], &["enable", "--now", UNIT][..]] {
                match systemctl(scope, args) {
                    Ok(s) if s.success() => {}
                    other => {
                        return fail(
                            1,
                            format!(
                                "`systemctl{flag} {}` failed ({other:?}); the files are written: on a systemd \
                                 host, run `systemctl{flag} daemon-reload && systemctl{flag} enable --now {UNIT}`",
                                args.join(" ")
                            ),
                        );
                    }
                }
            }
            ExitCode::SUCCESS
        }
        ServiceAction::Uninstall { system } => {
            let scope = scope_of(system);
            let (unit_path, env_path) = paths(scope, &home);
            let _ = systemctl(scope, &["disable", "--now", UNIT]);
            for p in [&unit_path, &env_path] {
                match std::fs::remove_file(p) {
                    Ok(()) => println!("removed {}", p.display()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return fail(1, format!("cannot remove {}: {e}", p.display())),
                }
            }
            let _ = systemctl(scope, &["daemon-reload"]);
            ExitCode::SUCCESS
        }
        ServiceAction::Status { system } => {
            let scope = scope_of(system);
            let (unit_path, _) = paths(scope, &home);
            println!(
                "unit: {} ({})",
                unit_path.display(),
                if unit_path.exists() {
                    "installed"
                } else {
                    "not installed"
                }
            );
            match systemctl(scope, &["is-active", "--quiet", UNIT]) {
                Ok(s) => println!("active: {}", s.success()),
                Err(e) => println!("active: unknown (systemctl: {e})"),
            }
            ExitCode::SUCCESS
        }
    }
}

/// Writes `bytes` to `path` with `mode`, creating its directory (0700).
fn write_private(path: &std::path::Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
    let err = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| err("create the directory of", e))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| err("write", e))?;
    // An existing file keeps its mode on open: set it.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| err("set the mode of", e))?;
    f.write_all(bytes).map_err(|e| err("write", e))
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
    /// The setup code of `--pair`/`--pair-if-needed`, decoded once (its
    /// expiry is checked at start, not at every reload).
    pairing: Option<SetupCode>,
}

impl Sources {
    /// The session config, after writing the file's `[exec]` policy (if
    /// any, and if it changes anything) into `store`.
    fn load(&self, store: &StateDir) -> Result<clawnode_smol::core::SessionConfig, String> {
        let env = Settings {
            token: self.env_token.clone(),
            ..Settings::default()
        };
        let file = match &self.file {
            Some(path) => Settings::from_file(path).map_err(|e| e.to_string())?,
            None => Settings::default(),
        };
        let mut settings = env.overlaid_with(file).overlaid_with(self.cli.clone());
        if let Some(code) = &self.pairing {
            // Pairing authenticates with the code's bootstrap token alone.
            settings.token = None;
            settings.password = None;
            // Explicit values win; the code's pin goes with the code's URL.
            let url = settings
                .url
                .get_or_insert_with(|| code.url.as_str().to_owned());
            let same_url =
                clawnode_smol::core::GatewayUrl::parse(url).ok().as_ref() == Some(&code.url);
            let pins = settings.tls_fingerprints.get_or_insert_with(Vec::new);
            if pins.is_empty()
                && same_url
                && let Some(fp) = &code.tls_fingerprint
            {
                pins.push(format!("sha256:{fp}"));
            }
        } else if settings.url.is_none()
            && let Some(paired) = store.load_paired_gateway().map_err(|e| e.to_string())?
        {
            settings.url = Some(paired.url);
            let pins = settings.tls_fingerprints.get_or_insert_with(Vec::new);
            if pins.is_empty() {
                *pins = paired.tls_fingerprints;
            }
        }
        let mut config = settings
            .session_config(self.client.clone())
            .map_err(|e| e.to_string())?;
        if let Some(code) = &self.pairing {
            let mut creds = config.credentials.clone();
            creds.bootstrap_token = Some(code.bootstrap_token.clone());
            config = config.with_credentials(creds);
        }
        if let Some(exec) = &settings.exec {
            let changed = clawnode_smol::exec::commands::merge_local(store, |f| exec.apply(f))
                .map_err(|e| format!("cannot store the [exec] policy: {}", e.message))?;
            if changed {
                tracing::info!("exec policy from the config file stored");
            }
        }
        // The file's [exec] values are also a ceiling a gateway cannot widen
        // (docs/exec-host.md §11.4); without them, there is none.
        let ceiling = match (&settings.exec, &self.file) {
            (Some(exec), Some(path)) => Some(exec.ceiling(path)).filter(|c| !c.is_empty()),
            _ => None,
        };
        let bytes = ceiling.map(|c| serde_json::to_vec_pretty(&c).expect("serialises"));
        store
            .store_exec_ceiling(bytes.as_deref())
            .map_err(|e| format!("cannot store the [exec] ceiling: {e}"))?;
        Ok(config)
    }
}

fn run(args: RunArgs) -> ExitCode {
    // This process's only children are runs: what a run's command leaves
    // when it kills its own reaper comes here and is killed
    // (docs/exec-host.md §11.3).
    if let Err(e) = clawnode_smol::exec::run::adopt_orphans() {
        tracing::warn!(error = %e, "cannot adopt what runs leave behind");
    }
    let pair_code = args
        .pair
        .as_ref()
        .or(args.pair_if_needed.as_ref())
        .map(|c| c.0.clone());
    let client = ClientOptions {
        display_name: host_name(),
        ..ClientOptions::default()
    };
    let sources = Sources {
        file: args.config.clone(),
        cli: Settings {
            url: args.url.clone(),
            token: args.token.clone().map(|t| t.0),
            password: args.password.clone().map(|p| p.0),
            tls_fingerprints: Some(args.tls_fingerprints.clone()),
            tls: args
                .tofu
                .then_some(clawnode_smol::file_config::TlsMode::Tofu),
            display_name: args.display_name.clone(),
            session_id: None,
            exec: None,
        },
        // As upstream, pairing does not use the shared token.
        env_token: env_token().filter(|_| pair_code.is_none()),
        client,
        pairing: None,
    };
    let mut sources = sources;
    if let Some(text) = pair_code {
        match clawnode_smol::setup_code::decode(&text, wall_ms()) {
            Ok(code) => sources.pairing = Some(code),
            Err(e) => return fail(EXIT_USAGE, e),
        }
    }
    let store = match state_dir(args.state_dir.clone()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let config = match sources.load(&store) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let mut remember = sources.pairing.is_some().then(|| PairedGateway {
        url: config.url().as_str().to_owned(),
        tls_fingerprints: match config.tls() {
            clawnode_smol::core::TlsPolicy::Pinned(set) => {
                set.iter().map(|p| format!("sha256:{p}")).collect()
            }
            _ => Vec::new(),
        },
    });
    let mut builder = NodeBuilder::new(config, store.clone());
    if args.pair.is_some() {
        // --pair pairs again: the bootstrap token goes first, and the stored
        // device token is replaced only once the gateway issues a new one.
        builder = builder.ignore_stored_token();
    }
    let mut builder = builder
        .with_system_which()
        .with_system_run()
        .with_exec_approvals();
    if !args.commands.is_empty() {
        let known = builder.command_names();
        let unknown: Vec<&String> = args
            .commands
            .iter()
            .filter(|c| !known.contains(*c))
            .collect();
        if !unknown.is_empty() {
            let known: Vec<&str> = known.iter().map(String::as_str).collect();
            return fail(
                EXIT_USAGE,
                format!(
                    "--commands: unknown command {unknown:?}; this host serves {}",
                    known.join(", ")
                ),
            );
        }
        builder = builder.only_commands(&args.commands);
    } else {
        // As upstream: a restricted surface publishes no host stats.
        builder = builder.with_host_stats();
    }
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
    let mut printer = Printer::start(args.events);

    enum Wake {
        Event(Option<Event>),
        Signal(Option<Signal>),
    }
    smol::block_on(async move {
        let code = loop {
            // Signals first: a flood of events must not keep a stop waiting
            // (`or` polls its first future first).
            let wake = async { Wake::Signal(signals.next().await.and_then(Result::ok)) }
                .or(async { Wake::Event(events.recv().await.ok()) })
                .await;
            match wake {
                // Gateway events are the embedder's business; the node
                // host only logs them (at debug level).
                Wake::Event(Some(Event::GatewayEvent { .. })) => {}
                Wake::Event(Some(event)) => {
                    printer.print(&event);
                    if matches!(event, Event::Connected { .. })
                        && let Some(gateway) = remember.take()
                    {
                        // Paired: later runs find the gateway here.
                        match store.store_paired_gateway(&gateway) {
                            Ok(()) => {
                                tracing::info!(url = gateway.url, "paired; gateway remembered")
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "could not remember the paired gateway")
                            }
                        }
                    }
                    if args.exit_on_pause && matches!(event, Event::Paused { .. }) {
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
                        return ExitCode::from(130);
                    }
                    break ExitCode::SUCCESS;
                }
                Wake::Signal(None) => {}
            }
        };
        // Print what the stop itself reported, as far as stdout takes it.
        while let Ok(event) = events.try_recv() {
            if !matches!(event, Event::GatewayEvent { .. }) {
                printer.print(&event);
            }
        }
        printer.finish(FLUSH_BUDGET);
        code
    })
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
async fn stop(node: clawnode_smol::NodeHandle, deadline: Instant) -> bool {
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

/// How many lines may wait for stdout. Past that, events are dropped and
/// counted (see [`Printer::print`]).
const STDOUT_QUEUE: usize = 1024;

/// Prints events on stdout from a thread of its own.
///
/// A write to stdout blocks as long as the reader does not read (a pipe
/// nobody drains, a terminal paused with Ctrl-S). Were it written on the
/// task that also waits for signals, SIGTERM would wait for the reader, and
/// events would pile up meanwhile. So the signal task only formats a line
/// and hands it over without waiting; the writer thread is the only one that
/// ever blocks on stdout, and the process exits without it when it must.
///
/// Overflow policy, as for the session's event streams: when the queue is
/// full the newest event is dropped and counted, and one `lagged` line with
/// the count takes the place of the dropped ones. Until that line is
/// queued every later event is dropped too, so it lands exactly where the
/// hole is: queued by [`print`](Self::print) ahead of the next event that
/// finds room, or written by the writer thread itself as soon as it has
/// caught up (the queue is empty), whichever comes first.
struct Printer {
    format: EventFormat,
    tx: Option<mpsc::SyncSender<String>>,
    /// Events dropped and not yet reported in a `lagged` line; taken (with
    /// `swap`) by whichever of the two threads reports them.
    dropped: Arc<AtomicU64>,
    /// Signalled by the writer thread when it has written everything.
    done: mpsc::Receiver<()>,
}

impl Printer {
    fn start(format: EventFormat) -> Printer {
        let (tx, rx) = mpsc::sync_channel::<String>(STDOUT_QUEUE);
        let (done_tx, done) = mpsc::channel();
        let dropped = Arc::new(AtomicU64::new(0));
        let pending = dropped.clone();
        let spawned = std::thread::Builder::new()
            .name("stdout".into())
            .spawn(move || {
                let mut out = std::io::stdout().lock();
                loop {
                    let text = match rx.try_recv() {
                        Ok(text) => text,
                        Err(empty_or_closed) => {
                            // Caught up: the hole, if any, is right here.
                            let n = pending.swap(0, Ordering::SeqCst);
                            if n > 0 {
                                line(format, &Event::Lagged { dropped: n })
                            } else if empty_or_closed == mpsc::TryRecvError::Disconnected {
                                break;
                            } else {
                                match rx.recv() {
                                    Ok(text) => text,
                                    Err(_) => continue,
                                }
                            }
                        }
                    };
                    // A reader that went away (EPIPE) ends the printing,
                    // not the node.
                    if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
                        return;
                    }
                }
                let _ = done_tx.send(());
            });
        // Without the thread there is nowhere to print: the node runs on.
        let tx = spawned.is_ok().then_some(tx);
        Printer {
            format,
            tx,
            dropped,
            done,
        }
    }

    /// Queues `event`'s line without ever waiting (see [`Printer`] for what
    /// happens when the queue is full). A `lagged` event from the session
    /// (this loop itself fell behind) adds to the count.
    fn print(&mut self, event: &Event) {
        let Some(tx) = &self.tx else { return };
        let (mut pending, event) = match event {
            Event::Lagged { dropped } => (*dropped, None),
            e => (0, Some(e)),
        };
        pending += self.dropped.swap(0, Ordering::SeqCst);
        if pending > 0 {
            let lagged = Event::Lagged { dropped: pending };
            match tx.try_send(line(self.format, &lagged)) {
                Ok(()) => {}
                Err(mpsc::TrySendError::Full(_)) => {
                    let n = pending + u64::from(event.is_some());
                    self.dropped.fetch_add(n, Ordering::SeqCst);
                    return;
                }
                Err(mpsc::TrySendError::Disconnected(_)) => return,
            }
        }
        if let Some(e) = event
            && let Err(mpsc::TrySendError::Full(_)) = tx.try_send(line(self.format, e))
        {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Lets the writer thread write what is queued, for at most `budget`:
    /// a stalled stdout must not hold the exit.
    fn finish(mut self, budget: Duration) {
        if let Some(tx) = self.tx.take() {
            // Closing the queue lets the thread end once it is written.
            drop(tx);
            let _ = self.done.recv_timeout(budget);
        }
    }
}

/// Unix milliseconds now.
fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One line of `event` in `format`, stamped now.
fn line(format: EventFormat, event: &Event) -> String {
    let ts = wall_ms();
    match format {
        EventFormat::Json => event.to_json_line(ts),
        EventFormat::Text => event.to_string(),
    }
}
