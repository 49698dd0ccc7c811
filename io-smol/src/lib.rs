//! `clawnode-smol`: the [smol] driver of [`clawnode_core`], the `clawnode`
//! node host, and the runtime-neutral layer every driver needs.
//!
//! # Layers
//!
//! | feature | what it adds | pulls in |
//! | --- | --- | --- |
//! | none (the neutral layer) | [`TlsAttempt`]: pinned, trust-on-first-use and system-trust rustls configs and the classification of TLS and I/O failures; [`StateDir`]: identity, device tokens, TOFU pins, atomic and 0600; [`Event`]: notifications as events and their `--events json` lines; [`Clock`]: `Instant`s as the core's time and back; `system.which`; [`exec`]: bounded command runs (filtered environment, capped output, the whole process group killed on timeout or cancel) | rustls, serde, tracing, rustix: no async runtime |
//! | `smol` (default) | [`NodeBuilder`], [`NodeHandle`], [`probe`]: the smol driver | smol, async-tungstenite, futures-rustls |
//! | `tokio` (default, with `cli`) | `NodeBuilder::tokio`: the same driver on a tokio runtime, its sockets and timers on tokio's reactor | tokio (`rt`, `net`, `time`) |
//! | `cli` (default) | the `clawnode` binary and its [`file_config`] | clap, toml, tracing-subscriber, async-signal |
//!
//! An embedder on tokio can run the whole driver there (feature `tokio`,
//! `NodeBuilder::tokio`); `clawnode swarm` does, on one current-thread
//! runtime. An embedder who writes a driver of their own (on tokio, a
//! custom executor) depends on
//! this crate with `default-features = false` and gets the same tested code
//! the smol driver uses for the security-critical part, certificate
//! pinning, and for the state on disk. `examples/tokio_node.rs` is a
//! complete tokio driver built that way; `.ci/run` checks that the neutral
//! build's dependency tree holds no smol, async-io, async-tungstenite, clap
//! or toml.
//!
//! Why features on this crate rather than a third crate or the core's `std`
//! feature: the neutral parts and the smol driver share their tests and
//! their types (the driver is their first user), and the core stays free of
//! files, TLS and clocks, which its purity check enforces.
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
// Unsafe code is confined to the exec host's process handling
// (`exec/reaper.rs`, and the spawn, poll and signal calls of `exec/run.rs`):
// fork, execveat on a held file and a subreaper have no safe std API.
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "smol")]
mod blocking;
mod clock;
mod command;
mod event;
pub mod exec;
#[cfg(feature = "cli")]
pub mod file_config;
#[cfg(feature = "smol")]
mod frame_limit;
pub mod host_stats;
#[cfg(feature = "smol")]
mod node;
#[cfg(feature = "cli")]
pub mod service;
pub mod setup_code;
mod store;
#[cfg(feature = "cli")]
pub mod swarm;
mod tls;
#[cfg(feature = "smol")]
mod transport;
mod which;

pub use clawnode_core as core;
pub use clock::Clock;
pub use command::{
    CommandError, CommandFuture, INPUT_QUEUE, Invocation, InvokeInput, NodeEvents, Progress,
};
pub use event::{DisconnectCode, Event};
#[cfg(feature = "smol")]
pub use node::{
    Admission, DEFAULT_HANDSHAKES, NodeBuilder, NodeHandle, NodeStatus, RequestFailure, StartError,
};
pub use store::{PairedGateway, StateDir, StoreError};
pub use tls::{PinStore, TlsAttempt, pin_of, tcp_error, upgrade_refused};
#[cfg(feature = "smol")]
pub use transport::{ProbeReport, probe};
pub use which::{SYSTEM_WHICH, system_which, which_in};

#[cfg(all(test, feature = "smol"))]
mod tests;
#[cfg(all(test, feature = "smol"))]
mod testutil;
