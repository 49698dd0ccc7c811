//! [`EventPayload`]: a gateway event's payload, handed on as the gateway
//! wrote it.

use alloc::borrow::ToOwned;
use alloc::boxed::Box;
use core::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// The payload of a gateway event the core does not handle itself: the
/// JSON text the gateway sent, checked to be well formed and not parsed.
///
/// The core hands these events on without reading them, and the gateway
/// sends one to every node every minute or so (`health`, about 1.3 KB), so
/// the payload stays text. Reading it into a tree of allocations would cost
/// every session that ignores it. Whoever wants the contents reads them into
/// their own type with [`parse`](Self::parse), or into a `Value` with
/// [`to_value`](Self::to_value).
///
/// Two payloads are equal when their text is: `{"a":1}` and `{ "a": 1 }`
/// differ. Nesting is not limited here, so [`to_value`](Self::to_value)
/// fails on a payload nested deeper than serde_json allows (128 levels).
#[derive(Clone)]
pub struct EventPayload(Box<RawValue>);

impl EventPayload {
    /// Takes a copy of `raw`.
    pub(crate) fn from_raw(raw: &RawValue) -> Self {
        EventPayload(raw.to_owned())
    }

    /// The JSON text, exactly as it arrived.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The payload read into `T`; the type may borrow from the text.
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.get())
    }

    /// The payload read into a `Value`.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        self.parse()
    }
}

impl PartialEq for EventPayload {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for EventPayload {}

impl fmt::Debug for EventPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl fmt::Display for EventPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

/// Writes the JSON text, not a string of it: as it is to a serde_json
/// writer (`to_string`, `to_writer`); into a `Value` (`to_value`) it is
/// parsed, and fails as [`EventPayload::to_value`] does.
impl Serialize for EventPayload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl TryFrom<&str> for EventPayload {
    type Error = serde_json::Error;

    /// Checks that `json` is one well-formed JSON value, as the core does
    /// with what the gateway sends (for drivers' and embedders' tests).
    fn try_from(json: &str) -> Result<Self, Self::Error> {
        RawValue::from_string(json.to_owned()).map(EventPayload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn keeps_the_text_and_reads_it_on_request() {
        let p = EventPayload::try_from(r#"{ "ts": 5, "x": [1, 2] }"#).unwrap();
        assert_eq!(p.get(), r#"{ "ts": 5, "x": [1, 2] }"#);
        assert_eq!(p.to_value().unwrap()["ts"], 5);
        #[derive(Deserialize)]
        struct Tick<'a> {
            ts: u64,
            #[serde(borrow)]
            x: &'a RawValue,
        }
        let t: Tick = p.parse().unwrap();
        assert_eq!((t.ts, t.x.get()), (5, "[1, 2]"));
        assert_eq!(serde_json::to_string(&p).unwrap(), p.get());
        assert_eq!(alloc::format!("{p:?}"), p.get());
        assert_eq!(p.to_string(), p.get());
    }

    #[test]
    fn only_well_formed_json_makes_a_payload() {
        for bad in ["", "{", "1 2", "{\"a\":}"] {
            assert!(EventPayload::try_from(bad).is_err(), "{bad:?}");
        }
        assert_ne!(
            EventPayload::try_from("{\"a\":1}").unwrap(),
            EventPayload::try_from("{ \"a\": 1 }").unwrap()
        );
    }

    #[test]
    fn a_payload_too_deep_for_a_value_is_kept_and_says_so_when_read() {
        let deep = alloc::format!("{}{}", "[".repeat(300), "]".repeat(300));
        let p = EventPayload::try_from(deep.as_str()).unwrap();
        assert_eq!(p.get().len(), 600);
        assert!(p.to_value().is_err());
    }
}
