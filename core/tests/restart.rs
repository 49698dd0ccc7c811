//! A gateway that announced a restart and is not back in time: the node
//! keeps retrying briefly instead of climbing the backoff, and none of it
//! counts as a failure, for a bounded time and a bounded number of retries.

use core::time::Duration;

use clawnode_core::sim::{GatewayConfig, Sim, loopback_config};
use clawnode_core::{
    Backoff, BackoffConfig, DisconnectReason, Effect, Limits, Notification, Timeouts,
};

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
