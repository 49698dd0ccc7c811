//! Session settings from the command line, a TOML file and the environment,
//! merged into one [`SessionConfig`].
//!
//! The TOML file takes the same settings as `clawnode run`:
//!
//! ```toml
//! url = "wss://127.0.0.1:18789"
//! token = "..."                  # else OPENCLAW_GATEWAY_TOKEN
//! tls_fingerprints = ["sha256:9f86d0..."]
//! tls = "pinned"                 # "pinned" | "system" | "tofu"; inferred when absent
//! display_name = "build box"
//! session_id = "1"               # change it to force a new session
//! ```
//!
//! Command-line values win over the file's, and the file's over the
//! environment's.

use std::fmt;
use std::path::Path;

use clawnode_core::{
    ClientOptions, ConfigError, Credentials, GatewayUrl, Secret, SessionConfig, TlsPolicy,
};
use serde::Deserialize;

/// How the gateway's certificate is authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Only the configured fingerprints.
    Pinned,
    /// WebPKI with hostname checks.
    System,
    /// Pin the certificate seen first, per host:port.
    Tofu,
}

/// Settings from one source; `None` where that source says nothing.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The gateway URL.
    pub url: Option<String>,
    /// The gateway's shared token.
    pub token: Option<String>,
    /// The gateway's password.
    pub password: Option<String>,
    /// Accepted certificate fingerprints.
    pub tls_fingerprints: Option<Vec<String>>,
    /// The TLS mode.
    pub tls: Option<TlsMode>,
    /// `client.displayName`.
    pub display_name: Option<String>,
    /// An opaque session id; changing it forces a new session.
    pub session_id: Option<String>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("Settings")
            .field("url", &self.url)
            .field("token", &redact(&self.token))
            .field("password", &redact(&self.password))
            .field("tls_fingerprints", &self.tls_fingerprints)
            .field("tls", &self.tls)
            .field("display_name", &self.display_name)
            .field("session_id", &self.session_id)
            .finish()
    }
}

/// Why settings could not become a session config.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has an unknown key or a wrong type.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message, naming the key.
        message: String,
    },
    /// No URL anywhere.
    #[error("no gateway URL: give --url or `url` in the config file")]
    MissingUrl,
    /// Settings that contradict each other.
    #[error("{0}")]
    Conflict(String),
    /// The core refused the config.
    #[error("{0}")]
    Config(#[from] ConfigError),
}

impl Settings {
    /// Parses a TOML document; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Settings, SettingsError> {
        toml::from_str(text).map_err(|e| SettingsError::Parse {
            path: origin.to_owned(),
            message: e.message().to_owned()
                + &e.span()
                    .map(|s| {
                        let line = text[..s.start].matches('\n').count() + 1;
                        format!(" (line {line})")
                    })
                    .unwrap_or_default(),
        })
    }

    /// Reads and parses a TOML file.
    pub fn from_file(path: &Path) -> Result<Settings, SettingsError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: origin.clone(),
            source,
        })?;
        Settings::from_toml(&text, &origin)
    }

    /// `self`, with every value `over` sets taking precedence.
    pub fn overlaid_with(self, over: Settings) -> Settings {
        Settings {
            url: over.url.or(self.url),
            token: over.token.or(self.token),
            password: over.password.or(self.password),
            tls_fingerprints: over
                .tls_fingerprints
                .filter(|v| !v.is_empty())
                .or(self.tls_fingerprints),
            tls: over.tls.or(self.tls),
            display_name: over.display_name.or(self.display_name),
            session_id: over.session_id.or(self.session_id),
        }
    }

    /// The session config these settings describe, with `client` as the
    /// client options (its display name replaced when one is set here).
    pub fn session_config(
        &self,
        mut client: ClientOptions,
    ) -> Result<SessionConfig, SettingsError> {
        let url_text = self.url.as_deref().ok_or(SettingsError::MissingUrl)?;
        let url = GatewayUrl::parse(url_text)?;
        let pins = self.tls_fingerprints.clone().unwrap_or_default();
        let mode = match self.tls {
            Some(m) => m,
            None if !pins.is_empty() => TlsMode::Pinned,
            None => TlsMode::System,
        };
        let tls = match mode {
            TlsMode::Pinned => TlsPolicy::pinned(&pins)?,
            _ if !pins.is_empty() => {
                return Err(SettingsError::Conflict(format!(
                    "TLS fingerprints were given but the TLS mode is {:?}; use tls = \"pinned\" or drop the fingerprints",
                    if mode == TlsMode::Tofu {
                        "tofu"
                    } else {
                        "system"
                    }
                )));
            }
            TlsMode::System => TlsPolicy::SystemTrust,
            TlsMode::Tofu => {
                if !url.is_secure() {
                    return Err(ConfigError::TlsOnPlainUrl {
                        url: url_text.to_owned(),
                    }
                    .into());
                }
                let host = if url.host().contains(':') {
                    format!("[{}]", url.host())
                } else {
                    url.host().to_owned()
                };
                TlsPolicy::TrustOnFirstUse {
                    store_key: format!("{host}:{}", url.port()),
                }
            }
        };
        let non_empty = |s: &Option<String>| s.as_ref().filter(|s| !s.is_empty()).map(Secret::new);
        if let Some(name) = &self.display_name {
            client.display_name = Some(name.clone());
        }
        Ok(SessionConfig::new(url, tls)?
            .with_session_id(self.session_id.clone().unwrap_or_default())
            .with_credentials(Credentials {
                token: non_empty(&self.token),
                password: non_empty(&self.password),
                ..Credentials::default()
            })
            .with_client(client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn parses_every_key_and_names_unknown_ones() {
        let s = Settings::from_toml(
            &format!(
                "url = \"wss://127.0.0.1:1\"\ntoken = \"t\"\ntls_fingerprints = [\"{PIN}\"]\n\
                 tls = \"pinned\"\ndisplay_name = \"n\"\nsession_id = \"s\"\n"
            ),
            "f.toml",
        )
        .unwrap();
        assert_eq!(s.tls, Some(TlsMode::Pinned));
        let err = Settings::from_toml("url = \"x\"\ntokn = \"t\"\n", "f.toml").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("tokn") && msg.contains("f.toml") && msg.contains("line 2"),
            "{msg}"
        );
        let err = Settings::from_toml("tls = \"maybe\"\n", "f.toml").unwrap_err();
        assert!(err.to_string().contains("maybe"), "{err}");
    }

    #[test]
    fn infers_the_tls_mode_and_refuses_contradictions() {
        let base = Settings {
            url: Some("wss://gw.example:18789".into()),
            ..Settings::default()
        };
        let c = base.session_config(ClientOptions::default()).unwrap();
        assert_eq!(c.tls(), &TlsPolicy::SystemTrust);
        let pinned = Settings {
            tls_fingerprints: Some(vec![format!("SHA256:{}", PIN.to_uppercase())]),
            ..base.clone()
        };
        assert!(
            pinned
                .session_config(ClientOptions::default())
                .unwrap()
                .tls()
                .is_pinned()
        );
        let tofu = Settings {
            tls: Some(TlsMode::Tofu),
            ..base.clone()
        };
        assert_eq!(
            tofu.session_config(ClientOptions::default()).unwrap().tls(),
            &TlsPolicy::TrustOnFirstUse {
                store_key: "gw.example:18789".into()
            }
        );
        let both = Settings {
            tls: Some(TlsMode::Tofu),
            ..pinned.clone()
        };
        assert!(matches!(
            both.session_config(ClientOptions::default()),
            Err(SettingsError::Conflict(_))
        ));
        let garbage = Settings {
            tls_fingerprints: Some(vec!["zz".into()]),
            ..base.clone()
        };
        let err = garbage
            .session_config(ClientOptions::default())
            .unwrap_err();
        assert!(err.to_string().contains("\"zz\""), "{err}");
        assert!(matches!(
            Settings::default().session_config(ClientOptions::default()),
            Err(SettingsError::MissingUrl)
        ));
    }

    #[test]
    fn command_line_wins_and_debug_hides_secrets() {
        let file = Settings {
            url: Some("ws://127.0.0.1:1".into()),
            token: Some("file-token".into()),
            ..Settings::default()
        };
        let cli = Settings {
            token: Some("cli-token".into()),
            ..Settings::default()
        };
        let merged = file.overlaid_with(cli);
        assert_eq!(merged.token.as_deref(), Some("cli-token"));
        assert_eq!(merged.url.as_deref(), Some("ws://127.0.0.1:1"));
        assert!(!format!("{merged:?}").contains("cli-token"));
    }
}
