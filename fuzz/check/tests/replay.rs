//! Replays every committed corpus and regression file through the check
//! function of its fuzz target, on stable Rust and without libFuzzer: the
//! normal `cargo test --workspace` (and so CI) exercises the corpus.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use clawnode_fuzz_check::{TARGETS, check_for};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The files of `dir`, sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("readable corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn replay(target: &str) {
    let check = check_for(target).unwrap_or_else(|| panic!("no check for target {target}"));
    let corpus = files(&fuzz_dir().join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target}/ is empty: seed it (see fuzz/README.md)"
    );
    let regressions = files(&fuzz_dir().join("regressions").join(target));
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&regressions) {
        let data = fs::read(path).expect("readable corpus file");
        if catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} corpus files fail its check:\n  {}",
        failed.len(),
        corpus.len() + regressions.len(),
        failed.join("\n  ")
    );
    eprintln!(
        "{target}: replayed {} corpus and {} regression files",
        corpus.len(),
        regressions.len()
    );
}

#[test]
fn every_target_has_a_check() {
    for target in TARGETS {
        assert!(check_for(target).is_some(), "{target}");
    }
}

#[test]
fn replay_frame_parse() {
    replay("frame_parse");
}

#[test]
fn replay_pin_normalize() {
    replay("pin_normalize");
}

#[test]
fn replay_session_ops() {
    replay("session_ops");
}

#[test]
fn replay_reconnect_inputs() {
    replay("reconnect_inputs");
}
