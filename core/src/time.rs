//! The core's notion of time.
//!
//! The core never reads a clock. Every input carries a [`Time`]: milliseconds
//! on a monotonic clock of the caller's choosing, counted from an arbitrary
//! origin (a driver typically uses the milliseconds elapsed since it started).
//! `std::time::Instant` cannot be used because the crate is `no_std` and
//! because an opaque instant cannot be built by a simulation or a fuzzer.

use core::fmt;
use core::ops::{Add, Sub};
use core::time::Duration;

/// A point in time: milliseconds since an origin chosen by the caller.
///
/// Only differences between two `Time`s are meaningful; the core never turns
/// one into a wall-clock date.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(u64);

impl Time {
    /// The origin.
    pub const ZERO: Time = Time(0);

    /// A time `ms` milliseconds after the origin.
    pub const fn from_millis(ms: u64) -> Self {
        Time(ms)
    }

    /// Milliseconds since the origin.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The time elapsed since `earlier`, zero when `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// The deadline `d` after `self`, and never `self` itself: a zero
    /// timeout would leave a deadline at `now` behind after
    /// `handle_timeout(now)`, and the driver would spin on it.
    pub(crate) fn deadline_after(self, d: Duration) -> Time {
        self + d.max(MIN_STEP)
    }
}

/// The resolution of [`Time`]: the shortest wait there is.
pub(crate) const MIN_STEP: Duration = Duration::from_millis(1);

/// Whole milliseconds of `d`, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, rhs: Duration) -> Time {
        let ms = u64::try_from(rhs.as_millis()).unwrap_or(u64::MAX);
        Time(self.0.saturating_add(ms))
    }
}

impl Sub<Time> for Time {
    type Output = Duration;
    fn sub(self, rhs: Time) -> Duration {
        self.saturating_since(rhs)
    }
}

impl fmt::Debug for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{}ms", self.0)
    }
}
