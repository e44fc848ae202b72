//! `GET /metrics`: what an operator watches, in the Prometheus text format,
//! with the `prometheus` crate.
//!
//! Served on the HTTP listener when `[metrics] enabled = true` (off by
//! default). The endpoint is not behind Keystone: scrapers hold no token,
//! and it shows only aggregates (no project, queue or token data). Turn it
//! on where tenants cannot reach the listener, or filter `/metrics` in the
//! proxy in front.
//!
//! The metrics live in one process-wide registry ([`global`]), so every
//! layer records into it without being handed a handle: the transports
//! (request latency by operation and status, WebSocket connections and
//! frames), the storage drivers (operation latency by driver, through
//! [`crate::storage::timed`]), the notification workers (deliveries by
//! kind and result). Scrape-time values (the notification outbox, the
//! Keystone validator's counters) are read when `/metrics` is asked for;
//! process metrics (CPU, memory, open files, threads) come from the crate's
//! process collector on Linux. `doc/source/admin/monitoring.rst` lists
//! every metric; `contrib/grafana/zaqar.json` is a dashboard on them.

use std::sync::LazyLock;
use std::time::Duration;

use keystone_middleware::Validator;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// The media type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency buckets (seconds): from a cached read to a slow store.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every metric the server records.
pub struct Metrics {
    registry: Registry,
    /// `zaqar_http_responses_total{code}`.
    http_responses: IntCounterVec,
    /// `zaqar_request_duration_seconds{transport,operation,status}`.
    requests: HistogramVec,
    /// `zaqar_storage_operation_duration_seconds{driver,pool,operation,outcome}`.
    storage: HistogramVec,
    /// `zaqar_notification_deliveries_total{kind,result}`.
    deliveries: IntCounterVec,
    /// `zaqar_notification_outbox_depth` (a family without labels, so that
    /// it is absent until a store that can count its outbox sets it).
    outbox_depth: prometheus::IntGaugeVec,
    /// `zaqar_notification_outbox_oldest_due_seconds`.
    outbox_oldest: Gauge,
    /// `zaqar_websocket_connections`.
    ws_connections: IntGauge,
    /// `zaqar_websocket_frames_total{direction}`.
    ws_frames: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

fn registered<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            registered(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                    labels,
                )
                .expect("valid histogram"),
            )
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            registered(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter"),
            )
        };
        let metrics = Metrics {
            http_responses: counter(
                "zaqar_http_responses_total",
                "HTTP responses sent, by status code.",
                &["code"],
            ),
            requests: histogram(
                "zaqar_request_duration_seconds",
                "Time to answer a request (HTTP) or a frame (WebSocket), by transport, operation and status.",
                &["transport", "operation", "status"],
            ),
            storage: histogram(
                "zaqar_storage_operation_duration_seconds",
                "Time of a storage driver operation, by driver, pool (empty outside pooling), operation and outcome (ok or error).",
                &["driver", "pool", "operation", "outcome"],
            ),
            deliveries: counter(
                "zaqar_notification_deliveries_total",
                "Notification delivery attempts, by kind (webhook, mailto, trust) and result (delivered, retry, dropped).",
                &["kind", "result"],
            ),
            outbox_depth: registered(
                &registry,
                prometheus::IntGaugeVec::new(
                    Opts::new(
                        "zaqar_notification_outbox_depth",
                        "Notifications waiting in the outbox (read at scrape time; absent for a store that cannot count them).",
                    ),
                    &[],
                )
                .expect("valid gauge"),
            ),
            outbox_oldest: registered(
                &registry,
                Gauge::new(
                    "zaqar_notification_outbox_oldest_due_seconds",
                    "How long the most overdue notification of the outbox has been due (0 when none is overdue).",
                )
                .expect("valid gauge"),
            ),
            ws_connections: registered(
                &registry,
                IntGauge::new("zaqar_websocket_connections", "Open WebSocket connections.")
                    .expect("valid gauge"),
            ),
            ws_frames: counter(
                "zaqar_websocket_frames_total",
                "WebSocket frames, by direction (in: requests read; out: responses and notifications sent).",
                &["direction"],
            ),
            registry,
        };
        #[cfg(target_os = "linux")]
        {
            let _ = metrics.registry.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ));
        }
        metrics
    }

    /// Counts one HTTP response with `status`.
    pub fn record(&self, status: u16) {
        self.http_responses
            .with_label_values(&[status_label(status)])
            .inc();
    }

    /// Records one answered request.
    pub fn request(&self, transport: &str, operation: &str, status: u16, took: Duration) {
        self.requests
            .with_label_values(&[transport, operation, status_label(status)])
            .observe(took.as_secs_f64());
    }

    /// Records one storage operation of `driver`.
    pub fn storage_op(&self, driver: &str, pool: &str, operation: &str, ok: bool, took: Duration) {
        self.storage
            .with_label_values(&[driver, pool, operation, if ok { "ok" } else { "error" }])
            .observe(took.as_secs_f64());
    }

    /// Counts one delivery attempt.
    pub fn delivery(&self, kind: &str, result: &str) {
        self.deliveries.with_label_values(&[kind, result]).inc();
    }

    /// A WebSocket connection opened (`+1`) or closed (`-1`).
    pub fn ws_connection(&self, delta: i64) {
        self.ws_connections.add(delta);
    }

    /// Counts a WebSocket frame (`direction`: `in` or `out`).
    pub fn ws_frame(&self, direction: &str) {
        self.ws_frames.with_label_values(&[direction]).inc();
    }

    /// Sets the outbox gauges (depth unknown: left out of the exposition).
    pub fn outbox(&self, depth: Option<u64>, oldest_due: Duration) {
        if let Some(d) = depth {
            self.outbox_depth
                .with_label_values(&[] as &[&str])
                .set(i64::try_from(d).unwrap_or(i64::MAX));
        }
        self.outbox_oldest.set(oldest_due.as_secs_f64());
    }

    /// The exposition text; `validator` adds the Keystone counters.
    pub fn render(&self, validator: Option<&Validator>) -> String {
        let mut families = self.registry.gather();
        if let Some(v) = validator {
            families.extend(keystone_families(v));
        }
        let mut out = Vec::with_capacity(8192);
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// A status code as a label value, without allocating per request for the
/// codes the API answers with (the ranges catch the others).
#[allow(clippy::match_overlapping_arm)]
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        301 => "301",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        406 => "406",
        409 => "409",
        410 => "410",
        413 => "413",
        415 => "415",
        429 => "429",
        500 => "500",
        501 => "501",
        502 => "502",
        503 => "503",
        504 => "504",
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The Keystone validator's counters, as metric families read now.
fn keystone_families(v: &Validator) -> Vec<prometheus::proto::MetricFamily> {
    let s = v.stats();
    let registry = Registry::new();
    let counters = [
        (
            "zaqar_keystone_token_cache_hits_total",
            "Token validations answered from the cache.",
            s.cache_hits,
        ),
        (
            "zaqar_keystone_token_cache_misses_total",
            "Token validations that had to ask Keystone (one per group of concurrent requests).",
            s.cache_misses,
        ),
        (
            "zaqar_keystone_validations_total",
            "GET /v3/auth/tokens requests sent to Keystone (retries included).",
            s.keystone_validations,
        ),
        (
            "zaqar_keystone_validation_calls_total",
            "Token validations that asked Keystone, each counted once whatever its retries.",
            s.validation_calls,
        ),
        (
            "zaqar_keystone_service_token_fetches_total",
            "Service tokens requested from Keystone.",
            s.service_token_fetches,
        ),
        (
            "zaqar_keystone_catalog_fetches_total",
            "Service catalogs fetched from Keystone.",
            s.catalog_fetches,
        ),
    ];
    for (name, help, value) in counters {
        if let Ok(c) = IntCounter::new(name, help) {
            c.inc_by(value);
            let _ = registry.register(Box::new(c));
        }
    }
    if let Ok(g) = prometheus::Counter::new(
        "zaqar_keystone_validation_seconds_total",
        "Time spent waiting for Keystone to validate tokens (divide by zaqar_keystone_validation_calls_total for the mean latency).",
    ) {
        g.inc_by(s.validation_seconds);
        let _ = registry.register(Box::new(g));
    }
    if let Ok(g) = IntGauge::new(
        "zaqar_keystone_cached_tokens",
        "Tokens in the validation cache (approximate).",
    ) {
        g.set(i64::try_from(v.cached_tokens()).unwrap_or(i64::MAX));
        let _ = registry.register(Box::new(g));
    }
    registry.gather()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_renders_the_text_format() {
        let m = Metrics::new();
        m.record(200);
        m.record(200);
        m.record(401);
        m.request("http", "message_post", 201, Duration::from_millis(3));
        m.storage_op("sqlite", "", "message post", true, Duration::from_millis(1));
        m.delivery("webhook", "delivered");
        m.ws_connection(1);
        m.ws_frame("in");
        assert!(!m.render(None).contains("zaqar_notification_outbox_depth "));
        m.outbox(Some(3), Duration::from_secs(2));
        let text = m.render(None);
        for line in [
            "zaqar_http_responses_total{code=\"200\"} 2\n",
            "zaqar_http_responses_total{code=\"401\"} 1\n",
            "zaqar_request_duration_seconds_count{operation=\"message_post\",status=\"201\",transport=\"http\"} 1\n",
            "zaqar_storage_operation_duration_seconds_count{driver=\"sqlite\",operation=\"message post\",outcome=\"ok\",pool=\"\"} 1\n",
            "zaqar_notification_deliveries_total{kind=\"webhook\",result=\"delivered\"} 1\n",
            "zaqar_websocket_connections 1\n",
            "zaqar_websocket_frames_total{direction=\"in\"} 1\n",
            "zaqar_notification_outbox_depth 3\n",
            "zaqar_notification_outbox_oldest_due_seconds 2\n",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        assert!(!text.contains("keystone"));
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }
}
