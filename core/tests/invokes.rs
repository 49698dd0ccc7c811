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
