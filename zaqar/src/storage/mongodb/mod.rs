//! The MongoDB driver: queues, messages, claims, subscriptions and the
//! notification outbox in MongoDB (a replica set or a sharded cluster),
//! on the official async driver.
//!
//! # Layout
//!
//! With `database = D` (default `zaqar`) and `partitions = N` (default 2):
//!
//! | Database | Collection | Documents |
//! |---|---|---|
//! | `D` | `queues` | one per queue: project `p`, name `q`, metadata `m` (the JSON text as sent), creation time |
//! | `D` | `subscriptions` | `_id` the subscription id (a UUID), creation order `o`, project `p`, queue `q`, subscriber `u`, ttl `t`, expiry `e`, options `op` (JSON text), confirmed `cf` |
//! | `D` | `outbox` | pending notification deliveries (see `outbox.rs`) |
//! | `D` | `pools`, `flavors`, `catalogue` | the management plane of pooling (see `catalogue.rs`) |
//! | `D_part<i>` | `messages` | one per message, in the partition of its project |
//! | `D_part<i>` | `claims` | one per claim: project, queue, ttl `t`, grace `g`, last renewal `u`, expiry `e` |
//! | `D_part<i>` | `counters` | one per queue that ever had messages: the last sequence number `n` handed out |
//!
//! Every document carries its project and queue name as two fields, and
//! every query names both: a queue is a pair, never a string built from
//! the two, so `p.sub`/`zq` and `p`/`sub.zq` are different queues, and a
//! message, claim or subscription id only resolves inside its own project
//! and queue. A project's messages live in partition
//! `fnv1a(project) mod N` (so a queue and its dead-letter queue, which
//! belong to one project, share a collection and a dead-letter move is
//! an update of one document). The names differ from the reference's
//! (`D_queues`, `D_messages_p<i>`...), whose documents have another
//! shape: a reference deployment's databases are left alone.
//!
//! A message document: `_id` (ObjectId: the message id), `p`, `q`, `k`
//! (its sequence number in the queue: the order of the queue and the
//! list marker), `u` (client id), `t` (ttl), `cr` (created, ms), `e`
//! (expiry, a date), `d` (delayed until, ms), `c` (claim id, absent when
//! none), `ce` (claim end, ms, 0 when none), `cc` (claim count), `b` (the
//! body, the JSON text exactly as posted), `cs` (checksum).
//!
//! # Indexes (created at start-up, and on first contact after it)
//!
//! | Collection | Index | Serves |
//! |---|---|---|
//! | `messages` | `queue_order (p, q, k)` | list, claim candidates, pop, stats, purge |
//! | `messages` | `by_claim (c)`, partial: claimed documents only | a claim's messages, `message_volume` |
//! | `messages` | `reclaim (e)`, TTL | space reclamation |
//! | `claims` | `by_queue (p, q)`; `reclaim (e)`, TTL | purge; space |
//! | `counters` | `by_queue (p, q)` unique | post |
//! | `queues` | `by_name (p, q)` unique | every queue operation (listing is a range of it) |
//! | `pools` | `by_uri (uri)` unique; `by_flavor (f)` | one store per pool; a flavor's pools |
//! | `flavors` | `by_name (p, n)` unique | flavor operations (listing is a range of it) |
//! | `catalogue` | `by_queue (p, q)` unique; `by_pool (pool)` | routing a queue to its pool; pool deletion checks |
//! | `subscriptions` | `by_subscriber (p, q, u)` unique; `by_queue (p, q, o)`; `confirmed (p, q, cf, e)`; `reclaim (e)`, TTL | create/update uniqueness; list; a post's "anyone confirmed?"; space |
//! | `outbox` | `by_project (p, due, _id)`; `by_due (due)` | leases |
//!
//! # Time
//!
//! "Now" is the injected [`Clock`](crate::storage::Clock)'s, never the
//! database's. Every query filters on expiry (`e > now`, `ce > now`,
//! `d <= now`), so an expired message or claim is invisible at once. TTL
//! indexes only reclaim space, [`RECLAIM_AFTER`] after the logical expiry,
//! so that API servers whose clocks run a little behind the database's
//! never see a live document disappear.
//!
//! # Consistency: conditional updates, no transactions
//!
//! - **Claims** use conditional updates: the candidates are read, then
//!   taken with one `updateMany` whose filter repeats the condition that
//!   made them candidates (`ce <= now`, not expired). A message's claim
//!   fields live in that one document, and MongoDB applies each document's
//!   update atomically, so when two claims (from two API servers) race for
//!   a message exactly one update matches it; the loser tries the next
//!   candidates. A transaction would give the same result with more round
//!   trips, and two claimers on one queue would abort each other instead of
//!   sharing the messages out. Releases, renewals, deletes with claim rules,
//!   pops and outbox leases are conditional in the same way, and repeating
//!   any of them is harmless, so they are retried after a failover.
//! - **Posts** reserve sequence numbers on the queue's counter (one atomic
//!   update that also records them as in flight), insert, and clear the
//!   in-flight entry; listings read the counter first and stop below the
//!   first number in flight, so markers never skip a message of a slower
//!   concurrent post (see `messages.rs`). No transaction: a transaction
//!   abandoned by a crashed API server would hold the queue's counter, and
//!   every post to the queue, for the server's transaction lifetime (60 s);
//!   a crashed post here only holds listings of its queue back for a few
//!   seconds. The same code runs on a standalone server. Concurrent posts
//!   to one queue are written together ([`group_commit`](crate::storage::group_commit)):
//!   the posts that arrive while a batch is being written share the next
//!   batch's reservation, insert and release, so a busy queue costs the
//!   database three writes per batch rather than three per post.
//! - A queue and its dead-letter queue belong to one project, hence to one
//!   partition: a dead-letter move is a conditional update of one document.
//!
//! # Round trips per operation
//!
//! | Operation | Round trips |
//! |---|---|
//! | queue create, get, set_metadata, delete, list, count; ping | 1 |
//! | message post (any batch; concurrent posts to a queue share them) | 3 (reserve, insert, release), plus 1 in parallel (are there subscriptions?) |
//! | message list | 2 (counter, page) |
//! | message get, bulk_get, stats | 1 |
//! | message delete | 2 (read, conditional delete); 3 when another claim's existence decides the error |
//! | message bulk_delete | 1 per 1000 ids; with claim ids 1 more per 1000 (the check) |
//! | pop | 3 (candidates, take, delete) |
//! | claim create | 2 (candidates, take) + 1 (claim record); +1 read-back when another claim won some candidates; +2 and 1 per message when messages move to a dead-letter queue |
//! | claim get | 2 in parallel |
//! | claim update, delete | 2 |
//! | purge | 3 (messages, claims, counter) |
//! | subscription operations | 1 (create and a subscriber change: 2) |
//! | outbox enqueue | 1 per 1000 deliveries; lease: 3 + 1 per project served (in parallel) |
//!
//! # Failure
//!
//! Nothing is contacted when the store is built: the first operation
//! connects, checks the deployment (see [`MongoStore::check_deployment`])
//! and creates the indexes, and does so again until it succeeds, so the
//! server starts (and answers 503) while MongoDB is down and recovers by
//! itself when it comes back. An operation waits at most
//! `serverSelectionTimeoutMS` (5 s here) for a usable server and takes at
//! most `socketTimeoutMS` (10 s here) in all, then answers
//! [`StorageError::Unavailable`]. After a failover or a dropped connection
//! an operation that can safely run twice is tried again
//! (`max_reconnect_attempts`, pausing `reconnect_sleep·2^n`). Writes are
//! acknowledged once a majority of the replica set journaled them (write
//! concern `majority`, `j: true`, unless the URI says otherwise), so an
//! acknowledged message survives the loss of the primary, `kill -9` of the
//! API server and a restart of the database.

mod catalogue;
mod claims;
mod messages;
pub mod options;
mod outbox;
mod queues;
mod subscriptions;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{doc, DateTime, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{Acknowledgment, ClientOptions, IndexOptions, Tls, TlsOptions};
use mongodb::{Client, Collection, Database, IndexModel};
use tokio::sync::OnceCell;
use tokio::time::{sleep, timeout_at, Instant};

pub use self::options::MongoOptions;
use super::clock::SharedClock;
use super::group_commit::GroupCommit;
use super::pipeline::Backend;
use super::{StorageError, StorageResult};

/// How long after its logical expiry a message, claim or subscription is
/// reclaimed by MongoDB's TTL monitor (see the module docs).
pub const RECLAIM_AFTER: Duration = Duration::from_secs(300);

/// Documents per write of a bulk operation (ids per `$in`, deliveries
/// per insert).
const CHUNK: usize = 1000;

/// Collection names.
const QUEUES: &str = "queues";
const SUBSCRIPTIONS: &str = "subscriptions";
const OUTBOX: &str = "outbox";
const POOLS: &str = "pools";
const FLAVORS: &str = "flavors";
const CATALOGUE: &str = "catalogue";
const MESSAGES: &str = "messages";
const CLAIMS: &str = "claims";
const COUNTERS: &str = "counters";

/// What the server reports itself to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deployment {
    /// A replica set member (the primary).
    ReplicaSet,
    /// A `mongos` router of a sharded cluster.
    Sharded,
    /// A single server without replication.
    Standalone,
}

/// The MongoDB store: implements the queue, message, claim and
/// subscription stores and the notification outbox. Cheap to clone; all
/// clones share one client (and its connection pool).
#[derive(Clone)]
pub struct MongoStore {
    inner: Arc<Inner>,
}

struct Inner {
    options: MongoOptions,
    clock: SharedClock,
    /// The client, once connected, checked and indexed.
    ready: OnceCell<Ready>,
    /// Only the queue records (a management store): no message databases.
    management_only: bool,
    /// Client certificate and key joined into one file for the driver
    /// (`ssl_certfile` + `ssl_keyfile`), removed with the store.
    joined_pem: Option<JoinedPem>,
    /// Concurrent posts to one queue, written together.
    posts: Arc<PostBatches>,
}

/// The grouped posts of a store: per queue, the posts waiting for the
/// batch being written, each answered whether the queue has subscriptions.
type PostBatches = GroupCommit<
    crate::storage::Scope,
    messages::PendingPost,
    StorageResult<Option<crate::storage::Subscribed>>,
>;

/// Every store built in this process (weakly: a dropped store leaves),
/// for [`MongoStore::close_all`].
static OPEN_STORES: std::sync::Mutex<Vec<std::sync::Weak<Inner>>> =
    std::sync::Mutex::new(Vec::new());

/// A connected, checked client and the databases it serves.
#[derive(Clone)]
struct Ready {
    client: Client,
    main: Database,
    parts: Arc<[Database]>,
}

impl Ready {
    /// The partition database of `project`.
    fn part(&self, project: &str) -> &Database {
        let i = partition(project, self.parts.len() as u32) as usize;
        &self.parts[i]
    }

    fn messages(&self, project: &str) -> Collection<Document> {
        self.part(project).collection(MESSAGES)
    }

    fn claims(&self, project: &str) -> Collection<Document> {
        self.part(project).collection(CLAIMS)
    }

    fn counters(&self, project: &str) -> Collection<Document> {
        self.part(project).collection(COUNTERS)
    }

    fn queues(&self) -> Collection<Document> {
        self.main.collection(QUEUES)
    }

    fn subscriptions(&self) -> Collection<Document> {
        self.main.collection(SUBSCRIPTIONS)
    }

    fn outbox(&self) -> Collection<Document> {
        self.main.collection(OUTBOX)
    }

    fn pools(&self) -> Collection<Document> {
        self.main.collection(POOLS)
    }

    fn flavors(&self) -> Collection<Document> {
        self.main.collection(FLAVORS)
    }

    fn catalogue(&self) -> Collection<Document> {
        self.main.collection(CATALOGUE)
    }
}

/// The partition of a project: FNV-1a (64 bit) of its bytes modulo the
/// number of partitions. Stable across versions and processes: changing
/// it would strand every stored message.
fn partition(project: &str, partitions: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in project.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(partitions.max(1))) as u32
}

/// Why an operation failed: MongoDB, or a domain answer.
enum Failure {
    Mongo(mongodb::error::Error),
    Storage(StorageError),
}

impl From<mongodb::error::Error> for Failure {
    fn from(e: mongodb::error::Error) -> Self {
        Failure::Mongo(e)
    }
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Self {
        Failure::Storage(e)
    }
}

type OpResult<T> = Result<T, Failure>;

/// Server error codes after which trying again can succeed (a failover, a
/// node shutting down, a dropped connection, a write conflict).
const TRANSIENT_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    112,   // WriteConflict
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// The server error code of `e`, if it has one.
fn error_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .and_then(|errors| errors.first().map(|w| w.code))
            .or_else(|| m.write_concern_error.as_ref().map(|w| w.code)),
        _ => None,
    }
}

/// Whether trying `e`'s operation again may succeed.
fn transient(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{RETRYABLE_WRITE_ERROR, TRANSIENT_TRANSACTION_ERROR};
    e.contains_label(RETRYABLE_WRITE_ERROR)
        || e.contains_label(TRANSIENT_TRANSACTION_ERROR)
        || matches!(
            e.kind.as_ref(),
            ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. }
        )
        || error_code(e).is_some_and(|c| TRANSIENT_CODES.contains(&c))
}

/// Whether `e` is a unique index refusing a duplicate.
fn duplicate_key(e: &mongodb::error::Error) -> bool {
    error_code(e) == Some(11000)
}

/// Whether every write error of `e` is a duplicate key (the documents
/// were stored by an earlier try of the same insert).
pub(super) fn only_duplicates(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::InsertMany(m) => {
            m.write_concern_error.is_none()
                && m.write_errors
                    .as_ref()
                    .is_some_and(|w| w.iter().all(|w| w.code == 11000))
        }
        _ => duplicate_key(e),
    }
}

/// A date for a time in ms since the epoch.
fn date(ms: i64) -> DateTime {
    DateTime::from_millis(ms)
}

/// `secs` seconds in milliseconds, saturating instead of overflowing.
fn ms(secs: i64) -> i64 {
    secs.saturating_mul(1000)
}

/// A corrupt document (a field missing or of the wrong type).
fn corrupt(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::Storage(StorageError::Unavailable(format!(
        "MongoDB: a stored {what} is corrupt: {e}"
    )))
}

/// A client certificate and its key joined into one private file.
struct JoinedPem {
    dir: PathBuf,
    file: PathBuf,
}

impl Drop for JoinedPem {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Writes `cert` and `key` (PEM files) into one file readable by this
/// user only, for the driver, which takes both from one file.
fn join_pem(cert: &PathBuf, key: &PathBuf) -> StorageResult<JoinedPem> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let fail = |what: &str, e: std::io::Error| {
        StorageError::Unavailable(format!("MongoDB TLS: cannot {what}: {e}"))
    };
    let mut text = std::fs::read(cert).map_err(|e| fail("read ssl_certfile", e))?;
    text.push(b'\n');
    text.extend(std::fs::read(key).map_err(|e| fail("read ssl_keyfile", e))?);
    let dir = std::env::temp_dir().join(format!("zaqar-mongodb-{}", uuid::Uuid::new_v4()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| fail("create a private directory", e))?;
    let file = dir.join("client.pem");
    let joined = JoinedPem {
        dir,
        file: file.clone(),
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .and_then(|mut f| f.write_all(&text))
        .map_err(|e| fail("write the joined certificate", e))?;
    Ok(joined)
}

impl MongoStore {
    /// Prepares the store for the message store (every collection). No
    /// connection is made here (see the module docs).
    ///
    /// # Errors
    /// [`StorageError::Unavailable`] when the TLS files cannot be read.
    pub fn connect(options: MongoOptions, clock: SharedClock) -> StorageResult<MongoStore> {
        Self::build(options, clock, false)
    }

    /// Prepares the store for the management store: only queue records
    /// (`D.queues`), no message databases.
    ///
    /// # Errors
    /// As [`MongoStore::connect`].
    pub fn connect_management(
        options: MongoOptions,
        clock: SharedClock,
    ) -> StorageResult<MongoStore> {
        Self::build(options, clock, true)
    }

    fn build(
        options: MongoOptions,
        clock: SharedClock,
        management_only: bool,
    ) -> StorageResult<MongoStore> {
        let joined_pem = match (&options.ssl_certfile, &options.ssl_keyfile) {
            (Some(cert), Some(key)) if options.tls() && cert != key => Some(join_pem(cert, key)?),
            _ => None,
        };
        let inner = Arc::new(Inner {
            options,
            clock,
            ready: OnceCell::new(),
            management_only,
            joined_pem,
            posts: GroupCommit::new(messages::POST_BATCH),
        });
        let mut open = OPEN_STORES.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|store| store.strong_count() > 0);
        open.push(Arc::downgrade(&inner));
        Ok(MongoStore { inner })
    }

    /// Closes the client of every MongoDB store of the process that is
    /// still open: called once the server has stopped serving, before the
    /// runtime ends. Without it the last handle's drop leaves the driver a
    /// background task (ending the server sessions) that the runtime's
    /// shutdown cancels half-way, and the driver panics on it.
    pub async fn close_all() {
        let open: Vec<Arc<Inner>> = {
            let mut open = OPEN_STORES.lock().unwrap_or_else(|e| e.into_inner());
            open.drain(..).filter_map(|store| store.upgrade()).collect()
        };
        for inner in open {
            if let Some(ready) = inner.ready.get() {
                ready.client.clone().shutdown().immediate(true).await;
            }
        }
    }

    /// The driver's stores: queues, messages, claims, subscriptions and
    /// the notification outbox.
    pub fn backend(&self) -> Backend {
        Backend {
            queues: Arc::new(self.clone()),
            messages: Arc::new(self.clone()),
            claims: Arc::new(self.clone()),
            subscriptions: Arc::new(self.clone()),
            outbox: Some(Arc::new(self.clone())),
            catalogue: Some(Arc::new(self.clone())),
            wake_bus: None,
        }
    }

    /// The options the store was built with.
    pub fn options(&self) -> &MongoOptions {
        &self.inner.options
    }

    /// Connects, checks the deployment and creates the indexes (those of
    /// queue records only, for the management section), with a client of
    /// its own that is closed afterwards: the start-up check,
    /// run before serving, on a runtime of its own (so it can be called
    /// from anywhere). `Ok(None)` when the deployment is usable;
    /// `Ok(Some(why))` when MongoDB could not be reached (the server may
    /// start: the store connects when it can); `Err(why)` when the
    /// deployment is refused (see [`MongoStore::check_deployment`]).
    pub fn check_at_startup(options: &MongoOptions) -> Result<Option<String>, String> {
        let management_only = options.section == options::MANAGEMENT_SECTION;
        let options = options.clone();
        let handle = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the MongoDB start-up check: {e}"))?;
            runtime.block_on(async move {
                let store =
                    MongoStore::build(options, Arc::new(super::SystemClock), management_only)
                        .map_err(|e| e.to_string())?;
                let deadline = Instant::now() + store.inner.options.operation_timeout;
                let outcome = timeout_at(deadline, store.open_client()).await;
                match outcome {
                    Ok(Ok(ready)) => {
                        ready.client.shutdown().await;
                        Ok(None)
                    }
                    Ok(Err(Opened::Refused(why))) => Err(why),
                    Ok(Err(Opened::Unreachable(why))) => Ok(Some(why)),
                    Err(_) => Ok(Some("timed out".to_owned())),
                }
            })
        });
        handle
            .join()
            .unwrap_or_else(|_| Err("the MongoDB start-up check panicked".to_owned()))
    }

    /// The connected client, connecting (and checking, and indexing) first
    /// when this is the first operation to succeed in reaching MongoDB.
    async fn ready(&self) -> StorageResult<&Ready> {
        self.inner
            .ready
            .get_or_try_init(|| async {
                self.open_client().await.map_err(|e| match e {
                    Opened::Refused(why) => {
                        tracing::error!(section = self.inner.options.section, "{why}");
                        StorageError::Unavailable(why)
                    }
                    Opened::Unreachable(why) => {
                        StorageError::Unavailable(format!("cannot reach MongoDB: {why}"))
                    }
                })
            })
            .await
    }

    /// Builds a client, checks the deployment and creates the indexes.
    async fn open_client(&self) -> Result<Ready, Opened> {
        let options = &self.inner.options;
        let mut client_options = ClientOptions::parse(options.connection.clone())
            .await
            .map_err(|e| Opened::Refused(format!("[{}] uri: {}", options.section, e.kind)))?;
        client_options
            .server_selection_timeout
            .get_or_insert(options::DEFAULT_SERVER_SELECTION_TIMEOUT);
        client_options
            .connect_timeout
            .get_or_insert(options::DEFAULT_SERVER_SELECTION_TIMEOUT);
        client_options
            .max_pool_size
            .get_or_insert(options::DEFAULT_MAX_POOL_SIZE);
        client_options
            .app_name
            .get_or_insert_with(|| "zaqar".to_owned());
        let concern = client_options
            .write_concern
            .get_or_insert_with(Default::default);
        concern.w.get_or_insert(Acknowledgment::Majority);
        concern.journal.get_or_insert(true);
        if options.tls() {
            let mut tls = match client_options.tls.take() {
                Some(Tls::Enabled(tls)) => tls,
                _ => TlsOptions::default(),
            };
            if let Some(ca) = &options.ssl_ca_certs {
                tls.ca_file_path = Some(ca.clone());
            }
            let pem = self
                .inner
                .joined_pem
                .as_ref()
                .map(|j| j.file.clone())
                .or_else(|| options.ssl_certfile.clone())
                .or_else(|| options.ssl_keyfile.clone());
            if let Some(pem) = pem {
                tls.cert_key_file_path = Some(pem);
            }
            if options.ssl_cert_reqs == options::CertReqs::None {
                tls.allow_invalid_certificates = Some(true);
            }
            client_options.tls = Some(Tls::Enabled(tls));
        }
        let client = Client::with_options(client_options)
            .map_err(|e| Opened::Refused(format!("[{}] uri: {}", options.section, e.kind)))?;
        let hello = client
            .database("admin")
            .run_command(doc! { "hello": 1 })
            .await
            .map_err(|e| Opened::Unreachable(e.kind.to_string()))?;
        let deployment = if hello.get_str("msg") == Ok("isdbgrid") {
            Deployment::Sharded
        } else if hello.contains_key("setName") {
            Deployment::ReplicaSet
        } else {
            Deployment::Standalone
        };
        Self::check_deployment(options, deployment).map_err(Opened::Refused)?;
        let main = client.database(&options.database);
        let parts: Arc<[Database]> = if self.inner.management_only {
            Arc::from(Vec::new())
        } else {
            (0..options.partitions)
                .map(|i| client.database(&format!("{}_part{i}", options.database)))
                .collect()
        };
        let ready = Ready {
            client,
            main,
            parts,
        };
        create_indexes(&ready, self.inner.management_only)
            .await
            .map_err(|e| Opened::Unreachable(format!("cannot create the indexes: {}", e.kind)))?;
        tracing::info!(
            section = options.section,
            database = %options.database,
            deployment = ?deployment,
            "MongoDB store ready"
        );
        Ok(ready)
    }

    /// The reference's rule: a standalone server, or a write concern that
    /// a single node can acknowledge, can lose acknowledged messages, and is
    /// refused unless `[DEFAULT] unreliable = true`.
    ///
    /// # Errors
    /// The message to log and show at start-up.
    pub fn check_deployment(options: &MongoOptions, deployment: Deployment) -> Result<(), String> {
        if options.unreliable {
            return Ok(());
        }
        if deployment == Deployment::Standalone {
            return Err(format!(
                "[{}] uri: MongoDB is a standalone server: a replica set or a sharded cluster \
                 (mongos) is required to guarantee message delivery. Use one, or set \
                 [DEFAULT] unreliable = true to accept losing messages with the server",
                options.section
            ));
        }
        if let options::WriteConcernLevel::Nodes(n) = options.write_concern_level() {
            if n < 2 {
                return Err(format!(
                    "[{}] uri: write concern w={n} lets a single node acknowledge a write, \
                     which a failover can then lose: use w=majority (the default) or w>=2, or \
                     set [DEFAULT] unreliable = true",
                    options.section
                ));
            }
        }
        Ok(())
    }

    /// Runs `op` on the connected client with "now" from the clock, under
    /// the operation time limit. An `idempotent` operation (running it
    /// twice leaves the same state as running it once) is tried again
    /// after a transient failure (failover, dropped connection), up to
    /// `max_reconnect_attempts` times, pausing `reconnect_sleep·2^n`.
    async fn run<T, F, Fut>(&self, what: &'static str, idempotent: bool, op: F) -> StorageResult<T>
    where
        F: Fn(Ready, i64) -> Fut,
        Fut: Future<Output = OpResult<T>>,
    {
        let options = &self.inner.options;
        let deadline = Instant::now() + options.operation_timeout;
        let attempts = async {
            let ready = self.ready().await?.clone();
            let mut pause = options.reconnect_sleep;
            let mut retries = 0;
            loop {
                match op(ready.clone(), self.inner.clock.now_ms()).await {
                    Ok(value) => return Ok(value),
                    Err(Failure::Storage(e)) => return Err(e),
                    Err(Failure::Mongo(e)) => {
                        if idempotent
                            && retries < options.max_reconnect_attempts
                            && transient(&e)
                            && Instant::now() + pause < deadline
                        {
                            tracing::info!(operation = what, error = %e.kind, "MongoDB operation failed; trying again");
                            sleep(pause).await;
                            pause = pause.saturating_mul(2);
                            retries += 1;
                            continue;
                        }
                        tracing::warn!(operation = what, error = %e.kind, "MongoDB operation failed");
                        return Err(StorageError::Unavailable(format!(
                            "MongoDB {what} failed: {}",
                            e.kind
                        )));
                    }
                }
            }
        };
        match timeout_at(deadline, attempts).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(operation = what, "MongoDB operation timed out");
                Err(StorageError::Unavailable(format!(
                    "MongoDB did not complete {what} within {:?}",
                    options.operation_timeout
                )))
            }
        }
    }
}

/// Why [`MongoStore::open_client`] failed.
enum Opened {
    /// The configuration or the deployment is refused.
    Refused(String),
    /// MongoDB could not be reached (yet).
    Unreachable(String),
}

/// One index.
fn index(keys: Document, name: &str) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(IndexOptions::builder().name(name.to_owned()).build())
        .build()
}

/// A unique index.
fn unique(keys: Document, name: &str) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(
            IndexOptions::builder()
                .name(name.to_owned())
                .unique(true)
                .build(),
        )
        .build()
}

/// The TTL index that reclaims documents [`RECLAIM_AFTER`] after `e`.
fn reclaim() -> IndexModel {
    IndexModel::builder()
        .keys(doc! { "e": 1 })
        .options(
            IndexOptions::builder()
                .name("reclaim".to_owned())
                .expire_after(RECLAIM_AFTER)
                .build(),
        )
        .build()
}

/// Creates every index (see the table in the module docs); creating an
/// index that exists is a no-op.
async fn create_indexes(ready: &Ready, management_only: bool) -> mongodb::error::Result<()> {
    ready
        .queues()
        .create_index(unique(doc! { "p": 1, "q": 1 }, "by_name"))
        .await?;
    ready
        .pools()
        .create_indexes([
            unique(doc! { "uri": 1 }, "by_uri"),
            index(doc! { "f": 1 }, "by_flavor"),
        ])
        .await?;
    ready
        .flavors()
        .create_index(unique(doc! { "p": 1, "n": 1 }, "by_name"))
        .await?;
    ready
        .catalogue()
        .create_indexes([
            unique(doc! { "p": 1, "q": 1 }, "by_queue"),
            index(doc! { "pool": 1 }, "by_pool"),
        ])
        .await?;
    if management_only {
        return Ok(());
    }
    ready
        .subscriptions()
        .create_indexes([
            unique(doc! { "p": 1, "q": 1, "u": 1 }, "by_subscriber"),
            index(doc! { "p": 1, "q": 1, "o": 1 }, "by_queue"),
            // A post's "anyone confirmed?" (`Posted::subscribed`) is one
            // index search however many unconfirmed subscriptions there are.
            index(doc! { "p": 1, "q": 1, "cf": 1, "e": 1 }, "confirmed"),
            // The notifier's fan-out pages the confirmed ones in creation
            // order without reading the unconfirmed ones.
            index(doc! { "p": 1, "q": 1, "cf": 1, "o": 1 }, "confirmed_order"),
            reclaim(),
        ])
        .await?;
    ready
        .outbox()
        .create_indexes([
            index(doc! { "p": 1, "due": 1, "_id": 1 }, "by_project"),
            index(doc! { "due": 1 }, "by_due"),
        ])
        .await?;
    for part in ready.parts.iter() {
        let by_claim = IndexModel::builder()
            .keys(doc! { "c": 1 })
            .options(
                IndexOptions::builder()
                    .name("by_claim".to_owned())
                    .partial_filter_expression(doc! { "c": { "$exists": true } })
                    .build(),
            )
            .build();
        part.collection::<Document>(MESSAGES)
            .create_indexes([
                index(doc! { "p": 1, "q": 1, "k": 1 }, "queue_order"),
                by_claim,
                reclaim(),
            ])
            .await?;
        part.collection::<Document>(CLAIMS)
            .create_indexes([index(doc! { "p": 1, "q": 1 }, "by_queue"), reclaim()])
            .await?;
        part.collection::<Document>(COUNTERS)
            .create_index(unique(doc! { "p": 1, "q": 1 }, "by_queue"))
            .await?;
    }
    Ok(())
}

/// Opens the store configured in `section` of `config` (one of
/// [`options::MESSAGE_SECTION`] and [`options::MANAGEMENT_SECTION`]) and
/// runs the start-up check: a refused deployment (see
/// [`MongoStore::check_deployment`]) or a bad option stops the server with
/// a message naming the section and option; an unreachable MongoDB is
/// logged and the store connects when it can.
///
/// # Errors
/// The message to show.
pub fn open_configured(
    config: &crate::config::Config,
    section: &'static str,
    clock: SharedClock,
) -> Result<MongoStore, String> {
    let options = MongoOptions::from_sections(&config.sections, section, config.unreliable)?;
    match MongoStore::check_at_startup(&options)? {
        None => {}
        Some(why) => tracing::warn!(
            section,
            "MongoDB is not reachable at start-up ({why}): requests answer 503 until it is, \
             and the deployment check and indexes are done on first contact"
        ),
    }
    let management = section == options::MANAGEMENT_SECTION;
    let store = if management {
        MongoStore::connect_management(options, clock)
    } else {
        MongoStore::connect(options, clock)
    };
    store.map_err(|e| format!("[{section}]: {e}"))
}

/// The queue store for `[drivers] management_store = mongodb`, when queue
/// records are to live apart from the message store: the
/// `[drivers:management_store:mongodb]` section, unless it names no `uri`
/// while the message store is MongoDB too (then the records stay with the
/// messages, as they do when both sections name the same database).
///
/// # Errors
/// The message to show (a management store other than the message store
/// needs its `uri`).
pub fn management_queues(
    config: &crate::config::Config,
    clock: SharedClock,
) -> Result<Option<Arc<dyn super::QueueStore>>, String> {
    let section = options::MANAGEMENT_SECTION;
    let uri = config
        .sections
        .get(section)
        .and_then(|s| s.get("uri"))
        .map(|u| u.trim())
        .filter(|u| !u.is_empty());
    if config.message_store == crate::config::StoreEngine::Mongodb {
        let Some(uri) = uri else {
            return Ok(None);
        };
        let message = MongoOptions::from_sections(
            &config.sections,
            options::MESSAGE_SECTION,
            config.unreliable,
        )?;
        let management = MongoOptions::from_sections(&config.sections, section, config.unreliable)?;
        if uri == message.uri && management.database == message.database {
            return Ok(None);
        }
    } else if uri.is_none() {
        return Err(format!(
            "[{section}] uri: required with [drivers] management_store = mongodb (queue records \
             are kept there; the message store is {})",
            config.message_store
        ));
    }
    let store = open_configured(config, section, clock)?;
    Ok(Some(Arc::new(store)))
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("section", &self.inner.options.section)
            .field("database", &self.inner.options.database)
            .finish()
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        // Pinned: these values must never change (see `partition`).
        assert_eq!(partition("", 7), (0xcbf2_9ce4_8422_2325u64 % 7) as u32);
        let counts = (0..1000).fold([0u32; 4], |mut acc, i| {
            acc[partition(&format!("project-{i}"), 4) as usize] += 1;
            acc
        });
        assert!(counts.iter().all(|&n| n > 150), "{counts:?}");
        assert_eq!(partition("anything", 1), 0);
    }

    #[test]
    fn configuration_reaches_the_options() {
        let config = crate::config::Config::parse(
            "[DEFAULT]\nunreliable = true\n[drivers]\nmessage_store = mongodb\n\
             management_store = mongodb\n\
             [drivers:message_store:mongodb]\nuri = mongodb://db1,db2/?replicaSet=rs\n\
             partitions = 3\n",
        )
        .unwrap();
        assert!(config.unreliable);
        let o = MongoOptions::from_sections(
            &config.sections,
            options::MESSAGE_SECTION,
            config.unreliable,
        )
        .unwrap();
        assert!(o.unreliable);
        assert_eq!((o.partitions, o.database.as_str()), (3, "zaqar"));
        // No management uri while the message store is MongoDB too: queue
        // records stay with the messages (no start-up check, no store).
        let clock: SharedClock = Arc::new(crate::storage::SystemClock);
        assert!(management_queues(&config, clock.clone()).unwrap().is_none());
        // Beside another message store, the management section needs its uri.
        let config = crate::config::Config::parse(
            "[drivers]\nmessage_store = sqlite\nmanagement_store = mongodb\n",
        )
        .unwrap();
        let e = management_queues(&config, clock).err().unwrap();
        assert!(
            e.starts_with("[drivers:management_store:mongodb] uri:"),
            "{e}"
        );
        assert!(!config.unreliable);
    }

    #[test]
    fn standalone_and_weak_write_concerns_need_unreliable() {
        let strict = MongoOptions::for_uri("mongodb://h/?w=1", "zaqar").unwrap();
        let e = MongoStore::check_deployment(&strict, Deployment::Standalone).unwrap_err();
        assert!(e.contains("standalone") && e.contains("unreliable"), "{e}");
        let e = MongoStore::check_deployment(&strict, Deployment::ReplicaSet).unwrap_err();
        assert!(e.contains("w=1") && e.contains("unreliable"), "{e}");
        let majority = MongoOptions::for_uri("mongodb://h/", "zaqar").unwrap();
        assert!(MongoStore::check_deployment(&majority, Deployment::ReplicaSet).is_ok());
        assert!(MongoStore::check_deployment(&majority, Deployment::Sharded).is_ok());
        let two = MongoOptions::for_uri("mongodb://h/?w=2", "zaqar").unwrap();
        assert!(MongoStore::check_deployment(&two, Deployment::ReplicaSet).is_ok());
        let mut loose = strict.clone();
        loose.unreliable = true;
        assert!(MongoStore::check_deployment(&loose, Deployment::Standalone).is_ok());
    }
}
