//! The meaningful inputs each target's corpus starts from.
//!
//! `tests/seeds.rs` checks that every seed is committed under
//! `fuzz/corpus/<target>/seed-<name>` and writes the missing or stale ones
//! when run with `CLAWNODE_WRITE_SEEDS=1`.

const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// The seeds of the target named `target`, as `(name, bytes)`.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let named = |list: Vec<(&str, String)>| {
        list.into_iter()
            .map(|(n, s)| (n.to_owned(), s.into_bytes()))
            .collect()
    };
    match target {
        "frame_parse" => named(frame_seeds()),
        "pin_normalize" => named(pin_seeds()),
        "session_ops" => crate::session::seeds(),
        "reconnect_inputs" => crate::reconnect::seeds(),
        _ => Vec::new(),
    }
}

fn frame_seeds() -> Vec<(&'static str, String)> {
    vec![
        (
            "challenge",
            r#"{"type":"event","event":"connect.challenge","payload":{"nonce":"f4d9c6a2-3b1e-4c55-9a57-6b3c1d2e8f00","ts":1795523726214}}"#.into(),
        ),
        (
            "challenge-no-ts",
            r#"{"type":"event","event":"connect.challenge","payload":{"nonce":"n"}}"#.into(),
        ),
        (
            "hello-ok",
            r#"{"type":"res","id":"connect-1","ok":true,"payload":{"type":"hello-ok","protocol":4,"server":{"version":"2026.9.6","connId":"c-1a2b"},"features":{"methods":["node.invoke.result","node.event"],"events":["tick","node.invoke.request"]},"snapshot":{},"auth":{"role":"node","scopes":[],"deviceToken":"dt-123","issuedAtMs":1795523726300},"policy":{"maxPayload":26214400,"maxBufferedBytes":52428800,"tickIntervalMs":30000}}}"#.into(),
        ),
        (
            "pairing-required",
            r#"{"type":"res","id":"connect-2","ok":false,"error":{"code":"NOT_PAIRED","message":"pairing required","details":{"code":"PAIRING_REQUIRED","requestId":"req-9","recommendedNextStep":"wait_then_retry"},"retryable":true,"retryAfterMs":5000}}"#.into(),
        ),
        (
            "token-mismatch",
            r#"{"type":"res","id":"connect-3","ok":false,"error":{"code":"INVALID_REQUEST","message":"unauthorized","details":{"code":"AUTH_TOKEN_MISMATCH","canRetryWithDeviceToken":true,"recommendedNextStep":"retry_with_device_token"}}}"#.into(),
        ),
        (
            "tick",
            r#"{"type":"event","event":"tick","payload":{"ts":1795523756214},"seq":7}"#.into(),
        ),
        (
            "tick-null-seq",
            r#"{"type":"event","event":"tick","payload":null,"seq":null}"#.into(),
        ),
        (
            "invoke-request",
            r#"{"type":"event","event":"node.invoke.request","payload":{"id":"inv-1","nodeId":"9f86","command":"system.which","paramsJSON":"{\"bins\":[\"sh\"]}","timeoutMs":30000,"idempotencyKey":"k1"},"seq":8}"#.into(),
        ),
        (
            "invoke-cancel",
            r#"{"type":"event","event":"node.invoke.cancel","payload":{"invokeId":"inv-1"},"seq":9}"#.into(),
        ),
        (
            "invoke-result-ack",
            r#"{"type":"res","id":"ir1","ok":true,"payload":{"ok":true,"ignored":true}}"#.into(),
        ),
        (
            "shutdown",
            r#"{"type":"event","event":"shutdown","payload":{"reason":"restart","restartExpectedMs":1500},"seq":10}"#.into(),
        ),
        (
            "state-version",
            r#"{"type":"event","event":"presence","payload":{"a":[1,-2,3.5,1e300,-0.0,18446744073709551615,-9223372036854775808]},"seq":11,"stateVersion":{"presence":3}}"#.into(),
        ),
        (
            "request",
            r#"{"type":"req","id":"g1","method":"node.describe","params":{"x":"\u00e9\ud83d\ude00\n"}}"#.into(),
        ),
        ("bad-seq", r#"{"type":"event","event":"x","seq":-1}"#.into()),
        ("bad-type", r#"{"type":"nope","id":"x"}"#.into()),
        ("duplicate-keys", r#"{"type":"res","type":"event","event":"e","id":"i","ok":true}"#.into()),
        ("not-object", "[1,2,3]".into()),
        ("truncated", r#"{"type":"event","event":"tic"#.into()),
        ("deep", format!("{}{}", "[".repeat(200), "]".repeat(200))),
        ("float-seq", r#"{"type":"event","event":"x","seq":1.0}"#.into()),
    ]
}

fn pin_seeds() -> Vec<(&'static str, String)> {
    let upper_colons = HEX
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect::<Vec<_>>()
        .join(":");
    vec![
        ("plain", HEX.into()),
        ("sha256-prefix", format!("sha256:{HEX}")),
        ("sha-256-upper-colons", format!("SHA-256:{upper_colons}")),
        (
            "openssl-output",
            format!("sha256 Fingerprint={upper_colons}"),
        ),
        ("spaces", format!("  {}  ", upper_colons.replace(':', " "))),
        ("too-short", "sha256:abcd".into()),
        ("too-long", format!("{HEX}0")),
        ("double-prefix", format!("sha256:sha256:{HEX}")),
        ("unicode", format!("é{HEX}ß")),
        ("empty", String::new()),
    ]
}
