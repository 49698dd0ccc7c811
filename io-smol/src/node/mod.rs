//! A running node session.
//!
//! One task per session (the [`driver`]) feeds a [`clawnode_core::NodeState`]
//! and performs its effects; each socket attempt is pumped by a task of its
//! own ([`socket`]). The application holds the public [`handle`] and talks to
//! the driver over a channel ([`msg`]). What a peer can make the driver log
//! is bounded by [`log_limit`]; every task, socket and timer lives on the
//! node's runtime (`crate::runtime`: a smol executor, or a tokio runtime).
//! Sessions pace their handshakes through an [`admission`]; a task started
//! beside a session sees it as a [`background`].
//!
//! Modules depend on each other in one direction only, along
//! `handle` → `background` → `driver` → `socket` → `msg` → `admission` →
//! `error`, then the crate's runtime (a module may skip ahead in that
//! order, never go back), so none of them needs the others' private parts.

mod admission;
mod background;
mod driver;
mod error;
mod handle;
mod log_limit;
mod msg;
mod socket;

pub use admission::{Admission, DEFAULT_HANDSHAKES};
pub use background::Background;
pub use error::{RequestFailure, StartError};
pub use handle::{NodeBuilder, NodeHandle, NodeStatus};
#[cfg(test)]
pub(crate) use msg::EVENT_BUFFER;
