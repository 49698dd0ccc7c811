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
//!
//! # A driver
//!
//! One loop owns the session: it performs the effects, feeds back what the
//! sockets, the application and the timer report, and sleeps until the
//! next deadline. [`NodeState`]'s documentation is the full contract: what
//! each effect asks, stale input, closing, late answers and clocks.
//!
//! ```no_run
//! use std::time::{Duration, Instant};
//!
//! use clawnode_core::{
//!     Effect, Input, NodeOptions, NodeState, SessionConfig, SigningKey, Time, TlsPolicy,
//! };
//! # struct Io;
//! # impl Io {
//! #     fn open(&mut self, _: &Effect) {}
//! #     fn send(&mut self, _: &Effect) {}
//! #     fn close(&mut self, _: &Effect) {}
//! #     fn spawn_command(&mut self, _: &Effect) {}
//! #     fn persist(&mut self, _: &Effect) {}
//! #     fn deliver(&mut self, _: Effect) {}
//! #     fn next_input(&mut self, _: Option<Instant>) -> Option<Input> { None }
//! # }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let mut io = Io;
//! # let (stored_key, seed) = ([7u8; 32], 42);
//! // The device key lives in the driver's storage; the seed comes from the
//! // OS, so that two nodes never draw the same jitter.
//! let mut node = NodeState::new(SigningKey::from_bytes(&stored_key), NodeOptions::with_seed(seed));
//! // The driver's clock, read once per step (`clawnode::Clock` is one).
//! let start = Instant::now();
//! let now = || Time::from_millis(start.elapsed().as_millis() as u64);
//! let pins = TlsPolicy::pinned(["sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"])?;
//! let config = SessionConfig::parse("wss://gateway.example:18789", pins)?;
//! node.handle_input(now(), Input::Config(config));
//! loop {
//!     // Perform every effect, in order.
//!     while let Some(effect) = node.poll_effect() {
//!         match effect {
//!             Effect::OpenSocket { .. } => io.open(&effect),
//!             Effect::SendFrame { .. } | Effect::SendPing { .. } => io.send(&effect),
//!             Effect::CloseSocket { .. } => io.close(&effect),
//!             Effect::Invoke(_) | Effect::CancelInvoke { .. } | Effect::InvokeInput { .. } => {
//!                 io.spawn_command(&effect)
//!             }
//!             Effect::StoreDeviceToken { .. } | Effect::ForgetDeviceToken { .. } => io.persist(&effect),
//!             Effect::Response { .. } | Effect::Notify(_) => io.deliver(effect),
//!         }
//!     }
//!     // Wait for a socket event, a command's answer or the deadline.
//!     let deadline = node
//!         .poll_timeout()
//!         .map(|t| start + Duration::from_millis(t.as_millis()));
//!     match io.next_input(deadline) {
//!         Some(input) => node.handle_input(now(), input),
//!         None => node.handle_timeout(now()),
//!     }
//! }
//! # }
//! ```
//!
//! # Features
//!
//! None but `sim`, unstable and for this project's own tests: the crate is
//! `no_std` + `alloc` throughout. A driver's clock lives with the driver
//! (`clawnode::Clock` for `std` drivers).
//!
//! # Stability
//!
//! [`Effect`] and [`Input`] are exhaustive on purpose: a driver must
//! perform every effect and may feed every input, so a new variant is a
//! breaking change that the compiler points out, never an effect silently
//! ignored. The enums that report (notifications, reasons, errors, phases)
//! are `#[non_exhaustive]` and may grow in minor releases.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

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
mod payload;
mod pin;
mod policy;
mod recent;
#[cfg(feature = "sim")]
#[doc(hidden)]
pub mod sim;
mod state;
mod status;
mod time;
mod timer;

pub use backoff::BackoffConfig;
pub use config::{
    ClientOptions, ConfigError, Credentials, GatewayUrl, Secret, SessionConfig, TlsPolicy,
};
pub use ed25519_dalek::SigningKey;
pub use effect::{
    CancelReason, Effect, InvokeRequest, RequestError, RequestId, SendRefusal, SendRefused,
};
pub use frame::GatewayError;
pub use identity::DeviceIdentity;
pub use input::{AttemptId, Input, InvokeOutcome, SocketError};
pub use notification::{
    DisconnectReason, DropReason, InvokeRefusal, Notification, PauseKind, PauseReason,
};
pub use options::{Limits, NodeOptions, Timeouts};
pub use payload::EventPayload;
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
/// The largest `node.invoke.progress` chunk, and the largest
/// `node.invoke.input` payload, in bytes of UTF-8 (the gateway's limit).
pub const MAX_PROGRESS_CHUNK: usize = 16_384;
