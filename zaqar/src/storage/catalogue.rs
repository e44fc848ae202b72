//! The management plane of pooling: the pools, the flavors and the
//! catalogue that maps each queue to the pool holding its messages.
//!
//! A management store (`[drivers] management_store`) implements
//! [`Catalogue`]; the pooled driver ([`super::pooling`]) reads it to route
//! every operation. Pools are global (operators add them); flavors belong
//! to a project and name a set of pools through each pool's `flavor`, as in
//! the reference; the catalogue holds one entry per (project, queue).
//!
//! Everything here is small and bounded: at most [`MAX_POOLS`] pools and
//! [`MAX_FLAVORS_PER_PROJECT`] flavors per project, so listing the pools of
//! a flavor is one bounded read.

use async_trait::async_trait;

use super::{Metadata, Scope, StorageResult};

/// Most pools a deployment may register.
pub const MAX_POOLS: usize = 1000;
/// Most flavors one project may create.
pub const MAX_FLAVORS_PER_PROJECT: usize = 1000;

/// A pool: one store (an SQLite file, a Redis or MongoDB deployment) that
/// holds the messages of the queues mapped to it.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolRecord {
    /// The pool's name (unique).
    pub name: String,
    /// Where its store is (`sqlite://…`, `redis://…`, `mongodb://…`); no two
    /// pools share one.
    pub uri: String,
    /// Relative chance of being picked for a new queue (0: never).
    pub weight: i64,
    /// The flavor it serves; `None` for the pools of queues without one.
    pub flavor: Option<String>,
    /// Options of its driver, overriding the configured ones.
    pub options: Metadata,
}

/// A flavor of a project: a name queues ask for in `_flavor`, served by
/// the pools whose `flavor` is that name.
#[derive(Clone, Debug, PartialEq)]
pub struct FlavorRecord {
    /// The project it belongs to.
    pub project: String,
    /// Its name.
    pub name: String,
    /// What its pools can do (the capabilities of their store kind).
    pub capabilities: Vec<String>,
}

/// The management plane's records (see the module docs).
#[async_trait]
pub trait Catalogue: Send + Sync {
    /// Pools in name order after `marker` (exclusive), at most `limit`.
    async fn list_pools(
        &self,
        marker: Option<&str>,
        limit: usize,
    ) -> StorageResult<Vec<PoolRecord>>;

    /// One pool.
    async fn get_pool(&self, name: &str) -> StorageResult<Option<PoolRecord>>;

    /// Creates or replaces the pool `pool.name`.
    ///
    /// # Errors
    /// [`super::StorageError::Conflict`] when another pool has its URI;
    /// [`super::StorageError::Rejected`] past [`MAX_POOLS`].
    async fn put_pool(&self, pool: &PoolRecord) -> StorageResult<()>;

    /// Deletes a pool (a missing one is not an error).
    async fn delete_pool(&self, name: &str) -> StorageResult<()>;

    /// Every pool serving `flavor` (`None`: the pools without a flavor).
    async fn pools_of_flavor(&self, flavor: Option<&str>) -> StorageResult<Vec<PoolRecord>>;

    /// Flavors of `project` in name order after `marker`, at most `limit`.
    async fn list_flavors(
        &self,
        project: &str,
        marker: Option<&str>,
        limit: usize,
    ) -> StorageResult<Vec<FlavorRecord>>;

    /// One flavor of a project.
    async fn get_flavor(&self, project: &str, name: &str) -> StorageResult<Option<FlavorRecord>>;

    /// Creates or replaces a flavor.
    ///
    /// # Errors
    /// [`super::StorageError::Rejected`] past [`MAX_FLAVORS_PER_PROJECT`].
    async fn put_flavor(&self, flavor: &FlavorRecord) -> StorageResult<()>;

    /// Deletes a flavor (a missing one is not an error).
    async fn delete_flavor(&self, project: &str, name: &str) -> StorageResult<()>;

    /// The pool holding `scope`'s messages, if it is mapped.
    async fn lookup(&self, scope: &Scope) -> StorageResult<Option<String>>;

    /// Maps `scope` to `pool` (replacing any mapping).
    async fn map(&self, scope: &Scope, pool: &str) -> StorageResult<()>;

    /// Forgets `scope`'s mapping.
    async fn unmap(&self, scope: &Scope) -> StorageResult<()>;

    /// How many queues are mapped to `pool`.
    async fn queues_on_pool(&self, pool: &str) -> StorageResult<u64>;
}
