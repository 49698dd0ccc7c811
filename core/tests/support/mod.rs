//! The raw-input alphabet shared by the property tests and the bounded
//! model check: configs, socket events from current, stale and future
//! attempts, gateway frames, invoke answers, time, wakes and stops, fed to a
//! `NodeState` whose every step the sim's `Invariants` check.

// Each test binary uses a part of it.
#![allow(dead_code)]

use core::time::Duration;

use clawnode_core::sim::{self, ErrorSpec, Invariants, Violation, loopback_config, pinned_config};
use clawnode_core::{
    AttemptId, Credentials, Effect, Input, InvokeOutcome, NodeOptions, NodeState, Phase, Pin,
    Secret, SessionConfig, SocketError, Time, TlsPolicy,
};
use serde_json::{Value, json};

pub fn pin(b: u8) -> Pin {
    Pin::from_sha256([b; 32])
}

/// Configs by index; 0 and 1 are equal values built separately.
pub fn config(i: u8) -> SessionConfig {
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

pub fn error_spec(i: u8) -> ErrorSpec {
    match i % 13 {
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
        11 => ErrorSpec::new("INVALID_REQUEST", Some("AUTH_DEVICE_TOKEN_MISMATCH"))
            .next_step("update_auth_credentials")
            .details(json!({"canRetryWithDeviceToken": false})),
        _ => ErrorSpec::new("AGENT_TIMEOUT", None).retry_after(u64::MAX),
    }
}

pub const COMMANDS: [&str; 4] = ["echo", "slow", "system.which", "not.declared"];

/// Which attempt a socket input names.
#[derive(Clone, Debug)]
pub enum Sel {
    Current,
    Stale(u8),
    Future,
}

#[derive(Clone, Debug)]
pub enum Fr {
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
pub enum Op {
    Config(u8),
    StoredToken(Option<u8>),
    /// The driver queued the open for a handshake slot.
    Queued(Sel),
    /// The driver got its slot and dials.
    Dialing(Sel),
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

/// A node driven directly with raw inputs, every step checked.
#[derive(Clone)]
pub struct Harness {
    pub node: NodeState,
    pub inv: Invariants,
    pub now: Time,
    pub trace: String,
    /// Request ids the node sent (for responses), in order.
    pub sent_ids: Vec<String>,
}

impl Harness {
    pub fn new(seed: u64) -> Self {
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

    pub fn record(&mut self, effects: Vec<Effect>) {
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

    pub fn attempt(&self, s: &Sel) -> AttemptId {
        let cur = self.inv.current_attempt().map_or(1, |(a, _)| a.0);
        AttemptId(match s {
            Sel::Current => cur,
            Sel::Stale(k) => cur.saturating_sub(1 + u64::from(*k) % 4).max(1),
            Sel::Future => cur + 1,
        })
    }

    pub fn input(&mut self, input: Input) -> Result<(), Violation> {
        let effects = self.inv.input(&mut self.node, self.now, input)?;
        self.record(effects);
        Ok(())
    }

    pub fn frame_text(&self, a: AttemptId, f: &Fr) -> String {
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

    pub fn step(&mut self, op: &Op) -> Result<(), Violation> {
        match op {
            Op::Config(i) => self.input(Input::Config(config(*i))),
            Op::StoredToken(t) => self.input(Input::StoredDeviceToken(
                t.map(|t| Secret::new(format!("devtok-{t}"))),
            )),
            Op::Queued(s) => {
                let attempt = self.attempt(s);
                self.input(Input::SocketQueued { attempt })
            }
            Op::Dialing(s) => {
                let attempt = self.attempt(s);
                self.input(Input::SocketDialing { attempt })
            }
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
                    3 => SocketError::Busy { retry_after: None },
                    4 => SocketError::Busy {
                        retry_after: Some(Duration::from_secs(90)),
                    },
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
    pub fn due(&mut self) -> Result<(), Violation> {
        if self.node.poll_timeout().is_some_and(|t| t <= self.now) {
            let effects = self.inv.timeout(&mut self.node, self.now)?;
            self.record(effects);
        }
        Ok(())
    }
}

/// Runs `ops`, checking every step, then the liveness of where they led.
pub fn run_raw(seed: u64, ops: &[Op]) -> Result<String, String> {
    let mut h = Harness::new(seed);
    for (i, op) in ops.iter().enumerate() {
        h.step(op)
            .map_err(|v| format!("step {i} {op:?}: {v}\ntrace tail:\n{}", tail(&h.trace)))?;
    }
    check_liveness(&h).map_err(|why| format!("liveness after all steps: {why}"))?;
    Ok(h.trace)
}

pub fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

// ---- liveness ---------------------------------------------------------------

/// The most inputs a behaving gateway needs to admit the node: the wait,
/// the open, the challenge, hello-ok — twice, for an attempt already under
/// way whose handshake cannot finish.
pub const RECOVERY_STEPS: usize = 12;

/// The most virtual time recovery may take: the longest wait the policy
/// sets (a clamped `retryAfterMs`), plus one full handshake's timeouts.
pub fn recovery_bound() -> Duration {
    let o = NodeOptions::with_seed(0);
    let t = o.timeouts;
    o.backoff.max_retry_after + t.open + t.challenge + t.hello
}

/// Liveness at one reached state; `Err` says which property failed.
pub fn check_liveness(h: &Harness) -> Result<(), String> {
    let phase = h.node.phase();
    if !matches!(phase, Phase::Idle | Phase::Paused | Phase::Stopped)
        && h.node.poll_timeout().is_none()
    {
        return Err(format!("no wedge: {phase:?} with no deadline"));
    }
    match phase {
        Phase::Paused => no_loop(h),
        Phase::Idle | Phase::Stopped => Ok(()),
        _ => recovers(h),
    }
}

/// With a behaving gateway from here, the node gets in, within bounds.
fn recovers(h: &Harness) -> Result<(), String> {
    let mut h = h.clone();
    let from = h.now;
    for _ in 0..RECOVERY_STEPS {
        let op = match h.node.phase() {
            Phase::Connected => {
                let took = h.now.saturating_since(from);
                return if took <= recovery_bound() {
                    Ok(())
                } else {
                    Err(format!(
                        "recovery took {took:?} (bound {:?})",
                        recovery_bound()
                    ))
                };
            }
            Phase::Waiting => Op::ToDeadline,
            Phase::Connecting | Phase::Handshaking => Op::Drive(0),
            other => return Err(format!("recovery ended in {other:?}")),
        };
        h.step(&op)
            .map_err(|v| format!("recovery step {op:?}: {v}"))?;
        h.trace.clear();
    }
    Err(format!(
        "not connected after {RECOVERY_STEPS} inputs of a behaving gateway ({:?})",
        h.node.phase()
    ))
}

/// Paused: equal configs, wakes and time never start an attempt.
fn no_loop(h: &Harness) -> Result<(), String> {
    let mut h = h.clone();
    let attempts = h.node.status().counters.attempts;
    let config = h.node.config().cloned();
    for _ in 0..3 {
        if let Some(c) = &config {
            h.inv
                .input(&mut h.node, h.now, Input::Config(c.clone()))
                .map_err(|v| v.to_string())?;
        }
        for op in [Op::Wake, Op::Advance(600_000), Op::ToDeadline] {
            h.step(&op).map_err(|v| format!("{op:?}: {v}"))?;
        }
    }
    let after = h.node.status().counters.attempts;
    if after != attempts {
        return Err(format!("paused, yet {} more attempts", after - attempts));
    }
    Ok(())
}
