//! Events a running session reports to the application.

use std::fmt;

use clawnode_core::{DisconnectReason, Notification, PauseKind, PauseReason, Pin, SocketError};
use serde_json::{Map, Value, json};

/// Why an attempt ended, as a code: the WebSocket close code when the
/// socket closed, else a short upper-case code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisconnectCode {
    /// A WebSocket close code (e.g. 1006, 1012, 4000).
    Close(u16),
    /// A code of the gateway (`details.code`, else `code`) or of clawnode
    /// (`TLS_PIN_MISMATCH`, `IO_ERROR`, `OPEN_TIMEOUT`, …).
    Code(String),
    /// The socket closed without a close frame.
    None,
}

impl DisconnectCode {
    fn to_json(&self) -> Value {
        match self {
            DisconnectCode::Close(c) => json!(c),
            DisconnectCode::Code(s) => json!(s),
            DisconnectCode::None => Value::Null,
        }
    }
}

impl fmt::Display for DisconnectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectCode::Close(c) => write!(f, "{c}"),
            DisconnectCode::Code(s) => f.write_str(s),
            DisconnectCode::None => f.write_str("-"),
        }
    }
}

/// Something that happened in a session.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A socket attempt started.
    Connecting {
        /// The attempt's number.
        attempt: u64,
        /// The gateway URL.
        url: String,
    },
    /// The gateway admitted the node (hello-ok).
    Connected {
        /// The attempt admitted.
        attempt: u64,
        /// `server.connId`.
        conn_id: String,
        /// The negotiated protocol.
        protocol: u32,
        /// `policy.tickIntervalMs`.
        tick_interval_ms: u64,
        /// `server.version`, when given.
        server_version: Option<String>,
    },
    /// An attempt ended.
    Disconnected {
        /// The attempt that ended.
        attempt: u64,
        /// Whether it had been admitted.
        was_connected: bool,
        /// Why, as a code.
        code: DisconnectCode,
        /// Why, for a person.
        reason: String,
        /// When the next attempt starts; `None` when none is scheduled.
        retry_in_ms: Option<u64>,
    },
    /// The session stopped making attempts until its config changes.
    Paused {
        /// The most specific code (`details.code`, `code`, `TLS_PIN_MISMATCH`, …).
        code: String,
        /// What went wrong.
        reason: String,
        /// What a person can do about it.
        hint: String,
        /// The pins expected, for a pin mismatch.
        expected: Vec<Pin>,
        /// The pin observed, for a pin mismatch.
        observed: Option<Pin>,
    },
    /// A config was applied with [`crate::NodeHandle::reconfigure`].
    Config {
        /// Whether it differed from the config in force.
        changed: bool,
    },
    /// An invoke finished (or was cancelled: `ok` is then false).
    Invoke {
        /// The gateway's invoke id.
        id: String,
        /// The command.
        command: String,
        /// Whether the command succeeded.
        ok: bool,
        /// How long it ran, in milliseconds.
        ms: u64,
    },
    /// Events with a `seq` were skipped: state may need a resync.
    SeqGap {
        /// The seq that was due.
        expected: u64,
        /// The seq that arrived.
        got: u64,
    },
    /// An event from the gateway that the core does not handle itself.
    GatewayEvent {
        /// The event name.
        event: String,
        /// Its payload.
        payload: Option<Value>,
        /// Its seq.
        seq: Option<u64>,
    },
}

fn kind_text(kind: PauseKind) -> &'static str {
    match kind {
        PauseKind::Auth => "authentication refused",
        PauseKind::Identity => "device identity refused",
        PauseKind::Protocol => "protocol refused",
        PauseKind::Pairing => "pairing required",
        PauseKind::PinMismatch => "certificate does not match the pinned fingerprint",
        PauseKind::Tls => "certificate not accepted",
    }
}

pub(crate) fn disconnect_code(reason: &DisconnectReason) -> (DisconnectCode, String) {
    let code = |s: &str| DisconnectCode::Code(s.to_owned());
    match reason {
        DisconnectReason::Closed { code: c, reason } => (
            c.map_or(DisconnectCode::None, DisconnectCode::Close),
            if reason.is_empty() {
                "connection closed".to_owned()
            } else {
                reason.clone()
            },
        ),
        DisconnectReason::Failed(SocketError::PinMismatch { observed, .. }) => (
            code("TLS_PIN_MISMATCH"),
            format!("certificate sha256 {observed} is not pinned"),
        ),
        DisconnectReason::Failed(SocketError::Tls(m)) => (code("TLS_ERROR"), m.clone()),
        DisconnectReason::Failed(SocketError::Io(m)) => (code("IO_ERROR"), m.clone()),
        DisconnectReason::Rejected(e) => (
            code(e.detail_code.as_deref().unwrap_or(&e.code)),
            e.message.clone(),
        ),
        DisconnectReason::OpenTimeout => (code("OPEN_TIMEOUT"), "socket not open in time".into()),
        DisconnectReason::ChallengeTimeout => (
            code("CHALLENGE_TIMEOUT"),
            "no connect.challenge in time".into(),
        ),
        DisconnectReason::HandshakeTimeout => {
            (code("HANDSHAKE_TIMEOUT"), "no hello-ok in time".into())
        }
        DisconnectReason::TickTimeout => (DisconnectCode::Close(4000), "tick timeout".into()),
        DisconnectReason::ConfigChanged => (code("CONFIG_CHANGED"), "configuration changed".into()),
        DisconnectReason::GatewayRestart => {
            (code("GATEWAY_RESTART"), "the gateway is restarting".into())
        }
        DisconnectReason::ProtocolViolation(m) => (code("PROTOCOL_VIOLATION"), m.clone()),
        DisconnectReason::Stopped => (DisconnectCode::Close(1000), "node stopping".into()),
    }
}

pub(crate) fn paused(p: &PauseReason) -> Event {
    Event::Paused {
        code: p.code().to_owned(),
        reason: match &p.error {
            Some(e) if !e.message.is_empty() => e.message.clone(),
            _ => kind_text(p.kind).to_owned(),
        },
        hint: p.hint.clone(),
        expected: p.expected.clone(),
        observed: p.observed,
    }
}

/// The event for a notification, if the application hears about it.
pub(crate) fn from_notification(n: &Notification) -> Option<Event> {
    Some(match n {
        Notification::Connected {
            attempt,
            conn_id,
            protocol,
            tick_interval_ms,
            server_version,
        } => Event::Connected {
            attempt: attempt.0,
            conn_id: conn_id.clone(),
            protocol: *protocol,
            tick_interval_ms: *tick_interval_ms,
            server_version: server_version.clone(),
        },
        Notification::Disconnected {
            attempt,
            was_connected,
            reason,
            retry_in,
        } => {
            let (code, reason) = disconnect_code(reason);
            Event::Disconnected {
                attempt: attempt.0,
                was_connected: *was_connected,
                code,
                reason,
                retry_in_ms: retry_in.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            }
        }
        Notification::Paused(p) => paused(p),
        Notification::SeqGap { expected, got } => Event::SeqGap {
            expected: *expected,
            got: *got,
        },
        Notification::GatewayEvent {
            event,
            payload,
            seq,
        } => Event::GatewayEvent {
            event: event.clone(),
            payload: payload.clone(),
            seq: *seq,
        },
        _ => return None,
    })
}

impl Event {
    /// The event's name in JSON output (`connecting`, `connected`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Event::Connecting { .. } => "connecting",
            Event::Connected { .. } => "connected",
            Event::Disconnected { .. } => "disconnected",
            Event::Paused { .. } => "paused",
            Event::Config { .. } => "config",
            Event::Invoke { .. } => "invoke",
            Event::SeqGap { .. } => "seq_gap",
            Event::GatewayEvent { .. } => "gateway_event",
        }
    }

    /// One JSON object: `ts` (milliseconds since the Unix epoch), `event`,
    /// and the event's fields in camelCase.
    pub fn to_json(&self, ts_ms: u64) -> Value {
        let mut m = Map::new();
        m.insert("ts".into(), json!(ts_ms));
        m.insert("event".into(), json!(self.name()));
        let fields = match self {
            Event::Connecting { attempt, url } => json!({"attempt": attempt, "url": url}),
            Event::Connected {
                attempt,
                conn_id,
                protocol,
                tick_interval_ms,
                server_version,
            } => json!({
                "attempt": attempt, "connId": conn_id, "protocol": protocol,
                "tickIntervalMs": tick_interval_ms, "serverVersion": server_version,
            }),
            Event::Disconnected {
                attempt,
                was_connected,
                code,
                reason,
                retry_in_ms,
            } => json!({
                "attempt": attempt, "wasConnected": was_connected, "code": code.to_json(),
                "reason": reason, "retryInMs": retry_in_ms,
            }),
            Event::Paused {
                code,
                reason,
                hint,
                expected,
                observed,
            } => {
                let mut v = json!({"code": code, "reason": reason, "hint": hint});
                if !expected.is_empty() {
                    v["expected"] = json!(expected.iter().map(Pin::to_string).collect::<Vec<_>>());
                }
                if let Some(o) = observed {
                    v["observed"] = json!(o.to_string());
                }
                v
            }
            Event::Config { changed } => json!({"changed": changed}),
            Event::Invoke {
                id,
                command,
                ok,
                ms,
            } => json!({"id": id, "command": command, "ok": ok, "ms": ms}),
            Event::SeqGap { expected, got } => json!({"expected": expected, "got": got}),
            Event::GatewayEvent {
                event,
                payload,
                seq,
            } => json!({"name": event, "payload": payload, "seq": seq}),
        };
        if let Value::Object(f) = fields {
            m.extend(f);
        }
        Value::Object(m)
    }
}

impl fmt::Display for Event {
    /// One line for a person.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Connecting { attempt, url } => {
                write!(f, "connecting to {url} (attempt {attempt})")
            }
            Event::Connected {
                attempt,
                conn_id,
                protocol,
                tick_interval_ms,
                ..
            } => write!(
                f,
                "connected (attempt {attempt}, conn {conn_id}, protocol {protocol}, tick {tick_interval_ms} ms)"
            ),
            Event::Disconnected {
                attempt,
                code,
                reason,
                retry_in_ms,
                ..
            } => {
                write!(f, "disconnected (attempt {attempt}): {code} {reason}")?;
                match retry_in_ms {
                    Some(ms) => write!(f, "; retrying in {:.1} s", *ms as f64 / 1000.0),
                    None => Ok(()),
                }
            }
            Event::Paused {
                code,
                reason,
                hint,
                expected,
                observed,
            } => {
                write!(f, "paused: {code}: {reason}")?;
                if let Some(o) = observed {
                    let exp: Vec<String> = expected.iter().map(Pin::to_string).collect();
                    write!(f, " (expected {}, observed {o})", exp.join(" or "))?;
                }
                write!(f, "\n  hint: {hint}")
            }
            Event::Config { changed: true } => f.write_str("configuration reloaded: changed"),
            Event::Config { changed: false } => f.write_str("configuration reloaded: unchanged"),
            Event::Invoke {
                id,
                command,
                ok,
                ms,
            } => write!(
                f,
                "invoke {command} ({id}): {} in {ms} ms",
                if *ok { "ok" } else { "failed" }
            ),
            Event::SeqGap { expected, got } => {
                write!(f, "event sequence gap: expected {expected}, got {got}")
            }
            Event::GatewayEvent { event, seq, .. } => match seq {
                Some(s) => write!(f, "gateway event {event} (seq {s})"),
                None => write!(f, "gateway event {event}"),
            },
        }
    }
}
