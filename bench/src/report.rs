//! The report of a run: per-operation throughput and latency, the end-to-end
//! rate, the correctness checks and the bench's own CPU use; rendered as a
//! table for people ([`Report::table`]) or JSON for scripts (`serde`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::ledger::LedgerSummary;
use super::recorder::{Op, Recorder};
use super::BenchConfig;

/// Latency percentiles of one operation, in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest request.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// The measurements of one operation over the measured window.
#[derive(Clone, Debug, Serialize)]
pub struct OpReport {
    /// Operation name (`post`, `claim`, `delete`, `bulk_delete`, `list`, `stats`).
    pub op: &'static str,
    /// Requests started in the window (failed ones included).
    pub requests: u64,
    /// Requests per second.
    pub requests_per_s: f64,
    /// Messages moved by successful requests.
    pub messages: u64,
    /// Messages per second.
    pub messages_per_s: f64,
    /// Latency of all the requests.
    pub latency_ms: Latency,
    /// Failed requests by status (`transport` for no answer).
    pub errors: BTreeMap<String, u64>,
    /// Claims that found no message.
    pub empty: u64,
}

/// The conservation check: `before + posted = consumed + after`.
#[derive(Clone, Debug, Serialize)]
pub struct Balance {
    /// Messages in the queues before the run.
    pub before: u64,
    /// Messages in the queues after the run (`None` when stats failed).
    pub after: Option<u64>,
    /// `before + posted - consumed - after` (0 when nothing was lost or duplicated).
    pub difference: Option<i64>,
}

/// CPU used by the bench itself while the workers ran.
#[derive(Clone, Debug, Serialize)]
pub struct BenchCpu {
    /// User CPU seconds.
    pub user_s: f64,
    /// System CPU seconds.
    pub system_s: f64,
    /// (user + system) / wall time, in percent of one core.
    pub percent_of_one_core: f64,
}

/// Everything a run measured and checked.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The settings.
    pub config: BenchConfig,
    /// Per operation, only those that ran.
    pub ops: Vec<OpReport>,
    /// End to end: messages consumed (claimed, then deleted) per second.
    pub consumed_per_s: f64,
    /// Ledger counts over the whole run, warm-up included.
    pub ledger: LedgerSummary,
    /// The conservation check.
    pub balance: Balance,
    /// The bench's own CPU.
    pub bench_cpu: BenchCpu,
    /// Worker tasks that panicked (a bench bug; 0 expected).
    pub panicked_workers: usize,
    /// Connections the workers opened (one per worker when the server
    /// keeps them alive).
    pub connections: u64,
    /// No double claim, no double consumption, and the balance holds (or
    /// is off by no more than the unanswered requests could explain).
    pub correct: bool,
}

/// What [`Report::build`] needs.
pub struct Inputs<'a> {
    /// The settings.
    pub config: &'a BenchConfig,
    /// The merged measurements.
    pub recorder: &'a Recorder,
    /// The ledger's counts.
    pub ledger: LedgerSummary,
    /// Messages before.
    pub before: u64,
    /// Messages after.
    pub after: Option<u64>,
    /// The measured window.
    pub measured: Duration,
    /// Warm-up plus window plus the tail of in-flight requests.
    pub wall: Duration,
    /// (user, system) CPU of the bench during the run.
    pub cpu: (Duration, Duration),
    /// Panicked workers.
    pub panicked: usize,
    /// Connections opened by the workers.
    pub connections: u64,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Report {
    /// Builds the report from the merged measurements.
    pub fn build(i: Inputs<'_>) -> Report {
        let secs = i.measured.as_secs_f64();
        let ops: Vec<OpReport> = Op::ALL
            .iter()
            .map(|&op| (op, i.recorder.get(op)))
            .filter(|(_, r)| r.requests() > 0)
            .map(|(op, r)| {
                let h = &r.latency_us;
                OpReport {
                    op: op.name(),
                    requests: r.requests(),
                    requests_per_s: r.requests() as f64 / secs,
                    messages: r.messages,
                    messages_per_s: r.messages as f64 / secs,
                    latency_ms: Latency {
                        p50: ms(h.value_at_quantile(0.5)),
                        p90: ms(h.value_at_quantile(0.9)),
                        p99: ms(h.value_at_quantile(0.99)),
                        p999: ms(h.value_at_quantile(0.999)),
                        max: ms(h.max()),
                        mean: h.mean() / 1000.0,
                    },
                    errors: r.errors.clone(),
                    empty: r.empty,
                }
            })
            .collect();
        let consumed: u64 = [Op::Delete, Op::BulkDelete]
            .iter()
            .map(|&op| i.recorder.get(op).messages)
            .sum();
        let difference = i.after.map(|after| {
            i.before as i64 + i.ledger.posted as i64 - i.ledger.consumed as i64 - after as i64
        });
        let balanced = match difference {
            Some(0) => true,
            // Unanswered posts/deletes may or may not have happened.
            Some(d) => {
                i.ledger.uncertain_requests > 0
                    && d.unsigned_abs() <= i.ledger.uncertain_requests * 1000
            }
            None => false,
        };
        let correct = balanced
            && i.ledger.double_claims == 0
            && i.ledger.double_consumes == 0
            && i.panicked == 0;
        let cpu = i.cpu.0 + i.cpu.1;
        Report {
            config: i.config.clone(),
            ops,
            consumed_per_s: consumed as f64 / secs,
            ledger: i.ledger,
            balance: Balance {
                before: i.before,
                after: i.after,
                difference,
            },
            bench_cpu: BenchCpu {
                user_s: i.cpu.0.as_secs_f64(),
                system_s: i.cpu.1.as_secs_f64(),
                percent_of_one_core: 100.0 * cpu.as_secs_f64() / i.wall.as_secs_f64().max(1e-9),
            },
            panicked_workers: i.panicked,
            connections: i.connections,
            correct,
        }
    }

    /// The report as a table for people.
    pub fn table(&self) -> String {
        let c = &self.config;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "zaqar-bench {}  producers={} consumers={} observers={} stats={}  batch={} claim_limit={} size={}B \
             queues={}  {}s (+{}s warm-up)",
            c.url,
            c.producers,
            c.consumers,
            c.observers,
            c.stats_readers,
            c.batch,
            c.claim_limit,
            c.message_size,
            c.queues,
            c.duration,
            c.warmup
        );
        let _ = writeln!(
            out,
            "{:<12} {:>9} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}  errors",
            "op", "requests", "req/s", "msg/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        for o in &self.ops {
            let errors = if o.errors.is_empty() {
                "-".to_owned()
            } else {
                o.errors
                    .iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let l = &o.latency_ms;
            let _ = writeln!(
                out,
                "{:<12} {:>9} {:>10.0} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {errors}{}",
                o.op,
                o.requests,
                o.requests_per_s,
                o.messages_per_s,
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.max,
                if o.empty > 0 { format!(" (empty claims: {})", o.empty) } else { String::new() }
            );
        }
        let _ = writeln!(
            out,
            "end to end: {:.0} messages consumed/s",
            self.consumed_per_s
        );
        let l = &self.ledger;
        let balance = match (self.balance.after, self.balance.difference) {
            (Some(after), Some(d)) => format!(
                "before {} + posted {} = consumed {} + left {} (difference {d})",
                self.balance.before, l.posted, l.consumed, after
            ),
            _ => "final stats unreadable".to_owned(),
        };
        let _ = writeln!(
            out,
            "checks: {} | {balance} | double claims {} | double deletes {} | unanswered {}",
            if self.correct { "OK" } else { "FAILED" },
            l.double_claims,
            l.double_consumes,
            l.uncertain_requests
        );
        let b = &self.bench_cpu;
        let _ = writeln!(
            out,
            "bench CPU: user {:.2}s system {:.2}s = {:.0}% of one core | connections opened: {}",
            b.user_s, b.system_s, b.percent_of_one_core, self.connections
        );
        out
    }
}
