//! `clawnode-core`: the sans-IO session machine of an OpenClaw node.
//!
//! [`NodeState`] owns the whole node-session policy — handshake, device
//! identity proof, liveness, reconnect with backoff, invoke plumbing — and
//! performs no I/O. A driver feeds it [`Input`]s with the current [`Time`],
//! drains [`Effect`]s with [`NodeState::poll_effect`] until `None`, performs
//! them, and calls [`NodeState::handle_timeout`] when
//! [`NodeState::poll_timeout`] is reached.
//!
//! The core never reads a clock and never draws randomness of its own: time
//! comes in with every call and the jitter generator is seeded by the caller,
//! so the same seed and the same inputs give the same effects, byte for byte.
//! It builds without `std`.
//!
//! Session inputs are compared by value: applying a [`SessionConfig`] equal to
//! the current one does nothing at all.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod backoff;
mod config;
mod conn;
mod effect;
mod frame;
mod handshake;
mod identity;
mod input;
mod invokes;
mod notification;
mod options;
mod outbox;
mod pin;
mod policy;
mod recent;
#[cfg(feature = "sim")]
pub mod sim;
mod state;
mod status;
mod time;
mod timer;

pub use backoff::{Backoff, BackoffConfig, Rng};
pub use config::{
    ClientOptions, ConfigError, Credentials, GatewayUrl, Secret, SessionConfig, TlsPolicy,
};
pub use effect::{
    CancelReason, Effect, InvokeRequest, RequestError, RequestId, SendRefusal, SendRefused,
};
pub use frame::{GatewayError, Inbound, ParseError, parse_inbound};
pub use identity::{DeviceIdentity, SignatureFields};
pub use input::{AttemptId, Input, InvokeOutcome, SocketError};
pub use notification::{
    DisconnectReason, DropReason, InvokeRefusal, Notification, PauseKind, PauseReason,
};
pub use options::{Limits, NodeOptions, Timeouts};
pub use pin::{Pin, PinError, PinSet};
pub use state::NodeState;
pub use status::{Counters, Phase, Status};
pub use time::Time;
pub use timer::{Deadline, TimerReason};

/// `client.id` of a headless node host (one of the schema's enum values).
pub const CLIENT_ID: &str = "node-host";
/// `client.mode` and `role` of a node.
pub const NODE_ROLE: &str = "node";
/// Lowest protocol version spoken.
pub const MIN_PROTOCOL: u32 = 3;
/// Highest protocol version spoken.
pub const MAX_PROTOCOL: u32 = 4;
