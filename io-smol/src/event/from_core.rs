//! Which core notifications the application hears about, and as what.

use clawnode_core::{DisconnectReason, Notification, PauseKind, PauseReason, SocketError};

use super::model::{DisconnectCode, Event};

fn kind_text(kind: PauseKind) -> &'static str {
    match kind {
        PauseKind::Auth => "authentication refused",
        PauseKind::Identity => "device identity refused",
        PauseKind::Protocol => "protocol refused",
        PauseKind::Pairing => "pairing required",
        PauseKind::PinMismatch => "certificate does not match the pinned fingerprint",
        PauseKind::Tls => "certificate not accepted",
        _ => "paused",
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
        DisconnectReason::Failed(SocketError::Busy { retry_after }) => (
            code("GATEWAY_BUSY"),
            match retry_after {
                Some(d) => format!(
                    "the gateway refused the upgrade as busy; retry after {} s",
                    d.as_secs()
                ),
                None => "the gateway refused the upgrade as busy".into(),
            },
        ),
        DisconnectReason::Rejected(e) => (
            code(e.detail_code.as_deref().unwrap_or(&e.code)),
            e.message.clone(),
        ),
        DisconnectReason::OpenTimeout => (code("OPEN_TIMEOUT"), "socket not open in time".into()),
        DisconnectReason::QueueTimeout => (
            code("QUEUE_TIMEOUT"),
            "no handshake slot in time: too many of this process's sessions are connecting".into(),
        ),
        DisconnectReason::ChallengeTimeout => (
            code("CHALLENGE_TIMEOUT"),
            "no connect.challenge in time".into(),
        ),
        DisconnectReason::HandshakeTimeout => {
            (code("HANDSHAKE_TIMEOUT"), "no hello-ok in time".into())
        }
        DisconnectReason::TickTimeout => (DisconnectCode::Close(4000), "tick timeout".into()),
        DisconnectReason::PongTimeout => (DisconnectCode::Close(4000), "pong timeout".into()),
        DisconnectReason::ConfigChanged => (code("CONFIG_CHANGED"), "configuration changed".into()),
        DisconnectReason::GatewayRestart => {
            (code("GATEWAY_RESTART"), "the gateway is restarting".into())
        }
        DisconnectReason::ProtocolViolation(m) => (code("PROTOCOL_VIOLATION"), m.clone()),
        DisconnectReason::Stopped => (DisconnectCode::Close(1000), "node stopping".into()),
        DisconnectReason::Failed(e) => (code("SOCKET_ERROR"), format!("{e:?}")),
        _ => (code("DISCONNECTED"), format!("{reason:?}")),
    }
}

fn paused(p: &PauseReason) -> Event {
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

impl Event {
    /// The event a core notification is reported as, if the application
    /// hears about it (the rest is logged by the driver). Any driver can
    /// use it to report what the smol driver and `clawnode run` report.
    pub fn from_notification(n: &Notification) -> Option<Event> {
        from_notification(n)
    }
}

/// As [`from_notification`], taking the notification: a gateway event's
/// payload moves instead of being copied.
#[cfg(feature = "smol")]
pub(crate) fn into_event(n: Notification) -> Option<Event> {
    match n {
        Notification::GatewayEvent {
            event,
            payload,
            seq,
        } => Some(Event::Broadcast {
            event,
            payload,
            seq,
        }),
        other => from_notification(&other),
    }
}

pub(crate) fn from_notification(n: &Notification) -> Option<Event> {
    Some(match n {
        Notification::Connected {
            attempt,
            conn_id,
            protocol,
            tick_interval_ms,
            server_version,
            ..
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
        } => Event::Broadcast {
            event: event.clone(),
            payload: payload.clone(),
            seq: *seq,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clawnode_core::{AttemptId, GatewayError, Pin};

    use super::*;

    fn gateway_error(code: &str, detail: Option<&str>, message: &str) -> GatewayError {
        GatewayError {
            code: code.into(),
            message: message.into(),
            detail_code: detail.map(Into::into),
            recommended_next_step: None,
            retry_after_ms: None,
            retryable: None,
            details: None,
        }
    }

    #[test]
    fn every_disconnect_reason_has_its_code_and_text() {
        let code = |s: &str| DisconnectCode::Code(s.into());
        let pin = Pin::from_sha256([7; 32]);
        let cases = [
            (
                DisconnectReason::Closed {
                    code: Some(1001),
                    reason: "going away".into(),
                },
                (DisconnectCode::Close(1001), "going away".to_owned()),
            ),
            (
                DisconnectReason::Closed {
                    code: None,
                    reason: String::new(),
                },
                (DisconnectCode::None, "connection closed".to_owned()),
            ),
            (
                DisconnectReason::Failed(SocketError::PinMismatch {
                    expected: vec![],
                    observed: pin,
                }),
                (
                    code("TLS_PIN_MISMATCH"),
                    format!("certificate sha256 {pin} is not pinned"),
                ),
            ),
            (
                DisconnectReason::Failed(SocketError::Tls("bad".into())),
                (code("TLS_ERROR"), "bad".into()),
            ),
            (
                DisconnectReason::Failed(SocketError::Io("reset".into())),
                (code("IO_ERROR"), "reset".into()),
            ),
            (
                DisconnectReason::Rejected(Box::new(gateway_error(
                    "NOT_PAIRED",
                    Some("PAIRING_REQUIRED"),
                    "pair me",
                ))),
                (code("PAIRING_REQUIRED"), "pair me".into()),
            ),
            (
                DisconnectReason::Rejected(Box::new(gateway_error("UNAVAILABLE", None, "later"))),
                (code("UNAVAILABLE"), "later".into()),
            ),
            (
                DisconnectReason::OpenTimeout,
                (code("OPEN_TIMEOUT"), "socket not open in time".into()),
            ),
            (
                DisconnectReason::ChallengeTimeout,
                (
                    code("CHALLENGE_TIMEOUT"),
                    "no connect.challenge in time".into(),
                ),
            ),
            (
                DisconnectReason::HandshakeTimeout,
                (code("HANDSHAKE_TIMEOUT"), "no hello-ok in time".into()),
            ),
            (
                DisconnectReason::TickTimeout,
                (DisconnectCode::Close(4000), "tick timeout".into()),
            ),
            (
                DisconnectReason::PongTimeout,
                (DisconnectCode::Close(4000), "pong timeout".into()),
            ),
            (
                DisconnectReason::ConfigChanged,
                (code("CONFIG_CHANGED"), "configuration changed".into()),
            ),
            (
                DisconnectReason::GatewayRestart,
                (code("GATEWAY_RESTART"), "the gateway is restarting".into()),
            ),
            (
                DisconnectReason::ProtocolViolation("garbage".into()),
                (code("PROTOCOL_VIOLATION"), "garbage".into()),
            ),
            (
                DisconnectReason::Stopped,
                (DisconnectCode::Close(1000), "node stopping".into()),
            ),
        ];
        for (reason, expected) in cases {
            assert_eq!(disconnect_code(&reason), expected, "{reason:?}");
        }
    }

    #[test]
    fn a_pause_says_what_kind_unless_the_gateway_said_more() {
        let texts = [
            (PauseKind::Auth, "authentication refused"),
            (PauseKind::Identity, "device identity refused"),
            (PauseKind::Protocol, "protocol refused"),
            (PauseKind::Pairing, "pairing required"),
            (
                PauseKind::PinMismatch,
                "certificate does not match the pinned fingerprint",
            ),
            (PauseKind::Tls, "certificate not accepted"),
        ];
        for (kind, text) in texts {
            assert_eq!(kind_text(kind), text);
            let mut p = PauseReason {
                kind,
                error: None,
                expected: vec![],
                observed: None,
                hint: "do this".into(),
            };
            let Event::Paused { reason, hint, .. } = paused(&p) else {
                panic!("not a pause");
            };
            assert_eq!((reason.as_str(), hint.as_str()), (text, "do this"));
            p.error = Some(gateway_error("X", None, ""));
            let Event::Paused { reason, .. } = paused(&p) else {
                panic!("not a pause");
            };
            assert_eq!(reason, text, "an empty gateway message says nothing");
            p.error = Some(gateway_error("X", None, "token revoked"));
            let Event::Paused { reason, code, .. } = paused(&p) else {
                panic!("not a pause");
            };
            assert_eq!((reason.as_str(), code.as_str()), ("token revoked", "X"));
        }
    }

    #[test]
    fn notifications_become_events() {
        let n = Notification::Disconnected {
            attempt: AttemptId(3),
            was_connected: true,
            reason: DisconnectReason::TickTimeout,
            retry_in: Some(Duration::from_millis(1500)),
        };
        assert_eq!(
            Event::from_notification(&n),
            Some(Event::Disconnected {
                attempt: 3,
                was_connected: true,
                code: DisconnectCode::Close(4000),
                reason: "tick timeout".into(),
                retry_in_ms: Some(1500),
            })
        );
        let gap = Notification::SeqGap {
            expected: 4,
            got: 9,
        };
        assert_eq!(
            Event::from_notification(&gap),
            Some(Event::SeqGap {
                expected: 4,
                got: 9
            })
        );
    }
}
