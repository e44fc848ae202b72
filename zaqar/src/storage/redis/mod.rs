//! The Redis driver: queues, messages, claims, subscriptions and the
//! notification outbox in Redis, from one server to Sentinel and Redis
//! Cluster.
//!
//! # Layout
//!
//! A project's queue records (a lexicographic index and a hash of metadata
//! JSON) live under one hash tag, `<ns>:p{<plen>:<project>}`; each queue's
//! messages and claims under another, `<ns>:q{<plen>:<project>:<qlen>:<queue>}`
//! (see [`keys`] and the table at the top of `common.lua`). A queue's
//! messages are MessagePack records in one hash (written here, by
//! [`RedisStore::post`], so the post script only stores them), indexed by
//! rank and by expiry (one entry per run of messages posted together with
//! one expiry). Claims walk the rank index from a head: every message
//! above it is unclaimed, a free set holds the claimable ones below it
//! (released by a claim, or come due) and a wait set, by due time, the
//! ones passed over while delayed (so no claim walks past them twice), so a
//! post writes nothing for claims to find. Message and claim
//! keys are scoped by that prefix, so a message id only ever resolves inside
//! its own project and queue. A queue's subscriptions share its hash tag;
//! the notification outbox has one tag of its own, `<ns>:o{outbox}` (see
//! [`subscriptions`] for that choice and what it means on Cluster).
//!
//! Queue records and messages never need one atomic step together: the api
//! core creates a queue (one script on the project slot) before posting to
//! it, and deleting a queue is the pipeline's purge (queue slot) followed by
//! the record's removal (project slot). Neither step can leave a message
//! visible through another queue; a failure between the two leaves at worst
//! an empty queue record, removed by retrying the delete.
//!
//! # Atomicity and time
//!
//! Every operation on a queue is one Lua script: a function of the library
//! (see [`library`]) called by `FCALL` on Redis 7, or a script called by
//! SHA (`redis::Script` loads it again when Redis lost it). Each
//! script first brings the queue to "now" (`normalize` in `common.lua`):
//! expired claims give their messages back, expired messages are removed, each
//! entry once in its life, so cleaning needs no `KEYS` or keyspace `SCAN`.
//! "Now" is the injected [`Clock`](crate::storage::Clock)'s, passed as an
//! argument; Redis' clock is never read, and `PEXPIRE` (logical expiry plus
//! an hour) only lets Redis drop keys of queues nobody touches any more.
//!
//! A claim takes the oldest messages that no live claim holds and that are
//! not delayed; since the script runs alone on the queue's slot, two claims
//! can never take the same message, whatever the number of API servers.
//!
//! # Slots that move (Redis Cluster resharding)
//!
//! While a slot moves between masters (`CLUSTER SETSLOT ... MIGRATING`,
//! `MIGRATE` key by key), its keys are split between the two, and a script
//! that ran on either side would see only part of a queue, or stop half-way
//! at a key that just left (Redis checks each key a script touches and keeps
//! the writes made before the error). Every script therefore declares, next
//! to its routing key, a guard key nothing ever writes
//! ([`keys::slot_guard_key`]): Redis then refuses the call on both masters
//! (ASK, TRYAGAIN) until the slot has settled, before anything runs, and the
//! connection retries such refusals until the request's deadline
//! ([`conn::Connector::run`]). Operations on the moving slot's queues wait
//! (and fail with 503 past the deadline) instead of losing or duplicating
//! messages; other slots are not affected.
//!
//! # Dead letters on Cluster
//!
//! The dead-letter queue is another queue, so another slot. A claim moves a
//! message in three calls, each atomic on its own queue: the claim script
//! takes the message out of its queue into an outbox (`<Q>:dead`) with a
//! lease and returns its record; `dlq_insert` adds it to the DLQ unless that
//! id is already there; `dlq_ack` deletes it from the outbox. If the server
//! dies in between, the next claim on the source queue finds the entry with
//! its lease run out and hands it over again, so the message is never lost;
//! the insert is idempotent, so it is not duplicated (unless the DLQ copy was
//! consumed and deleted before a late retry re-adds it: the lease, 30 s,
//! makes that a window only for a server that stalls that long mid-move).
//!
//! # Round trips per operation
//!
//! | Operation | Round trips |
//! |---|---|
//! | queue create, get, delete (record), list, count | 1, plus the metadata stamp on a create or delete (see [`metadata_stamp`]) |
//! | queue set_metadata | 3 (stamp, metadata, stamp) |
//! | queue get_for_write | 0 while the queue's metadata is kept in memory, else 2 (stamp, metadata) |
//! | message post (any batch size), list, get, bulk_get, delete, bulk_delete, pop, stats, purge | 1, plus the chunks of a list of thousands (see "Limits") |
//! | claim create | 1, or 3 when messages move to a dead-letter queue |
//! | claim get, update, delete | 1 |
//! | long poll (claim or listing with `wait`) whose first look finds nothing | the looks, plus 1 to announce the wait (see `wake.rs`) |
//! | ping (`is_alive`) | 1 |
//! | every subscription operation; outbox enqueue (any fan-out), lease, complete, retry, next due | 1 |
//! | `DELETE /v2/queues/{q}` through the pipeline | 2 (purge + record) |
//!
//! Plus, once per Redis node, one `FUNCTION LOAD` when a call finds the
//! function library missing (see [`library`]), or, for the scripts run as
//! `EVALSHA`, one `SCRIPT LOAD` per script after a `NOSCRIPT` reply; a
//! post, bulk delete or bulk get of more than a few thousand values adds
//! the round trips of its chunks (see "Limits"). The
//! work Redis does inside a script grows with what it must skip (listing
//! past many filtered messages, claiming behind many delayed ones) and with
//! the garbage it collects, up to the bounds below.
//!
//! # Limits
//!
//! A script error does not roll back what the script wrote before it, and
//! Lua's `unpack` fails near 8,000 values: a claim that dead-lettered 5,000
//! messages once removed them from the queue, then failed to add them to
//! its outbox. So, in every script (`common.lua` holds the helpers):
//!
//! - every number is checked before the first write (`arg_int`: an integer
//!   within its range; times within now..=9999-12-31). The server computes
//!   every time from a client's ttl, grace or delay in one place,
//!   [`super::deadline`], refusing what would overflow; the
//!   script checks again, so a bad number can never turn into a negative
//!   `PEXPIRE` that deletes a queue;
//! - no command built from a list takes more than 1,000 values (`CHUNK`);
//! - no call carries more than 2,000 values of a list (`MAX_INLINE_VALUES`):
//!   a longer list (a post of 20,000 messages, a bulk delete with thousands
//!   of claim ids) is first written, 1,000 values per command, to a list
//!   key under the queue's hash tag, which the script reads a chunk at a
//!   time (`arg_list`), so the operation stays one atomic script; reads
//!   (bulk get, the dead-letter hand-over, outbox fan-outs) are split into
//!   calls of 1,000 ids instead;
//! - one call collects at most 10,000 units of garbage (`GC_BUDGET`: an
//!   expired message never claimed costs 1, any other expired message or
//!   message of an expired claim 4; about 10 ms of Redis time) and leaves
//!   the rest to the next calls. Readers never show what expired meanwhile
//!   (records are checked against now, claims against their own expiry,
//!   and a listing skips an expired run at a time); only stats may count
//!   expired messages while more than one budget of them waits;
//! - one call claims, pops or lists at most [`MAX_PER_CALL`] (10,000)
//!   messages and reads at most as many records walking an index
//!   (`SCAN_BUDGET`), dead letters included: a claim moves at most that
//!   many to its dead-letter queue per call. Subscriptions: at most 2,000
//!   expired ones removed per call, and a listing skips at most 10,000 of
//!   those not removed yet.
//!
//! # Numbers
//!
//! A post of 10 messages costs Redis about 64 µs in its script (`INFO
//! commandstats`: one `HSET` of ten records, one `ZADD` of ten ranks, one
//! of a single expiry run, a few calls of bookkeeping), and about 80 µs of
//! Redis CPU per request in all, metadata read and I/O included. The
//! side-by-side numbers against the reference are in
//! `doc/source/performance.rst` (`tools/bench-compare.sh`).
//!
//! # Failure
//!
//! See `conn.rs`: every operation finishes within `request_timeout` with
//! [`StorageError::Unavailable`] when Redis cannot be reached, and the next
//! operation reconnects by itself (following Sentinel to a new master).
//! Writes are acknowledged by the master; with Sentinel, a failover can lose
//! the writes its replica had not yet received (asynchronous replication:
//! on loopback a few milliseconds' worth; `test_redis_faults.py` counts
//! them). With `wait_replicas = N` every script is followed by `WAIT N
//! wait_timeout` on the same connection, and a write fewer than N replicas
//! acknowledged in time answers [`StorageError::Unavailable`] (the master
//! applied it all the same): one more round trip per operation.

mod catalogue;
mod claims;
mod conn;
pub mod keys;
mod library;
mod messages;
pub mod metadata_stamp;
pub mod options;
mod queues;
pub mod subscriptions;
mod wake;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use ::redis::{FromRedisValue, Script};
use async_trait::async_trait;
use serde_json::value::RawValue;

use self::conn::Connector;
use self::library::LibraryScript;
pub use self::options::{HostPort, RedisOptions, RedisTopology};
use super::clock::SharedClock;
use super::deadline::{self, ClaimTimes};
use super::pipeline::Backend;
use super::{
    ClaimInfo, ClaimRequest, ClaimStore, ListQuery, Message, MessagePage, MessageStamp,
    MessageStore, Metadata, NewClaim, NewMessage, Posted, QueueEntry, QueueStats, QueueStore,
    Scope, StorageError, StorageResult, Subscribed,
};

/// How long a claim's dead-letter hand-over may take before another server
/// finishes it (ms).
const DLQ_LEASE_MS: i64 = 30_000;

/// The most messages one script call claims, pops or lists, and the most
/// records it reads walking an index (`SCAN_BUDGET` in `common.lua`): a
/// larger `limit` gets at most this many.
pub const MAX_PER_CALL: usize = 10_000;

/// The most values of a list argument passed inline to one script call;
/// a longer list is spilled (see [`RedisStore::list_arg`]).
const MAX_INLINE_VALUES: usize = 2_000;

/// The most values per command when a list is spilled, and the most ids
/// per call of a script that takes ids (`get`, the dead-letter hand-over).
const VALUES_PER_COMMAND: usize = 1_000;

/// The most dead-letter records per `dlq_insert` call (8 values each).
const RECORDS_PER_CALL: usize = 250;

/// The most bytes of values sent in one command or script call (bodies
/// can be large); a single larger value still goes alone.
const MAX_CALL_BYTES: usize = 8 << 20;

/// How long a spilled list may wait for its script (ms); the script
/// deletes it, this is only for a caller that died in between.
const SPILL_TTL_MS: u64 = 120_000;

/// The scripts: those of one queue's keys (and subscriptions) as the
/// function library (see [`library`]), the others as `EVALSHA`.
struct Scripts {
    library: library::Library,
    queue: Script,
    post: LibraryScript,
    list: LibraryScript,
    get: LibraryScript,
    delete: LibraryScript,
    bulk_delete: LibraryScript,
    pop: LibraryScript,
    stats: LibraryScript,
    purge: LibraryScript,
    claim_create: LibraryScript,
    claim_get: LibraryScript,
    claim_update: LibraryScript,
    claim_delete: LibraryScript,
    dlq_read: LibraryScript,
    dlq_insert: LibraryScript,
    dlq_ack: LibraryScript,
    subscription: LibraryScript,
    outbox: Script,
    wake_expect: Script,
    wake_publish: Script,
}

impl Scripts {
    /// The scripts; `functions = false` runs the library's as `EVALSHA`.
    fn new(functions: bool) -> Self {
        let library = library::Library::new(functions);
        let l = |name| library.script(name);
        Scripts {
            queue: Script::new(include_str!("queue.lua")),
            post: l("post"),
            list: l("list"),
            get: l("get"),
            delete: l("delete"),
            bulk_delete: l("bulk_delete"),
            pop: l("pop"),
            stats: l("stats"),
            purge: l("purge"),
            claim_create: l("claim_create"),
            claim_get: l("claim_get"),
            claim_update: l("claim_update"),
            claim_delete: l("claim_delete"),
            dlq_read: l("dlq_read"),
            dlq_insert: l("dlq_insert"),
            dlq_ack: l("dlq_ack"),
            subscription: l("subscription"),
            outbox: Script::new(include_str!("outbox.lua")),
            wake_expect: Script::new(include_str!("wake_expect.lua")),
            wake_publish: Script::new(include_str!("wake_publish.lua")),
            library,
        }
    }
}

struct Inner {
    conn: Connector,
    clock: SharedClock,
    scripts: Scripts,
    ns: String,
    /// The long-poll wake-up channel of `ns` ([`wake::channel`]), made once.
    wake_channel: String,
    /// `(replicas, timeout ms)` for `WAIT` after each script, when asked for.
    wait: Option<(u32, u64)>,
    /// Queue metadata kept for posts, with its stamp (see [`metadata_stamp`]).
    stamped: metadata_stamp::StampedMetadata,
}

/// The Redis store: implements the queue, message, claim and subscription
/// stores and the notification outbox. Cheap
/// to clone; all clones share one connection.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

/// A message as the scripts render it (`render` in `common.lua`): the
/// MessagePack sequence (id, ttl, created ms, body, claim id or "", claim
/// count, checksum or ""), one bulk string per message. The RESP parser
/// of the `redis` crate costs about a thousand instructions per value
/// whatever its size, so seven values per message made parsing a reply a
/// third of the server's work on a listing of ten.
type MessageRow = Vec<u8>;

/// A message leaving for the dead-letter queue, as `dlq_read` returns it:
/// (id, ttl, expiry ms, created ms, client id, body, checksum, claim count).
type DeadRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
);

fn to_message(row: MessageRow) -> StorageResult<Message> {
    let mut f = Fields::new(&row, "message");
    let id = f.str()?.to_owned();
    let ttl = f.int()?;
    let created_ms = f.int()?;
    let body = f.str()?;
    let claim_id = f.str()?;
    let claim_count = f.int()?;
    let checksum = f.str()?;
    let body = serde_json::from_str::<Box<RawValue>>(body).map_err(|e| {
        StorageError::Unavailable(format!("message {id} has a corrupt body in Redis: {e}"))
    })?;
    Ok(Message {
        id,
        ttl,
        created_ms,
        body,
        claim_id: (!claim_id.is_empty()).then(|| claim_id.to_owned()),
        claim_count,
        checksum: (!checksum.is_empty()).then(|| checksum.to_owned()),
    })
}

/// The fields of a MessagePack sequence a script answered, read in order
/// straight from the reply's bytes with rmp's own decoder (`rmp_serde`
/// spent about 200 instructions a field, 14,000 on a claim of ten). A
/// field missing or of another type is a 503: a script of another
/// version, or a bug.
struct Fields<'a> {
    rest: &'a [u8],
    /// What the sequence is, for the error.
    what: &'static str,
}

impl<'a> Fields<'a> {
    fn new(row: &'a [u8], what: &'static str) -> Self {
        Fields { rest: row, what }
    }

    /// The next field, a string (borrowed from the reply).
    fn str(&mut self) -> StorageResult<&'a str> {
        let (s, rest) =
            rmp::decode::read_str_from_slice(self.rest).map_err(|e| self.unreadable(e))?;
        self.rest = rest;
        Ok(s)
    }

    /// The next field, an integer of any MessagePack width that fits an `i64`.
    fn int(&mut self) -> StorageResult<i64> {
        let mut rd = rmp::decode::Bytes::new(self.rest);
        let n = rmp::decode::read_int(&mut rd).map_err(|e| self.unreadable(e))?;
        self.rest = rd.remaining_slice();
        Ok(n)
    }

    /// The next field, a count (an integer, never negative).
    fn count(&mut self) -> StorageResult<u64> {
        let n = self.int()?;
        u64::try_from(n).map_err(|_| self.unreadable(format_args!("a negative count, {n}")))
    }

    fn unreadable(&self, e: impl std::fmt::Display) -> StorageError {
        StorageError::Unavailable(format!("unreadable {} from Redis: {e}", self.what))
    }
}

/// `stats.lua`'s answer: total, free, oldest id or "", its creation ms,
/// newest id or "", its creation ms.
fn to_stats(row: &[u8]) -> StorageResult<(u64, u64, String, i64, String, i64)> {
    let mut f = Fields::new(row, "stats");
    Ok((
        f.count()?,
        f.count()?,
        f.str()?.to_owned(),
        f.int()?,
        f.str()?.to_owned(),
        f.int()?,
    ))
}

fn to_messages(rows: Vec<MessageRow>) -> StorageResult<Vec<Message>> {
    rows.into_iter().map(to_message).collect()
}

/// The claim times as `claim_create.lua` and `claim_update.lua` take them:
/// ttl s, claim end ms, extended message ttl s, keep-until ms.
fn claim_time_args(t: &ClaimTimes) -> [String; 4] {
    [
        int(t.ttl),
        int(t.ends_ms),
        int(t.message_ttl),
        int(t.keep_until_ms),
    ]
}

/// An integer as a script argument (decimal text; without fmt's machinery,
/// which cost ~900 instructions a call on the post path).
fn int(n: impl itoa::Integer) -> String {
    itoa::Buffer::new().format(n).to_owned()
}

fn flag(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

impl RedisStore {
    /// Prepares the store. No connection is made here: the first operation
    /// connects, so the server starts (and answers 503) while Redis is down.
    ///
    /// # Errors
    /// [`StorageError::Unavailable`] when the options cannot make a client
    /// (e.g. TLS asked for with an unusable configuration, or a key prefix with braces).
    pub fn connect(options: RedisOptions, clock: SharedClock) -> StorageResult<RedisStore> {
        if options.key_prefix.contains(['{', '}']) || options.key_prefix.is_empty() {
            return Err(StorageError::Unavailable(format!(
                "invalid Redis key prefix {:?}: it must be non-empty, without braces",
                options.key_prefix
            )));
        }
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn: Connector::new(&options)?,
                clock,
                scripts: Scripts::new(options.lua_functions),
                wait: (options.wait_replicas > 0).then(|| {
                    (
                        options.wait_replicas,
                        options.wait_timeout.as_millis().max(1) as u64,
                    )
                }),
                wake_channel: wake::channel(&options.key_prefix),
                ns: options.key_prefix,
                stamped: Default::default(),
            }),
        })
    }

    /// The driver's stores: queues, messages, claims, subscriptions and
    /// the notification outbox (see [`subscriptions`]).
    pub fn backend(&self) -> Backend {
        Backend {
            queues: Arc::new(self.clone()),
            messages: Arc::new(self.clone()),
            claims: Arc::new(self.clone()),
            subscriptions: Arc::new(self.clone()),
            outbox: Some(Arc::new(self.clone())),
            catalogue: Some(Arc::new(self.clone())),
            wake_bus: Some(Arc::new(self.clone())),
        }
    }

    /// Runs a per-queue script with `args` after the common (prefix, now) pair.
    async fn eval_queue<T, A>(
        &self,
        what: &'static str,
        idempotent: bool,
        script: &LibraryScript,
        scope: &Scope,
        args: Vec<A>,
    ) -> StorageResult<T>
    where
        T: FromRedisValue + Send,
        A: ::redis::ToRedisArgs + Send + Sync,
    {
        let now = self.inner.clock.now_ms();
        self.eval_queue_at(what, idempotent, script, scope, now, args)
            .await
    }

    /// [`Self::eval_queue`] at a given "now" (for arguments computed from it).
    async fn eval_queue_at<T, A>(
        &self,
        what: &'static str,
        idempotent: bool,
        script: &LibraryScript,
        scope: &Scope,
        now: i64,
        args: Vec<A>,
    ) -> StorageResult<T>
    where
        T: FromRedisValue + Send,
        A: ::redis::ToRedisArgs + Send + Sync,
    {
        let prefix = &keys::queue_prefix(&self.inner.ns, scope);
        let mut call = library::Args::default();
        call.key(keys::queue_route_key(prefix))
            .key(keys::slot_guard_key(prefix))
            .arg(prefix)
            .arg(now);
        for a in &args {
            call.arg(a);
        }
        let call = &call;
        let library = &self.inner.scripts.library;
        let wait = self.inner.wait;
        let reply = self
            .inner
            .conn
            .run(what, idempotent, |mut conn| async move {
                let value = library
                    .call(script, &call.keys, &call.args, &mut conn)
                    .await?;
                Ok((value, acks(&mut conn, wait).await?))
            })
            .await?;
        self.replicated(what, reply)
    }

    /// The script's answer, once `WAIT` (when configured) saw enough
    /// replicas acknowledge its writes.
    fn replicated<T>(&self, what: &str, (value, acks): (T, Option<i64>)) -> StorageResult<T> {
        match (self.inner.wait, acks) {
            (Some((wanted, timeout_ms)), Some(acks)) if acks < i64::from(wanted) => {
                tracing::warn!(
                    operation = what,
                    acks,
                    wanted,
                    "Redis write not replicated in time"
                );
                Err(StorageError::Unavailable(format!(
                    "Redis {what}: the master applied the write but only {acks} of {wanted} \
                     replicas acknowledged it within {timeout_ms} ms (wait_replicas)"
                )))
            }
            _ => Ok(value),
        }
    }

    /// Runs the project-slot queue script.
    async fn eval_project<T>(
        &self,
        what: &'static str,
        idempotent: bool,
        project: &str,
        args: &[&str],
    ) -> StorageResult<T>
    where
        T: FromRedisValue + Send,
    {
        let prefix = &keys::project_prefix(&self.inner.ns, project);
        let script = &self.inner.scripts.queue;
        let wait = self.inner.wait;
        let reply = self
            .inner
            .conn
            .run(what, idempotent, |mut conn| async move {
                let mut call = script.key(format!("{prefix}:queues"));
                call.key(format!("{prefix}:meta"));
                call.key(keys::slot_guard_key(prefix));
                for a in args {
                    call.arg(*a);
                }
                invoke(&call, &mut conn, wait).await
            })
            .await?;
        self.replicated(what, reply)
    }

    /// Moves dead-lettered messages into the DLQ, then out of the outbox.
    async fn dead_letter(
        &self,
        scope: &Scope,
        request: &ClaimRequest,
        dead: Vec<String>,
    ) -> StorageResult<()> {
        let Some(policy) = &request.dead_letter else {
            // claim_create hands out dead letters only under a policy.
            return Ok(());
        };
        let dlq = Scope::new(scope.project.clone(), policy.queue.clone());
        self.hand_over(scope, &dlq, policy.ttl.unwrap_or(-1), dead)
            .await
    }

    /// The hand-over itself, a chunk of ids at a time: read the records
    /// from the source's outbox, insert them into the DLQ (idempotent),
    /// then acknowledge them. A failure leaves the rest in the outbox,
    /// handed over again by a later claim once the lease runs out.
    async fn hand_over(
        &self,
        from: &Scope,
        to: &Scope,
        ttl: i64,
        dead: Vec<String>,
    ) -> StorageResult<()> {
        let s = &self.inner.scripts;
        for ids in dead.chunks(VALUES_PER_COMMAND) {
            let rows: Vec<DeadRow> = self
                .eval_queue("dead-letter read", true, &s.dlq_read, from, ids.to_vec())
                .await?;
            let size = |r: &DeadRow| r.0.len() + r.4.len() + r.5.len() + r.6.len() + 64;
            for records in batches(&rows, RECORDS_PER_CALL, MAX_CALL_BYTES, size) {
                let mut args = Vec::with_capacity(1 + 8 * records.len());
                args.push(ttl.to_string());
                for (id, t, e, cr, u, b, k, n) in records.iter().cloned() {
                    args.extend([id, t, e, cr, u, b, k, n]);
                }
                let _: String = self
                    .eval_queue("dead-letter insert", true, &s.dlq_insert, to, args)
                    .await?;
            }
            let _: String = self
                .eval_queue(
                    "dead-letter acknowledge",
                    true,
                    &s.dlq_ack,
                    from,
                    ids.to_vec(),
                )
                .await?;
        }
        Ok(())
    }

    /// Passes `values` to a script as one list argument (`arg_list` in
    /// `common.lua`): inline when short, as `(b"", values)`; otherwise
    /// written first to a list under the queue's hash tag, a chunk per
    /// command, as `(key, [])`. So no call ever carries more than a few
    /// thousand values, whatever the caller passed, and the script still
    /// sees the whole list in one atomic step. The script deletes the list;
    /// it expires by itself should the script never run.
    async fn list_arg(
        &self,
        scope: &Scope,
        values: Vec<Vec<u8>>,
    ) -> StorageResult<(Vec<u8>, Vec<Vec<u8>>)> {
        let bytes: usize = values.iter().map(Vec::len).sum();
        if values.len() <= MAX_INLINE_VALUES && bytes <= MAX_CALL_BYTES {
            return Ok((Vec::new(), values));
        }
        let key = format!(
            "{}:spill:{}",
            keys::queue_prefix(&self.inner.ns, scope),
            uuid::Uuid::new_v4().simple()
        );
        for chunk in batches(&values, VALUES_PER_COMMAND, MAX_CALL_BYTES, Vec::len) {
            let key = &key;
            self.inner
                .conn
                .run("list argument", false, |mut conn| async move {
                    ::redis::pipe()
                        .cmd("RPUSH")
                        .arg(key)
                        .arg(chunk)
                        .ignore()
                        .cmd("PEXPIRE")
                        .arg(key)
                        .arg(SPILL_TTL_MS)
                        .ignore()
                        .query_async::<()>(&mut conn)
                        .await
                })
                .await?;
        }
        Ok((key.into_bytes(), Vec::new()))
    }
}

/// Splits `items` into runs of at most `max_items` items and `max_bytes`
/// bytes by `size` (an item larger than that by itself goes alone).
fn batches<T>(
    items: &[T],
    max_items: usize,
    max_bytes: usize,
    size: impl Fn(&T) -> usize,
) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let n = size(item);
        if i > start && (i - start == max_items || bytes + n > max_bytes) {
            out.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += n;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// Runs a script and then, with `wait = Some((replicas, timeout ms))`,
/// `WAIT` on the same connection; returns the script's answer and the
/// number of replicas that acknowledged (`None` without `WAIT`).
///
/// On Redis Cluster the client sends `WAIT` to every master and keeps the
/// smallest answer, so each master needs that many replicas.
///
/// A failed `WAIT` comes back as an I/O error: the script ran, so it must
/// never look like a refusal that [`conn::Connector::run`] would retry.
async fn invoke<T: FromRedisValue>(
    call: &::redis::ScriptInvocation<'_>,
    conn: &mut conn::Conn,
    wait: Option<(u32, u64)>,
) -> ::redis::RedisResult<(T, Option<i64>)> {
    let value = call.invoke_async(conn).await?;
    Ok((value, acks(conn, wait).await?))
}

/// With `wait = Some((replicas, timeout ms))`, `WAIT` on `conn` after a
/// script ran: how many replicas acknowledged its writes (see [`invoke`]).
async fn acks(
    conn: &mut conn::Conn,
    wait: Option<(u32, u64)>,
) -> ::redis::RedisResult<Option<i64>> {
    Ok(match wait {
        Some((replicas, timeout_ms)) => Some(
            ::redis::cmd("WAIT")
                .arg(replicas)
                .arg(timeout_ms)
                .query_async(conn)
                .await
                .map_err(|e| {
                    ::redis::RedisError::from((
                        ::redis::ErrorKind::Io,
                        "WAIT failed after the script ran",
                        e.to_string(),
                    ))
                })?,
        ),
        None => None,
    })
}

/// The runs of consecutive equal values in `expiries`, as (value, length).
fn runs(expiries: &[i64]) -> Vec<(i64, usize)> {
    let mut out: Vec<(i64, usize)> = Vec::new();
    for &e in expiries {
        match out.last_mut() {
            Some((last, n)) if *last == e => *n += 1,
            _ => out.push((e, 1)),
        }
    }
    out
}

/// A message's record as `common.lua` decodes it: the MessagePack sequence
/// (ttl s, expiry ms, created ms, client id, body, checksum or "",
/// claim id "", claim count 0, delayed until ms). The times come from
/// [`deadline::message_times`].
fn record(
    m: &NewMessage,
    client_id: &str,
    now: i64,
    (expiry, delayed_until): (i64, i64),
) -> Vec<u8> {
    let body = m.body.get();
    let checksum = m.checksum.as_deref().unwrap_or("");
    let mut out = Vec::with_capacity(body.len() + client_id.len() + checksum.len() + 48);
    // Writing into a Vec cannot fail.
    let _ = rmp::encode::write_sint(&mut out, m.ttl);
    let _ = rmp::encode::write_sint(&mut out, expiry);
    let _ = rmp::encode::write_sint(&mut out, now);
    let _ = rmp::encode::write_str(&mut out, client_id);
    let _ = rmp::encode::write_str(&mut out, body);
    let _ = rmp::encode::write_str(&mut out, checksum);
    let _ = rmp::encode::write_str(&mut out, "");
    let _ = rmp::encode::write_sint(&mut out, 0);
    let _ = rmp::encode::write_sint(&mut out, delayed_until);
    out
}

fn metadata_json(metadata: &Metadata) -> StorageResult<String> {
    serde_json::to_string(metadata)
        .map_err(|e| StorageError::Unavailable(format!("cannot encode metadata: {e}")))
}

fn parse_metadata(json: &str) -> StorageResult<Metadata> {
    serde_json::from_str(json)
        .map_err(|e| StorageError::Unavailable(format!("corrupt queue metadata in Redis: {e}")))
}
