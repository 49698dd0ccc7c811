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

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "rustdoc, warnings denied"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

step "core builds without std"
cargo build -p clawnode-core --no-default-features

step "core purity: no clock, no randomness source, no I/O"
# Comment lines are skipped: the docs explain why these are absent.
if grep -rnE 'Instant|SystemTime|thread_rng|OsRng|getrandom|from_entropy|rand::|std::(net|fs|time|thread|io|process|env)|HashMap|HashSet' core/src \
    | grep -vE '^[^:]+:[0-9]+:\s*//'; then
    echo "clawnode-core must not read a clock, draw randomness, do I/O or iterate a hash map (see above)" >&2
    exit 1
fi

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

step "the published crates package and build as they would be published"
# The just-packaged crates reach each other's builds through a temporary
# local registry. Cargo treats registry sources as immutable while the
# version stays 0.1.0: it reuses an earlier run's unpacked copy
# ($CARGO_HOME/registry/src/-<hash>/) and its compiled artifacts, which would
# hide this run's code. Both go first.
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/clawnode-*
cargo clean -p clawnode-core
cargo clean -p clawnode
cargo publish --dry-run --allow-dirty -p clawnode-core -p clawnode -p clawnode-host

step "the injected bugs of scripts/falsify.sh still apply to the core"
for p in scripts/falsify/*.patch; do
    git apply --check "$p"
done

step "systemd-analyze, which checks the unit \`clawnode service install\` writes"
if ! command -v systemd-analyze >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
    fi
fi
systemd-analyze --version | head -1

step "real OpenClaw gateway for the interop tests (installed once, cached in .gateway/)"
scripts/gateway.sh install

step "the binaries and the tokio example the interop tests run"
cargo build -p clawnode-host --bin clawnode -p clawnode-swarm -p clawnode --example tokio_node

step "tests (unit, simulation, property, and interop against the real gateway)"
cargo test --workspace --all-targets

step "bounded model check of the session policy: the deepest level within about 60 s"
CLAWNODE_MODEL_SECS=60 cargo test -p clawnode-core --test model -- --nocapture 2>&1 \
    | grep -E '^(MEASURE model|model check|test result)|violated|^  [A-Z]'

step "the README's first command, scripted: scripts/demo.sh --once"
scripts/demo.sh --once
