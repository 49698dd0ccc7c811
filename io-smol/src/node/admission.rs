//! Admission pacing: a limit on sessions handshaking at once, shared by
//! every node built with the same [`Admission`], so that a process starting
//! many nodes never stampedes a gateway (docs/protocol.md §5).
//!
//! A session takes a slot before it opens its socket and gives it back at
//! hello-ok, or when the attempt ends. While it waits for one, the core
//! holds the attempt as queued (`Input::SocketQueued`), so the wait does
//! not count against the open deadline.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use smol::lock::{Semaphore, SemaphoreGuardArc};

/// Sessions handshaking at once by default, across the whole process.
/// The gateway refuses a 33rd unauthenticated socket per client address
/// with HTTP 503 (docs/protocol.md §9); half of that leaves room for other
/// clients behind the same address.
pub const DEFAULT_HANDSHAKES: usize = 16;

/// A limit on sessions handshaking at once (from opening the socket to
/// hello-ok), shared by every node given a clone of it.
///
/// Nodes use [`Admission::process`] unless told otherwise
/// ([`NodeBuilder::admission`](crate::NodeBuilder::admission)).
#[derive(Clone)]
pub struct Admission(Arc<Inner>);

struct Inner {
    slots: Arc<Semaphore>,
    limit: usize,
    in_use: AtomicUsize,
    peak: AtomicUsize,
}

impl Admission {
    /// A limit of `limit` handshakes at once (at least 1).
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(1);
        Admission(Arc::new(Inner {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            in_use: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }))
    }

    /// The process-wide limit, [`DEFAULT_HANDSHAKES`], that nodes share
    /// by default.
    pub fn process() -> Self {
        static PROCESS: OnceLock<Admission> = OnceLock::new();
        PROCESS
            .get_or_init(|| Admission::new(DEFAULT_HANDSHAKES))
            .clone()
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.0.limit
    }

    /// Sessions handshaking now.
    pub fn handshaking(&self) -> usize {
        self.0.in_use.load(Ordering::Relaxed)
    }

    /// The most sessions ever handshaking at once under this limit.
    pub fn peak(&self) -> usize {
        self.0.peak.load(Ordering::Relaxed)
    }

    /// A slot, if one is free now.
    pub(crate) fn try_enter(&self) -> Option<Slot> {
        self.0.slots.try_acquire_arc().map(|g| self.slot(g))
    }

    /// A slot, once one is free.
    pub(crate) async fn enter(&self) -> Slot {
        let guard = self.0.slots.acquire_arc().await;
        self.slot(guard)
    }

    fn slot(&self, guard: SemaphoreGuardArc) -> Slot {
        let now = self.0.in_use.fetch_add(1, Ordering::Relaxed) + 1;
        self.0.peak.fetch_max(now, Ordering::Relaxed);
        Slot {
            _guard: guard,
            owner: self.0.clone(),
        }
    }
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("limit", &self.limit())
            .field("handshaking", &self.handshaking())
            .finish()
    }
}

/// One session's handshake slot; dropping it frees the slot.
pub(crate) struct Slot {
    _guard: SemaphoreGuardArc,
    owner: Arc<Inner>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.owner.in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_limited_counted_and_freed_on_drop() {
        let a = Admission::new(2);
        let one = a.try_enter().expect("free");
        let two = a.try_enter().expect("free");
        assert!(a.try_enter().is_none(), "full");
        assert_eq!((a.handshaking(), a.peak()), (2, 2));
        drop(one);
        assert_eq!(a.handshaking(), 1);
        let three = smol::block_on(a.enter());
        assert_eq!((a.handshaking(), a.peak()), (2, 2));
        drop((two, three));
        assert_eq!(a.handshaking(), 0);
        assert_eq!(Admission::new(0).limit(), 1, "never zero");
    }

    #[test]
    fn a_waiter_gets_the_slot_a_drop_frees() {
        let a = Admission::new(1);
        let held = a.try_enter().unwrap();
        let waiter = smol::spawn({
            let a = a.clone();
            async move { a.enter().await }
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!waiter.is_finished());
        drop(held);
        let got = smol::block_on(waiter);
        assert_eq!(a.handshaking(), 1);
        drop(got);
    }

    #[test]
    fn the_process_limit_is_shared() {
        assert_eq!(Admission::process().limit(), DEFAULT_HANDSHAKES);
        assert!(Arc::ptr_eq(
            &Admission::process().0,
            &Admission::process().0
        ));
    }
}
