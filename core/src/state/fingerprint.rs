//! A fingerprint of the session's state for the bounded model check
//! (feature `sim`): two states with the same fingerprint behave the same
//! from here on, as far as the check can tell.
//!
//! Times enter relative to `now`, and past the horizon where they stop
//! mattering they are clamped; the attempt id enters relative to the next
//! one. Left out on purpose: the running totals (they only grow), the jitter
//! generator's state (it moves delays within their bounds, which the
//! invariants check whatever they are) and the frame id counter.

use core::hash::{Hash, Hasher};
use core::time::Duration;

use crate::backoff::Backoff;
use crate::conn::Conn;
use crate::time::Time;

use super::NodeState;

/// FNV-1a, 64 bits: deterministic, `no_std`, enough to tell states apart.
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// How far from `now` a time is (0 when past), in ms.
pub(crate) fn until(at: Time, now: Time) -> u64 {
    at.saturating_since(now).as_millis() as u64
}

/// How long ago a time was, capped at `horizon` (beyond it, it no longer
/// changes what happens), in ms.
pub(crate) fn since(at: Time, now: Time, horizon: Duration) -> u64 {
    now.saturating_since(at).min(horizon).as_millis() as u64
}

impl NodeState {
    /// The fingerprint of the state at `now`.
    pub fn fingerprint(&self, now: Time) -> u64 {
        let mut h = Fnv::new();
        let t = &self.options.timeouts;
        let rel = |a: crate::input::AttemptId| self.next_attempt.saturating_sub(a.0);
        core::mem::discriminant(&self.conn).hash(&mut h);
        // Whether the current attempt was queued once already.
        (self.queued_attempt + 1 == self.next_attempt).hash(&mut h);
        match &self.conn {
            Conn::Idle | Conn::Stopped => {}
            Conn::Waiting { until: u } => until(*u, now).hash(&mut h),
            Conn::Queued { attempt, deadline }
            | Conn::Opening { attempt, deadline }
            | Conn::AwaitChallenge { attempt, deadline } => {
                (rel(*attempt), until(*deadline, now)).hash(&mut h);
            }
            Conn::AwaitHello {
                attempt, deadline, ..
            } => (rel(*attempt), until(*deadline, now)).hash(&mut h),
            Conn::Admitted(a) => {
                rel(a.attempt).hash(&mut h);
                since(a.admitted_at, now, t.stable_after).hash(&mut h);
                (
                    a.max_payload,
                    a.tick_timeout,
                    a.last_seq,
                    a.restart_expected,
                )
                    .hash(&mut h);
                since(a.last_tick, now, a.tick_timeout).hash(&mut h);
                until(a.next_ping, now).hash(&mut h);
                a.pong_due.map(|p| until(p, now)).hash(&mut h);
            }
            Conn::Paused { reason, cause } => {
                (reason.kind as u8, *cause as u8, reason.code()).hash(&mut h);
            }
        }
        self.config.hash(&mut h);
        self.stored_token.hash(&mut h);
        // A busy streak enters as the bounds its next delay is drawn from:
        // past the cap, a longer streak behaves the same.
        let busy = Backoff::busy_bounds(self.backoff.config(), self.backoff.busy() + 1);
        (self.backoff.failures(), busy).hash(&mut h);
        (
            self.token_retry.used,
            self.token_retry.active,
            self.token_retry.forgot,
        )
            .hash(&mut h);
        self.restart_window.map(|u| until(u, now)).hash(&mut h);
        self.restart_retries_left.hash(&mut h);
        self.last_quick_restart
            .map(|q| since(q, now, t.stable_after))
            .hash(&mut h);
        let window = self.options.limits.rejected_window;
        (self.rejected, since(self.rejected_since, now, window)).hash(&mut h);
        self.last_error.is_some().hash(&mut h);
        self.invokes.fingerprint(&mut h, now, self.next_attempt);
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    #[test]
    fn times_enter_relative_to_now() {
        assert_eq!(until(t(1500), t(1000)), 500);
        assert_eq!(until(t(1000), t(1500)), 0, "a past deadline is due now");
        assert_eq!(since(t(1000), t(1500), Duration::from_secs(1)), 500);
        assert_eq!(since(t(1000), t(9000), Duration::from_secs(1)), 1000);
        assert_eq!(since(t(1500), t(1000), Duration::from_secs(1)), 0);
    }

    #[test]
    fn states_apart_only_in_time_are_told_apart() {
        use crate::sim::{loopback_config, test_key};
        let node = |delay_ms| {
            let mut n = NodeState::new(test_key(1), crate::NodeOptions::with_seed(1));
            n.handle_input(t(0), crate::Input::Config(loopback_config()));
            n.handle_input(
                t(delay_ms),
                crate::Input::SocketFailed {
                    attempt: crate::AttemptId(1),
                    error: crate::SocketError::Io("reset".into()),
                },
            );
            n
        };
        // The same waiting state, seen at two moments: the retry is nearer.
        let a = node(0);
        assert_ne!(a.fingerprint(t(0)), a.fingerprint(t(100)));
        // Two states differing only in how long ago an attempt failed.
        let b = node(100);
        assert_ne!(a.fingerprint(t(200)), b.fingerprint(t(200)));
    }
}
