//! The interop and fault suite: `clawnode` against the real OpenClaw gateway
//! (`openclaw@2026.9.6` from npm, installed by `scripts/gateway.sh install`).
//!
//! One test binary, so that gateways are shared where that is harmless:
//! one TLS gateway for scenarios 1, 2, 3 and 7 (they only disturb their own
//! node) and one plain gateway for 9 and 10 (they disturb their node through
//! a [`Tap`]); the disruptive scenarios 4, 5, 6, 8 and 11 get their own. Tests
//! are numbered `sNN_...` and named for what they check; every node has a
//! unique display name so the gateway log can be searched for it.
//!
//! Measurements are printed with `eprintln!` as `MEASURE sNN ...` lines
//! (run with `--nocapture` to see them).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clawnode_tests::sys::{self, now_ms};
use clawnode_tests::{
    Gateway, GatewayOptions, Install, Node, NodeOptions, Schema, StubModel, Tap, require,
};
use serde_json::{Value, json};

const CONNECT: Duration = Duration::from_secs(30);
/// The core's backoff cap (`BackoffConfig::default().cap`).
const BACKOFF_CAP_MS: u64 = 30_000;
/// The upper bound of the backoff's slow band.
const SLOW_MAX_MS: u64 = 60_000;
/// The worst time to notice a silent gateway: ping interval + pong timeout.
const PONG_DETECT_MS: u64 = 25_000;
/// SIGKILL cycles of s04.
const CYCLES: usize = 8;

static SHARED_TLS: OnceLock<Gateway> = OnceLock::new();
static SHARED_PLAIN: OnceLock<Gateway> = OnceLock::new();

fn shared_tls(install: &Install) -> &'static Gateway {
    SHARED_TLS.get_or_init(|| Gateway::start(install, GatewayOptions::tls("shared-tls")))
}

fn shared_plain(install: &Install) -> &'static Gateway {
    SHARED_PLAIN.get_or_init(|| Gateway::start(install, GatewayOptions::plain("shared-plain")))
}

fn unique(tag: &str) -> String {
    format!("cn-{tag}-{}", std::process::id())
}

/// A pin as 64 lowercase hex (drops `sha256:` and separators).
fn norm_pin(p: &str) -> String {
    let lower = p.trim().to_ascii_lowercase();
    let body = lower
        .strip_prefix("sha256:")
        .or_else(|| lower.strip_prefix("sha-256:"))
        .unwrap_or(&lower);
    body.chars().filter(char::is_ascii_hexdigit).collect()
}

fn pins_of(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().filter_map(Value::as_str).map(norm_pin).collect(),
        Value::String(s) => vec![norm_pin(s)],
        _ => Vec::new(),
    }
}

fn count(events: &[Value], name: &str) -> usize {
    events.iter().filter(|e| e["event"] == name).count()
}

fn ts(e: &Value) -> u64 {
    e["ts"].as_u64().expect("event has ts")
}

/// Finds the first string value under key `key` anywhere in `v`.
fn find_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    match v {
        Value::Object(m) => m
            .get(key)
            .and_then(Value::as_str)
            .or_else(|| m.values().find_map(|x| find_str(x, key))),
        Value::Array(a) => a.iter().find_map(|x| find_str(x, key)),
        _ => None,
    }
}

/// The `sh` path in an invoke's JSON output (payload or payloadJSON).
fn which_sh(out: &Value) -> Option<String> {
    if let Some(p) = find_str(out, "sh") {
        return Some(p.to_owned());
    }
    // Look inside payloadJSON strings.
    let mut stack = vec![out.clone()];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => stack.extend(m.into_iter().map(|(_, x)| x)),
            Value::Array(a) => stack.extend(a),
            Value::String(s) => {
                if let Ok(inner) = serde_json::from_str::<Value>(&s)
                    && inner.is_object()
                {
                    if let Some(p) = find_str(&inner, "sh") {
                        return Some(p.to_owned());
                    }
                    stack.push(inner);
                }
            }
            _ => {}
        }
    }
    None
}

/// Starts a node, waits for `connected`, approves its command surface on
/// `gw` and waits until `system.which` answers, through the tests'
/// operator connection (s01 checks the same through the operator CLI).
/// Returns the node, its device id and the invoke's JSON output.
fn connected_and_approved(gw: &Gateway, node: &Node) -> (String, Value) {
    node.expect(0, "connected", CONNECT);
    let id = node.device_id();
    gw.approve_node(&id, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("approve: {e}\n{}", node.dump()));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = gw.invoke_rpc(&id, "system.which", &json!({"bins": ["sh"]}), 10_000);
        if out.success {
            let v = out.json().expect("invoke --json output");
            if which_sh(&v).is_some() {
                return (id, v);
            }
        }
        assert!(
            Instant::now() < deadline,
            "system.which never answered after approval: {out:?}\n{}\ngateway log tail:\n{}",
            node.dump(),
            gw.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

// ---------------------------------------------------------------- scenario 1

/// Pinned wss:// connect → hello-ok → `nodes status` shows the node
/// connected → approve its command surface → `nodes invoke system.which`
/// returns the path of `sh`.
#[test]
fn s01_pinned_wss_connect_status_approve_invoke() {
    let (install, bin) = require!("s01");
    let gw = shared_tls(&install);
    let name = unique("s01");
    let started = Instant::now();
    let node = Node::spawn(
        &bin,
        NodeOptions::new(&gw.url(), gw.token(), &name).pin(&gw.pin()),
    );
    let (_, connected) = node.expect(0, "connected", CONNECT);
    let connect_ms = started.elapsed().as_millis();
    assert_eq!(connected["protocol"], 4, "negotiated protocol: {connected}");
    assert_eq!(connected["tickIntervalMs"], 30_000, "{connected}");
    let id = node.device_id();

    let entry = sys::poll(Duration::from_secs(30), || {
        gw.node_status(&id).filter(|n| n["connected"] == true)
    })
    .unwrap_or_else(|| {
        panic!(
            "nodes status never showed {id} connected: {:?}\n{}",
            gw.openclaw_json(&["nodes", "status"]),
            node.dump()
        )
    });
    assert_eq!(entry["displayName"], name.as_str(), "{entry}");
    assert_eq!(entry["clientId"], "node-host", "{entry}");

    let (_, approved) = connected_and_approved(gw, &node);
    assert!(which_sh(&approved).is_some(), "{approved}");
    // The operator CLI's own `nodes invoke`, as an operator runs it.
    let cli = gw.invoke(&id, "system.which", &json!({"bins": ["sh"]}), 10_000);
    assert!(cli.success, "nodes invoke: {cli:?}\n{}", node.dump());
    let out = cli.json().expect("nodes invoke --json output");
    let sh = which_sh(&out).expect("sh path");
    assert!(
        sh.starts_with('/') && sh.ends_with("/sh"),
        "which sh: {sh} in {out}"
    );
    assert!(std::path::Path::new(&sh).exists(), "{sh} does not exist");
    let invokes = node.named_since(0, "invoke");
    assert!(
        invokes
            .iter()
            .any(|e| e["command"] == "system.which" && e["ok"] == true),
        "no ok invoke event: {invokes:?}"
    );
    // One connection for all of it.
    assert_eq!(count(&node.events(), "connected"), 1, "{}", node.dump());
    eprintln!(
        "MEASURE s01 connect_ms={connect_ms} sh={sh} connects_in_log={}",
        gw.connects(0, &name).len()
    );
}

// ---------------------------------------------------------------- scenario 2

/// The seed scenario, live: the identical config re-applied 1,000 times by
/// SIGHUP → one TCP connection, one `connect` in the gateway log, one
/// `connected` event, 1,000 `config {changed:false}` events.
#[test]
fn s02_identical_config_reapplied_1000_times_is_one_connection() {
    let (install, bin) = require!("s02");
    let gw = shared_tls(&install);
    let tap = Tap::start(gw.port(), false);
    let name = unique("s02");
    let opts = NodeOptions::new(&tap.url(true), gw.token(), &name)
        .pin(&gw.pin())
        .config_file();
    let node = Node::spawn(&bin, opts);
    let (first, _) = node.expect(0, "connected", CONNECT);
    let fds_before = node.fd_count();
    let started = Instant::now();
    let mut cursor = first + 1;
    for i in 0..1000 {
        node.sighup();
        let (idx, ev) = node
            .wait_for(cursor, Duration::from_secs(10), |e| e["event"] == "config")
            .unwrap_or_else(|| panic!("no config event after SIGHUP #{}\n{}", i + 1, node.dump()));
        assert_eq!(
            ev["changed"],
            false,
            "SIGHUP #{} changed the config: {ev}",
            i + 1
        );
        cursor = idx + 1;
    }
    let reload_ms = started.elapsed().as_millis();
    std::thread::sleep(Duration::from_secs(2));
    let events = node.events();
    let configs = count(&events, "config");
    let fds_after = node.fd_count();
    eprintln!(
        "MEASURE s02 reloads={configs} in {reload_ms} ms tcp_connections={} gateway_connects={} connected={} connecting={} disconnected={} fds {fds_before}->{fds_after}",
        tap.connections(),
        gw.connects(0, &name).len(),
        count(&events, "connected"),
        count(&events, "connecting"),
        count(&events, "disconnected"),
    );
    assert_eq!(configs, 1000, "{}", node.dump());
    assert_eq!(count(&events, "connected"), 1, "{}", node.dump());
    assert_eq!(count(&events, "connecting"), 1, "{}", node.dump());
    assert_eq!(count(&events, "disconnected"), 0, "{}", node.dump());
    assert_eq!(tap.connections(), 1, "TCP connections to the gateway");
    assert_eq!(
        gw.connects(0, &name).len(),
        1,
        "gateway log connects for {name}:\n{}",
        gw.log_tail(20)
    );
    assert!(
        fds_after <= fds_before,
        "fds grew {fds_before} -> {fds_after}"
    );
}

// ---------------------------------------------------------------- scenario 3

/// Pin changed to a wrong value → one disconnect, `paused` with expected
/// and observed, no further attempt for 10 s; the right pin again → one
/// reconnect, one `connected`.
#[test]
fn s03_wrong_pin_pauses_then_right_pin_reconnects_once() {
    let (install, bin) = require!("s03");
    let gw = shared_tls(&install);
    let tap = Tap::start(gw.port(), false);
    let name = unique("s03");
    let right = NodeOptions::new(&tap.url(true), gw.token(), &name)
        .pin(&gw.pin())
        .config_file();
    let node = Node::spawn(&bin, right.clone());
    node.expect(0, "connected", CONNECT);
    assert_eq!(tap.connections(), 1);

    let wrong_pin = "ab".repeat(32);
    let mut wrong = right.clone();
    wrong.pins = vec![wrong_pin.clone()];
    let m = node.mark();
    node.write_config(&wrong);
    node.sighup();
    let (ci, cfg) = node.expect(m, "config", Duration::from_secs(10));
    assert_eq!(cfg["changed"], true, "{cfg}");
    let (pi, paused) = node.expect(ci, "paused", Duration::from_secs(20));
    let pause_ms = ts(&paused) - ts(&cfg);
    assert_eq!(paused["code"], "TLS_PIN_MISMATCH", "{paused}");
    assert_eq!(
        pins_of(&paused["expected"]),
        vec![wrong_pin.clone()],
        "{paused}"
    );
    assert_eq!(pins_of(&paused["observed"]), vec![gw.pin()], "{paused}");
    let attempts_at_pause = tap.connections();
    let connects_at_pause = gw.connects(0, &name).len();
    let opens_mark = gw.log_len();

    std::thread::sleep(Duration::from_secs(10));
    let after = node.events_since(m);
    let dropped: Vec<&Value> = after
        .iter()
        .filter(|e| e["event"] == "disconnected" && e["wasConnected"] == true)
        .collect();
    assert_eq!(dropped.len(), 1, "live connection drops: {}", node.dump());
    assert_eq!(count(&after, "paused"), 1, "{}", node.dump());
    assert_eq!(
        count(&node.events_since(pi + 1), "connecting"),
        0,
        "attempts after the pause: {}",
        node.dump()
    );
    assert_eq!(
        tap.connections(),
        attempts_at_pause,
        "TCP attempts during the 10 s pause"
    );
    assert_eq!(attempts_at_pause, 2, "one teardown, one failed attempt");
    assert_eq!(
        gw.connects(0, &name).len(),
        connects_at_pause,
        "gateway connects during the pause"
    );
    assert!(
        gw.connects(opens_mark, &name).is_empty(),
        "the gateway log shows this node connecting during the pause:\n{}",
        gw.log_tail(20)
    );

    let m2 = node.mark();
    node.write_config(&right);
    node.sighup();
    let (ci2, cfg2) = node.expect(m2, "config", Duration::from_secs(10));
    assert_eq!(cfg2["changed"], true, "{cfg2}");
    let (_, conn) = node.expect(ci2, "connected", CONNECT);
    let reconnect_ms = ts(&conn) - ts(&cfg2);
    std::thread::sleep(Duration::from_secs(2));
    let tail = node.events_since(m2);
    assert_eq!(count(&tail, "connected"), 1, "{}", node.dump());
    assert_eq!(count(&tail, "connecting"), 1, "{}", node.dump());
    assert_eq!(tap.connections(), attempts_at_pause + 1);
    assert_eq!(gw.connects(0, &name).len(), 2, "{}", gw.log_tail(20));
    eprintln!(
        "MEASURE s03 pause_after_ms={pause_ms} tcp_attempts_during_10s_pause=0 reconnect_after_fix_ms={reconnect_ms} total_tcp={} gateway_connects={}",
        tap.connections(),
        gw.connects(0, &name).len()
    );
}

// ---------------------------------------------------------------- scenario 4

/// Gateway killed with SIGKILL and restarted on the same port and state,
/// 8 times, each kill about a second after the node got in → a flapping
/// gateway: the node's retry delays climb (flap damping, never past the
/// 60 s slow band), after each restart exactly one `connected` within the
/// node's own announced delay + 2 s of the gateway being ready; fds and
/// memory do not grow.
#[test]
fn s04_gateway_sigkill_and_restart_8_times() {
    let (install, bin) = require!("s04");
    let gw = Gateway::start(&install, GatewayOptions::plain("s04"));
    let name = unique("s04");
    let node = Node::spawn(&bin, NodeOptions::new(&gw.url(), gw.token(), &name));
    node.expect(0, "connected", CONNECT);
    std::thread::sleep(Duration::from_secs(1));
    let fds0 = node.fd_count();
    let rss0 = node.rss_kib();
    let mut fds = Vec::new();
    let mut rss = Vec::new();
    let mut reconnects = Vec::new();
    let mut attempts = Vec::new();
    let mut delays = Vec::new();
    for cycle in 1..=CYCLES {
        let m = node.mark();
        let log_mark = gw.log_len();
        gw.kill9();
        let (_, disc) = node.expect(m, "disconnected", Duration::from_secs(15));
        assert_eq!(disc["wasConnected"], true, "cycle {cycle}: {disc}");
        let ready = gw.restart();
        let ready_ts = ready.ts_ms.expect("ready line has a timestamp");
        let (ci, conn) = node
            .wait_for(m, Duration::from_millis(SLOW_MAX_MS + 2_000 + 20_000), |e| {
                e["event"] == "connected"
            })
            .unwrap_or_else(|| {
                panic!(
                    "cycle {cycle}: no reconnect after the gateway was ready\n{}\ngateway log tail:\n{}",
                    node.dump(),
                    gw.log_tail(20)
                )
            });
        let reconnect_ms = ts(&conn) as i64 - ready_ts as i64;
        std::thread::sleep(Duration::from_millis(500));
        let since = node.events_since(m);
        // The longest wait the node announced in this cycle.
        let announced = since
            .iter()
            .filter(|e| e["event"] == "disconnected")
            .filter_map(|e| e["retryInMs"].as_u64())
            .max()
            .unwrap_or(0);
        assert!(
            announced <= SLOW_MAX_MS,
            "cycle {cycle}: announced {announced} ms, past the slow band"
        );
        delays.push(announced);
        assert_eq!(
            count(&since, "connected"),
            1,
            "cycle {cycle}: {}",
            node.dump()
        );
        assert_eq!(
            count(&node.events_since(ci + 1), "disconnected"),
            0,
            "cycle {cycle}: dropped after connecting: {}",
            node.dump()
        );
        assert_eq!(
            gw.hello_oks(log_mark).len(),
            1,
            "cycle {cycle}: hello-oks in the gateway log"
        );
        assert!(
            reconnect_ms <= (announced + 2_000) as i64,
            "cycle {cycle}: connected {reconnect_ms} ms after the gateway was ready (announced {announced} + 2000)\n{}",
            node.dump()
        );
        reconnects.push(reconnect_ms);
        attempts.push(count(&since, "connecting"));
        fds.push(node.fd_count());
        rss.push(node.rss_kib());
    }
    eprintln!(
        "MEASURE s04 reconnect_ms_after_ready={reconnects:?} max={} longest_announced_delay_ms={delays:?} attempts_per_cycle={attempts:?} fds start={fds0} per_cycle={fds:?} rss_kib start={rss0} per_cycle={rss:?}",
        reconnects.iter().max().copied().unwrap_or_default()
    );
    // Flap damping: the delays climbed instead of staying at the first band.
    assert!(
        delays[CYCLES - 1] > delays[0],
        "the delays did not climb: {delays:?}"
    );
    let fd_max = *fds.iter().max().expect("cycles");
    assert!(
        fd_max <= fds0 + 1,
        "open fds grew across restarts: start {fds0}, per cycle {fds:?}"
    );
    let rss_late = *rss[4..].iter().max().expect("cycles");
    assert!(
        rss_late <= rss[1] + 4096,
        "memory grew across restarts: after cycle 2 {} KiB, max of cycles 5-8 {rss_late} KiB ({rss:?})",
        rss[1]
    );
}

// ---------------------------------------------------------------- scenario 5

/// The gateway restarts itself in-process (config edit): it sends
/// `shutdown` and closes with 1012 → the node reconnects once.
#[test]
fn s05_gateway_restarts_itself_on_config_edit() {
    let (install, bin) = require!("s05");
    let gw = Gateway::start(&install, GatewayOptions::plain("s05"));
    let tap = Tap::start(gw.port(), true);
    let name = unique("s05");
    let node = Node::spawn(&bin, NodeOptions::new(&tap.url(false), gw.token(), &name));
    node.expect(0, "connected", CONNECT);
    let m = node.mark();
    let (restarting, ready) = gw.restart_via_config();
    let (di, disc) = node.expect(m, "disconnected", Duration::from_secs(30));
    let (_, conn) = node.expect(di, "connected", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    let since = node.events_since(m);
    let frames = tap.frames();
    let shutdown = frames
        .iter()
        .any(|f| !f.from_client && f.opcode == 1 && f.text().contains("\"event\":\"shutdown\""));
    let close_1012 = frames
        .iter()
        .any(|f| !f.from_client && f.close_code() == Some(1012));
    // What the gateway answered attempts made while it was starting, and
    // what the node then did.
    let starting: Vec<String> = frames
        .iter()
        .filter(|f| !f.from_client && f.opcode == 1 && f.text().contains("\"ok\":false"))
        .map(|f| {
            let v: Value = serde_json::from_str(&f.text()).unwrap_or(Value::Null);
            format!(
                "{}/{}/retryAfterMs={}",
                v["error"]["code"], v["error"]["details"]["reason"], v["error"]["retryAfterMs"]
            )
        })
        .collect();
    let retries: Vec<Value> = since
        .iter()
        .filter(|e| e["event"] == "disconnected")
        .map(|e| json!([e["code"], e["retryInMs"]]))
        .collect();
    eprintln!(
        "MEASURE s05 gateway_rejections={starting:?} node_disconnects_and_retry_ms={retries:?}"
    );
    let ready_ts = ready.ts_ms.expect("ts") as i64;
    eprintln!(
        "MEASURE s05 disconnect={disc} disconnect_after_restart_signal_ms={} reconnect_after_ready_ms={} outage_ms={} attempts={} gateway_sent_shutdown={shutdown} close_1012={close_1012}",
        ts(&disc) as i64 - restarting.ts_ms.unwrap_or_default() as i64,
        ts(&conn) as i64 - ready_ts,
        ts(&conn) - ts(&disc),
        count(&since, "connecting"),
    );
    assert!(shutdown, "the gateway sent no shutdown event (tap)");
    assert!(close_1012, "the gateway did not close with 1012 (tap)");
    assert!(
        disc["code"] == 1012 || disc["code"] == "GATEWAY_RESTART",
        "disconnect reason: {disc}"
    );
    assert_eq!(count(&since, "connected"), 1, "{}", node.dump());
    assert!(
        ts(&conn) as i64 - ready_ts <= (BACKOFF_CAP_MS + 2_000) as i64,
        "reconnected too late: {}",
        node.dump()
    );
}

// ---------------------------------------------------------------- scenario 6

/// The gateway frozen (SIGSTOP) → no pong follows the node's next ping, so
/// the node closes with 4000 within ping interval + pong timeout (25 s),
/// long before the 60 s tick watchdog; after SIGCONT it reconnects.
#[test]
fn s06_gateway_frozen_sigstop_pong_timeout_4000_then_reconnect() {
    let (install, bin) = require!("s06");
    let gw = Gateway::start(&install, GatewayOptions::plain("s06"));
    let name = unique("s06");
    let node = Node::spawn(&bin, NodeOptions::new(&gw.url(), gw.token(), &name));
    let (_, conn) = node.expect(0, "connected", CONNECT);
    let tick = conn["tickIntervalMs"].as_u64().expect("tickIntervalMs");
    let m = node.mark();
    let stopped_at = now_ms();
    gw.sigstop();
    let waited = node.wait_for(m, Duration::from_millis(2 * tick + 30_000), |e| {
        e["event"] == "disconnected"
    });
    gw.sigcont();
    let continued_at = now_ms();
    let (di, disc) = waited.unwrap_or_else(|| {
        panic!(
            "no disconnect while the gateway was frozen for {} ms\n{}",
            continued_at - stopped_at,
            node.dump()
        )
    });
    let detect_ms = ts(&disc) - stopped_at;
    let (_, back) = node.expect(di, "connected", Duration::from_secs(60));
    let reconnect_ms = ts(&back) as i64 - continued_at as i64;
    eprintln!(
        "MEASURE s06 tick_ms={tick} frozen_ms={} disconnect_after_sigstop_ms={detect_ms} disconnect={disc} reconnect_after_sigcont_ms={reconnect_ms} attempts_while_frozen={}",
        continued_at - stopped_at,
        count(&node.events_since(m), "connecting")
    );
    assert_eq!(disc["code"], 4000, "close code: {disc}\n{}", node.dump());
    assert_eq!(disc["reason"], "pong timeout", "{disc}");
    assert!(
        (10_000..=PONG_DETECT_MS + 5_000).contains(&detect_ms),
        "pong timeout after {detect_ms} ms"
    );
    assert!(
        reconnect_ms <= (BACKOFF_CAP_MS + 12_000) as i64,
        "reconnect {reconnect_ms} ms after SIGCONT"
    );
}

// ---------------------------------------------------------------- scenario 7

/// Wrong token → `paused` with the gateway's code and hint, no retry loop;
/// with `--exit-on-pause` the process exits with status 3.
#[test]
fn s07_wrong_token_pauses_without_retry_loop() {
    let (install, bin) = require!("s07");
    let gw = shared_tls(&install);
    let tap = Tap::start(gw.port(), false);
    let name = unique("s07");
    let node = Node::spawn(
        &bin,
        NodeOptions::new(&tap.url(true), "not-the-token", &name).pin(&gw.pin()),
    );
    let (pi, paused) = node.expect(0, "paused", CONNECT);
    assert_eq!(paused["code"], "AUTH_TOKEN_MISMATCH", "{paused}");
    let hint = paused["hint"].as_str().unwrap_or_default();
    assert!(!hint.trim().is_empty(), "no hint: {paused}");
    let attempts = tap.connections();
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        count(&node.events_since(pi + 1), "connecting"),
        0,
        "retries after the pause: {}",
        node.dump()
    );
    assert_eq!(tap.connections(), attempts, "TCP attempts after the pause");
    assert!(attempts <= 2, "{attempts} attempts before pausing");
    assert_eq!(count(&node.events(), "connected"), 0);
    let log_connects = gw.connects(0, &name).len();
    assert!(
        log_connects <= 2,
        "{log_connects} connects in the gateway log"
    );

    let name2 = unique("s07x");
    let mut exiting = Node::spawn(
        &bin,
        NodeOptions::new(&gw.url(), "not-the-token", &name2)
            .pin(&gw.pin())
            .exit_on_pause(),
    );
    let status = exiting.wait_exit(Duration::from_secs(30));
    eprintln!(
        "MEASURE s07 paused={paused} tcp_attempts={attempts} gateway_connects={log_connects} exit_on_pause_status={status:?}"
    );
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(3),
        "--exit-on-pause exit status\n{}",
        exiting.dump()
    );
}

// ---------------------------------------------------------------- scenario 8

/// Certificate rotation: new files with a new key, reloaded by the gateway
/// without dropping connections; a node pinned to the old certificate keeps
/// its live connection and pauses with a mismatch on its next connect; a
/// node pinned to old and new reconnects cleanly.
#[test]
fn s08_certificate_rotation() {
    let (install, bin) = require!("s08");
    let gw = Gateway::start(&install, GatewayOptions::tls("s08"));
    let old_pin = gw.pin();
    let new = gw.generate_cert();
    assert_ne!(new.pin, old_pin);
    let tap_old = Tap::start(gw.port(), false);
    let tap_both = Tap::start(gw.port(), false);
    let name_old = unique("s08old");
    let name_both = unique("s08both");
    let old_only = Node::spawn(
        &bin,
        NodeOptions::new(&tap_old.url(true), gw.token(), &name_old).pin(&old_pin),
    );
    let both = Node::spawn(
        &bin,
        NodeOptions::new(&tap_both.url(true), gw.token(), &name_both)
            .pin(&old_pin)
            .pin(&new.pin),
    );
    old_only.expect(0, "connected", CONNECT);
    both.expect(0, "connected", CONNECT);
    let (mo, mb) = (old_only.mark(), both.mark());

    let renewed = gw.rotate_cert(&new);
    assert_eq!(gw.pin(), new.pin);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        count(&old_only.events_since(mo), "disconnected"),
        0,
        "{}",
        old_only.dump()
    );
    assert_eq!(
        count(&both.events_since(mb), "disconnected"),
        0,
        "{}",
        both.dump()
    );
    assert_eq!(tap_old.live().len(), 1, "old-pinned node's live connection");
    assert_eq!(
        tap_both.live().len(),
        1,
        "both-pinned node's live connection"
    );

    // The next connection: cut both live connections.
    let severed_at = now_ms();
    tap_old.sever();
    tap_both.sever();
    let (pi, paused) = old_only.expect(mo, "paused", CONNECT);
    assert_eq!(paused["code"], "TLS_PIN_MISMATCH", "{paused}");
    assert_eq!(
        pins_of(&paused["expected"]),
        vec![old_pin.clone()],
        "{paused}"
    );
    assert_eq!(
        pins_of(&paused["observed"]),
        vec![new.pin.clone()],
        "{paused}"
    );
    let (_, back) = both.expect(mb, "connected", CONNECT);
    let attempts_old = tap_old.connections();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        count(&old_only.events_since(pi + 1), "connecting"),
        0,
        "{}",
        old_only.dump()
    );
    assert_eq!(
        tap_old.connections(),
        attempts_old,
        "attempts after the mismatch pause"
    );
    let since_b = both.events_since(mb);
    assert_eq!(count(&since_b, "connected"), 1, "{}", both.dump());
    assert_eq!(count(&since_b, "paused"), 0, "{}", both.dump());
    eprintln!(
        "MEASURE s08 renewed={:?} old_pinned_paused_after_ms={} both_pinned_reconnected_after_ms={} old_pinned_tcp_attempts={attempts_old}",
        renewed.text,
        ts(&paused) - severed_at,
        ts(&back) - severed_at,
    );
}

// ---------------------------------------------------------------- scenario 9

/// Conformance: every frame clawnode sends (captured on the wire by a tap
/// on a plain ws:// connection: connect, node.invoke.result ok and error,
/// anything else) validates against `protocol.schema.json`; nothing but
/// `connect` precedes hello-ok.
#[test]
fn s09_every_frame_sent_validates_against_the_schema() {
    let (install, bin) = require!("s09");
    let schema = Schema::load(&install.schema);
    let gw = shared_plain(&install);
    let tap = Tap::start(gw.port(), true);
    let name = unique("s09");
    let mut node = Node::spawn(&bin, NodeOptions::new(&tap.url(false), gw.token(), &name));
    let (id, _) = connected_and_approved(gw, &node);
    // An invoke the command rejects: an error result.
    let bad = gw.invoke(&id, "system.which", &json!({"bins": 5}), 10_000);
    let status = node.terminate(Duration::from_secs(15));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "graceful stop\n{}",
        node.dump()
    );

    let frames = tap.frames();
    assert!(tap.errors().is_empty(), "tap: {:?}", tap.errors());
    let mut methods: std::collections::BTreeMap<String, usize> = Default::default();
    let mut violations = Vec::new();
    for f in frames.iter().filter(|f| f.from_client && f.opcode == 1) {
        let text = f.text();
        if let Err(v) = schema.check_frame(&text) {
            violations.push(v);
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let key = format!(
            "{}:{}",
            v["type"].as_str().unwrap_or("?"),
            v["method"].as_str().unwrap_or("-")
        );
        *methods.entry(key).or_default() += 1;
    }
    // Order per connection: the first text frame is connect, and nothing
    // else is sent before the gateway's hello-ok response on that socket.
    let conns: std::collections::BTreeSet<usize> = frames.iter().map(|f| f.conn).collect();
    for c in conns {
        let mut hello = false;
        let mut first = true;
        for f in frames.iter().filter(|f| f.conn == c && f.opcode == 1) {
            let v: Value = serde_json::from_str(&f.text()).unwrap_or(Value::Null);
            if !f.from_client {
                if v["type"] == "res" && v["payload"]["type"] == "hello-ok" {
                    hello = true;
                }
                continue;
            }
            if first {
                assert_eq!(v["method"], "connect", "first frame on conn {c}: {v}");
                first = false;
            } else {
                assert!(hello, "frame before hello-ok on conn {c}: {v}");
            }
        }
    }
    let closes: Vec<Option<u16>> = frames
        .iter()
        .filter(|f| f.from_client && f.opcode == 8)
        .map(|f| f.close_code())
        .collect();
    eprintln!(
        "MEASURE s09 frames_by_method={methods:?} violations={} client_close_codes={closes:?} bad_params_invoke_ok={} ",
        violations.len(),
        bad.success
    );
    assert!(
        violations.is_empty(),
        "frames that do not conform:\n{}",
        violations
            .iter()
            .map(|v| format!("  {}\n    {}", v.what, v.frame))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(methods.get("req:connect").copied().unwrap_or(0) >= 1);
    assert!(
        methods.get("req:node.invoke.result").copied().unwrap_or(0) >= 2,
        "ok and error results: {methods:?}"
    );
    assert_eq!(
        closes.last().copied().flatten(),
        Some(1000),
        "graceful close code"
    );
}

/// Conformance of what the core builds for the same session where the
/// binary cannot be made to send it on the wire: `node.event` (the binary
/// has no way to emit one), plus `connect` and `node.invoke.result`, driven
/// by the real frames captured from the gateway (tests/fixtures/gateway).
#[test]
fn s09_core_frames_validate_against_the_schema() {
    use clawnode_core::{
        Effect, Input, InvokeOutcome, NodeOptions as CoreOptions, NodeState, SessionConfig, Time,
        TlsPolicy,
    };
    let (install, _) = require!("s09-core");
    let schema = Schema::load(&install.schema);
    let fixture = |name: &str| {
        std::fs::read_to_string(
            clawnode_tests::repo_root()
                .join("tests/fixtures/gateway")
                .join(name),
        )
        .expect("fixture")
    };
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let mut node = NodeState::new(key, CoreOptions::with_seed(1));
    let challenge: Value = serde_json::from_str(&fixture("challenge.json")).expect("json");
    let now = Time::from_millis(challenge["payload"]["ts"].as_u64().expect("ts"));
    let config = SessionConfig::parse("ws://127.0.0.1:18789", TlsPolicy::SystemTrust)
        .expect("config")
        .with_credentials(clawnode_core::Credentials {
            token: Some(clawnode_core::Secret::new("clawnode-fixture-token")),
            ..Default::default()
        });
    let mut sent = Vec::new();
    let drain = |node: &mut NodeState, sent: &mut Vec<String>| {
        let mut attempt = None;
        while let Some(e) = node.poll_effect() {
            match e {
                Effect::OpenSocket { attempt: a, .. } => attempt = Some(a),
                Effect::SendFrame { text, .. } => sent.push(text),
                _ => {}
            }
        }
        attempt
    };
    node.handle_input(now, Input::Config(config));
    let attempt = drain(&mut node, &mut sent).expect("open socket");
    node.handle_input(now, Input::SocketOpened { attempt });
    node.handle_input(
        now,
        Input::Frame {
            attempt,
            text: fixture("challenge.json"),
        },
    );
    drain(&mut node, &mut sent);
    // Answer the connect request with the captured hello-ok, re-using its id.
    let connect: Value = serde_json::from_str(sent.last().expect("connect sent")).expect("json");
    let mut hello: Value = serde_json::from_str(&fixture("hello-ok.json")).expect("json");
    hello["id"] = connect["id"].clone();
    node.handle_input(
        now,
        Input::Frame {
            attempt,
            text: hello.to_string(),
        },
    );
    drain(&mut node, &mut sent);
    node.handle_input(
        now,
        Input::Frame {
            attempt,
            text: fixture("invoke-request.json"),
        },
    );
    let mut invoke_id = None;
    while let Some(e) = node.poll_effect() {
        match e {
            Effect::Invoke(req) => invoke_id = Some(req.id),
            Effect::SendFrame { text, .. } => sent.push(text),
            _ => {}
        }
    }
    if let Some(id) = invoke_id {
        node.handle_input(
            now,
            Input::InvokeResult {
                id,
                outcome: InvokeOutcome::Ok {
                    payload_json: Some(r#"{"bins":{"sh":"/usr/bin/sh"}}"#.into()),
                },
            },
        );
        drain(&mut node, &mut sent);
    }
    node.send_event(
        now,
        "node.presence.alive",
        Some(json!({"reason": "periodic"})),
    )
    .expect("send_event after hello-ok");
    node.send_event(now, "clawnode.test", None)
        .expect("send_event");
    drain(&mut node, &mut sent);

    let methods: Vec<String> = sent
        .iter()
        .map(|t| {
            serde_json::from_str::<Value>(t).expect("json")["method"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect();
    eprintln!("MEASURE s09-core methods={methods:?}");
    // The validator does reject what the schema forbids.
    for bad in [
        r#"{"type":"req","id":"1","method":"node.event","params":{"event":"x","extra":1}}"#,
        r#"{"type":"req","id":"1","method":"node.event","params":{"event":"x"},"extra":1}"#,
        r#"{"type":"req","id":"1","method":"node.invoke.result","params":{"id":"1","ok":true}}"#,
    ] {
        assert!(schema.check_frame(bad).is_err(), "accepted {bad}");
    }
    for text in &sent {
        if let Err(v) = schema.check_frame(text) {
            panic!("core frame does not conform: {}\n  {}", v.what, v.frame);
        }
    }
    for m in ["connect", "node.invoke.result", "node.event"] {
        assert!(
            methods.iter().any(|x| x == m),
            "core sent no {m}: {methods:?}"
        );
    }
}

// ---------------------------------------------------------------- scenario 10

/// An invoke from the gateway while the node is reconnecting gets an answer
/// or a clear gateway-side error, never a hang: (a) node cut off and
/// refused; (b) invoke issued as the node comes back; (c) the node's result
/// lost with its connection: the gateway times out cleanly and the result
/// never reaches the replacement connection.
#[test]
fn s10_invoke_while_reconnecting_never_hangs() {
    let (install, bin) = require!("s10");
    let gw = shared_plain(&install);
    let tap = Tap::start(gw.port(), true);
    let name = unique("s10");
    let node = Node::spawn(&bin, NodeOptions::new(&tap.url(false), gw.token(), &name));
    let (id, _) = connected_and_approved(gw, &node);
    let params = json!({"bins": ["sh"]});

    // (a) Cut off, new connections refused; the gateway notices the node left.
    let m = node.mark();
    tap.set_refusing(true);
    tap.sever();
    node.expect(m, "disconnected", Duration::from_secs(10));
    sys::poll(Duration::from_secs(15), || {
        gw.node_status(&id).filter(|n| n["connected"] == false)
    })
    .expect("the gateway still shows the node connected");
    let a = gw.invoke(&id, "system.which", &params, 5_000);
    let a_msg = format!("{} {}", a.stdout.trim(), a.stderr.trim());
    eprintln!(
        "MEASURE s10a offline invoke: success={} code={:?} elapsed_ms={} message={a_msg:?}",
        a.success,
        a.code,
        a.elapsed.as_millis()
    );
    assert!(a.code.is_some(), "the CLI hung (killed by the test)");
    assert!(
        a.success || !a_msg.trim().is_empty(),
        "failed without a message"
    );
    if a.success {
        assert!(which_sh(&a.json().expect("json")).is_some(), "{a:?}");
    }

    // (b) Invoke issued while the node is coming back.
    let m = node.mark();
    let b = std::thread::scope(|s| {
        let h = s.spawn(|| gw.invoke(&id, "system.which", &params, 8_000));
        std::thread::sleep(Duration::from_millis(300));
        tap.set_refusing(false);
        h.join().expect("invoke thread")
    });
    let b_msg = format!("{} {}", b.stdout.trim(), b.stderr.trim());
    eprintln!(
        "MEASURE s10b invoke during reconnect: success={} code={:?} elapsed_ms={} message={b_msg:?}",
        b.success,
        b.code,
        b.elapsed.as_millis()
    );
    assert!(b.code.is_some(), "the CLI hung (killed by the test)");
    assert!(
        b.success || !b_msg.trim().is_empty(),
        "failed without a message"
    );
    node.expect(m, "connected", Duration::from_secs(45));

    // (c) The node answers, but its answer is lost with its connection.
    sys::poll(Duration::from_secs(15), || {
        gw.node_status(&id).filter(|n| n["connected"] == true)
    })
    .expect("the gateway shows the node connected again");
    let m = node.mark();
    let conns_before = tap.connections();
    tap.set_hold(true);
    let (c, invoke_ev) = std::thread::scope(|s| {
        let h = s.spawn(|| gw.invoke(&id, "system.which", &params, 4_000));
        let ev = node.wait_for(m, Duration::from_secs(20), |e| e["event"] == "invoke");
        tap.sever();
        tap.set_hold(false);
        (h.join().expect("invoke thread"), ev)
    });
    let (_, invoke_ev) =
        invoke_ev.unwrap_or_else(|| panic!("the node never ran the invoke\n{}", node.dump()));
    let invoke_id = invoke_ev["id"].as_str().expect("invoke id").to_owned();
    let c_msg = format!("{} {}", c.stdout.trim(), c.stderr.trim());
    eprintln!(
        "MEASURE s10c lost result: success={} code={:?} elapsed_ms={} message={c_msg:?}",
        c.success,
        c.code,
        c.elapsed.as_millis()
    );
    assert!(c.code.is_some(), "the CLI hung (killed by the test)");
    assert!(!c.success, "the lost result was delivered? {c:?}");
    assert!(!c_msg.trim().is_empty(), "failed without a message");
    node.expect(m, "connected", Duration::from_secs(45));
    std::thread::sleep(Duration::from_secs(2));
    let late: Vec<(usize, String)> = tap
        .client_texts()
        .into_iter()
        .filter(|(conn, t)| {
            *conn >= conns_before && t.contains("node.invoke.result") && t.contains(&invoke_id)
        })
        .collect();
    let replacement: Vec<&(usize, String)> = late
        .iter()
        .filter(|(conn, _)| *conn > conns_before)
        .collect();
    assert!(
        replacement.is_empty(),
        "the lost result was re-sent on a replacement connection: {replacement:?}"
    );
    // The node still works.
    let d = gw.invoke(&id, "system.which", &params, 10_000);
    assert!(d.success, "invoke after recovery: {d:?}\n{}", node.dump());
}

// ---------------------------------------------------------------- scenario 11

/// The tokio example (`io-smol/examples/tokio_node.rs`: tokio,
/// tokio-tungstenite and the neutral layer's pinning and state) against the
/// real TLS gateway: pinned connect → the operator's `nodes invoke
/// system.which` answered → an in-process gateway restart survived with
/// exactly one new `connected` → Ctrl-C closes with 1000 and exits 0; a
/// second example with a wrong pin pauses naming the expected and observed
/// pins, and makes no further attempt.
#[test]
fn s11_tokio_example_pins_serves_survives_a_restart_and_pauses_on_a_wrong_pin() {
    let (install, bin) = require!("s11");
    let example = clawnode_tests::tokio_example_bin();
    let gw = Gateway::start(&install, GatewayOptions::tls("s11"));
    let name = unique("s11");
    let started = Instant::now();
    let mut node = Node::spawn_tokio_example(
        &example,
        &bin,
        NodeOptions::new(&gw.url(), gw.token(), &name).pin(&gw.pin()),
    );
    let (_, connected) = node.expect(0, "connected", CONNECT);
    let connect_ms = started.elapsed().as_millis();
    assert_eq!(connected["protocol"], 4, "{connected}");
    let (_, out) = connected_and_approved(&gw, &node);
    let sh = which_sh(&out).expect("sh path");

    let m = node.mark();
    let (_, ready) = gw.restart_via_config();
    let (di, disc) = node.expect(m, "disconnected", Duration::from_secs(30));
    let (_, conn) = node.expect(di, "connected", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    let since = node.events_since(m);
    assert_eq!(count(&since, "connected"), 1, "{}", node.dump());
    let reconnect_ms = ts(&conn) as i64 - ready.ts_ms.expect("ts") as i64;
    let rss_kib = node.rss_kib();

    let m = node.mark();
    let status = node.interrupt(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "Ctrl-C: {status:?}\n{}",
        node.dump()
    );
    let (_, bye) = node.expect(m, "disconnected", Duration::from_secs(1));
    assert_eq!(bye["code"], 1000, "{bye}");

    let wrong_pin = "cd".repeat(32);
    let wrong = Node::spawn_tokio_example(
        &example,
        &bin,
        NodeOptions::new(&gw.url(), gw.token(), &unique("s11-wrong")).pin(&wrong_pin),
    );
    let (pi, paused) = wrong.expect(0, "paused", CONNECT);
    assert_eq!(paused["code"], "TLS_PIN_MISMATCH", "{paused}");
    assert_eq!(pins_of(&paused["expected"]), vec![wrong_pin], "{paused}");
    assert_eq!(pins_of(&paused["observed"]), vec![gw.pin()], "{paused}");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        count(&wrong.events_since(pi + 1), "connecting"),
        0,
        "attempts after the pause: {}",
        wrong.dump()
    );
    eprintln!(
        "MEASURE s11 example=tokio_node connect_ms={connect_ms} sh={sh} disconnect={disc} reconnect_after_ready_ms={reconnect_ms} rss_kib={rss_kib}"
    );
}

/// A `clawnode run` node pinned to `gw`, connected and approved; its
/// device id.
fn pinned_and_approved(gw: &Gateway, bin: &std::path::Path, tag: &str) -> (Node, String) {
    let node = Node::spawn(
        bin,
        NodeOptions::new(&gw.url(), gw.token(), &unique(tag)).pin(&gw.pin()),
    );
    let (id, _) = connected_and_approved(gw, &node);
    (node, id)
}

// ---------------------------------------------------------------- scenario 12

/// Exec approvals from the real operator CLI: `openclaw approvals get
/// --node` reads clawnode's document (none yet: nothing runs, and the
/// resolved defaults say so), `approvals allowlist add --node` reads it,
/// adds an entry and writes it back with the hash it read, and the node
/// stores it (mode 0600) so that the next `get` shows it.
#[test]
fn s12_exec_approvals_from_the_operator_cli() {
    let (install, bin) = require!("s12");
    let gw = shared_tls(&install);
    let (node, id) = pinned_and_approved(gw, &bin, "s12");
    let t = Duration::from_secs(60);
    let get = |what: &str| {
        let out = gw.openclaw(&["approvals", "get", "--node", &id, "--json"], t);
        assert!(
            out.success,
            "approvals get ({what}): {out:?}\n{}",
            node.dump()
        );
        out.json()
            .unwrap_or_else(|e| panic!("approvals get --json ({what}): {e}: {out:?}"))
    };
    let before = get("before");
    let text = before.to_string();
    assert!(
        text.contains("\"deny\""),
        "the node's default is deny: {before}"
    );

    let started = Instant::now();
    let add = gw.openclaw(
        &[
            "approvals",
            "allowlist",
            "add",
            "--node",
            &id,
            "/usr/bin/uname",
        ],
        t,
    );
    let add_ms = started.elapsed().as_millis();
    assert!(add.success, "allowlist add: {add:?}\n{}", node.dump());
    let after = get("after");
    assert!(
        after.to_string().contains("/usr/bin/uname"),
        "the entry is on the node: {after}"
    );
    let stored = node.state_dir().join("exec-approvals.json");
    let on_disk = std::fs::read_to_string(&stored).expect("the node stored its approvals");
    assert!(on_disk.contains("/usr/bin/uname"), "{on_disk}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    eprintln!("MEASURE s12 allowlist_add_ms={add_ms}");
}

// ---------------------------------------------------------------- scenario 13

/// `system.run.prepare` and `system.run` through the real gateway's
/// `node.invoke` (`openclaw gateway call`; `nodes invoke` refuses these
/// commands client-side). Nothing runs by default: the refusal names the
/// command that enables runs. Once the owner allows it, the prepared plan
/// runs, the gateway relays the answer, and a caller's `LD_PRELOAD`
/// override is refused whole.
#[test]
fn s13_system_run_through_the_gateway_is_denied_by_default_then_runs() {
    let (install, bin) = require!("s13");
    let gw = shared_tls(&install);
    let (node, id) = pinned_and_approved(gw, &bin, "s13");
    let t = Duration::from_secs(60);
    // Each call its own key: the node runs a key once only.
    let calls = std::cell::Cell::new(0);
    let call = |command: &str, params: Value| {
        calls.set(calls.get() + 1);
        let key = format!("{}-{}", unique("k"), calls.get());
        let req = json!({"nodeId": id, "command": command, "params": params,
                         "idempotencyKey": key, "timeoutMs": 30_000});
        let started = Instant::now();
        let out = gw.openclaw(
            &[
                "gateway",
                "call",
                "node.invoke",
                "--json",
                "--params",
                &req.to_string(),
            ],
            t,
        );
        (out, started.elapsed().as_millis())
    };
    let echo = json!({"command": ["/bin/sh", "-lc", "echo hi"], "rawCommand": "echo hi",
                      "sessionKey": "s13", "timeoutMs": 10_000});

    let (denied, _) = call("system.run", echo.clone());
    let text = format!("{}{}", denied.stdout, denied.stderr);
    assert!(
        !denied.success,
        "ran without the owner's consent: {denied:?}"
    );
    assert!(
        text.contains("SYSTEM_RUN_DISABLED") && text.contains("clawnode approvals set"),
        "the refusal names what enables runs: {denied:?}"
    );

    node.set_approvals(&["--security", "full"]);

    let (prepared, _) = call("system.run.prepare", echo.clone());
    assert!(prepared.success, "prepare: {prepared:?}");
    let plan = prepared.json().expect("prepare --json")["payload"]["plan"].clone();
    assert_eq!(plan["commandText"], "/bin/sh -lc \"echo hi\"", "{plan}");
    let mut run = echo.clone();
    run["systemRunPlan"] = plan.clone();
    run["cwd"] = plan["cwd"].clone();
    let (ran, ms) = call("system.run", run);
    assert!(ran.success, "run: {ran:?}\n{}", node.dump());
    let payload = ran.json().expect("run --json")["payload"].clone();
    assert_eq!(payload["stdout"], "hi\n", "{payload}");
    assert_eq!(payload["exitCode"], 0, "{payload}");
    assert_eq!(payload["success"], true, "{payload}");

    let mut preload = echo.clone();
    preload["env"] = json!({"LD_PRELOAD": "/nonexistent/evil.so"});
    let (refused, _) = call("system.run", preload);
    assert!(!refused.success, "{refused:?}");
    let text = format!("{}{}", refused.stdout, refused.stderr);
    assert!(
        text.contains("LD_PRELOAD"),
        "the refusal names the key: {refused:?}"
    );
    eprintln!("MEASURE s13 echo_round_trip_ms={ms}");
}

// ---------------------------------------------------------------- scenario 14

/// The gateway's own exec pipeline: an agent turn (`openclaw agent`)
/// whose model (a local stand-in) calls the `exec` tool with `host=node`;
/// the gateway prepares the run on clawnode, runs it, and hands the output
/// back to the model. While the node's owner allows nothing, the node's
/// policy (reported by prepare) makes the gateway refuse the tool call
/// without sending the run; once `clawnode approvals set --security full`
/// allows it, the command's output reaches the model.
#[test]
fn s14_the_gateway_exec_tool_runs_on_clawnode() {
    let (install, bin) = require!("s14");
    let name = unique("s14");
    let stub = StubModel::start("echo from-the-gateway-exec-tool");
    let mut opts = GatewayOptions::tls("s14");
    if let Value::Object(extra) = stub.gateway_config(&name) {
        opts.config = extra;
    }
    let gw = Gateway::start(&install, opts);
    let (node, _) = pinned_and_approved(&gw, &bin, "s14");
    let t = Duration::from_secs(90);
    let turn = |what: &str| {
        let started = Instant::now();
        let out = gw.openclaw(
            &["agent", "--agent", "main", "--message", what, "--json"],
            t,
        );
        (out, started.elapsed().as_millis())
    };

    let (denied, _) = turn("run it while nothing is allowed");
    let results = stub.tool_results();
    assert!(
        results
            .last()
            .is_some_and(|r| r.contains("SYSTEM_RUN_DISABLED") || r.contains("deny")),
        "the tool result shows the node's refusal ({} model requests): {results:?}\n{denied:?}\n{}\n{}",
        stub.requests(),
        node.dump(),
        gw.log_tail(40)
    );

    node.set_approvals(&["--security", "full"]);
    let (ran, ms) = turn("run it now");
    let results = stub.tool_results();
    assert!(
        results
            .last()
            .is_some_and(|r| r.contains("from-the-gateway-exec-tool")),
        "the command's output came back through the gateway: {results:?}\n{ran:?}\n{}\n{}",
        node.dump(),
        gw.log_tail(40)
    );
    // The refusal came from the node's policy, reported by prepare: the
    // gateway never sent the first run; the second ran once.
    let invokes = node.named_since(0, "invoke");
    let count = |c: &str| invokes.iter().filter(|e| e["command"] == c).count();
    assert_eq!(count("system.run.prepare"), 2, "{}", node.dump());
    assert_eq!(count("system.run"), 1, "{}", node.dump());
    eprintln!(
        "MEASURE s14 agent_turn_with_exec_ms={ms} model_requests={}",
        stub.requests()
    );
}

// ---------------------------------------------------------------- scenario 15

/// `node.host.stats`: the gateway refuses a node's events until it is
/// approved, so an approved node's next admission reports them, and the
/// gateway keeps them (`nodes status` shows `hostStats`) within bounds.
#[test]
fn s15_host_stats_reach_the_gateway_after_approval() {
    let (install, bin) = require!("s15");
    let gw = shared_tls(&install);
    // The state outlives the first process: the device must stay the same.
    let state = sys::scratch_dir("s15-state");
    let opts = NodeOptions {
        state_dir: Some(state.clone()),
        ..NodeOptions::new(&gw.url(), gw.token(), &unique("s15")).pin(&gw.pin())
    };
    let first = Node::spawn(&bin, opts.clone());
    let (id, _) = connected_and_approved(gw, &first);
    drop(first);
    let node = Node::spawn(&bin, opts);
    node.expect(0, "connected", CONNECT);
    let stats = sys::poll(Duration::from_secs(30), || {
        gw.node_status(&id)
            .and_then(|n| n.get("hostStats").cloned())
            .filter(|s| s.get("cpuCount").is_some())
    })
    .unwrap_or_else(|| {
        panic!(
            "no hostStats for {id}: {:?}\n{}",
            gw.node_status(&id),
            node.dump()
        )
    });
    let n = |k: &str| {
        stats[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {stats}"))
    };
    assert!(n("cpuCount") >= 1, "{stats}");
    assert!(n("memoryFreeBytes") <= n("memoryTotalBytes"), "{stats}");
    assert!(n("diskAvailableBytes") <= n("diskTotalBytes"), "{stats}");
    eprintln!("MEASURE s15 host_stats={stats}");
    drop(node);
    let _ = std::fs::remove_dir_all(&state);
}

// ---------------------------------------------------------------- scenario 16

/// The `n`th percentile of `v` (sorted in place).
fn percentile(v: &mut [u128], n: usize) -> u128 {
    v.sort_unstable();
    v.get((v.len().saturating_sub(1)) * n / 100)
        .copied()
        .unwrap_or(0)
}

/// `system.run` through the real gateway (`node.invoke` by the operator's
/// `gateway call`), every frame on the wire captured by a tap:
/// - the operator sets an allowlist on the node (`openclaw approvals set
///   --node`): the covered command runs, another is denied with a reason
///   and an `exec.denied` event;
/// - approval flags a caller puts in the params lift nothing;
/// - under `full`: 50 echo round trips (p50, as the operator sees it and
///   as the node does), a non-zero exit, 10 MB of output truncated at the
///   cap with the node's memory bounded, `sleep 600` and a descendant
///   killed at the timeout with no orphan, `LD_PRELOAD` and `BASH_ENV`
///   refused;
/// - every frame the node sent validates against the published schema.
#[test]
fn s16_system_run_through_the_gateway_with_figures() {
    let (install, bin) = require!("s16");
    let schema = Schema::load(&install.schema);
    let gw = shared_plain(&install);
    let tap = Tap::start(gw.port(), true);
    let node = Node::spawn(
        &bin,
        NodeOptions::new(&tap.url(false), gw.token(), &unique("s16")),
    );
    let (id, _) = connected_and_approved(gw, &node);
    let t = Duration::from_secs(60);
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let run = |params: Value, timeout_ms: u64| {
        let n = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let req = json!({"nodeId": id, "command": "system.run", "params": params,
                         "idempotencyKey": format!("{}-{n}", unique("k")),
                         "timeoutMs": timeout_ms});
        gw.call(
            "node.invoke",
            &req,
            Duration::from_millis(timeout_ms + 30_000),
        )
    };
    let argv = |a: &[&str]| json!({"command": a, "sessionKey": "s16", "timeoutMs": 20_000});
    let payload = |out: &clawnode_tests::CliOutput| -> Value {
        assert!(out.success, "run: {out:?}\n{}", node.dump());
        out.json().expect("--json")["payload"].clone()
    };
    let text = |out: &clawnode_tests::CliOutput| format!("{}{}", out.stdout, out.stderr);
    let refusal = |out: &clawnode_tests::CliOutput| {
        let t = text(out);
        t.lines()
            .find(|l| l.contains("\"message\"") || l.contains("Error:"))
            .unwrap_or(&t)
            .trim()
            .chars()
            .take(200)
            .collect::<String>()
    };
    let set_policy = |policy: Value| {
        let file = gw.dir().join(format!("{}.json", unique("s16-approvals")));
        std::fs::write(&file, policy.to_string()).expect("write the approvals file");
        let set = gw.openclaw(
            &[
                "approvals",
                "set",
                "--node",
                &id,
                "--file",
                file.to_str().expect("utf-8 path"),
            ],
            t,
        );
        assert!(
            set.success,
            "approvals set --node: {set:?}\n{}",
            node.dump()
        );
    };

    // The operator's allowlist: one program, by its real path.
    let echo = std::fs::canonicalize("/bin/echo").expect("/bin/echo");
    set_policy(json!({"version": 1,
        "defaults": {"security": "allowlist", "ask": "off", "askFallback": "deny"},
        "agents": {"*": {"allowlist": [{"pattern": echo}]}}}));
    let allowed = payload(&run(argv(&["/bin/echo", "allowed"]), 20_000));
    assert_eq!(allowed["stdout"], "allowed\n", "{allowed}");
    let miss = run(argv(&["/usr/bin/id"]), 20_000);
    assert!(!miss.success, "ran off the allowlist: {miss:?}");
    assert!(text(&miss).contains("allowlist miss"), "{miss:?}");

    // Approval flags from the caller, with no approval the gateway made.
    let mut forged = argv(&["/usr/bin/id"]);
    forged["approved"] = true.into();
    forged["approvalDecision"] = "allow-always".into();
    forged["runId"] = "forged-approval".into();
    let bypass = run(forged, 20_000);
    assert!(!bypass.success, "approval flags ran it: {bypass:?}");
    assert!(!text(&bypass).contains("uid="), "{bypass:?}");
    let mut fallback = argv(&["/usr/bin/id"]);
    fallback["approvalSource"] = "ask-fallback".into();
    fallback["runId"] = "forged-fallback".into();
    let bypass_fallback = run(fallback, 20_000);
    assert!(!bypass_fallback.success, "{bypass_fallback:?}");
    assert!(
        !text(&bypass_fallback).contains("uid="),
        "{bypass_fallback:?}"
    );

    set_policy(json!({"version": 1,
        "defaults": {"security": "full", "ask": "off", "askFallback": "deny"}}));

    // 50 round trips through the operator connection (an operator's
    // request in, the answer out: the gateway and the node, no CLI start).
    let mut rpc_ms = Vec::new();
    for _ in 0..50 {
        let out = run(argv(&["/bin/echo", "s16-p50"]), 20_000);
        assert_eq!(payload(&out)["stdout"], "s16-p50\n");
        rpc_ms.push(out.elapsed.as_millis());
    }

    let failed = payload(&run(argv(&["/bin/sh", "-c", "exit 3"]), 20_000));
    assert_eq!(failed["exitCode"], 3, "{failed}");
    assert_eq!(failed["success"], false, "{failed}");

    let rss_before = sys::rss_kib(node.pid()).unwrap_or(0);
    let big = run(
        argv(&["/bin/sh", "-c", "head -c 10000000 /dev/zero | tr '\\000' x"]),
        60_000,
    );
    let big_ms = big.elapsed.as_millis();
    let big = payload(&big);
    let kept = big["stdout"].as_str().unwrap_or_default().len()
        + big["stderr"].as_str().unwrap_or_default().len();
    assert!(
        (200_000..=200_100).contains(&kept),
        "kept {kept} bytes: {}",
        &big.to_string()[..200]
    );
    assert!(
        big["stdout"]
            .as_str()
            .is_some_and(|s| s.ends_with("(truncated)")),
        "marked as truncated"
    );
    assert_eq!(big["success"], true);
    assert_eq!(big["truncated"], true);
    let peak = sys::peak_rss_kib(node.pid()).unwrap_or(0);
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");

    // A tree at the timeout: the shell, a background sleep and its own.
    let marker = format!("600.{}", std::process::id());
    let script = format!("sleep {marker} & sleep {marker}; wait");
    let mut long = argv(&["/bin/sh", "-c", &script]);
    long["timeoutMs"] = 1_500.into();
    let (long_out, seen) = std::thread::scope(|s| {
        let call = s.spawn(|| run(long, 30_000));
        let seen = sys::poll(Duration::from_secs(20), || {
            let pids = sys::pids_with_arg(&marker);
            (pids.len() == 2).then_some(pids)
        });
        (call.join().expect("the call"), seen)
    });
    assert!(seen.is_some(), "both sleeps ran\n{}", node.dump());
    let timed_out = payload(&long_out);
    assert_eq!(timed_out["timedOut"], true, "{timed_out}");
    let survivors = sys::poll(Duration::from_secs(3), || {
        sys::pids_with_arg(&marker).is_empty().then_some(())
    });
    assert!(
        survivors.is_some(),
        "orphans after the timeout: {:?}",
        sys::pids_with_arg(&marker)
    );

    // Cancel: the operator goes away (its CLI's own `--timeout` closes its
    // socket), so the gateway sends `node.invoke.cancel`; the tree dies.
    let marker = format!("601.{}", std::process::id());
    let script = format!("sleep {marker} & sleep {marker}; wait");
    let mut long = argv(&["/bin/sh", "-c", &script]);
    long["timeoutMs"] = 600_000.into();
    let req = json!({"nodeId": id, "command": "system.run", "params": long,
                     "idempotencyKey": unique("k-cancel"), "timeoutMs": 120_000});
    let (gone_ms, seen) = std::thread::scope(|s| {
        let call = s.spawn(|| {
            gw.openclaw(
                &[
                    "gateway",
                    "call",
                    "node.invoke",
                    "--json",
                    "--timeout",
                    "4000",
                    "--params",
                    &req.to_string(),
                ],
                t,
            )
        });
        let seen = sys::poll(Duration::from_secs(20), || {
            (sys::pids_with_arg(&marker).len() == 2).then_some(())
        });
        let out = call.join().expect("the call");
        assert!(!out.success, "the operator gave up: {out:?}");
        let gone = Instant::now();
        sys::poll(Duration::from_secs(5), || {
            sys::pids_with_arg(&marker).is_empty().then_some(())
        });
        (gone.elapsed().as_millis(), seen)
    });
    assert!(seen.is_some(), "both sleeps ran\n{}", node.dump());
    assert!(
        sys::pids_with_arg(&marker).is_empty(),
        "orphans after the cancel: {:?}\n{}",
        sys::pids_with_arg(&marker),
        node.dump()
    );

    for key in ["LD_PRELOAD", "BASH_ENV"] {
        let mut p = argv(&["/usr/bin/env"]);
        p["env"] = json!({ key: "/nonexistent/evil" });
        let out = run(p, 20_000);
        assert!(!out.success, "{key} reached a run: {out:?}");
        assert!(text(&out).contains(key), "the refusal names {key}: {out:?}");
        assert!(!text(&out).contains("/nonexistent/evil\n"), "{out:?}");
    }

    // The wire: what the node sent, and how long it held each echo.
    let frames = tap.frames();
    let mut requested = std::collections::HashMap::new();
    let mut node_ms = Vec::new();
    let mut violations = Vec::new();
    let mut events: std::collections::BTreeMap<String, usize> = Default::default();
    let mut cancels = 0;
    for f in frames.iter().filter(|f| f.opcode == 1) {
        let v: Value = serde_json::from_str(&f.text()).unwrap_or(Value::Null);
        if !f.from_client {
            if v["event"] == "node.invoke.cancel" {
                cancels += 1;
            }
            if v["event"] == "node.invoke.request"
                && v["payload"]["paramsJSON"]
                    .as_str()
                    .is_some_and(|p| p.contains("s16-p50"))
            {
                requested.insert(v["payload"]["id"].to_string(), f.at);
            }
            continue;
        }
        if let Err(e) = schema.check_frame(&f.text()) {
            violations.push(e);
        }
        if v["method"] == "node.event" {
            *events
                .entry(v["params"]["event"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
        if v["method"] == "node.invoke.result"
            && let Some(at) = requested.get(&v["params"]["id"].to_string())
        {
            node_ms.push(f.at.duration_since(*at).as_micros());
        }
    }
    assert!(
        violations.is_empty(),
        "frames off the schema: {violations:?}"
    );
    assert_eq!(node_ms.len(), 50, "every echo answered on the wire");
    assert!(
        events.get("exec.denied").copied().unwrap_or(0) >= 1,
        "{events:?}"
    );
    assert!(
        events.get("exec.finished").copied().unwrap_or(0) >= 53,
        "{events:?}"
    );
    assert_eq!(
        events.get("exec.started"),
        events.get("exec.finished").map(|n| n + 1).as_ref(),
        "every run started, and all but the cancelled one finished: {events:?}"
    );
    assert_eq!(cancels, 1, "one node.invoke.cancel from the gateway");
    eprintln!(
        "MEASURE s16 echo_rpc_ms_p50={} echo_rpc_ms_p90={} echo_node_us_p50={} echo_node_us_p90={} \
         ten_mb_ms={big_ms} tree_gone_after_cancel_ms={gone_ms} rss_kib_before_10mb={rss_before} peak_rss_kib={peak} events={events:?} \
         bypass_refusal={:?} fallback_refusal={:?}",
        percentile(&mut rpc_ms, 50),
        percentile(&mut rpc_ms, 90),
        percentile(&mut node_ms, 50),
        percentile(&mut node_ms, 90),
        refusal(&bypass),
        refusal(&bypass_fallback),
    );
}

// ---------------------------------------------------------------- scenario 17

/// An operator client that can take exec approvals: connected with the
/// shared token as a local backend (the gateway keeps the scopes of such a
/// client without a device), scope `operator.admin` and cap
/// `exec-approvals`. While it is connected the gateway has somewhere to
/// deliver an approval request; without one, it denies at once ("Headless
/// runs cannot wait for interactive exec approval").
struct Approver {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Approver {
    fn connect(gw: &Gateway) -> Approver {
        use tungstenite::Message;
        let url = format!("ws://127.0.0.1:{}", gw.port());
        let (mut ws, _) = tungstenite::connect(url.as_str()).expect("approver connect");
        let read = |ws: &mut tungstenite::WebSocket<_>| loop {
            match ws.read().expect("approver read") {
                Message::Text(t) => {
                    break serde_json::from_str::<Value>(t.as_str()).unwrap_or(Value::Null);
                }
                _ => continue,
            }
        };
        let challenge = read(&mut ws);
        assert_eq!(challenge["event"], "connect.challenge", "{challenge}");
        let connect = json!({"type": "req", "id": "1", "method": "connect", "params": {
            "minProtocol": 4, "maxProtocol": 4,
            "client": {"id": "gateway-client", "version": "test", "platform": "linux",
                       "mode": "backend"},
            "role": "operator", "scopes": ["operator.admin", "operator.approvals"],
            "caps": ["exec-approvals"], "auth": {"token": gw.token()}}});
        ws.send(Message::text(connect.to_string()))
            .expect("send connect");
        let hello = loop {
            let v = read(&mut ws);
            if v["type"] == "res" {
                break v;
            }
        };
        assert_eq!(hello["ok"], true, "approver admitted: {hello}");
        let scopes = hello["payload"]["auth"]["scopes"].to_string();
        assert!(scopes.contains("operator.admin"), "scopes kept: {hello}");
        if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = ws.get_ref() {
            let _ = tcp.set_read_timeout(Some(Duration::from_millis(200)));
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let reader = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                match ws.read() {
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e)) if sys::read_timed_out(&e) => {}
                    Err(_) => return,
                }
            }
            let _ = ws.close(None);
        });
        Approver {
            stop,
            reader: Some(reader),
        }
    }
}

impl Drop for Approver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The gateway's interactive approval flow: the node's owner allows an
/// empty allowlist and asks on a miss. With no approver connected, the
/// gateway's exec tool is refused at once; with one, the tool holds the
/// run for an operator (`openclaw approvals pending`); the operator allows
/// it once (`openclaw approvals resolve ID allow-once`) and the gateway
/// sends the run with its approval and the prepared plan, which the node
/// checks against the plan it made (argv, cwd, session, policy) before it
/// runs it. A second turn, denied by the operator, runs nothing.
#[test]
fn s17_an_operator_approves_a_run_the_node_asked_for() {
    let (install, bin) = require!("s17");
    let name = unique("s17");
    let stub = StubModel::start("echo from-an-approved-run");
    let mut opts = GatewayOptions::plain("s17");
    if let Value::Object(extra) = stub.gateway_config(&name) {
        opts.config = extra;
    }
    let gw = Gateway::start(&install, opts);
    let node = Node::spawn(&bin, NodeOptions::new(&gw.url(), gw.token(), &name));
    connected_and_approved(&gw, &node);
    node.set_approvals(&["--security", "allowlist", "--ask", "on-miss"]);
    let t = Duration::from_secs(120);
    let headless = gw.openclaw(
        &[
            "agent",
            "--agent",
            "main",
            "--message",
            "no approver yet",
            "--json",
        ],
        t,
    );
    assert!(
        stub.tool_results()
            .last()
            .is_some_and(|r| r.contains("cannot wait for interactive exec approval")),
        "with no approver the gateway refuses at once: {headless:?}"
    );
    let approver = Approver::connect(&gw);
    let turn_with = |what: &str, decision: &str| {
        std::thread::scope(|s| {
            let turn = s.spawn(|| {
                gw.openclaw(
                    &["agent", "--agent", "main", "--message", what, "--json"],
                    t,
                )
            });
            let pending = sys::poll(Duration::from_secs(60), || {
                let out = gw.openclaw(&["approvals", "pending", "--json"], t);
                let v = out.json().ok()?;
                v["approvals"]
                    .as_array()?
                    .first()
                    .and_then(|a| a["id"].as_str().map(str::to_owned))
            });
            let Some(id) = pending else {
                let out = turn.join().expect("turn");
                panic!(
                    "no pending approval: {out:?}\n{}\n{}",
                    node.dump(),
                    gw.log_tail(40)
                );
            };
            let resolved = gw.openclaw(&["approvals", "resolve", &id, decision], t);
            assert!(resolved.success, "resolve: {resolved:?}");
            turn.join().expect("turn")
        })
    };
    let started = Instant::now();
    let allowed = turn_with("run it once approved", "allow-once");
    let ms = started.elapsed().as_millis();
    let results = stub.tool_results();
    assert!(
        results
            .last()
            .is_some_and(|r| r.contains("from-an-approved-run")),
        "the approved run's output reached the model: {results:?}\n{allowed:?}\n{}\n{}",
        node.dump(),
        gw.log_tail(40)
    );
    let invokes = node.named_since(0, "invoke");
    let count = |c: &str| invokes.iter().filter(|e| e["command"] == c).count();
    assert_eq!(count("system.run"), 1, "{}", node.dump());
    assert!(invokes.iter().all(|e| e["ok"] == true), "{}", node.dump());

    let denied = turn_with("run it again", "deny");
    let results = stub.tool_results();
    eprintln!(
        "MEASURE s17 approved_turn_ms={ms} denied_tool_result={:?}",
        results
            .last()
            .map(|r| r.chars().take(160).collect::<String>())
    );
    drop(approver);
    let invokes = node.named_since(0, "invoke");
    assert_eq!(
        invokes
            .iter()
            .filter(|e| e["command"] == "system.run")
            .count(),
        1,
        "the denied run never reached the node: {denied:?}\n{}",
        node.dump()
    );
}

// ---------------------------------------------------------------- scenario 18

/// `clawnode identity --json` as the gateway's SSH auto-approval probe
/// reads it. The probe runs `sh -lc 'openclaw node identity --json'` on the
/// node's host and parses stdout with `parseRemoteIdentity` (taken here
/// from the installed gateway's own code and run by its Node). sshd cannot
/// run here, so this checks the exact bytes instead: what the probe parses
/// from clawnode's output, after a login shell's banner line, is the device
/// id and public key the gateway recorded when the node connected.
#[test]
fn s18_identity_json_is_what_the_gateway_ssh_probe_parses() {
    let (install, bin) = require!("s18");
    let gw = shared_tls(&install);
    let (node, id) = pinned_and_approved(gw, &bin, "s18");
    let out = std::process::Command::new(&bin)
        .args(["identity", "--json", "--state-dir"])
        .arg(node.state_dir())
        .output()
        .expect("clawnode identity --json");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        stdout.ends_with("}\n") && stdout.lines().count() == 1,
        "one compact line: {stdout:?}"
    );

    let dist = install.openclaw.parent().expect("package dir").join("dist");
    let handler = std::fs::read_dir(&dist)
        .expect("dist")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            std::fs::read_to_string(p).is_ok_and(|t| t.contains("function parseRemoteIdentity("))
        })
        .expect("the gateway's probe parser in dist/");
    let text = std::fs::read_to_string(&handler).expect("read");
    let start = text.find("function parseRemoteIdentity(").expect("parser");
    let end = start + text[start..].find("\n}\n").expect("end of the parser") + 3;
    let parser = &text[start..end];
    assert!(
        text.contains("openclaw node identity --json"),
        "the probe still runs `openclaw node identity --json`"
    );
    let script = format!(
        "{parser}\nconst out = require('fs').readFileSync(0, 'utf8');\
         process.stdout.write(JSON.stringify(parseRemoteIdentity(out)));"
    );
    let mut child = std::process::Command::new(&install.node)
        .args(["-e", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("Welcome to the build box\n{stdout}").as_bytes())
        .expect("write");
    let parsed = child.wait_with_output().expect("node output");
    let parsed: Value = serde_json::from_slice(&parsed.stdout).expect("parser output");

    let devices = gw
        .openclaw_json(&["devices", "list"])
        .expect("devices list");
    let recorded = devices["paired"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["deviceId"] == id)
        .unwrap_or_else(|| panic!("{id} in {devices}"));
    eprintln!(
        "MEASURE s18 parsed={parsed} recorded_public_key={}",
        recorded["publicKey"]
    );
    assert_eq!(parsed["deviceId"], id.as_str(), "{parsed}");
    assert_eq!(
        parsed["publicKey"], recorded["publicKey"],
        "{parsed} vs {recorded}"
    );
}

// ---------------------------------------------------------------- scenario 19

/// An operator revokes a connected node's device token (`openclaw devices
/// revoke --role node`). The gateway closes the node with 4001 "device
/// removed"; the node reconnects once with its shared token, the gateway
/// wants the role approved again (`PAIRING_REQUIRED`), and the node pauses
/// with the approve command: no loop. Approved and restarted on the same
/// state, it is back.
#[test]
fn s19_a_revoked_node_reconnects_once_then_waits_for_approval() {
    let (install, bin) = require!("s19");
    let gw = shared_tls(&install);
    // The state outlives the first process: the device must stay the same.
    let state = sys::scratch_dir("s19-state");
    let opts = NodeOptions {
        state_dir: Some(state.clone()),
        ..NodeOptions::new(&gw.url(), gw.token(), &unique("s19")).pin(&gw.pin())
    };
    let node = Node::spawn(&bin, opts.clone());
    let (id, _) = connected_and_approved(gw, &node);
    let mark = node.mark();
    let out = gw.openclaw(
        &[
            "devices", "revoke", "--device", &id, "--role", "node", "--json",
        ],
        Duration::from_secs(60),
    );
    assert!(out.success, "{out:?}");
    let (_, paused) = node.expect(mark, "paused", Duration::from_secs(30));
    assert_eq!(paused["code"], "PAIRING_REQUIRED", "{paused}");
    let hint = paused["hint"].as_str().unwrap_or_default().to_owned();
    assert!(
        hint.starts_with("approve this device on the gateway: openclaw devices approve "),
        "{hint}"
    );
    std::thread::sleep(Duration::from_secs(10));
    let events = node.events_since(mark);
    let attempts = events.iter().filter(|e| e["event"] == "connecting").count();
    assert_eq!(attempts, 1, "one reconnect, then quiet: {events:?}");
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "disconnected" && e["code"] == 4001)
            .count(),
        1,
        "{events:?}"
    );
    // The operator runs the command the hint names.
    let request = hint.rsplit(' ').next().unwrap_or_default().to_owned();
    let approved = gw.openclaw(
        &["devices", "approve", &request, "--json"],
        Duration::from_secs(60),
    );
    assert!(approved.success, "{approved:?}");
    drop(node);
    let again = Node::spawn(&bin, opts);
    again.expect(0, "connected", CONNECT);
    assert_eq!(again.device_id(), id, "the same device");
    let status = sys::poll(Duration::from_secs(30), || {
        gw.node_status(&id).filter(|n| n["connected"] == true)
    });
    assert!(status.is_some(), "{:?}", gw.node_status(&id));
    drop(again);
    let _ = std::fs::remove_dir_all(&state);
    eprintln!("MEASURE s19 revoke_events={} hint={hint:?}", events.len());
}

// ---------------------------------------------------------------- scenario 20

/// One-paste pairing: the operator mints a node setup code with the
/// gateway's own RPC (`device.pair.setupCode`, node profile); `clawnode
/// run --pair CODE`, with no token, URL or pin of its own, connects pinned
/// to the certificate the code names, is approved by the gateway with no
/// manual step, and keeps the device token it is issued (never the
/// bootstrap token). A second run with no pairing flags at all reconnects
/// on the stored device token. Then the operator revokes that token: the
/// node forgets it exactly once and pauses with a hint, no loop.
#[test]
fn s20_one_paste_pairing_then_the_stored_device_token() {
    let (install, bin) = require!("s20");
    let mut opts = GatewayOptions::tls("s20");
    opts.config.insert(
        "gateway".into(),
        json!({"bind": "custom", "customBindHost": "127.0.0.1"}),
    );
    let gw = Gateway::start(&install, opts);
    let minted = gw.call(
        "device.pair.setupCode",
        &json!({"bootstrapProfile": "node", "includeQr": false}),
        Duration::from_secs(60),
    );
    assert!(
        minted.success,
        "setup code: {minted:?}\n{}",
        gw.log_tail(30)
    );
    let minted = minted.json().expect("--json");
    let code = minted["setupCode"].as_str().expect("setupCode").to_owned();
    assert_eq!(minted["access"], "node", "{minted}");
    let boot = {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(code.trim_start_matches("oc-pair://"))
            .expect("base64url");
        let v: Value = serde_json::from_slice(&raw).expect("json");
        assert_eq!(
            norm_pin(v["tlsFingerprint"].as_str().unwrap_or_default()),
            norm_pin(&gw.pin()),
            "the code pins the gateway's certificate: {v}"
        );
        v["bootstrapToken"].as_str().expect("token").to_owned()
    };

    let state = sys::scratch_dir("s20-state");
    let name = unique("s20");
    let paired = |extra: Vec<String>| NodeOptions {
        url: String::new(),
        token: None,
        display_name: name.clone(),
        state_dir: Some(state.clone()),
        extra_args: extra,
        ..NodeOptions::default()
    };
    let first = Node::spawn(
        &bin,
        paired(vec!["--pair".into(), format!("oc-pair://{code}")]),
    );
    first.expect(0, "connected", CONNECT);
    let id = first.device_id();
    // No `nodes approve`: the gateway approved it on the code.
    let which = sys::poll(Duration::from_secs(30), || {
        let out = gw.invoke_rpc(&id, "system.which", &json!({"bins": ["sh"]}), 10_000);
        out.success.then_some(out)
    });
    assert!(
        which.is_some(),
        "invoke without approval\n{}\n{}",
        first.dump(),
        gw.log_tail(30)
    );
    drop(first);
    let on_disk: String = walk(&state)
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect();
    assert!(
        !on_disk.contains(&boot),
        "the bootstrap token was written to disk"
    );
    assert!(
        on_disk.contains("deviceToken") || on_disk.contains("token"),
        "a device token is stored"
    );

    // No flags: the gateway and the pin remembered, the device token used.
    let second = Node::spawn(&bin, paired(Vec::new()));
    second.expect(0, "connected", CONNECT);
    assert_eq!(second.device_id(), id);
    let logged = second.stderr();
    assert!(
        !logged.contains(&boot),
        "the bootstrap token reached the log"
    );

    // Revoked: forgotten once, then a pause naming how to pair again.
    let mark = second.mark();
    let out = gw.openclaw(
        &[
            "devices", "revoke", "--device", &id, "--role", "node", "--json",
        ],
        Duration::from_secs(60),
    );
    assert!(out.success, "{out:?}");
    let (_, paused) = second.expect(mark, "paused", Duration::from_secs(30));
    eprintln!("MEASURE s20 code_chars={} paused={paused}", code.len());
    std::thread::sleep(Duration::from_secs(5));
    let events = second.events_since(mark);
    assert_eq!(
        events.iter().filter(|e| e["event"] == "connecting").count(),
        1,
        "{events:?}"
    );
    let forgot = second
        .stderr()
        .matches("rejected the stored device token; forgot it")
        .count();
    assert_eq!(forgot, 1, "{}", second.dump());
    drop(second);
    assert!(
        walk(&state.join("tokens")).is_empty(),
        "the revoked token is gone from disk"
    );
    let _ = std::fs::remove_dir_all(&state);
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

// ---------------------------------------------------------------- scenario 21

/// `clawnode-swarm`: 20 real, signed node sessions in one process against
/// the real gateway, paced 8 at a time, held 5 s, then closed with 1000;
/// the JSON summary has every field and all 20 connected.
#[test]
fn s21_swarm_holds_twenty_sessions_and_reports_a_summary() {
    let (install, _) = require!("s21");
    let gw = Gateway::start(&install, GatewayOptions::plain("s21"));
    let state = sys::scratch_dir("s21-swarm");
    let out = std::process::Command::new(clawnode_tests::swarm_bin())
        .args([
            "--url",
            &gw.url(),
            "--count",
            "20",
            "--inflight",
            "8",
            "--hold",
            "5",
            "--json",
            "--state-dir",
        ])
        .arg(&state)
        .env("OPENCLAW_GATEWAY_TOKEN", gw.token())
        .output()
        .expect("clawnode-swarm");
    assert!(out.status.success(), "{out:?}");
    let summary: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    eprintln!("MEASURE s21 swarm={summary}");
    for field in [
        "count",
        "connected",
        "connectP50Ms",
        "connectP99Ms",
        "rssBytes",
        "rssPerSessionBytes",
        "idleCpuMsPerMin",
        "disconnects",
        "refusals",
    ] {
        assert!(summary.get(field).is_some(), "{field} in {summary}");
    }
    // The binary counts its heap, so the live figure is there too.
    assert!(
        summary["heapPerSessionBytes"]
            .as_u64()
            .is_some_and(|b| b > 0),
        "{summary}"
    );
    assert_eq!(summary["count"], 20);
    assert_eq!(summary["connected"], 20, "{summary}");
    // Twenty identities, reused by the next run.
    let identities = std::fs::read_dir(&state).map(|d| d.count()).unwrap_or(0);
    assert_eq!(identities, 20);
    let _ = std::fs::remove_dir_all(&state);
}

/// The real gateway refuses a 33rd unauthenticated socket from one address
/// with HTTP 503 (docs/protocol.md §9). The node reports it as
/// `GATEWAY_BUSY`, retries on the busy streak's short delays instead of
/// aging its backoff, and connects once the other sockets are gone.
#[test]
fn s22_a_503_from_a_full_preauth_budget_is_busy_then_admitted() {
    let (install, bin) = require!("s22");
    let gw = Gateway::start(&install, GatewayOptions::plain("s22"));
    // 32 upgraded sockets that never send `connect` fill the budget.
    let holders: Vec<_> = (0..32)
        .map(|i| {
            let tcp = std::net::TcpStream::connect(("127.0.0.1", gw.port())).expect("tcp");
            tungstenite::client(gw.url(), tcp)
                .unwrap_or_else(|e| panic!("holder {i}: {e}"))
                .0
        })
        .collect();
    let name = unique("s22");
    let node = Node::spawn(&bin, NodeOptions::new(&gw.url(), gw.token(), &name));
    let (i, first) = node.expect(0, "disconnected", Duration::from_secs(10));
    assert_eq!(first["code"], "GATEWAY_BUSY", "{first}");
    assert_eq!(first["wasConnected"], false, "{first}");
    let (_, second) = node.expect(i + 1, "disconnected", Duration::from_secs(10));
    assert_eq!(second["code"], "GATEWAY_BUSY", "{second}");
    drop(holders);
    node.expect(0, "connected", CONNECT);
    let busy: Vec<u64> = node
        .named_since(0, "disconnected")
        .iter()
        .map(|e| {
            assert_eq!(e["code"], "GATEWAY_BUSY", "{e}");
            e["retryInMs"].as_u64().expect("retried")
        })
        .collect();
    eprintln!("MEASURE s22 busy_retries_ms={busy:?}");
    // The busy streak's bounds: 0.5–1 s, then 1–2 s, 2–4 s, … (no
    // `Retry-After` from this gateway).
    for (n, ms) in busy.iter().enumerate() {
        let full = (1000u64 << n.min(5)).min(30_000);
        assert!((full / 2..=full).contains(ms), "refusal {}: {ms} ms", n + 1);
    }
}

// ---------------------------------------------------------------- scenario 23

/// The tests' persistent operator connection (`Gateway::rpc`, behind
/// `Gateway::call`) is answered as the operator CLI is: `node.list`
/// through it and `openclaw nodes status --json` show the same node, and a
/// refused call gives the same error and status as `openclaw gateway call`.
#[test]
fn s23_the_operator_connection_is_answered_as_the_cli_is() {
    let (install, bin) = require!("s23");
    let gw = shared_plain(&install);
    let node = Node::spawn(
        &bin,
        NodeOptions::new(&gw.url(), gw.token(), &unique("s23")),
    );
    node.expect(0, "connected", CONNECT);
    let id = node.device_id();
    let entry = |list: &Value| {
        list["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["nodeId"] == id.as_str())
            .map(|n| {
                json!([
                    n["nodeId"],
                    n["displayName"],
                    n["clientId"],
                    n["connected"],
                    n["commands"]
                ])
            })
    };
    let via_rpc = sys::poll(Duration::from_secs(30), || {
        gw.rpc("node.list", &json!({}), Duration::from_secs(10))
            .ok()
            .and_then(|v| entry(&v))
            .filter(|e| e[3] == true)
    })
    .expect("node.list through the operator connection shows the node connected");
    let via_cli = gw
        .openclaw_json(&["nodes", "status"])
        .expect("nodes status");
    assert_eq!(Some(via_rpc), entry(&via_cli));

    let bogus = json!({"nodeId": "no-such-node", "command": "system.which",
                       "params": {"bins": ["sh"]}, "idempotencyKey": unique("k")});
    let rpc = gw.call("node.invoke", &bogus, Duration::from_secs(30));
    let cli = gw.openclaw(
        &[
            "gateway",
            "call",
            "node.invoke",
            "--json",
            "--params",
            &bogus.to_string(),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(
        (rpc.success, rpc.code),
        (cli.success, cli.code),
        "{rpc:?}\n{cli:?}"
    );
    let (rpc, cli) = (rpc.json().unwrap(), cli.json().unwrap());
    assert_eq!(rpc["ok"], cli["ok"]);
    assert_eq!(rpc["error"]["code"], cli["error"]["code"], "{rpc}\n{cli}");
    assert_eq!(rpc["error"]["type"], cli["error"]["type"], "{rpc}\n{cli}");
}
