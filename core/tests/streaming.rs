//! Streaming invokes: `node.invoke.progress` out, `node.invoke.input` in
//! (docs/protocol.md §6). Every step runs through the invariant checker,
//! which also holds the rules checked here on every other test: progress
//! only while the invoke runs on its own connection, `seq` from 0 without
//! a gap, chunks within the gateway's limit, input only for a running
//! invoke with an increasing `seq`.

use core::time::Duration;

use clawnode_core::sim::{GatewayConfig, Sim, loopback_config};
use clawnode_core::{DropReason, Effect, InvokeOutcome, MAX_PROGRESS_CHUNK, Notification};
use serde_json::Value;

const MS: Duration = Duration::from_millis(10);

fn running(gw: GatewayConfig) -> Sim {
    let mut sim = Sim::new(gw);
    sim.apply(loopback_config());
    assert!(sim.run_until_connected(Duration::from_secs(5)));
    sim.gw_invoke("inv-1", "slow", None, Some(60_000));
    sim.run_for(MS);
    assert_eq!(sim.app.invokes.len(), 1);
    sim
}

fn chunks(sim: &Sim) -> Vec<(u64, String)> {
    sim.gateway
        .progress()
        .iter()
        .map(|(_, p)| {
            (
                p["seq"].as_u64().unwrap(),
                p["chunk"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn progress_dropped(effects: &[Effect]) -> Vec<DropReason> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Notify(Notification::ProgressDropped { reason, .. }) => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn progress_goes_out_in_order_cut_at_the_limit_on_character_boundaries() {
    let mut sim = running(GatewayConfig::default());
    sim.progress("inv-1", "first\n");
    sim.progress("inv-1", "");
    // 'é' is two bytes: a cut at exactly the limit would split one.
    let long = format!("a{}", "é".repeat(MAX_PROGRESS_CHUNK));
    sim.progress("inv-1", &long);
    sim.run_for(MS);
    let got = chunks(&sim);
    let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4]);
    assert_eq!(got[0].1, "first\n");
    assert_eq!(got[1].1, "", "a heartbeat");
    let rejoined: String = got[2..].iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(rejoined, long);
    assert!(got.iter().all(|(_, c)| c.len() <= MAX_PROGRESS_CHUNK));
    assert_eq!(
        got[2].1.len(),
        MAX_PROGRESS_CHUNK - 1,
        "cut before a split 'é'"
    );
    for (_, p) in sim.gateway.progress() {
        assert_eq!(p["invokeId"], "inv-1");
        assert_eq!(p["nodeId"], sim.node.identity().device_id());
    }
    assert_eq!(sim.node.status().counters.progress_chunks, 5);
}

#[test]
fn progress_after_the_answer_or_on_a_newer_connection_is_never_sent() {
    let mut sim = running(GatewayConfig::default());
    sim.progress("inv-1", "before");
    sim.answer("inv-1", InvokeOutcome::Ok { payload_json: None });
    let late = sim.progress("inv-1", "after");
    sim.run_for(MS);
    assert_eq!(progress_dropped(&late), [DropReason::NotRunning]);
    assert_eq!(chunks(&sim).len(), 1);

    // An invoke whose connection ended: its progress never reaches the
    // next connection.
    sim.gw_invoke("inv-2", "slow", None, Some(60_000));
    sim.run_for(MS);
    sim.gw_close(1006);
    assert!(sim.run_until_cond(Duration::from_secs(10), |s| s.connected_count() == 2));
    let stale = sim.progress("inv-2", "too late");
    sim.run_for(MS);
    assert!(
        matches!(
            progress_dropped(&stale)[..],
            [DropReason::NotRunning] | [DropReason::StaleAttempt]
        ),
        "{stale:?}"
    );
    assert_eq!(chunks(&sim).len(), 1);
    assert_eq!(sim.node.status().counters.progress_dropped, 2);
}

#[test]
fn progress_too_large_for_the_gateways_max_payload_is_dropped_not_sent() {
    let mut sim = running(GatewayConfig {
        max_payload: 4096,
        ..GatewayConfig::default()
    });
    let dropped = sim.progress("inv-1", &"x".repeat(8000));
    sim.run_for(MS);
    assert_eq!(progress_dropped(&dropped), [DropReason::TooLarge]);
    assert!(chunks(&sim).is_empty());
    // The invoke still runs and can answer.
    sim.answer("inv-1", InvokeOutcome::Ok { payload_json: None });
    sim.run_for(MS);
    assert_eq!(sim.results().len(), 1);
}

#[test]
fn input_reaches_the_application_in_order_and_only_once() {
    let mut sim = running(GatewayConfig::default());
    sim.gw_input("inv-1", 0, r#"{"data":"a"}"#);
    sim.gw_input("inv-1", 1, r#"{"data":"b"}"#);
    // A repeat, a stale seq, an unknown invoke, an oversized payload.
    sim.gw_input("inv-1", 1, r#"{"data":"b"}"#);
    sim.gw_input("inv-1", 0, r#"{"data":"a"}"#);
    sim.gw_input("nope", 0, "{}");
    sim.gw_input(
        "inv-1",
        2,
        &format!("\"{}\"", "x".repeat(MAX_PROGRESS_CHUNK)),
    );
    // A gap is handed on: the gateway skipped one.
    sim.gw_input("inv-1", 5, r#"{"data":"f"}"#);
    sim.run_for(MS);
    let got: Vec<(u64, &str)> = sim
        .app
        .inputs
        .iter()
        .map(|(_, s, p)| (*s, p.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (0, r#"{"data":"a"}"#),
            (1, r#"{"data":"b"}"#),
            (5, r#"{"data":"f"}"#)
        ]
    );
    let rejected = sim
        .notifications()
        .filter(|n| matches!(n, Notification::FrameRejected { .. }))
        .count();
    assert_eq!(rejected, 4);
    assert_eq!(sim.node.status().counters.invoke_inputs, 3);
    // The last possible seq is taken once; nothing follows it.
    sim.gw_input("inv-1", u64::MAX, "{}");
    sim.gw_input("inv-1", u64::MAX, "{}");
    sim.run_for(MS);
    assert_eq!(sim.app.inputs.len(), 4);
    sim.app.inputs.pop();
    // After the answer, input goes nowhere.
    sim.answer("inv-1", InvokeOutcome::Ok { payload_json: None });
    sim.gw_input("inv-1", 6, "{}");
    sim.run_for(MS);
    assert_eq!(sim.app.inputs.len(), 3);
    let _: Value = serde_json::from_str(&sim.app.inputs[0].2).unwrap();
}
