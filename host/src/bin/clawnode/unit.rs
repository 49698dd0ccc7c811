//! The systemd unit `clawnode service install` writes: one that keeps `clawnode run` up across
//! reboots and crashes.
//!
//! The unit runs `clawnode run --exit-on-pause`: a session that needs a
//! person (a wrong pin, a refused token, a pairing to approve) exits with
//! status 3, and the unit does not restart it (`RestartPreventExitStatus`),
//! so no restart loop hammers a gateway that already said no. Any other
//! failure is restarted after 5 s. Secrets never go on the command line:
//! the gateway token lives in an environment file of mode 0600 that the
//! unit reads (`EnvironmentFile`). A system unit never runs as root: it
//! runs as a dynamic user that owns only `/var/lib/clawnode`, with the rest
//! of the file system read-only; a user unit runs as its user.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where the unit is installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `systemctl --user`: the unit runs as the installing user, under
    /// `~/.config/systemd/user`; without lingering it stops at logout.
    User,
    /// The system manager, under `/etc/systemd/system` (needs root).
    System,
}

/// The unit's name.
pub const UNIT: &str = "clawnode.service";

/// What the unit runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitSpec {
    /// The scope.
    pub scope: Scope,
    /// The absolute path of the `clawnode` binary.
    pub binary: PathBuf,
    /// The arguments after `clawnode run` (no secrets).
    pub run_args: Vec<String>,
    /// The environment file the unit reads.
    pub env_file: PathBuf,
}

/// The unit file's path and the environment file's path for `scope`,
/// under `home` (user scope) or `/etc` (system scope).
pub fn paths(scope: Scope, home: &Path) -> (PathBuf, PathBuf) {
    match scope {
        Scope::User => (
            home.join(".config/systemd/user").join(UNIT),
            home.join(".config/clawnode/clawnode.env"),
        ),
        Scope::System => (
            PathBuf::from("/etc/systemd/system").join(UNIT),
            PathBuf::from("/etc/clawnode/clawnode.env"),
        ),
    }
}

/// Quotes one word for systemd's command-line syntax: double quotes, with
/// `\`, `"` escaped and `%` and `$` doubled (no specifier or variable
/// expansion).
fn quote(word: &str) -> String {
    let mut out = String::from("\"");
    for c in word.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The unit file.
pub fn render_unit(spec: &UnitSpec) -> String {
    let mut exec = quote(&spec.binary.to_string_lossy());
    exec.push_str(" run --exit-on-pause");
    for a in &spec.run_args {
        exec.push(' ');
        exec.push_str(&quote(a));
    }
    let mut u = String::new();
    let _ = writeln!(u, "[Unit]");
    let _ = writeln!(u, "Description=clawnode, an OpenClaw node host");
    let _ = writeln!(u, "Wants=network-online.target");
    let _ = writeln!(u, "After=network-online.target");
    let _ = writeln!(u);
    let _ = writeln!(u, "[Service]");
    let _ = writeln!(u, "Type=exec");
    let _ = writeln!(u, "ExecStart={exec}");
    let _ = writeln!(
        u,
        "EnvironmentFile=-{}",
        spec.env_file.to_string_lossy().replace('%', "%%")
    );
    let _ = writeln!(u, "Restart=on-failure");
    let _ = writeln!(u, "RestartSec=5");
    let _ = writeln!(
        u,
        "# 2: bad usage or configuration; 3: paused, a person must act. Restarting cannot help."
    );
    let _ = writeln!(u, "RestartPreventExitStatus=2 3");
    let _ = writeln!(u, "KillSignal=SIGTERM");
    let _ = writeln!(u, "TimeoutStopSec=10");
    let _ = writeln!(u, "NoNewPrivileges=yes");
    if spec.scope == Scope::System {
        // Never root: a user systemd makes for the service, which owns only
        // its state directory; the rest of the system is read-only to it,
        // and to every command `system.run` starts.
        let _ = writeln!(u, "DynamicUser=yes");
        let _ = writeln!(u, "StateDirectory=clawnode");
        let _ = writeln!(u, "ProtectSystem=strict");
        let _ = writeln!(u, "ProtectHome=read-only");
        let _ = writeln!(u, "PrivateTmp=yes");
    }
    let _ = writeln!(u);
    let _ = writeln!(u, "[Install]");
    let _ = writeln!(
        u,
        "WantedBy={}",
        match spec.scope {
            Scope::User => "default.target",
            Scope::System => "multi-user.target",
        }
    );
    u
}

/// The environment file: `KEY=value` lines, values single-quoted.
/// Values with a newline or a quote are refused.
pub fn render_env(vars: &[(&str, &str)]) -> Result<String, UnsafeValue> {
    let mut out = String::from("# clawnode service secrets (mode 0600)\n");
    for (k, v) in vars {
        if v.contains(['\n', '\r', '\'', '\\']) {
            return Err(UnsafeValue((*k).to_owned()));
        }
        let _ = writeln!(out, "{k}='{v}'");
    }
    Ok(out)
}

/// A variable whose value an environment file cannot carry.
#[derive(Debug, thiserror::Error)]
#[error("{0} holds a newline, quote or backslash, which an environment file cannot carry")]
pub struct UnsafeValue(String);

/// Whether `user` has lingering on (their user manager runs without a
/// login session, so a user unit survives logout and starts at boot).
pub fn lingering(user: &str) -> bool {
    Path::new("/var/lib/systemd/linger").join(user).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(scope: Scope) -> UnitSpec {
        let (_, env_file) = paths(scope, Path::new("/home/ann"));
        UnitSpec {
            scope,
            binary: "/opt/claw node/clawnode".into(),
            run_args: vec![
                "--state-dir".into(),
                "/home/ann/.local/state/clawnode".into(),
                "--display-name".into(),
                "100% \"box\" $HOME".into(),
            ],
            env_file,
        }
    }

    #[test]
    fn the_unit_restarts_failures_but_not_pauses_and_quotes_every_word() {
        let u = render_unit(&spec(Scope::User));
        assert!(
            u.contains(
                "ExecStart=\"/opt/claw node/clawnode\" run --exit-on-pause \"--state-dir\" \
             \"/home/ann/.local/state/clawnode\" \"--display-name\" \"100%% \\\"box\\\" $$HOME\"\n"
            ),
            "{u}"
        );
        assert!(u.contains("Restart=on-failure\n"));
        assert!(u.contains("RestartPreventExitStatus=2 3\n"));
        assert!(u.contains("EnvironmentFile=-/home/ann/.config/clawnode/clawnode.env\n"));
        assert!(u.contains("WantedBy=default.target\n"));
        let s = render_unit(&spec(Scope::System));
        assert!(s.contains("WantedBy=multi-user.target\n"));
        assert!(s.contains("DynamicUser=yes\nStateDirectory=clawnode\nProtectSystem=strict\n"));
        assert!(!u.contains("DynamicUser"), "a user unit runs as its user");
        assert!(s.contains("EnvironmentFile=-/etc/clawnode/clawnode.env\n"));
    }

    #[test]
    fn secrets_go_to_the_environment_file_only() {
        let env = render_env(&[("OPENCLAW_GATEWAY_TOKEN", "s3cret")]).unwrap();
        assert!(env.ends_with("OPENCLAW_GATEWAY_TOKEN='s3cret'\n"), "{env}");
        assert!(!render_unit(&spec(Scope::User)).contains("s3cret"));
        let bad = render_env(&[("OPENCLAW_GATEWAY_TOKEN", "a'b")])
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains("OPENCLAW_GATEWAY_TOKEN") && !bad.contains("a'b"),
            "{bad}"
        );
    }
}
