//! Session inputs: everything a caller configures, compared by value.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::{String, ToString};
use core::fmt;

use crate::pin::{PinError, PinSet};

/// A validated gateway address: `ws://` or `wss://`, with a host.
///
/// Equality is by the normalised text, so two spellings of the same URL that
/// the WHATWG parser normalises alike (`WSS://Host:443/` and `wss://host`) are
/// the same gateway.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct GatewayUrl {
    text: String,
    secure: bool,
    host: String,
    port: u16,
    loopback: bool,
}

/// Why a session input was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The URL does not parse.
    MalformedUrl {
        /// The text given.
        url: String,
        /// What the parser said.
        reason: String,
    },
    /// The URL's scheme is not `ws` or `wss`.
    WrongScheme {
        /// The text given.
        url: String,
        /// The scheme found.
        scheme: String,
    },
    /// The URL has no host.
    MissingHost {
        /// The text given.
        url: String,
    },
    /// The URL carries credentials (`user:password@host`). Refused: they
    /// would travel in every log line and event that names the URL.
    UserInfo {
        /// The text given, with the credentials blanked out.
        url: String,
    },
    /// Plain `ws://` to a host that is not loopback.
    InsecureRemote {
        /// The text given.
        url: String,
    },
    /// Pins or trust-on-first-use were asked for on a plain `ws://` URL.
    TlsOnPlainUrl {
        /// The text given.
        url: String,
    },
    /// A pin did not normalise to 64 hex digits.
    Pin(PinError),
    /// A pinned policy with no pin.
    NoPins,
    /// A trust-on-first-use policy without a store key.
    EmptyTofuKey,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::MalformedUrl { url, reason } => {
                write!(f, "malformed gateway URL {url:?}: {reason}")
            }
            ConfigError::WrongScheme { url, scheme } => write!(
                f,
                "gateway URL {url:?} has scheme {scheme:?}; use ws:// (loopback) or wss://"
            ),
            ConfigError::MissingHost { url } => write!(f, "gateway URL {url:?} has no host"),
            ConfigError::UserInfo { url } => write!(
                f,
                "gateway URL {url:?} carries credentials; remove them from the URL and configure the token or password instead"
            ),
            ConfigError::InsecureRemote { url } => write!(
                f,
                "gateway URL {url:?} is plain ws:// to a non-loopback host; use wss://"
            ),
            ConfigError::TlsOnPlainUrl { url } => write!(
                f,
                "TLS pins or trust-on-first-use were given for the plain ws:// URL {url:?}; use wss://"
            ),
            ConfigError::Pin(e) => e.fmt(f),
            ConfigError::NoPins => f.write_str("a pinned TLS policy needs at least one pin"),
            ConfigError::EmptyTofuKey => {
                f.write_str("trust-on-first-use needs a non-empty store key")
            }
        }
    }
}

impl core::error::Error for ConfigError {}

impl From<PinError> for ConfigError {
    fn from(e: PinError) -> Self {
        ConfigError::Pin(e)
    }
}

/// `text` for an error message: everything between `://` and the last `@`
/// replaced by `***`, so that no message can carry a secret typed into a
/// URL — even one the URL parser could not make sense of (a password
/// holding `/`, say). A path with an `@` is blanked too; only error text
/// uses this.
fn without_userinfo(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    match text[start..].rfind('@') {
        Some(at) => format!("{}***{}", &text[..start], &text[start + at..]),
        None => text.to_string(),
    }
}

impl GatewayUrl {
    /// Parses and validates a gateway URL.
    /// Credentials in the URL are refused, and never echoed in the error.
    pub fn parse(text: &str) -> Result<GatewayUrl, ConfigError> {
        let parsed = url::Url::parse(text.trim()).map_err(|e| ConfigError::MalformedUrl {
            url: without_userinfo(text),
            reason: e.to_string(),
        })?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(ConfigError::UserInfo {
                url: without_userinfo(text),
            });
        }
        let secure = match parsed.scheme() {
            "wss" => true,
            "ws" => false,
            other => {
                return Err(ConfigError::WrongScheme {
                    url: text.to_string(),
                    scheme: other.to_string(),
                });
            }
        };
        let (host, loopback) = match parsed.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => {
                (d.to_string(), d.eq_ignore_ascii_case("localhost"))
            }
            Some(url::Host::Ipv4(ip)) => (ip.to_string(), ip.is_loopback()),
            Some(url::Host::Ipv6(ip)) => (ip.to_string(), ip.is_loopback()),
            _ => {
                return Err(ConfigError::MissingHost {
                    url: text.to_string(),
                });
            }
        };
        if !secure && !loopback {
            return Err(ConfigError::InsecureRemote {
                url: text.to_string(),
            });
        }
        let port = parsed
            .port_or_known_default()
            .unwrap_or(if secure { 443 } else { 80 });
        Ok(GatewayUrl {
            text: parsed.as_str().to_string(),
            secure,
            host,
            port,
            loopback,
        })
    }

    /// The normalised URL text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this is `wss://`.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The host name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, the scheme's default when the URL names none.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the host is a loopback address or `localhost`.
    pub fn is_loopback(&self) -> bool {
        self.loopback
    }
}

impl fmt::Display for GatewayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for GatewayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GatewayUrl({:?})", self.text)
    }
}

/// How the driver must authenticate the gateway's TLS certificate.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum TlsPolicy {
    /// Accept exactly the certificates whose SHA-256 is in the set; CA and
    /// hostname checks are replaced by the pin.
    Pinned(PinSet),
    /// Ordinary WebPKI validation with hostname checks.
    SystemTrust,
    /// Pin what is seen on first use, stored under `store_key`, and enforce
    /// it from then on.
    TrustOnFirstUse {
        /// Where the driver keeps the learned pin (usually `host:port`).
        store_key: String,
    },
}

impl TlsPolicy {
    /// A pinned policy from pin texts, each normalised per docs/protocol.md §7.
    pub fn pinned<S: AsRef<str>>(pins: impl IntoIterator<Item = S>) -> Result<Self, ConfigError> {
        let mut texts = pins.into_iter().peekable();
        if texts.peek().is_none() {
            return Err(ConfigError::NoPins);
        }
        Ok(TlsPolicy::Pinned(PinSet::parse(texts)?))
    }

    /// Whether a pin stands in for CA validation.
    pub fn is_pinned(&self) -> bool {
        matches!(self, TlsPolicy::Pinned(_))
    }
}

/// A secret string (token, password). Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is sent or stored.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

/// What the node presents to the gateway to be let in.
#[derive(Clone, PartialEq, Eq, Hash, Default, Debug)]
pub struct Credentials {
    /// The gateway's shared token (`auth.token`).
    pub token: Option<Secret>,
    /// The gateway's password (`auth.password`).
    pub password: Option<Secret>,
    /// A device token issued to this device (`auth.deviceToken`), when the
    /// caller configures one explicitly; a token the gateway issued and the
    /// driver stored is given with [`crate::Input::StoredDeviceToken`].
    pub device_token: Option<Secret>,
    /// A one-time bootstrap token (`auth.bootstrapToken`).
    pub bootstrap_token: Option<Secret>,
}

/// How the node describes itself.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ClientOptions {
    /// `client.displayName`.
    pub display_name: Option<String>,
    /// `client.version`.
    pub version: String,
    /// `client.platform`, e.g. `linux`.
    pub platform: String,
    /// `client.deviceFamily`.
    pub device_family: Option<String>,
    /// `client.instanceId`.
    pub instance_id: Option<String>,
    /// Capabilities, as a set: order given does not matter.
    pub caps: BTreeSet<String>,
    /// Declared commands, as a set: only these ever reach the application.
    pub commands: BTreeSet<String>,
    /// Per-command permissions.
    pub permissions: BTreeMap<String, bool>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            display_name: None,
            version: String::from(env!("CARGO_PKG_VERSION")),
            platform: String::from("linux"),
            device_family: None,
            instance_id: None,
            caps: BTreeSet::new(),
            commands: BTreeSet::new(),
            permissions: BTreeMap::new(),
        }
    }
}

/// Everything that defines a session. Compared by value: applying a config
/// equal to the current one does nothing at all.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct SessionConfig {
    url: GatewayUrl,
    tls: TlsPolicy,
    /// An opaque id the caller uses to force a new session by value.
    pub session_id: String,
    /// Credentials.
    pub credentials: Credentials,
    /// Client description and declared surface.
    pub client: ClientOptions,
}

impl SessionConfig {
    /// A config for `url` with `tls`; checks that they fit together.
    ///
    /// For `ws://` the TLS policy must be [`TlsPolicy::SystemTrust`] (it is
    /// unused); pins on a plain URL are a mistake worth reporting.
    pub fn new(url: GatewayUrl, tls: TlsPolicy) -> Result<Self, ConfigError> {
        if !url.is_secure() && tls != TlsPolicy::SystemTrust {
            return Err(ConfigError::TlsOnPlainUrl {
                url: url.as_str().to_string(),
            });
        }
        if let TlsPolicy::TrustOnFirstUse { store_key } = &tls
            && store_key.is_empty()
        {
            return Err(ConfigError::EmptyTofuKey);
        }
        Ok(SessionConfig {
            url,
            tls,
            session_id: String::new(),
            credentials: Credentials::default(),
            client: ClientOptions::default(),
        })
    }

    /// Parses `url` and builds a config with `tls`.
    pub fn parse(url: &str, tls: TlsPolicy) -> Result<Self, ConfigError> {
        SessionConfig::new(GatewayUrl::parse(url)?, tls)
    }

    /// Sets the session id.
    pub fn with_session_id(mut self, id: impl Into<String>) -> Self {
        self.session_id = id.into();
        self
    }

    /// Sets the credentials.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Sets the client options.
    pub fn with_client(mut self, client: ClientOptions) -> Self {
        self.client = client;
        self
    }

    /// The gateway URL.
    pub fn url(&self) -> &GatewayUrl {
        &self.url
    }

    /// The TLS policy.
    pub fn tls(&self) -> &TlsPolicy {
        &self.tls
    }

    /// Whether the endpoint is trusted enough to send a stored device token
    /// after a shared-token mismatch: loopback, or `wss://` with a pin.
    pub fn is_trusted_endpoint(&self) -> bool {
        self.url.is_loopback() || (self.url.is_secure() && self.tls.is_pinned())
    }

    /// Whether the trust inputs (URL, TLS policy) differ from `other`'s.
    pub fn trust_differs(&self, other: &SessionConfig) -> bool {
        self.url != other.url || self.tls != other.tls
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn credentials_in_a_url_are_refused_and_never_echoed() {
        for text in [
            "ws://user:hunter2@127.0.0.1:18789",
            "wss://hunter2@gw.example",
            "wss://u:hunter2@gw.example:99999",
            "https://u:hunter2@gw.example",
            "wss://admin:hunter2/x@gw.example",
            "wss://admin:hun#ter2@gw.example",
        ] {
            let err = GatewayUrl::parse(text).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        let err = GatewayUrl::parse("wss://u:hunter2@gw.example/path@x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "gateway URL \"wss://***@x\" carries credentials; remove them from the URL and configure the token or password instead"
        );
        assert!(GatewayUrl::parse("wss://gw.example/a@b").is_ok());
        assert_eq!(without_userinfo("wss://gw/x"), "wss://gw/x");
    }

    #[test]
    fn url_errors_name_what_is_wrong() {
        assert!(matches!(
            GatewayUrl::parse("not a url"),
            Err(ConfigError::MalformedUrl { .. })
        ));
        assert!(matches!(
            GatewayUrl::parse("https://gw.example"),
            Err(ConfigError::WrongScheme { scheme, .. }) if scheme == "https"
        ));
        assert!(matches!(
            GatewayUrl::parse("ws://gw.example:1234"),
            Err(ConfigError::InsecureRemote { .. })
        ));
        assert!(GatewayUrl::parse("wss://").is_err());
    }

    #[test]
    fn urls_compare_by_normalised_value() {
        let a = GatewayUrl::parse("WSS://GW.example:443").unwrap();
        let b = GatewayUrl::parse("wss://gw.example/").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.port(), 443);
        let l = GatewayUrl::parse("ws://[::1]:18789").unwrap();
        assert!(l.is_loopback());
        assert_eq!(l.host(), "::1");
        assert!(GatewayUrl::parse("ws://127.0.0.2:1").unwrap().is_loopback());
    }

    #[test]
    fn secrets_never_debug_print() {
        let c = Credentials {
            token: Some("hunter2".into()),
            password: Some("pw-secret".into()),
            ..Credentials::default()
        };
        let s = alloc::format!("{c:?}");
        assert!(!s.contains("hunter2") && !s.contains("pw-secret"), "{s}");
    }

    #[test]
    fn pins_on_plain_urls_are_refused() {
        let pins = TlsPolicy::pinned(["ab".repeat(32)]).unwrap();
        assert!(matches!(
            SessionConfig::parse("ws://127.0.0.1:1", pins),
            Err(ConfigError::TlsOnPlainUrl { .. })
        ));
        assert!(matches!(
            TlsPolicy::pinned(["zz"]),
            Err(ConfigError::Pin(PinError { input, .. })) if input == "zz"
        ));
        assert_eq!(
            TlsPolicy::pinned(Vec::<&str>::new()),
            Err(ConfigError::NoPins)
        );
    }
}
