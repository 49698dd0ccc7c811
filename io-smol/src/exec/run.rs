//! One bounded run of a command (docs/exec-host.md §5).
//!
//! The child leads a process group of its own, with an empty stdin and the
//! environment it is given, nothing more. Its stdout and stderr are read as
//! they come, and the first [`OUTPUT_CAP`] bytes of the two together are
//! kept; the rest is counted and dropped, so a flood costs no memory. The
//! whole group gets SIGTERM, then SIGKILL after [`KILL_GRACE`]:
//! - when the timeout passes (exit code 124, `timedOut`);
//! - when the run is cancelled ([`Cancel`]);
//! - when the command exits non-zero, as upstream does;
//! - when it exits zero but descendants still hold its output open after
//!   [`DRAIN`]. Upstream waits for those until the timeout; here no
//!   descendant outlives the run it belongs to.
//!
//! [`run`] blocks its thread: drivers call it from a blocking pool
//! (a thread of their own, `tokio::task::spawn_blocking`).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};
use serde_json::{Value, json};

/// The most output kept, stdout and stderr together, in bytes.
pub const OUTPUT_CAP: usize = 200_000;
/// Between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_millis(300);
/// How long output may still arrive after the command exited.
pub const DRAIN: Duration = Duration::from_secs(1);
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

/// What to run.
#[derive(Clone, Debug, Default)]
pub struct RunSpec {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// The working directory; the node's own when `None`.
    pub cwd: Option<PathBuf>,
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
    mut from: impl Read,
    stream: usize,
    capture: Arc<Mutex<Capture>>,
    tap: Option<OutputTap>,
    done: Sender<Wake>,
) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = from.read(&mut buf) {
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

fn signal_group(pgid: Option<Pid>, signal: Signal) {
    if let Some(pgid) = pgid {
        // ESRCH: the group is gone already, which is what was wanted.
        let _ = kill_process_group(pgid, signal);
    }
}

/// Runs `spec` to its end; see the module documentation for how it is
/// bounded. A command that cannot start reports why in `error`.
pub fn run(spec: &RunSpec, cancel: &Cancel) -> RunOutcome {
    run_with(spec, cancel, |_| {})
}

/// [`run`], calling `started` with the child's pid once it has been
/// spawned (not for a command that cannot start).
pub fn run_with(spec: &RunSpec, cancel: &Cancel, started: impl FnOnce(u32)) -> RunOutcome {
    let Some((program, args)) = spec.argv.split_first() else {
        return failed("command required".into());
    };
    if let Some(cwd) = &spec.cwd
        && !cwd.is_dir()
    {
        return failed(format!(
            "node exec working directory does not exist on the node host: {}",
            cwd.display()
        ));
    }
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(format!("spawn {program}: {e}")),
    };
    started(child.id());
    let pgid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
    let (wake, wakes) = mpsc::channel();
    let capture = Arc::new(Mutex::new(Capture::default()));
    let streams: [Option<Box<dyn Read + Send>>; 2] = [
        child.stdout.take().map(|s| Box::new(s) as _),
        child.stderr.take().map(|s| Box::new(s) as _),
    ];
    let mut readers = 0;
    for (i, s) in streams.into_iter().enumerate() {
        if let Some(s) = s {
            let (c, w, t) = (capture.clone(), wake.clone(), spec.tap.clone());
            std::thread::spawn(move || pump(s, i, c, t, w));
            readers += 1;
        }
    }
    {
        let w = wake.clone();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
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
        pgid,
        &mut outcome,
        &mut readers,
    );
    // Whatever ended the run, nothing of it may stay behind.
    signal_group(pgid, Signal::KILL);
    wait_readers(&wakes, &mut readers, DRAIN);
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

fn failed(error: String) -> RunOutcome {
    RunOutcome {
        error: Some(error),
        ..RunOutcome::default()
    }
}

/// Waits for the command's exit, its timeout or a cancel; stops the group
/// on the latter two. Returns the exit status, if it came.
fn supervise(
    wakes: &Receiver<Wake>,
    timeout: Option<Duration>,
    cancelled: bool,
    pgid: Option<Pid>,
    outcome: &mut RunOutcome,
    readers: &mut usize,
) -> Option<ExitStatus> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut stop = cancelled.then_some(true);
    loop {
        if let Some(by_cancel) = stop {
            outcome.cancelled = by_cancel;
            outcome.timed_out = !by_cancel;
            return terminate(wakes, pgid, readers);
        }
        let wait = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let next = match wait {
            Some(w) => wakes.recv_timeout(w),
            None => wakes.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(Wake::Exited(status)) => {
                if status.code() != Some(0) {
                    // Its descendants get the grace to clean up, then the kill.
                    signal_group(pgid, Signal::TERM);
                    wait_readers(wakes, readers, KILL_GRACE);
                } else if !wait_readers(wakes, readers, DRAIN) {
                    tracing::debug!("descendants still hold the output open; killing the group");
                }
                return Some(status);
            }
            Ok(Wake::ReaderDone) => *readers = readers.saturating_sub(1),
            Ok(Wake::Cancelled) => stop = Some(true),
            Err(RecvTimeoutError::Timeout) => stop = Some(false),
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// SIGTERM to the group, SIGKILL after the grace; the exit status if the
/// command exited meanwhile.
fn terminate(wakes: &Receiver<Wake>, pgid: Option<Pid>, readers: &mut usize) -> Option<ExitStatus> {
    signal_group(pgid, Signal::TERM);
    let until = Instant::now() + KILL_GRACE;
    let mut status = None;
    while status.is_none() {
        match wakes.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(Wake::Exited(s)) => status = Some(s),
            Ok(Wake::ReaderDone) => *readers = readers.saturating_sub(1),
            Ok(Wake::Cancelled) => {}
            Err(_) => break,
        }
    }
    signal_group(pgid, Signal::KILL);
    status.or_else(|| match wakes.recv_timeout(KILL_GRACE) {
        Ok(Wake::Exited(s)) => Some(s),
        _ => None,
    })
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
