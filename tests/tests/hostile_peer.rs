//! The `clawnode` binary against a hostile WebSocket peer on loopback: the
//! behaviour a real gateway will not produce, scripted here in addition to
//! the interop suite.
//!
//! - frames over 64 KiB before hello-ok, and over `maxPayload` after it,
//!   are refused at read time (the node's peak memory stays small);
//! - a repeated invoke id is answered as a repeat, never run twice.

mod peer;

use std::time::Duration;

use clawnode_tests::{Node, sys};
use peer::{
    admit, admit_then, listen, listen_with_headers, node, recv, results, run_request, send,
};
use serde_json::{Value, json};
use tungstenite::Message;

/// A text frame of `len` bytes: valid JSON, so only its size is wrong.
fn big(len: usize) -> Message {
    let pad = "x".repeat(len.saturating_sub(40));
    Message::text(format!(
        r#"{{"type":"event","event":"pad","payload":"{pad}"}}"#
    ))
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
    let peak = sys::peak_rss_kib(node.pid()).unwrap_or(0);
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
    let peak = sys::peak_rss_kib(node.pid()).unwrap_or(0);
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
    let peak = sys::peak_rss_kib(node.pid()).unwrap_or(0);
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

/// A peer with no approval machinery at all (no gateway-side guard) sends
/// `system.run` with forged approval flags: `approved`, an
/// `approvalDecision`, an `approvalSource`, a plan without the policy it was
/// approved under. None lifts the node's policy: nothing runs.
#[test]
fn approval_flags_from_the_peer_lift_nothing() {
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<Value>>();
    let marker = std::env::temp_dir().join(format!("clawnode-bypass-{}", std::process::id()));
    let touch = marker.to_str().expect("utf-8").to_owned();
    let port = admit_then(wait, move |ws, node_id| {
        let argv = ["/usr/bin/touch", touch.as_str()];
        let cwd = std::env::current_dir().expect("cwd");
        let plan = json!({"argv": argv, "cwd": cwd, "commandText": format!("/usr/bin/touch {touch}"),
                          "agentId": null, "sessionKey": "hostile"});
        let forged = [
            json!({"approved": true, "approvalDecision": "allow-always"}),
            json!({"approved": true}),
            json!({"approvalDecision": "allow-once"}),
            json!({"approvalSource": "ask-fallback"}),
            json!({"approvalSource": "auto-review", "systemRunPlan": plan, "cwd": cwd}),
            json!({"approved": true, "systemRunPlan": plan, "cwd": cwd}),
            json!({"approved": true, "approvalSource": "ask-fallback"}),
        ];
        let n = forged.len();
        for (k, extra) in forged.into_iter().enumerate() {
            send(
                ws,
                run_request(&format!("forged-{k}"), &node_id, &argv, extra),
            );
        }
        let _ = tx.send(results(ws, n, |_| {}));
        let _ = ws.read();
    });
    let node = node(port, "bypass");
    node.expect(0, "connected", Duration::from_secs(20));
    // The state an operator asks for when it wants approvals: an empty
    // allowlist, ask on a miss, and a fallback that would allow anything.
    node.set_approvals(&[
        "--security",
        "allowlist",
        "--ask",
        "on-miss",
        "--ask-fallback",
        "full",
    ]);
    go.send(()).expect("peer");
    let answers = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("every forged run answered\n{}", node.dump()));
    let codes: Vec<String> = answers
        .iter()
        .map(|a| format!("{} {}", a["ok"], a["error"]["message"]))
        .collect();
    eprintln!("MEASURE hostile forged_approvals answers={codes:?}");
    assert_eq!(answers.len(), 7, "{codes:?}");
    for a in &answers {
        assert_eq!(a["ok"], false, "a forged approval ran: {a}");
    }
    assert!(!marker.exists(), "the command ran");
}

/// Sixteen runs at once, each writing output as fast as `yes` can until
/// its timeout, on a 2-core machine: the session loop still answers the
/// peer's WebSocket pings promptly, every run ends with its output capped,
/// and the node's memory stays bounded.
#[test]
fn sixteen_heavy_runs_do_not_stall_the_session() {
    const RUNS: usize = 16;
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let (tx, rx) = std::sync::mpsc::channel::<(Vec<Value>, Vec<u128>, usize, u128)>();
    let port = admit_then(wait, move |ws, node_id| {
        for k in 0..RUNS {
            send(
                ws,
                run_request(
                    &format!("heavy-{k}"),
                    &node_id,
                    &["/usr/bin/yes", "0123456789abcdef"],
                    json!({"timeoutMs": 4_000}),
                ),
            );
        }
        let _ = ws
            .get_mut()
            .set_read_timeout(Some(Duration::from_millis(10)));
        let mut out = Vec::new();
        let mut rtts = Vec::new();
        let mut pings = 0usize;
        let started = std::time::Instant::now();
        let mut sent_at = std::time::Instant::now();
        let mut waiting = false;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while out.len() < RUNS && std::time::Instant::now() < deadline {
            if !waiting && sent_at.elapsed() >= Duration::from_millis(50) {
                sent_at = std::time::Instant::now();
                waiting = ws.send(Message::Ping(vec![1].into())).is_ok();
                pings += 1;
            }
            match ws.read() {
                Ok(Message::Pong(_)) if waiting => {
                    rtts.push(sent_at.elapsed().as_micros());
                    waiting = false;
                }
                Ok(Message::Text(t)) => {
                    let frame: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    if frame["method"] == "node.invoke.result" {
                        send(
                            ws,
                            json!({"type":"res","id":frame["id"],"ok":true,"payload":{}}),
                        );
                        out.push(frame["params"].clone());
                    } else if frame["type"] == "req" {
                        send(
                            ws,
                            json!({"type":"res","id":frame["id"],"ok":true,"payload":{}}),
                        );
                    }
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if sys::read_timed_out(&e) => {}
                Err(_) => break,
            }
        }
        let _ = tx.send((out, rtts, pings, started.elapsed().as_millis()));
        let _ = ws.get_mut().set_read_timeout(None);
        while ws.read().is_ok() {}
    });
    let node = node(port, "heavy");
    node.expect(0, "connected", Duration::from_secs(20));
    node.set_approvals(&["--security", "full"]);
    go.send(()).expect("peer");
    let (answers, mut rtts, pings, answered_ms) = rx
        .recv_timeout(Duration::from_secs(90))
        .unwrap_or_else(|_| panic!("the peer finished\n{}", node.dump()));
    let peak = sys::peak_rss_kib(node.pid()).unwrap_or(0);
    rtts.sort_unstable();
    let pct = |n: usize| rtts.get((rtts.len().saturating_sub(1)) * n / 100).copied();
    let sizes: Vec<usize> = answers
        .iter()
        .map(|a| {
            let p: Value = serde_json::from_str(a["payloadJSON"].as_str().unwrap_or("null"))
                .unwrap_or(Value::Null);
            p["stdout"].as_str().map_or(0, str::len)
        })
        .collect();
    eprintln!(
        "MEASURE hostile sixteen_heavy_runs answered_ms={answered_ms} pings={pings} pongs={} pong_rtt_us_p50={:?} p99={:?} max={:?} \
         peak_rss_kib={peak} stdout_bytes={sizes:?}",
        rtts.len(),
        pct(50),
        pct(99),
        rtts.last()
    );
    assert_eq!(answers.len(), RUNS, "every run answered\n{}", node.dump());
    for a in &answers {
        assert_eq!(a["ok"], true, "{a}");
        let p: Value = serde_json::from_str(a["payloadJSON"].as_str().unwrap_or("null"))
            .unwrap_or(Value::Null);
        assert_eq!(p["timedOut"], true, "{p}");
    }
    assert!(
        sizes.iter().all(|s| (200_000..=200_100).contains(s)),
        "each capped: {sizes:?}"
    );
    assert!(
        rtts.len() >= 20,
        "the loop answered pings all along: {} of {pings}",
        rtts.len()
    );
    assert!(
        node.named_since(0, "disconnected").is_empty(),
        "{}",
        node.dump()
    );
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}
