#!/usr/bin/env bash
# Mutation testing of clawnode-core (the simulation harness excluded) with
# cargo-mutants: each mutant is built and the core's whole test suite run
# against it; a mutant no test catches is a gap in the tests (or an
# equivalent mutant, triaged in core/MUTANTS.md).
#
#   scripts/mutants.sh [SHARD/SHARDS]     e.g. scripts/mutants.sh 3/16
#
# Without an argument every mutant runs (about 550; hours on 2 cores). A
# shard of 16 runs in about half an hour. The model check is cut to 5 s per
# mutant (CLAWNODE_MODEL_SECS). Results go to target/mutants/mutants.out/;
# cargo-mutants is installed if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-mutants > /dev/null; then
    cargo install cargo-mutants --locked
fi
shard=()
if [ $# -gt 0 ]; then
    shard=(--shard "$1")
fi
CLAWNODE_MODEL_SECS="${CLAWNODE_MODEL_SECS:-5}" cargo mutants \
    --package clawnode-core \
    --exclude 'core/src/sim.rs' --exclude 'core/src/sim/**' \
    --timeout 300 \
    "${shard[@]}" \
    --output target/mutants
