//! Why a session could not start, or a request to the gateway failed.

use clawnode_core::{GatewayError, RequestError, SendRefused};

use crate::store::StoreError;

/// Why a [`NodeHandle::request`](crate::NodeHandle::request) or
/// [`NodeHandle::send_event`](crate::NodeHandle::send_event) failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestFailure {
    /// The core refused to send it (not connected, or too large).
    #[error("{0}")]
    Refused(SendRefused),
    /// The gateway answered with an error.
    #[error("the gateway answered {}: {}", .0.code, .0.message)]
    Gateway(GatewayError),
    /// No response before the deadline.
    #[error("no response from the gateway in time")]
    Timeout,
    /// The connection ended before the response.
    #[error("the connection ended before the gateway answered")]
    Disconnected,
    /// The session has stopped.
    #[error("the session has stopped")]
    SessionEnded,
}

impl From<RequestError> for RequestFailure {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Gateway(g) => RequestFailure::Gateway(*g),
            RequestError::Timeout => RequestFailure::Timeout,
            // A reason added to the core later: the request is gone.
            _ => RequestFailure::Disconnected,
        }
    }
}

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state directory could not be used.
    #[error(transparent)]
    Store(#[from] StoreError),
}
