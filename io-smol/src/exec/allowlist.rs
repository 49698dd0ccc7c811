//! Whether an allowlist covers a command (docs/exec-host.md §3.3).
//!
//! Every command the run would start must be covered by an entry: for a
//! shell wrapper (`sh -c TEXT`, the gateway's `/bin/sh -lc TEXT`) each
//! command of the text, split at `&&`, `||`, `;` and `|`. The executable is
//! resolved as the shell would (a path against the working directory, a
//! bare name on `PATH`) and judged by its real path, so a symlink or a
//! relative path cannot pose as an allowed program.
//!
//! Stricter than the official host, on purpose:
//! - shell text is only analysed when it is plain words, quotes and those
//!   separators. Expansions (`$`, backquotes, globs, `~`), escapes,
//!   redirections, subshells, backgrounding, `VAR=value` prefixes, comments
//!   and line breaks leave it uncovered: the run needs `security: full` or
//!   an operator's approval;
//! - entries with an `argPattern` (regular expressions, or the hashed form
//!   `allow-always` approvals write) never match yet.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::approvals::AllowEntry;
use crate::which::which_in;

/// The shells whose `-c TEXT` form is analysed rather than matched as a
/// program of its own.
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "ash"];

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

/// One command of a run: how it was named, and what it resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The word that named it.
    pub word: String,
    /// Its real path.
    pub real: PathBuf,
}

/// The commands `argv` would start, resolved; `None` when that cannot be
/// known for sure (see the module documentation) or one does not resolve.
pub fn commands(argv: &[String], ctx: &Context<'_>) -> Option<Vec<Resolved>> {
    let words: Vec<Vec<String>> = match shell_text(argv) {
        Some(text) => split_shell(text)?,
        None => vec![argv.to_vec()],
    };
    words
        .iter()
        .map(|segment| resolve(segment.first()?, ctx))
        .collect()
}

/// The entry covering each command, or `None` when one is not covered.
pub fn covers(entries: &[AllowEntry], argv: &[String], ctx: &Context<'_>) -> Option<Vec<usize>> {
    commands(argv, ctx)?
        .iter()
        .map(|c| entries.iter().position(|e| entry_matches(e, c, ctx)))
        .collect()
}

/// The text of `sh -c TEXT` (any flag cluster holding `c`, e.g. `-lc`).
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

/// Splits plain shell text into commands of words; `None` for anything
/// beyond words, quotes and `&&`, `||`, `;`, `|`.
pub(crate) fn split_shell(text: &str) -> Option<Vec<Vec<String>>> {
    let mut commands = vec![Vec::new()];
    let mut word: Option<String> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if let Some(w) = word.take() {
                    commands.last_mut()?.push(w);
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
                        '$' | '`' | '\\' => return None,
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
                    commands.last_mut()?.push(w);
                }
                if commands.last()?.is_empty() {
                    return None;
                }
                commands.push(Vec::new());
            }
            c if c.is_ascii_alphanumeric() || "-_./:,+@%=^".contains(c) => {
                word.get_or_insert_with(String::new).push(c);
            }
            _ => return None,
        }
    }
    if let Some(w) = word.take() {
        commands.last_mut()?.push(w);
    }
    // A trailing separator, an empty command, an assignment prefix or a
    // glob in a command name cannot be judged here.
    let judged = commands.iter().all(|c| {
        c.first()
            .is_some_and(|name| !name.contains('=') && !name.contains(['*', '?', '[']))
    });
    judged.then_some(commands)
}

fn resolve(word: &str, ctx: &Context<'_>) -> Option<Resolved> {
    let found = if word.contains('/') {
        Some(ctx.cwd.join(word))
    } else {
        which_in(word, ctx.path, ctx.cwd)
    }?;
    Some(Resolved {
        word: word.to_owned(),
        real: std::fs::canonicalize(found).ok()?,
    })
}

fn entry_matches(entry: &AllowEntry, command: &Resolved, ctx: &Context<'_>) -> bool {
    if entry.arg_pattern.is_some() || entry.source.as_deref() == Some("allow-always") {
        return false;
    }
    let pattern = entry.pattern.as_str();
    if pattern.contains(['/', '~']) {
        let expanded = match (pattern.strip_prefix('~'), ctx.home) {
            (Some(rest), Some(home)) => format!("{}{rest}", home.display()),
            (Some(_), None) => return false,
            (None, _) => pattern.to_owned(),
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
        split_shell(text)
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
}
