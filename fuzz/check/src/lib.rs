//! The checks behind clawnode's fuzz targets.
//!
//! Each `check_*` function takes the raw bytes a fuzzer produced and panics
//! when a property of `clawnode-core` does not hold. The libFuzzer binaries in
//! `fuzz/fuzz_targets/` call them on nightly (`scripts/fuzz.sh`); the test
//! `tests/replay.rs` calls them on stable for every file committed under
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`, so the normal
//! test command exercises the corpus without libFuzzer.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod frame;
mod pin;
mod reconnect;
mod seeds;
mod session;
mod wire;
mod world;

pub use frame::check_frame_parse;
pub use pin::{check_pin_normalize, reference_normalize};
pub use reconnect::check_reconnect_inputs;
pub use seeds::seeds;
pub use session::check_session_ops;

/// The fuzz targets, by name: the folders of `fuzz/corpus/` and the binaries
/// of `fuzz/fuzz_targets/`.
pub const TARGETS: &[&str] = &[
    "frame_parse",
    "pin_normalize",
    "session_ops",
    "reconnect_inputs",
];

/// The check function of the target named `name`, if there is one.
pub fn check_for(name: &str) -> Option<fn(&[u8])> {
    match name {
        "frame_parse" => Some(check_frame_parse),
        "pin_normalize" => Some(check_pin_normalize),
        "session_ops" => Some(check_session_ops),
        "reconnect_inputs" => Some(check_reconnect_inputs),
        _ => None,
    }
}

/// A readable form of an input of the target named `target`: the decoded
/// operation sequence for the session targets, the text otherwise. For
/// triaging a crash: `cargo run -p clawnode-fuzz-check --example describe
/// -- <target> <file>`.
pub fn describe(target: &str, data: &[u8]) -> String {
    match target {
        "session_ops" => format!("{:#?}", session::Scenario::decode(data)),
        "reconnect_inputs" => format!("{:#?}", reconnect::Scenario::decode(data)),
        _ => format!("{:?}", String::from_utf8_lossy(data)),
    }
}
