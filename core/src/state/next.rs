//! [`Next`]: what the session does once an attempt has ended, as the
//! phases decide it and `end_attempt` carries it out.

use alloc::boxed::Box;
use core::time::Duration;

use crate::notification::PauseReason;
use crate::policy::PauseCause;

/// What to do once an attempt has ended.
pub(super) enum Next {
    /// Start a new attempt at once.
    Now,
    /// Wait for the backoff (recording one more failure).
    Backoff { retry_after: Option<Duration> },
    /// Wait from the slow band.
    Slow,
    /// The gateway is busy: wait on the busy streak (not a failure).
    Busy { retry_after: Option<Duration> },
    /// Wait exactly this long, not counted as a failure.
    After(Duration),
    /// Pause.
    Pause(Box<PauseReason>, PauseCause),
    /// Stop.
    Stop,
}

impl Next {
    pub(super) const BACKOFF: Next = Next::Backoff { retry_after: None };
}
