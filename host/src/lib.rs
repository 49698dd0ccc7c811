//! `clawnode-host`: the node host. The commands an OpenClaw gateway
//! invokes on a machine, each a module registered on a
//! [`clawnode::NodeBuilder`] through its generic command API
//! ([`HostCommands`]), and the `clawnode` binary that serves them.
//!
//! | module | commands | what it guards |
//! | --- | --- | --- |
//! | [`which`] | `system.which` | a search stalls its own invoke alone |
//! | [`exec`] | `system.run.prepare`, `system.run`, `system.execApprovals.get`, `.set` | nothing runs until the owner allows it (docs/exec-host.md) |
//! | [`host_stats`] | the `node.host.stats` event | |
//!
//! ```no_run
//! use clawnode::policy::{Credentials, Secret, SessionConfig, TlsPolicy};
//! use clawnode::{NodeBuilder, StateDir};
//! use clawnode_host::HostCommands as _;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pins = TlsPolicy::pinned(["sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"])?;
//! let config = SessionConfig::parse("wss://gateway.example:18789", pins)?
//!     .with_credentials(Credentials { token: Some(Secret::new("T")), ..Default::default() });
//! let node = NodeBuilder::new(config, StateDir::default_location()?)
//!     .with_system_which()
//!     .with_system_run()
//!     .with_exec_approvals()
//!     .with_host_stats()
//!     .spawn()?;
//! # drop(node); Ok(()) }
//! ```
// Unsafe code is confined to the exec host's process handling
// (`exec/reaper.rs`, and the spawn, poll and signal calls of `exec/run.rs`):
// fork, execveat on a held file and a subreaper have no safe std API.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod commands;
pub mod exec;
pub mod host_stats;
pub mod which;

pub use commands::HostCommands;
