//! Frames on the wire (docs/protocol.md §2): parsing what the gateway sends,
//! reading its error objects, and serialising the requests the node sends.

use alloc::borrow::ToOwned;
use alloc::string::{String, ToString};
use core::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

/// An error object from the gateway.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct GatewayError {
    /// `error.code`.
    pub code: String,
    /// `error.message`.
    pub message: String,
    /// `error.details.code`, when present.
    pub detail_code: Option<String>,
    /// `error.details.recommendedNextStep`, when present.
    pub recommended_next_step: Option<String>,
    /// `error.retryAfterMs`, when present.
    pub retry_after_ms: Option<u64>,
    /// `error.retryable`, when present.
    pub retryable: Option<bool>,
    /// `error.details`, whole.
    pub details: Option<Value>,
}

/// A frame from the gateway, checked for shape but not for meaning.
#[derive(Clone, Debug, PartialEq)]
pub enum Inbound {
    /// `{"type":"event", ...}`
    Event {
        /// The event name.
        event: String,
        /// Its payload, when present.
        payload: Option<Value>,
        /// Its per-connection sequence number, when present.
        seq: Option<u64>,
    },
    /// `{"type":"res", ...}`
    Response {
        /// The id of the request it answers.
        id: String,
        /// Whether the request succeeded.
        ok: bool,
        /// The payload, when present.
        payload: Option<Value>,
        /// The error object, when present.
        error: Option<Value>,
    },
    /// `{"type":"req", ...}`: nodes are not sent requests, but it is a
    /// well-formed frame.
    Request {
        /// The request id.
        id: String,
        /// The method.
        method: String,
        /// The params, when present.
        params: Option<Value>,
    },
}

/// Why a frame was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON.
    NotJson(String),
    /// JSON, but not an object.
    NotAnObject,
    /// No `type`, or one that is not `event`, `res` or `req`.
    UnknownType(Option<String>),
    /// A required field is missing or has the wrong type.
    BadField(&'static str),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NotJson(e) => write!(f, "frame is not JSON: {e}"),
            ParseError::NotAnObject => f.write_str("frame is not a JSON object"),
            ParseError::UnknownType(Some(t)) => write!(f, "frame has unknown type {t:?}"),
            ParseError::UnknownType(None) => f.write_str("frame has no string \"type\""),
            ParseError::BadField(name) => {
                write!(f, "frame field {name:?} is missing or has the wrong type")
            }
        }
    }
}

impl core::error::Error for ParseError {}

/// Parses an inbound text frame.
pub fn parse_inbound(text: &str) -> Result<Inbound, ParseError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| ParseError::NotJson(e.to_string()))?;
    let Value::Object(mut obj) = value else {
        return Err(ParseError::NotAnObject);
    };
    let kind = match obj.get("type") {
        Some(Value::String(t)) => t.clone(),
        _ => return Err(ParseError::UnknownType(None)),
    };
    match kind.as_str() {
        "event" => {
            let event = take_string(&mut obj, "event")?;
            let seq = match obj.remove("seq") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_u64().ok_or(ParseError::BadField("seq"))?),
            };
            Ok(Inbound::Event {
                event,
                payload: take_opt(&mut obj, "payload"),
                seq,
            })
        }
        "res" => {
            let id = take_string(&mut obj, "id")?;
            let ok = obj
                .get("ok")
                .and_then(Value::as_bool)
                .ok_or(ParseError::BadField("ok"))?;
            Ok(Inbound::Response {
                id,
                ok,
                payload: take_opt(&mut obj, "payload"),
                error: take_opt(&mut obj, "error"),
            })
        }
        "req" => Ok(Inbound::Request {
            id: take_string(&mut obj, "id")?,
            method: take_string(&mut obj, "method")?,
            params: take_opt(&mut obj, "params"),
        }),
        _ => Err(ParseError::UnknownType(Some(kind))),
    }
}

impl Inbound {
    /// The frame as a JSON value; parsing its text gives `self` back (for
    /// the fuzzers' round-trip check).
    #[cfg(any(test, feature = "sim"))]
    pub fn to_value(&self) -> Value {
        let mut obj = Map::new();
        let put_opt = |obj: &mut Map<String, Value>, k: &str, v: &Option<Value>| {
            if let Some(v) = v {
                obj.insert(k.to_owned(), v.clone());
            }
        };
        match self {
            Inbound::Event {
                event,
                payload,
                seq,
            } => {
                obj.insert("type".into(), "event".into());
                obj.insert("event".into(), event.as_str().into());
                put_opt(&mut obj, "payload", payload);
                if let Some(s) = seq {
                    obj.insert("seq".into(), (*s).into());
                }
            }
            Inbound::Response {
                id,
                ok,
                payload,
                error,
            } => {
                obj.insert("type".into(), "res".into());
                obj.insert("id".into(), id.as_str().into());
                obj.insert("ok".into(), (*ok).into());
                put_opt(&mut obj, "payload", payload);
                put_opt(&mut obj, "error", error);
            }
            Inbound::Request { id, method, params } => {
                obj.insert("type".into(), "req".into());
                obj.insert("id".into(), id.as_str().into());
                obj.insert("method".into(), method.as_str().into());
                put_opt(&mut obj, "params", params);
            }
        }
        Value::Object(obj)
    }
}

fn take_string(obj: &mut Map<String, Value>, key: &'static str) -> Result<String, ParseError> {
    match obj.remove(key) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(ParseError::BadField(key)),
    }
}

/// A missing field and an explicit `null` both mean "absent".
fn take_opt(obj: &mut Map<String, Value>, key: &str) -> Option<Value> {
    obj.remove(key).filter(|v| !v.is_null())
}

/// Reads a gateway error object (`{code, message, details?, retryable?, retryAfterMs?}`).
pub(crate) fn gateway_error(error: Option<&Value>) -> GatewayError {
    let Some(e) = error else {
        return GatewayError {
            code: "UNKNOWN".into(),
            message: "error response without an error object".into(),
            ..GatewayError::default()
        };
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let details = e.get("details").filter(|d| !d.is_null()).cloned();
    GatewayError {
        code: text(e.get("code")).unwrap_or_else(|| "UNKNOWN".into()),
        message: text(e.get("message")).unwrap_or_default(),
        detail_code: text(details.as_ref().and_then(|d| d.get("code"))),
        recommended_next_step: text(details.as_ref().and_then(|d| d.get("recommendedNextStep"))),
        retry_after_ms: e
            .get("retryAfterMs")
            .or_else(|| details.as_ref().and_then(|d| d.get("retryAfterMs")))
            .and_then(Value::as_u64),
        retryable: e.get("retryable").and_then(Value::as_bool),
        details,
    }
}

/// A request frame on its way out. Borrowed, so the params are serialised
/// once, straight into the frame text, and never cloned.
#[derive(Serialize)]
struct RequestFrame<'a, P: ?Sized> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    method: &'a str,
    params: &'a P,
}

/// Serialises a request frame around `params`.
pub(crate) fn request<P: Serialize + ?Sized>(id: &str, method: &str, params: &P) -> String {
    let frame = RequestFrame {
        kind: "req",
        id,
        method,
        params,
    };
    // Only string-keyed maps and finite numbers reach here (serde_json's
    // `Value` cannot hold anything else), so serialisation cannot fail.
    serde_json::to_string(&frame).expect("request frames always serialise")
}

/// `node.invoke.result` params, borrowed.
#[derive(Serialize)]
pub(crate) struct ResultParams<'a> {
    pub id: &'a str,
    #[serde(rename = "nodeId")]
    pub node_id: &'a str,
    pub ok: bool,
    #[serde(rename = "payloadJSON", skip_serializing_if = "Option::is_none")]
    pub payload_json: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody<'a>>,
}

#[derive(Serialize)]
pub(crate) struct ErrorBody<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

/// `node.invoke.progress` params, borrowed.
#[derive(Serialize)]
pub(crate) struct ProgressParams<'a> {
    #[serde(rename = "invokeId")]
    pub invoke_id: &'a str,
    #[serde(rename = "nodeId")]
    pub node_id: &'a str,
    pub seq: u64,
    pub chunk: &'a str,
}

/// `node.event` params, borrowed.
#[derive(Serialize)]
pub(crate) struct EventParams<'a> {
    pub event: &'a str,
    #[serde(rename = "payloadJSON", skip_serializing_if = "Option::is_none")]
    pub payload_json: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_kinds_and_round_trips() {
        for text in [
            r#"{"type":"event","event":"tick","payload":{"ts":5},"seq":3}"#,
            r#"{"type":"res","id":"a","ok":false,"error":{"code":"X","message":"m"}}"#,
            r#"{"type":"req","id":"b","method":"m"}"#,
        ] {
            let f = parse_inbound(text).unwrap();
            let again = parse_inbound(&f.to_value().to_string()).unwrap();
            assert_eq!(f, again);
        }
    }

    #[test]
    fn rejects_with_a_reason() {
        assert!(matches!(parse_inbound("{"), Err(ParseError::NotJson(_))));
        assert_eq!(parse_inbound("[1]"), Err(ParseError::NotAnObject));
        assert_eq!(
            parse_inbound(r#"{"type":"event","event":"x","seq":-1}"#),
            Err(ParseError::BadField("seq"))
        );
        assert_eq!(
            parse_inbound(r#"{"type":"nope"}"#),
            Err(ParseError::UnknownType(Some("nope".into())))
        );
    }

    #[test]
    fn gateway_errors_are_read_whole_and_leniently() {
        let e = gateway_error(Some(&serde_json::json!({
            "code": "NOT_PAIRED", "message": "pair first", "retryable": false,
            "details": {"code": "PAIRING_REQUIRED", "recommendedNextStep": "wait_then_retry",
                        "retryAfterMs": 1500}
        })));
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("NOT_PAIRED", "pair first")
        );
        assert_eq!(e.detail_code.as_deref(), Some("PAIRING_REQUIRED"));
        assert_eq!(e.recommended_next_step.as_deref(), Some("wait_then_retry"));
        assert_eq!((e.retry_after_ms, e.retryable), (Some(1500), Some(false)));
        let none = gateway_error(None);
        assert_eq!(
            (none.code.as_str(), none.message.as_str()),
            ("UNKNOWN", "error response without an error object")
        );
        let odd = gateway_error(Some(&serde_json::json!({"code": 5})));
        assert_eq!((odd.code.as_str(), odd.message.as_str()), ("UNKNOWN", ""));
    }

    #[test]
    fn request_frames_are_valid_json() {
        let text = request("r\"1", "node.event", &serde_json::json!({"a":[1,2]}));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["id"], "r\"1");
        assert_eq!(v["params"]["a"][1], 2);
    }
}
