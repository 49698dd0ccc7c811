//! The sessions' wake-ups: on a smol executor, one timer for all of them.
//!
//! Arming an async-io timer wakes the reactor's thread. A session re-arms
//! its wake-up after each frame (the next ping waits for a quiet interval),
//! so hundreds of sessions meant hundreds of reactor wake-ups per wave of
//! ticks, each a context switch. Here a session's [`Sleep`] puts its
//! deadline in a table shared by the executor's sessions; one task keeps a
//! single async-io timer at the earliest deadline, re-arms it only when the
//! earliest moves, and wakes whoever is due.
//!
//! On tokio a session keeps a tokio sleep of its own: re-arming one is a
//! change to the runtime's timer wheel, which wakes no thread.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use smol::channel::{self, Receiver, Sender};
use smol::{Executor, Timer};

use super::spawner::Spawner;

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
    pub fn of(executor: Option<&Arc<Executor<'static>>>) -> Timers {
        match executor {
            None => {
                static GLOBAL: OnceLock<Timers> = OnceLock::new();
                GLOBAL
                    .get_or_init(|| Timers::start(&Spawner::Global))
                    .clone()
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
                let timers = Timers::start(&Spawner::On(executor.clone()));
                registry.push((Arc::downgrade(executor), timers.clone()));
                timers
            }
        }
    }

    fn start(spawner: &Spawner) -> Timers {
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

/// A session's wake-up at one instant, re-armed with [`Sleep::set_at`]:
/// in its executor's table, or on tokio's timer wheel.
pub(super) enum Sleep {
    Shared(SharedSleep),
    #[cfg(feature = "tokio")]
    Tokio {
        /// Made at the first `set_at`, in the runtime's context.
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
        at: Option<Instant>,
    },
}

impl Sleep {
    /// A sleep for a task `spawner` runs, that never ends until
    /// [`Sleep::set_at`] gives it a time.
    pub fn on(spawner: &Spawner) -> Sleep {
        match spawner {
            #[cfg(feature = "tokio")]
            Spawner::Tokio(_) => Sleep::Tokio {
                sleep: None,
                at: None,
            },
            Spawner::Global => Sleep::Shared(Timers::of(None).sleep()),
            Spawner::On(executor) => Sleep::Shared(Timers::of(Some(executor)).sleep()),
        }
    }

    /// Wakes at `at` from now on (never for `None`). Setting the time it
    /// already waits for changes nothing; once it has ended, setting any
    /// time arms it again.
    pub fn set_at(&mut self, at: Option<Instant>) {
        match self {
            Sleep::Shared(s) => s.set_at(at),
            #[cfg(feature = "tokio")]
            Sleep::Tokio { sleep, at: armed } => {
                if at == *armed {
                    return;
                }
                *armed = at;
                match (at, sleep.as_mut()) {
                    (Some(at), Some(s)) => s.as_mut().reset(at.into()),
                    (Some(at), None) => {
                        *sleep = Some(Box::pin(tokio::time::sleep_until(at.into())))
                    }
                    // Off the wheel, so that the old time wakes no one.
                    (None, _) => *sleep = None,
                }
            }
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            Sleep::Shared(s) => Pin::new(s).poll(cx),
            #[cfg(feature = "tokio")]
            Sleep::Tokio { sleep, at } => match (sleep, at.is_some()) {
                (Some(s), true) => {
                    let ended = s.as_mut().poll(cx);
                    if ended.is_ready() {
                        *at = None;
                    }
                    ended
                }
                _ => Poll::Pending,
            },
        }
    }
}

/// A wake-up in its executor's table.
pub(super) struct SharedSleep {
    timers: Timers,
    at: Option<Instant>,
    key: Option<(Instant, u64)>,
}

impl SharedSleep {
    fn set_at(&mut self, at: Option<Instant>) {
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

    /// On tokio: a sleep ends once at its time, then waits to be armed
    /// again; a cleared one never ends.
    #[cfg(feature = "tokio")]
    #[test]
    fn a_tokio_sleep_ends_once_and_a_cleared_one_never() {
        use tokio::time::timeout;
        let runtime = crate::__testutil::current_thread_runtime();
        let spawner = Spawner::Tokio(runtime.handle().clone());
        runtime.block_on(async {
            let start = Instant::now();
            let mut sleep = Sleep::on(&spawner);
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
