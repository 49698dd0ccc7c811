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

async fn recv(ws: &mut Ws) -> Option<Value> {
    loop {
        match within(ws.next()).await {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

async fn challenge(ws: &mut Ws) -> Value {
    send(ws, json!({"type":"event","event":"connect.challenge","payload":{"nonce":"n","ts":1_800_000_000_000u64}})).await;
    recv(ws).await.expect("connect request")
}

async fn admit(ws: &mut Ws) {
    let req = challenge(ws).await;
    send(
        ws,
        json!({"type":"res","id":req["id"],"ok":true,"payload":{
        "type":"hello-ok","protocol":4,"server":{"version":"t","connId":"c"},
        "features":{"methods":[],"events":[]},"snapshot":{},"auth":{"role":"node","scopes":[]},
        "policy":{"maxPayload":1000000,"maxBufferedBytes":1000000,"tickIntervalMs":30000}}}),
    )
    .await;
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
    std::fs::write(
        &file,
        format!("url = \"{}\"\nsession_id = \"1\"\n", gw.url()),
    )
    .unwrap();
    let (mut child, events) = spawn_run(
        &["--config", file.to_str().unwrap()],
        &dir.path().join("state"),
    );
    smol::block_on(async {
        let mut ws = gw.accept().await;
        let req = challenge(&mut ws).await;
        // The token came from OPENCLAW_GATEWAY_TOKEN.
        assert_eq!(req["params"]["auth"]["token"], "env-token");
        assert_eq!(req["params"]["commands"], json!(["system.which"]));
        assert_eq!(req["params"]["client"]["platform"], "linux");
        assert_eq!(req["params"]["client"]["id"], "node-host");
        send(
            &mut ws,
            json!({"type":"res","id":req["id"],"ok":true,"payload":{
            "type":"hello-ok","protocol":4,"server":{"version":"t","connId":"c"},
            "features":{"methods":[],"events":[]},"snapshot":{},"auth":{"role":"node","scopes":[]},
            "policy":{"maxPayload":1000000,"maxBufferedBytes":1000000,"tickIntervalMs":30000}}}),
        )
        .await;
        let connecting = next_event(&events, "connecting");
        assert_eq!(connecting["attempt"], 1);
        let connected = next_event(&events, "connected");
        assert_eq!(connected["connId"], "c");
        assert_eq!(connected["tickIntervalMs"], 30000);

        // Unchanged file: nothing happens.
        kill(&child, "-HUP");
        assert_eq!(next_event(&events, "config")["changed"], false);
        // Changed file: exactly one reconnect.
        std::fs::write(
            &file,
            format!("url = \"{}\"\nsession_id = \"2\"\n", gw.url()),
        )
        .unwrap();
        kill(&child, "-HUP");
        assert_eq!(next_event(&events, "config")["changed"], true);
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
