//! The embedded driver: SQLite (bundled) in one database file.
//!
//! This is the default backend: the server runs with no other service and
//! loses nothing on restart. The file is opened in WAL mode with
//! `synchronous=NORMAL`, so a committed transaction survives the process being
//! killed (`kill -9`); only an OS crash or power loss may drop the last few
//! commits, never corrupt the file.
//!
//! # Layout
//!
//! - `schema`: the tables and the index behind every access path.
//! - `queues`, `messages`, `claims`: one trait implementation each.
//! - `subscriptions`: the subscription store and the notification outbox.
//! - this module: opening, the connection pool, the blocking-call helpers and
//!   the expiry reaper.
//!
//! # Concurrency
//!
//! SQLite calls block, so every call runs on tokio's blocking pool
//! ([`tokio::task::spawn_blocking`]); the async runtime never waits on the
//! disk. There is one *writer* connection behind a [`std::sync::Mutex`]:
//! SQLite admits one writer at a time anyway, and serialising writers in the
//! process spares us `SQLITE_BUSY` retries. Reads go to a few *reader*
//! connections (WAL lets them run beside the writer, each on a consistent
//! snapshot). A call first waits, asynchronously, for a permit of its kind
//! (one for the writer, one per reader), and only then takes a blocking
//! thread: the blocking pool stays as small as the connections, instead of
//! filling with threads parked on a busy connection. The mutexes are only
//! ever taken inside the blocking closure, so no lock is held across an
//! `.await`. Write transactions that read before
//! they write (claim create, delete with claim rules) use `BEGIN IMMEDIATE`,
//! which also keeps them atomic should another process open the same file.
//! Posts, the commonest write, are grouped
//! ([`group_commit`](crate::storage::group_commit)): those that arrive while
//! a transaction of posts is being written go together in the next one, so
//! concurrent posts share the lock, the transaction and the commit instead
//! of queueing for them one by one.
//!
//! # Time and expiry
//!
//! All times are milliseconds from the injected [`Clock`](super::Clock). A
//! row is *live* while `expires_ms > now`; every query filters on that, so
//! expired rows are invisible at once. Deleting them is the job of the
//! reaper: [`SqliteStore::open`] spawns it on the current tokio runtime (when
//! there is one) and it stops by itself when the last handle on the store is
//! dropped. It deletes expired messages and claims in small batches, giving
//! the writer lock back between batches so requests are not held up.
//! [`SqliteStore::reap_expired`] runs one pass on demand.

mod catalogue;
mod claims;
mod messages;
mod queues;
mod schema;
pub use schema::{file_version as schema_version_of, VERSION as SCHEMA_VERSION};
mod subscriptions;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError, Weak};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::clock::SharedClock;
use super::group_commit::GroupCommit;
use super::pipeline::Backend;
use super::{StorageError, StorageResult};

/// How many reader connections a store keeps open.
const READERS: usize = 4;
/// How long a connection waits for a lock held by another process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the reaper looks for expired rows.
const REAP_INTERVAL: Duration = Duration::from_secs(10);
/// Rows deleted per reaper transaction.
const REAP_BATCH: usize = 256;

/// The embedded store. Cheap to clone: every clone shares the same
/// connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    clock: SharedClock,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// One permit per connection of each kind: a request waits for a
    /// connection here, asynchronously, before it takes a blocking thread,
    /// so no blocking thread sits parked on a connection's lock (under 16
    /// concurrent clients the blocking pool had grown to 40 threads, each
    /// with its own allocator arenas).
    writer_slot: Arc<Semaphore>,
    reader_slots: Arc<Semaphore>,
    /// Concurrent posts, written together in one transaction.
    posts: Arc<PostBatches>,
    /// Dropped with the store; the reaper tasks notice and stop.
    _stop: watch::Sender<()>,
}

/// The grouped posts of a store: every post of the file waits for the
/// transaction being written, then goes with the others in the next one.
type PostBatches = GroupCommit<(), messages::PendingPost, StorageResult<super::Posted>>;

/// What one reaper pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Expired messages deleted.
    pub messages: u64,
    /// Expired claims deleted.
    pub claims: u64,
}

/// An error inside a blocking database closure, mapped to
/// [`StorageError`] once it is back on the async side.
#[derive(Debug)]
enum DbError {
    /// SQLite itself failed.
    Sql(rusqlite::Error),
    /// A stored value could not be decoded (a body or metadata that is not
    /// valid JSON any more).
    Corrupt(String),
    /// A domain answer (claim rules, missing queue...).
    Storage(StorageError),
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sql(e)
    }
}

impl From<StorageError> for DbError {
    fn from(e: StorageError) -> Self {
        DbError::Storage(e)
    }
}

type DbResult<T> = Result<T, DbError>;

/// Why a database file could not be opened.
#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error("journal_mode is {0:?}, but WAL is required")]
    NotWal(String),
    #[error("schema version {0} is newer than this build supports ({v})", v = schema::VERSION)]
    NewerSchema(i64),
}

impl DbError {
    fn into_storage(self, op: &'static str) -> StorageError {
        match self {
            DbError::Sql(e) => {
                tracing::warn!(op, error = %e, "sqlite operation failed");
                StorageError::Unavailable(format!("sqlite: {op} failed: {e}"))
            }
            DbError::Corrupt(what) => {
                tracing::warn!(op, what = %what, "sqlite record could not be decoded");
                StorageError::Unavailable(format!("sqlite: {op}: stored record is corrupt: {what}"))
            }
            DbError::Storage(e) => e,
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its
    /// schema up to date.
    ///
    /// This does blocking file I/O: call it at start-up, before serving. When
    /// called inside a tokio runtime it also spawns the expiry reaper on that
    /// runtime (see the module docs); outside one, expired rows stay invisible
    /// but are only deleted by [`SqliteStore::reap_expired`].
    ///
    /// # Errors
    /// [`StorageError::Unavailable`] when the file cannot be opened, is not a
    /// SQLite database, cannot switch to WAL mode, or was written by a newer
    /// schema version.
    pub fn open(path: &Path, clock: SharedClock) -> StorageResult<Self> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            StorageError::Unavailable(format!("sqlite: cannot {what} {}: {e}", path.display()))
        };
        let writer = open_connection(path, true).map_err(|e| fail("open", &e))?;
        schema::migrate(&writer, clock.now_ms()).map_err(|e| fail("set up the schema of", &e))?;
        let readers = (0..READERS)
            .map(|_| open_connection(path, false).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail("open a reader on", &e))?;
        let (stop, _) = watch::channel(());
        let store = SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                clock,
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
                writer_slot: Arc::new(Semaphore::new(1)),
                reader_slots: Arc::new(Semaphore::new(READERS)),
                posts: GroupCommit::new(messages::POST_BATCH),
                _stop: stop,
            }),
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            store.spawn_reaper();
        } else {
            tracing::debug!(path = %path.display(), "no tokio runtime: sqlite reaper not started");
        }
        Ok(store)
    }

    /// The driver's stores (and its outbox), sharing this store's connections.
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

    /// The database file this store was opened on.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Deletes every expired message and claim now, in batches of a few
    /// hundred rows (the writer lock is released between batches).
    ///
    /// # Errors
    /// [`StorageError::Unavailable`] when SQLite fails.
    pub async fn reap_expired(&self) -> StorageResult<Reaped> {
        reap(Arc::clone(&self.inner)).await
    }

    /// Spawns a reaper task on the current runtime. It runs a pass every
    /// [`REAP_INTERVAL`] and ends when the last handle on the store is dropped.
    fn spawn_reaper(&self) -> JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let mut stop = self.inner._stop.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REAP_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    // Err = the sender was dropped with the store.
                    changed = stop.changed() => if changed.is_err() { break },
                    _ = tick.tick() => {
                        let Some(inner) = weak.upgrade() else { break };
                        match reap(inner).await {
                            Ok(r) if r != Reaped::default() => {
                                tracing::debug!(messages = r.messages, claims = r.claims, "sqlite reaper");
                            }
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "sqlite reaper pass failed"),
                        }
                    }
                }
            }
            tracing::debug!("sqlite reaper stopped");
        })
    }

    /// Runs `f` on the writer connection, on the blocking pool. `f` receives
    /// the clock's "now", read once the lock is held so that writes are
    /// ordered the same way as their timestamps.
    async fn write<T, F>(&self, op: &'static str, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, i64) -> DbResult<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let permit = slot(&inner.writer_slot, op).await?;
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut conn = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
            let now = inner.clock.now_ms();
            f(&mut conn, now)
        })
        .await;
        finish(op, joined)
    }

    /// Runs `f` on a reader connection, on the blocking pool.
    async fn read<T, F>(&self, op: &'static str, f: F) -> StorageResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, i64) -> DbResult<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let permit = slot(&inner.reader_slots, op).await?;
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut conn = inner.reader();
            let now = inner.clock.now_ms();
            f(&mut conn, now)
        })
        .await;
        finish(op, joined)
    }
}

/// A permit of `slots`, held (moved into the blocking task) until the
/// connection is given back, even when the request is dropped meanwhile.
async fn slot(slots: &Arc<Semaphore>, op: &'static str) -> StorageResult<OwnedSemaphorePermit> {
    Arc::clone(slots)
        .acquire_owned()
        .await
        .map_err(|_| StorageError::Unavailable(format!("sqlite: {op}: the store is closed")))
}

impl Inner {
    /// A free reader connection, or (all busy) the next one in turn.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            match self.readers[(start + i) % n].try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        self.readers[start]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

fn finish<T>(
    op: &'static str,
    joined: Result<DbResult<T>, tokio::task::JoinError>,
) -> StorageResult<T> {
    match joined {
        Ok(result) => result.map_err(|e| e.into_storage(op)),
        Err(e) => Err(StorageError::Unavailable(format!(
            "sqlite: {op} did not complete: {e}"
        ))),
    }
}

/// Opens one connection with the pragmas every connection needs.
fn open_connection(path: &Path, writer: bool) -> Result<Connection, OpenError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if writer {
        // journal_mode answers with the mode now in force.
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OpenError::NotWal(mode));
        }
    } else {
        conn.pragma_update(None, "query_only", true)?;
    }
    // With WAL, NORMAL syncs at checkpoints only: durable across a process
    // crash, not necessarily across power loss.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// One reaper pass: expired messages, then expired claims, each in batches.
async fn reap(inner: Arc<Inner>) -> StorageResult<Reaped> {
    let mut reaped = Reaped::default();
    for (table, sql) in [
        ("messages", schema::REAP_MESSAGES),
        ("claims", schema::REAP_CLAIMS),
    ] {
        loop {
            let inner = Arc::clone(&inner);
            let permit = slot(&inner.writer_slot, "reap").await?;
            let joined = tokio::task::spawn_blocking(move || -> DbResult<usize> {
                let _permit = permit;
                let conn = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
                let now = inner.clock.now_ms();
                let n = conn
                    .prepare_cached(sql)?
                    .execute(rusqlite::params![now, REAP_BATCH as i64])?;
                Ok(n)
            })
            .await;
            let n = finish("reap", joined)?;
            match table {
                "messages" => reaped.messages += n as u64,
                _ => reaped.claims += n as u64,
            }
            if n < REAP_BATCH {
                break;
            }
        }
    }
    Ok(reaped)
}
