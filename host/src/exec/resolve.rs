//! Finding the file a command word names, once, and holding it open
//! (docs/exec-host.md §3.3, §11.1).
//!
//! A word is resolved as a shell would (a path against the working
//! directory, a bare name on `PATH`), then opened with `O_PATH`: the handle
//! is what the allowlist judges (its real path, read back from the handle)
//! and what the run executes (`execveat` on the handle), so no rename, link
//! flip or `PATH` change between the check and the exec can swap the file.
//!
//! What a program does with its arguments is told by the file it is, never
//! by the word that named it: a shell is a file listed in `/etc/shells` (or
//! one of the system shells) whose real name is a shell's; a dispatch
//! wrapper or a multi-call binary is told by its real name. A byte-for-byte
//! copy of a system shell, wrapper or multi-call binary under another name
//! or elsewhere is told by its content ([`copy_of`]).

use std::ffi::OsStr;
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustix::fs::{Mode, OFlags, fstat, open};
use sha2::{Digest as _, Sha256};

use crate::which::which_in;

/// Shells whose `-c TEXT` form this host understands, by real file name.
pub const SHELL_NAMES: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash"];

/// Programs that run another program named in their arguments (or a
/// command line of their own): judging them by their own entry would allow
/// whatever they run. Told by real file name.
pub const WRAPPERS: &[&str] = &[
    "env",
    "nice",
    "nohup",
    "timeout",
    "stdbuf",
    "setsid",
    "xargs",
    "find",
    "time",
    "sudo",
    "doas",
    "su",
    "runuser",
    "pkexec",
    "chroot",
    "ionice",
    "taskset",
    "chrt",
    "flock",
    "script",
    "watch",
    "strace",
    "ltrace",
    "gdb",
    "valgrind",
    "unshare",
    "nsenter",
    "setpriv",
    "systemd-run",
    "run-parts",
    "parallel",
    "tmux",
    "screen",
    "expect",
    "ssh",
    "chpst",
    "prlimit",
    "catchsegv",
    "firejail",
    "bwrap",
    "fakeroot",
    "faketime",
    "torsocks",
    "proxychains",
    "proxychains4",
    "numactl",
    "cgexec",
    "daemonize",
    "start-stop-daemon",
    "sg",
    "newgrp",
    "rlwrap",
    "ccache",
    "entr",
    "inotifywait",
    "setarch",
    "linux32",
    "linux64",
    "x86_64",
    "i386",
    "uname26",
    "runcon",
    "perf",
    "dbus-run-session",
    "xvfb-run",
    "sshpass",
    "unbuffer",
    "systemd-inhibit",
    "nocache",
    "eatmydata",
    "cpulimit",
    "schedtool",
    "tsp",
    "at",
    "batch",
    "crontab",
];

/// Names of shells and command interpreters of that kind: a program under
/// one of these names that is not a system shell under a shell's name
/// ([`Kind::LookAlike`]) is never covered.
pub const SHELL_LIKE: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "rbash", "oksh", "loksh", "yash", "posh",
    "fish", "csh", "tcsh", "nu", "xonsh", "elvish", "pwsh", "rc", "es", "ion",
];

/// Binaries that act as the program their `argv[0]` names.
pub const MULTI_CALL: &[&str] = &["busybox", "toybox", "coreutils", "uutils"];

/// Where the system's shells are when `/etc/shells` is missing or short.
const SYSTEM_SHELLS: &[&str] = &[
    "/bin/sh",
    "/usr/bin/sh",
    "/bin/bash",
    "/usr/bin/bash",
    "/bin/dash",
    "/usr/bin/dash",
    "/bin/zsh",
    "/usr/bin/zsh",
    "/bin/ksh",
    "/usr/bin/ksh",
    "/bin/ash",
];

/// A file's identity: device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId {
    /// The device.
    pub dev: u64,
    /// The inode.
    pub ino: u64,
}

impl FileId {
    /// The identity of what `fd` refers to.
    pub fn of(fd: &OwnedFd) -> std::io::Result<Self> {
        let st = fstat(fd.as_fd())?;
        Ok(FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }
}

/// A program resolved once and held open.
#[derive(Clone, Debug)]
pub struct Program {
    /// The word that named it.
    pub word: String,
    /// The absolute path it was found at (links not followed).
    pub found: PathBuf,
    /// Its real path, read back from the handle.
    pub real: PathBuf,
    /// The open handle (`O_PATH`): what is executed.
    pub file: Arc<OwnedFd>,
    /// Its identity.
    pub id: FileId,
    /// Its size in bytes, when resolved.
    pub size: u64,
}

impl Program {
    /// The real path's file name.
    pub fn real_name(&self) -> &str {
        self.real
            .file_name()
            .and_then(OsStr::to_str)
            .unwrap_or_default()
    }
}

/// What a program does with its arguments, as far as judging goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A shell this host understands (its dialect, a [`SHELL_NAMES`] entry).
    Shell(&'static str),
    /// A dispatch wrapper ([`WRAPPERS`]).
    Wrapper,
    /// A multi-call binary not acting as a shell ([`MULTI_CALL`]).
    MultiCall,
    /// A system shell under a name that is not a shell's, or another
    /// program under a shell's name ([`SHELL_LIKE`]): what it does with
    /// `-c` cannot be told from either, so it is never covered.
    LookAlike,
    /// Anything else: judged as itself.
    Plain,
}

/// Resolves `word` against `cwd` and `path` and opens what it names; the
/// error says what was not found or not executable.
pub fn resolve(word: &str, cwd: &Path, path: &OsStr) -> Result<Program, String> {
    if word.is_empty() {
        return Err("an empty program name".into());
    }
    let found = if word.contains('/') {
        cwd.join(word)
    } else {
        which_in(word, path, cwd).ok_or_else(|| format!("{word}: not found on PATH"))?
    };
    let file = open(&found, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("{}: {e}", found.display()))?;
    let st = fstat(file.as_fd()).map_err(|e| format!("{}: {e}", found.display()))?;
    let regular = st.st_mode & libc::S_IFMT == libc::S_IFREG;
    if !regular || st.st_mode & 0o111 == 0 {
        return Err(format!(
            "{} is not an executable regular file",
            found.display()
        ));
    }
    let real = std::fs::read_link(format!("/proc/self/fd/{}", raw(&file)))
        .map_err(|e| format!("{}: real path unknown ({e})", found.display()))?;
    Ok(Program {
        word: word.to_owned(),
        found,
        real,
        id: FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        },
        size: u64::try_from(st.st_size).unwrap_or(0),
        file: Arc::new(file),
    })
}

fn raw(fd: &OwnedFd) -> i32 {
    use std::os::fd::AsRawFd as _;
    fd.as_raw_fd()
}

/// The system's shells by path: `/etc/shells`, then [`SYSTEM_SHELLS`].
fn shell_paths() -> Vec<PathBuf> {
    let listed = std::fs::read_to_string("/etc/shells").unwrap_or_default();
    listed
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('/'))
        .chain(SYSTEM_SHELLS.iter().copied())
        .map(PathBuf::from)
        .collect()
}

/// The identities of the system's shells: `/etc/shells` and
/// [`SYSTEM_SHELLS`], read once.
fn shells() -> &'static [FileId] {
    static SHELLS: OnceLock<Vec<FileId>> = OnceLock::new();
    SHELLS.get_or_init(|| {
        let mut ids: Vec<FileId> = shell_paths()
            .into_iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| {
                use std::os::unix::fs::MetadataExt as _;
                FileId {
                    dev: m.dev(),
                    ino: m.ino(),
                }
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids
    })
}

/// Where the system's wrappers and multi-call binaries are looked for, to
/// know their copies.
const SYSTEM_BIN_DIRS: &[&str] = &["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"];

/// A system program whose copies are told by content: its path, size and
/// identity, and what a copy of it is.
struct Original {
    path: PathBuf,
    size: u64,
    id: FileId,
    kind: Kind,
    /// SHA-256 of its content, computed the first time a file of its size
    /// is resolved.
    digest: OnceLock<Option<[u8; 32]>>,
}

/// The system's shells (a copy is a [`Kind::LookAlike`]: not a system shell
/// under its name), wrappers and multi-call binaries, read once.
fn originals() -> &'static [Original] {
    static ORIGINALS: OnceLock<Vec<Original>> = OnceLock::new();
    ORIGINALS.get_or_init(|| {
        let shells = shell_paths().into_iter().map(|p| (p, Kind::LookAlike));
        let others = SYSTEM_BIN_DIRS.iter().flat_map(|dir| {
            WRAPPERS
                .iter()
                .map(|n| (Kind::Wrapper, n))
                .chain(MULTI_CALL.iter().map(|n| (Kind::MultiCall, n)))
                .map(move |(kind, n)| (Path::new(dir).join(n), kind))
        });
        let mut all: Vec<Original> = shells
            .chain(others)
            .filter_map(|(path, kind)| {
                use std::os::unix::fs::MetadataExt as _;
                let m = std::fs::metadata(&path).ok().filter(|m| m.is_file())?;
                Some(Original {
                    path,
                    size: m.len(),
                    id: FileId {
                        dev: m.dev(),
                        ino: m.ino(),
                    },
                    kind,
                    digest: OnceLock::new(),
                })
            })
            .collect();
        all.sort_by_key(|o| (o.size, o.id));
        all.dedup_by_key(|o| o.id);
        all
    })
}

/// SHA-256 of what `reader` yields.
fn sha256(mut reader: impl std::io::Read) -> Option<[u8; 32]> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut reader, &mut hasher).ok()?;
    Some(hasher.finalize().into())
}

/// What `program` is a copy of, if it is a byte-for-byte copy of a system
/// shell, wrapper or multi-call binary that is not that file itself: only
/// a file of an original's size is read.
pub fn copy_of(program: &Program) -> Option<Kind> {
    let same_size = originals().iter().filter(|o| o.size == program.size);
    let mut digest = None;
    for original in same_size {
        if original.id == program.id {
            return None;
        }
        let theirs = original
            .digest
            .get_or_init(|| sha256(std::fs::File::open(&original.path).ok()?));
        let ours = digest.get_or_insert_with(|| {
            // Through the held handle: the file judged, not a path.
            sha256(std::fs::File::open(format!("/proc/self/fd/{}", raw(&program.file))).ok()?)
        });
        if theirs.is_some() && theirs == ours {
            return Some(original.kind);
        }
    }
    None
}

/// What `program` is (see the module documentation).
pub fn kind(program: &Program) -> Kind {
    let name = |p: &Path| {
        p.file_name()
            .and_then(OsStr::to_str)
            .unwrap_or_default()
            .to_owned()
    };
    let real = program.real_name();
    // The name it is called by: the word's (a link's name for a path).
    let named = name(Path::new(&program.word));
    let system_shell = shells().contains(&program.id);
    let dialect = SHELL_NAMES.iter().find(|s| **s == named);
    if MULTI_CALL.contains(&real) {
        // The applet is the name it was found under.
        return match dialect {
            Some(d) if system_shell && name(&program.found) == named => Kind::Shell(d),
            _ => Kind::MultiCall,
        };
    }
    match dialect {
        Some(d) if system_shell && SHELL_NAMES.contains(&real) => return Kind::Shell(d),
        _ => {}
    }
    if system_shell || SHELL_LIKE.contains(&real) || SHELL_LIKE.contains(&named.as_str()) {
        return Kind::LookAlike;
    }
    if WRAPPERS.contains(&real) || WRAPPERS.contains(&named.as_str()) {
        return Kind::Wrapper;
    }
    copy_of(program).unwrap_or(Kind::Plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn exe(path: &Path, body: &str) {
        std::fs::write(path, body).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_file_named_like_a_shell_is_not_a_shell() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap();
        for name in ["sh", "bash", "dash", "fish"] {
            exe(&dir.join(name), "#!/bin/sh\n");
            let p = resolve(&format!("./{name}"), &dir, OsStr::new("")).unwrap();
            assert_eq!(kind(&p), Kind::LookAlike, "{name}");
        }
        // A file named like a wrapper is taken for one: never covered, which
        // errs on the strict side.
        exe(&dir.join("env"), "#!/bin/sh\n");
        let p = resolve("./env", &dir, OsStr::new("")).unwrap();
        assert_eq!(kind(&p), Kind::Wrapper);
        // A real shell under another name is not judged as one.
        std::os::unix::fs::symlink("/bin/sh", dir.join("innocent")).unwrap();
        let p = resolve("./innocent", &dir, OsStr::new("")).unwrap();
        assert_eq!(kind(&p), Kind::LookAlike, "{p:?}");
        std::os::unix::fs::symlink("/bin/sh", dir.join("sh-link")).unwrap();
        assert_eq!(
            kind(&resolve("./sh-link", &dir, OsStr::new("")).unwrap()),
            Kind::LookAlike
        );
        std::os::unix::fs::symlink("/usr/bin/dash", dir.join("bin-sh")).unwrap();
        let bin = dir.join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink("/usr/bin/dash", bin.join("sh")).unwrap();
        assert!(matches!(
            kind(&resolve("./bin/sh", &dir, OsStr::new("")).unwrap()),
            Kind::Shell(_)
        ));
        let sh = resolve("sh", &dir, OsStr::new("/usr/bin:/bin")).unwrap();
        assert!(matches!(kind(&sh), Kind::Shell(_)));
        let env = resolve("env", &dir, OsStr::new("/usr/bin:/bin")).unwrap();
        assert_eq!(kind(&env), Kind::Wrapper);
    }

    #[test]
    fn a_copy_of_a_shell_or_a_wrapper_is_told_by_its_content() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap();
        let path = OsStr::new("");
        let copy = |from: &str, name: &str| {
            let to = dir.join(name);
            std::fs::copy(from, &to).unwrap();
            kind(&resolve(&format!("./{name}"), &dir, path).unwrap())
        };
        assert_eq!(copy("/bin/sh", "tool"), Kind::LookAlike);
        assert_eq!(copy("/bin/sh", "sh"), Kind::LookAlike);
        assert_eq!(copy("/usr/bin/env", "tool2"), Kind::Wrapper);
        assert_eq!(copy("/usr/bin/nice", "tool3"), Kind::Wrapper);
        // A copy with one byte changed is another program.
        let mut bytes = std::fs::read("/usr/bin/env").unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        exe(&dir.join("tool4"), "");
        std::fs::write(dir.join("tool4"), &bytes).unwrap();
        let p = resolve("./tool4", &dir, path).unwrap();
        assert_eq!(p.size, bytes.len() as u64);
        assert_eq!(kind(&p), Kind::Plain);
        // The originals themselves are what their names say.
        let echo = resolve("/usr/bin/echo", &dir, path).unwrap();
        assert_eq!(kind(&echo), Kind::Plain);
        assert_eq!(copy_of(&resolve("/usr/bin/env", &dir, path).unwrap()), None);
    }

    #[test]
    fn the_real_name_and_the_called_name_each_tell_a_kind() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap();
        let path = OsStr::new("");
        let link = |to: &Path, name: &str| {
            std::os::unix::fs::symlink(to, dir.join(name)).unwrap();
            kind(&resolve(&format!("./{name}"), &dir, path).unwrap())
        };
        // A program whose real name is a shell's, called by another name;
        // one called by a shell's name; likewise for a wrapper.
        exe(&dir.join("fish"), "#!/bin/sh\n");
        exe(&dir.join("tool"), "#!/bin/sh\n");
        assert_eq!(link(&dir.join("fish"), "nick"), Kind::LookAlike);
        assert_eq!(link(&dir.join("tool"), "csh"), Kind::LookAlike);
        assert_eq!(link(Path::new("/usr/bin/env"), "nick2"), Kind::Wrapper);
        assert_eq!(link(&dir.join("tool"), "nohup"), Kind::Wrapper);
        // A multi-call binary under a shell's name that is not a system
        // shell is the multi-call binary.
        exe(&dir.join("busybox"), "#!/bin/sh\n");
        assert_eq!(link(&dir.join("busybox"), "sh"), Kind::MultiCall);
        // A system shell (listed in /etc/shells) whose name is no shell's.
        let listed = std::fs::read_to_string("/etc/shells").unwrap_or_default();
        for shell in listed.lines().filter(|l| l.starts_with('/')) {
            let real = std::fs::canonicalize(shell).unwrap_or_default();
            let name = real.file_name().and_then(OsStr::to_str).unwrap_or_default();
            if !SHELL_LIKE.contains(&name) && !name.is_empty() {
                let p = resolve(shell, &dir, path).unwrap();
                assert_eq!(kind(&p), Kind::LookAlike, "{shell}");
            }
        }
    }

    #[test]
    fn what_is_not_an_executable_file_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::write(dir.join("data"), "x").unwrap();
        assert!(resolve("./data", &dir, OsStr::new("")).is_err());
        assert!(resolve(".", &dir, OsStr::new("")).is_err());
        assert!(resolve("nope-not-here", &dir, OsStr::new("/usr/bin")).is_err());
        assert!(resolve("", &dir, OsStr::new("/usr/bin")).is_err());
    }
}
