#!/usr/bin/env bash
# Side by side: clawnode vs the official TypeScript node host
# (`openclaw node run`), against one real TLS gateway on loopback.
#
# Usage:
#   scripts/compare.sh [--rounds N] [--keep] [--official-args "ARGS"]
#
#   --rounds N        rounds (default 3); each round runs clawnode and the
#                     official host in turn (the order alternates), ~3 min
#                     per round plus ~1 min of setup.
#   --keep            keep the scratch directory (gateway log, node outputs).
#   --official-args   extra `openclaw node run` flags (default
#                     "--commands system.which": the same command surface as
#                     clawnode; "" runs its full default surface).
#
# What it does: builds target/release/clawnode, installs Node 24 + openclaw
# (scripts/gateway.sh install), starts one TLS gateway (`--verbose --ws-log
# compact`, so its log has a millisecond timestamp on every hello-ok), gives
# an operator device of its own (scripts/compare/operator.mjs) admin scopes,
# pairs both nodes and approves their command surface with the operator CLI,
# then per round and per node measures:
#   1. process start → the gateway logging the node's hello-ok;
#   2. RSS summed over the node's process tree (its session) 30 s after it;
#   3. CPU (utime+stime, and per-thread schedstat) over 60 s idle;
#   4. 200 sequential `node.invoke system.which` from one persistent
#      operator connection (p50, p99);
#   5. gateway restarted in-process (config edit) → `[gateway] ready` →
#      the node's next hello-ok.
# Prints a Markdown table of medians with the ratio clawnode/official and
# writes it to target/compare/latest.md (+ latest.json with every figure).
# Every process started is killed on exit (trap), also on Ctrl-C.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS=3
KEEP=0
OFFICIAL_ARGS="--commands system.which"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS="${2:?--rounds needs a value}"; shift ;;
    --rounds=*) ROUNDS="${1#*=}" ;;
    --keep) KEEP=1 ;;
    --official-args) OFFICIAL_ARGS="${2-}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  shift
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --rounds must be a positive integer" >&2; exit 2; }
command -v python3 >/dev/null || { echo "compare.sh: python3 is required" >&2; exit 1; }

T0=$(date +%s)
WORK="$(mktemp -d /tmp/clawnode-compare.XXXXXX)"
export COMPARE_PIDS="$WORK/pids"   # one session id per line, appended by compare.py
: >"$COMPARE_PIDS"
PY_PID=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [[ -n "$PY_PID" ]] && kill -0 "$PY_PID" 2>/dev/null; then
    kill -TERM "$PY_PID" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$PY_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$PY_PID" 2>/dev/null || true
  fi
  # Every session compare.py started (gateway, nodes): TERM, then KILL.
  local sid pids=()
  while read -r sid; do [[ -n "$sid" ]] && pids+=("$sid"); done <"$COMPARE_PIDS" 2>/dev/null || true
  local p any=0
  for p in "${pids[@]}"; do
    if kill -0 -- "-$p" 2>/dev/null; then kill -TERM -- "-$p" 2>/dev/null || true; any=1; fi
  done
  if [[ $any -eq 1 ]]; then
    for _ in $(seq 1 20); do
      any=0
      for p in "${pids[@]}"; do kill -0 -- "-$p" 2>/dev/null && any=1; done
      [[ $any -eq 0 ]] && break
      sleep 0.5
    done
    for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
  fi
  # Children that left their process group but kept the session.
  for p in "${pids[@]}"; do
    for s in /proc/[0-9]*/stat; do
      local f; f="$(cat "$s" 2>/dev/null)" || continue
      f="${f##*) }"; set -- $f
      [[ "${5:-}" == "$p" ]] && kill -KILL "$(basename "$(dirname "$s")")" 2>/dev/null || true
    done
  done
  if [[ $KEEP -eq 1 || $rc -ne 0 ]]; then
    echo "compare.sh: scratch directory kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

echo "compare.sh: building clawnode (release) ..." >&2
(cd "$ROOT" && cargo build --release --quiet -p clawnode-host --bin clawnode) >&2
CLAWNODE="$ROOT/target/release/clawnode"
[[ -x "$CLAWNODE" ]] || { echo "compare.sh: no $CLAWNODE" >&2; exit 1; }
"$ROOT/scripts/gateway.sh" install >/dev/null

mkdir -p "$ROOT/target/compare"
OUT="$ROOT/target/compare/latest.md"
python3 "$ROOT/scripts/compare/compare.py" --rounds "$ROUNDS" --work "$WORK" \
  --clawnode "$CLAWNODE" --official-args "$OFFICIAL_ARGS" --out "$OUT" &
PY_PID=$!
wait "$PY_PID"
PY_PID=""

cat <<EOF

Reproduce (from a clean clone; needs cargo, npm and python3):
    scripts/gateway.sh install      # Node 24 + openclaw@2026.9.6 into .gateway/
    scripts/compare.sh --rounds $ROUNDS   # this table; also in target/compare/latest.md
Total run time: $(( ($(date +%s) - T0) / 60 )) min $(( ($(date +%s) - T0) % 60 )) s.
EOF
