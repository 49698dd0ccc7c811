//! `frame_parse`: arbitrary bytes as an inbound text frame.

use clawnode_core::sim::{Inbound, parse_inbound};
use serde_json::Value;

/// Feeds `data` to [`parse_inbound`] as a text frame and checks that it
/// never panics and that every frame it accepts re-serialises (through
/// [`Inbound::to_value`]) to JSON text that parses back to the same frame
/// and the same JSON value.
///
/// Bytes that are not UTF-8 are not a text frame (a WebSocket stack refuses
/// them before the core sees them) and are skipped.
pub fn check_frame_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let frame = match parse_inbound(text) {
        Ok(frame) => frame,
        Err(e) => {
            // The error must describe itself without panicking.
            let _ = e.to_string();
            return;
        }
    };
    // A payload nested deeper than a `Value` may be is accepted by the
    // parser and refused by each handler that reads it.
    let Some(value) = frame.to_value() else {
        return;
    };
    let again_text = value.to_string();
    let again = match parse_inbound(&again_text) {
        Ok(f) => f,
        Err(e) => panic!("re-serialised frame does not parse ({e}): {again_text}"),
    };
    assert_eq!(
        frame, again,
        "frame changed through to_value/parse: {again_text}"
    );
    let reparsed: Value = serde_json::from_str(&again_text).expect("to_value() is valid JSON");
    assert_eq!(
        reparsed, value,
        "JSON value changed through to_string/from_str"
    );
    // The value carries the frame's kind and the fields that identify it.
    // Members the core skips are not depth-limited; a `Value` is.
    // A lone surrogate escape (`"\ud800"`) is JSON by RFC 8259's grammar
    // and what the gateway's JSON.stringify writes for such a string;
    // serde_json refuses it in a `Value`, so it is read as U+FFFD here.
    let original: Value = match serde_json::from_str(&lone_surrogates_replaced(text)) {
        Ok(v) => v,
        Err(e) if e.to_string().contains("recursion limit") => return,
        Err(e) => panic!("an accepted frame is not JSON ({e}): {text}"),
    };
    assert_eq!(value.get("type"), original.get("type"), "type changed");
    match &frame {
        Inbound::Event { event, .. } => assert_eq!(original["event"], Value::from(&**event)),
        Inbound::Response { id, ok, .. } => {
            assert_eq!(original["id"], Value::from(&**id));
            assert_eq!(original["ok"], Value::from(*ok));
        }
        Inbound::Request { id, method, .. } => {
            assert_eq!(original["id"], Value::from(&**id));
            assert_eq!(original["method"], Value::from(&**method));
        }
    }
}

/// `text` with every `\uXXXX` escape of a lone UTF-16 surrogate inside a
/// string literal replaced by `\ufffd`; everything else as it was.
fn lone_surrogates_replaced(text: &str) -> String {
    let unit = |s: &str| s.get(..4).and_then(|h| u16::from_str_radix(h, 16).ok());
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let mut taken = c.len_utf8();
        match c {
            '"' => in_string = !in_string,
            '\\' if in_string && rest[1..].starts_with('u') => {
                taken = 2;
                if let Some(u) = unit(&rest[2..]) {
                    taken = 6;
                    let paired = (0xD800..=0xDBFF).contains(&u)
                        && rest[6..].starts_with("\\u")
                        && unit(&rest[8..]).is_some_and(|lo| (0xDC00..=0xDFFF).contains(&lo));
                    if paired {
                        taken = 12;
                    } else if (0xD800..=0xDFFF).contains(&u) {
                        out.push_str("\\ufffd");
                        rest = &rest[taken..];
                        continue;
                    }
                }
            }
            '\\' if in_string => taken = 1 + rest[1..].chars().next().map_or(0, char::len_utf8),
            _ => {}
        }
        out.push_str(&rest[..taken]);
        rest = &rest[taken..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_surrogate_is_accepted_where_skipped_and_refused_where_read() {
        let skipped = r#"{"type":"event","event":"tick","junk":"\ud800"}"#;
        assert!(parse_inbound(skipped).is_ok());
        for read in [
            r#"{"type":"event","event":"t\ud800"}"#,
            r#"{"type":"res","id":"\udc00","ok":true}"#,
        ] {
            assert!(parse_inbound(read).is_err(), "{read}");
        }
    }

    #[test]
    fn lone_surrogate_escapes_and_only_they_are_replaced() {
        for (from, to) in [
            (r#"["\ud800"]"#, r#"["\ufffd"]"#),
            (r#"["\udc00\ud800x"]"#, r#"["\ufffd\ufffdx"]"#),
            (r#"["\ud83d\ude00"]"#, r#"["\ud83d\ude00"]"#),
            (r#"["\\ud800"]"#, r#"["\\ud800"]"#),
            (r#"["\"\ud800", "é\u0041"]"#, r#"["\"\ufffd", "é\u0041"]"#),
        ] {
            assert_eq!(lone_surrogates_replaced(from), to, "{from}");
        }
    }

    #[test]
    fn accepts_and_rejects_without_panicking() {
        for text in [
            r#"{"type":"event","event":"tick","payload":{"ts":5},"seq":3}"#,
            r#"{"type":"res","id":"a","ok":true,"payload":{"type":"hello-ok"}}"#,
            r#"{"type":"req","id":"b","method":"m","params":null}"#,
            r#"{"type":"event","event":"x","payload":1.5e300}"#,
            "{",
            "[]",
            "",
        ] {
            check_frame_parse(text.as_bytes());
        }
        check_frame_parse(&[0xff, 0xfe]);
    }

    /// Payloads the core reads in the frame's own pass, or nests too deep
    /// for a `Value`, still round-trip or are skipped, never panic.
    #[test]
    fn request_payloads_and_deep_nesting() {
        for text in [
            r#"{"type":"event","event":"node.invoke.request","payload":{"id":"a","timeoutMs":1.5,"extra":[{}],"paramsJSON":"{}"}}"#,
            r#"{"type":"event","event":"node.invoke.request","payload":"x"}"#,
            r#"{"type":"event","event":"node.invoke.request","payload":null,"seq":1}"#,
            r#"{"payload":{"id":5},"type":"event","event":"node.invoke.request"}"#,
        ] {
            check_frame_parse(text.as_bytes());
        }
        let deep = format!(
            r#"{{"type":"event","event":"e","payload":{}{}}}"#,
            "[".repeat(300),
            "]".repeat(300)
        );
        check_frame_parse(deep.as_bytes());
        let skipped = format!(
            r#"{{"type":"event","event":"e","x":{}{}}}"#,
            "[".repeat(300),
            "]".repeat(300)
        );
        check_frame_parse(skipped.as_bytes());
    }

    /// Found by `frame_parse` (fuzz/regressions/frame_parse/float-roundtrip-*):
    /// without serde_json's `float_roundtrip` feature, `1.4444444444444445e93`
    /// parses one ULP off, so `to_value()` re-serialised to a number that
    /// parsed to a different frame.
    #[test]
    fn floats_round_trip_through_to_value() {
        check_frame_parse(br#"{"type":"event","event":"e","payload":1.4444444444444445e93}"#);
        check_frame_parse(
            br#"{"type":"res","id":"x","ok":true,"payload":[1444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444]}"#,
        );
    }
}
