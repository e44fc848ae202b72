//! The api core: every rule of the v2 API lives here, once.
//!
//! Transports (HTTP, WebSocket) parse the wire into the typed parameters
//! below, call one method of [`Api`], and render its typed result or its
//! [`ApiError`](crate::error::ApiError). Validation, limits, reserved queue
//! metadata and defaults are applied here, so the same input gets the same
//! answer on every transport.

pub mod body;
pub mod checksum;
pub mod claims;
pub mod health;
pub mod messages;
pub mod metadata;
pub mod policy;
pub mod queues;
pub mod signed_url;
pub mod subscriptions;
pub mod validate;

use std::sync::Arc;

use bytes::Bytes;

use crate::config::{AuthStrategy, Config, TransportConfig};
use crate::notification::trust::{KeystoneTrusts, TrustTokens};
use crate::storage::clock::SharedClock;
use crate::storage::pipeline::Storage;

/// A request body as the transport received it.
#[derive(Clone, Debug)]
pub enum Payload {
    /// No body was sent.
    Absent,
    /// The body, read whole (it was within the transport's cap).
    Bytes(Bytes),
    /// A body longer than any route accepts; its length, not its bytes.
    Oversized(u64),
}

impl Payload {
    /// The body's length, when there is one.
    pub fn len(&self) -> Option<u64> {
        match self {
            Payload::Absent => None,
            Payload::Bytes(b) => Some(b.len() as u64),
            Payload::Oversized(n) => Some(*n),
        }
    }

    /// Whether no body (or an empty one) was sent.
    pub fn is_empty(&self) -> bool {
        self.len().unwrap_or(0) == 0
    }

    /// The bytes of a body within the cap (`None` when absent or oversized).
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Payload::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// The api core: storage pipelines plus the configuration they are used with.
#[derive(Clone)]
pub struct Api {
    storage: Storage,
    config: Arc<Config>,
    clock: SharedClock,
    trusts: Option<Arc<dyn TrustTokens>>,
}

impl Api {
    /// Builds the api core over assembled storage pipelines.
    ///
    /// With `auth_strategy = keystone` and a `[trustee]` section, `trust+`
    /// subscriptions get their Keystone trust from [`KeystoneTrusts`].
    pub fn new(storage: Storage, config: Arc<Config>, clock: SharedClock) -> Self {
        let trusts = match config.auth_strategy {
            AuthStrategy::None => None,
            AuthStrategy::Keystone => match KeystoneTrusts::from_config(&config) {
                Ok(t) => t.map(|t| Arc::new(t) as Arc<dyn TrustTokens>),
                Err(e) => {
                    tracing::error!(error = %e, "trust+ subscriptions cannot get a trust");
                    None
                }
            },
        };
        Api {
            storage,
            config,
            clock,
            trusts,
        }
    }

    /// Replaces what creates the Keystone trusts of `trust+` subscriptions.
    pub fn with_trusts(mut self, trusts: Option<Arc<dyn TrustTokens>>) -> Self {
        self.trusts = trusts;
        self
    }

    /// What creates the Keystone trusts of `trust+` subscriptions, if
    /// anything does (Keystone mode with `[trustee]` credentials).
    pub fn trusts(&self) -> Option<&Arc<dyn TrustTokens>> {
        self.trusts.as_ref()
    }

    /// `[transport]` limits and defaults.
    pub fn limits(&self) -> &TransportConfig {
        &self.config.transport
    }

    /// The whole configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The storage pipelines.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The clock the api core and its stores read.
    pub fn clock(&self) -> SharedClock {
        self.clock.clone()
    }

    /// Current time, milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The largest body any route accepts; transports refuse to read more.
    pub fn max_body_size(&self) -> u64 {
        let l = self.limits();
        l.max_messages_post_size
            .max(l.max_queue_metadata)
            .max(64 * 1024) as u64
    }

    /// `GET /v2/ping`: whether storage answers.
    pub async fn ping(&self) -> bool {
        self.storage.queues.is_alive().await
    }
}
