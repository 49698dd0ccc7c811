//! [`Recent`]: strings remembered for a bounded time and count.
//!
//! The session remembers the ids and idempotency keys of invokes that
//! finished, so that a gateway (or a proxy) repeating one never makes the
//! application run it twice (docs/protocol.md §6). A peer chooses these
//! strings, so both the time and the count are bounded.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use core::time::Duration;

use crate::time::Time;

#[derive(Clone, Debug, Default)]
pub(crate) struct Recent {
    /// Each string with the time it is forgotten.
    until: BTreeMap<String, Time>,
    /// The same strings, oldest first (time never goes backwards, so this
    /// is also expiry order).
    order: VecDeque<String>,
}

impl Recent {
    /// Hashes what is remembered at `now` (feature `sim`).
    #[cfg(feature = "sim")]
    pub fn fingerprint(&self, h: &mut impl core::hash::Hasher, now: Time) {
        use core::hash::Hash as _;
        for (s, t) in &self.until {
            if now < *t {
                (s, t.saturating_since(now)).hash(h);
            }
        }
    }

    /// Whether `s` is remembered at `now`.
    pub fn contains(&self, s: &str, now: Time) -> bool {
        self.until.get(s).is_some_and(|t| now < *t)
    }

    /// Remembers `s` for `keep`, forgetting what expired and, beyond
    /// `max`, the oldest.
    pub fn insert(&mut self, s: String, now: Time, keep: Duration, max: usize) {
        while let Some(oldest) = self.order.front() {
            let expired = self.until.get(oldest).is_none_or(|t| *t <= now);
            if !expired && self.order.len() < max {
                break;
            }
            if let Some(oldest) = self.order.pop_front() {
                self.until.remove(&oldest);
            }
        }
        if max == 0 {
            return;
        }
        if self.until.insert(s.clone(), now + keep).is_none() {
            self.order.push_back(s);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.until.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn remembers_for_a_bounded_time_and_count() {
        let mut r = Recent::default();
        let t = Time::from_millis;
        let keep = Duration::from_secs(10);
        r.insert("a".into(), t(0), keep, 3);
        assert!(r.contains("a", t(9_999)));
        assert!(!r.contains("a", t(10_000)));
        for i in 0..10 {
            r.insert(format!("k{i}"), t(1), keep, 3);
        }
        assert_eq!(r.len(), 3);
        assert!(r.contains("k9", t(2)) && !r.contains("k6", t(2)));
        r.insert("late".into(), t(20_000), keep, 3);
        assert_eq!(r.len(), 1, "expired entries go first");
        r.insert("late".into(), t(20_001), keep, 3);
        assert_eq!(r.len(), 1, "a repeat is one entry");
        let mut none = Recent::default();
        none.insert("x".into(), t(0), keep, 0);
        assert_eq!(none.len(), 0);
    }
}
