//! Token validation with a cache: the heart of the crate.
//!
//! A token is looked up in a moka cache keyed by its SHA-256 digest, so the
//! raw token is never kept. On a miss one request goes to Keystone, however
//! many requests carry the same token at that moment (moka coalesces them).
//! A valid answer is kept for `min(token_cache_time, time until the token
//! expires)`, an invalid one for [`INVALID_TOKEN_TTL`] at most, so revoked
//! tokens stop working within `token_cache_time`. Failures to reach Keystone
//! are never cached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use moka::future::Cache;
use moka::Expiry;
use sha2::{Digest, Sha256};

use crate::config::{AuthTokenConfig, ConfigError};
use crate::error::{www_authenticate_value, AuthError, UnauthorizedReason};
use crate::identity::{CatalogService, Identity};
use crate::keystone::KeystoneClient;
use crate::stats::{Counters, Stats};

/// The longest time an invalid token is remembered (less when
/// `token_cache_time` is shorter).
pub const INVALID_TOKEN_TTL: Duration = Duration::from_secs(10);

/// Longest token accepted before asking Keystone. Fernet tokens are about
/// 180-250 bytes; JWS tokens about 800.
pub const MAX_TOKEN_LEN: usize = 8192;

/// Validates Keystone tokens, with a cache. Cheap to clone: clones share the
/// cache, the service token and the counters.
///
/// Build one per process and hand clones to [`crate::authenticate`] and to
/// whatever validates tokens outside HTTP filters (the WebSocket
/// `authenticate` action).
#[derive(Clone)]
pub struct Validator {
    inner: Arc<Inner>,
}

struct Inner {
    config: AuthTokenConfig,
    keystone: KeystoneClient,
    cache: Option<Cache<TokenKey, Cached>>,
    counters: Arc<Counters>,
    www_authenticate: Arc<str>,
}

/// SHA-256 of the token.
type TokenKey = [u8; 32];

/// What the cache remembers about a token.
#[derive(Clone)]
enum Cached {
    Valid {
        identity: Arc<Identity>,
        ttl: Duration,
    },
    Invalid {
        ttl: Duration,
    },
}

/// Gives each cache entry the lifetime computed when it was looked up.
struct PerEntryTtl;

impl Expiry<TokenKey, Cached> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &TokenKey,
        value: &Cached,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(match value {
            Cached::Valid { ttl, .. } | Cached::Invalid { ttl } => *ttl,
        })
    }
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field("auth_url", &self.inner.config.auth_url)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Validator {
    /// Builds a validator. Does not contact Keystone: the service token is
    /// fetched on the first validation.
    ///
    /// # Errors
    ///
    /// [`ConfigError::CaFile`] when `cafile` cannot be read or parsed,
    /// [`ConfigError::Client`] when the TLS client cannot be built.
    pub fn new(config: AuthTokenConfig) -> Result<Self, ConfigError> {
        let counters = Arc::new(Counters::default());
        let keystone = KeystoneClient::new(&config, counters.clone())?;
        let cache = config.token_cache_time.map(|_| {
            Cache::builder()
                .name("keystone-tokens")
                .max_capacity(config.cache_capacity)
                .expire_after(PerEntryTtl)
                .build()
        });
        let www_authenticate = Arc::from(www_authenticate_value(&config.www_authenticate_uri));
        Ok(Validator {
            inner: Arc::new(Inner {
                config,
                keystone,
                cache,
                counters,
                www_authenticate,
            }),
        })
    }

    /// Validates `token` (the value of `X-Auth-Token`) and returns who holds
    /// it.
    ///
    /// # Errors
    ///
    /// [`AuthError::Unauthorized`] for an empty, malformed, unknown, expired
    /// or revoked token; [`AuthError::Unavailable`] when the answer is not
    /// cached and Keystone cannot be asked (unreachable, our service
    /// credentials refused, an unexpected answer).
    pub async fn validate(&self, token: &str) -> Result<Identity, AuthError> {
        check_syntax(token)?;
        let Some(cache) = &self.inner.cache else {
            Counters::bump(&self.inner.counters.cache_misses);
            let cached = self.look_up(token, Duration::ZERO).await?;
            return answer(cached);
        };
        let key = token_key(token);
        let cache_time = self.inner.config.token_cache_time.unwrap_or_default();
        let mut looked_up = false;
        let result = cache
            .try_get_with(key, async {
                looked_up = true;
                self.look_up(token, cache_time).await
            })
            .await;
        let counter = if looked_up {
            &self.inner.counters.cache_misses
        } else {
            &self.inner.counters.cache_hits
        };
        Counters::bump(counter);
        match result {
            Ok(cached) => {
                let outcome = answer(cached);
                if matches!(
                    outcome,
                    Err(AuthError::Unauthorized(UnauthorizedReason::ExpiredToken))
                ) {
                    cache.invalidate(&key).await;
                }
                outcome
            }
            Err(shared) => Err(AuthError::clone(&shared)),
        }
    }

    /// Fetches the service catalog of `token` from Keystone. Not cached:
    /// call it only when the catalog is needed (it is large).
    ///
    /// # Errors
    ///
    /// As [`Validator::validate`].
    pub async fn catalog(&self, token: &str) -> Result<Vec<CatalogService>, AuthError> {
        check_syntax(token)?;
        Counters::bump(&self.inner.counters.catalog_fetches);
        match self.inner.keystone.validate(token, true).await? {
            Some(body) => Ok(body.catalog.unwrap_or_default()),
            None => Err(AuthError::unauthorized(UnauthorizedReason::InvalidToken)),
        }
    }

    /// The configuration this validator was built with.
    pub fn config(&self) -> &AuthTokenConfig {
        &self.inner.config
    }

    /// The `WWW-Authenticate` header value for 401 answers.
    pub fn www_authenticate(&self) -> &str {
        &self.inner.www_authenticate
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// How many tokens the cache holds (approximately: moka counts lazily).
    pub fn cached_tokens(&self) -> u64 {
        self.inner.cache.as_ref().map_or(0, Cache::entry_count)
    }

    /// Forgets what the cache knows about `token`, so the next validation
    /// asks Keystone (for a service that learns of a revocation by other
    /// means).
    pub async fn forget(&self, token: &str) {
        if let Some(cache) = &self.inner.cache {
            cache.invalidate(&token_key(token)).await;
        }
    }

    /// Asks Keystone and turns the answer into a cache entry; errors (Keystone
    /// unavailable) are returned, not cached.
    async fn look_up(&self, token: &str, cache_time: Duration) -> Result<Cached, AuthError> {
        Ok(match self.inner.keystone.validate(token, false).await? {
            Some(body) => {
                let identity = body.identity();
                let ttl = valid_ttl(cache_time, identity.expires_at, Utc::now());
                Cached::Valid {
                    identity: Arc::new(identity),
                    ttl,
                }
            }
            None => Cached::Invalid {
                ttl: invalid_ttl(cache_time),
            },
        })
    }
}

/// Turns a cache entry into the caller's answer, checking expiry against our
/// clock too (a token may expire while cached).
fn answer(cached: Cached) -> Result<Identity, AuthError> {
    match cached {
        Cached::Valid { identity, .. } if identity.expires_at <= Utc::now() => {
            Err(AuthError::unauthorized(UnauthorizedReason::ExpiredToken))
        }
        Cached::Valid { identity, .. } => Ok(Identity::clone(&identity)),
        Cached::Invalid { .. } => Err(AuthError::unauthorized(UnauthorizedReason::InvalidToken)),
    }
}

/// Refuses, without asking Keystone, what cannot be a token: empty, longer
/// than [`MAX_TOKEN_LEN`], or with bytes outside visible ASCII.
fn check_syntax(token: &str) -> Result<(), AuthError> {
    if token.is_empty() {
        return Err(AuthError::unauthorized(UnauthorizedReason::MissingToken));
    }
    if token.len() > MAX_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AuthError::unauthorized(UnauthorizedReason::MalformedToken));
    }
    Ok(())
}

/// The cache key: SHA-256 of the token.
fn token_key(token: &str) -> TokenKey {
    Sha256::digest(token.as_bytes()).into()
}

/// How long a valid token is cached: `token_cache_time`, but never past the
/// token's expiry.
pub(crate) fn valid_ttl(
    cache_time: Duration,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Duration {
    let left = (expires_at - now).to_std().unwrap_or(Duration::ZERO);
    cache_time.min(left)
}

/// How long an invalid token is remembered.
pub(crate) fn invalid_ttl(cache_time: Duration) -> Duration {
    cache_time.min(INVALID_TOKEN_TTL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn valid_ttl_is_capped_by_expiry() {
        let now = Utc::now();
        let five_min = Duration::from_secs(300);
        assert_eq!(
            valid_ttl(five_min, now + TimeDelta::hours(1), now),
            five_min
        );
        assert_eq!(
            valid_ttl(five_min, now + TimeDelta::seconds(42), now),
            Duration::from_secs(42)
        );
        assert_eq!(
            valid_ttl(five_min, now - TimeDelta::seconds(1), now),
            Duration::ZERO
        );
    }

    #[test]
    fn invalid_tokens_are_remembered_briefly() {
        assert_eq!(invalid_ttl(Duration::from_secs(300)), INVALID_TOKEN_TTL);
        assert_eq!(invalid_ttl(Duration::from_secs(2)), Duration::from_secs(2));
    }

    #[test]
    fn syntax_check() {
        assert!(check_syntax("gAAAAABh-_x").is_ok());
        assert_eq!(
            check_syntax(""),
            Err(AuthError::Unauthorized(UnauthorizedReason::MissingToken))
        );
        for bad in ["has space", "tab\t", "é", &"x".repeat(MAX_TOKEN_LEN + 1)] {
            assert_eq!(
                check_syntax(bad),
                Err(AuthError::Unauthorized(UnauthorizedReason::MalformedToken)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn key_is_a_digest_not_the_token() {
        let key = token_key("secret-token");
        assert_ne!(&key[..], b"secret-token");
        assert_eq!(key, token_key("secret-token"));
        assert_ne!(key, token_key("secret-token2"));
    }

    #[test]
    fn expired_identity_is_refused() {
        let identity = Identity {
            user_id: "u".into(),
            user_name: "n".into(),
            user_domain_id: "default".into(),
            user_domain_name: "Default".into(),
            project_id: Some("p".into()),
            project_name: None,
            project_domain_id: None,
            project_domain_name: None,
            domain_id: None,
            domain_name: None,
            system_scope: None,
            roles: vec![],
            is_admin_project: true,
            expires_at: Utc::now() - TimeDelta::seconds(1),
            issued_at: None,
            audit_ids: vec![],
        };
        let cached = Cached::Valid {
            identity: Arc::new(identity),
            ttl: Duration::from_secs(1),
        };
        assert_eq!(
            answer(cached),
            Err(AuthError::Unauthorized(UnauthorizedReason::ExpiredToken))
        );
    }
}
