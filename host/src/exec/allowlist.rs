//! Whether an allowlist covers a command, and the command that then runs
//! (docs/exec-host.md §3.3, §11.1).
//!
//! Every command the run would start must be covered by an entry. Each
//! program is resolved once ([`resolve`]) and judged by what it is, never
//! by the word that named it:
//! - a plain program by its real path against the entries;
//! - a system shell ([`Kind::Shell`]) only in the form `SHELL [OPTIONS] -c
//!   TEXT [ARG0 ARGS...]` with options from a short known-harmless set; its
//!   own entry covers nothing, each command of TEXT (split at `&&`, `||`,
//!   `;` and `|`) must be covered instead, and none may be a shell;
//! - a dispatch wrapper (`env`, `nice`, `timeout`, `xargs`, `find`, ...) or
//!   a multi-call binary is never covered: it would run what its arguments
//!   name; nor is a shell under another name, or another program under a
//!   shell's name;
//! - a login shell only in the gateway's own form, `sh -lc TEXT`.
//!
//! What runs is exactly what was judged ([`Judged`]): the held program, with
//! `argv[0]` its real path, and for a shell, TEXT rewritten so that every
//! command is named by the real path that was judged (each word quoted), so
//! neither a login profile's `PATH`, a builtin of the same name nor a file
//! swapped meanwhile can stand in for it.
//!
//! Stricter than the official host, on purpose:
//! - shell text is only analysed when it is plain words, quotes and those
//!   separators. Expansions (`$`, backquotes, globs, `~`), escapes,
//!   redirections, subshells, backgrounding, `VAR=value` prefixes, comments
//!   and line breaks leave it uncovered: the run needs `security: full` or
//!   an operator's approval;
//! - a shell running a script or its stdin (no `-c`) is not covered;
//! - entries with an `argPattern` (regular expressions, or the hashed form
//!   `allow-always` approvals write) never match yet.

use std::ffi::OsStr;
use std::path::Path;

use super::approvals::AllowEntry;
use super::resolve::{Kind, Program, kind, resolve};

/// The shells whose `-c TEXT` form the request syntax recognises by name
/// (for `rawCommand` and the command preview only; judging goes by what
/// the program is).
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "ash"];

/// Single-letter shell options that change nothing a judgement relies on.
/// Left out on purpose: `i` and `s` (commands from stdin or rc files),
/// `k` (assignments anywhere become environment), `o`'s names beyond
/// [`SHELL_SET_OPTIONS`], and every long option but [`BASH_LONG_OPTIONS`].
const SHELL_LETTERS: &str = "ceuxvlfnC";
/// The `-o NAME` options accepted.
const SHELL_SET_OPTIONS: &[&str] = &[
    "errexit",
    "nounset",
    "pipefail",
    "xtrace",
    "verbose",
    "noglob",
    "noclobber",
    "posix",
];
/// The long options accepted (bash's).
const BASH_LONG_OPTIONS: &[&str] = &["--norc", "--noprofile", "--posix", "--login"];

/// Where an allowlist is judged: the run's working directory, the `PATH`
/// it resolves names on, and the home directory `~` in patterns means.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The working directory of the run.
    pub cwd: &'a Path,
    /// The `PATH` the child gets.
    pub path: &'a OsStr,
    /// The node's home directory.
    pub home: Option<&'a Path>,
}

/// A command the allowlist covers, and exactly what then runs.
#[derive(Clone, Debug)]
pub struct Judged {
    /// The entry covering each command, in order.
    pub entries: Vec<usize>,
    /// The program to execute, held open since it was judged.
    pub program: Program,
    /// Its argv: `argv[0]` the real path, shell text rewritten (see the
    /// module documentation).
    pub argv: Vec<String>,
    /// Every program the run starts, in order (the shell first, if any).
    pub programs: Vec<Program>,
}

/// Judges `argv`: what covers it and what runs, or why it is not covered.
pub fn judge(entries: &[AllowEntry], argv: &[String], ctx: &Context<'_>) -> Result<Judged, String> {
    walk(Some(entries), argv, ctx)
}

/// Pins `argv` for an operator's approval, which covers it whatever the
/// allowlist says: what runs, as [`judge`] would run it, with every program
/// held. A shell running a script (no `-c`) is pinned as a program: the
/// plan binds the script's bytes apart. Wrappers and multi-call binaries
/// cannot be pinned.
pub fn pin(argv: &[String], ctx: &Context<'_>) -> Result<Judged, String> {
    walk(None, argv, ctx)
}

/// The entry covering each command, or `None` when one is not covered.
pub fn covers(entries: &[AllowEntry], argv: &[String], ctx: &Context<'_>) -> Option<Vec<usize>> {
    judge(entries, argv, ctx).ok().map(|j| j.entries)
}

fn walk(
    entries: Option<&[AllowEntry]>,
    argv: &[String],
    ctx: &Context<'_>,
) -> Result<Judged, String> {
    let mut walk = Walk {
        entries,
        ctx,
        covering: Vec::new(),
        programs: Vec::new(),
    };
    let argv = walk.argv(argv, 0)?;
    let program = walk.programs.first().cloned().ok_or("an empty command")?;
    Ok(Judged {
        entries: walk.covering,
        program,
        argv,
        programs: walk.programs,
    })
}

fn utf8(path: &Path) -> Result<String, String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))
}

/// One judgement in progress: `entries` `None` pins instead of judging.
struct Walk<'a, 'c> {
    entries: Option<&'a [AllowEntry]>,
    ctx: &'a Context<'c>,
    covering: Vec<usize>,
    programs: Vec<Program>,
}

impl Walk<'_, '_> {
    /// The argv that runs for `argv`, every program in it judged.
    fn argv(&mut self, argv: &[String], depth: usize) -> Result<Vec<String>, String> {
        let (word, args) = argv.split_first().ok_or("an empty command")?;
        if depth > 0 && word.contains('/') && !word.starts_with('/') {
            // Inside shell text, as upstream: a command by relative path
            // depends on where the shell is when it gets there.
            return Err(format!(
                "{word}: a relative path in shell text is not judged"
            ));
        }
        let program = resolve(word, self.ctx.cwd, self.ctx.path)?;
        let real = utf8(&program.real)?;
        let kind = kind(&program);
        self.programs.push(program.clone());
        let mut out = Vec::with_capacity(argv.len());
        out.push(real.clone());
        match kind {
            Kind::Shell(_) => {
                let Some((at, login)) = shell_form(args) else {
                    if self.entries.is_none() {
                        // A script: pinned as a program (see `pin`).
                        out.extend_from_slice(args);
                        return Ok(out);
                    }
                    return Err(format!(
                        "{real} is a shell: only `-c TEXT` with options among -{SHELL_LETTERS}, \
                         -o/+o {SHELL_SET_OPTIONS:?} and {BASH_LONG_OPTIONS:?} is judged"
                    ));
                };
                if depth > 0 {
                    // What a nested shell's text does is one quoting level
                    // further from what was judged: not covered.
                    return Err(format!("{word}: a shell inside shell text is not judged"));
                }
                // A login shell reads profile files that may run anything;
                // only the gateway's own form, `sh -lc TEXT`, is judged (as
                // upstream judges it, by that name).
                let gateway_form = Path::new(word).file_name() == Some(OsStr::new("sh"))
                    && args.first().is_some_and(|a| a == "-lc");
                if login && !gateway_form {
                    return Err(format!(
                        "{word}: a login shell is only judged as `sh -lc TEXT`"
                    ));
                }
                let commands = split_shell(&args[at]).ok_or_else(|| {
                    "shell text beyond plain words, quotes, &&, ||, ; and | is not judged"
                        .to_owned()
                })?;
                let mut text = String::new();
                for (words, separator) in commands {
                    let inner = self.argv(&words, depth + 1)?;
                    let quoted: Vec<String> = inner.iter().map(|w| quote(w)).collect();
                    text.push_str(&quoted.join(" "));
                    if let Some(sep) = separator {
                        text.push_str(&format!(" {sep} "));
                    }
                }
                out.extend_from_slice(&args[..at]);
                out.push(text);
                out.extend_from_slice(&args[at + 1..]);
            }
            Kind::Wrapper => {
                return Err(format!(
                    "{real} runs the program its arguments name: a dispatch wrapper is never covered"
                ));
            }
            Kind::MultiCall => {
                return Err(format!("{real} is a multi-call binary: never covered"));
            }
            Kind::LookAlike => {
                return Err(format!(
                    "{word} ({real}) is a shell under another name or another program under a \
                     shell's name: never covered"
                ));
            }
            Kind::Plain => {
                if let Some(entries) = self.entries {
                    let i = entries
                        .iter()
                        .position(|e| entry_matches(e, &program, self.ctx))
                        .ok_or_else(|| format!("{real} matches no allowlist entry"))?;
                    self.covering.push(i);
                }
                out.extend_from_slice(args);
            }
        }
        Ok(out)
    }
}

/// A word in single quotes: the shell reads it back unchanged.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Where TEXT is in a shell's arguments (`[OPTIONS] -c TEXT [ARGS]`), when
/// every option before it is one this host knows to be harmless, and
/// whether the shell is a login shell (`-l`, `--login`).
fn shell_form(args: &[String]) -> Option<(usize, bool)> {
    let mut command = false;
    let mut login = false;
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        if command && !arg.starts_with(['-', '+']) {
            break;
        }
        if arg == "--" {
            i += 1;
            break;
        }
        if arg.starts_with("--") {
            if !BASH_LONG_OPTIONS.contains(&arg.as_str()) {
                return None;
            }
            login |= arg == "--login";
            i += 1;
            continue;
        }
        // An operand (or an empty or non-ASCII word) where an option
        // should be: not a form judged here.
        let (sign, letters) = match (arg.strip_prefix('-'), arg.strip_prefix('+')) {
            (Some(rest), _) => ("-", rest),
            (None, Some(rest)) => ("+", rest),
            (None, None) => return None,
        };
        if letters.is_empty() {
            return None;
        }
        for c in letters.chars() {
            match c {
                'c' if sign == "-" => command = true,
                'l' => login = true,
                'o' => {
                    i += 1;
                    let name = args.get(i)?;
                    if !SHELL_SET_OPTIONS.contains(&name.as_str()) {
                        return None;
                    }
                }
                c if c != 'c' && SHELL_LETTERS.contains(c) => {}
                _ => return None,
            }
        }
        i += 1;
    }
    (command && i < args.len()).then_some((i, login))
}

/// The text of `sh -c TEXT` (any flag cluster holding `c`, e.g. `-lc`), by
/// the shell's name: the request's syntax, for `rawCommand` and previews.
pub(crate) fn shell_text(argv: &[String]) -> Option<&str> {
    let [shell, flags, text] = argv else {
        return None;
    };
    let name = Path::new(shell).file_name()?.to_str()?;
    let cluster = flags.strip_prefix('-')?;
    (SHELLS.contains(&name)
        && cluster.contains('c')
        && cluster.chars().all(|c| c.is_ascii_alphabetic()))
    .then_some(text.as_str())
}

/// One command of shell text and the separator after it (`&&`, `||`, `;`
/// or `|`; `None` for the last).
pub(crate) type Segment = (Vec<String>, Option<&'static str>);

/// Splits plain shell text into commands of words; `None` for anything
/// beyond words, quotes and `&&`, `||`, `;`, `|`.
pub(crate) fn split_shell(text: &str) -> Option<Vec<Segment>> {
    let mut commands: Vec<Segment> = vec![(Vec::new(), None)];
    let mut word: Option<String> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if let Some(w) = word.take() {
                    commands.last_mut()?.0.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => w.push(c),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '"' => break,
                        '$' | '`' | '\\' | '!' => return None,
                        c => w.push(c),
                    }
                }
            }
            ';' | '|' | '&' => {
                let doubled = c != ';' && chars.peek() == Some(&c);
                if c == '&' && !doubled {
                    return None;
                }
                if doubled {
                    chars.next();
                }
                if let Some(w) = word.take() {
                    commands.last_mut()?.0.push(w);
                }
                let last = commands.last_mut()?;
                if last.0.is_empty() {
                    return None;
                }
                last.1 = Some(match (c, doubled) {
                    (';', _) => ";",
                    ('|', false) => "|",
                    ('|', true) => "||",
                    _ => "&&",
                });
                commands.push((Vec::new(), None));
            }
            c if c.is_ascii_alphanumeric() || "-_./:,+@%=".contains(c) => {
                word.get_or_insert_with(String::new).push(c);
            }
            _ => return None,
        }
    }
    if let Some(w) = word.take() {
        commands.last_mut()?.0.push(w);
    }
    // A trailing separator, an empty command, an assignment prefix or a
    // glob in a command name cannot be judged here.
    let judged = commands.iter().all(|(c, _)| {
        c.first()
            .is_some_and(|name| !name.contains('=') && !name.contains(['*', '?', '[']))
    });
    judged.then_some(commands)
}

fn entry_matches(entry: &AllowEntry, command: &Program, ctx: &Context<'_>) -> bool {
    if entry.arg_pattern.is_some() || entry.source.as_deref() == Some("allow-always") {
        return false;
    }
    let pattern = entry.pattern.as_str();
    if pattern.contains(['/', '~']) {
        let expanded: std::borrow::Cow<'_, str> = match (pattern.strip_prefix('~'), ctx.home) {
            (Some(rest), Some(home)) => format!("{}{rest}", home.display()).into(),
            (Some(_), None) => return false,
            (None, _) => pattern.into(),
        };
        command.real.to_str().is_some_and(|p| glob(&expanded, p))
    } else {
        // A bare name only covers commands invoked by bare name.
        !command.word.contains('/')
            && command
                .real
                .file_name()
                .and_then(OsStr::to_str)
                .is_some_and(|n| glob(pattern, n) || glob(pattern, &command.word))
    }
}

/// Glob match, anchored: `**` any text, `*` any text without `/`, `?` one
/// character other than `/`, anything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    if !pattern.contains(['*', '?']) {
        // Most entries are plain paths: no table to fill.
        return pattern == text;
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // `ok[j]`: the pattern so far matches `t[..j]`.
    let mut ok = vec![false; t.len() + 1];
    ok[0] = true;
    let mut i = 0;
    while i < p.len() {
        let mut next = vec![false; t.len() + 1];
        match p[i] {
            '*' if p.get(i + 1) == Some(&'*') => {
                let mut any = false;
                for j in 0..=t.len() {
                    any |= ok[j];
                    next[j] = any;
                }
                i += 1;
            }
            '*' => {
                for j in 0..=t.len() {
                    next[j] = ok[j] || (j > 0 && next[j - 1] && t[j - 1] != '/');
                }
            }
            '?' => {
                for j in 1..=t.len() {
                    next[j] = ok[j - 1] && t[j - 1] != '/';
                }
            }
            c => {
                for j in 1..=t.len() {
                    next[j] = ok[j - 1] && t[j - 1] == c;
                }
            }
        }
        ok = next;
        i += 1;
    }
    ok[t.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Option<Vec<Vec<String>>> {
        split_shell(text).map(|c| c.into_iter().map(|(w, _)| w).collect())
    }

    #[test]
    fn globs_follow_the_official_rules() {
        assert!(glob("/usr/bin/*", "/usr/bin/uname"));
        assert!(!glob("/usr/bin/*", "/usr/bin/x/uname"));
        assert!(glob("/usr/**", "/usr/bin/x/uname"));
        assert!(glob("/opt/**/bin/rg", "/opt/a/b/bin/rg"));
        assert!(glob("r?", "rg"));
        assert!(!glob("r?", "r/"));
        assert!(!glob("rg", "rgx"));
        assert!(glob("", ""));
        assert!(!glob("", "x"));
        assert!(glob("*", ""));
    }

    #[test]
    fn plain_shell_text_splits_into_commands_and_anything_else_is_not_judged() {
        assert_eq!(
            words("uname -a && ls 'a b' | wc -l; echo \"x y\""),
            Some(vec![
                vec!["uname".into(), "-a".into()],
                vec!["ls".into(), "a b".into()],
                vec!["wc".into(), "-l".into()],
                vec!["echo".into(), "x y".into()],
            ])
        );
        for bad in [
            "echo $HOME",
            "echo `id`",
            "echo \"$(id)\"",
            "cat < /etc/passwd",
            "ls > x",
            "sleep 1 &",
            "(id)",
            "FOO=1 id",
            "id;",
            "echo a;; echo b",
            "echo a;;",
            "&& id",
            "id\nrm -rf /",
            "echo 'open",
            "r* -x",
            "id # comment",
            "echo \\x",
        ] {
            assert_eq!(words(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn commands_are_judged_by_their_real_path() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap();
        let bin = dir.join("bin");
        std::fs::create_dir(&bin).unwrap();
        let tool = bin.join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(&tool, dir.join("alias")).unwrap();
        let real_tool = std::fs::canonicalize(&tool).unwrap();
        let ctx = Context {
            cwd: &dir,
            path: bin.as_os_str(),
            home: Some(&dir),
        };
        let entry = |p: &str| AllowEntry {
            pattern: p.into(),
            ..AllowEntry::default()
        };
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let by_path = [entry(real_tool.to_str().unwrap())];
        assert_eq!(
            covers(&by_path, &argv(&["tool", "-x"]), &ctx),
            Some(vec![0])
        );
        // A symlink resolves to what it points at.
        assert_eq!(covers(&by_path, &argv(&["./alias"]), &ctx), Some(vec![0]));
        // Every command of shell text must be covered.
        let sh = |t: &str| argv(&["/bin/sh", "-lc", t]);
        assert_eq!(
            covers(&by_path, &sh("tool a | tool b"), &ctx),
            Some(vec![0, 0])
        );
        assert_eq!(covers(&by_path, &sh("tool a | sh -c id"), &ctx), None);
        assert_eq!(covers(&by_path, &sh("tool $(id)"), &ctx), None);
        // A bare name covers only commands named bare.
        let by_name = [entry("tool")];
        assert_eq!(covers(&by_name, &argv(&["tool"]), &ctx), Some(vec![0]));
        // A bare name covers the word it was called by, or the real name.
        std::os::unix::fs::symlink(&tool, bin.join("nick")).unwrap();
        assert_eq!(covers(&by_name, &argv(&["nick"]), &ctx), Some(vec![0]));
        assert_eq!(
            covers(&[entry("nick")], &argv(&["nick"]), &ctx),
            Some(vec![0])
        );
        assert_eq!(covers(&by_name, &argv(&["./bin/tool"]), &ctx), None);
        // `~` is the home directory.
        assert_eq!(
            covers(&[entry("~/**/tool")], &argv(&["tool"]), &ctx),
            Some(vec![0])
        );
        // Entries with an argument constraint, and approvals' entries, do not match yet.
        let constrained = [AllowEntry {
            arg_pattern: Some("^-x$".into()),
            ..entry("tool")
        }];
        assert_eq!(covers(&constrained, &argv(&["tool", "-x"]), &ctx), None);
        // What does not resolve is not covered.
        assert_eq!(
            covers(&[entry("**")], &argv(&["nonexistent-tool"]), &ctx),
            None
        );
        // The shell itself is not what an inline command is judged by.
        let system =
            std::env::join_paths([bin.as_path(), Path::new("/usr/bin"), Path::new("/bin")])
                .unwrap();
        let ctx = Context {
            path: &system,
            ..ctx
        };
        let real_sh = std::fs::canonicalize("/bin/sh").unwrap();
        let shells = [
            entry("sh"),
            entry("/bin/sh"),
            entry(real_sh.to_str().unwrap()),
        ];
        assert_eq!(covers(&shells, &sh("id"), &ctx), None);
        assert_eq!(covers(&[entry("id")], &sh("id"), &ctx), Some(vec![0]));
    }

    #[test]
    fn the_request_syntax_names_shell_text_by_the_shells_name() {
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(shell_text(&argv(&["/bin/sh", "-lc", "id"])), Some("id"));
        assert_eq!(shell_text(&argv(&["bash", "-c", "id"])), Some("id"));
        for not in [
            &["/usr/bin/env", "-c", "id"][..],
            &["sh", "-x", "id"],
            &["sh", "-c1", "id"],
            &["sh", "c", "id"],
            &["sh", "-c", "id", "x"],
        ] {
            assert_eq!(shell_text(&argv(not)), None, "{not:?}");
        }
    }

    #[test]
    fn shells_are_judged_only_in_the_forms_upstream_judges_too() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap();
        std::os::unix::fs::symlink("/usr/bin/dash", dir.join("dashlink")).unwrap();
        // A plain program the allowlist covers, named by relative path.
        std::os::unix::fs::symlink("/usr/bin/echo", dir.join("tool")).unwrap();
        let path = std::ffi::OsString::from("/usr/bin:/bin");
        let ctx = Context {
            cwd: &dir,
            path: &path,
            home: None,
        };
        let all = [AllowEntry {
            pattern: "/usr/**".into(),
            ..AllowEntry::default()
        }];
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let ok = |a: &[&str]| judge(&all, &argv(a), &ctx);
        let j = ok(&["sh", "-lc", "echo hi && uname"]).unwrap();
        assert_eq!(
            j.argv[2], "'/usr/bin/echo' 'hi' && '/usr/bin/uname'",
            "{j:?}"
        );
        assert!(j.argv[0].ends_with("sh"), "the real path: {:?}", j.argv);
        assert!(ok(&["bash", "-e", "-o", "pipefail", "-c", "echo hi", "bash"]).is_ok());
        // Options after -c, `--` before TEXT, bash's long options, and the
        // operands after TEXT, kept as given.
        let j = ok(&["sh", "-c", "-e", "/usr/bin/echo hi", "sh", "x"]).unwrap();
        assert_eq!(
            &j.argv[1..],
            ["-c", "-e", "'/usr/bin/echo' 'hi'", "sh", "x"],
            "{j:?}"
        );
        let j = ok(&["sh", "-c", "echo a; echo b | echo c || echo d && echo e"]).unwrap();
        assert_eq!(
            j.argv[2],
            "'/usr/bin/echo' 'a' ; '/usr/bin/echo' 'b' | '/usr/bin/echo' 'c' || \
             '/usr/bin/echo' 'd' && '/usr/bin/echo' 'e'"
        );
        let j = ok(&["sh", "-c", "--", "echo hi"]).unwrap();
        assert_eq!(&j.argv[1..], ["-c", "--", "'/usr/bin/echo' 'hi'"]);
        let j = ok(&["bash", "--norc", "-c", "echo hi"]).unwrap();
        assert_eq!(&j.argv[1..], ["--norc", "-c", "'/usr/bin/echo' 'hi'"]);
        for refused in [
            // A login shell other than the gateway's `sh -lc`.
            &["bash", "-lc", "echo hi"][..],
            &["sh", "-l", "-c", "echo hi"],
            &["sh", "--login", "-c", "echo hi"],
            // A shell under another name.
            &["./dashlink", "-c", "echo hi"],
            // Options that read or run more than TEXT.
            &["bash", "--rcfile", "/x", "-c", "echo hi"],
            &["bash", "--verbose", "-c", "echo hi"],
            &["sh", "+c", "echo hi"],
            // No -c (a script named like the text), or -c with no text.
            &["sh", "--", "echo hi"],
            &["sh", "-e", "--", "echo hi"],
            &["sh", "-c"],
            &["sh", "-e", "-c"],
            &["sh", "-i", "-c", "echo hi"],
            &["sh", "-k", "-c", "echo hi"],
            &["sh", "-s"],
            &["sh", "job.sh"],
            // Empty and non-ASCII words where an option would be.
            &["sh", "", "-c", "echo hi"],
            &["sh", "é", "-c", "echo hi"],
            &["sh", "-é", "-c", "echo hi"],
            &["sh", "+", "-c", "echo hi"],
            // A shell or a relative path inside the text.
            &["sh", "-c", "sh -c 'echo hi'"],
            &["sh", "-c", "./dashlink -c id"],
            &["sh", "-c", "./tool"],
            &["sh", "-c", "echo hi && ./tool"],
            // A wrapper anywhere.
            &["sh", "-c", "env echo hi"],
            &["env", "echo", "hi"],
        ] {
            assert!(ok(refused).is_err(), "{refused:?}");
        }
    }
}
