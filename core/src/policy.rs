//! The failure policy: what a failed attempt means for the next one.
//!
//! Pure functions from what went wrong to a [`Verdict`]: retry with the
//! stored device token, back off, wait from the slow band, or pause with a
//! typed reason and one line a person can act on. The table is
//! docs/protocol.md §4; the session machine applies the verdicts.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use serde_json::Value;

use crate::frame::GatewayError;
use crate::input::SocketError;
use crate::notification::{PauseKind, PauseReason};
use crate::{MAX_PROTOCOL, MIN_PROTOCOL};

/// Which input paused the session, so that only a change of that input
/// resumes it (docs/protocol.md §8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PauseCause {
    /// URL or TLS policy.
    Trust,
    /// URL or credentials (or a new stored device token).
    Credentials,
    /// Anything in the config.
    Any,
}

/// What to do after a failed attempt.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Retry once, soon, authenticating with the stored device token only.
    RetryWithDeviceToken,
    /// A transient failure: wait for the backoff, at least `retry_after`.
    Backoff {
        /// The gateway's `retryAfterMs`, when it gave one.
        retry_after: Option<Duration>,
    },
    /// Waiting for an operator: retry from the slow band of the backoff.
    Slow,
    /// The gateway is busy: back off on a streak of its own, not counted
    /// as a failure, at least `retry_after`.
    Busy {
        /// The gateway's `Retry-After`, when it gave one.
        retry_after: Option<Duration>,
    },
    /// A terminal failure: make no attempt until `cause` changes.
    Pause(Box<PauseReason>, PauseCause),
}

/// What the session knows that the verdict on a refused connect depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AuthContext {
    /// A device token is stored or configured.
    pub has_device_token: bool,
    /// The endpoint is pinned or on loopback, so a device token may be sent
    /// to it without the shared credentials.
    pub trusted_endpoint: bool,
    /// The one device-token retry of these inputs has not been taken.
    pub device_token_retry_left: bool,
}

/// The verdict on a gateway's refusal of `connect` (docs/protocol.md §4).
pub(crate) fn classify(err: &GatewayError, ctx: AuthContext) -> Verdict {
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
        Verdict::Pause(
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
    if detail == "AUTH_TOKEN_MISMATCH"
        && ctx.device_token_retry_left
        && ctx.has_device_token
        && ctx.trusted_endpoint
        && details_flag("canRetryWithDeviceToken") != Some(false)
    {
        return Verdict::RetryWithDeviceToken;
    }
    if detail == "AUTH_RATE_LIMITED" {
        return Verdict::Backoff { retry_after };
    }
    if detail == "PAIRING_REQUIRED" || err.code == "NOT_PAIRED" && detail.is_empty() {
        if step == Some("wait_then_retry") {
            return Verdict::Slow;
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
        return pause(
            PauseKind::Auth,
            PauseCause::Credentials,
            auth_hint(detail).into(),
        );
    }
    if detail == "DEVICE_IDENTITY_REQUIRED" || detail.starts_with("DEVICE_AUTH_") {
        return pause(
            PauseKind::Identity,
            PauseCause::Any,
            "the gateway refused this device's identity proof: check the device key and the system clock"
                .into(),
        );
    }
    if detail == "PROTOCOL_MISMATCH" {
        return pause(PauseKind::Protocol, PauseCause::Any, protocol_hint(err));
    }
    if err.code == "INVALID_REQUEST" {
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
    Verdict::Backoff { retry_after }
}

/// The hint for `PROTOCOL_MISMATCH`: the gateway's range from
/// `details.expectedProtocol` (and `minimumProbeProtocol`, the oldest it
/// still admits for probes and nodes), and which side to upgrade.
fn protocol_hint(err: &GatewayError) -> String {
    let number = |k: &str| {
        err.details
            .as_ref()
            .and_then(|d| d.get(k))
            .and_then(Value::as_u64)
    };
    let Some(expected) = number("expectedProtocol") else {
        return format!(
            "the gateway does not speak protocol {MIN_PROTOCOL}..={MAX_PROTOCOL} ({}): upgrade clawnode or the gateway",
            err.message
        );
    };
    let range = match number("minimumProbeProtocol") {
        Some(min) if min < expected => format!("{min}..={expected}"),
        _ => format!("{expected}"),
    };
    let upgrade = if expected > u64::from(MAX_PROTOCOL) {
        "upgrade clawnode"
    } else {
        "upgrade the gateway"
    };
    format!(
        "the gateway speaks protocol {range}, clawnode {MIN_PROTOCOL}..={MAX_PROTOCOL}: {upgrade}"
    )
}

fn auth_hint(detail: &str) -> &'static str {
    match detail {
        "AUTH_TOKEN_MISSING" => "the gateway requires a token: configure the gateway token",
        "AUTH_TOKEN_MISMATCH" => {
            "the gateway rejected the token: configure the gateway's current token"
        }
        d if d.starts_with("AUTH_PASSWORD") => {
            "the gateway rejected the password: configure the gateway's current password"
        }
        "AUTH_DEVICE_TOKEN_MISMATCH" => {
            "the gateway no longer accepts this device's token (revoked or rotated): \
             configure the gateway's token, or pair again with `clawnode run --pair CODE`"
        }
        "AUTH_BOOTSTRAP_TOKEN_INVALID" => {
            "the bootstrap token was rejected: ask the gateway operator for a new one"
        }
        _ => "the gateway refused these credentials: review the auth configuration",
    }
}

/// The verdict on a socket that failed before or after admission
/// (docs/protocol.md §4, §7). TLS failures are terminal: retrying cannot
/// change the certificate.
pub(crate) fn socket_failure(error: &SocketError) -> Verdict {
    let pause = |kind, expected, observed, hint| {
        Verdict::Pause(
            Box::new(PauseReason {
                kind,
                error: None,
                expected,
                observed,
                hint,
            }),
            PauseCause::Trust,
        )
    };
    match error {
        SocketError::PinMismatch { expected, observed } => pause(
            PauseKind::PinMismatch,
            expected.clone(),
            Some(*observed),
            format!(
                "the gateway presented certificate sha256 {observed}, which is not pinned; \
                 if it was rotated on purpose, pin the new fingerprint"
            ),
        ),
        SocketError::Tls(msg) => pause(
            PauseKind::Tls,
            Vec::new(),
            None,
            format!(
                "the gateway's certificate was not accepted ({msg}); pin its fingerprint or fix its chain"
            ),
        ),
        SocketError::Io(_) => Verdict::Backoff { retry_after: None },
        SocketError::Busy { retry_after } => Verdict::Busy {
            retry_after: *retry_after,
        },
    }
}

/// hello-ok named a protocol outside `MIN_PROTOCOL..=MAX_PROTOCOL`: what to
/// report as the violation, and the pause (docs/protocol.md §1).
pub(crate) fn unsupported_protocol(protocol: u64) -> (String, Verdict) {
    let why = format!(
        "the gateway admitted us with protocol {protocol}, outside {MIN_PROTOCOL}..={MAX_PROTOCOL}"
    );
    let hint = format!("{why}: upgrade clawnode or the gateway");
    let pause = Verdict::Pause(
        Box::new(PauseReason {
            kind: PauseKind::Protocol,
            error: None,
            expected: Vec::new(),
            observed: None,
            hint,
        }),
        PauseCause::Any,
    );
    (why, pause)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pin::Pin;
    use alloc::string::ToString;
    use serde_json::json;

    const FRESH: AuthContext = AuthContext {
        has_device_token: true,
        trusted_endpoint: true,
        device_token_retry_left: true,
    };

    fn err(code: &str, detail: Option<&str>) -> GatewayError {
        GatewayError {
            code: code.into(),
            message: "msg".into(),
            detail_code: detail.map(Into::into),
            ..GatewayError::default()
        }
    }

    /// The pause's kind, cause and hint, or panics on another verdict.
    fn paused(v: Verdict) -> (PauseKind, PauseCause, String) {
        match v {
            Verdict::Pause(r, cause) => (r.kind, cause, r.hint),
            other => panic!("expected a pause, got {other:?}"),
        }
    }

    #[test]
    fn token_mismatch_retries_once_with_a_device_token_on_a_trusted_endpoint() {
        let e = err("INVALID_REQUEST", Some("AUTH_TOKEN_MISMATCH"));
        assert_eq!(classify(&e, FRESH), Verdict::RetryWithDeviceToken);
        for ctx in [
            AuthContext {
                device_token_retry_left: false,
                ..FRESH
            },
            AuthContext {
                has_device_token: false,
                ..FRESH
            },
            AuthContext {
                trusted_endpoint: false,
                ..FRESH
            },
        ] {
            let (kind, cause, hint) = paused(classify(&e, ctx));
            assert_eq!((kind, cause), (PauseKind::Auth, PauseCause::Credentials));
            assert_eq!(
                hint,
                "the gateway rejected the token: configure the gateway's current token"
            );
        }
        let mut refused = e.clone();
        refused.details = Some(json!({"canRetryWithDeviceToken": false}));
        assert!(matches!(classify(&refused, FRESH), Verdict::Pause(..)));
    }

    #[test]
    fn rate_limited_backs_off_for_at_least_retry_after() {
        let mut e = err("INVALID_REQUEST", Some("AUTH_RATE_LIMITED"));
        e.retry_after_ms = Some(7_000);
        let expected = Verdict::Backoff {
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(classify(&e, FRESH), expected);
    }

    #[test]
    fn pairing_waits_in_the_slow_band_or_pauses_with_the_approve_command() {
        let mut e = err("NOT_PAIRED", Some("PAIRING_REQUIRED"));
        e.recommended_next_step = Some("wait_then_retry".into());
        assert_eq!(classify(&e, FRESH), Verdict::Slow);

        e.recommended_next_step = None;
        e.details = Some(json!({"code": "PAIRING_REQUIRED", "requestId": "req-7"}));
        let (kind, cause, hint) = paused(classify(&e, FRESH));
        assert_eq!((kind, cause), (PauseKind::Pairing, PauseCause::Any));
        assert_eq!(
            hint,
            "approve this device on the gateway: openclaw devices approve req-7"
        );

        let bare = err("NOT_PAIRED", None);
        let (_, _, hint) = paused(classify(&bare, FRESH));
        assert_eq!(
            hint,
            "approve this device on the gateway: openclaw devices approve <requestId>"
        );
    }

    #[test]
    fn auth_codes_pause_until_the_credentials_change_with_a_specific_hint() {
        for (detail, hint) in [
            (
                "AUTH_TOKEN_MISSING",
                "the gateway requires a token: configure the gateway token",
            ),
            (
                "AUTH_PASSWORD_MISMATCH",
                "the gateway rejected the password: configure the gateway's current password",
            ),
            (
                "AUTH_BOOTSTRAP_TOKEN_INVALID",
                "the bootstrap token was rejected: ask the gateway operator for a new one",
            ),
            (
                "AUTH_SOMETHING_NEW",
                "the gateway refused these credentials: review the auth configuration",
            ),
        ] {
            let got = paused(classify(&err("INVALID_REQUEST", Some(detail)), FRESH));
            assert_eq!(
                got,
                (PauseKind::Auth, PauseCause::Credentials, hint.to_string()),
                "{detail}"
            );
        }
    }

    #[test]
    fn identity_refusals_pause_on_any_change() {
        for detail in ["DEVICE_IDENTITY_REQUIRED", "DEVICE_AUTH_SIGNATURE_INVALID"] {
            let (kind, cause, hint) = paused(classify(&err("NOT_PAIRED", Some(detail)), FRESH));
            assert_eq!((kind, cause), (PauseKind::Identity, PauseCause::Any));
            assert_eq!(
                hint,
                "the gateway refused this device's identity proof: check the device key and the system clock"
            );
        }
    }

    #[test]
    fn protocol_and_invalid_request_pause_naming_the_gateway_message() {
        let (kind, cause, hint) = paused(classify(&err("INVALID_REQUEST", None), FRESH));
        assert_eq!((kind, cause), (PauseKind::Protocol, PauseCause::Any));
        assert_eq!(
            hint,
            "the gateway refused the connect request (msg): upgrade clawnode or the gateway"
        );
        let mismatch = |details: Option<Value>| {
            let mut e = err("INVALID_REQUEST", Some("PROTOCOL_MISMATCH"));
            e.details = details;
            let (kind, cause, hint) = paused(classify(&e, FRESH));
            assert_eq!((kind, cause), (PauseKind::Protocol, PauseCause::Any));
            hint
        };
        assert_eq!(
            mismatch(None),
            "the gateway does not speak protocol 3..=4 (msg): upgrade clawnode or the gateway"
        );
        assert_eq!(
            mismatch(Some(
                json!({"code": "PROTOCOL_MISMATCH", "expectedProtocol": 6,
                                 "minimumProbeProtocol": 5, "clientMinProtocol": 3,
                                 "clientMaxProtocol": 4})
            )),
            "the gateway speaks protocol 5..=6, clawnode 3..=4: upgrade clawnode"
        );
        assert_eq!(
            mismatch(Some(json!({"expectedProtocol": 2}))),
            "the gateway speaks protocol 2, clawnode 3..=4: upgrade the gateway"
        );
    }

    #[test]
    fn forbidden_or_pause_reconnect_pause_until_the_credentials_change() {
        let mut flagged = err("UNAVAILABLE", None);
        flagged.details = Some(json!({"pauseReconnect": true}));
        for e in [err("FORBIDDEN", None), flagged] {
            let (kind, cause, hint) = paused(classify(&e, FRESH));
            assert_eq!((kind, cause), (PauseKind::Auth, PauseCause::Credentials));
            assert_eq!(
                hint,
                "the gateway refused this node (msg): review the auth configuration"
            );
        }
    }

    #[test]
    fn anything_else_is_transient() {
        let mut e = err("UNAVAILABLE", None);
        e.retry_after_ms = Some(1);
        let expected = Verdict::Backoff {
            retry_after: Some(Duration::from_millis(1)),
        };
        assert_eq!(classify(&e, FRESH), expected);
        assert_eq!(
            classify(&err("SOMETHING", Some("NEW_CODE")), FRESH),
            Verdict::Backoff { retry_after: None }
        );
    }

    #[test]
    fn tls_failures_pause_until_the_trust_inputs_change_and_io_backs_off() {
        let observed = Pin::parse(&"ab".repeat(32)).unwrap();
        let expected = alloc::vec![Pin::parse(&"cd".repeat(32)).unwrap()];
        let mismatch = SocketError::PinMismatch {
            expected: expected.clone(),
            observed,
        };
        let Verdict::Pause(r, PauseCause::Trust) = socket_failure(&mismatch) else {
            panic!("a pin mismatch pauses on trust");
        };
        assert_eq!(
            (r.kind, r.expected, r.observed),
            (PauseKind::PinMismatch, expected, Some(observed))
        );
        assert!(r.hint.contains(&"ab".repeat(32)), "{}", r.hint);
        assert!(
            r.hint
                .ends_with("if it was rotated on purpose, pin the new fingerprint")
        );

        let (kind, cause, hint) = paused(socket_failure(&SocketError::Tls("bad chain".into())));
        assert_eq!((kind, cause), (PauseKind::Tls, PauseCause::Trust));
        assert_eq!(
            hint,
            "the gateway's certificate was not accepted (bad chain); pin its fingerprint or fix its chain"
        );
        assert_eq!(
            socket_failure(&SocketError::Io("reset".into())),
            Verdict::Backoff { retry_after: None }
        );
    }

    #[test]
    fn an_unsupported_protocol_pauses_on_any_change() {
        let (why, verdict) = unsupported_protocol(9);
        assert_eq!(
            why,
            "the gateway admitted us with protocol 9, outside 3..=4"
        );
        let (kind, cause, hint) = paused(verdict);
        assert_eq!((kind, cause), (PauseKind::Protocol, PauseCause::Any));
        assert_eq!(
            hint,
            "the gateway admitted us with protocol 9, outside 3..=4: upgrade clawnode or the gateway"
        );
    }
}
