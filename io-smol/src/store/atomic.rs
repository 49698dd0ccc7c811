//! Atomic, private file writes, and the cleanup of what a killed writer
//! leaves behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{StoreError, io_err};

/// Removes the stale temporary files in `dir` (see
/// [`StateDir::remove_stale_temp_files`](super::StateDir::remove_stale_temp_files));
/// returns how many.
pub(super) fn remove_stale(dir: &Path) -> Result<usize, StoreError> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err("listing", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err("listing", dir))?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_file_pid) else {
            continue;
        };
        let path = entry.path();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= STALE_TEMP_AGE);
        let stale = old || !process_alive(pid);
        if !stale || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed a stale temporary file");
                removed += 1;
            }
            // Its writer (or another cleaner) got there first.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("removing", &path)(e)),
        }
    }
    Ok(removed)
}

/// How old a temporary file must be to be removed even though a process
/// with the id in its name is running (that id may have been reused).
const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// The process id in a temporary file's name (`.NAME.PID.N.tmp`, see
/// [`write_temp`]); `None` for any other name.
pub(super) fn temp_file_pid(name: &str) -> Option<u32> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = inner.rsplitn(3, '.');
    let counter = parts.next()?;
    let pid = parts.next()?;
    let _file = parts.next().filter(|f| !f.is_empty())?;
    counter.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Whether process `pid` exists (this one always does). Without `/proc`
/// every process counts as alive, leaving only the age to go by.
fn process_alive(pid: u32) -> bool {
    pid == std::process::id()
        || !Path::new("/proc/self").exists()
        || Path::new(&format!("/proc/{pid}")).exists()
}

/// Writes `bytes` to a fresh temporary file beside `path`, fsynced, mode 0600.
///
/// The mode is given to `open(2)` itself (`O_CREAT|O_EXCL`, mode 0600, then
/// narrowed by the umask, never widened): the file is private from its first
/// byte, where a chmod after writing would leave a window in which the key
/// is readable under the umask's mode, and a kill in that window a readable
/// leftover. The name carries the process id so that the next start can
/// tell a dead writer's leftovers from a live writer's file
/// ([`StateDir::remove_stale_temp_files`]).
pub(super) fn write_temp(path: &Path, bytes: &[u8]) -> Result<PathBuf, StoreError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(io_err("writing", &tmp)(e))
        }
    }
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(d) = File::open(dir)
    {
        // Best effort: some filesystems refuse to fsync a directory.
        let _ = d.sync_all();
    }
}

/// Atomically replaces `path` with `bytes`.
pub(super) fn write_replace(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = write_temp(path, bytes)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("replacing", path)(e));
    }
    sync_dir(path);
    Ok(())
}

/// Atomically creates `path` with `bytes` unless it exists; `false` when it
/// did (the existing file is left alone).
pub(super) fn write_new(path: &Path, bytes: &[u8]) -> Result<bool, StoreError> {
    let tmp = write_temp(path, bytes)?;
    // A hard link fails if the target exists, where a rename would replace it.
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(path);
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_err("creating", path)(e)),
    }
}
