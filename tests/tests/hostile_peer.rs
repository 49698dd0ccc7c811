//! The `clawnode` binary against a hostile WebSocket peer on loopback: the
//! behaviour a real gateway will not produce, scripted here in addition to
//! the interop suite.
//!
//! - frames over 64 KiB before hello-ok, and over `maxPayload` after it,
//!   are refused at read time (the node's peak memory stays small);
//! - a repeated invoke id is answered as a repeat, never run twice.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clawnode_tests::{Node, NodeOptions, clawnode_bin};
use serde_json::{Value, json};
use tungstenite::handshake::server::{Request, Response};
use tungstenite::{Message, WebSocket};

type Peer = WebSocket<TcpStream>;

/// A loopback listener; `serve` runs for each connection in turn.
fn listen(serve: impl Fn(usize, Peer) + Send + 'static) -> u16 {
    listen_with_headers(0, serve)
}

/// [`listen`], with `extra` bytes of further headers in the upgrade
/// response, as a reverse proxy adds them.
fn listen_with_headers(extra: usize, serve: impl Fn(usize, Peer) + Send + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for (i, tcp) in listener.incoming().enumerate() {
            let Ok(tcp) = tcp else { return };
            // The callback's signature is tungstenite's; its error type is
            // never built here.
            #[allow(clippy::result_large_err)]
            let add = |_: &Request, mut response: Response| {
                let h = response.headers_mut();
                for n in 0..extra / 64 {
                    let name = format!("x-proxy-{n}");
                    let value = "v".repeat(50);
                    h.insert(
                        tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                        value.parse().expect("value"),
                    );
                }
                Ok(response)
            };
            let Ok(ws) = tungstenite::accept_hdr(tcp, add) else {
                continue;
            };
            serve(i, ws);
        }
    });
    port
}

fn send(ws: &mut Peer, v: Value) {
    let _ = ws.send(Message::text(v.to_string()));
}

fn recv(ws: &mut Peer) -> Option<Value> {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => return serde_json::from_str(t.as_str()).ok(),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// The gateway's side of the handshake, announcing `max_payload`; the
/// connect request is not verified (this peer is not a gateway).
fn admit(ws: &mut Peer, max_payload: u64) -> Option<Value> {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    send(
        ws,
        json!({"type":"event","event":"connect.challenge","payload":{"nonce":"n","ts":ts}}),
    );
    let req = recv(ws)?;
    send(
        ws,
        json!({"type":"res","id":req["id"],"ok":true,"payload":{
            "type":"hello-ok","protocol":4,"server":{"version":"hostile","connId":"h"},
            "auth":{"role":"node","scopes":[]},
            "policy":{"maxPayload":max_payload,"tickIntervalMs":30000}}}),
    );
    Some(req)
}

/// A text frame of `len` bytes: valid JSON, so only its size is wrong.
fn big(len: usize) -> Message {
    let pad = "x".repeat(len.saturating_sub(40));
    Message::text(format!(
        r#"{{"type":"event","event":"pad","payload":"{pad}"}}"#
    ))
}

fn node(port: u16, name: &str) -> Node {
    Node::spawn(
        &clawnode_bin(),
        NodeOptions::new(&format!("ws://127.0.0.1:{port}"), "t", name),
    )
}

/// The node's peak resident set (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn disconnect_reasons(node: &Node) -> Vec<String> {
    node.named_since(0, "disconnected")
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn frames_over_64_kib_before_hello_ok_are_refused_at_read_time() {
    // 48 MiB instead of a challenge, on every connection.
    let port = listen(|_, mut ws| {
        let _ = ws.send(big(48 << 20));
    });
    let node = node(port, "oversize-pre");
    let (_, first) = node.expect(0, "disconnected", Duration::from_secs(20));
    node.wait_for(0, Duration::from_secs(20), |e| {
        e["event"] == "disconnected" && e["attempt"] == 3
    })
    .unwrap_or_else(|| panic!("three attempts\n{}", node.dump()));
    let peak = peak_rss_kib(node.pid());
    eprintln!(
        "MEASURE hostile oversize_before_hello_ok peak_rss_kib={peak} attempts=3 first={first}"
    );
    for reason in disconnect_reasons(&node) {
        assert!(
            reason.contains("over the 65536-byte limit"),
            "{reason}\n{}",
            node.dump()
        );
    }
    assert!(peak < 32 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn frames_over_max_payload_after_hello_ok_are_refused_at_read_time() {
    let port = listen(|_, mut ws| {
        if admit(&mut ws, 1 << 20).is_some() {
            // Right behind hello-ok: within maxPayload but over the
            // handshake's 64 KiB, then over maxPayload.
            let _ = ws.send(big(512 << 10));
            let _ = ws.send(big(40 << 20));
        }
    });
    let node = node(port, "oversize-post");
    let (ci, _) = node.expect(0, "connected", Duration::from_secs(20));
    let (_, disc) = node.expect(ci, "disconnected", Duration::from_secs(20));
    let peak = peak_rss_kib(node.pid());
    eprintln!("MEASURE hostile oversize_after_hello_ok peak_rss_kib={peak} disconnect={disc}");
    // The 512 KiB frame sent right behind hello-ok met the raised limit.
    assert_eq!(disc["attempt"], 1, "{}", node.dump());
    assert!(
        disc["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("over the 1048576-byte limit"),
        "{disc}\n{}",
        node.dump()
    );
    assert!(peak < 32 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn a_repeated_invoke_id_is_answered_but_never_run_twice() {
    let (tx, rx) = std::sync::mpsc::channel::<Vec<Value>>();
    let port = listen(move |i, mut ws| {
        if i > 0 {
            return;
        }
        let Some(req) = admit(&mut ws, 25 << 20) else {
            return;
        };
        let node_id = req["params"]["device"]["id"].clone();
        let invoke = json!({"type":"event","event":"node.invoke.request","payload":{
            "id":"inv-1","nodeId":node_id,"command":"system.which",
            "paramsJSON":"{\"bins\":[\"sh\"]}","timeoutMs":5000}});
        let mut results = Vec::new();
        for wait in [0, 0, 500] {
            std::thread::sleep(Duration::from_millis(wait));
            send(&mut ws, invoke.clone());
            // Collect the answer to this copy.
            while let Some(frame) = recv(&mut ws) {
                if frame["method"] == "node.invoke.result" {
                    send(
                        &mut ws,
                        json!({"type":"res","id":frame["id"],"ok":true,"payload":{}}),
                    );
                    results.push(frame["params"].clone());
                    break;
                }
            }
        }
        let _ = tx.send(results);
        let _ = ws.read();
    });
    let node = node(port, "repeat");
    node.expect(0, "connected", Duration::from_secs(20));
    let results = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("three answers\n{}", node.dump()));
    eprintln!("MEASURE hostile repeated_invoke answers={results:?}");
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["ok"], true, "{results:?}");
    for r in &results[1..] {
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(r["error"]["code"], "INVALID_REQUEST", "{r}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(node.named_since(0, "invoke").len(), 1, "{}", node.dump());
}

#[test]
fn a_long_upgrade_response_from_a_proxy_still_connects() {
    let port = listen_with_headers(2048, |_, mut ws| {
        if admit(&mut ws, 1 << 20).is_some() {
            let _ = ws.read();
        }
    });
    let node = node(port, "proxy-headers");
    node.expect(0, "connected", Duration::from_secs(20));
}

#[test]
fn a_gateway_that_stops_reading_gets_its_socket_failed_not_a_growing_queue() {
    let port = listen(|i, mut ws| {
        if i > 0 {
            return;
        }
        let Some(req) = admit(&mut ws, 25 << 20) else {
            return;
        };
        let node_id = req["params"]["device"]["id"].clone();
        // Invokes as fast as the node takes them; its answers are never read.
        for n in 0..200_000 {
            let invoke = json!({"type":"event","event":"node.invoke.request","payload":{
                "id":format!("inv-{n}"),"nodeId":node_id,"command":"system.which",
                "paramsJSON":"{\"bins\":[\"sh\"]}","timeoutMs":5000}});
            if ws.send(Message::text(invoke.to_string())).is_err() {
                return;
            }
        }
    });
    let node = node(port, "not-reading");
    let (ci, _) = node.expect(0, "connected", Duration::from_secs(20));
    let (_, disc) = node.expect(ci, "disconnected", Duration::from_secs(120));
    let peak = peak_rss_kib(node.pid());
    eprintln!("MEASURE hostile not_reading peak_rss_kib={peak} disconnect={disc}");
    assert!(
        disc["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("the gateway is not reading"),
        "{disc}\n{}",
        node.dump()
    );
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}
