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
//! wrapper or a multi-call binary is told by its real name.

use std::ffi::OsStr;
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustix::fs::{Mode, OFlags, fstat, open};

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
        file: Arc::new(file),
    })
}

fn raw(fd: &OwnedFd) -> i32 {
    use std::os::fd::AsRawFd as _;
    fd.as_raw_fd()
}

/// The identities of the system's shells: `/etc/shells` and
/// [`SYSTEM_SHELLS`], read once.
fn shells() -> &'static [FileId] {
    static SHELLS: OnceLock<Vec<FileId>> = OnceLock::new();
    SHELLS.get_or_init(|| {
        let listed = std::fs::read_to_string("/etc/shells").unwrap_or_default();
        let mut ids: Vec<FileId> = listed
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with('/'))
            .chain(SYSTEM_SHELLS.iter().copied())
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
    Kind::Plain
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
