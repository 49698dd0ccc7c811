#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ on nightly for the given time and
# prints, per target, executions per second, total executions and the
# corpus size.
#
#   scripts/fuzz.sh [seconds] [target...]
#
# seconds defaults to 60; targets default to all four. Environment:
#   FUZZ_JOBS       parallel libFuzzer jobs per target (default 1)
#   FUZZ_SANITIZER  address | none (default none: the core forbids unsafe
#                   code; debug assertions and overflow checks stay on)
#   FUZZ_LOG_DIR    where libFuzzer logs go (default fuzz/logs)
#   FUZZ_MERGE=1    afterwards, merge the inputs that add edge coverage into
#                   the committed corpus fuzz/corpus/<target>/ (libFuzzer
#                   -set_cover_merge=1)
# The committed corpus is read, never written, while fuzzing: new inputs go
# to fuzz/work/<target>/ (ignored by git). A crash leaves its input in
# fuzz/artifacts/<target>/ and makes the script fail; save it under
# fuzz/regressions/<target>/ so that the stable replay keeps checking it.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(frame_parse pin_normalize session_ops reconnect_inputs)
fi
jobs="${FUZZ_JOBS:-1}"
sanitizer="${FUZZ_SANITIZER:-none}"
log_dir="${FUZZ_LOG_DIR:-fuzz/logs}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh needs the nightly toolchain: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
fi

mkdir -p "$log_dir"
build=(-O -a -s "$sanitizer")
echo "==> building ${targets[*]} (nightly, release, debug assertions, sanitizer $sanitizer)"
for t in "${targets[@]}"; do
    (cd fuzz && cargo +nightly fuzz build "${build[@]}" "$t")
done

status=0
summary=()
for t in "${targets[@]}"; do
    log="$log_dir/$t.log"
    mkdir -p "fuzz/corpus/$t" "fuzz/work/$t"
    echo "==> fuzzing $t for ${secs}s (jobs $jobs, log $log)"
    started=$SECONDS
    set +e
    par=()
    if [ "$jobs" -gt 1 ]; then
        par=(-jobs="$jobs" -workers="$jobs")
    fi
    (cd fuzz && cargo +nightly fuzz run "${build[@]}" "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$secs" "${par[@]}" \
        -print_final_stats=1 -timeout=10 -rss_limit_mb=2048) >"$log" 2>&1
    rc=$?
    set -e
    elapsed=$((SECONDS - started))
    # With -jobs > 1 libFuzzer writes one fuzz-N.log per job in fuzz/.
    logs=("$log")
    if [ "$jobs" -gt 1 ]; then
        for f in fuzz/fuzz-*.log; do
            [ -e "$f" ] || continue
            cat "$f" >>"$log"
            rm -f "$f"
        done
    fi
    execs=$(grep -h 'stat::number_of_executed_units' "${logs[@]}" | awk '{s+=$2} END {print s+0}' || true)
    rate=$(grep -h 'stat::average_exec_per_sec' "${logs[@]}" | awk '{s+=$2} END {print s+0}' || true)
    if [ "${FUZZ_MERGE:-0}" = 1 ] && [ $rc -eq 0 ]; then
        # Only inputs that add edge coverage, fewest files first: keeps the
        # committed corpus at a few hundred small files.
        (cd fuzz && cargo +nightly fuzz run "${build[@]}" "$t" "corpus/$t" "work/$t" -- \
            -set_cover_merge=1 -use_counters=0 -use_value_profile=0 -use_cmp=0) >>"$log" 2>&1
    fi
    # The corpus libFuzzer ended with: committed seeds plus what it found.
    files=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -1 | sed 's/corp: //' || true)
    committed=$(find "fuzz/corpus/$t" -type f | wc -l)
    verdict=ok
    if [ $rc -ne 0 ] || grep -qE '^(==[0-9]+== ERROR|thread .* panicked|SUMMARY: libFuzzer)' "$log"; then
        verdict="CRASH (see $log and fuzz/artifacts/$t/)"
        status=1
    fi
    line=$(printf '%-18s %8s exec/s  %12s execs  %6s s  corpus %s (units/size), %s committed  %s' \
        "$t" "$rate" "$execs" "$elapsed" "${files:-?}" "$committed" "$verdict")
    echo "$line"
    summary+=("$line")
done

echo
echo "==> summary"
printf '%s\n' "${summary[@]}"
exit $status
