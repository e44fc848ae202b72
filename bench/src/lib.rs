//! `zaqar-bench`: a load generator and checker for any Zaqar v2 HTTP server.
//!
//! In the spirit of the reference's bench (producers, consumers, observers
//! working on a few queues for a fixed time), but built to measure a fast
//! server without being its bottleneck: one tokio runtime with a chosen
//! number of threads, one keep-alive HTTP/1.1 connection per worker
//! ([`client`]), per-worker HDR histograms merged at the end ([`recorder`]),
//! and the bench's own CPU time in the report, so a reader can tell whether
//! the load generator or the server ran out of CPU.
//!
//! A run: create (or reset) the queues, optionally pre-fill them, read their
//! stats, run every worker for warm-up plus duration (only requests started
//! after the warm-up are measured), read the stats again and check the
//! balance `before + posted = consumed + left` and the claim ledger
//! ([`ledger`]). [`Report`] renders as a table for people or JSON for scripts.

pub mod client;
pub mod ledger;
pub mod recorder;
pub mod report;
pub mod workers;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ACCEPT};
use http::Method;

use self::client::{host_header, Client, Target};
use self::ledger::Ledger;
use self::recorder::{Op, Progress, Recorder};
pub use self::report::Report;
use self::workers::{DeleteMode, Shared};

/// The settings of a run (also the command line of `zaqar-bench`).
#[derive(Clone, Debug, clap::Args, serde::Serialize)]
pub struct BenchConfig {
    /// Base URL of the server (plain HTTP).
    #[arg(long, short = 's', default_value = "http://127.0.0.1:8888")]
    pub url: String,
    /// Project id (`X-Project-ID`).
    #[arg(long, default_value = "bench")]
    pub project: String,
    /// Keystone token (`X-Auth-Token`), when the server wants one.
    #[arg(long)]
    #[serde(skip)]
    pub token: Option<String>,
    /// `Client-ID` of every request (a fresh UUID by default).
    #[arg(long)]
    pub client_id: Option<String>,
    /// Producer workers (each posts batches on its own connection).
    #[arg(long, short = 'p', default_value_t = 0)]
    pub producers: usize,
    /// Consumer workers (each claims, then deletes what it claimed).
    #[arg(long, short = 'c', default_value_t = 0)]
    pub consumers: usize,
    /// Observer workers (each lists messages).
    #[arg(long, short = 'o', default_value_t = 0)]
    pub observers: usize,
    /// Stats workers (each reads `GET /v2/queues/{q}/stats`).
    #[arg(long, default_value_t = 0)]
    pub stats_readers: usize,
    /// Messages per post.
    #[arg(long, short = 'b', default_value_t = 1)]
    pub batch: usize,
    /// Messages per claim (`limit`).
    #[arg(long, default_value_t = 10)]
    pub claim_limit: usize,
    /// Messages per listing (`limit`).
    #[arg(long, default_value_t = 10)]
    pub list_limit: usize,
    /// Size of each message body (bytes of JSON).
    #[arg(long, default_value_t = 100)]
    pub message_size: usize,
    /// TTL of the posted messages (seconds).
    #[arg(long, default_value_t = 3600)]
    pub message_ttl: u64,
    /// TTL of the claims (seconds).
    #[arg(long, default_value_t = 300)]
    pub claim_ttl: u64,
    /// Grace of the claims (seconds).
    #[arg(long, default_value_t = 60)]
    pub claim_grace: u64,
    /// How consumers delete.
    #[arg(long, value_enum, default_value_t = DeleteMode::Each)]
    pub delete_mode: DeleteMode,
    /// Pause of a consumer after an empty claim (ms; 0 claims again at once).
    #[arg(long, default_value_t = 0)]
    pub empty_backoff_ms: u64,
    /// Number of queues.
    #[arg(long, short = 'q', default_value_t = 1)]
    pub queues: usize,
    /// Queue name prefix (queues are `<prefix>-0`, `<prefix>-1`, ...).
    #[arg(long, default_value = "bench")]
    pub queue_prefix: String,
    /// Messages posted to each queue before the run (batches of 10).
    #[arg(long, default_value_t = 0)]
    pub prefill: u64,
    /// Keep the queues' messages from earlier runs (by default they are deleted first).
    #[arg(long)]
    pub no_reset: bool,
    /// Measured duration (seconds).
    #[arg(long, short = 't', default_value_t = 10.0)]
    pub duration: f64,
    /// Warm-up before measuring (seconds).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Limit for one request (seconds).
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Worker threads of the bench's runtime.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The URL is not `http://host:port`.
    #[error("unusable URL {0:?}: expected http://host[:port]")]
    Url(String),
    /// A header value is not valid.
    #[error("invalid {0} header value")]
    Header(&'static str),
    /// The setup (queues, pre-fill, stats) failed.
    #[error("setup: {0}")]
    Setup(String),
    /// Nothing to run.
    #[error("no workers: give --producers, --consumers, --observers or --stats-readers")]
    NoWorkers,
}

impl BenchConfig {
    fn target(&self) -> Result<Target, BenchError> {
        let uri: http::Uri = self
            .url
            .parse()
            .map_err(|_| BenchError::Url(self.url.clone()))?;
        if uri.scheme_str() != Some("http") {
            return Err(BenchError::Url(self.url.clone()));
        }
        let host = uri
            .host()
            .ok_or_else(|| BenchError::Url(self.url.clone()))?;
        let authority = format!("{host}:{}", uri.port_u16().unwrap_or(80));
        let value = |v: &str, what| HeaderValue::from_str(v).map_err(|_| BenchError::Header(what));
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
        headers.extend(host_header(&authority));
        headers.push((ACCEPT, HeaderValue::from_static("application/json")));
        let client_id = self
            .client_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        headers.push((
            HeaderName::from_static("client-id"),
            value(&client_id, "Client-ID")?,
        ));
        headers.push((
            HeaderName::from_static("x-project-id"),
            value(&self.project, "X-Project-ID")?,
        ));
        if let Some(token) = &self.token {
            headers.push((
                HeaderName::from_static("x-auth-token"),
                value(token, "X-Auth-Token")?,
            ));
        }
        Ok(Target {
            authority,
            headers,
            timeout: Duration::from_secs_f64(self.timeout.max(0.001)),
            connects: Arc::default(),
        })
    }

    fn workers(&self) -> usize {
        self.producers + self.consumers + self.observers + self.stats_readers
    }
}

/// CPU time this process used (user, system), from `getrusage`.
pub fn cpu_time() -> (Duration, Duration) {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return (Duration::ZERO, Duration::ZERO);
        }
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

async fn expect(
    client: &mut Client,
    method: Method,
    path: &str,
    body: Option<Bytes>,
    ok: &[u16],
) -> Result<Bytes, BenchError> {
    let what = format!("{method} {path}");
    let answer = client
        .send(method, path, body)
        .await
        .map_err(|e| BenchError::Setup(format!("{what}: {e}")))?;
    if ok.contains(&answer.status.as_u16()) {
        Ok(answer.body)
    } else {
        Err(BenchError::Setup(format!(
            "{what}: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        )))
    }
}

/// Sum of `messages.total` over the queues' stats.
async fn total_messages(client: &mut Client, queues: &[String]) -> Result<u64, BenchError> {
    #[derive(serde::Deserialize)]
    struct Counts {
        total: u64,
    }
    #[derive(serde::Deserialize)]
    struct Stats {
        messages: Counts,
    }
    let mut total = 0;
    for q in queues {
        let body = expect(
            client,
            Method::GET,
            &format!("/v2/queues/{q}/stats"),
            None,
            &[200],
        )
        .await?;
        let stats: Stats = serde_json::from_slice(&body)
            .map_err(|e| BenchError::Setup(format!("stats of {q}: {e}")))?;
        total += stats.messages.total;
    }
    Ok(total)
}

/// How long the final stats read is tried again while it fails: a run may
/// end while the service is down or failing over (the fault harness runs
/// the bench through its faults), and the balance is read once it answers.
const FINAL_STATS_PATIENCE: Duration = Duration::from_secs(30);

/// [`total_messages`] at the end of the run, tried again every half second
/// for up to [`FINAL_STATS_PATIENCE`]; `None` if it never succeeds.
async fn final_total(client: &mut Client, queues: &[String]) -> Option<u64> {
    let deadline = Instant::now() + FINAL_STATS_PATIENCE;
    loop {
        match total_messages(client, queues).await {
            Ok(total) => return Some(total),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(_) => return None,
        }
    }
}

/// Posts `per_queue` messages to every queue over a few connections.
async fn prefill(
    target: &Target,
    config: &BenchConfig,
    queues: &[String],
) -> Result<(), BenchError> {
    const BATCH: usize = 10;
    const CONNECTIONS: usize = 8;
    let body = workers::post_body(BATCH, config.message_size, config.message_ttl);
    for q in queues {
        let left = Arc::new(AtomicI64::new(config.prefill as i64));
        let path = Arc::new(format!("/v2/queues/{q}/messages"));
        let mut tasks = Vec::new();
        for _ in 0..CONNECTIONS {
            let (left, path, body) = (left.clone(), path.clone(), body.clone());
            let mut client = Client::new(target.clone());
            tasks.push(tokio::spawn(async move {
                while left.fetch_sub(BATCH as i64, Ordering::Relaxed) > 0 {
                    expect(&mut client, Method::POST, &path, Some(body.clone()), &[201]).await?;
                }
                Ok::<(), BenchError>(())
            }));
        }
        for t in tasks {
            t.await
                .map_err(|e| BenchError::Setup(format!("prefill task: {e}")))??;
        }
    }
    Ok(())
}

/// Prints a progress line every second until `done` is dropped.
async fn show_progress(shared: Arc<Shared>, started: Instant) {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    let total = shared.deadline.duration_since(started).as_secs_f64();
    let mut last = shared.progress.requests();
    let mut last_t = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = Instant::now();
        let counts = shared.progress.requests();
        let dt = now.duration_since(last_t).as_secs_f64().max(1e-6);
        let mut line = format!(
            "[{:5.1}s/{total:.0}s]",
            now.duration_since(started).as_secs_f64()
        );
        for (i, op) in Op::ALL.iter().enumerate() {
            if counts[i] > 0 {
                line.push_str(&format!(
                    " {} {:.0}/s",
                    op.name(),
                    (counts[i] - last[i]) as f64 / dt
                ));
            }
        }
        line.push_str(&format!(
            " | consumed {} | errors {}",
            shared.progress.consumed_total(),
            shared.progress.errors()
        ));
        if tty {
            eprint!("\r{line}\x1b[K");
        } else {
            eprintln!("{line}");
        }
        last = counts;
        last_t = now;
    }
}

/// Runs the load described by `config` and reports it.
///
/// # Errors
/// The URL or a header is unusable, there is no worker, or the setup
/// requests (queue creation, pre-fill, stats) fail.
pub async fn run(config: BenchConfig, progress: bool) -> Result<Report, BenchError> {
    if config.workers() == 0 {
        return Err(BenchError::NoWorkers);
    }
    let target = config.target()?;
    let queues: Vec<String> = (0..config.queues.max(1))
        .map(|i| format!("{}-{i}", config.queue_prefix))
        .collect();
    let mut setup = Client::new(target.clone());
    for q in &queues {
        let path = format!("/v2/queues/{q}");
        if !config.no_reset {
            expect(&mut setup, Method::DELETE, &path, None, &[204]).await?;
        }
        expect(&mut setup, Method::PUT, &path, None, &[201, 204]).await?;
    }
    if config.prefill > 0 {
        prefill(&target, &config, &queues).await?;
    }
    let before = total_messages(&mut setup, &queues).await?;

    let started = Instant::now();
    let measure_from = started + Duration::from_secs_f64(config.warmup.max(0.0));
    let deadline = measure_from + Duration::from_secs_f64(config.duration.max(0.001));
    let claim_body = Bytes::from(format!(
        r#"{{"ttl":{},"grace":{}}}"#,
        config.claim_ttl, config.claim_grace
    ));
    let shared = Arc::new(Shared {
        post_body: workers::post_body(config.batch, config.message_size, config.message_ttl),
        claim_body,
        config: config.clone(),
        queues: queues.clone(),
        ledger: Ledger::default(),
        progress: Progress::default(),
        measure_from,
        deadline,
    });
    let connects_before = target.connects.load(Ordering::Relaxed);
    let cpu_before = cpu_time();
    let mut tasks = Vec::with_capacity(config.workers());
    for i in 0..config.producers {
        tasks.push(tokio::spawn(workers::producer(
            shared.clone(),
            i,
            Client::new(target.clone()),
        )));
    }
    for i in 0..config.consumers {
        tasks.push(tokio::spawn(workers::consumer(
            shared.clone(),
            i,
            Client::new(target.clone()),
        )));
    }
    for i in 0..config.observers {
        tasks.push(tokio::spawn(workers::observer(
            shared.clone(),
            i,
            Client::new(target.clone()),
        )));
    }
    for i in 0..config.stats_readers {
        tasks.push(tokio::spawn(workers::stats_reader(
            shared.clone(),
            i,
            Client::new(target.clone()),
        )));
    }
    let ticker = progress.then(|| tokio::spawn(show_progress(shared.clone(), started)));
    let mut merged = Recorder::default();
    let mut panicked = 0;
    for t in tasks {
        match t.await {
            Ok(rec) => merged.merge(&rec),
            Err(_) => panicked += 1,
        }
    }
    let finished = Instant::now();
    let connections = target.connects.load(Ordering::Relaxed) - connects_before;
    let cpu_after = cpu_time();
    if let Some(t) = ticker {
        t.abort();
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprintln!();
        }
    }
    let after = final_total(&mut setup, &queues).await;
    let cpu = (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1);
    Ok(Report::build(report::Inputs {
        config: &config,
        recorder: &merged,
        ledger: shared.ledger.summary(),
        before,
        after,
        measured: Duration::from_secs_f64(config.duration.max(0.001)),
        wall: finished.duration_since(started),
        cpu,
        panicked,
        connections,
    }))
}
