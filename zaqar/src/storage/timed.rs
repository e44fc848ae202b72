//! A stage in front of a driver that times its queue, message and claim
//! operations into `zaqar_storage_operation_duration_seconds{driver, pool,
//! operation, outcome}` ([`crate::metrics`]; `pool` is empty outside
//! pooling). Subscriptions and the outbox
//! are not timed (they are off the request path of the API's hot
//! operations); every other call goes straight to the driver.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::pipeline::Backend;
use super::{
    ClaimInfo, ClaimRequest, ClaimStore, ListQuery, Message, MessagePage, MessageStore, Metadata,
    NewClaim, NewMessage, Posted, QueueEntry, QueueStats, QueueStore, Scope, StorageResult,
};

/// The driver's stores, each behind a timer labelled `driver`.
pub fn wrap(backend: Backend, driver: &'static str) -> Backend {
    wrap_pool(backend, driver, "")
}

/// The stores of the pool `pool`, each behind a timer labelled `driver`
/// and `pool`.
pub fn wrap_pool(backend: Backend, driver: &'static str, pool: &str) -> Backend {
    let pool: Arc<str> = Arc::from(pool);
    Backend {
        queues: Arc::new(Timed {
            driver,
            pool: pool.clone(),
            inner: backend.queues.clone(),
        }),
        messages: Arc::new(Timed {
            driver,
            pool: pool.clone(),
            inner: backend.messages.clone(),
        }),
        claims: Arc::new(Timed {
            driver,
            pool,
            inner: backend.claims.clone(),
        }),
        ..backend
    }
}

/// One store behind a timer.
struct Timed<S: ?Sized> {
    driver: &'static str,
    pool: Arc<str>,
    inner: Arc<S>,
}

impl<S: ?Sized> Timed<S> {
    async fn time<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = StorageResult<T>>,
    ) -> StorageResult<T> {
        let started = Instant::now();
        let result = call.await;
        crate::metrics::global().storage_op(
            self.driver,
            &self.pool,
            operation,
            result.is_ok(),
            started.elapsed(),
        );
        result
    }
}

#[async_trait]
impl QueueStore for Timed<dyn QueueStore> {
    fn next(&self) -> Option<&dyn QueueStore> {
        Some(&*self.inner)
    }
    async fn create(&self, scope: &Scope, metadata: &Metadata) -> StorageResult<bool> {
        self.time("queue_create", self.inner.create(scope, metadata))
            .await
    }
    async fn get(&self, scope: &Scope) -> StorageResult<Option<Metadata>> {
        self.time("queue_get", self.inner.get(scope)).await
    }
    async fn get_for_write(&self, scope: &Scope, fresh: bool) -> StorageResult<Option<Metadata>> {
        self.time("queue_get", self.inner.get_for_write(scope, fresh))
            .await
    }
    async fn set_metadata(&self, scope: &Scope, metadata: &Metadata) -> StorageResult<()> {
        self.time(
            "queue_set_metadata",
            self.inner.set_metadata(scope, metadata),
        )
        .await
    }
    async fn delete(&self, scope: &Scope) -> StorageResult<()> {
        self.time("queue_delete", self.inner.delete(scope)).await
    }
    async fn list(
        &self,
        project: &str,
        marker: Option<&str>,
        limit: usize,
        detailed: bool,
    ) -> StorageResult<Vec<QueueEntry>> {
        self.time(
            "queue_list",
            self.inner.list(project, marker, limit, detailed),
        )
        .await
    }
    async fn count(&self, project: &str) -> StorageResult<u64> {
        self.time("queue_count", self.inner.count(project)).await
    }
}

#[async_trait]
impl MessageStore for Timed<dyn MessageStore> {
    fn next(&self) -> Option<&dyn MessageStore> {
        Some(&*self.inner)
    }
    async fn post(
        &self,
        scope: &Scope,
        client_id: &str,
        messages: Vec<NewMessage>,
    ) -> StorageResult<Posted> {
        self.time("message_post", self.inner.post(scope, client_id, messages))
            .await
    }
    async fn list(&self, scope: &Scope, query: &ListQuery) -> StorageResult<MessagePage> {
        self.time("message_list", self.inner.list(scope, query))
            .await
    }
    async fn get(&self, scope: &Scope, id: &str) -> StorageResult<Option<Message>> {
        self.time("message_get", self.inner.get(scope, id)).await
    }
    async fn bulk_get(&self, scope: &Scope, ids: &[String]) -> StorageResult<Vec<Message>> {
        self.time("message_bulk_get", self.inner.bulk_get(scope, ids))
            .await
    }
    async fn delete(&self, scope: &Scope, id: &str, claim_id: Option<&str>) -> StorageResult<()> {
        self.time("message_delete", self.inner.delete(scope, id, claim_id))
            .await
    }
    async fn bulk_delete(
        &self,
        scope: &Scope,
        ids: &[String],
        claim_ids: Option<&[String]>,
    ) -> StorageResult<()> {
        self.time(
            "message_bulk_delete",
            self.inner.bulk_delete(scope, ids, claim_ids),
        )
        .await
    }
    async fn pop(&self, scope: &Scope, limit: usize) -> StorageResult<Vec<Message>> {
        self.time("message_pop", self.inner.pop(scope, limit)).await
    }
    async fn stats(&self, scope: &Scope) -> StorageResult<QueueStats> {
        self.time("message_stats", self.inner.stats(scope)).await
    }
    async fn purge(&self, scope: &Scope) -> StorageResult<()> {
        self.time("message_purge", self.inner.purge(scope)).await
    }
}

#[async_trait]
impl ClaimStore for Timed<dyn ClaimStore> {
    fn next(&self) -> Option<&dyn ClaimStore> {
        Some(&*self.inner)
    }
    async fn create(
        &self,
        scope: &Scope,
        request: &ClaimRequest,
    ) -> StorageResult<Option<NewClaim>> {
        self.time("claim_create", self.inner.create(scope, request))
            .await
    }
    async fn get(&self, scope: &Scope, claim_id: &str) -> StorageResult<Option<ClaimInfo>> {
        self.time("claim_get", self.inner.get(scope, claim_id))
            .await
    }
    async fn update(
        &self,
        scope: &Scope,
        claim_id: &str,
        ttl: i64,
        grace: i64,
    ) -> StorageResult<()> {
        self.time(
            "claim_update",
            self.inner.update(scope, claim_id, ttl, grace),
        )
        .await
    }
    async fn delete(&self, scope: &Scope, claim_id: &str) -> StorageResult<()> {
        self.time("claim_delete", self.inner.delete(scope, claim_id))
            .await
    }
}
