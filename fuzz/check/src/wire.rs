//! The byte format of the operation sequences, built on [`arbitrary`].
//!
//! Every field is read with [`arbitrary::Arbitrary`] on an
//! [`Unstructured`]: a `u8` is one byte, a `u16` two bytes little-endian
//! (zeros once the data runs out), a text is a length byte and that many
//! bytes (lossy UTF-8). [`Writer`] writes the same format, so seeds can be
//! written as operations and decode back to them exactly.

use arbitrary::{Arbitrary, Unstructured};

/// Reads one byte (0 once the data is exhausted).
pub(crate) fn byte(u: &mut Unstructured<'_>) -> arbitrary::Result<u8> {
    u8::arbitrary(u)
}

/// Reads a little-endian `u16`.
pub(crate) fn word(u: &mut Unstructured<'_>) -> arbitrary::Result<u16> {
    u16::arbitrary(u)
}

/// Reads a little-endian `u64`.
pub(crate) fn long(u: &mut Unstructured<'_>) -> arbitrary::Result<u64> {
    u64::arbitrary(u)
}

/// Reads a length-prefixed text (at most 255 bytes).
pub(crate) fn text(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    let len = usize::from(byte(u)?).min(u.len());
    Ok(String::from_utf8_lossy(u.bytes(len)?).into_owned())
}

/// Writes the format [`byte`], [`word`] and [`text`] read.
#[derive(Default)]
pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn byte(&mut self, b: u8) -> &mut Self {
        self.0.push(b);
        self
    }

    pub(crate) fn word(&mut self, w: u16) -> &mut Self {
        self.0.extend_from_slice(&w.to_le_bytes());
        self
    }

    pub(crate) fn long(&mut self, l: u64) -> &mut Self {
        self.0.extend_from_slice(&l.to_le_bytes());
        self
    }

    pub(crate) fn text(&mut self, s: &str) -> &mut Self {
        let b = &s.as_bytes()[..s.len().min(255)];
        self.0.push(b.len() as u8);
        self.0.extend_from_slice(b);
        self
    }
}

/// Most operations a single input decodes to: bounds the cost of one run.
pub(crate) const MAX_OPS: usize = 160;

/// Decodes operations until the data runs out (or [`MAX_OPS`]).
pub(crate) fn ops<'a, T: Arbitrary<'a>>(u: &mut Unstructured<'a>) -> Vec<T> {
    let mut out = Vec::new();
    while !u.is_empty() && out.len() < MAX_OPS {
        match T::arbitrary(u) {
            Ok(op) => out.push(op),
            Err(_) => break,
        }
    }
    out
}
