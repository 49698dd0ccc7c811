//! `reconnect_inputs`: config changes, socket failures and time only,
//! against a [`NodeState`] joined to the sim's fake gateway, checking the
//! reconnect policy: backoff bounds, the slow band, wakes.
//!
//! [`NodeState`]: clawnode_core::NodeState

use core::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use clawnode_core::sim::{AttemptPlan, GatewayConfig, Sim};
use clawnode_core::{DisconnectReason, Effect, Input, Notification, Phase, Time};

use crate::wire::{Writer, byte, ops, word};
use crate::world::{
    ConfigPick, PlanPick, SocketEvent, Step, Which, gateway_down, is_connected, ms, new_sim, opens,
    reset_all, rotate_cert, since, sleep,
};

/// One operation of a `reconnect_inputs` run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Apply a config picked from the pools (equal or different).
    Config(ConfigPick),
    /// Apply the current config again.
    Reapply,
    /// Script the gateway's next attempt (refusals, hangs, errors, or a
    /// normal admission).
    Plan(PlanPick),
    /// The gateway refuses sockets for this many tenths of a second.
    Down(u16),
    /// The gateway presents another certificate from now on.
    RotateCert(u8),
    /// A socket failure, close or pacing step reported by the driver, for
    /// the current attempt or another.
    Fail(Which, SocketEvent),
    /// The gateway resets every socket.
    Reset,
    /// The network came back.
    Wake,
    /// Virtual time passes, deadlines handled on time.
    Advance(Step),
    /// Virtual time jumps without timers firing (a suspended machine).
    Sleep(u16),
}

const OPS: u8 = 10;

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match byte(u)? % OPS {
            0 => Op::Config(ConfigPick::arbitrary(u)?),
            1 => Op::Reapply,
            2 => Op::Plan(PlanPick::arbitrary(u)?),
            3 => Op::Down(word(u)?),
            4 => Op::RotateCert(byte(u)?),
            5 => {
                let which = Which::arbitrary(u)?;
                // Failures, closes and pacing only: no frames here.
                let ev = match byte(u)? % 7 {
                    0 => SocketEvent::Closed(word(u)?),
                    1 => SocketEvent::Io,
                    2 => SocketEvent::Tls,
                    3 => SocketEvent::PinMismatch(byte(u)?),
                    4 => SocketEvent::Busy(byte(u)?),
                    5 => SocketEvent::Queued,
                    _ => SocketEvent::Dialing,
                };
                Op::Fail(which, ev)
            }
            6 => Op::Reset,
            7 => Op::Wake,
            8 => Op::Advance(Step::arbitrary(u)?),
            _ => Op::Sleep(word(u)?),
        })
    }
}

impl Op {
    /// Writes the bytes [`Op::arbitrary`] decodes back to `self`.
    pub(crate) fn write(&self, w: &mut Writer) {
        match self {
            Op::Config(p) => {
                w.byte(0);
                p.write(w);
            }
            Op::Reapply => {
                w.byte(1);
            }
            Op::Plan(p) => {
                w.byte(2);
                p.write(w);
            }
            Op::Down(t) => {
                w.byte(3).word(*t);
            }
            Op::RotateCert(p) => {
                w.byte(4).byte(*p);
            }
            Op::Fail(which, ev) => {
                w.byte(5);
                which.write(w);
                match ev {
                    SocketEvent::Closed(c) => w.byte(0).word(*c),
                    SocketEvent::Io => w.byte(1),
                    SocketEvent::Tls => w.byte(2),
                    SocketEvent::PinMismatch(p) => w.byte(3).byte(*p),
                    SocketEvent::Busy(s) => w.byte(4).byte(*s),
                    SocketEvent::Queued => w.byte(5),
                    SocketEvent::Dialing => w.byte(6),
                    other => unreachable!("not a failure: {other:?}"),
                };
            }
            Op::Reset => {
                w.byte(6);
            }
            Op::Wake => {
                w.byte(7);
            }
            Op::Advance(s) => {
                w.byte(8);
                s.write(w);
            }
            Op::Sleep(t) => {
                w.byte(9).word(*t);
            }
        }
    }
}

/// A `reconnect_inputs` input: the jitter seed, whether the gateway admits
/// by default (else it refuses), and the operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Scenario {
    pub seed: u8,
    pub admits: bool,
    pub ops: Vec<Op>,
}

impl Scenario {
    pub(crate) fn decode(data: &[u8]) -> Scenario {
        let mut u = Unstructured::new(data);
        let seed = byte(&mut u).unwrap_or(0);
        let admits = byte(&mut u).unwrap_or(0) & 1 == 1;
        Scenario {
            seed,
            admits,
            ops: ops(&mut u),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.byte(self.seed).byte(u8::from(self.admits));
        for op in &self.ops {
            op.write(&mut w);
        }
        w.0
    }
}

/// The reconnect policy of docs/protocol.md §5 written out a second time,
/// apart from the core's `Backoff::bounds`: 1 s doubling to 30 s, each delay
/// jittered down by at most half; after 8 consecutive failures uniform
/// 30–60 s; `retryAfterMs` raises a delay up to 300 s.
fn spec_bounds(failures: u32, retry_after: Option<Duration>) -> (Duration, Duration) {
    let (lo, hi) = if failures > 8 {
        (Duration::from_secs(30), Duration::from_secs(60))
    } else {
        let full = Duration::from_secs(1 << (failures.max(1) - 1)).min(Duration::from_secs(30));
        (full / 2, full)
    };
    match retry_after.map(|r| r.min(Duration::from_secs(300))) {
        Some(r) => (lo.max(r), hi.max(r)),
        None => (lo, hi),
    }
}

/// What the checker expects of the node's reconnect state.
struct Model {
    /// Consecutive counted failures since the last reset.
    failures: u32,
    /// When the node said it would retry, while waiting.
    retry_at: Option<Time>,
    /// Until when failures are a restarting gateway not back yet: retried
    /// every 250–500 ms, not counted (at most 30 s past the announced wait,
    /// and at most 16 times).
    restart_until: Option<Time>,
    restart_retries: u32,
    /// When the last announced restart was reconnected at once: another
    /// within 30 s is a counted failure.
    quick_restart_at: Option<Time>,
    /// When the live connection was admitted: it resets the failures only
    /// if it lasts 30 s (flap damping).
    connected_at: Option<Time>,
}

/// Runs `data` as a `reconnect_inputs` scenario. Besides every invariant of
/// the sim's checker (a violation panics inside the sim), it checks:
///
/// - every counted failure's delay lies in the documented bounds
///   (`spec_bounds`, written independently of the core's
///   `Backoff::bounds`), so after 8 consecutive failures every delay is in
///   the 30–60 s slow band and never shorter;
/// - a waiting node retries no earlier than it announced, unless woken or
///   reconfigured, and its status shows that time;
/// - a wake opens a socket only when waiting, exactly one, and never while
///   an attempt is live or the session is paused;
/// - an equal config changes nothing.
pub fn check_reconnect_inputs(data: &[u8]) {
    run(&Scenario::decode(data));
}

fn run(sc: &Scenario) -> Sim {
    let gateway = GatewayConfig {
        default_plan: if sc.admits {
            AttemptPlan::Normal
        } else {
            AttemptPlan::Refuse
        },
        ..GatewayConfig::default()
    };
    let mut sim = new_sim(sc.seed, gateway);
    let mut current: Option<ConfigPick> = None;
    let mut model = Model {
        failures: 0,
        retry_at: None,
        restart_until: None,
        restart_retries: 0,
        quick_restart_at: None,
        connected_at: None,
    };
    for op in &sc.ops {
        let mark = sim.mark();
        let before = sim.node.status();
        let driven_by_time = matches!(op, Op::Advance(_));
        match op {
            Op::Config(pick) => {
                let equal = current == Some(*pick);
                sim.apply(pick.build());
                if equal {
                    assert_eq!(sim.mark(), mark, "equal config emitted effects");
                    assert_eq!(sim.node.status(), before, "equal config changed the status");
                } else {
                    // Any change of config resets the backoff (docs/protocol.md §8).
                    model.failures = 0;
                    model.restart_until = None;
                    model.quick_restart_at = None;
                }
                current = Some(*pick);
            }
            Op::Reapply => {
                if let Some(pick) = current {
                    sim.apply(pick.build());
                    assert_eq!(sim.mark(), mark, "equal config emitted effects");
                }
            }
            Op::Plan(p) => sim.gateway.plan_next(p.build()),
            Op::Down(t) => gateway_down(&mut sim, *t),
            Op::RotateCert(p) => rotate_cert(&mut sim, *p),
            Op::Fail(which, ev) => {
                let attempt = which.resolve(&sim);
                if sim.node.status().attempt == Some(attempt) {
                    sim.strict_gateway = false;
                }
                sim.input(ev.input(attempt));
            }
            Op::Reset => reset_all(&mut sim),
            Op::Wake => {
                let waiting = before.phase == Phase::Waiting;
                sim.input(Input::Wake);
                let effects = since(&sim, mark);
                assert_eq!(
                    opens(&effects),
                    usize::from(waiting),
                    "a wake in phase {:?} gave {effects:?}",
                    before.phase
                );
                if !waiting {
                    assert!(
                        effects.is_empty(),
                        "a wake in phase {:?} gave {effects:?}",
                        before.phase
                    );
                }
            }
            Op::Advance(s) => s.run(&mut sim),
            Op::Sleep(t) => sleep(&mut sim, *t),
        }
        let effects: Vec<(Time, Effect)> = sim.log[mark..].to_vec();
        observe(&mut model, &effects, driven_by_time, &sim);
    }
    sim
}

fn observe(model: &mut Model, effects: &[(Time, Effect)], driven_by_time: bool, sim: &Sim) {
    for (at, e) in effects {
        match e {
            Effect::OpenSocket { .. } => {
                if let Some(due) = model.retry_at.take()
                    && driven_by_time
                {
                    assert!(
                        *at >= due,
                        "attempt opened at {} ms, before the announced retry at {} ms",
                        ms(*at),
                        ms(due)
                    );
                }
            }
            Effect::Notify(Notification::Disconnected {
                reason, retry_in, ..
            }) => {
                model.retry_at = retry_in.map(|d| *at + d);
                if model
                    .connected_at
                    .take()
                    .is_some_and(|c| c + Duration::from_secs(30) <= *at)
                {
                    model.failures = 0;
                }
                let Some(d) = *retry_in else {
                    model.failures = 0;
                    continue;
                };
                let restarting =
                    model.restart_until.is_some_and(|u| *at < u) && model.restart_retries > 0;
                let quick_restart = model.failures == 0
                    && model
                        .quick_restart_at
                        .is_none_or(|q| q + Duration::from_secs(30) <= *at);
                let (counted, retry_after) = match reason {
                    DisconnectReason::GatewayRestart if quick_restart => {
                        model.restart_until = Some(*at + d + Duration::from_secs(30));
                        model.restart_retries = 16;
                        model.quick_restart_at = Some(*at);
                        (false, None)
                    }
                    DisconnectReason::ConfigChanged => (false, None),
                    DisconnectReason::Rejected(e) => {
                        let detail = e.detail_code.as_deref();
                        let slow = e.recommended_next_step.as_deref() == Some("wait_then_retry")
                            && matches!(detail, Some("PAIRING_REQUIRED"))
                            || (e.code == "NOT_PAIRED"
                                && detail.is_none()
                                && e.recommended_next_step.as_deref() == Some("wait_then_retry"));
                        if slow {
                            assert!(
                                (Duration::from_secs(30)..=Duration::from_secs(60)).contains(&d),
                                "pairing wait_then_retry must use the slow band, got {d:?}"
                            );
                            (false, None)
                        } else if detail == Some("AUTH_TOKEN_MISMATCH")
                            && d == Duration::from_millis(250)
                        {
                            (false, None)
                        } else {
                            (true, e.retry_after_ms.map(Duration::from_millis))
                        }
                    }
                    _ => (true, None),
                };
                if counted && restarting {
                    model.restart_retries -= 1;
                    let raised = retry_after
                        .unwrap_or_default()
                        .min(Duration::from_secs(300));
                    let (lo, hi) = (Duration::from_millis(250), Duration::from_millis(500));
                    assert!(
                        lo.max(raised) <= d && d <= hi.max(raised),
                        "retry in {d:?} while the gateway restarts; expected {lo:?}..={hi:?}"
                    );
                } else if counted {
                    model.failures = model.failures.saturating_add(1);
                    let (lo, hi) = spec_bounds(model.failures, retry_after);
                    assert!(
                        lo <= d && d <= hi,
                        "retry in {d:?} after {} consecutive failures ({reason:?}); the documented bounds are {lo:?}..={hi:?}",
                        model.failures
                    );
                    if model.failures > 8 {
                        assert!(d >= Duration::from_secs(30), "left the slow band: {d:?}");
                    }
                }
            }
            e if is_connected(e) => {
                model.connected_at = Some(*at);
                model.restart_until = None;
            }
            Effect::Notify(Notification::Paused(_)) => {
                model.failures = 0;
                model.restart_until = None;
                model.quick_restart_at = None;
            }
            _ => {}
        }
    }
    let status = sim.node.status();
    if status.phase == Phase::Waiting {
        assert_eq!(
            status.next_retry, model.retry_at,
            "status.next_retry disagrees with the announced retry"
        );
    }
}

/// The meaningful scenarios `fuzz/corpus/reconnect_inputs/` starts from.
pub(crate) fn seeds() -> Vec<(String, Vec<u8>)> {
    use Op::*;
    let base = ConfigPick::BASE;
    let list: Vec<(&str, bool, Vec<Op>)> = vec![
        (
            "unreachable-to-slow-band",
            false,
            [vec![Config(base)], vec![Advance(Step::NextDue); 40]].concat(),
        ),
        (
            "wake-while-waiting",
            false,
            vec![
                Config(base),
                Advance(Step::Long(100)),
                Wake,
                Wake,
                Advance(Step::Long(10)),
                Wake,
                Advance(Step::secs(10)),
                Plan(PlanPick::normal()),
                Wake,
                Advance(Step::Long(200)),
                Wake,
            ],
        ),
        (
            "pin-mismatch-pause-and-resume",
            true,
            vec![
                Config(base.with_trust(2)),
                Advance(Step::secs(5)),
                Wake,
                Advance(Step::secs(120)),
                Config(base.with_trust(1)),
                Advance(Step::secs(1)),
                RotateCert(1),
                Reset,
                Advance(Step::secs(60)),
                Config(base.with_trust(3)),
                Advance(Step::secs(1)),
            ],
        ),
        (
            "pairing-and-retry-after",
            true,
            vec![
                Plan(PlanPick::reject(5, 0)),
                Plan(PlanPick::reject(5, 0)),
                Plan(PlanPick::reject(11, 500)),
                Plan(PlanPick::reject(3, 20_000)),
                Config(base),
                Advance(Step::secs(400)),
            ],
        ),
        (
            "restart-and-outage",
            true,
            vec![
                Config(base),
                Advance(Step::Long(100)),
                Down(300),
                Reset,
                Advance(Step::secs(60)),
                Sleep(3000),
                Wake,
                Advance(Step::secs(5)),
            ],
        ),
        (
            "config-changes-while-failing",
            false,
            vec![
                Config(base),
                Advance(Step::secs(20)),
                Config(ConfigPick { session: 1, ..base }),
                Reapply,
                Fail(Which::Current, SocketEvent::Io),
                Fail(Which::Stale(0), SocketEvent::Closed(1006)),
                Advance(Step::NextDue),
                Config(base),
                Advance(Step::secs(30)),
            ],
        ),
    ];
    list.into_iter()
        .map(|(name, admits, ops)| {
            (
                name.to_owned(),
                Scenario {
                    seed: 3,
                    admits,
                    ops,
                }
                .encode(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_decode_to_what_they_encode() {
        for (name, bytes) in seeds() {
            assert_eq!(Scenario::decode(&bytes).encode(), bytes, "{name}");
            check_reconnect_inputs(&bytes);
        }
    }

    #[test]
    fn seeds_reach_what_they_are_named_for() {
        let run_seed = |name: &str| {
            let (_, bytes) = seeds().into_iter().find(|(n, _)| n == name).expect(name);
            run(&Scenario::decode(&bytes))
        };
        let s = run_seed("unreachable-to-slow-band");
        assert!(s.inv.failures() > 8, "{}", s.inv.failures());
        let s = run_seed("pin-mismatch-pause-and-resume");
        assert!(
            s.notifications()
                .any(|n| matches!(n, Notification::Paused(_)))
        );
        assert!(s.connected_count() >= 1);
        let s = run_seed("pairing-and-retry-after");
        assert_eq!(s.connected_count(), 1);
    }

    #[test]
    fn the_documented_bounds() {
        assert_eq!(
            spec_bounds(1, None),
            (Duration::from_millis(500), Duration::from_secs(1))
        );
        assert_eq!(spec_bounds(6, None).1, Duration::from_secs(30));
        assert_eq!(
            spec_bounds(9, None),
            (Duration::from_secs(30), Duration::from_secs(60))
        );
    }
}
