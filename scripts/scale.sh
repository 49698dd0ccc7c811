#!/usr/bin/env bash
# Many node sessions in one process against the real gateway: what a session
# costs clawnode, and what the gateway does under them. A benchmark, not a
# test: it prints figures and asserts nothing.
#
# Usage: scripts/scale.sh [N ...]        (default: 10 100 300)
#   INFLIGHT=K  sessions connecting at once (default 16)
#   HOLD=SECS   idle hold per run (default 60)
#
# For each N: a fresh TLS gateway on loopback, `clawnode-swarm --count N`
# (release build) pinned to it, and one table row with clawnode's figures
# (from the swarm's JSON summary) and the gateway's RSS and CPU during the
# hold (from /proc).
#
# The gateway's own limits, as measured (docs/performance.md, "Many
# sessions in one process"): at most
# 32 unauthenticated sockets per IP (HTTP 503 beyond, which the swarm counts
# as a `GATEWAY_BUSY` refusal and backs off from without counting a
# failure); admission cost that grows with the number of nodes connected;
# handshake timeouts when too many start at once. The swarm's sessions,
# retries included, share INFLIGHT handshake slots.
set -euo pipefail
export CLAWNODE_LOG=${CLAWNODE_LOG:-warn}
cd "$(dirname "$0")/.."

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10 100 300)
inflight=${INFLIGHT:-16}
hold=${HOLD:-60}

scripts/gateway.sh install >/dev/null
cargo build --release -q -p clawnode-swarm
bin=target/release/clawnode-swarm

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

printf '| N | connected | connect p50 / p99 ms | ramp s | clawnode heap per session | clawnode RSS per session | idle CPU per session per min | refusals | gateway RSS | gateway CPU per min (ramp + hold) |\n'
printf '|---|---|---|---|---|---|---|---|---|---|\n'
for n in "${sizes[@]}"; do
    dir=$(mktemp -d /tmp/clawnode-scale.XXXXXX)
    eval "$(scripts/gateway.sh start --tls --dir "$dir/gateway" | grep -E '^(url|token|pin|pid)=')"
    state="$dir/swarm"
    out="$dir/summary.json"
    gw_pid=$pid
    # The gateway's CPU over the swarm's hold: sampled after the ramp by the
    # swarm's own timing (ramp first, then the hold, then the summary).
    OPENCLAW_GATEWAY_TOKEN=$token "$bin" --url "$url" --tls-fingerprint "sha256:$pin" \
        --count "$n" --inflight "$inflight" --hold "$hold" --state-dir "$state" --json >"$out" &
    swarm=$!
    # Wait for the ramp to end: the summary file stays empty until the end,
    # so watch the gateway's CPU from when all sessions are up.
    start_cpu=$(cpu_ticks "$gw_pid"); start_t=$(date +%s.%N)
    wait "$swarm"
    end_cpu=$(cpu_ticks "$gw_pid"); end_t=$(date +%s.%N)
    gw_rss=$(rss_kib "$gw_pid")
    scripts/gateway.sh stop --dir "$dir/gateway" >/dev/null
    python3 - "$out" "$n" "$gw_rss" "$start_cpu" "$end_cpu" "$start_t" "$end_t" "$hz" <<'EOF'
import json, sys
out, n, gw_rss, c0, c1, t0, t1, hz = sys.argv[1:]
s = json.load(open(out))
mins = max(float(t1) - float(t0), 0.001) / 60
gw_cpu_ms_min = (int(c1) - int(c0)) * 1000 / int(hz) / mins
print(f"| {n} | {s['connected']} / {s['count']} | {s['connectP50Ms']} / {s['connectP99Ms']} | "
      f"{s['rampMs'] / 1000:.1f} | {(s.get('heapPerSessionBytes') or 0) / 1024:.1f} KiB | "
      f"{s['rssPerSessionBytes'] / 1024:.1f} KiB | "
      f"{s['idleCpuMsPerMinPerSession']:.3f} ms | {sum(s['refusals'].values())} {dict(s['refusals']) or ''} | "
      f"{int(gw_rss) / 1024:.0f} MiB | {gw_cpu_ms_min:.0f} ms |")
EOF
    rm -rf "$dir"
done
