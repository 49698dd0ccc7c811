//! The plans this node prepared (docs/exec-host.md §11.2): an approval only
//! counts for a plan in this book, unchanged, once.
//!
//! `system.run.prepare` records each plan it answers with, under the
//! SHA-256 of its canonical form, together with what the node saw when it
//! made it ([`Binding`]): the working directory's identity and the programs
//! the plan runs. A `system.run` that claims an approval must carry one of
//! these plans; it is taken out of the book (a plan serves one run) and the
//! run checks the binding against what is there now. Run ids of approved
//! runs are remembered too: one runs once.
//!
//! The book is bounded in number ([`MAX_PLANS`]) and age ([`PLAN_TTL`]);
//! the oldest plan gives way first. A plan is small: its bytes were bounded
//! by the invoke's own size limit.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use super::resolve::FileId;

/// The most plans remembered at once.
pub const MAX_PLANS: usize = 256;
/// How long a plan waits for its run (an operator's answer included).
pub const PLAN_TTL: Duration = Duration::from_secs(30 * 60);
/// How many run ids of approved runs are remembered.
pub const MAX_RUN_IDS: usize = 4096;

/// A program a plan runs, as it was when the plan was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundProgram {
    /// Its real path.
    pub real: String,
    /// Its identity.
    pub id: FileId,
    /// Size, modification and change times: any write changes one.
    pub stamp: (u64, i64, i64, i64, i64),
    /// SHA-256 of its bytes (files up to the bound-file limit).
    pub sha256: Option<String>,
}

/// What the node saw when it made a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The working directory's identity.
    pub cwd: FileId,
    /// The programs, in the order the plan runs them.
    pub programs: Vec<BoundProgram>,
}

/// The plans this node prepared, and the run ids approved runs used.
#[derive(Debug, Default)]
pub struct PlanBook {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    plans: VecDeque<([u8; 32], Binding, Instant)>,
    run_ids: VecDeque<String>,
}

/// Why a claimed approval's plan is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unknown {
    /// No plan of this node has this form (never made, changed, expired
    /// or used already).
    Plan,
    /// An approved run with this run id ran already.
    RunId,
}

/// The digest a plan is remembered by: SHA-256 of its canonical bytes.
pub fn digest(canonical: &[u8]) -> [u8; 32] {
    Sha256::digest(canonical).into()
}

impl PlanBook {
    /// An empty book.
    pub fn new() -> Self {
        PlanBook::default()
    }

    /// Remembers a plan (a plan prepared again replaces the older one).
    pub fn remember(&self, digest: [u8; 32], binding: Binding, now: Instant) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.expire(now);
        inner.plans.retain(|(d, _, _)| *d != digest);
        if inner.plans.len() >= MAX_PLANS {
            inner.plans.pop_front();
        }
        inner.plans.push_back((digest, binding, now));
    }

    /// Takes the plan out for an approved run with `run_id`: it serves this
    /// run only, and the run id is spent.
    pub fn take(&self, digest: &[u8; 32], run_id: &str, now: Instant) -> Result<Binding, Unknown> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.expire(now);
        if inner.run_ids.iter().any(|r| r == run_id) {
            return Err(Unknown::RunId);
        }
        let at = inner
            .plans
            .iter()
            .position(|(d, _, _)| d == digest)
            .ok_or(Unknown::Plan)?;
        let (_, binding, _) = inner.plans.remove(at).ok_or(Unknown::Plan)?;
        if inner.run_ids.len() >= MAX_RUN_IDS {
            inner.run_ids.pop_front();
        }
        inner.run_ids.push_back(run_id.to_owned());
        Ok(binding)
    }

    /// How many plans are remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.plans.len()).unwrap_or(0)
    }

    /// Whether no plan is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn expire(&mut self, now: Instant) {
        while self
            .plans
            .front()
            .is_some_and(|(_, _, at)| now.saturating_duration_since(*at) > PLAN_TTL)
        {
            self.plans.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(ino: u64) -> Binding {
        Binding {
            cwd: FileId { dev: 1, ino },
            programs: Vec::new(),
        }
    }

    #[test]
    fn a_plan_serves_one_run_and_a_run_id_runs_once() {
        let book = PlanBook::new();
        let now = Instant::now();
        let d = digest(b"plan");
        assert_eq!(book.take(&d, "r1", now), Err(Unknown::Plan));
        book.remember(d, binding(7), now);
        assert!(!book.is_empty());
        assert_eq!(book.take(&d, "r1", now), Ok(binding(7)));
        assert_eq!(book.take(&d, "r2", now), Err(Unknown::Plan), "used");
        book.remember(d, binding(8), now);
        assert_eq!(book.take(&d, "r1", now), Err(Unknown::RunId));
        assert_eq!(book.take(&d, "r2", now), Ok(binding(8)));
        // Every run id is remembered, not only the last.
        book.remember(d, binding(9), now);
        assert_eq!(book.take(&d, "r1", now), Err(Unknown::RunId));
        assert_eq!(book.take(&d, "r2", now), Err(Unknown::RunId));
    }

    #[test]
    fn the_book_is_bounded_in_number_and_age() {
        let book = PlanBook::new();
        let now = Instant::now();
        for i in 0..(MAX_PLANS as u64 + 10) {
            book.remember(digest(&i.to_le_bytes()), binding(i), now);
        }
        assert_eq!(book.len(), MAX_PLANS);
        assert_eq!(
            book.take(&digest(&0u64.to_le_bytes()), "a", now),
            Err(Unknown::Plan),
            "the oldest went first"
        );
        // Up to its age a plan waits (an operator may take minutes).
        let young = digest(&(MAX_PLANS as u64 + 8).to_le_bytes());
        assert!(book.take(&young, "y", now + PLAN_TTL).is_ok());
        assert!(PLAN_TTL >= Duration::from_secs(15 * 60));
        let last = digest(&(MAX_PLANS as u64 + 9).to_le_bytes());
        let late = now + PLAN_TTL + Duration::from_secs(1);
        assert_eq!(book.take(&last, "b", late), Err(Unknown::Plan), "expired");
        assert!(book.is_empty());
    }
}
