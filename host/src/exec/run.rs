//! One bounded run of a command (docs/exec-host.md §5).
//!
//! The command runs under a reaper of its own (`exec/reaper.rs`),
//! which no descendant outlives, with an empty stdin and the environment it
//! is given, nothing more: the program executed is the file handle given
//! (or `argv[0]` found on the child's `PATH`), in the working directory
//! handle given. Its stdout and stderr are read as they come, and the first
//! [`OUTPUT_CAP`] bytes of the two together are kept; the rest is counted
//! and dropped, so a flood costs no memory. The whole tree gets SIGTERM,
//! then SIGKILL after [`KILL_GRACE`]:
//! - when the timeout passes (exit code 124, `timedOut`);
//! - when the run is cancelled ([`Cancel`]);
//! - when the command exits non-zero, as upstream does;
//! - when it exits zero but descendants are still running after [`DRAIN`].
//!   Upstream waits for those until the timeout; here no descendant
//!   outlives the run it belongs to, whether it called `setsid` or not.
//!
//! [`run`] blocks its thread: drivers call it from a thread of its own,
//! which lives as long as the run (the reaper kills the tree when that
//! thread ends, the node's death included).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};
use serde_json::{Value, json};

use super::reaper::Prepared;
use super::resolve::resolve;

/// The most output kept, stdout and stderr together, in bytes.
pub const OUTPUT_CAP: usize = 200_000;
// The reaper keeps these bounds: between SIGTERM and SIGKILL, and how long
// output may still arrive after the command exited.
pub use super::reaper::{DRAIN, KILL_GRACE};
/// The exit code reported for a run stopped at its timeout.
pub const TIMEOUT_EXIT: i32 = 124;
/// The marker appended to output cut at the cap.
pub const TRUNCATED: &str = "\n... (truncated)";

/// Sees each piece of kept output as it arrives: the stream (0 stdout,
/// 1 stderr) and the bytes. Called on the reader threads; never for bytes
/// past [`OUTPUT_CAP`].
#[derive(Clone)]
pub struct OutputTap(pub Arc<TapFn>);

/// What an [`OutputTap`] calls.
pub type TapFn = dyn Fn(usize, &[u8]) + Send + Sync;

impl std::fmt::Debug for OutputTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutputTap")
    }
}

/// How long the node waits past [`KILL_GRACE`] for a stopped run's reaper
/// before it kills the reaper itself.
pub const REAPER_SLACK: Duration = Duration::from_secs(2);
/// How often a reader thread looks whether the run gave up on its output.
const READ_POLL: Duration = Duration::from_millis(100);

/// What to run.
#[derive(Clone, Debug, Default)]
pub struct RunSpec {
    /// The program and its arguments (`argv[0]` as the program sees it).
    pub argv: Vec<String>,
    /// The file to execute, held open (`O_PATH`) since it was judged;
    /// `None`: `argv[0]` found on the child's `PATH` as the run starts.
    pub program: Option<Arc<OwnedFd>>,
    /// The working directory; the node's own when `None`.
    pub cwd: Option<PathBuf>,
    /// The working directory held open since it was checked; the child
    /// changes into it, and `cwd` only names it.
    pub cwd_dir: Option<Arc<OwnedFd>>,
    /// The child's whole environment (see [`child_env`](super::child_env)).
    pub env: BTreeMap<String, String>,
    /// Stop the run after this long.
    pub timeout: Option<Duration>,
    /// Where kept output goes as it arrives, besides the outcome.
    pub tap: Option<OutputTap>,
}

/// How a run ended, in the shape `system.run` answers with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOutcome {
    /// The exit code; `None` when the command could not start or a signal
    /// other than ours ended it.
    pub exit_code: Option<i32>,
    /// Stopped at its timeout.
    pub timed_out: bool,
    /// Stopped by [`Cancel::cancel`].
    pub cancelled: bool,
    /// The kept stdout (lossy UTF-8).
    pub stdout: String,
    /// The kept stderr (lossy UTF-8).
    pub stderr: String,
    /// Output bytes dropped past the cap.
    pub dropped_bytes: u64,
    /// Why the command could not run.
    pub error: Option<String>,
}

impl RunOutcome {
    /// A run that could not start, and why.
    pub fn not_started(error: String) -> Self {
        RunOutcome {
            error: Some(error),
            ..RunOutcome::default()
        }
    }

    /// Exit code 0 within the timeout.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && !self.cancelled
    }

    /// The `system.run` result payload: `exitCode` (left out when there is
    /// none), `timedOut`, `success`, `stdout`, `stderr`, `error` and `truncated`. Output
    /// cut at the cap ends with [`TRUNCATED`], on stderr when it has text,
    /// else on stdout, as the official host marks it.
    pub fn payload(&self) -> Value {
        let (mut stdout, mut stderr) = (self.stdout.clone(), self.stderr.clone());
        if self.dropped_bytes > 0 {
            if stderr.trim().is_empty() {
                stdout.push_str(TRUNCATED);
            } else {
                stderr.push_str(TRUNCATED);
            }
        }
        let mut v = json!({
            "timedOut": self.timed_out,
            "success": self.success(),
            "stdout": stdout,
            "stderr": stderr,
            "error": self.error,
            // Beyond upstream's in-band marker, for callers that read fields.
            "truncated": self.dropped_bytes > 0,
        });
        if let Some(code) = self.exit_code {
            v["exitCode"] = code.into();
        }
        v
    }
}

enum Wake {
    Exited(ExitStatus),
    ReaderDone,
    Cancelled,
}

/// Cancels one run from another thread. Cancelling before the run starts
/// makes it stop as soon as it started.
#[derive(Clone, Default)]
pub struct Cancel(Arc<Mutex<CancelState>>);

#[derive(Default)]
struct CancelState {
    cancelled: bool,
    wake: Option<Sender<Wake>>,
}

impl Cancel {
    /// A handle for a run not yet cancelled.
    pub fn new() -> Self {
        Cancel::default()
    }

    /// Stops the run: its whole process group is killed.
    pub fn cancel(&self) {
        let mut s = self.0.lock().expect("not poisoned");
        s.cancelled = true;
        if let Some(w) = &s.wake {
            let _ = w.send(Wake::Cancelled);
        }
    }

    fn attach(&self, wake: Sender<Wake>) -> bool {
        let mut s = self.0.lock().expect("not poisoned");
        s.wake = Some(wake);
        s.cancelled
    }
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cancelled = self.0.lock().map(|s| s.cancelled).unwrap_or(true);
        f.debug_struct("Cancel")
            .field("cancelled", &cancelled)
            .finish()
    }
}

/// The output kept so far, both streams sharing one cap.
#[derive(Default)]
struct Capture {
    out: [Vec<u8>; 2],
    kept: usize,
    dropped: u64,
}

fn pump(
    mut from: impl Read + AsRawFd,
    stream: usize,
    capture: Arc<Mutex<Capture>>,
    tap: Option<OutputTap>,
    done: Sender<Wake>,
    abandon: Arc<AtomicBool>,
) {
    let mut buf = [0u8; 8192];
    let mut poll = libc::pollfd {
        fd: from.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    while !abandon.load(Ordering::Relaxed) {
        // SAFETY: one pollfd on a descriptor this thread owns.
        let ready = unsafe { libc::poll(&mut poll, 1, READ_POLL.as_millis() as i32) };
        if ready == 0
            || (ready < 0
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted)
        {
            continue;
        }
        let Ok(n) = from.read(&mut buf) else { break };
        if n == 0 {
            break;
        }
        let take = {
            let mut c = capture.lock().expect("not poisoned");
            let take = n.min(OUTPUT_CAP - c.kept);
            c.out[stream].extend_from_slice(&buf[..take]);
            c.kept += take;
            c.dropped += (n - take) as u64;
            take
        };
        if take > 0
            && let Some(tap) = &tap
        {
            (tap.0)(stream, &buf[..take]);
        }
    }
    let _ = done.send(Wake::ReaderDone);
}

/// Lossy UTF-8, without a sequence the cap cut in half at the end.
fn text(mut bytes: Vec<u8>, cut: bool) -> String {
    if cut
        && let Err(e) = std::str::from_utf8(&bytes)
        && e.error_len().is_none()
    {
        bytes.truncate(e.valid_up_to());
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Runs `spec` to its end; see the module documentation for how it is
/// bounded. A command that cannot start reports why in `error`.
pub fn run(spec: &RunSpec, cancel: &Cancel) -> RunOutcome {
    run_with(spec, cancel, |_| {})
}

/// The working directory and the program of `spec`, opened.
fn open_spec(spec: &RunSpec, first: &str) -> Result<(Option<Arc<OwnedFd>>, Arc<OwnedFd>), String> {
    let dir = match (&spec.cwd_dir, &spec.cwd) {
        (Some(dir), _) => Some(dir.clone()),
        (None, Some(cwd)) => Some(Arc::new(
            rustix::fs::open(
                cwd,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| {
                format!(
                    "node exec working directory does not exist on the node host: {} ({e})",
                    cwd.display()
                )
            })?,
        )),
        (None, None) => None,
    };
    let program = match &spec.program {
        Some(p) => p.clone(),
        None => {
            let base = match &spec.cwd {
                Some(c) => c.clone(),
                None => std::env::current_dir().unwrap_or_else(|_| "/".into()),
            };
            let path = spec.env.get("PATH").map(String::as_str).unwrap_or("");
            resolve(first, &base, path.as_ref())
                .map_err(|e| format!("spawn {first}: {e}"))?
                .file
        }
    };
    Ok((dir, program))
}

/// [`run`], calling `started` with the reaper's pid once the command has
/// started (not for a command that cannot start).
pub fn run_with(spec: &RunSpec, cancel: &Cancel, started: impl FnOnce(u32)) -> RunOutcome {
    let Some(first) = spec.argv.first() else {
        return RunOutcome::not_started("command required".into());
    };
    let (dir, program) = match open_spec(spec, first) {
        Ok(opened) => opened,
        Err(e) => return RunOutcome::not_started(e),
    };
    let prepared = match Prepared::new(program, &spec.argv, &spec.env, dir) {
        Ok(p) => p,
        Err(e) => return RunOutcome::not_started(format!("spawn {first}: {e}")),
    };
    let mut cmd = Command::new(first);
    cmd.env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: the closure makes only async-signal-safe calls (reaper.rs).
    unsafe {
        cmd.pre_exec(move || prepared.become_reaper());
    }
    let spawned = {
        // Registered under the lock a sweep holds: a sweep never takes a
        // reaper being started for a stray.
        let mut reapers = REAPERS.lock().unwrap_or_else(|e| e.into_inner());
        let spawned = cmd.spawn();
        if let Ok(c) = &spawned {
            reapers.insert(c.id() as i32);
        }
        spawned
    };
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return RunOutcome::not_started(format!("spawn {first}: {e}")),
    };
    started(child.id());
    let reaper = i32::try_from(child.id()).unwrap_or(0);
    let (wake, wakes) = mpsc::channel();
    let capture = Arc::new(Mutex::new(Capture::default()));
    let abandon = Arc::new(AtomicBool::new(false));
    let mut readers = 0;
    let streams: [Option<OwnedFd>; 2] = [
        child.stdout.take().map(OwnedFd::from),
        child.stderr.take().map(OwnedFd::from),
    ];
    for (stream, fd) in streams.into_iter().enumerate() {
        if let Some(fd) = fd {
            let (c, w, t, a) = (
                capture.clone(),
                wake.clone(),
                spec.tap.clone(),
                abandon.clone(),
            );
            let file = std::fs::File::from(fd);
            std::thread::spawn(move || pump(file, stream, c, t, w, a));
            readers += 1;
        }
    }
    {
        let w = wake.clone();
        std::thread::spawn(move || {
            let status = child.wait();
            REAPERS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&reaper);
            if let Ok(status) = status {
                let _ = w.send(Wake::Exited(status));
            }
        });
    }
    let already = cancel.attach(wake);
    let mut outcome = RunOutcome::default();
    let status = supervise(
        &wakes,
        spec.timeout,
        already,
        reaper,
        &mut outcome,
        &mut readers,
    );
    // The reaper is gone, and the tree with it: the output ends now, unless
    // something escaped the reaper; the readers stop waiting for that.
    if !wait_readers(&wakes, &mut readers, DRAIN) {
        tracing::warn!("output still open after the run's tree was killed; no longer read");
    }
    abandon.store(true, Ordering::Relaxed);
    if ADOPTING.load(Ordering::Relaxed) {
        sweep();
    }
    outcome.exit_code = match status {
        _ if outcome.timed_out => Some(TIMEOUT_EXIT),
        Some(s) => s.code(),
        None => None,
    };
    let c = std::mem::take(&mut *capture.lock().expect("not poisoned"));
    let [out, err] = c.out;
    let cut = c.dropped > 0;
    outcome.stdout = text(out, cut);
    outcome.stderr = text(err, cut);
    outcome.dropped_bytes = c.dropped;
    outcome
}

/// Waits for the reaper's exit (the command's end, the tree gone), the
/// timeout or a cancel; on the latter two, asks the reaper to stop the
/// tree, and kills the reaper itself if it does not within
/// [`KILL_GRACE`] and [`REAPER_SLACK`]. Returns the exit status, if it came.
fn supervise(
    wakes: &Receiver<Wake>,
    timeout: Option<Duration>,
    cancelled: bool,
    reaper: i32,
    outcome: &mut RunOutcome,
    readers: &mut usize,
) -> Option<ExitStatus> {
    let mut deadline = timeout.map(|t| Instant::now() + t);
    let mut stopping = false;
    let mut stop = |by_cancel: bool, outcome: &mut RunOutcome| {
        if stopping {
            return None;
        }
        stopping = true;
        outcome.cancelled = by_cancel;
        outcome.timed_out = !by_cancel;
        signal(reaper, libc::SIGTERM);
        // A reaper the command stopped cannot act on the signal.
        signal(reaper, libc::SIGCONT);
        Some(Instant::now() + KILL_GRACE + REAPER_SLACK)
    };
    if cancelled {
        deadline = stop(true, outcome);
    }
    loop {
        let wait = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let next = match wait {
            Some(w) => wakes.recv_timeout(w),
            None => wakes.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(Wake::Exited(status)) => return Some(status),
            Ok(Wake::ReaderDone) => *readers = readers.saturating_sub(1),
            Ok(Wake::Cancelled) => {
                if let Some(d) = stop(true, outcome) {
                    deadline = Some(d);
                }
            }
            Err(RecvTimeoutError::Timeout) => match stop(false, outcome) {
                Some(d) => deadline = Some(d),
                None => {
                    // The reaper did not finish in time: it goes, and
                    // whatever it had not reached with it.
                    tracing::warn!(reaper, "the run's reaper did not stop in time; killed");
                    signal(reaper, libc::SIGKILL);
                    deadline = None;
                }
            },
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// The reapers of this process's runs that are alive.
static REAPERS: Mutex<std::collections::BTreeSet<i32>> =
    Mutex::new(std::collections::BTreeSet::new());
/// Whether this process adopts what a dead reaper leaves ([`adopt_orphans`]).
static ADOPTING: AtomicBool = AtomicBool::new(false);

/// Makes this process adopt, and kill after each run, the processes a run
/// leaves behind when its command killed or stopped its own reaper
/// (docs/exec-host.md §11.3): the process becomes a child subreaper, so
/// such processes become its children instead of init's, and every child
/// that is not a live reaper is killed when a run ends.
///
/// For a process whose only children are runs (the `clawnode` binary): an
/// embedder with children of its own must not call it.
pub fn adopt_orphans() -> std::io::Result<()> {
    // SAFETY: a prctl on this process.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    ADOPTING.store(true, Ordering::Relaxed);
    Ok(())
}

/// This process's children, from every thread's `children` list.
fn own_children() -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return pids;
    };
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Kills and reaps every child that is not a live reaper, until none is
/// left (what they leave comes to this process in turn), for at most 2 s.
fn sweep() {
    let reapers = REAPERS.lock().unwrap_or_else(|e| e.into_inner());
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        let strays: Vec<i32> = own_children()
            .into_iter()
            .filter(|p| !reapers.contains(p))
            .collect();
        if strays.is_empty() || Instant::now() > until {
            break;
        }
        tracing::warn!(?strays, "processes left by a run whose reaper died; killed");
        for pid in strays {
            signal(pid, libc::SIGKILL);
            let mut st = 0;
            // SAFETY: waits for this process's own child, by pid.
            while unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) } == 0
                && Instant::now() < until
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

fn signal(pid: i32, signal: i32) {
    if pid > 0 {
        // SAFETY: a signal to the reaper this run started. ESRCH: it is
        // gone already, which is what was wanted.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Waits (≤ `limit`) until both output streams reached their end.
fn wait_readers(wakes: &Receiver<Wake>, readers: &mut usize, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while *readers > 0 {
        match wakes.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(Wake::ReaderDone) => *readers -= 1,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    true
}
