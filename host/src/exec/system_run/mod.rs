//! `system.run.prepare` and `system.run` (docs/exec-host.md §1, §2, §6).
//!
//! The gateway first asks the node to prepare a run and gets back a plan:
//! the argv, the canonical working directory, the command text and a
//! snapshot of the node's policy. It then sends `system.run` with that plan.
//!
//! Every `system.run` is treated as written by whoever controls the
//! gateway. Approval flags (`approved`, `approvalDecision`,
//! `approvalSource`) count only for a plan this node prepared and
//! remembers ([`PlanBook`](super::plans::PlanBook)), unchanged, once, with a run id not used
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

use super::allowlist::{self, Context, shell_text};
use super::approvals::{Approval, Ask, Resolved, Security, decide};
use super::env::child_env;
use super::plans::{Binding, Unknown};
use super::resolve::{FileId, Kind, kind, resolve};
use super::run::{Cancel, RunOutcome, RunSpec, run_with};
use clawnode::{CommandError, Emitter, Progress};

mod binding;
mod host;
mod output;
#[cfg(test)]
mod tests;

use binding::{
    FileOperand, bound_programs, check_operand, file_operand_index, pinnable, plan_digest,
    snapshot_operand,
};
pub use host::ExecHost;
use host::policy_snapshot;
use output::{output_tail, stream_output};

/// Prepares a run: the plan `system.run` is then bound to.
pub const SYSTEM_RUN_PREPARE: &str = "system.run.prepare";
/// Runs a command.
pub const SYSTEM_RUN: &str = "system.run";
/// The most runs at once; past that `system.run` is answered busy. Other
/// commands have slots of their own (docs/exec-host.md §11.5).
pub const MAX_RUNS: usize = 16;
/// The most output an `exec.finished` event carries (its last characters).
pub const EVENT_TAIL: usize = 20_000;

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

/// `system.run`: decides, runs, reports `exec.denied` or `exec.finished`,
/// and answers with the run's outcome. Blocks until the run ends or
/// `cancel` stops it.
pub fn system_run(
    host: &ExecHost,
    params: &Value,
    node_cwd: &Path,
    cancel: &Cancel,
    events: &Emitter,
    progress: &Progress,
) -> Result<Value, CommandError> {
    let req = parse(params)?;
    let policy = host.policy(req.agent_id.as_deref())?;
    let report = Report::new(&req, events);
    let (approval, binding) = admit(host, &req, &policy, &report)?;
    let (cwd, dir) = working_dir(&req, node_cwd, binding.as_ref(), &report)?;
    let chosen = what_runs(&req, &policy, approval, binding, &cwd, &report)?;
    let timeout = req
        .timeout_ms
        .filter(|t| *t > 0)
        .map(std::time::Duration::from_millis);
    let mut about = report.about();
    if req.suppress_notify_on_exit == Some(true) {
        about["suppressNotifyOnExit"] = true.into();
    }
    let outcome = match chosen.run {
        Ok((program, argv)) => {
            let spec = RunSpec {
                argv,
                program: Some(program.file),
                cwd: Some(cwd),
                cwd_dir: Some(dir),
                env: chosen.env,
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

/// Who a run is for, as its `exec.*` events name it; reports denials.
struct Report<'a> {
    session_key: String,
    run_id: String,
    command: String,
    events: &'a Emitter,
}

impl<'a> Report<'a> {
    fn new(req: &Request, events: &'a Emitter) -> Self {
        Report {
            session_key: req.session_key.clone().unwrap_or_else(|| "node".into()),
            run_id: req.run_id.clone().unwrap_or_default(),
            command: format_command(&req.command),
            events,
        }
    }

    /// The fields every `exec.*` event of this run carries.
    fn about(&self) -> Value {
        json!({"sessionKey": self.session_key, "runId": self.run_id, "host": "node",
               "command": self.command})
    }

    /// Reports `exec.denied` with `reason`, and gives back `error`.
    fn deny(&self, reason: &str, error: CommandError) -> CommandError {
        let mut denied = self.about();
        denied["reason"] = reason.into();
        self.events.send("exec.denied", denied);
        error
    }

    /// A refusal by the policy, reported.
    fn refuse(&self, refused: &super::approvals::Denied) -> CommandError {
        self.deny(
            refused.reason(),
            CommandError::new("SYSTEM_RUN_DENIED", refused.to_string()),
        )
    }
}

/// The approval the request carries and, when it has one, the binding of
/// the plan this node prepared for it (taken: a plan is approved once).
/// Refused first: `security: deny`, a permission this host lacks.
fn admit(
    host: &ExecHost,
    req: &Request,
    policy: &Resolved,
    report: &Report<'_>,
) -> Result<(Approval, Option<Binding>), CommandError> {
    let approval = approval(req, policy).map_err(|e| match e {
        e if e.code == "SYSTEM_RUN_DENIED" => report.deny("approval-policy-changed", e),
        e => e,
    })?;
    if policy.security == Security::Deny {
        // Refused before the working directory or anything else is looked
        // at: the refusal tells nothing about the node's files.
        return Err(report.refuse(&super::approvals::Denied::Disabled));
    }
    if req.needs_screen_recording == Some(true) {
        return Err(report.deny(
            "permission:screenRecording",
            CommandError::new("SYSTEM_RUN_DENIED", "PERMISSION_MISSING: screenRecording"),
        ));
    }
    // An approval counts only for a plan this node made, once.
    let run_id = &report.run_id;
    let binding = match (&req.system_run_plan, approval) {
        (_, Approval::None) => None,
        (None, _) => return Err(invalid("explicit approval requires matching systemRunPlan")),
        (Some(plan), _) => match host.plans.take(&plan_digest(plan), run_id, Instant::now()) {
            Ok(b) => Some(b),
            Err(Unknown::Plan) => {
                return Err(report.deny(
                    "execution-plan-miss",
                    denied("approval for a plan this node did not prepare, or used already"),
                ));
            }
            Err(Unknown::RunId) => {
                return Err(report.deny(
                    "execution-plan-miss",
                    denied(format_args!("run id {run_id:?} ran already")),
                ));
            }
        },
    };
    Ok((approval, binding))
}

/// The canonical working directory, opened; for an approved plan, the
/// very directory and script operand it bound.
fn working_dir(
    req: &Request,
    node_cwd: &Path,
    binding: Option<&Binding>,
    report: &Report<'_>,
) -> Result<(PathBuf, Arc<OwnedFd>), CommandError> {
    let cwd = canonical_cwd(req.cwd.as_deref(), node_cwd)
        .map_err(|e| report.deny("cwd-unavailable", e))?;
    let dir = open_dir(&cwd).map_err(|e| report.deny("cwd-unavailable", denied(e)))?;
    if let Some(b) = binding
        && FileId::of(&dir).ok() != Some(b.cwd)
    {
        return Err(report.deny(
            "execution-plan-miss",
            denied("approval cwd changed before execution"),
        ));
    }
    if binding.is_some()
        && let Some(plan) = &req.system_run_plan
    {
        check_operand(plan, &req.command, &cwd)
            .map_err(|e| report.deny("execution-plan-miss", denied(e)))?;
    }
    Ok((cwd, dir))
}

/// What a run starts, once the policy allowed it.
struct Chosen {
    /// The program, held open, and the argv it runs with; or why it
    /// cannot start (reported as a failed spawn).
    run: Result<(super::resolve::Program, Vec<String>), String>,
    /// The child's environment.
    env: BTreeMap<String, String>,
}

/// Decides whether the run may go, and what exactly it runs: the judged
/// command, the approved plan's pinned command (checked against its
/// binding), or under `full` the argv as given.
fn what_runs(
    req: &Request,
    policy: &Resolved,
    approval: Approval,
    binding: Option<Binding>,
    cwd: &Path,
    report: &Report<'_>,
) -> Result<Chosen, CommandError> {
    let path_var = std::env::var("PATH").unwrap_or_default();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let shell = shell_text(&req.command).is_some()
        || resolve(&req.command[0], cwd, path_var.as_ref())
            .is_ok_and(|p| matches!(kind(&p), Kind::Shell(_)));
    let requested = req.env.clone().unwrap_or_default();
    let env = child_env(std::env::vars(), &requested, shell).map_err(|e| invalid(e.to_string()))?;
    let path = env.get("PATH").cloned().unwrap_or_default();
    let ctx = Context {
        cwd,
        path: path.as_ref(),
        home: home.as_deref(),
    };
    let judged = (policy.security == Security::Allowlist)
        .then(|| allowlist::judge(&policy.allowlist, &req.command, &ctx));
    let covered = matches!(judged, Some(Ok(_)));
    if let Some(Err(why)) = &judged {
        tracing::info!(command = %report.command, %why, "allowlist miss");
    }
    decide(policy, approval, covered).map_err(|refused| report.refuse(&refused))?;
    let run = match (judged, binding) {
        (Some(Ok(judged)), _) => Ok((judged.program, judged.argv)),
        (_, Some(binding)) => {
            let pinned = allowlist::pin(&req.command, &ctx)
                .map_err(|e| report.deny("execution-plan-miss", denied(e)))?;
            let now = bound_programs(&pinned);
            if now.as_ref().ok() != Some(&binding.programs) {
                return Err(report.deny(
                    "execution-plan-miss",
                    denied("approval program changed before execution"),
                ));
            }
            Ok((pinned.program, pinned.argv))
        }
        _ => resolve(&req.command[0], cwd, path.as_ref()).map(|p| (p, req.command.clone())),
    };
    Ok(Chosen { run, env })
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
