//! Frames on the wire (docs/protocol.md §2): parsing what the gateway sends,
//! reading its error objects, and serialising the requests the node sends.

use alloc::borrow::{Cow, ToOwned};
use alloc::string::{String, ToString};
use core::fmt;

use serde::de::{Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
#[cfg(any(test, feature = "sim"))]
use serde_json::Map;
use serde_json::Value;
use serde_json::error::Category;
use serde_json::value::RawValue;

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
///
/// Borrowed from the frame's text: names are `Cow`s that own only when the
/// JSON escapes them, and payloads stay raw JSON until the handler that
/// needs one reads it into the type it wants. A tick or an invoke request
/// is therefore never built into a `serde_json::Value`.
#[derive(Clone, Debug)]
pub enum Inbound<'a> {
    /// `{"type":"event", ...}`
    Event {
        /// The event name.
        event: Cow<'a, str>,
        /// Its payload, when present and not `null`.
        payload: Option<Payload<'a>>,
        /// Its per-connection sequence number, when present.
        seq: Option<u64>,
    },
    /// `{"type":"res", ...}`
    Response {
        /// The id of the request it answers.
        id: Cow<'a, str>,
        /// Whether the request succeeded.
        ok: bool,
        /// The payload, when present and not `null`.
        payload: Option<&'a RawValue>,
        /// The error object, when present and not `null`.
        error: Option<&'a RawValue>,
    },
    /// `{"type":"req", ...}`: nodes are not sent requests, but it is a
    /// well-formed frame.
    Request {
        /// The request id.
        id: Cow<'a, str>,
        /// The method.
        method: Cow<'a, str>,
        /// The params, when present and not `null`.
        params: Option<&'a RawValue>,
    },
}

/// Frames are equal when their fields are, payloads compared as JSON
/// values (raw text may differ in spacing and number spelling).
impl PartialEq for Inbound<'_> {
    fn eq(&self, other: &Self) -> bool {
        let same = |a: &Option<&RawValue>, b: &Option<&RawValue>| {
            let v = |r: &Option<&RawValue>| r.map(|r| value(r).ok());
            v(a) == v(b)
        };
        match (self, other) {
            (
                Inbound::Event {
                    event: e1,
                    payload: p1,
                    seq: s1,
                },
                Inbound::Event {
                    event: e2,
                    payload: p2,
                    seq: s2,
                },
            ) => e1 == e2 && s1 == s2 && p1 == p2,
            (
                Inbound::Response {
                    id: i1,
                    ok: o1,
                    payload: p1,
                    error: x1,
                },
                Inbound::Response {
                    id: i2,
                    ok: o2,
                    payload: p2,
                    error: x2,
                },
            ) => i1 == i2 && o1 == o2 && same(p1, p2) && same(x1, x2),
            (
                Inbound::Request {
                    id: i1,
                    method: m1,
                    params: p1,
                },
                Inbound::Request {
                    id: i2,
                    method: m2,
                    params: p2,
                },
            ) => i1 == i2 && m1 == m2 && same(p1, p2),
            _ => false,
        }
    }
}

/// An event's payload as [`parse_inbound`] left it.
#[derive(Clone, Debug)]
pub enum Payload<'a> {
    /// Raw JSON, read by the handler that needs it.
    Raw(&'a RawValue),
    /// The payload of a `node.invoke.request` whose `event` came before
    /// it, as the gateway sends them: read in the frame's own pass, so a
    /// large `paramsJSON` is scanned once. The members are those of
    /// [`INVOKE_REQUEST_KEYS`], in order; a payload that is not an object
    /// has none of them.
    InvokeRequest([Field<'a>; 5]),
}

impl<'a> Payload<'a> {
    /// The raw JSON, unless it was read as an invoke request.
    pub fn raw(&self) -> Option<&'a RawValue> {
        match self {
            Payload::Raw(r) => Some(r),
            Payload::InvokeRequest(_) => None,
        }
    }

    /// The members of an invoke request payload, in
    /// [`INVOKE_REQUEST_KEYS`] order, however it was read.
    pub fn invoke_request(self) -> [Field<'a>; 5] {
        match self {
            Payload::InvokeRequest(fields) => fields,
            Payload::Raw(r) => payload_members(Some(r), &INVOKE_REQUEST_KEYS),
        }
    }
}

impl PartialEq for Payload<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Payload::Raw(a), Payload::Raw(b)) => value(a).ok() == value(b).ok(),
            // The same payload, read in the frame's pass or after it.
            (a, b) => a.clone().invoke_request() == b.clone().invoke_request(),
        }
    }
}

/// The members of a `node.invoke.request` payload the node reads
/// (docs/protocol.md §5), in the order the invoke handler takes them.
pub const INVOKE_REQUEST_KEYS: [Key; 5] = [
    Key::Scalar("id"),
    Key::Scalar("command"),
    Key::Raw("paramsJSON"),
    Key::Scalar("timeoutMs"),
    Key::Scalar("idempotencyKey"),
];

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

/// Parses an inbound text frame, borrowing from `text`, in one pass.
pub fn parse_inbound<'a>(text: &'a str) -> Result<Inbound<'a>, ParseError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let parts = (&mut de)
        .deserialize_map(FrameVisitor)
        .and_then(|parts| de.end().map(|()| parts))
        .map_err(|e| match e.classify() {
            Category::Data => ParseError::NotAnObject,
            _ => ParseError::NotJson(e.to_string()),
        })?;
    // The payload was read as an invoke request's because `type` and
    // `event` said so when it came; a repeated key that says otherwise
    // later would leave it unreadable, so the frame is refused.
    if matches!(parts.payload, Some(Payload::InvokeRequest(_)))
        && !announces_invoke_request(&parts.kind, &parts.event)
    {
        return Err(ParseError::BadField("payload"));
    }
    let required = |field: Field<'a>, name| field.text().ok_or(ParseError::BadField(name));
    let Some(kind) = parts.kind.text() else {
        return Err(ParseError::UnknownType(None));
    };
    match &*kind {
        "event" => Ok(Inbound::Event {
            event: required(parts.event, "event")?,
            payload: parts.payload,
            seq: match parts.seq {
                Field::Absent | Field::Null => None,
                other => Some(other.uint().ok_or(ParseError::BadField("seq"))?),
            },
        }),
        "res" => Ok(Inbound::Response {
            id: required(parts.id, "id")?,
            ok: parts.ok.boolean().ok_or(ParseError::BadField("ok"))?,
            payload: parts.payload.and_then(|p| p.raw()),
            error: parts.error.raw(),
        }),
        "req" => Ok(Inbound::Request {
            id: required(parts.id, "id")?,
            method: required(parts.method, "method")?,
            params: parts.params.raw(),
        }),
        _ => Err(ParseError::UnknownType(Some(kind.into_owned()))),
    }
}

/// The members of a frame the core reads, before they are checked.
#[derive(Default)]
struct FrameParts<'a> {
    kind: Field<'a>,
    event: Field<'a>,
    seq: Field<'a>,
    payload: Option<Payload<'a>>,
    id: Field<'a>,
    ok: Field<'a>,
    error: Field<'a>,
    method: Field<'a>,
    params: Field<'a>,
}

struct FrameVisitor;

impl<'de> Visitor<'de> for FrameVisitor {
    type Value = FrameParts<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut parts = FrameParts::default();
        let scalar = |map: &mut A| read_member(map, false);
        let raw = |map: &mut A| read_member(map, true);
        while let Some(Text(name)) = map.next_key::<Text<'de>>()? {
            match &*name {
                "type" => parts.kind = scalar(&mut map)?,
                "event" => parts.event = scalar(&mut map)?,
                "seq" => parts.seq = scalar(&mut map)?,
                "id" => parts.id = scalar(&mut map)?,
                "ok" => parts.ok = scalar(&mut map)?,
                "method" => parts.method = scalar(&mut map)?,
                "error" => parts.error = raw(&mut map)?,
                "params" => parts.params = raw(&mut map)?,
                "payload" => {
                    parts.payload = if announces_invoke_request(&parts.kind, &parts.event) {
                        map.next_value::<RequestPayload<'de>>()?.0
                    } else {
                        raw(&mut map)?.raw().map(Payload::Raw)
                    };
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(parts)
    }
}

/// Whether `type` and `event`, as read so far, make the frame a
/// `node.invoke.request` event.
fn announces_invoke_request(kind: &Field<'_>, event: &Field<'_>) -> bool {
    matches!(kind, Field::Str(k) if k == "event")
        && matches!(event, Field::Str(e) if e == "node.invoke.request")
}

/// A `node.invoke.request` payload read in the frame's pass.
struct RequestPayload<'a>(Option<Payload<'a>>);

impl<'de> Deserialize<'de> for RequestPayload<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RequestPayloadVisitor).map(RequestPayload)
    }
}

struct RequestPayloadVisitor;

impl<'de> Visitor<'de> for RequestPayloadVisitor {
    type Value = Option<Payload<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        MemberVisitor(&INVOKE_REQUEST_KEYS)
            .visit_map(map)
            .map(|f| Some(Payload::InvokeRequest(f)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        ScalarVisitor.visit_seq(seq).map(|_| not_an_object())
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(not_an_object())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(not_an_object())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(not_an_object())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(not_an_object())
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(not_an_object())
    }
}

/// A payload that is not an object: it has none of the members.
fn not_an_object<'a>() -> Option<Payload<'a>> {
    Some(Payload::InvokeRequest(Default::default()))
}

fn raw_field(raw: &RawValue) -> Field<'_> {
    if raw.get() == "null" {
        Field::Null
    } else {
        Field::Raw(raw)
    }
}

impl Inbound<'_> {
    /// The frame as a JSON value; parsing its text gives `self` back (for
    /// the fuzzers' round-trip check). `None` when a payload is nested
    /// deeper than a `Value` may be (128 levels): such a frame parses, and
    /// each handler that reads the payload refuses it.
    #[cfg(any(test, feature = "sim"))]
    pub fn to_value(&self) -> Option<Value> {
        let mut obj = Map::new();
        let mut put = |k: &str, v: Value| {
            obj.insert(k.into(), v);
        };
        let raw = |r: &Option<&RawValue>| r.map(value).transpose();
        match self {
            Inbound::Event {
                event,
                payload,
                seq,
            } => {
                put("type", "event".into());
                put("event", (**event).into());
                match payload {
                    Some(Payload::Raw(r)) => put("payload", value(r).ok()?),
                    Some(Payload::InvokeRequest(fields)) => {
                        let mut p = Map::new();
                        for (key, field) in INVOKE_REQUEST_KEYS.iter().zip(fields) {
                            if let Some(v) = field.to_value()? {
                                p.insert(key.name().into(), v);
                            }
                        }
                        put("payload", Value::Object(p));
                    }
                    None => {}
                }
                if let Some(s) = seq {
                    put("seq", (*s).into());
                }
            }
            Inbound::Response {
                id,
                ok,
                payload,
                error,
            } => {
                put("type", "res".into());
                put("id", (**id).into());
                put("ok", (*ok).into());
                if let Some(p) = raw(payload).ok()? {
                    put("payload", p);
                }
                if let Some(e) = raw(error).ok()? {
                    put("error", e);
                }
            }
            Inbound::Request { id, method, params } => {
                put("type", "req".into());
                put("id", (**id).into());
                put("method", (**method).into());
                if let Some(p) = raw(params).ok()? {
                    put("params", p);
                }
            }
        }
        Some(Value::Object(obj))
    }
}

/// How a member of a JSON object is read.
#[derive(Clone, Copy, Debug)]
pub enum Key {
    /// Read as it is found: a string, a number, a boolean or `null`;
    /// anything else is skipped and reads as [`Field::Other`].
    Scalar(&'static str),
    /// Kept as raw JSON, to be read later by whoever needs it.
    Raw(&'static str),
}

impl Key {
    /// The member's name.
    pub fn name(self) -> &'static str {
        match self {
            Key::Scalar(n) | Key::Raw(n) => n,
        }
    }
}

/// One member of a JSON object as it was read, borrowed from the text.
#[derive(Clone, Debug, Default)]
pub enum Field<'a> {
    /// Not in the object.
    #[default]
    Absent,
    /// `null`.
    Null,
    /// A string; owned only when it had escapes.
    Str(Cow<'a, str>),
    /// A non-negative integer.
    UInt(u64),
    /// A negative integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// Raw JSON, for a [`Key::Raw`] member.
    Raw(&'a RawValue),
    /// A float, array or object under a [`Key::Scalar`] member.
    Other,
}

impl PartialEq for Field<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Field::Absent, Field::Absent)
            | (Field::Null, Field::Null)
            | (Field::Other, Field::Other) => true,
            (Field::Str(a), Field::Str(b)) => a == b,
            (Field::UInt(a), Field::UInt(b)) => a == b,
            (Field::Int(a), Field::Int(b)) => a == b,
            (Field::Bool(a), Field::Bool(b)) => a == b,
            (Field::Raw(a), Field::Raw(b)) => value(a).ok() == value(b).ok(),
            _ => false,
        }
    }
}

impl<'a> Field<'a> {
    /// The field as JSON that reads back as the same field (`{}` for
    /// [`Field::Other`]); `Some(None)` when absent, `None` when raw JSON
    /// nests too deep for a `Value`.
    #[cfg(any(test, feature = "sim"))]
    fn to_value(&self) -> Option<Option<Value>> {
        Some(Some(match self {
            Field::Absent => return Some(None),
            Field::Null => Value::Null,
            Field::Str(s) => Value::from(&**s),
            Field::UInt(n) => Value::from(*n),
            Field::Int(n) => Value::from(*n),
            Field::Bool(b) => Value::from(*b),
            Field::Raw(r) => value(r).ok()?,
            Field::Other => Value::Object(Map::new()),
        }))
    }

    /// The string, if it is one.
    pub fn text(self) -> Option<Cow<'a, str>> {
        match self {
            Field::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The non-negative integer, if it is one.
    pub fn uint(&self) -> Option<u64> {
        match self {
            Field::UInt(n) => Some(*n),
            _ => None,
        }
    }

    /// The integer, if it is one that fits an `i64`.
    pub fn int(&self) -> Option<i64> {
        match self {
            Field::UInt(n) => i64::try_from(*n).ok(),
            Field::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The boolean, if it is one.
    pub fn boolean(&self) -> Option<bool> {
        match self {
            Field::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The raw JSON of a [`Key::Raw`] member; absent and `null` both
    /// read as `None`.
    pub fn raw(self) -> Option<&'a RawValue> {
        match self {
            Field::Raw(r) => Some(r),
            _ => None,
        }
    }
}

/// The members of the JSON object in `text` named by `keys`, borrowed from
/// `text`, in the order of `keys`, read in one pass. Other members are
/// skipped unread; a repeated key keeps its last value, as `JSON.parse`
/// does. No allocation unless a key or a string has escapes. `None` when
/// `text` is not a JSON object.
pub(crate) fn members<'a, const N: usize>(
    text: &'a str,
    keys: &[Key; N],
) -> Option<[Field<'a>; N]> {
    let mut de = serde_json::Deserializer::from_str(text);
    let found = (&mut de).deserialize_map(MemberVisitor(keys)).ok()?;
    de.end().ok().map(|()| found)
}

/// Like [`members`], for a payload that may be absent; a payload that is
/// not an object has none of the members.
pub(crate) fn payload_members<'a, const N: usize>(
    payload: Option<&'a RawValue>,
    keys: &[Key; N],
) -> [Field<'a>; N] {
    payload
        .and_then(|p| members(p.get(), keys))
        .unwrap_or_else(|| core::array::from_fn(|_| Field::Absent))
}

struct MemberVisitor<'k, const N: usize>(&'k [Key; N]);

impl<'de, const N: usize> Visitor<'de> for MemberVisitor<'_, N> {
    type Value = [Field<'de>; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = core::array::from_fn(|_| Field::Absent);
        while let Some(Text(name)) = map.next_key::<Text<'de>>()? {
            match self.0.iter().position(|k| k.name() == name) {
                Some(i) => found[i] = read_member(&mut map, matches!(self.0[i], Key::Raw(_)))?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// The value of the member the map is at: kept as raw JSON when `raw`,
/// else read as a scalar (see [`Key`]).
fn read_member<'de, A: MapAccess<'de>>(map: &mut A, raw: bool) -> Result<Field<'de>, A::Error> {
    Ok(if raw {
        raw_field(map.next_value::<&'de RawValue>()?)
    } else {
        map.next_value::<Scalar<'de>>()?.0
    })
}

/// A JSON string, borrowed unless it has escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// Any JSON value, kept when it is a scalar.
struct Scalar<'a>(Field<'a>);

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor).map(Scalar)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Field::UInt(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(if v >= 0 {
            Field::UInt(v.unsigned_abs())
        } else {
            Field::Int(v)
        })
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Field::Other)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Field::Bool(v))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Field::Other)
    }
}

/// The string a raw JSON string literal holds, decoded into one
/// allocation of the right size (serde_json's own decoding grows a scratch
/// buffer and then copies it). For large strings read once, such as
/// `paramsJSON`. `None` when `raw` is not a string or holds an escape that
/// is not a character (a lone surrogate).
pub(crate) fn decode_string(raw: &RawValue) -> Option<String> {
    let mut rest = raw.get().strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(rest.len());
    // serde_json checked the literal's syntax while scanning it: every
    // backslash starts a valid escape and no quote is unescaped.
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let esc = rest.as_bytes().get(at + 1)?;
        rest = &rest[at + 2..];
        let c = match esc {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = |s: &str| u16::from_str_radix(s.get(..4)?, 16).ok();
                let hi = unit(rest)?;
                rest = &rest[4..];
                match hi {
                    0xD800..=0xDBFF => {
                        let lo = unit(rest.strip_prefix("\\u")?)?;
                        if !(0xDC00..=0xDFFF).contains(&lo) {
                            return None;
                        }
                        rest = &rest[6..];
                        let c =
                            0x10000 + ((u32::from(hi) - 0xD800) << 10) + (u32::from(lo) - 0xDC00);
                        char::from_u32(c)?
                    }
                    _ => char::from_u32(u32::from(hi))?,
                }
            }
            _ => return None,
        };
        out.push(c);
    }
    out.push_str(rest);
    Some(out)
}

/// `raw` read into a `Value`, for payloads handed on whole. Fails only
/// when it nests deeper than a `Value` may (128 levels).
pub(crate) fn value(raw: &RawValue) -> Result<Value, serde_json::Error> {
    serde_json::from_str(raw.get())
}

/// Reads a gateway error object (`{code, message, details?, retryable?, retryAfterMs?}`)
/// whole. One nested too deep for a `Value` reads as a missing one.
pub(crate) fn gateway_error(error: Option<&RawValue>) -> GatewayError {
    let error = error.and_then(|e| value(e).ok());
    let Some(e) = &error else {
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
            let again_text = f.to_value().unwrap().to_string();
            let again = parse_inbound(&again_text).unwrap();
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
        let e = gateway_error(Some(&raw_of(&serde_json::json!({
            "code": "NOT_PAIRED", "message": "pair first", "retryable": false,
            "details": {"code": "PAIRING_REQUIRED", "recommendedNextStep": "wait_then_retry",
                        "retryAfterMs": 1500}
        }))));
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
        let odd = gateway_error(Some(&raw_of(&serde_json::json!({"code": 5}))));
        assert_eq!((odd.code.as_str(), odd.message.as_str()), ("UNKNOWN", ""));
    }

    fn raw(text: &str) -> alloc::boxed::Box<RawValue> {
        RawValue::from_string(text.into()).unwrap()
    }

    fn raw_of(v: &Value) -> alloc::boxed::Box<RawValue> {
        serde_json::value::to_raw_value(v).unwrap()
    }

    #[test]
    fn decode_string_agrees_with_serde_json() {
        for text in [
            r#""""#,
            r#""plain""#,
            r#""{\"bins\":[\"sh\"]}""#,
            r#""\\ \/ \b \f \n \r \t""#,
            r#""\u00e9\u4e2d\ud83d\ude00 tail""#,
            r#""\uD83D\uDE00""#,
        ] {
            let want: String = serde_json::from_str(text).unwrap();
            assert_eq!(decode_string(&raw(text)).as_deref(), Some(&*want), "{text}");
        }
        // Not text, or not a string.
        for text in [
            r#""\ud800""#,
            r#""\udc00x""#,
            r#""\ud800\u0041""#,
            "5",
            "{}",
        ] {
            assert_eq!(decode_string(&raw(text)), None, "{text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn decode_string_reads_any_string_back(s in ".*", escape_all in proptest::bool::ANY) {
            let text = if escape_all {
                let mut t = String::from("\"");
                for unit in s.encode_utf16() {
                    t.push_str(&alloc::format!("\\u{unit:04x}"));
                }
                t.push('"');
                t
            } else {
                serde_json::to_string(&s).unwrap()
            };
            proptest::prop_assert_eq!(decode_string(&raw(&text)), Some(s));
        }
    }

    #[test]
    fn an_invoke_request_reads_the_same_in_either_member_order() {
        let payload = r#"{"id":"i\u0031","command":"system.which","paramsJSON":"{\"a\":1}","timeoutMs":5,"idempotencyKey":null,"extra":[1,{"x":2}]}"#;
        let first = alloc::format!(
            r#"{{"type":"event","event":"node.invoke.request","payload":{payload}}}"#
        );
        let last = alloc::format!(
            r#"{{"payload":{payload},"event":"node.invoke.request","type":"event"}}"#
        );
        fn fields(text: &str) -> [Field<'_>; 5] {
            match parse_inbound(text).unwrap() {
                Inbound::Event {
                    payload: Some(p), ..
                } => p.invoke_request(),
                other => panic!("{other:?}"),
            }
        }
        let one_pass = fields(&first);
        assert!(matches!(
            parse_inbound(&first).unwrap(),
            Inbound::Event {
                payload: Some(Payload::InvokeRequest(_)),
                ..
            }
        ));
        assert_eq!(one_pass, fields(&last));
        let [id, command, params, timeout, key] = one_pass;
        assert_eq!(id.text().as_deref(), Some("i1"));
        assert_eq!(command.text().as_deref(), Some("system.which"));
        assert_eq!(
            decode_string(params.raw().unwrap()).as_deref(),
            Some(r#"{"a":1}"#)
        );
        assert_eq!((timeout.uint(), key), (Some(5), Field::Null));
        // A repeated `type` or `event` that undoes what the payload was
        // read as: refused, never read with its payload lost.
        for text in [
            r#"{"type":"event","event":"node.invoke.request","payload":{"id":"a"},"type":"res","id":"r","ok":true}"#,
            r#"{"type":"event","event":"node.invoke.request","payload":{"id":"a"},"event":"tick"}"#,
        ] {
            assert_eq!(
                parse_inbound(text),
                Err(ParseError::BadField("payload")),
                "{text}"
            );
        }
        // A payload that is not an object has none of the members.
        let odd = r#"{"type":"event","event":"node.invoke.request","payload":[1]}"#;
        assert_eq!(fields(odd), <[Field<'_>; 5]>::default());
    }

    #[test]
    fn request_frames_are_valid_json() {
        let text = request("r\"1", "node.event", &serde_json::json!({"a":[1,2]}));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["id"], "r\"1");
        assert_eq!(v["params"]["a"][1], 2);
    }
}
