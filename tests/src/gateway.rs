//! A real OpenClaw gateway on loopback, under the test's control.

use std::fs::OpenOptions;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::Install;
use crate::operator::{CallError, Operator};
use crate::sys::{self, Watchdog};

/// How to start a [`Gateway`].
#[derive(Clone, Debug, Default)]
pub struct GatewayOptions {
    /// Serve `wss://` with an auto-generated self-signed certificate.
    pub tls: bool,
    /// The shared token (random when `None`).
    pub token: Option<String>,
    /// A short name for the scratch directory.
    pub tag: String,
    /// More top-level config sections (e.g. `models`, `agents`, `tools`).
    pub config: serde_json::Map<String, Value>,
}

impl GatewayOptions {
    /// A plain `ws://` gateway.
    pub fn plain(tag: &str) -> Self {
        GatewayOptions {
            tls: false,
            token: None,
            tag: tag.to_owned(),
            config: serde_json::Map::new(),
        }
    }

    /// A `wss://` gateway with a generated certificate.
    pub fn tls(tag: &str) -> Self {
        GatewayOptions {
            tls: true,
            token: None,
            tag: tag.to_owned(),
            config: serde_json::Map::new(),
        }
    }
}

/// One line of the gateway's log.
#[derive(Clone, Debug)]
pub struct LogLine {
    /// Byte offset of the line's start in the log file.
    pub offset: u64,
    /// The line's timestamp in ms since the Unix epoch, when it has one.
    pub ts_ms: Option<u64>,
    /// The text, without the newline.
    pub text: String,
}

/// The output of one operator CLI run.
#[derive(Clone, Debug)]
pub struct CliOutput {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Its exit code, if it exited (not killed by the timeout).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl CliOutput {
    /// The JSON document on stdout (from its first `{` or `[`).
    pub fn json(&self) -> Result<Value, String> {
        let start = self.stdout.find(['{', '[']).ok_or_else(|| {
            format!(
                "no JSON in stdout: {:?} (stderr {:?})",
                self.stdout, self.stderr
            )
        })?;
        let mut de = serde_json::Deserializer::from_str(&self.stdout[start..]).into_iter::<Value>();
        match de.next() {
            Some(Ok(v)) => Ok(v),
            other => Err(format!(
                "bad JSON in stdout ({other:?}): {:?} (stderr {:?})",
                self.stdout, self.stderr
            )),
        }
    }
}

struct Proc {
    child: Option<Child>,
    watchdog: Watchdog,
}

/// A real gateway process (`openclaw gateway run`), started with
/// `--verbose --ws-log compact` so that its log (stdout and stderr,
/// appended to `dir/gateway.log` across restarts) shows every WebSocket
/// open, `connect` (with `clientDisplayName`) and `hello-ok`.
///
/// Dropping it kills its whole process group and removes its scratch
/// directory (kept when the thread is panicking or `CLAWNODE_TESTS_KEEP=1`).
pub struct Gateway {
    install: Install,
    dir: PathBuf,
    state: PathBuf,
    config: PathBuf,
    log: PathBuf,
    port: u16,
    token: String,
    tls: bool,
    proc: Mutex<Proc>,
    /// The idle operator connections of [`Gateway::rpc`].
    operators: Mutex<Vec<Operator>>,
}

/// How long a gateway may take to print `[gateway] ready` (2 shared cores).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if ok.is_err() {
        let seed = sys::now_ms() ^ u64::from(std::process::id());
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed >> ((i % 8) * 8)) as u8 ^ i as u8;
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of the DER of the first certificate in PEM text, as 64 lowercase hex.
pub fn pem_pin(pem: &str) -> Option<String> {
    let begin = pem.find("-----BEGIN CERTIFICATE-----")? + "-----BEGIN CERTIFICATE-----".len();
    let end = pem[begin..].find("-----END CERTIFICATE-----")? + begin;
    let b64: String = pem[begin..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let digest = sha2::Sha256::digest(&der);
    Some(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// A certificate and key generated for [`Gateway::rotate_cert`].
#[derive(Clone, Debug)]
pub struct NewCert {
    /// The PEM certificate file.
    pub cert: PathBuf,
    /// The PEM private key file.
    pub key: PathBuf,
    /// The certificate's pin.
    pub pin: String,
}

impl Gateway {
    /// Starts a gateway and waits for `[gateway] ready`.
    pub fn start(install: &Install, opts: GatewayOptions) -> Gateway {
        let tag = if opts.tag.is_empty() { "gw" } else { &opts.tag };
        let dir = sys::scratch_dir(&format!("gw-{tag}"));
        if sys::keep_scratch() {
            sys::mark_keep(&dir);
        }
        let state = dir.join("state");
        std::fs::create_dir_all(&state).expect("create state dir");
        let config = state.join("openclaw.json");
        let port = free_port();
        let mut gw = serde_json::json!({ "port": port });
        if opts.tls {
            gw["tls"] = serde_json::json!({"enabled": true, "autoGenerate": true});
        }
        let mut cfg = serde_json::json!({
            "gateway": gw,
            "logging": { "file": dir.join("openclaw.jsonl") },
        });
        for (k, v) in &opts.config {
            match (k.as_str(), v) {
                // Merged, so that the port and TLS set above stay.
                ("gateway", Value::Object(extra)) => {
                    for (gk, gv) in extra {
                        cfg["gateway"][gk] = gv.clone();
                    }
                }
                _ => cfg[k] = v.clone(),
            }
        }
        std::fs::write(&config, format!("{cfg}\n")).expect("write gateway config");
        let gateway = Gateway {
            install: install.clone(),
            log: dir.join("gateway.log"),
            dir: dir.clone(),
            state,
            config,
            port,
            token: opts.token.unwrap_or_else(|| random_hex(24)),
            tls: opts.tls,
            proc: Mutex::new(Proc {
                child: None,
                watchdog: Watchdog::spawn(Some(&dir)),
            }),
            operators: Mutex::new(Vec::new()),
        };
        gateway.spawn_and_wait();
        gateway
    }

    /// Spawns the gateway process (log appended) and waits for its ready line.
    fn spawn_and_wait(&self) -> LogLine {
        let since = self.log_len();
        let pid = self.spawn();
        match self.wait_log(since, READY_TIMEOUT, |l| l.text.contains("[gateway] ready")) {
            Some(line) => line,
            None => panic!(
                "gateway (pid {pid}) not ready within {READY_TIMEOUT:?}; log tail:\n{}",
                self.log_tail(40)
            ),
        }
    }

    /// `node openclaw.mjs` in this gateway's local environment: no colours;
    /// state dir, config and token of this gateway; no gateway URL from the
    /// caller's environment.
    fn openclaw_command(&self) -> Command {
        let mut cmd = Command::new(&self.install.node);
        cmd.arg(&self.install.openclaw)
            .env("NO_COLOR", "1")
            .env("FORCE_COLOR", "0")
            .env("OPENCLAW_STATE_DIR", &self.state)
            .env("OPENCLAW_CONFIG_PATH", &self.config)
            .env("OPENCLAW_GATEWAY_TOKEN", &self.token)
            .env_remove("OPENCLAW_GATEWAY_URL");
        cmd
    }

    fn spawn(&self) -> u32 {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open gateway log");
        let mut cmd = self.openclaw_command();
        cmd.args(["gateway", "run", "--port"])
            .arg(self.port.to_string())
            .args([
                "--bind",
                "loopback",
                "--token",
                &self.token,
                "--auth",
                "token",
            ])
            .args(["--allow-unconfigured", "--verbose", "--ws-log", "compact"])
            .env_remove("OPENCLAW_GATEWAY_PASSWORD")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log)
            .process_group(0);
        let mut proc = self.proc.lock().unwrap_or_else(|e| e.into_inner());
        assert!(proc.child.is_none(), "gateway already running");
        let child = cmd
            .spawn()
            .expect("spawn the gateway (node openclaw.mjs gateway run)");
        let pid = child.id();
        proc.watchdog.guard(Some(pid));
        proc.child = Some(child);
        pid
    }

    /// The scratch directory (state, config, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `OPENCLAW_STATE_DIR`.
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// `OPENCLAW_CONFIG_PATH`; editing it makes the gateway reload or restart.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The log file (stdout and stderr of every run, appended).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Whether it serves `wss://`.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// `ws://127.0.0.1:P` or `wss://127.0.0.1:P`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The certificate file the gateway serves (TLS only).
    pub fn cert_path(&self) -> PathBuf {
        self.state.join("gateway/tls/gateway-cert.pem")
    }

    /// The private key file (TLS only).
    pub fn key_path(&self) -> PathBuf {
        self.state.join("gateway/tls/gateway-key.pem")
    }

    /// The pin (SHA-256 of the DER, 64 lowercase hex) of the certificate
    /// file now on disk.
    pub fn pin(&self) -> String {
        let pem = std::fs::read_to_string(self.cert_path()).expect("read gateway certificate");
        pem_pin(&pem).expect("gateway certificate PEM")
    }

    /// The gateway's main pid (also its process group), while running.
    pub fn pid(&self) -> Option<u32> {
        let mut proc = self.proc.lock().unwrap_or_else(|e| e.into_inner());
        let child = proc.child.as_mut()?;
        match child.try_wait() {
            Ok(None) => Some(child.id()),
            _ => None,
        }
    }

    /// Resident memory of the gateway's process group, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.pid().map_or(0, sys::group_rss_kib)
    }

    /// Kills the whole process group with SIGKILL and reaps it.
    pub fn kill9(&self) {
        let mut proc = self.proc.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = proc.child.take() {
            sys::kill_tree(child.id());
            let _ = child.wait();
        }
        proc.watchdog.guard(None);
    }

    /// Stops it gracefully (SIGTERM to the group; SIGKILL after 15 s).
    pub fn stop(&self) {
        let mut proc = self.proc.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = proc.child.take() {
            let _ = sys::signal_group(child.id(), libc::SIGTERM);
            let desc = sys::descendants(child.id());
            if sys::wait_timeout(&mut child, Duration::from_secs(15)).is_none() {
                sys::kill_tree(child.id());
                let _ = child.wait();
            }
            let _ = sys::signal_group(child.id(), libc::SIGKILL);
            for d in desc {
                let _ = sys::signal_pid(d, libc::SIGKILL);
            }
        }
        proc.watchdog.guard(None);
    }

    /// Starts it again on the same port, state and config (after
    /// [`Gateway::kill9`] or [`Gateway::stop`]) and waits for ready.
    /// Returns the `[gateway] ready` line (its `ts_ms` is when the gateway
    /// became ready).
    pub fn restart(&self) -> LogLine {
        self.spawn_and_wait()
    }

    /// Freezes the whole process group (SIGSTOP).
    pub fn sigstop(&self) {
        let pid = self.pid().expect("gateway running");
        sys::signal_group(pid, libc::SIGSTOP).expect("SIGSTOP the gateway");
    }

    /// Thaws the process group (SIGCONT).
    pub fn sigcont(&self) {
        let pid = self.pid().expect("gateway running");
        sys::signal_group(pid, libc::SIGCONT).expect("SIGCONT the gateway");
    }

    /// Makes the gateway restart itself in-process by editing its config
    /// (toggles `discovery.wideArea`, which needs a restart: it then sends
    /// `shutdown` and closes sockets with 1012). Waits for the restart to
    /// begin and for the new `[gateway] ready`; returns
    /// `(line "received SIGUSR2; restarting", ready line)`.
    pub fn restart_via_config(&self) -> (LogLine, LogLine) {
        let since = self.log_len();
        let text = std::fs::read_to_string(&self.config).expect("read gateway config");
        let mut cfg: Value = serde_json::from_str(&text).expect("gateway config is JSON");
        let obj = cfg.as_object_mut().expect("config object");
        let disc = obj
            .entry("discovery")
            .or_insert_with(|| serde_json::json!({}))
            .as_object_mut()
            .expect("discovery object");
        if disc.remove("wideArea").is_none() {
            disc.insert("wideArea".into(), serde_json::json!({}));
        }
        let tmp = self.config.with_extension("json.tmp");
        std::fs::write(&tmp, format!("{cfg}\n")).expect("write config");
        std::fs::rename(&tmp, &self.config).expect("replace config");
        let restarting = self
            .wait_log(since, Duration::from_secs(60), |l| {
                l.text.contains("restarting") && l.text.contains("[gateway]")
            })
            .unwrap_or_else(|| {
                panic!(
                    "the gateway did not restart after its config changed; log tail:\n{}",
                    self.log_tail(30)
                )
            });
        let ready = self
            .wait_log(restarting.offset, READY_TIMEOUT, |l| {
                l.text.contains("[gateway] ready")
            })
            .unwrap_or_else(|| {
                panic!(
                    "the gateway restarted but was not ready again; log tail:\n{}",
                    self.log_tail(30)
                )
            });
        (restarting, ready)
    }

    /// Generates a new self-signed certificate with a new RSA key (as the
    /// gateway does: `openssl req -x509 -newkey rsa:2048`, CN
    /// `openclaw-gateway`), without installing it.
    pub fn generate_cert(&self) -> NewCert {
        let dir = self.dir.join(format!("newcert-{}", random_hex(4)));
        std::fs::create_dir_all(&dir).expect("create cert dir");
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-sha256", "-days", "3650",
            ])
            .args(["-nodes", "-subj", "/CN=openclaw-gateway", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pin =
            pem_pin(&std::fs::read_to_string(&cert).expect("read new cert")).expect("new cert PEM");
        NewCert { cert, key, pin }
    }

    /// Installs `new` over the gateway's certificate and key files (atomic
    /// renames, key first) and waits until the gateway logs that it renewed
    /// its TLS material without restarting its listeners (it polls the
    /// files every second). Returns the log line.
    pub fn rotate_cert(&self, new: &NewCert) -> LogLine {
        let since = self.log_len();
        let tls_dir = self.cert_path().parent().expect("tls dir").to_path_buf();
        let key_tmp = tls_dir.join(".rotate-key.pem");
        let cert_tmp = tls_dir.join(".rotate-cert.pem");
        std::fs::copy(&new.key, &key_tmp).expect("stage key");
        std::fs::copy(&new.cert, &cert_tmp).expect("stage cert");
        std::fs::rename(&key_tmp, self.key_path()).expect("install key");
        std::fs::rename(&cert_tmp, self.cert_path()).expect("install cert");
        self.wait_log(since, Duration::from_secs(30), |l| {
            l.text.contains("TLS certificate renewed")
        })
        .unwrap_or_else(|| {
            panic!(
                "the gateway did not reload its certificate; log tail:\n{}",
                self.log_tail(30)
            )
        })
    }

    /// The log's current size in bytes (an offset for [`Gateway::log_since`]).
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// Every complete log line from byte offset `since` on.
    pub fn log_since(&self, since: u64) -> Vec<LogLine> {
        let Ok(mut f) = std::fs::File::open(&self.log) else {
            return Vec::new();
        };
        if f.seek(SeekFrom::Start(since)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        let mut out = Vec::new();
        let mut off = since;
        let mut rest = &buf[..];
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let text = String::from_utf8_lossy(&rest[..nl]).into_owned();
            out.push(LogLine {
                offset: off,
                ts_ms: sys::parse_log_ts(&text),
                text,
            });
            off += nl as u64 + 1;
            rest = &rest[nl + 1..];
        }
        out
    }

    /// Waits for a log line after `since` matching `pred`. Fails fast
    /// (returns `None`) if the gateway process exited.
    pub fn wait_log(
        &self,
        since: u64,
        timeout: Duration,
        mut pred: impl FnMut(&LogLine) -> bool,
    ) -> Option<LogLine> {
        let deadline = Instant::now() + timeout;
        let mut pos = since;
        loop {
            for line in self.log_since(pos) {
                pos = line.offset + line.text.len() as u64 + 1;
                if pred(&line) {
                    return Some(line);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            {
                let mut proc = self.proc.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(child) = proc.child.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    eprintln!("gateway exited: {status}");
                    proc.child = None;
                    return None;
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let lines = self.log_since(0);
        let start = lines.len().saturating_sub(n);
        lines[start..]
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The `[ws] ← connect` lines after `since` whose `clientDisplayName`
    /// is exactly `display_name` (give every node a unique display name).
    pub fn connects(&self, since: u64, display_name: &str) -> Vec<LogLine> {
        let token = format!("clientDisplayName={display_name}");
        self.log_since(since)
            .into_iter()
            .filter(|l| {
                l.text.contains("[ws] ← connect ") && l.text.split_whitespace().any(|w| w == token)
            })
            .collect()
    }

    /// The `[ws] → hello-ok` lines after `since`.
    pub fn hello_oks(&self, since: u64) -> Vec<LogLine> {
        self.log_since(since)
            .into_iter()
            .filter(|l| l.text.contains("[ws] → hello-ok"))
            .collect()
    }

    /// The `[ws] ← open` lines (WebSocket connections) after `since`.
    pub fn ws_opens(&self, since: u64) -> Vec<LogLine> {
        self.log_since(since)
            .into_iter()
            .filter(|l| l.text.contains("[ws] ← open "))
            .collect()
    }

    /// Runs the operator CLI (`openclaw ARGS`) against this gateway (local
    /// mode: state dir, config and token from the environment; TLS pinned
    /// to the local certificate), killing it after `timeout`.
    pub fn openclaw(&self, args: &[&str], timeout: Duration) -> CliOutput {
        let out_path = self.dir.join(format!("cli-{}.out", random_hex(6)));
        let err_path = out_path.with_extension("err");
        let started = Instant::now();
        let mut child = self
            .openclaw_command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).expect("cli stdout file"))
            .stderr(std::fs::File::create(&err_path).expect("cli stderr file"))
            .process_group(0)
            .spawn()
            .expect("spawn the openclaw CLI");
        let status = sys::wait_timeout(&mut child, timeout);
        if status.is_none() {
            let _ = sys::signal_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
        }
        let out = CliOutput {
            success: status.is_some_and(|s| s.success()),
            code: status.and_then(|s| s.code()),
            stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
            elapsed: started.elapsed(),
        };
        let _ = std::fs::remove_file(out_path);
        let _ = std::fs::remove_file(err_path);
        out
    }

    /// Calls `method` through a persistent operator connection to this
    /// gateway ([`Operator`]): an idle one, or a new one when every one is
    /// busy (tests share a gateway and call it at once). A connection that
    /// failed (the gateway restarted) is replaced once.
    pub fn rpc(&self, method: &str, params: &Value, timeout: Duration) -> Result<Value, CallError> {
        let idle = self
            .operators
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let fresh = idle.is_none();
        let mut operator = match idle {
            Some(op) => op,
            None => self.operator()?,
        };
        let mut answer = operator.call(method, params, timeout);
        if matches!(&answer, Err(e) if e.transport) && !fresh {
            operator = self.operator()?;
            answer = operator.call(method, params, timeout);
        }
        if !matches!(&answer, Err(e) if e.transport) {
            self.operators
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(operator);
        }
        answer
    }

    /// A new operator connection to this gateway.
    fn operator(&self) -> Result<Operator, CallError> {
        let pin = self.tls.then(|| self.pin());
        Operator::connect(&self.url(), pin.as_deref(), &self.token)
    }

    /// `METHOD` with `params` as `openclaw gateway call METHOD --json
    /// --params JSON` answers it (the payload on stdout; an error as
    /// `{"ok":false,"error":{...}}` with status 1), but through the
    /// persistent operator connection ([`Gateway::rpc`]): the operator's
    /// raw RPC path, for what `nodes invoke` refuses client-side
    /// (`system.run`, `system.run.prepare`).
    pub fn call(&self, method: &str, params: &Value, timeout: Duration) -> CliOutput {
        let started = Instant::now();
        let (success, body) = match self.rpc(method, params, timeout) {
            Ok(payload) => (true, payload),
            Err(e) => {
                let mut error = json!({"type": "gateway_request_error"});
                if let (Some(to), Some(from)) = (error.as_object_mut(), e.error.as_object()) {
                    to.extend(from.clone());
                }
                (false, json!({"ok": false, "error": error}))
            }
        };
        CliOutput {
            success,
            code: Some(if success { 0 } else { 1 }),
            stdout: serde_json::to_string_pretty(&body).expect("JSON") + "\n",
            stderr: String::new(),
            elapsed: started.elapsed(),
        }
    }

    /// Runs the operator CLI with `--json` appended and parses stdout.
    pub fn openclaw_json(&self, args: &[&str]) -> Result<Value, String> {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--json");
        let out = self.openclaw(&all, Duration::from_secs(60));
        if !out.success {
            return Err(format!(
                "openclaw {} failed ({:?}): stdout {:?} stderr {:?}",
                all.join(" "),
                out.code,
                out.stdout,
                out.stderr
            ));
        }
        out.json()
    }

    /// This node's entry in `node.list` (what `openclaw nodes status
    /// --json` prints), if listed; through the operator connection.
    pub fn node_status(&self, node_id: &str) -> Option<Value> {
        let status = self
            .rpc("node.list", &json!({}), Duration::from_secs(30))
            .ok()?;
        status["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["nodeId"] == node_id)
            .cloned()
    }

    /// Approves the command surface that node `node_id` declared: waits
    /// (≤ `timeout`) for its request in `node.pair.list` (what `openclaw
    /// nodes pending --json` lists), then `node.pair.approve` it, as
    /// `openclaw nodes approve <requestId>` does; through the operator
    /// connection. Returns the request id.
    pub fn approve_node(&self, node_id: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let call = Duration::from_secs(30);
        loop {
            let list = self
                .rpc("node.pair.list", &json!({}), call)
                .map_err(|e| format!("node.pair.list: {e}"))?;
            let req = list["pending"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["nodeId"] == node_id)
                .and_then(|p| p["requestId"].as_str().map(str::to_owned));
            if let Some(req) = req {
                self.rpc("node.pair.approve", &json!({"requestId": req}), call)
                    .map_err(|e| format!("node.pair.approve {req}: {e}"))?;
                return Ok(req);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no pending request for node {node_id} within {timeout:?}: {list}"
                ));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// `node.invoke` of `command` on `node_id`, answered as `openclaw nodes
    /// invoke --json` prints it, but through the operator connection.
    pub fn invoke_rpc(
        &self,
        node_id: &str,
        command: &str,
        params: &Value,
        invoke_timeout_ms: u64,
    ) -> CliOutput {
        let key = format!("inv-{}", random_hex(8));
        self.call(
            "node.invoke",
            &json!({"nodeId": node_id, "command": command, "params": params,
                    "idempotencyKey": key, "timeoutMs": invoke_timeout_ms}),
            Duration::from_millis(invoke_timeout_ms + 10_000),
        )
    }

    /// `openclaw nodes invoke --node ID --command CMD --params JSON
    /// --invoke-timeout MS --json`, with a hard limit on the CLI itself.
    pub fn invoke(
        &self,
        node_id: &str,
        command: &str,
        params: &Value,
        invoke_timeout_ms: u64,
    ) -> CliOutput {
        let params = params.to_string();
        let invoke_timeout = invoke_timeout_ms.to_string();
        let timeout = (invoke_timeout_ms + 10_000).to_string();
        self.openclaw(
            &[
                "nodes",
                "invoke",
                "--node",
                node_id,
                "--command",
                command,
                "--params",
                &params,
                "--invoke-timeout",
                &invoke_timeout,
                "--timeout",
                &timeout,
                "--json",
            ],
            Duration::from_millis(invoke_timeout_ms + 60_000),
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() || sys::keep_scratch() {
            sys::mark_keep(&self.dir);
            eprintln!("gateway files kept in {}", self.dir.display());
        }
        self.kill9();
        let mut proc = self.proc.lock().unwrap_or_else(|e| e.into_inner());
        proc.watchdog.finish();
    }
}
