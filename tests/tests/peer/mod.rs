//! A hostile WebSocket peer on loopback, shared by the hostile-peer suites:
//! it admits the node with a made-up hello-ok and then sends what a real
//! gateway never would.

// Each suite uses part of this module.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::time::{SystemTime, UNIX_EPOCH};

use clawnode_tests::{Node, NodeOptions, clawnode_bin};
use serde_json::{Value, json};
use tungstenite::handshake::server::{Request, Response};
use tungstenite::{Message, WebSocket};

/// The peer's side of one connection.
pub type Peer = WebSocket<TcpStream>;

/// A loopback listener; `serve` runs for each connection in turn.
pub fn listen(serve: impl Fn(usize, Peer) + Send + 'static) -> u16 {
    listen_with_headers(0, serve)
}

/// [`listen`], with `extra` bytes of further headers in the upgrade
/// response, as a reverse proxy adds them.
pub fn listen_with_headers(extra: usize, serve: impl Fn(usize, Peer) + Send + 'static) -> u16 {
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

pub fn send(ws: &mut Peer, v: Value) {
    let _ = ws.send(Message::text(v.to_string()));
}

pub fn recv(ws: &mut Peer) -> Option<Value> {
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
pub fn admit(ws: &mut Peer, max_payload: u64) -> Option<Value> {
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

pub fn node(port: u16, name: &str) -> Node {
    Node::spawn(
        &clawnode_bin(),
        NodeOptions::new(&format!("ws://127.0.0.1:{port}"), "t", name),
    )
}

/// A peer for the first connection only: admits it, waits for `go` (the
/// test has set the node's policy), then runs `body` with the node's id.
pub fn admit_then(
    go: std::sync::mpsc::Receiver<()>,
    body: impl FnOnce(&mut Peer, Value) + Send + 'static,
) -> u16 {
    let body = std::sync::Mutex::new(Some(body));
    listen(move |i, mut ws| {
        if i > 0 {
            return;
        }
        let Some(req) = admit(&mut ws, 25 << 20) else {
            return;
        };
        let node_id = req["params"]["device"]["id"].clone();
        if go.recv().is_err() {
            return;
        }
        if let Some(body) = body.lock().ok().and_then(|mut b| b.take()) {
            body(&mut ws, node_id);
        }
    })
}

/// A `system.run` request for `argv` with `extra` params.
pub fn run_request(id: &str, node_id: &Value, argv: &[&str], extra: Value) -> Value {
    let mut params = json!({"command": argv, "sessionKey": "hostile", "runId": id});
    if let (Value::Object(p), Value::Object(e)) = (&mut params, extra) {
        p.extend(e);
    }
    json!({"type":"event","event":"node.invoke.request","payload":{
        "id": id, "nodeId": node_id, "command": "system.run",
        "paramsJSON": params.to_string(), "timeoutMs": 30_000}})
}

/// Reads until `n` invoke results arrived (acknowledging each), or the
/// socket ends; `also` sees every other text frame.
pub fn results(ws: &mut Peer, n: usize, mut also: impl FnMut(&Value)) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        let Some(frame) = recv(ws) else { break };
        if frame["method"] == "node.invoke.result" {
            send(
                ws,
                json!({"type":"res","id":frame["id"],"ok":true,"payload":{}}),
            );
            out.push(frame["params"].clone());
        } else {
            also(&frame);
        }
    }
    out
}

/// A hostile gateway driven step by step from the test: it admits the
/// node's first connection, sends what the test hands it, and records every
/// frame the node sends (acknowledging each request).
pub struct Remote {
    out: std::sync::mpsc::Sender<Value>,
    frames: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    node_id: std::sync::Arc<std::sync::Mutex<Option<Value>>>,
}

impl Remote {
    /// Listens on loopback; returns the port and the handle.
    pub fn start() -> (u16, Remote) {
        use std::sync::{Arc, Mutex, mpsc};
        let (out, inbox) = mpsc::channel::<Value>();
        let inbox = Mutex::new(Some(inbox));
        let frames: Arc<Mutex<Vec<Value>>> = Arc::default();
        let node_id: Arc<Mutex<Option<Value>>> = Arc::default();
        let (f, n) = (frames.clone(), node_id.clone());
        let port = listen(move |i, mut ws| {
            if i > 0 {
                return;
            }
            let Some(inbox) = inbox.lock().ok().and_then(|mut i| i.take()) else {
                return;
            };
            let Some(req) = admit(&mut ws, 25 << 20) else {
                return;
            };
            *n.lock().expect("lock") = Some(req["params"]["device"]["id"].clone());
            let _ = ws
                .get_mut()
                .set_read_timeout(Some(std::time::Duration::from_millis(10)));
            loop {
                while let Ok(frame) = inbox.try_recv() {
                    send(&mut ws, frame);
                }
                match ws.read() {
                    Ok(Message::Text(t)) => {
                        let frame: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                        if frame["type"] == "req" {
                            send(
                                &mut ws,
                                json!({"type":"res","id":frame["id"],"ok":true,"payload":{}}),
                            );
                        }
                        f.lock().expect("lock").push(frame);
                    }
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e)) if clawnode_tests::sys::read_timed_out(&e) => {}
                    Err(_) => return,
                }
            }
        });
        (
            port,
            Remote {
                out,
                frames,
                node_id,
            },
        )
    }

    /// The node's id, once it was admitted (≤ 20 s).
    pub fn node_id(&self) -> Value {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(id) = self.node_id.lock().expect("lock").clone() {
                return id;
            }
            assert!(
                std::time::Instant::now() < until,
                "the node never connected"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Sends `command` with `params` as invoke `id`.
    pub fn invoke(&self, id: &str, command: &str, params: &Value) {
        let frame = json!({"type":"event","event":"node.invoke.request","payload":{
            "id": id, "nodeId": self.node_id(), "command": command,
            "paramsJSON": params.to_string(), "timeoutMs": 60_000}});
        self.out.send(frame).expect("the peer runs");
    }

    /// Sends `node.invoke.cancel` for invoke `id`.
    pub fn cancel(&self, id: &str) {
        let frame = json!({"type":"event","event":"node.invoke.cancel",
                           "payload":{"invokeId": id, "nodeId": self.node_id()}});
        self.out.send(frame).expect("the peer runs");
    }

    /// The result of invoke `id` (the `node.invoke.result` params), waiting
    /// up to `secs`.
    pub fn result(&self, id: &str, secs: u64) -> Option<Value> {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < until {
            let found = self.frames.lock().expect("lock").iter().find_map(|f| {
                (f["method"] == "node.invoke.result" && f["params"]["id"] == id)
                    .then(|| f["params"].clone())
            });
            if found.is_some() {
                return found;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        None
    }

    /// [`invoke`](Self::invoke) and its result (≤ 30 s): `Ok(payload)` or
    /// `Err(error)`.
    pub fn call(&self, id: &str, command: &str, params: &Value) -> Result<Value, Value> {
        self.invoke(id, command, params);
        let r = self
            .result(id, 30)
            .unwrap_or_else(|| panic!("no answer to {id}"));
        if r["ok"] == true {
            Ok(
                serde_json::from_str(r["payloadJSON"].as_str().unwrap_or("null"))
                    .unwrap_or(Value::Null),
            )
        } else {
            Err(r["error"].clone())
        }
    }

    /// The payloads of the `node.event`s named `name` so far.
    pub fn events(&self, name: &str) -> Vec<Value> {
        self.frames
            .lock()
            .expect("lock")
            .iter()
            .filter(|f| f["method"] == "node.event" && f["params"]["event"] == name)
            .map(|f| {
                serde_json::from_str(f["params"]["payloadJSON"].as_str().unwrap_or("null"))
                    .unwrap_or(Value::Null)
            })
            .collect()
    }
}
