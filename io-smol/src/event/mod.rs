//! Events a running session reports to the application.
//!
//! `model` defines them; `from_core` derives them from the core's
//! notifications and `json` gives their `--events json` form, both
//! depending on `model` only.

mod from_core;
mod json;
mod model;

#[cfg(feature = "smol")]
pub(crate) use from_core::disconnect_code;
#[cfg(feature = "smol")]
pub(crate) use from_core::into_event;
pub use model::{DisconnectCode, Event};
