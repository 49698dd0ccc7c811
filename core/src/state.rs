//! [`NodeState`]: the session machine, orchestrating its parts.
//!
//! The phases live in [`conn`](crate::conn), the failure policy in
//! [`policy`](crate::policy), the wire format of the handshake in
//! [`handshake`](crate::handshake) and the invoke bookkeeping in
//! [`invokes`](crate::invokes). This file decides when one phase ends and
//! the next begins; [`attempts`] and [`frames`] hold the two halves of that.

mod attempts;
#[cfg(feature = "sim")]
mod fingerprint;
mod frames;
mod next;

use alloc::string::ToString;
use core::time::Duration;

use ed25519_dalek::SigningKey;
use serde_json::{Map, Value};

use crate::backoff::{Backoff, Rng};
use crate::config::{Secret, SessionConfig};
use crate::conn::Conn;
use crate::effect::{Effect, RequestId, SendRefused};
use crate::identity::DeviceIdentity;
use crate::input::{AttemptId, Input};
use crate::invokes::{self, Invokes, Scope};
use crate::notification::DisconnectReason;
use crate::options::NodeOptions;
use crate::outbox::Outbox;
use crate::policy::PauseCause;
use crate::status::{Phase, Status};
use crate::time::{Time, millis};
use crate::timer::Deadline;

use next::Next;

/// The one device-token retry after a shared-token mismatch, and the one
/// forgetting of a device token the gateway no longer accepts
/// (docs/protocol.md §3, §4). Reset by new inputs and by an admission.
#[derive(Clone, Copy, Debug, Default)]
struct TokenRetry {
    /// Taken for the current inputs.
    used: bool,
    /// The next connect authenticates with the device token only.
    active: bool,
    /// The stored device token was forgotten for the current inputs.
    forgot: bool,
}

/// The node session: a deterministic state machine with no I/O.
///
/// # The driver contract
///
/// **Inputs.** Feed it with [`handle_input`](Self::handle_input),
/// [`set_config`](Self::set_config), [`handle_timeout`](Self::handle_timeout),
/// [`send_request`](Self::send_request) and [`send_event`](Self::send_event),
/// each with the current [`Time`], read from the driver's own clock
/// (`clawnode::Clock` makes one from `Instant`). Tag every socket input
/// with the attempt id of the [`Effect::OpenSocket`] it belongs to; input
/// from an attempt that is no longer current is ignored, so a driver never
/// has to filter late events itself.
///
/// **Effects.** After each call, drain [`poll_effect`](Self::poll_effect)
/// until `None` and perform the effects in order. Feeding an input
/// mid-drain is allowed: its effects queue behind the ones not yet drained,
/// in order. What each effect asks:
/// - [`Effect::OpenSocket`]: connect in the background; answer with
///   [`Input::SocketOpened`] or [`Input::SocketFailed`], then frames,
///   pongs and finally [`Input::SocketClosed`] or `SocketFailed`. A driver
///   that paces handshakes across sessions feeds [`Input::SocketQueued`]
///   when the open must wait for a slot and [`Input::SocketDialing`] when
///   it starts; an HTTP 503 or 429 on upgrade is [`SocketError::Busy`](crate::SocketError::Busy).
/// - [`Effect::SendFrame`], [`Effect::SendPing`]: write on that attempt's
///   socket. If it is gone, drop the write: the core hears of the socket's
///   end through its close or failure input.
/// - [`Effect::CloseSocket`]: send a close frame with the code, then keep
///   reading until the peer's close reply or a short grace period, so the
///   closing handshake completes (a socket dropped without it is logged by
///   the gateway as an abnormal 1006). For a socket still opening, abandon
///   the open; nothing needs to be fed back for that attempt.
/// - [`Effect::Invoke`]: run the command off the loop and answer with
///   [`Input::InvokeResult`] by id. A late answer is harmless: the core drops
///   what it no longer waits for, and never sends one answer twice.
/// - [`Effect::CancelInvoke`]: stop the work; no answer is needed.
/// - [`Effect::StoreDeviceToken`]: persist it per gateway URL, device id and
///   role, and feed it back with [`Input::StoredDeviceToken`] right after the
///   [`Input::Config`] on the next start. Feeding `StoredDeviceToken(None)`
///   is optional: a session starts with no stored token.
/// - [`Effect::ForgetDeviceToken`]: delete the stored token for that gateway
///   URL, device id and role (the gateway rejected it as revoked or stale).
/// - [`Effect::Response`]: hand it to whoever sent the request.
/// - [`Effect::Notify`]: tell the application; nothing to perform.
///
/// **Time.** Call `handle_timeout` when [`poll_timeout`](Self::poll_timeout)
/// is reached ([`poll_deadline`](Self::poll_deadline) also says why), and
/// read the deadline again after every call. A call before the deadline
/// (a spurious wake-up) changes nothing. Time should not go backwards; if a
/// reading is earlier than one already seen, it counts as no time passing:
/// nothing fires early, no stored time moves back, nothing panics.
///
/// The same seed and the same inputs give the same effects, byte for byte.
#[derive(Clone, Debug)]
pub struct NodeState {
    identity: DeviceIdentity,
    options: NodeOptions,
    rng: Rng,
    backoff: Backoff,
    config: Option<SessionConfig>,
    stored_token: Option<Secret>,
    conn: Conn,
    next_attempt: u64,
    /// The latest attempt the driver queued for a handshake slot.
    queued_attempt: u64,
    out: Outbox,
    invokes: Invokes,
    token_retry: TokenRetry,
    last_error: Option<DisconnectReason>,
    /// Until when failures are a restarting gateway not being back yet:
    /// retried briefly, not counted (see
    /// [`Timeouts::restart_retry`](crate::Timeouts::restart_retry)).
    restart_window: Option<Time>,
    /// Quick retries left in the restart window.
    restart_retries_left: u32,
    /// When the last announced restart was reconnected at once: another
    /// within `stable_after` falls back to the backoff.
    last_quick_restart: Option<Time>,
    /// The latest time any call carried (see `monotonic`).
    latest: Time,
    /// Unusable frames on the current attempt since `rejected_since`.
    rejected: u32,
    rejected_since: Time,
}

impl NodeState {
    /// A session for the device whose key is `key`. Nothing happens until a
    /// config is applied with [`Input::Config`].
    pub fn new(key: SigningKey, options: NodeOptions) -> Self {
        let invokes = Invokes::new(
            options.timeouts.remember_invoke,
            options.limits.remembered_invokes,
        );
        NodeState {
            identity: DeviceIdentity::new(key),
            rng: Rng::new(options.seed),
            backoff: Backoff::new(options.backoff),
            options,
            config: None,
            stored_token: None,
            conn: Conn::Idle,
            next_attempt: 1,
            queued_attempt: 0,
            out: Outbox::default(),
            invokes,
            token_retry: TokenRetry::default(),
            last_error: None,
            restart_window: None,
            restart_retries_left: 0,
            last_quick_restart: None,
            latest: Time::ZERO,
            rejected: 0,
            rejected_since: Time::ZERO,
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

    // ---- poll ---------------------------------------------------------------

    /// The next effect to perform, or `None` when all are drained.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.out.pop()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called;
    /// derived from the state, so nothing ever needs cancelling.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.poll_deadline().map(|d| d.at)
    }

    /// [`poll_timeout`](Self::poll_timeout) with the reason the deadline is
    /// due, for traces.
    pub fn poll_deadline(&self) -> Option<Deadline> {
        Deadline::earliest(self.conn.deadline(), self.invokes.next_deadline())
    }

    /// The session's phase: what [`status`](Self::status) reports, without
    /// building the snapshot (no allocation).
    pub fn phase(&self) -> Phase {
        self.conn.phase()
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
            running_invokes: self.invokes.running(),
            pending_requests: self.invokes.pending_requests(),
            counters: self.out.counters,
        }
    }

    // ---- handle -------------------------------------------------------------

    /// Handles one input at `now`.
    pub fn handle_input(&mut self, now: Time, input: Input) {
        let now = self.monotonic(now);
        match input {
            Input::Config(config) => {
                if self.config.as_ref() != Some(&config) {
                    self.apply_changed_config(now, config);
                }
            }
            Input::StoredDeviceToken(token) => self.set_stored_token(now, token),
            Input::SocketQueued { attempt } => {
                // Once per attempt: a driver that alternates queued and
                // dialing cannot keep an attempt alive past its bounds.
                if let Conn::Opening { attempt: a, .. } = self.conn
                    && a == attempt
                    && self.queued_attempt < attempt.0
                {
                    self.queued_attempt = attempt.0;
                    self.conn = Conn::Queued {
                        attempt,
                        deadline: now.deadline_after(self.options.timeouts.queue),
                    };
                }
            }
            Input::SocketDialing { attempt } => {
                if let Conn::Queued { attempt: a, .. } = self.conn
                    && a == attempt
                {
                    self.conn = Conn::Opening {
                        attempt,
                        deadline: now.deadline_after(self.options.timeouts.open),
                    };
                }
            }
            Input::SocketOpened { attempt } => {
                if let Conn::Opening { attempt: a, .. } | Conn::Queued { attempt: a, .. } =
                    self.conn
                    && a == attempt
                {
                    self.conn = Conn::AwaitChallenge {
                        attempt,
                        deadline: now.deadline_after(self.options.timeouts.challenge),
                    };
                }
            }
            Input::Frame { attempt, text } => self.handle_frame(now, attempt, &text),
            Input::Pong { attempt } => {
                if let Conn::Admitted(a) = &mut self.conn
                    && a.attempt == attempt
                {
                    a.heard_from(now, &self.options.timeouts);
                }
            }
            Input::SocketClosed {
                attempt,
                code,
                reason,
            } => {
                if self.conn.attempt() == Some(attempt) {
                    self.socket_closed(now, code, reason);
                }
            }
            Input::SocketFailed { attempt, error } => {
                if self.conn.attempt() == Some(attempt) {
                    self.socket_failed(now, error);
                }
            }
            Input::InvokeResult { id, outcome } => {
                let (invokes, scope) = self.invokes();
                invokes.on_answer(scope, now, id, outcome);
            }
            Input::InvokeProgress { id, chunk } => {
                let (invokes, scope) = self.invokes();
                invokes.on_progress(scope, id, &chunk);
            }
            Input::Wake => {
                // A retry waits no longer; the first attempt's jitter does.
                if matches!(self.conn, Conn::Waiting { .. }) && !self.before_first_attempt() {
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
        let now = self.monotonic(now);
        // Invokes and requests first: their answers must go out on the
        // connection they belong to, before any teardown below.
        let (invokes, scope) = self.invokes();
        invokes.expire(scope, now);
        let timeout = |reason, close| Some((reason, Some(close), Next::BACKOFF));
        let ended = match &mut self.conn {
            Conn::Waiting { until } if *until <= now => {
                self.start_attempt(now);
                None
            }
            // The process's own crowd, not the gateway: backed off as busy.
            Conn::Queued { deadline, .. } if *deadline <= now => Some((
                DisconnectReason::QueueTimeout,
                Some((1000, "queue timeout")),
                Next::Busy { retry_after: None },
            )),
            Conn::Opening { deadline, .. } if *deadline <= now => {
                timeout(DisconnectReason::OpenTimeout, (1000, "open timeout"))
            }
            Conn::AwaitChallenge { deadline, .. } if *deadline <= now => timeout(
                DisconnectReason::ChallengeTimeout,
                (1000, "connect challenge timeout"),
            ),
            Conn::AwaitHello { deadline, .. } if *deadline <= now => timeout(
                DisconnectReason::HandshakeTimeout,
                (1000, "handshake timeout"),
            ),
            Conn::Admitted(a) if a.last_tick + a.tick_timeout <= now => {
                timeout(DisconnectReason::TickTimeout, (4000, "tick timeout"))
            }
            Conn::Admitted(a) if a.pong_due.is_some_and(|t| t <= now) => {
                timeout(DisconnectReason::PongTimeout, (4000, "pong timeout"))
            }
            Conn::Admitted(a) if a.next_ping <= now => {
                let t = &self.options.timeouts;
                a.next_ping = now.deadline_after(t.ping_interval);
                if a.pong_due.is_none() {
                    a.pong_due = t.pong.map(|d| now.deadline_after(d));
                }
                let attempt = a.attempt;
                self.out.push(Effect::SendPing { attempt });
                None
            }
            _ => None,
        };
        if let Some((reason, close, next)) = ended {
            self.end_attempt(now, reason, close, next);
        }
    }

    /// Applies `config` by reference: the same as
    /// [`Input::Config`], but an equal config is only compared, never
    /// cloned or dropped, so re-supplying it costs no allocation at all.
    pub fn set_config(&mut self, now: Time, config: &SessionConfig) {
        let now = self.monotonic(now);
        if self.config.as_ref() != Some(config) {
            self.apply_changed_config(now, config.clone());
        }
    }

    /// Handles a text frame of `attempt` borrowed from the driver's buffer:
    /// the same as [`Input::Frame`] without handing over an owned `String`.
    /// A tick costs no allocation this way.
    pub fn handle_frame(&mut self, now: Time, attempt: AttemptId, text: &str) {
        let now = self.monotonic(now);
        if self.conn.attempt() != Some(attempt)
            || matches!(self.conn, Conn::Queued { .. } | Conn::Opening { .. })
        {
            return;
        }
        self.out.counters.frames_in += 1;
        // Any frame shows the gateway alive, as a pong does: the next ping
        // waits for a quiet `ping_interval` (docs/protocol.md §5).
        if let Conn::Admitted(a) = &mut self.conn {
            a.heard_from(now, &self.options.timeouts);
        }
        let rejected = self.out.counters.frames_rejected;
        self.dispatch_frame(now, attempt, text);
        if self.out.counters.frames_rejected > rejected {
            self.frame_rejected(now);
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
        let now = self.monotonic(now);
        let deadline = self.request_deadline(now, timeout);
        let live = self.conn.link();
        self.invokes
            .send_request(&mut self.out, live, method, &params, deadline)
            .map_err(|reason| invokes::refused(reason, method, params))
    }

    /// Sends a node event (`node.event` with `event` and the payload as
    /// `payloadJSON`).
    pub fn send_event(
        &mut self,
        now: Time,
        event: &str,
        payload: Option<Value>,
    ) -> Result<RequestId, SendRefused> {
        let now = self.monotonic(now);
        let deadline = self.request_deadline(now, None);
        let live = self.conn.link();
        self.invokes
            .send_event(&mut self.out, live, event, payload.as_ref(), deadline)
            .map_err(|reason| {
                // Handed back as the params that would have been sent.
                let mut params = Map::new();
                params.insert("event".into(), event.into());
                if let Some(p) = payload {
                    params.insert("payloadJSON".into(), p.to_string().into());
                }
                invokes::refused(reason, "node.event", Value::Object(params))
            })
    }

    /// The time of this call: a clock reading earlier than one already
    /// seen counts as no time passing, so stored times never move back and
    /// no deadline fires early.
    fn monotonic(&mut self, now: Time) -> Time {
        self.latest = self.latest.max(now);
        self.latest
    }

    fn request_deadline(&self, now: Time, timeout: Option<Duration>) -> Time {
        now.deadline_after(timeout.unwrap_or(self.options.timeouts.default_request))
    }

    /// The invoke bookkeeping, and the scope its calls need.
    fn invokes(&mut self) -> (&mut Invokes, Scope<'_>) {
        let scope = Scope {
            live: self.conn.link(),
            device_id: self.identity.device_id(),
            out: &mut self.out,
        };
        (&mut self.invokes, scope)
    }

    // ---- inputs compared by value (docs/protocol.md §8) --------------------

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
        self.last_quick_restart = None;
        self.token_retry = TokenRetry::default();
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
            Conn::Idle => {
                self.backoff.reset();
                let jitter = millis(self.options.timeouts.first_attempt_jitter);
                match self.rng.between(0, jitter) {
                    0 => self.start_attempt(now),
                    ms => {
                        self.conn = Conn::Waiting {
                            until: now + Duration::from_millis(ms),
                        }
                    }
                }
            }
            // Still spreading the first attempt (`first_attempt_jitter`):
            // a new config goes out with it.
            Conn::Waiting { .. } if self.before_first_attempt() => {}
            Conn::Waiting { .. } => {
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

    /// No attempt has been made yet.
    fn before_first_attempt(&self) -> bool {
        self.next_attempt == 1
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
        self.last_quick_restart = None;
        self.backoff.reset();
        self.token_retry = TokenRetry::default();
        self.start_attempt(now);
    }
}
