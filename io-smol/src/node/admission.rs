//! Admission pacing: a limit on sessions handshaking at once, shared by
//! every node built with the same [`Admission`] (by default, every node of
//! the process talking to the same gateway), so that a process starting
//! many nodes never stampedes a gateway (docs/protocol.md §5).
//!
//! A session takes a slot before it opens its socket and gives it back at
//! hello-ok, or when the attempt ends. While it waits for one, the core
//! holds the attempt as queued (`Input::SocketQueued`), so the wait does
//! not count against the open deadline.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use clawnode_core::GatewayUrl;

use smol::lock::{Semaphore, SemaphoreGuardArc};

/// Sessions handshaking at once by default, per gateway, across the
/// whole process.
///
/// The gateway refuses a 33rd unauthenticated socket per client address
/// with HTTP 503 (docs/protocol.md §9); half of that leaves room for other
/// clients behind the same address.
pub const DEFAULT_HANDSHAKES: usize = 16;

/// A limit on sessions handshaking at once (from opening the socket to
/// hello-ok), shared by every node given a clone of it.
///
/// Nodes share [`Admission::for_gateway`] of the gateway they connect to
/// unless told otherwise ([`NodeBuilder::admission`](crate::NodeBuilder::admission)).
/// Slots go to waiting sessions in the order they asked: a new attempt
/// never takes a freed slot from one already queued.
#[derive(Clone)]
pub struct Admission(Arc<Inner>);

struct Inner {
    slots: Arc<Semaphore>,
    limit: usize,
    in_use: AtomicUsize,
    peak: AtomicUsize,
    /// Sessions waiting for a slot.
    waiting: AtomicUsize,
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
            waiting: AtomicUsize::new(0),
        }))
    }

    /// The limit of [`DEFAULT_HANDSHAKES`] that this process's nodes
    /// connecting to `url`'s host and port share by default: the gateway
    /// counts unauthenticated sockets per client address, and one slow
    /// gateway must not hold back nodes of another.
    pub fn for_gateway(url: &GatewayUrl) -> Self {
        static GATEWAYS: Mutex<BTreeMap<(String, u16), Weak<Inner>>> = Mutex::new(BTreeMap::new());
        let mut gateways = GATEWAYS.lock().expect("not poisoned");
        let key = (url.host().to_owned(), url.port());
        if let Some(inner) = gateways.get(&key).and_then(Weak::upgrade) {
            return Admission(inner);
        }
        gateways.retain(|_, w| w.strong_count() > 0);
        let admission = Admission::new(DEFAULT_HANDSHAKES);
        gateways.insert(key, Arc::downgrade(&admission.0));
        admission
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

    /// A slot, if one is free now and nobody is waiting for one.
    pub(crate) fn try_enter(&self) -> Option<Slot> {
        if self.0.waiting.load(Ordering::SeqCst) > 0 {
            return None;
        }
        self.0.slots.try_acquire_arc().map(|g| self.slot(g))
    }

    /// A slot, once one is free, after those who asked before.
    pub(crate) async fn enter(&self) -> Slot {
        self.0.waiting.fetch_add(1, Ordering::SeqCst);
        // Counted out however the wait ends (a cancelled attempt drops it).
        let _waiting = Waiting(&self.0.waiting);
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

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
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
    fn a_gateway_limit_is_shared_by_its_nodes_and_not_by_others() {
        let url = |u: &str| GatewayUrl::parse(u).unwrap();
        let a = Admission::for_gateway(&url("wss://gw.example:18789"));
        assert_eq!(a.limit(), DEFAULT_HANDSHAKES);
        let same = Admission::for_gateway(&url("wss://gw.example:18789/"));
        assert!(Arc::ptr_eq(&a.0, &same.0));
        let other = Admission::for_gateway(&url("wss://gw.example:18790"));
        assert!(!Arc::ptr_eq(&a.0, &other.0));
    }

    #[test]
    fn a_freed_slot_goes_to_the_waiter_not_a_newcomer() {
        let a = Admission::new(1);
        let held = a.try_enter().unwrap();
        let waiter = smol::spawn({
            let a = a.clone();
            async move { a.enter().await }
        });
        while a.0.waiting.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(!waiter.is_finished());
        drop(held);
        assert!(a.try_enter().is_none(), "a newcomer jumped the queue");
        let got = smol::block_on(waiter);
        assert_eq!(
            (a.handshaking(), a.0.waiting.load(Ordering::SeqCst)),
            (1, 0)
        );
        drop(got);
        assert!(a.try_enter().is_some());
    }
}
