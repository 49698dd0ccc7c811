//! The session's next deadline, with the reason it is due.
//!
//! [`NodeState::poll_deadline`](crate::NodeState::poll_deadline) derives it
//! from the state on every call, so nothing ever needs cancelling; the reason
//! is there for traces and debugging, never for the driver's decisions: at
//! the deadline the driver calls `handle_timeout` whatever the reason.

use core::fmt;

use crate::time::Time;

/// What the session is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimerReason {
    /// The socket must open (TCP, TLS, WebSocket upgrade) by then.
    Open,
    /// A queued attempt must get a handshake slot by then.
    Queue,
    /// `connect.challenge` must arrive by then.
    Challenge,
    /// hello-ok must arrive by then.
    Hello,
    /// The watchdog: a tick must arrive by then, or the socket closes with
    /// 4000.
    Tick,
    /// The next outbound WebSocket ping.
    Ping,
    /// A pong (or any frame) must follow the last ping by then, or the
    /// socket closes with 4000.
    Pong,
    /// The next connection attempt.
    Retry,
    /// An invoke's deadline: the core answers `TIMEOUT` in the
    /// application's stead.
    InvokeExpiry,
    /// An application request's deadline.
    RequestExpiry,
}

impl TimerReason {
    /// A short lowercase name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TimerReason::Open => "open",
            TimerReason::Queue => "queue",
            TimerReason::Challenge => "challenge",
            TimerReason::Hello => "hello",
            TimerReason::Tick => "tick",
            TimerReason::Ping => "ping",
            TimerReason::Pong => "pong",
            TimerReason::Retry => "retry",
            TimerReason::InvokeExpiry => "invoke expiry",
            TimerReason::RequestExpiry => "request expiry",
        }
    }
}

impl fmt::Display for TimerReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When [`NodeState::handle_timeout`](crate::NodeState::handle_timeout) is
/// next due, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Deadline {
    /// When.
    pub at: Time,
    /// Why. When several deadlines fall on the same instant, the first of
    /// connection phase, invoke expiry and request expiry, in that order.
    pub reason: TimerReason,
}

impl Deadline {
    /// The earlier of two optional deadlines; on a tie, `a`.
    pub(crate) fn earliest(a: Option<Deadline>, b: Option<Deadline>) -> Option<Deadline> {
        match (a, b) {
            (Some(x), Some(y)) => Some(if y.at < x.at { y } else { x }),
            (x, None) => x,
            (None, y) => y,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn earliest_prefers_the_first_on_a_tie() {
        let at = |ms, reason| {
            Some(Deadline {
                at: Time::from_millis(ms),
                reason,
            })
        };
        let tick = at(5, TimerReason::Tick);
        let invoke = at(5, TimerReason::InvokeExpiry);
        assert_eq!(Deadline::earliest(tick, invoke), tick);
        assert_eq!(
            Deadline::earliest(invoke, at(4, TimerReason::Retry)),
            at(4, TimerReason::Retry)
        );
        assert_eq!(Deadline::earliest(None, invoke), invoke);
        assert_eq!(Deadline::earliest(None, None), None);
        assert_eq!(TimerReason::InvokeExpiry.to_string(), "invoke expiry");
    }
}
