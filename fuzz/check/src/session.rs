//! `session_ops`: arbitrary operation sequences against a [`NodeState`]
//! joined to the sim's fake gateway, checked by the sim's [`Invariants`]
//! after every step.
//!
//! [`NodeState`]: clawnode_core::NodeState
//! [`Invariants`]: clawnode_core::sim::Invariants

use core::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use clawnode_core::sim::{GatewayConfig, Sim};
use clawnode_core::{Input, InvokeOutcome, Phase, Secret};
use serde_json::json;

use crate::wire::{Writer, byte, long, ops, word};
use crate::world::{
    ConfigPick, PlanPick, SocketEvent, Step, Which, forges_protocol, gateway_down, is_connected,
    new_sim, opens, payload, reset_all, rotate_cert, since, sleep,
};

/// Invoke commands the gateway sends: the declared ones and one that is not.
const COMMANDS: [&str; 4] = ["system.which", "echo", "slow", "camera.snap"];

/// One operation of a `session_ops` run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Apply a config picked from the pools (equal or different).
    Config(ConfigPick),
    /// Apply the current config again.
    Reapply,
    /// The driver hands over a stored device token (0: none).
    StoredToken(u8),
    /// Script the gateway's next attempt.
    Plan(PlanPick),
    /// The gateway refuses sockets for this many tenths of a second.
    Down(u16),
    /// The gateway presents another certificate from now on.
    RotateCert(u8),
    /// The gateway's shared token: none, `tok`, or another.
    SharedToken(u8),
    /// The gateway sends `node.invoke.request` (if it has an admitted socket).
    Invoke {
        id: u8,
        command: u8,
        timeout: u16,
        params: bool,
    },
    /// The gateway sends `node.invoke.cancel`.
    Cancel(u8),
    /// The gateway announces a restart and closes with 1012.
    Shutdown(u16),
    /// The gateway closes its admitted socket with a code.
    Close(u16),
    /// The gateway resets every socket it holds.
    Reset,
    /// The admitted socket goes half-open.
    Silent,
    /// The gateway skips seq numbers.
    SkipSeq(u8),
    /// The gateway sends an event (tick, or another), with or without seq.
    Event { tick: bool, seq: bool },
    /// The gateway answers the `pick`th request the node sent (or an
    /// unknown id) on its admitted socket.
    Respond { pick: u8, ok: bool },
    /// The gateway acknowledges requests at once, or holds them.
    AutoAck(bool),
    /// The application answers the `pick`th invoke it was handed.
    Answer { pick: u8, ok: bool, len: u16 },
    /// The application sends a node event of `len` bytes.
    SendEvent(u16),
    /// The application sends a request with a timeout (0: default).
    SendRequest(u16),
    /// The network came back.
    Wake,
    /// Virtual time passes, deadlines handled on time.
    Advance(Step),
    /// Virtual time jumps without timers firing (a suspended machine).
    Sleep(u16),
    /// A socket event or frame injected straight into the node.
    Inject(Which, SocketEvent),
    /// The gateway's one-way latency in ms.
    Latency(u8),
    /// The gateway's policy for the next hello-ok: `maxPayload` in units of
    /// 64 bytes (0: 25 MiB) and `tickIntervalMs` in seconds (0: 30 s).
    Policy { max_payload: u16, tick_secs: u8 },
    /// The gateway sends a tick with any `seq` (backwards, repeated, huge).
    Tick(u64),
    /// The application stops the node.
    Stop,
    /// The application streams `len` bytes of progress for the `pick`th
    /// invoke it was handed (or an unknown one).
    Progress { pick: u8, len: u16 },
    /// The gateway streams input `seq` to `inv-{id}`, `len` bytes long.
    InvokeInput { id: u8, seq: u8, len: u16 },
}

const OPS: u8 = 30;

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match byte(u)? % OPS {
            0 => Op::Config(ConfigPick::arbitrary(u)?),
            1 => Op::Reapply,
            2 => Op::StoredToken(byte(u)?),
            3 => Op::Plan(PlanPick::arbitrary(u)?),
            4 => Op::Down(word(u)?),
            5 => Op::RotateCert(byte(u)?),
            6 => Op::SharedToken(byte(u)?),
            7 => Op::Invoke {
                id: byte(u)?,
                command: byte(u)?,
                timeout: word(u)?,
                params: byte(u)? & 1 == 1,
            },
            8 => Op::Cancel(byte(u)?),
            9 => Op::Shutdown(word(u)?),
            10 => Op::Close(word(u)?),
            11 => Op::Reset,
            12 => Op::Silent,
            13 => Op::SkipSeq(byte(u)?),
            14 => {
                let b = byte(u)?;
                Op::Event {
                    tick: b & 1 == 1,
                    seq: b & 2 == 2,
                }
            }
            15 => {
                let pick = byte(u)?;
                Op::Respond {
                    pick,
                    ok: byte(u)? & 1 == 1,
                }
            }
            16 => Op::AutoAck(byte(u)? & 1 == 1),
            17 => Op::Answer {
                pick: byte(u)?,
                ok: byte(u)? & 1 == 1,
                len: word(u)?,
            },
            18 => Op::SendEvent(word(u)?),
            19 => Op::SendRequest(word(u)?),
            20 => Op::Wake,
            21 => Op::Advance(Step::arbitrary(u)?),
            22 => Op::Sleep(word(u)?),
            23 => Op::Inject(Which::arbitrary(u)?, SocketEvent::arbitrary(u)?),
            24 => Op::Latency(byte(u)?),
            25 => Op::Policy {
                max_payload: word(u)?,
                tick_secs: byte(u)?,
            },
            26 => Op::Tick(long(u)?),
            28 => Op::Progress {
                pick: byte(u)?,
                len: word(u)?,
            },
            29 => Op::InvokeInput {
                id: byte(u)?,
                seq: byte(u)?,
                len: word(u)?,
            },
            _ => Op::Stop,
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
            Op::StoredToken(t) => {
                w.byte(2).byte(*t);
            }
            Op::Plan(p) => {
                w.byte(3);
                p.write(w);
            }
            Op::Down(t) => {
                w.byte(4).word(*t);
            }
            Op::RotateCert(p) => {
                w.byte(5).byte(*p);
            }
            Op::SharedToken(t) => {
                w.byte(6).byte(*t);
            }
            Op::Invoke {
                id,
                command,
                timeout,
                params,
            } => {
                w.byte(7)
                    .byte(*id)
                    .byte(*command)
                    .word(*timeout)
                    .byte(u8::from(*params));
            }
            Op::Cancel(id) => {
                w.byte(8).byte(*id);
            }
            Op::Shutdown(ms) => {
                w.byte(9).word(*ms);
            }
            Op::Close(code) => {
                w.byte(10).word(*code);
            }
            Op::Reset => {
                w.byte(11);
            }
            Op::Silent => {
                w.byte(12);
            }
            Op::SkipSeq(n) => {
                w.byte(13).byte(*n);
            }
            Op::Event { tick, seq } => {
                w.byte(14).byte(u8::from(*tick) | (u8::from(*seq) << 1));
            }
            Op::Respond { pick, ok } => {
                w.byte(15).byte(*pick).byte(u8::from(*ok));
            }
            Op::AutoAck(on) => {
                w.byte(16).byte(u8::from(*on));
            }
            Op::Answer { pick, ok, len } => {
                w.byte(17).byte(*pick).byte(u8::from(*ok)).word(*len);
            }
            Op::SendEvent(len) => {
                w.byte(18).word(*len);
            }
            Op::SendRequest(t) => {
                w.byte(19).word(*t);
            }
            Op::Wake => {
                w.byte(20);
            }
            Op::Advance(s) => {
                w.byte(21);
                s.write(w);
            }
            Op::Sleep(t) => {
                w.byte(22).word(*t);
            }
            Op::Inject(which, ev) => {
                w.byte(23);
                which.write(w);
                ev.write(w);
            }
            Op::Latency(ms) => {
                w.byte(24).byte(*ms);
            }
            Op::Policy {
                max_payload,
                tick_secs,
            } => {
                w.byte(25).word(*max_payload).byte(*tick_secs);
            }
            Op::Tick(seq) => {
                w.byte(26).long(*seq);
            }
            Op::Stop => {
                w.byte(27);
            }
            Op::Progress { pick, len } => {
                w.byte(28).byte(*pick).word(*len);
            }
            Op::InvokeInput { id, seq, len } => {
                w.byte(29).byte(*id).byte(*seq).word(*len);
            }
        }
    }
}

/// A `session_ops` input: a jitter seed and the operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Scenario {
    pub seed: u8,
    pub ops: Vec<Op>,
}

impl Scenario {
    pub(crate) fn decode(data: &[u8]) -> Scenario {
        let mut u = Unstructured::new(data);
        let seed = byte(&mut u).unwrap_or(0);
        Scenario {
            seed,
            ops: ops(&mut u),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.byte(self.seed);
        for op in &self.ops {
            op.write(&mut w);
        }
        w.0
    }
}

/// Runs `data` as a `session_ops` scenario and checks, after every step,
/// every rule of [`clawnode_core::sim::Invariants`] (a violation panics
/// inside the sim), that the fake gateway saw no protocol violation (as long
/// as no injected frame went behind its back), and on top:
///
/// - at most one `Connected` per hello-ok the gateway sent;
/// - applying a config equal to the current one has no effect at all;
/// - a changed config on a live session makes exactly one new attempt;
/// - no attempt while paused (also an invariant of the sim);
/// - the same seed and operations give the same effects, byte for byte.
pub fn check_session_ops(data: &[u8]) {
    let scenario = Scenario::decode(data);
    let first = run(&scenario);
    let second = run(&scenario);
    assert!(
        first.log == second.log,
        "the same seed and inputs gave different effects"
    );
}

fn run(sc: &Scenario) -> Sim {
    let mut sim = new_sim(sc.seed, GatewayConfig::default());
    let mut current: Option<ConfigPick> = None;
    // hello-oks sent behind the gateway's back (injected frames) may admit.
    let mut forged = false;
    for op in &sc.ops {
        step(&mut sim, &mut current, &mut forged, op);
        let admitted = sim
            .gateway
            .log
            .connects
            .iter()
            .filter(|c| c.admitted)
            .count();
        if !forged {
            assert!(
                sim.connected_count() <= admitted,
                "{} Connected for {admitted} hello-oks, after {op:?}",
                sim.connected_count()
            );
        }
    }
    // Recovery: from wherever the inputs left it, with the gateway then
    // healthy, the session ends up admitted, or paused on a refusal of its
    // own config (a resolution too), within the longest wait the policy
    // sets plus a handshake — never wedged or looping.
    let phase = sim.node.phase();
    if !forged && !matches!(phase, Phase::Paused | Phase::Stopped | Phase::Idle) {
        sim.gateway.behave();
        let o = clawnode_core::NodeOptions::with_seed(0);
        let t = o.timeouts;
        let bound = o.backoff.max_retry_after + t.open + t.challenge + t.hello;
        let done = sim.run_until_cond(bound, |s| {
            matches!(
                s.node.phase(),
                Phase::Connected | Phase::Paused | Phase::Stopped
            )
        });
        assert!(
            done,
            "no recovery within {bound:?} with a healthy gateway: {:?}",
            sim.node.status()
        );
    }
    sim
}

fn step(sim: &mut Sim, current: &mut Option<ConfigPick>, forged: &mut bool, op: &Op) {
    let admitted = sim.gateway.admitted();
    match op {
        Op::Config(pick) => {
            let equal = *current == Some(*pick);
            let before = (sim.node.status(), sim.node.poll_timeout());
            let mark = sim.mark();
            sim.apply(pick.build());
            let effects = since(sim, mark);
            if equal {
                assert!(effects.is_empty(), "equal config emitted {effects:?}");
                assert_eq!((sim.node.status(), sim.node.poll_timeout()), before);
            } else {
                let live = !matches!(before.0.phase, Phase::Paused | Phase::Stopped);
                let n = opens(&effects);
                if live {
                    assert_eq!(n, 1, "a changed config must reconnect once: {effects:?}");
                } else {
                    assert!(n <= 1, "{effects:?}");
                }
            }
            *current = Some(*pick);
        }
        Op::Reapply => {
            if let Some(pick) = *current {
                let before = (sim.node.status(), sim.node.poll_timeout());
                let mark = sim.mark();
                sim.apply(pick.build());
                let effects = since(sim, mark);
                assert!(effects.is_empty(), "equal config emitted {effects:?}");
                assert_eq!((sim.node.status(), sim.node.poll_timeout()), before);
            }
        }
        Op::StoredToken(t) => {
            let token = (*t != 0).then(|| Secret::new(format!("devtok-{}", t % 3)));
            sim.input(Input::StoredDeviceToken(token));
        }
        Op::Plan(p) => sim.gateway.plan_next(p.build()),
        Op::Down(t) => gateway_down(sim, *t),
        Op::RotateCert(p) => rotate_cert(sim, *p),
        Op::SharedToken(t) => {
            sim.gateway.config.shared_token = match t % 3 {
                0 => None,
                1 => Some("tok".into()),
                _ => Some("other".into()),
            }
        }
        Op::Invoke {
            id,
            command,
            timeout,
            params,
        } => {
            if let Some(a) = admitted {
                let id = format!("inv-{}", id % 8);
                let command = COMMANDS[usize::from(*command) % COMMANDS.len()];
                let params = params.then_some(r#"{"bins":["sh"]}"#);
                let timeout = (*timeout != 0).then_some(u64::from(*timeout));
                let now = sim.now;
                sim.gateway.invoke(now, a, &id, command, params, timeout);
            }
        }
        Op::Cancel(id) => {
            if admitted.is_some() {
                sim.gw_cancel(&format!("inv-{}", id % 8));
            }
        }
        Op::Shutdown(ms) => {
            if admitted.is_some() {
                sim.gw_shutdown(u64::from(*ms));
            }
        }
        Op::Close(code) => {
            if admitted.is_some() {
                sim.gw_close(*code);
            }
        }
        Op::Reset => reset_all(sim),
        Op::Silent => {
            if admitted.is_some() {
                sim.gw_silent();
            }
        }
        Op::SkipSeq(n) => {
            if let Some(a) = admitted {
                sim.gateway.skip_seq(a, u64::from(*n));
            }
        }
        Op::Event { tick, seq } => {
            if admitted.is_some() {
                let (name, payload) = if *tick {
                    ("tick", json!({"ts": clawnode_core::sim::wall(sim.now)}))
                } else {
                    ("presence", json!({"who": "op"}))
                };
                sim.gw_event(name, payload, *seq);
            }
        }
        Op::Respond { pick, ok } => {
            if let Some(a) = admitted {
                let ids: Vec<String> = sim
                    .gateway
                    .log
                    .frames
                    .iter()
                    .filter(|(_, at, _)| *at == a)
                    .filter_map(|(_, _, v)| v.get("id").and_then(|i| i.as_str()).map(String::from))
                    .collect();
                let id = ids
                    .get(usize::from(*pick) % (ids.len() + 1))
                    .cloned()
                    .unwrap_or_else(|| format!("r{pick}"));
                let now = sim.now;
                sim.gateway
                    .respond(now, a, &id, *ok, json!({"answer": pick}));
            }
        }
        Op::AutoAck(on) => sim.gateway.config.auto_ack = *on,
        Op::Answer { pick, ok, len } => {
            let ids: Vec<String> = sim.app.invokes.iter().map(|i| i.id.clone()).collect();
            let id = ids
                .get(usize::from(*pick) % (ids.len() + 1))
                .cloned()
                .unwrap_or_else(|| "inv-unknown".into());
            let outcome = if *ok {
                InvokeOutcome::Ok {
                    payload_json: (*len != 0).then(|| payload(*len).to_string()),
                }
            } else {
                InvokeOutcome::Err {
                    code: "FAILED".into(),
                    message: "x".repeat(usize::from(*len) % 512),
                }
            };
            sim.answer(&id, outcome);
        }
        Op::SendEvent(len) => {
            let _ = sim.send_event("op.event", Some(payload(*len)));
        }
        Op::SendRequest(t) => {
            let timeout = (*t != 0).then(|| Duration::from_millis(u64::from(*t)));
            let _ = sim.send_request("op.request", json!({"n": t}), timeout);
        }
        Op::Wake => {
            let was_waiting = crate::world::waiting(sim);
            let mark = sim.mark();
            sim.input(Input::Wake);
            let effects = since(sim, mark);
            let n = opens(&effects);
            assert_eq!(
                n,
                usize::from(was_waiting),
                "a wake opens a socket exactly when waiting: {effects:?}"
            );
            assert!(!effects.iter().any(is_connected));
        }
        Op::Advance(s) => s.run(sim),
        Op::Sleep(t) => sleep(sim, *t),
        Op::Inject(which, ev) => {
            let attempt = which.resolve(sim);
            let live = sim.node.status().attempt == Some(attempt);
            if live {
                let harmless = match ev {
                    SocketEvent::Frame(t) => !forges_protocol(t),
                    _ => false,
                };
                if !harmless {
                    // The gateway's picture of this socket no longer holds.
                    sim.strict_gateway = false;
                    *forged = true;
                }
            }
            sim.input(ev.input(attempt));
        }
        Op::Latency(ms) => sim.gateway.config.latency = Duration::from_millis(u64::from(*ms)),
        Op::Policy {
            max_payload,
            tick_secs,
        } => {
            let defaults = GatewayConfig::default();
            // The fake gateway checks frames against its current
            // `max_payload`, not the one its hello-ok announced on that
            // socket: change it only while no socket is open.
            if sim.gateway.open_sockets() == 0 {
                sim.gateway.config.max_payload = match max_payload {
                    0 => defaults.max_payload,
                    n => u64::from(*n) * 64,
                };
            }
            sim.gateway.config.tick_interval_ms = match tick_secs {
                0 => defaults.tick_interval_ms,
                n => u64::from(*n) * 1000,
            };
        }
        Op::Tick(seq) => {
            if admitted.is_some() {
                let ts = clawnode_core::sim::wall(sim.now);
                sim.gw_send_raw(
                    &json!({"type": "event", "event": "tick", "payload": {"ts": ts}, "seq": seq})
                        .to_string(),
                );
            }
        }
        Op::Stop => {
            sim.input(Input::Stop);
        }
        Op::Progress { pick, len } => {
            let ids: Vec<String> = sim.app.invokes.iter().map(|i| i.id.clone()).collect();
            let id = ids
                .get(usize::from(*pick) % (ids.len() + 1))
                .cloned()
                .unwrap_or_else(|| "inv-unknown".into());
            // Multi-byte text, so that cuts must respect character boundaries.
            let chunk = "é".repeat(usize::from(*len) / 2);
            sim.progress(&id, &chunk);
        }
        Op::InvokeInput { id, seq, len } => {
            if admitted.is_some() {
                let payload = json!("x".repeat(usize::from(*len))).to_string();
                sim.gw_input(&format!("inv-{}", id % 8), u64::from(*seq), &payload);
            }
        }
    }
}

/// The meaningful scenarios `fuzz/corpus/session_ops/` starts from.
pub(crate) fn seeds() -> Vec<(String, Vec<u8>)> {
    use Op::*;
    let base = ConfigPick::BASE;
    let pinned = base.with_trust(1);
    let list: Vec<(&str, Vec<Op>)> = vec![
        (
            "handshake",
            vec![
                Config(base),
                Advance(Step::Long(1000)),
                Advance(Step::secs(120)),
            ],
        ),
        (
            "invoke-round-trip",
            vec![
                Config(base),
                Advance(Step::Long(100)),
                Invoke {
                    id: 1,
                    command: 0,
                    timeout: 0,
                    params: true,
                },
                Advance(Step::Millis(20)),
                Answer {
                    pick: 0,
                    ok: true,
                    len: 10,
                },
                Advance(Step::Millis(20)),
                Invoke {
                    id: 2,
                    command: 3,
                    timeout: 500,
                    params: false,
                },
                Invoke {
                    id: 3,
                    command: 2,
                    timeout: 500,
                    params: false,
                },
                Advance(Step::Long(1000)),
                Answer {
                    pick: 1,
                    ok: false,
                    len: 3,
                },
            ],
        ),
        (
            "pin-change",
            vec![
                Config(pinned),
                Advance(Step::Long(500)),
                Config(pinned.with_trust(3)),
                Advance(Step::Long(500)),
                Config(pinned.with_trust(2)),
                Advance(Step::secs(5)),
                RotateCert(1),
                Config(pinned.with_trust(3)),
                Advance(Step::secs(5)),
                RotateCert(0),
                Config(pinned),
                Advance(Step::secs(5)),
            ],
        ),
        (
            "restart",
            vec![
                Config(base),
                Advance(Step::Long(200)),
                Shutdown(1500),
                Advance(Step::secs(5)),
                Close(1012),
                Advance(Step::secs(40)),
            ],
        ),
        (
            "equal-config-resupplied",
            [
                vec![Config(base), Advance(Step::Long(200))],
                vec![Reapply; 40],
                vec![Config(base), Advance(Step::secs(60))],
            ]
            .concat(),
        ),
        (
            "token-mismatch",
            vec![
                Config(base),
                Advance(Step::Long(200)),
                SharedToken(2),
                Close(1008),
                Advance(Step::secs(60)),
                SharedToken(1),
                Config(base.with_trust(6)),
                Advance(Step::secs(5)),
            ],
        ),
        (
            "tick-timeout-and-wake",
            vec![
                Config(base),
                Advance(Step::Long(200)),
                Tick(5),
                Tick(4),
                Tick(u64::MAX),
                Tick(0),
                Silent,
                Advance(Step::secs(70)),
                Wake,
                Wake,
                Advance(Step::secs(5)),
            ],
        ),
        (
            "stale-inputs",
            vec![
                Config(base),
                Advance(Step::Long(200)),
                Config(ConfigPick { session: 1, ..base }),
                Inject(Which::Stale(0), SocketEvent::Closed(1000)),
                Inject(
                    Which::Stale(0),
                    SocketEvent::Frame(r#"{"type":"event","event":"tick","seq":1}"#.into()),
                ),
                Inject(Which::Future, SocketEvent::Opened),
                Advance(Step::Long(200)),
                Inject(Which::Current, SocketEvent::Frame("garbage".into())),
                Advance(Step::Long(200)),
            ],
        ),
        (
            "requests-and-events",
            vec![
                Config(base),
                SendEvent(10),
                Advance(Step::Long(200)),
                AutoAck(false),
                SendRequest(0),
                SendRequest(300),
                SendEvent(100),
                Respond { pick: 1, ok: true },
                Respond {
                    pick: 200,
                    ok: false,
                },
                Advance(Step::Long(1000)),
                Close(1001),
                Advance(Step::secs(3)),
            ],
        ),
        (
            "small-max-payload",
            vec![
                // 16 × 64: the smallest maxPayload admitted (1 KiB).
                Policy {
                    max_payload: 16,
                    tick_secs: 2,
                },
                Config(base),
                Advance(Step::Long(100)),
                SendEvent(1000),
                SendEvent(10),
                Invoke {
                    id: 4,
                    command: 1,
                    timeout: 0,
                    params: false,
                },
                Advance(Step::Millis(20)),
                Answer {
                    pick: 0,
                    ok: true,
                    len: 2000,
                },
                Advance(Step::secs(10)),
            ],
        ),
        (
            "refusals",
            vec![
                Plan(PlanPick::refuse()),
                Plan(PlanPick::reject(5, 0)),
                Plan(PlanPick::reject(11, 300)),
                Plan(PlanPick {
                    kind: 4,
                    ..PlanPick::normal()
                }),
                Config(base),
                Advance(Step::NextDue),
                Advance(Step::secs(120)),
                Plan(PlanPick::reject(7, 0)),
                Close(1006),
                Advance(Step::secs(10)),
                Config(ConfigPick { creds: 5, ..base }),
                Advance(Step::secs(2)),
                Stop,
                Advance(Step::secs(60)),
            ],
        ),
    ];
    list.into_iter()
        .map(|(name, ops)| (name.to_owned(), Scenario { seed: 7, ops }.encode()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_decode_to_what_they_encode() {
        for (name, bytes) in seeds() {
            let sc = Scenario::decode(&bytes);
            assert_eq!(sc.encode(), bytes, "{name}");
            check_session_ops(&bytes);
        }
    }

    fn seed(name: &str) -> Sim {
        let (_, bytes) = seeds().into_iter().find(|(n, _)| n == name).expect(name);
        run(&Scenario::decode(&bytes))
    }

    fn notes(sim: &Sim) -> Vec<clawnode_core::Notification> {
        sim.notifications().cloned().collect()
    }

    #[test]
    fn seeds_reach_what_they_are_named_for() {
        use clawnode_core::{DisconnectReason, Notification, PauseKind};
        let s = seed("handshake");
        assert_eq!(s.connected_count(), 1);
        assert_eq!(s.node.status().phase, Phase::Connected);

        let s = seed("invoke-round-trip");
        assert!(s.results().len() >= 3, "{:?}", s.results());

        let s = seed("pin-change");
        let n = notes(&s);
        assert!(
            n.iter()
                .any(|n| matches!(n, Notification::Paused(p) if p.kind == PauseKind::PinMismatch))
        );
        assert_eq!(s.node.status().phase, Phase::Connected);

        let s = seed("restart");
        assert!(notes(&s).iter().any(|n| matches!(
            n,
            Notification::Disconnected {
                reason: DisconnectReason::GatewayRestart,
                ..
            }
        )));
        assert_eq!(s.connected_count(), 3);

        let s = seed("equal-config-resupplied");
        assert_eq!((s.open_count(), s.connected_count()), (1, 1));

        let s = seed("token-mismatch");
        assert!(
            s.gateway
                .log
                .connects
                .iter()
                .any(|c| c.auth.get("deviceToken").is_some())
        );

        let s = seed("small-max-payload");
        assert!(notes(&s).iter().any(|n| matches!(
            n,
            Notification::InvokeDropped {
                reason: clawnode_core::DropReason::TooLarge,
                ..
            }
        )));

        let s = seed("tick-timeout-and-wake");
        assert!(
            notes(&s)
                .iter()
                .any(|n| matches!(n, Notification::SeqGap { .. }))
        );
        // Silence is caught by the pong check before the tick watchdog.
        assert!(notes(&s).iter().any(|n| matches!(
            n,
            Notification::Disconnected {
                reason: DisconnectReason::PongTimeout,
                ..
            }
        )));
    }

    #[test]
    fn arbitrary_bytes_round_trip_through_ops() {
        for n in 0..200u32 {
            let data: Vec<u8> = (0..64u32)
                .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(n * 97) >> 7) as u8)
                .collect();
            let sc = Scenario::decode(&data);
            let long_text = sc
                .ops
                .iter()
                .any(|op| matches!(op, Op::Inject(_, SocketEvent::Frame(t)) if t.len() > 255));
            if !long_text {
                assert_eq!(Scenario::decode(&sc.encode()), sc);
            }
        }
    }
}
