//! The state directory: device identity, device tokens and TOFU pins.
//!
//! Layout (all files mode 0600, directories 0700):
//!
//! ```text
//! STATE_DIR/identity.json          the Ed25519 device key, created once
//! STATE_DIR/tokens/<hash>.json     one device token per (gateway URL, device id, role)
//! STATE_DIR/pins/<hash>.json       one TOFU pin per host:port
//! ```
//!
//! Every write goes to a temporary file in the same directory, is fsynced,
//! then renamed (or hard-linked, where an existing file must never be
//! replaced) into place, and the directory is fsynced: a crash leaves either
//! the old file or the new one, never half of one. A crash (or SIGKILL)
//! between the write and the rename leaves the temporary file: it is
//! created mode 0600, like the file it becomes, and removed at the next
//! start ([`StateDir::remove_stale_temp_files`]).

use std::fs::{self, File};
use std::io::{self, Read as _};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clawnode_core::{DeviceIdentity, Pin, Secret};
use ed25519_dalek::SigningKey;
use rand_core::{OsRng, RngCore as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use atomic::{write_new, write_replace};

mod atomic;

/// A failure to read or write the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or directory could not be read, created or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A file exists but its content is not what clawnode wrote.
    #[error(
        "{path} is corrupt ({reason}); refusing to continue. A new identity would be a new \
         device that needs pairing again: restore the file from a backup, or move it away \
         deliberately to create a new identity"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No state directory was given and neither `XDG_STATE_HOME` nor `HOME`
    /// is set.
    #[error("no state directory: set --state-dir, XDG_STATE_HOME or HOME")]
    NoStateDir,
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

/// The gateway a node paired with, as [`StateDir::store_paired_gateway`]
/// keeps it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PairedGateway {
    /// The gateway URL.
    pub url: String,
    /// Its certificate pins (`sha256:` hex), empty for a loopback `ws://`.
    pub tls_fingerprints: Vec<String>,
}

/// The state directory of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IdentityFile {
    version: u32,
    /// base64url (no padding) of the 32-byte Ed25519 seed.
    private_key: String,
    /// Written for people and checked on load, so that a damaged key is
    /// caught instead of silently becoming another device.
    device_id: String,
    public_key: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TokenFile {
    url: String,
    device_id: String,
    role: String,
    token: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PinFile {
    key: String,
    pin: String,
}

impl StateDir {
    /// A state directory at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }

    /// `$XDG_STATE_HOME/clawnode`, else `~/.local/state/clawnode`.
    pub fn default_location() -> Result<Self, StoreError> {
        let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(x) = non_empty("XDG_STATE_HOME") {
            return Ok(StateDir::new(PathBuf::from(x).join("clawnode")));
        }
        match non_empty("HOME") {
            Some(h) => Ok(StateDir::new(
                PathBuf::from(h).join(".local/state/clawnode"),
            )),
            None => Err(StoreError::NoStateDir),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The identity file's path.
    pub fn identity_path(&self) -> PathBuf {
        self.root.join("identity.json")
    }

    /// Loads the device key, creating it if (and only if) no identity file
    /// exists. An unreadable or corrupt file is an error, never a new key.
    ///
    /// Every start goes through here, so it first removes the temporary
    /// files an earlier process left behind
    /// ([`remove_stale_temp_files`](Self::remove_stale_temp_files)).
    pub fn load_or_create_identity(&self) -> Result<SigningKey, StoreError> {
        self.clean_up();
        let path = self.identity_path();
        match self.load_identity()? {
            Some(k) => Ok(k),
            None => {
                let mut seed = [0u8; 32];
                OsRng.fill_bytes(&mut seed);
                let key = SigningKey::from_bytes(&seed);
                seed.fill(0);
                let id = DeviceIdentity::new(key.clone());
                let file = IdentityFile {
                    version: 1,
                    private_key: URL_SAFE_NO_PAD.encode(key.to_bytes()),
                    device_id: id.device_id().to_owned(),
                    public_key: id.public_key().to_owned(),
                };
                let text = serde_json::to_string_pretty(&file).expect("serialisable") + "\n";
                self.ensure_dir(&self.root)?;
                if write_new(&path, text.as_bytes())? {
                    tracing::info!(device_id = id.device_id(), path = %path.display(), "created device identity");
                    Ok(key)
                } else {
                    // Another process created it first: use theirs.
                    self.load_identity()?.ok_or_else(|| StoreError::Corrupt {
                        path,
                        reason: "vanished while being created".into(),
                    })
                }
            }
        }
    }

    /// Loads the device key; `None` when there is no identity file.
    pub fn load_identity(&self) -> Result<Option<SigningKey>, StoreError> {
        let path = self.identity_path();
        let Some(text) = read_optional(&path)? else {
            return Ok(None);
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.clone(),
            reason,
        };
        let file: IdentityFile = serde_json::from_str(&text)
            .map_err(|e| corrupt(format!("not a clawnode identity file: {e}")))?;
        if file.version != 1 {
            return Err(corrupt(format!("unknown version {}", file.version)));
        }
        let raw = URL_SAFE_NO_PAD
            .decode(file.private_key.trim())
            .map_err(|e| corrupt(format!("privateKey is not base64url: {e}")))?;
        let seed: [u8; 32] = raw
            .try_into()
            .map_err(|v: Vec<u8>| corrupt(format!("privateKey is {} bytes, not 32", v.len())))?;
        let key = SigningKey::from_bytes(&seed);
        let id = DeviceIdentity::new(key.clone());
        if id.device_id() != file.device_id || id.public_key() != file.public_key {
            return Err(corrupt(
                "the private key does not match the recorded deviceId/publicKey".into(),
            ));
        }
        if let Ok(meta) = fs::metadata(&path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
                "the identity file is readable by others; chmod 600 it");
        }
        Ok(Some(key))
    }

    fn token_path(&self, url: &str, device_id: &str, role: &str) -> PathBuf {
        let key = format!("{url}\n{device_id}\n{role}");
        self.root
            .join("tokens")
            .join(format!("{}.json", short_hash(&key)))
    }

    /// The device token stored for (gateway URL, device id, role), if any.
    /// A corrupt token file is logged and treated as absent: the gateway can
    /// always issue a new token, unlike a device identity.
    pub fn load_token(
        &self,
        url: &str,
        device_id: &str,
        role: &str,
    ) -> Result<Option<Secret>, StoreError> {
        let path = self.token_path(url, device_id, role);
        let Some(text) = read_optional(&path)? else {
            return Ok(None);
        };
        match serde_json::from_str::<TokenFile>(&text) {
            Ok(f) if f.url == url && f.device_id == device_id && f.role == role => {
                Ok(Some(Secret::new(f.token)))
            }
            Ok(_) => Ok(None),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring a corrupt device-token file");
                Ok(None)
            }
        }
    }

    /// Stores the device token for (gateway URL, device id, role),
    /// replacing the previous one atomically.
    pub fn store_token(
        &self,
        url: &str,
        device_id: &str,
        role: &str,
        token: &Secret,
    ) -> Result<(), StoreError> {
        let path = self.token_path(url, device_id, role);
        let file = TokenFile {
            url: url.to_owned(),
            device_id: device_id.to_owned(),
            role: role.to_owned(),
            token: token.expose().to_owned(),
        };
        let text = serde_json::to_string_pretty(&file).expect("serialisable") + "\n";
        self.ensure_dir(path.parent().expect("has a parent"))?;
        write_replace(&path, text.as_bytes())
    }

    /// Deletes the device token stored for (gateway URL, device id, role);
    /// says whether there was one.
    pub fn forget_token(&self, url: &str, device_id: &str, role: &str) -> Result<bool, StoreError> {
        let path = self.token_path(url, device_id, role);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    fn pin_path(&self, key: &str) -> PathBuf {
        self.root
            .join("pins")
            .join(format!("{}.json", short_hash(key)))
    }

    /// The pin learned on first use for `key` (usually `host:port`).
    /// A corrupt pin file is an error: treating it as absent would let any
    /// certificate be trusted anew.
    pub fn load_pin(&self, key: &str) -> Result<Option<Pin>, StoreError> {
        let path = self.pin_path(key);
        let Some(text) = read_optional(&path)? else {
            return Ok(None);
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.clone(),
            reason,
        };
        let f: PinFile = serde_json::from_str(&text)
            .map_err(|e| corrupt(format!("not a clawnode pin file: {e}")))?;
        if f.key != key {
            return Err(corrupt(format!("it is for {:?}, not {key:?}", f.key)));
        }
        Pin::parse(&f.pin)
            .map(Some)
            .map_err(|e| corrupt(e.to_string()))
    }

    /// Stores the pin for `key` unless one is stored already; returns the
    /// pin in force afterwards (the stored one wins: never replaced).
    pub fn store_pin_once(&self, key: &str, pin: &Pin) -> Result<Pin, StoreError> {
        let path = self.pin_path(key);
        let text = serde_json::to_string_pretty(&PinFile {
            key: key.to_owned(),
            pin: pin.to_string(),
        })
        .expect("serialisable")
            + "\n";
        self.ensure_dir(path.parent().expect("has a parent"))?;
        if write_new(&path, text.as_bytes())? {
            Ok(*pin)
        } else {
            self.load_pin(key)?.ok_or_else(|| StoreError::Corrupt {
                path,
                reason: "vanished while being created".into(),
            })
        }
    }

    /// The gateway this node paired with (`clawnode run --pair`): its URL
    /// and certificate pins, used when no URL is configured. Never a
    /// token: the bootstrap token is not written anywhere.
    pub fn load_paired_gateway(&self) -> Result<Option<PairedGateway>, StoreError> {
        let path = self.root.join("paired-gateway.json");
        let Some(text) = read_optional(&path)? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path,
                reason: e.to_string(),
            })
    }

    /// Remembers the gateway this node paired with, replacing the last.
    pub fn store_paired_gateway(&self, gateway: &PairedGateway) -> Result<(), StoreError> {
        self.ensure_dir(&self.root)?;
        let text = serde_json::to_string_pretty(gateway).expect("serialisable") + "\n";
        write_replace(&self.root.join("paired-gateway.json"), text.as_bytes())
    }

    /// The path of the document `name` kept in the state directory by a
    /// command of the node host (the exec approvals, say).
    pub fn document_path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The document `name`, exactly as stored, or `None` when there is
    /// none. A file over `max_bytes` is refused unread (as corrupt), and so
    /// is one that is not UTF-8 text.
    pub fn load_document(&self, name: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.document_path(name);
        match std::fs::metadata(&path) {
            Ok(m) if m.len() > max_bytes => {
                return Err(StoreError::Corrupt {
                    path,
                    reason: format!("{} bytes, over the {max_bytes}-byte limit", m.len()),
                });
            }
            _ => {}
        }
        Ok(read_optional(&path)?.map(String::into_bytes))
    }

    /// Replaces the document `name` atomically, mode 0600.
    pub fn store_document(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.ensure_dir(&self.root)?;
        write_replace(&self.document_path(name), bytes)
    }

    /// Removes the document `name`; a missing one is already removed.
    pub fn remove_document(&self, name: &str) -> Result<(), StoreError> {
        let path = self.document_path(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("removing", &path)(e)),
            _ => Ok(()),
        }
    }

    /// Removes the temporary files that writers killed mid-write left in
    /// the state directory and its `tokens/` and `pins/` folders; returns
    /// how many were removed.
    ///
    /// Such a file may hold a private key or a device token (it is mode
    /// 0600, but it should not outlive the write). A temporary file is
    /// stale when the process named in it (`.NAME.PID.N.tmp`) is gone, or,
    /// in case that process id was reused, when it is older than ten
    /// minutes: a write takes milliseconds. Files of live
    /// writers (another process sharing the directory, or this one) are
    /// left alone, and so is everything not named like a temporary file.
    pub fn remove_stale_temp_files(&self) -> Result<usize, StoreError> {
        let mut removed = 0;
        for dir in [
            self.root.clone(),
            self.root.join("tokens"),
            self.root.join("pins"),
        ] {
            removed += atomic::remove_stale(&dir)?;
        }
        Ok(removed)
    }

    /// [`remove_stale_temp_files`](Self::remove_stale_temp_files), logging
    /// a failure instead of returning it: leftovers are worth a warning,
    /// not a refusal to start.
    pub(crate) fn clean_up(&self) {
        if let Err(e) = self.remove_stale_temp_files() {
            tracing::warn!(error = %e, "could not remove stale temporary files");
        }
    }

    fn ensure_dir(&self, dir: &Path) -> Result<(), StoreError> {
        if dir.is_dir() {
            return Ok(());
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err("creating directory", dir))
    }
}

fn short_hash(s: &str) -> String {
    Sha256::digest(s.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn read_optional(path: &Path) -> Result<Option<String>, StoreError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("reading", path)(e)),
    };
    let mut text = String::new();
    match file.read_to_string(&mut text) {
        Ok(_) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: "not UTF-8 text".into(),
        }),
        Err(e) => Err(io_err("reading", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::atomic::{temp_file_pid, write_temp};
    use super::*;

    #[test]
    fn identity_is_created_once_and_reused_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::new(dir.path().join("state"));
        assert!(store.load_identity().unwrap().is_none());
        let a = store.load_or_create_identity().unwrap();
        let b = store.load_or_create_identity().unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        let mode = fs::metadata(store.identity_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = fs::metadata(store.path()).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(store.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("identity.json")]);
    }

    #[test]
    fn temporary_files_are_private_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.json");
        // Empty, as right after creation: already 0600.
        let tmp = write_temp(&path, b"").unwrap();
        assert_eq!(
            fs::metadata(&tmp).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let tmp = write_temp(&path, b"secret").unwrap();
        assert_eq!(
            fs::metadata(&tmp).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let name = tmp.file_name().unwrap().to_str().unwrap();
        assert_eq!(temp_file_pid(name), Some(std::process::id()), "{name}");
    }

    #[test]
    fn stale_temporary_files_are_removed_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::new(dir.path().join("state"));
        let (tokens, pins) = (store.path().join("tokens"), store.path().join("pins"));
        for d in [&tokens, &pins] {
            fs::create_dir_all(d).unwrap();
        }
        // No process can have this id (pid_max is at most 2^22).
        let dead = 999_999_999u32;
        let me = std::process::id();
        let stale = [
            store.path().join(format!(".identity.json.{dead}.0.tmp")),
            tokens.join(format!(".0123abcd.json.{dead}.7.tmp")),
            pins.join(format!(".89ef.json.{dead}.12.tmp")),
        ];
        let kept = [
            // A live writer's (here: this process's) file in progress, with
            // a sequence number the process's own writes never reach.
            store
                .path()
                .join(format!(".identity.json.{me}.{}.tmp", u64::MAX)),
            // Another live process's (init's).
            tokens.join(".0123abcd.json.1.3.tmp"),
            // Not named like clawnode's temporary files.
            store.path().join("notes.tmp"),
            store.path().join(format!(".{dead}.0.tmp")),
            tokens.join("0123abcd.json"),
        ];
        for f in stale.iter().chain(&kept) {
            fs::write(f, "k").unwrap();
        }
        store.load_or_create_identity().unwrap();
        for f in &stale {
            assert!(!f.exists(), "{} left behind", f.display());
        }
        for f in &kept {
            assert!(f.exists(), "{} removed", f.display());
        }
        assert_eq!(store.remove_stale_temp_files().unwrap(), 0);
        // A missing directory is nothing to clean.
        let empty = StateDir::new(dir.path().join("none"));
        assert_eq!(empty.remove_stale_temp_files().unwrap(), 0);
    }

    #[test]
    fn temporary_file_names_are_recognised() {
        assert_eq!(temp_file_pid(".identity.json.42.0.tmp"), Some(42));
        assert_eq!(temp_file_pid(".a.b.c.json.42.17.tmp"), Some(42));
        for other in [
            "identity.json",
            ".identity.json",
            "identity.json.42.0.tmp",
            ".identity.json.x.0.tmp",
            ".identity.json.42.x.tmp",
            ".42.0.tmp",
            ".identity.json.42.0.tmp~",
        ] {
            assert_eq!(temp_file_pid(other), None, "{other}");
        }
    }

    #[test]
    fn corrupt_identity_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::new(dir.path());
        for bad in [
            "garbage".to_string(),
            "{}".to_string(),
            r#"{"version":1,"privateKey":"AAAA","deviceId":"x","publicKey":"y"}"#.to_string(),
        ] {
            fs::write(store.identity_path(), &bad).unwrap();
            let err = store.load_or_create_identity().unwrap_err();
            assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
            assert!(err.to_string().contains("identity.json"), "{err}");
            assert_eq!(fs::read_to_string(store.identity_path()).unwrap(), bad);
        }
        // A valid key whose recorded id was damaged is caught too.
        fs::remove_file(store.identity_path()).unwrap();
        store.load_or_create_identity().unwrap();
        let text = fs::read_to_string(store.identity_path()).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["deviceId"] = "00".repeat(32).into();
        fs::write(store.identity_path(), v.to_string()).unwrap();
        assert!(matches!(
            store.load_identity(),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn unreadable_identity_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::new(dir.path());
        fs::create_dir(store.identity_path()).unwrap();
        assert!(store.load_or_create_identity().is_err());
    }

    #[test]
    fn tokens_are_kept_per_url_device_and_role() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::new(dir.path());
        let t = Secret::new("tok-1");
        store.store_token("wss://a/", "dev", "node", &t).unwrap();
        assert_eq!(
            store.load_token("wss://a/", "dev", "node").unwrap(),
            Some(t)
        );
        assert_eq!(store.load_token("wss://b/", "dev", "node").unwrap(), None);
        assert_eq!(store.load_token("wss://a/", "dev2", "node").unwrap(), None);
        assert_eq!(
            store.load_token("wss://a/", "dev", "operator").unwrap(),
            None
        );
        let t2 = Secret::new("tok-2");
        store.store_token("wss://a/", "dev", "node", &t2).unwrap();
        assert_eq!(
            store.load_token("wss://a/", "dev", "node").unwrap(),
            Some(t2)
        );
        let entries = fs::read_dir(store.path().join("tokens")).unwrap().count();
        assert_eq!(entries, 1, "no temporary file left behind");
    }

    #[test]
    fn pins_are_stored_once_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::new(dir.path());
        let a = Pin::from_sha256([1; 32]);
        let b = Pin::from_sha256([2; 32]);
        assert_eq!(store.load_pin("h:1").unwrap(), None);
        assert_eq!(store.store_pin_once("h:1", &a).unwrap(), a);
        assert_eq!(store.store_pin_once("h:1", &b).unwrap(), a);
        assert_eq!(store.load_pin("h:1").unwrap(), Some(a));
        assert_eq!(store.load_pin("h:2").unwrap(), None);
    }

    #[test]
    fn stale_temporary_files_are_counted_in_every_folder() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::new(dir.path().join("state"));
        let tokens = store.path().join("tokens");
        fs::create_dir_all(&tokens).unwrap();
        for f in [
            store.path().join(".identity.json.999999999.0.tmp"),
            store.path().join(".identity.json.999999999.1.tmp"),
            tokens.join(".ab.json.999999999.2.tmp"),
        ] {
            fs::write(f, "k").unwrap();
        }
        assert_eq!(store.remove_stale_temp_files().unwrap(), 3);
    }

    #[test]
    fn a_token_file_for_another_gateway_device_or_role_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::new(dir.path());
        store
            .store_token("wss://a:1", "dev", "node", &Secret::new("tok"))
            .unwrap();
        let stored = fs::read(store.token_path("wss://a:1", "dev", "node")).unwrap();
        for (url, device, role) in [
            ("wss://b:1", "dev", "node"),
            ("wss://a:1", "other", "node"),
            ("wss://a:1", "dev", "operator"),
        ] {
            // The right file name with another triple's content: never used.
            fs::write(store.token_path(url, device, role), &stored).unwrap();
            assert_eq!(
                store.load_token(url, device, role).unwrap(),
                None,
                "{url} {device} {role}"
            );
        }
        assert_eq!(
            store.load_token("wss://a:1", "dev", "node").unwrap(),
            Some(Secret::new("tok"))
        );
    }

    #[test]
    fn unreadable_state_is_an_error_never_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the state directory should be.
        let file = dir.path().join("not-a-dir");
        fs::write(&file, "x").unwrap();
        let store = StateDir::new(&file);
        assert!(store.load_token("wss://a:1", "dev", "node").is_err());
        assert!(store.remove_stale_temp_files().is_err());
        // An identity file that is not text is corrupt, and says so.
        let store = StateDir::new(dir.path().join("state"));
        fs::create_dir_all(store.path()).unwrap();
        fs::write(store.identity_path(), [0xff, 0xfe, 0x00]).unwrap();
        let err = store.load_identity().unwrap_err().to_string();
        assert!(err.contains("not UTF-8"), "{err}");
        // One that cannot be read at all is not called corrupt.
        fs::remove_file(store.identity_path()).unwrap();
        fs::create_dir(store.identity_path()).unwrap();
        let err = store.load_identity().unwrap_err().to_string();
        assert!(!err.contains("not UTF-8"), "{err}");
    }
}
