//! Frames out of place during the handshake: an event that is not the
//! challenge, or a response to another id than the connect, is reported and
//! ignored; the handshake goes on.

use core::time::Duration;

use clawnode_core::sim::{self, AttemptPlan, GatewayConfig, Sim, loopback_config};
use clawnode_core::{AttemptId, Input, Notification, Phase};

fn frame(sim: &mut Sim, text: &str) {
    sim.input(Input::Frame {
        attempt: AttemptId(1),
        text: text.into(),
    });
}

fn rejected(sim: &Sim) -> Vec<String> {
    sim.notifications()
        .filter_map(|n| match n {
            Notification::FrameRejected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// A session whose gateway follows `plan`, run until the handshake is
/// under way.
fn handshaking(plan: AttemptPlan, wait: Duration) -> Sim {
    let gw = GatewayConfig {
        default_plan: plan,
        ..GatewayConfig::default()
    };
    let mut sim = Sim::with(
        sim::test_key(1),
        clawnode_core::NodeOptions::with_seed(1),
        gw,
    );
    sim.apply(loopback_config());
    sim.run_for(wait);
    assert_eq!(sim.node.phase(), Phase::Handshaking);
    sim
}

#[test]
fn an_event_before_the_challenge_is_not_taken_for_it() {
    let mut sim = handshaking(AttemptPlan::NoChallenge, Duration::from_millis(20));
    frame(
        &mut sim,
        r#"{"type":"event","event":"tick","payload":{"ts":1}}"#,
    );
    assert_eq!(
        rejected(&sim),
        ["unexpected frame before connect.challenge: event \"tick\""]
    );
    assert_eq!(sim.node.phase(), Phase::Handshaking);
    assert_eq!(sim.node.status().counters.disconnects, 0);
}

#[test]
fn a_response_to_another_id_before_hello_ok_is_not_taken_for_it() {
    let mut sim = handshaking(AttemptPlan::NoHello, Duration::from_millis(50));
    frame(
        &mut sim,
        r#"{"type":"res","id":"other","ok":true,"payload":{"type":"hello-ok","protocol":4}}"#,
    );
    assert_eq!(
        rejected(&sim),
        ["unexpected frame before hello-ok: response to \"other\""]
    );
    assert_eq!(sim.node.phase(), Phase::Handshaking);
    assert_eq!(sim.connected_count(), 0);
}

#[test]
fn a_tick_interval_of_zero_means_none_given() {
    let gw = GatewayConfig {
        announced_tick_ms: Some(0),
        ..GatewayConfig::default()
    };
    let mut sim = Sim::with(
        sim::test_key(1),
        clawnode_core::NodeOptions::with_seed(1),
        gw,
    );
    sim.apply(loopback_config());
    assert!(sim.run_until_connected(Duration::from_secs(5)));
    let tick = sim.notifications().find_map(|n| match n {
        Notification::Connected {
            tick_interval_ms, ..
        } => Some(*tick_interval_ms),
        _ => None,
    });
    let default = clawnode_core::NodeOptions::with_seed(0)
        .timeouts
        .default_tick_interval;
    assert_eq!(tick, Some(default.as_millis() as u64));
}

#[test]
fn without_max_payload_the_default_is_25_mib() {
    let mut sim = handshaking(AttemptPlan::NoHello, Duration::from_millis(50));
    // hello-ok with no policy at all, answering the node's connect.
    frame(
        &mut sim,
        r#"{"type":"res","id":"connect-1","ok":true,"payload":{"type":"hello-ok","protocol":4}}"#,
    );
    let max = sim.notifications().find_map(|n| match n {
        Notification::Connected { max_payload, .. } => Some(*max_payload),
        _ => None,
    });
    assert_eq!(max, Some(25 * 1024 * 1024));
}
