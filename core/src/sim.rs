//! A deterministic simulation harness (feature `sim`): a scripted fake
//! gateway ([`FakeGateway`]) joined to a [`NodeState`] by in-memory queues,
//! under virtual time that jumps straight to the next deadline, with every
//! step checked by [`Invariants`].
//!
//! It is `no_std` + `alloc` like the rest of the crate, reads no clock and
//! draws no randomness, so a simulation is a pure function of its inputs:
//! other crates (the fuzzer, the driver's tests) can reuse it.
//!
//! **Not a stable API.** The feature exists for this project's own tests,
//! fuzzers and benches; it may change in any release, semver
//! notwithstanding, and is hidden from the documentation. The internals
//! the tests reach (the backoff and its generator, the frame parser, the
//! signature payload) are re-exported here rather than at the crate root.
//!
//! ```
//! use clawnode_core::sim::{self, GatewayConfig, Sim};
//! use core::time::Duration;
//!
//! let mut sim = Sim::new(GatewayConfig::default());
//! sim.apply(sim::loopback_config());
//! assert!(sim.run_until_connected(Duration::from_secs(5)));
//! sim.run_for(Duration::from_secs(120));
//! assert_eq!(sim.connected_count(), 1);
//! ```

mod gateway;
mod invariants;

pub use gateway::{
    AfterAdmit, AttemptPlan, ConnectSeen, ErrorSpec, FakeGateway, GatewayConfig, GatewayLog,
    WALL_CLOCK_BASE_MS, wall,
};
pub use invariants::{Invariants, MAX_DRAIN, PRE_HANDSHAKE_MAX_FRAME, Violation};

pub use crate::backoff::{Backoff, Rng};
pub use crate::frame::{
    Field, INVOKE_REQUEST_KEYS, Inbound, Key, ParseError, Payload, parse_inbound,
};
pub use crate::identity::SignatureFields;

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::time::Duration;

use ed25519_dalek::SigningKey;
use serde_json::Value;

use crate::config::{ClientOptions, Credentials, Secret, SessionConfig, TlsPolicy};
use crate::pin::Pin;
use crate::time::Time;
use crate::{
    AttemptId, CancelReason, Effect, Input, InvokeOutcome, InvokeRequest, Notification, RequestId,
    SendRefused,
};
use crate::{NodeOptions, NodeState};

/// Commands declared by [`loopback_config`] and [`pinned_config`].
pub const SIM_COMMANDS: [&str; 3] = ["system.which", "echo", "slow"];

/// A fixed device key derived from `n` (tests need no randomness).
pub fn test_key(n: u8) -> SigningKey {
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = n.wrapping_mul(31).wrapping_add(i as u8).wrapping_add(1);
    }
    SigningKey::from_bytes(&bytes)
}

/// Client options declaring [`SIM_COMMANDS`].
pub fn sim_client() -> ClientOptions {
    ClientOptions {
        display_name: Some("sim node".into()),
        commands: SIM_COMMANDS.iter().map(|c| String::from(*c)).collect(),
        caps: BTreeSet::from([String::from("system")]),
        ..ClientOptions::default()
    }
}

/// `ws://127.0.0.1:18789` (loopback, so trusted), shared token `tok`,
/// declaring [`SIM_COMMANDS`].
pub fn loopback_config() -> SessionConfig {
    sim_config("ws://127.0.0.1:18789", TlsPolicy::SystemTrust)
}

/// `wss://127.0.0.1:18789` pinned to `pins`, otherwise like
/// [`loopback_config`].
pub fn pinned_config(pins: &[Pin]) -> SessionConfig {
    let tls = TlsPolicy::Pinned(crate::pin::PinSet::new(pins.iter().copied()).expect("a pin"));
    sim_config("wss://127.0.0.1:18789", tls)
}

/// `url` under `tls`, session `sim`, shared token `tok`, declaring
/// [`SIM_COMMANDS`].
fn sim_config(url: &str, tls: TlsPolicy) -> SessionConfig {
    SessionConfig::parse(url, tls)
        .expect("valid")
        .with_session_id("sim")
        .with_credentials(Credentials {
            token: Some(Secret::new("tok")),
            ..Credentials::default()
        })
        .with_client(sim_client())
}

/// What the application side of the simulation saw and holds.
#[derive(Clone, Debug, Default)]
pub struct App {
    /// Invokes handed to the application.
    pub invokes: Vec<InvokeRequest>,
    /// Cancels received.
    pub cancels: Vec<(String, CancelReason)>,
    /// Responses to the application's requests.
    pub responses: Vec<(RequestId, Result<Value, crate::RequestError>)>,
    /// Device tokens the driver was asked to store.
    pub stored_tokens: Vec<Secret>,
    /// Streamed inputs handed to the application: invoke id, seq, payload.
    pub inputs: Vec<(String, u64, String)>,
    /// How many times the driver was asked to forget the stored token.
    pub forgotten_tokens: usize,
    /// When set, every invoke is answered with this outcome after this delay.
    pub auto_answer: Option<(Duration, InvokeOutcome)>,
    scheduled: Vec<(Time, String, InvokeOutcome)>,
}

/// A node, a fake gateway and an application, joined by queues, under
/// virtual time. Every step goes through [`Invariants`]; a violation (or a
/// protocol violation the gateway saw) panics with the recent effect log.
#[derive(Debug)]
pub struct Sim {
    /// The node under test.
    pub node: NodeState,
    /// The gateway.
    pub gateway: FakeGateway,
    /// The invariant checker.
    pub inv: Invariants,
    /// The application side.
    pub app: App,
    /// Virtual now.
    pub now: Time,
    /// Every effect, with when it was drained.
    pub log: Vec<(Time, Effect)>,
    /// Whether protocol violations seen by the gateway panic (default on).
    pub strict_gateway: bool,
}

const STEP_LIMIT: u64 = 10_000_000;

impl Sim {
    /// A simulation with key [`test_key`]`(1)`, seed 1 and default options.
    pub fn new(gateway: GatewayConfig) -> Self {
        Sim::with(test_key(1), NodeOptions::with_seed(1), gateway)
    }

    /// A simulation with the given key, node options and gateway.
    pub fn with(key: SigningKey, options: NodeOptions, gateway: GatewayConfig) -> Self {
        Sim {
            inv: Invariants::new(&options),
            node: NodeState::new(key, options),
            gateway: FakeGateway::new(gateway),
            app: App::default(),
            now: Time::ZERO,
            log: Vec::new(),
            strict_gateway: true,
        }
    }

    fn fail(&self, v: &dyn core::fmt::Display) -> ! {
        let mut tail = String::new();
        let start = self.log.len().saturating_sub(40);
        for (t, e) in &self.log[start..] {
            let _ = writeln!(tail, "  {t:?} {e:?}");
        }
        panic!(
            "{v}\nat {:?}, status {:?}\nlast effects:\n{tail}",
            self.now,
            self.node.status()
        );
    }

    fn check_gateway(&self) {
        if self.strict_gateway && !self.gateway.log.violations.is_empty() {
            let v = format!("gateway saw violations: {:?}", self.gateway.log.violations);
            self.fail(&v);
        }
    }

    /// Feeds an input to the node at `now` (checked) and routes its effects.
    pub fn input(&mut self, input: Input) -> Vec<Effect> {
        match self.inv.input(&mut self.node, self.now, input) {
            Ok(effects) => {
                self.dispatch(&effects);
                effects
            }
            Err(v) => self.fail(&v),
        }
    }

    /// Applies a config.
    pub fn apply(&mut self, config: SessionConfig) -> Vec<Effect> {
        self.input(Input::Config(config))
    }

    /// The application answers an invoke.
    pub fn answer(&mut self, id: &str, outcome: InvokeOutcome) -> Vec<Effect> {
        self.input(Input::InvokeResult {
            id: id.into(),
            outcome,
        })
    }

    /// The application streams `chunk` for invoke `id`.
    pub fn progress(&mut self, id: &str, chunk: &str) -> Vec<Effect> {
        self.input(Input::InvokeProgress {
            id: id.into(),
            chunk: chunk.into(),
        })
    }

    /// The application sends a request.
    pub fn send_request(
        &mut self,
        method: &str,
        params: Value,
        timeout: Option<Duration>,
    ) -> Result<RequestId, SendRefused> {
        match self
            .inv
            .send_request(&mut self.node, self.now, method, params, timeout)
        {
            Ok((r, effects)) => {
                self.dispatch(&effects);
                r
            }
            Err(v) => self.fail(&v),
        }
    }

    /// The application sends a node event.
    pub fn send_event(
        &mut self,
        event: &str,
        payload: Option<Value>,
    ) -> Result<RequestId, SendRefused> {
        match self
            .inv
            .send_event(&mut self.node, self.now, event, payload)
        {
            Ok((r, effects)) => {
                self.dispatch(&effects);
                r
            }
            Err(v) => self.fail(&v),
        }
    }

    fn dispatch(&mut self, effects: &[Effect]) {
        let now = self.now;
        for e in effects {
            self.log.push((now, e.clone()));
            match e {
                Effect::OpenSocket { attempt, url, tls } => {
                    self.gateway.on_open(now, *attempt, url, tls)
                }
                Effect::SendFrame { attempt, text } => self.gateway.on_frame(now, *attempt, text),
                Effect::SendPing { attempt } => self.gateway.on_ping(now, *attempt),
                Effect::CloseSocket { attempt, code, .. } => {
                    self.gateway.on_close(now, *attempt, *code)
                }
                Effect::Invoke(req) => {
                    self.app.invokes.push(req.clone());
                    if let Some((delay, outcome)) = &self.app.auto_answer {
                        self.app
                            .scheduled
                            .push((now + *delay, req.id.clone(), outcome.clone()));
                    }
                }
                Effect::CancelInvoke { id, reason } => self.app.cancels.push((id.clone(), *reason)),
                Effect::StoreDeviceToken { token, .. } => {
                    self.app.stored_tokens.push(token.clone())
                }
                Effect::ForgetDeviceToken { .. } => self.app.forgotten_tokens += 1,
                Effect::InvokeInput {
                    id,
                    seq,
                    payload_json,
                } => self
                    .app
                    .inputs
                    .push((id.clone(), *seq, payload_json.clone())),
                Effect::Response { id, result } => self.app.responses.push((*id, result.clone())),
                Effect::Notify(_) => {}
            }
        }
        self.check_gateway();
    }

    /// Delivers everything due at `now` until nothing is left.
    fn pump(&mut self) {
        for _ in 0..STEP_LIMIT {
            self.gateway.advance(self.now);
            if let Some(input) = self.gateway.poll_input(self.now) {
                self.input(input);
                continue;
            }
            let due = self
                .app
                .scheduled
                .iter()
                .enumerate()
                .filter(|(_, (t, _, _))| *t <= self.now)
                .min_by_key(|(_, (t, _, _))| *t)
                .map(|(i, _)| i);
            if let Some(i) = due {
                let (_, id, outcome) = self.app.scheduled.remove(i);
                self.answer(&id, outcome);
                continue;
            }
            return;
        }
        self.fail(&"the simulation does not settle at one instant");
    }

    /// The next instant anything is due: the node's deadline, the gateway's
    /// own schedule, an application answer.
    pub fn next_due(&self) -> Option<Time> {
        let app = self.app.scheduled.iter().map(|(t, _, _)| *t).min();
        [self.node.poll_timeout(), self.gateway.next_due(), app]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs until `until`, jumping from deadline to deadline.
    pub fn run_until(&mut self, until: Time) {
        self.run_while(until, |_| true);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs until `done` holds (checked after every step) or `limit` of
    /// virtual time passes; returns whether `done` held.
    pub fn run_until_cond(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let until = self.now + limit;
        let mut hit = false;
        self.run_while(until, |s| {
            hit = done(s);
            !hit
        });
        hit || done(self)
    }

    /// Runs until the node is connected, for at most `limit`.
    pub fn run_until_connected(&mut self, limit: Duration) -> bool {
        self.run_until_cond(limit, |s| s.node.phase() == crate::Phase::Connected)
    }

    fn run_while(&mut self, until: Time, mut go_on: impl FnMut(&Sim) -> bool) {
        for _ in 0..STEP_LIMIT {
            self.pump();
            if !go_on(self) {
                return;
            }
            match self.next_due() {
                Some(t) if t <= until => {
                    if t > self.now {
                        self.now = t;
                    }
                    if self.node.poll_timeout().is_some_and(|d| d <= self.now) {
                        match self.inv.timeout(&mut self.node, self.now) {
                            Ok(effects) => self.dispatch(&effects),
                            Err(v) => self.fail(&v),
                        }
                    }
                }
                _ => {
                    if until > self.now {
                        self.now = until;
                    }
                    self.pump();
                    return;
                }
            }
        }
        self.fail(&"the simulation made no progress");
    }

    // ---- gateway actions on the admitted connection -------------------------

    fn admitted(&self) -> AttemptId {
        match self.gateway.admitted() {
            Some(a) => a,
            None => self.fail(&"the gateway has no admitted connection"),
        }
    }

    /// The gateway sends `node.invoke.request` on its admitted connection.
    pub fn gw_invoke(
        &mut self,
        id: &str,
        command: &str,
        params_json: Option<&str>,
        timeout_ms: Option<u64>,
    ) {
        let a = self.admitted();
        self.gateway
            .invoke(self.now, a, id, command, params_json, timeout_ms);
    }

    /// The gateway streams input to invoke `id`.
    pub fn gw_input(&mut self, id: &str, seq: u64, payload_json: &str) {
        let a = self.admitted();
        self.gateway.input(self.now, a, id, seq, payload_json);
    }

    /// The gateway sends `node.invoke.cancel`.
    pub fn gw_cancel(&mut self, id: &str) {
        let a = self.admitted();
        self.gateway.cancel(self.now, a, id);
    }

    /// The gateway announces a restart and closes with 1012.
    pub fn gw_shutdown(&mut self, restart_expected_ms: u64) {
        let a = self.admitted();
        self.gateway.shutdown(self.now, a, restart_expected_ms);
    }

    /// The gateway closes its admitted connection with `code`.
    pub fn gw_close(&mut self, code: u16) {
        let a = self.admitted();
        self.gateway.close(self.now, a, code, "closed by the sim");
    }

    /// The admitted connection goes half-open: nothing more arrives.
    pub fn gw_silent(&mut self) {
        let a = self.admitted();
        self.gateway.go_silent(a);
    }

    /// The gateway stops ticking on its admitted connection but still
    /// answers pings.
    pub fn gw_stop_ticks(&mut self) {
        let a = self.admitted();
        self.gateway.stop_ticks(a);
    }

    /// The gateway sends raw text on its admitted connection.
    pub fn gw_send_raw(&mut self, text: &str) {
        let a = self.admitted();
        self.gateway.send_raw(self.now, a, text);
    }

    /// The gateway sends an event (with the next seq when `with_seq`).
    pub fn gw_event(&mut self, event: &str, payload: Value, with_seq: bool) {
        let a = self.admitted();
        self.gateway.event(self.now, a, event, payload, with_seq);
    }

    // ---- queries ------------------------------------------------------------

    /// A mark in the effect log, for [`effects_since`](Self::effects_since).
    pub fn mark(&self) -> usize {
        self.log.len()
    }

    /// The effects since `mark`.
    pub fn effects_since(&self, mark: usize) -> impl Iterator<Item = &Effect> {
        self.log[mark.min(self.log.len())..].iter().map(|(_, e)| e)
    }

    /// Counts the effects since `mark` that satisfy `f`.
    pub fn count_since(&self, mark: usize, f: impl Fn(&Effect) -> bool) -> usize {
        self.effects_since(mark).filter(|e| f(e)).count()
    }

    /// `OpenSocket` effects so far.
    pub fn open_count(&self) -> usize {
        self.count_since(0, |e| matches!(e, Effect::OpenSocket { .. }))
    }

    /// `CloseSocket` effects so far.
    pub fn close_count(&self) -> usize {
        self.count_since(0, |e| matches!(e, Effect::CloseSocket { .. }))
    }

    /// `Connected` notifications so far.
    pub fn connected_count(&self) -> usize {
        self.count_since(0, |e| {
            matches!(e, Effect::Notify(Notification::Connected { .. }))
        })
    }

    /// The notifications so far.
    pub fn notifications(&self) -> impl Iterator<Item = &Notification> {
        self.log.iter().filter_map(|(_, e)| match e {
            Effect::Notify(n) => Some(n),
            _ => None,
        })
    }

    /// The `node.invoke.result` params the gateway received.
    pub fn results(&self) -> &[(AttemptId, Value)] {
        &self.gateway.log.invoke_results
    }

    /// Every effect's `Debug` text, one per line, with its time: equal
    /// traces mean byte-identical behaviour.
    pub fn trace(&self) -> String {
        let mut s = String::new();
        for (t, e) in &self.log {
            let _ = writeln!(s, "{t:?} {e:?}");
        }
        s
    }
}
