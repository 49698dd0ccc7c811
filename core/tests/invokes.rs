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
    connected_with(options, GatewayConfig::default())
}

fn connected_with(options: NodeOptions, gw: GatewayConfig) -> Sim {
    let mut sim = Sim::with(sim::test_key(1), options, gw);
    sim.apply(loopback_config());
    assert!(sim.run_until_connected(Duration::from_secs(5)));
    sim
}

/// Connected to a gateway whose `maxPayload` is 4096.
fn connected_to_a_4096_byte_limit() -> Sim {
    let gw = GatewayConfig {
        max_payload: 4096,
        ..GatewayConfig::default()
    };
    connected_with(NodeOptions::with_seed(1), gw)
}

/// The text of the first frame the node sent since `mark`.
fn first_frame(sim: &Sim, mark: usize) -> Option<String> {
    sim.effects_since(mark).find_map(|e| match e {
        clawnode_core::Effect::SendFrame { text, .. } => Some(text.clone()),
        _ => None,
    })
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
    sim.gateway
        .invoke_payload(sim.now, a, json!({"id": "no-command"})); // malformed
    sim.run_for(ms(10));
    let s = sim.node.status();
    assert_eq!(s.running_invokes, 2);
    assert_eq!((s.counters.invokes, s.counters.invokes_refused), (2, 4));
    sim.answer("i1", InvokeOutcome::Ok { payload_json: None });
    sim.answer("never-handed-out", InvokeOutcome::Ok { payload_json: None });
    sim.gw_invoke("i1", "echo", None, None); // a repeat
    sim.run_for(ms(10));
    let s = sim.node.status();
    assert_eq!(s.running_invokes, 1);
    let c = s.counters;
    assert_eq!(
        (
            c.invokes,
            c.invokes_refused,
            c.invoke_results,
            c.invokes_dropped
        ),
        (2, 5, 1, 1)
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
    let mut sim = connected_to_a_4096_byte_limit();
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
        first_frame(sim, mark).unwrap()
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
    let mut sim = connected_with(NodeOptions::with_seed(1), gw);
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
    let mut sim = connected_to_a_4096_byte_limit();
    let frame_len = |sim: &mut Sim, n: usize| {
        let mark = sim.mark();
        let r = sim.send_request("custom", json!({"pad": "p".repeat(n)}), None);
        let len = first_frame(sim, mark).map(|t| t.len());
        (r.is_ok(), len)
    };
    let (_, Some(probe)) = frame_len(&mut sim, 10) else {
        panic!("no frame")
    };
    // Request ids grow from r2 to r3: same length.
    assert_eq!(frame_len(&mut sim, 10 + 4096 - probe), (true, Some(4096)));
    assert_eq!(frame_len(&mut sim, 10 + 4096 - probe + 1), (false, None));
}

#[test]
fn the_cores_own_answer_of_exactly_max_payload_goes_out_and_one_byte_more_does_not() {
    let mut sim = connected_to_a_4096_byte_limit();
    // An undeclared command is named in the refusal: its length sets the
    // answer's.
    let refuse = |sim: &mut Sim, id: &str, len: usize| {
        let mark = sim.mark();
        sim.gw_invoke(id, &"c".repeat(len), None, None);
        sim.run_for(ms(10));
        let sent = first_frame(sim, mark).map(|t| t.len());
        let dropped = sim.effects_since(mark).any(|e| {
            matches!(
                e,
                clawnode_core::Effect::Notify(Notification::InvokeDropped { .. })
            )
        });
        (sent, dropped)
    };
    let (Some(probe), false) = refuse(&mut sim, "u1", 10) else {
        panic!("the probe's refusal was not sent")
    };
    assert_eq!(
        refuse(&mut sim, "u2", 10 + 4096 - probe),
        (Some(4096), false)
    );
    assert_eq!(refuse(&mut sim, "u3", 10 + 4096 - probe + 1), (None, true));
}

#[test]
fn the_fingerprint_sees_remembered_ids_until_they_are_forgotten() {
    // Two sessions alike but for the id of the invoke they answered.
    let finished = |id: &str| {
        let mut sim = connected(16);
        sim.gw_invoke(id, "echo", None, None);
        sim.run_for(ms(10));
        sim.answer(id, InvokeOutcome::Ok { payload_json: None });
        sim
    };
    let (a, b) = (finished("a1"), finished("b1"));
    assert_eq!(a.now, b.now);
    assert_ne!(a.node.fingerprint(a.now), b.node.fingerprint(b.now));
    // Forgotten exactly `remember_invoke` after the answer.
    let gone = a.now + NodeOptions::with_seed(0).timeouts.remember_invoke;
    assert_eq!(a.node.fingerprint(gone), b.node.fingerprint(gone));
}

#[test]
fn the_status_reports_the_config_the_connection_and_the_frames() {
    let mut sim = connected(16);
    assert_eq!(sim.node.config(), Some(&loopback_config()));
    let s = sim.node.status();
    assert_eq!(s.conn_id.as_deref(), Some("conn-1"));
    // challenge and hello-ok in, connect out.
    assert_eq!((s.counters.frames_in, s.counters.frames_out), (2, 1));
    sim.gw_invoke("i1", "echo", None, None);
    sim.run_for(ms(10));
    sim.answer("i1", InvokeOutcome::Ok { payload_json: None });
    sim.run_for(ms(10));
    let s = sim.node.status();
    assert_eq!((s.counters.frames_in, s.counters.frames_out), (4, 2));
}

#[test]
fn an_expiring_invoke_while_waiting_does_not_start_the_next_attempt_early() {
    let mut sim = connected(16);
    sim.gw_invoke("i1", "slow", None, Some(100));
    sim.run_for(ms(10));
    let mark = sim.mark();
    sim.gw_close(1006);
    sim.run_for(Duration::from_secs(5));
    let retry = sim
        .effects_since(mark)
        .find_map(|e| match e {
            clawnode_core::Effect::Notify(Notification::Disconnected { retry_in, .. }) => *retry_in,
            _ => None,
        })
        .expect("a retry");
    let closed_at = sim.log[mark..]
        .iter()
        .find(|(_, e)| {
            matches!(
                e,
                clawnode_core::Effect::Notify(Notification::Disconnected { .. })
            )
        })
        .map(|(t, _)| *t)
        .unwrap();
    let reopened_at = sim.log[mark..]
        .iter()
        .find(|(_, e)| matches!(e, clawnode_core::Effect::OpenSocket { .. }))
        .map(|(t, _)| *t)
        .unwrap();
    assert!(
        retry > ms(100),
        "the invoke's deadline comes first: {retry:?}"
    );
    assert_eq!(reopened_at, closed_at + retry);
}

#[test]
fn set_config_by_reference_compares_then_applies() {
    let mut sim = connected(16);
    let now = sim.now;
    sim.node.set_config(now, &loopback_config());
    assert!(
        sim.node.poll_effect().is_none(),
        "an equal config does nothing"
    );
    let changed = loopback_config().with_session_id("other");
    sim.node.set_config(now, &changed);
    let mut effects = Vec::new();
    while let Some(e) = sim.node.poll_effect() {
        effects.push(e);
    }
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, clawnode_core::Effect::CloseSocket { .. }))
    );
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, clawnode_core::Effect::OpenSocket { .. }))
    );
    assert_eq!(sim.node.config(), Some(&changed));
}
