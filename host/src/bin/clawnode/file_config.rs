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
//!
//! [exec]                           # optional: the host's exec policy
//! security = "allowlist"           # "deny" | "allowlist" | "full"
//! ask = "off"                      # "off" | "on-miss" | "always"
//! ask_fallback = "deny"
//! allow = ["/usr/bin/uname"]       # allowlist entries for every agent
//! ```
//!
//! Command-line values win over the file's, and the file's over the
//! environment's. `[exec]` comes from the file only: `clawnode run` writes
//! it into the state directory's approvals document at start and on every
//! reload (see [`ExecSettings`]).

use std::fmt;
use std::io::Read as _;
use std::path::Path;

use clawnode_core::{
    ClientOptions, ConfigError, Credentials, GatewayUrl, Secret, SessionConfig, TlsPolicy,
};
use serde::Deserialize;

use clawnode_host::exec::approvals::{AllowEntry, ApprovalsFile, Ask, Ceiling, Security};

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
    /// The `[exec]` table: the host's exec policy.
    pub exec: Option<ExecSettings>,
}

/// The `[exec]` table of the config file: the host owner's exec policy,
/// as `clawnode approvals set` and `clawnode approvals allow` would set
/// it. It is merged into the stored approvals document rather than
/// replacing it, so that allowlist entries an operator added through the
/// gateway (`system.execApprovals.set`) stay. A value the file sets wins
/// again at each reload: it goes into `defaults`, and any agent's own
/// value for that setting (`agents["*"]` included) is cleared, since an
/// agent's value would otherwise take precedence. Taking a value or a
/// pattern out of the file does not revoke it from the document: use
/// `clawnode approvals` for that.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecSettings {
    /// `defaults.security`.
    pub security: Option<Security>,
    /// `defaults.ask`.
    pub ask: Option<Ask>,
    /// `defaults.askFallback`.
    pub ask_fallback: Option<Security>,
    /// Patterns added to the allowlist of every agent (`*`) if missing.
    #[serde(default)]
    pub allow: Vec<String>,
}

impl ExecSettings {
    /// The ceiling these settings put on what a gateway may set, naming
    /// `source`, the config file.
    pub fn ceiling(&self, source: &Path) -> Ceiling {
        Ceiling {
            security: self.security,
            ask: self.ask,
            ask_fallback: self.ask_fallback,
            source: source.display().to_string(),
        }
    }

    /// Merges these settings into `file`; says whether anything changed.
    pub fn apply(&self, file: &mut ApprovalsFile) -> bool {
        let before = file.clone();
        let d = &mut file.defaults;
        d.security = self.security.or(d.security);
        d.ask = self.ask.or(d.ask);
        d.ask_fallback = self.ask_fallback.or(d.ask_fallback);
        for agent in file.agents.values_mut() {
            if self.security.is_some() {
                agent.security = None;
            }
            if self.ask.is_some() {
                agent.ask = None;
            }
            if self.ask_fallback.is_some() {
                agent.ask_fallback = None;
            }
        }
        if !self.allow.is_empty() {
            let list = &mut file.agents.entry("*".into()).or_default().allowlist;
            for pattern in &self.allow {
                if !list.iter().any(|e| &e.pattern == pattern) {
                    list.push(AllowEntry {
                        pattern: pattern.clone(),
                        ..AllowEntry::default()
                    });
                }
            }
        }
        *file != before
    }
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
            .field("exec", &self.exec)
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
    /// The config file is larger than [`MAX_CONFIG_BYTES`].
    #[error("config file {path} is larger than {limit} bytes; is it the right file?")]
    TooLarge {
        /// The file.
        path: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The config file is not valid TOML or has an unknown key or a wrong type.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, where (line, column) and in which key. Never the
        /// value of a secret setting (see [`Settings::from_toml`]).
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

/// The largest config file read, in bytes: far more than any real config
/// (a few hundred bytes), small enough that `--config /dev/zero` or a log
/// file given by mistake fails at once instead of eating memory.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

impl Settings {
    /// Parses a TOML document; `origin` names it in errors.
    ///
    /// The parser's messages quote the offending value (`invalid type:
    /// integer `123…``), and its `Display` even the whole line: for a
    /// secret (a token given without quotes, say) that would put the
    /// secret on a terminal or in a log. So errors carry only the parser's
    /// message and position, and for a key that may hold a secret
    /// ([`is_secret_key`]) not even the message: the key, line and column
    /// are enough to find the mistake.
    pub fn from_toml(text: &str, origin: &str) -> Result<Settings, SettingsError> {
        toml::from_str(text).map_err(|e| SettingsError::Parse {
            path: origin.to_owned(),
            message: describe_toml_error(e, text),
        })
    }

    /// Reads and parses a TOML file of at most [`MAX_CONFIG_BYTES`].
    pub fn from_file(path: &Path) -> Result<Settings, SettingsError> {
        let origin = path.display().to_string();
        let read_err = |source| SettingsError::Read {
            path: origin.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        // One byte more than allowed tells a file at the limit from a
        // larger one; the bound holds for files that never end
        // (/dev/zero) or lie about their size (/proc).
        let mut text = String::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(SettingsError::TooLarge {
                path: origin,
                limit: MAX_CONFIG_BYTES,
            });
        }
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
            exec: over.exec.or(self.exec),
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

/// Whether a config key (one part of a dotted key) may hold a secret: a
/// token (shared, bootstrap or device), a password, or anything named like
/// one. Broad on purpose: a false positive only shortens an error message.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.trim().trim_matches(['"', '\'']).to_ascii_lowercase();
    [
        "token",
        "password",
        "passwd",
        "secret",
        "private",
        "credential",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// The text of a TOML error: message, position and key, with the message
/// left out when the error concerns a key that may hold a secret.
fn describe_toml_error(mut e: toml::de::Error, text: &str) -> String {
    let at = e.span().map(|s| s.start.min(text.len()));
    let position = at.map(|at| {
        let before = &text[..at];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        (line, column)
    });
    // The key path the deserializer was in, if any. `toml` keeps it private
    // but prints it as "in `a.b`" when it has no input to quote; with the
    // input gone its Display is also free of the document's text.
    e.set_input(None);
    let shown = e.to_string();
    let path = shown
        .lines()
        .filter_map(|l| l.strip_prefix("in `")?.strip_suffix('`'))
        .next_back()
        .map(str::to_owned);
    // The key the error's line assigns, for syntax errors (no path).
    let line_key = at.and_then(|at| {
        let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let line = &text[start..];
        let (key, _) = line.split_once('=')?;
        Some(key.trim().to_owned()).filter(|k| !k.is_empty() && !k.contains('\n'))
    });
    let key = path.clone().or(line_key.clone());
    let secret = [&path, &line_key]
        .into_iter()
        .flatten()
        .any(|k| k.split('.').any(is_secret_key));
    // serde's message for a misspelt key names keys only, and is the one
    // that helps most; every other message may quote the value.
    let names_keys_only = e.message().starts_with("unknown field `");
    let redact = secret && !names_keys_only;
    let mut message = if !redact {
        e.message().to_owned()
    } else if path.is_some() {
        // A value the deserializer refused: secrets are all strings.
        "invalid value (not shown: it may be a secret); it must be a quoted string".to_owned()
    } else {
        "invalid TOML (not shown: the line may hold a secret)".to_owned()
    };
    if let Some(key) = key.filter(|_| redact || path.is_some()) {
        message = format!("`{key}`: {message}");
    }
    if let Some((line, column)) = position {
        message += &format!(" (line {line}, column {column})");
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Garbage pins are refused before connecting through the settings
    /// too (the CLI test shows that no connection is made).
    #[test]
    fn garbage_pins_are_rejected_before_connecting() {
        let s = Settings {
            url: Some("wss://127.0.0.1:1".into()),
            tls_fingerprints: Some(vec!["not-a-pin".into()]),
            ..Default::default()
        };
        let err = s.session_config(ClientOptions::default()).unwrap_err();
        assert!(err.to_string().contains("not-a-pin"), "{err}");
    }

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
    fn parse_errors_never_echo_secrets() {
        let cases = [
            (
                "url = \"ws://127.0.0.1:1\"\ntoken = 123456789\n",
                "token",
                2,
            ),
            ("password = 987654321\n", "password", 1),
            ("token = 123456789\npassword = 987654321\n", "password", 2),
            ("token = 123456789.5\n", "token", 1),
            ("token = [123456789]\n", "token", 1),
            ("token = { a = 123456789 }\n", "token", 1),
            // Syntax errors on a secret's line: no path, the line's key.
            ("token = 123456789abc\n", "token", 1),
            ("password = \"987654321\n", "password", 1),
            ("\"bootstrap_token\" = 123456789\n", "bootstrap_token", 1),
            ("device_token = 987654321\n", "device_token", 1),
            // ... on a later line too.
            (
                "url = \"ws://127.0.0.1:1\"\ntoken = 123456789abc\n",
                "token",
                2,
            ),
        ];
        for (text, key, line) in cases {
            let err = Settings::from_toml(text, "f.toml").unwrap_err();
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(
                    !shown.contains("123456789") && !shown.contains("987654321"),
                    "{text:?} leaked: {shown}"
                );
                assert!(shown.contains("f.toml"), "{shown}");
                assert!(shown.contains(&format!("line {line}")), "{shown}");
                if !key.ends_with("_token") {
                    assert!(shown.contains(&format!("`{key}`")), "{shown}");
                }
            }
        }
        // Other keys keep the parser's message, value included.
        let err = Settings::from_toml("url = 123456789\n", "f.toml").unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains("`url`") && shown.contains("123456789") && shown.contains("column 7"),
            "{shown}"
        );
    }

    #[test]
    fn secret_keys_are_recognised() {
        for k in [
            "token",
            "password",
            "bootstrap_token",
            "deviceToken",
            "\"Password\"",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "url",
            "tls",
            "display_name",
            "session_id",
            "tls_fingerprints",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn config_files_are_read_up_to_a_limit() {
        let err = Settings::from_file(Path::new("/dev/zero")).unwrap_err();
        assert!(matches!(err, SettingsError::TooLarge { .. }), "{err:?}");
        let shown = err.to_string();
        assert!(
            shown.contains("/dev/zero") && shown.contains(&MAX_CONFIG_BYTES.to_string()),
            "{shown}"
        );
        let dir = tempfile::tempdir().unwrap();
        // Exactly at the limit: read (and parsed).
        let at = dir.path().join("at.toml");
        let mut text = String::from("url = \"ws://127.0.0.1:1\"\n");
        text += &"#".repeat(MAX_CONFIG_BYTES as usize - text.len() - 1);
        text += "\n";
        std::fs::write(&at, &text).unwrap();
        let s = Settings::from_file(&at).unwrap();
        assert_eq!(s.url.as_deref(), Some("ws://127.0.0.1:1"));
        // One byte more: refused.
        let over = dir.path().join("over.toml");
        std::fs::write(&over, text + " ").unwrap();
        assert!(matches!(
            Settings::from_file(&over),
            Err(SettingsError::TooLarge { .. })
        ));
    }

    #[test]
    fn infers_the_tls_mode_and_refuses_contradictions() {
        let base = Settings {
            url: Some("wss://gw.example:18789".into()),
            ..Settings::default()
        };
        let c = base.session_config(ClientOptions::default()).unwrap();
        assert_eq!(c.tls(), &TlsPolicy::SystemTrust);
        let with_secrets = Settings {
            token: Some("t".into()),
            password: Some("p".into()),
            ..base.clone()
        }
        .session_config(ClientOptions::default())
        .unwrap();
        assert_eq!(with_secrets.credentials.token, Some(Secret::new("t")));
        assert_eq!(with_secrets.credentials.password, Some(Secret::new("p")));
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
        let shown = format!("{merged:?}");
        assert!(!shown.contains("cli-token"), "{shown}");
        assert!(
            shown.contains("ws://127.0.0.1:1") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn the_exec_table_is_merged_into_the_approvals_document() {
        let s = Settings::from_toml(
            "url = \"wss://h:1\"\n[exec]\nsecurity = \"allowlist\"\nask = \"on-miss\"\nallow = [\"/usr/bin/uname\", \"git\"]\n",
            "t",
        )
        .unwrap();
        let exec = s.exec.clone().unwrap();
        assert_eq!(exec.security, Some(Security::Allowlist));
        assert_eq!(exec.ask, Some(Ask::OnMiss));
        assert_eq!(exec.ask_fallback, None);
        let mut file = ApprovalsFile::default();
        file.agents
            .entry("*".into())
            .or_default()
            .allowlist
            .push(AllowEntry {
                pattern: "/usr/bin/id".into(),
                ..AllowEntry::default()
            });
        assert!(exec.apply(&mut file));
        assert_eq!(file.defaults.security, Some(Security::Allowlist));
        let patterns: Vec<&str> = file.agents["*"]
            .allowlist
            .iter()
            .map(|e| e.pattern.as_str())
            .collect();
        assert_eq!(
            patterns,
            ["/usr/bin/id", "/usr/bin/uname", "git"],
            "kept and added"
        );
        assert!(!exec.apply(&mut file), "applied twice: no change");
        // An operator's per-agent override does not outlive a reload.
        file.agents.get_mut("*").unwrap().security = Some(Security::Full);
        assert!(exec.apply(&mut file));
        assert_eq!(file.agents["*"].security, None);
        assert_eq!(file.resolve(Some("main")).security, Security::Allowlist);
        // The file only: the command line has no [exec] to override it.
        let merged = s.clone().overlaid_with(Settings::default());
        assert_eq!(merged.exec, s.exec);
    }

    #[test]
    fn a_misspelt_exec_key_or_value_is_named() {
        for (text, needle) in [
            ("[exec]\nsecurty = \"full\"\n", "securty"),
            ("[exec]\nsecurity = \"everything\"\n", "everything"),
            ("[exec]\nask = \"sometimes\"\n", "sometimes"),
        ] {
            let e = Settings::from_toml(text, "t").unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
