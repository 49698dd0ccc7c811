//! The `clawnode` binary, run as `clawnode run ... --events json`.

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::sys::{self, Watchdog};

/// How to run a [`Node`].
#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    /// `--url`.
    pub url: String,
    /// `--token`.
    pub token: Option<String>,
    /// `--tls-fingerprint`, each.
    pub pins: Vec<String>,
    /// `--display-name`: make it unique per node, the gateway log is
    /// searched by it.
    pub display_name: String,
    /// `--state-dir` (a fresh directory when `None`).
    pub state_dir: Option<PathBuf>,
    /// Use `--config FILE` (written from the fields above, re-read on
    /// SIGHUP) instead of `--url`/`--token`/`--tls-fingerprint` flags.
    pub use_config_file: bool,
    /// `--exit-on-pause`.
    pub exit_on_pause: bool,
    /// More arguments after the others.
    pub extra_args: Vec<String>,
    /// More TOML at the end of the `--config` file (e.g. an `[exec]` table).
    pub extra_toml: String,
    /// Environment variables set for the node (e.g. its `PATH`).
    pub env: Vec<(String, String)>,
}

impl NodeOptions {
    /// Options for `url` with `token`, named `display_name`.
    pub fn new(url: &str, token: &str, display_name: &str) -> Self {
        NodeOptions {
            url: url.to_owned(),
            token: Some(token.to_owned()),
            display_name: display_name.to_owned(),
            ..NodeOptions::default()
        }
    }

    /// Adds a pin.
    pub fn pin(mut self, pin: &str) -> Self {
        self.pins.push(pin.to_owned());
        self
    }

    /// Uses a `--config` file (SIGHUP reloads it).
    pub fn config_file(mut self) -> Self {
        self.use_config_file = true;
        self
    }

    /// Adds `--exit-on-pause`.
    pub fn exit_on_pause(mut self) -> Self {
        self.exit_on_pause = true;
        self
    }

    /// The TOML `--config` text for these options.
    pub fn toml(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).expect("string");
        let mut t = format!("url = {}\n", q(&self.url));
        if let Some(token) = &self.token {
            t += &format!("token = {}\n", q(token));
        }
        if !self.pins.is_empty() {
            let pins: Vec<String> = self.pins.iter().map(|p| q(p)).collect();
            t += &format!("tls_fingerprints = [{}]\n", pins.join(", "));
        }
        if !self.display_name.is_empty() {
            t += &format!("display_name = {}\n", q(&self.display_name));
        }
        t + &self.extra_toml
    }
}

#[derive(Default)]
struct EventLog {
    events: Vec<Value>,
    closed: bool,
}

type Shared = Arc<(Mutex<EventLog>, Condvar)>;

/// A running `clawnode run --events json`. Its stdout is parsed into events
/// (one JSON object per line; a line that is not JSON is kept as
/// `{"event":"_unparsed","line":...}`), its stderr goes to a file.
///
/// Dropping it kills it (SIGKILL to its process group) and removes its
/// scratch directory (kept when panicking or `CLAWNODE_TESTS_KEEP=1`).
pub struct Node {
    /// The `clawnode` binary (for `identity`).
    bin: PathBuf,
    opts: NodeOptions,
    dir: PathBuf,
    state: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    pid: u32,
    shared: Shared,
    watchdog: Watchdog,
}

impl Node {
    /// Spawns `bin run ...` per `opts`.
    pub fn spawn(bin: &Path, opts: NodeOptions) -> Node {
        Node::start(bin, bin, opts)
    }

    /// Spawns the tokio example (`examples/tokio_node.rs`) per `opts`: the
    /// same flags but `--token` (the token goes in
    /// `OPENCLAW_GATEWAY_TOKEN`), `run`, `--events json` (it always prints
    /// JSON lines) and the config file. `clawnode` reads its identity.
    pub fn spawn_tokio_example(example: &Path, clawnode: &Path, opts: NodeOptions) -> Node {
        Node::start(example, clawnode, opts)
    }

    fn start(program: &Path, bin: &Path, opts: NodeOptions) -> Node {
        let example = program != bin;
        let tag = if opts.display_name.is_empty() {
            "node".to_owned()
        } else {
            opts.display_name.clone()
        };
        let dir = sys::scratch_dir(&format!("node-{tag}"));
        if sys::keep_scratch() {
            sys::mark_keep(&dir);
        }
        let state = opts.state_dir.clone().unwrap_or_else(|| dir.join("state"));
        std::fs::create_dir_all(&state).expect("create node state dir");
        let config = dir.join("clawnode.toml");
        let mut cmd = Command::new(program);
        cmd.env_remove("OPENCLAW_GATEWAY_TOKEN");
        if !example {
            cmd.arg("run");
        }
        if opts.use_config_file && !example {
            std::fs::write(&config, opts.toml()).expect("write node config");
            cmd.arg("--config").arg(&config);
        } else {
            if !opts.url.is_empty() {
                cmd.args(["--url", &opts.url]);
            }
            match &opts.token {
                Some(token) if example => {
                    cmd.env("OPENCLAW_GATEWAY_TOKEN", token);
                }
                Some(token) => {
                    cmd.args(["--token", token]);
                }
                None => {}
            }
            for pin in &opts.pins {
                cmd.args(["--tls-fingerprint", pin]);
            }
            if !opts.display_name.is_empty() {
                cmd.args(["--display-name", &opts.display_name]);
            }
        }
        cmd.arg("--state-dir").arg(&state);
        if !example {
            cmd.args(["--events", "json"]);
        }
        if opts.exit_on_pause {
            cmd.arg("--exit-on-pause");
        }
        cmd.args(&opts.extra_args);
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
        let stderr = std::fs::File::create(dir.join("stderr.log")).expect("node stderr file");
        cmd.env(
            "RUST_LOG",
            std::env::var("CLAWNODE_TESTS_RUST_LOG").unwrap_or_else(|_| "debug".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .process_group(0);
        let mut watchdog = Watchdog::spawn(Some(&dir));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        let pid = child.id();
        watchdog.guard(Some(pid));
        let shared: Shared = Arc::default();
        let stdout = child.stdout.take().expect("piped stdout");
        let reader = shared.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.trim().is_empty() {
                    continue;
                }
                let v = serde_json::from_str::<Value>(&line)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| serde_json::json!({"event": "_unparsed", "line": line}));
                let (m, cv) = &*reader;
                m.lock().unwrap_or_else(|e| e.into_inner()).events.push(v);
                cv.notify_all();
            }
            let (m, cv) = &*reader;
            m.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
            cv.notify_all();
        });
        Node {
            bin: bin.to_owned(),
            opts,
            dir,
            state,
            config,
            child: Some(child),
            pid,
            shared,
            watchdog,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The state directory (identity, tokens).
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// `clawnode approvals set ARGS --state-dir` on this node's state, as
    /// its owner would on its host; panics if it fails.
    pub fn set_approvals(&self, args: &[&str]) {
        self.approvals(&[&["set"], args].concat());
    }

    /// Runs `clawnode approvals ARGS` on this node's state directory (the
    /// owner's own command), e.g. `["allow", "/usr/bin/echo"]`.
    pub fn approvals(&self, args: &[&str]) {
        let out = Command::new(&self.bin)
            .arg("approvals")
            .args(args)
            .arg("--state-dir")
            .arg(&self.state)
            .output()
            .expect("clawnode approvals");
        assert!(out.status.success(), "clawnode approvals {args:?}: {out:?}");
    }

    /// The `--config` file (when [`NodeOptions::use_config_file`]).
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The options it was started with.
    pub fn options(&self) -> &NodeOptions {
        &self.opts
    }

    /// Rewrites the `--config` file from `opts` (send [`Node::sighup`] to apply).
    pub fn write_config(&self, opts: &NodeOptions) {
        let tmp = self.config.with_extension("toml.tmp");
        std::fs::write(&tmp, opts.toml()).expect("write node config");
        std::fs::rename(&tmp, &self.config).expect("replace node config");
    }

    /// The device id (`clawnode identity --state-dir DIR`).
    pub fn device_id(&self) -> String {
        device_id(&self.bin, &self.state)
    }

    /// The number of events so far: a mark for the `*_since` methods.
    pub fn mark(&self) -> usize {
        self.shared
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .events
            .len()
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Value> {
        self.events_since(0)
    }

    /// The events from index `mark` on.
    pub fn events_since(&self, mark: usize) -> Vec<Value> {
        let log = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
        log.events.get(mark..).unwrap_or_default().to_vec()
    }

    /// The events named `name` from index `mark` on.
    pub fn named_since(&self, mark: usize, name: &str) -> Vec<Value> {
        self.events_since(mark)
            .into_iter()
            .filter(|e| e["event"] == name)
            .collect()
    }

    /// Waits (≤ `timeout`) for an event at index ≥ `mark` matching `pred`;
    /// returns its index and the event, or `None` on timeout or when the
    /// node's stdout closed.
    pub fn wait_for(
        &self,
        mark: usize,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Option<(usize, Value)> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.shared;
        let mut log = m.lock().unwrap_or_else(|e| e.into_inner());
        let mut i = mark;
        loop {
            while i < log.events.len() {
                if pred(&log.events[i]) {
                    return Some((i, log.events[i].clone()));
                }
                i += 1;
            }
            let now = Instant::now();
            if log.closed || now >= deadline {
                return None;
            }
            log = cv
                .wait_timeout(log, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits for the event named `name` at index ≥ `mark`; panics with the
    /// node's events and stderr on timeout.
    pub fn expect(&self, mark: usize, name: &str, timeout: Duration) -> (usize, Value) {
        self.wait_for(mark, timeout, |e| e["event"] == name)
            .unwrap_or_else(|| {
                panic!(
                    "no `{name}` event from the node within {timeout:?} (from event #{mark})\n{}",
                    self.dump()
                )
            })
    }

    /// Sends SIGHUP (re-read `--config`).
    pub fn sighup(&self) {
        sys::signal_pid(self.pid, libc::SIGHUP).expect("SIGHUP the node");
    }

    /// Open file descriptors now.
    pub fn fd_count(&self) -> usize {
        sys::fd_count(self.pid).unwrap_or(0)
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        sys::rss_kib(self.pid).unwrap_or(0)
    }

    /// Whether the process has exited (and its status).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits (≤ `timeout`) for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        sys::wait_timeout(child, timeout)
    }

    /// SIGINT (Ctrl-C), then waits (≤ `timeout`) for a graceful exit.
    pub fn interrupt(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let _ = sys::signal_pid(self.pid, libc::SIGINT);
        self.wait_exit(timeout)
    }

    /// SIGTERM, then waits (≤ `timeout`) for a graceful exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let _ = sys::signal_pid(self.pid, libc::SIGTERM);
        self.wait_exit(timeout)
    }

    /// The last `n` lines of the node's stderr (its tracing logs).
    pub fn stderr_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The node's whole stderr.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// Every event and the stderr tail, for failure messages.
    pub fn dump(&self) -> String {
        let events: Vec<String> = self.events().iter().map(Value::to_string).collect();
        format!(
            "node {} (pid {}) events:\n  {}\nstderr tail:\n{}",
            self.opts.display_name,
            self.pid,
            events.join("\n  "),
            self.stderr_tail(40)
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() || sys::keep_scratch() {
            sys::mark_keep(&self.dir);
            eprintln!("node files kept in {}", self.dir.display());
        }
        if let Some(mut child) = self.child.take() {
            let _ = sys::signal_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
        }
        self.watchdog.guard(None);
        self.watchdog.finish();
    }
}

/// The device id printed by `clawnode identity --state-dir DIR` (the first
/// run creates the identity).
pub fn device_id(bin: &Path, state_dir: &Path) -> String {
    let out = Command::new(bin)
        .arg("identity")
        .arg("--state-dir")
        .arg(state_dir)
        .output()
        .expect("run clawnode identity");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "clawnode identity failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.split(|c: char| !c.is_ascii_hexdigit())
        .find(|w| w.len() == 64)
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| panic!("no 64-hex device id in `clawnode identity` output: {text}"))
}
