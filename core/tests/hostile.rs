//! The session policy against a hostile or broken gateway: whatever the
//! peer does after admitting the node, attempts stay within a rate the
//! backoff sets, a silent peer is detected in bounded time, and garbage
//! cannot hold the connection. Rates are measured over virtual hours and
//! printed (`cargo test -p clawnode-core --test hostile -- --nocapture`).

use core::time::Duration;

use clawnode_core::sim::{AfterAdmit, GatewayConfig, Sim, loopback_config};
use clawnode_core::{AttemptId, DisconnectReason, Effect, NodeOptions, Notification, Time};
use proptest::prelude::*;

const HOUR: Duration = Duration::from_secs(3600);

/// The most attempts an hour may hold whatever the peer does, derived from
/// the default policy: the climb to the slow band, one attempt per
/// `slow_min` after it, and one announced restart (reconnected at once,
/// then retried quickly a bounded number of times) per stable stretch —
/// which a peer that never stays up `stable_after` never earns more than
/// once.
fn hourly_bound() -> u64 {
    let o = NodeOptions::with_seed(0);
    let b = o.backoff;
    let climb = u64::from(b.slow_after) + 1;
    let slow = HOUR.as_secs() / b.slow_min.as_secs();
    let restart = 1 + u64::from(o.limits.restart_retries);
    climb + slow + restart
}

fn hostile(after: AfterAdmit, seed: u64) -> Sim {
    let gw = GatewayConfig {
        after_admit: Some(after),
        ..GatewayConfig::default()
    };
    let mut sim = Sim::with(
        clawnode_core::sim::test_key(seed as u8),
        NodeOptions::with_seed(seed),
        gw,
    );
    sim.apply(loopback_config());
    sim
}

/// Attempts the node made in its first virtual hour.
fn attempts_in_an_hour(after: AfterAdmit, seed: u64) -> u64 {
    let mut sim = hostile(after, seed);
    sim.run_for(HOUR);
    sim.node.status().counters.attempts
}

#[test]
fn admit_then_drop_in_any_way_stays_under_the_hourly_bound() {
    let bound = hourly_bound();
    for after in [
        AfterAdmit::Close(1000),
        AfterAdmit::Close(1006),
        AfterAdmit::Close(1012),
        AfterAdmit::Close(4000),
        AfterAdmit::Restart,
        AfterAdmit::Reset,
        AfterAdmit::Garbage(100),
    ] {
        let n = attempts_in_an_hour(after.clone(), 7);
        println!("{after:?}: {n} attempts in a virtual hour (bound {bound})");
        assert!(
            n <= bound,
            "{after:?}: {n} attempts in an hour, bound {bound}"
        );
        assert!(n >= 60, "{after:?}: the node kept trying ({n})");
    }
}

#[test]
fn a_restart_loop_gets_one_quick_reconnect_then_the_backoff() {
    let mut sim = hostile(AfterAdmit::Restart, 3);
    sim.run_for(Duration::from_secs(60));
    let quick: Vec<Duration> = sim
        .notifications()
        .filter_map(|n| match n {
            Notification::Disconnected {
                reason: DisconnectReason::GatewayRestart,
                retry_in: Some(d),
                ..
            } => Some(*d),
            _ => None,
        })
        .collect();
    let zero = quick.iter().filter(|d| d.is_zero()).count();
    assert_eq!(zero, 1, "one immediate reconnect, then backoff: {quick:?}");
    assert!(quick.len() < 10, "{quick:?}");
}

#[test]
fn a_silent_peer_is_detected_within_ping_interval_plus_pong_timeout() {
    let t = NodeOptions::with_seed(0).timeouts;
    let bound = t.ping_interval + t.pong.unwrap();
    let mut sim = hostile(AfterAdmit::Silent, 5);
    sim.run_for(Duration::from_secs(600));
    let mut admitted_at = None;
    let mut worst = Duration::ZERO;
    let mut detections = 0;
    for (at, e) in &sim.log {
        match e {
            Effect::Notify(Notification::Connected { .. }) => admitted_at = Some(*at),
            Effect::Notify(Notification::Disconnected { reason, .. }) => {
                if let Some(from) = admitted_at.take() {
                    assert_eq!(*reason, DisconnectReason::PongTimeout);
                    worst = worst.max(*at - from);
                    detections += 1;
                }
            }
            _ => {}
        }
    }
    println!("silent peer: {detections} detections, worst {worst:?} (bound {bound:?})");
    assert!(detections >= 3);
    assert!(worst <= bound, "{worst:?} > {bound:?}");
}

#[test]
fn the_announced_tick_interval_is_clamped_both_ways() {
    let t = NodeOptions::with_seed(0).timeouts;
    // A gateway announcing 1 ms but ticking every 30 s: the watchdog waits
    // at least twice the 1 s floor, never 2 ms.
    let mut sim = Sim::new(GatewayConfig {
        announced_tick_ms: Some(1),
        ..GatewayConfig::default()
    });
    sim.apply(loopback_config());
    sim.run_for(Duration::from_secs(600));
    let mut admitted_at = None;
    for (at, e) in &sim.log {
        match e {
            Effect::Notify(Notification::Connected {
                tick_interval_ms, ..
            }) => {
                assert_eq!(*tick_interval_ms, 1000);
                admitted_at = Some(*at);
            }
            Effect::Notify(Notification::Disconnected { reason, .. }) => {
                assert_eq!(*reason, DisconnectReason::TickTimeout);
                let up = *at - admitted_at.take().unwrap();
                assert!(up >= 2 * t.min_tick_interval, "{up:?}");
            }
            _ => {}
        }
    }
    assert!(sim.node.status().counters.attempts < 40);

    // A gateway announcing 1e12 ms that then stops ticking (pongs still
    // come): the watchdog still fires, at twice the 5 min ceiling.
    let mut sim = Sim::new(GatewayConfig {
        announced_tick_ms: Some(1_000_000_000_000),
        ..GatewayConfig::default()
    });
    sim.apply(loopback_config());
    assert!(sim.run_until_connected(Duration::from_secs(5)));
    let from = sim.now;
    sim.gw_stop_ticks();
    assert!(sim.run_until_cond(Duration::from_secs(3600), |s| {
        s.node.status().last_error.is_some()
    }));
    assert_eq!(
        sim.node.status().last_error,
        Some(DisconnectReason::TickTimeout)
    );
    let waited = sim.now - from;
    assert!(waited <= 2 * t.max_tick_interval, "{waited:?}");
}

#[test]
fn garbage_closes_the_socket_after_a_bounded_number_of_rejections() {
    let limits = NodeOptions::with_seed(0).limits;
    let mut sim = hostile(AfterAdmit::Garbage(1000), 9);
    sim.run_for(Duration::from_secs(5));
    let first = AttemptId(1);
    let rejected = sim
        .notifications()
        .filter(|n| matches!(n, Notification::FrameRejected { attempt, .. } if *attempt == first))
        .count();
    assert_eq!(rejected as u32, limits.rejected_frames + 1);
    let close = sim.log.iter().find_map(|(_, e)| match e {
        Effect::CloseSocket { attempt, code, .. } if *attempt == first => Some(*code),
        _ => None,
    });
    assert_eq!(close, Some(1008));
    let d = sim.notifications().find_map(|n| match n {
        Notification::Disconnected {
            reason, retry_in, ..
        } => Some((reason.clone(), *retry_in)),
        _ => None,
    });
    let Some((DisconnectReason::ProtocolViolation(why), Some(_))) = d else {
        panic!("{d:?}");
    };
    assert_eq!(why, "17 unusable frames within 10000 ms");
}

#[test]
fn invoke_ids_and_keys_are_bounded_in_size() {
    let mut sim = Sim::new(GatewayConfig::default());
    sim.apply(loopback_config());
    assert!(sim.run_until_connected(Duration::from_secs(5)));
    let a = sim.gateway.admitted().unwrap();
    let long = "i".repeat(257);
    for fields in [
        serde_json::json!({"id": long, "command": "echo"}),
        serde_json::json!({"id": "ok-id", "command": "echo", "idempotencyKey": long}),
    ] {
        sim.gateway.invoke_payload(sim.now, a, fields);
    }
    sim.run_for(Duration::from_millis(20));
    assert!(sim.app.invokes.is_empty());
    let rejected: Vec<&str> = sim
        .notifications()
        .filter_map(|n| match n {
            Notification::FrameRejected { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        rejected,
        vec!["node.invoke.request with an id or idempotencyKey over 256 bytes"; 2]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever mix of hostile behaviour a gateway shows, switching between
    /// them at random times, the hourly bound holds.
    #[test]
    fn any_hostile_mix_stays_under_the_hourly_bound(
        seed in 0u64..1000,
        plan in proptest::collection::vec((0usize..7, 1u64..600), 1..12),
    ) {
        let kinds = [
            AfterAdmit::Close(1000),
            AfterAdmit::Close(1012),
            AfterAdmit::Restart,
            AfterAdmit::Reset,
            AfterAdmit::Silent,
            AfterAdmit::Garbage(40),
            AfterAdmit::Close(4000),
        ];
        let mut sim = hostile(kinds[0].clone(), seed);
        let end = Time::ZERO + HOUR;
        for (kind, secs) in plan {
            sim.gateway.config.after_admit = Some(kinds[kind].clone());
            sim.run_for(Duration::from_secs(secs));
            if sim.now >= end {
                break;
            }
        }
        if sim.now < end {
            sim.run_for(end - sim.now);
        }
        let n = sim.node.status().counters.attempts;
        prop_assert!(n <= hourly_bound(), "{n} attempts");
    }
}
