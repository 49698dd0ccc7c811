//! Keeps the committed corpus seeded: every seed of `seeds()` must be in
//! `fuzz/corpus/<target>/seed-<name>` with the same bytes.
//!
//! `CLAWNODE_WRITE_SEEDS=1 cargo test -p clawnode-fuzz-check --test seeds`
//! writes the missing or stale ones.

use std::fs;
use std::path::Path;

use clawnode_fuzz_check::{TARGETS, seeds};

#[test]
fn every_seed_is_committed() {
    let write = std::env::var_os("CLAWNODE_WRITE_SEEDS").is_some_and(|v| v == "1");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let mut stale = Vec::new();
    for target in TARGETS {
        let list = seeds(target);
        assert!(!list.is_empty(), "{target} has no seeds");
        let dir = root.join(target);
        for (name, bytes) in list {
            let path = dir.join(format!("seed-{name}"));
            if fs::read(&path).ok().as_deref() == Some(&bytes[..]) {
                continue;
            }
            if write {
                fs::create_dir_all(&dir).expect("create corpus folder");
                fs::write(&path, &bytes).expect("write seed");
            } else {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "seeds missing or stale (rerun with CLAWNODE_WRITE_SEEDS=1):\n  {}",
        stale.join("\n  ")
    );
}
