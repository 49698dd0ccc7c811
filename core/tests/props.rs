//! Property tests of the session machine: random input sequences, checked after every
//! step by `clawnode_core::sim::Invariants`, and determinism.

use core::time::Duration;

use clawnode_core::sim::{self, AttemptPlan, GatewayConfig, Sim, loopback_config};
use clawnode_core::{Input, InvokeOutcome, NodeOptions};
use proptest::prelude::*;
use serde_json::{Value, json};

mod support;

use support::*;

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
            prop::option::of(prop_oneof![Just(0u32), 1u32..100_000, 300_000u32..]),
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
        1 => prop_oneof![sel().prop_map(Op::Queued), sel().prop_map(Op::Dialing)],
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
    /// Stop ticking on the admitted connection (pongs still answered).
    StopTicks,
    /// The `tickIntervalMs` announced from the next admission on.
    AnnounceTick(u64),
    /// The application streams progress for `inv-{i}` (`n` × 1 KiB of
    /// text; 0 is a heartbeat).
    Progress(u8, u8),
    /// The gateway streams input `seq` to `inv-{i}`.
    Input(u8, u8),
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
        1 => Just(GwOp::StopTicks),
        1 => prop_oneof![1u64..5_000, 100_000u64..u64::MAX].prop_map(GwOp::AnnounceTick),
        2 => (0u8..6, 0u8..40).prop_map(|(i, n)| GwOp::Progress(i, n)),
        2 => (0u8..6, 0u8..4).prop_map(|(i, s)| GwOp::Input(i, s)),
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
            GwOp::StopTicks if admitted.is_some() => sim.gw_stop_ticks(),
            GwOp::AnnounceTick(ms) => sim.gateway.config.announced_tick_ms = Some(*ms),
            GwOp::Progress(i, n) => {
                sim.progress(&format!("inv-{i}"), &"é".repeat(usize::from(*n) * 512));
            }
            GwOp::Input(i, seq) if admitted.is_some() => {
                sim.gw_input(&format!("inv-{i}"), u64::from(*seq), "{}");
            }
            _ => {}
        }
    }
    // Long enough for the watchdog's longest honoured interval to pass.
    sim.run_for(Duration::from_secs(700));
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
