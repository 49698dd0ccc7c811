#!/usr/bin/env bash
# Runs every test of the project: the README's test command, and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step prints how long the one before it took, and the total so far.
started=$SECONDS
last=$SECONDS
step() {
    printf '    (%d s; %d s in all)\n\n==> %s\n' $((SECONDS - last)) $((SECONDS - started)) "$*"
    last=$SECONDS
}
trap 'printf "    (%d s; %d s in all)\n" $((SECONDS - last)) $((SECONDS - started))' EXIT

step "format"
cargo fmt --all --check
# The libFuzzer binaries are outside the workspace (nightly only).
rustfmt --check --edition 2024 fuzz/fuzz_targets/*.rs

# What waits on the network or a package manager runs beside the builds:
# the real gateway for the interop tests (installed once, cached in
# .gateway/) and systemd-analyze, which checks the unit `clawnode service
# install` writes.
logs=$(mktemp -d /tmp/clawnode-test.XXXXXX)
scripts/gateway.sh install >"$logs/gateway-install.log" 2>&1 &
gateway_install=$!
install_systemd() {
    command -v systemd-analyze >/dev/null && return
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq systemd >/dev/null
}
install_systemd >"$logs/systemd-install.log" 2>&1 &
systemd_install=$!

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "rustdoc, warnings denied"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

step "core purity: no clock, no randomness source, no I/O"
# Comment lines are skipped: the docs explain why these are absent.
if grep -rnE 'Instant|SystemTime|thread_rng|OsRng|getrandom|from_entropy|rand::|std::(net|fs|time|thread|io|process|env)|HashMap|HashSet' core/src \
    | grep -vE '^[^:]+:[0-9]+:\s*//'; then
    echo "clawnode-core must not read a clock, draw randomness, do I/O or iterate a hash map (see above)" >&2
    exit 1
fi

step "the binaries, the tokio example and every test, built once"
# One feature set for all of it: a build of some packages alone (`-p`)
# unifies their features differently and compiles the crates again.
cargo build --workspace --bins --examples
cargo test --workspace --all-targets --no-run 2>&1 | tee "$logs/test-build.log"
interop=$(grep -oE 'target/[^ )]*/deps/interop-[0-9a-f]+' "$logs/test-build.log" | tail -1)
[ -x "$interop" ] || { echo "the interop test binary was not found" >&2; exit 1; }

step "systemd-analyze and the real OpenClaw gateway"
wait "$systemd_install" || { cat "$logs/systemd-install.log" >&2; exit 1; }
systemd-analyze --version | head -1
wait "$gateway_install" || { cat "$logs/gateway-install.log" >&2; exit 1; }
tail -3 "$logs/gateway-install.log"

step "interop against the real gateway, started beside the other checks (its output comes at the end)"
# Most of an interop test is waiting on a gateway (its start, a restart, a
# backoff): the rest of this script runs meanwhile, and the scenarios run
# INTEROP_THREADS at a time. They run copies of the binaries just built:
# the packaging check at the end cleans the adapter's artifacts.
mkdir -p "$logs/bin"
cp target/debug/clawnode target/debug/clawnode-swarm target/debug/examples/tokio_node "$logs/bin/"
CLAWNODE_BIN="$logs/bin/clawnode" \
    CLAWNODE_SWARM_BIN="$logs/bin/clawnode-swarm" \
    CLAWNODE_TOKIO_EXAMPLE="$logs/bin/tokio_node" \
    "$interop" --test-threads "${INTEROP_THREADS:-4}" >"$logs/interop.log" 2>&1 &
interop_pid=$!
echo "pid $interop_pid, log $logs/interop.log"

step "tests (unit, simulation, property, hostile peers, the differential exec check)"
# The model check runs once, below, with the budget CI gives it.
cargo test --workspace --exclude clawnode-tests --all-targets -- \
    --skip every_input_sequence_up_to_the_depth_keeps_the_invariants_and_liveness
cargo test -p clawnode-tests --lib --test hostile_exec --test hostile_peer --test differential_exec

step "bounded model check of the session policy: the deepest level within about 60 s"
CLAWNODE_MODEL_SECS=60 cargo test -p clawnode-core --test model -- --nocapture 2>&1 \
    | grep -E '^(MEASURE model|model check|test result)|violated|^  [A-Z]'

step "the README's first command, scripted: scripts/demo.sh --once"
scripts/demo.sh --once

step "core builds without std"
cargo build -p clawnode-core --no-default-features

step "the I/O crate: without default features no async runtime or CLI crate, with them no CLI crate"
cargo clippy -p clawnode --no-default-features --all-targets -- -D warnings
cargo test -p clawnode --no-default-features
neutral=$(cargo tree -p clawnode --no-default-features -e normal --prefix none | sed 's/ (\*)$//' | sort -u)
default=$(cargo tree -p clawnode -e normal --prefix none | sed 's/ (\*)$//' | sort -u)
if grep -E '^(smol|async-io|async-tungstenite|futures-rustls|async-signal|clap|toml|tokio) ' <<< "$neutral"; then
    echo "the neutral build of clawnode depends on the crates above" >&2
    exit 1
fi
if grep -E '^(clap|toml|tracing-subscriber|x509-cert|tokio|clawnode-host) ' <<< "$default"; then
    echo "the default build of clawnode depends on the crates above (CLI crates belong to clawnode-host)" >&2
    exit 1
fi
host=$(cargo tree -p clawnode-host -e normal --prefix none | sed 's/ (\*)$//' | sort -u)
echo "crates in the tree: clawnode neutral $(wc -l <<< "$neutral"), clawnode default $(wc -l <<< "$default"), clawnode-host $(wc -l <<< "$host")"

step "the driver without tokio (its tokio support is a feature)"
cargo clippy -p clawnode --no-default-features --features smol -- -D warnings

step "the injected bugs of scripts/falsify.sh still apply to the core"
for p in scripts/falsify/*.patch; do
    git apply --check "$p"
done

step "the published crates package and build as they would be published"
# The just-packaged crates reach each other's builds through a temporary
# local registry. Cargo treats registry sources as immutable while the
# version stays 0.1.0: it reuses an earlier run's unpacked copy
# ($CARGO_HOME/registry/src/-<hash>/) and its compiled artifacts, which would
# hide this run's code. Both go first. Last, since it rebuilds these crates.
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/clawnode-*
cargo clean -p clawnode-core
cargo clean -p clawnode
cargo publish --dry-run --allow-dirty -p clawnode-core -p clawnode -p clawnode-host

step "interop against the real gateway: its output"
interop_status=0
wait "$interop_pid" || interop_status=$?
cat "$logs/interop.log"
[ "$interop_status" = 0 ] || { echo "interop tests failed (status $interop_status)" >&2; exit 1; }
rm -rf "$logs"
