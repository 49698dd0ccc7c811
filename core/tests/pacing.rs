//! Admission pacing (docs/protocol.md §5): a busy gateway's refusals, an
//! attempt queued for a handshake slot the driver shares between sessions,
//! and jittered first attempts, in the simulation harness.

use core::time::Duration;

use clawnode_core::sim::{AttemptPlan, Backoff, GatewayConfig, Sim, loopback_config, test_key};
use clawnode_core::{
    AttemptId, BackoffConfig, DisconnectReason, Effect, Input, NodeOptions, Notification, Phase,
    SocketError, Time, Timeouts,
};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The retry delays announced since `mark`, with their reasons.
fn retries(sim: &Sim, mark: usize) -> Vec<(DisconnectReason, Option<Duration>)> {
    sim.effects_since(mark)
        .filter_map(|e| match e {
            Effect::Notify(Notification::Disconnected {
                reason, retry_in, ..
            }) => Some((reason.clone(), *retry_in)),
            _ => None,
        })
        .collect()
}

fn opened_attempt(effects: &[Effect]) -> AttemptId {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::OpenSocket { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .expect("an OpenSocket")
}

#[test]
fn a_busy_gateway_is_backed_off_on_its_own_streak_never_as_failures() {
    // Twenty 503s in a row, then a gateway that admits.
    let busy = (0..20).map(|_| AttemptPlan::Busy(None));
    let mut sim = Sim::new(GatewayConfig::default());
    for plan in busy {
        sim.gateway.plan_next(plan);
    }
    let mark = sim.mark();
    sim.apply(loopback_config());
    assert!(sim.run_until_connected(secs(3600)));
    let c = BackoffConfig::default();
    let seen = retries(&sim, mark);
    assert_eq!(seen.len(), 20);
    for (n, (reason, retry_in)) in seen.iter().enumerate() {
        assert!(matches!(
            reason,
            DisconnectReason::Failed(SocketError::Busy { .. })
        ));
        let d = retry_in.expect("a busy gateway is retried");
        let (lo, hi) = Backoff::busy_bounds(&c, n as u32 + 1);
        assert!(lo <= d && d <= hi, "refusal {}: {d:?}", n + 1);
        assert!(d <= c.cap, "never the slow band: {d:?}");
    }
    // The rate a busy gateway sees: at least the cap apart once the streak
    // has grown, so 20 refusals take minutes, not seconds.
    assert!(sim.now >= Time::ZERO + secs(4 * 60), "{:?}", sim.now);
}

#[test]
fn busy_refusals_do_not_age_the_failure_backoff() {
    // Eight busy refusals, then a refused socket: that failure is the
    // first one, drawn from the first step of the backoff.
    let mut sim = Sim::new(GatewayConfig::default());
    for _ in 0..8 {
        sim.gateway.plan_next(AttemptPlan::Busy(None));
    }
    sim.gateway.plan_next(AttemptPlan::Refuse);
    let mark = sim.mark();
    sim.apply(loopback_config());
    assert!(sim.run_until_connected(secs(3600)));
    let seen = retries(&sim, mark);
    let (reason, retry_in) = &seen[8];
    assert!(matches!(
        reason,
        DisconnectReason::Failed(SocketError::Io(_))
    ));
    let (lo, hi) = Backoff::bounds(&BackoffConfig::default(), 1);
    let d = retry_in.unwrap();
    assert!(lo <= d && d <= hi, "{d:?}");
}

#[test]
fn retry_after_on_a_busy_refusal_raises_the_wait_clamped() {
    let mut sim = Sim::new(GatewayConfig::default());
    sim.gateway.plan_next(AttemptPlan::Busy(Some(secs(20))));
    sim.gateway
        .plan_next(AttemptPlan::Busy(Some(secs(100_000))));
    let mark = sim.mark();
    sim.apply(loopback_config());
    assert!(sim.run_until_connected(secs(3600)));
    let waits: Vec<_> = retries(&sim, mark).iter().map(|r| r.1.unwrap()).collect();
    assert_eq!(waits, [secs(20), BackoffConfig::default().max_retry_after]);
}

#[test]
fn an_admission_ends_the_busy_streak() {
    let mut sim = Sim::new(GatewayConfig::default());
    for _ in 0..6 {
        sim.gateway.plan_next(AttemptPlan::Busy(None));
    }
    sim.apply(loopback_config());
    assert!(sim.run_until_connected(secs(3600)));
    sim.gateway.plan_next(AttemptPlan::Busy(None));
    let mark = sim.mark();
    sim.gw_close(1006);
    assert!(sim.run_until_cond(secs(120), |s| retries(s, mark).len() >= 2));
    let seen = retries(&sim, mark);
    assert!(matches!(
        seen[1].0,
        DisconnectReason::Failed(SocketError::Busy { .. })
    ));
    let d = seen[1].1.unwrap();
    assert!(d <= BackoffConfig::default().initial, "a new streak: {d:?}");
}

/// A node whose gateway never answers a socket, so the driver's inputs
/// alone decide the attempt.
fn hanging() -> (Sim, AttemptId) {
    let gw = GatewayConfig {
        default_plan: AttemptPlan::Hang,
        ..GatewayConfig::default()
    };
    let mut sim = Sim::new(gw);
    let effects = sim.apply(loopback_config());
    let attempt = opened_attempt(&effects);
    (sim, attempt)
}

#[test]
fn a_queued_attempt_waits_for_its_slot_not_the_open_deadline() {
    let (mut sim, attempt) = hanging();
    let t = Timeouts::default();
    sim.input(Input::SocketQueued { attempt });
    assert_eq!(sim.node.phase(), Phase::Connecting);
    // Far past the open deadline: still queued, nothing ended.
    sim.run_for(t.open * 6);
    assert_eq!(sim.open_count(), 1);
    assert_eq!(sim.node.status().counters.disconnects, 0);
    // The slot comes: the open deadline starts from here.
    sim.input(Input::SocketDialing { attempt });
    open_times_out_after_dialing(&mut sim);
}

/// The attempt just dialed ends as an open timeout exactly one open
/// deadline later.
fn open_times_out_after_dialing(sim: &mut Sim) {
    let open = Timeouts::default().open;
    let dialed = sim.now;
    let mark = sim.mark();
    assert!(sim.run_until_cond(open * 2, |s| !retries(s, mark).is_empty()));
    assert_eq!(retries(sim, mark)[0].0, DisconnectReason::OpenTimeout);
    assert_eq!(sim.now, dialed + open);
}

#[test]
fn the_queue_wait_is_bounded_and_backed_off_as_busy() {
    let (mut sim, attempt) = hanging();
    let t = Timeouts::default();
    sim.input(Input::SocketQueued { attempt });
    let queued = sim.now;
    let mark = sim.mark();
    assert!(sim.run_until_cond(t.queue * 2, |s| !retries(s, mark).is_empty()));
    let (reason, retry_in) = retries(&sim, mark).remove(0);
    assert_eq!(reason, DisconnectReason::QueueTimeout);
    assert_eq!(sim.now, queued + t.queue);
    // The busy streak's first step, not a failure: the next failure still
    // starts the backoff from its first step.
    let (lo, hi) = Backoff::busy_bounds(&BackoffConfig::default(), 1);
    let d = retry_in.unwrap();
    assert!(lo <= d && d <= hi, "{d:?}");
    // The driver is told to abandon the queued open.
    assert!(
        sim.effects_since(mark)
            .any(|e| matches!(e, Effect::CloseSocket { attempt: a, .. } if *a == attempt))
    );
}

#[test]
fn an_attempt_is_queued_once_so_alternating_inputs_cannot_keep_it_alive() {
    let (mut sim, attempt) = hanging();
    sim.input(Input::SocketQueued { attempt });
    sim.input(Input::SocketDialing { attempt });
    // Queued again: ignored, the open deadline keeps running.
    sim.input(Input::SocketQueued { attempt });
    open_times_out_after_dialing(&mut sim);
}

#[test]
fn queue_inputs_for_another_attempt_or_phase_change_nothing() {
    let (mut sim, attempt) = hanging();
    let stale = AttemptId(attempt.0 + 7);
    sim.input(Input::SocketQueued { attempt: stale });
    sim.input(Input::SocketDialing { attempt });
    let t = Timeouts::default();
    // Neither queued (wrong attempt) nor re-dialed (not queued): the open
    // deadline still counts from the effect.
    let deadline = sim.node.poll_deadline().unwrap();
    assert_eq!(deadline.at, Time::ZERO + t.open);
    // A socket opened while queued is as good as one dialed.
    sim.input(Input::SocketQueued { attempt });
    sim.input(Input::SocketOpened { attempt });
    assert_eq!(sim.node.phase(), Phase::Handshaking);
    // Queued after opening: ignored.
    sim.input(Input::SocketQueued { attempt });
    assert_eq!(sim.node.phase(), Phase::Handshaking);
}

fn first_open_at(seed: u64, jitter: Duration) -> Time {
    let options = NodeOptions {
        timeouts: Timeouts {
            first_attempt_jitter: jitter,
            ..Timeouts::default()
        },
        ..NodeOptions::with_seed(seed)
    };
    let mut sim = Sim::with(test_key(1), options, GatewayConfig::default());
    sim.apply(loopback_config());
    assert!(sim.run_until_connected(secs(10)));
    sim.log
        .iter()
        .find(|(_, e)| matches!(e, Effect::OpenSocket { .. }))
        .map(|(t, _)| *t)
        .unwrap()
}

#[test]
fn a_config_change_or_wake_during_the_first_jitter_does_not_cut_it_short() {
    let options = NodeOptions {
        timeouts: Timeouts {
            first_attempt_jitter: secs(10),
            ..Timeouts::default()
        },
        ..NodeOptions::with_seed(4)
    };
    let mut sim = Sim::with(test_key(1), options, GatewayConfig::default());
    sim.apply(loopback_config());
    let until = sim
        .node
        .status()
        .next_retry
        .expect("a jittered first attempt");
    assert!(until > sim.now, "seed 4 draws a wait");
    sim.apply(loopback_config().with_session_id("b"));
    sim.input(Input::Wake);
    assert_eq!(sim.node.status().next_retry, Some(until));
    assert_eq!(sim.open_count(), 0);
    assert!(sim.run_until_connected(secs(20)));
    let opened = sim
        .log
        .iter()
        .find(|(_, e)| matches!(e, Effect::OpenSocket { .. }))
        .map(|(t, _)| *t);
    assert_eq!(opened, Some(until));
}

#[test]
fn first_attempts_are_spread_over_the_jitter_and_immediate_without_it() {
    let jitter = secs(2);
    let times: Vec<u64> = (0..200)
        .map(|seed| first_open_at(seed, jitter).as_millis())
        .collect();
    assert!(times.iter().all(|&t| t <= 2000), "{times:?}");
    // Spread, not bunched: each half of the window gets a fair share.
    let early = times.iter().filter(|&&t| t < 1000).count();
    assert!(
        (60..=140).contains(&early),
        "{early} of 200 in the first second"
    );
    assert!(
        (0..20).all(|seed| first_open_at(seed, Duration::ZERO) == Time::ZERO),
        "no jitter: at once"
    );
}
