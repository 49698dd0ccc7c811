//! `clawnode`: the I/O adapter of [`clawnode_core`]. It runs an OpenClaw
//! node's session over a real TLS-pinned WebSocket, on smol or on tokio,
//! keeps its identity and tokens on disk, and hands the application its
//! events and the gateway's invokes. It knows no product command: the node
//! host's (`system.run`, `system.which`, ...) live in `clawnode-host`,
//! registered through [`NodeBuilder::command`].
//!
//! # Layers
//!
//! | feature | what it adds | pulls in |
//! | --- | --- | --- |
//! | none (the neutral layer) | [`TlsAttempt`]: pinned, trust-on-first-use and system-trust rustls configs and the classification of TLS and I/O failures; [`StateDir`]: identity, device tokens, TOFU pins, documents, atomic and 0600; [`Event`]: notifications as events and their `--events json` lines; [`Clock`]: `Instant`s as the core's time and back; [`setup_code`]: pairing setup codes | rustls, serde, tracing: no async runtime |
//! | `smol` (default) | [`NodeBuilder`], [`NodeHandle`], [`probe`]: the driver, on smol | smol, async-tungstenite, futures-rustls |
//! | `tokio` | `NodeBuilder::tokio`: the same driver on a tokio runtime, its sockets and most timers on tokio's reactor | tokio (`rt`, `net`, `time`) |
//!
//! An embedder on tokio can run the whole driver there (feature `tokio`,
//! `NodeBuilder::tokio`); `clawnode-swarm` does, on one current-thread
//! runtime. An embedder who writes a driver of their own (on a custom
//! executor) depends on this crate with `default-features = false` and gets
//! the same tested code the driver uses for the security-critical part,
//! certificate pinning, and for the state on disk. `examples/tokio_node.rs`
//! is a complete tokio driver built that way; `scripts/test.sh` checks that
//! the neutral build's dependency tree holds no smol, async-io,
//! async-tungstenite, clap or toml, and that the default one holds no CLI
//! crate.
//!
//! The session policy itself is [`clawnode_core`], re-exported as
//! [`policy`]: the driver feeds it and performs what it decides.
//!
//! # Embedding a node on smol
//!
//! [`NodeBuilder`] (feature `smol`) declares commands, spawns the session
//! and streams its [`Event`]s; its documentation has a complete example.
//! Many nodes in one process pace their handshakes: by default those
//! talking to one gateway share 16 slots from opening a socket to hello-ok
//! (`Admission`), so a process starting hundreds never stampedes it.
//!
//! TLS uses rustls with the `ring` crypto provider: it builds with a C
//! compiler alone and faster than `aws-lc-rs` (no cmake, Go or NASM), and
//! covers every algorithm a gateway certificate uses. Pins are checked on
//! every connection: session resumption is off and no client config is
//! shared between connections.
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "smol")]
mod blocking;
mod clock;
mod command;
mod event;
#[cfg(feature = "smol")]
mod frame_limit;
#[cfg(feature = "smol")]
mod node;
#[cfg(feature = "smol")]
mod runtime;
pub mod setup_code;
mod store;
mod tls;
#[cfg(feature = "smol")]
mod transport;

#[cfg(feature = "smol")]
pub use blocking::on_own_thread;
pub use clawnode_core as policy;
pub use clock::Clock;
pub use command::{
    CommandError, CommandFuture, Emitter, INPUT_QUEUE, Invocation, InvokeInput, Progress,
};
pub use event::{DisconnectCode, Event};
#[cfg(feature = "smol")]
pub use node::{
    Admission, Background, DEFAULT_HANDSHAKES, NodeBuilder, NodeHandle, NodeStatus, RequestFailure,
    StartError,
};
pub use store::{PairedGateway, StateDir, StoreError};
pub use tls::{PinStore, PinStoreError, TlsAttempt, pin_of, tcp_error, upgrade_refused};
#[cfg(feature = "smol")]
pub use transport::{ProbeReport, probe};

/// Internal: the fake gateway of the driver's tests, for the tests of the
/// crates built on this one. Not part of the public API.
#[cfg(any(all(test, feature = "smol"), feature = "__testutil"))]
#[doc(hidden)]
pub mod __testutil;
#[cfg(all(test, feature = "smol"))]
mod tests;
