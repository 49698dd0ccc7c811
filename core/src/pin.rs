//! TLS certificate pins (docs/protocol.md §7).

use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// A SHA-256 fingerprint of a leaf certificate's DER bytes.
///
/// Displayed as 64 lowercase hex digits, the one canonical form used for
/// comparison, storage and messages.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pin([u8; 32]);

/// A pin text that does not normalise to 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinError {
    /// The text as given.
    pub input: String,
    /// How many hex digits were left after normalisation.
    pub hex_digits: usize,
}

impl fmt::Display for PinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid TLS pin {:?}: expected a SHA-256 fingerprint (64 hex digits), found {} hex digits",
            self.input, self.hex_digits
        )
    }
}

impl core::error::Error for PinError {}

impl Pin {
    /// Wraps a raw SHA-256 digest.
    pub const fn from_sha256(digest: [u8; 32]) -> Self {
        Pin(digest)
    }

    /// The raw digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Normalises and parses a pin as docs/protocol.md §7 prescribes: an optional
    /// leading `sha256:` / `sha-256:` (any case) is dropped, then every
    /// non-hex character (colons, spaces) is dropped, then the rest must be
    /// exactly 64 hex digits.
    pub fn parse(text: &str) -> Result<Pin, PinError> {
        let trimmed = text.trim_start();
        let body = strip_prefix_ignore_case(trimmed, "sha256:")
            .or_else(|| strip_prefix_ignore_case(trimmed, "sha-256:"))
            .unwrap_or(trimmed);
        let mut out = [0u8; 32];
        let mut digits = 0usize;
        for c in body.chars() {
            let Some(v) = c.to_digit(16) else { continue };
            if digits < 64 {
                out[digits / 2] |= (v as u8) << if digits.is_multiple_of(2) { 4 } else { 0 };
            }
            digits += 1;
        }
        if digits != 64 {
            return Err(PinError {
                input: String::from(text),
                hex_digits: digits,
            });
        }
        Ok(Pin(out))
    }

    /// Normalises a pin text to its canonical 64-digit lowercase form.
    pub fn normalize(text: &str) -> Result<String, PinError> {
        Pin::parse(text).map(|p| alloc::format!("{p}"))
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pin({self})")
    }
}

/// A non-empty set of accepted pins. Ordered, so equality and iteration are
/// by value and deterministic.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PinSet(BTreeSet<Pin>);

impl PinSet {
    /// A set of at least one pin; `None` for an empty input.
    pub fn new(pins: impl IntoIterator<Item = Pin>) -> Option<PinSet> {
        let set: BTreeSet<Pin> = pins.into_iter().collect();
        (!set.is_empty()).then_some(PinSet(set))
    }

    /// Parses pin texts, failing on the first one that does not normalise.
    pub fn parse<S: AsRef<str>>(texts: impl IntoIterator<Item = S>) -> Result<PinSet, PinError> {
        let pins = texts
            .into_iter()
            .map(|t| Pin::parse(t.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        PinSet::new(pins).ok_or(PinError {
            input: String::new(),
            hex_digits: 0,
        })
    }

    /// Whether `pin` is accepted.
    pub fn contains(&self, pin: &Pin) -> bool {
        self.0.contains(pin)
    }

    /// The pins, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = &Pin> {
        self.0.iter()
    }

    /// How many pins the set holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a `PinSet` holds at least one pin.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for PinSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn accepts_the_usual_spellings() {
        let upper_colons: String = HEX
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| core::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        for text in [
            HEX.to_string(),
            alloc::format!("sha256:{HEX}"),
            alloc::format!("SHA-256:{upper_colons}"),
            alloc::format!("  {upper_colons} "),
        ] {
            assert_eq!(Pin::normalize(&text).unwrap(), HEX, "{text}");
        }
    }

    #[test]
    fn rejects_wrong_lengths_with_the_text() {
        let err = Pin::parse("sha256:abcd").unwrap_err();
        assert_eq!(err.input, "sha256:abcd");
        assert_eq!(err.hex_digits, 4);
        assert!(err.to_string().contains("sha256:abcd"));
        assert!(Pin::parse(&alloc::format!("{HEX}0")).is_err());
        assert!(Pin::parse("").is_err());
    }

    #[test]
    fn normalising_twice_is_stable() {
        let once = Pin::normalize(&alloc::format!("Sha256:{}", HEX.to_uppercase())).unwrap();
        assert_eq!(Pin::normalize(&once).unwrap(), once);
    }
}
