//! The events themselves: what a session reports, in Rust form.

use std::fmt;

use clawnode_core::{EventPayload, Pin};

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
    /// An event the gateway broadcast that the core does not handle itself
    /// (the core's `Notification::GatewayEvent`; `gateway_event` in JSON
    /// lines).
    Broadcast {
        /// The event name.
        event: String,
        /// Its payload.
        payload: Option<EventPayload>,
        /// Its seq.
        seq: Option<u64>,
    },
    /// This stream fell behind and `dropped` events were left out here.
    ///
    /// Each stream holds a bounded number of events; the session never
    /// waits for a slow reader (it would stop serving the gateway). When a
    /// stream is full the newest events are dropped and counted, and this
    /// notice takes their place once there is room again: ahead of the next
    /// event that fits, or as the stream's last event when the session
    /// ends. So a reader always learns where its stream has a hole. Dropped
    /// events are not replayed: [`crate::NodeHandle::status`] gives the
    /// current state.
    Lagged {
        /// How many events were dropped.
        dropped: u64,
    },
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
            Event::Broadcast { .. } => "gateway_event",
            Event::Lagged { .. } => "lagged",
        }
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
            Event::Broadcast { event, seq, .. } => match seq {
                Some(s) => write!(f, "gateway event {event} (seq {s})"),
                None => write!(f, "gateway event {event}"),
            },
            Event::Lagged { dropped } => {
                write!(
                    f,
                    "lagged: {dropped} events dropped (the reader fell behind)"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_as_one_line_for_a_person() {
        let pin = Pin::from_sha256([0xab; 32]);
        let cases = [
            (
                Event::Disconnected {
                    attempt: 2,
                    was_connected: true,
                    code: DisconnectCode::Close(4000),
                    reason: "tick timeout".into(),
                    retry_in_ms: Some(1500),
                },
                "disconnected (attempt 2): 4000 tick timeout; retrying in 1.5 s".to_owned(),
            ),
            (
                Event::Disconnected {
                    attempt: 3,
                    was_connected: false,
                    code: DisconnectCode::None,
                    reason: "connection closed".into(),
                    retry_in_ms: None,
                },
                "disconnected (attempt 3): - connection closed".to_owned(),
            ),
            (
                Event::Paused {
                    code: "TLS_PIN_MISMATCH".into(),
                    reason: "mismatch".into(),
                    hint: "check the pin".into(),
                    expected: vec![pin],
                    observed: Some(pin),
                },
                format!(
                    "paused: TLS_PIN_MISMATCH: mismatch (expected {pin}, observed {pin})\n  hint: check the pin"
                ),
            ),
            (
                Event::Invoke {
                    id: "i1".into(),
                    command: "system.which".into(),
                    ok: false,
                    ms: 4,
                },
                "invoke system.which (i1): failed in 4 ms".to_owned(),
            ),
            (
                Event::Lagged { dropped: 9 },
                "lagged: 9 events dropped (the reader fell behind)".to_owned(),
            ),
        ];
        for (event, text) in cases {
            assert_eq!(event.to_string(), text);
        }
        assert_eq!(
            DisconnectCode::Code("IO_ERROR".into()).to_string(),
            "IO_ERROR"
        );
    }
}
