//! What the core tells the application: [`Notification`], and why an
//! attempt ended or the session paused.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use crate::frame::GatewayError;
use crate::input::{AttemptId, SocketError};
use crate::payload::EventPayload;
use crate::pin::Pin;

/// Something that happened, for the application and the person watching.
/// Every notification reports a real transition.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Notification {
    /// The gateway admitted this node (hello-ok). Once per admission.
    Connected {
        /// The attempt admitted.
        attempt: AttemptId,
        /// `server.connId`.
        conn_id: String,
        /// The negotiated protocol.
        protocol: u32,
        /// The tick interval the watchdog uses: `policy.tickIntervalMs`,
        /// kept within the configured bounds.
        tick_interval_ms: u64,
        /// `policy.maxPayload`: the largest frame the gateway accepts, and
        /// so the largest a driver should read from it.
        max_payload: usize,
        /// `server.version`, when given.
        server_version: Option<String>,
    },
    /// An attempt ended; `was_connected` tells whether it had been admitted.
    Disconnected {
        /// The attempt that ended.
        attempt: AttemptId,
        /// Whether it had been admitted.
        was_connected: bool,
        /// Why.
        reason: DisconnectReason,
        /// When the next attempt starts, if one is scheduled.
        retry_in: Option<Duration>,
    },
    /// The session stopped making attempts until its config changes.
    Paused(Box<PauseReason>),
    /// An event with a `seq` skipped some.
    SeqGap {
        /// The seq that was due.
        expected: u64,
        /// The seq that arrived.
        got: u64,
    },
    /// An event from the gateway the core does not handle itself.
    GatewayEvent {
        /// The event name.
        event: String,
        /// Its payload, as the gateway wrote it.
        payload: Option<EventPayload>,
        /// Its seq.
        seq: Option<u64>,
    },
    /// An invoke answer that could not be sent.
    InvokeDropped {
        /// The invoke id.
        id: String,
        /// Why.
        reason: DropReason,
    },
    /// Streamed progress of an invoke that was not sent.
    ProgressDropped {
        /// The invoke id.
        id: String,
        /// Why.
        reason: DropReason,
    },
    /// An invoke request that was answered with an error without reaching
    /// the application, or a duplicate that was ignored.
    InvokeRefused {
        /// The invoke id.
        id: String,
        /// The command.
        command: String,
        /// Why.
        reason: InvokeRefusal,
    },
    /// A frame from the gateway the core could not use.
    FrameRejected {
        /// The attempt it arrived on.
        attempt: AttemptId,
        /// What was wrong with it.
        reason: String,
    },
}

/// Why an invoke answer was not sent (or not taken).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum DropReason {
    /// The core already answered it with a timeout, it was cancelled, or it
    /// was never running.
    NotRunning,
    /// Its connection ended; it is never sent on a newer one.
    StaleAttempt,
    /// Its result frame would exceed `policy.maxPayload`; an error was sent.
    TooLarge,
    /// The gateway answered the `node.invoke.result` request with an error.
    Rejected(Box<GatewayError>),
}

/// Why an invoke request was refused by the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvokeRefusal {
    /// The command is not among the declared commands.
    Undeclared,
    /// Too many invokes are running, or an invoke with the same id from an
    /// earlier connection is still held by the application (its answer must
    /// never be sent as this one's). Answered with `UNAVAILABLE`.
    Busy,
    /// An invoke with the same id is running; ignored.
    Duplicate,
    /// An invoke with the same id or `idempotencyKey` already finished;
    /// answered `INVALID_REQUEST` and never run again.
    Repeated,
    /// The request was malformed.
    Malformed,
}

/// Why an attempt ended.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The socket closed.
    Closed {
        /// The close code, when any.
        code: Option<u16>,
        /// The close reason.
        reason: String,
    },
    /// The socket failed.
    Failed(SocketError),
    /// The gateway refused the connect request.
    Rejected(Box<GatewayError>),
    /// No socket open in time.
    OpenTimeout,
    /// No handshake slot in time: the driver's own sessions crowded this
    /// one out. Backed off like a busy gateway, not as a failure.
    QueueTimeout,
    /// No `connect.challenge` in time.
    ChallengeTimeout,
    /// No hello-ok in time.
    HandshakeTimeout,
    /// No tick for twice the tick interval; closed with 4000.
    TickTimeout,
    /// Neither a pong nor a frame after a ping in time; closed with 4000.
    PongTimeout,
    /// The config changed; torn down for a new connection.
    ConfigChanged,
    /// The gateway announced a restart (`shutdown` event).
    GatewayRestart,
    /// A frame broke the protocol during the handshake.
    ProtocolViolation(String),
    /// The application asked to stop.
    Stopped,
}

/// What kind of terminal failure paused the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PauseKind {
    /// Credentials were rejected.
    Auth,
    /// The device identity was refused.
    Identity,
    /// Protocol versions do not overlap, or the gateway called the request invalid.
    Protocol,
    /// The device needs pairing approval.
    Pairing,
    /// The certificate did not match the pins.
    PinMismatch,
    /// The TLS certificate could not be validated.
    Tls,
}

/// Why the session paused, with what a person can do about it.
#[derive(Clone, Debug, PartialEq)]
pub struct PauseReason {
    /// The kind of failure.
    pub kind: PauseKind,
    /// The gateway's error, when the gateway refused us.
    pub error: Option<GatewayError>,
    /// The pins expected, for a mismatch.
    pub expected: Vec<Pin>,
    /// The pin observed, for a mismatch.
    pub observed: Option<Pin>,
    /// One line a person can act on.
    pub hint: String,
}

impl PauseReason {
    /// The most specific code: the gateway's `details.code`, else its
    /// `code`, else a code of the core's own (`TLS_PIN_MISMATCH`,
    /// `PROTOCOL_MISMATCH` for a hello-ok outside our protocol range,
    /// `TLS_ERROR`).
    pub fn code(&self) -> &str {
        match &self.error {
            Some(e) => e.detail_code.as_deref().unwrap_or(&e.code),
            None => match self.kind {
                PauseKind::PinMismatch => "TLS_PIN_MISMATCH",
                PauseKind::Protocol => "PROTOCOL_MISMATCH",
                _ => "TLS_ERROR",
            },
        }
    }
}
