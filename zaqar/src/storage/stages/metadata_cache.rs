//! Queue metadata cache: answers `get` from memory for a short time.
//!
//! Every post, claim, listing and stats request first reads its queue's
//! metadata (limits, default TTL and delay, dead-letter policy); on Redis
//! that is a round trip of its own beside the operation's script. This
//! stage keeps what `get` returned for `ttl_ms` and answers from memory in
//! that window, as the reference caches queue existence for 5 s on MongoDB.
//! (Posts on Redis are spared the round trip without it, with no window:
//! see `storage::redis::metadata_stamp`.)
//!
//! Enable it with
//!
//! ```ini
//! [storage]
//! queue_pipeline = zaqar.stages.metadata_cache
//!
//! [stages:metadata_cache]
//! ttl_ms = 1000
//! max_entries = 10000
//! ```
//!
//! Changes made through this server (create, metadata update, delete)
//! drop the entry at once, so one server always sees its own writes. With
//! several servers, a metadata change or a delete made through another one
//! is seen here up to `ttl_ms` later. Missing queues are never cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::storage::pipeline::{StageContext, StageRegistry};
use crate::storage::{Metadata, QueueStore, Scope, StorageResult};

/// The name to list in `[storage] queue_pipeline`.
pub const NAME: &str = "zaqar.stages.metadata_cache";

/// The configuration section of the stage.
pub const SECTION: &str = "stages:metadata_cache";

/// How long an entry is served when `ttl_ms` is not set.
pub const DEFAULT_TTL_MS: u64 = 1000;

/// How many queues are remembered when `max_entries` is not set.
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

/// A queue stage that serves `get` from memory for a short time.
pub struct MetadataCache {
    next: Arc<dyn QueueStore>,
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<Scope, (Instant, Metadata)>>,
}

impl MetadataCache {
    /// A cache in front of `next`.
    pub fn new(next: Arc<dyn QueueStore>, ttl: Duration, max_entries: usize) -> Self {
        MetadataCache {
            next,
            ttl,
            max_entries: max_entries.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn forget(&self, scope: &Scope) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(scope);
    }
}

#[async_trait]
impl QueueStore for MetadataCache {
    fn next(&self) -> Option<&dyn QueueStore> {
        Some(self.next.as_ref())
    }

    /// This stage's answer, from memory within `ttl_ms` unless `fresh`.
    async fn get_for_write(&self, scope: &Scope, fresh: bool) -> StorageResult<Option<Metadata>> {
        if fresh {
            self.forget(scope);
        }
        self.get(scope).await
    }

    async fn get(&self, scope: &Scope) -> StorageResult<Option<Metadata>> {
        let now = Instant::now();
        if let Some((at, metadata)) = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(scope)
        {
            if now.duration_since(*at) < self.ttl {
                return Ok(Some(metadata.clone()));
            }
        }
        let found = self.next.get(scope).await?;
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match &found {
            Some(metadata) => {
                if entries.len() >= self.max_entries {
                    entries.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
                    if entries.len() >= self.max_entries {
                        entries.clear();
                    }
                }
                entries.insert(scope.clone(), (now, metadata.clone()));
            }
            None => {
                entries.remove(scope);
            }
        }
        Ok(found)
    }

    async fn create(&self, scope: &Scope, metadata: &Metadata) -> StorageResult<bool> {
        self.forget(scope);
        self.next.create(scope, metadata).await
    }

    async fn set_metadata(&self, scope: &Scope, metadata: &Metadata) -> StorageResult<()> {
        self.forget(scope);
        let result = self.next.set_metadata(scope, metadata).await;
        self.forget(scope);
        result
    }

    async fn delete(&self, scope: &Scope) -> StorageResult<()> {
        self.forget(scope);
        let result = self.next.delete(scope).await;
        self.forget(scope);
        result
    }
}

fn option<T: std::str::FromStr>(ctx: &StageContext, name: &str, default: T) -> T {
    let raw = ctx.config.sections.get(SECTION).and_then(|s| s.get(name));
    match raw.map(|v| v.trim().parse::<T>()) {
        None => default,
        Some(Ok(v)) => v,
        Some(Err(_)) => {
            tracing::error!(
                "[{SECTION}] {name}: {:?} is not a number; using the default",
                raw
            );
            default
        }
    }
}

/// The constructor the registry calls when the pipeline is built.
pub fn build(next: Arc<dyn QueueStore>, ctx: &StageContext) -> Arc<dyn QueueStore> {
    let ttl = Duration::from_millis(option(ctx, "ttl_ms", DEFAULT_TTL_MS));
    let max_entries = option(ctx, "max_entries", DEFAULT_MAX_ENTRIES);
    Arc::new(MetadataCache::new(next, ttl, max_entries))
}

/// Registers the stage under [`NAME`].
pub fn register(registry: &mut StageRegistry) {
    registry.register_queue_stage(NAME, build);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::storage::sqlite::SqliteStore;
    use crate::storage::SystemClock;

    fn metadata(v: serde_json::Value) -> Metadata {
        v.as_object().cloned().unwrap()
    }

    #[tokio::test]
    async fn serves_from_memory_and_sees_its_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db"), Arc::new(SystemClock)).unwrap();
        let driver = store.backend().queues;
        let cache = MetadataCache::new(driver.clone(), Duration::from_secs(60), 10);
        let scope = Scope::new("p".to_owned(), "q".to_owned());
        // Missing queues are not cached.
        assert_eq!(cache.get(&scope).await.unwrap(), None);
        driver
            .create(&scope, &metadata(json!({"a": 1})))
            .await
            .unwrap();
        assert_eq!(
            cache.get(&scope).await.unwrap(),
            Some(metadata(json!({"a": 1})))
        );
        // A change behind the cache's back is not seen within the TTL...
        driver
            .set_metadata(&scope, &metadata(json!({"a": 2})))
            .await
            .unwrap();
        assert_eq!(
            cache.get(&scope).await.unwrap(),
            Some(metadata(json!({"a": 1})))
        );
        // ...one through the cache is, at once.
        cache
            .set_metadata(&scope, &metadata(json!({"a": 3})))
            .await
            .unwrap();
        assert_eq!(
            cache.get(&scope).await.unwrap(),
            Some(metadata(json!({"a": 3})))
        );
        cache.delete(&scope).await.unwrap();
        assert_eq!(cache.get(&scope).await.unwrap(), None);
    }

    #[tokio::test]
    async fn entries_expire_and_the_size_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db"), Arc::new(SystemClock)).unwrap();
        let driver = store.backend().queues;
        let cache = MetadataCache::new(driver.clone(), Duration::ZERO, 2);
        let scope = Scope::new("p".to_owned(), "q".to_owned());
        driver
            .create(&scope, &metadata(json!({"a": 1})))
            .await
            .unwrap();
        assert!(cache.get(&scope).await.unwrap().is_some());
        driver
            .set_metadata(&scope, &metadata(json!({"a": 2})))
            .await
            .unwrap();
        // A zero TTL never serves from memory.
        assert_eq!(
            cache.get(&scope).await.unwrap(),
            Some(metadata(json!({"a": 2})))
        );
        for q in ["q1", "q2", "q3"] {
            let s = Scope::new("p".to_owned(), q.to_owned());
            driver.create(&s, &Metadata::new()).await.unwrap();
            cache.get(&s).await.unwrap();
        }
        assert!(cache.entries.lock().unwrap().len() <= 2);
    }
}
