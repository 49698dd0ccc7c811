//! A gateway that announced a restart and is not back in time: the node
//! keeps retrying briefly instead of climbing the backoff, and none of it
//! counts as a failure, for a bounded time and a bounded number of retries.

use core::time::Duration;

use clawnode_core::sim::{self, Backoff, GatewayConfig, Invariants, Sim, loopback_config};
use clawnode_core::{
    BackoffConfig, DisconnectReason, Effect, Limits, NodeOptions, NodeState, Notification, Timeouts,
};

mod support;

use support::{Fr, Harness, Op, Sel};

fn retries(sim: &Sim, mark: usize) -> Vec<(DisconnectReason, Duration)> {
    sim.effects_since(mark)
        .filter_map(|e| match e {
            Effect::Notify(Notification::Disconnected {
                reason,
                retry_in: Some(d),
                ..
            }) => Some((reason.clone(), *d)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_restart_that_overruns_is_retried_briefly_and_not_counted() {
    let mut sim = Sim::new(GatewayConfig::default());
    sim.apply(loopback_config());
    assert!(sim.run_until_connected(Duration::from_secs(5)));
    let mark = sim.mark();
    let at = sim.now;
    let back = at + Duration::from_secs(6);
    sim.gw_shutdown(1500);
    sim.gateway.down_until(back);
    assert!(sim.run_until_cond(Duration::from_secs(60), |s| s.connected_count() == 2));

    let d = retries(&sim, mark);
    assert_eq!(
        d[0],
        (
            DisconnectReason::GatewayRestart,
            Duration::from_millis(1500)
        )
    );
    let r = Timeouts::default().restart_retry;
    assert!(d.len() > 3, "{d:?}");
    for (reason, delay) in &d[1..] {
        assert!(matches!(reason, DisconnectReason::Failed(_)), "{reason:?}");
        assert!(r <= *delay && *delay <= r * 2, "{delay:?}");
    }
    // Back within one short retry of the gateway, not a climbing backoff's.
    let connected_at = sim
        .log
        .iter()
        .rev()
        .find(|(_, e)| matches!(e, Effect::Notify(Notification::Connected { .. })))
        .map(|(t, _)| *t)
        .unwrap();
    assert!(connected_at <= back + r * 2 + Duration::from_millis(100));
    assert_eq!(sim.inv.failures(), 0);
}

#[test]
fn the_restart_window_ends_and_the_backoff_resumes() {
    let quick = Limits::default().restart_retries;
    let mut sim = Sim::new(GatewayConfig::default());
    sim.apply(loopback_config());
    assert!(sim.run_until_connected(Duration::from_secs(5)));
    let mark = sim.mark();
    let at = sim.now;
    sim.gw_shutdown(1000);
    sim.gateway.down_until(at + Duration::from_secs(600));
    sim.run_for(Duration::from_secs(120));
    let t = Timeouts::default();
    let window_end = at + Duration::from_millis(1000) + t.max_restart_wait;
    let mut counted = 0;
    let mut uncounted = 0;
    for (time, e) in &sim.log[mark..] {
        if let Effect::Notify(Notification::Disconnected {
            reason: DisconnectReason::Failed(_),
            retry_in: Some(d),
            ..
        }) = e
        {
            if *time < window_end && uncounted < quick {
                uncounted += 1;
                assert!(t.restart_retry <= *d && *d <= t.restart_retry * 2, "{d:?}");
            } else {
                counted += 1;
                let (lo, hi) = Backoff::bounds(&BackoffConfig::default(), counted);
                assert!(lo <= *d && *d <= hi, "failure {counted}: {d:?}");
            }
        }
    }
    assert_eq!(uncounted, quick, "the quick retries are bounded in number");
    assert!(counted >= 3, "the backoff resumed after the window");
}

#[test]
fn after_a_shutdown_event_only_an_io_failure_is_the_restart() {
    let mut sim = Sim::new(GatewayConfig::default());
    sim.apply(loopback_config());
    assert!(sim.run_until_connected(Duration::from_secs(5)));
    let attempt = sim.gateway.admitted().unwrap();
    sim.gw_event("shutdown", serde_json::json!({"reason": "restart"}), false);
    sim.run_for(Duration::from_millis(10));
    let mark = sim.mark();
    sim.input(clawnode_core::Input::SocketFailed {
        attempt,
        error: clawnode_core::SocketError::Tls("certificate expired".into()),
    });
    let reason = sim.effects_since(mark).find_map(|e| match e {
        Effect::Notify(Notification::Disconnected { reason, .. }) => Some(reason.clone()),
        _ => None,
    });
    assert!(
        matches!(reason, Some(DisconnectReason::Failed(_))),
        "{reason:?}"
    );
    assert_eq!(sim.node.phase(), clawnode_core::Phase::Paused);
    assert_eq!(sim.node.status().counters.disconnects, 1);
}

// ---- the exact instants where the restart rules end --------------------------

/// A raw-input node whose socket may stay opening for two minutes, with
/// quick retries drawn from 100..=200 ms so that they cannot be mistaken
/// for the first backoff step (500..=1000 ms), and no pong check (the
/// raw harness answers no pings).
fn exact_harness() -> Harness {
    let options = NodeOptions {
        timeouts: Timeouts {
            open: Duration::from_secs(120),
            restart_retry: Duration::from_millis(100),
            pong: None,
            ..Timeouts::default()
        },
        ..NodeOptions::with_seed(7)
    };
    Harness {
        inv: Invariants::new(&options),
        node: NodeState::new(sim::test_key(2), options),
        ..Harness::new(7)
    }
}

fn run(h: &mut Harness, ops: &[Op]) {
    for op in ops {
        h.step(op)
            .unwrap_or_else(|v| panic!("{op:?}: {v}\n{}", support::tail(&h.trace)));
    }
}

fn connect(h: &mut Harness) {
    run(
        h,
        &[Op::Config(0), Op::Drive(0), Op::Drive(0), Op::Drive(0)],
    );
    assert_eq!(h.node.phase(), clawnode_core::Phase::Connected);
}

/// The delay the last `Disconnected` announced.
fn last_retry(h: &Harness) -> Duration {
    let line = h
        .trace
        .lines()
        .rev()
        .find(|l| l.contains("Disconnected"))
        .expect("a disconnect");
    let ms = line
        .split("retry_in: Some(")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .expect("a retry delay");
    parse_debug_duration(ms)
}

fn parse_debug_duration(s: &str) -> Duration {
    if let Some(ms) = s.strip_suffix("ms") {
        Duration::from_secs_f64(ms.parse::<f64>().unwrap() / 1000.0)
    } else if let Some(secs) = s.strip_suffix('s') {
        Duration::from_secs_f64(secs.parse().unwrap())
    } else {
        panic!("unexpected duration {s}")
    }
}

/// Announces a restart in `restart_ms` and resets the socket: the quick
/// restart, whose window ends `restart_ms + max_restart_wait` later.
fn restart(h: &mut Harness, restart_ms: u32) {
    run(
        h,
        &[
            Op::Frame(Sel::Current, Fr::Shutdown(Some(restart_ms))),
            Op::Failed(Sel::Current, 2),
        ],
    );
}

/// A failure at `offset` after the quick restart began, on an attempt
/// opened when the announced wait ran out. Returns the delay it announced.
fn failure_in_window_at(offset: Duration) -> Duration {
    let mut h = exact_harness();
    connect(&mut h);
    restart(&mut h, 1000);
    let began = h.now;
    assert_eq!(last_retry(&h), Duration::from_millis(1000));
    run(&mut h, &[Op::ToDeadline]);
    assert_eq!(h.node.phase(), clawnode_core::Phase::Connecting);
    h.now = began + offset;
    run(&mut h, &[Op::Failed(Sel::Current, 2)]);
    last_retry(&h)
}

#[test]
fn the_restart_window_ends_exactly_at_its_end() {
    let t = Timeouts::default();
    let end = Duration::from_millis(1000) + t.max_restart_wait;
    let inside = failure_in_window_at(end - Duration::from_millis(1));
    assert!(
        Duration::from_millis(100) <= inside && inside <= Duration::from_millis(200),
        "a failure just inside the window is a quick retry: {inside:?}"
    );
    let at_end = failure_in_window_at(end);
    let (lo, hi) = Backoff::bounds(&BackoffConfig::default(), 1);
    assert!(
        lo <= at_end && at_end <= hi,
        "at the window's end the backoff applies: {at_end:?}"
    );
}

/// A second announced restart `gap` after the first quick one, on a
/// connection admitted right after it and kept alive with ticks. Returns
/// the delay announced.
fn second_restart_after(gap: Duration) -> Duration {
    let mut h = exact_harness();
    connect(&mut h);
    restart(&mut h, 1000);
    let began = h.now;
    run(
        &mut h,
        &[Op::ToDeadline, Op::Drive(0), Op::Drive(0), Op::Drive(0)],
    );
    assert_eq!(h.node.phase(), clawnode_core::Phase::Connected);
    while h.now + Duration::from_secs(5) < began + gap {
        run(
            &mut h,
            &[Op::Advance(5000), Op::Frame(Sel::Current, Fr::Tick(None))],
        );
    }
    h.now = began + gap;
    run(&mut h, &[Op::Frame(Sel::Current, Fr::Tick(None))]);
    restart(&mut h, 5000);
    last_retry(&h)
}

#[test]
fn a_second_restart_is_quick_again_exactly_stable_after_the_first() {
    let t = Timeouts::default();
    let (_, backoff_hi) = Backoff::bounds(&BackoffConfig::default(), 1);
    let soon = second_restart_after(t.stable_after - Duration::from_millis(1));
    assert!(
        soon <= backoff_hi,
        "a restart just within stable_after of the last meets the backoff: {soon:?}"
    );
    let at = second_restart_after(t.stable_after);
    assert_eq!(
        at,
        Duration::from_millis(5000),
        "stable_after after the last quick restart, the next is quick again"
    );
}
