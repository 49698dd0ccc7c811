//! The exec host of one node: its state directory, the plans it prepared,
//! and the policy in force, parsed again only when its file changed.

use clawnode::{CommandError, StateDir};
use serde_json::{Value, json};

use super::denied;
use crate::exec::approvals::{ApprovalsFile, Ceiling, Resolved};
use crate::exec::documents::ExecDocuments;
use crate::exec::plans::PlanBook;

/// The exec host of one node: its state directory and the plans it
/// prepared. `system.run.prepare` and `system.run` share one.
#[derive(Debug)]
pub struct ExecHost {
    store: StateDir,
    pub(super) plans: PlanBook,
    /// The approvals document as last parsed, by the identity, size and
    /// modification time of its file: a run parses it only after it
    /// changed (every writer replaces the file, so a change is a new one).
    pub(super) parsed: std::sync::Mutex<Option<Parsed>>,
}

/// The approvals document as last parsed, and the policies resolved from
/// it so far, by agent.
#[derive(Debug)]
pub(super) struct Parsed {
    pub stamp: Option<FileStamp>,
    pub file: ApprovalsFile,
    /// At most [`MAX_RESOLVED`] agents (the ids come from the gateway).
    pub resolved: Vec<(Option<String>, Resolved)>,
}

/// How many agents' resolved policies [`Parsed`] keeps.
pub(super) const MAX_RESOLVED: usize = 32;

/// What tells one version of a file from another: device, inode, size and
/// modification time.
pub(super) type FileStamp = (u64, u64, u64, i64, i64);

impl ExecHost {
    /// The exec host over `store`, with no plan prepared yet.
    pub fn new(store: StateDir) -> Self {
        ExecHost {
            store,
            plans: PlanBook::new(),
            parsed: std::sync::Mutex::new(None),
        }
    }

    /// The policy in force for `agent_id`: the document (parsed again only
    /// when its file changed), narrowed to the owner's ceiling.
    pub(super) fn policy(&self, agent_id: Option<&str>) -> Result<Resolved, CommandError> {
        use std::os::unix::fs::MetadataExt as _;
        let stamp = std::fs::metadata(self.store.exec_approvals_path())
            .ok()
            .map(|m| (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()));
        let mut policy = {
            let mut parsed = self.parsed.lock().unwrap_or_else(|e| e.into_inner());
            if parsed.as_ref().is_none_or(|p| p.stamp != stamp) {
                *parsed = Some(Parsed {
                    stamp,
                    file: policy_file(&self.store)?,
                    resolved: Vec::new(),
                });
            }
            let parsed = parsed.as_mut().expect("parsed just now");
            let agent = agent_id.map(str::to_owned);
            match parsed.resolved.iter().find(|(a, _)| *a == agent) {
                Some((_, policy)) => policy.clone(),
                None => {
                    let policy = parsed.file.resolve(agent_id);
                    if parsed.resolved.len() >= MAX_RESOLVED {
                        parsed.resolved.clear();
                    }
                    parsed.resolved.push((agent, policy.clone()));
                    policy
                }
            }
        };
        match Ceiling::load(&self.store) {
            Ok(Some(ceiling)) => ceiling.clamp(&mut policy),
            Ok(None) => {}
            Err(e) => return Err(denied(format_args!("exec ceiling unreadable ({e})"))),
        }
        Ok(policy)
    }

    /// Its state directory.
    pub fn store(&self) -> &StateDir {
        &self.store
    }
}

/// The stored document; a corrupt one fails closed (nothing runs).
fn policy_file(store: &StateDir) -> Result<ApprovalsFile, CommandError> {
    let unavailable = |why: String| {
        CommandError::new(
            "SYSTEM_RUN_DENIED",
            format!(
                "SYSTEM_RUN_DENIED: exec approvals file {} unusable ({why}); nothing runs until it is fixed",
                store.exec_approvals_path().display()
            ),
        )
    };
    match store.load_exec_approvals() {
        Ok(None) => Ok(ApprovalsFile::default()),
        Ok(Some(bytes)) => {
            ApprovalsFile::from_stored(&bytes).map_err(|e| unavailable(e.to_string()))
        }
        Err(e) => Err(unavailable(e.to_string())),
    }
}

/// What the plan records of the policy, so a later approval can tell
/// whether it still holds.
pub(super) fn policy_snapshot(p: &Resolved) -> Value {
    let mut rules: Vec<Value> = p
        .allowlist
        .iter()
        .map(|e| {
            let mut r = json!({"pattern": e.pattern});
            if let Some(a) = &e.arg_pattern {
                r["argPattern"] = a.clone().into();
            }
            if let Some(s) = &e.source {
                r["source"] = s.clone().into();
            }
            r
        })
        .collect();
    rules.sort_by_key(Value::to_string);
    rules.dedup();
    json!({
        "security": p.security,
        "ask": p.ask,
        "askFallback": p.ask_fallback,
        "autoAllowSkills": p.auto_allow_skills,
        "allowlistRules": rules,
    })
}
