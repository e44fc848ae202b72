//! The correctness ledger: what the workers saw, checked on the side.
//!
//! Two properties of a message queue are checked while the load runs:
//!
//! * **No message is returned by two live claims.** Each claimed id is
//!   remembered with its claim and the instant that claim surely outlives
//!   (the claim request's start plus its TTL: the server created the claim
//!   after that start, so it expires later). A second claim that returns the
//!   id before that instant overlaps the first: a double delivery.
//! * **Nothing lost, nothing duplicated.** Every message that a worker
//!   deleted under its claim is counted once; an id consumed twice is a
//!   duplicate. At the end the runner checks
//!   `before + posted = consumed + left` against the queues' stats.
//!
//! The ledger is one map behind a std mutex held for a few map operations,
//! never across an await.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Entry {
    claim_id: String,
    live_until: Instant,
    consumed: bool,
}

/// Claims and deletions seen by every worker (warm-up included).
#[derive(Debug, Default)]
pub struct Ledger {
    entries: Mutex<HashMap<String, Entry>>,
    posted: AtomicU64,
    consumed: AtomicU64,
    double_claims: AtomicU64,
    double_consumes: AtomicU64,
    uncertain: AtomicU64,
}

/// What the ledger found, at the end of a run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LedgerSummary {
    /// Messages acknowledged as posted (ids in 201 answers).
    pub posted: u64,
    /// Messages deleted under their claim (204 answers).
    pub consumed: u64,
    /// Messages returned by a claim while another live claim held them.
    pub double_claims: u64,
    /// Messages deleted under a claim twice.
    pub double_consumes: u64,
    /// Posts and deletes that got no answer, or a 5xx (they may or may
    /// not have happened, so the balance may be off by their messages).
    pub uncertain_requests: u64,
}

impl Ledger {
    /// Counts messages acknowledged as posted.
    pub fn posted(&self, n: u64) {
        self.posted.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a post or delete that got no answer.
    pub fn uncertain(&self) {
        self.uncertain.fetch_add(1, Ordering::Relaxed);
    }

    /// Records that the claim `claim_id`, requested at `started` with
    /// `ttl`, returned `ids`; returns how many of them another live claim
    /// held (or that were already consumed).
    pub fn claimed<'a>(
        &self,
        claim_id: &str,
        started: Instant,
        ttl: Duration,
        answered: Instant,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> u64 {
        let live_until = started + ttl;
        let mut doubles = 0;
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            match entries.get_mut(id) {
                Some(e) => {
                    if e.consumed || (e.claim_id != claim_id && e.live_until > answered) {
                        doubles += 1;
                    }
                    e.claim_id = claim_id.to_owned();
                    e.live_until = live_until;
                }
                None => {
                    entries.insert(
                        id.to_owned(),
                        Entry {
                            claim_id: claim_id.to_owned(),
                            live_until,
                            consumed: false,
                        },
                    );
                }
            }
        }
        drop(entries);
        if doubles > 0 {
            self.double_claims.fetch_add(doubles, Ordering::Relaxed);
        }
        doubles
    }

    /// Records that `ids` were deleted under their claim.
    pub fn consumed<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut n = 0;
        let mut doubles = 0;
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            n += 1;
            match entries.get_mut(id) {
                Some(e) if e.consumed => doubles += 1,
                Some(e) => e.consumed = true,
                None => {}
            }
        }
        drop(entries);
        self.consumed.fetch_add(n, Ordering::Relaxed);
        if doubles > 0 {
            self.double_consumes.fetch_add(doubles, Ordering::Relaxed);
        }
    }

    /// The counts so far.
    pub fn summary(&self) -> LedgerSummary {
        LedgerSummary {
            posted: self.posted.load(Ordering::Relaxed),
            consumed: self.consumed.load(Ordering::Relaxed),
            double_claims: self.double_claims.load(Ordering::Relaxed),
            double_consumes: self.double_consumes.load(Ordering::Relaxed),
            uncertain_requests: self.uncertain.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_claims_are_counted() {
        let ledger = Ledger::default();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        assert_eq!(ledger.claimed("c1", t0, ttl, t0, ["a", "b"]), 0);
        // Same message under another claim while c1 lives: a double.
        assert_eq!(
            ledger.claimed("c2", t0, ttl, t0 + Duration::from_secs(1), ["b"]),
            1
        );
        // After c2 (the holder now) has surely expired: fine.
        assert_eq!(
            ledger.claimed("c3", t0, ttl, t0 + Duration::from_secs(61), ["b"]),
            0
        );
        ledger.consumed(["a"]);
        ledger.consumed(["a"]);
        // A consumed message must not come back.
        assert_eq!(
            ledger.claimed("c4", t0, ttl, t0 + Duration::from_secs(200), ["a"]),
            1
        );
        let s = ledger.summary();
        assert_eq!((s.consumed, s.double_claims, s.double_consumes), (2, 2, 1));
    }
}
