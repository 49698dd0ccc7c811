//! Named scenarios of the session policy, run in the simulation harness
//! (`clawnode_core::sim`): a fake gateway, virtual time, and the invariant
//! checker watching every step.

use core::time::Duration;

use clawnode_core::sim::{
    self, AttemptPlan, Backoff, ErrorSpec, GatewayConfig, Sim, loopback_config, pinned_config,
};
use clawnode_core::{
    AttemptId, BackoffConfig, CancelReason, Credentials, DisconnectReason, DropReason, Effect,
    Input, InvokeOutcome, InvokeRefusal, NodeOptions, Notification, PauseKind, Phase, Pin,
    RequestError, Secret, SendRefusal, SessionConfig, SocketError, Time, TlsPolicy,
};
use serde_json::{Value, json};

const SEC: Duration = Duration::from_secs(1);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn pin(b: u8) -> Pin {
    Pin::from_sha256([b; 32])
}

fn connected(gw: GatewayConfig, config: SessionConfig) -> Sim {
    let mut sim = Sim::new(gw);
    sim.apply(config);
    assert!(sim.run_until_connected(secs(5)), "{:?}", sim.node.status());
    sim
}

/// A sim whose gateway plays `plans` for its first attempts, then
/// `gw.default_plan`, with [`loopback_config`] applied.
fn started(gw: GatewayConfig, plans: impl IntoIterator<Item = AttemptPlan>) -> Sim {
    let mut sim = Sim::new(gw);
    for plan in plans {
        sim.gateway.plan_next(plan);
    }
    sim.apply(loopback_config());
    sim
}

/// A gateway that refuses every socket.
fn refusing() -> GatewayConfig {
    GatewayConfig {
        default_plan: AttemptPlan::Refuse,
        ..GatewayConfig::default()
    }
}

/// Connected, on loopback, to a gateway that holds requests unanswered.
fn holding_requests() -> Sim {
    let gw = GatewayConfig {
        auto_ack: false,
        ..GatewayConfig::default()
    };
    connected(gw, loopback_config())
}

/// Connected, on loopback, to a gateway whose shared token is `tok`.
fn shared_token_tok() -> Sim {
    let gw = GatewayConfig {
        shared_token: Some("tok".into()),
        ..GatewayConfig::default()
    };
    connected(gw, loopback_config())
}

/// Connected, on loopback, to a gateway announcing `max_payload`.
fn max_payload(max_payload: u64) -> Sim {
    let gw = GatewayConfig {
        max_payload,
        ..GatewayConfig::default()
    };
    connected(gw, loopback_config())
}

/// The gateway closes with 1006; the disconnects of the next 20 ms.
fn fail_once(sim: &mut Sim) -> Vec<(AttemptId, DisconnectReason, Option<Duration>)> {
    let mark = sim.mark();
    sim.gw_close(1006);
    sim.run_for(Duration::from_millis(20));
    disconnects(sim, mark)
}

/// The gateway sends a slow `inv-1`, then drops the connection; the node
/// reconnects.
fn invoke_then_reconnect(sim: &mut Sim) {
    sim.gw_invoke("inv-1", "slow", None, None);
    sim.run_for(Duration::from_millis(10));
    sim.gw_close(1006);
    assert!(sim.run_until_cond(secs(10), |s| s.connected_count() == 2));
}

/// Runs until the token mismatch arrives and the 250 ms device-token retry
/// is scheduled.
fn await_device_token_retry(sim: &mut Sim) {
    assert!(sim.run_until_cond(secs(10), |s| {
        s.gateway.log.connects.len() == 2 && s.node.status().phase == Phase::Waiting
    }));
    assert_eq!(
        sim.node.status().next_retry,
        Some(sim.now + Duration::from_millis(250))
    );
}

fn disconnects(sim: &Sim, mark: usize) -> Vec<(AttemptId, DisconnectReason, Option<Duration>)> {
    sim.effects_since(mark)
        .filter_map(|e| match e {
            Effect::Notify(Notification::Disconnected {
                attempt,
                reason,
                retry_in,
                ..
            }) => Some((*attempt, reason.clone(), *retry_in)),
            _ => None,
        })
        .collect()
}

fn opens_since(sim: &Sim, mark: usize) -> Vec<(Time, AttemptId)> {
    sim.log[mark..]
        .iter()
        .filter_map(|(t, e)| match e {
            Effect::OpenSocket { attempt, .. } => Some((*t, *attempt)),
            _ => None,
        })
        .collect()
}

fn paused(sim: &Sim) -> Vec<clawnode_core::PauseReason> {
    sim.notifications()
        .filter_map(|n| match n {
            Notification::Paused(p) => Some((**p).clone()),
            _ => None,
        })
        .collect()
}

fn result_for<'a>(sim: &'a Sim, id: &str) -> Vec<&'a Value> {
    sim.results()
        .iter()
        .filter(|(_, p)| p["id"] == id)
        .map(|(_, p)| p)
        .collect()
}

fn ok(payload: &str) -> InvokeOutcome {
    InvokeOutcome::Ok {
        payload_json: Some(payload.into()),
    }
}

// ---- inputs compared by value (docs/protocol.md §8) ------------------------

#[test]
fn seed_identical_config_resupplied_10000_times_does_nothing_then_a_pin_change_reconnects_once() {
    let gw = GatewayConfig {
        cert_pin: pin(0xa1),
        ..GatewayConfig::default()
    };
    let mut sim = connected(gw, pinned_config(&[pin(0xa1)]));
    // Between pings, with the last pong in: only the session's own
    // schedule moves the next deadline.
    sim.run_for(secs(50));
    let mark = sim.mark();
    let deadline = sim.node.poll_timeout();
    let status = sim.node.status();
    for i in 0..10_000u32 {
        // A freshly built, equal value every time: identity must not matter.
        let effects = sim.apply(pinned_config(&[pin(0xa1)]));
        assert!(effects.is_empty(), "re-supply #{i} emitted {effects:?}");
        assert_eq!(
            sim.node.poll_timeout(),
            deadline,
            "re-supply #{i} moved a timer"
        );
        if i % 1000 == 999 {
            sim.run_for(SEC);
        }
    }
    assert_eq!(
        sim.node.status().counters.attempts,
        status.counters.attempts
    );
    sim.run_for(secs(600));
    assert_eq!(sim.connected_count(), 1);
    assert_eq!(sim.open_count(), 1);
    assert_eq!(sim.close_count(), 0);
    assert_eq!(
        sim.count_since(mark, |e| !matches!(e, Effect::SendPing { .. })),
        0
    );

    // A change of a trust input: exactly one teardown, one open, one Connected.
    let mark = sim.mark();
    sim.apply(pinned_config(&[pin(0xa1), pin(0xb2)]));
    sim.run_for(secs(600));
    let is_open = |e: &Effect| matches!(e, Effect::OpenSocket { .. });
    let is_close = |e: &Effect| matches!(e, Effect::CloseSocket { .. });
    let is_conn = |e: &Effect| matches!(e, Effect::Notify(Notification::Connected { .. }));
    assert_eq!(sim.count_since(mark, is_close), 1);
    assert_eq!(sim.count_since(mark, is_open), 1);
    assert_eq!(sim.count_since(mark, is_conn), 1);
    assert_eq!(sim.node.status().phase, Phase::Connected);
    assert_eq!(sim.gateway.log.connects.len(), 2);
}

#[test]
fn every_session_input_change_reconnects_exactly_once() {
    let base = loopback_config();
    let mut changed = Vec::new();
    changed.push(base.clone().with_session_id("other"));
    changed.push(base.clone().with_credentials(Credentials {
        password: Some(Secret::new("pw")),
        ..base.credentials.clone()
    }));
    let mut client = base.client.clone();
    client.display_name = Some("renamed".into());
    changed.push(base.clone().with_client(client));
    changed.push(
        SessionConfig::parse("ws://localhost:18789", TlsPolicy::SystemTrust)
            .unwrap()
            .with_session_id("sim")
            .with_credentials(base.credentials.clone())
            .with_client(base.client.clone()),
    );
    for next in changed {
        let mut sim = connected(GatewayConfig::default(), base.clone());
        let mark = sim.mark();
        sim.apply(next.clone());
        for _ in 0..100 {
            sim.apply(next.clone());
        }
        sim.run_for(secs(300));
        assert_eq!(
            sim.count_since(mark, |e| matches!(e, Effect::CloseSocket { .. })),
            1
        );
        assert_eq!(
            sim.count_since(mark, |e| matches!(e, Effect::OpenSocket { .. })),
            1
        );
        assert_eq!(sim.connected_count(), 2);
    }
}

// ---- handshake and liveness --------------------------------------------------

#[test]
fn challenge_timeout_closes_and_retries() {
    let mut sim = started(GatewayConfig::default(), [AttemptPlan::NoChallenge]);
    assert!(sim.run_until_connected(secs(30)));
    let d = disconnects(&sim, 0);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].1, DisconnectReason::ChallengeTimeout);
    assert_eq!(sim.gateway.log.node_closes.len(), 1);
    // The timeout is the configured 10 s after the socket opened.
    let closed_at = sim
        .log
        .iter()
        .find(|(_, e)| matches!(e, Effect::CloseSocket { .. }))
        .unwrap()
        .0;
    assert_eq!(closed_at, Time::from_millis(5 + 10_000));
    assert_eq!(sim.node.status().attempt, Some(AttemptId(2)));
}

#[test]
fn invalid_challenge_and_missing_hello_are_retried() {
    let mut sim = started(
        GatewayConfig::default(),
        [
            AttemptPlan::BadChallenge,
            AttemptPlan::NoHello,
            AttemptPlan::Hang,
        ],
    );
    assert!(sim.run_until_connected(secs(60)));
    let reasons: Vec<_> = disconnects(&sim, 0).into_iter().map(|d| d.1).collect();
    assert!(matches!(reasons[0], DisconnectReason::ProtocolViolation(_)));
    assert_eq!(reasons[1], DisconnectReason::HandshakeTimeout);
    assert_eq!(reasons[2], DisconnectReason::OpenTimeout);
    assert_eq!(reasons.len(), 3);
    assert_eq!(sim.node.status().counters.admissions, 1);
}

#[test]
fn tick_timeout_closes_with_4000_and_reconnects() {
    let mut sim = connected(GatewayConfig::default(), loopback_config());
    sim.run_for(secs(100));
    let last_tick = sim.gateway.log.connects.first().map(|c| c.at).unwrap();
    assert!(last_tick < sim.now);
    let mark = sim.mark();
    let silent_from = sim.now;
    // Pongs still come: only the missing ticks can trip the watchdog.
    sim.gw_stop_ticks();
    sim.run_for(secs(200));
    let closes: Vec<_> = sim.log[mark..]
        .iter()
        .filter_map(|(t, e)| match e {
            Effect::CloseSocket { code, .. } => Some((*t, *code)),
            _ => None,
        })
        .collect();
    assert_eq!(closes.len(), 1, "{closes:?}");
    assert_eq!(closes[0].1, 4000);
    // Ticks every 30 s; the last one before silence arrived at most 30 s
    // before it, and the watchdog fires 60 s after that tick.
    let waited = closes[0].0 - silent_from;
    assert!(waited > secs(30) && waited <= secs(60), "{waited:?}");
    let d = disconnects(&sim, mark);
    assert_eq!(d[0].1, DisconnectReason::TickTimeout);
    assert_eq!(sim.connected_count(), 2);
    assert_eq!(sim.node.status().phase, Phase::Connected);
}

#[test]
fn pings_after_15_quiet_seconds_while_connected() {
    // Ticks every 30 s: each ping goes out 15 s after the last tick (or
    // hello-ok), never while the gateway is being heard from.
    let mut sim = connected(GatewayConfig::default(), loopback_config());
    let start = sim.now;
    sim.run_for(secs(121));
    let pings: Vec<_> = sim.gateway.log.pings.iter().map(|p| p.0 - start).collect();
    assert_eq!(pings, [15, 45, 75, 105].map(secs), "{pings:?}");

    // A silent gateway (no ticks): a ping every 15 s after the last pong.
    let quiet = GatewayConfig {
        tick_interval_ms: 600_000,
        ..GatewayConfig::default()
    };
    let mut sim = connected(quiet, loopback_config());
    let start = sim.now;
    sim.run_for(secs(61));
    let pings = &sim.gateway.log.pings;
    assert_eq!(pings.len(), 4, "{pings:?}");
    assert_eq!(pings[0].0 - start, secs(15));
    for w in pings.windows(2) {
        let gap = w[1].0 - w[0].0;
        assert!(gap >= secs(15) && gap < secs(16), "{gap:?}");
    }
}

#[test]
fn no_pings_before_hello_ok() {
    let mut sim = started(GatewayConfig::default(), [AttemptPlan::NoHello]);
    sim.run_for(secs(9));
    assert!(sim.gateway.log.pings.is_empty());
}

#[test]
fn seq_gaps_are_notified() {
    let gw = GatewayConfig {
        tick_interval_ms: 1000,
        seq_gap_every: Some(3),
        ..GatewayConfig::default()
    };
    let mut sim = connected(gw, loopback_config());
    sim.run_for(Duration::from_millis(6500));
    let gaps: Vec<_> = sim
        .notifications()
        .filter_map(|n| match n {
            Notification::SeqGap { expected, got } => Some((*expected, *got)),
            _ => None,
        })
        .collect();
    // seqs: 1 2 4 5 6 8 → gaps at 3 and 7
    assert_eq!(gaps, vec![(3, 4), (7, 8)]);
    // An explicit skip on a broadcast event.
    let a = sim.gateway.admitted().unwrap();
    sim.gateway.skip_seq(a, 10);
    sim.gw_event("presence", json!({}), true);
    sim.run_for(Duration::from_millis(10));
    assert!(sim.notifications().any(|n| matches!(
        n,
        Notification::SeqGap {
            expected: 9,
            got: 19
        }
    )));
}

// ---- reconnect and backoff ---------------------------------------------------

#[test]
fn backoff_stays_in_bounds_widens_and_resets_after_a_stable_connection() {
    let mut sim = started(refusing(), []);
    sim.run_for(secs(60));
    let c = BackoffConfig::default();
    let d = disconnects(&sim, 0);
    assert!(d.len() >= 5, "{d:?}");
    for (i, (_, reason, retry)) in d.iter().enumerate() {
        assert!(matches!(
            reason,
            DisconnectReason::Failed(SocketError::Io(_))
        ));
        let (lo, hi) = Backoff::bounds(&c, i as u32 + 1);
        let r = retry.unwrap();
        assert!(
            lo <= r && r <= hi,
            "failure {}: {r:?} not in {lo:?}..={hi:?}",
            i + 1
        );
    }
    // The next attempt starts exactly when announced.
    let opens = opens_since(&sim, 0);
    for (i, (_, _, retry)) in d.iter().enumerate().take(opens.len() - 1) {
        let failed_at = opens[i].0 + Duration::from_millis(5);
        assert_eq!(opens[i + 1].0, failed_at + retry.unwrap());
    }
    // Recover and drop at once: a flap counts as one more failure.
    let failures = d.len() as u32;
    sim.gateway.config.default_plan = AttemptPlan::Normal;
    assert!(sim.run_until_connected(secs(60)));
    let d = fail_once(&mut sim);
    let (lo, hi) = Backoff::bounds(&c, failures + 1);
    let r = d[0].2.unwrap();
    assert!(lo <= r && r <= hi, "{r:?} after a flap: {lo:?}..={hi:?}");
    // Recover and stay up past `stable_after`, then fail once: the delay is
    // back in the first band.
    assert!(sim.run_until_cond(secs(120), |s| s.connected_count() == 2));
    sim.run_for(NodeOptions::with_seed(0).timeouts.stable_after);
    let d = fail_once(&mut sim);
    assert_eq!(d.len(), 1);
    let (lo, hi) = Backoff::bounds(&c, 1);
    let r = d[0].2.unwrap();
    assert!(lo <= r && r <= hi, "{r:?} after a reset");
}

#[test]
fn many_failures_widen_to_the_slow_band() {
    let mut sim = started(refusing(), []);
    sim.run_for(secs(3600));
    let c = BackoffConfig::default();
    let d = disconnects(&sim, 0);
    for (_, _, r) in d.iter().skip(c.slow_after as usize) {
        let r = r.unwrap();
        assert!(c.slow_min <= r && r <= c.slow_max, "{r:?}");
    }
    // An hour of an unreachable gateway: a few dozen attempts, not thousands.
    let attempts = sim.open_count();
    assert!(
        (60..=130).contains(&attempts),
        "{attempts} attempts in an hour"
    );
}

#[test]
fn retry_after_ms_is_honoured() {
    let mut sim = started(
        GatewayConfig::default(),
        [AttemptPlan::Reject(
            ErrorSpec::new("UNAVAILABLE", None)
                .retry_after(7000)
                .details(json!({"reason": "startup-sidecars"})),
        )],
    );
    assert!(sim.run_until_connected(secs(60)));
    let d = disconnects(&sim, 0);
    assert_eq!(d.len(), 1);
    assert!(matches!(&d[0].1, DisconnectReason::Rejected(e) if e.retry_after_ms == Some(7000)));
    assert!(d[0].2.unwrap() >= Duration::from_millis(7000));
    let opens = opens_since(&sim, 0);
    assert!(opens[1].0 - opens[0].0 >= Duration::from_millis(7000));
}

#[test]
fn retry_after_is_clamped() {
    let mut sim = started(
        GatewayConfig::default(),
        [AttemptPlan::Reject(
            ErrorSpec::new("UNAVAILABLE", None).retry_after(10_000_000),
        )],
    );
    assert!(sim.run_until_connected(secs(400)));
    let d = disconnects(&sim, 0);
    assert_eq!(d[0].2, Some(BackoffConfig::default().max_retry_after));
}

#[test]
fn shutdown_then_1012_reconnects_after_restart_expected_and_is_not_a_failure() {
    let mut sim = connected(GatewayConfig::default(), loopback_config());
    sim.run_for(secs(40));
    let mark = sim.mark();
    let at = sim.now;
    sim.gw_shutdown(5000);
    assert!(sim.run_until_cond(secs(60), |s| s.connected_count() == 2));
    let d = disconnects(&sim, mark);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].1, DisconnectReason::GatewayRestart);
    assert_eq!(d[0].2, Some(Duration::from_millis(5000)));
    let opens = opens_since(&sim, mark);
    assert_eq!(opens.len(), 1);
    assert!(opens[0].0 - at >= Duration::from_millis(5000));
    assert_eq!(sim.inv.failures(), 0);
    // The shutdown event reached the application too.
    assert!(
        sim.notifications()
            .any(|n| matches!(n, Notification::GatewayEvent { event, .. } if event == "shutdown"))
    );
    // A failure right after counts as the first.
    let (lo, hi) = Backoff::bounds(&BackoffConfig::default(), 1);
    let r = fail_once(&mut sim)[0].2.unwrap();
    assert!(lo <= r && r <= hi);
}

#[test]
fn restart_wait_is_bounded() {
    let mut sim = connected(GatewayConfig::default(), loopback_config());
    sim.gw_shutdown(3_600_000);
    sim.run_for(SEC);
    let d = disconnects(&sim, 0);
    assert_eq!(d[0].2, Some(secs(30)));
}

#[test]
fn close_1012_without_shutdown_is_a_restart_too() {
    let mut sim = connected(GatewayConfig::default(), loopback_config());
    sim.gw_close(1012);
    assert!(sim.run_until_cond(secs(30), |s| s.connected_count() == 2));
    assert_eq!(disconnects(&sim, 0)[0].1, DisconnectReason::GatewayRestart);
    assert_eq!(sim.inv.failures(), 0);
}

#[test]
fn wake_during_backoff_retries_at_once_and_never_doubles_an_attempt() {
    let mut sim = started(refusing(), []);
    sim.run_for(secs(5));
    assert_eq!(sim.node.status().phase, Phase::Waiting);
    let before = sim.open_count();
    // Network is back.
    sim.gateway.config.default_plan = AttemptPlan::Normal;
    let effects = sim.input(Input::Wake);
    assert!(
        matches!(effects.as_slice(), [Effect::OpenSocket { .. }]),
        "{effects:?}"
    );
    // More wakes while the attempt runs: nothing.
    for _ in 0..10 {
        assert!(sim.input(Input::Wake).is_empty());
    }
    sim.run_for(Duration::from_millis(2));
    assert!(sim.input(Input::Wake).is_empty());
    assert!(sim.run_until_connected(SEC));
    assert_eq!(sim.open_count(), before + 1);
    // Wake while connected: nothing.
    assert!(sim.input(Input::Wake).is_empty());
}

#[test]
fn stop_closes_with_1000_and_makes_no_further_attempt() {
    let mut sim = connected(GatewayConfig::default(), loopback_config());
    let effects = sim.input(Input::Stop);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::CloseSocket { code: 1000, .. }))
    );
    sim.run_for(secs(3600));
    assert_eq!(sim.open_count(), 1);
    assert_eq!(sim.node.status().phase, Phase::Stopped);
    assert!(sim.apply(loopback_config().with_session_id("x")).is_empty());
    assert!(sim.input(Input::Wake).is_empty());
}

// ---- terminal failures ---------------------------------------------------------

#[test]
fn pin_mismatch_pauses_for_good_and_resumes_on_a_new_pin() {
    let gw = GatewayConfig {
        cert_pin: pin(0xa1),
        ..GatewayConfig::default()
    };
    let mut sim = connected(gw, pinned_config(&[pin(0xa1)]));
    // The gateway's certificate is rotated; the next connection shows it.
    sim.gateway.config.cert_pin = pin(0xc3);
    sim.gw_close(1006);
    sim.run_for(secs(10));
    let p = paused(&sim);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].kind, PauseKind::PinMismatch);
    assert_eq!(p[0].expected, vec![pin(0xa1)]);
    assert_eq!(p[0].observed, Some(pin(0xc3)));
    assert_eq!(p[0].code(), "TLS_PIN_MISMATCH");
    assert!(p[0].hint.contains(&pin(0xc3).to_string()), "{}", p[0].hint);
    let opens = sim.open_count();
    sim.run_for(secs(24 * 3600));
    assert_eq!(sim.open_count(), opens, "a pin mismatch must not loop");
    assert_eq!(sim.node.status().phase, Phase::Paused);
    // Equal config, wake, or a change of something else: still paused.
    assert!(sim.apply(pinned_config(&[pin(0xa1)])).is_empty());
    assert!(sim.input(Input::Wake).is_empty());
    assert!(
        sim.apply(pinned_config(&[pin(0xa1)]).with_session_id("other"))
            .is_empty()
    );
    // The operator pins the new certificate.
    sim.apply(pinned_config(&[pin(0xc3)]));
    assert!(sim.run_until_connected(secs(5)));
    assert_eq!(sim.connected_count(), 2);
}

#[test]
fn tls_failure_under_system_trust_pauses() {
    let mut sim = Sim::new(GatewayConfig::default());
    sim.gateway.plan_next(AttemptPlan::TlsFailure);
    let cfg = SessionConfig::parse("wss://gw.example.com", TlsPolicy::SystemTrust).unwrap();
    sim.apply(cfg);
    sim.run_for(secs(3600));
    assert_eq!(sim.open_count(), 1);
    assert_eq!(paused(&sim)[0].kind, PauseKind::Tls);
}

fn rotate_shared_token(sim: &mut Sim) {
    // The operator rotates the gateway's shared token; the node still has the old one.
    sim.gateway.config.shared_token = Some("tok-new".into());
    sim.gw_close(1008);
}

#[test]
fn auth_token_mismatch_retries_once_with_the_stored_device_token_on_loopback() {
    let mut sim = shared_token_tok();
    assert_eq!(sim.app.stored_tokens, vec![Secret::new("devtok-1")]);
    rotate_shared_token(&mut sim);
    assert!(sim.run_until_cond(secs(30), |s| s.connected_count() == 2));
    let connects = &sim.gateway.log.connects;
    assert_eq!(connects.len(), 3);
    assert_eq!(connects[1].auth, json!({"token": "tok"}));
    assert!(!connects[1].admitted);
    // The one retry: the stored device token alone, 250 ms later.
    assert_eq!(connects[2].auth, json!({"deviceToken": "devtok-1"}));
    assert!(connects[2].admitted);
    let d = disconnects(&sim, 0);
    assert_eq!(d.last().unwrap().2, Some(Duration::from_millis(250)));
}

#[test]
fn auth_token_mismatch_then_a_failed_device_token_retry_pauses() {
    let mut sim = shared_token_tok();
    sim.gateway.config.device_token = Some("devtok-other".into());
    rotate_shared_token(&mut sim);
    sim.run_for(secs(3600));
    let connects = &sim.gateway.log.connects;
    assert_eq!(connects.len(), 3, "exactly one bounded retry");
    assert_eq!(connects[2].auth, json!({"deviceToken": "devtok-1"}));
    let p = paused(&sim);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].kind, PauseKind::Auth);
    assert_eq!(sim.node.status().phase, Phase::Paused);
    // New credentials resume it.
    sim.gateway.config.device_token = Some("devtok-1".into());
    let cfg = loopback_config().with_credentials(Credentials {
        token: Some(Secret::new("tok-new")),
        ..Credentials::default()
    });
    sim.apply(cfg);
    assert!(sim.run_until_connected(secs(5)));
}

#[test]
fn auth_token_mismatch_retries_with_a_token_handed_in_by_the_driver_on_pinned_wss() {
    let gw = GatewayConfig {
        shared_token: Some("tok-new".into()),
        cert_pin: pin(7),
        ..GatewayConfig::default()
    };
    let mut sim = Sim::new(gw);
    sim.input(Input::StoredDeviceToken(Some(Secret::new("devtok-1"))));
    let cfg = SessionConfig::parse(
        "wss://gw.example.com",
        TlsPolicy::Pinned(clawnode_core::PinSet::new([pin(7)]).unwrap()),
    )
    .unwrap()
    .with_credentials(Credentials {
        token: Some(Secret::new("tok")),
        ..Credentials::default()
    });
    sim.apply(cfg);
    assert!(sim.run_until_connected(secs(5)));
    let connects = &sim.gateway.log.connects;
    assert_eq!(connects.len(), 2);
    assert_eq!(connects[1].auth, json!({"deviceToken": "devtok-1"}));
}

#[test]
fn auth_token_mismatch_on_an_untrusted_endpoint_pauses_without_retry() {
    let gw = GatewayConfig {
        shared_token: Some("tok-new".into()),
        ..GatewayConfig::default()
    };
    let mut sim = Sim::new(gw);
    sim.input(Input::StoredDeviceToken(Some(Secret::new("devtok-1"))));
    let cfg = SessionConfig::parse("wss://gw.example.com", TlsPolicy::SystemTrust)
        .unwrap()
        .with_credentials(Credentials {
            token: Some(Secret::new("tok")),
            ..Credentials::default()
        });
    sim.apply(cfg);
    sim.run_for(secs(3600));
    let connects = &sim.gateway.log.connects;
    assert_eq!(connects.len(), 1);
    assert!(connects[0].auth.get("deviceToken").is_none());
    let p = paused(&sim);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].code(), "AUTH_TOKEN_MISMATCH");
    assert_eq!(
        p[0].error
            .as_ref()
            .unwrap()
            .recommended_next_step
            .as_deref(),
        Some("retry_with_device_token")
    );
}

#[test]
fn pairing_required_pauses_with_an_actionable_hint() {
    let mut sim = started(
        GatewayConfig::default(),
        [AttemptPlan::Reject(
            ErrorSpec::new("NOT_PAIRED", Some("PAIRING_REQUIRED"))
                .details(json!({"requestId": "req-42"})),
        )],
    );
    sim.run_for(secs(3600));
    assert_eq!(sim.open_count(), 1);
    let p = paused(&sim);
    assert_eq!(p[0].kind, PauseKind::Pairing);
    assert!(
        p[0].hint.contains("openclaw devices approve req-42"),
        "{}",
        p[0].hint
    );
}

#[test]
fn pairing_required_with_wait_then_retry_keeps_retrying_slowly() {
    let gw = GatewayConfig {
        default_plan: AttemptPlan::Reject(
            ErrorSpec::new("NOT_PAIRED", Some("PAIRING_REQUIRED")).next_step("wait_then_retry"),
        ),
        ..GatewayConfig::default()
    };
    let mut sim = started(gw, []);
    sim.run_for(secs(600));
    let c = BackoffConfig::default();
    let d = disconnects(&sim, 0);
    assert!(d.len() >= 9 && d.len() <= 21, "{}", d.len());
    for (_, _, r) in &d {
        let r = r.unwrap();
        assert!(c.slow_min <= r && r <= c.slow_max);
    }
    assert!(paused(&sim).is_empty());
}

#[test]
fn identity_and_protocol_refusals_pause() {
    for (spec, kind) in [
        (
            ErrorSpec::new("NOT_PAIRED", Some("DEVICE_IDENTITY_REQUIRED")),
            PauseKind::Identity,
        ),
        (
            ErrorSpec::new("INVALID_REQUEST", Some("PROTOCOL_MISMATCH")),
            PauseKind::Protocol,
        ),
        (
            ErrorSpec::new("NOT_LINKED", Some("AUTH_PASSWORD_MISMATCH"))
                .next_step("update_auth_credentials"),
            PauseKind::Auth,
        ),
    ] {
        let mut sim = started(
            GatewayConfig::default(),
            [AttemptPlan::Reject(spec.clone())],
        );
        sim.run_for(secs(3600));
        assert_eq!(sim.open_count(), 1, "{spec:?}");
        let p = paused(&sim);
        assert_eq!(p[0].kind, kind);
        assert_eq!(Some(p[0].code()), spec.detail_code.as_deref());
        assert!(!p[0].hint.is_empty());
    }
}

// ---- invokes -------------------------------------------------------------------

#[test]
fn invoke_is_handed_to_the_app_and_its_answer_sent_with_our_node_id() {
    let mut sim = connected(GatewayConfig::default(), loopback_config());
    let sent = sim.now;
    sim.gw_invoke(
        "inv-1",
        "system.which",
        Some(r#"{"bins":["sh"]}"#),
        Some(5000),
    );
    sim.run_for(Duration::from_millis(10));
    assert_eq!(sim.app.invokes.len(), 1);
    let req = sim.app.invokes[0].clone();
    assert_eq!(req.command, "system.which");
    assert_eq!(req.params_json.as_deref(), Some(r#"{"bins":["sh"]}"#));
    assert_eq!(req.deadline, sent + Duration::from_millis(5 + 5000));
    sim.answer("inv-1", ok(r#"{"bins":{"sh":"/usr/bin/sh"}}"#));
    sim.run_for(Duration::from_millis(10));
    let r = result_for(&sim, "inv-1");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["ok"], true);
    assert_eq!(r[0]["nodeId"], sim.node.identity().device_id());
    assert_eq!(r[0]["payloadJSON"], r#"{"bins":{"sh":"/usr/bin/sh"}}"#);
    assert_eq!(sim.node.status().running_invokes, 0);
}

#[test]
fn invoke_timeout_is_answered_by_the_core_and_the_late_answer_dropped() {
    let mut sim = connected(GatewayConfig::default(), loopback_config());
    sim.gw_invoke("inv-1", "slow", None, Some(2000));
    sim.run_for(secs(3));
    let r = result_for(&sim, "inv-1");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["ok"], false);
    assert_eq!(r[0]["error"]["code"], "TIMEOUT");
    assert!(
        sim.app
            .cancels
            .contains(&("inv-1".into(), CancelReason::Deadline))
    );
    let effects = sim.answer("inv-1", ok("{}"));
    assert_eq!(
        effects,
        vec![Effect::Notify(Notification::InvokeDropped {
            id: "inv-1".into(),
            reason: DropReason::NotRunning
        })]
    );
    sim.run_for(SEC);
    assert_eq!(result_for(&sim, "inv-1").len(), 1);
}

#[test]
fn invoke_without_timeout_gets_30_seconds() {
    let mut sim = connected(GatewayConfig::default(), loopback_config());
    let sent = sim.now;
    sim.gw_invoke("inv-1", "slow", None, None);
    sim.run_for(Duration::from_millis(10));
    assert_eq!(
        sim.app.invokes[0].deadline,
        sent + Duration::from_millis(5) + secs(30)
    );
    sim.run_for(secs(29));
    assert!(result_for(&sim, "inv-1").is_empty());
    sim.run_for(secs(2));
    assert_eq!(result_for(&sim, "inv-1")[0]["error"]["code"], "TIMEOUT");
}

#[test]
fn duplicate_invoke_id_is_not_delivered_twice() {
    let mut sim = connected(GatewayConfig::default(), loopback_config());
    sim.gw_invoke("inv-1", "echo", None, None);
    sim.gw_invoke("inv-1", "echo", None, None);
    sim.run_for(Duration::from_millis(10));
    assert_eq!(sim.app.invokes.len(), 1);
    assert!(sim.notifications().any(|n| matches!(
        n,
        Notification::InvokeRefused {
            reason: InvokeRefusal::Duplicate,
            ..
        }
    )));
    sim.answer("inv-1", ok("1"));
    sim.run_for(Duration::from_millis(10));
    assert_eq!(result_for(&sim, "inv-1").len(), 1);
    // Finished, the same id is answered as a repeat and never run again:
    // just after, half a second later, and on a new connection.
    for wait in [Duration::ZERO, Duration::from_millis(500)] {
        sim.run_for(wait);
        sim.gw_invoke("inv-1", "echo", None, None);
        sim.run_for(Duration::from_millis(10));
    }
    sim.gw_close(1006);
    assert!(sim.run_until_cond(secs(10), |s| s.connected_count() == 2));
    sim.gw_invoke("inv-1", "echo", None, None);
    sim.run_for(Duration::from_millis(10));
    assert_eq!(sim.app.invokes.len(), 1);
    let repeats = result_for(&sim, "inv-1");
    assert_eq!(repeats.len(), 4);
    for r in &repeats[1..] {
        assert_eq!(r["error"]["code"], "INVALID_REQUEST", "{r}");
    }
    let refused = sim
        .notifications()
        .filter(|n| {
            matches!(
                n,
                Notification::InvokeRefused {
                    reason: InvokeRefusal::Repeated,
                    ..
                }
            )
        })
        .count();
    assert_eq!(refused, 3);
}

#[test]
fn an_idempotency_key_runs_once_whatever_the_invoke_id() {
    let mut sim = connected(GatewayConfig::default(), loopback_config());
    let a = sim.gateway.admitted().unwrap();
    let invoke = |id: &str| json!({"id": id, "command": "echo", "idempotencyKey": "key-1"});
    sim.gateway.invoke_payload(sim.now, a, invoke("inv-1"));
    sim.gateway.invoke_payload(sim.now, a, invoke("inv-2"));
    sim.run_for(Duration::from_millis(10));
    assert_eq!(sim.app.invokes.len(), 1, "a running key");
    sim.answer("inv-1", ok("1"));
    sim.gateway.invoke_payload(sim.now, a, invoke("inv-3"));
    sim.run_for(Duration::from_millis(10));
    assert_eq!(sim.app.invokes.len(), 1, "a finished key");
    assert_eq!(
        result_for(&sim, "inv-3")[0]["error"]["code"],
        "INVALID_REQUEST"
    );
}

#[test]
fn undeclared_command_is_refused_without_reaching_the_app() {
    let mut sim = connected(GatewayConfig::default(), loopback_config());
    sim.gw_invoke("inv-1", "system.run", Some("{}"), None);
    sim.run_for(Duration::from_millis(20));
    assert!(sim.app.invokes.is_empty());
    let r = result_for(&sim, "inv-1");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["ok"], false);
    assert!(sim.notifications().any(|n| matches!(
        n,
        Notification::InvokeRefused { reason: InvokeRefusal::Undeclared, command, .. } if command == "system.run"
    )));
}

#[test]
fn invokes_beyond_the_limit_are_answered_busy() {
    let options = NodeOptions {
        max_concurrent_invokes: 3,
        ..NodeOptions::with_seed(1)
    };
    let mut sim = Sim::with(sim::test_key(1), options, GatewayConfig::default());
    sim.apply(loopback_config());
    assert!(sim.run_until_connected(secs(5)));
    for i in 0..4 {
        sim.gw_invoke(&format!("inv-{i}"), "slow", None, None);
    }
    sim.run_for(Duration::from_millis(20));
    assert_eq!(sim.app.invokes.len(), 3);
    let busy = result_for(&sim, "inv-3");
    assert_eq!(busy.len(), 1);
    assert_eq!(busy[0]["ok"], false);
    assert!(sim.notifications().any(|n| matches!(
        n,
        Notification::InvokeRefused { reason: InvokeRefusal::Busy, id, .. } if id == "inv-3"
    )));
    // One finishes: there is room again.
    sim.answer("inv-0", ok("0"));
    sim.gw_invoke("inv-4", "slow", None, None);
    sim.run_for(Duration::from_millis(20));
    assert_eq!(sim.app.invokes.len(), 4);
}

#[test]
fn invoke_result_from_a_stale_attempt_is_dropped_never_sent_on_the_new_connection() {
    let mut sim = connected(GatewayConfig::default(), loopback_config());
    invoke_then_reconnect(&mut sim);
    assert!(
        sim.app
            .cancels
            .contains(&("inv-1".into(), CancelReason::Disconnected))
    );
    let effects = sim.answer("inv-1", ok("late"));
    assert_eq!(
        effects,
        vec![Effect::Notify(Notification::InvokeDropped {
            id: "inv-1".into(),
            reason: DropReason::StaleAttempt
        })]
    );
    sim.run_for(secs(60));
    assert!(result_for(&sim, "inv-1").is_empty());
}

#[test]
fn gateway_cancel_becomes_a_cancel_effect() {
    let mut sim = connected(GatewayConfig::default(), loopback_config());
    sim.gw_invoke("inv-1", "slow", None, None);
    sim.run_for(Duration::from_millis(10));
    sim.gw_cancel("inv-1");
    sim.run_for(Duration::from_millis(10));
    assert_eq!(
        sim.app.cancels,
        vec![("inv-1".into(), CancelReason::Gateway)]
    );
    let effects = sim.answer("inv-1", ok("x"));
    assert!(matches!(
        effects.as_slice(),
        [Effect::Notify(Notification::InvokeDropped {
            reason: DropReason::NotRunning,
            ..
        })]
    ));
    sim.run_for(secs(60));
    assert!(result_for(&sim, "inv-1").is_empty());
    // A cancel for an unknown invoke: nothing.
    let mark = sim.mark();
    sim.gw_cancel("nope");
    sim.run_for(Duration::from_millis(10));
    assert_eq!(
        sim.count_since(mark, |e| matches!(e, Effect::CancelInvoke { .. })),
        0
    );
}

#[test]
fn oversize_invoke_result_is_replaced_by_an_error() {
    let mut sim = max_payload(1024);
    sim.gw_invoke("inv-1", "echo", None, None);
    sim.run_for(Duration::from_millis(10));
    let big = format!("\"{}\"", "x".repeat(4096));
    let effects = sim.answer("inv-1", ok(&big));
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Notify(Notification::InvokeDropped {
            reason: DropReason::TooLarge,
            ..
        })
    )));
    sim.run_for(Duration::from_millis(10));
    let r = result_for(&sim, "inv-1");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["ok"], false);
    assert_eq!(r[0]["error"]["code"], "PAYLOAD_TOO_LARGE");
}

// ---- requests from the application ----------------------------------------------

#[test]
fn send_before_hello_ok_is_refused_and_hands_the_payload_back() {
    let mut sim = Sim::new(GatewayConfig::default());
    let params = json!({"event": "x", "big": [1, 2, 3]});
    let e = sim
        .send_request("node.event", params.clone(), None)
        .unwrap_err();
    assert_eq!(e.reason, SendRefusal::NotConnected);
    assert_eq!(e.params, params);
    assert_eq!(e.method, "node.event");
    sim.gateway.plan_next(AttemptPlan::NoHello);
    sim.apply(loopback_config());
    sim.run_for(SEC);
    assert_eq!(sim.node.status().phase, Phase::Handshaking);
    let e = sim.send_event("status", Some(json!({"a": 1}))).unwrap_err();
    assert_eq!(e.reason, SendRefusal::NotConnected);
    assert_eq!(e.params["payloadJSON"], r#"{"a":1}"#);
    let e = sim
        .send_request("custom", json!({"b": 2}), None)
        .unwrap_err();
    assert_eq!(e.reason, SendRefusal::NotConnected);
    sim.run_for(secs(60));
    assert!(sim.gateway.log.frames.is_empty());
}

#[test]
fn oversize_frame_is_refused() {
    let mut sim = max_payload(1024);
    let big = json!({"blob": "y".repeat(2000)});
    let e = sim
        .send_request("node.event", big.clone(), None)
        .unwrap_err();
    assert!(matches!(e.reason, SendRefusal::TooLarge { max: 1024, size } if size > 2000));
    assert_eq!(e.params, big);
    assert!(
        sim.send_request("node.event", json!({"small": 1}), None)
            .is_ok()
    );
}

#[test]
fn out_of_order_responses_are_matched_by_id() {
    let mut sim = holding_requests();
    let ids: Vec<_> = (0..3)
        .map(|i| {
            sim.send_request("custom.method", json!({"n": i}), None)
                .unwrap()
        })
        .collect();
    sim.run_for(Duration::from_millis(10));
    let held = sim.gateway.held_requests().to_vec();
    assert_eq!(held.len(), 3);
    let now = sim.now;
    for (n, (a, id)) in held.iter().enumerate().rev() {
        sim.gateway.respond(now, *a, id, true, json!({"answer": n}));
    }
    sim.run_for(Duration::from_millis(10));
    let got: Vec<_> = sim
        .app
        .responses
        .iter()
        .map(|(id, r)| (*id, r.clone().unwrap()["answer"].clone()))
        .collect();
    assert_eq!(
        got,
        vec![(ids[2], json!(2)), (ids[1], json!(1)), (ids[0], json!(0))]
    );
    assert_eq!(sim.node.status().pending_requests, 0);
}

#[test]
fn pending_requests_fail_on_disconnect_and_are_not_replayed() {
    let mut sim = holding_requests();
    let a = sim.send_request("custom.method", json!({}), None).unwrap();
    let b = sim.send_event("status", None).unwrap();
    sim.run_for(Duration::from_millis(10));
    sim.gw_close(1006);
    assert!(sim.run_until_cond(secs(10), |s| s.connected_count() == 2));
    assert_eq!(
        sim.app.responses,
        vec![
            (a, Err(RequestError::Disconnected)),
            (b, Err(RequestError::Disconnected))
        ]
    );
    sim.run_for(secs(60));
    // Nothing was sent again on the new connection.
    let second = sim.gateway.admitted().unwrap();
    assert!(
        sim.gateway
            .log
            .frames
            .iter()
            .all(|(_, att, _)| *att != second)
    );
}

#[test]
fn requests_time_out() {
    let mut sim = holding_requests();
    let a = sim
        .send_request("custom.method", json!({}), Some(secs(2)))
        .unwrap();
    sim.run_for(secs(3));
    assert_eq!(sim.app.responses, vec![(a, Err(RequestError::Timeout))]);
    // The late answer is reported, not matched to anything.
    let (att, id) = sim.gateway.held_requests()[0].clone();
    let now = sim.now;
    sim.gateway.respond(now, att, &id, true, json!({}));
    sim.run_for(Duration::from_millis(10));
    assert_eq!(sim.app.responses.len(), 1);
    assert_eq!(sim.node.status().phase, Phase::Connected);
}

#[test]
fn gateway_error_responses_reach_the_app() {
    let mut sim = holding_requests();
    let a = sim.send_request("custom.method", json!({}), None).unwrap();
    sim.run_for(Duration::from_millis(10));
    let (att, id) = sim.gateway.held_requests()[0].clone();
    let now = sim.now;
    sim.gateway.respond(now, att, &id, false, Value::Null);
    sim.run_for(Duration::from_millis(10));
    assert!(matches!(
        &sim.app.responses[..],
        [(id, Err(RequestError::Gateway(e)))] if *id == a && e.code == "INVALID_REQUEST"
    ));
}

// ---- device token ----------------------------------------------------------------

#[test]
fn device_token_is_stored_when_new_or_changed_only() {
    let mut sim = connected(GatewayConfig::default(), loopback_config());
    assert_eq!(sim.app.stored_tokens, vec![Secret::new("devtok-1")]);
    sim.gw_close(1006);
    assert!(sim.run_until_cond(secs(10), |s| s.connected_count() == 2));
    assert_eq!(
        sim.app.stored_tokens.len(),
        1,
        "same token: not stored again"
    );
    sim.gateway.config.device_token = Some("devtok-2".into());
    sim.gw_close(1006);
    assert!(sim.run_until_cond(secs(10), |s| s.connected_count() == 3));
    assert_eq!(
        sim.app.stored_tokens,
        vec![Secret::new("devtok-1"), Secret::new("devtok-2")]
    );
    let stored = sim
        .log
        .iter()
        .find_map(|(_, e)| match e {
            Effect::StoreDeviceToken { url, role, .. } => Some((url.clone(), role.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(stored.0, *loopback_config().url());
    assert_eq!(stored.1, "node");
}

#[test]
fn stored_device_token_authenticates_when_no_shared_secret_is_configured() {
    let base = loopback_config().with_credentials(Credentials::default());
    let mut sim = connected(GatewayConfig::default(), base);
    assert!(sim.gateway.log.connects[0].auth.is_null());
    sim.gw_close(1006);
    assert!(sim.run_until_cond(secs(10), |s| s.connected_count() == 2));
    assert_eq!(
        sim.gateway.log.connects[1].auth,
        json!({"deviceToken": "devtok-1"})
    );
}

#[test]
fn a_device_token_the_gateway_no_longer_accepts_is_forgotten_once_and_the_session_pauses() {
    // Paired without a shared secret: the stored device token is all the
    // node has.
    let base = loopback_config().with_credentials(Credentials::default());
    let mut sim = connected(GatewayConfig::default(), base.clone());
    assert_eq!(sim.app.stored_tokens, vec![Secret::new("devtok-1")]);
    // The operator revokes it: the gateway now wants its shared token, and
    // the device token it would accept is another.
    sim.gateway.config.shared_token = Some("shared".into());
    sim.gateway.config.device_token = Some("devtok-2".into());
    sim.gw_close(4001);
    sim.run_for(secs(600));
    assert_eq!(opens_since(&sim, 0).len(), 2, "one reconnect, then a pause");
    assert_eq!(
        sim.gateway.log.connects[1].auth,
        json!({"deviceToken": "devtok-1"})
    );
    assert_eq!(sim.app.forgotten_tokens, 1);
    let pauses = paused(&sim);
    assert_eq!(pauses.len(), 1);
    assert!(
        pauses[0].hint.contains("clawnode run --pair"),
        "{}",
        pauses[0].hint
    );
    // The same config again, a thousand times: nothing.
    for _ in 0..1000 {
        sim.apply(base.clone());
    }
    sim.run_for(secs(60));
    assert_eq!(opens_since(&sim, 0).len(), 2);
    assert_eq!(sim.app.forgotten_tokens, 1);
    // The owner configures the shared token: one connect, with it alone
    // (the forgotten token is not sent), and a new device token stored.
    sim.apply(base.with_credentials(Credentials {
        token: Some(Secret::new("shared")),
        ..Credentials::default()
    }));
    assert!(sim.run_until_cond(secs(10), |s| s.connected_count() == 2));
    assert_eq!(opens_since(&sim, 0).len(), 3);
    assert_eq!(sim.gateway.log.connects[2].auth, json!({"token": "shared"}));
    assert_eq!(sim.app.stored_tokens.last(), Some(&Secret::new("devtok-2")));
    assert_eq!(sim.app.forgotten_tokens, 1);
}

#[test]
fn a_url_change_clears_the_stored_device_token() {
    let base = loopback_config().with_credentials(Credentials::default());
    let mut sim = connected(GatewayConfig::default(), base.clone());
    let other = SessionConfig::parse("ws://localhost:18790", TlsPolicy::SystemTrust)
        .unwrap()
        .with_session_id("sim")
        .with_client(base.client.clone());
    sim.apply(other);
    assert!(sim.run_until_cond(secs(10), |s| s.connected_count() == 2));
    assert!(
        sim.gateway.log.connects[1].auth.is_null(),
        "a token from another gateway was sent: {}",
        sim.gateway.log.connects[1].auth
    );
}

// ---- robustness ------------------------------------------------------------------

#[test]
fn garbage_frames_are_reported_and_do_not_disrupt_the_session() {
    let mut sim = connected(GatewayConfig::default(), loopback_config());
    for text in [
        "",
        "{",
        "null",
        "[]",
        r#"{"type":"event"}"#,
        r#"{"type":"res","id":"zzz","ok":true}"#,
        r#"{"type":"req","id":"1","method":"x"}"#,
        r#"{"type":"event","event":"tick","seq":-4}"#,
        r#"{"type":"event","event":"node.invoke.request","payload":{"id":5}}"#,
        r#"{"type":"event","event":"node.invoke.cancel","payload":{}}"#,
        "\u{0}\u{ffff}",
    ] {
        sim.gw_send_raw(text);
    }
    sim.run_for(secs(300));
    let rejected = sim
        .notifications()
        .filter(|n| matches!(n, Notification::FrameRejected { .. }))
        .count();
    assert_eq!(rejected, 11);
    assert_eq!(sim.connected_count(), 1);
    assert_eq!(sim.node.status().phase, Phase::Connected);
}

/// Events the core does not handle reach the application as the gateway
/// wrote them: the payload's text, not a re-encoding, and one nested too
/// deep for a `Value` too (the application finds that out if it reads it).
/// A `null` payload reads as none, as a missing one does.
#[test]
fn gateway_events_are_handed_on_with_the_payload_text_as_sent() {
    let mut sim = connected(GatewayConfig::default(), loopback_config());
    let mark = sim.mark();
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let payloads = [r#"{ "a": [1, 2.50], "b": "\u00e9" }"#, "null", "7", &deep];
    for (seq, p) in payloads.iter().enumerate() {
        sim.gw_send_raw(&format!(
            r#"{{"type":"event","event":"e{seq}","payload":{p}}}"#
        ));
    }
    sim.gw_send_raw(r#"{"type":"event","event":"bare"}"#);
    sim.run_for(secs(1));
    let got: Vec<(String, Option<String>)> = sim
        .effects_since(mark)
        .filter_map(|e| match e {
            Effect::Notify(Notification::GatewayEvent { event, payload, .. }) => {
                Some((event.clone(), payload.as_ref().map(|p| p.get().to_owned())))
            }
            _ => None,
        })
        .collect();
    let mut want: Vec<(String, Option<String>)> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("e{i}"), Some(p.to_string()).filter(|p| p != "null")))
        .collect();
    want.push(("bare".into(), None));
    assert_eq!(got, want);
    let rejected = sim.count_since(mark, |e| {
        matches!(e, Effect::Notify(Notification::FrameRejected { .. }))
    });
    assert_eq!(rejected, 0);
    assert_eq!(sim.connected_count(), 1);
}

#[test]
fn a_gateway_that_drops_unfinished_handshakes_is_retried() {
    let gw = GatewayConfig {
        handshake_timeout: Some(Duration::from_secs(3)),
        ..GatewayConfig::default()
    };
    let mut sim = started(gw, [AttemptPlan::NoHello]);
    assert!(sim.run_until_connected(secs(30)));
    let d = disconnects(&sim, 0);
    assert!(matches!(
        d[0].1,
        DisconnectReason::Closed {
            code: Some(1008),
            ..
        }
    ));
}

#[test]
fn simulations_are_deterministic() {
    fn run(seed: u64) -> String {
        let gw = GatewayConfig {
            tick_interval_ms: 5000,
            seq_gap_every: Some(4),
            ..GatewayConfig::default()
        };
        let mut sim = Sim::with(sim::test_key(3), NodeOptions::with_seed(seed), gw);
        sim.gateway.plan_next(AttemptPlan::Refuse);
        sim.gateway.plan_next(AttemptPlan::Refuse);
        sim.gateway.plan_next(AttemptPlan::NoChallenge);
        sim.apply(loopback_config());
        sim.run_until_connected(secs(120));
        sim.gw_invoke("a", "echo", None, Some(100));
        sim.run_for(secs(20));
        sim.gw_silent();
        sim.run_for(secs(200));
        sim.trace()
    }
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10), "the seed drives the jitter");
}

// ---- regressions: gaps the simulation found in the core ---------------------------

/// Drives a bare node through open and challenge to the point where it
/// awaits hello-ok; returns the node, its checker and the connect id.
fn awaiting_hello() -> (clawnode_core::NodeState, sim::Invariants, AttemptId, String) {
    let options = NodeOptions::with_seed(5);
    let mut inv = sim::Invariants::new(&options);
    let mut node = clawnode_core::NodeState::new(sim::test_key(5), options);
    let t = Time::ZERO;
    inv.input(&mut node, t, Input::Config(loopback_config()))
        .unwrap();
    let a = AttemptId(1);
    inv.input(&mut node, t, Input::SocketOpened { attempt: a })
        .unwrap();
    let challenge = json!({"type":"event","event":"connect.challenge","payload":{"nonce":"n","ts":sim::wall(t)}});
    inv.input(
        &mut node,
        t,
        Input::Frame {
            attempt: a,
            text: challenge.to_string(),
        },
    )
    .unwrap();
    let id = inv.connect_id(a).unwrap();
    (node, inv, a, id)
}

#[test]
fn hello_ok_with_a_protocol_outside_our_range_is_not_an_admission() {
    for protocol in [0u64, 2, 5, 1 << 40] {
        let (mut node, mut inv, a, id) = awaiting_hello();
        let hello = json!({"type":"res","id":id,"ok":true,"payload":{"type":"hello-ok","protocol":protocol,"server":{"connId":"c"},"policy":{}}});
        let effects = inv
            .input(
                &mut node,
                Time::ZERO,
                Input::Frame {
                    attempt: a,
                    text: hello.to_string(),
                },
            )
            .unwrap();
        assert!(
            !effects
                .iter()
                .any(|e| matches!(e, Effect::Notify(Notification::Connected { .. }))),
            "protocol {protocol}: {effects:?}"
        );
        assert_eq!(node.status().phase, Phase::Paused);
        let p = node.status().paused.unwrap();
        assert_eq!(p.kind, PauseKind::Protocol);
        assert_eq!(p.code(), "PROTOCOL_MISMATCH");
    }
}

#[test]
fn a_response_id_must_match_exactly() {
    let mut sim = holding_requests();
    sim.send_request("custom.method", json!({}), None).unwrap();
    sim.run_for(Duration::from_millis(10));
    let (att, id) = sim.gateway.held_requests()[0].clone();
    let n = id.trim_start_matches('r');
    let now = sim.now;
    for fake in [format!("r+{n}"), format!("r0{n}")] {
        sim.gateway
            .respond(now, att, &fake, true, json!({"fake": true}));
    }
    sim.run_for(Duration::from_millis(10));
    assert!(sim.app.responses.is_empty(), "{:?}", sim.app.responses);
    assert_eq!(sim.node.status().pending_requests, 1);
    let now = sim.now;
    sim.gateway
        .respond(now, att, &id, true, json!({"real": true}));
    sim.run_for(Duration::from_millis(10));
    assert_eq!(sim.app.responses.len(), 1);
}

#[test]
fn a_cancel_on_a_new_connection_does_not_touch_an_invoke_of_an_old_one() {
    let mut sim = connected(GatewayConfig::default(), loopback_config());
    invoke_then_reconnect(&mut sim);
    let cancels = sim.app.cancels.len();
    sim.gw_cancel("inv-1");
    sim.run_for(Duration::from_millis(10));
    assert_eq!(sim.app.cancels.len(), cancels, "{:?}", sim.app.cancels);
    // The late answer is still reported as belonging to a dead connection.
    let effects = sim.answer("inv-1", ok("late"));
    assert!(matches!(
        effects.as_slice(),
        [Effect::Notify(Notification::InvokeDropped {
            reason: DropReason::StaleAttempt,
            ..
        })]
    ));
}

#[test]
fn an_invoke_id_still_held_by_an_old_connection_is_answered_on_the_new_one() {
    let mut sim = connected(GatewayConfig::default(), loopback_config());
    invoke_then_reconnect(&mut sim);
    // The gateway reuses the id on the new connection while the application
    // still works on the old one: it must get an answer, never the old result.
    sim.gw_invoke("inv-1", "slow", None, None);
    sim.run_for(Duration::from_millis(10));
    let second = sim.gateway.admitted().unwrap();
    let answers: Vec<_> = sim
        .results()
        .iter()
        .filter(|(a, p)| *a == second && p["id"] == "inv-1")
        .collect();
    assert_eq!(answers.len(), 1, "the gateway would wait in vain");
    assert_eq!(answers[0].1["ok"], false);
    sim.answer("inv-1", ok("old"));
    sim.run_for(secs(60));
    assert_eq!(
        sim.results()
            .iter()
            .filter(|(a, p)| *a == second && p["id"] == "inv-1")
            .count(),
        1
    );
}

#[test]
fn a_socket_failure_after_a_shutdown_event_is_a_restart_not_a_failure() {
    let mut sim = connected(GatewayConfig::default(), loopback_config());
    let a = sim.gateway.admitted().unwrap();
    let now = sim.now;
    sim.gateway.event(
        now,
        a,
        "shutdown",
        json!({"restartExpectedMs": 4000}),
        false,
    );
    sim.run_for(Duration::from_millis(10));
    let now = sim.now;
    sim.gateway.reset(now, a);
    sim.gateway.down_until(now + secs(4));
    sim.run_for(Duration::from_millis(10));
    let d = disconnects(&sim, 0);
    assert_eq!(d[0].1, DisconnectReason::GatewayRestart);
    assert_eq!(d[0].2, Some(secs(4)));
    assert!(sim.run_until_connected(secs(10)));
    assert_eq!(sim.inv.failures(), 0);
}

#[test]
fn new_credentials_during_the_device_token_retry_are_used() {
    let mut sim = shared_token_tok();
    sim.gateway.config.device_token = Some("devtok-other".into());
    rotate_shared_token(&mut sim);
    await_device_token_retry(&mut sim);
    // The operator configures the new token in the meantime.
    let fresh = loopback_config().with_credentials(Credentials {
        token: Some(Secret::new("tok-new")),
        ..Credentials::default()
    });
    sim.apply(fresh);
    assert!(sim.run_until_connected(secs(5)));
    let last = sim.gateway.log.connects.last().unwrap();
    assert_eq!(last.auth, json!({"token": "tok-new"}));
}

#[test]
fn a_url_change_during_the_device_token_retry_sends_no_foreign_token() {
    let mut sim = shared_token_tok();
    rotate_shared_token(&mut sim);
    await_device_token_retry(&mut sim);
    sim.gateway.config.shared_token = None;
    let moved = SessionConfig::parse("ws://localhost:18790", TlsPolicy::SystemTrust)
        .unwrap()
        .with_credentials(Credentials {
            token: Some(Secret::new("tok")),
            ..Credentials::default()
        })
        .with_client(sim::sim_client());
    sim.apply(moved);
    assert!(sim.run_until_connected(secs(5)));
    let last = sim.gateway.log.connects.last().unwrap();
    assert_eq!(last.auth, json!({"token": "tok"}));
}

#[test]
fn even_the_cores_own_invoke_answers_respect_max_payload() {
    let gw = GatewayConfig {
        max_payload: 1024,
        ..GatewayConfig::default()
    };
    let options = NodeOptions {
        max_concurrent_invokes: 1,
        ..NodeOptions::with_seed(1)
    };
    let mut sim = Sim::with(sim::test_key(1), options, gw);
    sim.apply(loopback_config());
    assert!(sim.run_until_connected(secs(5)));
    // Ids are bounded (256 bytes), so the core's busy and timeout answers
    // always fit the 1 KiB floor; an undeclared command is named in its
    // answer, and a long one does not fit.
    let long = format!("not.declared.{}", "x".repeat(1000));
    sim.gw_invoke("inv-a", "echo", None, Some(1000));
    sim.gw_invoke("inv-b", "echo", None, None);
    sim.gw_invoke("inv-c", &long, None, None);
    sim.run_for(secs(2));
    let codes: Vec<(String, String)> = sim
        .results()
        .iter()
        .map(|(_, p)| {
            (
                p["id"].as_str().unwrap().into(),
                p["error"]["code"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            ("inv-b".into(), "UNAVAILABLE".into()),
            ("inv-a".into(), "TIMEOUT".into())
        ]
    );
    let dropped: Vec<_> = sim
        .notifications()
        .filter_map(|n| match n {
            Notification::InvokeDropped {
                id,
                reason: DropReason::TooLarge,
            } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(dropped, vec!["inv-c"]);
    assert_eq!(sim.node.status().phase, Phase::Connected);
}

#[test]
fn a_max_payload_too_small_for_any_answer_is_refused_at_hello_ok() {
    let gw = GatewayConfig {
        max_payload: 0,
        ..GatewayConfig::default()
    };
    let mut sim = Sim::new(gw);
    sim.apply(loopback_config());
    sim.run_for(secs(5));
    assert_eq!(sim.connected_count(), 0);
    let d = disconnects(&sim, 0);
    let DisconnectReason::ProtocolViolation(why) = &d[0].1 else {
        panic!("{d:?}");
    };
    assert_eq!(
        why,
        "hello-ok policy.maxPayload of 0 bytes is below the 1024 bytes an invoke answer needs"
    );
    assert!(d[0].2.is_some(), "backed off, not paused");
}

// ---- the driver contract ----------------------------------------------------------

#[test]
fn a_clock_that_goes_backwards_fires_nothing_early_and_breaks_nothing() {
    let mut sim = Sim::new(GatewayConfig::default());
    sim.apply(loopback_config());
    assert!(sim.run_until_connected(secs(5)));
    sim.run_for(secs(60));
    let attempt = sim.gateway.admitted().unwrap();
    let due = sim.node.poll_timeout().unwrap();
    let earlier = Time::from_millis(sim.now.as_millis() - 30_000);
    sim.node.handle_timeout(earlier);
    sim.node.handle_input(
        earlier,
        Input::Frame {
            attempt,
            text: r#"{"type":"event","event":"tick","payload":{"ts":1}}"#.into(),
        },
    );
    sim.node.handle_input(earlier, Input::Wake);
    let mut effects = Vec::new();
    while let Some(e) = sim.node.poll_effect() {
        effects.push(e);
    }
    assert!(effects.is_empty(), "{effects:?}");
    assert!(sim.node.poll_timeout().unwrap() <= due);
    assert_eq!(sim.node.phase(), Phase::Connected);
    // Back on the real clock, the session carries on as before.
    sim.run_for(secs(300));
    let why: Vec<_> = sim
        .notifications()
        .filter(|n| matches!(n, Notification::Disconnected { .. }))
        .collect();
    assert_eq!(sim.connected_count(), 1, "{why:?}");
    assert_eq!(sim.node.phase(), Phase::Connected);
}

#[test]
fn an_input_fed_mid_drain_queues_its_effects_behind_the_rest() {
    let mut sim = Sim::new(GatewayConfig::default());
    sim.apply(loopback_config());
    assert!(sim.run_until_connected(secs(5)));
    sim.gw_invoke("a", "echo", Some("{}"), None);
    sim.gw_invoke("b", "echo", Some("{}"), None);
    let now = sim.now;
    let attempt = sim.gateway.admitted().unwrap();
    let frame = |id: &str| Input::Frame {
        attempt,
        text: format!(
            r#"{{"type":"event","event":"node.invoke.request","payload":{{"id":"{id}","nodeId":"n","command":"echo","paramsJSON":"{{}}"}}}}"#
        ),
    };
    sim.node.handle_input(now, frame("c"));
    sim.node.handle_input(now, frame("d"));
    let first = sim.node.poll_effect();
    sim.node.handle_input(now, frame("e"));
    let mut ids = Vec::new();
    for e in first
        .into_iter()
        .chain(core::iter::from_fn(|| sim.node.poll_effect()))
    {
        if let Effect::Invoke(r) = e {
            ids.push(r.id);
        }
    }
    assert_eq!(ids, ["c", "d", "e"]);
}
