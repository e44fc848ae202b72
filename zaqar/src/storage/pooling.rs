//! Pooling: one Zaqar over many stores, as a driver.
//!
//! [`PooledStore`] implements the same traits as every driver, so the api
//! core does not know whether it talks to one store or many. It keeps the
//! queue records and the catalogue in the management store and routes every
//! message, claim and subscription operation to the pool its queue is
//! mapped to:
//!
//! - **Placement.** A new queue is mapped to a pool by weighted random
//!   choice among the pools of its flavor (`_flavor` metadata; without one,
//!   the pools without a flavor); pools of weight 0 are never picked. With
//!   no pool to pick, the queue is served by the *virtual pool* (the
//!   configured message store) when `[pooling:catalog] enable_virtual_pool`
//!   is on, else it cannot be created (503).
//! - **Flavor changes.** A queue whose `_flavor` changes is moved to a pool
//!   of the new flavor only while it holds no message: its messages are
//!   never left behind on the old pool (the reference re-maps and strands
//!   them). A queue that holds messages answers 409 until it is emptied.
//! - **Dead letters.** A queue and its dead-letter queue must share a pool
//!   (a claim moves messages inside one store): naming a dead-letter queue
//!   maps it to the queue's pool, moving it there while it is empty.
//! - **Unmapped queues** (created before pooling, or before their pool was
//!   reachable) read as empty, as in the reference.
//! - **Pools** open on first use, one driver per pool with its own pipeline
//!   (the configured stages); a pool's options override the configured
//!   driver options. A pool that is down answers 503 for its own queues
//!   only, and recovers without a restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::catalogue::{Catalogue, PoolRecord};
use super::pipeline::Storage;
use super::{
    ClaimInfo, ClaimRequest, ClaimStore, ListQuery, Message, MessagePage, MessageStore, Metadata,
    NewClaim, NewMessage, NewSubscription, Posted, QueueEntry, QueueStats, QueueStore, Scope,
    StorageError, StorageResult, Subscription, SubscriptionStore, SubscriptionUpdate,
};

/// Opens the store of a pool, with its pipeline (blocking I/O allowed: it
/// runs on the blocking pool).
pub type PoolOpener = Arc<dyn Fn(&PoolRecord) -> StorageResult<Storage> + Send + Sync>;

/// Picks a pool by weighted random choice (`draw` in `0..total weight`);
/// pools of weight 0 or less are skipped. `None` when no pool has weight.
pub fn weighted_choice(pools: &[PoolRecord], draw: impl FnOnce(u64) -> u64) -> Option<&PoolRecord> {
    let weight = |p: &PoolRecord| u64::try_from(p.weight).unwrap_or(0);
    let total: u64 = pools.iter().map(weight).fold(0, u64::saturating_add);
    if total == 0 {
        return None;
    }
    let mut x = draw(total).min(total - 1);
    for p in pools {
        let w = weight(p);
        if x < w {
            return Some(p);
        }
        x -= w;
    }
    None
}

/// The pooled driver (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct PooledStore {
    inner: Arc<Inner>,
}

struct Inner {
    catalogue: Arc<dyn Catalogue>,
    management: Arc<dyn QueueStore>,
    virtual_pool: Option<Storage>,
    opener: PoolOpener,
    /// Open pools by name: the record they were opened with, their stores,
    /// and when the record was last read.
    open: Mutex<HashMap<String, OpenPool>>,
}

struct OpenPool {
    record: PoolRecord,
    stores: Storage,
    read_at: Instant,
}

/// How long a pool's record is trusted before it is read again (its weight,
/// flavor or options may have changed through another server). A pool's URI
/// never changes while it holds queues, so a queue is never routed to
/// another store by a stale record.
const RECORD_TTL: Duration = Duration::from_secs(10);

/// The reserved metadata key naming a queue's flavor.
const FLAVOR_KEY: &str = "_flavor";
/// The reserved metadata key naming a queue's dead-letter queue.
const DLQ_KEY: &str = "_dead_letter_queue";

fn flavor_of(metadata: &Metadata) -> Option<&str> {
    metadata
        .get(FLAVOR_KEY)
        .and_then(serde_json::Value::as_str)
        .filter(|f| !f.is_empty())
}

impl PooledStore {
    /// A pooled store over `catalogue` (the management plane) and
    /// `management` (the queue records), opening pools with `opener`;
    /// `virtual_pool` serves queues no pool fits, when enabled.
    pub fn new(
        catalogue: Arc<dyn Catalogue>,
        management: Arc<dyn QueueStore>,
        virtual_pool: Option<Storage>,
        opener: PoolOpener,
    ) -> PooledStore {
        PooledStore {
            inner: Arc::new(Inner {
                catalogue,
                management,
                virtual_pool,
                opener,
                open: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The management plane.
    pub fn catalogue(&self) -> &Arc<dyn Catalogue> {
        &self.inner.catalogue
    }

    /// The stores of pool `record`, opened on first use (and again when its
    /// URI or options changed).
    pub async fn stores(&self, record: &PoolRecord) -> StorageResult<Storage> {
        {
            let mut open = self.inner.open.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(known) = open.get_mut(&record.name) {
                if known.record.uri == record.uri && known.record.options == record.options {
                    known.record = record.clone();
                    known.read_at = Instant::now();
                    return Ok(known.stores.clone());
                }
            }
        }
        let opener = self.inner.opener.clone();
        let r = record.clone();
        let stores = tokio::task::spawn_blocking(move || opener(&r))
            .await
            .map_err(|e| {
                StorageError::Unavailable(format!("opening pool {}: {e}", record.name))
            })??;
        let mut open = self.inner.open.lock().unwrap_or_else(|e| e.into_inner());
        open.insert(
            record.name.clone(),
            OpenPool {
                record: record.clone(),
                stores: stores.clone(),
                read_at: Instant::now(),
            },
        );
        Ok(stores)
    }

    /// The stores of the pool named `name`: from the open pools while its
    /// record is fresh, else from the catalogue.
    async fn stores_named(&self, name: &str, queue: &str) -> StorageResult<Storage> {
        {
            let open = self.inner.open.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(known) = open.get(name).filter(|o| o.read_at.elapsed() < RECORD_TTL) {
                return Ok(known.stores.clone());
            }
        }
        let record = self.inner.catalogue.get_pool(name).await?.ok_or_else(|| {
            StorageError::Unavailable(format!("queue {queue} is mapped to a missing pool {name}"))
        })?;
        self.stores(&record).await
    }

    /// Forgets the open driver of a pool (deleted or changed).
    pub fn forget(&self, pool: &str) {
        let mut open = self.inner.open.lock().unwrap_or_else(|e| e.into_inner());
        open.remove(pool);
    }

    /// Whether a store at `uri` with `options` answers (a pool's URI is
    /// checked before it is registered).
    pub async fn reachable(&self, record: &PoolRecord) -> bool {
        let opener = self.inner.opener.clone();
        let r = record.clone();
        let opened = tokio::task::spawn_blocking(move || opener(&r)).await;
        match opened {
            Ok(Ok(stores)) => stores.queues.is_alive().await,
            Ok(Err(e)) => {
                tracing::info!(pool = %record.name, error = %e, "pool store cannot be opened");
                false
            }
            Err(_) => false,
        }
    }

    /// The stores serving `scope`: its pool's, the virtual pool's when it is
    /// not mapped (and that is enabled), else none.
    async fn route(&self, scope: &Scope) -> StorageResult<Option<Storage>> {
        match self.inner.catalogue.lookup(scope).await? {
            Some(name) => self.stores_named(&name, &scope.queue).await.map(Some),
            None => Ok(self.inner.virtual_pool.clone()),
        }
    }

    /// The pool a new queue of `project` with `flavor` goes to; `None` for
    /// the virtual pool.
    ///
    /// # Errors
    /// [`StorageError::Rejected`] for a flavor the project does not have;
    /// [`StorageError::Unavailable`] when no pool fits and there is no
    /// virtual pool.
    async fn place(
        &self,
        project: &str,
        flavor: Option<&str>,
    ) -> StorageResult<Option<PoolRecord>> {
        if let Some(f) = flavor {
            if self.inner.catalogue.get_flavor(project, f).await?.is_none() {
                return Err(StorageError::Rejected(format!("Flavor {f} does not exist")));
            }
        }
        let pools = self.inner.catalogue.pools_of_flavor(flavor).await?;
        let picked = weighted_choice(&pools, fastrand_below).cloned();
        match picked {
            Some(p) => Ok(Some(p)),
            None if self.inner.virtual_pool.is_some() => Ok(None),
            None => Err(StorageError::Unavailable(
                "no pool can take a new queue (none of its flavor, or all of weight 0)".into(),
            )),
        }
    }

    /// Whether `scope` holds no message and no subscription in `stores`.
    async fn is_empty(stores: &Storage, scope: &Scope) -> StorageResult<bool> {
        if stores.messages.stats(scope).await?.total > 0 {
            return Ok(false);
        }
        match stores.subscriptions.list(scope, None, 1).await {
            Ok(subs) => Ok(subs.is_empty()),
            Err(StorageError::NotImplemented(_)) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Maps `scope` to `pool` (`None`: unmapped, the virtual pool), moving
    /// it only while it is empty where it is now.
    async fn move_to(&self, scope: &Scope, pool: Option<&PoolRecord>) -> StorageResult<()> {
        let now = self.inner.catalogue.lookup(scope).await?;
        if now.as_deref() == pool.map(|p| p.name.as_str()) {
            return Ok(());
        }
        if let Some(current) = self.route(scope).await? {
            if !Self::is_empty(&current, scope).await? {
                return Err(StorageError::Conflict(format!(
                    "Queue {} holds messages or subscriptions on its pool; it can move to another pool \
                     (a new flavor, or next to its dead-letter queue) only while it is empty.",
                    scope.queue
                )));
            }
        }
        match pool {
            Some(p) => self.inner.catalogue.map(scope, &p.name).await,
            None => self.inner.catalogue.unmap(scope).await,
        }
    }

    /// Places the dead-letter queue `metadata` names in the pool of `scope`.
    async fn colocate_dead_letters(&self, scope: &Scope, metadata: &Metadata) -> StorageResult<()> {
        let Some(dlq) = metadata.get(DLQ_KEY).and_then(serde_json::Value::as_str) else {
            return Ok(());
        };
        if dlq.is_empty() || dlq == scope.queue {
            return Ok(());
        }
        let pool = match self.inner.catalogue.lookup(scope).await? {
            Some(name) => self.inner.catalogue.get_pool(&name).await?,
            None => None,
        };
        let target = Scope::new(scope.project.as_str(), dlq);
        self.move_to(&target, pool.as_ref()).await.map_err(|e| match e {
            StorageError::Conflict(_) => StorageError::Rejected(format!(
                "The dead-letter queue {dlq} holds messages in another pool than {}; a queue and its \
                 dead-letter queue must share a pool.",
                scope.queue
            )),
            other => other,
        })
    }
}

/// A uniformly random number below `n` (`n > 0`).
fn fastrand_below(n: u64) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..8]);
    u64::from_le_bytes(bytes) % n
}

#[async_trait]
impl QueueStore for PooledStore {
    async fn create(&self, scope: &Scope, metadata: &Metadata) -> StorageResult<bool> {
        if self.inner.management.get(scope).await?.is_some() {
            return Ok(false);
        }
        if self.inner.catalogue.lookup(scope).await?.is_none() {
            if let Some(pool) = self.place(&scope.project, flavor_of(metadata)).await? {
                self.inner.catalogue.map(scope, &pool.name).await?;
            }
        }
        self.colocate_dead_letters(scope, metadata).await?;
        self.inner.management.create(scope, metadata).await
    }

    async fn get(&self, scope: &Scope) -> StorageResult<Option<Metadata>> {
        self.inner.management.get(scope).await
    }

    async fn set_metadata(&self, scope: &Scope, metadata: &Metadata) -> StorageResult<()> {
        let Some(old) = self.inner.management.get(scope).await? else {
            return Err(StorageError::QueueNotFound);
        };
        let (was, is) = (flavor_of(&old), flavor_of(metadata));
        if was != is {
            let current = match self.inner.catalogue.lookup(scope).await? {
                Some(name) => self.inner.catalogue.get_pool(&name).await?,
                None => None,
            };
            if current.as_ref().map(|p| p.flavor.as_deref()) != Some(is) {
                let target = self.place(&scope.project, is).await?;
                self.move_to(scope, target.as_ref()).await?;
            }
        }
        self.colocate_dead_letters(scope, metadata).await?;
        self.inner.management.set_metadata(scope, metadata).await
    }

    async fn delete(&self, scope: &Scope) -> StorageResult<()> {
        self.inner.management.delete(scope).await?;
        self.inner.catalogue.unmap(scope).await
    }

    async fn list(
        &self,
        project: &str,
        marker: Option<&str>,
        limit: usize,
        detailed: bool,
    ) -> StorageResult<Vec<QueueEntry>> {
        self.inner
            .management
            .list(project, marker, limit, detailed)
            .await
    }

    async fn count(&self, project: &str) -> StorageResult<u64> {
        self.inner.management.count(project).await
    }

    async fn is_alive(&self) -> bool {
        self.inner.management.is_alive().await
    }
}

#[async_trait]
impl MessageStore for PooledStore {
    async fn post(
        &self,
        scope: &Scope,
        client_id: &str,
        messages: Vec<NewMessage>,
    ) -> StorageResult<Posted> {
        match self.route(scope).await? {
            Some(s) => s.messages.post(scope, client_id, messages).await,
            None => Err(StorageError::QueueNotFound),
        }
    }

    async fn list(&self, scope: &Scope, query: &ListQuery) -> StorageResult<MessagePage> {
        match self.route(scope).await? {
            Some(s) => s.messages.list(scope, query).await,
            None => Ok(MessagePage::default()),
        }
    }

    async fn get(&self, scope: &Scope, id: &str) -> StorageResult<Option<Message>> {
        match self.route(scope).await? {
            Some(s) => s.messages.get(scope, id).await,
            None => Ok(None),
        }
    }

    async fn marker_of(&self, scope: &Scope, id: &str) -> StorageResult<Option<String>> {
        match self.route(scope).await? {
            Some(s) => s.messages.marker_of(scope, id).await,
            None => Ok(None),
        }
    }

    async fn bulk_get(&self, scope: &Scope, ids: &[String]) -> StorageResult<Vec<Message>> {
        match self.route(scope).await? {
            Some(s) => s.messages.bulk_get(scope, ids).await,
            None => Ok(Vec::new()),
        }
    }

    async fn delete(&self, scope: &Scope, id: &str, claim_id: Option<&str>) -> StorageResult<()> {
        match self.route(scope).await? {
            Some(s) => s.messages.delete(scope, id, claim_id).await,
            None => Ok(()),
        }
    }

    async fn bulk_delete(
        &self,
        scope: &Scope,
        ids: &[String],
        claim_ids: Option<&[String]>,
    ) -> StorageResult<()> {
        match self.route(scope).await? {
            Some(s) => s.messages.bulk_delete(scope, ids, claim_ids).await,
            None => Ok(()),
        }
    }

    async fn pop(&self, scope: &Scope, limit: usize) -> StorageResult<Vec<Message>> {
        match self.route(scope).await? {
            Some(s) => s.messages.pop(scope, limit).await,
            None => Ok(Vec::new()),
        }
    }

    async fn stats(&self, scope: &Scope) -> StorageResult<QueueStats> {
        match self.route(scope).await? {
            Some(s) => s.messages.stats(scope).await,
            None => Ok(QueueStats::default()),
        }
    }

    async fn purge(&self, scope: &Scope) -> StorageResult<()> {
        match self.route(scope).await? {
            Some(s) => s.messages.purge(scope).await,
            None => Ok(()),
        }
    }
}

#[async_trait]
impl ClaimStore for PooledStore {
    async fn create(
        &self,
        scope: &Scope,
        request: &ClaimRequest,
    ) -> StorageResult<Option<NewClaim>> {
        match self.route(scope).await? {
            Some(s) => s.claims.create(scope, request).await,
            None => Ok(None),
        }
    }

    async fn get(&self, scope: &Scope, claim_id: &str) -> StorageResult<Option<ClaimInfo>> {
        match self.route(scope).await? {
            Some(s) => s.claims.get(scope, claim_id).await,
            None => Ok(None),
        }
    }

    async fn update(
        &self,
        scope: &Scope,
        claim_id: &str,
        ttl: i64,
        grace: i64,
    ) -> StorageResult<()> {
        match self.route(scope).await? {
            Some(s) => s.claims.update(scope, claim_id, ttl, grace).await,
            None => Err(StorageError::ClaimNotFound),
        }
    }

    async fn delete(&self, scope: &Scope, claim_id: &str) -> StorageResult<()> {
        match self.route(scope).await? {
            Some(s) => s.claims.delete(scope, claim_id).await,
            None => Ok(()),
        }
    }
}

#[async_trait]
impl SubscriptionStore for PooledStore {
    async fn list(
        &self,
        scope: &Scope,
        marker: Option<&str>,
        limit: usize,
    ) -> StorageResult<Vec<Subscription>> {
        match self.route(scope).await? {
            Some(s) => s.subscriptions.list(scope, marker, limit).await,
            None => Ok(Vec::new()),
        }
    }

    async fn list_confirmed(
        &self,
        scope: &Scope,
        marker: Option<&str>,
        limit: usize,
    ) -> StorageResult<Vec<Subscription>> {
        match self.route(scope).await? {
            Some(s) => s.subscriptions.list_confirmed(scope, marker, limit).await,
            None => Ok(Vec::new()),
        }
    }

    async fn get(&self, scope: &Scope, id: &str) -> StorageResult<Option<Subscription>> {
        match self.route(scope).await? {
            Some(s) => s.subscriptions.get(scope, id).await,
            None => Ok(None),
        }
    }

    async fn get_with_subscriber(
        &self,
        scope: &Scope,
        subscriber: &str,
    ) -> StorageResult<Option<Subscription>> {
        match self.route(scope).await? {
            Some(s) => s.subscriptions.get_with_subscriber(scope, subscriber).await,
            None => Ok(None),
        }
    }

    async fn create(
        &self,
        scope: &Scope,
        subscription: &NewSubscription,
    ) -> StorageResult<Option<String>> {
        match self.route(scope).await? {
            Some(s) => s.subscriptions.create(scope, subscription).await,
            None => Err(StorageError::QueueNotFound),
        }
    }

    async fn update(
        &self,
        scope: &Scope,
        id: &str,
        update: &SubscriptionUpdate,
    ) -> StorageResult<()> {
        match self.route(scope).await? {
            Some(s) => s.subscriptions.update(scope, id, update).await,
            None => Err(StorageError::SubscriptionNotFound),
        }
    }

    async fn delete(&self, scope: &Scope, id: &str) -> StorageResult<()> {
        match self.route(scope).await? {
            Some(s) => s.subscriptions.delete(scope, id).await,
            None => Ok(()),
        }
    }

    async fn confirm(&self, scope: &Scope, id: &str, confirmed: bool) -> StorageResult<()> {
        match self.route(scope).await? {
            Some(s) => s.subscriptions.confirm(scope, id, confirmed).await,
            None => Err(StorageError::SubscriptionNotFound),
        }
    }

    async fn purge(&self, scope: &Scope) -> StorageResult<()> {
        match self.route(scope).await? {
            Some(s) => s.subscriptions.purge(scope).await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, weight: i64) -> PoolRecord {
        PoolRecord {
            name: name.into(),
            uri: format!("sqlite:///{name}"),
            weight,
            flavor: None,
            options: Metadata::new(),
        }
    }

    #[test]
    fn weighted_choice_follows_weights_and_skips_zero() {
        let pools = [pool("a", 1), pool("zero", 0), pool("b", 3)];
        let pick = |x: u64| {
            weighted_choice(&pools, |total| {
                assert_eq!(total, 4);
                x
            })
            .map(|p| p.name.clone())
        };
        assert_eq!(pick(0).as_deref(), Some("a"));
        for x in 1..4 {
            assert_eq!(pick(x).as_deref(), Some("b"));
        }
        assert!(weighted_choice(&[pool("z", 0), pool("n", -5)], |_| 0).is_none());
        assert!(weighted_choice(&[], |_| 0).is_none());
        // Huge weights do not overflow.
        let big = [pool("x", i64::MAX), pool("y", i64::MAX)];
        assert!(weighted_choice(&big, |t| t - 1).is_some());
    }

    #[test]
    fn random_draws_spread_over_the_weights() {
        let pools = [pool("a", 1), pool("b", 3)];
        let mut b = 0;
        for _ in 0..4000 {
            if weighted_choice(&pools, fastrand_below).unwrap().name == "b" {
                b += 1;
            }
        }
        // 3/4 expected: 3000 ± a wide margin (binomial sd ≈ 27).
        assert!((2700..3300).contains(&b), "{b}");
    }
}
