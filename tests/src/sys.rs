//! Processes, signals, `/proc`, scratch directories and clocks.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, the clock of `clawnode`'s `ts` fields.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Sends `sig` to the process group `pgid` (every process of it).
pub fn signal_group(pgid: u32, sig: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
    let rc = unsafe { libc::kill(-(pgid as i32), sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Sends `sig` to the single process `pid`.
pub fn signal_pid(pid: u32, sig: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) on one pid; no memory is touched.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The number of open file descriptors of `pid` (entries of `/proc/PID/fd`).
pub fn fd_count(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// The resident set size of `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix("VmRSS:")
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    })
}

/// The resident set size of every process in process group `pgid`, summed, in KiB.
pub fn group_rss_kib(pgid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state ppid pgrp ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let pgrp = rest
            .split_whitespace()
            .nth(2)
            .and_then(|s| s.parse::<u32>().ok());
        if pgrp == Some(pgid) {
            total += rss_kib(pid).unwrap_or(0);
        }
    }
    total
}

/// Every descendant of `pid` (children, grandchildren, ...) now alive,
/// read from `/proc/*/stat`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1))
                .and_then(|s| s.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((p, ppid));
            }
        }
    }
    let mut out = vec![];
    let mut frontier = vec![pid];
    while let Some(q) = frontier.pop() {
        for &(p, pp) in &parent_of {
            if pp == q && !out.contains(&p) {
                out.push(p);
                frontier.push(p);
            }
        }
    }
    out
}

/// Whether a read failed only because its socket timeout passed (a
/// polling loop goes round again).
pub fn read_timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Every live process with `arg` as one of its arguments (`/proc/*/cmdline`).
pub fn pids_with_arg(arg: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()) {
            out.push(pid);
        }
    }
    out
}

/// The peak resident set (`VmHWM`) of `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// SIGKILLs process group `pgid` and every descendant of `pid` (some
/// gateway helpers run in process groups of their own).
pub fn kill_tree(pid: u32) {
    let desc = descendants(pid);
    let _ = signal_group(pid, libc::SIGKILL);
    for d in desc {
        let _ = signal_pid(d, libc::SIGKILL);
    }
}

/// Waits for `child` to exit for at most `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => return None,
        }
    }
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `timeout`.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether scratch directories are kept after the tests (`CLAWNODE_TESTS_KEEP=1`).
pub fn keep_scratch() -> bool {
    std::env::var_os("CLAWNODE_TESTS_KEEP").is_some_and(|v| v != "0" && !v.is_empty())
}

/// Creates a fresh, empty directory under the system temp dir, named after `tag`.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    loop {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = base.join(format!(
            "clawnode-{tag}-{}-{n}-{nanos:08x}",
            std::process::id()
        ));
        if std::fs::create_dir(&dir).is_ok() {
            return dir;
        }
    }
}

/// Marks `dir` so that its watchdog does not delete it.
pub fn mark_keep(dir: &Path) {
    let _ = std::fs::write(dir.join(".keep"), b"");
}

const WATCHDOG: &str = r#"cur=""
while IFS= read -r line; do cur="$line"; done
case "$cur" in ''|-) ;; *) kill -KILL "-$cur" 2>/dev/null ;; esac
if [ -n "$1" ] && [ ! -e "$1/.keep" ]; then rm -rf -- "$1"; fi
exit 0"#;

/// A small `sh` process that outlives nothing: when the test process ends
/// (normally, by a panic, or killed), its stdin pipe closes and it kills the
/// last process group it was told about, then removes its directory (unless
/// the directory holds a `.keep` file). This is what guarantees that no
/// gateway or node survives the tests, even when `Drop` never runs (statics,
/// SIGKILL of the test binary).
pub struct Watchdog {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
}

impl Watchdog {
    /// Starts a watchdog that will remove `dir` (if given) at the end.
    pub fn spawn(dir: Option<&Path>) -> Watchdog {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(dir.map(|d| d.as_os_str().to_owned()).unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        use std::os::unix::process::CommandExt as _;
        // Its own group: killing a guarded group or a Ctrl-C must not reach it.
        cmd.process_group(0);
        let mut child = cmd.spawn().expect("spawn watchdog sh");
        let stdin = child.stdin.take();
        Watchdog {
            child: Some(child),
            stdin,
        }
    }

    /// From now on the watchdog kills process group `pgid` at the end
    /// (`None`: nothing to kill).
    pub fn guard(&mut self, pgid: Option<u32>) {
        if let Some(stdin) = self.stdin.as_mut() {
            let line = pgid.map_or_else(|| "-".to_owned(), |p| p.to_string());
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
    }

    /// Closes the pipe and waits for the watchdog to finish its cleanup.
    pub fn finish(&mut self) {
        self.stdin.take();
        if let Some(mut child) = self.child.take()
            && wait_timeout(&mut child, Duration::from_secs(20)).is_none()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Parses a gateway log timestamp such as `2026-11-24T13:18:56.191+00:00`
/// into milliseconds since the Unix epoch.
pub fn parse_log_ts(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 23 || b[4] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let ms = num(20..23)?;
    let mut offset_min = 0i64;
    if let Some(tz) = s.get(23..)
        && tz.len() >= 6
        && (tz.starts_with('+') || tz.starts_with('-'))
    {
        let sign = if tz.starts_with('-') { -1 } else { 1 };
        let oh: i64 = tz.get(1..3)?.parse().ok()?;
        let om: i64 = tz.get(4..6)?.parse().ok()?;
        offset_min = sign * (oh * 60 + om);
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_min * 60;
    u64::try_from(secs * 1000 + ms).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_timestamps_parse() {
        assert_eq!(
            parse_log_ts("1970-01-01T00:00:01.500+00:00 [gateway] ready"),
            Some(1500)
        );
        // 2026-11-24T13:18:56.191Z
        assert_eq!(
            parse_log_ts("2026-11-24T13:18:56.191+00:00"),
            Some(1_795_526_336_191)
        );
        assert_eq!(
            parse_log_ts("2026-11-24T15:18:56.191+02:00"),
            Some(1_795_526_336_191)
        );
        assert_eq!(parse_log_ts("garbage"), None);
    }
}
