//! [`Invariants`]: a checker that watches every input, effect and
//! notification of a [`NodeState`] and reports the first broken rule.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use serde_json::Value;

use crate::backoff::Backoff;
use crate::config::SessionConfig;
use crate::time::Time;
use crate::{
    AttemptId, DisconnectReason, Effect, GatewayError, Input, Notification, RequestId, SendRefused,
};
use crate::{NodeOptions, NodeState, PauseKind, Phase, SocketError, Status};

/// Effects drained in one step beyond which draining is taken not to
/// terminate.
pub const MAX_DRAIN: usize = 1_000_000;

/// The largest frame the gateway accepts before the handshake (docs/protocol.md §2).
pub const PRE_HANDSHAKE_MAX_FRAME: usize = 64 * 1024;

/// A broken invariant: which rule, and what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// A short name of the rule (stable, for matching in tests).
    pub rule: &'static str,
    /// What was seen.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invariant {:?} violated: {}", self.rule, self.detail)
    }
}

impl core::error::Error for Violation {}

fn violation(rule: &'static str, detail: String) -> Result<(), Violation> {
    Err(Violation { rule, detail })
}

/// What the checker knows about one attempt.
#[derive(Clone, Debug, Default)]
struct Track {
    /// `SocketOpened` was fed while the attempt was current.
    opened: bool,
    /// `SocketClosed`/`SocketFailed` was fed while it was current.
    dead: bool,
    /// The core emitted `CloseSocket` for it.
    close_sent: bool,
    /// The core emitted `Disconnected` for it.
    ended: bool,
    /// The request id of its `connect` frame, once sent.
    connect_id: Option<String>,
    /// A hello-ok answering its connect was fed.
    hello_ok: bool,
    /// `policy.maxPayload` of that hello-ok.
    max_payload: Option<usize>,
    /// `Connected` notifications emitted for it.
    connected: u32,
    /// When it was admitted or last sent a `tick` event, whichever is later.
    last_tick: Option<Time>,
    /// `node.invoke.request` ids fed on it, with how often.
    invokes_in: BTreeMap<String, u32>,
    /// `node.invoke.result` frames sent on it, per invoke id.
    results_out: BTreeMap<String, u32>,
    /// Invokes handed to the application on this attempt and not answered
    /// on it yet.
    live_invokes: BTreeSet<String>,
    /// Per invoke, the `seq` of the next progress chunk sent.
    progress_next: BTreeMap<String, u64>,
    /// Per invoke, the last input `seq` handed on.
    input_last: BTreeMap<String, u64>,
}

/// What kind of input the current step is, for rules that depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StepKind {
    Config { changed: bool },
    StoredToken,
    Other,
    Timeout,
    Send,
}

/// Watches a [`NodeState`] from the outside and checks the session's
/// invariants after every step:
///
/// - at most one attempt is open at a time, and attempt ids increase;
/// - no frame or ping is sent on an attempt whose socket has not opened, or
///   that has ended;
/// - `connect` is the first frame of every attempt, sent once;
/// - nothing but `connect` is sent before `Connected` (hello-ok);
/// - `Connected` comes at most once per attempt, only after a hello-ok
///   answering that attempt's connect;
/// - an attempt the core ends without the driver having reported its socket
///   gone gets a `CloseSocket` (no leaked sockets), and a socket the driver
///   reports gone ends the attempt in the same step;
/// - input naming a stale attempt, and a config equal to the current one,
///   change nothing: no effect, same status, same next deadline;
/// - draining terminates ([`MAX_DRAIN`]);
/// - `handle_timeout(now)` before any deadline changes nothing, and after
///   it and a full drain the next deadline is absent or later than `now`;
/// - `Disconnected.retry_in` lies within [`Backoff::bounds`] for the
///   consecutive-failure count (raised by the gateway's `retryAfterMs`,
///   clamped), is zero for a config change, at most `max_restart_wait` for a
///   gateway restart, and absent only for a stop or a pause;
/// - a paused or stopped session opens no socket until its config changes
///   in the input that caused the pause (or, paused on credentials, a
///   stored device token arrives);
/// - an invoke result goes out only on the attempt its request came in on,
///   carries this device's id, and each request is answered at most once;
/// - `Invoke` effects carry only declared commands, and no id reaches the
///   application twice while the core remembers it;
/// - no wedge: outside `Idle`, `Paused` and `Stopped` a deadline is always
///   set;
/// - while connected a deadline is always set, no later than twice the
///   longest tick interval honoured (the watchdog cannot be switched off);
/// - frames respect 64 KiB before the handshake and `policy.maxPayload`
///   after it;
/// - the status agrees with what was emitted (no "connected" on an ended
///   attempt).
///
/// Use the wrappers [`input`](Self::input), [`timeout`](Self::timeout),
/// [`send_request`](Self::send_request) and [`send_event`](Self::send_event),
/// which drive the node, drain it and check everything; or, from a harness
/// of your own, call [`observe_input`](Self::observe_input) before feeding an
/// input, [`observe_effect`](Self::observe_effect) on every drained effect,
/// and [`check_after_step`](Self::check_after_step) after each step.
#[derive(Clone, Debug)]
pub struct Invariants {
    options: NodeOptions,
    device_id: Option<String>,
    attempts: BTreeMap<u64, Track>,
    last: Option<u64>,
    config: Option<SessionConfig>,
    failures: u32,
    /// Consecutive busy refusals since the last admission.
    busy: u32,
    /// Until when failures are a restarting gateway not being back yet.
    restart_window: Option<Time>,
    /// Quick retries left in the restart window.
    restart_retries_left: u32,
    /// When the last announced restart was reconnected at once.
    last_quick_restart: Option<Time>,
    /// When the live attempt was admitted.
    admitted_at: Option<Time>,
    paused: bool,
    /// What paused the session, and the config then.
    pause: Option<(PauseKind, Option<SessionConfig>)>,
    stopped: bool,
    /// A `Disconnected` with no retry and not for a stop: `Paused` is due next.
    expect_pause: bool,
    step: StepKind,
    steps: u64,
    effects_seen: u64,
    /// The latest time seen in an input or effect.
    now: Time,
    /// Invoke ids handed to the application, with when.
    handed: BTreeMap<String, Time>,
    /// Device tokens forgotten since the last config change or admission.
    forgets: u32,
}

impl Invariants {
    /// A checker for a node built with `options`.
    pub fn new(options: &NodeOptions) -> Self {
        Invariants {
            options: options.clone(),
            device_id: None,
            attempts: BTreeMap::new(),
            last: None,
            config: None,
            failures: 0,
            busy: 0,
            restart_window: None,
            restart_retries_left: 0,
            last_quick_restart: None,
            admitted_at: None,
            paused: false,
            pause: None,
            stopped: false,
            expect_pause: false,
            step: StepKind::Other,
            steps: 0,
            effects_seen: 0,
            now: Time::ZERO,
            handed: BTreeMap::new(),
            forgets: 0,
        }
    }

    /// Steps checked so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Effects observed so far.
    pub fn effects_seen(&self) -> u64 {
        self.effects_seen
    }

    /// The consecutive failures the checker has counted since the last reset
    /// (it mirrors the core's backoff).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The latest attempt the node opened, and whether it is still live
    /// (not ended).
    pub fn current_attempt(&self) -> Option<(AttemptId, bool)> {
        self.last.map(|a| (AttemptId(a), !self.attempts[&a].ended))
    }

    fn live(&self) -> Option<u64> {
        self.last.filter(|a| !self.attempts[a].ended)
    }

    // ---- wrappers ---------------------------------------------------------

    /// Feeds `input` to `node` at `now`, drains it, checks every rule, and
    /// returns the effects.
    pub fn input(
        &mut self,
        node: &mut NodeState,
        now: Time,
        input: Input,
    ) -> Result<Vec<Effect>, Violation> {
        self.learn_device(node);
        let before = (node.status(), node.poll_timeout());
        let inert = match &input {
            Input::SocketOpened { attempt }
            | Input::Frame { attempt, .. }
            | Input::SocketClosed { attempt, .. }
            | Input::SocketFailed { attempt, .. } => {
                (before.0.attempt != Some(*attempt)).then_some("stale-input-changes-nothing")
            }
            Input::Config(c) => {
                (node.config() == Some(c)).then_some("equal-config-changes-nothing")
            }
            _ => None,
        };
        let desc = if inert.is_some() {
            format!("{input:?}")
        } else {
            String::new()
        };
        self.observe_input(now, &input);
        node.handle_input(now, input);
        let effects = self.drain(node, now)?;
        if let Some(rule) = inert {
            let after = (node.status(), node.poll_timeout());
            if !effects.is_empty() || after != before {
                return violation(
                    rule,
                    format!(
                        "{desc} produced {effects:?}; status/deadline before {before:?}, after {after:?}"
                    ),
                )
                .map(|_| effects);
            }
        }
        self.check_after_step(node)?;
        Ok(effects)
    }

    /// Calls `handle_timeout(now)` on `node`, drains it, and checks every
    /// rule, including that the next deadline is absent or after `now`.
    pub fn timeout(&mut self, node: &mut NodeState, now: Time) -> Result<Vec<Effect>, Violation> {
        self.learn_device(node);
        self.begin(StepKind::Timeout);
        let due = node.poll_timeout().is_some_and(|t| t <= now);
        node.handle_timeout(now);
        let effects = self.drain(node, now)?;
        // A driver may wake early (a spurious wake-up, another timer): a
        // call before any deadline must change nothing.
        if !due && !effects.is_empty() {
            return Err(Violation {
                rule: "timeout-only-when-due",
                detail: format!("handle_timeout({now:?}) before any deadline emitted {effects:?}"),
            });
        }
        // The watchdog fires whatever interval hello-ok announced: a
        // connection whose gateway sent no tick for twice the longest
        // interval honoured must be over once the timeout ran.
        let silent_for = self
            .live()
            .and_then(|a| self.attempts[&a].last_tick)
            .map(|t| now.saturating_since(t));
        if node.status().phase == Phase::Connected
            && let Some(quiet) = silent_for
            && quiet > 2 * self.options.timeouts.max_tick_interval
        {
            return Err(Violation {
                rule: "watchdog-armed",
                detail: format!(
                    "still connected {quiet:?} after the last tick (the watchdog must fire within {:?})",
                    2 * self.options.timeouts.max_tick_interval
                ),
            });
        }
        if let Some(next) = node.poll_timeout()
            && next <= now
        {
            return Err(Violation {
                rule: "deadline-after-timeout",
                detail: format!(
                    "after handle_timeout({now:?}) and a full drain the next deadline is {next:?}; status {:?}",
                    node.status()
                ),
            });
        }
        self.check_after_step(node)?;
        Ok(effects)
    }

    /// Calls [`NodeState::send_request`], drains, and checks.
    pub fn send_request(
        &mut self,
        node: &mut NodeState,
        now: Time,
        method: &str,
        params: Value,
        timeout: Option<Duration>,
    ) -> Result<(Result<RequestId, SendRefused>, Vec<Effect>), Violation> {
        self.learn_device(node);
        self.begin(StepKind::Send);
        let before = node.status();
        let r = node.send_request(now, method, params, timeout);
        let effects = self.drain(node, now)?;
        self.check_send(&before, node, &r, &effects)?;
        self.check_after_step(node)?;
        Ok((r, effects))
    }

    /// Calls [`NodeState::send_event`], drains, and checks.
    pub fn send_event(
        &mut self,
        node: &mut NodeState,
        now: Time,
        event: &str,
        payload: Option<Value>,
    ) -> Result<(Result<RequestId, SendRefused>, Vec<Effect>), Violation> {
        self.learn_device(node);
        self.begin(StepKind::Send);
        let before = node.status();
        let r = node.send_event(now, event, payload);
        let effects = self.drain(node, now)?;
        self.check_send(&before, node, &r, &effects)?;
        self.check_after_step(node)?;
        Ok((r, effects))
    }

    fn check_send(
        &self,
        before: &Status,
        node: &NodeState,
        r: &Result<RequestId, SendRefused>,
        effects: &[Effect],
    ) -> Result<(), Violation> {
        match r {
            Err(_) => {
                if !effects.is_empty() || node.status() != *before {
                    return violation(
                        "refused-send-changes-nothing",
                        format!("a refused send emitted {effects:?}"),
                    );
                }
                if before.phase == Phase::Connected
                    && matches!(r, Err(e) if e.reason == crate::SendRefusal::NotConnected)
                {
                    return violation(
                        "send-refused-while-connected",
                        "send refused as not connected while the phase is Connected".into(),
                    );
                }
            }
            Ok(_) => {
                if before.phase != Phase::Connected {
                    return violation(
                        "send-before-hello-ok",
                        format!("a send was accepted in phase {:?}", before.phase),
                    );
                }
            }
        }
        Ok(())
    }

    fn drain(&mut self, node: &mut NodeState, now: Time) -> Result<Vec<Effect>, Violation> {
        let mut out = Vec::new();
        while let Some(e) = node.poll_effect() {
            if out.len() >= MAX_DRAIN {
                return Err(Violation {
                    rule: "draining-terminates",
                    detail: format!("more than {MAX_DRAIN} effects in one step"),
                });
            }
            self.observe_effect(now, &e)?;
            out.push(e);
        }
        Ok(out)
    }

    fn learn_device(&mut self, node: &NodeState) {
        if self.device_id.is_none() {
            self.device_id = Some(node.identity().device_id().into());
        }
    }

    fn begin(&mut self, kind: StepKind) {
        self.step = kind;
        self.steps += 1;
    }

    // ---- low-level observation -------------------------------------------

    /// Records an input about to be fed to the node (call it before
    /// `handle_input`). Needed to know which sockets opened, which died and
    /// which hello-oks arrived.
    pub fn observe_input(&mut self, now: Time, input: &Input) {
        self.now = self.now.max(now);
        let kind = match input {
            Input::Config(c) => {
                let changed = self.config.as_ref() != Some(c);
                if changed {
                    self.config = Some(c.clone());
                    self.forgets = 0;
                    // The core resets its backoff on any config change.
                    self.failures = 0;
                    self.busy = 0;
                    self.restart_window = None;
                    self.last_quick_restart = None;
                }
                StepKind::Config { changed }
            }
            Input::StoredDeviceToken(_) => StepKind::StoredToken,
            _ => StepKind::Other,
        };
        self.begin(kind);
        let live = self.live();
        match input {
            Input::SocketOpened { attempt } if Some(attempt.0) == live => {
                if let Some(t) = self.attempts.get_mut(&attempt.0) {
                    t.opened = true;
                }
            }
            Input::SocketClosed { attempt, .. } | Input::SocketFailed { attempt, .. }
                if Some(attempt.0) == live =>
            {
                if let Some(t) = self.attempts.get_mut(&attempt.0) {
                    t.dead = true;
                }
            }
            Input::Frame { attempt, text } if Some(attempt.0) == live => {
                let Some(t) = self.attempts.get_mut(&attempt.0) else {
                    return;
                };
                if !t.opened || t.dead {
                    return;
                }
                let Ok(v) = serde_json::from_str::<Value>(text) else {
                    return;
                };
                let s = |k: &str| v.get(k).and_then(Value::as_str);
                match s("type") {
                    Some("res")
                        if !t.hello_ok
                            && t.connect_id.is_some()
                            && s("id") == t.connect_id.as_deref()
                            && v.get("ok") == Some(&Value::Bool(true))
                            && v.get("payload")
                                .and_then(|p| p.get("type"))
                                .and_then(Value::as_str)
                                == Some("hello-ok") =>
                    {
                        t.hello_ok = true;
                        t.max_payload = v
                            .pointer("/payload/policy/maxPayload")
                            .and_then(Value::as_u64)
                            .map(|m| usize::try_from(m).unwrap_or(usize::MAX));
                    }
                    Some("event") if s("event") == Some("tick") && t.connected > 0 => {
                        t.last_tick = Some(now);
                    }
                    Some("event") if s("event") == Some("node.invoke.request") => {
                        if let Some(id) = v.pointer("/payload/id").and_then(Value::as_str) {
                            *t.invokes_in.entry(id.into()).or_default() += 1;
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// Checks one effect drained from the node at `now`.
    pub fn observe_effect(&mut self, now: Time, effect: &Effect) -> Result<(), Violation> {
        self.effects_seen += 1;
        self.now = self.now.max(now);
        if self.expect_pause && !matches!(effect, Effect::Notify(Notification::Paused(_))) {
            return violation(
                "disconnect-without-retry-pauses",
                format!(
                    "a Disconnected without retry_in (not a stop) was followed by {effect:?} instead of Paused"
                ),
            );
        }
        match effect {
            Effect::OpenSocket { attempt, .. } => self.on_open(*attempt),
            Effect::SendFrame { attempt, text } => self.on_frame(*attempt, text),
            Effect::SendPing { attempt } => {
                let t = self.live_track(*attempt, "ping")?;
                if t.connected == 0 {
                    return violation(
                        "nothing-before-hello-ok",
                        format!("ping on attempt {attempt} before Connected"),
                    );
                }
                Ok(())
            }
            Effect::CloseSocket { attempt, .. } => {
                let t = self.track_mut(*attempt, "close")?;
                if t.ended || t.close_sent {
                    return violation(
                        "close-once-per-live-attempt",
                        format!(
                            "CloseSocket for attempt {attempt} that is ended or already closed"
                        ),
                    );
                }
                t.close_sent = true;
                Ok(())
            }
            Effect::Invoke(req) => {
                self.live_track(req.attempt, "invoke")?;
                let declared = self
                    .config
                    .as_ref()
                    .is_some_and(|c| c.client.commands.contains(&req.command));
                if !declared {
                    return violation(
                        "undeclared-command-never-reaches-app",
                        format!("Invoke of undeclared command {:?}", req.command),
                    );
                }
                // The core remembers finished ids for `remember_invoke`, and
                // at least the last `remembered_invokes` of them: within
                // both, an id never reaches the application twice.
                let o = &self.options;
                let keep = o.timeouts.remember_invoke;
                self.handed.retain(|_, at| now < *at + keep);
                let remembered = self.handed.len() < o.limits.remembered_invokes;
                if let Some(first) = self.handed.get(&req.id)
                    && remembered
                    && now < *first + o.timeouts.remember_invoke
                {
                    return violation(
                        "invoke-runs-once",
                        format!("Invoke {:?} handed to the application again", req.id),
                    );
                }
                self.handed.insert(req.id.clone(), now);
                let Some(t) = self.attempts.get_mut(&req.attempt.0) else {
                    return violation(
                        "invoke-from-its-attempt",
                        format!("Invoke {:?} on unknown attempt {}", req.id, req.attempt),
                    );
                };
                if !t.invokes_in.contains_key(&req.id) {
                    return violation(
                        "invoke-from-its-attempt",
                        format!(
                            "Invoke {:?} on attempt {} that never received it",
                            req.id, req.attempt
                        ),
                    );
                }
                t.live_invokes.insert(req.id.clone());
                Ok(())
            }
            Effect::Notify(n) => self.on_notification(now, n),
            Effect::InvokeInput {
                id,
                seq,
                payload_json,
            } => {
                let t =
                    self.live_track(self.live().map_or(AttemptId(0), AttemptId), "InvokeInput")?;
                if !t.live_invokes.contains(id) {
                    return violation(
                        "input-only-for-a-running-invoke",
                        format!("InvokeInput for {id:?}, not running on the live attempt"),
                    );
                }
                if payload_json.len() > crate::MAX_PROGRESS_CHUNK {
                    return violation(
                        "input-bounded",
                        format!("InvokeInput of {} bytes", payload_json.len()),
                    );
                }
                if let Some(last) = t.input_last.insert(id.clone(), *seq)
                    && *seq <= last
                {
                    return violation(
                        "input-seq-increases",
                        format!("input seq {seq} for {id:?} after {last}"),
                    );
                }
                Ok(())
            }
            Effect::ForgetDeviceToken { .. } => {
                self.forgets += 1;
                if self.forgets > 1 {
                    return violation(
                        "forget-once-per-config-and-admission",
                        format!(
                            "ForgetDeviceToken #{} with no config change or admission between",
                            self.forgets
                        ),
                    );
                }
                Ok(())
            }
            Effect::CancelInvoke { .. }
            | Effect::StoreDeviceToken { .. }
            | Effect::Response { .. } => Ok(()),
        }
    }

    fn track_mut(&mut self, attempt: AttemptId, what: &str) -> Result<&mut Track, Violation> {
        match self.attempts.get_mut(&attempt.0) {
            Some(t) => Ok(t),
            None => Err(Violation {
                rule: "effects-name-known-attempts",
                detail: format!("{what} names attempt {attempt}, which was never opened"),
            }),
        }
    }

    /// The track of `attempt`, which must be the live one with an open socket.
    fn live_track(&mut self, attempt: AttemptId, what: &str) -> Result<&mut Track, Violation> {
        if self.live() != Some(attempt.0) {
            return Err(Violation {
                rule: "effects-only-on-the-live-attempt",
                detail: format!(
                    "{what} on attempt {attempt}; the live attempt is {:?}",
                    self.live()
                ),
            });
        }
        let t = self.track_mut(attempt, what)?;
        if !t.opened || t.dead || t.close_sent {
            let detail = format!(
                "{what} on attempt {attempt} whose socket is not open (opened {}, dead {}, closed {})",
                t.opened, t.dead, t.close_sent
            );
            return Err(Violation {
                rule: "no-frame-unless-socket-open",
                detail,
            });
        }
        Ok(t)
    }

    fn on_open(&mut self, attempt: AttemptId) -> Result<(), Violation> {
        if self.stopped {
            return violation(
                "stopped-makes-no-attempt",
                format!("OpenSocket {attempt} after Stop"),
            );
        }
        if self.paused {
            // Only a change of the input that caused the pause resumes it
            // (docs/protocol.md §8): trust inputs for a TLS failure, URL or
            // credentials (or a stored device token) for refused
            // credentials, anything else for the rest.
            let (kind, at_pause) = self.pause.clone().unwrap_or((PauseKind::Protocol, None));
            let now = self.config.as_ref();
            let allowed = match (self.step, kind) {
                (StepKind::StoredToken, PauseKind::Auth) => true,
                (StepKind::Config { changed: true }, PauseKind::PinMismatch | PauseKind::Tls) => {
                    match (&at_pause, now) {
                        (Some(a), Some(n)) => a.trust_differs(n),
                        _ => true,
                    }
                }
                (StepKind::Config { changed: true }, PauseKind::Auth) => match (&at_pause, now) {
                    (Some(a), Some(n)) => a.url() != n.url() || a.credentials != n.credentials,
                    _ => true,
                },
                (StepKind::Config { changed: true }, _) => true,
                _ => false,
            };
            if !allowed {
                return violation(
                    "paused-makes-no-attempt",
                    format!(
                        "OpenSocket {attempt} while paused ({kind:?}), on a {:?} step",
                        self.step
                    ),
                );
            }
            self.paused = false;
            self.pause = None;
        }
        if let Some(last) = self.last {
            if attempt.0 <= last {
                return violation(
                    "attempt-ids-increase",
                    format!("OpenSocket {attempt} after attempt #{last}"),
                );
            }
            if !self.attempts[&last].ended {
                return violation(
                    "at-most-one-open-attempt",
                    format!("OpenSocket {attempt} while attempt #{last} has not ended"),
                );
            }
        }
        self.last = Some(attempt.0);
        self.attempts.insert(attempt.0, Track::default());
        // Only the recent past matters; keep memory bounded in long runs.
        while self.attempts.len() > 64 {
            let first = *self.attempts.keys().next().expect("non-empty");
            self.attempts.remove(&first);
        }
        Ok(())
    }

    fn on_frame(&mut self, attempt: AttemptId, text: &str) -> Result<(), Violation> {
        let device_id = self.device_id.clone();
        let t = self.live_track(attempt, "SendFrame")?;
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return violation("frames-are-json", format!("{e}: {text}"));
            }
        };
        let method = v.get("method").and_then(Value::as_str).unwrap_or("");
        let id = v.get("id").and_then(Value::as_str).unwrap_or("");
        if v.get("type").and_then(Value::as_str) != Some("req") || id.is_empty() {
            return violation(
                "frames-are-requests",
                format!("node sent a frame that is not a request: {text}"),
            );
        }
        if t.connect_id.is_none() {
            if method != "connect" {
                return violation(
                    "connect-is-the-first-frame",
                    format!("first frame of attempt {attempt} is {method:?}"),
                );
            }
            if text.len() > PRE_HANDSHAKE_MAX_FRAME {
                return violation(
                    "frame-size",
                    format!("connect frame of {} bytes", text.len()),
                );
            }
            t.connect_id = Some(id.into());
            return Ok(());
        }
        if method == "connect" {
            return violation(
                "one-connect-per-attempt",
                format!("second connect on attempt {attempt}"),
            );
        }
        if t.connected == 0 {
            return violation(
                "nothing-before-hello-ok",
                format!("{method:?} sent on attempt {attempt} before Connected"),
            );
        }
        if let Some(max) = t.max_payload
            && text.len() > max
        {
            return violation(
                "frame-size",
                format!(
                    "{method:?} frame of {} bytes exceeds maxPayload {max}",
                    text.len()
                ),
            );
        }
        if method == "node.invoke.progress" {
            let p = v.get("params");
            let s = |k: &str| p.and_then(|p| p.get(k)).and_then(Value::as_str);
            let inv = s("invokeId").unwrap_or("");
            if s("nodeId").is_none() || s("nodeId") != device_id.as_deref() {
                return violation(
                    "progress-names-this-node",
                    format!("node.invoke.progress with nodeId {:?}", s("nodeId")),
                );
            }
            if !t.live_invokes.contains(inv) {
                return violation(
                    "progress-only-while-running-on-its-attempt",
                    format!("progress for {inv:?} on attempt {attempt}, not running there"),
                );
            }
            let chunk = s("chunk").unwrap_or("");
            if chunk.len() > crate::MAX_PROGRESS_CHUNK {
                return violation(
                    "progress-chunk-bounded",
                    format!("progress chunk of {} bytes", chunk.len()),
                );
            }
            let seq = p.and_then(|p| p.get("seq")).and_then(Value::as_u64);
            let next = t.progress_next.entry(inv.into()).or_default();
            if seq != Some(*next) {
                return violation(
                    "progress-seq-in-order",
                    format!("progress seq {seq:?} for {inv:?}, expected {next}"),
                );
            }
            *next += 1;
            return Ok(());
        }
        if method == "node.invoke.result" {
            let p = v.get("params");
            let inv = p
                .and_then(|p| p.get("id"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let node_id = p.and_then(|p| p.get("nodeId")).and_then(Value::as_str);
            if node_id.is_none() || node_id != device_id.as_deref() {
                return violation(
                    "invoke-result-names-this-node",
                    format!("node.invoke.result with nodeId {node_id:?}"),
                );
            }
            t.live_invokes.remove(inv);
            let received = t.invokes_in.get(inv).copied().unwrap_or(0);
            let answered = t.results_out.entry(inv.into()).or_default();
            *answered += 1;
            if *answered > received {
                return violation(
                    "invoke-result-on-its-attempt-once",
                    format!(
                        "result #{answered} for invoke {inv:?} on attempt {attempt}, which received it {received} times"
                    ),
                );
            }
        }
        Ok(())
    }

    fn on_notification(&mut self, now: Time, n: &Notification) -> Result<(), Violation> {
        match n {
            Notification::Connected { attempt, .. } => {
                self.forgets = 0;
                let t = self.live_track(*attempt, "Connected")?;
                if !t.hello_ok {
                    return violation(
                        "connected-only-after-hello-ok",
                        format!("Connected for attempt {attempt} without a hello-ok"),
                    );
                }
                t.connected += 1;
                t.last_tick = Some(now);
                if t.connected > 1 {
                    return violation(
                        "connected-once-per-admission",
                        format!("Connected #{} for attempt {attempt}", t.connected),
                    );
                }
                // Flap damping: the failures are forgotten only once the
                // admission has stayed up for `stable_after`.
                self.admitted_at = Some(now);
                self.restart_window = None;
                self.busy = 0;
                Ok(())
            }
            Notification::Disconnected {
                attempt,
                reason,
                retry_in,
                was_connected,
            } => {
                let live = self.live();
                let t = self.track_mut(*attempt, "Disconnected")?;
                if live != Some(attempt.0) {
                    return violation(
                        "disconnect-once-per-live-attempt",
                        format!("Disconnected for attempt {attempt}; live is {live:?}"),
                    );
                }
                if !t.dead && !t.close_sent {
                    return violation(
                        "no-leaked-sockets",
                        format!(
                            "attempt {attempt} ended ({reason:?}) without CloseSocket while its socket may be open"
                        ),
                    );
                }
                if *was_connected != (t.connected > 0) {
                    return violation(
                        "status-agrees",
                        format!(
                            "Disconnected.was_connected {was_connected} but Connected was emitted {} times",
                            t.connected
                        ),
                    );
                }
                t.ended = true;
                let stable_after = self.options.timeouts.stable_after;
                if let Some(at) = self.admitted_at.take()
                    && *was_connected
                    && at + stable_after <= now
                {
                    self.failures = 0;
                }
                self.check_retry(now, reason, *retry_in)
            }
            Notification::Paused(reason) => {
                if !self.expect_pause {
                    return violation(
                        "pause-follows-a-disconnect",
                        "Paused without a Disconnected without retry".into(),
                    );
                }
                self.expect_pause = false;
                self.paused = true;
                self.pause = Some((reason.kind, self.config.clone()));
                self.failures = 0;
                self.busy = 0;
                self.restart_window = None;
                self.last_quick_restart = None;
                Ok(())
            }
            Notification::InvokeRefused { .. }
            | Notification::InvokeDropped { .. }
            | Notification::ProgressDropped { .. }
            | Notification::SeqGap { .. }
            | Notification::GatewayEvent { .. }
            | Notification::FrameRejected { .. } => Ok(()),
        }
    }

    fn check_retry(
        &mut self,
        now: Time,
        reason: &DisconnectReason,
        retry_in: Option<Duration>,
    ) -> Result<(), Violation> {
        let t = self.options.timeouts;
        let c = self.options.backoff;
        match (reason, retry_in) {
            (DisconnectReason::Stopped, None) => {
                self.stopped = true;
                Ok(())
            }
            (DisconnectReason::Stopped, Some(d)) => {
                violation("stop-stops", format!("Stopped with retry_in {d:?}"))
            }
            (DisconnectReason::ConfigChanged, Some(d)) if d.is_zero() => Ok(()),
            (DisconnectReason::ConfigChanged, other) => violation(
                "config-change-reconnects-at-once",
                format!("ConfigChanged with retry_in {other:?}"),
            ),
            // An announced restart is reconnected at once only once per
            // stable stretch; otherwise it is a counted failure (below).
            (DisconnectReason::GatewayRestart, Some(d))
                if self.failures == 0
                    && self
                        .last_quick_restart
                        .is_none_or(|at| at + t.stable_after <= now) =>
            {
                if d > t.max_restart_wait {
                    return violation(
                        "restart-wait-bounded",
                        format!(
                            "GatewayRestart with retry_in {d:?} (max {:?})",
                            t.max_restart_wait
                        ),
                    );
                }
                self.last_quick_restart = Some(now);
                self.restart_retries_left = self.options.limits.restart_retries;
                self.restart_window = Some(now + d + t.max_restart_wait);
                Ok(())
            }
            (DisconnectReason::GatewayRestart, None) => violation(
                "restart-wait-bounded",
                "GatewayRestart without a retry".into(),
            ),
            (_, None) => {
                self.expect_pause = true;
                Ok(())
            }
            // A busy gateway: its own streak, in the fast band, never a
            // failure (docs/protocol.md §5).
            (
                DisconnectReason::Failed(SocketError::Busy { .. }) | DisconnectReason::QueueTimeout,
                Some(d),
            ) => {
                let retry_after = match reason {
                    DisconnectReason::Failed(SocketError::Busy { retry_after }) => *retry_after,
                    _ => None,
                };
                self.busy = self.busy.saturating_add(1);
                let (lo, hi) = Backoff::busy_bounds(&c, self.busy);
                let raised = retry_after.map_or(Duration::ZERO, |r| r.min(c.max_retry_after));
                if d < lo.max(raised) || d > hi.max(raised) {
                    return violation(
                        "busy-backoff-within-bounds",
                        format!(
                            "retry_in {d:?} after {} busy refusals; bounds {lo:?}..={hi:?}, at least {raised:?}",
                            self.busy
                        ),
                    );
                }
                Ok(())
            }
            (reason, Some(d)) => {
                let err: Option<&GatewayError> = match reason {
                    DisconnectReason::Rejected(e) => Some(e),
                    _ => None,
                };
                if let Some(e) = err {
                    let detail = e.detail_code.as_deref();
                    if detail == Some("AUTH_TOKEN_MISMATCH") && d == t.device_token_retry {
                        return Ok(());
                    }
                    let pairing = detail == Some("PAIRING_REQUIRED")
                        || (e.code == "NOT_PAIRED" && detail.is_none_or(str::is_empty));
                    if pairing
                        && e.recommended_next_step.as_deref() == Some("wait_then_retry")
                        && d >= c.slow_min
                        && d <= c.slow_max.max(c.slow_min)
                    {
                        return Ok(());
                    }
                }
                let raised = err
                    .and_then(|e| e.retry_after_ms)
                    .map(|ms| Duration::from_millis(ms).min(c.max_retry_after));
                let (lo, hi) = if self.restart_window.is_some_and(|u| now < u)
                    && self.restart_retries_left > 0
                {
                    // A restarting gateway not back yet: short, flat,
                    // uncounted, and only so many times.
                    self.restart_retries_left -= 1;
                    (t.restart_retry, t.restart_retry.saturating_mul(2))
                } else {
                    self.failures = self.failures.saturating_add(1);
                    Backoff::bounds(&c, self.failures)
                };
                let hi = hi.max(raised.unwrap_or(Duration::ZERO));
                let lo = lo.max(raised.unwrap_or(Duration::ZERO));
                if d < lo || d > hi {
                    return violation(
                        "backoff-within-bounds",
                        format!(
                            "retry_in {d:?} after {} consecutive failures ({reason:?}); bounds {lo:?}..={hi:?}",
                            self.failures
                        ),
                    );
                }
                Ok(())
            }
        }
    }

    /// Checks what can only be judged once a step is fully drained: a socket
    /// the driver reported gone ended its attempt; a pause was announced; the
    /// status agrees with the emitted effects.
    pub fn check_after_step(&mut self, node: &NodeState) -> Result<(), Violation> {
        if self.expect_pause {
            return violation(
                "disconnect-without-retry-pauses",
                "a Disconnected without retry_in was not followed by Paused".into(),
            );
        }
        let status = node.status();
        let live = self.live();
        if let Some(a) = live {
            let t = &self.attempts[&a];
            if t.dead {
                return violation(
                    "dead-socket-ends-attempt",
                    format!("the driver reported attempt #{a} gone but it did not end"),
                );
            }
        }
        if status.attempt.map(|a| a.0) != live {
            return violation(
                "status-agrees",
                format!(
                    "status.attempt {:?} but the live attempt (by effects) is {live:?}",
                    status.attempt
                ),
            );
        }
        let connected = live.is_some_and(|a| self.attempts[&a].connected > 0);
        if (status.phase == Phase::Connected) != connected {
            return violation(
                "status-agrees",
                format!(
                    "phase {:?} but Connected emitted for the live attempt: {connected}",
                    status.phase
                ),
            );
        }
        if status.phase == Phase::Stopped {
            self.stopped = true;
            self.paused = false;
        }
        if (status.phase == Phase::Paused) != self.paused {
            return violation(
                "status-agrees",
                format!(
                    "phase {:?} but Paused announced: {}",
                    status.phase, self.paused
                ),
            );
        }
        // No wedge: a session that is neither idle, paused nor stopped always
        // has a deadline (a retry, a handshake timeout, the watchdog), so a
        // driver waiting on it can never wait forever.
        if !matches!(status.phase, Phase::Idle | Phase::Paused | Phase::Stopped)
            && node.poll_timeout().is_none()
        {
            return violation(
                "no-wedge",
                format!("phase {:?} with no deadline", status.phase),
            );
        }
        // The watchdog is always armed while connected, and no hello-ok can
        // push it past twice the longest tick interval honoured.
        if status.phase == Phase::Connected {
            let bound = self.now + 2 * self.options.timeouts.max_tick_interval;
            match node.poll_timeout() {
                Some(t) if t <= bound => {}
                other => {
                    return violation(
                        "watchdog-armed",
                        format!("connected with next deadline {other:?} (bound {bound:?})"),
                    );
                }
            }
        }
        if self.stopped && status.phase != Phase::Stopped {
            return violation(
                "stop-stops",
                format!("phase {:?} after a stop", status.phase),
            );
        }
        Ok(())
    }

    /// The invoke ids received on `attempt` (for harnesses that answer
    /// invokes).
    pub fn invokes_received(&self, attempt: AttemptId) -> BTreeSet<String> {
        self.attempts
            .get(&attempt.0)
            .map(|t| t.invokes_in.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The request id of the `connect` frame sent on `attempt`, once sent.
    pub fn connect_id(&self, attempt: AttemptId) -> Option<String> {
        self.attempts
            .get(&attempt.0)
            .and_then(|t| t.connect_id.clone())
    }
}

// Keep `ToString` in scope for `no_std` builds, where the prelude lacks it.
#[allow(unused_imports)]
use ToString as _;
