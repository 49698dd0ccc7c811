//! The connection's phase: which socket is wanted, what it waits for, and
//! until when (docs/protocol.md §3, §5).

use alloc::boxed::Box;
use alloc::string::String;
use core::time::Duration;

use crate::input::AttemptId;
use crate::invokes::Link;
use crate::notification::PauseReason;
use crate::options::Timeouts;
use crate::policy::PauseCause;
use crate::status::Phase;
use crate::time::Time;
use crate::timer::{Deadline, TimerReason};

/// An admitted connection: what hello-ok granted and the liveness clocks.
#[derive(Clone, Debug)]
pub(crate) struct Admitted {
    pub attempt: AttemptId,
    /// When hello-ok arrived: the connection proves the gateway healthy
    /// once it has stayed up for `Timeouts::stable_after` since.
    pub admitted_at: Time,
    pub conn_id: String,
    /// `policy.maxPayload`: no frame sent may be larger.
    pub max_payload: usize,
    /// Twice the tick interval: silence this long closes with 4000.
    pub tick_timeout: Duration,
    pub last_tick: Time,
    /// When the next ping goes out: `ping_interval` after the gateway was
    /// last heard from (a frame or a pong), so a busy line carries none.
    pub next_ping: Time,
    /// Set when a ping goes out: by then a pong or any frame must arrive.
    pub pong_due: Option<Time>,
    pub last_seq: Option<u64>,
    /// Set by a `shutdown` event: how long the gateway said its restart
    /// takes, so the close that follows is a restart, not a failure.
    pub restart_expected: Option<Duration>,
}

impl Admitted {
    /// The gateway was heard from at `now` (a frame or a pong): no pong is
    /// owed, and the next ping waits for a quiet `ping_interval`.
    pub fn heard_from(&mut self, now: Time, t: &Timeouts) {
        self.pong_due = None;
        self.next_ping = now.deadline_after(t.ping_interval);
    }
}

/// The connection's phase. Each phase that waits carries its deadline.
#[derive(Clone, Debug)]
pub(crate) enum Conn {
    /// No config yet.
    Idle,
    /// Waiting to start the next attempt.
    Waiting { until: Time },
    /// The driver holds the open of `attempt` until a handshake slot is
    /// free (admission pacing); `deadline` bounds the wait.
    Queued { attempt: AttemptId, deadline: Time },
    /// The socket of `attempt` is being opened.
    Opening { attempt: AttemptId, deadline: Time },
    /// Open; waiting for `connect.challenge`.
    AwaitChallenge { attempt: AttemptId, deadline: Time },
    /// `connect` sent as `request_id`; waiting for hello-ok.
    AwaitHello {
        attempt: AttemptId,
        deadline: Time,
        request_id: String,
    },
    /// hello-ok received.
    Admitted(Box<Admitted>),
    /// A terminal failure; only a change of `cause` resumes.
    Paused {
        reason: Box<PauseReason>,
        cause: PauseCause,
    },
    /// The application stopped the session.
    Stopped,
}

impl Conn {
    /// The attempt whose socket is wanted, if any.
    pub fn attempt(&self) -> Option<AttemptId> {
        match self {
            Conn::Queued { attempt, .. }
            | Conn::Opening { attempt, .. }
            | Conn::AwaitChallenge { attempt, .. }
            | Conn::AwaitHello { attempt, .. } => Some(*attempt),
            Conn::Admitted(a) => Some(a.attempt),
            _ => None,
        }
    }

    /// The admitted connection, if any.
    pub fn link(&self) -> Option<Link> {
        match self {
            Conn::Admitted(a) => Some(Link {
                attempt: a.attempt,
                max_payload: a.max_payload,
            }),
            _ => None,
        }
    }

    pub fn phase(&self) -> Phase {
        match self {
            Conn::Idle => Phase::Idle,
            Conn::Waiting { .. } => Phase::Waiting,
            Conn::Queued { .. } | Conn::Opening { .. } => Phase::Connecting,
            Conn::AwaitChallenge { .. } | Conn::AwaitHello { .. } => Phase::Handshaking,
            Conn::Admitted(_) => Phase::Connected,
            Conn::Paused { .. } => Phase::Paused,
            Conn::Stopped => Phase::Stopped,
        }
    }

    /// The phase's own deadline. While admitted: the earliest of the
    /// watchdog, the pong deadline and the next ping, in that order on a
    /// tie (the order they are handled in).
    pub fn deadline(&self) -> Option<Deadline> {
        let (at, reason) = match self {
            Conn::Waiting { until } => (*until, TimerReason::Retry),
            Conn::Queued { deadline, .. } => (*deadline, TimerReason::Queue),
            Conn::Opening { deadline, .. } => (*deadline, TimerReason::Open),
            Conn::AwaitChallenge { deadline, .. } => (*deadline, TimerReason::Challenge),
            Conn::AwaitHello { deadline, .. } => (*deadline, TimerReason::Hello),
            Conn::Admitted(a) => {
                let mut due = (a.last_tick + a.tick_timeout, TimerReason::Tick);
                for (at, reason) in [
                    (a.pong_due, TimerReason::Pong),
                    (Some(a.next_ping), TimerReason::Ping),
                ] {
                    if let Some(at) = at
                        && at < due.0
                    {
                        due = (at, reason);
                    }
                }
                due
            }
            Conn::Idle | Conn::Paused { .. } | Conn::Stopped => return None,
        };
        Some(Deadline { at, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(last_tick: u64, next_ping: u64, pong_due: Option<u64>) -> Conn {
        Conn::Admitted(Box::new(Admitted {
            attempt: AttemptId(1),
            admitted_at: Time::ZERO,
            conn_id: String::new(),
            max_payload: 1 << 20,
            tick_timeout: Duration::from_millis(60_000),
            last_tick: Time::from_millis(last_tick),
            next_ping: Time::from_millis(next_ping),
            pong_due: pong_due.map(Time::from_millis),
            last_seq: None,
            restart_expected: None,
        }))
    }

    #[test]
    fn on_a_tie_the_watchdog_comes_first_then_the_pong_then_the_ping() {
        let at = |c: Conn| c.deadline().map(|d| (d.at.as_millis(), d.reason));
        assert_eq!(
            at(admitted(0, 60_000, Some(60_000))),
            Some((60_000, TimerReason::Tick))
        );
        assert_eq!(
            at(admitted(0, 15_000, Some(15_000))),
            Some((15_000, TimerReason::Pong))
        );
        assert_eq!(
            at(admitted(0, 15_000, Some(25_000))),
            Some((15_000, TimerReason::Ping))
        );
        assert_eq!(
            at(admitted(0, 70_000, None)),
            Some((60_000, TimerReason::Tick))
        );
    }
}
