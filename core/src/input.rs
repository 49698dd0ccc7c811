//! What goes into the core: [`Input`] and the values it carries.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use crate::config::{Secret, SessionConfig};
use crate::pin::Pin;

/// Identifies one socket attempt. Strictly increasing within a `NodeState`;
/// every socket-scoped input names the attempt it belongs to, and input from
/// any attempt but the current one is ignored.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct AttemptId(pub u64);

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// An input to [`crate::NodeState::handle_input`].
// Inputs are consumed at once, never stored in bulk, so the size of the
// config variant costs nothing worth a box at every call site.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Input {
    /// Apply a session config. Equal to the current one: nothing happens.
    Config(SessionConfig),
    /// A device token the driver had stored for this gateway, device and
    /// role (or `None` when it has none). Used on the next connect; never
    /// causes a reconnect by itself. Feed it after the [`Input::Config`] it
    /// belongs to: a config with another URL forgets the stored token, so a
    /// token issued by one gateway is never sent to another.
    StoredDeviceToken(Option<Secret>),
    /// The driver holds the open of `attempt` until one of the handshake
    /// slots it shares with other sessions is free (docs/protocol.md §5,
    /// admission pacing). The open deadline is suspended: the attempt waits
    /// up to [`Timeouts::queue`](crate::Timeouts::queue) instead. A driver
    /// that does not pace never feeds it.
    SocketQueued {
        /// The attempt the socket belongs to.
        attempt: AttemptId,
    },
    /// The driver got a handshake slot for `attempt`, queued before, and
    /// starts opening its socket now: the open deadline starts over.
    SocketDialing {
        /// The attempt the socket belongs to.
        attempt: AttemptId,
    },
    /// The socket of `attempt` is open (TLS done, WebSocket upgraded).
    SocketOpened {
        /// The attempt the socket belongs to.
        attempt: AttemptId,
    },
    /// A text frame arrived on the socket of `attempt`.
    Frame {
        /// The attempt the socket belongs to.
        attempt: AttemptId,
        /// The frame's text.
        text: String,
    },
    /// A WebSocket pong, or the gateway's own ping, arrived on the socket
    /// of `attempt`: the gateway is alive. Drivers feed it: while
    /// [`Timeouts::pong`](crate::Timeouts::pong) is set, a ping that
    /// neither this nor a frame follows in time closes the socket, and the
    /// next ping waits for a quiet `ping_interval` after it.
    Pong {
        /// The attempt the socket belongs to.
        attempt: AttemptId,
    },
    /// The socket of `attempt` closed (the peer's close frame, or EOF).
    SocketClosed {
        /// The attempt the socket belongs to.
        attempt: AttemptId,
        /// The close code, when a close frame was received.
        code: Option<u16>,
        /// The close reason.
        reason: String,
    },
    /// The socket of `attempt` could not be opened or broke.
    SocketFailed {
        /// The attempt the socket belongs to.
        attempt: AttemptId,
        /// What went wrong.
        error: SocketError,
    },
    /// The application's answer to an [`Effect::Invoke`](crate::Effect::Invoke).
    InvokeResult {
        /// The invoke id from the effect.
        id: String,
        /// The answer.
        outcome: InvokeOutcome,
    },
    /// Streamed output of a running invoke (`node.invoke.progress`). It is
    /// sent in order on the invoke's own connection, cut into pieces of at
    /// most [`MAX_PROGRESS_CHUNK`](crate::MAX_PROGRESS_CHUNK) bytes of
    /// UTF-8, each with the invoke's next zero-based `seq`; an empty chunk
    /// is a heartbeat. Progress for an invoke that is not running on the
    /// admitted connection (answered, cancelled, expired, or of an earlier
    /// connection) is never sent: it is reported as
    /// [`Notification::ProgressDropped`](crate::Notification::ProgressDropped).
    InvokeProgress {
        /// The invoke id from the effect.
        id: String,
        /// The text.
        chunk: String,
    },
    /// The network came back: retry now if a retry is waiting.
    Wake,
    /// Stop: close the socket with 1000 and make no further attempt.
    Stop,
}

/// Why a socket failed, as the driver saw it.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum SocketError {
    /// The certificate's SHA-256 is not among the pins (terminal).
    PinMismatch {
        /// The pins that were accepted.
        expected: Vec<Pin>,
        /// The pin of the certificate presented.
        observed: Pin,
    },
    /// A TLS failure other than a pin mismatch (e.g. an invalid chain
    /// under system trust): terminal, since retrying will not fix it.
    Tls(String),
    /// Anything transient: refused, reset, DNS, timeout, protocol error.
    Io(String),
    /// The gateway refused the WebSocket upgrade as busy (HTTP 503 or 429):
    /// too many sockets are handshaking. Backed off without counting as a
    /// failure, so a busy stretch never pushes the session into the slow
    /// band (docs/protocol.md §5).
    Busy {
        /// The response's `Retry-After`, when it gave one.
        retry_after: Option<Duration>,
    },
}

/// The application's answer to an invoke.
#[derive(Clone, PartialEq, Debug)]
pub enum InvokeOutcome {
    /// Success, with an optional JSON payload (sent as `payloadJSON`).
    Ok {
        /// The payload as JSON text.
        payload_json: Option<String>,
    },
    /// Failure.
    Err {
        /// A short machine-readable code, e.g. `INVALID_PARAMS`.
        code: String,
        /// A message for a person.
        message: String,
    },
}
