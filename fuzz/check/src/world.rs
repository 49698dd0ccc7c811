//! What both session targets share: the pools configs are picked from, the
//! gateway behaviours, time steps, and the driver around
//! [`clawnode_core::sim::Sim`].

use core::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use clawnode_core::sim::{
    self, AttemptPlan, ErrorSpec, GatewayConfig, SIM_COMMANDS, Sim, sim_client,
};
use clawnode_core::{
    AttemptId, ClientOptions, Credentials, Effect, Input, NodeOptions, Notification, Phase, Pin,
    PinSet, Secret, SessionConfig, SocketError, Time, TlsPolicy,
};
use serde_json::json;

use crate::wire::{Writer, byte, text, word};

/// The certificate fingerprints in play: the fake gateway presents `PINS[0]`
/// until an operation rotates it.
pub(crate) const PINS: [Pin; 3] = [
    Pin::from_sha256([0xab; 32]),
    Pin::from_sha256([0xcd; 32]),
    Pin::from_sha256([0x01; 32]),
];

/// A config assembled from pools, field by field, so that two picks are
/// equal exactly when their indices are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConfigPick {
    /// URL and TLS policy (`TRUST` pool).
    pub trust: u8,
    /// Session id.
    pub session: u8,
    /// Credentials.
    pub creds: u8,
    /// Client options.
    pub client: u8,
}

const TRUST: u8 = 7;
const SESSIONS: u8 = 2;
const CREDS: u8 = 6;
const CLIENTS: u8 = 3;

impl ConfigPick {
    /// The loopback config of the sim (`sim::loopback_config`).
    pub(crate) const BASE: ConfigPick = ConfigPick {
        trust: 0,
        session: 0,
        creds: 0,
        client: 0,
    };

    pub(crate) fn with_trust(self, trust: u8) -> Self {
        ConfigPick { trust, ..self }
    }

    pub(crate) fn build(self) -> SessionConfig {
        let pinned =
            |pins: &[Pin]| TlsPolicy::Pinned(PinSet::new(pins.iter().copied()).expect("a pin"));
        let (url, tls) = match self.trust % TRUST {
            0 => ("ws://127.0.0.1:18789", TlsPolicy::SystemTrust),
            1 => ("wss://127.0.0.1:18789", pinned(&PINS[..1])),
            2 => ("wss://127.0.0.1:18789", pinned(&PINS[1..2])),
            3 => ("wss://127.0.0.1:18789", pinned(&PINS[..2])),
            4 => ("wss://gw.example:443", TlsPolicy::SystemTrust),
            5 => (
                "wss://127.0.0.1:18789",
                TlsPolicy::TrustOnFirstUse {
                    store_key: "127.0.0.1:18789".into(),
                },
            ),
            _ => ("ws://localhost:18789", TlsPolicy::SystemTrust),
        };
        let secret = |s: &str| Some(Secret::new(s));
        let credentials = match self.creds % CREDS {
            0 => Credentials {
                token: secret("tok"),
                ..Credentials::default()
            },
            1 => Credentials {
                token: secret("wrong"),
                ..Credentials::default()
            },
            2 => Credentials {
                password: secret("pw"),
                ..Credentials::default()
            },
            3 => Credentials {
                device_token: secret("devtok-1"),
                ..Credentials::default()
            },
            4 => Credentials {
                bootstrap_token: secret("boot"),
                ..Credentials::default()
            },
            _ => Credentials::default(),
        };
        let client = match self.client % CLIENTS {
            0 => sim_client(),
            1 => ClientOptions {
                commands: SIM_COMMANDS[..2].iter().map(|c| String::from(*c)).collect(),
                ..sim_client()
            },
            _ => ClientOptions {
                display_name: Some("renamed".into()),
                ..sim_client()
            },
        };
        SessionConfig::parse(url, tls)
            .expect("pool configs are valid")
            .with_session_id(if self.session.is_multiple_of(SESSIONS) {
                "sim"
            } else {
                "s2"
            })
            .with_credentials(credentials)
            .with_client(client)
    }
}

impl<'a> Arbitrary<'a> for ConfigPick {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(ConfigPick {
            trust: byte(u)? % TRUST,
            session: byte(u)? % SESSIONS,
            creds: byte(u)? % CREDS,
            client: byte(u)? % CLIENTS,
        })
    }
}

impl ConfigPick {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.byte(self.trust)
            .byte(self.session)
            .byte(self.creds)
            .byte(self.client);
    }
}

/// Connect error codes (`error.code`, `details.code`, next step) to draw from:
/// every terminal and transient family of docs/protocol.md §4, and nonsense.
const ERRORS: [(&str, Option<&str>, Option<&str>); 16] = [
    (
        "NOT_LINKED",
        Some("AUTH_TOKEN_MISMATCH"),
        Some("retry_with_device_token"),
    ),
    (
        "NOT_LINKED",
        Some("AUTH_TOKEN_MISSING"),
        Some("update_auth_configuration"),
    ),
    (
        "NOT_LINKED",
        Some("AUTH_PASSWORD_MISMATCH"),
        Some("update_auth_credentials"),
    ),
    (
        "NOT_LINKED",
        Some("AUTH_RATE_LIMITED"),
        Some("wait_then_retry"),
    ),
    ("NOT_LINKED", Some("AUTH_DEVICE_TOKEN_MISMATCH"), None),
    (
        "NOT_PAIRED",
        Some("PAIRING_REQUIRED"),
        Some("wait_then_retry"),
    ),
    ("NOT_PAIRED", Some("PAIRING_REQUIRED"), None),
    ("NOT_PAIRED", Some("DEVICE_IDENTITY_REQUIRED"), None),
    (
        "INVALID_REQUEST",
        Some("DEVICE_AUTH_SIGNATURE_INVALID"),
        None,
    ),
    (
        "INVALID_REQUEST",
        Some("PROTOCOL_MISMATCH"),
        Some("review_auth_configuration"),
    ),
    ("INVALID_REQUEST", None, None),
    ("UNAVAILABLE", None, None),
    ("RATE_LIMITED", None, Some("wait_then_retry")),
    ("FORBIDDEN", None, None),
    ("NOT_PAIRED", None, None),
    ("", Some(""), Some("")),
];

/// How the fake gateway treats the next socket attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PlanPick {
    /// Which `AttemptPlan`.
    pub kind: u8,
    /// The error, for `Reject`.
    pub error: u8,
    /// Flags for `Reject`: retryable, canRetryWithDeviceToken=false,
    /// pauseReconnect, no close, requestId.
    pub flags: u8,
    /// `retryAfterMs` for `Reject` (0: none).
    pub retry_after: u16,
}

impl PlanPick {
    pub(crate) fn normal() -> Self {
        PlanPick {
            kind: 0,
            error: 0,
            flags: 0,
            retry_after: 0,
        }
    }

    pub(crate) fn refuse() -> Self {
        PlanPick {
            kind: 1,
            ..PlanPick::normal()
        }
    }

    pub(crate) fn reject(error: u8, retry_after: u16) -> Self {
        PlanPick {
            kind: 5,
            error,
            flags: 0,
            retry_after,
        }
    }

    pub(crate) fn build(self) -> AttemptPlan {
        match self.kind % 8 {
            0 => AttemptPlan::Normal,
            1 => AttemptPlan::Refuse,
            2 => AttemptPlan::Hang,
            3 => AttemptPlan::NoChallenge,
            4 => AttemptPlan::BadChallenge,
            5 => {
                let (code, detail, step) = ERRORS[usize::from(self.error) % ERRORS.len()];
                let mut spec = ErrorSpec::new(code, detail);
                if let Some(s) = step {
                    spec = spec.next_step(s);
                }
                if self.retry_after > 0 {
                    spec = spec.retry_after(u64::from(self.retry_after) * 10);
                }
                let f = self.flags;
                let mut extra = serde_json::Map::new();
                if f & 1 != 0 {
                    spec.retryable = Some(f & 32 != 0);
                }
                if f & 2 != 0 {
                    extra.insert("canRetryWithDeviceToken".into(), false.into());
                }
                if f & 4 != 0 {
                    extra.insert("pauseReconnect".into(), true.into());
                }
                if f & 8 != 0 {
                    spec.close = None;
                }
                if f & 16 != 0 {
                    extra.insert("requestId".into(), "req-1".into());
                }
                if !extra.is_empty() {
                    spec = spec.details(serde_json::Value::Object(extra));
                }
                AttemptPlan::Reject(spec)
            }
            6 => AttemptPlan::NoHello,
            _ => AttemptPlan::TlsFailure,
        }
    }
}

impl<'a> Arbitrary<'a> for PlanPick {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(PlanPick {
            kind: byte(u)? % 8,
            error: byte(u)?,
            flags: byte(u)?,
            retry_after: word(u)?,
        })
    }
}

impl PlanPick {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.byte(self.kind)
            .byte(self.error)
            .byte(self.flags)
            .word(self.retry_after);
    }
}

/// How far virtual time moves: `Sim::run_for`, so every deadline on the way
/// is handled on time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Up to 255 ms.
    Millis(u8),
    /// Up to about 65 s.
    Long(u16),
    /// Up to about 109 minutes, in tenths of a second.
    Tenths(u16),
    /// To the next instant anything is due.
    NextDue,
}

impl Step {
    pub(crate) fn secs(s: u16) -> Self {
        Step::Tenths(s.saturating_mul(10))
    }

    pub(crate) fn run(self, sim: &mut Sim) {
        let d = match self {
            Step::Millis(m) => Duration::from_millis(u64::from(m)),
            Step::Long(m) => Duration::from_millis(u64::from(m)),
            Step::Tenths(t) => Duration::from_millis(u64::from(t) * 100),
            Step::NextDue => match sim.next_due() {
                Some(t) => t.saturating_since(sim.now),
                None => Duration::ZERO,
            },
        };
        sim.run_for(d);
    }
}

impl<'a> Arbitrary<'a> for Step {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match byte(u)? % 4 {
            0 => Step::Millis(byte(u)?),
            1 => Step::Long(word(u)?),
            2 => Step::Tenths(word(u)?),
            _ => Step::NextDue,
        })
    }
}

impl Step {
    pub(crate) fn write(&self, w: &mut Writer) {
        match *self {
            Step::Millis(m) => w.byte(0).byte(m),
            Step::Long(m) => w.byte(1).word(m),
            Step::Tenths(t) => w.byte(2).word(t),
            Step::NextDue => w.byte(3),
        };
    }
}

/// Which attempt a directly injected socket input names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Which {
    /// The node's current attempt (or the last one).
    Current,
    /// An older one.
    Stale(u8),
    /// One that was never opened.
    Future,
}

impl Which {
    pub(crate) fn resolve(self, sim: &Sim) -> AttemptId {
        let last = sim
            .node
            .status()
            .attempt
            .or_else(|| sim.inv.current_attempt().map(|(a, _)| a))
            .map_or(0, |a| a.0);
        AttemptId(match self {
            Which::Current => last,
            Which::Stale(k) => last.saturating_sub(1 + u64::from(k % 4)),
            Which::Future => last + 1,
        })
    }
}

impl<'a> Arbitrary<'a> for Which {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let b = byte(u)?;
        Ok(match b % 4 {
            0 | 1 => Which::Current,
            2 => Which::Stale(b / 4),
            _ => Which::Future,
        })
    }
}

impl Which {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.byte(match *self {
            Which::Current => 0,
            Which::Stale(k) => 2 + 4 * (k % 64),
            Which::Future => 3,
        });
    }
}

/// A socket event the driver reports, injected straight into the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SocketEvent {
    Opened,
    /// Queued for a handshake slot, then dialed (admission pacing).
    Queued,
    Dialing,
    /// A busy refusal (HTTP 503) with this many seconds of `Retry-After`
    /// (0: none).
    Busy(u8),
    Closed(u16),
    Io,
    Tls,
    PinMismatch(u8),
    Frame(String),
}

impl SocketEvent {
    pub(crate) fn input(&self, attempt: AttemptId) -> Input {
        match self {
            SocketEvent::Opened => Input::SocketOpened { attempt },
            SocketEvent::Queued => Input::SocketQueued { attempt },
            SocketEvent::Dialing => Input::SocketDialing { attempt },
            SocketEvent::Busy(s) => Input::SocketFailed {
                attempt,
                error: SocketError::Busy {
                    retry_after: (*s != 0).then(|| core::time::Duration::from_secs(u64::from(*s))),
                },
            },
            SocketEvent::Closed(code) => Input::SocketClosed {
                attempt,
                code: (*code != 0).then_some(*code),
                reason: "injected".into(),
            },
            SocketEvent::Io => Input::SocketFailed {
                attempt,
                error: SocketError::Io("injected reset".into()),
            },
            SocketEvent::Tls => Input::SocketFailed {
                attempt,
                error: SocketError::Tls("injected bad chain".into()),
            },
            SocketEvent::PinMismatch(p) => Input::SocketFailed {
                attempt,
                error: SocketError::PinMismatch {
                    expected: vec![PINS[0]],
                    observed: PINS[usize::from(*p) % PINS.len()],
                },
            },
            SocketEvent::Frame(text) => Input::Frame {
                attempt,
                text: text.clone(),
            },
        }
    }
}

impl<'a> Arbitrary<'a> for SocketEvent {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match byte(u)? % 9 {
            0 => SocketEvent::Opened,
            1 => SocketEvent::Closed(word(u)?),
            2 => SocketEvent::Io,
            3 => SocketEvent::Tls,
            4 => SocketEvent::PinMismatch(byte(u)?),
            6 => SocketEvent::Queued,
            7 => SocketEvent::Dialing,
            8 => SocketEvent::Busy(byte(u)?),
            _ => SocketEvent::Frame(text(u)?),
        })
    }
}

impl SocketEvent {
    pub(crate) fn write(&self, w: &mut Writer) {
        match self {
            SocketEvent::Opened => w.byte(0),
            SocketEvent::Closed(c) => w.byte(1).word(*c),
            SocketEvent::Io => w.byte(2),
            SocketEvent::Tls => w.byte(3),
            SocketEvent::PinMismatch(p) => w.byte(4).byte(*p),
            SocketEvent::Frame(t) => w.byte(5).text(t),
            SocketEvent::Queued => w.byte(6),
            SocketEvent::Dialing => w.byte(7),
            SocketEvent::Busy(s) => w.byte(8).byte(*s),
        };
    }
}

/// A simulation for a fuzz run: key 1, node seed `seed`, the default fake
/// gateway, no config applied yet.
pub(crate) fn new_sim(seed: u8, gateway: GatewayConfig) -> Sim {
    Sim::with(
        sim::test_key(1),
        NodeOptions::with_seed(u64::from(seed)),
        gateway,
    )
}

/// `Down(t)` of both targets: the gateway refuses sockets for `tenths`
/// tenths of a second from now.
pub(crate) fn gateway_down(sim: &mut Sim, tenths: u16) {
    let until = sim.now + Duration::from_millis(u64::from(tenths) * 100);
    sim.gateway.down_until(until);
}

/// `RotateCert(p)` of both targets: the gateway presents the `p`th pin of
/// [`PINS`] from now on.
pub(crate) fn rotate_cert(sim: &mut Sim, pick: u8) {
    sim.gateway.config.cert_pin = PINS[usize::from(pick) % PINS.len()];
}

/// `Reset` of both targets: the gateway resets every socket it holds.
pub(crate) fn reset_all(sim: &mut Sim) {
    let now = sim.now;
    for a in sim.gateway.log.opens.clone() {
        sim.gateway.reset(now, a);
    }
}

/// `Sleep(t)` of both targets: virtual time jumps `tenths` tenths of a
/// second without timers firing (a suspended machine).
pub(crate) fn sleep(sim: &mut Sim, tenths: u16) {
    sim.now = sim.now + Duration::from_millis(u64::from(tenths) * 100);
    // Frames queued before the sleep arrive before the overdue timers fire
    // (the sim has no public "fire timers now"), so a connect may answer a
    // challenge minutes old: the fake gateway rightly refuses it, but it is
    // not the node's fault.
    sim.strict_gateway = false;
}

/// Whether an injected frame could move the handshake along behind the fake
/// gateway's back (then its own protocol checks no longer apply).
pub(crate) fn forges_protocol(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v.is_object())
}

/// The effects of the last step, from `mark`.
pub(crate) fn since(sim: &Sim, mark: usize) -> Vec<Effect> {
    sim.effects_since(mark).cloned().collect()
}

/// Counts `OpenSocket` effects.
pub(crate) fn opens(effects: &[Effect]) -> usize {
    effects
        .iter()
        .filter(|e| matches!(e, Effect::OpenSocket { .. }))
        .count()
}

/// Whether `e` is a `Connected` notification.
pub(crate) fn is_connected(e: &Effect) -> bool {
    matches!(e, Effect::Notify(Notification::Connected { .. }))
}

/// Phases in which the node may start an attempt on a wake.
pub(crate) fn waiting(sim: &Sim) -> bool {
    sim.node.status().phase == Phase::Waiting
}

/// `now` as milliseconds, for messages.
pub(crate) fn ms(t: Time) -> u64 {
    t.as_millis()
}

/// An event payload of `len` bytes.
pub(crate) fn payload(len: u16) -> serde_json::Value {
    json!({ "data": "x".repeat(usize::from(len)) })
}
