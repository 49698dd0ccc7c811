//! The gateway's setup code (`oc-pair://…`), as `clawnode run --pair`
//! reads it.
//!
//! A setup code is base64url (no padding) of a JSON object minted by the
//! gateway (`openclaw gateway call device.pair.setupCode`): the gateway's
//! URL, a single-use bootstrap token that lives ten minutes, when it
//! expires, and the SHA-256 pin of the gateway's certificate for a `wss://`
//! URL (docs/protocol.md §3). The `oc-pair://` prefix is optional.
//!
//! Decoding checks every part and names the one that is wrong. A plaintext
//! `ws://` URL is accepted for loopback only, as everywhere in clawnode:
//! the official host also accepts private addresses, `.local` and
//! `.ts.net`, where the single-use token would still cross a network in
//! clear.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clawnode_core::{GatewayUrl, Secret};
use serde::Deserialize;

/// The longest setup code read (a real one is about 250 characters).
pub const MAX_SETUP_CODE_CHARS: usize = 8 * 1024;

/// A decoded setup code.
#[derive(Clone, PartialEq, Eq)]
pub struct SetupCode {
    /// The gateway URL (`url`).
    pub url: GatewayUrl,
    /// Further URLs the gateway offered (`urls`), first one first; the
    /// primary `url` is the one used.
    pub urls: Vec<String>,
    /// The single-use bootstrap token. Never written anywhere.
    pub bootstrap_token: Secret,
    /// When the code expires (`expiresAtMs`, Unix milliseconds).
    pub expires_at_ms: Option<u64>,
    /// The certificate pin for `url`, as 64 lowercase hex digits.
    pub tls_fingerprint: Option<String>,
}

impl fmt::Debug for SetupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetupCode")
            .field("url", &self.url)
            .field("urls", &self.urls)
            .field("bootstrap_token", &"<redacted>")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("tls_fingerprint", &self.tls_fingerprint)
            .finish()
    }
}

/// Why a setup code was refused. No variant carries the bootstrap token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SetupCodeError {
    /// Too long to be a setup code.
    #[error("setup code: {0} characters is too long for a setup code; is it the right text?")]
    TooLong(usize),
    /// Not base64url: the offending character and its position.
    #[error(
        "setup code: character {0:?} at position {1} is not base64url (A-Z a-z 0-9 - _, no padding); \
         copy the whole code"
    )]
    NotBase64(char, usize),
    /// Decodes, but not to a JSON object.
    #[error("setup code: it decodes to no JSON object ({0}); copy the whole code")]
    NotJson(String),
    /// A field is missing or wrong.
    #[error("setup code: `{field}` {why}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// The code expired.
    #[error(
        "setup code: it expired {ago_s} s ago (expiresAtMs {at_ms}); ask the gateway's operator for a new one"
    )]
    Expired {
        /// When it expired.
        at_ms: u64,
        /// How long ago, in seconds.
        ago_s: u64,
    },
    /// A `ws://` URL to a host other than loopback.
    #[error(
        "setup code: `url` {0} is plaintext ws:// to a host other than loopback; the bootstrap \
         token would cross the network in clear: have the gateway serve wss:// (gateway.tls)"
    )]
    Plaintext(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    url: Option<serde_json::Value>,
    urls: Option<serde_json::Value>,
    bootstrap_token: Option<serde_json::Value>,
    expires_at_ms: Option<serde_json::Value>,
    tls_fingerprint: Option<serde_json::Value>,
}

fn field(field: &'static str, why: impl Into<String>) -> SetupCodeError {
    SetupCodeError::Field {
        field,
        why: why.into(),
    }
}

/// Decodes `text` (with or without `oc-pair://`, surrounding spaces
/// ignored) as of `now_ms` (Unix milliseconds).
pub fn decode(text: &str, now_ms: u64) -> Result<SetupCode, SetupCodeError> {
    let text = text.trim();
    if text.len() > MAX_SETUP_CODE_CHARS {
        return Err(SetupCodeError::TooLong(text.len()));
    }
    let body = match text.get(..10) {
        Some(p) if p.eq_ignore_ascii_case("oc-pair://") => &text[10..],
        _ => text,
    };
    if let Some((i, c)) = body
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(SetupCodeError::NotBase64(c, i));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|e| SetupCodeError::NotJson(e.to_string()))?;
    let wire: Wire = serde_json::from_slice(&bytes).map_err(|e| {
        // serde's message quotes no input here beyond types and positions.
        SetupCodeError::NotJson(e.to_string())
    })?;

    let url_text = match wire.url {
        Some(serde_json::Value::String(s)) => s,
        Some(_) => return Err(field("url", "is not a string")),
        None => return Err(field("url", "is missing")),
    };
    let url = GatewayUrl::parse(&url_text).map_err(|e| {
        if url_text
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case("ws://"))
        {
            SetupCodeError::Plaintext(url_text.clone())
        } else {
            field("url", format!("{url_text:?} is not a gateway URL: {e}"))
        }
    })?;
    let token = match wire.bootstrap_token {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Secret::new(s.trim()),
        Some(serde_json::Value::String(_)) => return Err(field("bootstrapToken", "is empty")),
        Some(_) => return Err(field("bootstrapToken", "is not a string")),
        None => return Err(field("bootstrapToken", "is missing")),
    };
    let urls = match wire.urls {
        None => Vec::new(),
        Some(serde_json::Value::Array(list)) if (1..=8).contains(&list.len()) => {
            let mut out = Vec::with_capacity(list.len());
            for u in list {
                match u.as_str().map(GatewayUrl::parse) {
                    Some(Ok(_)) => out.push(u.as_str().unwrap_or_default().to_owned()),
                    _ => return Err(field("urls", format!("holds {u}, not a gateway URL"))),
                }
            }
            out
        }
        Some(_) => return Err(field("urls", "is not a list of 1 to 8 URLs")),
    };
    let expires_at_ms = match wire.expires_at_ms {
        None => None,
        Some(v) => match v.as_u64() {
            Some(ms) if ms < (1 << 53) => Some(ms),
            _ => {
                return Err(field(
                    "expiresAtMs",
                    format!("{v} is not a time in milliseconds"),
                ));
            }
        },
    };
    if let Some(at_ms) = expires_at_ms
        && at_ms <= now_ms
    {
        return Err(SetupCodeError::Expired {
            at_ms,
            ago_s: (now_ms - at_ms) / 1000,
        });
    }
    let tls_fingerprint = match wire.tls_fingerprint {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(normalize_fingerprint(&s).ok_or_else(|| {
            field(
                "tlsFingerprint",
                format!("{s:?} is not a SHA-256 fingerprint (64 hex digits)"),
            )
        })?),
        Some(_) => return Err(field("tlsFingerprint", "is not a string")),
    };
    if tls_fingerprint.is_some() && !url.is_secure() {
        return Err(field(
            "tlsFingerprint",
            format!("is given for {url_text}, which is not wss://"),
        ));
    }
    Ok(SetupCode {
        url,
        urls,
        bootstrap_token: token,
        expires_at_ms,
        tls_fingerprint,
    })
}

/// `sha256:`-prefixed or bare, 64 hex digits or 32 colon-separated pairs,
/// as 64 lowercase hex digits.
fn normalize_fingerprint(s: &str) -> Option<String> {
    let s = s.trim();
    let s = match s.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("sha256:") => &s[7..],
        _ => s,
    };
    let hex: String = if s.contains(':') {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 32 || parts.iter().any(|p| p.len() != 2) {
            return None;
        }
        parts.concat()
    } else {
        s.to_owned()
    };
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000_000;
    const PIN: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn code(v: serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn good() -> serde_json::Value {
        json!({"url": "wss://10.0.0.5:18789", "bootstrapToken": "boot-secret",
               "expiresAtMs": NOW + 600_000, "tlsFingerprint": PIN})
    }

    #[test]
    fn the_gateways_code_decodes_with_or_without_the_prefix() {
        for text in [
            code(good()),
            format!("oc-pair://{}", code(good())),
            format!("  OC-PAIR://{}\n", code(good())),
        ] {
            let c = decode(&text, NOW).unwrap();
            assert_eq!(c.url.as_str(), "wss://10.0.0.5:18789/");
            assert_eq!(c.bootstrap_token, Secret::new("boot-secret"));
            assert_eq!(c.tls_fingerprint.as_deref(), Some(PIN));
            assert_eq!(c.expires_at_ms, Some(NOW + 600_000));
        }
        let mut v = good();
        v["tlsFingerprint"] = format!("SHA256:{}", PIN.to_uppercase()).into();
        assert_eq!(
            decode(&code(v), NOW).unwrap().tls_fingerprint.as_deref(),
            Some(PIN)
        );
        let mut v = good();
        let pairs: Vec<String> = PIN
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        v["tlsFingerprint"] = pairs.join(":").into();
        assert_eq!(
            decode(&code(v), NOW).unwrap().tls_fingerprint.as_deref(),
            Some(PIN)
        );
    }

    #[test]
    fn each_wrong_part_is_named_and_the_token_never_shows() {
        let with = |k: &str, val: serde_json::Value| {
            let mut v = good();
            if val.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = val;
            }
            decode(&code(v), NOW).unwrap_err()
        };
        let cases = [
            (with("url", json!(null)), "`url` is missing"),
            (with("url", json!(5)), "`url` is not a string"),
            (with("url", json!("http://x")), "`url` \"http://x\""),
            (
                with("bootstrapToken", json!(null)),
                "`bootstrapToken` is missing",
            ),
            (
                with("bootstrapToken", json!(" ")),
                "`bootstrapToken` is empty",
            ),
            (with("expiresAtMs", json!(-1)), "`expiresAtMs` -1"),
            (
                with("tlsFingerprint", json!("abc")),
                "`tlsFingerprint` \"abc\"",
            ),
            (with("urls", json!([])), "`urls` is not a list"),
            (with("urls", json!(["nope"])), "`urls` holds \"nope\""),
        ];
        for (e, needle) in cases {
            let text = e.to_string();
            assert!(text.contains(needle), "{text} lacks {needle}");
            assert!(!text.contains("boot-secret"), "{text}");
        }
        let expired = with("expiresAtMs", json!(NOW - 61_000));
        assert_eq!(
            expired,
            SetupCodeError::Expired {
                at_ms: NOW - 61_000,
                ago_s: 61
            }
        );
        assert!(
            expired
                .to_string()
                .contains("ask the gateway's operator for a new one")
        );
        assert_eq!(
            decode("oc-pair://abc=", NOW).unwrap_err(),
            SetupCodeError::NotBase64('=', 3)
        );
        assert!(matches!(
            decode(&URL_SAFE_NO_PAD.encode("[1]"), NOW),
            Err(SetupCodeError::NotJson(_))
        ));
        assert!(matches!(
            decode(&"A".repeat(MAX_SETUP_CODE_CHARS + 1), NOW),
            Err(SetupCodeError::TooLong(_))
        ));
        let debug = format!("{:?}", decode(&code(good()), NOW).unwrap());
        assert!(!debug.contains("boot-secret"), "{debug}");
    }

    #[test]
    fn plaintext_is_refused_beyond_loopback() {
        let plain = |url: &str| {
            let mut v = good();
            v["url"] = url.into();
            v.as_object_mut().unwrap().remove("tlsFingerprint");
            decode(&code(v), NOW)
        };
        for ok in [
            "ws://127.0.0.1:18789",
            "ws://localhost:18789",
            "ws://[::1]:18789",
        ] {
            assert!(plain(ok).is_ok(), "{ok}: {:?}", plain(ok));
        }
        for bad in [
            "ws://8.8.8.8:18789",
            "ws://gateway.example.com",
            "ws://192.168.1.20:18789",
            "ws://box.local:18789",
        ] {
            assert_eq!(plain(bad), Err(SetupCodeError::Plaintext(bad.into())));
        }
        let mut v = good();
        v["url"] = "ws://127.0.0.1:1".into();
        assert!(
            decode(&code(v), NOW)
                .unwrap_err()
                .to_string()
                .contains("not wss://")
        );
    }
}
