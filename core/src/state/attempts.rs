//! The attempt lifecycle (docs/protocol.md §5): opening a socket, ending it
//! for any reason, and choosing when the next one starts.

use alloc::borrow::ToOwned;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use core::time::Duration;

use crate::backoff::Backoff;
use crate::conn::Conn;
use crate::effect::Effect;
use crate::input::{AttemptId, SocketError};
use crate::notification::{DisconnectReason, Notification};
use crate::policy::{self, Verdict};
use crate::time::{Time, millis};

use super::NodeState;
use super::next::Next;

impl NodeState {
    pub(super) fn start_attempt(&mut self, now: Time) {
        let Some(config) = &self.config else {
            self.conn = Conn::Idle;
            return;
        };
        let attempt = AttemptId(self.next_attempt);
        self.next_attempt += 1;
        self.out.counters.attempts += 1;
        self.rejected = 0;
        self.rejected_since = now;
        self.out.push(Effect::OpenSocket {
            attempt,
            url: config.url().clone(),
            tls: config.tls().clone(),
        });
        self.conn = Conn::Opening {
            attempt,
            deadline: now.deadline_after(self.options.timeouts.open),
        };
    }

    pub(super) fn socket_closed(&mut self, now: Time, code: Option<u16>, reason: String) {
        let restart = match &self.conn {
            Conn::Admitted(a) => a
                .restart_expected
                .or((code == Some(1012)).then_some(Duration::ZERO)),
            _ => None,
        };
        match restart {
            Some(wait) => {
                let next = self.restart_next(now, wait);
                self.end_attempt(now, DisconnectReason::GatewayRestart, None, next);
            }
            None => self.end_attempt(
                now,
                DisconnectReason::Closed { code, reason },
                None,
                Next::BACKOFF,
            ),
        }
    }

    pub(super) fn socket_failed(&mut self, now: Time, error: SocketError) {
        // After a `shutdown` event a reset is the restart itself.
        let restart = match &self.conn {
            Conn::Admitted(a) if matches!(error, SocketError::Io(_)) => a.restart_expected,
            _ => None,
        };
        if let Some(wait) = restart {
            let next = self.restart_next(now, wait);
            return self.end_attempt(now, DisconnectReason::GatewayRestart, None, next);
        }
        let next = match policy::socket_failure(&error) {
            Verdict::Pause(reason, cause) => Next::Pause(reason, cause),
            Verdict::Busy { retry_after } => Next::Busy { retry_after },
            _ => Next::BACKOFF,
        };
        self.end_attempt(now, DisconnectReason::Failed(error), None, next);
    }

    /// The gateway announced a restart (a `shutdown` event, or close
    /// 1012). Reconnected at once, then retried quickly while it comes back
    /// — but only once per healthy stretch: a restart on a connection that
    /// has not proved stable, or within `stable_after` of the last quick
    /// one, is a failure like any other, so a gateway that admits and
    /// restarts in a loop meets the backoff (docs/protocol.md §5).
    fn restart_next(&mut self, now: Time, wait: Duration) -> Next {
        self.credit_stable_connection(now);
        let t = self.options.timeouts;
        let recent = self
            .last_quick_restart
            .is_some_and(|at| now < at + t.stable_after);
        if recent || self.backoff.failures() > 0 {
            return Next::BACKOFF;
        }
        self.last_quick_restart = Some(now);
        self.restart_retries_left = self.options.limits.restart_retries;
        let wait = wait.min(t.max_restart_wait);
        self.restart_window = Some(now + wait + t.max_restart_wait);
        Next::After(wait)
    }

    /// Flap damping: an admission forgets the failures before it only once
    /// it has stayed up for `stable_after`, so a gateway that admits and
    /// drops at once climbs the backoff like one that refuses
    /// (docs/protocol.md §5).
    fn credit_stable_connection(&mut self, now: Time) {
        if let Conn::Admitted(a) = &self.conn
            && a.admitted_at + self.options.timeouts.stable_after <= now
        {
            self.backoff.reset();
        }
    }

    /// Counts an unusable frame on the current attempt. A peer that keeps
    /// sending them is closed with 1008 and backed off, so garbage can
    /// neither flood the application with notifications nor hold the
    /// connection.
    pub(super) fn frame_rejected(&mut self, now: Time) {
        let limits = self.options.limits;
        if self.rejected_since + limits.rejected_window <= now {
            self.rejected = 0;
            self.rejected_since = now;
        }
        self.rejected += 1;
        if self.rejected > limits.rejected_frames && self.conn.attempt().is_some() {
            let why = format!(
                "{} unusable frames within {} ms",
                self.rejected,
                millis(limits.rejected_window)
            );
            self.end_attempt(
                now,
                DisconnectReason::ProtocolViolation(why),
                Some((1008, "too many invalid frames")),
                Next::BACKOFF,
            );
        }
    }

    /// Ends the current attempt: closes its socket if `close` is given,
    /// fails what depended on it, reports, and moves on to `next`.
    pub(super) fn end_attempt(
        &mut self,
        now: Time,
        reason: DisconnectReason,
        close: Option<(u16, &str)>,
        next: Next,
    ) {
        let Some(attempt) = self.conn.attempt() else {
            return;
        };
        let was_connected = matches!(self.conn, Conn::Admitted(_));
        self.credit_stable_connection(now);
        if let Some((code, why)) = close {
            self.out.push(Effect::CloseSocket {
                attempt,
                code,
                reason: why.to_owned(),
            });
        }
        self.invokes.connection_ended(attempt, &mut self.out);
        self.out.counters.disconnects += 1;
        self.last_error = Some(reason.clone());

        let (retry_in, pause) = match next {
            Next::Now => (Some(Duration::ZERO), None),
            Next::Busy { retry_after } => (
                Some(self.backoff.busy_delay(&mut self.rng, retry_after)),
                None,
            ),
            Next::Backoff { retry_after }
                if self.restart_window.is_some_and(|u| now < u)
                    && self.restart_retries_left > 0 =>
            {
                self.restart_retries_left -= 1;
                let r = millis(self.options.timeouts.restart_retry);
                let drawn = Duration::from_millis(self.rng.between(r, r.saturating_mul(2)));
                let raised = retry_after.map(|d| d.min(self.backoff.config().max_retry_after));
                (Some(drawn.max(raised.unwrap_or(Duration::ZERO))), None)
            }
            Next::Backoff { retry_after } => (
                Some(self.backoff.next_delay(&mut self.rng, retry_after)),
                None,
            ),
            Next::Slow => {
                let c = *self.backoff.config();
                let (lo, hi) = Backoff::bounds(&c, c.slow_after.saturating_add(1));
                let d = Duration::from_millis(self.rng.between(millis(lo), millis(hi)));
                (Some(d), None)
            }
            Next::After(d) => (Some(d), None),
            Next::Pause(reason, cause) => (None, Some((*reason, cause))),
            Next::Stop => (None, None),
        };
        self.out.notify(Notification::Disconnected {
            attempt,
            was_connected,
            reason,
            retry_in,
        });
        match (retry_in, pause) {
            (_, Some((reason, cause))) => {
                self.restart_window = None;
                self.out
                    .notify(Notification::Paused(Box::new(reason.clone())));
                self.conn = Conn::Paused {
                    reason: Box::new(reason),
                    cause,
                };
            }
            // Time has millisecond resolution: a shorter wait is no wait.
            (Some(d), None) if millis(d) == 0 => self.start_attempt(now),
            (Some(d), None) => self.conn = Conn::Waiting { until: now + d },
            (None, None) => self.conn = Conn::Stopped,
        }
    }
}
