//! `system.execApprovals.get` and `system.execApprovals.set` over the
//! state directory's exec documents ([`ExecDocuments`]), and the owner's
//! local edits (docs/exec-host.md §3.5, §3.6).
//!
//! Both block on file I/O: drivers run them off their event loop. One
//! process-wide lock makes each compare-and-swap atomic between the
//! node's own concurrent calls.

use std::sync::Mutex;

use serde_json::{Value, json};

use super::approvals::{ApprovalsFile, Ceiling, apply_set, check_base, hash};
use clawnode::{CommandError, StateDir, StoreError};

use super::documents::ExecDocuments;
pub use super::documents::MAX_APPROVALS_FILE;

/// Reads the approvals document.
pub const EXEC_APPROVALS_GET: &str = "system.execApprovals.get";
/// Replaces the approvals document, given the hash it was read at.
pub const EXEC_APPROVALS_SET: &str = "system.execApprovals.set";

/// The largest approvals document accepted from a gateway, in bytes (as
/// the 1 MiB config file); stored pretty-printed, it is read back up to
/// 4 MiB.
pub const MAX_DOCUMENT: usize = 1 << 20;
/// The largest `paramsJSON` of `set`: the document and room for its
/// base hash, refused before it is parsed.
pub const MAX_SET_PARAMS: usize = MAX_DOCUMENT + 4096;

static LOCK: Mutex<()> = Mutex::new(());

fn invalid(e: impl std::fmt::Display) -> CommandError {
    CommandError::new("INVALID_REQUEST", e.to_string())
}

fn unavailable(e: StoreError) -> CommandError {
    CommandError::new("UNAVAILABLE", format!("exec approvals: {e}"))
}

/// The stored document, parsed; a corrupt one is an error naming the file,
/// never a silent reset.
fn load(store: &StateDir) -> Result<(Option<Vec<u8>>, ApprovalsFile), CommandError> {
    let stored = store.load_exec_approvals().map_err(unavailable)?;
    let file = match &stored {
        None => ApprovalsFile::default(),
        Some(bytes) => ApprovalsFile::from_stored(bytes).map_err(|why| {
            CommandError::new(
                "UNAVAILABLE",
                format!(
                    "exec approvals file {} is corrupt ({why}); fix or remove it",
                    store.exec_approvals_path().display()
                ),
            )
        })?,
    };
    Ok((stored, file))
}

fn snapshot(store: &StateDir, stored: Option<&[u8]>, file: &ApprovalsFile) -> Value {
    json!({
        "path": store.exec_approvals_path().display().to_string(),
        "exists": stored.is_some(),
        "hash": hash(stored),
        "file": file.redacted(),
    })
}

/// `system.execApprovals.get`: the document without its socket token, its
/// hash, and the defaults in force (`resolvedDefaults`, this host's when
/// the document sets none).
pub fn approvals_get(store: &StateDir, params: &Value) -> Result<Value, CommandError> {
    if let Some(v) = params.get("includeResolvedDefaults")
        && !v.is_boolean()
    {
        return Err(invalid("includeResolvedDefaults must be boolean"));
    }
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (stored, file) = load(store)?;
    let resolved = file.resolve(None);
    let mut v = snapshot(store, stored.as_deref(), &file);
    v["resolvedDefaults"] = json!({
        "security": resolved.security,
        "ask": resolved.ask,
        "askFallback": resolved.ask_fallback,
        "autoAllowSkills": resolved.auto_allow_skills,
    });
    Ok(v)
}

/// `system.execApprovals.set` with `{file, baseHash}`: replaces the document
/// if `baseHash` is the hash of what is stored, and answers with the new
/// snapshot.
pub fn approvals_set(store: &StateDir, params: &Value) -> Result<Value, CommandError> {
    let Some(file) = params.get("file").filter(|f| f.is_object()) else {
        return Err(invalid("exec approvals file required"));
    };
    let base = match params.get("baseHash") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(invalid("baseHash must be a string")),
    };
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let stored = store.load_exec_approvals().map_err(unavailable)?;
    // The compare-and-swap first: a stale or missing hash costs no parse.
    check_base(stored.as_deref(), base).map_err(invalid)?;
    let incoming = ApprovalsFile::from_value(file).map_err(invalid)?;
    if let Some(ceiling) = Ceiling::load(store).map_err(unavailable)? {
        ceiling.admits(&incoming).map_err(|why| {
            CommandError::new("INVALID_REQUEST", format!("INVALID_REQUEST: {why}"))
        })?;
    }
    let next = apply_set(stored.as_deref(), incoming, base).map_err(invalid)?;
    let bytes = next.to_stored();
    if bytes.len() as u64 > MAX_APPROVALS_FILE {
        return Err(invalid(format!(
            "INVALID_REQUEST: exec approvals file of {} bytes is over the {MAX_APPROVALS_FILE}-byte limit",
            bytes.len()
        )));
    }
    store.store_exec_approvals(&bytes).map_err(unavailable)?;
    tracing::info!(path = %store.exec_approvals_path().display(), "exec approvals replaced");
    Ok(snapshot(store, Some(&bytes), &next))
}

/// Changes the stored document in place (`clawnode approvals`, run by
/// the node's owner on its host), under the same lock as `set`; answers
/// with the new snapshot.
pub fn edit_local(
    store: &StateDir,
    edit: impl FnOnce(&mut ApprovalsFile),
) -> Result<Value, CommandError> {
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (_, mut file) = load(store)?;
    edit(&mut file);
    let bytes = file.to_stored();
    store.store_exec_approvals(&bytes).map_err(unavailable)?;
    Ok(snapshot(store, Some(&bytes), &file))
}

/// Like [`edit_local`], but stores the document only when `edit` says it
/// changed something (so that an unchanged config file does not rewrite
/// it, or change its hash under an operator's read); says whether it did.
pub fn merge_local(
    store: &StateDir,
    edit: impl FnOnce(&mut ApprovalsFile) -> bool,
) -> Result<bool, CommandError> {
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (_, mut file) = load(store)?;
    if !edit(&mut file) {
        return Ok(false);
    }
    store
        .store_exec_approvals(&file.to_stored())
        .map_err(unavailable)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// `set` params for a document of exactly `bytes`, with a base hash.
    fn set_params_of(bytes: usize) -> String {
        let head = json!({"version": 1, "agents": {"*": {"allowlist": [{"pattern": ""}]}}});
        let fill = bytes - head.to_string().len();
        let doc = json!({"version": 1, "agents": {"*": {"allowlist": [
            {"pattern": "x".repeat(fill)}]}}});
        assert_eq!(doc.to_string().len(), bytes);
        json!({"file": doc, "baseHash": "0".repeat(64)}).to_string()
    }

    #[test]
    fn the_set_limit_admits_a_1_mib_document_and_nothing_much_larger() {
        assert!(set_params_of(1 << 20).len() <= MAX_SET_PARAMS);
        assert!(set_params_of((1 << 20) + 8192).len() > MAX_SET_PARAMS);
    }

    /// A document whose stored form is exactly `bytes` long.
    fn stored_of(bytes: usize) -> Value {
        let doc = |pad: usize, n: usize| {
            let mut list: Vec<Value> = (0..n)
                .map(|i| json!({"pattern": format!("/p/{i:08}")}))
                .collect();
            list.push(json!({"pattern": format!("/{}", "x".repeat(pad))}));
            json!({"version": 1, "agents": {"*": {"allowlist": list}}})
        };
        let stored = |v: &Value| ApprovalsFile::from_value(v).unwrap().to_stored().len();
        // Entries of about the same stored size, then one padded to fit.
        let base = stored(&doc(0, 0));
        let per = (stored(&doc(0, 1000)) - base) / 1000 + 1;
        let n = (bytes - base) / per - 16;
        let pad = bytes - stored(&doc(0, n));
        let v = doc(pad, n);
        assert_eq!(stored(&v), bytes);
        v
    }

    #[test]
    fn a_document_stored_past_the_file_limit_is_refused() {
        let limit = usize::try_from(MAX_APPROVALS_FILE).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::new(dir.path());
        let at = json!({"file": stored_of(limit)});
        approvals_set(&store, &at).expect("exactly the limit is stored");
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::new(dir.path());
        let over = json!({"file": stored_of(limit + 1)});
        let e = approvals_set(&store, &over).unwrap_err();
        assert!(e.message.contains("limit"), "{e:?}");
        assert_eq!(store.load_exec_approvals().unwrap(), None);
    }

    #[test]
    fn a_merge_that_changes_nothing_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::new(dir.path());
        assert!(!merge_local(&store, |_| false).unwrap());
        assert_eq!(store.load_exec_approvals().unwrap(), None);
        let changed = merge_local(&store, |f| {
            f.defaults.security = Some(crate::exec::approvals::Security::Allowlist);
            true
        });
        assert!(changed.unwrap());
        let stored = store.load_exec_approvals().unwrap().expect("stored");
        assert!(!merge_local(&store, |_| false).unwrap());
        assert_eq!(store.load_exec_approvals().unwrap(), Some(stored));
    }

    #[test]
    fn the_operator_round_trip_read_add_write_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::new(dir.path());
        let first = approvals_get(&store, &json!({})).unwrap();
        assert_eq!(first["exists"], false);
        assert_eq!(
            first["resolvedDefaults"]["security"], "deny",
            "nothing runs by default"
        );
        assert_eq!(
            first["file"],
            json!({"version": 1, "defaults": {}, "agents": {}})
        );
        // What `openclaw approvals allowlist add --node` does: read, add, write back.
        let mut file = first["file"].clone();
        file["agents"]["*"] = json!({"allowlist": [{"pattern": "/usr/bin/uname"}]});
        let set = approvals_set(&store, &json!({"file": file, "baseHash": first["hash"]})).unwrap();
        assert_eq!(set["exists"], true);
        assert_eq!(
            set["file"]["agents"]["*"]["allowlist"][0]["pattern"],
            "/usr/bin/uname"
        );
        let again = approvals_get(&store, &json!({})).unwrap();
        assert_eq!(again["hash"], set["hash"]);
        assert_eq!(again["file"], set["file"]);
        let mode = std::fs::metadata(store.exec_approvals_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A write based on the old hash loses.
        let stale =
            approvals_set(&store, &json!({"file": file, "baseHash": first["hash"]})).unwrap_err();
        assert_eq!(stale.code, "INVALID_REQUEST");
        assert!(
            stale.message.contains("changed; reload and retry"),
            "{stale:?}"
        );
    }

    #[test]
    fn a_local_edit_keeps_what_it_does_not_touch() {
        use crate::exec::approvals::{AllowEntry, Security};
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::new(dir.path());
        edit_local(&store, |f| {
            f.agents
                .entry("*".into())
                .or_default()
                .allowlist
                .push(AllowEntry {
                    pattern: "/usr/bin/uname".into(),
                    ..AllowEntry::default()
                })
        })
        .unwrap();
        let v = edit_local(&store, |f| f.defaults.security = Some(Security::Allowlist)).unwrap();
        assert_eq!(v["file"]["defaults"]["security"], "allowlist");
        assert_eq!(
            v["file"]["agents"]["*"]["allowlist"][0]["pattern"],
            "/usr/bin/uname"
        );
    }

    #[test]
    fn bad_requests_and_a_corrupt_file_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::new(dir.path());
        let e = approvals_set(&store, &json!({})).unwrap_err();
        assert!(e.message.contains("file required"), "{e:?}");
        let e = approvals_set(
            &store,
            &json!({"file": {"version": 1, "defaults": {"security": "all"}}}),
        )
        .unwrap_err();
        assert!(e.message.contains("all"), "{e:?}");
        let e = approvals_get(&store, &json!({"includeResolvedDefaults": "yes"})).unwrap_err();
        assert!(e.message.contains("must be boolean"), "{e:?}");
        std::fs::write(store.exec_approvals_path(), "{not json").unwrap();
        let e = approvals_get(&store, &json!({})).unwrap_err();
        assert_eq!(e.code, "UNAVAILABLE");
        assert!(
            e.message.contains("exec-approvals.json is corrupt"),
            "{e:?}"
        );
    }
}
