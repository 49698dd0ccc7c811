//! The `clawnode` binary: usage errors, `identity`, and a run against a
//! scripted local gateway (SIGHUP reload, SIGTERM stop, --exit-on-pause).

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener as StdListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use serde_json::{Value, json};
use smol::future::FutureExt as _;
use smol::net::{TcpListener, TcpStream};
use smol::stream::StreamExt as _;

const BIN: &str = env!("CARGO_BIN_EXE_clawnode");

/// The binary's unit rendering, for the system unit, which `service
/// install` would write to /etc.
#[allow(dead_code)]
#[path = "../src/bin/clawnode/unit.rs"]
mod unit;

fn clawnode(args: &[&str], state: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .env("XDG_STATE_HOME", state)
        .env_remove("OPENCLAW_GATEWAY_TOKEN")
        .output()
        .unwrap()
}

fn assert_usage_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
}

#[test]
fn usage_errors_exit_2_naming_the_bad_value() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_usage_error(&clawnode(&[], d), "Usage");
    assert_usage_error(&clawnode(&["run"], d), "no gateway URL");
    assert_usage_error(
        &clawnode(&["run", "--url", "https://gw.example"], d),
        "https",
    );
    assert_usage_error(
        &clawnode(&["run", "--url", "ws://gw.example:1"], d),
        "wss://",
    );
    assert_usage_error(
        &clawnode(&["run", "--url", "ws://127.0.0.1:1", "--events", "xml"], d),
        "xml",
    );
    assert_usage_error(
        &clawnode(
            &[
                "run",
                "--url",
                "ws://127.0.0.1:1",
                "--commands",
                "system.which,nope",
            ],
            d,
        ),
        "\"nope\"",
    );
    assert_usage_error(
        &clawnode(
            &[
                "run",
                "--url",
                "wss://127.0.0.1:1",
                "--tofu",
                "--tls-fingerprint",
                &"a".repeat(64),
            ],
            d,
        ),
        "--tofu",
    );
    assert_usage_error(
        &clawnode(&["run", "--config", "/nonexistent/clawnode.toml"], d),
        "/nonexistent/clawnode.toml",
    );
    let bad = d.join("bad.toml");
    std::fs::write(
        &bad,
        "url = \"ws://127.0.0.1:1\"\ntls_fingerprint = \"x\"\n",
    )
    .unwrap();
    assert_usage_error(
        &clawnode(&["run", "--config", bad.to_str().unwrap()], d),
        "tls_fingerprint",
    );
    assert_usage_error(
        &clawnode(&["probe", "--url", "ws://127.0.0.1:1"], d),
        "wss://",
    );
    // A config file is read up to 1 MiB, not forever.
    let out = clawnode(&["run", "--config", "/dev/zero"], d);
    assert_usage_error(&out, "/dev/zero");
    assert_usage_error(&out, "1048576 bytes");
    // A secret in a broken config file is not echoed.
    let secret = d.join("secret.toml");
    std::fs::write(&secret, "url = \"ws://127.0.0.1:1\"\ntoken = 123456789\n").unwrap();
    let out = clawnode(&["run", "--config", secret.to_str().unwrap()], d);
    assert_usage_error(&out, "`token`");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("123456789"));
}

#[test]
fn garbage_pins_are_rejected_before_any_connection() {
    let dir = tempfile::tempdir().unwrap();
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("wss://127.0.0.1:{}", listener.local_addr().unwrap().port());
    for pin in ["zz", "sha256:1234", "not a pin at all"] {
        let out = clawnode(
            &["run", "--url", &url, "--tls-fingerprint", pin],
            dir.path(),
        );
        assert_usage_error(&out, &format!("{pin:?}"));
    }
    assert_eq!(
        listener.accept().map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::WouldBlock),
        "no connection was attempted"
    );
}

#[test]
fn identity_is_stable_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s");
    let args = ["identity", "--state-dir", state.to_str().unwrap()];
    let first = clawnode(&args, dir.path());
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = clawnode(&args, dir.path());
    assert_eq!(first.stdout, second.stdout);
    let text = String::from_utf8(first.stdout).unwrap();
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("device_id: "))
        .unwrap();
    assert_eq!(id.len(), 64);
    assert!(text.contains("public_key: "));
    // The default location comes from XDG_STATE_HOME.
    let default = clawnode(&["identity"], dir.path());
    assert!(default.status.success());
    assert!(dir.path().join("clawnode/identity.json").exists());
    // A corrupt identity is an error naming the file, never a new device.
    std::fs::write(state.join("identity.json"), "{").unwrap();
    let out = clawnode(&args, dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("identity.json"));
    assert_eq!(
        std::fs::read_to_string(state.join("identity.json")).unwrap(),
        "{"
    );
}

// ---- a scripted gateway ------------------------------------------------

type Ws = WebSocketStream<TcpStream>;

async fn within<F: std::future::Future>(f: F) -> F::Output {
    f.or(async {
        smol::Timer::after(Duration::from_secs(10)).await;
        panic!("timed out");
    })
    .await
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// The next frame, past the host stats the node reports after admission
/// (these scripts are about other frames).
async fn recv(ws: &mut Ws) -> Option<Value> {
    loop {
        match within(ws.next()).await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["params"]["event"] != "node.host.stats" {
                    return Some(v);
                }
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

async fn challenge(ws: &mut Ws) -> Value {
    send(ws, json!({"type":"event","event":"connect.challenge","payload":{"nonce":"n","ts":1_800_000_000_000u64}})).await;
    recv(ws).await.expect("connect request")
}

/// Admits the node whose connect request is `req`.
async fn hello_ok(ws: &mut Ws, req: &Value) {
    send(
        ws,
        json!({"type":"res","id":req["id"],"ok":true,"payload":{
        "type":"hello-ok","protocol":4,"server":{"version":"t","connId":"c"},
        "features":{"methods":[],"events":[]},"snapshot":{},"auth":{"role":"node","scopes":[]},
        "policy":{"maxPayload":1000000,"maxBufferedBytes":1000000,"tickIntervalMs":30000}}}),
    )
    .await;
}

/// Challenges the node and admits it; returns its connect request.
async fn admit(ws: &mut Ws) -> Value {
    let req = challenge(ws).await;
    hello_ok(ws, &req).await;
    req
}

struct Gateway {
    listener: TcpListener,
}

impl Gateway {
    fn start() -> Gateway {
        Gateway {
            listener: smol::block_on(TcpListener::bind("127.0.0.1:0")).unwrap(),
        }
    }
    fn url(&self) -> String {
        format!(
            "ws://127.0.0.1:{}",
            self.listener.local_addr().unwrap().port()
        )
    }
    async fn accept(&self) -> Ws {
        let (tcp, _) = within(self.listener.accept()).await.unwrap();
        async_tungstenite::accept_async(tcp).await.unwrap()
    }
}

fn spawn_run(args: &[&str], state: &Path) -> (Child, std::sync::mpsc::Receiver<Value>) {
    let mut child = Command::new(BIN)
        .arg("run")
        .args(args)
        .args(["--state-dir", state.to_str().unwrap(), "--events", "json"])
        .env("OPENCLAW_GATEWAY_TOKEN", "env-token")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            if tx.send(v).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

fn next_event(rx: &std::sync::mpsc::Receiver<Value>, name: &str) -> Value {
    loop {
        let v = rx.recv_timeout(Duration::from_secs(10)).expect(name);
        assert!(v["ts"].as_u64().unwrap() > 1_600_000_000_000, "{v}");
        if v["event"] == name {
            return v;
        }
    }
}

fn kill(child: &Child, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn wait(child: &mut Child) -> Option<i32> {
    for _ in 0..100 {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("clawnode did not exit");
}

#[test]
fn sighup_applies_the_file_through_the_core_and_sigterm_stops_with_1000() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start();
    let file = dir.path().join("node.toml");
    let exec = "[exec]\nsecurity = \"allowlist\"\nallow = [\"/usr/bin/uname\"]\n";
    std::fs::write(
        &file,
        format!("url = \"{}\"\nsession_id = \"1\"\n{exec}", gw.url()),
    )
    .unwrap();
    let stored = || -> Value {
        let text = std::fs::read_to_string(dir.path().join("state/exec-approvals.json"))
            .expect("the [exec] policy was stored");
        serde_json::from_str(&text).unwrap()
    };
    let (mut child, events) = spawn_run(
        &["--config", file.to_str().unwrap()],
        &dir.path().join("state"),
    );
    smol::block_on(async {
        let mut ws = gw.accept().await;
        let req = challenge(&mut ws).await;
        // The token came from OPENCLAW_GATEWAY_TOKEN.
        assert_eq!(req["params"]["auth"]["token"], "env-token");
        assert_eq!(
            req["params"]["commands"],
            json!([
                "system.execApprovals.get",
                "system.execApprovals.set",
                "system.run",
                "system.run.prepare",
                "system.which"
            ])
        );
        assert_eq!(req["params"]["client"]["platform"], "linux");
        assert_eq!(req["params"]["client"]["id"], "node-host");
        hello_ok(&mut ws, &req).await;
        let connecting = next_event(&events, "connecting");
        assert_eq!(connecting["attempt"], 1);
        let connected = next_event(&events, "connected");
        assert_eq!(connected["connId"], "c");
        assert_eq!(connected["tickIntervalMs"], 30000);
        let policy = stored();
        assert_eq!(policy["defaults"]["security"], "allowlist", "{policy}");
        assert_eq!(
            policy["agents"]["*"]["allowlist"][0]["pattern"], "/usr/bin/uname",
            "{policy}"
        );

        // Unchanged file: nothing happens.
        kill(&child, "-HUP");
        assert_eq!(next_event(&events, "config")["changed"], false);
        // Changed file: exactly one reconnect.
        std::fs::write(
            &file,
            format!(
                "url = \"{}\"\nsession_id = \"2\"\n{}",
                gw.url(),
                exec.replace("allowlist", "full")
            ),
        )
        .unwrap();
        kill(&child, "-HUP");
        assert_eq!(next_event(&events, "config")["changed"], true);
        assert_eq!(stored()["defaults"]["security"], "full");
        assert!(recv(&mut ws).await.is_none(), "old socket closed");
        let mut ws2 = gw.accept().await;
        admit(&mut ws2).await;
        assert_eq!(next_event(&events, "connected")["attempt"], 2);

        // A broken file is reported and the config in force stays.
        std::fs::write(&file, "url = 1\n").unwrap();
        kill(&child, "-HUP");
        smol::Timer::after(Duration::from_millis(200)).await;

        kill(&child, "-TERM");
        let mut code = None;
        loop {
            match within(ws2.next()).await {
                Some(Ok(Message::Close(f))) => code = f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                _ => break,
            }
        }
        assert_eq!(code, Some(1000));
    });
    assert_eq!(wait(&mut child), Some(0));
    let rest: Vec<Value> = events.try_iter().collect();
    assert!(
        rest.iter().all(|e| e["event"] != "connecting"),
        "no reconnect after the broken file: {rest:?}"
    );
}

#[test]
fn exit_on_pause_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start();
    let (mut child, events) = spawn_run(
        &["--url", &gw.url(), "--exit-on-pause"],
        &dir.path().join("state"),
    );
    smol::block_on(async {
        let mut ws = gw.accept().await;
        let req = challenge(&mut ws).await;
        send(&mut ws, json!({"type":"res","id":req["id"],"ok":false,"error":{
            "code":"INVALID_REQUEST","message":"unauthorized",
            "details":{"code":"AUTH_TOKEN_MISMATCH","recommendedNextStep":"update_auth_configuration"}}})).await;
        let paused = next_event(&events, "paused");
        assert_eq!(paused["code"], "AUTH_TOKEN_MISMATCH");
        assert!(!paused["hint"].as_str().unwrap().is_empty());
    });
    assert_eq!(wait(&mut child), Some(3));
}

/// With stdout a pipe nobody reads, flooded with events, SIGTERM still
/// makes `clawnode` close with 1000 and exit within 2 s.
#[test]
fn sigterm_exits_promptly_while_stdout_is_stalled() {
    stalled_stdout_then_sigterm(true);
}

/// The same, with a gateway that no longer reads either (the close is
/// never answered): the host gives up waiting and still exits within 2 s.
#[test]
fn sigterm_exits_promptly_while_stdout_and_the_gateway_are_stalled() {
    stalled_stdout_then_sigterm(false);
}

/// Every event of the flood skips a seq, so each becomes a printed
/// `seq_gap` line of some 70 bytes: far more than a pipe holds (64 KiB)
/// plus the host's queue.
const FLOOD: u64 = 10_000;

/// A `clawnode run --events json` whose stdout nobody has read, after a
/// flood of `FLOOD - 1` gap events and one invoke; stderr goes to a file.
struct Stalled {
    _dir: tempfile::TempDir,
    child: Child,
    stdout: std::process::ChildStdout,
    ws: Ws,
    stderr_path: std::path::PathBuf,
}

impl Stalled {
    fn start() -> Stalled {
        let dir = tempfile::tempdir().unwrap();
        let gw = Gateway::start();
        let state = dir.path().join("state");
        let stderr_path = dir.path().join("stderr.log");
        let mut child = Command::new(BIN)
            .args(["run", "--url", &gw.url(), "--events", "json"])
            .args(["--state-dir", state.to_str().unwrap()])
            .env("OPENCLAW_GATEWAY_TOKEN", "env-token")
            .stdout(Stdio::piped())
            // A file: stderr must not stall too.
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        // Held open and not read.
        let stdout = child.stdout.take().unwrap();
        let ws = smol::block_on(async {
            let mut ws = gw.accept().await;
            let req = admit(&mut ws).await;
            let device_id = req["params"]["device"]["id"].clone();
            for i in 0..FLOOD {
                send(
                    &mut ws,
                    json!({"type":"event","event":"flood","seq":2 * i + 1}),
                )
                .await;
            }
            // An invoke is answered only once the flood before it was
            // handled: one socket's frames are handled in order.
            send(
                &mut ws,
                json!({"type":"event","event":"node.invoke.request","payload":{
                    "id":"inv-1","nodeId":device_id,"command":"system.which",
                    "paramsJSON":"{\"bins\":[\"sh\"]}","timeoutMs":30000}}),
            )
            .await;
            let result = recv(&mut ws).await.expect("the invoke result");
            assert_eq!(result["method"], "node.invoke.result", "{result}");
            send(
                &mut ws,
                json!({"type":"res","id":result["id"],"ok":true,"payload":{}}),
            )
            .await;
            ws
        });
        // Let the host print until stdout blocks.
        std::thread::sleep(Duration::from_millis(500));
        let mut s = Stalled {
            _dir: dir,
            child,
            stdout,
            ws,
            stderr_path,
        };
        assert!(s.child.try_wait().unwrap().is_none(), "{}", s.stderr());
        s
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

/// The lines of `text`, each a JSON object.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// Once stdout is read again, one `lagged` line accounts for every event
/// that did not fit, even though no further event comes.
#[test]
fn a_stalled_stdout_read_again_gets_the_count_of_what_it_missed() {
    let Stalled {
        _dir,
        mut child,
        stdout,
        mut ws,
        stderr_path,
    } = Stalled::start();
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let reader = BufReader::new(stdout);
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in reader.lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The gap events report `got` = 3, 5, …, LAST. Between two printed
    // ones, every missing one must be covered by `lagged` lines in between
    // (their count may be larger: it also covers gateway events, which the
    // host does not print); the same holds after the last printed one.
    const LAST: u64 = 2 * (FLOOD - 1) + 1;
    let (mut prev_got, mut lagged_since, mut notices, mut printed) = (1u64, 0u64, 0, 0u64);
    let mut total_dropped = 0;
    loop {
        let trailing_missing = (LAST - prev_got) / 2;
        if trailing_missing == 0 || (lagged_since >= trailing_missing && notices > 0) {
            break;
        }
        let line = lines.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| {
            panic!(
                "up to got={prev_got}, {lagged_since} dropped since, {trailing_missing} unaccounted: {}",
                stderr()
            )
        });
        let v: Value = serde_json::from_str(&line).unwrap();
        match v["event"].as_str().unwrap() {
            "seq_gap" => {
                let got = v["got"].as_u64().unwrap();
                let missing = (got - prev_got) / 2 - 1;
                assert!(
                    missing <= lagged_since,
                    "{missing} gap events before {v} missing, {lagged_since} reported"
                );
                prev_got = got;
                lagged_since = 0;
                printed += 1;
            }
            "lagged" => {
                notices += 1;
                let n = v["dropped"].as_u64().unwrap();
                lagged_since += n;
                total_dropped += n;
            }
            _ => {}
        }
    }
    assert!(notices > 0, "stdout was stalled: something was dropped");
    eprintln!(
        "MEASURE stalled_then_read printed_gaps={printed} of {} lagged_lines={notices} dropped_total={total_dropped}",
        FLOOD - 1
    );
    kill(&child, "-TERM");
    smol::block_on(async { while let Some(Ok(_)) = within(ws.next()).await {} });
    drop(ws);
    assert_eq!(wait(&mut child), Some(0), "{}", stderr());
}

fn stalled_stdout_then_sigterm(gateway_answers: bool) {
    let Stalled {
        _dir,
        mut child,
        mut stdout,
        mut ws,
        stderr_path,
    } = Stalled::start();
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let peak_rss_kib = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        });

    /// Reads to the end of the socket; the close code seen, if any.
    async fn close_code(ws: &mut Ws) -> Option<u16> {
        let mut code = None;
        loop {
            match within(ws.next()).await {
                Some(Ok(Message::Close(f))) => code = f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                _ => return code,
            }
        }
    }

    let sent = std::time::Instant::now();
    kill(&child, "-TERM");
    let (status, elapsed, code) = smol::block_on(async {
        let exited = async {
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    return (status, sent.elapsed());
                }
                if sent.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    panic!("clawnode did not exit: {}", stderr());
                }
                smol::Timer::after(Duration::from_millis(5)).await;
            }
        };
        if gateway_answers {
            // Read on, answering the close handshake, then hang up
            // (dropping the socket), as a gateway does.
            let closed = async move { close_code(&mut ws).await };
            let ((status, elapsed), code) = smol::future::zip(exited, closed).await;
            (status, elapsed, code)
        } else {
            // Read nothing until the node is gone; the close frame it sent
            // is still in the socket.
            let (status, elapsed) = exited.await;
            (status, elapsed, close_code(&mut ws).await)
        }
    });
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
    let lines = json_lines(&out);
    eprintln!(
        "MEASURE gateway_answers_close={gateway_answers} sigterm_to_exit_ms={} \
         stdout_stalled_bytes={} stdout_lines={} of {} gaps, peak_rss_kib={}",
        elapsed.as_millis(),
        out.len(),
        lines.len(),
        FLOOD - 1,
        peak_rss_kib.map_or("?".into(), |k| k.to_string()),
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "exit took {elapsed:?}: {}",
        stderr()
    );
    assert_eq!(status.code(), Some(0), "{}", stderr());
    assert_eq!(code, Some(1000), "a graceful close: {}", stderr());
    // stdout really was stalled: it holds a fraction of the gaps.
    let gaps = lines.iter().filter(|l| l["event"] == "seq_gap").count() as u64;
    assert!(gaps > 0 && gaps < FLOOD / 2, "{gaps} gap lines");
}

#[test]
fn approvals_are_shown_and_changed_on_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let json = |out: Output| -> Value {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let shown = json(clawnode(&["approvals", "show"], dir.path()));
    assert_eq!(shown["exists"], false);
    assert_eq!(shown["resolvedDefaults"]["security"], "deny");
    json(clawnode(
        &[
            "approvals",
            "set",
            "--security",
            "allowlist",
            "--ask",
            "on-miss",
        ],
        dir.path(),
    ));
    let allowed = json(clawnode(
        &["approvals", "allow", "/usr/bin/uname"],
        dir.path(),
    ));
    assert_eq!(allowed["file"]["defaults"]["security"], "allowlist");
    assert_eq!(
        allowed["file"]["agents"]["*"]["allowlist"][0]["pattern"],
        "/usr/bin/uname"
    );
    let removed = json(clawnode(
        &["approvals", "disallow", "/usr/bin/uname"],
        dir.path(),
    ));
    assert_eq!(removed["file"]["agents"]["*"], serde_json::json!({}));
    let bad = clawnode(
        &["approvals", "set", "--security", "everything"],
        dir.path(),
    );
    assert_usage_error(&bad, "everything");
}

#[test]
fn identity_json_is_one_line_and_linked_as_openclaw_it_answers_the_ssh_probe() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("xdg");
    // The probe's command line, through a link named `openclaw`, with the
    // default state directory of the user it runs as.
    let link = dir.path().join("openclaw");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let probe = || {
        Command::new(&link)
            .args(["node", "identity", "--json"])
            .env("XDG_STATE_HOME", &state)
            .output()
            .unwrap()
    };
    let missing = clawnode(&["identity", "--json"], &state);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(probe().status.code(), Some(1));
    assert!(
        !state.join("clawnode/identity.json").exists(),
        "a probe creates nothing"
    );
    assert!(clawnode(&["identity"], &state).status.success());
    let out = clawnode(&["identity", "--json"], &state);
    let line = String::from_utf8(out.stdout).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        line,
        format!(
            "{{\"deviceId\":\"{}\",\"publicKey\":\"{}\"}}\n",
            v["deviceId"].as_str().unwrap(),
            v["publicKey"].as_str().unwrap()
        )
    );
    assert_eq!(String::from_utf8(probe().stdout).unwrap(), line);
    let other = Command::new(&link).args(["node", "run"]).output().unwrap();
    assert_eq!(other.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&other.stderr).contains("node identity --json"));
}

#[test]
fn a_bad_setup_code_is_refused_naming_the_part_and_never_echoing_the_token() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let code = |v: Value| {
        format!(
            "oc-pair://{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        )
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for (text, needle) in [
        (
            code(
                json!({"url": "wss://127.0.0.1:1", "bootstrapToken": "boot-secret",
                        "expiresAtMs": now - 120_000}),
            ),
            "expired",
        ),
        (
            code(json!({"url": "ws://203.0.113.9:18789", "bootstrapToken": "boot-secret"})),
            "plaintext ws://",
        ),
        (
            code(json!({"bootstrapToken": "boot-secret"})),
            "`url` is missing",
        ),
        ("oc-pair://not a code".to_owned(), "not base64url"),
    ] {
        let out = clawnode(&["run", "--pair", &text], dir.path());
        assert_usage_error(&out, needle);
        assert!(!String::from_utf8_lossy(&out.stderr).contains("boot-secret"));
    }
    // A shared token does not go with a setup code.
    let out = clawnode(&["run", "--pair", "x", "--token", "t"], dir.path());
    assert_eq!(out.status.code(), Some(2));
}

/// `systemd-analyze verify` on `unit`: its complaints (it exits 0 even
/// when it ignores a line, so silence is the pass).
fn systemd_verify(unit: &Path) -> Option<String> {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .ok()?;
    Some(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

#[test]
fn service_install_writes_a_unit_systemd_accepts_and_keeps_the_token_out_of_it() {
    use std::os::unix::fs::PermissionsExt as _;
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let install = |args: &[&str], token: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["service", "install", "--no-start"])
            .args(args)
            .env("HOME", home.path())
            .env("USER", "clawnode-test-user")
            .env_remove("OPENCLAW_GATEWAY_TOKEN");
        if let Some(t) = token {
            cmd.env("OPENCLAW_GATEWAY_TOKEN", t);
        }
        cmd.output().unwrap()
    };
    // Nothing to connect to yet: refused, naming how to pair.
    let nothing = install(&["--state-dir", state.to_str().unwrap()], None);
    assert_usage_error(&nothing, "--pair");

    let out = install(
        &[
            "--state-dir",
            state.to_str().unwrap(),
            "--url",
            "wss://127.0.0.1:18789",
            "--display-name",
            "50% \"lab\" box",
        ],
        Some("s3cret-token"),
    );
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("loginctl enable-linger clawnode-test-user"),
        "the lingering warning: {stderr}"
    );
    let unit = home.path().join(".config/systemd/user/clawnode.service");
    let env = home.path().join(".config/clawnode/clawnode.env");
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    let env_text = std::fs::read_to_string(&env).unwrap();
    assert!(!unit_text.contains("s3cret-token"), "{unit_text}");
    assert!(env_text.contains("OPENCLAW_GATEWAY_TOKEN='s3cret-token'"));
    assert_eq!(
        std::fs::metadata(&env).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(unit_text.contains(" run --exit-on-pause "), "{unit_text}");
    assert!(unit_text.contains("RestartPreventExitStatus=2 3"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("s3cret-token"));

    match systemd_verify(&unit) {
        Some(complaints) => {
            assert_eq!(complaints, "", "systemd-analyze verify: {unit_text}");
            // The system unit too (it is written to /etc, so rendered here).
            use unit::{Scope, UnitSpec, paths, render_unit};
            let system = home.path().join("system.service");
            std::fs::write(
                &system,
                render_unit(&UnitSpec {
                    scope: Scope::System,
                    binary: BIN.into(),
                    run_args: vec!["--state-dir".into(), "/var/lib/clawnode".into()],
                    env_file: paths(Scope::System, home.path()).1,
                }),
            )
            .unwrap();
            assert_eq!(systemd_verify(&system).unwrap(), "", "the system unit");
            // The check has teeth: a unit with a bad line is reported.
            let bad = home.path().join("bad.service");
            std::fs::write(
                &bad,
                unit_text.replace("Restart=on-failure", "Restart=often"),
            )
            .unwrap();
            let complaint = systemd_verify(&bad).unwrap();
            assert!(complaint.contains("often"), "{complaint:?}");
        }
        None if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false") => {
            panic!("systemd-analyze is missing; scripts/test.sh installs Debian's systemd")
        }
        None => eprintln!("systemd-analyze not found: unit not verified"),
    }

    // Installed again without a token: the token file is kept, not emptied.
    let again = install(
        &[
            "--state-dir",
            state.to_str().unwrap(),
            "--url",
            "wss://127.0.0.1:18789",
        ],
        None,
    );
    assert!(again.status.success(), "{again:?}");
    assert!(
        std::fs::read_to_string(&env)
            .unwrap()
            .contains("s3cret-token")
    );

    // Uninstall removes both files (systemctl may be absent here).
    let removed = Command::new(BIN)
        .args(["service", "uninstall"])
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(removed.status.success(), "{removed:?}");
    assert!(!unit.exists() && !env.exists());
}

#[test]
fn explicit_flags_override_the_setup_code_and_the_bootstrap_token_is_sent_alone() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start();
    // The code names another gateway, pinned; --url moves the node to this
    // one (and drops the code's pin, which was for the other URL).
    let code = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        json!({"url": "wss://127.0.0.1:9", "bootstrapToken": "boot-token",
               "tlsFingerprint": "ab".repeat(32)})
        .to_string(),
    );
    let (mut child, events) = spawn_run(
        &["--pair", &format!("oc-pair://{code}"), "--url", &gw.url()],
        &dir.path().join("state"),
    );
    smol::block_on(async {
        let mut ws = gw.accept().await;
        let req = challenge(&mut ws).await;
        // OPENCLAW_GATEWAY_TOKEN is set, but pairing does not use it.
        assert_eq!(
            req["params"]["auth"],
            json!({"bootstrapToken": "boot-token"})
        );
        hello_ok(&mut ws, &req).await;
        let connecting = next_event(&events, "connecting");
        assert_eq!(connecting["url"], format!("{}/", gw.url()), "{connecting}");
        next_event(&events, "connected");
        kill(&child, "-TERM");
        while recv(&mut ws).await.is_some() {}
    });
    assert_eq!(wait(&mut child), Some(0));
    // Admitted: the gateway is remembered, and no token was written.
    let remembered: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("state/paired-gateway.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(remembered["url"], format!("{}/", gw.url()));
    assert_eq!(remembered["tlsFingerprints"], json!([]));
    let all = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(!all.contains("boot-token"));
}
