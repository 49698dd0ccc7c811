//! Invoke bookkeeping, counted: what the status and the totals say about
//! invokes handed out, refused and answered, the id-size boundary, the busy
//! count across a reconnect, and the fingerprint seeing running invokes.

use core::time::Duration;

use clawnode_core::sim::{self, GatewayConfig, Sim, loopback_config};
use clawnode_core::{InvokeOutcome, NodeOptions, Notification};
use serde_json::json;

fn connected(max_concurrent_invokes: usize) -> Sim {
    let options = NodeOptions {
        max_concurrent_invokes,
        ..NodeOptions::with_seed(1)
    };
    let mut sim = Sim::with(sim::test_key(1), options, GatewayConfig::default());
    sim.apply(loopback_config());
    assert!(sim.run_until_connected(Duration::from_secs(5)));
    sim
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn the_totals_and_the_status_count_every_invoke_once() {
    let mut sim = connected(2);
    let a = sim.gateway.admitted().unwrap();
    sim.gw_invoke("i1", "echo", None, None);
    sim.gw_invoke("i2", "echo", None, None);
    sim.gw_invoke("i3", "echo", None, None); // busy
    sim.gw_invoke("i4", "not.declared", None, None); // undeclared
    sim.gateway.invoke_payload(
        sim.now,
        a,
        json!({"id": "x".repeat(300), "command": "echo"}),
    ); // too long
    sim.run_for(ms(10));
    let s = sim.node.status();
    assert_eq!(s.running_invokes, 2);
    assert_eq!((s.counters.invokes, s.counters.invokes_refused), (2, 3));
    sim.answer("i1", InvokeOutcome::Ok { payload_json: None });
    sim.gw_invoke("i1", "echo", None, None); // a repeat
    sim.run_for(ms(10));
    let s = sim.node.status();
    assert_eq!(s.running_invokes, 1);
    assert_eq!(
        (
            s.counters.invokes,
            s.counters.invokes_refused,
            s.counters.invoke_results
        ),
        (2, 4, 1)
    );
}

#[test]
fn an_id_of_exactly_the_limit_is_accepted() {
    let mut sim = connected(16);
    let a = sim.gateway.admitted().unwrap();
    let max = NodeOptions::with_seed(0).limits.max_invoke_id;
    let id = "i".repeat(max);
    let key = "k".repeat(max);
    sim.gateway.invoke_payload(
        sim.now,
        a,
        json!({"id": id, "command": "echo", "idempotencyKey": key}),
    );
    sim.run_for(ms(10));
    assert_eq!(sim.app.invokes.len(), 1);
    assert_eq!(sim.app.invokes[0].id, id);
}

#[test]
fn the_busy_count_starts_afresh_on_a_new_connection() {
    let mut sim = connected(1);
    sim.gw_invoke("old", "slow", None, None);
    sim.run_for(ms(10));
    sim.gw_close(1006);
    assert!(sim.run_until_cond(Duration::from_secs(10), |s| s.connected_count() == 2));
    // The old invoke still holds its id, but not the new connection's slot.
    sim.gw_invoke("new", "echo", None, None);
    sim.run_for(ms(10));
    let ids: Vec<&str> = sim.app.invokes.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["old", "new"]);
    assert!(
        !sim.notifications()
            .any(|n| matches!(n, Notification::InvokeRefused { .. }))
    );
}

#[test]
fn the_fingerprint_sees_running_invokes() {
    let (mut quiet, mut busy) = (connected(16), connected(16));
    busy.gw_invoke("i1", "slow", None, Some(60_000));
    quiet.run_for(ms(10));
    busy.run_for(ms(10));
    assert_eq!(quiet.now, busy.now);
    assert_ne!(
        quiet.node.fingerprint(quiet.now),
        busy.node.fingerprint(busy.now)
    );
    // Two sessions in the same state agree.
    let mut twin = connected(16);
    twin.run_for(ms(10));
    assert_eq!(
        quiet.node.fingerprint(quiet.now),
        twin.node.fingerprint(twin.now)
    );
}

#[test]
fn an_answer_of_exactly_max_payload_goes_out_and_one_byte_more_does_not() {
    let gw = GatewayConfig {
        max_payload: 4096,
        ..GatewayConfig::default()
    };
    let mut sim = Sim::with(sim::test_key(1), NodeOptions::with_seed(1), gw);
    sim.apply(loopback_config());
    assert!(sim.run_until_connected(Duration::from_secs(5)));
    let answer = |sim: &mut Sim, id: &str, len: usize| {
        sim.gw_invoke(id, "echo", None, None);
        sim.run_for(ms(10));
        let mark = sim.mark();
        let payload = format!("\"{}\"", "x".repeat(len));
        sim.answer(
            id,
            InvokeOutcome::Ok {
                payload_json: Some(payload),
            },
        );
        sim.run_for(ms(10));
        sim.effects_since(mark)
            .find_map(|e| match e {
                clawnode_core::Effect::SendFrame { text, .. } => Some(text.clone()),
                _ => None,
            })
            .unwrap()
    };
    let probe = answer(&mut sim, "a1", 10).len();
    let exact = answer(&mut sim, "a2", 10 + 4096 - probe);
    assert_eq!(exact.len(), 4096);
    assert!(exact.contains("\"ok\":true"), "{exact}");
    let over = answer(&mut sim, "a3", 10 + 4096 - probe + 1);
    assert!(over.contains("PAYLOAD_TOO_LARGE"), "{over}");
}

#[test]
fn answers_acknowledgements_and_expiries_are_counted_and_frame_ids_never_repeat() {
    let gw = GatewayConfig {
        auto_ack: false,
        ..GatewayConfig::default()
    };
    let mut sim = Sim::with(sim::test_key(1), NodeOptions::with_seed(1), gw);
    sim.apply(loopback_config());
    assert!(sim.run_until_connected(Duration::from_secs(5)));
    let a = sim.gateway.admitted().unwrap();
    for id in ["ok", "refused"] {
        sim.gw_invoke(id, "echo", None, None);
    }
    sim.gw_invoke("late", "slow", None, Some(1000));
    sim.run_for(ms(10));
    for id in ["ok", "refused"] {
        sim.answer(id, InvokeOutcome::Ok { payload_json: None });
    }
    let _ = sim.send_request("custom", json!({}), None);
    sim.run_for(ms(10));
    // The gateway accepts the first answer and refuses the second.
    let held = sim.gateway.held_requests().to_vec();
    assert_eq!(held.len(), 3, "{held:?}");
    sim.gateway.respond(sim.now, a, &held[0].1, true, json!({}));
    sim.gateway
        .respond(sim.now, a, &held[1].1, false, json!({}));
    sim.run_for(Duration::from_secs(2));
    let s = sim.node.status();
    assert_eq!(s.counters.invoke_results, 2);
    assert_eq!(s.counters.invokes_dropped, 1);
    assert_eq!(s.counters.invokes_refused, 1, "the expired invoke");
    let dropped: Vec<&str> = sim
        .notifications()
        .filter_map(|n| match n {
            Notification::InvokeDropped { id, .. } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(dropped, ["refused"]);
    // Every request frame the node sent had its own id.
    let ids: Vec<String> = sim
        .gateway
        .log
        .frames
        .iter()
        .filter_map(|(_, _, v)| v["id"].as_str().map(str::to_owned))
        .collect();
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "{ids:?}");
}

#[test]
fn a_request_of_exactly_max_payload_goes_out_and_one_byte_more_is_refused() {
    let gw = GatewayConfig {
        max_payload: 4096,
        ..GatewayConfig::default()
    };
    let mut sim = Sim::with(sim::test_key(1), NodeOptions::with_seed(1), gw);
    sim.apply(loopback_config());
    assert!(sim.run_until_connected(Duration::from_secs(5)));
    let frame_len = |sim: &mut Sim, n: usize| {
        let mark = sim.mark();
        let r = sim.send_request("custom", json!({"pad": "p".repeat(n)}), None);
        let len = sim.effects_since(mark).find_map(|e| match e {
            clawnode_core::Effect::SendFrame { text, .. } => Some(text.len()),
            _ => None,
        });
        (r.is_ok(), len)
    };
    let (_, Some(probe)) = frame_len(&mut sim, 10) else {
        panic!("no frame")
    };
    // Request ids grow from r2 to r3: same length.
    assert_eq!(frame_len(&mut sim, 10 + 4096 - probe), (true, Some(4096)));
    assert_eq!(frame_len(&mut sim, 10 + 4096 - probe + 1), (false, None));
}
