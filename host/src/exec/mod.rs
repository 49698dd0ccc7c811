//! Running commands for `system.run` (docs/exec-host.md): the building
//! blocks, with no async runtime.
//!
//! - [`env`](mod@env): the environment a child gets: the node's own, stripped of
//!   what could hijack a loader, an interpreter or a shell's startup, plus
//!   the caller's overrides, refused whole when one of them is dangerous.
//! - [`run`](mod@run): one run in a process group of its own: output capped, time
//!   bounded, and the whole tree killed on timeout, cancel or exit, so no
//!   descendant outlives it.
//! - [`approvals`]: the exec approvals document (`system.execApprovals.*`)
//!   and the decision it makes for a run; by default, nothing runs.
//! - [`resolve`]: a command word found once and held open; what it is
//!   (a shell, a dispatch wrapper) told by the file, not the name.
//! - [`allowlist`]: whether an allowlist covers every command a run would
//!   start, judged by real paths, and the exact command that then runs.
//! - [`plans`]: the plans this node prepared, which approvals must carry.
//! - [`documents`]: the approvals and the owner's ceiling in the state
//!   directory.
//! - [`stored`]: `system.execApprovals.get` and `.set` over them, and the
//!   owner's local edits.
//! - [`system_run`]: `system.run.prepare` and `system.run`, which put the
//!   others together.

pub mod allowlist;
pub mod approvals;
pub mod documents;
pub mod env;
pub mod plans;
#[allow(unsafe_code)]
mod reaper;
pub mod resolve;
#[allow(unsafe_code)]
pub mod run;
pub mod stored;
pub mod system_run;

pub use documents::ExecDocuments;
pub use env::{EnvRejected, child_env};
pub use run::{Cancel, OUTPUT_CAP, RunOutcome, RunSpec, run};
