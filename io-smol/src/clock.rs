//! The drivers' monotonic clock: [`Clock`] turns `std::time::Instant`s into
//! the core's [`Time`] and back.
//!
//! It lives here, in the runtime-neutral layer every driver uses, and not
//! in the core: the session machine never reads a clock. A driver reads
//! this one once per step and passes the [`Time`] in, which is what keeps
//! the core deterministic.

#[cfg(feature = "smol")]
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clawnode_core::Time;

/// A monotonic clock whose origin is the moment it was made.
///
/// Conversions saturate instead of wrapping: an `Instant` before the origin
/// is `Time::ZERO`, and one more than 584 million years after it is the
/// largest `Time`.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock starting at `Time::ZERO` now.
    pub fn new() -> Self {
        Clock {
            origin: Instant::now(),
        }
    }

    /// One clock for the whole process, started on first use: for times
    /// that sessions share or hand between tasks (the driver's ping grid,
    /// the sockets' ping and pong stamps) as one word, with no clock beside
    /// each.
    #[cfg(feature = "smol")]
    pub(crate) fn process() -> Clock {
        static PROCESS: OnceLock<Clock> = OnceLock::new();
        *PROCESS.get_or_init(Clock::new)
    }

    /// The current time.
    pub fn now(&self) -> Time {
        self.time_of(Instant::now())
    }

    /// The [`Time`] of `instant`.
    pub fn time_of(&self, instant: Instant) -> Time {
        let ms = instant.saturating_duration_since(self.origin).as_millis();
        Time::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// The `Instant` of `time`, for a runtime's timer (e.g. to sleep until
    /// [`NodeState::poll_timeout`](clawnode_core::NodeState::poll_timeout)). A time
    /// too far ahead for the platform's `Instant` is capped at a century,
    /// or a day, from the origin.
    pub fn instant_of(&self, time: Time) -> Instant {
        const DAY: Duration = Duration::from_secs(24 * 3600);
        let d = Duration::from_millis(time.as_millis()).min(DAY * 36_525);
        [d, DAY]
            .into_iter()
            .find_map(|d| self.origin.checked_add(d))
            .unwrap_or(self.origin)
    }

    /// How long from now until `time`; zero when it has passed.
    pub fn until(&self, time: Time) -> Duration {
        time.saturating_since(self.now())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_and_times_round_trip_at_millisecond_resolution() {
        let clock = Clock::new();
        let later = clock.origin + Duration::from_millis(1234);
        assert_eq!(clock.time_of(later), Time::from_millis(1234));
        assert_eq!(clock.instant_of(Time::from_millis(1234)), later);
        assert_eq!(clock.time_of(clock.origin), Time::ZERO);
    }

    #[test]
    fn conversions_saturate() {
        let clock = Clock {
            origin: Instant::now() + Duration::from_secs(60),
        };
        assert_eq!(clock.now(), Time::ZERO, "before the origin");
        let far = clock.instant_of(Time::from_millis(u64::MAX));
        assert!(far > clock.origin);
        assert_eq!(clock.until(Time::ZERO), Duration::ZERO);
    }
}
