//! Blocking work off the executor. The sessions' own short jobs (state and
//! trust files) run on one thread, in order, which sleeps on its queue
//! until there is work. What a gateway asks for (commands, and their
//! file-system searches and preparation) gets a thread of its own, which
//! ends with it: a path on a hung mount then stalls that invoke alone, never
//! another session's connect or token write.
//!
//! `smol::unblock`'s pool keeps every thread it starts (up to its limit of
//! 500) and wakes each one twice a second for good: in a process holding
//! hundreds of idle sessions, those wake-ups were most of what still ran.
//! This thread blocks with no timeout, so idle it costs nothing. The jobs
//! are small reads and writes of local files, so one thread keeps up.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Sender};

type Job = Box<dyn FnOnce() + Send>;

/// The worker's queue; the thread starts with the first job.
fn queue() -> &'static Sender<Job> {
    static QUEUE: OnceLock<Sender<Job>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("clawnode-blocking".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .expect("cannot start the blocking-work thread");
        tx
    })
}

/// Runs the short job `f` on the blocking-work thread and waits for its
/// result without blocking the executor. A panic in `f` resumes in the
/// caller.
pub(crate) async fn unblock<T, F>(f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (job, result) = job(f);
    queue()
        .send(job)
        .expect("the blocking-work thread never exits");
    result.await
}

/// Runs `f`, which a gateway asked for and may block for as long as a
/// command runs, on a thread of its own that ends with it, and waits for
/// its result without blocking the executor. A panic in `f` resumes in the
/// caller.
pub async fn on_own_thread<T, F>(f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (job, result) = job(f);
    std::thread::Builder::new()
        .name("clawnode-command".into())
        .spawn(job)
        .expect("cannot start a command thread");
    result.await
}

/// `f` as a job, and its result to wait for.
fn job<T, F>(f: F) -> (Job, impl Future<Output = T>)
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = async_channel::bounded::<Result<T, Box<dyn Any + Send>>>(1);
    let job: Job = Box::new(move || {
        let _ = tx.try_send(catch_unwind(AssertUnwindSafe(f)));
    });
    (job, async move {
        match rx.recv().await {
            Ok(Ok(value)) => value,
            Ok(Err(panic)) => resume_unwind(panic),
            Err(_) => unreachable!("every job answers, even when it panics"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_jobs_in_order_and_returns_their_results() {
        smol::block_on(async {
            let a = unblock(|| 1 + 1);
            let b = unblock(|| "two".to_string());
            assert_eq!((a.await, b.await.as_str()), (2, "two"));
        });
    }

    #[test]
    fn a_panicking_job_panics_its_caller_and_spares_the_thread() {
        let caught = std::panic::catch_unwind(|| smol::block_on(unblock(|| panic!("boom"))));
        assert!(caught.is_err());
        assert_eq!(smol::block_on(unblock(|| 7)), 7);
    }

    #[test]
    fn a_long_job_runs_beside_the_short_ones() {
        smol::block_on(async {
            let (release, wait) = std::sync::mpsc::channel::<()>();
            let long = on_own_thread(move || wait.recv().is_ok());
            // The worker is free while the long job blocks.
            assert_eq!(unblock(|| 3).await, 3);
            release.send(()).unwrap();
            assert!(long.await);
        });
    }
}
