//! `system.run.prepare` and `system.run` (docs/exec-host.md §1, §2, §6).
//!
//! The gateway first asks the node to prepare a run and gets back a plan:
//! the argv, the canonical working directory, the command text and a
//! snapshot of the node's policy. It then sends `system.run` with that plan.
//!
//! Every `system.run` is treated as written by whoever controls the
//! gateway. Approval flags (`approved`, `approvalDecision`,
//! `approvalSource`) count only for a plan this node prepared and
//! remembers ([`PlanBook`]), unchanged, once, with a run id not used
//! before, and for an operator's approval only while the policy it was
//! given under is still in force. What the plan covers is bound when it is
//! made: the working directory by identity, every program it runs by real
//! path, identity and SHA-256, a script operand by real path and SHA-256
//! (`mutableFileOperand`). The run checks each before it starts and
//! executes the very files it checked. `security: deny`, this host's
//! default, is never lifted, and under it prepare reads nothing.
//!
//! Where a run needs approval, a plan is only made for commands it can
//! pin: one program, named by bare name or absolute path; or, as upstream,
//! an interpreter and its script (`python3 job.py`, `sh job.sh`) or a
//! program given by a relative path (`./run.sh`). Shell text with several
//! commands, redirections, or a path or interpreter as its program is
//! refused at prepare, as are interpreters with options before the script
//! (stricter than upstream).

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rustix::fs::{Mode, OFlags};
use serde::Deserialize;
use serde_json::{Value, json};

use super::allowlist::{self, Context, shell_text, split_shell};
use super::approvals::{Approval, ApprovalsFile, Ask, Ceiling, Resolved, Security, decide};
use super::env::child_env;
use super::plans::{self, Binding, BoundProgram, PlanBook, Unknown};
use super::resolve::{FileId, Kind, Program, kind, resolve};
use super::run::{Cancel, OutputTap, RunOutcome, RunSpec, run_with};
use super::stored::ExecDocuments;
use clawnode::StateDir;
use clawnode::{CommandError, NodeEvents, Progress};

/// Prepares a run: the plan `system.run` is then bound to.
pub const SYSTEM_RUN_PREPARE: &str = "system.run.prepare";
/// Runs a command.
pub const SYSTEM_RUN: &str = "system.run";
/// The most runs at once; past that `system.run` is answered busy. Other
/// commands have slots of their own (docs/exec-host.md §11.5).
pub const MAX_RUNS: usize = 16;
/// The most output an `exec.finished` event carries (its last characters).
pub const EVENT_TAIL: usize = 20_000;

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
struct FileOperand {
    argv_index: usize,
    path: String,
    sha256: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct Plan {
    #[serde(default)]
    mutable_file_operand: Option<FileOperand>,
    argv: Vec<String>,
    #[serde(default)]
    cwd: Option<String>,
    command_text: String,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    session_key: Option<String>,
    #[serde(default)]
    policy_snapshot: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    raw_command: Option<String>,
    #[serde(default)]
    system_run_plan: Option<Plan>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    env: Option<BTreeMap<String, String>>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    needs_screen_recording: Option<bool>,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    session_key: Option<String>,
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    suppress_notify_on_exit: Option<bool>,
    #[serde(default)]
    approved: Option<bool>,
    #[serde(default)]
    approval_decision: Option<String>,
    #[serde(default)]
    approval_source: Option<String>,
    #[serde(default)]
    security: Option<Security>,
    #[serde(default)]
    ask: Option<Ask>,
}

fn invalid(message: impl Into<String>) -> CommandError {
    CommandError::new("INVALID_REQUEST", message)
}

fn parse(params: &Value) -> Result<Request, CommandError> {
    let req: Request = serde_json::from_value(params.clone())
        .map_err(|e| invalid(format!("system.run params: {e}")))?;
    if req.command.is_empty() {
        return Err(invalid("command required"));
    }
    if let Some(raw) = req
        .raw_command
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        && raw != format_command(&req.command)
        && shell_text(&req.command).map(str::trim) != Some(raw)
    {
        return Err(invalid(
            "INVALID_REQUEST: rawCommand does not match command",
        ));
    }
    Ok(req)
}

/// The command as one line, as upstream writes it: arguments with spaces
/// or quotes in double quotes.
pub fn format_command(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.is_empty() {
                "\"\"".to_owned()
            } else if a.contains(|c: char| c.is_whitespace() || c == '"') {
                format!("\"{}\"", a.replace('"', "\\\""))
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
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
        Ok(Some(bytes)) => ApprovalsFile::from_stored(&bytes).map_err(unavailable),
        Err(e) => Err(unavailable(e.to_string())),
    }
}

/// What the plan records of the policy, so a later approval can tell
/// whether it still holds.
fn policy_snapshot(p: &Resolved) -> Value {
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

fn canonical_cwd(cwd: Option<&str>, node_cwd: &Path) -> Result<PathBuf, CommandError> {
    let wanted = cwd.map_or_else(|| node_cwd.to_path_buf(), PathBuf::from);
    std::fs::canonicalize(&wanted)
        .ok()
        .filter(|p| p.is_dir())
        .ok_or_else(|| {
            CommandError::new(
                "SYSTEM_RUN_DENIED",
                format!(
                    "SYSTEM_RUN_DENIED: working directory {} does not exist or is inaccessible",
                    wanted.display()
                ),
            )
        })
}

/// Which argument of a direct command names a script whose contents an
/// approval must cover: `INTERPRETER SCRIPT [ARGS]` (no option before the
/// script), or a program given by a relative path (`./run.sh`).
fn file_operand_index(argv: &[String]) -> Option<usize> {
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
const MAX_BOUND_FILE: u64 = 16 << 20;

/// Reads `file` (at most [`MAX_BOUND_FILE`] bytes) and returns its SHA-256
/// in hex; `named` is for the error.
fn sha256_of(file: impl std::io::Read, named: &Path) -> Result<String, String> {
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
fn snapshot_operand(argv: &[String], index: usize, cwd: &Path) -> Result<FileOperand, String> {
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
fn bound_program(program: &Program) -> Result<BoundProgram, String> {
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
fn bound_programs(pinned: &allowlist::Judged) -> Result<Vec<BoundProgram>, String> {
    pinned.programs.iter().map(bound_program).collect()
}

/// For an approved run: the script the plan bound must still be the same
/// file with the same bytes, and a script the plan did not bind is refused.
fn check_operand(plan: &Plan, argv: &[String], cwd: &Path) -> Result<(), String> {
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
fn pinnable(argv: &[String]) -> bool {
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
fn plan_digest(plan: &Plan) -> [u8; 32] {
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

/// The exec host of one node: its state directory and the plans it
/// prepared. `system.run.prepare` and `system.run` share one.
#[derive(Debug)]
pub struct ExecHost {
    store: StateDir,
    plans: PlanBook,
    /// The approvals document as last parsed, by the identity, size and
    /// modification time of its file: a run parses it only after it
    /// changed (every writer replaces the file, so a change is a new one).
    parsed: std::sync::Mutex<Option<Parsed>>,
}

/// The approvals document as last parsed, and the policies resolved from
/// it so far, by agent.
#[derive(Debug)]
struct Parsed {
    stamp: Option<FileStamp>,
    file: ApprovalsFile,
    /// At most [`MAX_RESOLVED`] agents (the ids come from the gateway).
    resolved: Vec<(Option<String>, Resolved)>,
}

/// How many agents' resolved policies [`Parsed`] keeps.
const MAX_RESOLVED: usize = 32;

/// What tells one version of a file from another: device, inode, size and
/// modification time.
type FileStamp = (u64, u64, u64, i64, i64);

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
    fn policy(&self, agent_id: Option<&str>) -> Result<Resolved, CommandError> {
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

fn denied(message: impl std::fmt::Display) -> CommandError {
    CommandError::new("SYSTEM_RUN_DENIED", format!("SYSTEM_RUN_DENIED: {message}"))
}

/// The working directory, opened: what the run's child changes into.
fn open_dir(path: &Path) -> Result<Arc<OwnedFd>, String> {
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map(Arc::new)
    .map_err(|e| format!("{}: {e}", path.display()))
}

/// `system.run.prepare`: the plan for a run, and the node's policy.
pub fn prepare(host: &ExecHost, params: &Value, node_cwd: &Path) -> Result<Value, CommandError> {
    let req = parse(params)?;
    let policy = host.policy(req.agent_id.as_deref())?;
    let security = req
        .security
        .map_or(policy.security, |s| s.min(policy.security));
    let ask = req.ask.map_or(policy.ask, |a| a.max(policy.ask));
    let preview = shell_text(&req.command)
        .map(str::trim)
        .filter(|t| *t != format_command(&req.command));
    let plan = |cwd: &Path| {
        json!({
            "argv": req.command,
            "cwd": cwd.display().to_string(),
            "commandText": format_command(&req.command),
            "commandPreview": preview,
            "agentId": req.agent_id,
            "sessionKey": req.session_key,
            "policySnapshot": policy_snapshot(&policy),
        })
    };
    let mut answer = json!({
        "execPolicy": {"security": policy.security, "ask": policy.ask},
        "allowAlwaysCoverage": {"complete": false, "patterns": []},
    });
    if security == Security::Deny {
        // Nothing can run, so nothing is looked at: the answer tells the
        // caller nothing about the node's files (docs/exec-host.md §11.2).
        let cwd = req.cwd.as_deref().map_or(node_cwd, Path::new);
        answer["plan"] = plan(cwd);
        return Ok(answer);
    }
    let cwd = canonical_cwd(req.cwd.as_deref(), node_cwd)?;
    let requested = req.env.clone().unwrap_or_default();
    let env = child_env(
        std::env::vars(),
        &requested,
        shell_text(&req.command).is_some(),
    )
    .map_err(|e| invalid(e.to_string()))?;
    // Only an approval needs a binding, and approvals count only where
    // this node asks (`decide`): under `ask: off` nothing is read.
    let binds = ask != Ask::Off;
    let operand = match file_operand_index(&req.command) {
        Some(i) if binds => Some(snapshot_operand(&req.command, i, &cwd).map_err(|e| {
            denied(format_args!(
                "approval requires a readable script file ({e})"
            ))
        })?),
        _ => None,
    };
    if binds && operand.is_none() && !pinnable(&req.command) {
        return Err(invalid(
            "SYSTEM_RUN_DENIED: approval cannot safely bind this command: run one program by \
             name or absolute path, without a script, redirection or second command\n\
             No approval request was created for this attempt; this is not a user denial.",
        ));
    }
    answer["plan"] = plan(&cwd);
    // Absent, not null, when nothing is bound: the gateway wants an object or nothing.
    if let Some(o) = &operand {
        answer["plan"]["mutableFileOperand"] =
            json!({"argvIndex": o.argv_index, "path": o.path, "sha256": o.sha256});
    }
    let dir = open_dir(&cwd).map_err(denied)?;
    let path = env.get("PATH").cloned().unwrap_or_default();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let ctx = Context {
        cwd: &cwd,
        path: path.as_ref(),
        home: home.as_deref(),
    };
    let programs = if binds {
        let pinned = allowlist::pin(&req.command, &ctx).map_err(|e| {
            invalid(format!(
                "SYSTEM_RUN_DENIED: approval cannot safely bind this command: {e}"
            ))
        })?;
        bound_programs(&pinned).map_err(denied)?
    } else {
        Vec::new()
    };
    let binding = Binding {
        cwd: FileId::of(&dir).map_err(|e| denied(format_args!("{}: {e}", cwd.display())))?,
        programs,
    };
    let remembered: Plan = serde_json::from_value(answer["plan"].clone())
        .map_err(|e| invalid(format!("plan: {e}")))?;
    host.plans
        .remember(plan_digest(&remembered), binding, Instant::now());
    Ok(answer)
}

/// The last `EVENT_TAIL` characters of the run's output, as upstream cuts
/// it for `exec.finished`.
fn output_tail(payload: &Value) -> String {
    let parts: Vec<&str> = ["stdout", "stderr", "error"]
        .iter()
        .filter_map(|k| payload[k].as_str())
        .filter(|s| !s.is_empty())
        .collect();
    let all = parts.join("\n");
    let trimmed = all.trim();
    let count = trimmed.chars().count();
    if count <= EVENT_TAIL {
        return trimmed.to_owned();
    }
    let tail: String = trimmed.chars().skip(count - EVENT_TAIL).collect();
    format!("... (truncated) {tail}")
}

/// `system.run`: decides, runs, reports `exec.denied` or `exec.finished`,
/// and answers with the run's outcome. Blocks until the run ends or
/// `cancel` stops it.
pub fn system_run(
    host: &ExecHost,
    params: &Value,
    node_cwd: &Path,
    cancel: &Cancel,
    events: &NodeEvents,
    progress: &Progress,
) -> Result<Value, CommandError> {
    let req = parse(params)?;
    let policy = host.policy(req.agent_id.as_deref())?;
    let session_key = req.session_key.clone().unwrap_or_else(|| "node".into());
    let run_id = req.run_id.clone().unwrap_or_default();
    let command = format_command(&req.command);
    let deny = |reason: &str, error: CommandError| {
        events.send(
            "exec.denied",
            json!({"sessionKey": session_key, "runId": run_id, "host": "node",
                   "command": command, "reason": reason}),
        );
        error
    };
    let approval = approval(&req, &policy).map_err(|e| match e {
        e if e.code == "SYSTEM_RUN_DENIED" => deny("approval-policy-changed", e),
        e => e,
    })?;
    if policy.security == Security::Deny {
        // Refused before the working directory or anything else is looked
        // at: the refusal tells nothing about the node's files.
        let refused = super::approvals::Denied::Disabled;
        return Err(deny(
            refused.reason(),
            CommandError::new("SYSTEM_RUN_DENIED", refused.to_string()),
        ));
    }
    if req.needs_screen_recording == Some(true) {
        return Err(deny(
            "permission:screenRecording",
            CommandError::new("SYSTEM_RUN_DENIED", "PERMISSION_MISSING: screenRecording"),
        ));
    }
    // An approval counts only for a plan this node made, once.
    let binding = match (&req.system_run_plan, approval) {
        (_, Approval::None) => None,
        (None, _) => return Err(invalid("explicit approval requires matching systemRunPlan")),
        (Some(plan), _) => match host.plans.take(&plan_digest(plan), &run_id, Instant::now()) {
            Ok(b) => Some(b),
            Err(Unknown::Plan) => {
                return Err(deny(
                    "execution-plan-miss",
                    denied("approval for a plan this node did not prepare, or used already"),
                ));
            }
            Err(Unknown::RunId) => {
                return Err(deny(
                    "execution-plan-miss",
                    denied(format_args!("run id {run_id:?} ran already")),
                ));
            }
        },
    };
    let cwd =
        canonical_cwd(req.cwd.as_deref(), node_cwd).map_err(|e| deny("cwd-unavailable", e))?;
    let dir = open_dir(&cwd).map_err(|e| deny("cwd-unavailable", denied(e)))?;
    if let Some(b) = &binding
        && FileId::of(&dir).ok() != Some(b.cwd)
    {
        return Err(deny(
            "execution-plan-miss",
            denied("approval cwd changed before execution"),
        ));
    }
    if binding.is_some()
        && let Some(plan) = &req.system_run_plan
    {
        check_operand(plan, &req.command, &cwd)
            .map_err(|e| deny("execution-plan-miss", denied(e)))?;
    }
    let path_var = std::env::var("PATH").unwrap_or_default();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let shell = shell_text(&req.command).is_some()
        || resolve(&req.command[0], &cwd, path_var.as_ref())
            .is_ok_and(|p| matches!(kind(&p), Kind::Shell(_)));
    let requested = req.env.clone().unwrap_or_default();
    let env = child_env(std::env::vars(), &requested, shell).map_err(|e| invalid(e.to_string()))?;
    let path = env.get("PATH").cloned().unwrap_or_default();
    let ctx = Context {
        cwd: &cwd,
        path: path.as_ref(),
        home: home.as_deref(),
    };
    let judged = (policy.security == Security::Allowlist)
        .then(|| allowlist::judge(&policy.allowlist, &req.command, &ctx));
    let covered = matches!(judged, Some(Ok(_)));
    if let Some(Err(why)) = &judged {
        tracing::info!(command = %command, %why, "allowlist miss");
    }
    if let Err(refused) = decide(&policy, approval, covered) {
        return Err(deny(
            refused.reason(),
            CommandError::new("SYSTEM_RUN_DENIED", refused.to_string()),
        ));
    }
    // What runs: the judged command, the approved plan's pinned command
    // (checked against its binding), or under `full` the argv as given.
    let run = match (judged, binding) {
        (Some(Ok(judged)), _) => Ok((judged.program, judged.argv)),
        (_, Some(binding)) => {
            let pinned = allowlist::pin(&req.command, &ctx)
                .map_err(|e| deny("execution-plan-miss", denied(e)))?;
            let now = bound_programs(&pinned);
            if now.as_ref().ok() != Some(&binding.programs) {
                return Err(deny(
                    "execution-plan-miss",
                    denied("approval program changed before execution"),
                ));
            }
            Ok((pinned.program, pinned.argv))
        }
        _ => resolve(&req.command[0], &cwd, path.as_ref()).map(|p| (p, req.command.clone())),
    };
    let timeout = req
        .timeout_ms
        .filter(|t| *t > 0)
        .map(std::time::Duration::from_millis);
    let mut about = json!({"sessionKey": session_key, "runId": run_id, "host": "node",
                           "command": command});
    if req.suppress_notify_on_exit == Some(true) {
        about["suppressNotifyOnExit"] = true.into();
    }
    let outcome = match run {
        Ok((program, argv)) => {
            let spec = RunSpec {
                argv,
                program: Some(program.file),
                cwd: Some(cwd),
                cwd_dir: Some(dir),
                env,
                timeout,
                tap: Some(stream_output(progress.clone())),
            };
            run_with(&spec, cancel, |_| {
                events.send("exec.started", about.clone())
            })
        }
        // Cannot start: reported as a spawn failure is.
        Err(why) => RunOutcome::not_started(format!("spawn {}: {why}", req.command[0])),
    };
    if outcome.cancelled {
        // Upstream sends nothing for a cancelled run: its answer is not wanted.
        return Err(CommandError::new("CANCELLED", "the run was cancelled"));
    }
    let payload = outcome.payload();
    let mut finished = about;
    finished["timedOut"] = outcome.timed_out.into();
    finished["success"] = outcome.success().into();
    finished["output"] = output_tail(&payload).into();
    if let Some(code) = outcome.exit_code {
        finished["exitCode"] = code.into();
    }
    events.send("exec.finished", finished);
    Ok(payload)
}

/// Streams the kept output as `node.invoke.progress` while the run goes
/// on, as the official host streams its long-running commands; the answer
/// still carries the whole kept output. Bytes are sent as text once they
/// form whole UTF-8 characters (a character split across reads waits for
/// its rest).
fn stream_output(progress: Progress) -> OutputTap {
    let carry: std::sync::Mutex<[Vec<u8>; 2]> = std::sync::Mutex::default();
    OutputTap(std::sync::Arc::new(move |stream, bytes| {
        let mut carry = carry.lock().unwrap_or_else(|e| e.into_inner());
        let pending = &mut carry[stream.min(1)];
        pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(pending) {
            Ok(s) => s.len(),
            // An incomplete character at the end waits; anything else is
            // sent lossily now.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => pending.len(),
        };
        if valid > 0 {
            let text = String::from_utf8_lossy(&pending[..valid]).into_owned();
            pending.drain(..valid);
            progress.send(text);
        }
    }))
}

/// The approval a request carries, counted only with a plan that matches
/// the request (whether this node made it is checked apart).
fn approval(req: &Request, policy: &Resolved) -> Result<Approval, CommandError> {
    let explicit = req.approved == Some(true) || req.approval_decision.is_some();
    let Some(kind) = (match (explicit, req.approval_source.as_deref()) {
        (false, None) => return Ok(Approval::None),
        (true, Some(_)) => {
            return Err(invalid(
                "approvalSource cannot be combined with explicit approval",
            ));
        }
        (true, None) => match req.approval_decision.as_deref() {
            None | Some("allow-once" | "allow-always") => Some(Approval::Approved),
            Some(_) => None,
        },
        (false, Some("ask-fallback")) => Some(Approval::AskFallback),
        (false, Some("auto-review")) => Some(Approval::Approved),
        (false, Some(_)) => None,
    }) else {
        return Err(invalid("approvalDecision or approvalSource invalid"));
    };
    let plan = req
        .system_run_plan
        .as_ref()
        .ok_or_else(|| invalid("explicit approval requires matching systemRunPlan"))?;
    let matches = plan.argv == req.command
        && plan.command_text == format_command(&req.command)
        && plan.cwd == req.cwd
        && plan.agent_id == req.agent_id
        && plan.session_key == req.session_key;
    if !matches {
        return Err(invalid("explicit approval requires matching systemRunPlan"));
    }
    if kind == Approval::Approved && plan.policy_snapshot.as_ref() != Some(&policy_snapshot(policy))
    {
        return Err(CommandError::new(
            "SYSTEM_RUN_DENIED",
            "SYSTEM_RUN_DENIED: exec approval policy changed; request approval again",
        ));
    }
    Ok(kind)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::exec::stored::edit_local;

    type Sent = Arc<Mutex<Vec<(String, Value)>>>;

    fn events() -> (NodeEvents, Sent) {
        let sent: Sent = Arc::default();
        let s = sent.clone();
        let events = NodeEvents::new(move |e, p| s.lock().unwrap().push((e.to_owned(), p)));
        (events, sent)
    }

    fn sh(text: &str) -> Value {
        json!({"command": ["/bin/sh", "-lc", text], "rawCommand": text,
               "sessionKey": "agent:main:main", "runId": "run-1", "timeoutMs": 10_000})
    }

    struct Host {
        _dir: tempfile::TempDir,
        store: StateDir,
        exec: ExecHost,
        cwd: PathBuf,
    }

    fn host() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let store = StateDir::new(dir.path().join("state"));
        let cwd = std::fs::canonicalize(dir.path()).unwrap();
        Host {
            _dir: dir,
            exec: ExecHost::new(store.clone()),
            store,
            cwd,
        }
    }

    impl Host {
        fn set(&self, security: Security, ask: Ask, allow: &[&str]) {
            edit_local(&self.store, |f| {
                f.defaults.security = Some(security);
                f.defaults.ask = Some(ask);
                f.agents.entry("*".into()).or_default().allowlist = allow
                    .iter()
                    .map(|p| super::super::approvals::AllowEntry {
                        pattern: (*p).into(),
                        ..Default::default()
                    })
                    .collect();
            })
            .unwrap();
        }

        fn run(&self, params: Value) -> (Result<Value, CommandError>, Vec<(String, Value)>) {
            let (ev, sent) = events();
            let r = system_run(
                &self.exec,
                &params,
                &self.cwd,
                &Cancel::new(),
                &ev,
                &Progress::discard(),
            );
            let sent = sent.lock().unwrap().clone();
            (r, sent)
        }
    }

    #[test]
    fn by_default_nothing_runs_and_the_denial_is_reported_first() {
        let h = host();
        let (r, sent) = h.run(sh("echo hi"));
        let e = r.unwrap_err();
        assert_eq!(e.code, "SYSTEM_RUN_DENIED");
        assert!(e.message.contains("clawnode approvals set"), "{e:?}");
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, "exec.denied");
        assert_eq!(
            sent[0].1,
            json!({"sessionKey": "agent:main:main", "runId": "run-1", "host": "node",
                   "command": "/bin/sh -lc \"echo hi\"", "reason": "security=deny"})
        );
    }

    #[test]
    fn under_full_a_run_answers_and_reports_exec_started_then_finished() {
        let h = host();
        h.set(Security::Full, Ask::Off, &[]);
        let (r, sent) = h.run(sh("echo hi; exit 3"));
        let payload = r.unwrap();
        assert_eq!(payload["exitCode"], 3);
        assert_eq!(payload["stdout"], "hi\n");
        let names: Vec<&str> = sent.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["exec.started", "exec.finished"]);
        let started = &sent[0].1;
        assert_eq!(
            started["command"], "/bin/sh -lc \"echo hi; exit 3\"",
            "{started}"
        );
        assert_eq!(started["host"], "node");
        assert!(started.get("exitCode").is_none(), "{started}");
        assert_eq!(sent[1].1["output"], "hi");
        assert_eq!(sent[1].1["exitCode"], 3);
        assert_eq!(sent[1].1["success"], false);
        assert_eq!(sent[1].1["sessionKey"], started["sessionKey"]);
        assert_eq!(sent[1].1["runId"], started["runId"]);
    }

    #[test]
    fn output_streams_as_whole_characters_and_the_answer_keeps_it_all() {
        let chunks = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = chunks.clone();
        let tap = stream_output(Progress::new(move |c| sink.lock().unwrap().push(c)));
        let e = "é".as_bytes();
        (tap.0)(0, &[b'a', e[0]]);
        (tap.0)(0, &[e[1], b'b']);
        (tap.0)(1, b"err");
        assert_eq!(*chunks.lock().unwrap(), ["a", "éb", "err"]);

        let h = host();
        h.set(Security::Full, Ask::Off, &[]);
        let streamed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = streamed.clone();
        let (ev, _) = events();
        let r = system_run(
            &h.exec,
            &sh("printf one; sleep 0.1; printf two"),
            &h.cwd,
            &Cancel::new(),
            &ev,
            &Progress::new(move |c| sink.lock().unwrap().push_str(&c)),
        )
        .unwrap();
        assert_eq!(r["stdout"], "onetwo");
        assert_eq!(*streamed.lock().unwrap(), "onetwo");
    }

    #[test]
    fn the_command_gets_no_descriptor_of_the_node_but_its_stdio() {
        let h = host();
        h.set(Security::Full, Ask::Off, &[]);
        // `ls` opens the directory it lists: one more than 0, 1 and 2.
        let (r, _) = h.run(json!({"command": ["/bin/ls", "/proc/self/fd"]}));
        let listed = r.unwrap()["stdout"].as_str().unwrap_or_default().to_owned();
        let fds: Vec<&str> = listed.split_whitespace().collect();
        assert_eq!(fds, ["0", "1", "2", "3"], "{listed}");
        // A script runs from its held handle too (its interpreter opens it).
        let script = h.cwd.join("job");
        std::fs::write(&script, "#!/bin/sh\necho from-the-script\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let (r, _) = h.run(json!({"command": ["./job"], "cwd": h.cwd}));
        assert_eq!(r.unwrap()["stdout"], "from-the-script\n");
    }

    #[test]
    fn a_command_that_cannot_start_reports_no_start() {
        let h = host();
        h.set(Security::Full, Ask::Off, &[]);
        let (r, sent) = h.run(json!({"command": ["/nonexistent/program"]}));
        assert_eq!(r.unwrap()["success"], false);
        let names: Vec<&str> = sent.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["exec.finished"]);
    }

    #[test]
    fn an_allowlist_covers_every_command_or_the_run_is_a_miss() {
        let h = host();
        h.set(Security::Allowlist, Ask::Off, &["echo", "uname"]);
        assert!(h.run(sh("echo hi && uname")).0.is_ok());
        let (r, sent) = h.run(sh("echo hi && id"));
        assert!(r.unwrap_err().message.contains("allowlist miss"));
        assert_eq!(sent[0].1["reason"], "allowlist-miss");
        assert!(
            h.run(sh("echo $(id)")).0.is_err(),
            "an expansion is never covered"
        );
    }

    #[test]
    fn the_file_an_approval_covers_is_the_script_or_a_relative_program() {
        let idx =
            |a: &[&str]| file_operand_index(&a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(idx(&["python3.11", "job.py"]), Some(1));
        assert_eq!(idx(&["/usr/bin/python3", "job.py"]), Some(1));
        assert_eq!(idx(&["python3", "-c", "print(1)"]), None);
        assert_eq!(idx(&["pythonx", "job.py"]), None);
        assert_eq!(idx(&["python3-x", "job.py"]), None);
        assert_eq!(idx(&["./job.sh", "x"]), Some(0));
        assert_eq!(idx(&["bin/job.sh"]), Some(0));
        assert_eq!(idx(&["tool", "x"]), None);
        assert_eq!(idx(&["/usr/bin/tool", "x"]), None);
    }

    #[test]
    fn a_bound_file_is_hashed_up_to_its_limit_and_refused_past_it() {
        use std::io::Read as _;
        let limit = usize::try_from(MAX_BOUND_FILE).unwrap();
        let named = Path::new("big");
        let at = sha256_of(std::io::repeat(0).take(MAX_BOUND_FILE), named).unwrap();
        let zeros = vec![0u8; limit];
        assert_eq!(at, super::super::approvals::hash(Some(&zeros)));
        let e = sha256_of(std::io::repeat(0).take(MAX_BOUND_FILE + 1), named).unwrap_err();
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn a_fifo_operand_is_refused_without_being_opened() {
        let h = host();
        let fifo = h.cwd.join("pipe");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        // An open for reading would block here: no writer ever comes.
        let e = snapshot_operand(&["sh".into(), "pipe".into()], 1, &h.cwd).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn each_agent_gets_its_own_policy_and_a_changed_document_is_read_again() {
        let h = host();
        h.set(Security::Allowlist, Ask::Off, &["echo"]);
        edit_local(&h.store, |f| {
            let ops = f.agents.entry("ops".into()).or_default();
            ops.security = Some(Security::Full);
        })
        .unwrap();
        // Alternating agents, more of them than are kept resolved.
        for round in 0..2 {
            for k in 0..MAX_RESOLVED + 3 {
                let p = h.exec.policy(Some(&format!("agent-{k}"))).unwrap();
                assert_eq!(p.security, Security::Allowlist, "{round} {k}");
                assert_eq!(p.allowlist.len(), 1);
                assert_eq!(h.exec.policy(Some("ops")).unwrap().security, Security::Full);
            }
        }
        assert_eq!(h.exec.policy(None).unwrap().security, Security::Allowlist);
        h.set(Security::Deny, Ask::Off, &[]);
        // A changed document starts a new cache, which keeps every agent.
        for agent in ["a", "b", "c"] {
            h.exec.policy(Some(agent)).unwrap();
        }
        assert_eq!(
            h.exec
                .parsed
                .lock()
                .unwrap()
                .as_ref()
                .unwrap()
                .resolved
                .len(),
            3
        );
        assert_eq!(h.exec.policy(None).unwrap().security, Security::Deny);
        assert!(h.exec.policy(Some("agent-1")).unwrap().allowlist.is_empty());
        let kept = h.exec.parsed.lock().unwrap();
        assert!(kept.as_ref().unwrap().resolved.len() <= MAX_RESOLVED);
    }

    #[test]
    fn approval_flags_without_a_matching_plan_lift_nothing() {
        let h = host();
        h.set(Security::Allowlist, Ask::Always, &[]);
        let mut bypass = sh("id");
        bypass["approved"] = true.into();
        bypass["approvalDecision"] = "allow-once".into();
        let (r, sent) = h.run(bypass.clone());
        assert!(
            r.unwrap_err()
                .message
                .contains("requires matching systemRunPlan")
        );
        assert!(sent.is_empty());
        // A plan for another command does not cover this one.
        let other = prepare(&h.exec, &sh("uname"), &h.cwd).unwrap();
        bypass["systemRunPlan"] = other["plan"].clone();
        bypass["cwd"] = other["plan"]["cwd"].clone();
        assert!(
            h.run(bypass)
                .0
                .unwrap_err()
                .message
                .contains("matching systemRunPlan")
        );
        // The gateway's approval, bound to this very plan, runs it.
        let plan = prepare(&h.exec, &sh("id"), &h.cwd).unwrap();
        let mut approved = sh("id");
        approved["systemRunPlan"] = plan["plan"].clone();
        approved["cwd"] = plan["plan"]["cwd"].clone();
        approved["approved"] = true.into();
        approved["approvalDecision"] = "allow-once".into();
        assert!(h.run(approved.clone()).0.is_ok());
        // Once the policy changed, that approval is void.
        h.set(Security::Allowlist, Ask::Always, &["uname"]);
        let (r, sent) = h.run(approved.clone());
        let e = r.unwrap_err();
        assert!(e.message.contains("policy changed"), "{e:?}");
        // ... and the refusal is reported, as every refusal is.
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0].0, "exec.denied");
        assert_eq!(sent[0].1["reason"], "approval-policy-changed");
        // And `deny` is never lifted.
        h.set(Security::Deny, Ask::Always, &["uname"]);
        let plan = prepare(&h.exec, &sh("id"), &h.cwd);
        assert!(plan.is_err() || h.run(approved).0.is_err());
    }

    #[test]
    fn prepare_pins_what_an_approval_covers_and_refuses_what_it_cannot() {
        let h = host();
        h.set(Security::Full, Ask::Off, &[]);
        let p = prepare(&h.exec, &sh("echo a && echo b"), &h.cwd).unwrap();
        assert_eq!(p["plan"]["commandText"], "/bin/sh -lc \"echo a && echo b\"");
        assert_eq!(p["plan"]["commandPreview"], "echo a && echo b");
        assert_eq!(p["plan"]["cwd"], h.cwd.display().to_string());
        assert_eq!(p["execPolicy"], json!({"security": "full", "ask": "off"}));
        h.set(Security::Allowlist, Ask::OnMiss, &[]);
        // Inside a shell payload nothing can be bound (as upstream).
        for text in [
            "echo a && echo b",
            "cat x > y",
            "./run.sh",
            "python3 x.py",
            "/usr/bin/id",
        ] {
            let e = prepare(&h.exec, &sh(text), &h.cwd).unwrap_err();
            assert!(e.message.contains("cannot safely bind"), "{text}: {e:?}");
        }
        assert!(prepare(&h.exec, &sh("uname -a"), &h.cwd).is_ok());
        assert!(
            prepare(
                &h.exec,
                &json!({"command": ["/usr/bin/uname", "-a"]}),
                &h.cwd
            )
            .is_ok()
        );
    }

    #[test]
    fn a_shell_by_any_shape_gets_only_terminal_and_locale_overrides() {
        let h = host();
        h.set(Security::Full, Ask::Off, &[]);
        let run = json!({"command": ["/bin/sh", "-e", "-c", "echo x${FOO}x"],
                         "env": {"FOO": "1"}, "sessionKey": "s"});
        assert_eq!(h.run(run).0.unwrap()["stdout"], "xx\n");
    }

    #[test]
    fn what_runs_is_the_judged_program_not_a_builtin_of_its_name() {
        let h = host();
        h.set(Security::Allowlist, Ask::Off, &["/usr/bin/echo"]);
        // dash's builtin echo turns \t into a tab; /usr/bin/echo does not.
        let out = h.run(sh(r"echo 'a\tb'")).0.unwrap();
        assert_eq!(out["stdout"], "a\\tb\n", "{out}");
    }

    #[test]
    fn a_timeout_of_zero_is_none_and_a_short_one_stops_the_run() {
        let h = host();
        h.set(Security::Full, Ask::Off, &[]);
        let mut quick = sh("echo hi");
        quick["timeoutMs"] = 0.into();
        let out = h.run(quick).0.unwrap();
        assert_eq!(
            (out["stdout"].clone(), out["timedOut"].clone()),
            ("hi\n".into(), false.into())
        );
        let mut slow = sh("sleep 5");
        slow["timeoutMs"] = 300.into();
        let out = h.run(slow).0.unwrap();
        assert_eq!(out["timedOut"], true, "{out}");
    }

    #[test]
    fn suppress_notify_on_exit_reaches_the_finished_event_only_when_asked() {
        let h = host();
        h.set(Security::Full, Ask::Off, &[]);
        let finished = |extra: Value| {
            let mut p = sh("true");
            p.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let (_, sent) = h.run(p);
            sent.into_iter()
                .find(|(e, _)| e == "exec.finished")
                .unwrap()
                .1
        };
        assert_eq!(
            finished(json!({"suppressNotifyOnExit": true}))["suppressNotifyOnExit"],
            true
        );
        assert!(finished(json!({})).get("suppressNotifyOnExit").is_none());
        assert!(
            finished(json!({"suppressNotifyOnExit": false}))
                .get("suppressNotifyOnExit")
                .is_none()
        );
    }

    #[test]
    fn streamed_output_waits_for_a_split_character_and_shows_a_bad_byte_at_once() {
        let got: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let g = got.clone();
        let tap = stream_output(Progress::new(move |t| g.lock().unwrap().push(t)));
        (tap.0)(0, b"a\xc3");
        (tap.0)(0, b"\xa9");
        (tap.0)(0, b"\xc3");
        assert_eq!(*got.lock().unwrap(), ["a", "\u{e9}"]);
        (tap.0)(1, b"x\xffy");
        assert_eq!(got.lock().unwrap()[2], "x\u{fffd}y");
    }

    #[test]
    fn an_approval_counts_by_its_decision_alone_and_only_for_the_planned_command() {
        let h = host();
        h.set(Security::Allowlist, Ask::Always, &[]);
        let marker = h.cwd.join("ran");
        let echo = json!({"command": ["/usr/bin/echo", "hi"], "sessionKey": "s"});
        let approved = |command: Value, run_id: &str, flag: bool| {
            let plan = prepare(&h.exec, &echo, &h.cwd).unwrap()["plan"].clone();
            let mut a = json!({"command": command, "sessionKey": "s", "cwd": plan["cwd"],
                               "systemRunPlan": plan, "approvalDecision": "allow-once",
                               "runId": run_id});
            if flag {
                a["approved"] = true.into();
            }
            a
        };
        // The decision alone is an explicit approval.
        let out = h
            .run(approved(echo["command"].clone(), "d1", false))
            .0
            .unwrap();
        assert_eq!(out["stdout"], "hi\n");
        // A real plan does not approve another command.
        let touch = json!(["/usr/bin/touch", marker.to_str().unwrap()]);
        assert!(h.run(approved(touch, "d2", true)).0.is_err());
        assert!(!marker.exists());
        // Not even the same program with other arguments.
        let other = json!(["/usr/bin/echo", "other"]);
        assert!(h.run(approved(other, "d3", true)).0.is_err());
        // Nor the planned argv in another session or working directory.
        let mut moved = approved(echo["command"].clone(), "d4", true);
        moved["sessionKey"] = "another".into();
        assert!(h.run(moved).0.is_err());
        let mut moved = approved(echo["command"].clone(), "d5", true);
        moved["cwd"] = "/".into();
        assert!(h.run(moved).0.is_err());
    }

    #[test]
    fn an_approved_program_rewritten_after_the_plan_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let h = host();
        h.set(Security::Allowlist, Ask::Always, &[]);
        let tool = h.cwd.join("tool");
        let write = |body: &str| {
            std::fs::write(&tool, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        write("echo approved");
        let argv = json!({"command": [tool.to_str().unwrap()], "sessionKey": "s"});
        let approved = |run_id: &str| {
            let mut a = argv.clone();
            let plan = prepare(&h.exec, &argv, &h.cwd).unwrap()["plan"].clone();
            a["cwd"] = plan["cwd"].clone();
            a["systemRunPlan"] = plan;
            a["approved"] = true.into();
            a["approvalDecision"] = "allow-once".into();
            a["runId"] = run_id.into();
            a
        };
        assert_eq!(h.run(approved("r1")).0.unwrap()["stdout"], "approved\n");
        let fresh = approved("r2");
        write("echo rewritten");
        let (r, sent) = h.run(fresh);
        assert!(
            r.unwrap_err().message.contains("program changed"),
            "{sent:?}"
        );
        assert_eq!(sent[0].1["reason"], "execution-plan-miss");
    }

    #[test]
    fn an_approved_script_runs_only_with_the_bytes_that_were_approved() {
        let h = host();
        h.set(Security::Allowlist, Ask::Always, &[]);
        let script = h.cwd.join("job.sh");
        std::fs::write(&script, "echo approved\n").unwrap();
        let argv = json!({"command": ["/bin/sh", "job.sh"], "sessionKey": "s", "runId": "r"});
        let plan = prepare(&h.exec, &argv, &h.cwd).unwrap()["plan"].clone();
        let bound = &plan["mutableFileOperand"];
        assert_eq!(bound["argvIndex"], 1, "{plan}");
        assert_eq!(
            bound["path"],
            std::fs::canonicalize(&script)
                .unwrap()
                .display()
                .to_string()
        );
        assert_eq!(bound["sha256"].as_str().map(str::len), Some(64));
        let mut approved = argv.clone();
        approved["systemRunPlan"] = plan.clone();
        approved["cwd"] = plan["cwd"].clone();
        approved["approved"] = true.into();
        approved["approvalDecision"] = "allow-once".into();
        assert_eq!(h.run(approved.clone()).0.unwrap()["stdout"], "approved\n");
        // A run id runs once (and a plan serves one run).
        let (r, sent) = h.run(approved.clone());
        assert!(r.unwrap_err().message.contains("ran already"));
        assert_eq!(sent[0].1["reason"], "execution-plan-miss");
        // The script changed after the approval: refused, and reported.
        let again = |h: &Host| {
            let mut a = approved.clone();
            a["systemRunPlan"] = prepare(&h.exec, &argv, &h.cwd).unwrap()["plan"].clone();
            a["runId"] =
                format!("r-{}", rand_core::RngCore::next_u64(&mut rand_core::OsRng)).into();
            a
        };
        let fresh = again(&h);
        std::fs::write(&script, "echo swapped\n").unwrap();
        let (r, sent) = h.run(fresh);
        assert!(r.unwrap_err().message.contains("script operand changed"));
        assert_eq!(sent[0].0, "exec.denied");
        assert_eq!(sent[0].1["reason"], "execution-plan-miss");
        // A plan changed on the way (here: its binding dropped) is not one
        // this node prepared.
        let mut unbound = again(&h);
        unbound["systemRunPlan"]
            .as_object_mut()
            .unwrap()
            .remove("mutableFileOperand");
        assert!(
            h.run(unbound)
                .0
                .unwrap_err()
                .message
                .contains("did not prepare")
        );
        // Nothing is bound, and no null is sent, when nothing needs approval.
        h.set(Security::Full, Ask::Off, &[]);
        let free = prepare(&h.exec, &argv, &h.cwd).unwrap();
        assert!(free["plan"].get("mutableFileOperand").is_none(), "{free}");
        // An interpreter by relative path binds its script, not itself; a
        // relative program that is not an interpreter binds itself.
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            file_operand_index(&argv(&["./venv/bin/python3", "job.py"])),
            Some(1)
        );
        assert_eq!(
            file_operand_index(&argv(&["./venv/bin/python3", "-m", "x"])),
            None
        );
        assert_eq!(
            file_operand_index(&argv(&["./node_modules/.bin/tsx", "x.ts"])),
            None
        );
        assert_eq!(file_operand_index(&argv(&["./run.sh", "--fast"])), Some(0));
        // A script that is not there cannot be bound.
        h.set(Security::Allowlist, Ask::Always, &[]);
        let missing = json!({"command": ["python3", "nope.py"]});
        let e = prepare(&h.exec, &missing, &h.cwd).unwrap_err();
        assert!(e.message.contains("readable script file"), "{e:?}");
    }

    #[test]
    fn bad_requests_say_what_is_wrong_and_report_no_event() {
        let h = host();
        h.set(Security::Full, Ask::Off, &[]);
        let mut env = sh("true");
        env["env"] = json!({"LD_PRELOAD": "/x.so", "BASH_ENV": "/rc"});
        let (r, sent) = h.run(env);
        let e = r.unwrap_err();
        assert_eq!(e.code, "INVALID_REQUEST");
        assert!(e.message.contains("BASH_ENV, LD_PRELOAD"), "{e:?}");
        assert!(sent.is_empty());
        let mut raw = sh("true");
        raw["rawCommand"] = "rm -rf /".into();
        assert!(
            h.run(raw)
                .0
                .unwrap_err()
                .message
                .contains("rawCommand does not match")
        );
        assert!(
            h.run(json!({}))
                .0
                .unwrap_err()
                .message
                .contains("command required")
        );
        let mut cwd = sh("true");
        cwd["cwd"] = "/nonexistent/dir".into();
        let (r, sent) = h.run(cwd);
        assert!(r.unwrap_err().message.contains("/nonexistent/dir"));
        assert_eq!(sent[0].1["reason"], "cwd-unavailable");
    }

    #[test]
    fn the_event_output_keeps_the_last_characters() {
        let long = "x".repeat(EVENT_TAIL + 10);
        let tail = output_tail(&json!({"stdout": long, "stderr": "", "error": null}));
        assert!(tail.starts_with("... (truncated) "));
        assert_eq!(tail.chars().count(), EVENT_TAIL + "... (truncated) ".len());
        assert_eq!(
            output_tail(&json!({"stdout": "a\n", "stderr": "b", "error": "c"})),
            "a\n\nb\nc"
        );
    }
}
