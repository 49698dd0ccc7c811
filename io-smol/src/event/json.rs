//! The `--events json` line format, defined once by the serde wire form
//! below; `io-smol/README.md` documents it and the tests pin it to that.

use clawnode_core::{EventPayload, Pin};
use serde::{Serialize, Serializer};
use serde_json::Value;

use super::model::{DisconnectCode, Event};

impl Event {
    /// One JSON object: `ts` (milliseconds since the Unix epoch), `event`,
    /// and the event's fields in camelCase.
    ///
    /// A gateway event's payload nested deeper than a `Value` may be (128
    /// levels) goes out as a string holding its JSON text.
    pub fn to_json(&self, ts_ms: u64) -> Value {
        let line = |event| Line { ts: ts_ms, event };
        // Only a payload too deep for a `Value` fails to convert (the wire
        // form has no map with non-string keys).
        serde_json::to_value(line(Wire::from(self))).unwrap_or_else(|_| {
            let Event::Broadcast {
                event,
                payload,
                seq,
            } = self
            else {
                unreachable!("only a gateway event's payload can fail to convert")
            };
            let wire = Wire::Broadcast {
                name: event,
                payload: None,
                seq: *seq,
            };
            let mut v = serde_json::to_value(line(wire)).expect("no payload converts");
            v["payload"] = payload.as_ref().map(|p| p.get().into()).unwrap_or_default();
            v
        })
    }

    /// One `--events json` line, without the newline: what `clawnode run
    /// --events json` prints, for any driver that reports the same way.
    pub fn to_json_line(&self, ts_ms: u64) -> String {
        self.to_json(ts_ms).to_string()
    }
}

/// One `--events json` line: `ts` beside the event's own fields.
#[derive(Serialize)]
struct Line<'a> {
    ts: u64,
    #[serde(flatten)]
    event: Wire<'a>,
}

/// The JSON form of an [`Event`], as `io-smol/README.md` documents it. It is
/// kept apart from `Event` so that the public enum's Rust shape (e.g. pins
/// as [`Pin`], a code as [`DisconnectCode`]) does not dictate the wire
/// format.
#[derive(Serialize)]
#[serde(
    tag = "event",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
enum Wire<'a> {
    Connecting {
        attempt: u64,
        url: &'a str,
    },
    Connected {
        attempt: u64,
        conn_id: &'a str,
        protocol: u32,
        tick_interval_ms: u64,
        server_version: Option<&'a str>,
    },
    Disconnected {
        attempt: u64,
        was_connected: bool,
        #[serde(serialize_with = "close_or_code")]
        code: &'a DisconnectCode,
        reason: &'a str,
        retry_in_ms: Option<u64>,
    },
    Paused {
        code: &'a str,
        reason: &'a str,
        hint: &'a str,
        // Only a pin mismatch has pins to show.
        #[serde(
            skip_serializing_if = "<[Pin]>::is_empty",
            serialize_with = "pin_texts"
        )]
        expected: &'a [Pin],
        #[serde(skip_serializing_if = "Option::is_none", serialize_with = "pin_text")]
        observed: Option<&'a Pin>,
    },
    Config {
        changed: bool,
    },
    Invoke {
        id: &'a str,
        command: &'a str,
        ok: bool,
        ms: u64,
    },
    SeqGap {
        expected: u64,
        got: u64,
    },
    // The JSON lines' name, kept when the variant was renamed.
    #[serde(rename = "gateway_event")]
    Broadcast {
        // `event` is the line's tag.
        name: &'a str,
        payload: Option<&'a EventPayload>,
        seq: Option<u64>,
    },
    Lagged {
        dropped: u64,
    },
}

impl<'a> From<&'a Event> for Wire<'a> {
    fn from(e: &'a Event) -> Self {
        match e {
            Event::Connecting { attempt, url } => Wire::Connecting {
                attempt: *attempt,
                url,
            },
            Event::Connected {
                attempt,
                conn_id,
                protocol,
                tick_interval_ms,
                server_version,
            } => Wire::Connected {
                attempt: *attempt,
                conn_id,
                protocol: *protocol,
                tick_interval_ms: *tick_interval_ms,
                server_version: server_version.as_deref(),
            },
            Event::Disconnected {
                attempt,
                was_connected,
                code,
                reason,
                retry_in_ms,
            } => Wire::Disconnected {
                attempt: *attempt,
                was_connected: *was_connected,
                code,
                reason,
                retry_in_ms: *retry_in_ms,
            },
            Event::Paused {
                code,
                reason,
                hint,
                expected,
                observed,
            } => Wire::Paused {
                code,
                reason,
                hint,
                expected,
                observed: observed.as_ref(),
            },
            Event::Config { changed } => Wire::Config { changed: *changed },
            Event::Invoke {
                id,
                command,
                ok,
                ms,
            } => Wire::Invoke {
                id,
                command,
                ok: *ok,
                ms: *ms,
            },
            Event::SeqGap { expected, got } => Wire::SeqGap {
                expected: *expected,
                got: *got,
            },
            Event::Broadcast {
                event,
                payload,
                seq,
            } => Wire::Broadcast {
                name: event,
                payload: payload.as_ref(),
                seq: *seq,
            },
            Event::Lagged { dropped } => Wire::Lagged { dropped: *dropped },
        }
    }
}

/// A close code as a number, any other code as a string, none as `null`:
/// readers tell a WebSocket close from a gateway or clawnode code by type.
fn close_or_code<S: Serializer>(code: &&DisconnectCode, s: S) -> Result<S::Ok, S::Error> {
    match code {
        DisconnectCode::Close(c) => s.serialize_u16(*c),
        DisconnectCode::Code(text) => s.serialize_str(text),
        DisconnectCode::None => s.serialize_none(),
    }
}

fn pin_texts<S: Serializer>(pins: &&[Pin], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(pins.iter().map(Pin::to_string))
}

fn pin_text<S: Serializer>(pin: &Option<&Pin>, s: S) -> Result<S::Ok, S::Error> {
    match pin {
        Some(p) => s.collect_str(p),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn pin(hex: &str) -> Pin {
        Pin::parse(hex).unwrap()
    }

    /// The `--events json` line of `event` at `ts` 7. serde_json's map is
    /// ordered by key, so the keys come out sorted.
    fn line(event: Event) -> String {
        let v = event.to_json(7);
        assert_eq!(v["event"], event.name(), "the tag is the event's name");
        v.to_string()
    }

    /// One event of each kind (and each shape of the optional fields) with
    /// its exact line.
    fn cases() -> Vec<(Event, String)> {
        let cases = [
            (
                Event::Connecting {
                    attempt: 1,
                    url: "wss://gw.example:18789".into(),
                },
                r#"{"attempt":1,"event":"connecting","ts":7,"url":"wss://gw.example:18789"}"#,
            ),
            (
                Event::Connected {
                    attempt: 2,
                    conn_id: "c-1".into(),
                    protocol: 3,
                    tick_interval_ms: 15000,
                    server_version: Some("2026.1.0".into()),
                },
                r#"{"attempt":2,"connId":"c-1","event":"connected","protocol":3,"serverVersion":"2026.1.0","tickIntervalMs":15000,"ts":7}"#,
            ),
            (
                Event::Connected {
                    attempt: 2,
                    conn_id: "c-1".into(),
                    protocol: 3,
                    tick_interval_ms: 15000,
                    server_version: None,
                },
                r#"{"attempt":2,"connId":"c-1","event":"connected","protocol":3,"serverVersion":null,"tickIntervalMs":15000,"ts":7}"#,
            ),
            (
                Event::Disconnected {
                    attempt: 3,
                    was_connected: true,
                    code: DisconnectCode::Close(1012),
                    reason: "service restart".into(),
                    retry_in_ms: Some(250),
                },
                r#"{"attempt":3,"code":1012,"event":"disconnected","reason":"service restart","retryInMs":250,"ts":7,"wasConnected":true}"#,
            ),
            (
                Event::Disconnected {
                    attempt: 4,
                    was_connected: false,
                    code: DisconnectCode::Code("AUTH_TOKEN_MISMATCH".into()),
                    reason: "token mismatch".into(),
                    retry_in_ms: None,
                },
                r#"{"attempt":4,"code":"AUTH_TOKEN_MISMATCH","event":"disconnected","reason":"token mismatch","retryInMs":null,"ts":7,"wasConnected":false}"#,
            ),
            (
                Event::Disconnected {
                    attempt: 5,
                    was_connected: true,
                    code: DisconnectCode::None,
                    reason: "connection ended".into(),
                    retry_in_ms: Some(1000),
                },
                r#"{"attempt":5,"code":null,"event":"disconnected","reason":"connection ended","retryInMs":1000,"ts":7,"wasConnected":true}"#,
            ),
            (
                Event::Paused {
                    code: "AUTH_TOKEN_MISMATCH".into(),
                    reason: "authentication refused".into(),
                    hint: "check the token".into(),
                    expected: Vec::new(),
                    observed: None,
                },
                r#"{"code":"AUTH_TOKEN_MISMATCH","event":"paused","hint":"check the token","reason":"authentication refused","ts":7}"#,
            ),
            (
                Event::Paused {
                    code: "TLS_PIN_MISMATCH".into(),
                    reason: "certificate does not match the pinned fingerprint".into(),
                    hint: "re-pin".into(),
                    expected: vec![pin(A), pin(B)],
                    observed: Some(pin(B)),
                },
                &format!(
                    r#"{{"code":"TLS_PIN_MISMATCH","event":"paused","expected":["{A}","{B}"],"hint":"re-pin","observed":"{B}","reason":"certificate does not match the pinned fingerprint","ts":7}}"#
                ),
            ),
            (
                Event::Config { changed: true },
                r#"{"changed":true,"event":"config","ts":7}"#,
            ),
            (
                Event::Invoke {
                    id: "i-1".into(),
                    command: "system.which".into(),
                    ok: false,
                    ms: 12,
                },
                r#"{"command":"system.which","event":"invoke","id":"i-1","ms":12,"ok":false,"ts":7}"#,
            ),
            (
                Event::SeqGap {
                    expected: 8,
                    got: 10,
                },
                r#"{"event":"seq_gap","expected":8,"got":10,"ts":7}"#,
            ),
            (
                Event::Broadcast {
                    event: "presence".into(),
                    payload: Some(EventPayload::try_from(r#"{"n":1}"#).unwrap()),
                    seq: Some(9),
                },
                r#"{"event":"gateway_event","name":"presence","payload":{"n":1},"seq":9,"ts":7}"#,
            ),
            (
                Event::Broadcast {
                    event: "tick".into(),
                    payload: None,
                    seq: None,
                },
                r#"{"event":"gateway_event","name":"tick","payload":null,"seq":null,"ts":7}"#,
            ),
            (
                Event::Lagged { dropped: 42 },
                r#"{"dropped":42,"event":"lagged","ts":7}"#,
            ),
        ];
        cases.into_iter().map(|(e, l)| (e, l.to_owned())).collect()
    }

    /// A payload is written compactly whatever its spacing, and one too
    /// deep for a `Value` goes out as its JSON text in a string, never a
    /// panic: the line is one line either way.
    #[test]
    fn payloads_make_one_line_however_they_are_spaced_or_nested() {
        let event = |p: &str| Event::Broadcast {
            event: "e".into(),
            payload: Some(EventPayload::try_from(p).unwrap()),
            seq: None,
        };
        assert_eq!(
            event("{\n  \"a\": [1,\n 2]\n}").to_json_line(7),
            r#"{"event":"gateway_event","name":"e","payload":{"a":[1,2]},"seq":null,"ts":7}"#
        );
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let line = event(&deep).to_json_line(7);
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["payload"], Value::String(deep), "{line}");
        assert_eq!(v["name"], "e");
    }

    /// The lines stay exactly what they are: a change to the wire form
    /// fails here, and then the README needs the same change.
    #[test]
    fn json_lines_are_stable() {
        for (event, expected) in cases() {
            assert_eq!(line(event), expected);
        }
    }

    /// The fields of each event in the README's `--events json` table:
    /// (event, required fields, optional fields marked `name?`).
    fn documented() -> Vec<(String, BTreeSet<String>, BTreeSet<String>)> {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("## `--events json`")
            .nth(1)
            .expect("README has a `--events json` section");
        let section = section.split("\n## ").next().unwrap_or(section);
        let mut events = Vec::new();
        for row in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let name = cells[1].trim_matches('`').to_owned();
            // Parenthesised text describes values (e.g. example codes), not fields.
            let mut fields = String::new();
            let mut depth = 0;
            for c in cells[2].chars() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ if depth == 0 => fields.push(c),
                    _ => {}
                }
            }
            let (mut required, mut optional) = (BTreeSet::new(), BTreeSet::new());
            for (i, part) in fields.split('`').enumerate() {
                // Odd parts are inside backticks; `?` right after marks it optional.
                if i % 2 == 1 {
                    let next = fields.split('`').nth(i + 1).unwrap_or("");
                    if next.starts_with('?') {
                        optional.insert(part.to_owned());
                    } else {
                        required.insert(part.to_owned());
                    }
                }
            }
            events.push((name, required, optional));
        }
        events
    }

    /// Every documented event is produced with exactly its documented
    /// fields (plus `ts` and `event`), and every event the `clawnode` binary
    /// prints is documented.
    #[test]
    fn json_lines_match_the_readme() {
        let documented = documented();
        assert!(documented.len() >= 7, "{documented:?}");
        let cases = cases();
        for (name, required, optional) in &documented {
            let lines: Vec<Value> = cases
                .iter()
                .filter(|(e, _)| e.name() == name)
                .map(|(e, _)| e.to_json(7))
                .collect();
            assert!(!lines.is_empty(), "no case for the documented {name}");
            let mut seen_optional = BTreeSet::new();
            for v in lines {
                let mut keys: BTreeSet<String> = v.as_object().unwrap().keys().cloned().collect();
                assert!(keys.remove("ts") && keys.remove("event"), "{v}");
                assert!(keys.is_superset(required), "{name}: {v} lacks {required:?}");
                let extra: BTreeSet<_> = keys.difference(required).cloned().collect();
                assert!(
                    extra.is_subset(optional),
                    "{name}: {v} has undocumented {extra:?}"
                );
                seen_optional.extend(extra);
            }
            assert_eq!(
                &seen_optional, optional,
                "{name}: optional fields not covered"
            );
        }
        for (event, _) in &cases {
            // The binary leaves gateway events to embedders (it only logs
            // them), so the README does not list them.
            if !matches!(event, Event::Broadcast { .. }) {
                assert!(
                    documented.iter().any(|(n, _, _)| n == event.name()),
                    "{} is not in the README",
                    event.name()
                );
            }
        }
    }
}
