//! `clawnode-swarm`: many real node sessions in one process, to load-test a
//! gateway and to measure what a session costs.
//!
//! Each session is a full node (its own device identity under
//! `STATE/node-NNNN`, signed and pinned like `clawnode run`) serving
//! `system.which`. Sessions start paced: at most `inflight` of them are
//! connecting at a time, and their reconnects share that limit through one
//! [`Admission`], so that a swarm never stampedes the gateway. The
//! summary reports connect latencies, memory and idle CPU per session, and
//! how the gateway refused or dropped sessions.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clawnode_core::SessionConfig;
use serde_json::{Value, json};
use smol::channel::{self, Receiver, Sender};

use clawnode::{Admission, Event, NodeBuilder, NodeHandle, StateDir};
use clawnode_host::HostCommands as _;

/// Events each session keeps for the swarm's reader (it reads promptly).
const EVENTS_PER_SESSION: usize = 8;

/// What to run.
#[derive(Clone, Debug)]
pub struct SwarmSpec {
    /// The config every session uses (its display name is replaced).
    pub config: SessionConfig,
    /// How many sessions.
    pub count: usize,
    /// At most this many connecting at once.
    pub inflight: usize,
    /// How long to hold the sessions once all are up (or the ramp ended).
    pub hold: Duration,
    /// How long the ramp may take before holding anyway.
    pub ramp_limit: Duration,
    /// Where the identities live (`node-NNNN` below it).
    pub state: PathBuf,
    /// Bytes in use on the heap, when the program counts them (the
    /// `clawnode-swarm` binary does): the summary then has the live heap per
    /// session beside the resident set, which also holds what the
    /// allocator kept from the ramp.
    pub heap_bytes: Option<fn() -> u64>,
    /// The tokio runtime every session and the swarm's own tasks run on;
    /// [`run`] must run on it too. A current-thread runtime serves every
    /// session from one thread, so an idle session wakes that thread alone
    /// ([`NodeBuilder::tokio`]).
    pub runtime: tokio::runtime::Handle,
}

/// What one session reported, for the aggregator.
enum Report {
    Connected {
        node: usize,
        after: Duration,
    },
    Disconnected {
        node: usize,
        code: String,
        was_connected: bool,
    },
    Paused {
        node: usize,
        code: String,
    },
}

/// The outcome, as `--json` prints it.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Sessions asked for.
    pub count: usize,
    /// Sessions connected at the end of the hold.
    pub connected: usize,
    /// Time from a session's start to its first admission, in ms.
    pub connect_ms: Vec<u64>,
    /// The process's resident set before the sessions and at the end.
    pub rss_before: u64,
    /// The process's resident set at the end of the hold.
    pub rss_after: u64,
    /// Bytes in use on the heap before the sessions and at the end of the
    /// hold, when counted.
    pub heap: Option<(u64, u64)>,
    /// CPU the process used during the hold, in ms per minute.
    pub idle_cpu_ms_per_min: f64,
    /// Disconnects of admitted sessions, by code.
    pub disconnects: BTreeMap<String, u64>,
    /// Refused attempts (never admitted), by code: `GATEWAY_BUSY` (HTTP
    /// 503), handshake timeouts.
    pub refusals: BTreeMap<String, u64>,
    /// Sessions paused, by code.
    pub paused: BTreeMap<String, u64>,
    /// How long the ramp took, in ms.
    pub ramp_ms: u64,
}

fn pct(sorted: &[u64], p: usize) -> u64 {
    sorted
        .get(sorted.len().saturating_sub(1) * p / 100)
        .copied()
        .unwrap_or(0)
}

impl Summary {
    /// The summary as one JSON object.
    pub fn to_json(&self) -> Value {
        let mut sorted = self.connect_ms.clone();
        sorted.sort_unstable();
        let grown = self.rss_after.saturating_sub(self.rss_before);
        let per = |v: f64| {
            if self.connected == 0 {
                0.0
            } else {
                v / self.connected as f64
            }
        };
        json!({
            "count": self.count,
            "connected": self.connected,
            "connectP50Ms": pct(&sorted, 50),
            "connectP99Ms": pct(&sorted, 99),
            "rampMs": self.ramp_ms,
            "rssBytes": self.rss_after,
            "rssPerSessionBytes": per(grown as f64).round() as u64,
            "heapPerSessionBytes": self.heap.map(|(before, after)| per(after.saturating_sub(before) as f64).round() as u64),
            "idleCpuMsPerMin": (self.idle_cpu_ms_per_min * 1000.0).round() / 1000.0,
            "idleCpuMsPerMinPerSession": (per(self.idle_cpu_ms_per_min) * 1000.0).round() / 1000.0,
            "disconnects": self.disconnects,
            "refusals": self.refusals,
            "paused": self.paused,
        })
    }
}

/// This process's resident set, in bytes (`/proc/self/status` `VmRSS`).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// CPU time this process used (user + system, all threads), to the
/// nanosecond: `/proc`'s tick counts are too coarse for an idle figure of a
/// few milliseconds a minute.
pub fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Forwards one session's events to the aggregator; marks the session's
/// first admission.
async fn watch(node: usize, started: Instant, events: Receiver<Event>, to: Sender<Report>) {
    let mut admitted = false;
    while let Ok(event) = events.recv().await {
        let report = match event {
            Event::Connected { .. } if !admitted => {
                admitted = true;
                Report::Connected {
                    node,
                    after: started.elapsed(),
                }
            }
            Event::Disconnected {
                code,
                was_connected,
                ..
            } => Report::Disconnected {
                node,
                code: code.to_string(),
                was_connected,
            },
            Event::Paused { code, .. } => Report::Paused { node, code },
            _ => continue,
        };
        if to.send(report).await.is_err() {
            return;
        }
    }
}

/// Counts one report.
fn apply(
    r: Report,
    summary: &mut Summary,
    up: &mut [bool],
    connecting: &mut usize,
    connected: &mut usize,
) {
    match r {
        Report::Connected { node, after } => {
            summary
                .connect_ms
                .push(u64::try_from(after.as_millis()).unwrap_or(u64::MAX));
            if !up[node] {
                up[node] = true;
                *connected += 1;
            }
            *connecting = connecting.saturating_sub(1);
        }
        Report::Disconnected {
            node,
            code,
            was_connected,
        } => {
            let map = if was_connected {
                &mut summary.disconnects
            } else {
                &mut summary.refusals
            };
            *map.entry(code).or_default() += 1;
            if was_connected && up[node] {
                up[node] = false;
                *connected -= 1;
            }
        }
        Report::Paused { node, code } => {
            *summary.paused.entry(code).or_default() += 1;
            if !up[node] {
                // A paused session will not connect: it no longer holds a slot.
                *connecting = connecting.saturating_sub(1);
            }
        }
    }
}

/// Runs the swarm until the hold ends or `stop` fires, then closes every
/// session with 1000. `progress` sees (connected, connecting) as they change.
pub async fn run(
    spec: SwarmSpec,
    stop: Receiver<()>,
    mut progress: impl FnMut(usize, usize),
) -> Result<Summary, String> {
    let heap_before = spec.heap_bytes.map(|f| f());
    let mut summary = Summary {
        count: spec.count,
        rss_before: rss_bytes(),
        ..Summary::default()
    };
    let (tx, rx) = channel::unbounded::<Report>();
    let mut nodes: Vec<NodeHandle> = Vec::with_capacity(spec.count);
    let mut up = vec![false; spec.count];
    let mut connecting = 0usize;
    let mut connected = 0usize;
    let ramp_start = Instant::now();
    let mut stopped = false;
    let mut next = 0usize;
    // Reconnects share the ramp's limit: a session retrying after a
    // handshake timeout queues for a slot like a new one.
    let admission = Admission::new(spec.inflight);
    while (next < spec.count || connecting > 0) && ramp_start.elapsed() < spec.ramp_limit {
        if stop.try_recv().is_ok() {
            stopped = true;
            break;
        }
        while next < spec.count && connecting < spec.inflight {
            let dir = spec.state.join(format!("node-{next:04}"));
            let mut config = spec.config.clone();
            config.client.display_name = Some(format!("swarm-{next:04}"));
            let mut builder = NodeBuilder::new(config, StateDir::new(dir))
                .with_system_which()
                .tokio(spec.runtime.clone())
                .admission(admission.clone());
            let events = builder.events_with_capacity(EVENTS_PER_SESSION);
            let node = builder
                .spawn()
                .map_err(|e| format!("session {next}: {e}"))?;
            drop(
                spec.runtime
                    .spawn(watch(next, Instant::now(), events, tx.clone())),
            );
            nodes.push(node);
            connecting += 1;
            next += 1;
        }
        progress(connected, connecting);
        let report = smol::future::or(async { rx.recv().await.ok() }, async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            None
        })
        .await;
        if let Some(r) = report {
            apply(r, &mut summary, &mut up, &mut connecting, &mut connected);
        }
    }
    summary.ramp_ms = u64::try_from(ramp_start.elapsed().as_millis()).unwrap_or(u64::MAX);
    progress(connected, connecting);
    if !stopped {
        // Hold: what the sessions cost while idle.
        let cpu_before = cpu_time();
        let hold_start = Instant::now();
        while hold_start.elapsed() < spec.hold {
            let left = spec.hold.saturating_sub(hold_start.elapsed());
            let woke = smol::future::or(
                async {
                    match rx.recv().await {
                        Ok(r) => Some(Some(r)),
                        Err(_) => None,
                    }
                },
                async {
                    smol::future::or(
                        async {
                            let _ = stop.recv().await;
                            Some(None)
                        },
                        async {
                            tokio::time::sleep(left).await;
                            None
                        },
                    )
                    .await
                },
            )
            .await;
            match woke {
                Some(Some(r)) => {
                    apply(r, &mut summary, &mut up, &mut connecting, &mut connected);
                    progress(connected, connecting);
                }
                Some(None) => break,
                None => {}
            }
        }
        let held = hold_start.elapsed().as_secs_f64().max(0.001);
        let used = cpu_time().saturating_sub(cpu_before).as_secs_f64() * 1000.0;
        summary.idle_cpu_ms_per_min = used * 60.0 / held;
    }
    // Reports already queued still count.
    while let Ok(r) = rx.try_recv() {
        apply(r, &mut summary, &mut up, &mut connecting, &mut connected);
    }
    summary.rss_after = rss_bytes();
    summary.heap = heap_before.zip(spec.heap_bytes.map(|f| f()));
    summary.connected = connected;
    let closing: Vec<_> = nodes
        .into_iter()
        .map(|n| spec.runtime.spawn(n.shutdown()))
        .collect();
    for c in closing {
        if let Err(e) = c.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    Ok(summary)
}
