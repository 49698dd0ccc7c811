//! The allowlist decision of clawnode against the official evaluator
//! (docs/exec-host.md §11.1): over generated argv and shell texts
//! (wrappers, shell shapes, quoting, paths, symlinks, names on `PATH`),
//! clawnode never allows a command the official node host's `system.run`
//! (security `allowlist`, ask `off`, no safe bins) refuses. It may refuse
//! more.
//!
//! The official side is `tests/fixtures/official-exec-eval.mjs`, run once
//! with every case on the Node 24 of the installed gateway; it executes
//! nothing. Cases come from a seeded generator: `CLAWNODE_DIFF_CASES` sets
//! how many (1,500 by default, the CI budget), `CLAWNODE_DIFF_SEED` the
//! seed.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clawnode_host::exec::allowlist::{Context, judge};
use clawnode_host::exec::approvals::AllowEntry;
use clawnode_tests::{repo_root, require_install};
use serde_json::{Value, json};

/// A small seeded generator (xorshift64*): the same seed, the same cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

/// The fixture: fake programs named like shells, wrappers and `echo`, a
/// link to `echo` and one to the real shell, a script.
fn fixture(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let copy = |from: &str, to: &Path| {
        std::fs::copy(from, to).expect("copy");
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    };
    copy("/usr/bin/id", &bin.join("sh"));
    copy("/usr/bin/id", &bin.join("echo"));
    copy("/usr/bin/true", &dir.join("env"));
    std::os::unix::fs::symlink("/usr/bin/echo", dir.join("alias")).expect("link");
    std::os::unix::fs::symlink("/usr/bin/dash", dir.join("dashlink")).expect("link");
    std::fs::write(dir.join("tool"), "#!/bin/sh\necho tool\n").expect("write");
    std::fs::set_permissions(dir.join("tool"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
}

const PROGRAMS: &[&str] = &[
    "echo",
    "/usr/bin/echo",
    "uname",
    "id",
    "touch",
    "cat",
    "python3",
    "./tool",
    "FIX/tool",
    "FIX/alias",
    "./alias",
    "FIX/env",
    "./bin/echo",
];
const SHELLS: &[&str] = &[
    "/bin/sh",
    "sh",
    "bash",
    "dash",
    "/usr/bin/dash",
    "/usr/bin/bash",
    "./bin/sh",
    "FIX/bin/sh",
    "FIX/dashlink",
    "./dashlink",
];
const WRAPPERS: &[&str] = &[
    "env",
    "/usr/bin/env",
    "nice",
    "nohup",
    "timeout",
    "stdbuf",
    "setsid",
    "xargs",
    "find",
    "chrt",
    "ionice",
    "taskset",
    "flock",
    "strace",
    "script",
    "watch",
];
const WRAPPER_ARGS: &[&str] = &[
    "", "-n 5", "5", "-o0", "-i", "-u HOME", "--", "/tmp", "-exec",
];
const ARGS: &[&str] = &["hi", "-a", "/tmp/x", "a b", "$HOME", "-c", "--", "'q'", "*"];
const SHELL_OPTIONS: &[&str] = &[
    "",
    "",
    "",
    "-e",
    "+e",
    "-x",
    "-o errexit",
    "-o pipefail",
    "--norc",
    "--noprofile",
    "-i",
    "-s",
    "-k",
    "-l",
    "--login",
    "--rcfile /tmp/rc",
    "-u",
    "--",
];
const FLAGS: &[&str] = &["-c", "-c", "-lc", "-ec", "-xc", "-lec", "-cl", "-ce"];
const TEXT_COMMANDS: &[&str] = &[
    "echo hi",
    "id",
    "uname -a",
    "touch /tmp/x",
    "env echo hi",
    "sh -c 'echo hi'",
    "echo $HOME",
    "echo 'a b'",
    "FOO=1 echo hi",
    "/usr/bin/echo hi",
    "./tool",
    "nice echo hi",
    "exec echo hi",
    "command echo hi",
    "echo hi > /tmp/f",
    "cd /tmp",
    "true",
    "cat /etc/hostname",
    "bash -c 'id'",
    "./alias hi",
    "timeout 5 echo hi",
    "echo \"x y\"",
    "xargs echo",
    "find .",
    "dash -c 'echo hi'",
    "./bin/sh -c 'echo hi'",
    "echo ~",
    "echo *",
];
const SEPARATORS: &[&str] = &[" && ", " || ", "; ", " | ", " & ", "\n", " ;"];
const TRAILING: &[&str] = &["", "", "sh", "sh x"];
const PATTERNS: &[&str] = &[
    "/usr/bin/echo",
    "echo",
    "/usr/bin/*",
    "/usr/bin/dash",
    "sh",
    "/bin/sh",
    "/usr/bin/bash",
    "bash",
    "dash",
    "/usr/bin/env",
    "env",
    "/usr/bin/nice",
    "/usr/bin/timeout",
    "/usr/bin/xargs",
    "/usr/bin/find",
    "/usr/bin/touch",
    "/usr/bin/id",
    "id",
    "FIX/*",
    "FIX/bin/*",
    "FIX/alias",
    "**",
    "/usr/bin/uname",
    "uname",
    "/usr/bin/cat",
    "FIX/tool",
    "/usr/**",
    "FIX/dashlink",
];

fn words(rng: &mut Rng, from: &[&str], fix: &str) -> Vec<String> {
    rng.pick(from)
        .split_whitespace()
        .map(|w| w.replace("FIX", fix))
        .collect()
}

/// One generated case: argv, `PATH` and allowlist.
fn case(rng: &mut Rng, fix: &str) -> (Vec<String>, String, Vec<String>) {
    let system = "/usr/local/bin:/usr/bin:/bin".to_owned();
    let path = if rng.below(4) == 0 {
        format!("{fix}/bin:{system}")
    } else {
        system
    };
    let mut argv = Vec::new();
    match rng.below(3) {
        0 => {
            argv.extend(words(rng, PROGRAMS, fix));
            for _ in 0..rng.below(3) {
                argv.push(rng.pick(ARGS).to_owned());
            }
        }
        1 => {
            argv.extend(words(rng, SHELLS, fix));
            argv.extend(words(rng, SHELL_OPTIONS, fix));
            argv.push(rng.pick(FLAGS).to_owned());
            let mut text = rng.pick(TEXT_COMMANDS).replace("FIX", fix);
            for _ in 0..rng.below(3) {
                text.push_str(rng.pick(SEPARATORS));
                text.push_str(&rng.pick(TEXT_COMMANDS).replace("FIX", fix));
            }
            argv.push(text);
            argv.extend(words(rng, TRAILING, fix));
        }
        _ => {
            argv.extend(words(rng, WRAPPERS, fix));
            argv.extend(words(rng, WRAPPER_ARGS, fix));
            if rng.below(3) == 0 {
                argv.extend(words(rng, SHELLS, fix));
                argv.push("-c".into());
                argv.push(rng.pick(TEXT_COMMANDS).replace("FIX", fix));
            } else {
                argv.extend(words(rng, PROGRAMS, fix));
                argv.push(rng.pick(ARGS).to_owned());
            }
        }
    }
    let allowlist = (0..1 + rng.below(4))
        .map(|_| rng.pick(PATTERNS).replace("FIX", fix))
        .collect();
    (argv, path, allowlist)
}

#[test]
fn clawnode_never_allows_what_the_official_evaluator_refuses() {
    let Some((install, _)) = require_install("differential_exec") else {
        return;
    };
    let n: usize = std::env::var("CLAWNODE_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let seed: u64 = std::env::var("CLAWNODE_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_c1a0);
    let scratch = std::env::temp_dir().join(format!("clawnode-diff-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("mkdir");
    let fix: PathBuf = std::fs::canonicalize(&scratch).expect("canonical");
    fixture(&fix);
    let fix_s = fix.to_str().expect("utf-8").to_owned();
    let home = std::env::var_os("HOME").map(PathBuf::from);

    let mut rng = Rng(seed | 1);
    let cases: Vec<_> = (0..n).map(|_| case(&mut rng, &fix_s)).collect();
    let ours: Vec<bool> = cases
        .iter()
        .map(|(argv, path, allow)| {
            let entries: Vec<AllowEntry> = allow
                .iter()
                .map(|p| AllowEntry {
                    pattern: p.clone(),
                    ..AllowEntry::default()
                })
                .collect();
            let ctx = Context {
                cwd: &fix,
                path: path.as_ref(),
                home: home.as_deref(),
            };
            judge(&entries, argv, &ctx).is_ok()
        })
        .collect();

    let input: Vec<Value> = cases
        .iter()
        .map(|(argv, path, allow)| json!({"argv": argv, "cwd": fix_s, "path": path, "allowlist": allow}))
        .collect();
    let script = repo_root().join("tests/fixtures/official-exec-eval.mjs");
    let mut child = Command::new(&install.node)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node");
    let mut stdin = child.stdin.take().expect("stdin");
    let text = serde_json::to_vec(&input).expect("json");
    let writer = std::thread::spawn(move || stdin.write_all(&text));
    let out = child.wait_with_output().expect("the evaluator ran");
    let written = writer.join().expect("writer");
    assert!(
        out.status.success() && written.is_ok(),
        "the official evaluator failed ({written:?}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: Vec<Value> = serde_json::from_slice(&out.stdout).expect("verdicts");
    assert_eq!(verdicts.len(), n);
    let _ = std::fs::remove_dir_all(&scratch);

    let (mut both, mut only_theirs, mut neither) = (0, 0, 0);
    let mut looser = Vec::new();
    for (i, verdict) in verdicts.iter().enumerate() {
        match (ours[i], verdict["allowed"] == true) {
            (true, true) => both += 1,
            (true, false) => looser.push(format!(
                "{:?} PATH={} allow={:?}: official {}",
                cases[i].0, cases[i].1, cases[i].2, verdict["detail"]
            )),
            (false, true) => only_theirs += 1,
            (false, false) => neither += 1,
        }
    }
    eprintln!(
        "MEASURE differential_exec cases={n} seed={seed} both_allow={both} only_official_allows={only_theirs} \
         both_refuse={neither} only_clawnode_allows={}",
        looser.len()
    );
    assert!(
        looser.is_empty(),
        "clawnode allows what the official evaluator refuses ({} cases):\n{}",
        looser.len(),
        looser
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        both > 0,
        "no case was allowed by both: the generator proves nothing"
    );
}
