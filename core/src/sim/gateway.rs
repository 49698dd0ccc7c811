//! [`FakeGateway`]: a sans-IO OpenClaw gateway for simulations.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::config::{GatewayUrl, TlsPolicy};
use crate::identity::hex;
use crate::pin::Pin;
use crate::time::Time;
use crate::{AttemptId, Input, SocketError};

/// The wall clock of the fake gateway at [`Time::ZERO`] (milliseconds since
/// the Unix epoch): challenge `ts` values are this plus the virtual time.
pub const WALL_CLOCK_BASE_MS: i64 = 1_795_523_726_214;

/// An error the gateway answers a `connect` with.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorSpec {
    /// `error.code`, e.g. `NOT_PAIRED`.
    pub code: String,
    /// `error.message`.
    pub message: String,
    /// `error.details.code`, e.g. `AUTH_TOKEN_MISMATCH`.
    pub detail_code: Option<String>,
    /// `error.details.recommendedNextStep`.
    pub recommended_next_step: Option<String>,
    /// `error.retryAfterMs`.
    pub retry_after_ms: Option<u64>,
    /// `error.retryable`.
    pub retryable: Option<bool>,
    /// More fields merged into `error.details` (an object).
    pub extra_details: Option<Value>,
    /// The close code sent after the error, if the gateway closes (1008 is
    /// what the real gateway does on a refused connect).
    pub close: Option<u16>,
}

impl ErrorSpec {
    /// An error with `code` and `details.code`, closed with 1008.
    pub fn new(code: &str, detail_code: Option<&str>) -> Self {
        ErrorSpec {
            code: code.into(),
            message: format!("{code} ({})", detail_code.unwrap_or("-")),
            detail_code: detail_code.map(Into::into),
            recommended_next_step: None,
            retry_after_ms: None,
            retryable: None,
            extra_details: None,
            close: Some(1008),
        }
    }

    /// Sets `details.recommendedNextStep`.
    pub fn next_step(mut self, step: &str) -> Self {
        self.recommended_next_step = Some(step.into());
        self
    }

    /// Sets `retryAfterMs` (and `retryable: true`).
    pub fn retry_after(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self.retryable = Some(true);
        self
    }

    /// Sets more `details` fields.
    pub fn details(mut self, extra: Value) -> Self {
        self.extra_details = Some(extra);
        self
    }

    /// The error object as JSON.
    pub fn to_value(&self) -> Value {
        let mut details = match &self.extra_details {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        if let Some(c) = &self.detail_code {
            details.insert("code".into(), c.as_str().into());
        }
        if let Some(s) = &self.recommended_next_step {
            details.insert("recommendedNextStep".into(), s.as_str().into());
        }
        let mut e = Map::new();
        e.insert("code".into(), self.code.as_str().into());
        e.insert("message".into(), self.message.as_str().into());
        if !details.is_empty() {
            e.insert("details".into(), Value::Object(details));
        }
        if let Some(r) = self.retryable {
            e.insert("retryable".into(), r.into());
        }
        if let Some(ms) = self.retry_after_ms {
            e.insert("retryAfterMs".into(), ms.into());
        }
        Value::Object(e)
    }
}

/// What the gateway does with one socket attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptPlan {
    /// Open, challenge, verify, hello-ok (or an auth error the gateway's own
    /// auth settings call for).
    Normal,
    /// Refuse the socket (`SocketFailed` with an I/O error).
    Refuse,
    /// Refuse the upgrade as busy (HTTP 503), with this `Retry-After`.
    Busy(Option<Duration>),
    /// Never answer: the socket neither opens nor fails.
    Hang,
    /// Open, but never send `connect.challenge`.
    NoChallenge,
    /// Send a challenge without `ts` (invalid).
    BadChallenge,
    /// Answer the connect with this error.
    Reject(ErrorSpec),
    /// Never answer the connect.
    NoHello,
    /// Present a TLS certificate that fails system trust (`SocketFailed`
    /// with a TLS error).
    TlsFailure,
}

/// What a hostile or broken gateway (or a proxy in front of one) does right
/// after admitting a node: the peer behaviour that used to drive reconnect
/// storms.
#[derive(Clone, Debug, PartialEq)]
pub enum AfterAdmit {
    /// Close with this code.
    Close(u16),
    /// Announce a restart (`shutdown`, no `restartExpectedMs`) and close
    /// with 1012.
    Restart,
    /// Reset the socket (no close frame).
    Reset,
    /// Go half-open: nothing more arrives, pings go unanswered.
    Silent,
    /// Send this many unusable frames, at once.
    Garbage(u32),
}

/// Settings of the fake gateway.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// One-way delivery delay of everything the gateway sends.
    pub latency: Duration,
    /// `policy.tickIntervalMs`.
    pub tick_interval_ms: u64,
    /// `policy.maxPayload`.
    pub max_payload: u64,
    /// The negotiated protocol.
    pub protocol: u32,
    /// `server.version`.
    pub server_version: String,
    /// The shared token required in `auth.token` (`None`: no auth needed).
    pub shared_token: Option<String>,
    /// The device token issued in `hello-ok.auth.deviceToken`, and accepted
    /// in `auth.deviceToken` in place of the shared token.
    pub device_token: Option<String>,
    /// The certificate fingerprint presented on `wss://`.
    pub cert_pin: Pin,
    /// After the node closes a socket, report it closed to the node (a stale
    /// input by then), as a real driver may.
    pub echo_close: bool,
    /// Answer the node's requests (`node.invoke.result`, `node.event`,
    /// others) at once with `ok:true`. When off they wait for
    /// [`FakeGateway::respond`].
    pub auto_ack: bool,
    /// Every this many ticks, skip one `seq` (a gap).
    pub seq_gap_every: Option<u64>,
    /// Close a socket whose handshake has not finished after this long
    /// (the real gateway: about 10 s).
    pub handshake_timeout: Option<Duration>,
    /// The plan for attempts without a scripted one.
    pub default_plan: AttemptPlan,
    /// `policy.tickIntervalMs` to announce, when it differs from the
    /// interval the gateway really ticks at (a lying or broken gateway).
    pub announced_tick_ms: Option<u64>,
    /// What to do right after every admission.
    pub after_admit: Option<AfterAdmit>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            latency: Duration::from_millis(5),
            tick_interval_ms: 30_000,
            max_payload: 25 * 1024 * 1024,
            protocol: 4,
            server_version: "2026.9.6-sim".into(),
            shared_token: None,
            device_token: Some("devtok-1".into()),
            cert_pin: Pin::from_sha256([0xab; 32]),
            echo_close: true,
            auto_ack: true,
            seq_gap_every: None,
            handshake_timeout: None,
            default_plan: AttemptPlan::Normal,
            announced_tick_ms: None,
            after_admit: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the node's `connect`.
    AwaitConnect,
    /// The connect was answered, or is ignored (`NoHello`).
    Answered,
    /// hello-ok sent.
    Admitted,
    /// Closed by either side.
    Closed,
}

#[derive(Clone, Debug)]
struct Socket {
    plan: AttemptPlan,
    phase: Phase,
    nonce: String,
    ts: i64,
    opened_at: Time,
    /// No more frames from the gateway on this socket (half-open).
    silent: bool,
    seq: u64,
    next_tick: Option<Time>,
    ticks: u64,
    device_id: String,
    /// Invoke ids sent on this socket.
    invokes: Vec<String>,
}

/// A `connect` the gateway accepted as well-formed and correctly signed.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectSeen {
    /// The attempt it came on.
    pub attempt: AttemptId,
    /// When.
    pub at: Time,
    /// Its `params.auth` (or `null`).
    pub auth: Value,
    /// Its `params`, whole.
    pub params: Value,
    /// Whether it was admitted.
    pub admitted: bool,
}

/// What the gateway saw, for assertions.
#[derive(Clone, Debug, Default)]
pub struct GatewayLog {
    /// Sockets asked for, by attempt.
    pub opens: Vec<AttemptId>,
    /// Well-formed connects.
    pub connects: Vec<ConnectSeen>,
    /// Every frame received after the connect: (when, attempt, JSON).
    pub frames: Vec<(Time, AttemptId, Value)>,
    /// `node.invoke.result` params received: (attempt, params).
    pub invoke_results: Vec<(AttemptId, Value)>,
    /// Pings received.
    pub pings: Vec<(Time, AttemptId)>,
    /// Sockets the node closed: (attempt, code).
    pub node_closes: Vec<(AttemptId, u16)>,
    /// Protocol violations by the node (bad first frame, bad signature,
    /// frames before hello-ok, oversize frames, results for invokes the
    /// socket never carried, …). A correct core leaves this empty.
    pub violations: Vec<String>,
}

/// A scripted OpenClaw gateway: sans-IO like the core.
///
/// Feed it the node's socket effects with [`on_open`](Self::on_open),
/// [`on_frame`](Self::on_frame), [`on_ping`](Self::on_ping) and
/// [`on_close`](Self::on_close); call [`advance`](Self::advance) when
/// [`next_due`](Self::next_due) is reached; deliver what
/// [`poll_input`](Self::poll_input) returns to the node.
#[derive(Clone, Debug)]
pub struct FakeGateway {
    /// The settings; may be changed at any time (e.g. rotate `cert_pin`).
    pub config: GatewayConfig,
    /// What it saw.
    pub log: GatewayLog,
    plans: VecDeque<AttemptPlan>,
    sockets: BTreeMap<u64, Socket>,
    out: Vec<(Time, u64, Input)>,
    out_seq: u64,
    /// Refuse sockets until then (restarting).
    down_until: Option<Time>,
    conns: u64,
    held: Vec<(AttemptId, String)>,
}

impl FakeGateway {
    /// A gateway with these settings.
    pub fn new(config: GatewayConfig) -> Self {
        FakeGateway {
            config,
            log: GatewayLog::default(),
            plans: VecDeque::new(),
            sockets: BTreeMap::new(),
            out: Vec::new(),
            out_seq: 0,
            down_until: None,
            conns: 0,
            held: Vec::new(),
        }
    }

    /// Scripts the next socket attempt (plans queue up; unscripted attempts
    /// follow `config.default_plan`).
    pub fn plan_next(&mut self, plan: AttemptPlan) {
        self.plans.push_back(plan);
    }

    /// From now on a healthy gateway: no scripted plans, no outage, no
    /// hostile behaviour; sockets already open keep theirs.
    pub fn behave(&mut self) {
        self.plans.clear();
        self.down_until = None;
        self.config.default_plan = AttemptPlan::Normal;
        self.config.after_admit = None;
        self.config.announced_tick_ms = None;
        // Only ever raised while sockets may be open: a frame the node sized
        // for the old limit still fits.
        let defaults = GatewayConfig::default();
        self.config.max_payload = self.config.max_payload.max(defaults.max_payload);
        self.config.tick_interval_ms = defaults.tick_interval_ms;
    }

    /// Refuses every socket until `until` (a restart or an outage).
    pub fn down_until(&mut self, until: Time) {
        self.down_until = Some(until);
    }

    /// The admitted, open socket, if any.
    pub fn admitted(&self) -> Option<AttemptId> {
        self.sockets
            .iter()
            .rev()
            .find(|(_, s)| s.phase == Phase::Admitted)
            .map(|(a, _)| AttemptId(*a))
    }

    /// Sockets the gateway holds open (any phase but closed).
    pub fn open_sockets(&self) -> usize {
        self.sockets
            .values()
            .filter(|s| s.phase != Phase::Closed)
            .count()
    }

    /// The next time [`advance`](Self::advance) or
    /// [`poll_input`](Self::poll_input) has something to do.
    pub fn next_due(&self) -> Option<Time> {
        let out = self.out.iter().map(|(t, _, _)| *t).min();
        let ticks = self
            .sockets
            .values()
            .filter(|s| s.phase == Phase::Admitted && !s.silent)
            .filter_map(|s| s.next_tick)
            .min();
        let handshakes = self.config.handshake_timeout.and_then(|d| {
            self.sockets
                .values()
                .filter(|s| matches!(s.phase, Phase::AwaitConnect | Phase::Answered))
                .map(|s| s.opened_at + d)
                .min()
        });
        [out, ticks, handshakes].into_iter().flatten().min()
    }

    /// Performs the gateway's own scheduled actions due at `now` (ticks,
    /// handshake timeouts).
    pub fn advance(&mut self, now: Time) {
        let attempts: Vec<u64> = self.sockets.keys().copied().collect();
        for a in attempts {
            let s = &self.sockets[&a];
            if let Some(d) = self.config.handshake_timeout
                && matches!(s.phase, Phase::AwaitConnect | Phase::Answered)
                && s.opened_at + d <= now
            {
                self.close(now, AttemptId(a), 1008, "handshake timeout");
                continue;
            }
            let s = self.sockets.get_mut(&a).expect("present");
            if s.phase == Phase::Admitted
                && !s.silent
                && let Some(t) = s.next_tick
                && t <= now
            {
                s.ticks += 1;
                s.seq += 1;
                if let Some(every) = self.config.seq_gap_every
                    && every > 0
                    && s.ticks.is_multiple_of(every)
                {
                    s.seq += 1;
                }
                let seq = s.seq;
                s.next_tick = Some(now + Duration::from_millis(self.config.tick_interval_ms));
                let ts = wall(now);
                self.send(
                    now,
                    AttemptId(a),
                    json!({"type":"event","event":"tick","payload":{"ts":ts},"seq":seq}),
                );
            }
        }
    }

    /// The next input due at `now` for the node, in send order.
    pub fn poll_input(&mut self, now: Time) -> Option<Input> {
        let (i, _) = self
            .out
            .iter()
            .enumerate()
            .filter(|(_, (t, _, _))| *t <= now)
            .min_by_key(|(_, (t, seq, _))| (*t, *seq))?;
        Some(self.out.remove(i).2)
    }

    fn push(&mut self, at: Time, input: Input) {
        self.out_seq += 1;
        self.out.push((at, self.out_seq, input));
    }

    fn deliver_at(&self, now: Time) -> Time {
        now + self.config.latency
    }

    /// Sends `frame` on the socket of `attempt` (unless closed or silent).
    fn send(&mut self, now: Time, attempt: AttemptId, frame: Value) {
        let Some(s) = self.sockets.get(&attempt.0) else {
            return;
        };
        if s.phase == Phase::Closed || s.silent {
            return;
        }
        let at = self.deliver_at(now);
        self.push(
            at,
            Input::Frame {
                attempt,
                text: frame.to_string(),
            },
        );
    }

    /// Sends raw text on the socket of `attempt` (garbage welcome).
    pub fn send_raw(&mut self, now: Time, attempt: AttemptId, text: &str) {
        let open = self
            .sockets
            .get(&attempt.0)
            .is_some_and(|s| s.phase != Phase::Closed);
        if open {
            let at = self.deliver_at(now);
            self.push(
                at,
                Input::Frame {
                    attempt,
                    text: text.into(),
                },
            );
        }
    }

    /// Closes the socket of `attempt` from the gateway's side with `code`.
    pub fn close(&mut self, now: Time, attempt: AttemptId, code: u16, reason: &str) {
        self.end(now, attempt, || Input::SocketClosed {
            attempt,
            code: Some(code),
            reason: reason.into(),
        });
    }

    /// Breaks the socket of `attempt` (reset, no close frame).
    pub fn reset(&mut self, now: Time, attempt: AttemptId) {
        self.end(now, attempt, || Input::SocketFailed {
            attempt,
            error: SocketError::Io("connection reset by peer".into()),
        });
    }

    /// Ends the socket of `attempt` from the gateway's side, if it is still
    /// open, and tells the node with `input`.
    fn end(&mut self, now: Time, attempt: AttemptId, input: impl FnOnce() -> Input) {
        let Some(s) = self.sockets.get_mut(&attempt.0) else {
            return;
        };
        if s.phase == Phase::Closed {
            return;
        }
        s.phase = Phase::Closed;
        let at = self.deliver_at(now);
        self.push(at, input());
    }

    /// Stops sending anything on `attempt` (ticks, responses) while keeping
    /// the socket open: a half-open connection.
    pub fn go_silent(&mut self, attempt: AttemptId) {
        if let Some(s) = self.sockets.get_mut(&attempt.0) {
            s.silent = true;
        }
    }

    /// Stops the ticks on `attempt`; everything else (pongs, responses)
    /// goes on: an application layer that hung over a live socket.
    pub fn stop_ticks(&mut self, attempt: AttemptId) {
        if let Some(s) = self.sockets.get_mut(&attempt.0) {
            s.next_tick = None;
        }
    }

    /// Sends an event on `attempt`, with the next `seq` when `with_seq`.
    pub fn event(
        &mut self,
        now: Time,
        attempt: AttemptId,
        event: &str,
        payload: Value,
        with_seq: bool,
    ) {
        let Some(s) = self.sockets.get_mut(&attempt.0) else {
            return;
        };
        let mut frame = json!({"type":"event","event":event,"payload":payload});
        if with_seq {
            s.seq += 1;
            frame["seq"] = s.seq.into();
        }
        self.send(now, attempt, frame);
    }

    /// Skips `n` seq numbers on `attempt` (the next sequenced event shows a gap).
    pub fn skip_seq(&mut self, attempt: AttemptId, n: u64) {
        if let Some(s) = self.sockets.get_mut(&attempt.0) {
            s.seq += n;
        }
    }

    /// Sends `node.invoke.request` on `attempt`.
    pub fn invoke(
        &mut self,
        now: Time,
        attempt: AttemptId,
        id: &str,
        command: &str,
        params_json: Option<&str>,
        timeout_ms: Option<u64>,
    ) {
        let Some(s) = self.sockets.get_mut(&attempt.0) else {
            return;
        };
        s.invokes.push(id.into());
        let mut p = Map::new();
        p.insert("id".into(), id.into());
        p.insert("nodeId".into(), s.device_id.as_str().into());
        p.insert("command".into(), command.into());
        if let Some(j) = params_json {
            p.insert("paramsJSON".into(), j.into());
        }
        if let Some(t) = timeout_ms {
            p.insert("timeoutMs".into(), t.into());
        }
        self.send(
            now,
            attempt,
            json!({"type":"event","event":"node.invoke.request","payload":Value::Object(p)}),
        );
    }

    /// Sends `node.invoke.request` with these payload fields (`id` among
    /// them) merged over `nodeId`.
    pub fn invoke_payload(&mut self, now: Time, attempt: AttemptId, fields: Value) {
        let Some(s) = self.sockets.get_mut(&attempt.0) else {
            return;
        };
        let mut p = Map::new();
        p.insert("nodeId".into(), s.device_id.as_str().into());
        if let Value::Object(f) = fields {
            p.extend(f);
        }
        if let Some(id) = p.get("id").and_then(Value::as_str) {
            s.invokes.push(id.into());
        }
        self.send(
            now,
            attempt,
            json!({"type":"event","event":"node.invoke.request","payload":Value::Object(p)}),
        );
    }

    /// Sends `node.invoke.input` for invoke `id` on `attempt`.
    pub fn input(&mut self, now: Time, attempt: AttemptId, id: &str, seq: u64, payload_json: &str) {
        let node_id = self.sockets[&attempt.0].device_id.clone();
        self.send(
            now,
            attempt,
            json!({"type":"event","event":"node.invoke.input","payload":{
                "id": id, "nodeId": node_id, "seq": seq, "payloadJSON": payload_json}}),
        );
    }

    /// The `node.invoke.progress` requests received, in order.
    pub fn progress(&self) -> Vec<(AttemptId, Value)> {
        self.log
            .frames
            .iter()
            .filter(|(_, _, v)| {
                v.get("method").and_then(Value::as_str) == Some("node.invoke.progress")
            })
            .map(|(_, a, v)| (*a, v.get("params").cloned().unwrap_or(Value::Null)))
            .collect()
    }

    /// Sends `node.invoke.cancel` on `attempt`.
    pub fn cancel(&mut self, now: Time, attempt: AttemptId, id: &str) {
        self.send(
            now,
            attempt,
            json!({"type":"event","event":"node.invoke.cancel","payload":{"invokeId":id}}),
        );
    }

    /// Announces a restart on `attempt`: a `shutdown` event, then close 1012;
    /// sockets are refused for `restart_expected_ms` from now.
    pub fn shutdown(&mut self, now: Time, attempt: AttemptId, restart_expected_ms: u64) {
        self.event(
            now,
            attempt,
            "shutdown",
            json!({"reason":"restart","restartExpectedMs":restart_expected_ms}),
            false,
        );
        self.close(now, attempt, 1012, "service restart");
        self.down_until = Some(now + Duration::from_millis(restart_expected_ms));
    }

    /// Requests from the node waiting for [`respond`](Self::respond) (when
    /// `auto_ack` is off): (attempt, request id).
    pub fn held_requests(&self) -> &[(AttemptId, String)] {
        &self.held
    }

    /// Answers a held request.
    pub fn respond(&mut self, now: Time, attempt: AttemptId, id: &str, ok: bool, payload: Value) {
        self.held.retain(|(a, i)| !(*a == attempt && i == id));
        let frame = if ok {
            json!({"type":"res","id":id,"ok":true,"payload":payload})
        } else {
            json!({"type":"res","id":id,"ok":false,"error":{"code":"INVALID_REQUEST","message":"refused by the sim"}})
        };
        self.send(now, attempt, frame);
    }

    // ---- the node's socket effects -----------------------------------------

    /// The node asked for a socket.
    pub fn on_open(&mut self, now: Time, attempt: AttemptId, url: &GatewayUrl, tls: &TlsPolicy) {
        self.log.opens.push(attempt);
        let plan = self
            .plans
            .pop_front()
            .unwrap_or_else(|| self.config.default_plan.clone());
        let at = self.deliver_at(now);
        if self.down_until.is_some_and(|t| now < t) || plan == AttemptPlan::Refuse {
            return self.push(
                at,
                Input::SocketFailed {
                    attempt,
                    error: SocketError::Io("connection refused".into()),
                },
            );
        }
        if let AttemptPlan::Busy(retry_after) = plan {
            return self.push(
                at,
                Input::SocketFailed {
                    attempt,
                    error: SocketError::Busy { retry_after },
                },
            );
        }
        if plan == AttemptPlan::Hang {
            return;
        }
        if url.is_secure() {
            match tls {
                TlsPolicy::Pinned(set) if !set.contains(&self.config.cert_pin) => {
                    return self.push(
                        at,
                        Input::SocketFailed {
                            attempt,
                            error: SocketError::PinMismatch {
                                expected: set.iter().copied().collect(),
                                observed: self.config.cert_pin,
                            },
                        },
                    );
                }
                TlsPolicy::SystemTrust if plan == AttemptPlan::TlsFailure => {
                    return self.push(
                        at,
                        Input::SocketFailed {
                            attempt,
                            error: SocketError::Tls("self-signed certificate".into()),
                        },
                    );
                }
                _ => {}
            }
        }
        let nonce = format!("nonce-{}-{}", attempt.0, now.as_millis());
        let ts = wall(now);
        self.sockets.insert(
            attempt.0,
            Socket {
                plan: plan.clone(),
                phase: Phase::AwaitConnect,
                nonce: nonce.clone(),
                ts,
                opened_at: now,
                silent: false,
                seq: 0,
                next_tick: None,
                ticks: 0,
                device_id: String::new(),
                invokes: Vec::new(),
            },
        );
        self.push(at, Input::SocketOpened { attempt });
        match plan {
            AttemptPlan::NoChallenge => {}
            AttemptPlan::BadChallenge => self.send(
                now,
                attempt,
                json!({"type":"event","event":"connect.challenge","payload":{"nonce":nonce}}),
            ),
            _ => self.send(
                now,
                attempt,
                json!({"type":"event","event":"connect.challenge","payload":{"nonce":nonce,"ts":ts}}),
            ),
        }
    }

    /// The node sent a ping.
    pub fn on_ping(&mut self, now: Time, attempt: AttemptId) {
        self.log.pings.push((now, attempt));
        let Some(s) = self.sockets.get(&attempt.0) else {
            return self.violation(format!("ping on attempt {attempt}, which never opened"));
        };
        // A WebSocket answers pings by itself, unless the peer went silent.
        if s.phase != Phase::Closed && !s.silent {
            let at = self.deliver_at(now);
            self.push(at, Input::Pong { attempt });
        }
    }

    /// The node closed its socket.
    pub fn on_close(&mut self, now: Time, attempt: AttemptId, code: u16) {
        self.log.node_closes.push((attempt, code));
        let Some(s) = self.sockets.get_mut(&attempt.0) else {
            return;
        };
        let was_open = s.phase != Phase::Closed;
        s.phase = Phase::Closed;
        self.held.retain(|(a, _)| *a != attempt);
        if was_open && self.config.echo_close {
            let at = self.deliver_at(now);
            self.push(
                at,
                Input::SocketClosed {
                    attempt,
                    code: Some(code),
                    reason: "closed by the node".into(),
                },
            );
        }
    }

    fn violation(&mut self, v: String) {
        self.log.violations.push(v);
    }

    /// The node sent a text frame.
    pub fn on_frame(&mut self, now: Time, attempt: AttemptId, text: &str) {
        let Some(s) = self.sockets.get(&attempt.0) else {
            return self.violation(format!(
                "frame on attempt {attempt}, which never opened: {text}"
            ));
        };
        if s.phase == Phase::Closed {
            // In flight when the gateway closed: not the node's fault.
            return;
        }
        let admitted = s.phase == Phase::Admitted;
        let limit = if admitted {
            usize::try_from(self.config.max_payload).unwrap_or(usize::MAX)
        } else {
            64 * 1024
        };
        if text.len() > limit {
            self.violation(format!(
                "frame of {} bytes on attempt {attempt} exceeds {limit}",
                text.len()
            ));
            return self.close(now, attempt, 1009, "frame too large");
        }
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => {
                self.violation(format!("non-JSON frame on attempt {attempt}: {text}"));
                return self.close(now, attempt, 1008, "invalid frame");
            }
        };
        match s.phase {
            Phase::AwaitConnect => self.on_connect(now, attempt, v),
            Phase::Answered => {
                self.violation(format!(
                    "frame on attempt {attempt} before hello-ok: {text}"
                ));
            }
            Phase::Admitted => {
                self.log.frames.push((now, attempt, v.clone()));
                self.on_request(now, attempt, v);
            }
            Phase::Closed => {}
        }
    }

    fn reply_error(&mut self, now: Time, attempt: AttemptId, id: &str, spec: &ErrorSpec) {
        if let Some(s) = self.sockets.get_mut(&attempt.0) {
            s.phase = Phase::Answered;
        }
        self.send(
            now,
            attempt,
            json!({"type":"res","id":id,"ok":false,"error":spec.to_value()}),
        );
        if let Some(code) = spec.close {
            self.close(now, attempt, code, &spec.message);
        }
    }

    fn on_connect(&mut self, now: Time, attempt: AttemptId, v: Value) {
        let s = |k: &str| v.get(k).and_then(Value::as_str);
        let id = s("id").unwrap_or("").to_string();
        if s("type") != Some("req") || s("method") != Some("connect") || id.is_empty() {
            self.violation(format!(
                "first frame of attempt {attempt} is not a connect request: {v}"
            ));
            let spec = ErrorSpec::new("INVALID_REQUEST", None);
            return self.reply_error(now, attempt, &id, &spec);
        }
        let params = v.get("params").cloned().unwrap_or(Value::Null);
        if let Err(why) = self.verify_connect(now, attempt, &params) {
            self.violation(format!("connect on attempt {attempt}: {why}"));
            let spec = ErrorSpec::new("INVALID_REQUEST", Some("DEVICE_AUTH_SIGNATURE_INVALID"));
            return self.reply_error(now, attempt, &id, &spec);
        }
        let auth = params.get("auth").cloned().unwrap_or(Value::Null);
        let mut seen = ConnectSeen {
            attempt,
            at: now,
            auth: auth.clone(),
            params: params.clone(),
            admitted: false,
        };
        let plan = self.sockets[&attempt.0].plan.clone();
        let refusal = match plan {
            AttemptPlan::Reject(spec) => Some(spec),
            AttemptPlan::NoHello => {
                if let Some(s) = self.sockets.get_mut(&attempt.0) {
                    s.phase = Phase::Answered;
                }
                self.log.connects.push(seen);
                return;
            }
            _ => self.check_auth(&auth),
        };
        if let Some(spec) = refusal {
            self.log.connects.push(seen);
            return self.reply_error(now, attempt, &id, &spec);
        }
        seen.admitted = true;
        self.log.connects.push(seen);
        self.conns += 1;
        let conn_id = format!("conn-{}", self.conns);
        let tick = self.config.tick_interval_ms;
        let device_id = params
            .pointer("/device/id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Some(sock) = self.sockets.get_mut(&attempt.0) {
            sock.phase = Phase::Admitted;
            sock.next_tick = Some(now + Duration::from_millis(tick));
            sock.device_id = device_id;
        }
        let mut auth_out = json!({"role":"node","scopes":[]});
        if let Some(t) = &self.config.device_token {
            auth_out["deviceToken"] = t.as_str().into();
            auth_out["issuedAtMs"] = wall(now).into();
        }
        let hello = json!({
            "type": "hello-ok",
            "protocol": self.config.protocol,
            "server": {"version": self.config.server_version, "connId": conn_id},
            "features": {"methods": ["node.invoke.result", "node.event"], "events": ["tick", "node.invoke.request"]},
            "snapshot": {},
            "auth": auth_out,
            "policy": {
                "maxPayload": self.config.max_payload,
                "maxBufferedBytes": self.config.max_payload.saturating_mul(2),
                "tickIntervalMs": self.config.announced_tick_ms.unwrap_or(tick),
            },
        });
        self.send(
            now,
            attempt,
            json!({"type":"res","id":id,"ok":true,"payload":hello}),
        );
        match self.config.after_admit.clone() {
            None => {}
            Some(AfterAdmit::Close(code)) => self.close(now, attempt, code, "hostile close"),
            Some(AfterAdmit::Restart) => {
                self.event(
                    now,
                    attempt,
                    "shutdown",
                    json!({"reason": "restart"}),
                    false,
                );
                self.close(now, attempt, 1012, "service restart");
            }
            Some(AfterAdmit::Reset) => self.reset(now, attempt),
            Some(AfterAdmit::Silent) => self.go_silent(attempt),
            Some(AfterAdmit::Garbage(n)) => {
                for i in 0..n {
                    self.send_raw(now, attempt, &format!("garbage {i}"));
                }
            }
        }
    }

    /// The gateway's auth rules: the shared token, else the issued device
    /// token, else nothing when no shared token is configured.
    fn check_auth(&self, auth: &Value) -> Option<ErrorSpec> {
        let Some(shared) = &self.config.shared_token else {
            return None;
        };
        let get = |k: &str| auth.get(k).and_then(Value::as_str);
        if get("token") == Some(shared.as_str()) {
            return None;
        }
        if get("token").is_none()
            && get("deviceToken").is_some()
            && get("deviceToken") == self.config.device_token.as_deref()
        {
            return None;
        }
        let (detail, step) = match (get("token"), get("deviceToken")) {
            (Some(_), _) => ("AUTH_TOKEN_MISMATCH", "retry_with_device_token"),
            (None, Some(_)) => ("AUTH_DEVICE_TOKEN_MISMATCH", "update_auth_credentials"),
            (None, None) => ("AUTH_TOKEN_MISSING", "update_auth_configuration"),
        };
        Some(
            ErrorSpec::new("NOT_LINKED", Some(detail))
                .next_step(step)
                .details(json!({"canRetryWithDeviceToken": detail == "AUTH_TOKEN_MISMATCH"})),
        )
    }

    /// Checks a connect's params the way the real gateway does: protocol
    /// range, client, role, device id, nonce, signedAt skew and the v3
    /// signature over exactly the fields sent.
    fn verify_connect(&self, now: Time, attempt: AttemptId, p: &Value) -> Result<(), String> {
        let sock = &self.sockets[&attempt.0];
        let s = |path: &str| p.pointer(path).and_then(Value::as_str);
        let n = |path: &str| p.pointer(path).and_then(Value::as_u64);
        let (min, max) = (n("/minProtocol"), n("/maxProtocol"));
        let proto = u64::from(self.config.protocol);
        if !matches!((min, max), (Some(lo), Some(hi)) if lo <= proto && proto <= hi) {
            return Err(format!("protocol range {min:?}..{max:?} excludes {proto}"));
        }
        if s("/role") != Some("node") || s("/client/mode") != Some("node") {
            return Err("role and client.mode must be node".into());
        }
        if s("/client/id") != Some("node-host") {
            return Err(format!("client.id {:?}", s("/client/id")));
        }
        let scopes = p.get("scopes").and_then(Value::as_array);
        let Some(scopes) = scopes else {
            return Err("scopes missing".into());
        };
        let scopes: Vec<&str> = scopes.iter().filter_map(Value::as_str).collect();
        let (Some(device_id), Some(pk), Some(sig), Some(nonce)) = (
            s("/device/id"),
            s("/device/publicKey"),
            s("/device/signature"),
            s("/device/nonce"),
        ) else {
            return Err("device id/publicKey/signature/nonce missing".into());
        };
        let Some(signed_at) = p.pointer("/device/signedAt").and_then(Value::as_i64) else {
            return Err("device.signedAt missing".into());
        };
        if nonce != sock.nonce {
            return Err(format!("nonce {nonce:?}, challenge was {:?}", sock.nonce));
        }
        if signed_at != sock.ts || (wall(now) - signed_at).abs() > 120_000 {
            return Err(format!("signedAt {signed_at}, challenge ts {}", sock.ts));
        }
        let raw = URL_SAFE_NO_PAD
            .decode(pk)
            .map_err(|e| format!("publicKey not base64url: {e}"))?;
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| String::from("publicKey is not 32 bytes"))?;
        if hex(&Sha256::digest(raw)) != device_id {
            return Err("device.id is not the SHA-256 of the public key".into());
        }
        let key = VerifyingKey::from_bytes(&raw).map_err(|e| format!("bad public key: {e}"))?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|e| format!("signature not base64url: {e}"))?;
        let sig = Signature::from_slice(&sig).map_err(|e| format!("bad signature: {e}"))?;
        let token = ["/auth/token", "/auth/deviceToken", "/auth/bootstrapToken"]
            .iter()
            .find_map(|k| s(k))
            .unwrap_or("");
        let norm = |path: &str| s(path).unwrap_or("").trim().to_ascii_lowercase();
        let payload = format!(
            "v3|{device_id}|{}|{}|{}|{}|{signed_at}|{token}|{nonce}|{}|{}",
            s("/client/id").unwrap_or(""),
            s("/client/mode").unwrap_or(""),
            s("/role").unwrap_or(""),
            scopes.join(","),
            norm("/client/platform"),
            norm("/client/deviceFamily"),
        );
        key.verify(payload.as_bytes(), &sig)
            .map_err(|_| format!("v3 signature does not verify over {payload:?}"))
    }

    fn on_request(&mut self, now: Time, attempt: AttemptId, v: Value) {
        let s = |k: &str| v.get(k).and_then(Value::as_str);
        let id = s("id").unwrap_or("").to_string();
        if s("type") != Some("req") || id.is_empty() {
            return self.violation(format!("non-request frame from the node: {v}"));
        }
        let method = s("method").unwrap_or("");
        if method == "node.invoke.result" {
            let params = v.get("params").cloned().unwrap_or(Value::Null);
            let inv = params.get("id").and_then(Value::as_str).unwrap_or("");
            let sock = &self.sockets[&attempt.0];
            let carried = sock.invokes.iter().any(|i| i == inv);
            let own = params.get("nodeId").and_then(Value::as_str) == Some(sock.device_id.as_str());
            if !carried {
                self.violation(format!(
                    "node.invoke.result for {inv:?} on attempt {attempt}, which never carried it"
                ));
            }
            if !own {
                self.violation(format!(
                    "node.invoke.result with a foreign nodeId: {params}"
                ));
            }
            self.log.invoke_results.push((attempt, params));
            if !self.config.auto_ack {
                self.held.push((attempt, id));
                return;
            }
            return self.send(
                now,
                attempt,
                json!({"type":"res","id":id,"ok":true,"payload":{"ok":true}}),
            );
        }
        if self.config.auto_ack {
            self.send(
                now,
                attempt,
                json!({"type":"res","id":id,"ok":true,"payload":{"ok":true,"method":method}}),
            );
        } else {
            self.held.push((attempt, id));
        }
    }
}

/// The gateway's wall clock at virtual time `now`.
pub fn wall(now: Time) -> i64 {
    WALL_CLOCK_BASE_MS.saturating_add(i64::try_from(now.as_millis()).unwrap_or(i64::MAX))
}
