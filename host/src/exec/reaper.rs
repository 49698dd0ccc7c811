//! The reaper of one run: a small process between the node and the command
//! that no descendant of the command outlives (docs/exec-host.md §11.3).
//!
//! The node's child is the reaper. Still in the forked child, before any
//! exec, it makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`), so
//! every descendant that is orphaned, whether by `setsid`, `setpgrp` or a
//! double fork, becomes its child instead of init's; asks for SIGTERM when
//! the node's thread that started it dies (`PR_SET_PDEATHSIG`, which also
//! covers a SIGKILL of the node); and forks the command, which changes into
//! the held working directory and executes the held program file
//! (`execveat` on its handle), the very file that was judged.
//!
//! The reaper then closes every descriptor it has (the node sees the
//! command's exec outcome and, later, the end of its output) and waits:
//! - when the command exits 0, descendants get [`DRAIN`]
//!   to finish by themselves; after a non-zero exit, SIGTERM and
//!   [`KILL_GRACE`];
//! - on SIGTERM, SIGINT or SIGHUP (the node's timeout or cancel, or the
//!   node's thread gone), SIGTERM to the command's process group (the
//!   command leads one of its own) and the reaper's children, and the
//!   grace;
//!
//! then SIGKILL to everything still there, over and over until it has no
//! child left, and it exits with the command's status.
//!
//! Everything after the fork runs in a copy of a multi-threaded process, so
//! only async-signal-safe calls are made there: no allocation, no lock.
//! What the child needs (the argv and environment as C strings) is built
//! before the fork.

use std::ffi::{CString, c_char, c_int};
use std::io;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

/// Between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_millis(300);
/// How long output may still arrive after the command exited.
pub const DRAIN: Duration = Duration::from_secs(1);

/// Everything the forked child uses, built before the fork.
pub(crate) struct Prepared {
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    envp_ptrs: Vec<*const c_char>,
    program: Arc<OwnedFd>,
    cwd: Option<Arc<OwnedFd>>,
    parent: libc::pid_t,
}

// The raw pointers point into the CStrings this value owns; it moves into
// the spawning closure and is only read, in the child.
unsafe impl Send for Prepared {}
unsafe impl Sync for Prepared {}

impl Prepared {
    /// What the child needs to execute `program` with `argv` and `env`
    /// in `cwd`; an error names the argument holding a NUL byte.
    pub(crate) fn new<'a>(
        program: Arc<OwnedFd>,
        argv: &[String],
        env: impl IntoIterator<Item = (&'a String, &'a String)>,
        cwd: Option<Arc<OwnedFd>>,
    ) -> Result<Self, String> {
        let c = |s: String| CString::new(s).map_err(|e| format!("a NUL byte in {e}"));
        let argv: Vec<CString> = argv.iter().cloned().map(c).collect::<Result<_, _>>()?;
        let envp: Vec<CString> = env
            .into_iter()
            .map(|(k, v)| c(format!("{k}={v}")))
            .collect::<Result<_, _>>()?;
        let ptrs = |v: &[CString]| {
            v.iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect::<Vec<_>>()
        };
        Ok(Prepared {
            argv_ptrs: ptrs(&argv),
            envp_ptrs: ptrs(&envp),
            _argv: argv,
            _envp: envp,
            program,
            cwd,
            parent: std::process::id() as libc::pid_t,
        })
    }

    /// Runs in the forked child (`pre_exec`): becomes the reaper and never
    /// returns, or returns the error that kept the command from starting
    /// (in the command's own process, which reports it to the node).
    ///
    /// # Safety
    /// Only to be called in the child between fork and exec.
    pub(crate) unsafe fn become_reaper(&self) -> io::Result<()> {
        // SAFETY (whole body): async-signal-safe system calls on memory
        // this value owns; see the module documentation.
        unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
            if libc::getppid() != self.parent {
                // The node's thread is gone already: nothing to run for.
                libc::_exit(1);
            }
            let signals = stop_signals();
            libc::sigprocmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut());
            match libc::fork() {
                -1 => Err(io::Error::last_os_error()),
                0 => {
                    libc::sigprocmask(libc::SIG_UNBLOCK, &signals, std::ptr::null_mut());
                    self.exec()
                }
                command => {
                    close_all();
                    reap(command, &signals)
                }
            }
        }
    }

    /// In the command's process: changes into the working directory and
    /// executes the program file; returns only on failure.
    unsafe fn exec(&self) -> io::Result<()> {
        unsafe {
            // A group of its own, which the reaper (outside it) can signal.
            libc::setpgid(0, 0);
            if let Some(dir) = &self.cwd
                && libc::fchdir(dir.as_raw_fd()) != 0
            {
                return Err(io::Error::last_os_error());
            }
            let fd = self.program.as_raw_fd();
            // Nothing of the node's but stdio reaches the command, not even
            // descriptors the node inherited without close-on-exec; the
            // program's own handle stays until the exec (a script's
            // interpreter opens it).
            close_from(3, fd);
            let run = || {
                libc::syscall(
                    libc::SYS_execveat,
                    fd,
                    c"".as_ptr(),
                    self.argv_ptrs.as_ptr(),
                    self.envp_ptrs.as_ptr(),
                    libc::AT_EMPTY_PATH,
                )
            };
            run();
            if io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) {
                // A script: its interpreter opens it as /dev/fd/N, which
                // must survive the exec.
                libc::fcntl(fd, libc::F_SETFD, 0);
                run();
            }
            Err(io::Error::last_os_error())
        }
    }
}

/// The signals the reaper waits for instead of dying by them.
fn stop_signals() -> libc::sigset_t {
    // SAFETY: initialising a local signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Closes every descriptor from `first` on, except `keep`.
unsafe fn close_from(first: i32, keep: i32) {
    unsafe {
        let range = |lo: i32, hi: i32| {
            if lo <= hi && libc::syscall(libc::SYS_close_range, lo as u32, hi as u32, 0u32) != 0 {
                for fd in lo..=hi.min(4095) {
                    libc::close(fd);
                }
            }
        };
        range(first, keep - 1);
        range(keep + 1, i32::MAX);
    }
}

/// Closes every descriptor of the reaper.
unsafe fn close_all() {
    unsafe {
        if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
            for fd in 0..4096 {
                libc::close(fd);
            }
        }
    }
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

/// The reaper's life after the fork (see the module documentation).
unsafe fn reap(command: libc::pid_t, signals: &libc::sigset_t) -> ! {
    unsafe {
        let mut status: Option<c_int> = None;
        let mut stopped = false;
        let tick = timespec(Duration::from_millis(500));
        while status.is_none() && !stopped {
            let sig = libc::sigtimedwait(signals, std::ptr::null_mut(), &tick);
            match sig {
                libc::SIGCHLD | -1 => {
                    reap_some(command, &mut status);
                }
                _ => stopped = true,
            }
        }
        let clean =
            !stopped && status.is_some_and(|s| libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0);
        if clean {
            wait_children(command, &mut status, signals, DRAIN);
        } else {
            libc::kill(-command, libc::SIGTERM);
            signal_children(libc::SIGTERM);
            wait_children(command, &mut status, signals, KILL_GRACE);
        }
        kill_everything(command, &mut status);
        exit_as(status)
    }
}

/// Reaps every child that ended, noting the command's status.
unsafe fn reap_some(command: libc::pid_t, status: &mut Option<c_int>) -> bool {
    unsafe {
        loop {
            let mut st: c_int = 0;
            match libc::waitpid(-1, &mut st, libc::WNOHANG) {
                0 => return false,
                -1 => return true,
                pid => {
                    if pid == command {
                        *status = Some(st);
                    }
                }
            }
        }
    }
}

/// Waits up to `limit` for every child to end by itself; `true` if none is
/// left.
unsafe fn wait_children(
    command: libc::pid_t,
    status: &mut Option<c_int>,
    signals: &libc::sigset_t,
    limit: Duration,
) -> bool {
    unsafe {
        let mut now: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
        let until =
            now.tv_sec as i128 * 1_000_000_000 + now.tv_nsec as i128 + limit.as_nanos() as i128;
        loop {
            if reap_some(command, status) {
                return true;
            }
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
            let left = until - (now.tv_sec as i128 * 1_000_000_000 + now.tv_nsec as i128);
            if left <= 0 {
                return false;
            }
            let wait = timespec(Duration::from_nanos(left.min(50_000_000) as u64));
            libc::sigtimedwait(signals, std::ptr::null_mut(), &wait);
        }
    }
}

/// Sends `signal` to each child of the reaper (read from
/// `/proc/thread-self/children`); `true` if it found one.
unsafe fn signal_children(signal: c_int) -> bool {
    unsafe {
        let fd = libc::open(
            c"/proc/thread-self/children".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return false;
        }
        let mut found = false;
        let mut buf = [0u8; 4096];
        let mut pid: libc::pid_t = 0;
        loop {
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            if n <= 0 {
                break;
            }
            for &b in &buf[..n as usize] {
                if b.is_ascii_digit() {
                    pid = pid
                        .saturating_mul(10)
                        .saturating_add(libc::pid_t::from(b - b'0'));
                } else if pid > 0 {
                    libc::kill(pid, signal);
                    found = true;
                    pid = 0;
                }
            }
        }
        if pid > 0 {
            libc::kill(pid, signal);
            found = true;
        }
        libc::close(fd);
        found
    }
}

/// SIGKILL to the command's group and every child, until no child is left.
unsafe fn kill_everything(command: libc::pid_t, status: &mut Option<c_int>) {
    unsafe {
        let pause = timespec(Duration::from_millis(2));
        loop {
            libc::kill(-command, libc::SIGKILL);
            signal_children(libc::SIGKILL);
            if reap_some(command, status) {
                return;
            }
            libc::nanosleep(&pause, std::ptr::null_mut());
        }
    }
}

/// Exits as the command did: its exit code, or its signal.
unsafe fn exit_as(status: Option<c_int>) -> ! {
    unsafe {
        match status {
            Some(s) if libc::WIFEXITED(s) => libc::_exit(libc::WEXITSTATUS(s)),
            Some(s) if libc::WIFSIGNALED(s) => {
                let sig = libc::WTERMSIG(s);
                let no_core = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &no_core);
                libc::signal(sig, libc::SIG_DFL);
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, sig);
                libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                libc::kill(libc::getpid(), sig);
                libc::_exit(128 + sig)
            }
            _ => libc::_exit(125),
        }
    }
}
