//! A bounded exhaustive model check of the session machine.
//!
//! Breadth first, every sequence of inputs from a finite alphabet is fed to
//! a `NodeState` up to a depth, with every step checked by the sim's
//! `Invariants` and every state reached checked for liveness:
//!
//! - **no wedge:** outside `Idle`, `Paused` and `Stopped` a deadline is
//!   always set (the driver always has something to wait for);
//! - **recovery:** from every state that is not paused or stopped, a
//!   gateway that then behaves admits the node within `RECOVERY_STEPS`
//!   inputs and `recovery_bound()` of virtual time;
//! - **no loop:** a paused session makes no attempt whatever equal
//!   configs, wakes and time advances follow.
//!
//! States are told apart by `NodeState::fingerprint`, which keeps times
//! relative to now and leaves out the running totals and the jitter
//! generator's state; a state seen before is not expanded again. So the
//! check covers every input sequence up to the depth, up to that
//! abstraction.
//!
//! The search goes one level deeper while the time spent stays under a
//! budget (`CLAWNODE_MODEL_SECS`, default 15; `.ci/run` gives it 60) and the depth under
//! `CLAWNODE_MODEL_DEPTH` (default 12); `scripts/model.sh` runs it longer,
//! in release. A failure prints the input sequence that leads to it, ready
//! to become a named scenario.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use support::{Fr, Harness, Op, Sel, check_liveness};

/// The alphabet: each class of input the session can receive, once.
fn alphabet() -> Vec<Op> {
    use Fr::*;
    let cur = Sel::Current;
    let stale = || Sel::Stale(0);
    let frame = |f: Fr| Op::Frame(Sel::Current, f);
    vec![
        // Session inputs: equal, then changed in session id, trust (pin),
        // credentials; a stored device token.
        Op::Config(0),
        Op::Config(2),
        Op::Config(3),
        Op::Config(5),
        Op::StoredToken(Some(1)),
        // Socket events of the current attempt and of a stale one.
        Op::Queued(cur.clone()),
        Op::Dialing(cur.clone()),
        Op::Opened(cur.clone()),
        Op::Opened(stale()),
        Op::Closed(cur.clone(), Some(1012)),
        Op::Closed(cur.clone(), Some(4000)),
        Op::Closed(cur.clone(), None),
        Op::Closed(stale(), Some(1000)),
        Op::Failed(cur.clone(), 2),
        Op::Failed(cur.clone(), 0),
        Op::Failed(cur.clone(), 1),
        Op::Failed(cur.clone(), 3),
        Op::Failed(stale(), 2),
        // The handshake: a challenge with and without a usable ts, hello-ok,
        // and a refusal of each class.
        frame(Challenge),
        frame(BadChallenge),
        frame(HelloOk {
            tick: Some(30_000),
            max_payload: Some(100_000),
            token: Some(1),
            protocol: 4,
        }),
        frame(ConnectError(0)),
        frame(ConnectError(4)),
        frame(ConnectError(1)),
        frame(ConnectError(2)),
        frame(ConnectError(5)),
        frame(ConnectError(8)),
        // Admitted traffic: tick, shutdown, invokes (declared, undeclared;
        // a repeat is the same input twice), an answer, a cancel.
        frame(Tick(None)),
        frame(Shutdown(None)),
        frame(Invoke {
            id: 1,
            cmd: 0,
            timeout: None,
        }),
        frame(Invoke {
            id: 2,
            cmd: 3,
            timeout: None,
        }),
        Op::InvokeResult(1, true, 1),
        frame(Cancel(1)),
        // A request from the application (refused until hello-ok).
        Op::Request(1, None),
        // Time to the next deadline, wake and stop.
        Op::ToDeadline,
        Op::Wake,
        Op::Stop,
    ]
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn describe(path: &[u8], alphabet: &[Op]) -> String {
    path.iter()
        .map(|&i| format!("  {:?}", alphabet[i as usize]))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_input_sequence_up_to_the_depth_keeps_the_invariants_and_liveness() {
    let alphabet = alphabet();
    let budget = Duration::from_secs(env("CLAWNODE_MODEL_SECS", 15));
    let max_depth = env("CLAWNODE_MODEL_DEPTH", 12) as usize;
    let started = Instant::now();

    let mut root = Harness::new(7);
    root.step(&Op::Config(0)).expect("the first config");
    root.trace.clear();
    let mut seen: HashSet<u64> = HashSet::new();
    seen.insert(root.node.fingerprint(root.now));
    let mut frontier: Vec<(Harness, Vec<u8>)> = vec![(root, Vec::new())];
    let mut steps: u64 = 0;
    let mut depth = 0;
    while depth < max_depth && !frontier.is_empty() {
        let level = Instant::now();
        let expanded = frontier.len();
        let mut next = Vec::new();
        for (h, path) in &frontier {
            for (i, op) in alphabet.iter().enumerate() {
                let mut c = h.clone();
                steps += 1;
                let mut p = path.clone();
                p.push(i as u8);
                if let Err(v) = c.step(op) {
                    panic!(
                        "invariant violated at depth {}: {v}\ninputs:\n{}",
                        depth + 1,
                        describe(&p, &alphabet)
                    );
                }
                c.trace.clear();
                if !seen.insert(c.node.fingerprint(c.now)) {
                    continue;
                }
                if let Err(why) = check_liveness(&c) {
                    panic!(
                        "liveness violated at depth {}: {why}\ninputs:\n{}",
                        depth + 1,
                        describe(&p, &alphabet)
                    );
                }
                next.push((c, p));
            }
        }
        depth += 1;
        frontier = next;
        let spent = started.elapsed();
        eprintln!(
            "MEASURE model depth={depth} new_states={} distinct_states={} steps={steps} level_s={:.1} total_s={:.1}",
            frontier.len(),
            seen.len(),
            level.elapsed().as_secs_f64(),
            spent.as_secs_f64()
        );
        // The next level costs about as much per state as this one did.
        let per_state = level.elapsed().as_secs_f64() / expanded as f64;
        let next_level = per_state * frontier.len() as f64;
        if spent.as_secs_f64() + next_level > budget.as_secs_f64() {
            break;
        }
    }
    println!(
        "model check: depth {depth} complete, {} distinct states, {steps} steps, {:.1} s",
        seen.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(depth >= 3, "the check must reach depth 3 at least");
}
