//! The notification outbox: deliveries waiting to reach a subscriber.
//!
//! The notifier stage writes one row per (posted message, subscriber) right
//! after the messages are stored, and returns. Delivery workers
//! ([`crate::notification`]) lease due rows, try them, and then either
//! [`Outbox::complete`] them (delivered, or given up for good) or put them
//! back with a later due time ([`Outbox::retry_at`]). A row leaves the outbox
//! only through `complete`, so a delivery that was in flight when the server
//! stopped is tried again after the restart: every delivery happens *at
//! least once*.
//!
//! A lease makes a row invisible to other workers until it runs out; a
//! worker that dies mid-delivery (or a process that is killed) therefore
//! only delays the row by the lease time.
//!
//! A lease shares the delivery workers out among projects ([`FairShare`]):
//! a project gets at most so many deliveries in flight, and the due
//! deliveries of every project are taken in turn, so one tenant whose
//! subscribers hang (or who fans out to thousands of them) cannot make the
//! others wait behind it.
//!
//! The trait is small on purpose so that every backend can keep its
//! deliveries where it keeps its messages (SQLite: a table indexed by
//! project and due time; Redis: a sorted set by due time per project, and
//! one of the projects by their oldest due delivery).

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::Value;

use super::{Metadata, StorageResult};

/// A delivery to be queued: what to send, to whom, with which options.
///
/// The subscription is copied in (subscriber and options as they were when
/// the message was posted), so a delivery does not depend on the
/// subscription still existing when it is tried.
#[derive(Clone, Debug, PartialEq)]
pub struct NewDelivery {
    /// Project of the queue.
    pub project: String,
    /// Queue the message was posted to.
    pub queue: String,
    /// Id of the subscription it is for.
    pub subscription_id: String,
    /// Subscriber URI.
    pub subscriber: String,
    /// Subscription options (post_data, post_headers, _retry_policy, ...).
    pub options: Metadata,
    /// The queue's `_retry_policy`, when it has one.
    pub queue_retry_policy: Option<Value>,
    /// The notification document (see [`crate::notification`]).
    pub payload: Value,
}

/// A leased delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// Outbox id (opaque).
    pub id: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it was queued, ms since the epoch.
    pub created_ms: i64,
    /// What to deliver.
    pub delivery: NewDelivery,
}

/// How one lease shares the delivery workers out among projects.
#[derive(Clone, Debug)]
pub struct FairShare {
    /// Deliveries of one project in flight at most, those in
    /// [`FairShare::in_flight`] included.
    pub per_project: usize,
    /// Deliveries of each project in flight now (leased and not yet
    /// completed or rescheduled, by this server).
    pub in_flight: HashMap<String, usize>,
}

impl FairShare {
    /// No cap: any number of deliveries of one project.
    pub fn unlimited() -> Self {
        FairShare {
            per_project: usize::MAX,
            in_flight: HashMap::new(),
        }
    }

    /// How many deliveries of `project` a lease of `limit` may take.
    pub fn quota(&self, project: &str, limit: usize) -> usize {
        let busy = self.in_flight.get(project).copied().unwrap_or(0);
        self.per_project.saturating_sub(busy).min(limit)
    }
}

/// Durable queue of pending deliveries.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Queues deliveries, due now.
    async fn enqueue(&self, deliveries: Vec<NewDelivery>) -> StorageResult<()>;

    /// Leases up to `limit` due deliveries for `lease_ms`: no other call
    /// returns them until the lease runs out or the row is rescheduled.
    /// At most [`FairShare::quota`] of them belong to one project, and the
    /// projects take turns: every project with a due delivery and a quota
    /// gets its oldest one before any gets a second (when more projects
    /// are due than `limit`, those whose oldest due delivery waited longest
    /// come first); within a project, oldest due first.
    async fn lease_fair(
        &self,
        limit: usize,
        lease_ms: i64,
        share: &FairShare,
    ) -> StorageResult<Vec<Delivery>>;

    /// [`Outbox::lease_fair`] without a cap per project.
    async fn lease_due(&self, limit: usize, lease_ms: i64) -> StorageResult<Vec<Delivery>> {
        self.lease_fair(limit, lease_ms, &FairShare::unlimited())
            .await
    }

    /// Removes a delivery for good (delivered, or retries exhausted).
    async fn complete(&self, id: &str) -> StorageResult<()>;

    /// Records a failed attempt: the delivery is due again at `due_ms`
    /// with `attempts` failed attempts, and its lease is dropped.
    async fn retry_at(&self, id: &str, attempts: u32, due_ms: i64) -> StorageResult<()>;

    /// When the next delivery becomes due (leases counted), `None` when the
    /// outbox is empty.
    async fn next_due_ms(&self) -> StorageResult<Option<i64>>;

    /// How many deliveries the outbox holds (for `/metrics`); `None` for a
    /// store that cannot count them cheaply.
    async fn depth(&self) -> StorageResult<Option<u64>> {
        Ok(None)
    }
}
