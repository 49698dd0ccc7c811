//! `clawnode-smol`: the [smol] driver of [`clawnode_core`] and the
//! `clawnode` node host.
//!
//! The core decides everything (handshake, reconnects, backoff, liveness);
//! this crate performs its effects: it opens TLS-pinned WebSockets, runs
//! command handlers off the receive loop, keeps the device identity, device
//! tokens and trust-on-first-use pins on disk, and reports events.
//!
//! Embedding a node:
//!
//! ```no_run
//! use clawnode_smol::core::{Credentials, Secret, SessionConfig, TlsPolicy};
//! use clawnode_smol::{CommandError, NodeBuilder, StateDir};
//! use serde_json::json;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pins = TlsPolicy::pinned(["sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"])?;
//! let config = SessionConfig::parse("wss://gateway.example:18789", pins)?
//!     .with_credentials(Credentials { token: Some(Secret::new("T")), ..Default::default() });
//! let mut builder = NodeBuilder::new(config, StateDir::default_location()?)
//!     .with_system_which()
//!     .command("demo.add", |inv| async move {
//!         let a = inv.params["a"].as_i64().ok_or(CommandError::new("INVALID_PARAMS", "a"))?;
//!         let b = inv.params["b"].as_i64().ok_or(CommandError::new("INVALID_PARAMS", "b"))?;
//!         Ok(json!({ "sum": a + b }))
//!     });
//! let events = builder.events();
//! let node = builder.spawn()?;
//! smol::block_on(async {
//!     while let Ok(event) = events.recv().await {
//!         println!("{event}");
//!     }
//!     node.shutdown().await;
//! });
//! # Ok(()) }
//! ```
//!
//! TLS uses rustls with the `ring` crypto provider: it builds with a C
//! compiler alone and faster than `aws-lc-rs` (no cmake, Go or NASM), and
//! covers every algorithm a gateway certificate uses. Pins are checked on
//! every connection: session resumption is off and no client config is
//! shared between connections.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod command;
mod event;
pub mod file_config;
mod frame_limit;
mod node;
mod store;
mod tls;
mod transport;
mod which;

pub use clawnode_core as core;
pub use command::{CommandError, CommandFuture, Invocation};
pub use event::{DisconnectCode, Event};
pub use node::{NodeBuilder, NodeHandle, RequestFailure, StartError};
pub use store::{StateDir, StoreError};
pub use tls::pin_of;
pub use transport::{ProbeReport, probe};
pub use which::{SYSTEM_WHICH, system_which, which_in};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;
