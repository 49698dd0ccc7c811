// Operator client for scripts/compare.sh (run with the Node 24 of .gateway/).
//
// One persistent operator connection to an OpenClaw gateway over wss:// with
// a pinned certificate and its own Ed25519 device identity, signed exactly
// like PROTOCOL.md §3 (v3 string, role "operator" and its scopes).
//
// Usage:
//   node operator.mjs --url wss://127.0.0.1:P --token T --pin HEX \
//       --identity FILE CMD [ARGS]
// Commands (one JSON object per line on stdout):
//   hello                        connect, print {"ok":true,"connId",...}, exit
//   nodes                        print node.list's payload
//   approve-all                  approve every pending node command surface
//                                (node.pair.list / node.pair.approve)
//   wait-connected NODEID [S]    wait (<= S s, default 60) until NODEID is
//                                listed connected
//   invoke NODEID N [CMD]        N sequential node.invoke of CMD (default
//                                system.which {"bins":["sh"]}) on this one
//                                connection; prints {"n","p50","p99",...} (ms)
// Environment: OPERATOR_NODE_MODULES, where `ws` lives (default: the
// gateway's node_modules under .gateway/openclaw).
import { createRequire } from "node:module";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeModules =
  process.env.OPERATOR_NODE_MODULES ||
  path.resolve(here, "../../.gateway/openclaw/node_modules");
const require = createRequire(path.join(nodeModules, "noop.js"));
const WebSocket = require("ws");

const SCOPES = [
  "operator.admin",
  "operator.read",
  "operator.write",
  "operator.pairing",
  "operator.approvals",
];
const CLIENT = { id: "cli", mode: "cli", platform: "linux", version: "0.1.0" };

function die(msg) {
  process.stderr.write(`operator.mjs: ${msg}\n`);
  process.exit(1);
}

const args = process.argv.slice(2);
const opts = {};
while (args.length && args[0].startsWith("--")) {
  const k = args.shift().slice(2);
  opts[k] = args.shift();
}
const [cmd, ...rest] = args;
for (const k of ["url", "token", "identity"]) if (!opts[k]) die(`--${k} is required`);

const b64url = (buf) => Buffer.from(buf).toString("base64url");

function loadIdentity(file) {
  if (fs.existsSync(file)) {
    const j = JSON.parse(fs.readFileSync(file, "utf8"));
    return {
      priv: crypto.createPrivateKey({ key: j.privateKeyPem, format: "pem" }),
      raw: Buffer.from(j.publicKey, "base64url"),
    };
  }
  const { publicKey, privateKey } = crypto.generateKeyPairSync("ed25519");
  const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
  const pem = privateKey.export({ format: "pem", type: "pkcs8" });
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify({ publicKey: b64url(raw), privateKeyPem: pem }), {
    mode: 0o600,
  });
  return { priv: privateKey, raw };
}

const ident = loadIdentity(opts.identity);
const deviceId = crypto.createHash("sha256").update(ident.raw).digest("hex");
const normPin = (p) => (p || "").replace(/^sha-?256:/i, "").replace(/[^0-9a-f]/gi, "").toLowerCase();
const pin = normPin(opts.pin);

let nextId = 0;
const pending = new Map();
let ws;

function request(method, params) {
  const id = `op-${++nextId}`;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    ws.send(JSON.stringify({ type: "req", id, method, params }));
  });
}

function connect() {
  return new Promise((resolve, reject) => {
    ws = new WebSocket(opts.url, {
      rejectUnauthorized: false,
      maxPayload: 64 * 1024 * 1024,
      perMessageDeflate: false,
    });
    let done = false;
    const fail = (e) => {
      if (!done) {
        done = true;
        reject(e);
      }
    };
    ws.on("upgrade", (res) => {
      if (!pin) return;
      const cert = res.socket.getPeerCertificate && res.socket.getPeerCertificate();
      const got = cert && cert.raw ? crypto.createHash("sha256").update(cert.raw).digest("hex") : "";
      if (got !== pin) {
        fail(new Error(`TLS pin mismatch: expected ${pin} observed ${got}`));
        ws.terminate();
      }
    });
    ws.on("error", fail);
    ws.on("close", (code, reason) => {
      fail(new Error(`closed ${code} ${reason}`));
      for (const p of pending.values()) p.reject(new Error(`closed ${code} ${reason}`));
      pending.clear();
    });
    ws.on("message", (data) => {
      let f;
      try {
        f = JSON.parse(data.toString());
      } catch {
        return;
      }
      if (f.type === "event" && f.event === "connect.challenge") {
        const { nonce, ts } = f.payload;
        const signed = [
          "v3",
          deviceId,
          CLIENT.id,
          CLIENT.mode,
          "operator",
          SCOPES.join(","),
          ts,
          opts.token,
          nonce,
          CLIENT.platform,
          "",
        ].join("|");
        const signature = b64url(crypto.sign(null, Buffer.from(signed, "utf8"), ident.priv));
        request("connect", {
          minProtocol: 3,
          maxProtocol: 4,
          client: { ...CLIENT, displayName: "clawnode-compare-operator" },
          role: "operator",
          scopes: SCOPES,
          caps: [],
          commands: [],
          auth: { token: opts.token },
          device: { id: deviceId, publicKey: b64url(ident.raw), signature, signedAt: ts, nonce },
        }).then(
          (p) => {
            done = true;
            resolve(p);
          },
          (e) => fail(e),
        );
      } else if (f.type === "res") {
        const p = pending.get(f.id);
        if (!p) return;
        pending.delete(f.id);
        if (f.ok) p.resolve(f.payload);
        else {
          const e = new Error(`${f.error?.code}: ${f.error?.message}`);
          e.frame = f;
          p.reject(e);
        }
      }
    });
  });
}

const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];

async function main() {
  const hello = await connect();
  switch (cmd) {
    case "hello":
      out({ ok: true, deviceId, connId: hello.server?.connId, scopes: hello.auth?.scopes });
      break;
    case "nodes":
      out(await request("node.list", {}));
      break;
    case "approve-all": {
      const list = await request("node.pair.list", {});
      const reqs = list.pending || [];
      const approved = [];
      for (const r of reqs) {
        await request("node.pair.approve", { requestId: r.requestId });
        approved.push({ requestId: r.requestId, nodeId: r.nodeId });
      }
      out({ approved });
      break;
    }
    case "wait-connected": {
      const [nodeId, secs = "60"] = rest;
      const deadline = Date.now() + Number(secs) * 1000;
      for (;;) {
        const l = await request("node.list", {});
        const n = (l.nodes || []).find((x) => x.nodeId === nodeId);
        if (n && n.connected) {
          out({ connected: true, nodeId, commands: n.commands });
          break;
        }
        if (Date.now() > deadline) die(`node ${nodeId} not connected after ${secs} s`);
        await sleep(200);
      }
      break;
    }
    case "invoke": {
      const [nodeId, nStr = "200", command = "system.which"] = rest;
      const n = Number(nStr);
      const params = command === "system.which" ? { bins: ["sh"] } : {};
      const ms = [];
      let errors = 0;
      let firstError = null;
      // One warm-up call (not counted): the first invoke can pay one-off costs.
      try {
        await request("node.invoke", {
          nodeId, command, params, timeoutMs: 15000, idempotencyKey: crypto.randomUUID(),
        });
      } catch (e) {
        die(`warm-up invoke failed: ${e.message}`);
      }
      for (let i = 0; i < n; i++) {
        const t0 = process.hrtime.bigint();
        try {
          const p = await request("node.invoke", {
            nodeId, command, params, timeoutMs: 15000, idempotencyKey: crypto.randomUUID(),
          });
          if (p && p.ok === false) throw new Error(JSON.stringify(p.error || p));
        } catch (e) {
          errors++;
          firstError ??= e.message;
        }
        ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
      const s = [...ms].sort((a, b) => a - b);
      const r3 = (x) => Math.round(x * 1000) / 1000;
      out({
        n, errors, firstError,
        p50: r3(pct(s, 0.5)), p90: r3(pct(s, 0.9)), p99: r3(pct(s, 0.99)),
        min: r3(s[0]), max: r3(s[s.length - 1]),
        mean: r3(ms.reduce((a, b) => a + b, 0) / n),
      });
      break;
    }
    default:
      die(`unknown command ${cmd}`);
  }
  ws.close(1000, "bye");
}

main().catch((e) => die(e.message));
