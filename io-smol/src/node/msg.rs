//! What the driver task hears: the application's commands, its socket
//! tasks' reports and finished invokes, all over one channel so the driver
//! handles them in arrival order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clawnode_core::{AttemptId, InvokeOutcome, SessionConfig, SocketError};
use serde_json::Value;
use smol::channel::{self, Receiver, Sender};

use super::error::RequestFailure;
use crate::event::Event;
use crate::frame_limit::FrameLimit;

/// Where the answer to a request goes.
pub(super) type Reply = Sender<Result<Value, RequestFailure>>;

/// A command from the application's [`NodeHandle`](crate::NodeHandle).
pub(super) enum Command {
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
    Wake,
    Stop,
}

/// What the driver asks a socket task to write.
pub(super) enum Outgoing {
    Text(String),
    Ping,
    Close(u16, String),
}

/// What a socket task reports about its socket.
pub(super) enum SocketEvent {
    /// Open: the driver writes through the sender from now on, raises the
    /// inbound frame limit on admission, and says through the last sender
    /// when it has handled a frame.
    Opened(Sender<Outgoing>, FrameLimit, Sender<()>),
    Frame(String),
    /// A pong: the gateway answered a ping.
    Pong,
    Closed {
        code: Option<u16>,
        reason: String,
    },
    Failed(SocketError),
}

/// One message to the driver task.
pub(super) enum Msg {
    /// Tagged with its attempt: a late report of an old socket must not be
    /// taken for the current one's.
    Socket(AttemptId, SocketEvent),
    InvokeDone {
        id: String,
        outcome: InvokeOutcome,
    },
    Command(Command),
}

/// The event streams handed out, shared by the handle (which adds to them)
/// and the driver (which sends on them and drops the closed ones).
pub(super) type Subscribers = Arc<Mutex<Vec<Sender<Event>>>>;

/// A new event stream.
pub(super) fn subscribe(subs: &Subscribers) -> Receiver<Event> {
    let (tx, rx) = channel::unbounded();
    subs.lock().expect("not poisoned").push(tx);
    rx
}
