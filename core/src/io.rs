//! What goes into the core ([`Input`]) and what comes out ([`Effect`]).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use serde_json::Value;

use crate::config::{GatewayUrl, Secret, SessionConfig, TlsPolicy};
use crate::pin::Pin;
use crate::time::Time;

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

/// Identifies a request the application sent with
/// [`crate::NodeState::send_request`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct RequestId(pub u64);

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
    /// The application's answer to an [`Effect::Invoke`].
    InvokeResult {
        /// The invoke id from the effect.
        id: String,
        /// The answer.
        outcome: InvokeOutcome,
    },
    /// The network came back: retry now if a retry is waiting.
    Wake,
    /// Stop: close the socket with 1000 and make no further attempt.
    Stop,
}

/// Why a socket failed, as the driver saw it.
#[derive(Clone, PartialEq, Eq, Debug)]
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

/// An effect for the driver to perform, drained with
/// [`crate::NodeState::poll_effect`].
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Open a WebSocket to `url`, authenticating TLS per `tls`.
    OpenSocket {
        /// The new attempt's id; tag every input from this socket with it.
        attempt: AttemptId,
        /// Where to connect.
        url: GatewayUrl,
        /// How to authenticate the certificate.
        tls: TlsPolicy,
    },
    /// Send a text frame on the socket of `attempt`.
    SendFrame {
        /// The socket's attempt.
        attempt: AttemptId,
        /// The frame.
        text: String,
    },
    /// Send a WebSocket ping on the socket of `attempt`.
    SendPing {
        /// The socket's attempt.
        attempt: AttemptId,
    },
    /// Close the socket of `attempt`; no input from it matters any more.
    CloseSocket {
        /// The socket's attempt.
        attempt: AttemptId,
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// Run a command for the gateway and answer with
    /// [`Input::InvokeResult`] before `deadline`.
    Invoke(InvokeRequest),
    /// Stop working on an invoke: its answer is no longer wanted.
    CancelInvoke {
        /// The invoke id.
        id: String,
        /// Why.
        reason: CancelReason,
    },
    /// Persist a device token the gateway issued (per gateway URL, device
    /// id and role), and hand it back with [`Input::StoredDeviceToken`]
    /// next time.
    StoreDeviceToken {
        /// The gateway it was issued by.
        url: GatewayUrl,
        /// The role it is for.
        role: String,
        /// The token.
        token: Secret,
    },
    /// The outcome of a request the application sent.
    Response {
        /// The request's id.
        id: RequestId,
        /// The payload, or why it failed.
        result: Result<Value, RequestError>,
    },
    /// Something the application should hear about.
    Notify(Notification),
}

/// An invoke handed to the application.
#[derive(Clone, Debug, PartialEq)]
pub struct InvokeRequest {
    /// The attempt it arrived on.
    pub attempt: AttemptId,
    /// The gateway's invoke id.
    pub id: String,
    /// The command.
    pub command: String,
    /// The parameters as JSON text, when given.
    pub params_json: Option<String>,
    /// When the core answers with a timeout in the application's stead.
    pub deadline: Time,
    /// The gateway's idempotency key, when given.
    pub idempotency_key: Option<String>,
}

/// Why an invoke was cancelled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CancelReason {
    /// The gateway sent `node.invoke.cancel`.
    Gateway,
    /// The deadline passed and the core answered with a timeout.
    Deadline,
    /// The connection it arrived on ended; its answer can't be delivered.
    Disconnected,
}

/// Why a request from the application failed.
#[derive(Clone, Debug, PartialEq)]
pub enum RequestError {
    /// The gateway answered with an error.
    Gateway(GatewayError),
    /// No response before the request's deadline.
    Timeout,
    /// The connection ended before the response; the request is not replayed.
    Disconnected,
}

/// An error object from the gateway.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct GatewayError {
    /// `error.code`.
    pub code: String,
    /// `error.message`.
    pub message: String,
    /// `error.details.code`, when present.
    pub detail_code: Option<String>,
    /// `error.details.recommendedNextStep`, when present.
    pub recommended_next_step: Option<String>,
    /// `error.retryAfterMs`, when present.
    pub retry_after_ms: Option<u64>,
    /// `error.retryable`, when present.
    pub retryable: Option<bool>,
    /// `error.details`, whole.
    pub details: Option<Value>,
}

/// Why the application's send was refused; hands the payload back.
#[derive(Clone, Debug, PartialEq)]
pub struct SendRefused {
    /// Why.
    pub reason: SendRefusal,
    /// The method that was to be sent.
    pub method: String,
    /// The params, handed back untouched.
    pub params: Value,
}

/// Why a send was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendRefusal {
    /// The session has not been admitted (no hello-ok on the current socket).
    NotConnected,
    /// The frame is larger than the gateway's `policy.maxPayload`.
    TooLarge {
        /// The frame's size in bytes.
        size: usize,
        /// The gateway's limit.
        max: usize,
    },
}

impl fmt::Display for SendRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            SendRefusal::NotConnected => write!(
                f,
                "cannot send {:?}: the node is not connected (no hello-ok yet)",
                self.method
            ),
            SendRefusal::TooLarge { size, max } => write!(
                f,
                "cannot send {:?}: frame of {size} bytes exceeds the gateway's maxPayload of {max}",
                self.method
            ),
        }
    }
}

/// Something that happened, for the application and the person watching.
/// Every notification reports a real transition.
#[derive(Clone, Debug, PartialEq)]
pub enum Notification {
    /// The gateway admitted this node (hello-ok). Once per admission.
    Connected {
        /// The attempt admitted.
        attempt: AttemptId,
        /// `server.connId`.
        conn_id: String,
        /// The negotiated protocol.
        protocol: u32,
        /// `policy.tickIntervalMs`.
        tick_interval_ms: u64,
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
    Paused(PauseReason),
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
        /// Its payload.
        payload: Option<Value>,
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
pub enum DropReason {
    /// The core already answered it with a timeout, it was cancelled, or it
    /// was never running.
    NotRunning,
    /// Its connection ended; it is never sent on a newer one.
    StaleAttempt,
    /// Its result frame would exceed `policy.maxPayload`; an error was sent.
    TooLarge,
    /// The gateway answered the `node.invoke.result` request with an error.
    Rejected(GatewayError),
}

/// Why an invoke request was refused by the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvokeRefusal {
    /// The command is not among the declared commands.
    Undeclared,
    /// Too many invokes are running, or an invoke with the same id from an
    /// earlier connection is still held by the application (its answer must
    /// never be sent as this one's). Answered with `UNAVAILABLE`.
    Busy,
    /// An invoke with the same id is running; ignored.
    Duplicate,
    /// The request was malformed.
    Malformed,
}

/// Why an attempt ended.
#[derive(Clone, Debug, PartialEq)]
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
    Rejected(GatewayError),
    /// No socket open in time.
    OpenTimeout,
    /// No `connect.challenge` in time.
    ChallengeTimeout,
    /// No hello-ok in time.
    HandshakeTimeout,
    /// No tick for twice the tick interval; closed with 4000.
    TickTimeout,
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
