//! Per-worker measurements: a latency histogram and counters per operation.
//!
//! Every worker records into its own [`Recorder`] (no sharing, no locks on
//! the request path); the runner merges them when the workers are done. Only
//! operations that start inside the measured window are recorded; warm-up
//! traffic only feeds the correctness ledger and the live progress line.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

/// An operation of the API that the workers perform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `POST /v2/queues/{q}/messages`.
    Post,
    /// `POST /v2/queues/{q}/claims`.
    Claim,
    /// `DELETE /v2/queues/{q}/messages/{id}?claim_id=`.
    Delete,
    /// `DELETE /v2/queues/{q}/messages?ids=&claim_ids=`.
    BulkDelete,
    /// `GET /v2/queues/{q}/messages`.
    List,
    /// `GET /v2/queues/{q}/stats`.
    Stats,
}

impl Op {
    /// Every operation, in report order.
    pub const ALL: [Op; 6] = [
        Op::Post,
        Op::Claim,
        Op::Delete,
        Op::BulkDelete,
        Op::List,
        Op::Stats,
    ];

    /// The operation's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Op::Post => "post",
            Op::Claim => "claim",
            Op::Delete => "delete",
            Op::BulkDelete => "bulk_delete",
            Op::List => "list",
            Op::Stats => "stats",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The status key under which a request without an HTTP answer is counted.
pub const TRANSPORT_ERROR: &str = "transport";

/// Measurements of one operation.
#[derive(Clone, Debug)]
pub struct OpRecord {
    /// Latency of every request, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Requests answered with the expected status.
    pub ok: u64,
    /// Messages moved by the successful requests (posted, claimed, deleted, listed).
    pub messages: u64,
    /// Failed requests by status code (or [`TRANSPORT_ERROR`]).
    pub errors: BTreeMap<String, u64>,
    /// Successful claims that returned no message (204).
    pub empty: u64,
}

impl OpRecord {
    fn new() -> Self {
        OpRecord {
            // 1 µs to 5 min at 3 significant figures: bounded, about 30 KiB.
            latency_us: Histogram::new_with_bounds(1, 300_000_000, 3)
                .expect("valid histogram bounds"),
            ok: 0,
            messages: 0,
            errors: BTreeMap::new(),
            empty: 0,
        }
    }

    /// Requests in all, failed ones included.
    pub fn requests(&self) -> u64 {
        self.ok + self.errors.values().sum::<u64>()
    }

    fn merge(&mut self, other: &OpRecord) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        self.ok += other.ok;
        self.messages += other.messages;
        self.empty += other.empty;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }
}

/// One worker's measurements of every operation.
#[derive(Clone, Debug)]
pub struct Recorder {
    ops: Vec<OpRecord>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            ops: Op::ALL.iter().map(|_| OpRecord::new()).collect(),
        }
    }
}

impl Recorder {
    /// Records a successful request that moved `messages` messages.
    pub fn ok(&mut self, op: Op, elapsed: Duration, messages: u64) {
        let r = &mut self.ops[op.index()];
        r.latency_us
            .saturating_record(elapsed.as_micros().max(1) as u64);
        r.ok += 1;
        r.messages += messages;
    }

    /// Records a successful claim that found no message.
    pub fn empty(&mut self, op: Op, elapsed: Duration) {
        self.ok(op, elapsed, 0);
        self.ops[op.index()].empty += 1;
    }

    /// Records a failed request under `status`.
    pub fn error(&mut self, op: Op, elapsed: Duration, status: &str) {
        let r = &mut self.ops[op.index()];
        r.latency_us
            .saturating_record(elapsed.as_micros().max(1) as u64);
        *r.errors.entry(status.to_owned()).or_default() += 1;
    }

    /// Adds another worker's measurements.
    pub fn merge(&mut self, other: &Recorder) {
        for (a, b) in self.ops.iter_mut().zip(&other.ops) {
            a.merge(b);
        }
    }

    /// The measurements of `op`.
    pub fn get(&self, op: Op) -> &OpRecord {
        &self.ops[op.index()]
    }
}

/// Live counters for the progress line, shared by every worker.
#[derive(Debug, Default)]
pub struct Progress {
    requests: [AtomicU64; 6],
    errors: AtomicU64,
    consumed: AtomicU64,
}

impl Progress {
    /// Counts one request of `op`.
    pub fn request(&self, op: Op, failed: bool) {
        self.requests[op.index()].fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts messages consumed (deleted under their claim).
    pub fn consumed(&self, n: u64) {
        self.consumed.fetch_add(n, Ordering::Relaxed);
    }

    /// Requests of every operation so far, in [`Op::ALL`] order.
    pub fn requests(&self) -> [u64; 6] {
        std::array::from_fn(|i| self.requests[i].load(Ordering::Relaxed))
    }

    /// Failed requests so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Messages consumed so far.
    pub fn consumed_total(&self) -> u64 {
        self.consumed.load(Ordering::Relaxed)
    }
}
