//! The built-in `system.which` command.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use clawnode::CommandError;

/// The command's name.
pub const SYSTEM_WHICH: &str = "system.which";

/// Finds `name` on `path` (a `PATH`-style list) the way a shell would:
/// the first directory holding an executable regular file of that name.
pub fn which_in(name: &str, path: &OsStr, cwd: &Path) -> Option<PathBuf> {
    // A name with a slash is a path, not a command name; an empty name or a
    // dot-name would resolve to a directory.
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return None;
    }
    std::env::split_paths(path).find_map(|dir| {
        let dir = if dir.as_os_str().is_empty() {
            cwd.to_path_buf()
        } else if dir.is_relative() {
            cwd.join(dir)
        } else {
            dir
        };
        let candidate = dir.join(name);
        let meta = std::fs::metadata(&candidate).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(candidate)
    })
}

/// Answers `{"bins":[NAME...]}` with `{"bins":{NAME:ABSOLUTE_PATH}}` for
/// the names found on `PATH`.
pub fn system_which(params: &Value) -> Result<Value, CommandError> {
    let bins = params
        .get("bins")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            CommandError::new(
                "INVALID_PARAMS",
                "system.which expects {\"bins\": [NAME, ...]}",
            )
        })?;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let mut found = BTreeMap::new();
    for bin in bins {
        let name = bin.as_str().ok_or_else(|| {
            CommandError::new(
                "INVALID_PARAMS",
                format!("system.which: bins must be strings, found {bin}"),
            )
        })?;
        if let Some(p) = which_in(name, &path, &cwd) {
            found.insert(name.to_owned(), p.to_string_lossy().into_owned());
        }
    }
    Ok(json!({ "bins": found }))
}

/// `system.which` as a command handler (runs the file-system search on a
/// thread of its own: a hung mount stalls this invoke, nothing else).
pub async fn handler(inv: clawnode::Invocation) -> Result<Value, CommandError> {
    clawnode::on_own_thread(move || system_which(&inv.params)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn finds_executables_in_path_order() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        fs::write(a.join("tool"), "").unwrap(); // not executable
        fs::write(b.join("tool"), "").unwrap();
        fs::set_permissions(b.join("tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(a.join("dir")).unwrap();
        let path = std::env::join_paths([&a, &b]).unwrap();
        assert_eq!(
            which_in("tool", &path, Path::new("/")),
            Some(b.join("tool"))
        );
        assert_eq!(which_in("dir", &path, Path::new("/")), None);
        assert_eq!(which_in("missing", &path, Path::new("/")), None);
        assert_eq!(which_in("b/tool", &path, dir.path()), None);
        // Relative PATH entries resolve against the working directory.
        assert_eq!(
            which_in("tool", OsStr::new("b"), dir.path()),
            Some(b.join("tool"))
        );
    }

    #[test]
    fn answers_the_official_shape() {
        let v = system_which(&json!({"bins": ["sh", "surely-not-a-command-xyz"]})).unwrap();
        let sh = v["bins"]["sh"].as_str().expect("sh is on PATH");
        assert!(sh.starts_with('/') && sh.ends_with("/sh"), "{sh}");
        assert!(v["bins"].get("surely-not-a-command-xyz").is_none());
        assert_eq!(system_which(&json!({})).unwrap_err().code, "INVALID_PARAMS");
        assert_eq!(
            system_which(&json!({"bins": [1]})).unwrap_err().code,
            "INVALID_PARAMS"
        );
    }
}
