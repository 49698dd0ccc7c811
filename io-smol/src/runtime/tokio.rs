//! The runtime on tokio: tasks on a runtime the embedder hands over, and
//! its sockets and timers on that runtime's reactor, so that a
//! current-thread runtime serves every session from one thread. A
//! session's wake-up is a tokio sleep of its own: re-arming one is a change
//! to the runtime's timer wheel, which wakes no thread.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A tokio task aborted when dropped; `None` once detached or finished.
pub(crate) struct Aborting<T>(pub Option<tokio::task::JoinHandle<T>>);

impl<T> Drop for Aborting<T> {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.abort();
        }
    }
}

impl<T> Aborting<T> {
    /// Lets the task run on without anyone awaiting it.
    pub fn detach(mut self) {
        drop(self.0.take());
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.0.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl<T> Future for Aborting<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let slot = &mut self.get_mut().0;
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

/// Spawns `future` on `runtime`.
pub(crate) fn spawn<T: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    future: impl Future<Output = T> + Send + 'static,
) -> Aborting<T> {
    Aborting(Some(runtime.spawn(future)))
}

/// A session's wake-up on the timer wheel, re-armed with [`set_at`](Self::set_at).
#[derive(Default)]
pub(crate) struct TokioSleep {
    /// Made at the first `set_at`, in the runtime's context.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    at: Option<Instant>,
}

impl TokioSleep {
    /// Wakes at `at` from now on (never for `None`).
    pub fn set_at(&mut self, at: Option<Instant>) {
        if at == self.at {
            return;
        }
        self.at = at;
        match (at, self.sleep.as_mut()) {
            (Some(at), Some(s)) => s.as_mut().reset(at.into()),
            (Some(at), None) => self.sleep = Some(Box::pin(tokio::time::sleep_until(at.into()))),
            // Off the wheel, so that the old time wakes no one.
            (None, _) => self.sleep = None,
        }
    }
}

impl Future for TokioSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        match (&mut this.sleep, this.at.is_some()) {
            (Some(s), true) => {
                let ended = s.as_mut().poll(cx);
                if ended.is_ready() {
                    this.at = None;
                }
                ended
            }
            _ => Poll::Pending,
        }
    }
}

/// Ends after `duration`, on the runtime of the task that awaits it.
pub(crate) async fn sleep_for(duration: Duration) {
    tokio::time::sleep(duration).await;
}

/// A TCP connection to `addr` on the current runtime's reactor.
pub(crate) async fn connect(
    addr: (&str, u16),
) -> std::io::Result<async_tungstenite::tokio::TokioAdapter<tokio::net::TcpStream>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    Ok(async_tungstenite::tokio::TokioAdapter::new(stream))
}
