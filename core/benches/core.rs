//! Core benchmarks: per-operation cost and memory of an admitted session.
//!
//! A plain bench binary (`cargo bench -p clawnode-core`): each figure is the
//! median of repeated timed batches, printed beside its target. Allocation
//! counts and live heap bytes come from a counting global allocator. Nothing
//! here asserts on time: the machines are shared and noisy.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use clawnode_core::{
    AttemptId, ClientOptions, Credentials, Effect, Input, InvokeOutcome, InvokeRequest,
    NodeOptions, NodeState, SessionConfig, Time, TlsPolicy,
};
use ed25519_dalek::SigningKey;

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        LIVE.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        LIVE.fetch_add(new as isize - layout.size() as isize, Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const PIN: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const OTHER_PIN: &str = "0000000000000000000000000000000000000000000000000000000000000001";

fn config(pin: &str) -> SessionConfig {
    let client = ClientOptions {
        display_name: Some("bench".into()),
        commands: ["system.which".to_string()].into(),
        ..ClientOptions::default()
    };
    SessionConfig::parse("wss://127.0.0.1:18789", TlsPolicy::pinned([pin]).unwrap())
        .unwrap()
        .with_session_id("bench")
        .with_credentials(Credentials {
            token: Some("bench-token".into()),
            ..Credentials::default()
        })
        .with_client(client)
}

fn drain(node: &mut NodeState) -> usize {
    let mut n = 0;
    while let Some(e) = node.poll_effect() {
        black_box(e);
        n += 1;
    }
    n
}

const CHALLENGE: &str = r#"{"type":"event","event":"connect.challenge","payload":{"nonce":"5b0c3f8e-8f5e-4b7e-9a0e-1f2d3c4b5a69","ts":1795523726214}}"#;

fn hello_ok(attempt: u64) -> String {
    format!(
        r#"{{"type":"res","id":"connect-{attempt}","ok":true,"payload":{{"type":"hello-ok","protocol":4,"server":{{"version":"2026.9.6","connId":"c-1"}},"features":{{"methods":[],"events":[]}},"snapshot":{{}},"auth":{{"role":"node","scopes":[]}},"policy":{{"maxPayload":26214400,"maxBufferedBytes":52428800,"tickIntervalMs":30000}}}}}}"#
    )
}

/// Runs a full handshake on a fresh node; returns it admitted.
fn handshake(node: &mut NodeState, cfg: SessionConfig) {
    let now = Time::from_millis(1);
    node.handle_input(now, Input::Config(cfg));
    let attempt = match node.poll_effect() {
        Some(Effect::OpenSocket { attempt, .. }) => attempt,
        other => panic!("expected OpenSocket, got {other:?}"),
    };
    node.handle_input(now, Input::SocketOpened { attempt });
    node.handle_input(
        now,
        Input::Frame {
            attempt,
            text: CHALLENGE.into(),
        },
    );
    drain(node);
    node.handle_input(
        now,
        Input::Frame {
            attempt,
            text: hello_ok(attempt.0),
        },
    );
    let n = drain(node);
    assert!(n >= 1);
}

fn admitted() -> NodeState {
    let mut options = NodeOptions::with_seed(1);
    options.max_concurrent_invokes = usize::MAX;
    let mut node = NodeState::new(SigningKey::from_bytes(&[9; 32]), options);
    handshake(&mut node, config(PIN));
    node
}

struct Figure {
    name: &'static str,
    ns: f64,
    allocs: f64,
    target: &'static str,
}

/// Median over `rounds` batches of `batch` calls, with allocations per call.
fn measure(
    name: &'static str,
    target: &'static str,
    rounds: usize,
    batch: usize,
    mut f: impl FnMut(usize),
) -> Figure {
    measure_with(name, target, rounds, batch, &mut (), |_| {}, |_, i| f(i))
}

/// [`measure`] with untimed `setup` before each batch, both working on
/// `state`: a batch starts from the same state every round instead of
/// piling up what earlier rounds left behind.
fn measure_with<S>(
    name: &'static str,
    target: &'static str,
    rounds: usize,
    batch: usize,
    state: &mut S,
    mut setup: impl FnMut(&mut S),
    mut f: impl FnMut(&mut S, usize),
) -> Figure {
    let mut samples = Vec::with_capacity(rounds);
    let mut allocs = Vec::with_capacity(rounds);
    let mut i = 0;
    for _ in 0..rounds {
        setup(state);
        let a0 = ALLOCS.load(Relaxed);
        let t0 = Instant::now();
        for _ in 0..batch {
            f(state, i);
            i += 1;
        }
        samples.push(t0.elapsed().as_nanos() as f64 / batch as f64);
        allocs.push((ALLOCS.load(Relaxed) - a0) as f64 / batch as f64);
    }
    samples.sort_by(f64::total_cmp);
    allocs.sort_by(f64::total_cmp);
    Figure {
        name,
        ns: samples[rounds / 2],
        allocs: allocs[rounds / 2],
        target,
    }
}

/// A `node.invoke.request` frame for invoke `i`.
fn invoke_request(i: usize, params_json: &str) -> String {
    format!(
        r#"{{"type":"event","event":"node.invoke.request","payload":{{"id":"inv-{i}","nodeId":"n","command":"system.which","paramsJSON":{params_json},"timeoutMs":30000}}}}"#
    )
}

/// Feeds the application's answer to invoke `id`.
fn feed_answer(node: &mut NodeState, id: String, payload_json: &str) {
    node.handle_input(
        Time::from_millis(4),
        Input::InvokeResult {
            id,
            outcome: InvokeOutcome::Ok {
                payload_json: Some(payload_json.to_owned()),
            },
        },
    );
}

/// Answers invoke `id` and drains what the answer produced.
fn answer(node: &mut NodeState, id: String, payload_json: &str) {
    feed_answer(node, id, payload_json);
    drain(node);
}

/// Answers invoke `id`, then acknowledges the result frame as the gateway
/// does, so that nothing piles up across rounds (untimed setup only).
fn answer_and_ack(node: &mut NodeState, attempt: AttemptId, id: String, payload_json: &str) {
    feed_answer(node, id, payload_json);
    let mut acks = Vec::new();
    while let Some(e) = node.poll_effect() {
        if let Effect::SendFrame { text, .. } = e {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            acks.push(v["id"].as_str().unwrap().to_owned());
        }
    }
    for ack in acks {
        let res = format!(r#"{{"type":"res","id":"{ack}","ok":true}}"#);
        node.handle_frame(Time::from_millis(4), attempt, &res);
        drain(node);
    }
}

fn print_figures(figures: &[Figure], rounds: usize) {
    println!("\nclawnode-core benchmarks (median of {rounds} batches)\n");
    println!(
        "{:<52} {:>12} {:>10}  target",
        "operation", "time", "allocs/op"
    );
    for f in figures {
        println!(
            "{:<52} {:>9.0} ns {:>10.1}  {}",
            f.name, f.ns, f.allocs, f.target
        );
    }
}

/// `ONLY_TICK` or `ONLY_INVOKE` stop after that figure, for a profiler.
fn main() {
    // `cargo test --benches` runs this binary with `--bench` absent: do a
    // quick pass only, so the suite stays fast.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (rounds, scale) = if quick { (3, 1) } else { (21, 100) };
    let mut figures = Vec::new();

    let mut node = admitted();
    let attempt = node.status().attempt.unwrap();
    // Frames are written before each batch, untimed, as a driver's
    // receive buffers are, and borrowed by `handle_frame`.
    let mut frames: Vec<String> = Vec::new();
    let mut next_seq = 0;
    figures.push(measure_with(
        "handle a tick event (handle_frame)",
        "<= 250 ns, <= 2 allocs",
        rounds * scale,
        100,
        &mut (&mut node, &mut frames),
        |(_, frames)| {
            frames.clear();
            frames.extend((0..100).map(|i| {
                next_seq += 1;
                format!(
                    r#"{{"type":"event","event":"tick","payload":{{"ts":{i}}},"seq":{next_seq}}}"#
                )
            }));
        },
        |(node, frames), i| {
            node.handle_frame(Time::from_millis(2), attempt, &frames[i % 100]);
            drain(node);
        },
    ));
    if std::env::var_os("ONLY_TICK").is_some() {
        return print_figures(&figures, rounds);
    }

    let params = format!(r#"{{"bins":["{}"]}}"#, "x".repeat(1024 - 12));
    let params_json = serde_json::to_string(&params).unwrap();
    let reply = r#"{"bins":{"sh":"/usr/bin/sh"}}"#;
    const BATCH: usize = 64;
    // Whole requests are kept, as a driver hands them to its commands: they
    // are dropped in the untimed setup, not in the timed call.
    let mut running: Vec<InvokeRequest> = Vec::with_capacity(BATCH);
    let mut next_id = 0;
    let mut bench = (&mut node, &mut running, &mut frames);
    figures.push(measure_with(
        "invoke request -> Invoke effect (1 KiB paramsJSON)",
        "<= 1 us",
        rounds * scale,
        BATCH,
        &mut bench,
        |(node, running, frames)| {
            for req in running.drain(..) {
                answer_and_ack(node, attempt, req.id, reply);
            }
            frames.clear();
            frames.extend((0..BATCH).map(|_| {
                next_id += 1;
                invoke_request(next_id, &params_json)
            }));
        },
        |(node, running, frames), i| {
            node.handle_frame(Time::from_millis(3), attempt, &frames[i % BATCH]);
            while let Some(e) = node.poll_effect() {
                if let Effect::Invoke(req) = e {
                    running.push(req);
                }
            }
        },
    ));

    if std::env::var_os("ONLY_INVOKE").is_some() {
        return print_figures(&figures, rounds);
    }

    figures.push(measure_with(
        "invoke answer -> node.invoke.result frame",
        "",
        rounds * scale,
        BATCH,
        &mut bench,
        |(node, running, _)| {
            for _ in 0..BATCH {
                next_id += 1;
                let frame = invoke_request(next_id, &params_json);
                node.handle_frame(Time::from_millis(3), attempt, &frame);
                while let Some(e) = node.poll_effect() {
                    if let Effect::Invoke(req) = e {
                        running.push(req);
                    }
                }
            }
        },
        |(node, running, _), _| {
            let id = running.pop().expect("one running invoke per call").id;
            answer(node, id, reply);
        },
    ));

    let same = config(PIN);
    figures.push(measure(
        "re-apply an equal config as Input::Config(clone)",
        "",
        rounds,
        100 * scale,
        |_| {
            // The caller's clone and its drop dominate this figure; the
            // node's own cost is the set_config figure below.
            node.handle_input(
                Time::from_millis(5),
                Input::Config(black_box(&same).clone()),
            );
            assert!(node.poll_effect().is_none());
        },
    ));
    figures.push(measure(
        "re-apply an equal config by reference (set_config)",
        "<= 100 ns, no allocation",
        rounds,
        1000 * scale,
        |_| {
            let a0 = ALLOCS.load(Relaxed);
            node.set_config(Time::from_millis(5), black_box(&same));
            assert_eq!(ALLOCS.load(Relaxed), a0, "equal config allocated");
            assert!(node.poll_effect().is_none());
        },
    ));

    let pins = [config(OTHER_PIN), config(PIN)];
    figures.push(measure(
        "re-apply a changed pin (teardown + new attempt)",
        "",
        rounds,
        100 * scale,
        |i| {
            node.handle_input(Time::from_millis(6), Input::Config(pins[i % 2].clone()));
            drain(&mut node);
        },
    ));

    let mut fresh: Vec<NodeState> = (0..10 * scale * rounds)
        .map(|_| NodeState::new(SigningKey::from_bytes(&[9; 32]), NodeOptions::with_seed(1)))
        .collect();
    figures.push(measure(
        "complete handshake incl. Ed25519 signature",
        "",
        rounds,
        10 * scale,
        |_| {
            let mut n = fresh.pop().unwrap();
            handshake(&mut n, config(PIN));
            black_box(&n);
        },
    ));

    print_figures(&figures, rounds);

    // Memory: live heap of admitted idle sessions, plus their inline size.
    let count = if quick { 100 } else { 10_000 };
    let before = LIVE.load(Relaxed);
    let sessions: Vec<NodeState> = (0..count).map(|_| admitted()).collect();
    let heap = (LIVE.load(Relaxed) - before) as f64;
    let inline = std::mem::size_of::<NodeState>();
    println!(
        "\nmemory of one idle admitted NodeState: {:.0} bytes ({} inline + {:.0} heap); target <= 4096",
        heap / count as f64,
        inline,
        heap / count as f64 - inline as f64
    );
    println!(
        "memory of {count} idle admitted NodeStates: {:.1} MiB",
        heap / (1024.0 * 1024.0)
    );
    black_box(sessions);
}
