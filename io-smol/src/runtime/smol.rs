//! The runtime on smol: tasks on smol's global executor or one the
//! embedder drives, sockets on async-io's reactor, and the sessions'
//! wake-ups on one timer for all of them.
//!
//! Arming an async-io timer wakes the reactor's thread. A session re-arms
//! its wake-up after each frame (the next ping waits for a quiet interval),
//! so hundreds of sessions meant hundreds of reactor wake-ups per wave of
//! ticks, each a context switch. Here a session's [`SharedSleep`] puts its
//! deadline in a table shared by the executor's sessions; one task keeps a
//! single async-io timer at the earliest deadline, re-arms it only when the
//! earliest moves, and wakes whoever is due.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use smol::channel::{self, Receiver, Sender};
use smol::{Executor, Timer};

/// Where a node's tasks run on smol: the global executor, or one the
/// embedder drives.
#[derive(Clone)]
pub(crate) enum Smol {
    /// `smol::spawn`.
    Global,
    /// An executor the embedder drives.
    On(Arc<Executor<'static>>),
}

impl Smol {
    /// Spawns `future` on this executor.
    pub fn spawn<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> smol::Task<T> {
        match self {
            Smol::Global => smol::spawn(future),
            Smol::On(executor) => executor.spawn(future),
        }
    }

    /// A re-armable wake-up in this executor's table.
    pub fn sleep(&self) -> SharedSleep {
        match self {
            Smol::Global => Timers::of(None).sleep(),
            Smol::On(executor) => Timers::of(Some(executor)).sleep(),
        }
    }
}

/// Ends after `duration` (async-io's timer: rare one-shot waits).
pub(crate) async fn sleep_for(duration: Duration) {
    Timer::after(duration).await;
}

/// A TCP connection to `addr` on async-io's reactor.
pub(crate) async fn connect(addr: (&str, u16)) -> std::io::Result<smol::net::TcpStream> {
    smol::net::TcpStream::connect(addr).await
}

/// The deadlines of one executor's sessions, and the task that serves them.
#[derive(Clone)]
pub(super) struct Timers(Arc<Shared>);

struct Shared {
    table: Mutex<Table>,
    /// Tells the task that a deadline earlier than its timer arrived.
    kick: Sender<()>,
}

#[derive(Default)]
struct Table {
    waiting: BTreeMap<(Instant, u64), Waker>,
    next_id: u64,
    /// What the task's timer is set to.
    armed: Option<Instant>,
}

impl Timers {
    /// The timers of the smol executor `executor` names (smol's global one
    /// for `None`), started on first use.
    fn of(executor: Option<&Arc<Executor<'static>>>) -> Timers {
        match executor {
            None => {
                static GLOBAL: OnceLock<Timers> = OnceLock::new();
                GLOBAL.get_or_init(|| Timers::start(&Smol::Global)).clone()
            }
            Some(executor) => {
                // One table per executor, found by the executor's address.
                type Registry = Vec<(Weak<Executor<'static>>, Timers)>;
                static REGISTRY: Mutex<Registry> = Mutex::new(Vec::new());
                let mut registry = REGISTRY.lock().expect("not poisoned");
                registry.retain(|(e, _)| e.strong_count() > 0);
                if let Some((_, t)) = registry
                    .iter()
                    .find(|(e, _)| std::ptr::eq(e.as_ptr(), Arc::as_ptr(executor)))
                {
                    return t.clone();
                }
                let timers = Timers::start(&Smol::On(executor.clone()));
                registry.push((Arc::downgrade(executor), timers.clone()));
                timers
            }
        }
    }

    fn start(spawner: &Smol) -> Timers {
        let (kick, kicked) = channel::bounded(1);
        let shared = Arc::new(Shared {
            table: Mutex::new(Table::default()),
            kick,
        });
        spawner
            .spawn(serve(Arc::downgrade(&shared), kicked))
            .detach();
        Timers(shared)
    }

    /// A sleep that never ends until [`Sleep::set_at`] gives it a time.
    pub fn sleep(&self) -> SharedSleep {
        SharedSleep {
            timers: self.clone(),
            at: None,
            key: None,
        }
    }
}

/// The task: one async-io timer at the earliest deadline; wakes the due.
async fn serve(shared: Weak<Shared>, kicked: Receiver<()>) {
    let mut timer = Timer::never();
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        let (due, earliest) = {
            let mut table = shared.table.lock().expect("not poisoned");
            let later = table.waiting.split_off(&(now, u64::MAX));
            let due = std::mem::replace(&mut table.waiting, later);
            let earliest = table.waiting.keys().next().map(|(at, _)| *at);
            table.armed = earliest;
            (due, earliest)
        };
        drop(shared);
        for (_, waker) in due {
            waker.wake();
        }
        // Fired, or kicked by an earlier deadline: set to the earliest again.
        match earliest {
            Some(at) => timer.set_at(at),
            None => timer = Timer::never(),
        }
        let closed = smol::future::or(
            async {
                (&mut timer).await;
                false
            },
            async { kicked.recv().await.is_err() },
        )
        .await;
        if closed {
            return;
        }
    }
}

/// A wake-up in its executor's table.
pub(crate) struct SharedSleep {
    timers: Timers,
    at: Option<Instant>,
    key: Option<(Instant, u64)>,
}

impl SharedSleep {
    /// Wakes at `at` from now on (never for `None`).
    pub fn set_at(&mut self, at: Option<Instant>) {
        if at != self.at {
            self.remove();
            self.at = at;
        }
    }

    fn remove(&mut self) {
        if let Some(key) = self.key.take() {
            let mut table = self.timers.0.table.lock().expect("not poisoned");
            table.waiting.remove(&key);
        }
    }
}

impl Future for SharedSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(at) = self.at else {
            return Poll::Pending;
        };
        if Instant::now() >= at {
            self.remove();
            self.at = None;
            return Poll::Ready(());
        }
        let shared = self.timers.0.clone();
        let mut table = shared.table.lock().expect("not poisoned");
        let key = match self.key {
            Some(key) => key,
            None => {
                table.next_id += 1;
                (at, table.next_id)
            }
        };
        // Inserted again if the task already woke and dropped it.
        match table.waiting.get_mut(&key) {
            Some(w) if w.will_wake(cx.waker()) => {}
            Some(w) => w.clone_from(cx.waker()),
            None => {
                table.waiting.insert(key, cx.waker().clone());
                if table.armed.is_none_or(|armed| at < armed) {
                    // Full means a kick is already on its way.
                    let _ = shared.kick.try_send(());
                }
            }
        }
        drop(table);
        self.key = Some(key);
        Poll::Pending
    }
}

impl Drop for SharedSleep {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sleeps_end_in_order_and_rearming_moves_them() {
        let executor = Arc::new(Executor::new());
        let timers = Timers::of(Some(&executor));
        assert!(Arc::ptr_eq(&Timers::of(Some(&executor)).0, &timers.0));
        smol::future::block_on(executor.run(async {
            let start = Instant::now();
            let mut late = timers.sleep();
            let mut early = timers.sleep();
            late.set_at(Some(start + Duration::from_millis(120)));
            early.set_at(Some(start + Duration::from_millis(40)));
            let first = smol::future::or(
                async {
                    (&mut late).await;
                    "late"
                },
                async {
                    (&mut early).await;
                    "early"
                },
            )
            .await;
            assert_eq!(first, "early");
            assert!(start.elapsed() >= Duration::from_millis(40));
            // Moved earlier after it was registered: the task is told.
            late.set_at(Some(Instant::now() + Duration::from_millis(10)));
            (&mut late).await;
            assert!(start.elapsed() < Duration::from_millis(120));
            // A sleep with no time never ends; a dropped one leaves nothing.
            let mut never = timers.sleep();
            let ended = smol::future::or(
                async {
                    (&mut never).await;
                    true
                },
                async {
                    Timer::after(Duration::from_millis(30)).await;
                    false
                },
            )
            .await;
            assert!(!ended);
        }));
        assert!(timers.0.table.lock().unwrap().waiting.is_empty());
    }

    #[test]
    fn many_sleeps_on_one_grid_instant_all_end() {
        let executor = Arc::new(Executor::new());
        let timers = Timers::of(Some(&executor));
        let at = Instant::now() + Duration::from_millis(50);
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let mut sleep = timers.sleep();
                sleep.set_at(Some(at));
                executor.spawn(sleep)
            })
            .collect();
        smol::future::block_on(executor.run(async {
            for t in tasks {
                t.await;
            }
        }));
        assert!(Instant::now() >= at);
    }
}
