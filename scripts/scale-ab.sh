#!/usr/bin/env bash
# Two builds of the load generator side by side: each holds N sessions
# with `clawnode-swarm` against a real TLS gateway of its own, both at once, so
# that both meet the same machine noise. Prints each one's idle CPU per
# session per minute and heap per session. A benchmark: it asserts nothing.
#
# Usage: scripts/scale-ab.sh BIN_A BIN_B [N]   (N default 300)
#   A BIN is a `clawnode-swarm` binary, or a `clawnode` binary of a build
#   from before the load generator had a binary of its own (`clawnode swarm`).
#   HOLD=SECS   idle hold (default 90)
#
# Runs of one build against itself differ by about 1% here, against 10–50%
# between runs of `scripts/scale.sh` at different times.
set -euo pipefail
export CLAWNODE_LOG=${CLAWNODE_LOG:-warn}
[ $# -ge 2 ] || { echo "usage: $0 BIN_A BIN_B [N]" >&2; exit 2; }
a=$(realpath "$1"); b=$(realpath "$2"); n=${3:-300}; hold=${HOLD:-90}
cd "$(dirname "$0")/.."
scripts/gateway.sh install >/dev/null

# One side, run in a subshell of its own: the trap stops its gateway.
side() {
    bin=$1 tag=$2
    dir=$(mktemp -d /tmp/clawnode-scale.XXXXXX)
    trap 'scripts/gateway.sh stop --dir "$dir/gateway" >/dev/null 2>&1; rm -rf "$dir"' EXIT
    eval "$(scripts/gateway.sh start --tls --dir "$dir/gateway" | grep -E '^(url|token|pin)=')"
    swarm=("$bin")
    [ "$(basename "$bin")" = clawnode-swarm ] || swarm+=(swarm)
    OPENCLAW_GATEWAY_TOKEN=$token "${swarm[@]}" --url "$url" --tls-fingerprint "sha256:$pin" \
        --count "$n" --inflight 16 --hold "$hold" --state-dir "$dir/swarm" --json >"$dir/out.json"
    python3 - "$dir/out.json" "$tag" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]}: {s['connected']} / {s['count']} connected, idle CPU "
      f"{s['idleCpuMsPerMinPerSession']:.3f} ms per session per min, heap "
      f"{(s.get('heapPerSessionBytes') or 0) / 1024:.1f} KiB per session")
PY
}

(side "$a" A) & pa=$!
sleep 2
(side "$b" B) & pb=$!
trap 'kill $pa $pb 2>/dev/null' INT TERM
# Both sides end (and stop their gateways) before the script does.
rc=0
wait $pa || rc=$?
wait $pb || rc=$?
exit $rc
