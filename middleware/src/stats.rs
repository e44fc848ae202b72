//! Counters of the validator's work, for a service's `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, shared by every clone of a [`crate::Validator`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) cache_hits: AtomicU64,
    pub(crate) cache_misses: AtomicU64,
    pub(crate) keystone_validations: AtomicU64,
    pub(crate) service_token_fetches: AtomicU64,
    pub(crate) catalog_fetches: AtomicU64,
    pub(crate) validation_calls: AtomicU64,
    pub(crate) validation_micros: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            cache_misses: self.cache_misses.load(Ordering::Relaxed),
            keystone_validations: self.keystone_validations.load(Ordering::Relaxed),
            service_token_fetches: self.service_token_fetches.load(Ordering::Relaxed),
            catalog_fetches: self.catalog_fetches.load(Ordering::Relaxed),
            validation_calls: self.validation_calls.load(Ordering::Relaxed),
            validation_seconds: self.validation_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// A snapshot of the counters since the validator was built. Each only grows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    /// Validations answered from the cache (a valid or a remembered invalid
    /// token), including requests that waited for another request's
    /// in-flight look-up of the same token.
    pub cache_hits: u64,
    /// Validations that had to look the token up in Keystone (one per
    /// coalesced group of concurrent requests).
    pub cache_misses: u64,
    /// `GET /v3/auth/tokens` requests sent to Keystone (retries included).
    pub keystone_validations: u64,
    /// `POST /v3/auth/tokens` requests sent for the service token.
    pub service_token_fetches: u64,
    /// Catalog look-ups ([`crate::Validator::catalog`]).
    pub catalog_fetches: u64,
    /// Token validations that asked Keystone, each counted once however
    /// many requests (retries) it took.
    pub validation_calls: u64,
    /// Total time those validations waited for Keystone, in seconds
    /// (divided by `validation_calls`: the mean latency of Keystone).
    pub validation_seconds: f64,
}
