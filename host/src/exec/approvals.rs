//! The exec approvals document and the policy it sets
//! (docs/exec-host.md §3): its wire form for `system.execApprovals.get` and
//! `.set`, compare-and-swap on a hash of the stored bytes, and the decision
//! for one run.
//!
//! **The default is stricter than the official host's.** With no document,
//! or none of its fields set, the official host runs everything (`security:
//! full`, `ask: off`). Here nothing runs until the owner allows it:
//! `security` falls back to `deny`, and the refusal names what enables it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::documents::ExecDocuments;

/// How much may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Nothing.
    Deny,
    /// What the allowlist allows.
    Allowlist,
    /// Anything.
    Full,
}

/// When an operator must approve a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ask {
    /// Never.
    Off,
    /// When the allowlist does not cover the command.
    OnMiss,
    /// Always.
    Always,
}

/// Policy fields, each optional: an agent's, or the defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// How much may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<Security>,
    /// When to ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask: Option<Ask>,
    /// What runs when approval is needed and nobody answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask_fallback: Option<Security>,
    /// Whether skill binaries are allowed without an entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_allow_skills: Option<bool>,
}

/// One allowlist entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllowEntry {
    /// A glob over the executable's real path (with `/` or `~`), or over
    /// its name when invoked by bare name.
    pub pattern: String,
    /// A stable id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `allow-always` for entries an approval created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// A constraint on the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg_pattern: Option<String>,
    /// When it last allowed a run (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<u64>,
    /// The command it last allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_command: Option<String>,
    /// The path it last matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_resolved_path: Option<String>,
}

/// An agent's policy and allowlist (`agents["*"]` applies to every agent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Agent {
    /// How much may run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<Security>,
    /// When to ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask: Option<Ask>,
    /// What runs when approval is needed and nobody answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask_fallback: Option<Security>,
    /// Whether skill binaries are allowed without an entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_allow_skills: Option<bool>,
    /// The entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowlist: Vec<AllowEntry>,
    /// MCP tools allowed always (kept as given; not used by this host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_tools: Option<Vec<serde_json::Value>>,
}

/// The local approvals socket of the official hosts (kept as given; this
/// host serves none). The token never leaves the node.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Socket {
    /// Its path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Its token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("path", &self.path)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The approvals document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalsFile {
    /// Always 1.
    pub version: u32,
    /// The local socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<Socket>,
    /// What applies when an agent sets nothing.
    #[serde(default)]
    pub defaults: Policy,
    /// Per agent id, and `*` for all.
    #[serde(default)]
    pub agents: BTreeMap<String, Agent>,
}

impl Default for ApprovalsFile {
    fn default() -> Self {
        ApprovalsFile {
            version: 1,
            socket: None,
            defaults: Policy::default(),
            agents: BTreeMap::new(),
        }
    }
}

/// Why a stored document cannot be used ([`ApprovalsFile::from_stored`]).
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    /// Not JSON of the document's shape; the text says where.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// JSON of the right shape, but not a valid document.
    #[error("{0}")]
    Invalid(ApprovalsError),
}

/// Why a document was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalsError {
    /// Not a valid document; the text says where.
    Invalid(String),
    /// The base hash was missing or stale: reload and retry.
    Changed,
    /// A `set` without a base hash while a document exists.
    BaseHashRequired,
}

impl fmt::Display for ApprovalsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApprovalsError::Invalid(why) => {
                write!(f, "INVALID_REQUEST: exec approvals file invalid: {why}")
            }
            ApprovalsError::Changed => {
                f.write_str("INVALID_REQUEST: exec approvals changed; reload and retry")
            }
            ApprovalsError::BaseHashRequired => {
                f.write_str("INVALID_REQUEST: exec approvals base hash required; reload and retry")
            }
        }
    }
}

impl std::error::Error for ApprovalsError {}

impl ApprovalsFile {
    /// Reads a document from its wire or stored form: unknown fields and
    /// unknown policy values are errors that name them. Blank allowlist
    /// patterns are dropped and a version of 1 is required.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, ApprovalsError> {
        ApprovalsFile::deserialize(value)
            .map_err(|e| ApprovalsError::Invalid(e.to_string()))?
            .checked()
    }

    /// The version required, blank patterns dropped, patterns trimmed.
    fn checked(mut self) -> Result<Self, ApprovalsError> {
        let file = &mut self;
        if file.version != 1 {
            return Err(ApprovalsError::Invalid(format!(
                "version {} (only 1 is known)",
                file.version
            )));
        }
        for agent in file.agents.values_mut() {
            agent.allowlist.retain(|e| !e.pattern.trim().is_empty());
            for e in &mut agent.allowlist {
                e.pattern = e.pattern.trim().to_owned();
            }
        }
        Ok(self)
    }

    /// Reads the stored form back ([`to_stored`](Self::to_stored)); the
    /// error says why it is unusable.
    pub fn from_stored(bytes: &[u8]) -> Result<Self, StoredError> {
        // Straight into the typed document: no JSON tree in between.
        let file = serde_json::from_slice::<ApprovalsFile>(bytes)?;
        file.checked().map_err(StoredError::Invalid)
    }

    /// The bytes stored: pretty JSON and a newline. The hash is over them.
    pub fn to_stored(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("the document serialises");
        bytes.push(b'\n');
        bytes
    }

    /// The document as `system.execApprovals.get` shows it: the socket
    /// token removed.
    pub fn redacted(&self) -> ApprovalsFile {
        let mut file = self.clone();
        if let Some(s) = &mut file.socket {
            s.token = None;
        }
        file
    }

    /// The effective policy for `agent_id`: each field from the agent, else
    /// from `agents["*"]`, else from the defaults, else this host's
    /// fallback (`deny`, `off`, `deny`, no skills).
    pub fn resolve(&self, agent_id: Option<&str>) -> Resolved {
        let agent = agent_id.and_then(|a| self.agents.get(a));
        let all = self.agents.get("*");
        let pick = |f: &dyn Fn(&Agent) -> Option<Security>, d: Option<Security>| {
            agent.and_then(f).or_else(|| all.and_then(f)).or(d)
        };
        let ask = agent
            .and_then(|a| a.ask)
            .or_else(|| all.and_then(|a| a.ask))
            .or(self.defaults.ask);
        let skills = agent
            .and_then(|a| a.auto_allow_skills)
            .or_else(|| all.and_then(|a| a.auto_allow_skills))
            .or(self.defaults.auto_allow_skills);
        let allowlist = all
            .into_iter()
            .chain(agent.filter(|_| agent_id != Some("*")))
            .flat_map(|a| a.allowlist.iter().cloned())
            .collect();
        Resolved {
            security: pick(&|a| a.security, self.defaults.security).unwrap_or(Security::Deny),
            ask: ask.unwrap_or(Ask::Off),
            ask_fallback: pick(&|a| a.ask_fallback, self.defaults.ask_fallback)
                .unwrap_or(Security::Deny),
            auto_allow_skills: skills.unwrap_or(false),
            allowlist,
        }
    }
}

/// The hash `get` reports and `set` compares: SHA-256 of the stored bytes
/// in hex, or `missing:` and the hash of nothing when there is no document.
pub fn hash(stored: Option<&[u8]>) -> String {
    match stored {
        Some(bytes) => hex(&Sha256::digest(bytes)),
        None => format!("missing:{}", hex(&Sha256::digest([]))),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The compare-and-swap of `set`: `base_hash` must be the hash of what is
/// stored now. With no document yet, no base hash is needed. The incoming
/// document keeps the stored socket token when it carries none (a document
/// read back from `get` has none).
pub fn apply_set(
    stored: Option<&[u8]>,
    incoming: ApprovalsFile,
    base_hash: Option<&str>,
) -> Result<ApprovalsFile, ApprovalsError> {
    check_base(stored, base_hash)?;
    let mut next = incoming;
    let old_token = stored
        .and_then(|b| ApprovalsFile::from_stored(b).ok())
        .and_then(|f| f.socket)
        .and_then(|s| s.token);
    if let Some(token) = old_token
        && let Some(socket) = &mut next.socket
        && socket.token.is_none()
    {
        socket.token = Some(token);
    }
    Ok(next)
}

/// The compare-and-swap's check alone: `base_hash` must be the hash of
/// what is stored (none needed while nothing is).
pub fn check_base(stored: Option<&[u8]>, base_hash: Option<&str>) -> Result<(), ApprovalsError> {
    let current = hash(stored);
    match (stored, base_hash) {
        (None, Some(b)) if b != current => Err(ApprovalsError::Changed),
        (None, _) => Ok(()),
        (Some(_), None) => Err(ApprovalsError::BaseHashRequired),
        (Some(_), Some(b)) if b != current => Err(ApprovalsError::Changed),
        (Some(_), Some(_)) => Ok(()),
    }
}

/// The owner's ceiling on the policy: the `[exec]` table of the config
/// file, which a gateway's `system.execApprovals.set` cannot widen
/// (docs/exec-host.md §11.4). Kept in the state directory
/// (`exec-ceiling.json`) by the process that read the config file, so
/// every reader of the document sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ceiling {
    /// The most `security` may be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<Security>,
    /// The least `ask` may be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask: Option<Ask>,
    /// The most `askFallback` may be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask_fallback: Option<Security>,
    /// Where it comes from (the config file), for messages.
    pub source: String,
}

impl Ceiling {
    /// Whether it sets anything.
    pub fn is_empty(&self) -> bool {
        self.security.is_none() && self.ask.is_none() && self.ask_fallback.is_none()
    }

    /// Reads the stored ceiling; `None` when there is none.
    pub fn load(store: &clawnode::StateDir) -> Result<Option<Self>, clawnode::StoreError> {
        Ok(store.load_exec_ceiling()?.map(|bytes| {
            // A corrupt ceiling fails closed: nothing may be set or run.
            serde_json::from_slice(&bytes).unwrap_or(Ceiling {
                security: Some(Security::Deny),
                ask: Some(Ask::Always),
                ask_fallback: Some(Security::Deny),
                source: store.exec_ceiling_path().display().to_string(),
            })
        }))
    }

    /// Refuses a document that sets any value wider than the ceiling,
    /// naming it and where the ceiling comes from.
    pub fn admits(&self, file: &ApprovalsFile) -> Result<(), String> {
        let policies = std::iter::once((
            "defaults".to_owned(),
            file.defaults.security,
            file.defaults.ask,
            file.defaults.ask_fallback,
        ))
        .chain(file.agents.iter().map(|(name, a)| {
            (
                format!("agents[{name:?}]"),
                a.security,
                a.ask,
                a.ask_fallback,
            )
        }));
        for (at, security, ask, fallback) in policies {
            let wider = [
                (
                    "security",
                    security.zip(self.security).is_some_and(|(s, c)| s > c),
                ),
                ("ask", ask.zip(self.ask).is_some_and(|(a, c)| a < c)),
                (
                    "askFallback",
                    fallback.zip(self.ask_fallback).is_some_and(|(f, c)| f > c),
                ),
            ];
            if let Some((field, _)) = wider.iter().find(|(_, w)| *w) {
                return Err(format!(
                    "{at}.{field} is wider than the host owner's [exec] table in {} allows; \
                     change it there",
                    self.source
                ));
            }
        }
        Ok(())
    }

    /// Narrows a resolved policy to the ceiling.
    pub fn clamp(&self, policy: &mut Resolved) {
        if let Some(s) = self.security {
            policy.security = policy.security.min(s);
        }
        if let Some(a) = self.ask {
            policy.ask = policy.ask.max(a);
        }
        if let Some(f) = self.ask_fallback {
            policy.ask_fallback = policy.ask_fallback.min(f);
        }
    }
}

/// The policy in force for one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// How much may run.
    pub security: Security,
    /// When to ask.
    pub ask: Ask,
    /// What runs when approval is needed and nobody answers.
    pub ask_fallback: Security,
    /// Whether skill binaries are allowed without an entry.
    pub auto_allow_skills: bool,
    /// `agents["*"]`'s entries, then the agent's (shared: a run of a
    /// large document copies none of it).
    pub allowlist: Arc<[AllowEntry]>,
}

/// What the gateway's approval says about a run. Taken only from the
/// gateway's approval binding, never from a caller's own params: a run
/// whose plan the node did not prepare has no approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Approval {
    /// None given.
    None,
    /// An operator approved this run (once or always).
    Approved,
    /// Nobody answered; the ask fallback applies.
    AskFallback,
}

/// Why a run is refused, with the text the gateway shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// `security: deny` (also this host's default).
    Disabled,
    /// Approval is required and none was given.
    ApprovalRequired,
    /// Allowlist mode and no entry covers the command.
    AllowlistMiss,
}

impl Denied {
    /// The `exec.denied` reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Denied::Disabled => "security=deny",
            Denied::ApprovalRequired => "approval-required",
            Denied::AllowlistMiss => "allowlist-miss",
        }
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::Disabled => f.write_str(
                "SYSTEM_RUN_DISABLED: security=deny (this node runs nothing until its owner allows it: \
                 on the node's host, `clawnode approvals set --security allowlist` then \
                 `clawnode approvals allow /usr/bin/PROGRAM`, or `clawnode approvals set --security full`)",
            ),
            Denied::ApprovalRequired => f.write_str("SYSTEM_RUN_DENIED: approval required"),
            Denied::AllowlistMiss => f.write_str("SYSTEM_RUN_DENIED: allowlist miss"),
        }
    }
}

/// The node's decision for one run (the official `evaluateSystemRunPolicy`
/// with this host's default): `covered` says whether the allowlist covers
/// the command.
///
/// Stricter than upstream: an approval counts only where this node's own
/// policy asks (`ask` other than `off`). Under `ask: off` the owner chose
/// not to be asked, so no approval, the gateway's or anyone's, lifts an
/// allowlist miss (docs/exec-host.md §11.2).
pub fn decide(policy: &Resolved, approval: Approval, covered: bool) -> Result<(), Denied> {
    let (security, ask) = match approval {
        // Nobody answered: the fallback caps what may run, and nobody is asked.
        Approval::AskFallback => (policy.security.min(policy.ask_fallback), Ask::Off),
        _ => (policy.security, policy.ask),
    };
    let approved = approval == Approval::Approved && policy.ask != Ask::Off;
    if security == Security::Deny {
        return Err(Denied::Disabled);
    }
    let needs_ask =
        ask == Ask::Always || (ask == Ask::OnMiss && security == Security::Allowlist && !covered);
    if needs_ask && !approved {
        return Err(Denied::ApprovalRequired);
    }
    if security == Security::Allowlist && !covered && !approved {
        return Err(Denied::AllowlistMiss);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn policy(security: Security, ask: Ask, fallback: Security) -> Resolved {
        Resolved {
            security,
            ask,
            ask_fallback: fallback,
            auto_allow_skills: false,
            allowlist: Arc::from([]),
        }
    }

    #[test]
    fn the_sockets_token_never_reaches_debug_output() {
        let socket = Socket {
            path: Some("/run/x.sock".into()),
            token: Some("s3cret-token".into()),
        };
        let shown = format!("{socket:?}");
        assert!(
            shown.contains("/run/x.sock") && shown.contains("<redacted>"),
            "{shown}"
        );
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    fn document(v: serde_json::Value) -> ApprovalsFile {
        ApprovalsFile::from_stored(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_ceiling_admits_what_is_at_or_under_it_and_names_what_is_wider() {
        use Ask::*;
        use Security::*;
        assert!(Ceiling::default().is_empty());
        for c in [
            Ceiling {
                security: Some(Full),
                ..Ceiling::default()
            },
            Ceiling {
                ask: Some(Off),
                ..Ceiling::default()
            },
            Ceiling {
                ask_fallback: Some(Full),
                ..Ceiling::default()
            },
        ] {
            assert!(!c.is_empty(), "{c:?}");
        }
        let ceiling = Ceiling {
            security: Some(Allowlist),
            ask: Some(OnMiss),
            ask_fallback: Some(Allowlist),
            source: "/etc/clawnode.toml".into(),
        };
        let at =
            |field: &str, value: &str| document(json!({"version": 1, "defaults": {field: value}}));
        // At the ceiling, and under it: admitted.
        for (field, value) in [
            ("security", "allowlist"),
            ("security", "deny"),
            ("ask", "on-miss"),
            ("ask", "always"),
            ("askFallback", "allowlist"),
            ("askFallback", "deny"),
        ] {
            assert_eq!(ceiling.admits(&at(field, value)), Ok(()), "{field}={value}");
        }
        // Wider: refused, naming the field and the file.
        for (field, value) in [
            ("security", "full"),
            ("ask", "off"),
            ("askFallback", "full"),
        ] {
            let e = ceiling.admits(&at(field, value)).unwrap_err();
            assert!(
                e.contains(&format!("defaults.{field}")) && e.contains("/etc/clawnode.toml"),
                "{e}"
            );
        }
        // An agent's own policy is held to it too.
        let agent = document(json!({"version": 1, "agents": {"ops": {"security": "full"}}}));
        let e = ceiling.admits(&agent).unwrap_err();
        assert!(e.contains("agents[\"ops\"].security"), "{e}");
        // Nothing set: nothing is wider.
        assert_eq!(Ceiling::default().admits(&at("security", "full")), Ok(()));
    }

    #[test]
    fn a_ceiling_clamps_the_policy_in_force() {
        use Ask::*;
        use Security::*;
        let ceiling = Ceiling {
            security: Some(Allowlist),
            ask: Some(OnMiss),
            ask_fallback: Some(Deny),
            source: String::new(),
        };
        let mut p = policy(Full, Off, Full);
        ceiling.clamp(&mut p);
        assert_eq!(p, policy(Allowlist, OnMiss, Deny));
        // What is already narrower stays as it is.
        let mut p = policy(Deny, Always, Deny);
        ceiling.clamp(&mut p);
        assert_eq!(p, policy(Deny, Always, Deny));
        let mut p = policy(Full, Off, Full);
        Ceiling::default().clamp(&mut p);
        assert_eq!(p, policy(Full, Off, Full));
    }

    #[test]
    fn a_stored_ceiling_is_read_back_and_a_corrupt_one_fails_closed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = clawnode::StateDir::new(tmp.path());
        assert_eq!(Ceiling::load(&store).unwrap(), None);
        let ceiling = Ceiling {
            security: Some(Security::Allowlist),
            ask: None,
            ask_fallback: None,
            source: "/etc/clawnode.toml".into(),
        };
        store
            .store_exec_ceiling(Some(&serde_json::to_vec(&ceiling).unwrap()))
            .unwrap();
        assert_eq!(Ceiling::load(&store).unwrap(), Some(ceiling));
        store.store_exec_ceiling(Some(b"{not json")).unwrap();
        let closed = Ceiling::load(&store).unwrap().unwrap();
        assert_eq!(
            (closed.security, closed.ask, closed.ask_fallback),
            (
                Some(Security::Deny),
                Some(Ask::Always),
                Some(Security::Deny)
            )
        );
        assert!(closed.source.ends_with("exec-ceiling.json"), "{closed:?}");
    }

    #[test]
    fn with_nothing_set_nothing_runs_and_the_refusal_says_how_to_allow() {
        let p = ApprovalsFile::default().resolve(Some("main"));
        assert_eq!(p.security, Security::Deny);
        let denied = decide(&p, Approval::None, true).unwrap_err();
        assert!(
            denied.to_string().contains("clawnode approvals set"),
            "{denied}"
        );
        // An approval does not lift `deny` either.
        assert_eq!(decide(&p, Approval::Approved, true), Err(Denied::Disabled));
    }

    #[test]
    fn the_official_decision_table() {
        use Ask::*;
        use Security::*;
        let cases = [
            // security, ask, covered, approval, allowed
            (Full, Off, false, Approval::None, Ok(())),
            (
                Full,
                Always,
                true,
                Approval::None,
                Err(Denied::ApprovalRequired),
            ),
            (Full, Always, true, Approval::Approved, Ok(())),
            (Full, OnMiss, false, Approval::None, Ok(())),
            (Allowlist, Off, true, Approval::None, Ok(())),
            (
                Allowlist,
                Off,
                false,
                Approval::None,
                Err(Denied::AllowlistMiss),
            ),
            (
                Allowlist,
                OnMiss,
                false,
                Approval::None,
                Err(Denied::ApprovalRequired),
            ),
            (Allowlist, OnMiss, false, Approval::Approved, Ok(())),
            // Stricter than upstream: under `ask: off` no approval counts.
            (
                Allowlist,
                Off,
                false,
                Approval::Approved,
                Err(Denied::AllowlistMiss),
            ),
            (Allowlist, OnMiss, true, Approval::None, Ok(())),
            (Deny, Off, true, Approval::Approved, Err(Denied::Disabled)),
        ];
        for (security, ask, covered, approval, want) in cases {
            let got = decide(&policy(security, ask, Deny), approval, covered);
            assert_eq!(
                got, want,
                "{security:?} {ask:?} covered={covered} {approval:?}"
            );
        }
    }

    #[test]
    fn the_ask_fallback_caps_security_and_asks_nobody() {
        use Security::*;
        let p = policy(Full, Ask::Always, Allowlist);
        assert_eq!(decide(&p, Approval::AskFallback, true), Ok(()));
        assert_eq!(
            decide(&p, Approval::AskFallback, false),
            Err(Denied::AllowlistMiss)
        );
        let p = policy(Full, Ask::Always, Deny);
        assert_eq!(
            decide(&p, Approval::AskFallback, true),
            Err(Denied::Disabled)
        );
        // A fallback never raises what the policy allows.
        let p = policy(Allowlist, Ask::Always, Full);
        assert_eq!(
            decide(&p, Approval::AskFallback, false),
            Err(Denied::AllowlistMiss)
        );
    }

    #[test]
    fn the_agent_then_star_then_defaults_then_this_hosts_fallback() {
        let file = ApprovalsFile::from_value(&json!({
            "version": 1,
            "defaults": {"ask": "on-miss"},
            "agents": {
                "*": {"security": "allowlist", "allowlist": [{"pattern": "/usr/bin/uname"}, {"pattern": "  "}]},
                "main": {"security": "full", "allowlist": [{"pattern": " rg "}]}
            }
        }))
        .unwrap();
        let main = file.resolve(Some("main"));
        assert_eq!(
            (main.security, main.ask, main.ask_fallback),
            (Security::Full, Ask::OnMiss, Security::Deny)
        );
        let patterns: Vec<_> = main.allowlist.iter().map(|e| e.pattern.as_str()).collect();
        assert_eq!(patterns, ["/usr/bin/uname", "rg"], "blank dropped, trimmed");
        let other = file.resolve(Some("other"));
        assert_eq!(other.security, Security::Allowlist);
        assert_eq!(other.allowlist.len(), 1);
        assert_eq!(file.resolve(None).security, Security::Allowlist);
    }

    #[test]
    fn bad_documents_are_refused_naming_what_is_wrong() {
        let err = |v| ApprovalsFile::from_value(&v).unwrap_err().to_string();
        assert!(err(json!({"version": 1, "defaults": {"security": "bogus"}})).contains("bogus"));
        assert!(err(json!({"version": 1, "extra": true})).contains("extra"));
        assert!(err(json!({"version": 2})).contains("version 2"));
        assert!(
            err(json!({"version": 1, "agents": {"a": {"allowlist": [{"id": "x"}]}}}))
                .contains("pattern")
        );
    }

    #[test]
    fn set_is_a_compare_and_swap_on_the_stored_bytes_and_keeps_the_token() {
        let first = ApprovalsFile {
            socket: Some(Socket {
                path: Some("/run/a.sock".into()),
                token: Some("secret-token".into()),
            }),
            ..ApprovalsFile::default()
        };
        // Nothing stored: no base hash needed, or the hash of nothing.
        assert!(apply_set(None, first.clone(), None).is_ok());
        assert!(apply_set(None, first.clone(), Some(&hash(None))).is_ok());
        assert_eq!(
            apply_set(None, first.clone(), Some("x")),
            Err(ApprovalsError::Changed)
        );
        let stored = first.to_stored();
        let h = hash(Some(&stored));
        assert_eq!(h.len(), 64);
        // What `get` shows has no token, and setting it back keeps the token.
        let shown = first.redacted();
        assert_eq!(shown.socket.as_ref().unwrap().token, None);
        assert!(!format!("{first:?}").contains("secret-token"));
        let next = apply_set(Some(&stored), shown.clone(), Some(&h)).unwrap();
        assert_eq!(next.socket.unwrap().token.as_deref(), Some("secret-token"));
        assert_eq!(
            apply_set(Some(&stored), shown.clone(), None),
            Err(ApprovalsError::BaseHashRequired)
        );
        assert_eq!(
            apply_set(Some(&stored), shown, Some(&hash(None))),
            Err(ApprovalsError::Changed)
        );
    }
}
