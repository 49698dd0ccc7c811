//! The tests of `system.run.prepare` and `system.run`.

use std::sync::{Arc, Mutex};

use super::binding::{MAX_BOUND_FILE, sha256_of};
use super::host::MAX_RESOLVED;
use super::*;
use crate::exec::stored::edit_local;
use clawnode::StateDir;

type Sent = Arc<Mutex<Vec<(String, Value)>>>;

fn events() -> (Emitter, Sent) {
    let sent: Sent = Arc::default();
    let s = sent.clone();
    let events = Emitter::new(move |e, p| s.lock().unwrap().push((e.to_owned(), p)));
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
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
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
        a["runId"] = format!("r-{}", rand_core::RngCore::next_u64(&mut rand_core::OsRng)).into();
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
