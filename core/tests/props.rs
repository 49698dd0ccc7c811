//! Property tests of the session machine: random input sequences, checked after every
//! step by `clawnode_core::sim::Invariants`, and determinism.

use core::time::Duration;

use clawnode_core::sim::{
    self, AttemptPlan, ErrorSpec, GatewayConfig, Invariants, Sim, Violation, loopback_config,
    pinned_config,
};
use clawnode_core::{
    AttemptId, Credentials, Effect, Input, InvokeOutcome, NodeOptions, NodeState, Pin, Secret,
    SessionConfig, SocketError, Time, TlsPolicy,
};
use proptest::prelude::*;
use serde_json::{Value, json};

fn pin(b: u8) -> Pin {
    Pin::from_sha256([b; 32])
}

/// Configs by index; 0 and 1 are equal values built separately.
fn config(i: u8) -> SessionConfig {
    match i % 7 {
        0 | 1 => loopback_config(),
        2 => loopback_config().with_session_id("b"),
        3 => pinned_config(&[pin(1)]),
        4 => pinned_config(&[pin(1), pin(2)]),
        5 => loopback_config().with_credentials(Credentials::default()),
        _ => SessionConfig::parse("wss://gw.example.com", TlsPolicy::SystemTrust)
            .unwrap()
            .with_credentials(Credentials {
                token: Some(Secret::new("tok")),
                ..Credentials::default()
            })
            .with_client(sim::sim_client()),
    }
}

fn error_spec(i: u8) -> ErrorSpec {
    match i % 12 {
        0 => ErrorSpec::new("NOT_LINKED", Some("AUTH_TOKEN_MISMATCH"))
            .next_step("retry_with_device_token")
            .details(json!({"canRetryWithDeviceToken": true})),
        1 => ErrorSpec::new("NOT_PAIRED", Some("PAIRING_REQUIRED")).next_step("wait_then_retry"),
        2 => ErrorSpec::new("NOT_PAIRED", Some("PAIRING_REQUIRED")),
        3 => ErrorSpec::new("UNAVAILABLE", None).retry_after(4000),
        4 => ErrorSpec::new("NOT_LINKED", Some("AUTH_RATE_LIMITED")).retry_after(90_000),
        5 => ErrorSpec::new("INVALID_REQUEST", Some("PROTOCOL_MISMATCH")),
        6 => ErrorSpec::new("NOT_PAIRED", Some("DEVICE_IDENTITY_REQUIRED")),
        7 => ErrorSpec::new("NOT_PAIRED", None),
        8 => ErrorSpec::new("FORBIDDEN", None),
        9 => ErrorSpec::new("WEIRD", Some("SOMETHING_NEW")),
        10 => ErrorSpec::new("UNAVAILABLE", None).details(json!({"pauseReconnect": true})),
        _ => ErrorSpec::new("AGENT_TIMEOUT", None).retry_after(u64::MAX),
    }
}

const COMMANDS: [&str; 4] = ["echo", "slow", "system.which", "not.declared"];

/// Which attempt a socket input names.
#[derive(Clone, Debug)]
enum Sel {
    Current,
    Stale(u8),
    Future,
}

#[derive(Clone, Debug)]
enum Fr {
    Challenge,
    BadChallenge,
    HelloOk {
        tick: Option<u32>,
        max_payload: Option<u32>,
        token: Option<u8>,
        protocol: u8,
    },
    ConnectError(u8),
    ConnectOkNotHello,
    Tick(Option<u64>),
    Invoke {
        id: u8,
        cmd: u8,
        timeout: Option<u32>,
    },
    Cancel(u8),
    Shutdown(Option<u32>),
    Response(u8, bool),
    Event(Option<u64>),
    Garbage(String),
    Json(Value),
}

#[derive(Clone, Debug)]
enum Op {
    Config(u8),
    StoredToken(Option<u8>),
    Opened(Sel),
    Closed(Sel, Option<u16>),
    Failed(Sel, u8),
    Frame(Sel, Fr),
    /// The next natural step for the phase (open, challenge, hello-ok,
    /// then ticks and invokes of declared commands).
    Drive(u8),
    InvokeResult(u8, bool, u16),
    Wake,
    Stop,
    Advance(u32),
    ToDeadline,
    Timeout,
    Request(u16, Option<u32>),
    Event,
}

fn sel() -> impl Strategy<Value = Sel> {
    prop_oneof![
        6 => Just(Sel::Current),
        2 => any::<u8>().prop_map(Sel::Stale),
        1 => Just(Sel::Future),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z.]{0,8}".prop_map(Value::from),
        prop_oneof![
            Just("event"),
            Just("res"),
            Just("req"),
            Just("tick"),
            Just("hello-ok"),
            Just("node.invoke.request")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_string()),
                    Just("event".to_string()),
                    Just("id".to_string()),
                    Just("ok".to_string()),
                    Just("payload".to_string()),
                    Just("seq".to_string()),
                    Just("error".to_string()),
                    "[a-z]{1,4}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn frame() -> impl Strategy<Value = Fr> {
    prop_oneof![
        3 => Just(Fr::Challenge),
        1 => Just(Fr::BadChallenge),
        3 => (
            prop::option::of(prop_oneof![Just(0u32), 1u32..100_000]),
            prop::option::of(prop_oneof![Just(0u32), 64u32..4096, Just(u32::MAX)]),
            prop::option::of(0u8..3),
            0u8..8
        )
            .prop_map(|(tick, max_payload, token, protocol)| Fr::HelloOk {
                tick,
                max_payload,
                token,
                protocol
            }),
        2 => any::<u8>().prop_map(Fr::ConnectError),
        1 => Just(Fr::ConnectOkNotHello),
        4 => prop::option::of(0u64..40).prop_map(Fr::Tick),
        4 => (0u8..6, 0u8..4, prop::option::of(0u32..60_000))
            .prop_map(|(id, cmd, timeout)| Fr::Invoke { id, cmd, timeout }),
        1 => (0u8..6).prop_map(Fr::Cancel),
        1 => prop::option::of(0u32..100_000).prop_map(Fr::Shutdown),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(i, ok)| Fr::Response(i, ok)),
        1 => prop::option::of(0u64..40).prop_map(Fr::Event),
        1 => ".{0,24}".prop_map(Fr::Garbage),
        2 => json_value().prop_map(Fr::Json),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..7).prop_map(Op::Config),
        1 => prop::option::of(0u8..3).prop_map(Op::StoredToken),
        2 => sel().prop_map(Op::Opened),
        1 => (sel(), prop::option::of(prop_oneof![Just(1000u16), Just(1006), Just(1008), Just(1012), Just(4000)]))
            .prop_map(|(s, c)| Op::Closed(s, c)),
        1 => (sel(), any::<u8>()).prop_map(|(s, k)| Op::Failed(s, k)),
        10 => (sel(), frame()).prop_map(|(s, f)| Op::Frame(s, f)),
        12 => any::<u8>().prop_map(Op::Drive),
        3 => (0u8..6, any::<bool>(), prop_oneof![0u16..64, Just(5000u16)])
            .prop_map(|(i, ok, n)| Op::InvokeResult(i, ok, n)),
        // Stop ends a run's interesting life: keep it rare.
        1 => prop_oneof![30 => Just(Op::Wake), 1 => Just(Op::Stop)],
        4 => prop_oneof![0u32..50, 0u32..5_000, 0u32..120_000].prop_map(Op::Advance),
        4 => Just(Op::ToDeadline),
        1 => Just(Op::Timeout),
        2 => (prop_oneof![0u16..64, Just(3000u16)], prop::option::of(1u32..60_000))
            .prop_map(|(n, t)| Op::Request(n, t)),
        1 => Just(Op::Event),
    ]
}

/// A node driven directly with raw inputs, every step checked.
struct Harness {
    node: NodeState,
    inv: Invariants,
    now: Time,
    trace: String,
    /// Request ids the node sent (for responses), in order.
    sent_ids: Vec<String>,
}

impl Harness {
    fn new(seed: u64) -> Self {
        let options = NodeOptions {
            max_concurrent_invokes: 3,
            ..NodeOptions::with_seed(seed)
        };
        Harness {
            inv: Invariants::new(&options),
            node: NodeState::new(sim::test_key(2), options),
            now: Time::ZERO,
            trace: String::new(),
            sent_ids: Vec::new(),
        }
    }

    fn record(&mut self, effects: Vec<Effect>) {
        use core::fmt::Write as _;
        for e in effects {
            if let Effect::SendFrame { text, .. } = &e
                && let Ok(v) = serde_json::from_str::<Value>(text)
                && let Some(id) = v["id"].as_str()
            {
                self.sent_ids.push(id.into());
            }
            let _ = writeln!(self.trace, "{:?} {e:?}", self.now);
        }
    }

    fn attempt(&self, s: &Sel) -> AttemptId {
        let cur = self.inv.current_attempt().map_or(1, |(a, _)| a.0);
        AttemptId(match s {
            Sel::Current => cur,
            Sel::Stale(k) => cur.saturating_sub(1 + u64::from(*k) % 4).max(1),
            Sel::Future => cur + 1,
        })
    }

    fn input(&mut self, input: Input) -> Result<(), Violation> {
        let effects = self.inv.input(&mut self.node, self.now, input)?;
        self.record(effects);
        Ok(())
    }

    fn frame_text(&self, a: AttemptId, f: &Fr) -> String {
        let ts = sim::wall(self.now);
        let connect_id = self
            .inv
            .connect_id(a)
            .unwrap_or_else(|| format!("connect-{}", a.0));
        let v = match f {
            Fr::Challenge => {
                json!({"type":"event","event":"connect.challenge","payload":{"nonce":"n-1","ts":ts}})
            }
            Fr::BadChallenge => {
                json!({"type":"event","event":"connect.challenge","payload":{"nonce":"n-1","ts":"soon"}})
            }
            Fr::HelloOk {
                tick,
                max_payload,
                token,
                protocol,
            } => {
                let mut h = json!({"type":"hello-ok","protocol": protocol,"server":{"version":"x","connId":"c"},"auth":{"role":"node"},"policy":{}});
                if let Some(t) = tick {
                    h["policy"]["tickIntervalMs"] = (*t).into();
                }
                if let Some(m) = max_payload {
                    h["policy"]["maxPayload"] = (*m).into();
                }
                if let Some(t) = token {
                    h["auth"]["deviceToken"] = format!("devtok-{t}").into();
                }
                json!({"type":"res","id":connect_id,"ok":true,"payload":h})
            }
            Fr::ConnectError(i) => {
                json!({"type":"res","id":connect_id,"ok":false,"error":error_spec(*i).to_value()})
            }
            Fr::ConnectOkNotHello => {
                json!({"type":"res","id":connect_id,"ok":true,"payload":{"type":"nope"}})
            }
            Fr::Tick(seq) => {
                let mut t = json!({"type":"event","event":"tick","payload":{"ts":ts}});
                if let Some(s) = seq {
                    t["seq"] = (*s).into();
                }
                t
            }
            Fr::Invoke { id, cmd, timeout } => {
                let mut p = json!({"id": format!("inv-{id}"), "nodeId": "x", "command": COMMANDS[*cmd as usize % 4], "paramsJSON": "{}"});
                if let Some(t) = timeout {
                    p["timeoutMs"] = (*t).into();
                }
                json!({"type":"event","event":"node.invoke.request","payload":p})
            }
            Fr::Cancel(id) => {
                json!({"type":"event","event":"node.invoke.cancel","payload":{"invokeId": format!("inv-{id}")}})
            }
            Fr::Shutdown(ms) => {
                let mut p = json!({"reason":"restart"});
                if let Some(ms) = ms {
                    p["restartExpectedMs"] = (*ms).into();
                }
                json!({"type":"event","event":"shutdown","payload":p})
            }
            Fr::Response(i, ok) => {
                let id = if self.sent_ids.is_empty() {
                    format!("r{i}")
                } else {
                    self.sent_ids[*i as usize % self.sent_ids.len()].clone()
                };
                if *ok {
                    json!({"type":"res","id":id,"ok":true,"payload":{"n":i}})
                } else {
                    json!({"type":"res","id":id,"ok":false,"error":error_spec(*i).to_value()})
                }
            }
            Fr::Event(seq) => {
                let mut e = json!({"type":"event","event":"presence","payload":{}});
                if let Some(s) = seq {
                    e["seq"] = (*s).into();
                }
                e
            }
            Fr::Garbage(s) => return s.clone(),
            Fr::Json(v) => v.clone(),
        };
        v.to_string()
    }

    fn step(&mut self, op: &Op) -> Result<(), Violation> {
        match op {
            Op::Config(i) => self.input(Input::Config(config(*i))),
            Op::StoredToken(t) => self.input(Input::StoredDeviceToken(
                t.map(|t| Secret::new(format!("devtok-{t}"))),
            )),
            Op::Opened(s) => {
                let attempt = self.attempt(s);
                self.input(Input::SocketOpened { attempt })
            }
            Op::Closed(s, code) => {
                let attempt = self.attempt(s);
                self.input(Input::SocketClosed {
                    attempt,
                    code: *code,
                    reason: "bye".into(),
                })
            }
            Op::Failed(s, k) => {
                let attempt = self.attempt(s);
                let error = match k % 8 {
                    0 => SocketError::PinMismatch {
                        expected: vec![pin(1)],
                        observed: pin(9),
                    },
                    1 => SocketError::Tls("bad chain".into()),
                    _ => SocketError::Io("reset".into()),
                };
                self.input(Input::SocketFailed { attempt, error })
            }
            Op::Frame(s, f) => {
                let attempt = self.attempt(s);
                let text = self.frame_text(attempt, f);
                self.input(Input::Frame { attempt, text })
            }
            Op::Drive(k) => {
                let Some((attempt, true)) = self.inv.current_attempt() else {
                    return Ok(());
                };
                let f = match self.node.status().phase {
                    clawnode_core::Phase::Connecting => {
                        return self.input(Input::SocketOpened { attempt });
                    }
                    clawnode_core::Phase::Handshaking if self.inv.connect_id(attempt).is_none() => {
                        Fr::Challenge
                    }
                    clawnode_core::Phase::Handshaking => Fr::HelloOk {
                        tick: Some(10_000),
                        max_payload: Some(100_000),
                        token: Some(1),
                        protocol: 4,
                    },
                    _ if k % 3 == 0 => Fr::Tick(None),
                    _ => Fr::Invoke {
                        id: k % 6,
                        cmd: k % 3,
                        timeout: (k % 2 == 0).then_some(u32::from(*k) * 100),
                    },
                };
                let text = self.frame_text(attempt, &f);
                self.input(Input::Frame { attempt, text })
            }
            Op::InvokeResult(i, ok, n) => {
                let outcome = if *ok {
                    InvokeOutcome::Ok {
                        payload_json: Some(format!("\"{}\"", "p".repeat(*n as usize * 10))),
                    }
                } else {
                    InvokeOutcome::Err {
                        code: "E".into(),
                        message: "failed".into(),
                    }
                };
                self.input(Input::InvokeResult {
                    id: format!("inv-{i}"),
                    outcome,
                })
            }
            Op::Wake => self.input(Input::Wake),
            Op::Stop => self.input(Input::Stop),
            Op::Advance(ms) => {
                self.now = self.now + Duration::from_millis(u64::from(*ms));
                self.due()
            }
            Op::ToDeadline => {
                if let Some(t) = self.node.poll_timeout() {
                    self.now = self.now.max(t);
                }
                self.due()
            }
            Op::Timeout => {
                let effects = self.inv.timeout(&mut self.node, self.now)?;
                self.record(effects);
                Ok(())
            }
            Op::Request(n, t) => {
                let params = json!({"blob": "q".repeat(*n as usize * 10)});
                let timeout = t.map(|t| Duration::from_millis(u64::from(t)));
                let (_, effects) =
                    self.inv
                        .send_request(&mut self.node, self.now, "custom", params, timeout)?;
                self.record(effects);
                Ok(())
            }
            Op::Event => {
                let (_, effects) = self.inv.send_event(
                    &mut self.node,
                    self.now,
                    "status",
                    Some(json!({"up": 1})),
                )?;
                self.record(effects);
                Ok(())
            }
        }
    }

    /// A driver calls `handle_timeout` whenever the deadline has passed.
    fn due(&mut self) -> Result<(), Violation> {
        if self.node.poll_timeout().is_some_and(|t| t <= self.now) {
            let effects = self.inv.timeout(&mut self.node, self.now)?;
            self.record(effects);
        }
        Ok(())
    }
}

fn run_raw(seed: u64, ops: &[Op]) -> Result<String, String> {
    let mut h = Harness::new(seed);
    for (i, op) in ops.iter().enumerate() {
        h.step(op)
            .map_err(|v| format!("step {i} {op:?}: {v}\ntrace tail:\n{}", tail(&h.trace)))?;
    }
    Ok(h.trace)
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 384,
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    })]

    /// Random raw inputs: equal and changed configs, socket events from
    /// current, stale and future attempts, valid and garbage frames, time
    /// advances. Every step is checked; the same seed and inputs give the
    /// same effects byte for byte.
    #[test]
    fn raw_inputs_keep_the_invariants_and_are_deterministic(
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let first = run_raw(seed, &ops);
        prop_assert!(first.is_ok(), "{}", first.unwrap_err());
        let second = run_raw(seed, &ops);
        prop_assert_eq!(first.unwrap(), second.unwrap());
    }
}

// ---- gateway-scripted sequences --------------------------------------------------

#[derive(Clone, Debug)]
enum GwOp {
    RunFor(u32),
    Invoke(u8, u8, Option<u32>),
    Cancel(u8),
    Shutdown(u32),
    Close(u16),
    Reset,
    Silent,
    Raw(String),
    Event(bool),
    SkipSeq(u8),
    Plan(u8),
    Config(u8),
    Wake,
    Answer(u8, bool, u16),
    Send(u16),
    SetPin(u8),
    SetSharedToken(u8),
    SetDeviceToken(u8),
    Down(u32),
}

fn gw_op() -> impl Strategy<Value = GwOp> {
    prop_oneof![
        10 => prop_oneof![1u32..100, 100u32..20_000, 20_000u32..200_000].prop_map(GwOp::RunFor),
        4 => (0u8..6, 0u8..4, prop::option::of(1u32..40_000)).prop_map(|(i, c, t)| GwOp::Invoke(i, c, t)),
        1 => (0u8..6).prop_map(GwOp::Cancel),
        1 => (0u32..60_000).prop_map(GwOp::Shutdown),
        1 => prop_oneof![Just(1000u16), Just(1006), Just(1008), Just(1012)].prop_map(GwOp::Close),
        1 => Just(GwOp::Reset),
        1 => Just(GwOp::Silent),
        1 => ".{0,16}".prop_map(GwOp::Raw),
        1 => any::<bool>().prop_map(GwOp::Event),
        1 => (1u8..5).prop_map(GwOp::SkipSeq),
        2 => any::<u8>().prop_map(GwOp::Plan),
        2 => (0u8..7).prop_map(GwOp::Config),
        1 => Just(GwOp::Wake),
        4 => (0u8..6, any::<bool>(), prop_oneof![0u16..32, Just(4000u16)]).prop_map(|(i, ok, n)| GwOp::Answer(i, ok, n)),
        2 => prop_oneof![0u16..32, Just(4000u16)].prop_map(GwOp::Send),
        1 => (1u8..3).prop_map(GwOp::SetPin),
        1 => (0u8..3).prop_map(GwOp::SetSharedToken),
        1 => (0u8..3).prop_map(GwOp::SetDeviceToken),
        1 => (0u32..120_000).prop_map(GwOp::Down),
    ]
}

fn plan(i: u8) -> AttemptPlan {
    match i % 9 {
        0 | 1 => AttemptPlan::Normal,
        2 => AttemptPlan::Refuse,
        3 => AttemptPlan::Hang,
        4 => AttemptPlan::NoChallenge,
        5 => AttemptPlan::BadChallenge,
        6 => AttemptPlan::NoHello,
        7 => AttemptPlan::TlsFailure,
        _ => AttemptPlan::Reject(error_spec(i / 9)),
    }
}

fn run_gateway(seed: u64, ops: &[GwOp]) -> String {
    let gw = GatewayConfig {
        tick_interval_ms: 10_000,
        max_payload: 20_000,
        cert_pin: pin(1),
        handshake_timeout: Some(Duration::from_secs(12)),
        ..GatewayConfig::default()
    };
    let options = NodeOptions {
        max_concurrent_invokes: 3,
        ..NodeOptions::with_seed(seed)
    };
    let mut sim = Sim::with(sim::test_key(4), options, gw);
    sim.apply(loopback_config());
    for op in ops {
        let admitted = sim.gateway.admitted();
        match op {
            GwOp::RunFor(ms) => sim.run_for(Duration::from_millis(u64::from(*ms))),
            GwOp::Invoke(i, c, t) if admitted.is_some() => sim.gw_invoke(
                &format!("inv-{i}"),
                COMMANDS[*c as usize % 4],
                Some("{}"),
                t.map(u64::from),
            ),
            GwOp::Cancel(i) if admitted.is_some() => sim.gw_cancel(&format!("inv-{i}")),
            GwOp::Shutdown(ms) if admitted.is_some() => sim.gw_shutdown(u64::from(*ms)),
            GwOp::Close(code) if admitted.is_some() => sim.gw_close(*code),
            GwOp::Reset => {
                if let Some(a) = admitted {
                    let now = sim.now;
                    sim.gateway.reset(now, a);
                }
            }
            GwOp::Silent if admitted.is_some() => sim.gw_silent(),
            GwOp::Raw(s) if admitted.is_some() => sim.gw_send_raw(s),
            GwOp::Event(seq) if admitted.is_some() => sim.gw_event("presence", json!({}), *seq),
            GwOp::SkipSeq(n) => {
                if let Some(a) = admitted {
                    sim.gateway.skip_seq(a, u64::from(*n));
                }
            }
            GwOp::Plan(i) => sim.gateway.plan_next(plan(*i)),
            GwOp::Config(i) => {
                sim.apply(config(*i));
            }
            GwOp::Wake => {
                sim.input(Input::Wake);
            }
            GwOp::Answer(i, ok, n) => {
                let outcome = if *ok {
                    InvokeOutcome::Ok {
                        payload_json: Some(format!("\"{}\"", "a".repeat(*n as usize * 10))),
                    }
                } else {
                    InvokeOutcome::Err {
                        code: "E".into(),
                        message: "m".into(),
                    }
                };
                sim.answer(&format!("inv-{i}"), outcome);
            }
            GwOp::Send(n) => {
                let _ = sim.send_event(
                    "status",
                    Some(json!({"blob": "s".repeat(*n as usize * 10)})),
                );
            }
            GwOp::SetPin(p) => sim.gateway.config.cert_pin = pin(*p),
            GwOp::SetSharedToken(t) => {
                sim.gateway.config.shared_token = match t {
                    0 => None,
                    1 => Some("tok".into()),
                    _ => Some("tok-rotated".into()),
                }
            }
            GwOp::SetDeviceToken(t) => {
                sim.gateway.config.device_token = match t {
                    0 => None,
                    n => Some(format!("devtok-{n}")),
                }
            }
            GwOp::Down(ms) => {
                let until = sim.now + Duration::from_millis(u64::from(*ms));
                sim.gateway.down_until(until);
            }
            _ => {}
        }
    }
    sim.run_for(Duration::from_secs(300));
    // Whatever happened, at most one socket is open at the gateway.
    assert!(
        sim.gateway.open_sockets() <= 1,
        "{} sockets open",
        sim.gateway.open_sockets()
    );
    sim.trace()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    })]

    /// Random gateway behaviour against the node through the simulation:
    /// every step checked by the invariants and by the gateway's own
    /// protocol checks (signature, first frame, nothing before hello-ok,
    /// results only on their connection); deterministic.
    #[test]
    fn scripted_gateways_keep_the_invariants_and_are_deterministic(
        seed in any::<u64>(),
        ops in prop::collection::vec(gw_op(), 1..120),
    ) {
        let a = run_gateway(seed, &ops);
        let b = run_gateway(seed, &ops);
        prop_assert_eq!(a, b);
    }
}
