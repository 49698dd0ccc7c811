//! The exec host of the `clawnode` binary against a hostile gateway
//! (docs/exec-host.md §3.3, §2.5, §5): every `system.run` here is written
//! by an attacker who controls the gateway. Nothing the owner did not allow
//! may run, what was judged is what runs, an approval counts only for a
//! plan the node prepared, once, and no process outlives its run or the
//! node.
//!
//! Each test drives a [`Remote`] peer step by step; "ran" is told by a
//! marker file the forbidden program would create.

mod peer;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clawnode_tests::{Node, NodeOptions, clawnode_bin};
use peer::Remote;
use serde_json::{Value, json};

/// A node connected to a fresh [`Remote`].
fn connected(name: &str) -> (Node, Remote) {
    connected_with(name, Vec::new())
}

/// A node with `env` set, connected to a fresh [`Remote`].
fn connected_with(name: &str, env: Vec<(String, String)>) -> (Node, Remote) {
    let (port, remote) = Remote::start();
    let mut opts = NodeOptions::new(&format!("ws://127.0.0.1:{port}"), "t", name);
    opts.env = env;
    let node = Node::spawn(&clawnode_bin(), opts);
    node.expect(0, "connected", Duration::from_secs(20));
    remote.node_id();
    (node, remote)
}

/// A fresh directory (canonical path), removed at the end of the test.
fn scratch() -> (tempfile_dir::Dir, PathBuf) {
    let dir = tempfile_dir::Dir::new();
    let path = std::fs::canonicalize(dir.path()).expect("canonical");
    (dir, path)
}

/// A tiny temporary directory, without a dev-dependency for it.
mod tempfile_dir {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "clawnode-hostile-exec-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path).expect("mkdir");
            Dir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// An executable script at `path` with `body`.
fn script(path: &Path, body: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("#!/bin/sh\n{body}\n")).expect("write");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::rename(&tmp, path).expect("rename");
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|a| (*a).to_owned()).collect()
}

fn run_params(argv: &[String], extra: Value) -> Value {
    let mut p = json!({"command": argv, "sessionKey": "hostile", "timeoutMs": 20_000});
    if let (Value::Object(p), Value::Object(e)) = (&mut p, extra) {
        p.extend(e);
    }
    p
}

/// Sends each argv as a `system.run`; asserts every one was refused as
/// `SYSTEM_RUN_DENIED` and `marker` was never made.
fn assert_all_refused(
    remote: &Remote,
    tag: &str,
    cases: &[Vec<String>],
    extra: Value,
    marker: &Path,
) {
    for (k, argv) in cases.iter().enumerate() {
        let id = format!("{tag}-{k}");
        let answer = remote.call(&id, "system.run", &run_params(argv, extra.clone()));
        let error = answer.expect_err(&format!("{argv:?} ran"));
        assert_eq!(error["code"], "SYSTEM_RUN_DENIED", "{argv:?}: {error}");
        assert!(!marker.exists(), "{argv:?} ran the forbidden program");
    }
}

/// Programs named like shells, but not the system's shells, are judged as
/// themselves: their `-c` text is not what decides.
#[test]
fn a_program_named_like_a_shell_is_judged_by_what_it_is() {
    let (_d, dir) = scratch();
    let marker = dir.join("ran");
    for name in ["sh", "bash", "dash"] {
        script(&dir.join(name), &format!("touch {}", marker.display()));
    }
    let (node, remote) = connected("named-shell");
    node.set_approvals(&["--security", "allowlist"]);
    node.approvals(&["allow", "/usr/bin/echo"]);
    let d = dir.display().to_string();
    let cases = [
        s(&[&format!("{d}/sh"), "-c", "echo hi"]),
        s(&[&format!("{d}/bash"), "-lc", "echo hi"]),
        s(&["./dash", "-c", "echo hi"]),
        s(&["./sh", "-lc", "echo hi"]),
    ];
    assert_all_refused(&remote, "named", &cases, json!({"cwd": d}), &marker);
    // The system's shell with the same text runs.
    let ran = remote
        .call(
            "real",
            "system.run",
            &run_params(&s(&["/bin/sh", "-c", "echo hi"]), json!({})),
        )
        .expect("the real shell's covered text runs");
    assert_eq!(ran["stdout"], "hi\n", "{ran}");
}

/// Copies of the system's shell and of a wrapper, under innocent names in a
/// directory the owner allowlisted as a whole, are told by their content:
/// neither runs what it is given.
#[test]
fn a_copy_of_a_shell_or_a_wrapper_in_an_allowlisted_directory_runs_nothing() {
    let (_d, dir) = scratch();
    let marker = dir.join("ran");
    let tools = dir.join("tools");
    std::fs::create_dir_all(&tools).expect("mkdir");
    std::fs::copy("/bin/sh", tools.join("format")).expect("copy");
    std::fs::copy("/usr/bin/env", tools.join("lint")).expect("copy");
    script(&tools.join("check"), "echo checked");
    let (node, remote) = connected("copied-shell");
    node.set_approvals(&["--security", "allowlist"]);
    node.approvals(&["allow", &format!("{}/*", tools.display())]);
    let t = tools.display().to_string();
    let touch = format!("touch {}", marker.display());
    let cases = [
        s(&[&format!("{t}/format"), "-c", &touch]),
        s(&[
            &format!("{t}/lint"),
            "touch",
            marker.to_str().expect("utf-8"),
        ]),
    ];
    assert_all_refused(&remote, "copy", &cases, json!({}), &marker);
    // What the entry is for still runs.
    let ran = remote
        .call(
            "check",
            "system.run",
            &run_params(&s(&[&format!("{t}/check")]), json!({})),
        )
        .expect("an allowlisted script runs");
    assert_eq!(ran["stdout"], "checked\n", "{ran}");
}

/// With the shells themselves allowlisted, no shape of a shell call lets a
/// payload through that the allowlist does not cover.
#[test]
fn an_allowlisted_shell_allows_no_payload_in_any_shape() {
    let (_d, dir) = scratch();
    let marker = dir.join("ran");
    let job = dir.join("job.sh");
    script(&job, &format!("touch {}", marker.display()));
    let (node, remote) = connected("shell-shapes");
    node.set_approvals(&["--security", "allowlist"]);
    for p in [
        "/usr/bin/dash",
        "/usr/bin/bash",
        "/bin/sh",
        "sh",
        "bash",
        "/usr/bin/echo",
    ] {
        node.approvals(&["allow", p]);
    }
    let t = format!("touch {}", marker.display());
    let cases = [
        s(&["sh", "-c", &t, "sh"]),
        s(&["sh", "-e", "-c", &t]),
        s(&["sh", "+e", "-c", &t]),
        s(&["bash", "--norc", "-c", &t]),
        s(&["bash", "-o", "errexit", "-c", &t]),
        s(&["/bin/sh", "-lc", &t]),
        s(&["sh", "-c", &format!("echo hi; {t}")]),
        s(&["sh", "-c", &format!("sh -c '{t}'")]),
        s(&["sh", job.to_str().expect("utf-8")]),
        s(&["sh", "-s"]),
        s(&[
            "bash",
            "--rcfile",
            job.to_str().expect("utf-8"),
            "-c",
            "echo hi",
        ]),
        s(&["sh", "-k", "-c", "echo hi"]),
    ];
    assert_all_refused(&remote, "shape", &cases, json!({}), &marker);
    // Covered text in those shapes runs, with every command by real path.
    for (k, argv) in [
        s(&["sh", "-e", "-c", "echo hi", "sh"]),
        s(&[
            "bash",
            "--norc",
            "-o",
            "errexit",
            "-c",
            "echo hi && echo there",
        ]),
    ]
    .iter()
    .enumerate()
    {
        let ran = remote
            .call(
                &format!("ok-{k}"),
                "system.run",
                &run_params(argv, json!({})),
            )
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        assert!(
            ran["stdout"]
                .as_str()
                .is_some_and(|o| o.starts_with("hi\n")),
            "{ran}"
        );
    }
}

/// Dispatch wrappers run whatever their arguments name: allowlisting one
/// allows nothing through it.
#[test]
fn an_allowlisted_wrapper_runs_nothing_it_names() {
    let (_d, dir) = scratch();
    let marker = dir.join("ran");
    let m = marker.to_str().expect("utf-8");
    let (node, remote) = connected("wrappers");
    node.set_approvals(&["--security", "allowlist"]);
    for w in [
        "env", "nice", "nohup", "timeout", "stdbuf", "setsid", "xargs", "find", "echo",
    ] {
        node.approvals(&["allow", &format!("/usr/bin/{w}")]);
    }
    let cases = [
        s(&["env", "touch", m]),
        s(&["/usr/bin/env", "-i", "touch", m]),
        s(&["nice", "touch", m]),
        s(&["nohup", "touch", m]),
        s(&["timeout", "5", "touch", m]),
        s(&["stdbuf", "-o0", "touch", m]),
        s(&["setsid", "touch", m]),
        s(&["find", "/", "-maxdepth", "0", "-exec", "touch", m, ";"]),
        s(&["sh", "-c", &format!("env touch {m}")]),
        s(&["env", "echo", "hi"]),
    ];
    assert_all_refused(&remote, "wrap", &cases, json!({}), &marker);
}

/// A symlink flipped between an allowlisted program and another one while
/// runs of it come in: what was judged is what runs, every time.
#[test]
fn a_link_flipped_between_check_and_exec_never_runs_the_other_program() {
    let (_d, dir) = scratch();
    let marker = dir.join("ran");
    let evil = dir.join("evil");
    script(&evil, &format!("touch {}", marker.display()));
    let link = dir.join("tool");
    std::os::unix::fs::symlink("/usr/bin/echo", &link).expect("link");
    let (node, remote) = connected("flip");
    node.set_approvals(&["--security", "allowlist"]);
    node.approvals(&["allow", "/usr/bin/echo"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (stop, dir, link, evil) = (stop.clone(), dir.clone(), link.clone(), evil.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let target: &Path = if n.is_multiple_of(2) {
                    &evil
                } else {
                    Path::new("/usr/bin/echo")
                };
                let tmp = dir.join(format!("link-{n}"));
                let _ = std::os::unix::fs::symlink(target, &tmp);
                let _ = std::fs::rename(&tmp, &link);
                n += 1;
            }
            n
        })
    };
    let argv = s(&[link.to_str().expect("utf-8"), "hi"]);
    let (mut ran, mut refused) = (0, 0);
    for batch in 0..20 {
        for k in 0..10 {
            remote.invoke(
                &format!("flip-{batch}-{k}"),
                "system.run",
                &run_params(&argv, json!({})),
            );
        }
        for k in 0..10 {
            let r = remote
                .result(&format!("flip-{batch}-{k}"), 30)
                .expect("answered");
            if r["ok"] == true {
                ran += 1;
            } else {
                refused += 1;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let flips = flipper.join().expect("flipper");
    eprintln!(
        "MEASURE hostile_exec link_flip runs=200 ran_echo={ran} refused={refused} flips={flips}"
    );
    assert!(!marker.exists(), "the flipped-in program ran");
    assert!(
        ran > 0,
        "the allowlisted program never ran: the test proves nothing"
    );
}

/// The approval machinery a hostile gateway can reach: prepare, then change
/// what the plan covers, then claim an approval for it.
struct Approving {
    node: Node,
    remote: Remote,
    n: std::cell::Cell<u32>,
}

impl Approving {
    fn new(name: &str) -> Self {
        Approving::with_env(name, Vec::new())
    }

    fn with_env(name: &str, env: Vec<(String, String)>) -> Self {
        let (node, remote) = connected_with(name, env);
        // Every run needs an operator's approval.
        node.set_approvals(&["--security", "allowlist", "--ask", "always"]);
        Approving {
            node,
            remote,
            n: std::cell::Cell::new(0),
        }
    }

    fn id(&self) -> String {
        self.n.set(self.n.get() + 1);
        format!("a-{}", self.n.get())
    }

    fn prepare(&self, argv: &[String], cwd: &Path) -> Value {
        let params = run_params(argv, json!({"cwd": cwd}));
        self.remote
            .call(&self.id(), "system.run.prepare", &params)
            .unwrap_or_else(|e| panic!("prepare {argv:?}: {e}"))["plan"]
            .clone()
    }

    /// `system.run` of `plan` with an operator's allow-once, as run `run_id`.
    fn run(&self, plan: &Value, run_id: &str) -> Result<Value, Value> {
        let params = run_params(
            &serde_json::from_value::<Vec<String>>(plan["argv"].clone()).expect("argv"),
            json!({"cwd": plan["cwd"], "systemRunPlan": plan, "approved": true,
                   "approvalDecision": "allow-once", "runId": run_id}),
        );
        self.remote.call(&self.id(), "system.run", &params)
    }
}

#[test]
fn an_approved_plan_does_not_survive_changes_to_what_it_covers() {
    let (_d, dir) = scratch();
    let marker = dir.join("ran");
    let touch = format!("touch {}", marker.display());
    let a = Approving::new("plans");
    let denied = |r: Result<Value, Value>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e["code"], "SYSTEM_RUN_DENIED", "{what}: {e}");
        assert!(!marker.exists(), "{what}: ran");
        e["message"].as_str().unwrap_or_default().to_owned()
    };

    // The working directory swapped for a link to another one.
    let work = dir.join("work");
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&work).expect("mkdir");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    script(&elsewhere.join("job"), &touch);
    script(&work.join("job"), "echo fine");
    let plan = a.prepare(&s(&["./job"]), &work);
    std::fs::rename(&work, dir.join("work.old")).expect("move");
    std::os::unix::fs::symlink(&elsewhere, &work).expect("link");
    let m = denied(a.run(&plan, "cwd-swap"), "cwd swapped");
    assert!(m.contains("changed"), "{m}");

    // A program given by absolute path, rewritten after the plan.
    let tool = dir.join("tool");
    script(&tool, "echo fine");
    let plan = a.prepare(&s(&[tool.to_str().expect("utf-8")]), &dir);
    script(&tool, &touch);
    let m = denied(a.run(&plan, "rewritten"), "program rewritten");
    assert!(m.contains("program changed"), "{m}");

    // An interpreter replaced after the plan (the script is unchanged; the
    // interpreter, a shell under a script runner's name, only runs it).
    let interp = dir.join("python3");
    // Not a byte-for-byte copy (a copy is told by content and refused).
    let mut dash = std::fs::read("/usr/bin/dash").expect("read dash");
    dash.extend_from_slice(b"\0not a copy");
    std::fs::write(&interp, dash).expect("write");
    std::fs::set_permissions(&interp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script(&dir.join("job.sh"), "echo fine");
    let plan = a.prepare(&s(&[interp.to_str().expect("utf-8"), "job.sh"]), &dir);
    script(&interp, &touch);
    let m = denied(a.run(&plan, "interpreter"), "interpreter replaced");
    assert!(m.contains("program changed"), "{m}");

    // One run id runs once, even with a fresh plan.
    let echo = s(&["/usr/bin/echo", "once"]);
    let ran = a
        .run(&a.prepare(&echo, &dir), "once")
        .expect("approved run");
    assert_eq!(ran["stdout"], "once\n");
    let m = denied(a.run(&a.prepare(&echo, &dir), "once"), "run id again");
    assert!(m.contains("ran already"), "{m}");
    // And a plan serves one run.
    let plan = a.prepare(&echo, &dir);
    a.run(&plan, "first").expect("approved run");
    denied(a.run(&plan, "second"), "plan again");
    assert!(
        a.remote.events("exec.denied").len() >= 5,
        "{:?}\n{}",
        a.remote.events("exec.denied"),
        a.node.dump()
    );
}

/// A program planted earlier on the node's `PATH` after the plan was
/// approved never runs: the plan pinned the bare name to the program it
/// found, and that program is what runs, whether the run names the pinned
/// path or the bare name.
#[test]
fn a_program_planted_earlier_on_path_after_the_plan_never_runs() {
    let (_d, dir) = scratch();
    let marker = dir.join("ran");
    let (early, late) = (dir.join("early"), dir.join("late"));
    std::fs::create_dir_all(&early).expect("mkdir");
    std::fs::create_dir_all(&late).expect("mkdir");
    script(&late.join("tool"), "echo planned");
    let path = format!(
        "{}:{}:{}",
        early.display(),
        late.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let a = Approving::with_env("planted", vec![("PATH".into(), path)]);
    let touch = format!("touch {}", marker.display());

    // The run names the pinned path (the plan's binding) or the bare word
    // the operator saw: either runs the planned program or is refused.
    for (k, pinned) in [true, false].into_iter().enumerate() {
        let _ = std::fs::remove_file(early.join("tool"));
        let plan = a.prepare(&s(&["tool"]), &dir);
        script(&early.join("tool"), &touch);
        let argv = if pinned {
            s(&[late.join("tool").to_str().expect("utf-8")])
        } else {
            s(&["tool"])
        };
        let params = run_params(
            &argv,
            json!({"cwd": plan["cwd"], "systemRunPlan": plan, "approved": true,
                   "approvalDecision": "allow-once", "runId": format!("planted-{k}")}),
        );
        match a.remote.call(&a.id(), "system.run", &params) {
            Ok(ran) => assert_eq!(ran["stdout"], "planned\n", "{argv:?}: {ran}"),
            // Refused as not the plan, or as a plan whose program changed.
            Err(e) => assert!(
                e["code"] == "SYSTEM_RUN_DENIED" || e["code"] == "INVALID_REQUEST",
                "{argv:?}: {e}"
            ),
        }
        assert!(!marker.exists(), "{argv:?}: the planted program ran");
    }
    // Without a planted program the approved plan runs.
    std::fs::remove_file(early.join("tool")).expect("rm");
    let plan = a.prepare(&s(&["tool"]), &dir);
    let ran = a.run(&plan, "unplanted").expect("the planned program runs");
    assert_eq!(ran["stdout"], "planned\n", "{ran}");
}

/// A plan the node never made, however well formed, carries no approval:
/// one copied from a real prepare and edited, and one written by hand.
#[test]
fn an_approval_for_a_plan_the_node_never_prepared_is_refused() {
    let (_d, dir) = scratch();
    let marker = dir.join("ran");
    let m = marker.to_str().expect("utf-8");
    let a = Approving::new("foreign");
    let real = a.prepare(&s(&["/usr/bin/touch", m]), &dir);
    let mut edited = real.clone();
    edited["sessionKey"] = "another".into();
    let mut by_hand = real.clone();
    by_hand["policySnapshot"]["security"] = "full".into();
    for (what, plan) in [("edited", edited), ("by hand", by_hand)] {
        let params = run_params(
            &s(&["/usr/bin/touch", m]),
            json!({"cwd": plan["cwd"], "systemRunPlan": plan, "approved": true,
                   "sessionKey": plan["sessionKey"], "runId": format!("foreign-{what}")}),
        );
        let e = a
            .remote
            .call(&a.id(), "system.run", &params)
            .expect_err(what);
        assert_eq!(e["code"], "SYSTEM_RUN_DENIED", "{what}: {e}");
        assert!(!marker.exists(), "{what}: ran");
    }
    assert!(!a.remote.events("exec.denied").is_empty());
}

/// Under `deny` (the default) prepare reads nothing: a file behind a link,
/// a missing file and a directory get the same answer, with no hash.
#[test]
fn prepare_under_deny_tells_nothing_about_the_nodes_files() {
    let (_d, dir) = scratch();
    let secret = dir.join("pin");
    std::fs::write(&secret, "1234").expect("write");
    std::os::unix::fs::symlink(&secret, dir.join("link")).expect("link");
    std::fs::create_dir_all(dir.join("adir")).expect("mkdir");
    let (_node, remote) = connected("oracle");
    let mut answers = Vec::new();
    for (k, operand) in ["link", "missing", "adir"].iter().enumerate() {
        let params = run_params(&s(&["/bin/sh", operand]), json!({"cwd": dir}));
        let mut a = remote
            .call(&format!("p-{k}"), "system.run.prepare", &params)
            .expect("prepare answers under deny");
        assert!(a["plan"].get("mutableFileOperand").is_none(), "{a}");
        assert_eq!(a["execPolicy"]["security"], "deny", "{a}");
        for key in ["argv", "commandText"] {
            a["plan"][key] = Value::Null;
        }
        answers.push(a);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:#?}");
}

// ---- no process outlives its run or the node ------------------------------

/// Whether `pid` is a live (non-zombie) process.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(!stat[stat.rfind(')')? + 2..].starts_with('Z')))
        .unwrap_or(false)
}

/// Waits (≤ 3 s) until none of `pids` is alive.
fn assert_all_gone(pids: &[u32], what: &str) {
    let until = Instant::now() + Duration::from_secs(3);
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < until,
            "{what}: survived: {:?}",
            pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A command that starts daemons three ways (`setsid -f`, a double fork,
/// `setsid` in a background job), writes their pids to `pids`, then `tail`.
fn escaping(pids: &Path, tail: &str) -> Vec<String> {
    let p = pids.display();
    s(&[
        "/bin/sh",
        "-c",
        &format!(
            "setsid -f sh -c 'echo $$ >> {p}; exec sleep 600'; \
             ( (sleep 600 & echo $! >> {p}) & ); \
             setsid sh -c 'echo $$ >> {p}; exec sleep 600' & \
             sleep 0.3; {tail}"
        ),
    ])
}

fn read_pids(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Waits (≤ 5 s) until `path` lists three pids.
fn three_pids(path: &Path) -> Vec<u32> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = read_pids(path);
        if pids.len() >= 3 || Instant::now() > until {
            return pids;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn no_daemon_outlives_its_run_and_the_node_keeps_no_descriptor_for_them() {
    let (_d, dir) = scratch();
    let (node, remote) = connected("daemons");
    node.set_approvals(&["--security", "full"]);
    let before = node.fd_count();
    for (k, (tail, extra)) in [
        ("exit 0", json!({})),
        ("exit 3", json!({})),
        ("sleep 600", json!({"timeoutMs": 1_000})),
    ]
    .into_iter()
    .enumerate()
    {
        let pids = dir.join(format!("pids-{k}"));
        remote
            .call(
                &format!("d-{k}"),
                "system.run",
                &run_params(&escaping(&pids, tail), extra),
            )
            .unwrap_or_else(|e| panic!("{tail}: {e}"));
        let daemons = read_pids(&pids);
        assert_eq!(daemons.len(), 3, "{tail}: {daemons:?}");
        assert_all_gone(&daemons, tail);
    }
    // Cancelled while running.
    let pids = dir.join("pids-cancel");
    remote.invoke(
        "d-cancel",
        "system.run",
        &run_params(&escaping(&pids, "sleep 600"), json!({})),
    );
    let daemons = three_pids(&pids);
    assert_eq!(daemons.len(), 3, "{daemons:?}");
    remote.cancel("d-cancel");
    assert_all_gone(&daemons, "cancel");
    std::thread::sleep(Duration::from_millis(300));
    let after = node.fd_count();
    eprintln!("MEASURE hostile_exec daemons fds_before={before} fds_after={after}");
    assert!(after <= before + 2, "descriptors held: {before} -> {after}");
}

/// The node stopped while commands run, by SIGTERM, a double SIGINT or
/// SIGKILL: nothing of theirs is left. On SIGKILL each run's reaper, told
/// by the kernel that its parent died, kills its tree.
#[test]
fn no_daemon_outlives_the_node() {
    for how in ["SIGTERM", "double SIGINT", "SIGKILL"] {
        let (_d, dir) = scratch();
        let (node, remote) = connected("node-stop");
        node.set_approvals(&["--security", "full"]);
        let pids = dir.join("pids");
        remote.invoke(
            "long",
            "system.run",
            &run_params(&escaping(&pids, "sleep 600"), json!({})),
        );
        let daemons = three_pids(&pids);
        assert_eq!(daemons.len(), 3, "{how}: {daemons:?}");
        let pid = node.pid() as i32;
        // SAFETY: signals to the node this test started.
        unsafe {
            match how {
                "SIGTERM" => {
                    libc::kill(pid, libc::SIGTERM);
                }
                "double SIGINT" => {
                    libc::kill(pid, libc::SIGINT);
                    std::thread::sleep(Duration::from_millis(50));
                    libc::kill(pid, libc::SIGINT);
                }
                _ => {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        assert_all_gone(&daemons, how);
        drop(node);
    }
}

// ---- a bounded policy, under the owner's ceiling ---------------------------

/// The approvals document and its hash, as `get` shows them.
fn approvals(remote: &Remote, id: &str) -> (Value, Value) {
    let got = remote
        .call(id, "system.execApprovals.get", &json!({}))
        .expect("get");
    (got["file"].clone(), got["hash"].clone())
}

/// An approvals document of exactly `bytes` (serialized compactly),
/// allowing `/usr/bin/echo` among many other entries.
fn big_document(bytes: usize) -> Value {
    let pad = "x".repeat(90);
    let mut list = vec![json!({"pattern": "/usr/bin/echo"})];
    list.extend((0..bytes / 120).map(|i| json!({"pattern": format!("/opt/{pad}/{i}")})));
    let mut doc = json!({"version": 1, "defaults": {"security": "allowlist"},
                         "agents": {"*": {"allowlist": list}}});
    // One more entry fills what is left to the byte.
    let entry = r#",{"pattern":"/opt/"}"#.len();
    let left = bytes - serde_json::to_string(&doc).expect("json").len() - entry;
    doc["agents"]["*"]["allowlist"]
        .as_array_mut()
        .expect("list")
        .push(json!({"pattern": format!("/opt/{}", "y".repeat(left))}));
    assert_eq!(serde_json::to_string(&doc).expect("json").len(), bytes);
    doc
}

/// p50 and max of 20 covered `system.run`s of `echo`, in ms.
fn echo_latency(remote: &Remote, tag: &str) -> (f64, f64) {
    let echo = run_params(&s(&["/usr/bin/echo", "hi"]), json!({}));
    let mut ms = Vec::new();
    for k in 0..20 {
        let started = Instant::now();
        let ran = remote
            .call(&format!("{tag}-{k}"), "system.run", &echo)
            .unwrap_or_else(|e| panic!("covered run: {e}"));
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(ran["stdout"], "hi\n");
    }
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[ms.len() - 1])
}

/// A document past the limit is refused before it is parsed (the node's
/// memory stays small); one of exactly the limit (1 MiB) is accepted and
/// kept parsed between runs, so a run costs about what it costs with a
/// small one. The figures are printed side by side, never asserted.
#[test]
fn a_huge_approvals_document_is_refused_and_a_large_one_is_parsed_once() {
    let (node, remote) = connected("big-doc");
    let (_, base) = approvals(&remote, "get-0");
    let huge = json!({"file": big_document(2 << 20), "baseHash": base});
    let e = remote
        .call("set-huge", "system.execApprovals.set", &huge)
        .expect_err("a 2 MB document was accepted");
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("over this command's limit")),
        "{e}"
    );
    let peak_after_huge = clawnode_tests::sys::peak_rss_kib(node.pid()).unwrap_or(0);
    // A small document first, for the side-by-side figures.
    let (_, base) = approvals(&remote, "get-1");
    let small = json!({"file": {"version": 1, "defaults": {"security": "allowlist"},
                                "agents": {"*": {"allowlist": [{"pattern": "/usr/bin/echo"}]}}},
                       "baseHash": base});
    remote
        .call("set-small", "system.execApprovals.set", &small)
        .unwrap_or_else(|e| panic!("a small document: {e}"));
    let (small_p50, small_max) = echo_latency(&remote, "small");
    let small_rss = node.rss_kib();
    // Exactly the limit: accepted.
    let (_, base) = approvals(&remote, "get-2");
    let large = json!({"file": big_document(1 << 20), "baseHash": base});
    remote
        .call("set-large", "system.execApprovals.set", &large)
        .unwrap_or_else(|e| panic!("a 1 MiB document: {e}"));
    let (large_p50, large_max) = echo_latency(&remote, "large");
    let large_rss = node.rss_kib();
    // The same program spawned and waited for by this process, beside it.
    let mut bare: Vec<f64> = (0..20)
        .map(|_| {
            let started = Instant::now();
            let out = std::process::Command::new("/usr/bin/echo")
                .arg("hi")
                .output()
                .expect("spawn echo");
            assert_eq!(out.stdout, b"hi\n");
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    bare.sort_by(f64::total_cmp);
    let bare_p50 = bare[bare.len() / 2];
    eprintln!(
        "MEASURE hostile_exec approvals_document peak_rss_after_2MB_refused_kib={peak_after_huge} \
         small: rss_kib={small_rss} system_run_ms_p50={small_p50:.2} max={small_max:.2} \
         1MiB: rss_kib={large_rss} system_run_ms_p50={large_p50:.2} max={large_max:.2} \
         p50_ratio={:.2} bare_spawn_ms_p50={bare_p50:.2}",
        large_p50 / small_p50
    );
    assert!(
        peak_after_huge < 64 * 1024,
        "peak RSS {peak_after_huge} KiB"
    );
}

/// The owner's `[exec]` table in the config file is a ceiling: a gateway's
/// `set` that would widen it is refused at once, naming the file, and the
/// stored document is unchanged.
#[test]
fn the_owners_config_file_is_a_ceiling_a_gateway_cannot_widen() {
    let (port, remote) = Remote::start();
    let mut opts =
        clawnode_tests::NodeOptions::new(&format!("ws://127.0.0.1:{port}"), "t", "ceiling")
            .config_file();
    opts.extra_toml = "[exec]\nsecurity = \"allowlist\"\nask = \"on-miss\"\n".into();
    let node = Node::spawn(&clawnode_tests::clawnode_bin(), opts);
    node.expect(0, "connected", Duration::from_secs(20));
    let (file, base) = approvals(&remote, "get-0");
    assert_eq!(file["defaults"]["security"], "allowlist", "{file}");
    for (k, (path, value)) in [
        ("/defaults/security", "full"),
        ("/agents/*/security", "full"),
        ("/defaults/ask", "off"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut wider = file.clone();
        let (parent, key) = path.rsplit_once('/').expect("path");
        let mut at = &mut wider;
        for part in parent.split('/').filter(|p| !p.is_empty()) {
            at = &mut at[part];
        }
        at[key] = value.into();
        let e = remote
            .call(
                &format!("set-{k}"),
                "system.execApprovals.set",
                &json!({"file": wider, "baseHash": base}),
            )
            .expect_err(&format!("{path} = {value} was accepted"));
        let message = e["message"].as_str().unwrap_or_default();
        let config = node.config_path().display().to_string();
        assert!(message.contains(&config), "names the file: {message}");
    }
    let (_, after) = approvals(&remote, "get-1");
    assert_eq!(after, base, "the document did not change");
    // Narrower is fine.
    let mut narrower = file.clone();
    narrower["defaults"]["ask"] = "always".into();
    remote
        .call(
            "set-ok",
            "system.execApprovals.set",
            &json!({"file": narrower, "baseHash": base}),
        )
        .unwrap_or_else(|e| panic!("a narrower set: {e}"));
}

// ---- a cheap command is never starved by long ones --------------------------

/// Sixteen long runs fill the run slots: a seventeenth run is answered
/// busy at once, and `system.which` still answers.
#[test]
fn sixteen_long_runs_leave_other_commands_their_slots() {
    let (node, remote) = connected("slots");
    node.set_approvals(&["--security", "full"]);
    let long = run_params(&s(&["/bin/sleep", "600"]), json!({"timeoutMs": 4_000}));
    for k in 0..16 {
        remote.invoke(&format!("long-{k}"), "system.run", &long);
    }
    std::thread::sleep(Duration::from_millis(500));
    let e = remote
        .call("long-16", "system.run", &long)
        .expect_err("a 17th run started");
    assert_eq!(e["code"], "UNAVAILABLE", "{e}");
    let started = Instant::now();
    let found = remote
        .call("which", "system.which", &json!({"bins": ["sh"]}))
        .unwrap_or_else(|e| panic!("system.which while 16 runs run: {e}"));
    let ms = started.elapsed().as_millis();
    eprintln!("MEASURE hostile_exec which_during_16_runs_ms={ms}");
    assert!(found["bins"]["sh"].is_string(), "{found}");
    for k in 0..16 {
        let r = remote.result(&format!("long-{k}"), 30).expect("answered");
        assert_eq!(r["ok"], true, "{r}");
    }
}

// ---- found by an independent attack on the first version --------------------

/// Under `ask: off` the owner is never asked, so no approval counts: a
/// gateway that prepares a plan and approves it itself runs nothing the
/// allowlist does not cover, and prepare reads no script for it.
#[test]
fn under_ask_off_no_approval_lifts_an_allowlist_miss() {
    let (_d, dir) = scratch();
    let marker = dir.join("ran");
    let m = marker.to_str().expect("utf-8");
    std::fs::write(dir.join("secret.py"), "1234\n").expect("write");
    let (node, remote) = connected("ask-off");
    node.set_approvals(&["--security", "allowlist"]);
    node.approvals(&["allow", "/usr/bin/echo"]);
    let argv = s(&["/usr/bin/touch", m]);
    let plan = remote
        .call(
            "p",
            "system.run.prepare",
            &run_params(&argv, json!({"cwd": dir})),
        )
        .expect("prepare")["plan"]
        .clone();
    for (k, approval) in [
        json!({"approved": true, "approvalDecision": "allow-once"}),
        json!({"approvalSource": "auto-review"}),
        json!({"approvalSource": "ask-fallback"}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut extra =
            json!({"cwd": plan["cwd"], "systemRunPlan": plan, "runId": format!("r{k}")});
        if let (Value::Object(e), Value::Object(a)) = (&mut extra, approval) {
            e.extend(a);
        }
        let e = remote
            .call(&format!("run-{k}"), "system.run", &run_params(&argv, extra))
            .expect_err("a self-approved run ran");
        assert_eq!(e["code"], "SYSTEM_RUN_DENIED", "{e}");
        assert!(!marker.exists(), "ran");
    }
    let script = run_params(&s(&["python3", "secret.py"]), json!({"cwd": dir}));
    let prepared = remote
        .call("p2", "system.run.prepare", &script)
        .expect("prepare");
    assert!(
        prepared["plan"].get("mutableFileOperand").is_none(),
        "prepare read a script no approval can run: {prepared}"
    );
}

/// Odd words where a shell option would be are refused, not a panic that
/// leaves the invoke unanswered; the session still answers.
#[test]
fn odd_shell_options_are_answered() {
    let (node, remote) = connected("odd-options");
    node.set_approvals(&["--security", "allowlist"]);
    node.approvals(&["allow", "/usr/bin/id"]);
    for (k, word) in ["", "é", "-é", "+", "-"].iter().enumerate() {
        let argv = s(&["sh", word, "-c", "id"]);
        let e = remote
            .call(
                &format!("odd-{k}"),
                "system.run",
                &run_params(&argv, json!({})),
            )
            .expect_err("ran");
        assert_eq!(e["code"], "SYSTEM_RUN_DENIED", "{word:?}: {e}");
    }
    remote
        .call("which", "system.which", &json!({"bins": ["sh"]}))
        .expect("the session answers");
}

/// prepare never opens a FIFO or a device as a script (an open could block
/// a thread for good, or act).
#[test]
fn prepare_never_opens_a_fifo_or_a_device() {
    let (_d, dir) = scratch();
    let fifo = dir.join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let (node, remote) = connected("fifo");
    node.set_approvals(&["--security", "allowlist", "--ask", "on-miss"]);
    for (k, operand) in [fifo.to_str().expect("utf-8"), "/dev/zero"]
        .iter()
        .enumerate()
    {
        let params = run_params(&s(&["python3", operand]), json!({"cwd": dir}));
        remote.invoke(&format!("f-{k}"), "system.run.prepare", &params);
        let r = remote
            .result(&format!("f-{k}"), 5)
            .unwrap_or_else(|| panic!("prepare of {operand} hung"));
        assert_eq!(r["ok"], false, "{r}");
    }
}

/// Under `deny`, a run is refused before its working directory is looked
/// at: an existing and a missing directory get the same refusal.
#[test]
fn a_run_under_deny_tells_nothing_about_directories() {
    let (_node, remote) = connected("deny-cwd");
    let mut refusals = Vec::new();
    for (k, cwd) in ["/tmp", "/nonexistent/dir"].iter().enumerate() {
        let params = run_params(&s(&["/usr/bin/id"]), json!({"cwd": cwd}));
        let e = remote
            .call(&format!("d-{k}"), "system.run", &params)
            .expect_err("ran under deny");
        refusals.push(e);
    }
    assert_eq!(refusals[0], refusals[1], "{refusals:?}");
}

/// A command that kills or stops its own reaper: what it started still
/// dies with the run (the node adopts it and kills it).
#[test]
fn a_command_that_kills_or_stops_its_reaper_leaves_nothing() {
    let (_d, dir) = scratch();
    let (node, remote) = connected("reaper-killer");
    node.set_approvals(&["--security", "full"]);
    for (k, (how, extra)) in [
        ("kill -9 $PPID", json!({})),
        ("kill -STOP $PPID", json!({"timeoutMs": 1_500})),
    ]
    .into_iter()
    .enumerate()
    {
        let pids = dir.join(format!("pids-{k}"));
        let argv = escaping(&pids, &format!("{how}; sleep 600"));
        remote.invoke(&format!("k-{k}"), "system.run", &run_params(&argv, extra));
        let r = remote
            .result(&format!("k-{k}"), 20)
            .unwrap_or_else(|| panic!("{how}: no answer\n{}", node.dump()));
        let daemons = read_pids(&pids);
        assert_eq!(daemons.len(), 3, "{how}: {daemons:?} {r}");
        assert_all_gone(&daemons, how);
    }
}
