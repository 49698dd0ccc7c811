//! `clawnode service`: install, remove or inspect the systemd unit that
//! keeps `clawnode run` up (the unit itself is [`crate::unit`]'s).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use clawnode::StateDir;

use crate::Error;
use crate::args::{TOKEN_VAR, env_token};
use crate::unit::{Scope, UNIT, UnitSpec, lingering, paths, render_env, render_unit};

/// Install, remove or inspect the systemd unit that keeps `clawnode
/// run` up (needs a systemd host).
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Write the unit (and, from OPENCLAW_GATEWAY_TOKEN, a 0600
    /// environment file), then enable and start it.
    Install(Install),
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

#[derive(clap::Args, Debug)]
struct Install {
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
}

/// Where a system unit keeps its state: its dynamic user may write
/// nowhere else.
const SYSTEM_STATE: &str = "/var/lib/clawnode";

/// Carries out the action.
pub fn run(args: Args) -> Result<ExitCode, Error> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let scope_of = |system: bool| if system { Scope::System } else { Scope::User };
    match args.action {
        Action::Install(install) => self::install(install, &home),
        Action::Uninstall { system } => uninstall(scope_of(system), &home),
        Action::Status { system } => status(scope_of(system), &home),
    }
}

/// `systemctl [--user] args`.
fn systemctl(scope: Scope, args: &[&str]) -> std::io::Result<std::process::ExitStatus> {
    let mut cmd = std::process::Command::new("systemctl");
    if scope == Scope::User {
        cmd.arg("--user");
    }
    cmd.args(args).status()
}

fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

/// The state directory the unit's node runs with, absolute.
fn unit_state_dir(given: Option<PathBuf>, scope: Scope) -> Result<PathBuf, Error> {
    let state = match (given, scope) {
        (Some(d), Scope::System) if d != Path::new(SYSTEM_STATE) => {
            return Err(Error::Usage(
                "a system unit keeps its state in /var/lib/clawnode (it runs as a dynamic \
                 user that may write nowhere else); drop --state-dir, or install a user unit"
                    .into(),
            ));
        }
        (Some(d), _) => d,
        (None, Scope::System) => PathBuf::from(SYSTEM_STATE),
        (None, Scope::User) => StateDir::default_location()
            .map_err(Error::NoStateDir)?
            .path()
            .to_path_buf(),
    };
    Ok(absolute(state))
}

/// The arguments the unit gives `clawnode run`.
fn run_args(install: Install, state: &Path) -> Vec<String> {
    let mut run_args = vec!["--state-dir".to_owned(), state.display().to_string()];
    if let Some(c) = install.config {
        run_args.extend(["--config".to_owned(), absolute(c).display().to_string()]);
    }
    if let Some(u) = install.url {
        run_args.extend(["--url".to_owned(), u]);
    }
    for fp in install.tls_fingerprints {
        run_args.extend(["--tls-fingerprint".to_owned(), fp]);
    }
    if let Some(n) = install.display_name {
        run_args.extend(["--display-name".to_owned(), n]);
    }
    if !install.commands.is_empty() {
        run_args.extend(["--commands".to_owned(), install.commands.join(",")]);
    }
    run_args
}

fn install(install: Install, home: &Path) -> Result<ExitCode, Error> {
    let scope = if install.system {
        Scope::System
    } else {
        Scope::User
    };
    let no_start = install.no_start;
    let (unit_path, env_path) = paths(scope, home);
    let state = unit_state_dir(install.state_dir.clone(), scope)?;
    let paired = StateDir::new(&state).load_paired_gateway().ok().flatten();
    if install.url.is_none() && install.config.is_none() && paired.is_none() {
        return Err(Error::Usage(format!(
            "nothing to connect to: no --url, no --config, and no gateway paired in {}; \
             pair first with `clawnode run --pair CODE --state-dir {}`",
            state.display(),
            state.display()
        )));
    }
    let binary = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| Error::Failed(format!("cannot find this binary: {e}")))?;
    let token = env_token();
    let vars: Vec<(&str, &str)> = token
        .as_deref()
        .map(|t| (TOKEN_VAR, t))
        .into_iter()
        .collect();
    let env_text = render_env(&vars).map_err(|e| Error::Usage(e.to_string()))?;
    let unit = render_unit(&UnitSpec {
        scope,
        binary,
        run_args: run_args(install, &state),
        env_file: env_path.clone(),
    });
    // Without a token now, an existing environment file (with the
    // token of an earlier install) is kept, not emptied.
    let keep_env = token.is_none() && env_path.exists();
    if !keep_env {
        write_private(&env_path, env_text.as_bytes(), 0o600)?;
    }
    write_private(&unit_path, unit.as_bytes(), 0o644)?;
    println!("unit: {}", unit_path.display());
    println!(
        "environment file (mode 0600){}: {}",
        if keep_env { ", kept" } else { "" },
        env_path.display()
    );
    if scope == Scope::User {
        warn_without_lingering();
    }
    if !no_start {
        start(scope)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A user unit without lingering stops at logout: says how to keep it.
fn warn_without_lingering() {
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

/// Reloads systemd and enables and starts the unit.
fn start(scope: Scope) -> Result<(), Error> {
    let flag = if scope == Scope::User { " --user" } else { "" };
    for args in [&["daemon-reload"][..], &["enable", "--now", UNIT][..]] {
        match systemctl(scope, args) {
            Ok(s) if s.success() => {}
            other => {
                return Err(Error::Failed(format!(
                    "`systemctl{flag} {}` failed ({other:?}); the files are written: on a systemd \
                     host, run `systemctl{flag} daemon-reload && systemctl{flag} enable --now {UNIT}`",
                    args.join(" ")
                )));
            }
        }
    }
    Ok(())
}

fn uninstall(scope: Scope, home: &Path) -> Result<ExitCode, Error> {
    let (unit_path, env_path) = paths(scope, home);
    let _ = systemctl(scope, &["disable", "--now", UNIT]);
    for p in [&unit_path, &env_path] {
        match std::fs::remove_file(p) {
            Ok(()) => println!("removed {}", p.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Failed(format!("cannot remove {}: {e}", p.display()))),
        }
    }
    let _ = systemctl(scope, &["daemon-reload"]);
    Ok(ExitCode::SUCCESS)
}

fn status(scope: Scope, home: &Path) -> Result<ExitCode, Error> {
    let (unit_path, _) = paths(scope, home);
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
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` to `path` with `mode`, creating its directory (0700).
fn write_private(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
    let err = |what: &str, e: std::io::Error| {
        Error::Failed(format!("cannot {what} {}: {e}", path.display()))
    };
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
