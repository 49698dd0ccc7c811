//! `pin_normalize`: arbitrary strings as TLS pin texts.

use clawnode_core::Pin;

/// docs/protocol.md §7 written out a second time, as plainly as possible, to catch
/// the core's normalisation disagreeing with the spec ("two pin
/// normalisations that disagree" is a bug peers shipped).
///
/// Leading whitespace is dropped, then one leading `sha256:` or `sha-256:`
/// in any case, then every character that is not an ASCII hex digit; the
/// rest is lowercased. Returns the digits kept (whatever their number).
pub fn reference_normalize(text: &str) -> String {
    let t = text.trim_start();
    let lower_head: String = t.chars().take(8).collect::<String>().to_ascii_lowercase();
    let body = if lower_head.starts_with("sha256:") {
        &t[7..]
    } else if lower_head.starts_with("sha-256:") {
        &t[8..]
    } else {
        t
    };
    body.chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Feeds `data` (lossily decoded as UTF-8) to [`Pin::parse`] and
/// [`Pin::normalize`] and checks: no panic; the two agree; the result is 64
/// lowercase hex digits or an error carrying the text and its digit count;
/// the result agrees with [`reference_normalize`]; normalising a normalised
/// pin (and its uppercase, colon-separated, `SHA256:`-prefixed spelling)
/// gives it back unchanged.
pub fn check_pin_normalize(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();
    let parsed = Pin::parse(text);
    let normalized = Pin::normalize(text);
    let reference = reference_normalize(text);
    match (&parsed, &normalized) {
        (Ok(pin), Ok(norm)) => {
            assert_eq!(&pin.to_string(), norm, "parse and normalize disagree");
            assert_eq!(norm.len(), 64, "{norm:?}");
            assert!(
                norm.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "not lowercase hex: {norm:?}"
            );
            assert_eq!(
                norm, &reference,
                "core and docs/protocol.md §7 disagree on {text:?}"
            );
            assert_eq!(Pin::normalize(norm).as_ref(), Ok(norm), "not idempotent");
            let colons = norm
                .to_ascii_uppercase()
                .as_bytes()
                .chunks(2)
                .map(|c| std::str::from_utf8(c).expect("ascii"))
                .collect::<Vec<_>>()
                .join(":");
            for spelling in [format!("SHA256:{colons}"), format!("sha-256: {colons} ")] {
                assert_eq!(Pin::normalize(&spelling).as_ref(), Ok(norm), "{spelling:?}");
            }
            assert_eq!(Pin::parse(norm).as_ref(), Ok(pin));
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "parse and normalize disagree");
            assert_eq!(a.input, text, "the error must carry the text given");
            assert_ne!(a.hex_digits, 64);
            assert_eq!(
                a.hex_digits,
                reference.len(),
                "core and docs/protocol.md §7 count different digits in {text:?}"
            );
            let _ = a.to_string();
        }
        _ => panic!("parse {parsed:?} and normalize {normalized:?} disagree on {text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_spellings() {
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        for text in [
            hex.to_string(),
            format!("sha256:{hex}"),
            format!("  SHA-256:{}", hex.to_uppercase()),
            "sha256:".into(),
            "é sha256:".into(),
            String::new(),
        ] {
            check_pin_normalize(text.as_bytes());
        }
        assert_eq!(reference_normalize(" Sha-256:AB:cd"), "abcd");
    }
}
