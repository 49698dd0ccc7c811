//! Construction-time options: [`NodeOptions`] and the [`Timeouts`] the
//! core enforces (docs/protocol.md §5).

use core::time::Duration;

use crate::backoff::BackoffConfig;

/// Timeouts and intervals the core enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// From the open-socket effect to the socket being open (TCP, TLS,
    /// WebSocket upgrade).
    pub open: Duration,
    /// How long an attempt may wait for a handshake slot once the driver
    /// reported it queued ([`Input::SocketQueued`](crate::Input::SocketQueued)).
    /// Past it the attempt ends as a queue timeout, backed off like a busy
    /// gateway (not counted as a failure).
    pub queue: Duration,
    /// The first attempt after the first config waits a uniform draw from
    /// `0..=first_attempt_jitter`, so that many sessions started together
    /// do not all connect in the same instant. Zero connects at once.
    pub first_attempt_jitter: Duration,
    /// From the socket opening to `connect.challenge`. Shorter than the
    /// gateway's own 15 s limit on unfinished handshakes (docs/protocol.md §9).
    pub challenge: Duration,
    /// From `connect` sent to `hello-ok`.
    pub hello: Duration,
    /// The tick interval assumed until hello-ok gives one.
    pub default_tick_interval: Duration,
    /// How long the gateway may be quiet (no frame, no pong) before an
    /// outbound WebSocket ping goes out.
    pub ping_interval: Duration,
    /// Invoke deadline when the gateway gives no `timeoutMs`.
    pub default_invoke: Duration,
    /// The longest invoke deadline accepted from the gateway. The gateway
    /// gives a `system.run` its process timeout plus 5 s, 30 minutes by
    /// default (docs/exec-host.md §5), so this is well above it.
    pub max_invoke: Duration,
    /// Deadline of an application request when none is given.
    pub default_request: Duration,
    /// The longest wait honoured from a `shutdown` event's `restartExpectedMs`.
    pub max_restart_wait: Duration,
    /// Delay before the one retry with a stored device token.
    pub device_token_retry: Duration,
    /// Retries while a gateway announced to be restarting comes back are
    /// drawn from `restart_retry..=2 × restart_retry`, without growing, for
    /// at most `max_restart_wait` after the announced restart time and at
    /// most [`Limits::restart_retries`] times.
    pub restart_retry: Duration,
    /// How long an admitted connection must stay up before it proves the
    /// gateway healthy: only then does the failure count reset, and only
    /// then is the next announced restart reconnected at once. A drop
    /// sooner counts as a failure (flap damping, docs/protocol.md §5).
    pub stable_after: Duration,
    /// After a ping, how long the gateway has to show it is alive (a pong
    /// or any frame) before the socket closes with 4000. `None` turns the
    /// check off, for a driver whose WebSocket library hides pongs; the
    /// tick watchdog still runs.
    pub pong: Option<Duration>,
    /// The shortest `policy.tickIntervalMs` honoured; a smaller one is
    /// raised to it.
    pub min_tick_interval: Duration,
    /// The longest `policy.tickIntervalMs` honoured; a larger one is
    /// lowered to it, so no gateway can switch the watchdog off.
    pub max_tick_interval: Duration,
    /// How long an invoke id (and its `idempotencyKey`) is remembered after
    /// it finished, so that a repeat is refused instead of run again.
    pub remember_invoke: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            open: Duration::from_secs(10),
            queue: Duration::from_secs(600),
            first_attempt_jitter: Duration::ZERO,
            challenge: Duration::from_secs(10),
            hello: Duration::from_secs(10),
            default_tick_interval: Duration::from_secs(15),
            ping_interval: Duration::from_secs(15),
            default_invoke: Duration::from_secs(30),
            max_invoke: Duration::from_secs(2 * 3600),
            default_request: Duration::from_secs(30),
            max_restart_wait: Duration::from_secs(30),
            device_token_retry: Duration::from_millis(250),
            restart_retry: Duration::from_millis(250),
            stable_after: Duration::from_secs(30),
            pong: Some(Duration::from_secs(10)),
            min_tick_interval: Duration::from_secs(1),
            max_tick_interval: Duration::from_secs(300),
            remember_invoke: Duration::from_secs(600),
        }
    }
}

/// Construction-time options of a [`NodeState`](crate::NodeState).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeOptions {
    /// Seed of the jitter generator. Same seed, same delays.
    pub seed: u64,
    /// Invokes that may run at once; the excess is answered busy.
    pub max_concurrent_invokes: usize,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Reconnect backoff.
    pub backoff: BackoffConfig,
    /// Bounds on what a peer can make the session hold or do.
    pub limits: Limits,
}

/// Bounds on what a gateway can make the session hold or do
/// (docs/protocol.md §5, §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Invoke ids (and idempotency keys) remembered after they finished;
    /// the oldest is forgotten first.
    pub remembered_invokes: usize,
    /// The longest invoke id or idempotency key accepted, in bytes: they
    /// are remembered, so their size must be bounded too. The gateway's are
    /// UUIDs (36 bytes); a longer one is reported and not answered.
    pub max_invoke_id: usize,
    /// Unusable frames tolerated within `rejected_window`; one more closes
    /// the socket with 1008 and counts as a failure.
    pub rejected_frames: u32,
    /// The window `rejected_frames` is counted over.
    pub rejected_window: Duration,
    /// Quick retries after an announced restart before the backoff applies.
    pub restart_retries: u32,
    /// The smallest `policy.maxPayload` admitted: below it even the core's
    /// own error answers would not fit, and every invoke answer would be
    /// dropped, so hello-ok is refused as a protocol violation.
    pub min_max_payload: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            remembered_invokes: 256,
            max_invoke_id: 256,
            rejected_frames: 16,
            rejected_window: Duration::from_secs(10),
            restart_retries: 16,
            min_max_payload: 1024,
        }
    }
}

impl NodeOptions {
    /// Default options with the given seed.
    pub fn with_seed(seed: u64) -> Self {
        NodeOptions {
            seed,
            max_concurrent_invokes: 16,
            timeouts: Timeouts::default(),
            backoff: BackoffConfig::default(),
            limits: Limits::default(),
        }
    }
}
