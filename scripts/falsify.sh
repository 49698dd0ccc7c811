#!/usr/bin/env bash
# The falsification check: injects each known bug of scripts/falsify/ into
# a copy of the core and reports which layer of the verification catches
# it: the named scenarios (every core test file but the two below), the
# property tests (core/tests/props.rs), the bounded model check
# (core/tests/model.rs, with the depth of the counterexample) and, when
# FUZZ_SECS is set and cargo-fuzz is installed, the fuzzers.
#
#   scripts/falsify.sh [PATCH...]      default: every scripts/falsify/*.patch
#
# MODEL_SECS (default 20) is the model check's budget per bug, FUZZ_SECS
# (default 0: skipped) each fuzz target's. The tree tested is the working
# tree's tracked files (`git stash create`), in target/falsify/, so the
# checkout is never touched. The script fails if a bug escapes every layer.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

model_secs="${MODEL_SECS:-20}"
fuzz_secs="${FUZZ_SECS:-0}"
work="$root/target/falsify"
tree="$work/tree"
export CARGO_TARGET_DIR="$work/target"

patches=("$@")
if [ ${#patches[@]} -eq 0 ]; then
    patches=(scripts/falsify/*.patch)
fi

rev=$(git stash create)
rev="${rev:-HEAD}"
git worktree remove --force "$tree" > /dev/null 2>&1 || rm -rf "$tree"
git worktree prune
git worktree add --detach "$tree" "$rev" > /dev/null || exit 1
trap 'cd "$root" && git worktree remove --force "$tree" > /dev/null 2>&1' EXIT

scenario_tests=()
for f in "$tree"/core/tests/*.rs; do
    name=$(basename "$f" .rs)
    case "$name" in props | model) ;; *) scenario_tests+=(--test "$name") ;; esac
done

# A layer's verdict: "caught" (with the first failing test), or "missed".
run_layer() {
    local log="$1"
    shift
    if "$@" > "$log" 2>&1; then
        echo "missed"
    else
        local first
        first=$(grep -m1 -oE "^test [^ ]+ \.\.\. FAILED|panicked at [^:]+" "$log" | head -1)
        echo "caught (${first:-build failed})"
    fi
}

escaped=0
printf '%-40s | %s\n' "bug" "layers"
for patch in "${patches[@]}"; do
    name=$(basename "$patch" .patch)
    log="$work/$name"
    mkdir -p "$log"
    (cd "$tree" && git checkout -q . && git apply "$root/$patch") || {
        echo "$name: the patch does not apply" >&2
        exit 1
    }
    verdicts=()
    cd "$tree"
    verdicts+=("scenarios: $(run_layer "$log/scenarios.log" cargo test -p clawnode-core --lib "${scenario_tests[@]}")")
    verdicts+=("proptests: $(run_layer "$log/props.log" cargo test -p clawnode-core --test props)")
    model=$(CLAWNODE_MODEL_SECS="$model_secs" run_layer "$log/model.log" \
        cargo test -p clawnode-core --test model -- --nocapture)
    depth=$(grep -m1 -oE "violated at depth [0-9]+" "$log/model.log" | grep -oE "[0-9]+$")
    reached=$(grep -m1 -oE "depth [0-9]+ complete" "$log/model.log")
    if [ -n "$depth" ]; then
        verdicts+=("model check: caught at depth $depth")
    else
        verdicts+=("model check: $model${reached:+, $reached}")
    fi
    if [ "$fuzz_secs" -gt 0 ] && cargo +nightly fuzz --help > /dev/null 2>&1; then
        for target in session_ops reconnect_inputs; do
            v=$(run_layer "$log/fuzz-$target.log" cargo +nightly fuzz run "$target" \
                -- -max_total_time="$fuzz_secs")
            verdicts+=("fuzz $target: ${v%% (*}")
        done
    fi
    cd "$root"
    caught=0
    for v in "${verdicts[@]}"; do
        case "$v" in *": caught"*) caught=1 ;; esac
    done
    [ "$caught" -eq 1 ] || escaped=$((escaped + 1))
    printf '%-40s | %s\n' "$name" "$(IFS=';'; echo "${verdicts[*]}" | sed 's/;/; /g')"
done
echo "logs: $work/<bug>/"
if [ "$escaped" -gt 0 ]; then
    echo "$escaped bug(s) escaped every layer" >&2
    exit 1
fi
