//! Reconnect delays: exponential with seeded jitter, widening to a slow band.

use core::time::Duration;

use rand_core::{RngCore as _, SeedableRng as _};
use rand_pcg::Pcg64Mcg;

/// The seeded generator the core draws jitter from. Same seed, same draws.
#[derive(Clone, Debug)]
pub struct Rng(Pcg64Mcg);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(Pcg64Mcg::seed_from_u64(seed))
    }

    /// A uniform draw from `lo..=hi` milliseconds.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        // `hi - lo + 1` overflows for the full range, where every draw is
        // in range anyway.
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.0.next_u64() % span,
            None => self.0.next_u64(),
        }
    }
}

/// Backoff parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The delay after the first failure, before jitter.
    pub initial: Duration,
    /// The largest delay in the fast band.
    pub cap: Duration,
    /// After this many consecutive failures, delays come from the slow band.
    pub slow_after: u32,
    /// The slow band's lower bound.
    pub slow_min: Duration,
    /// The slow band's upper bound.
    pub slow_max: Duration,
    /// The longest `retryAfterMs` honoured; a larger one is clamped.
    pub max_retry_after: Duration,
}

impl Default for BackoffConfig {
    /// 1 s doubling to 30 s, each delay jittered down by up to half; after 8
    /// consecutive failures (about two minutes) uniform 30–60 s.
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_secs(1),
            cap: Duration::from_secs(30),
            slow_after: 8,
            slow_min: Duration::from_secs(30),
            slow_max: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

/// A pure backoff: the delay is a function of the failure count and the
/// generator's next draw.
#[derive(Clone, Debug)]
pub struct Backoff {
    config: BackoffConfig,
    failures: u32,
    /// Consecutive "gateway busy" refusals since the last admission: a
    /// streak of its own, so that busy never counts as a failure.
    busy: u32,
}

impl Backoff {
    /// A backoff with no failures yet.
    pub fn new(config: BackoffConfig) -> Self {
        Backoff {
            config,
            failures: 0,
            busy: 0,
        }
    }

    /// The parameters.
    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }

    /// Consecutive failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Consecutive busy refusals since the last admission or reset.
    #[cfg(any(test, feature = "sim"))]
    pub fn busy(&self) -> u32 {
        self.busy
    }

    /// Forgets the failures and the busy streak (a stable connection, new
    /// inputs).
    pub fn reset(&mut self) {
        self.failures = 0;
        self.busy = 0;
    }

    /// Ends the busy streak: the gateway admitted the session.
    pub fn admitted(&mut self) {
        self.busy = 0;
    }

    /// The bounds `(lo, hi)` the delay after `failures` consecutive failures
    /// (counting the one just recorded, so at least 1) is drawn from.
    pub fn bounds(config: &BackoffConfig, failures: u32) -> (Duration, Duration) {
        if failures.max(1) > config.slow_after {
            return (config.slow_min, config.slow_max.max(config.slow_min));
        }
        Backoff::fast_bounds(config, failures)
    }

    /// The fast band's bounds for step `n` (at least 1): `[full/2, full]`
    /// with `full = min(initial × 2^(n-1), cap)`.
    fn fast_bounds(config: &BackoffConfig, n: u32) -> (Duration, Duration) {
        let shift = (n.max(1) - 1).min(31);
        let full = config
            .initial
            .checked_mul(1u32 << shift)
            .unwrap_or(config.cap)
            .min(config.cap);
        (full / 2, full)
    }

    /// Records one more failure and draws the delay before the next attempt.
    /// `retry_after` from the gateway raises the delay (clamped to
    /// `max_retry_after`), never lowers it.
    pub fn next_delay(&mut self, rng: &mut Rng, retry_after: Option<Duration>) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let bounds = Backoff::bounds(&self.config, self.failures);
        self.draw(rng, bounds, retry_after)
    }

    /// Records one more busy refusal and draws the delay before the next
    /// attempt: the fast band's bounds for the busy streak, never the slow
    /// band, at least `retry_after` (clamped). The failure count is left
    /// alone, so a busy gateway delays a session without aging it.
    pub fn busy_delay(&mut self, rng: &mut Rng, retry_after: Option<Duration>) -> Duration {
        self.busy = self.busy.saturating_add(1);
        let bounds = Backoff::busy_bounds(&self.config, self.busy);
        self.draw(rng, bounds, retry_after)
    }

    /// The bounds the delay after `busy` consecutive busy refusals is
    /// drawn from: the fast band's, whatever `slow_after` is.
    pub fn busy_bounds(config: &BackoffConfig, busy: u32) -> (Duration, Duration) {
        Backoff::fast_bounds(config, busy)
    }

    /// A uniform draw from `(lo, hi)`, raised to `retry_after` clamped to
    /// `max_retry_after`.
    fn draw(
        &self,
        rng: &mut Rng,
        (lo, hi): (Duration, Duration),
        retry_after: Option<Duration>,
    ) -> Duration {
        let drawn = Duration::from_millis(rng.between(millis(lo), millis(hi)));
        match retry_after {
            Some(r) => drawn.max(r.min(self.config.max_retry_after)),
            None => drawn,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_to_the_cap_then_widen() {
        let c = BackoffConfig::default();
        assert_eq!(
            Backoff::bounds(&c, 1),
            (Duration::from_millis(500), Duration::from_secs(1))
        );
        assert_eq!(Backoff::bounds(&c, 6).1, Duration::from_secs(30));
        assert_eq!(Backoff::bounds(&c, 8).1, Duration::from_secs(30));
        assert_eq!(
            Backoff::bounds(&c, 9),
            (Duration::from_secs(30), Duration::from_secs(60))
        );
        assert_eq!(Backoff::bounds(&c, u32::MAX).1, Duration::from_secs(60));
    }

    #[test]
    fn draws_stay_in_bounds_and_are_seeded() {
        let c = BackoffConfig::default();
        let mut a = (Backoff::new(c), Rng::new(7));
        let mut b = (Backoff::new(c), Rng::new(7));
        for _ in 0..40 {
            let da = a.0.next_delay(&mut a.1, None);
            let db = b.0.next_delay(&mut b.1, None);
            assert_eq!(da, db);
            let (lo, hi) = Backoff::bounds(&c, a.0.failures());
            assert!(lo <= da && da <= hi);
        }
    }

    #[test]
    fn between_draws_every_value_of_its_span_and_nothing_else() {
        let mut r = Rng::new(3);
        for (lo, hi) in [(0u64, 2u64), (5, 9), (1000, 1001)] {
            let mut seen = alloc::collections::BTreeSet::new();
            for _ in 0..2000 {
                seen.insert(r.between(lo, hi));
            }
            assert_eq!(seen, (lo..=hi).collect(), "{lo}..={hi}");
        }
        assert_eq!(r.between(5, 5), 5);
        assert_eq!(r.between(9, 3), 9, "an empty span gives lo");
        // The widest span draws without overflowing.
        let _ = r.between(0, u64::MAX);
    }

    #[test]
    fn busy_grows_its_own_streak_within_the_fast_band_and_leaves_failures_alone() {
        let c = BackoffConfig::default();
        let mut b = Backoff::new(c);
        let mut r = Rng::new(5);
        for n in 1..=20u32 {
            let d = b.busy_delay(&mut r, None);
            let (lo, hi) = Backoff::busy_bounds(&c, n);
            assert!(lo <= d && d <= hi, "{n}: {d:?}");
            assert!(d <= c.cap, "never the slow band");
        }
        assert_eq!((b.failures(), b.busy()), (0, 20));
        assert_eq!(
            b.busy_delay(&mut r, Some(Duration::from_secs(100_000))),
            c.max_retry_after
        );
        // Busy never reaches the slow band, even when it starts at once.
        let eager = BackoffConfig { slow_after: 0, ..c };
        assert!(Backoff::busy_bounds(&eager, 3).1 <= eager.cap);
        b.admitted();
        assert_eq!(b.busy(), 0);
        let d = b.busy_delay(&mut r, None);
        assert!(d <= c.initial, "a new streak starts low: {d:?}");
    }

    #[test]
    fn retry_after_raises_but_is_clamped() {
        let c = BackoffConfig::default();
        let mut b = Backoff::new(c);
        let mut r = Rng::new(1);
        assert_eq!(
            b.next_delay(&mut r, Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        assert_eq!(
            b.next_delay(&mut r, Some(Duration::from_secs(100_000))),
            c.max_retry_after
        );
    }
}
