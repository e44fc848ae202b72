//! The api core: every rule of the v2 API lives here, once.
//!
//! Transports (HTTP, WebSocket) parse the wire into an
//! [`Operation`](operation::Operation), hand it with the caller to
//! [`Api::execute`] and render the typed [`Reply`](reply::Reply) or the
//! [`ApiError`](crate::error::ApiError). Names, limits, policy, the admin
//! gate, reserved queue metadata and defaults are applied here, so the same
//! input gets the same answer on every transport.

pub mod body;
pub mod checksum;
pub mod claims;
pub mod encryption;
pub mod execute;
pub mod health;
pub mod home;
pub mod long_poll;
pub mod messages;
pub mod metadata;
pub mod openapi;
pub mod operation;
pub mod policy;
pub mod pools;
pub mod queues;
pub mod reply;
pub mod signed_url;
pub mod subscriptions;
pub mod topics;
pub mod validate;
pub mod views;

use std::sync::Arc;

use bytes::Bytes;

use crate::config::{AuthStrategy, Config, TransportConfig};
use crate::notification::trust::{KeystoneTrusts, TrustTokens};
use crate::storage::clock::SharedClock;
use crate::storage::pipeline::Storage;
use policy::Policy;

/// A request body as the transport received it.
#[derive(Clone, Debug)]
pub enum Payload {
    /// No body was sent.
    Absent,
    /// The body, read whole (it was within the transport's cap).
    Bytes(Bytes),
    /// A body longer than any route accepts; its length, not its bytes.
    Oversized(u64),
    /// A document a transport decoded itself (a WebSocket frame's fields),
    /// as compact JSON, with the size it counts for.
    Document {
        /// The document as JSON text.
        json: Bytes,
        /// Its size as Python's `json.dumps` writes it: what the same
        /// document sent over HTTP by python-zaqarclient measures, so size
        /// limits judge both transports alike.
        measured: u64,
    },
}

impl Payload {
    /// The payload of a decoded document.
    pub fn document(doc: &serde_json::Value) -> Payload {
        let mut python = String::new();
        checksum::python_dumps(doc, &mut python);
        match serde_json::to_vec(doc) {
            Ok(json) => Payload::Document {
                json: json.into(),
                measured: python.len() as u64,
            },
            Err(_) => Payload::Absent,
        }
    }

    /// The body's length, when there is one.
    pub fn len(&self) -> Option<u64> {
        match self {
            Payload::Absent => None,
            Payload::Bytes(b) => Some(b.len() as u64),
            Payload::Oversized(n) => Some(*n),
            Payload::Document { measured, .. } => Some(*measured),
        }
    }

    /// Whether no body (or an empty one) was sent.
    pub fn is_empty(&self) -> bool {
        self.len().unwrap_or(0) == 0
    }

    /// The bytes of a body within the cap (`None` when absent or oversized).
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Payload::Bytes(b) | Payload::Document { json: b, .. } => Some(b),
            _ => None,
        }
    }
}

/// The api core: storage pipelines plus the configuration they are used with.
#[derive(Clone)]
pub struct Api {
    storage: Storage,
    config: Arc<Config>,
    /// The rules in force, shared by every clone: SIGHUP or a change of
    /// the policy file replaces them ([`Api::reload_policy`]).
    policy: Arc<std::sync::RwLock<Policy>>,
    clock: SharedClock,
    trusts: Option<Arc<dyn TrustTokens>>,
    keyring: Arc<crate::storage::encryption::Keyring>,
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
            keyring: Arc::new(crate::storage::encryption::Keyring::from_config(
                &config.transport,
            )),
            config,
            policy: Arc::new(std::sync::RwLock::new(Policy::default())),
            clock,
            trusts,
        }
    }

    /// Replaces the policy (the default rules) with `policy`.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = Arc::new(std::sync::RwLock::new(policy));
        self
    }

    /// The policy enforcer (the rules in force now).
    pub fn policy(&self) -> std::sync::RwLockReadGuard<'_, Policy> {
        self.policy
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads the policy file again (as at start-up) and puts its rules in
    /// force for every request that starts after; an invalid file leaves
    /// the rules in force unchanged (and says why).
    ///
    /// # Errors
    /// The file is missing or invalid.
    pub fn reload_policy(&self) -> Result<(), policy::PolicyError> {
        let fresh = Policy::load(&self.config)?;
        *self
            .policy
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
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
