//! Limits on the logs a peer can cause at will: how many lines per window,
//! and how much of a peer-chosen text goes into one.

use std::time::{Duration, Instant};

/// At most this many characters of a peer-chosen text (a rejected frame's
/// description, which can quote a method or event name of any length up to
/// `maxPayload`, docs/protocol.md §2) go into one log line.
const MAX_LOGGED_CHARS: usize = 200;

/// `text`, cut to [`MAX_LOGGED_CHARS`] characters (marked with `…`).
pub(super) fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(MAX_LOGGED_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]).into(),
        None => text.into(),
    }
}

/// How many logs of one kind may be written per [`LOG_WINDOW`].
const LOGS_PER_WINDOW: u32 = 10;
/// The window [`LOGS_PER_WINDOW`] is counted over.
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// The limiters of the warnings a peer can cause at will: unusable frames,
/// `seq` gaps and refused invokes.
///
/// Unusable frames are reported and ignored (docs/protocol.md §2); the core
/// closes a connection that keeps sending them (more than 16 per 10 s), but
/// it reconnects, and gaps and refused invokes come in well-formed frames:
/// without a limit a hostile or broken gateway would turn each of its
/// frames into a line on stderr, filling the disk behind a log collector or
/// blocking the host on a full stderr pipe.
pub(super) struct PeerLogLimits {
    pub frame_rejected: LogLimit,
    pub seq_gap: LogLimit,
    pub invoke_refused: LogLimit,
    pub invoke_dropped: LogLimit,
}

impl Default for PeerLogLimits {
    fn default() -> Self {
        PeerLogLimits {
            frame_rejected: LogLimit::new("frame rejected", LOGS_PER_WINDOW, LOG_WINDOW),
            seq_gap: LogLimit::new("event sequence gap", LOGS_PER_WINDOW, LOG_WINDOW),
            invoke_refused: LogLimit::new("invoke refused", LOGS_PER_WINDOW, LOG_WINDOW),
            invoke_dropped: LogLimit::new(
                "invoke answer not delivered",
                LOGS_PER_WINDOW,
                LOG_WINDOW,
            ),
        }
    }
}

impl PeerLogLimits {
    /// Logs what is still suppressed (the session is ending).
    pub fn flush(&mut self) {
        for l in [
            &mut self.frame_rejected,
            &mut self.seq_gap,
            &mut self.invoke_refused,
            &mut self.invoke_dropped,
        ] {
            l.flush();
        }
    }
}

/// A fixed-window log limiter: at most `max` logs per `window`, and one
/// "suppressed M" line for the rest, written when the next window opens
/// with a log allowed (or at [`flush`](Self::flush)). Counting the
/// suppressed keeps the volume visible without the lines themselves.
pub(super) struct LogLimit {
    what: &'static str,
    max: u32,
    window: Duration,
    started: Option<Instant>,
    allowed: u32,
    suppressed: u64,
}

impl LogLimit {
    fn new(what: &'static str, max: u32, window: Duration) -> Self {
        LogLimit {
            what,
            max,
            window,
            started: None,
            allowed: 0,
            suppressed: 0,
        }
    }

    /// Whether one more log may be written at `now`; when a new window
    /// opens, first logs how many were suppressed in the ones before.
    pub fn allow(&mut self, now: Instant) -> bool {
        let (allow, suppressed) = self.check(now);
        if let Some(n) = suppressed {
            tracing::warn!(
                what = self.what,
                suppressed = n,
                window_s = self.window.as_secs(),
                "logs suppressed"
            );
        }
        allow
    }

    /// [`allow`](Self::allow) without logging: whether this log may be
    /// written, and the suppressed count to report first, if any.
    fn check(&mut self, now: Instant) -> (bool, Option<u64>) {
        let expired = self
            .started
            .is_none_or(|s| now.saturating_duration_since(s) >= self.window);
        if expired {
            self.started = Some(now);
            self.allowed = 0;
        }
        if self.allowed < self.max {
            self.allowed += 1;
            let suppressed = std::mem::take(&mut self.suppressed);
            (true, (suppressed > 0).then_some(suppressed))
        } else {
            self.suppressed += 1;
            (false, None)
        }
    }

    /// Logs the suppressed count, if any.
    fn flush(&mut self) {
        let n = std::mem::take(&mut self.suppressed);
        if n > 0 {
            tracing::warn!(what = self.what, suppressed = n, "logs suppressed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_limit_allows_a_burst_per_window_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut l = LogLimit::new("x", 3, Duration::from_secs(10));
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // A flood within one window: 3 logs, the rest counted.
        let mut allowed = 0;
        for i in 0..1000 {
            let (ok, suppressed) = l.check(at(i));
            assert_eq!(suppressed, None);
            allowed += u32::from(ok);
        }
        assert_eq!(allowed, 3);
        // Still the same window: still suppressed.
        assert_eq!(l.check(at(9_999)), (false, None));
        // The next window opens: the first log carries the count.
        assert_eq!(l.check(at(10_000)), (true, Some(998)));
        assert_eq!(l.check(at(10_001)), (true, None));
        assert_eq!(l.check(at(10_002)), (true, None));
        assert_eq!(l.check(at(10_003)), (false, None));
        // A quiet spell: nothing carried over but the count.
        assert_eq!(l.check(at(60_000)), (true, Some(1)));
        assert_eq!(l.suppressed, 0);
    }

    #[test]
    fn peer_texts_are_clipped_in_logs() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(5 * MAX_LOGGED_CHARS);
        let clipped = clip(&long);
        assert_eq!(clipped.chars().count(), MAX_LOGGED_CHARS + 1);
        assert!(clipped.ends_with('…'));
    }
}
