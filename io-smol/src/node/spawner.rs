//! Where a node's tasks run: smol's global executor unless the embedder
//! hands it one of its own ([`NodeBuilder::executor`](super::NodeBuilder::executor))
//! or a tokio runtime ([`NodeBuilder::tokio`](super::NodeBuilder::tokio)).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use smol::Executor;

use crate::transport::Net;

/// The executor a node spawns its driver, socket and command tasks on.
#[derive(Clone, Default)]
pub(super) enum Spawner {
    /// `smol::spawn`.
    #[default]
    Global,
    /// An executor the embedder drives.
    On(Arc<Executor<'static>>),
    /// A tokio runtime. Its sockets and timers are tokio's too: on a
    /// current-thread runtime one thread waits for I/O and runs every
    /// task, with no wake-up handed between threads.
    #[cfg(feature = "tokio")]
    Tokio(tokio::runtime::Handle),
}

impl Spawner {
    /// Spawns `future` on this executor.
    pub fn spawn<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> Task<T> {
        match self {
            Spawner::Global => Task::Smol(smol::spawn(future)),
            Spawner::On(executor) => Task::Smol(executor.spawn(future)),
            #[cfg(feature = "tokio")]
            Spawner::Tokio(handle) => Task::Tokio(Aborting(Some(handle.spawn(future)))),
        }
    }

    /// Whose reactor this executor's sockets register with.
    pub fn net(&self) -> Net {
        match self {
            Spawner::Global | Spawner::On(_) => Net::AsyncIo,
            #[cfg(feature = "tokio")]
            Spawner::Tokio(_) => Net::Tokio,
        }
    }
}

/// A spawned task, as smol's behave on either runtime: awaiting it gives
/// its output (a panic in it resumes in the awaiter, as does a runtime
/// gone before it ended), dropping it cancels it, [`Task::detach`] lets it
/// run on.
#[must_use = "a dropped task is cancelled"]
pub(super) enum Task<T> {
    Smol(smol::Task<T>),
    #[cfg(feature = "tokio")]
    Tokio(Aborting<T>),
}

/// A tokio task aborted when dropped; `None` once detached or finished.
#[cfg(feature = "tokio")]
pub(super) struct Aborting<T>(Option<tokio::task::JoinHandle<T>>);

#[cfg(feature = "tokio")]
impl<T> Drop for Aborting<T> {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.abort();
        }
    }
}

impl<T> Task<T> {
    /// Lets the task run on without anyone awaiting it.
    pub fn detach(self) {
        match self {
            Task::Smol(t) => t.detach(),
            #[cfg(feature = "tokio")]
            Task::Tokio(mut t) => drop(t.0.take()),
        }
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        match self {
            Task::Smol(t) => t.is_finished(),
            #[cfg(feature = "tokio")]
            Task::Tokio(t) => t.0.as_ref().is_none_or(|t| t.is_finished()),
        }
    }
}

impl<T> Future for Task<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.get_mut() {
            Task::Smol(t) => Pin::new(t).poll(cx),
            #[cfg(feature = "tokio")]
            Task::Tokio(Aborting(slot)) => {
                let Some(t) = slot else {
                    return Poll::Pending;
                };
                match std::task::ready!(Pin::new(t).poll(cx)) {
                    Ok(v) => {
                        *slot = None;
                        Poll::Ready(v)
                    }
                    Err(e) => match e.try_into_panic() {
                        Ok(panic) => std::panic::resume_unwind(panic),
                        // Only the runtime cancels (it shut down, or was gone
                        // when the task was spawned): the awaiter may live
                        // elsewhere and would wait forever. A smol task whose
                        // executor went panics its awaiter too.
                        Err(_) => panic!("a node task was cancelled: its tokio runtime shut down"),
                    },
                }
            }
        }
    }
}

#[cfg(all(test, feature = "tokio"))]
mod tests {
    use super::*;
    use smol::future::FutureExt as _;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    /// Tokio tasks keep smol's contract: output, cancel on drop, detach,
    /// and a panic resumed in the awaiter.
    #[test]
    fn tokio_tasks_behave_as_smol_tasks() {
        let runtime = crate::__testutil::current_thread_runtime();
        let spawner = Spawner::Tokio(runtime.handle().clone());
        runtime.block_on(async {
            assert_eq!(spawner.spawn(async { 7 }).await, 7);

            let ran = Arc::new(AtomicBool::new(false));
            let flag = ran.clone();
            let later = async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                flag.store(true, Ordering::SeqCst);
            };
            drop(spawner.spawn(later));
            let flag = Arc::new(AtomicBool::new(false));
            let set = flag.clone();
            spawner
                .spawn(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    set.store(true, Ordering::SeqCst);
                })
                .detach();
            tokio::time::sleep(Duration::from_millis(80)).await;
            assert!(!ran.load(Ordering::SeqCst), "a dropped task is cancelled");
            assert!(flag.load(Ordering::SeqCst), "a detached task runs on");

            let done = spawner.spawn(async {});
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert!(done.is_finished());

            let panicked = spawner.spawn(async { panic!("boom") });
            let caught = std::panic::AssertUnwindSafe(panicked).catch_unwind().await;
            assert!(caught.is_err(), "the panic reaches the awaiter");
        });
    }
}
