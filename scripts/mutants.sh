#!/usr/bin/env bash
# Mutation testing of clawnode-core (the simulation harness excluded) with
# cargo-mutants: each mutant is built and the core's whole test suite run
# against it; a mutant no test catches is a gap in the tests (or an
# equivalent mutant, triaged in core/MUTANTS.md).
#
#   scripts/mutants.sh [SHARD/SHARDS]          e.g. scripts/mutants.sh 3/16
#   scripts/mutants.sh --smol [SHARD/SHARDS]   the adapter's pure modules
#   scripts/mutants.sh --exec [SHARD/SHARDS]   the exec host
#   scripts/mutants.sh --exec --iterate        only what the last run missed
#
# --smol mutates the adapter's pure modules instead (pin verification, the
# state directory, event formatting, config-file parsing) against
# clawnode's and clawnode-host's tests; results go to target/mutants-smol/mutants.out/.
#
# --exec mutates the exec host (the allowlist matcher and resolution, plan
# binding, the environment filter, the runner and its reaper, the approvals
# document) against clawnode-host's exec tests (the unit tests under exec::
# and tests/exec.rs, through nextest); results go to
# target/mutants-exec/mutants.out/, survivors are triaged in
# host/MUTANTS-EXEC.md.
#
# Without an argument every mutant runs (about 550; about an hour on 2 cores). A
# shard of 16 runs in about half an hour. The model check is cut to 5 s per
# mutant (CLAWNODE_MODEL_SECS). Results go to target/mutants/mutants.out/;
# cargo-mutants is installed if missing. JOBS (default 2) mutants build
# and test at once.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-mutants > /dev/null; then
    cargo install cargo-mutants --locked
fi
smol=0
exec_host=0
if [ "${1:-}" = "--smol" ]; then
    smol=1
    shift
elif [ "${1:-}" = "--exec" ]; then
    exec_host=1
    shift
fi
extra=()
if [ "${1:-}" = "--iterate" ]; then
    # Skip the mutants an earlier run into the same output caught.
    extra=(--iterate)
    shift
fi
shard=()
if [ $# -gt 0 ]; then
    shard=(--shard "$1")
fi
if [ "$exec_host" -eq 1 ]; then
    # No debug info: each mutant rebuilds and relinks the crate's test
    # binaries, and debug info is most of that time.
    CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-0}" exec cargo mutants \
        --package clawnode-host \
        --file 'host/src/exec/*.rs' \
        --test-tool nextest \
        --timeout 120 --jobs "${JOBS:-2}" \
        "${shard[@]}" "${extra[@]}" \
        --output target/mutants-exec \
        -- --profile mutants -E 'binary(exec) or test(/^exec::/)'
fi
if [ "$smol" -eq 1 ]; then
    exec cargo mutants \
        --package clawnode --package clawnode-host \
        --file io-smol/src/tls.rs --file io-smol/src/store.rs \
        --file io-smol/src/store/atomic.rs --file 'io-smol/src/event/*.rs' \
        --file host/src/bin/clawnode/file_config.rs \
        --timeout 300 --jobs "${JOBS:-2}" \
        "${shard[@]}" \
        --output target/mutants-smol
fi
CLAWNODE_MODEL_SECS="${CLAWNODE_MODEL_SECS:-5}" cargo mutants \
    --package clawnode-core \
    --exclude 'core/src/sim.rs' --exclude 'core/src/sim/**' \
    --timeout 300 --jobs "${JOBS:-2}" \
    "${shard[@]}" \
    --output target/mutants
