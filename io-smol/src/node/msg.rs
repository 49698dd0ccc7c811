//! What the driver task hears: the application's commands, its socket
//! tasks' reports and finished invokes, all over one channel so the driver
//! handles them in arrival order; and, beside it, when each socket last
//! heard a ping or pong ([`Heard`]), which needs no order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Utf8Bytes;
use clawnode_core::{AttemptId, InvokeOutcome, SessionConfig, SocketError, Time};
use serde_json::Value;
use smol::channel::{self, Receiver, Sender, TrySendError};

use super::admission::Slot;
use super::error::RequestFailure;
use crate::clock::Clock;
use crate::event::Event;
use crate::frame_limit::FrameLimit;

/// Where the answer to a request goes.
pub(super) type Reply = Sender<Result<Value, RequestFailure>>;

/// What the application's [`NodeHandle`](crate::NodeHandle), or a running
/// command, asks of the driver.
pub(super) enum Control {
    Request {
        method: String,
        params: Value,
        timeout: Option<Duration>,
        reply: Reply,
    },
    Event {
        event: String,
        payload: Option<Value>,
        reply: Reply,
    },
    Reconfigure {
        config: Box<SessionConfig>,
        reply: Sender<bool>,
    },
    /// A chunk of a running invoke's output stream.
    Progress {
        id: String,
        chunk: String,
    },
    Wake,
    Stop,
}

/// Frames that may wait for a socket's writer: a gateway that stops
/// reading fills the queue, and the driver then fails its socket instead of
/// letting the queue grow.
pub(super) const WRITE_QUEUE: usize = 256;

/// What the driver asks a socket task to write.
pub(super) enum Outgoing {
    Text(String),
    Ping,
    Close(u16, String),
}

/// An open socket, as the driver takes it over.
pub(super) struct Opened {
    /// The driver writes through it from now on.
    pub writer: Sender<Outgoing>,
    /// Raised on admission.
    pub limit: FrameLimit,
    /// Told each time the driver has handled a frame.
    pub handled: Sender<()>,
    /// Stamped with each ping or pong the socket reads.
    pub heard: Heard,
    /// The handshake slot, freed at hello-ok or when the socket goes.
    pub slot: Slot,
}

/// When a socket last heard a WebSocket ping or pong from the gateway.
///
/// Those only prove the gateway alive, and the session needs that proof
/// only when its next deadline comes (a ping due, a pong awaited): the
/// socket task stamps the time here, and the session takes it at its next
/// wake-up, instead of being woken for each. That is most of what an idle
/// session hears: the gateway's pings, and the pongs to ours.
#[derive(Clone, Default)]
pub(super) struct Heard(Arc<AtomicU64>);

impl Heard {
    /// The gateway was heard now.
    pub fn mark(&self) {
        // Milliseconds on the process clock, plus one: zero is "nothing".
        let ms = Clock::process().now().as_millis().saturating_add(1);
        // Nothing else is published through it: relaxed is enough.
        self.0.store(ms, Ordering::Relaxed);
    }

    /// When the gateway was last heard, if it was since the last take; up
    /// to a millisecond early, never late.
    pub fn take(&self) -> Option<Instant> {
        match self.0.swap(0, Ordering::Relaxed) {
            0 => None,
            ms => Some(Clock::process().instant_of(Time::from_millis(ms - 1))),
        }
    }
}

/// What a socket task reports about its socket.
pub(super) enum SocketEvent {
    /// Waiting for a handshake slot before opening.
    Queued,
    /// Got a slot after waiting; opening now.
    Dialing,
    /// Open.
    Opened(Box<Opened>),
    /// A text frame, as the WebSocket read it: the core borrows it, so it
    /// is never copied.
    Frame(Utf8Bytes),
    Closed {
        code: Option<u16>,
        reason: String,
    },
    Failed(Box<SocketError>),
}

/// One message to the driver task.
pub(super) enum Msg {
    /// Tagged with its attempt: a late report of an old socket must not be
    /// taken for the current one's.
    Socket(AttemptId, SocketEvent),
    InvokeDone {
        id: String,
        outcome: Box<InvokeOutcome>,
    },
    Control(Box<Control>),
}

/// How many events one subscriber's stream holds before the driver starts
/// dropping them (see [`Subscriber::offer`]).
///
/// Gateway events arrive as fast as the peer sends them (a flood of
/// broadcasts, or of `seq` gaps, docs/protocol.md §2), and a reader can stall
/// for good (`clawnode` writing to a pipe nobody reads): an unbounded stream
/// would grow without limit. 1024 events are a few hundred KiB at most and
/// cover any burst a reader that keeps up at all can absorb.
pub(crate) const EVENT_BUFFER: usize = 1024;

/// One event stream handed out, and how many events it has missed.
pub(super) struct Subscriber {
    tx: Sender<Event>,
    /// Events dropped since the last [`Event::Lagged`] notice went out.
    dropped: u64,
}

impl Subscriber {
    /// Queues `event` without ever waiting; `false` once the receiver is
    /// gone (the subscriber is then forgotten).
    ///
    /// Overflow policy: when the stream is full the *newest* event is
    /// dropped and counted. The driver cannot take back what is already
    /// queued, and must never wait for a reader (it would stop serving the
    /// gateway, pings included). The count is delivered as one
    /// [`Event::Lagged`] once there is room again, ahead of the next event
    /// that fits (or when the session ends), and until then every event is
    /// dropped, so the notice sits exactly where the stream has its hole and
    /// says how big it is: nothing is lost silently.
    pub(super) fn offer(&mut self, event: Event) -> bool {
        if !self.flush_lagged() {
            return false;
        }
        if self.dropped > 0 {
            // Still no room for the notice: this event joins the hole.
            self.dropped += 1;
            return true;
        }
        self.push(event)
    }

    /// Delivers the pending [`Event::Lagged`] notice if there is room
    /// (the driver retries while one waits: the notice must not wait for a
    /// next event that may never come);
    /// `false` once the receiver is gone.
    pub(super) fn flush_lagged(&mut self) -> bool {
        if self.dropped == 0 {
            return true;
        }
        let lagged = Event::Lagged {
            dropped: self.dropped,
        };
        match self.tx.try_send(lagged) {
            Ok(()) => {
                self.dropped = 0;
                true
            }
            Err(TrySendError::Full(_)) => true,
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// Whether a [`Event::Lagged`] notice still waits for room.
    pub(super) fn lagging(&self) -> bool {
        self.dropped > 0
    }

    fn push(&mut self, event: Event) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

/// The event streams handed out, shared by the handle (which adds to them)
/// and the driver (which sends on them and drops the closed ones).
pub(super) type Subscribers = Arc<Mutex<Vec<Subscriber>>>;

/// A new event stream, bounded to [`EVENT_BUFFER`] events.
pub(super) fn subscribe(subs: &Subscribers) -> Receiver<Event> {
    subscribe_with(subs, EVENT_BUFFER)
}

/// A new event stream holding at most `capacity` events.
pub(super) fn subscribe_with(subs: &Subscribers, capacity: usize) -> Receiver<Event> {
    let (tx, rx) = channel::bounded(capacity);
    subs.lock()
        .expect("not poisoned")
        .push(Subscriber { tx, dropped: 0 });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The driver's inbox is an unbounded channel, which keeps a block of
    /// 31 slots allocated for as long as the session lives: large or rare
    /// payloads are boxed so that a slot stays small.
    #[test]
    fn a_message_is_small() {
        assert!(
            std::mem::size_of::<Msg>() <= 48,
            "{}",
            std::mem::size_of::<Msg>()
        );
    }

    fn config(changed: bool) -> Event {
        Event::Config { changed }
    }

    fn drain(rx: &Receiver<Event>) -> Vec<Event> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn a_full_stream_drops_the_newest_and_says_how_many_when_room_frees_up() {
        let subs = Subscribers::default();
        let rx = subscribe_with(&subs, 3);
        let mut guard = subs.lock().unwrap();
        let sub = &mut guard[0];
        for i in 0..10 {
            assert!(sub.offer(Event::Invoke {
                id: i.to_string(),
                command: "c".into(),
                ok: true,
                ms: 0,
            }));
        }
        let first: Vec<String> = drain(&rx)
            .into_iter()
            .map(|e| match e {
                Event::Invoke { id, .. } => id,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(first, ["0", "1", "2"], "the oldest are kept, in order");
        // Room again: the notice comes first, then the event.
        assert!(sub.offer(config(true)));
        assert_eq!(
            drain(&rx),
            [Event::Lagged { dropped: 7 }, config(true)],
            "7 dropped, counted once"
        );
        // Nothing pending: no notice.
        assert!(sub.offer(config(false)));
        assert_eq!(drain(&rx), [config(false)]);
    }

    #[test]
    fn a_notice_that_does_not_fit_keeps_counting() {
        let subs = Subscribers::default();
        let rx = subscribe_with(&subs, 2);
        let mut guard = subs.lock().unwrap();
        let sub = &mut guard[0];
        for _ in 0..4 {
            sub.offer(config(true));
        }
        // One slot frees: the notice takes it, the event is counted anew.
        rx.try_recv().unwrap();
        assert!(sub.offer(config(false)));
        assert_eq!(
            drain(&rx),
            [config(true), Event::Lagged { dropped: 2 }],
            "the notice took the only free slot"
        );
        // The event that did not fit is reported by the next notice.
        assert!(sub.flush_lagged());
        assert_eq!(drain(&rx), [Event::Lagged { dropped: 1 }]);
        // A closed stream is reported, so the driver forgets it.
        drop(rx);
        assert!(!sub.offer(config(true)));
    }
}
