//! `GET /metrics`: counters in the Prometheus text format.
//!
//! Served on the HTTP listener when `[metrics] enabled = true` (off by
//! default). The endpoint is not behind Keystone: scrapers hold no token,
//! and it shows only counters (no project, queue or token data). Turn it
//! on where tenants cannot reach the listener, or filter `/metrics` in the
//! proxy in front.
//!
//! Exported: HTTP responses by status code, and the Keystone validator's
//! counters (token cache hits and misses, validation and service-token
//! calls to Keystone, tokens cached). The exporter is hand-rolled: a dozen
//! lines of text do not need the `prometheus` crate's registry.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use keystone_middleware::Validator;

/// The media type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Lowest and highest status codes counted one by one.
const FIRST_STATUS: u16 = 100;
const LAST_STATUS: u16 = 599;

/// Counters of the HTTP transport. Shared by every request; each update is
/// one relaxed atomic add.
#[derive(Debug)]
pub struct Metrics {
    responses: Vec<AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            responses: (FIRST_STATUS..=LAST_STATUS)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

impl Metrics {
    /// Counts one response with `status`.
    pub fn record(&self, status: u16) {
        if let Some(counter) = status
            .checked_sub(FIRST_STATUS)
            .and_then(|i| self.responses.get(usize::from(i)))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The exposition text; `validator` adds the Keystone counters.
    pub fn render(&self, validator: Option<&Validator>) -> String {
        let mut out = String::with_capacity(1024);
        out.push_str("# HELP zaqar_http_responses_total HTTP responses sent, by status code.\n");
        out.push_str("# TYPE zaqar_http_responses_total counter\n");
        for (status, counter) in (FIRST_STATUS..=LAST_STATUS).zip(&self.responses) {
            let n = counter.load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(out, "zaqar_http_responses_total{{code=\"{status}\"}} {n}");
            }
        }
        if let Some(v) = validator {
            let s = v.stats();
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
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
                );
            }
            let _ = writeln!(
                out,
                "# HELP zaqar_keystone_cached_tokens Tokens in the validation cache (approximate).\n\
                 # TYPE zaqar_keystone_cached_tokens gauge\nzaqar_keystone_cached_tokens {}",
                v.cached_tokens()
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_status() {
        let m = Metrics::default();
        m.record(200);
        m.record(200);
        m.record(401);
        m.record(42);
        m.record(600);
        let text = m.render(None);
        assert!(
            text.contains("zaqar_http_responses_total{code=\"200\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("zaqar_http_responses_total{code=\"401\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("code=\"404\""));
        assert!(!text.contains("keystone"));
    }
}
