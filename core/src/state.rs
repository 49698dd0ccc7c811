//! [`NodeState`]: the session machine.

use alloc::borrow::ToOwned;
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use ed25519_dalek::SigningKey;
use serde_json::{Map, Value, json};

use crate::backoff::{Backoff, BackoffConfig, Rng};
use crate::config::{Secret, SessionConfig};
use crate::frame::{self, Inbound};
use crate::identity::{DeviceIdentity, SignatureFields};
use crate::io::{
    AttemptId, CancelReason, DisconnectReason, DropReason, Effect, GatewayError, Input,
    InvokeOutcome, InvokeRefusal, InvokeRequest, Notification, PauseKind, PauseReason,
    RequestError, RequestId, SendRefusal, SendRefused, SocketError,
};
use crate::time::Time;
use crate::{CLIENT_ID, MAX_PROTOCOL, MIN_PROTOCOL, NODE_ROLE};

/// Timeouts and intervals the core enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// From the open-socket effect to the socket being open (TCP, TLS,
    /// WebSocket upgrade).
    pub open: Duration,
    /// From the socket opening to `connect.challenge`. The gateway itself
    /// drops unfinished handshakes after about 10 s.
    pub challenge: Duration,
    /// From `connect` sent to `hello-ok`.
    pub hello: Duration,
    /// The tick interval assumed until hello-ok gives one.
    pub default_tick_interval: Duration,
    /// Outbound WebSocket pings while connected.
    pub ping_interval: Duration,
    /// Invoke deadline when the gateway gives no `timeoutMs`.
    pub default_invoke: Duration,
    /// The longest invoke deadline accepted from the gateway.
    pub max_invoke: Duration,
    /// Deadline of an application request when none is given.
    pub default_request: Duration,
    /// The longest wait honoured from a `shutdown` event's `restartExpectedMs`.
    pub max_restart_wait: Duration,
    /// Delay before the one retry with a stored device token.
    pub device_token_retry: Duration,
    /// Retries while a gateway announced to be restarting comes back are
    /// drawn from `restart_retry..=2 × restart_retry`, without growing, for
    /// at most `max_restart_wait` after the announced restart time.
    pub restart_retry: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            open: Duration::from_secs(10),
            challenge: Duration::from_secs(10),
            hello: Duration::from_secs(10),
            default_tick_interval: Duration::from_secs(15),
            ping_interval: Duration::from_secs(15),
            default_invoke: Duration::from_secs(30),
            max_invoke: Duration::from_secs(600),
            default_request: Duration::from_secs(30),
            max_restart_wait: Duration::from_secs(30),
            device_token_retry: Duration::from_millis(250),
            restart_retry: Duration::from_millis(250),
        }
    }
}

/// Construction-time options of a [`NodeState`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeOptions {
    /// Seed of the jitter generator. Same seed, same delays.
    pub seed: u64,
    /// Invokes that may run at once; the excess is answered busy.
    pub max_concurrent_invokes: usize,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Reconnect backoff.
    pub backoff: BackoffConfig,
}

impl NodeOptions {
    /// Default options with the given seed.
    pub fn with_seed(seed: u64) -> Self {
        NodeOptions {
            seed,
            max_concurrent_invokes: 16,
            timeouts: Timeouts::default(),
            backoff: BackoffConfig::default(),
        }
    }
}

/// The session's phase, as reported by [`Status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No config applied yet.
    Idle,
    /// Waiting before the next attempt.
    Waiting,
    /// A socket is being opened.
    Connecting,
    /// The socket is open; challenge and connect are under way.
    Handshaking,
    /// Admitted by the gateway.
    Connected,
    /// Stopped on a terminal failure until the config changes.
    Paused,
    /// Stopped by the application.
    Stopped,
}

/// Running totals since construction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Sockets asked for.
    pub attempts: u64,
    /// hello-oks received.
    pub admissions: u64,
    /// Attempts that ended (admitted or not).
    pub disconnects: u64,
    /// Frames received on current attempts.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Invokes handed to the application.
    pub invokes: u64,
    /// Invoke results sent on behalf of the application.
    pub invoke_results: u64,
    /// Invokes the core answered itself (timeout, busy, undeclared).
    pub invokes_refused: u64,
    /// Invoke answers that could not be sent.
    pub invokes_dropped: u64,
}

/// A snapshot of the session.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// The phase.
    pub phase: Phase,
    /// The current attempt, if a socket is wanted.
    pub attempt: Option<AttemptId>,
    /// `server.connId` while connected.
    pub conn_id: Option<String>,
    /// The last reason an attempt ended.
    pub last_error: Option<DisconnectReason>,
    /// Why the session is paused.
    pub paused: Option<PauseReason>,
    /// When the next attempt starts, while waiting.
    pub next_retry: Option<Time>,
    /// Invokes running now.
    pub running_invokes: usize,
    /// Requests awaiting a response now.
    pub pending_requests: usize,
    /// Totals.
    pub counters: Counters,
}

impl Default for Status {
    /// The status of a session before anything was applied.
    fn default() -> Self {
        Status {
            phase: Phase::Idle,
            attempt: None,
            conn_id: None,
            last_error: None,
            paused: None,
            next_retry: None,
            running_invokes: 0,
            pending_requests: 0,
            counters: Counters::default(),
        }
    }
}

/// What paused the session, so that only a change of that input resumes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PauseCause {
    /// URL or TLS policy.
    Trust,
    /// URL or credentials (or a new stored device token).
    Credentials,
    /// Anything in the config.
    Any,
}

#[derive(Clone, Debug)]
struct Admitted {
    attempt: AttemptId,
    /// Invokes of this connection still running: kept, not counted, so the
    /// busy check costs the same with 16 invokes running as with none.
    running: usize,
    conn_id: String,
    max_payload: usize,
    tick_timeout: Duration,
    last_tick: Time,
    next_ping: Time,
    last_seq: Option<u64>,
    restart_expected: Option<Duration>,
}

#[derive(Clone, Debug)]
enum Conn {
    Idle,
    Waiting {
        until: Time,
    },
    Opening {
        attempt: AttemptId,
        deadline: Time,
    },
    AwaitChallenge {
        attempt: AttemptId,
        deadline: Time,
    },
    AwaitHello {
        attempt: AttemptId,
        deadline: Time,
        request_id: String,
    },
    Admitted(Box<Admitted>),
    Paused {
        reason: Box<PauseReason>,
        cause: PauseCause,
    },
    Stopped,
}

impl Conn {
    fn attempt(&self) -> Option<AttemptId> {
        match self {
            Conn::Opening { attempt, .. }
            | Conn::AwaitChallenge { attempt, .. }
            | Conn::AwaitHello { attempt, .. } => Some(*attempt),
            Conn::Admitted(a) => Some(a.attempt),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
struct RunningInvoke {
    attempt: AttemptId,
    deadline: Time,
}

#[derive(Clone, Debug)]
struct PendingRequest {
    deadline: Time,
}

/// What to do once an attempt has ended.
enum Next {
    /// Start a new attempt at once.
    Now,
    /// Wait for the backoff (recording one more failure).
    Backoff { retry_after: Option<Duration> },
    /// Wait from the slow band.
    Slow,
    /// Wait exactly this long, not counted as a failure.
    After(Duration),
    /// Pause.
    Pause(Box<PauseReason>, PauseCause),
    /// Stop.
    Stop,
}

/// The node session: a deterministic state machine with no I/O.
///
/// Feed it with [`handle_input`](Self::handle_input),
/// [`handle_timeout`](Self::handle_timeout),
/// [`send_request`](Self::send_request) and
/// [`send_event`](Self::send_event); drain [`poll_effect`](Self::poll_effect)
/// until `None` after each; call `handle_timeout` at
/// [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct NodeState {
    identity: DeviceIdentity,
    options: NodeOptions,
    rng: Rng,
    backoff: Backoff,
    config: Option<SessionConfig>,
    stored_token: Option<Secret>,
    conn: Conn,
    next_attempt: u64,
    effects: VecDeque<Effect>,
    invokes: BTreeMap<String, RunningInvoke>,
    /// Frame ids of sent `node.invoke.result` requests → invoke ids.
    result_acks: BTreeMap<String, String>,
    requests: BTreeMap<RequestId, PendingRequest>,
    next_request: u64,
    /// The one device-token retry after `AUTH_TOKEN_MISMATCH` is taken.
    token_retry_used: bool,
    /// The next connect authenticates with the stored device token only.
    retry_with_device_token: bool,
    last_error: Option<DisconnectReason>,
    /// Until when failures are a restarting gateway not being back yet:
    /// retried briefly, not counted (see [`Timeouts::restart_retry`]).
    restart_window: Option<Time>,
    counters: Counters,
}

impl NodeState {
    /// A session for the device whose key is `key`. Nothing happens until a
    /// config is applied with [`Input::Config`].
    pub fn new(key: SigningKey, options: NodeOptions) -> Self {
        NodeState {
            identity: DeviceIdentity::new(key),
            rng: Rng::new(options.seed),
            backoff: Backoff::new(options.backoff),
            options,
            config: None,
            stored_token: None,
            conn: Conn::Idle,
            next_attempt: 1,
            effects: VecDeque::new(),
            invokes: BTreeMap::new(),
            result_acks: BTreeMap::new(),
            requests: BTreeMap::new(),
            next_request: 1,
            token_retry_used: false,
            retry_with_device_token: false,
            last_error: None,
            restart_window: None,
            counters: Counters::default(),
        }
    }

    /// The device identity derived from the key.
    pub fn identity(&self) -> &DeviceIdentity {
        &self.identity
    }

    /// The config in force, if any.
    pub fn config(&self) -> Option<&SessionConfig> {
        self.config.as_ref()
    }

    /// The next effect to perform, or `None` when all are drained.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called;
    /// derived from the state, so nothing ever needs cancelling.
    pub fn poll_timeout(&self) -> Option<Time> {
        let phase = match &self.conn {
            Conn::Waiting { until } => Some(*until),
            Conn::Opening { deadline, .. }
            | Conn::AwaitChallenge { deadline, .. }
            | Conn::AwaitHello { deadline, .. } => Some(*deadline),
            Conn::Admitted(a) => Some((a.last_tick + a.tick_timeout).min(a.next_ping)),
            _ => None,
        };
        let invokes = self.invokes.values().map(|i| i.deadline).min();
        let requests = self.requests.values().map(|r| r.deadline).min();
        [phase, invokes, requests].into_iter().flatten().min()
    }

    /// The session's phase: what [`status`](Self::status) reports, without
    /// building the snapshot (no allocation).
    pub fn phase(&self) -> Phase {
        match &self.conn {
            Conn::Idle => Phase::Idle,
            Conn::Waiting { .. } => Phase::Waiting,
            Conn::Opening { .. } => Phase::Connecting,
            Conn::AwaitChallenge { .. } | Conn::AwaitHello { .. } => Phase::Handshaking,
            Conn::Admitted(_) => Phase::Connected,
            Conn::Paused { .. } => Phase::Paused,
            Conn::Stopped => Phase::Stopped,
        }
    }

    /// A snapshot of the session.
    pub fn status(&self) -> Status {
        Status {
            phase: self.phase(),
            attempt: self.conn.attempt(),
            conn_id: match &self.conn {
                Conn::Admitted(a) => Some(a.conn_id.clone()),
                _ => None,
            },
            last_error: self.last_error.clone(),
            paused: match &self.conn {
                Conn::Paused { reason, .. } => Some((**reason).clone()),
                _ => None,
            },
            next_retry: match &self.conn {
                Conn::Waiting { until } => Some(*until),
                _ => None,
            },
            running_invokes: self.invokes.len(),
            pending_requests: self.requests.len(),
            counters: self.counters,
        }
    }

    /// Handles one input at `now`.
    pub fn handle_input(&mut self, now: Time, input: Input) {
        match input {
            Input::Config(config) => self.apply_config(now, config),
            Input::StoredDeviceToken(token) => self.set_stored_token(now, token),
            Input::SocketOpened { attempt } => {
                if let Conn::Opening { attempt: a, .. } = self.conn
                    && a == attempt
                {
                    self.conn = Conn::AwaitChallenge {
                        attempt,
                        deadline: self.after(now, self.options.timeouts.challenge),
                    };
                }
            }
            Input::Frame { attempt, text } => {
                if self.conn.attempt() == Some(attempt)
                    && !matches!(self.conn, Conn::Opening { .. })
                {
                    self.counters.frames_in += 1;
                    self.handle_frame(now, attempt, &text);
                }
            }
            Input::SocketClosed {
                attempt,
                code,
                reason,
            } => {
                if self.conn.attempt() == Some(attempt) {
                    let restart = match &self.conn {
                        Conn::Admitted(a) => a.restart_expected.or(if code == Some(1012) {
                            Some(Duration::ZERO)
                        } else {
                            None
                        }),
                        _ => None,
                    };
                    let (why, next) = match restart {
                        Some(wait) => (
                            DisconnectReason::GatewayRestart,
                            self.restart_next(now, wait),
                        ),
                        None => (
                            DisconnectReason::Closed { code, reason },
                            Next::Backoff { retry_after: None },
                        ),
                    };
                    self.end_attempt(now, why, None, next);
                }
            }
            Input::SocketFailed { attempt, error } => {
                if self.conn.attempt() == Some(attempt) {
                    let next = match &error {
                        SocketError::PinMismatch { expected, observed } => Next::Pause(
                            Box::new(PauseReason {
                                kind: PauseKind::PinMismatch,
                                error: None,
                                expected: expected.clone(),
                                observed: Some(*observed),
                                hint: format!(
                                    "the gateway presented certificate sha256 {observed}, which is not pinned; \
                                     if it was rotated on purpose, pin the new fingerprint"
                                ),
                            }),
                            PauseCause::Trust,
                        ),
                        SocketError::Tls(msg) => Next::Pause(
                            Box::new(PauseReason {
                                kind: PauseKind::Tls,
                                error: None,
                                expected: Vec::new(),
                                observed: None,
                                hint: format!(
                                    "the gateway's certificate was not accepted ({msg}); pin its fingerprint or fix its chain"
                                ),
                            }),
                            PauseCause::Trust,
                        ),
                        SocketError::Io(_) => Next::Backoff { retry_after: None },
                    };
                    // After a `shutdown` event a reset is the restart itself.
                    let restart = match &self.conn {
                        Conn::Admitted(a) if matches!(error, SocketError::Io(_)) => {
                            a.restart_expected
                        }
                        _ => None,
                    };
                    match restart {
                        Some(wait) => {
                            let next = self.restart_next(now, wait);
                            self.end_attempt(now, DisconnectReason::GatewayRestart, None, next);
                        }
                        None => self.end_attempt(now, DisconnectReason::Failed(error), None, next),
                    }
                }
            }
            Input::InvokeResult { id, outcome } => self.invoke_result(now, id, outcome),
            Input::Wake => {
                if matches!(self.conn, Conn::Waiting { .. }) {
                    self.start_attempt(now);
                }
            }
            Input::Stop => {
                if self.conn.attempt().is_some() {
                    self.end_attempt(
                        now,
                        DisconnectReason::Stopped,
                        Some((1000, "node stopping")),
                        Next::Stop,
                    );
                } else {
                    self.conn = Conn::Stopped;
                }
            }
        }
    }

    /// Handles every deadline that has passed at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        // Invokes and requests first: their answers must go out on the
        // connection they belong to, before any teardown below.
        self.expire_invokes(now);
        self.expire_requests(now);
        match &mut self.conn {
            Conn::Waiting { until } if *until <= now => self.start_attempt(now),
            Conn::Opening { deadline, .. } if *deadline <= now => self.end_attempt(
                now,
                DisconnectReason::OpenTimeout,
                Some((1000, "open timeout")),
                Next::Backoff { retry_after: None },
            ),
            Conn::AwaitChallenge { deadline, .. } if *deadline <= now => self.end_attempt(
                now,
                DisconnectReason::ChallengeTimeout,
                Some((1000, "connect challenge timeout")),
                Next::Backoff { retry_after: None },
            ),
            Conn::AwaitHello { deadline, .. } if *deadline <= now => self.end_attempt(
                now,
                DisconnectReason::HandshakeTimeout,
                Some((1000, "handshake timeout")),
                Next::Backoff { retry_after: None },
            ),
            Conn::Admitted(a) => {
                if a.last_tick + a.tick_timeout <= now {
                    self.end_attempt(
                        now,
                        DisconnectReason::TickTimeout,
                        Some((4000, "tick timeout")),
                        Next::Backoff { retry_after: None },
                    );
                } else if a.next_ping <= now {
                    a.next_ping = now + self.options.timeouts.ping_interval.max(MIN_STEP);
                    let attempt = a.attempt;
                    self.effects.push_back(Effect::SendPing { attempt });
                }
            }
            _ => {}
        }
    }

    /// Applies `config` by reference: the same as
    /// [`Input::Config`], but an equal config is only compared, never
    /// cloned or dropped, so re-supplying it costs no allocation at all.
    pub fn set_config(&mut self, now: Time, config: &SessionConfig) {
        if self.config.as_ref() != Some(config) {
            self.apply_changed_config(now, config.clone());
        }
    }

    /// Sends a request to the gateway. Refused, with the params handed back,
    /// before hello-ok or when the frame exceeds `policy.maxPayload`. The
    /// response comes as [`Effect::Response`] with the returned id.
    pub fn send_request(
        &mut self,
        now: Time,
        method: &str,
        params: Value,
        timeout: Option<Duration>,
    ) -> Result<RequestId, SendRefused> {
        let Conn::Admitted(a) = &self.conn else {
            return Err(SendRefused {
                reason: SendRefusal::NotConnected,
                method: method.to_owned(),
                params,
            });
        };
        let id = RequestId(self.next_request);
        let text = frame::request(&request_frame_id(id), method, &params);
        if text.len() > a.max_payload {
            return Err(SendRefused {
                reason: SendRefusal::TooLarge {
                    size: text.len(),
                    max: a.max_payload,
                },
                method: method.to_owned(),
                params,
            });
        }
        let attempt = a.attempt;
        self.next_request += 1;
        let deadline = self.after(
            now,
            timeout.unwrap_or(self.options.timeouts.default_request),
        );
        self.requests.insert(id, PendingRequest { deadline });
        self.send(attempt, text);
        Ok(id)
    }

    /// Sends a node event (`node.event` with `event` and the payload as
    /// `payloadJSON`).
    pub fn send_event(
        &mut self,
        now: Time,
        event: &str,
        payload: Option<Value>,
    ) -> Result<RequestId, SendRefused> {
        let mut params = Map::new();
        params.insert("event".into(), event.into());
        if let Some(p) = payload {
            params.insert("payloadJSON".into(), p.to_string().into());
        }
        self.send_request(now, "node.event", Value::Object(params), None)
    }

    // ---- config ----------------------------------------------------------

    fn apply_config(&mut self, now: Time, config: SessionConfig) {
        if self.config.as_ref() != Some(&config) {
            self.apply_changed_config(now, config);
        }
    }

    fn apply_changed_config(&mut self, now: Time, config: SessionConfig) {
        let old = self.config.replace(config);
        let new = self.config.as_ref().expect("just set");
        if old.as_ref().is_some_and(|o| o.url() != new.url()) {
            // A token issued by another gateway must never be sent here.
            self.stored_token = None;
        }
        // New inputs deserve their own first connect (with the configured
        // credentials) and their own bounded device-token retry.
        self.restart_window = None;
        self.token_retry_used = false;
        self.retry_with_device_token = false;
        match &self.conn {
            Conn::Stopped => {}
            Conn::Paused { cause, .. } => {
                let resume = match (cause, &old) {
                    (_, None) | (PauseCause::Any, _) => true,
                    (PauseCause::Trust, Some(o)) => o.trust_differs(new),
                    (PauseCause::Credentials, Some(o)) => {
                        o.url() != new.url() || o.credentials != new.credentials
                    }
                };
                if resume {
                    self.resume(now);
                }
            }
            Conn::Idle | Conn::Waiting { .. } => {
                self.backoff.reset();
                self.start_attempt(now);
            }
            _ => {
                self.backoff.reset();
                self.end_attempt(
                    now,
                    DisconnectReason::ConfigChanged,
                    Some((1000, "configuration changed")),
                    Next::Now,
                );
            }
        }
    }

    fn set_stored_token(&mut self, now: Time, token: Option<Secret>) {
        if self.stored_token == token {
            return;
        }
        self.stored_token = token;
        if let Conn::Paused {
            cause: PauseCause::Credentials,
            ..
        } = self.conn
            && self.stored_token.is_some()
        {
            self.resume(now);
        }
    }

    fn resume(&mut self, now: Time) {
        self.restart_window = None;
        self.backoff.reset();
        self.token_retry_used = false;
        self.retry_with_device_token = false;
        self.start_attempt(now);
    }

    // ---- attempts ----------------------------------------------------------

    fn start_attempt(&mut self, now: Time) {
        let Some(config) = &self.config else {
            self.conn = Conn::Idle;
            return;
        };
        let attempt = AttemptId(self.next_attempt);
        self.next_attempt += 1;
        self.counters.attempts += 1;
        self.effects.push_back(Effect::OpenSocket {
            attempt,
            url: config.url().clone(),
            tls: config.tls().clone(),
        });
        self.conn = Conn::Opening {
            attempt,
            deadline: self.after(now, self.options.timeouts.open),
        };
    }

    fn restart_next(&mut self, now: Time, wait: Duration) -> Next {
        let t = self.options.timeouts;
        let wait = wait.min(t.max_restart_wait);
        self.restart_window = Some(now + wait + t.max_restart_wait);
        Next::After(wait)
    }

    /// Ends the current attempt: closes its socket if `close` is given,
    /// fails what depended on it, reports, and moves on to `next`.
    fn end_attempt(
        &mut self,
        now: Time,
        reason: DisconnectReason,
        close: Option<(u16, &str)>,
        next: Next,
    ) {
        let Some(attempt) = self.conn.attempt() else {
            return;
        };
        let was_connected = matches!(self.conn, Conn::Admitted(_));
        if let Some((code, why)) = close {
            self.effects.push_back(Effect::CloseSocket {
                attempt,
                code,
                reason: why.to_owned(),
            });
        }
        for (id, _) in core::mem::take(&mut self.requests) {
            self.effects.push_back(Effect::Response {
                id,
                result: Err(RequestError::Disconnected),
            });
        }
        self.result_acks.clear();
        for (id, inv) in &self.invokes {
            if inv.attempt == attempt {
                self.effects.push_back(Effect::CancelInvoke {
                    id: id.clone(),
                    reason: CancelReason::Disconnected,
                });
            }
        }
        self.counters.disconnects += 1;
        self.last_error = Some(reason.clone());

        let (retry_in, pause) = match next {
            Next::Now => (Some(Duration::ZERO), None),
            Next::Backoff { retry_after } if self.restart_window.is_some_and(|u| now < u) => {
                let r = millis(self.options.timeouts.restart_retry);
                let drawn = Duration::from_millis(self.rng.between(r, r.saturating_mul(2)));
                let raised = retry_after.map(|d| d.min(self.backoff.config().max_retry_after));
                (Some(drawn.max(raised.unwrap_or(Duration::ZERO))), None)
            }
            Next::Backoff { retry_after } => (
                Some(self.backoff.next_delay(&mut self.rng, retry_after)),
                None,
            ),
            Next::Slow => {
                let c = *self.backoff.config();
                let (lo, hi) = Backoff::bounds(&c, c.slow_after.saturating_add(1));
                let d = Duration::from_millis(self.rng.between(millis(lo), millis(hi)));
                (Some(d), None)
            }
            Next::After(d) => (Some(d), None),
            Next::Pause(reason, cause) => (None, Some((*reason, cause))),
            Next::Stop => (None, None),
        };
        self.effects
            .push_back(Effect::Notify(Notification::Disconnected {
                attempt,
                was_connected,
                reason,
                retry_in,
            }));
        match (retry_in, pause) {
            (_, Some((reason, cause))) => {
                self.restart_window = None;
                self.effects
                    .push_back(Effect::Notify(Notification::Paused(reason.clone())));
                self.conn = Conn::Paused {
                    reason: Box::new(reason),
                    cause,
                };
            }
            // Time has millisecond resolution: a shorter wait is no wait.
            (Some(d), None) if millis(d) == 0 => self.start_attempt(now),
            (Some(d), None) => self.conn = Conn::Waiting { until: now + d },
            (None, None) => self.conn = Conn::Stopped,
        }
    }

    // ---- frames ----------------------------------------------------------

    fn handle_frame(&mut self, now: Time, attempt: AttemptId, text: &str) {
        let parsed = match frame::parse_inbound(text) {
            Ok(f) => f,
            Err(e) => return self.reject(attempt, e.to_string()),
        };
        match &self.conn {
            Conn::AwaitChallenge { .. } => match parsed {
                Inbound::Event { event, payload, .. } if event == "connect.challenge" => {
                    match challenge_fields(payload.as_ref()) {
                        Some((nonce, ts)) => self.send_connect(now, attempt, &nonce, ts),
                        None => self.end_attempt(
                            now,
                            DisconnectReason::ProtocolViolation(
                                "connect.challenge without a string nonce and an integer ts".into(),
                            ),
                            Some((1002, "invalid connect challenge")),
                            Next::Backoff { retry_after: None },
                        ),
                    }
                }
                other => self.reject(
                    attempt,
                    format!(
                        "unexpected frame before connect.challenge: {}",
                        describe(&other)
                    ),
                ),
            },
            Conn::AwaitHello { request_id, .. } => match parsed {
                Inbound::Response {
                    id,
                    ok,
                    payload,
                    error,
                } if id == *request_id => {
                    if ok {
                        self.admit(now, attempt, payload.as_ref());
                    } else {
                        let err = frame::gateway_error(error.as_ref());
                        self.connect_refused(now, err);
                    }
                }
                other => self.reject(
                    attempt,
                    format!("unexpected frame before hello-ok: {}", describe(&other)),
                ),
            },
            Conn::Admitted(_) => self.admitted_frame(now, attempt, parsed),
            _ => {}
        }
    }

    fn reject(&mut self, attempt: AttemptId, reason: String) {
        self.effects
            .push_back(Effect::Notify(Notification::FrameRejected {
                attempt,
                reason,
            }));
    }

    fn send(&mut self, attempt: AttemptId, text: String) {
        self.counters.frames_out += 1;
        self.effects.push_back(Effect::SendFrame { attempt, text });
    }

    fn send_connect(&mut self, now: Time, attempt: AttemptId, nonce: &str, ts: i64) {
        let Some(config) = &self.config else { return };
        let client = &config.client;
        let creds = &config.credentials;
        let stored = self.stored_token.as_ref().or(creds.device_token.as_ref());
        let mut auth = Map::new();
        let mut put = |k: &str, v: Option<&Secret>| {
            if let Some(s) = v {
                auth.insert(k.into(), s.expose().into());
            }
        };
        if self.retry_with_device_token {
            put("deviceToken", stored);
        } else {
            put("token", creds.token.as_ref());
            put("password", creds.password.as_ref());
            if creds.token.is_none() && creds.password.is_none() {
                put("deviceToken", stored);
                if stored.is_none() {
                    put("bootstrapToken", creds.bootstrap_token.as_ref());
                }
            }
        }
        let signed_token = ["token", "deviceToken", "bootstrapToken"]
            .iter()
            .find_map(|k| auth.get(*k).and_then(Value::as_str))
            .unwrap_or("");
        let signature = self.identity.sign(
            &SignatureFields {
                device_id: self.identity.device_id(),
                client_id: CLIENT_ID,
                client_mode: NODE_ROLE,
                role: NODE_ROLE,
                scopes: &[],
                signed_at: ts,
                token: signed_token,
                nonce,
                platform: &client.platform,
                device_family: client.device_family.as_deref().unwrap_or(""),
            }
            .v3_payload(),
        );
        let mut client_obj = Map::new();
        client_obj.insert("id".into(), CLIENT_ID.into());
        if let Some(n) = &client.display_name {
            client_obj.insert("displayName".into(), n.as_str().into());
        }
        client_obj.insert("version".into(), client.version.as_str().into());
        client_obj.insert("platform".into(), client.platform.as_str().into());
        client_obj.insert("mode".into(), NODE_ROLE.into());
        if let Some(f) = &client.device_family {
            client_obj.insert("deviceFamily".into(), f.as_str().into());
        }
        if let Some(i) = &client.instance_id {
            client_obj.insert("instanceId".into(), i.as_str().into());
        }
        let mut params = json!({
            "minProtocol": MIN_PROTOCOL,
            "maxProtocol": MAX_PROTOCOL,
            "client": client_obj,
            "role": NODE_ROLE,
            "scopes": [],
            "caps": client.caps,
            "commands": client.commands,
            "device": {
                "id": self.identity.device_id(),
                "publicKey": self.identity.public_key(),
                "signature": signature,
                "signedAt": ts,
                "nonce": nonce,
            },
        });
        if !client.permissions.is_empty() {
            params["permissions"] = json!(client.permissions);
        }
        if !auth.is_empty() {
            params["auth"] = Value::Object(auth);
        }
        let request_id = format!("connect-{}", attempt.0);
        let text = frame::request(&request_id, "connect", &params);
        self.send(attempt, text);
        self.conn = Conn::AwaitHello {
            attempt,
            deadline: self.after(now, self.options.timeouts.hello),
            request_id,
        };
    }

    fn admit(&mut self, now: Time, attempt: AttemptId, payload: Option<&Value>) {
        let Some(hello) =
            payload.filter(|p| p.get("type").and_then(Value::as_str) == Some("hello-ok"))
        else {
            return self.end_attempt(
                now,
                DisconnectReason::ProtocolViolation("connect succeeded without hello-ok".into()),
                Some((1002, "expected hello-ok")),
                Next::Backoff { retry_after: None },
            );
        };
        let num = |path: &[&str]| {
            path.iter()
                .try_fold(hello, |v, k| v.get(*k))
                .and_then(Value::as_u64)
        };
        let text = |path: &[&str]| {
            path.iter()
                .try_fold(hello, |v, k| v.get(*k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let protocol = num(&["protocol"]).unwrap_or(u64::from(MAX_PROTOCOL));
        let Some(protocol) = u32::try_from(protocol)
            .ok()
            .filter(|p| (MIN_PROTOCOL..=MAX_PROTOCOL).contains(p))
        else {
            let why = format!(
                "the gateway admitted us with protocol {protocol}, outside {MIN_PROTOCOL}..={MAX_PROTOCOL}"
            );
            let hint = format!("{why}: upgrade clawnode or the gateway");
            return self.end_attempt(
                now,
                DisconnectReason::ProtocolViolation(why),
                Some((1002, "unsupported protocol")),
                Next::Pause(
                    Box::new(PauseReason {
                        kind: PauseKind::Protocol,
                        error: None,
                        expected: Vec::new(),
                        observed: None,
                        hint,
                    }),
                    PauseCause::Any,
                ),
            );
        };
        let tick_ms = num(&["policy", "tickIntervalMs"])
            .filter(|t| *t > 0)
            .unwrap_or(millis(self.options.timeouts.default_tick_interval));
        let max_payload = num(&["policy", "maxPayload"])
            .map(|m| usize::try_from(m).unwrap_or(usize::MAX))
            .unwrap_or(DEFAULT_MAX_PAYLOAD);
        let conn_id = text(&["server", "connId"]).unwrap_or_default();
        let server_version = text(&["server", "version"]);
        let issued = text(&["auth", "deviceToken"]).map(Secret::from);
        let role = text(&["auth", "role"]).unwrap_or_else(|| NODE_ROLE.into());

        self.restart_window = None;
        self.backoff.reset();
        self.token_retry_used = false;
        self.retry_with_device_token = false;
        self.counters.admissions += 1;
        self.conn = Conn::Admitted(Box::new(Admitted {
            attempt,
            running: 0,
            conn_id: conn_id.clone(),
            max_payload,
            tick_timeout: Duration::from_millis(tick_ms.saturating_mul(2)),
            last_tick: now,
            next_ping: now + self.options.timeouts.ping_interval.max(MIN_STEP),
            last_seq: None,
            restart_expected: None,
        }));
        if let Some(token) = issued
            && self.stored_token.as_ref() != Some(&token)
        {
            self.stored_token = Some(token.clone());
            if let Some(config) = &self.config {
                self.effects.push_back(Effect::StoreDeviceToken {
                    url: config.url().clone(),
                    role,
                    token,
                });
            }
        }
        self.effects
            .push_back(Effect::Notify(Notification::Connected {
                attempt,
                conn_id,
                protocol,
                tick_interval_ms: tick_ms,
                server_version,
            }));
    }

    fn connect_refused(&mut self, now: Time, err: GatewayError) {
        let next = self.classify(&err);
        self.end_attempt(
            now,
            DisconnectReason::Rejected(err),
            Some((1000, "connect refused")),
            next,
        );
    }

    /// Terminal or transient? PROTOCOL §4.
    fn classify(&mut self, err: &GatewayError) -> Next {
        let detail = err.detail_code.as_deref().unwrap_or("");
        let step = err.recommended_next_step.as_deref();
        let retry_after = err.retry_after_ms.map(Duration::from_millis);
        let details_flag = |k: &str| {
            err.details
                .as_ref()
                .and_then(|d| d.get(k))
                .and_then(Value::as_bool)
        };
        let pause = |kind, cause, hint: String| {
            Next::Pause(
                Box::new(PauseReason {
                    kind,
                    error: Some(err.clone()),
                    expected: Vec::new(),
                    observed: None,
                    hint,
                }),
                cause,
            )
        };
        if detail == "AUTH_TOKEN_MISMATCH" {
            let have_device_token = self.stored_token.is_some()
                || self
                    .config
                    .as_ref()
                    .is_some_and(|c| c.credentials.device_token.is_some());
            let trusted = self
                .config
                .as_ref()
                .is_some_and(SessionConfig::is_trusted_endpoint);
            if !self.token_retry_used
                && !self.retry_with_device_token
                && have_device_token
                && trusted
                && details_flag("canRetryWithDeviceToken") != Some(false)
            {
                self.token_retry_used = true;
                self.retry_with_device_token = true;
                return Next::After(self.options.timeouts.device_token_retry);
            }
        }
        if detail == "AUTH_RATE_LIMITED" {
            return Next::Backoff { retry_after };
        }
        if detail == "PAIRING_REQUIRED" || err.code == "NOT_PAIRED" && detail.is_empty() {
            if step == Some("wait_then_retry") {
                return Next::Slow;
            }
            let request = err
                .details
                .as_ref()
                .and_then(|d| d.get("requestId"))
                .and_then(Value::as_str)
                .unwrap_or("<requestId>");
            return pause(
                PauseKind::Pairing,
                PauseCause::Any,
                format!("approve this device on the gateway: openclaw devices approve {request}"),
            );
        }
        if detail.starts_with("AUTH_") {
            let hint = match detail {
                "AUTH_TOKEN_MISSING" => "the gateway requires a token: configure the gateway token",
                "AUTH_TOKEN_MISMATCH" => {
                    "the gateway rejected the token: configure the gateway's current token"
                }
                d if d.starts_with("AUTH_PASSWORD") => {
                    "the gateway rejected the password: configure the gateway's current password"
                }
                "AUTH_BOOTSTRAP_TOKEN_INVALID" => {
                    "the bootstrap token was rejected: ask the gateway operator for a new one"
                }
                _ => "the gateway refused these credentials: review the auth configuration",
            };
            return pause(PauseKind::Auth, PauseCause::Credentials, hint.into());
        }
        if detail == "DEVICE_IDENTITY_REQUIRED" || detail.starts_with("DEVICE_AUTH_") {
            return pause(
                PauseKind::Identity,
                PauseCause::Any,
                "the gateway refused this device's identity proof: check the device key and the system clock"
                    .into(),
            );
        }
        if detail == "PROTOCOL_MISMATCH" || err.code == "INVALID_REQUEST" {
            return pause(
                PauseKind::Protocol,
                PauseCause::Any,
                format!(
                    "the gateway refused the connect request ({}): upgrade clawnode or the gateway",
                    err.message
                ),
            );
        }
        if details_flag("pauseReconnect") == Some(true) || err.code == "FORBIDDEN" {
            return pause(
                PauseKind::Auth,
                PauseCause::Credentials,
                format!(
                    "the gateway refused this node ({}): review the auth configuration",
                    err.message
                ),
            );
        }
        Next::Backoff { retry_after }
    }

    fn admitted_frame(&mut self, now: Time, attempt: AttemptId, frame: Inbound) {
        match frame {
            Inbound::Event {
                event,
                payload,
                seq,
            } => {
                if let Some(seq) = seq {
                    self.track_seq(seq);
                }
                match event.as_str() {
                    "tick" => {
                        if let Conn::Admitted(a) = &mut self.conn {
                            a.last_tick = now;
                        }
                    }
                    "node.invoke.request" => self.invoke_request(now, attempt, payload),
                    "node.invoke.cancel" => {
                        let id = payload.as_ref().and_then(|p| {
                            p.get("invokeId")
                                .or_else(|| p.get("id"))
                                .and_then(Value::as_str)
                        });
                        let ours = id.is_some_and(|id| {
                            self.invokes.get(id).is_some_and(|i| i.attempt == attempt)
                        });
                        match id {
                            Some(id) if ours => {
                                self.forget_invoke(id);
                                self.effects.push_back(Effect::CancelInvoke {
                                    id: id.to_owned(),
                                    reason: CancelReason::Gateway,
                                });
                            }
                            Some(_) => {}
                            None => {
                                self.reject(attempt, "node.invoke.cancel without invokeId".into())
                            }
                        }
                    }
                    "shutdown" => {
                        let wait = payload
                            .as_ref()
                            .and_then(|p| p.get("restartExpectedMs"))
                            .and_then(Value::as_u64)
                            .map(Duration::from_millis)
                            .unwrap_or(Duration::ZERO);
                        if let Conn::Admitted(a) = &mut self.conn {
                            a.restart_expected = Some(wait);
                        }
                        self.effects
                            .push_back(Effect::Notify(Notification::GatewayEvent {
                                event,
                                payload,
                                seq,
                            }));
                    }
                    _ => self
                        .effects
                        .push_back(Effect::Notify(Notification::GatewayEvent {
                            event,
                            payload,
                            seq,
                        })),
                }
            }
            Inbound::Response {
                id,
                ok,
                payload,
                error,
            } => {
                if let Some(invoke) = self.result_acks.remove(&id) {
                    if !ok {
                        self.counters.invokes_dropped += 1;
                        self.effects
                            .push_back(Effect::Notify(Notification::InvokeDropped {
                                id: invoke,
                                reason: DropReason::Rejected(frame::gateway_error(error.as_ref())),
                            }));
                    }
                } else if let Some(rid) = parse_request_frame_id(&id)
                    && self.requests.remove(&rid).is_some()
                {
                    let result = if ok {
                        Ok(payload.unwrap_or(Value::Null))
                    } else {
                        Err(RequestError::Gateway(frame::gateway_error(error.as_ref())))
                    };
                    self.effects.push_back(Effect::Response { id: rid, result });
                } else {
                    self.reject(attempt, format!("response to unknown request id {id:?}"));
                }
            }
            Inbound::Request { method, .. } => self.reject(
                attempt,
                format!("unexpected request {method:?} from the gateway"),
            ),
        }
    }

    fn track_seq(&mut self, seq: u64) {
        let Conn::Admitted(a) = &mut self.conn else {
            return;
        };
        if let Some(last) = a.last_seq {
            if seq <= last {
                return;
            }
            if seq > last + 1 {
                self.effects.push_back(Effect::Notify(Notification::SeqGap {
                    expected: last + 1,
                    got: seq,
                }));
            }
        }
        a.last_seq = Some(seq);
    }

    // ---- invokes ----------------------------------------------------------

    fn invoke_request(&mut self, now: Time, attempt: AttemptId, payload: Option<Value>) {
        let field = |k: &str| {
            payload
                .as_ref()
                .and_then(|p| p.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let (Some(id), Some(command)) = (field("id"), field("command")) else {
            self.counters.invokes_refused += 1;
            return self.reject(
                attempt,
                "node.invoke.request without a string id and command".into(),
            );
        };
        let refuse = |this: &mut Self, reason: InvokeRefusal, code: &str, message: String| {
            this.counters.invokes_refused += 1;
            if reason != InvokeRefusal::Duplicate {
                let params = this.result_params(&id, false, None, Some((code, &message)));
                this.send_result(attempt, &id, params);
            }
            this.effects
                .push_back(Effect::Notify(Notification::InvokeRefused {
                    id: id.clone(),
                    command: command.clone(),
                    reason,
                }));
        };
        match self.invokes.get(&id) {
            Some(i) if i.attempt == attempt => {
                return refuse(self, InvokeRefusal::Duplicate, "", String::new());
            }
            Some(_) => {
                // The id is still held by an invoke of a dead connection whose
                // answer may yet come; it must never be sent as this one's.
                let msg = format!("invoke {id:?} from an earlier connection is still finishing");
                return refuse(self, InvokeRefusal::Busy, "UNAVAILABLE", msg);
            }
            None => {}
        }
        let declared = self
            .config
            .as_ref()
            .is_some_and(|c| c.client.commands.contains(&command));
        if !declared {
            let msg = format!("command {command:?} is not declared by this node");
            return refuse(self, InvokeRefusal::Undeclared, "INVALID_REQUEST", msg);
        }
        let running = match &self.conn {
            Conn::Admitted(a) => a.running,
            _ => 0,
        };
        if running >= self.options.max_concurrent_invokes {
            let msg = format!("node busy: {running} invokes already running");
            return refuse(self, InvokeRefusal::Busy, "UNAVAILABLE", msg);
        }
        let params_json = match payload.as_ref().and_then(|p| p.get("paramsJSON")) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let timeout = payload
            .as_ref()
            .and_then(|p| p.get("timeoutMs"))
            .and_then(Value::as_u64)
            .map(Duration::from_millis)
            .unwrap_or(self.options.timeouts.default_invoke)
            .min(self.options.timeouts.max_invoke);
        let deadline = self.after(now, timeout);
        self.invokes
            .insert(id.clone(), RunningInvoke { attempt, deadline });
        if let Conn::Admitted(a) = &mut self.conn {
            a.running += 1;
        }
        self.counters.invokes += 1;
        self.effects.push_back(Effect::Invoke(InvokeRequest {
            attempt,
            id,
            command,
            params_json,
            deadline,
            idempotency_key: field("idempotencyKey"),
        }));
    }

    fn invoke_result(&mut self, _now: Time, id: String, outcome: InvokeOutcome) {
        let Some(inv) = self.forget_invoke(&id) else {
            return self.dropped(id, DropReason::NotRunning);
        };
        let current = match &self.conn {
            Conn::Admitted(a) if a.attempt == inv.attempt => Some(a.max_payload),
            _ => None,
        };
        let Some(max_payload) = current else {
            return self.dropped(id, DropReason::StaleAttempt);
        };
        let params = match &outcome {
            InvokeOutcome::Ok { payload_json } => {
                self.result_params(&id, true, payload_json.as_deref(), None)
            }
            InvokeOutcome::Err { code, message } => {
                self.result_params(&id, false, None, Some((code, message)))
            }
        };
        let ack = format!("ir{}", self.next_request);
        let text = frame::request(&ack, "node.invoke.result", &params);
        if text.len() > max_payload {
            let msg = format!(
                "result of {} bytes exceeds the gateway's maxPayload of {max_payload}",
                text.len()
            );
            let params = self.result_params(&id, false, None, Some(("PAYLOAD_TOO_LARGE", &msg)));
            if self.send_result(inv.attempt, &id, params) {
                self.dropped(id, DropReason::TooLarge);
            }
            return;
        }
        self.next_request += 1;
        self.result_acks.insert(ack, id);
        self.counters.invoke_results += 1;
        self.send(inv.attempt, text);
    }

    /// Removes a running invoke, keeping the live connection's count.
    fn forget_invoke(&mut self, id: &str) -> Option<RunningInvoke> {
        let inv = self.invokes.remove(id)?;
        if let Conn::Admitted(a) = &mut self.conn
            && a.attempt == inv.attempt
        {
            a.running = a.running.saturating_sub(1);
        }
        Some(inv)
    }

    fn dropped(&mut self, id: String, reason: DropReason) {
        self.counters.invokes_dropped += 1;
        self.effects
            .push_back(Effect::Notify(Notification::InvokeDropped { id, reason }));
    }

    fn result_params(
        &self,
        id: &str,
        ok: bool,
        payload_json: Option<&str>,
        error: Option<(&str, &str)>,
    ) -> Value {
        let mut p = Map::new();
        p.insert("id".into(), id.into());
        p.insert("nodeId".into(), self.identity.device_id().into());
        p.insert("ok".into(), ok.into());
        if let Some(j) = payload_json {
            p.insert("payloadJSON".into(), j.into());
        }
        if let Some((code, message)) = error {
            p.insert("error".into(), json!({"code": code, "message": message}));
        }
        Value::Object(p)
    }

    /// Sends an answer the core makes itself (refusal, timeout, too
    /// large). Even these must fit `policy.maxPayload`; one that does not is
    /// reported dropped instead. Returns whether it was sent.
    fn send_result(&mut self, attempt: AttemptId, invoke_id: &str, params: Value) -> bool {
        let max_payload = match &self.conn {
            Conn::Admitted(a) if a.attempt == attempt => a.max_payload,
            _ => {
                self.dropped(invoke_id.to_owned(), DropReason::StaleAttempt);
                return false;
            }
        };
        let ack = format!("ir{}", self.next_request);
        let text = frame::request(&ack, "node.invoke.result", &params);
        if text.len() > max_payload {
            self.dropped(invoke_id.to_owned(), DropReason::TooLarge);
            return false;
        }
        self.next_request += 1;
        self.result_acks.insert(ack, invoke_id.to_owned());
        self.send(attempt, text);
        true
    }

    fn expire_invokes(&mut self, now: Time) {
        let expired: Vec<(String, AttemptId)> = self
            .invokes
            .iter()
            .filter(|(_, i)| i.deadline <= now)
            .map(|(id, i)| (id.clone(), i.attempt))
            .collect();
        for (id, attempt) in expired {
            self.forget_invoke(&id);
            let live = matches!(&self.conn, Conn::Admitted(a) if a.attempt == attempt);
            if live {
                self.counters.invokes_refused += 1;
                let params = self.result_params(
                    &id,
                    false,
                    None,
                    Some((
                        "TIMEOUT",
                        "the node did not answer before the invoke deadline",
                    )),
                );
                self.send_result(attempt, &id, params);
                self.effects.push_back(Effect::CancelInvoke {
                    id,
                    reason: CancelReason::Deadline,
                });
            }
        }
    }

    fn expire_requests(&mut self, now: Time) {
        let expired: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.requests.remove(&id);
            self.effects.push_back(Effect::Response {
                id,
                result: Err(RequestError::Timeout),
            });
        }
    }

    fn after(&self, now: Time, d: Duration) -> Time {
        now + d.max(MIN_STEP)
    }
}

/// No deadline is ever `now`: a zero timeout would make
/// `handle_timeout(now)` leave a deadline at `now` behind.
const MIN_STEP: Duration = Duration::from_millis(1);

/// The maximum frame size assumed when hello-ok gives none (PROTOCOL §2).
const DEFAULT_MAX_PAYLOAD: usize = 25 * 1024 * 1024;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn request_frame_id(id: RequestId) -> String {
    format!("r{}", id.0)
}

/// The request id whose frame id is exactly `id` (so `r+1` and `r01` are
/// not `r1`).
fn parse_request_frame_id(id: &str) -> Option<RequestId> {
    let rid = RequestId(id.strip_prefix('r')?.parse().ok()?);
    (request_frame_id(rid) == id).then_some(rid)
}

fn challenge_fields(payload: Option<&Value>) -> Option<(String, i64)> {
    let p = payload?;
    let nonce = p.get("nonce")?.as_str()?.to_owned();
    let ts = p.get("ts")?.as_i64()?;
    (!nonce.is_empty()).then_some((nonce, ts))
}

fn describe(frame: &Inbound) -> String {
    match frame {
        Inbound::Event { event, .. } => format!("event {event:?}"),
        Inbound::Response { id, .. } => format!("response to {id:?}"),
        Inbound::Request { method, .. } => format!("request {method:?}"),
    }
}

// Keep `ToString` in scope for `no_std` builds, where the prelude lacks it.
#[allow(unused_imports)]
use ToString as _;
