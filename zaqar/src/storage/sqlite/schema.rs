//! The database schema and the statements shared by several modules.
//!
//! Three tables, every row scoped by `(project, queue)` (version 2 adds
//! `subscriptions` and `outbox`, version 3 the outbox's index by project,
//! described in the `subscriptions` module; version 4 the pooling tables,
//! described in the `catalogue` module; version 5 the per-queue message
//! counts and the index of claimed messages, see [`SCHEMA_V5`]; version 6
//! the column and the two indexes that let a claim skip blocked messages,
//! see [`schema_v6`]; version 7 the index of confirmed subscriptions, see
//! [`SCHEMA_V7`]; version 8 the same in creation order, for the notifier's
//! fan-out, see `subscriptions::SCHEMA_V8`):
//!
//! - `queues`: the queue records, keyed by `(project, name)` (listing in name
//!   order is a range scan of the key).
//! - `messages`: `seq` is an `AUTOINCREMENT` rowid, so it only ever grows:
//!   it orders a queue (insertion order) and serves as the list marker, which
//!   stays valid after the message it names is deleted. `id` is the UUID
//!   clients see. A message is claimed while `claim_id` is set and
//!   `claim_expires_ms > now`; the claim's expiry is copied onto its messages
//!   so that "claimable" is decided from the message row alone.
//!   `blocked_until_ms` is 0 while the message is in the *free* index (it
//!   can be claimed as far as the last write knows), otherwise the time at
//!   which its delay or claim ends; see [`schema_v6`].
//! - `claims`: one row per claim, with the ttl/grace last set.
//!
//! Access paths and their index:
//!
//! | path | index |
//! |---|---|
//! | list, stats' oldest/newest, purge (scan of one queue in `seq` order) | `messages_by_queue (project, queue, seq)` |
//! | claim candidates, pop (free messages of one queue in `seq` order) | `messages_free (project, queue, seq)` (partial: `blocked_until_ms = 0`) |
//! | release of the messages whose delay or claim has ended | `messages_blocked (project, queue, blocked_until_ms)` (partial: `blocked_until_ms > 0`) |
//! | stats' counts | `queue_counts` primary key, `messages_claimed (project, queue, claim_expires_ms)` (partial), `messages_by_expiry` |
//! | get / delete by id | `messages.id` UNIQUE |
//! | messages of a claim | `messages_by_claim (claim_id)`, partial: claimed rows only |
//! | reaper | `messages_by_expiry (expires_ms)`, `claims_by_expiry (expires_ms)` |
//! | claim by id | `claims` primary key |
//! | purge claims | `claims_by_queue (project, queue)` |
//! | queue get/list/count | `queues` primary key |
//!
//! `PRAGMA user_version` holds the schema version; [`migrate`] brings an
//! older file up to date and refuses a newer one.

use rusqlite::Connection;

use super::OpenError;

/// The schema version this build writes.
pub const VERSION: i64 = 8;

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS queues (
    project    TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    metadata   TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (project, name)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS messages (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT    NOT NULL UNIQUE,
    project          TEXT    NOT NULL,
    queue            TEXT    NOT NULL,
    client_id        TEXT    NOT NULL,
    body             TEXT    NOT NULL,
    ttl              INTEGER NOT NULL,
    created_ms       INTEGER NOT NULL,
    expires_ms       INTEGER NOT NULL,
    delay_until_ms   INTEGER NOT NULL,
    claim_id         TEXT,
    claim_expires_ms INTEGER NOT NULL DEFAULT 0,
    claim_count      INTEGER NOT NULL DEFAULT 0,
    checksum         TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages (project, queue, seq);
CREATE INDEX IF NOT EXISTS messages_by_claim ON messages (claim_id) WHERE claim_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_by_expiry ON messages (expires_ms);

CREATE TABLE IF NOT EXISTS claims (
    id         TEXT    NOT NULL PRIMARY KEY,
    project    TEXT    NOT NULL,
    queue      TEXT    NOT NULL,
    ttl        INTEGER NOT NULL,
    grace      INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS claims_by_queue ON claims (project, queue);
CREATE INDEX IF NOT EXISTS claims_by_expiry ON claims (expires_ms);
";

/// Version 5: what makes queue stats independent of the queue's depth.
///
/// - `queue_counts`: the number of message rows of each queue (expired ones
///   not reaped yet included), kept by triggers in the transaction that
///   inserts or deletes the rows, so it is exactly as durable as they are.
/// - `messages_claimed`: the messages a claim ever held, by queue and claim
///   expiry; partial, so a post (`claim_expires_ms = 0`) never writes it.
///
/// Stats then read the count, subtract the expired rows of the queue the
/// reaper has not deleted yet (found by `messages_by_expiry`), and count the
/// live claims' messages: the cost follows the claimed and the expired
/// messages, not the depth.
pub(super) const SCHEMA_V5: &str = "
CREATE TABLE IF NOT EXISTS queue_counts (
    project  TEXT    NOT NULL,
    queue    TEXT    NOT NULL,
    messages INTEGER NOT NULL,
    PRIMARY KEY (project, queue)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS messages_count_insert AFTER INSERT ON messages BEGIN
    INSERT INTO queue_counts (project, queue, messages) VALUES (NEW.project, NEW.queue, 1)
        ON CONFLICT (project, queue) DO UPDATE SET messages = messages + 1;
END;
CREATE TRIGGER IF NOT EXISTS messages_count_delete AFTER DELETE ON messages BEGIN
    UPDATE queue_counts SET messages = messages - 1
        WHERE project = OLD.project AND queue = OLD.queue;
END;
INSERT OR REPLACE INTO queue_counts (project, queue, messages)
    SELECT project, queue, COUNT(*) FROM messages GROUP BY project, queue;
CREATE INDEX IF NOT EXISTS messages_claimed ON messages (project, queue, claim_expires_ms)
    WHERE claim_expires_ms > 0;
";

/// Version 6: what makes a claim's cost independent of the delayed and
/// claimed messages at the head of its queue.
///
/// `messages.blocked_until_ms` says which side of two partial indexes a
/// message is on:
///
/// - `0`: *free*, in `messages_free (project, queue, seq)`. A claim reads
///   this index from its start, so it reads free messages only (and
///   expired ones the reaper has not deleted yet).
/// - `> 0`: *blocked* until that time (the end of its delay or of its
///   claim), in `messages_blocked (project, queue, blocked_until_ms)`.
///
/// A post with a delay, a claim and a claim update set it to when the
/// message becomes claimable again; a claim delete sets it to 0. A delay or
/// claim that simply runs out changes no row, so before it reads the free
/// index, every claim (and pop) first moves the queue's blocked messages
/// whose time has come back to 0 ([`RELEASE_DUE`]): a range of
/// `messages_blocked`, empty most of the time, and each message is moved
/// once per delay or claim. The claim's query still checks the delay and
/// claim columns themselves, so the column is only ever a shortcut: a
/// message is claimable exactly when it was before.
///
/// The price is on writes: every posted message gets one more index entry
/// (`messages_free`, keyed like `messages_by_queue`), every claimed or
/// released one moves between the two; posts of 100 messages measured
/// 5-25 % fewer messages/s, the 500-message posts of the claims bench more
/// (doc/source/performance.rst). A per-queue head (claims walk
/// `messages_by_queue` from where the last one stopped, plus an index of
/// the messages released behind it) would spare posts that entry.
///
/// Rows already in the file are sorted at the upgrade by the time `now_ms`
/// of the process that upgrades it.
pub(super) fn schema_v6(now_ms: i64) -> String {
    format!(
        "ALTER TABLE messages ADD COLUMN blocked_until_ms INTEGER NOT NULL DEFAULT 0;
UPDATE messages SET blocked_until_ms = MAX(delay_until_ms,
        CASE WHEN claim_id IS NULL THEN 0 ELSE claim_expires_ms END)
    WHERE delay_until_ms > {now_ms} OR (claim_id IS NOT NULL AND claim_expires_ms > {now_ms});
CREATE INDEX IF NOT EXISTS messages_free ON messages (project, queue, seq)
    WHERE blocked_until_ms = 0;
CREATE INDEX IF NOT EXISTS messages_blocked ON messages (project, queue, blocked_until_ms)
    WHERE blocked_until_ms > 0;
"
    )
}

/// Added by schema version 7: the confirmed subscriptions of each queue, so
/// that a post tells whether anyone confirmed is subscribed with one index
/// search, however many unconfirmed subscriptions the queue has
/// ([`crate::storage::Subscribed`]).
pub(super) const SCHEMA_V7: &str = "
CREATE INDEX IF NOT EXISTS subscriptions_confirmed ON subscriptions (project, queue, expires_ms)
    WHERE confirmed = 1;
";

/// Moves the blocked messages of a queue whose delay or claim has ended by
/// `?3` back to the free index (parameters: project, queue, now). See
/// [`schema_v6`].
pub(super) const RELEASE_DUE: &str = "UPDATE messages SET blocked_until_ms = 0 \
     WHERE project = ?1 AND queue = ?2 AND blocked_until_ms > 0 AND blocked_until_ms <= ?3";

/// Deletes up to `?2` messages that expired before `?1`.
pub(super) const REAP_MESSAGES: &str = "DELETE FROM messages WHERE seq IN \
     (SELECT seq FROM messages WHERE expires_ms <= ?1 LIMIT ?2)";

/// Deletes up to `?2` claims that expired before `?1`. Their messages keep
/// the stale `claim_id`, which is harmless: `claim_expires_ms` has passed too.
pub(super) const REAP_CLAIMS: &str = "DELETE FROM claims WHERE id IN \
     (SELECT id FROM claims WHERE expires_ms <= ?1 LIMIT ?2)";

/// The message columns [`super::messages::message_from_row`] reads, in order.
macro_rules! message_columns {
    () => {
        "seq, id, ttl, created_ms, body, claim_id, claim_expires_ms, claim_count, checksum"
    };
}
pub(super) use message_columns;

/// Creates or upgrades the schema; `now_ms` is the clock's time, which
/// sorts the messages already there into free and blocked (version 6).
///
/// # Errors
/// SQLite errors, or a file whose `user_version` is newer than [`VERSION`].
pub(super) fn migrate(conn: &Connection, now_ms: i64) -> Result<(), OpenError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > VERSION {
        return Err(OpenError::NewerSchema(version));
    }
    if version < VERSION {
        // Every version below 6 lacks the column, so ADD COLUMN is safe
        // there; the other steps are idempotent.
        let v6 = if version < 6 {
            schema_v6(now_ms)
        } else {
            String::new()
        };
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA_V1} {v2} {v3} {v4} {SCHEMA_V5} {v6} {SCHEMA_V7} {v8} \
             PRAGMA user_version = {VERSION}; COMMIT;",
            v2 = super::subscriptions::SCHEMA_V2,
            v3 = super::subscriptions::SCHEMA_V3,
            v4 = super::catalogue::SCHEMA_V4,
            v8 = super::subscriptions::SCHEMA_V8,
        ))?;
    }
    Ok(())
}

/// The schema version of the database file at `path`, read without
/// changing it: `None` when there is no such file yet (the server will
/// create it).
///
/// # Errors
/// The file exists but cannot be opened or read as a SQLite database.
pub fn file_version(path: &std::path::Path) -> Result<Option<i64>, String> {
    if !path.exists() {
        return Ok(None);
    }
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| e.to_string())?;
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map(Some)
        .map_err(|e| e.to_string())
}
