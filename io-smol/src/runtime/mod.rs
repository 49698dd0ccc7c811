//! Where a node's tasks, sockets and timers live: smol (its global
//! executor, or one the embedder drives) by default, or a tokio runtime
//! (feature `tokio`). Each runtime is one file ([`smol`](self::smol),
//! [`tokio`](self::tokio)); this facade is all the driver sees: spawn a
//! task, re-arm a wake-up, wait a while, open a TCP connection. Nothing of
//! one runtime runs under the other.

pub(crate) mod smol;
#[cfg(feature = "tokio")]
pub(crate) mod tokio;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ::smol::Executor;

use self::smol::{SharedSleep, Smol};

/// The runtime a node runs on.
#[derive(Clone)]
pub(crate) enum Runtime {
    /// smol's global executor or one the embedder drives; async-io's
    /// reactor.
    Smol(Smol),
    /// A tokio runtime, with its reactor and timer wheel.
    #[cfg(feature = "tokio")]
    Tokio(::tokio::runtime::Handle),
}

impl Default for Runtime {
    /// smol's global executor.
    fn default() -> Self {
        Runtime::Smol(Smol::Global)
    }
}

impl Runtime {
    /// An executor the embedder drives.
    pub fn executor(executor: Arc<Executor<'static>>) -> Runtime {
        Runtime::Smol(Smol::On(executor))
    }

    /// Spawns `future` here.
    pub fn spawn<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> Task<T> {
        match self {
            Runtime::Smol(s) => Task::Smol(s.spawn(future)),
            #[cfg(feature = "tokio")]
            Runtime::Tokio(handle) => Task::Tokio(self::tokio::spawn(handle, future)),
        }
    }

    /// A wake-up that never ends until [`Sleep::set_at`] gives it a time.
    pub fn sleep(&self) -> Sleep {
        match self {
            Runtime::Smol(s) => Sleep::Smol(s.sleep()),
            #[cfg(feature = "tokio")]
            Runtime::Tokio(_) => Sleep::Tokio(Default::default()),
        }
    }

    /// Ends after `duration`, on this runtime's timer.
    pub async fn sleep_for(&self, duration: Duration) {
        match self {
            Runtime::Smol(_) => self::smol::sleep_for(duration).await,
            #[cfg(feature = "tokio")]
            Runtime::Tokio(_) => self::tokio::sleep_for(duration).await,
        }
    }

    /// Ends at `at`, on this runtime's timer.
    pub async fn sleep_until(&self, at: Instant) {
        self.sleep_for(at.saturating_duration_since(Instant::now()))
            .await;
    }

    /// Whose reactor this runtime's sockets register with.
    pub fn net(&self) -> crate::transport::Net {
        match self {
            Runtime::Smol(_) => crate::transport::Net::AsyncIo,
            #[cfg(feature = "tokio")]
            Runtime::Tokio(_) => crate::transport::Net::Tokio,
        }
    }
}

/// A spawned task, as smol's behave on either runtime: awaiting it gives
/// its output (a panic in it resumes in the awaiter, as does a runtime
/// gone before it ended), dropping it cancels it, [`Task::detach`] lets it
/// run on.
#[must_use = "a dropped task is cancelled"]
pub(crate) enum Task<T> {
    Smol(::smol::Task<T>),
    #[cfg(feature = "tokio")]
    Tokio(self::tokio::Aborting<T>),
}

impl<T> Task<T> {
    /// Lets the task run on without anyone awaiting it.
    pub fn detach(self) {
        match self {
            Task::Smol(t) => t.detach(),
            #[cfg(feature = "tokio")]
            Task::Tokio(t) => t.detach(),
        }
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        match self {
            Task::Smol(t) => t.is_finished(),
            #[cfg(feature = "tokio")]
            Task::Tokio(t) => t.is_finished(),
        }
    }
}

impl<T> Future for Task<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.get_mut() {
            Task::Smol(t) => Pin::new(t).poll(cx),
            #[cfg(feature = "tokio")]
            Task::Tokio(t) => Pin::new(t).poll(cx),
        }
    }
}

/// A session's wake-up at one instant, re-armed with [`Sleep::set_at`]:
/// in its smol executor's table, or on tokio's timer wheel.
pub(crate) enum Sleep {
    Smol(SharedSleep),
    #[cfg(feature = "tokio")]
    Tokio(self::tokio::TokioSleep),
}

impl Sleep {
    /// Wakes at `at` from now on (never for `None`). Setting the time it
    /// already waits for changes nothing; once it has ended, setting any
    /// time arms it again.
    pub fn set_at(&mut self, at: Option<Instant>) {
        match self {
            Sleep::Smol(s) => s.set_at(at),
            #[cfg(feature = "tokio")]
            Sleep::Tokio(s) => s.set_at(at),
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            Sleep::Smol(s) => Pin::new(s).poll(cx),
            #[cfg(feature = "tokio")]
            Sleep::Tokio(s) => Pin::new(s).poll(cx),
        }
    }
}

#[cfg(all(test, feature = "tokio"))]
mod tests {
    use super::*;
    use ::smol::future::FutureExt as _;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Tokio tasks keep smol's contract: output, cancel on drop, detach,
    /// and a panic resumed in the awaiter.
    #[test]
    fn tokio_tasks_behave_as_smol_tasks() {
        let runtime = crate::__testutil::current_thread_runtime();
        let spawner = Runtime::Tokio(runtime.handle().clone());
        runtime.block_on(async {
            assert_eq!(spawner.spawn(async { 7 }).await, 7);

            let ran = Arc::new(AtomicBool::new(false));
            let flag = ran.clone();
            let later = async move {
                ::tokio::time::sleep(Duration::from_millis(20)).await;
                flag.store(true, Ordering::SeqCst);
            };
            drop(spawner.spawn(later));
            let flag = Arc::new(AtomicBool::new(false));
            let set = flag.clone();
            spawner
                .spawn(async move {
                    ::tokio::time::sleep(Duration::from_millis(20)).await;
                    set.store(true, Ordering::SeqCst);
                })
                .detach();
            ::tokio::time::sleep(Duration::from_millis(80)).await;
            assert!(!ran.load(Ordering::SeqCst), "a dropped task is cancelled");
            assert!(flag.load(Ordering::SeqCst), "a detached task runs on");

            let done = spawner.spawn(async {});
            ::tokio::time::sleep(Duration::from_millis(10)).await;
            assert!(done.is_finished());

            let panicked = spawner.spawn(async { panic!("boom") });
            let caught = std::panic::AssertUnwindSafe(panicked).catch_unwind().await;
            assert!(caught.is_err(), "the panic reaches the awaiter");
        });
    }

    /// On tokio: a sleep ends once at its time, then waits to be armed
    /// again; a cleared one never ends.
    #[test]
    fn a_tokio_sleep_ends_once_and_a_cleared_one_never() {
        use ::tokio::time::timeout;
        let runtime = crate::__testutil::current_thread_runtime();
        let spawner = Runtime::Tokio(runtime.handle().clone());
        runtime.block_on(async {
            let start = Instant::now();
            let mut sleep = spawner.sleep();
            sleep.set_at(Some(start + Duration::from_millis(20)));
            (&mut sleep).await;
            assert!(start.elapsed() >= Duration::from_millis(20));
            let ms = Duration::from_millis;
            assert!(timeout(ms(30), &mut sleep).await.is_err(), "ended once");
            sleep.set_at(Some(Instant::now() + ms(10)));
            sleep.set_at(None);
            assert!(timeout(ms(40), &mut sleep).await.is_err(), "cleared");
            let again = Instant::now();
            sleep.set_at(Some(again + ms(10)));
            (&mut sleep).await;
            assert!(again.elapsed() >= ms(10));
        });
    }
}
