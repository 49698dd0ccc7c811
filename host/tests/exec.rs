//! Bounded runs (`clawnode_host::exec`): output capped, time bounded, the
//! whole process tree gone afterwards, and the environment filtered.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clawnode_host::exec::run::{DRAIN, KILL_GRACE, TIMEOUT_EXIT, TRUNCATED};
use clawnode_host::exec::{Cancel, OUTPUT_CAP, RunSpec, child_env, run};

fn sh(script: &str) -> RunSpec {
    RunSpec {
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: child_env(std::env::vars(), &BTreeMap::new(), false).unwrap(),
        ..RunSpec::default()
    }
}

/// Live (non-zombie) processes in process group `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name in parentheses: state ppid pgrp ...
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        if fields[0] != "Z" && fields[2] == pgid.to_string() {
            found.push(pid);
        }
    }
    found
}

/// Waits (≤ 2 s) for the group to be empty.
fn assert_group_gone(pgid: u32) {
    let until = Instant::now() + Duration::from_secs(2);
    while !group_members(pgid).is_empty() {
        assert!(
            Instant::now() < until,
            "processes of group {pgid} survived the run: {:?}",
            group_members(pgid)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pid the script printed first (`echo $$`): its process group.
fn first_line_pid(stdout: &str) -> u32 {
    stdout.lines().next().unwrap().trim().parse().unwrap()
}

#[test]
fn echo_round_trip() {
    let out = run(&sh("echo hi; echo oops >&2"), &Cancel::new());
    assert_eq!(
        out.payload(),
        serde_json::json!({"exitCode": 0, "timedOut": false, "success": true,
            "stdout": "hi\n", "stderr": "oops\n", "error": null, "truncated": false})
    );
}

#[test]
fn a_non_zero_exit_is_reported_not_an_error() {
    let out = run(&sh("exit 3"), &Cancel::new());
    assert_eq!(out.exit_code, Some(3));
    assert!(!out.success());
    assert_eq!(out.error, None);
}

#[test]
fn ten_megabytes_of_output_keep_the_cap_and_the_run_completes() {
    let out = run(
        &sh("head -c 10000000 /dev/zero | tr '\\0' a; echo done >&2"),
        &Cancel::new(),
    );
    assert_eq!(out.exit_code, Some(0), "not killed at the cap");
    assert_eq!(out.stdout.len() + out.stderr.len(), OUTPUT_CAP);
    assert_eq!(out.dropped_bytes, 10_000_005 - OUTPUT_CAP as u64);
    let p = out.payload();
    let marked = [p["stdout"].as_str().unwrap(), p["stderr"].as_str().unwrap()];
    assert_eq!(
        marked.iter().filter(|s| s.ends_with(TRUNCATED)).count(),
        1,
        "one stream carries the marker"
    );
}

#[test]
fn the_timeout_kills_the_whole_tree() {
    let spec = RunSpec {
        timeout: Some(Duration::from_millis(500)),
        ..sh("echo $$; sleep 600 & (sleep 600 &); sleep 600")
    };
    let started = Instant::now();
    let out = run(&spec, &Cancel::new());
    let took = started.elapsed();
    assert!(out.timed_out && !out.success(), "{out:?}");
    assert_eq!(out.exit_code, Some(TIMEOUT_EXIT));
    assert!(
        took < Duration::from_millis(500) + KILL_GRACE * 3,
        "{took:?}"
    );
    assert_group_gone(first_line_pid(&out.stdout));
}

#[test]
fn a_command_that_exits_leaves_no_descendant_behind() {
    let started = Instant::now();
    let out = run(&sh("echo $$; sleep 600 & exit 0"), &Cancel::new());
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    assert!(started.elapsed() < DRAIN * 3, "{:?}", started.elapsed());
    assert_group_gone(first_line_pid(&out.stdout));
}

#[test]
fn cancel_stops_the_run_and_its_tree() {
    let cancel = Cancel::new();
    let c = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        c.cancel();
    });
    let started = Instant::now();
    let out = run(&sh("echo $$; sleep 600 & sleep 600"), &cancel);
    assert!(out.cancelled && !out.timed_out && !out.success(), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_group_gone(first_line_pid(&out.stdout));
    // Cancelled before it starts: it stops at once.
    let early = Cancel::new();
    early.cancel();
    let out = run(&sh("sleep 600"), &early);
    assert!(out.cancelled, "{out:?}");
}

#[test]
fn the_child_sees_only_the_filtered_environment() {
    let inherited = [
        ("PATH", "/usr/bin:/bin"),
        ("LD_PRELOAD", "/nonexistent/evil.so"),
        ("BASH_ENV", "/nonexistent/rc"),
        ("KEEP_ME", "yes"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let env = child_env(inherited, &BTreeMap::new(), false).unwrap();
    let out = run(
        &RunSpec {
            env,
            ..sh("env | sort")
        },
        &Cancel::new(),
    );
    assert!(out.stdout.contains("KEEP_ME=yes\n"), "{}", out.stdout);
    assert!(out.stdout.contains("OPENCLAW_CLI=1\n"), "{}", out.stdout);
    assert!(!out.stdout.contains("LD_PRELOAD"), "{}", out.stdout);
    assert!(!out.stdout.contains("BASH_ENV"), "{}", out.stdout);
    // Requested as overrides, they refuse the run before anything starts.
    let requested: BTreeMap<String, String> = [("LD_PRELOAD", "/x.so"), ("BASH_ENV", "/rc")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
    let err = child_env(std::env::vars(), &requested, false).unwrap_err();
    assert_eq!(err.blocked, ["BASH_ENV", "LD_PRELOAD"]);
}

#[test]
fn what_cannot_start_says_why() {
    let out = run(
        &RunSpec {
            argv: vec!["/nonexistent/prog".into()],
            ..RunSpec::default()
        },
        &Cancel::new(),
    );
    assert!(
        out.error
            .as_deref()
            .is_some_and(|e| e.starts_with("spawn /nonexistent/prog")),
        "{out:?}"
    );
    assert!(out.payload().get("exitCode").is_none());
    let out = run(
        &RunSpec {
            cwd: Some("/nonexistent/dir".into()),
            ..sh("true")
        },
        &Cancel::new(),
    );
    assert!(
        out.error
            .as_deref()
            .is_some_and(|e| e.contains("/nonexistent/dir")),
        "{out:?}"
    );
    let out = run(&RunSpec::default(), &Cancel::new());
    assert_eq!(out.error.as_deref(), Some("command required"));
}

#[test]
fn the_group_check_sees_a_live_group() {
    use std::os::unix::process::CommandExt as _;
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", "sleep 30 & sleep 30"])
        .process_group(0)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let members = group_members(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(members.len() >= 2, "{members:?}");
    for pid in members {
        let _ = std::process::Command::new("kill")
            .arg(pid.to_string())
            .status();
    }
}

// ---- properties of the policy and the environment filter ---------------------

mod properties {
    use std::collections::BTreeMap;

    use clawnode_host::exec::approvals::{Approval, Ask, Denied, Resolved, Security, decide};
    use clawnode_host::exec::child_env;
    use clawnode_host::exec::env::{BLOCKED_EVERYWHERE, BLOCKED_OVERRIDE_ONLY, inherit_allowed};
    use proptest::prelude::*;

    fn security() -> impl Strategy<Value = Security> {
        prop_oneof![
            Just(Security::Deny),
            Just(Security::Allowlist),
            Just(Security::Full)
        ]
    }

    fn ask() -> impl Strategy<Value = Ask> {
        prop_oneof![Just(Ask::Off), Just(Ask::OnMiss), Just(Ask::Always)]
    }

    fn approval() -> impl Strategy<Value = Approval> {
        prop_oneof![
            Just(Approval::None),
            Just(Approval::Approved),
            Just(Approval::AskFallback)
        ]
    }

    /// Keys mixing listed ones (in any case), loader prefixes and others.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(BLOCKED_EVERYWHERE),
            prop::sample::select(BLOCKED_OVERRIDE_ONLY),
            Just("LD_PRELOAD"),
            Just("DYLD_INSERT_LIBRARIES"),
            Just("BASH_FUNC_x%%"),
            Just("TERM"),
            Just("LANG"),
            Just("FOO"),
        ]
        .prop_flat_map(|k| {
            (Just(k), any::<bool>()).prop_map(|(k, lower)| {
                if lower {
                    k.to_ascii_lowercase()
                } else {
                    k.to_owned()
                }
            })
        })
        .boxed()
        .prop_union("[A-Za-z_][A-Za-z0-9_]{0,12}".boxed())
        .or("[ -~]{0,6}".boxed())
    }

    proptest! {
        #[test]
        fn deny_denies_and_an_approval_never_takes_a_permission_away(
            security in security(), ask in ask(), fallback in security(),
            approval in approval(), covered in any::<bool>(),
        ) {
            let p = Resolved { security, ask, ask_fallback: fallback, auto_allow_skills: false, allowlist: Vec::new().into() };
            let got = decide(&p, approval, covered);
            if security == Security::Deny {
                prop_assert_eq!(got.clone(), Err(Denied::Disabled));
            }
            if decide(&p, Approval::None, covered).is_ok() {
                prop_assert!(decide(&p, Approval::Approved, covered).is_ok());
            }
            // Without an approval, an uncovered command runs only under full.
            if got.is_ok() && approval == Approval::None && !covered {
                prop_assert_eq!(security, Security::Full);
            }
            // The fallback never allows beyond the lesser of the two.
            if got.is_ok() && approval == Approval::AskFallback {
                let cap = security.min(fallback);
                prop_assert!(cap == Security::Full || (cap == Security::Allowlist && covered));
            }
            // What is allowed outright runs; an `always` never does unasked.
            if approval == Approval::None {
                if security == Security::Full && ask == Ask::Off {
                    prop_assert_eq!(got.clone(), Ok(()));
                }
                if security == Security::Allowlist && covered && ask != Ask::Always {
                    prop_assert_eq!(got.clone(), Ok(()));
                }
                if ask == Ask::Always {
                    prop_assert!(got.is_err());
                }
            }
            // An operator's approval runs anything the policy does not deny
            // where the node asks; under `ask: off` it changes nothing
            // (docs/exec-host.md §11.2). Coverage only ever turns a refusal
            // into a run.
            if approval == Approval::Approved && security != Security::Deny && ask != Ask::Off {
                prop_assert_eq!(got.clone(), Ok(()));
            }
            if approval == Approval::Approved && ask == Ask::Off {
                prop_assert_eq!(got.clone(), decide(&p, Approval::None, covered));
            }
            if got.is_ok() {
                prop_assert!(decide(&p, approval, true).is_ok());
            }
        }

        #[test]
        fn no_blocked_key_ever_reaches_a_child(
            inherited in prop::collection::vec((key(), "[ -~]{0,8}"), 0..12),
            requested in prop::collection::btree_map(key(), "[ -~]{0,8}", 0..6),
            shell in any::<bool>(),
        ) {
            let dangerous = |k: &str| {
                let u = k.to_ascii_uppercase();
                u.starts_with("LD_") || u.starts_with("DYLD_") || u.starts_with("BASH_FUNC_")
                    || BLOCKED_EVERYWHERE.iter().any(|b| b.eq_ignore_ascii_case(k))
            };
            match child_env(inherited.clone(), &requested, shell) {
                Ok(env) => {
                    for k in env.keys() {
                        prop_assert!(!dangerous(k), "{} reached the child", k);
                    }
                    prop_assert_eq!(env.get("OPENCLAW_CLI").map(String::as_str), Some("1"));
                    prop_assert!(env.get("PATH").is_some_and(|p| !p.is_empty()));
                    for k in requested.keys() {
                        prop_assert!(!dangerous(k) && !k.eq_ignore_ascii_case("PATH"));
                    }
                    for (k, _) in &inherited {
                        if !inherit_allowed(k) {
                            prop_assert!(!env.contains_key(k) || requested.contains_key(k));
                        }
                    }
                }
                Err(rejected) => {
                    let named: BTreeMap<_, _> = rejected.blocked.iter().chain(&rejected.invalid).map(|k| (k.clone(), ())).collect();
                    prop_assert!(!named.is_empty());
                    let text = rejected.to_string();
                    for k in named.keys() {
                        prop_assert!(requested.contains_key(k));
                        prop_assert!(text.contains(k.as_str()), "{} not named in {}", k, text);
                    }
                    // Every loader or shell-startup key asked for is named.
                    for k in requested.keys().filter(|k| dangerous(k)) {
                        prop_assert!(named.contains_key(k), "{} not named", k);
                    }
                }
            }
        }
    }
}

// ---- no descendant outlives its run, whatever it does to escape ----------

/// Whether `pid` is a live (non-zombie) process.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = &stat[stat.rfind(')')? + 2..];
            Some(!rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Waits (≤ 2 s) until none of `pids` is alive.
fn assert_all_gone(pids: &[u32]) {
    let until = Instant::now() + Duration::from_secs(2);
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < until,
            "survived the run: {:?}",
            pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A script that starts daemons in three ways (`setsid -f`, a double fork
/// through a subshell, `setsid` in a background job), prints their pids,
/// then ends with `tail`.
fn escaping(tail: &str) -> RunSpec {
    sh(&format!(
        "setsid -f sh -c 'echo $$; exec sleep 600'; \
         ( (sleep 600 & echo $!) & ); \
         setsid sh -c 'echo $$; exec sleep 600' & \
         sleep 0.3; {tail}"
    ))
}

fn pids(stdout: &str) -> Vec<u32> {
    stdout
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn daemons_that_leave_the_group_die_when_the_run_exits() {
    for tail in ["exit 0", "exit 3"] {
        let started = Instant::now();
        let out = run(&escaping(tail), &Cancel::new());
        let daemons = pids(&out.stdout);
        assert_eq!(daemons.len(), 3, "{tail}: {out:?}");
        assert!(
            started.elapsed() < DRAIN * 3,
            "{tail}: {:?}",
            started.elapsed()
        );
        assert_all_gone(&daemons);
    }
}

#[test]
fn daemons_that_leave_the_group_die_at_the_timeout_and_the_cancel() {
    let spec = RunSpec {
        timeout: Some(Duration::from_millis(800)),
        ..escaping("sleep 600")
    };
    let out = run(&spec, &Cancel::new());
    assert!(out.timed_out, "{out:?}");
    assert_all_gone(&pids(&out.stdout));

    let cancel = Cancel::new();
    let c = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(800));
        c.cancel();
    });
    let out = run(&escaping("sleep 600"), &cancel);
    assert!(out.cancelled, "{out:?}");
    let daemons = pids(&out.stdout);
    assert_eq!(daemons.len(), 3, "{out:?}");
    assert_all_gone(&daemons);
}

/// The tap's `Debug` names it without its closure.
#[test]
fn an_output_tap_shows_its_name() {
    let tap = clawnode_host::exec::run::OutputTap(std::sync::Arc::new(|_, _| {}));
    assert_eq!(format!("{tap:?}"), "OutputTap");
}

/// A process that escaped the reaper (its command killed the reaper) and
/// holds the output open does not hold the run's readers: they let go of
/// the pipes soon after the run ends.
#[test]
fn output_held_open_by_an_escaped_process_is_let_go() {
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let before = fds();
    let out = run(
        &sh("sleep 30 & echo $!; kill -9 $PPID; sleep 30"),
        &Cancel::new(),
    );
    let strays = pids(&out.stdout);
    let until = Instant::now() + Duration::from_secs(3);
    while fds() > before && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = fds();
    for pid in &strays {
        // SAFETY: a signal to the process this test started.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    assert_eq!(strays.len(), 1, "{out:?}");
    assert!(
        after <= before,
        "{before} descriptors before, {after} after"
    );
}

/// A cancel handle shows whether it was cancelled.
#[test]
fn a_cancel_shows_its_state() {
    let cancel = Cancel::new();
    assert!(format!("{cancel:?}").contains("cancelled: false"));
    cancel.cancel();
    assert!(format!("{cancel:?}").contains("cancelled: true"));
}

/// Output cut at the cap in the middle of a character keeps only whole
/// characters; output that merely ends in a broken one, uncut, shows it
/// as U+FFFD. The tap is never called with nothing.
#[test]
fn a_cut_ends_on_a_whole_character_and_the_tap_gets_only_bytes() {
    let chunks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = chunks.clone();
    let tap = clawnode_host::exec::run::OutputTap(std::sync::Arc::new(move |_, b: &[u8]| {
        seen.lock().unwrap().push(b.len());
    }));
    let spec = RunSpec {
        tap: Some(tap),
        ..sh(&format!(
            "head -c {} /dev/zero | tr '\\0' a; printf '\\303\\251'; head -c 5000 /dev/zero",
            OUTPUT_CAP - 1
        ))
    };
    let out = run(&spec, &Cancel::new());
    assert!(out.dropped_bytes > 0, "{:?}", out.dropped_bytes);
    assert_eq!(out.stdout.len(), OUTPUT_CAP - 1);
    assert!(out.stdout.bytes().all(|b| b == b'a'));
    let chunks = chunks.lock().unwrap();
    assert!(chunks.iter().all(|n| *n > 0), "an empty chunk: {chunks:?}");
    assert_eq!(chunks.iter().sum::<usize>(), OUTPUT_CAP);

    let out = run(&sh("printf 'a\\303'"), &Cancel::new());
    assert_eq!(out.dropped_bytes, 0);
    assert_eq!(out.stdout, "a\u{fffd}");
}

/// A working directory that is a file is refused as one, before anything
/// starts.
#[test]
fn a_working_directory_that_is_a_file_is_refused() {
    let out = run(
        &RunSpec {
            cwd: Some("/etc/hostname".into()),
            ..sh("echo hi")
        },
        &Cancel::new(),
    );
    let error = out.error.clone().unwrap_or_default();
    assert!(error.contains("working directory"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

/// In a process that adopts orphans (the `clawnode` binary), what a run
/// leaves when its command killed its reaper is adopted and killed when
/// the run ends, and a reaper of another run is left alone. Runs in a
/// process of its own: adopting changes the whole process.
#[test]
fn an_adopting_process_kills_what_a_dead_reaper_left() {
    if std::env::var_os("CLAWNODE_TEST_ADOPTING").is_none() {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "an_adopting_process_kills_what_a_dead_reaper_left",
            ])
            .args(["--nocapture", "--test-threads", "1"])
            .env("CLAWNODE_TEST_ADOPTING", "1")
            .status()
            .unwrap();
        assert!(status.success(), "{status}");
        return;
    }
    clawnode_host::exec::run::adopt_orphans().expect("a child subreaper");
    // Another run, still going, whose reaper must survive the sweep.
    let cancel = Cancel::new();
    let long = {
        let cancel = cancel.clone();
        std::thread::spawn(move || run(&sh("echo $$; sleep 30"), &cancel))
    };
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let out = run(
        &sh("setsid sleep 30 > /dev/null 2>&1 & echo $!; kill -9 $PPID"),
        &Cancel::new(),
    );
    let took = started.elapsed();
    let strays = pids(&out.stdout);
    assert_eq!(strays.len(), 1, "{out:?}");
    assert_all_gone(&strays);
    // Killing and reaping one stray takes milliseconds: the sweep does not
    // wait out its 2 s bound.
    assert!(took < Duration::from_millis(1500), "{took:?}");
    // The other run was not touched: it ends by its cancel.
    std::thread::sleep(Duration::from_millis(200));
    cancel.cancel();
    let other = long.join().unwrap();
    assert!(other.cancelled, "{other:?}");
}

/// What a command wrote just before it exited is all in the answer: the
/// run waits for its readers to reach the end of the output, here slowed
/// by a tap so that most of it is still in the pipe at the exit.
#[test]
fn the_last_output_before_exit_is_never_lost() {
    let slow = clawnode_host::exec::run::OutputTap(std::sync::Arc::new(|_, _: &[u8]| {
        std::thread::sleep(Duration::from_millis(20));
    }));
    let spec = RunSpec {
        tap: Some(slow),
        ..sh("head -c 150000 /dev/zero | tr '\\0' a")
    };
    let out = run(&spec, &Cancel::new());
    assert_eq!(out.stdout.len(), 150_000, "{:?}", out.exit_code);
}

/// A run whose output has ended is answered at once, not after waiting out
/// [`DRAIN`] for readers that are done (the quickest of three runs).
#[test]
fn a_finished_run_does_not_wait_out_the_drain() {
    let quickest = (0..3)
        .map(|_| {
            let started = Instant::now();
            let out = run(&sh("echo hi"), &Cancel::new());
            assert_eq!(out.stdout, "hi\n");
            started.elapsed()
        })
        .min()
        .unwrap();
    assert!(quickest < DRAIN / 2, "{quickest:?}");
}
