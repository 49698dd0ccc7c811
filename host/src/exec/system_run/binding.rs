//! What a plan binds when it is made, and the checks a run makes against
//! it before it starts: the script operand by real path and SHA-256, every
//! program by real path, identity, stamp and SHA-256 (docs/exec-host.md
//! §2.4).

use std::path::Path;

use rustix::fs::{Mode, OFlags};
use serde::Deserialize;
use serde_json::json;

use super::Plan;
use crate::exec::allowlist::{self, shell_text, split_shell};
use crate::exec::plans::{self, BoundProgram};
use crate::exec::resolve::Program;

/// Programs that run code they are given: their plans cannot be pinned,
/// except for the script operand of [`SCRIPT_RUNNERS`].
const INTERPRETERS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "ash", "fish", "env", "node", "nodejs", "deno", "bun",
    "perl", "php", "ruby", "python", "python2", "python3", "tsx", "ts-node", "npx", "pnpm",
    "xargs", "nice", "nohup", "timeout", "sudo", "busybox", "toybox",
];

/// Interpreters whose first operand is the script they run: a plan for
/// `python3 script.py` binds that file's contents (docs/exec-host.md §2.4).
const SCRIPT_RUNNERS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "ash", "node", "nodejs", "perl", "php", "ruby", "python",
    "python2", "python3",
];

/// The one file a plan binds by content: which argument, its real path and
/// the SHA-256 of its bytes when the plan was made.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(super) struct FileOperand {
    pub argv_index: usize,
    pub path: String,
    pub sha256: String,
}

/// Which argument of a direct command names a script whose contents an
/// approval must cover: `INTERPRETER SCRIPT [ARGS]` (no option before the
/// script), or a program given by a relative path (`./run.sh`).
pub(super) fn file_operand_index(argv: &[String]) -> Option<usize> {
    if shell_text(argv).is_some() {
        return None;
    }
    let program = argv.first()?;
    let name = Path::new(program).file_name()?.to_str()?;
    let python = name
        .strip_prefix("python")
        .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'));
    if SCRIPT_RUNNERS.contains(&name) || python {
        // The script is what an approval covers, wherever the interpreter is.
        return argv
            .get(1)
            .is_some_and(|a| !a.starts_with('-'))
            .then_some(1);
    }
    if INTERPRETERS.contains(&name) {
        return None;
    }
    (program.contains('/') && !program.starts_with('/')).then_some(0)
}

/// The largest script a plan binds by content.
pub(super) const MAX_BOUND_FILE: u64 = 16 << 20;

/// Reads `file` (at most [`MAX_BOUND_FILE`] bytes) and returns its SHA-256
/// in hex; `named` is for the error.
pub(super) fn sha256_of(file: impl std::io::Read, named: &Path) -> Result<String, String> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut hasher = sha2::Sha256::new();
    let mut limited = file.take(MAX_BOUND_FILE + 1);
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0u64;
    loop {
        let n = limited
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", named.display()))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    if total > MAX_BOUND_FILE {
        return Err(format!(
            "{} is larger than {MAX_BOUND_FILE} bytes",
            named.display()
        ));
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The snapshot of `argv[index]` (relative to `cwd`): real path and hash.
pub(super) fn snapshot_operand(
    argv: &[String],
    index: usize,
    cwd: &Path,
) -> Result<FileOperand, String> {
    let arg = argv.get(index).ok_or("no such argument")?;
    let path = std::fs::canonicalize(cwd.join(arg)).map_err(|e| format!("{arg}: {e}"))?;
    // Looked at through O_PATH first: a FIFO or a device is never opened
    // for reading (an open could block or act), only a regular file is.
    let handle = rustix::fs::open(&path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let st = rustix::fs::fstat(&handle).map_err(|e| format!("{}: {e}", path.display()))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let file = {
        use std::os::fd::AsRawFd as _;
        std::fs::File::open(format!("/proc/self/fd/{}", handle.as_raw_fd()))
            .map_err(|e| format!("{}: {e}", path.display()))?
    };
    Ok(FileOperand {
        argv_index: index,
        sha256: sha256_of(file, &path)?,
        path: path.display().to_string(),
    })
}

/// What a program is now: real path, identity, stamp and, for files up to
/// [`MAX_BOUND_FILE`], SHA-256 (read through the handle that runs it).
pub(super) fn bound_program(program: &Program) -> Result<BoundProgram, String> {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    let st = rustix::fs::fstat(program.file.as_fd()).map_err(|e| e.to_string())?;
    let size = u64::try_from(st.st_size).unwrap_or(0);
    let sha256 = if size <= MAX_BOUND_FILE {
        let reopened = std::fs::File::open(format!("/proc/self/fd/{}", program.file.as_raw_fd()))
            .map_err(|e| format!("{}: {e}", program.real.display()))?;
        Some(sha256_of(reopened, &program.real)?)
    } else {
        None
    };
    Ok(BoundProgram {
        real: program.real.display().to_string(),
        id: program.id,
        stamp: (
            size,
            st.st_mtime,
            i64::from(st.st_mtime_nsec as i32),
            st.st_ctime,
            i64::from(st.st_ctime_nsec as i32),
        ),
        sha256,
    })
}

/// What every program of a pinned command is now ([`bound_program`]).
pub(super) fn bound_programs(pinned: &allowlist::Judged) -> Result<Vec<BoundProgram>, String> {
    pinned.programs.iter().map(bound_program).collect()
}

/// For an approved run: the script the plan bound must still be the same
/// file with the same bytes, and a script the plan did not bind is refused.
pub(super) fn check_operand(plan: &Plan, argv: &[String], cwd: &Path) -> Result<(), String> {
    match (&plan.mutable_file_operand, file_operand_index(argv)) {
        (Some(bound), Some(index)) if bound.argv_index == index => {
            match snapshot_operand(argv, index, cwd) {
                Ok(now) if now == *bound => Ok(()),
                _ => Err("approval script operand changed before execution".into()),
            }
        }
        (Some(_), _) => Err("approval script operand changed before execution".into()),
        (None, Some(_)) => Err("approval missing script operand binding".into()),
        (None, None) => Ok(()),
    }
}

/// Whether a plan for `argv` can be pinned (see the module documentation).
pub(super) fn pinnable(argv: &[String]) -> bool {
    let words = match shell_text(argv) {
        Some(text) => match split_shell(text) {
            Some(commands) if commands.len() == 1 => commands
                .into_iter()
                .next()
                .map(|(w, _)| w)
                .unwrap_or_default(),
            _ => return false,
        },
        None => argv.to_vec(),
    };
    let Some(program) = words.first() else {
        return false;
    };
    let name = Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(program);
    let relative_path = program.contains('/') && !program.starts_with('/');
    let interpreter = INTERPRETERS.contains(&name) || name.starts_with("python");
    !relative_path && !interpreter && (shell_text(argv).is_none() || !program.contains('/'))
}

/// The digest a plan is remembered by: its fields in a fixed order (what
/// the gateway may drop or reorder, `commandPreview` and absent nulls,
/// changes nothing).
pub(super) fn plan_digest(plan: &Plan) -> [u8; 32] {
    let operand = plan
        .mutable_file_operand
        .as_ref()
        .map(|o| json!([o.argv_index, o.path, o.sha256]));
    let canonical = json!([
        plan.argv,
        plan.cwd,
        plan.command_text,
        plan.agent_id,
        plan.session_key,
        plan.policy_snapshot,
        operand
    ]);
    plans::digest(canonical.to_string().as_bytes())
}
