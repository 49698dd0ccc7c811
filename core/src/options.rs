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
    /// From the socket opening to `connect.challenge`. Shorter than the
    /// gateway's own 15 s limit on unfinished handshakes (docs/protocol.md §9).
    pub challenge: Duration,
    /// From `connect` sent to `hello-ok`.
    pub hello: Duration,
    /// The tick interval assumed until hello-ok gives one.
    pub default_tick_interval: Duration,
    /// Outbound WebSocket pings while connected.
    pub ping_interval: Duration,
    /// Invoke deadline when the gateway gives no `timeoutMs`.
    pub default_invoke: Duration,
    /// The longest invoke deadline accepted from the gateway.
    pub max_invoke: Duration,
    /// Deadline of an application request when none is given.
    pub default_request: Duration,
    /// The longest wait honoured from a `shutdown` event's `restartExpectedMs`.
    pub max_restart_wait: Duration,
    /// Delay before the one retry with a stored device token.
    pub device_token_retry: Duration,
    /// Retries while a gateway announced to be restarting comes back are
    /// drawn from `restart_retry..=2 × restart_retry`, without growing, for
    /// at most `max_restart_wait` after the announced restart time.
    pub restart_retry: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            open: Duration::from_secs(10),
            challenge: Duration::from_secs(10),
            hello: Duration::from_secs(10),
            default_tick_interval: Duration::from_secs(15),
            ping_interval: Duration::from_secs(15),
            default_invoke: Duration::from_secs(30),
            max_invoke: Duration::from_secs(600),
            default_request: Duration::from_secs(30),
            max_restart_wait: Duration::from_secs(30),
            device_token_retry: Duration::from_millis(250),
            restart_retry: Duration::from_millis(250),
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
}

impl NodeOptions {
    /// Default options with the given seed.
    pub fn with_seed(seed: u64) -> Self {
        NodeOptions {
            seed,
            max_concurrent_invokes: 16,
            timeouts: Timeouts::default(),
            backoff: BackoffConfig::default(),
        }
    }
}
