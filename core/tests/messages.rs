//! Every message a person reads from the core, exactly: error texts, the
//! `Display` and `Debug` forms of the public types, and what they must never
//! show (secrets, private keys).

use clawnode_core::sim::{ParseError, parse_inbound};
use clawnode_core::{
    AttemptId, ConfigError, DeviceIdentity, GatewayUrl, Pin, PinSet, Secret, SendRefusal,
    SendRefused, SessionConfig, Time, TimerReason, TlsPolicy,
};
use serde_json::json;

fn config_error(url: &str) -> String {
    GatewayUrl::parse(url).unwrap_err().to_string()
}

#[test]
fn config_errors_name_what_was_wrong() {
    assert!(config_error("not a url").starts_with("malformed gateway URL \"not a url\": "));
    assert_eq!(
        config_error("https://gw.example"),
        "gateway URL \"https://gw.example\" has scheme \"https\"; use ws:// (loopback) or wss://"
    );
    assert_eq!(
        config_error("ws://gw.example:1234"),
        "gateway URL \"ws://gw.example:1234\" is plain ws:// to a non-loopback host; use wss://"
    );
    let pinned = TlsPolicy::pinned([format!("sha256:{}", "ab".repeat(32))]).unwrap();
    let plain = SessionConfig::parse("ws://127.0.0.1:1", pinned).unwrap_err();
    assert_eq!(
        plain.to_string(),
        "TLS pins or trust-on-first-use were given for the plain ws:// URL \"ws://127.0.0.1:1/\"; use wss://"
    );
    assert_eq!(
        TlsPolicy::pinned(Vec::<String>::new())
            .unwrap_err()
            .to_string(),
        "a pinned TLS policy needs at least one pin"
    );
    let tofu = TlsPolicy::TrustOnFirstUse {
        store_key: String::new(),
    };
    assert_eq!(
        SessionConfig::parse("wss://gw.example", tofu)
            .unwrap_err()
            .to_string(),
        "trust-on-first-use needs a non-empty store key"
    );
    let pin = TlsPolicy::pinned(["abc"]).unwrap_err();
    assert!(matches!(pin, ConfigError::Pin(_)));
    assert_eq!(
        pin.to_string(),
        "invalid TLS pin \"abc\": expected a SHA-256 fingerprint (64 hex digits), found 3 hex digits"
    );
}

#[test]
fn urls_show_their_normalised_text() {
    let url = GatewayUrl::parse("wss://GW.Example:443").unwrap();
    assert_eq!(url.as_str(), "wss://gw.example/");
    assert_eq!(url.to_string(), "wss://gw.example/");
    assert_eq!(format!("{url:?}"), "GatewayUrl(\"wss://gw.example/\")");
    assert_eq!((url.host(), url.port()), ("gw.example", 443));
}

#[test]
fn secrets_and_keys_never_show() {
    assert_eq!(
        format!("{:?}", Secret::new("hunter2")),
        "Secret(<redacted>)"
    );
    let identity = DeviceIdentity::new(clawnode_core::sim::test_key(1));
    let shown = format!("{identity:?}");
    assert_eq!(
        shown,
        format!(
            "DeviceIdentity {{ device_id: {:?}, .. }}",
            identity.device_id()
        )
    );
}

#[test]
fn pins_attempts_times_and_timer_reasons_read_plainly() {
    let pin = Pin::from_sha256([0xab; 32]);
    assert_eq!(pin.to_string(), "ab".repeat(32));
    assert_eq!(format!("{pin:?}"), format!("Pin({})", "ab".repeat(32)));
    let set = PinSet::new([pin]).unwrap();
    assert_eq!(format!("{set:?}"), format!("{{Pin({})}}", "ab".repeat(32)));
    assert_eq!(AttemptId(7).to_string(), "#7");
    assert_eq!(format!("{:?}", Time::from_millis(42)), "t+42ms");
    for (reason, text) in [
        (TimerReason::Open, "open"),
        (TimerReason::Challenge, "challenge"),
        (TimerReason::Hello, "hello"),
        (TimerReason::Tick, "tick"),
        (TimerReason::Ping, "ping"),
        (TimerReason::Pong, "pong"),
        (TimerReason::Retry, "retry"),
        (TimerReason::InvokeExpiry, "invoke expiry"),
        (TimerReason::RequestExpiry, "request expiry"),
    ] {
        assert_eq!(reason.to_string(), text);
    }
}

#[test]
fn refused_sends_and_unusable_frames_say_why() {
    let refused = |reason| SendRefused {
        reason,
        method: "node.event".into(),
        params: json!({}),
    };
    assert_eq!(
        refused(SendRefusal::NotConnected).to_string(),
        "cannot send \"node.event\": the node is not connected (no hello-ok yet)"
    );
    assert_eq!(
        refused(SendRefusal::TooLarge { size: 9, max: 8 }).to_string(),
        "cannot send \"node.event\": frame of 9 bytes exceeds the gateway's maxPayload of 8"
    );
    let err = |text: &str| parse_inbound(text).unwrap_err();
    assert!(matches!(err("{"), ParseError::NotJson(_)));
    assert!(err("{").to_string().starts_with("frame is not JSON: "));
    assert_eq!(err("[1]").to_string(), "frame is not a JSON object");
    assert_eq!(err("{}").to_string(), "frame has no string \"type\"");
    assert_eq!(
        err(r#"{"type":"x"}"#).to_string(),
        "frame has unknown type \"x\""
    );
    assert_eq!(
        err(r#"{"type":"event"}"#).to_string(),
        "frame field \"event\" is missing or has the wrong type"
    );
}

#[test]
fn times_count_milliseconds() {
    let t = Time::from_millis(42);
    assert_eq!(t.as_millis(), 42);
    assert_eq!((t + std::time::Duration::from_millis(8)).as_millis(), 50);
    assert_eq!(t.saturating_since(Time::from_millis(50)).as_millis(), 0);
}

#[test]
fn pin_sets_know_their_size() {
    let set = PinSet::new([Pin::from_sha256([1; 32]), Pin::from_sha256([2; 32])]).unwrap();
    assert_eq!((set.len(), set.is_empty()), (2, false));
    assert!(PinSet::new(Vec::<Pin>::new()).is_none());
}
