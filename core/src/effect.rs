//! What comes out of the core for the driver to perform: [`Effect`], and
//! the outcomes of the application's own requests.

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;

use serde_json::Value;

use crate::config::{GatewayUrl, Secret, TlsPolicy};
use crate::frame::GatewayError;
use crate::input::AttemptId;
use crate::notification::Notification;
use crate::time::Time;

/// Identifies a request the application sent with
/// [`crate::NodeState::send_request`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct RequestId(pub u64);

// Effects wait in every session's queue: the large, rare parts (error
// objects, pause reasons) are boxed so that an effect stays this small.
const _: () = assert!(core::mem::size_of::<Effect>() <= 112);

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
    /// [`Input::InvokeResult`](crate::Input::InvokeResult) before `deadline`.
    Invoke(InvokeRequest),
    /// Input the gateway streamed to a running invoke (`node.invoke.input`),
    /// in the gateway's order. A `seq` past the one expected means the
    /// gateway skipped some; an old or repeated one is not handed on.
    InvokeInput {
        /// The invoke id.
        id: String,
        /// The gateway's zero-based sequence number.
        seq: u64,
        /// The input, as JSON text (at most
        /// [`MAX_PROGRESS_CHUNK`](crate::MAX_PROGRESS_CHUNK) bytes).
        payload_json: String,
    },
    /// Stop working on an invoke: its answer is no longer wanted.
    CancelInvoke {
        /// The invoke id.
        id: String,
        /// Why.
        reason: CancelReason,
    },
    /// Persist a device token the gateway issued (per gateway URL, device
    /// id and role), and hand it back with [`Input::StoredDeviceToken`](crate::Input::StoredDeviceToken)
    /// next time.
    StoreDeviceToken {
        /// The gateway it was issued by.
        url: GatewayUrl,
        /// The role it is for.
        role: String,
        /// The token.
        token: Secret,
    },
    /// Delete the device token stored for this gateway URL, device id and
    /// role: the gateway rejected it (`AUTH_DEVICE_TOKEN_MISMATCH`, a
    /// revoked or rotated token). At most once per config and admission.
    ForgetDeviceToken {
        /// The gateway that rejected it.
        url: GatewayUrl,
        /// The role it was for.
        role: String,
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
#[non_exhaustive]
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
#[non_exhaustive]
pub enum RequestError {
    /// The gateway answered with an error.
    Gateway(Box<GatewayError>),
    /// No response before the request's deadline.
    Timeout,
    /// The connection ended before the response; the request is not replayed.
    Disconnected,
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
#[non_exhaustive]
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
