//! Storage: the traits every driver implements and the records they exchange.
//!
//! There is one trait per resource (queues, messages, claims,
//! subscriptions), as in the reference. Each trait is also the shape of a *pipeline stage*: a stage is a
//! type that implements the same trait, returns the store after it from
//! [`QueueStore::next`] (and friends), and overrides only the operations it
//! cares about. Every method has a default body that forwards to `next()`,
//! so a stage can act before an operation, after it (call `next()` itself and
//! look at the result), or answer it alone. A driver sits at the end of the
//! pipeline: it has no `next()` and implements every method. See
//! [`pipeline`] for how stages are named in `zaqar.conf` and assembled.
//!
//! Every record is scoped by a [`Scope`] (project id + queue name): a driver
//! must never let one project see another's queue, message or claim.

pub mod catalogue;
pub mod clock;
pub mod deadline;
pub mod encryption;
pub mod engines;
pub mod group_commit;
#[cfg(feature = "mongodb")]
pub mod mongodb;
pub mod names;
pub mod outbox;
pub mod pipeline;
pub mod pooling;
#[cfg(feature = "redis")]
pub mod redis;
pub mod sqlite;
pub mod stages;
pub mod timed;
pub mod validated;
pub mod wake;

#[cfg(test)]
pub(crate) mod conformance;
#[cfg(test)]
pub(crate) mod subscription_conformance;

use async_trait::async_trait;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

pub use clock::{Clock, SystemClock};

/// Queue metadata: a JSON object, keys in the order the client sent them.
pub type Metadata = Map<String, Value>;

/// The project and queue an operation acts on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    /// Keystone project id (or the `X-Project-ID` header in noauth mode).
    pub project: String,
    /// Queue name, already validated by the api core.
    pub queue: String,
}

impl Scope {
    /// Builds a scope from its two parts.
    pub fn new(project: impl Into<String>, queue: impl Into<String>) -> Self {
        Scope {
            project: project.into(),
            queue: queue.into(),
        }
    }
}

/// A new random id (a v4 UUID, hyphenated, lower case): messages', claims' and
/// (after `req-`) requests' ids.
pub fn new_id() -> String {
    let mut buf = uuid::Uuid::encode_buffer();
    uuid::Uuid::new_v4()
        .hyphenated()
        .encode_lower(&mut buf)
        .to_owned()
}

/// A queue as listed: its name and, when asked for, its stored metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueEntry {
    /// Queue name.
    pub name: String,
    /// Stored metadata; `None` when the listing was not detailed.
    pub metadata: Option<Metadata>,
}

/// A message to be stored, after the api core applied defaults and validation.
#[derive(Clone, Debug)]
pub struct NewMessage {
    /// Time to live in seconds (60..=max_message_ttl).
    pub ttl: i64,
    /// Seconds during which the message is invisible to claims (delay queues).
    pub delay: i64,
    /// The message body, exactly as the client sent it (any JSON value).
    pub body: Box<RawValue>,
    /// `MD5:<hex>` when `enable_checksum` is on.
    pub checksum: Option<String>,
}

/// What a post stored.
#[derive(Clone, Debug, Default)]
pub struct Posted {
    /// The new messages' ids, in the order the messages were given.
    pub ids: Vec<String>,
    /// Who was subscribed to the queue when the messages were stored, for
    /// stores that can tell at no extra cost (Redis reads it in the post's
    /// script, SQLite in its transaction); `None` makes the notifier look
    /// the subscriptions up.
    pub subscribed: Option<Subscribed>,
    /// The store already announced the post to the other server processes
    /// (Redis: the post's script published the long-poll wake-up), so the
    /// api core does not publish it again.
    pub woke_others: bool,
}

/// Who a post found subscribed to its queue (see [`Posted::subscribed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscribed {
    /// No live subscription.
    Nobody,
    /// Live subscriptions, none of them confirmed: with
    /// `require_confirmation` nobody is to be notified.
    Unconfirmed,
    /// Live subscriptions, some confirmed (or a store that cannot tell
    /// which: it says so rather than risk a missed notification).
    Confirmed,
}

impl Subscribed {
    /// From whether there are live subscriptions and whether some of them
    /// are confirmed.
    pub fn from_flags(live: bool, confirmed: bool) -> Self {
        match (live, confirmed) {
            (false, _) => Subscribed::Nobody,
            (true, false) => Subscribed::Unconfirmed,
            (true, true) => Subscribed::Confirmed,
        }
    }

    /// Whether a post's notifications reach anyone, given the deployment's
    /// `require_confirmation`.
    pub fn notifies(self, require_confirmation: bool) -> bool {
        match self {
            Subscribed::Nobody => false,
            Subscribed::Unconfirmed => !require_confirmation,
            Subscribed::Confirmed => true,
        }
    }
}

/// A stored message as read back.
#[derive(Clone, Debug)]
pub struct Message {
    /// Message id (opaque to clients; unique within the whole store).
    pub id: String,
    /// Time to live in seconds as stored (a claim may have extended it).
    pub ttl: i64,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// The body as posted.
    pub body: Box<RawValue>,
    /// The live claim holding the message, if any.
    pub claim_id: Option<String>,
    /// How many claims picked this message up (only counted for queues
    /// with a dead-letter policy).
    pub claim_count: i64,
    /// `MD5:<hex>` when the message was stored with a checksum.
    pub checksum: Option<String>,
}

impl Message {
    /// Whole seconds since the message was created, as of `now_ms`.
    pub fn age(&self, now_ms: i64) -> i64 {
        ((now_ms - self.created_ms) / 1000).max(0)
    }
}

/// What `GET /v2/queues/{q}/messages` asks for.
#[derive(Clone, Debug)]
pub struct ListQuery {
    /// Opaque marker returned by the previous page (exclusive).
    pub marker: Option<String>,
    /// Page size (1..=max_messages_per_page).
    pub limit: usize,
    /// Return the caller's own messages too.
    pub echo: bool,
    /// The caller's Client-ID, compared against each message's when `echo` is false.
    pub client_id: String,
    /// Include messages held by a live claim.
    pub include_claimed: bool,
    /// Include messages whose delay has not elapsed.
    pub include_delayed: bool,
}

/// One page of messages and the marker for the next one.
#[derive(Clone, Debug, Default)]
pub struct MessagePage {
    /// The messages, in insertion order.
    pub messages: Vec<Message>,
    /// Marker to pass back for the next page; `None` when the page is empty.
    pub next_marker: Option<String>,
}

/// The oldest or newest message of a queue, as shown in stats.
#[derive(Clone, Debug, PartialEq)]
pub struct MessageStamp {
    /// Message id.
    pub id: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: i64,
}

/// Message counts of one queue.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueStats {
    /// Messages held by a live claim.
    pub claimed: u64,
    /// Messages not claimed (delayed ones included).
    pub free: u64,
    /// claimed + free.
    pub total: u64,
    /// Oldest live message, when there is one.
    pub oldest: Option<MessageStamp>,
    /// Newest live message, when there is one.
    pub newest: Option<MessageStamp>,
}

/// Message counts of a whole store, for the health document
/// (`message_volume`, which the reference reports for MongoDB).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MessageVolume {
    /// Live messages not held by a live claim.
    pub free: u64,
    /// Live messages held by a live claim.
    pub claimed: u64,
    /// Every live message.
    pub total: u64,
}

/// Dead-letter policy of a queue (`_max_claim_count` + `_dead_letter_queue`).
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// A message already claimed this many times moves instead of being claimed again.
    pub max_claim_count: i64,
    /// Queue (same project) receiving the moved messages.
    pub queue: String,
    /// New TTL written on moved messages (`_dead_letter_queue_messages_ttl`).
    pub ttl: Option<i64>,
}

/// Parameters of a new claim.
#[derive(Clone, Debug)]
pub struct ClaimRequest {
    /// Claim lifetime in seconds.
    pub ttl: i64,
    /// Extra seconds a claimed message lives past the claim's end.
    pub grace: i64,
    /// Maximum number of messages to claim.
    pub limit: usize,
    /// Dead-letter policy of the queue, if it has one.
    pub dead_letter: Option<DeadLetter>,
}

/// A claim just created.
#[derive(Clone, Debug)]
pub struct NewClaim {
    /// Claim id.
    pub id: String,
    /// The messages it won, oldest first. Never empty.
    pub messages: Vec<Message>,
}

/// A live claim as read back.
#[derive(Clone, Debug)]
pub struct ClaimInfo {
    /// Claim id.
    pub id: String,
    /// Claim TTL in seconds (as last set).
    pub ttl: i64,
    /// When the claim was created or last renewed, ms since the epoch.
    pub updated_ms: i64,
    /// The live messages it holds.
    pub messages: Vec<Message>,
}

/// A subscription as stored: who gets the messages posted to a queue.
#[derive(Clone, Debug, PartialEq)]
pub struct Subscription {
    /// Subscription id (a UUID).
    pub id: String,
    /// The queue it listens to (the reference calls it `source`).
    pub source: String,
    /// Where notifications go: `http(s)://…`, `mailto:…`, `trust+http(s)://…`.
    pub subscriber: String,
    /// Lifetime in seconds, as last set.
    pub ttl: i64,
    /// When the subscription ends, ms since the epoch (`ttl` after it was
    /// created or its ttl last changed).
    pub expires_ms: i64,
    /// Options (`post_data`, `post_headers`, `_retry_policy`, `from`, ...).
    pub options: Metadata,
    /// Whether the subscriber confirmed (always false when created).
    pub confirmed: bool,
}

impl Subscription {
    /// Seconds since the subscription started (or its ttl was last reset),
    /// as the reference computes it: `now - (expires - ttl)`.
    pub fn age(&self, now_ms: i64) -> i64 {
        ((now_ms - (self.expires_ms - self.ttl.saturating_mul(1000))) / 1000).max(0)
    }
}

/// A subscription to be created, after validation.
#[derive(Clone, Debug)]
pub struct NewSubscription {
    /// Subscriber URI.
    pub subscriber: String,
    /// Lifetime in seconds (at least 60).
    pub ttl: i64,
    /// Options object.
    pub options: Metadata,
}

/// The fields a PATCH changes; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct SubscriptionUpdate {
    /// New subscriber URI (must stay unique in the queue).
    pub subscriber: Option<String>,
    /// New ttl; the subscription then ends `ttl` seconds from now.
    pub ttl: Option<i64>,
    /// New options object (replaces the old one).
    pub options: Option<Metadata>,
}

/// Everything that can go wrong in storage, in terms the api core can answer.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StorageError {
    /// The queue does not exist.
    #[error("queue does not exist")]
    QueueNotFound,
    /// The claim does not exist or has expired.
    #[error("claim does not exist or has expired")]
    ClaimNotFound,
    /// A claim id was given but the message is not claimed.
    #[error("the message is not claimed")]
    MessageNotClaimed,
    /// The message is claimed and the caller did not present that claim.
    #[error("the message is claimed by another claim")]
    MessageIsClaimed,
    /// `bulk_delete` with claim ids that do not hold the messages.
    #[error("claim ids do not match the messages' claims")]
    ClaimMismatch,
    /// The subscription does not exist (or has expired).
    #[error("subscription does not exist")]
    SubscriptionNotFound,
    /// Another live subscription of the queue has the same subscriber URI.
    #[error("such subscription already exists")]
    SubscriptionExists,
    /// A pipeline stage refused the operation; the text says why and is
    /// shown to the client (400 "Invalid API request").
    #[error("rejected: {0}")]
    Rejected(String),
    /// The record would clash with another one (409 "Resource conflict");
    /// the text says with what.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backend cannot be reached or failed; try again later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A post or a claim was refused before writing anything: the queue's
    /// metadata changed since [`QueueStore::get_for_write`] answered (read
    /// it again, validate again, try again).
    #[error("the queue's metadata changed")]
    MetadataChanged,
    /// A pipeline ended without a store implementing the operation.
    #[error("no stage in the pipeline implements {0}")]
    NotImplemented(&'static str),
}

/// Result alias for storage operations.
pub type StorageResult<T> = Result<T, StorageError>;

macro_rules! forward {
    ($self:ident, $name:literal, $next:ident, $call:expr) => {
        match $self.next() {
            Some($next) => $call.await,
            None => Err(StorageError::NotImplemented($name)),
        }
    };
}

/// A new subscription id: a time-ordered UUID (v7), so that ids sort in
/// the order subscriptions were created (and listed), as the reference's
/// ObjectIds do; clients page with `marker=` an id taken from a sorted
/// listing.
pub fn subscription_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// [`SubscriptionStore::list_confirmed`] by walking [`SubscriptionStore::list`]
/// and keeping the confirmed ones: for a driver with no index of them. It
/// reads every subscription up to the page's last confirmed one; memory
/// stays within one page of `limit`.
pub async fn confirmed_by_filtering(
    store: &(impl SubscriptionStore + ?Sized),
    scope: &Scope,
    marker: Option<&str>,
    limit: usize,
) -> StorageResult<Vec<Subscription>> {
    let mut out = Vec::new();
    let mut marker = marker.map(str::to_owned);
    while out.len() < limit {
        let page = store.list(scope, marker.as_deref(), limit).await?;
        let full = page.len() == limit;
        marker = page.last().map(|s| s.id.clone());
        out.extend(page.into_iter().filter(|s| s.confirmed));
        if !full {
            break;
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// Queue records: names and metadata, per project.
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// The store after this one in the pipeline; `None` for a driver.
    fn next(&self) -> Option<&dyn QueueStore> {
        None
    }

    /// Creates the queue; `Ok(false)` when it already existed (its metadata is kept).
    async fn create(&self, scope: &Scope, metadata: &Metadata) -> StorageResult<bool> {
        forward!(self, "queue create", n, n.create(scope, metadata))
    }

    /// The queue's stored metadata, `None` when the queue does not exist.
    async fn get(&self, scope: &Scope) -> StorageResult<Option<Metadata>> {
        forward!(self, "queue get", n, n.get(scope))
    }

    /// The metadata a write validates against: a message post (limits,
    /// defaults) or a claim (its dead-letter policy). A driver may answer
    /// from memory (unless `fresh`) when its [`MessageStore::post`] and
    /// [`ClaimStore::create`] check, atomically with the write, that the
    /// metadata is still what it answered to this request (see
    /// [`validated`]), and refuse with [`StorageError::MetadataChanged`]
    /// otherwise; the caller then asks again. A post refused by the queue's own limits never reaches that
    /// check, so the caller asks again with `fresh` before it refuses one.
    /// Every other store answers as [`get`](Self::get); a stage that
    /// answers or changes `get` must answer this as well (the default
    /// passes it to the next store).
    async fn get_for_write(&self, scope: &Scope, fresh: bool) -> StorageResult<Option<Metadata>> {
        match self.next() {
            Some(n) => n.get_for_write(scope, fresh).await,
            None => self.get(scope).await,
        }
    }

    /// Replaces the metadata of an existing queue ([`StorageError::QueueNotFound`] otherwise).
    async fn set_metadata(&self, scope: &Scope, metadata: &Metadata) -> StorageResult<()> {
        forward!(
            self,
            "queue set_metadata",
            n,
            n.set_metadata(scope, metadata)
        )
    }

    /// Deletes the queue record; deleting a missing queue is not an error.
    async fn delete(&self, scope: &Scope) -> StorageResult<()> {
        forward!(self, "queue delete", n, n.delete(scope))
    }

    /// Queues of `project` in name order, after `marker` (exclusive).
    async fn list(
        &self,
        project: &str,
        marker: Option<&str>,
        limit: usize,
        detailed: bool,
    ) -> StorageResult<Vec<QueueEntry>> {
        forward!(
            self,
            "queue list",
            n,
            n.list(project, marker, limit, detailed)
        )
    }

    /// Number of queues of `project` (topics, stored under names at or
    /// after [`names::NAMESPACE_END`], are not counted).
    async fn count(&self, project: &str) -> StorageResult<u64> {
        forward!(self, "queue count", n, n.count(project))
    }

    /// Whether the backend answers (`GET /v2/ping`).
    async fn is_alive(&self) -> bool {
        match self.next() {
            Some(n) => n.is_alive().await,
            None => false,
        }
    }
}

/// Messages of queues.
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// The store after this one in the pipeline; `None` for a driver.
    fn next(&self) -> Option<&dyn MessageStore> {
        None
    }

    /// Stores the messages in order; [`Posted::ids`] are their ids in the same order.
    async fn post(
        &self,
        scope: &Scope,
        client_id: &str,
        messages: Vec<NewMessage>,
    ) -> StorageResult<Posted> {
        forward!(self, "message post", n, n.post(scope, client_id, messages))
    }

    /// One page of live messages in insertion order.
    async fn list(&self, scope: &Scope, query: &ListQuery) -> StorageResult<MessagePage> {
        forward!(self, "message list", n, n.list(scope, query))
    }

    /// One live message of this queue, `None` when absent or expired.
    async fn get(&self, scope: &Scope, id: &str) -> StorageResult<Option<Message>> {
        forward!(self, "message get", n, n.get(scope, id))
    }

    /// The live messages among `ids` (unknown ids are skipped).
    async fn bulk_get(&self, scope: &Scope, ids: &[String]) -> StorageResult<Vec<Message>> {
        forward!(self, "message bulk_get", n, n.bulk_get(scope, ids))
    }

    /// The listing marker that continues right after the live message `id`
    /// (clients build markers from message ids, as the reference's Redis
    /// store's markers are); `None` when there is no such message.
    async fn marker_of(&self, scope: &Scope, id: &str) -> StorageResult<Option<String>> {
        forward!(self, "message marker", n, n.marker_of(scope, id))
    }

    /// Deletes one message, honouring the claim rules:
    /// claimed + no claim id → [`StorageError::MessageIsClaimed`];
    /// claim id given + not claimed → [`StorageError::MessageNotClaimed`];
    /// claim id not the live claim → [`StorageError::ClaimNotFound`] when that claim
    /// does not exist, [`StorageError::MessageIsClaimed`] when another claim holds it.
    /// A missing message is not an error.
    async fn delete(&self, scope: &Scope, id: &str, claim_id: Option<&str>) -> StorageResult<()> {
        forward!(self, "message delete", n, n.delete(scope, id, claim_id))
    }

    /// Deletes the messages among `ids`. With `claim_ids`, every existing message
    /// must be held by one of those live claims, else [`StorageError::ClaimMismatch`]
    /// and nothing is deleted.
    async fn bulk_delete(
        &self,
        scope: &Scope,
        ids: &[String],
        claim_ids: Option<&[String]>,
    ) -> StorageResult<()> {
        forward!(
            self,
            "message bulk_delete",
            n,
            n.bulk_delete(scope, ids, claim_ids)
        )
    }

    /// Removes and returns up to `limit` of the oldest claimable messages.
    async fn pop(&self, scope: &Scope, limit: usize) -> StorageResult<Vec<Message>> {
        forward!(self, "message pop", n, n.pop(scope, limit))
    }

    /// Message counts of the queue (zeros for a missing queue).
    async fn stats(&self, scope: &Scope) -> StorageResult<QueueStats> {
        forward!(self, "message stats", n, n.stats(scope))
    }

    /// Deletes every message and claim of the queue.
    async fn purge(&self, scope: &Scope) -> StorageResult<()> {
        forward!(self, "message purge", n, n.purge(scope))
    }

    /// Counts of every live message of the store, for stores whose health
    /// document reports them (MongoDB); `None` for the others.
    async fn volume(&self) -> StorageResult<Option<MessageVolume>> {
        match self.next() {
            Some(n) => n.volume().await,
            None => Ok(None),
        }
    }
}

/// Claims on messages.
#[async_trait]
pub trait ClaimStore: Send + Sync {
    /// The store after this one in the pipeline; `None` for a driver.
    fn next(&self) -> Option<&dyn ClaimStore> {
        None
    }

    /// Atomically claims up to `limit` of the oldest messages that are neither
    /// claimed by a live claim nor delayed. Messages that would expire before the
    /// claim ends are extended to claim end + grace. With a dead-letter policy,
    /// messages already claimed `max_claim_count` times move to the dead-letter
    /// queue instead. `None` when nothing was claimed.
    async fn create(
        &self,
        scope: &Scope,
        request: &ClaimRequest,
    ) -> StorageResult<Option<NewClaim>> {
        forward!(self, "claim create", n, n.create(scope, request))
    }

    /// A live claim and its messages, `None` when missing or expired.
    async fn get(&self, scope: &Scope, claim_id: &str) -> StorageResult<Option<ClaimInfo>> {
        forward!(self, "claim get", n, n.get(scope, claim_id))
    }

    /// Renews a live claim: it ends `ttl` seconds from now and its messages
    /// live at least until then plus `grace`. [`StorageError::ClaimNotFound`] otherwise.
    async fn update(
        &self,
        scope: &Scope,
        claim_id: &str,
        ttl: i64,
        grace: i64,
    ) -> StorageResult<()> {
        forward!(
            self,
            "claim update",
            n,
            n.update(scope, claim_id, ttl, grace)
        )
    }

    /// Releases the claim's messages and forgets it; missing claims are ignored.
    async fn delete(&self, scope: &Scope, claim_id: &str) -> StorageResult<()> {
        forward!(self, "claim delete", n, n.delete(scope, claim_id))
    }
}

/// Subscriptions of queues. A subscription is live until `expires_ms`;
/// expired ones are invisible to every method.
#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// The store after this one in the pipeline; `None` for a driver.
    fn next(&self) -> Option<&dyn SubscriptionStore> {
        None
    }

    /// Live subscriptions of the queue in creation order, after the one
    /// whose id is `marker` (exclusive; an unknown marker starts from the
    /// first).
    async fn list(
        &self,
        scope: &Scope,
        marker: Option<&str>,
        limit: usize,
    ) -> StorageResult<Vec<Subscription>> {
        forward!(self, "subscription list", n, n.list(scope, marker, limit))
    }

    /// Live *confirmed* subscriptions of the queue, paged as
    /// [`list`](Self::list) pages them (full unless the list ends). The
    /// notifier's fan-out reads this under `require_confirmation`, so that
    /// its cost follows the confirmed subscriptions, however many
    /// unconfirmed ones the queue has.
    async fn list_confirmed(
        &self,
        scope: &Scope,
        marker: Option<&str>,
        limit: usize,
    ) -> StorageResult<Vec<Subscription>> {
        forward!(
            self,
            "subscription list_confirmed",
            n,
            n.list_confirmed(scope, marker, limit)
        )
    }

    /// One live subscription of the queue, `None` when missing or expired.
    async fn get(&self, scope: &Scope, id: &str) -> StorageResult<Option<Subscription>> {
        forward!(self, "subscription get", n, n.get(scope, id))
    }

    /// The live subscription of the queue with this subscriber URI.
    async fn get_with_subscriber(
        &self,
        scope: &Scope,
        subscriber: &str,
    ) -> StorageResult<Option<Subscription>> {
        forward!(
            self,
            "subscription get_with_subscriber",
            n,
            n.get_with_subscriber(scope, subscriber)
        )
    }

    /// Creates an unconfirmed subscription and returns its id; `None` when a
    /// live subscription of the queue already has that subscriber URI
    /// (subscriptions are unique by project + queue + subscriber).
    async fn create(
        &self,
        scope: &Scope,
        subscription: &NewSubscription,
    ) -> StorageResult<Option<String>> {
        forward!(
            self,
            "subscription create",
            n,
            n.create(scope, subscription)
        )
    }

    /// Changes the given fields. [`StorageError::SubscriptionNotFound`] when
    /// missing; [`StorageError::SubscriptionExists`] when the new subscriber
    /// is already another live subscription's.
    async fn update(
        &self,
        scope: &Scope,
        id: &str,
        update: &SubscriptionUpdate,
    ) -> StorageResult<()> {
        forward!(self, "subscription update", n, n.update(scope, id, update))
    }

    /// Deletes one subscription; a missing one is not an error.
    async fn delete(&self, scope: &Scope, id: &str) -> StorageResult<()> {
        forward!(self, "subscription delete", n, n.delete(scope, id))
    }

    /// Sets the `confirmed` flag ([`StorageError::SubscriptionNotFound`] when missing).
    async fn confirm(&self, scope: &Scope, id: &str, confirmed: bool) -> StorageResult<()> {
        forward!(
            self,
            "subscription confirm",
            n,
            n.confirm(scope, id, confirmed)
        )
    }

    /// Deletes every subscription of the queue.
    async fn purge(&self, scope: &Scope) -> StorageResult<()> {
        forward!(self, "subscription purge", n, n.purge(scope))
    }
}
