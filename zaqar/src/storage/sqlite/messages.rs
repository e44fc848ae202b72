//! [`MessageStore`] on the `messages` table.
//!
//! The list marker is the message's `seq` as a decimal string. Since `seq`
//! only grows, a marker stays meaningful after its message is gone; a marker
//! that is not a number, or is beyond every `seq` ever handed out, is unknown
//! and the listing starts from the beginning (as the reference's Redis
//! driver does).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use rusqlite::types::Type;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::schema::{message_columns, RELEASE_DUE};
use super::{DbResult, SqliteStore};
use crate::storage::deadline;
use crate::storage::{
    ListQuery, Message, MessagePage, MessageStamp, MessageStore, NewMessage, Posted, QueueStats,
    Scope, StorageError, StorageResult, Subscribed,
};

/// Ids per `IN (...)` list, well below SQLite's bound-parameter limit.
const IDS_PER_STATEMENT: usize = 200;

/// Decodes a row selected with [`message_columns`]; returns `(seq, message)`.
/// `claim_id` is only reported while the claim is live at `now`.
pub(super) fn message_from_row(row: &Row<'_>, now: i64) -> rusqlite::Result<(i64, Message)> {
    let body: String = row.get(4)?;
    let body = RawValue::from_string(body)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(4, Type::Text, Box::new(e)))?;
    let claim_id: Option<String> = row.get(5)?;
    let claim_expires_ms: i64 = row.get(6)?;
    let message = Message {
        id: row.get(1)?,
        ttl: row.get(2)?,
        created_ms: row.get(3)?,
        body,
        claim_id: claim_id.filter(|_| claim_expires_ms > now),
        claim_count: row.get(7)?,
        checksum: row.get(8)?,
    };
    Ok((row.get(0)?, message))
}

/// Runs a prepared query with `params` and decodes every row as a message.
pub(super) fn query_messages<P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    now: i64,
) -> DbResult<Vec<(i64, Message)>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |row| message_from_row(row, now))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// `?,?,...` with `n` placeholders.
fn placeholders(n: usize) -> String {
    let mut s = "?,".repeat(n);
    s.pop();
    s
}

/// Live messages of one queue among `n` ids; parameters: project, queue,
/// now, then the ids.
///
/// The unary `+` keeps the planner off `messages_by_queue` (which would scan
/// the whole queue) and on the unique index of `id`.
pub(super) fn bulk_get_sql(n: usize) -> String {
    format!(
        concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages WHERE +project = ? AND +queue = ? AND expires_ms > ? AND id IN ({})"
        ),
        placeholders(n)
    )
}

/// The claims holding `n` messages of one queue, for the claim-id check of a
/// bulk delete; parameters: project, queue, now, then the ids. Found by id,
/// like [`bulk_get_sql`].
pub(super) fn bulk_claim_check_sql(n: usize) -> String {
    format!(
        "SELECT claim_id, claim_expires_ms FROM messages \
         WHERE +project = ? AND +queue = ? AND expires_ms > ? AND id IN ({})",
        placeholders(n)
    )
}

/// Deletes `n` messages of one queue by id; parameters: project, queue, then
/// the ids.
///
/// `+project`, `+queue`: the unique index of `id` finds the rows. Without the
/// `+`, SQLite chose `messages_by_queue` and scanned the whole queue for each
/// statement, so a bulk delete cost time in proportion to the queue's depth
/// while holding the writer (190 messages/s, claim p99 above 700 ms, with
/// 16 consumers at 100,000 deep). `plans` in the tests pins the plan.
pub(super) fn bulk_delete_sql(n: usize) -> String {
    format!(
        "DELETE FROM messages WHERE +project = ? AND +queue = ? AND id IN ({})",
        placeholders(n)
    )
}

/// Clamps a page size to what SQLite's LIMIT takes.
pub(super) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Where a listing starts: after the marker's seq, or at the beginning when
/// the marker is unknown.
fn start_after(conn: &Connection, marker: Option<&str>) -> DbResult<i64> {
    let Some(seq) = marker
        .and_then(|m| m.parse::<i64>().ok())
        .filter(|s| *s > 0)
    else {
        return Ok(0);
    };
    let highest: Option<i64> = conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'messages'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(if seq <= highest.unwrap_or(0) { seq } else { 0 })
}

/// The oldest claimable messages of a queue: live, not delayed, and not held
/// by a live claim (parameters: project, queue, now, limit). Run
/// [`claimable`], which releases the messages that came due first.
///
/// It reads `messages_free`, the queue's free messages in `seq` order, so
/// delayed and claimed messages at the head of the queue cost nothing
/// (they used to be read and skipped one by one, from the queue's first
/// message, on every claim). The delay and claim conditions stay: the index
/// narrows the search, the columns decide.
pub(super) const CLAIMABLE: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages INDEXED BY messages_free \
     WHERE project = ?1 AND queue = ?2 AND blocked_until_ms = 0 AND expires_ms > ?3 \
     AND delay_until_ms <= ?3 AND (claim_id IS NULL OR claim_expires_ms <= ?3) \
     ORDER BY seq LIMIT ?4"
);

/// Up to `limit` of the oldest claimable messages of a queue, with their
/// `seq`, in a write transaction: first the queue's messages whose delay
/// or claim has ended go back to the free index ([`RELEASE_DUE`]), then
/// [`CLAIMABLE`] reads it.
pub(super) fn claimable(
    tx: &Connection,
    scope: &Scope,
    now: i64,
    limit: usize,
) -> DbResult<Vec<(i64, Message)>> {
    tx.prepare_cached(RELEASE_DUE)?
        .execute(params![scope.project, scope.queue, now])?;
    query_messages(
        tx,
        CLAIMABLE,
        params![scope.project, scope.queue, now, sql_limit(limit)],
        now,
    )
}

/// One page of a listing: parameters project, queue, after seq, now, echo,
/// client id, include claimed, include delayed, limit.
pub(super) const LIST: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE project = ?1 AND queue = ?2 AND seq > ?3 \
     AND expires_ms > ?4 \
     AND (?5 OR client_id <> ?6) \
     AND (?7 OR claim_id IS NULL OR claim_expires_ms <= ?4) \
     AND (?8 OR delay_until_ms <= ?4) \
     ORDER BY seq LIMIT ?9"
);

/// The message rows of a queue, expired ones not reaped yet included
/// (parameters: project, queue); kept by triggers, see `schema`.
pub(super) const STATS_ROWS: &str =
    "SELECT messages FROM queue_counts WHERE project = ?1 AND queue = ?2";

/// The expired rows of a queue the reaper has not deleted yet (parameters:
/// project, queue, now): found by expiry, so the cost follows the expired
/// rows of every queue (the reaper keeps them few), not the queue's depth.
pub(super) const STATS_EXPIRED: &str = "SELECT COUNT(*) FROM messages \
     WHERE expires_ms <= ?3 AND +project = ?1 AND +queue = ?2";

/// The live messages of a queue held by a live claim (parameters: project,
/// queue, now). `claim_expires_ms > 0` lets the partial index serve; the
/// `+` keeps the planner off `messages_by_expiry`.
pub(super) const STATS_CLAIMED: &str = "SELECT COUNT(*) FROM messages \
     WHERE project = ?1 AND queue = ?2 AND claim_expires_ms > ?3 AND claim_expires_ms > 0 \
     AND +claim_id IS NOT NULL AND +expires_ms > ?3";

/// Whether a queue has live subscriptions, and live confirmed ones
/// (parameters: project, queue, now), read in a post's transaction: the
/// first stops at the queue's first live subscription, the second searches
/// `subscriptions_confirmed` (schema version 7), so neither walks a queue
/// of many unconfirmed subscribers.
pub(super) const SUBSCRIBED: &str = "SELECT \
     EXISTS (SELECT 1 FROM subscriptions WHERE project = ?1 AND queue = ?2 AND expires_ms > ?3), \
     EXISTS (SELECT 1 FROM subscriptions WHERE project = ?1 AND queue = ?2 AND confirmed = 1 \
     AND expires_ms > ?3)";

/// One post waiting to be written with the others (the driver groups
/// concurrent posts into one transaction: [`crate::storage::group_commit`]).
pub(super) struct PendingPost {
    scope: Scope,
    client_id: String,
    messages: Vec<NewMessage>,
}

/// The most messages one grouped transaction of posts writes.
pub(super) const POST_BATCH: usize = 1_000;

impl SqliteStore {
    /// Writes a batch of posts in one transaction: one trip to the blocking
    /// pool, one turn of the writer lock and one commit for them all. A
    /// post whose times cannot be computed is refused alone; a failure of
    /// the database fails the whole batch (nothing of it is committed).
    async fn write_posts(&self, posts: Vec<PendingPost>) -> Vec<StorageResult<Posted>> {
        let count = posts.len();
        let written = self
            .write("message post", move |conn, now| {
                insert_posts(conn, now, &posts)
            })
            .await;
        match written {
            Ok(outcomes) => outcomes,
            Err(e) => vec![Err(e); count],
        }
    }
}

/// The statements of [`SqliteStore::write_posts`], in its transaction.
fn insert_posts(
    conn: &mut Connection,
    now: i64,
    posts: &[PendingPost],
) -> DbResult<Vec<StorageResult<Posted>>> {
    let tx = conn.transaction()?;
    let mut outcomes = Vec::with_capacity(posts.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO messages (id, project, queue, client_id, body, ttl, created_ms, \
             expires_ms, delay_until_ms, claim_id, claim_expires_ms, claim_count, checksum, \
             blocked_until_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, 0, 0, ?10, \
             CASE WHEN ?9 > ?7 THEN ?9 ELSE 0 END)",
        )?;
        // Read in the same transaction, so the notifier needs no second
        // trip to the blocking pool for queues without subscriptions.
        let mut subscriptions = tx.prepare_cached(SUBSCRIBED)?;
        let mut subscribed: HashMap<&Scope, Subscribed> = HashMap::new();
        for post in posts {
            let times = post
                .messages
                .iter()
                .map(|m| deadline::message_times(now, m.ttl, m.delay))
                .collect::<StorageResult<Vec<_>>>();
            let times = match times {
                Ok(times) => times,
                Err(e) => {
                    outcomes.push(Err(e));
                    continue;
                }
            };
            let ids: Vec<String> = post
                .messages
                .iter()
                .map(|_| crate::storage::new_id())
                .collect();
            for ((id, m), (expires, delay_until)) in ids.iter().zip(&post.messages).zip(&times) {
                insert.execute(params![
                    id,
                    post.scope.project,
                    post.scope.queue,
                    post.client_id,
                    m.body.get(),
                    m.ttl,
                    now,
                    expires,
                    delay_until,
                    m.checksum,
                ])?;
            }
            let has = match subscribed.get(&post.scope) {
                Some(&has) => has,
                None => {
                    let has = subscriptions
                        .query_row(params![post.scope.project, post.scope.queue, now], |r| {
                            Ok(Subscribed::from_flags(r.get(0)?, r.get(1)?))
                        })?;
                    subscribed.insert(&post.scope, has);
                    has
                }
            };
            outcomes.push(Ok(Posted {
                ids,
                subscribed: Some(has),
                woke_others: false,
            }));
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

#[async_trait]
impl MessageStore for SqliteStore {
    async fn post(
        &self,
        scope: &Scope,
        client_id: &str,
        messages: Vec<NewMessage>,
    ) -> StorageResult<Posted> {
        let weight = messages.len();
        let post = PendingPost {
            scope: scope.clone(),
            client_id: client_id.to_owned(),
            messages,
        };
        let store = self.clone();
        self.inner
            .posts
            .submit((), post, weight, move |(), posts| {
                let store = store.clone();
                async move { store.write_posts(posts).await }
            })
            .await
            .unwrap_or_else(|| {
                Err(StorageError::Unavailable(
                    "the SQLite post was abandoned".to_owned(),
                ))
            })
    }

    async fn list(&self, scope: &Scope, query: &ListQuery) -> StorageResult<MessagePage> {
        let scope = scope.clone();
        let query = query.clone();
        self.read("message list", move |conn, now| {
            let after = start_after(conn, query.marker.as_deref())?;
            let messages = query_messages(
                conn,
                LIST,
                params![
                    scope.project,
                    scope.queue,
                    after,
                    now,
                    query.echo,
                    query.client_id,
                    query.include_claimed,
                    query.include_delayed,
                    sql_limit(query.limit),
                ],
                now,
            )?;
            let next_marker = messages.last().map(|(seq, _)| seq.to_string());
            Ok(MessagePage {
                messages: messages.into_iter().map(|(_, m)| m).collect(),
                next_marker,
            })
        })
        .await
    }

    async fn get(&self, scope: &Scope, id: &str) -> StorageResult<Option<Message>> {
        let scope = scope.clone();
        let id = id.to_owned();
        self.read("message get", move |conn, now| {
            let found = query_messages(
                conn,
                concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages WHERE id = ?1 AND project = ?2 AND queue = ?3 AND expires_ms > ?4"
                ),
                params![id, scope.project, scope.queue, now],
                now,
            )?;
            Ok(found.into_iter().next().map(|(_, m)| m))
        })
        .await
    }

    async fn marker_of(&self, scope: &Scope, id: &str) -> StorageResult<Option<String>> {
        let scope = scope.clone();
        let id = id.to_owned();
        self.read("message marker", move |conn, now| {
            let seq: Option<i64> = conn
                .prepare_cached(
                    "SELECT seq FROM messages WHERE id = ?1 AND project = ?2 AND queue = ?3 \
                     AND expires_ms > ?4",
                )?
                .query_row(params![id, scope.project, scope.queue, now], |r| r.get(0))
                .optional()?;
            Ok(seq.map(|s| s.to_string()))
        })
        .await
    }

    async fn bulk_get(&self, scope: &Scope, ids: &[String]) -> StorageResult<Vec<Message>> {
        let scope = scope.clone();
        let ids = ids.to_vec();
        self.read("message bulk_get", move |conn, now| {
            let mut found = Vec::new();
            for chunk in ids.chunks(IDS_PER_STATEMENT) {
                let sql = bulk_get_sql(chunk.len());
                let mut stmt = conn.prepare(&sql)?;
                let rows = stmt.query_map(
                    params_from_iter(
                        [&scope.project as &dyn rusqlite::ToSql, &scope.queue, &now]
                            .into_iter()
                            .chain(chunk.iter().map(|id| id as &dyn rusqlite::ToSql)),
                    ),
                    |row| message_from_row(row, now),
                )?;
                for row in rows {
                    found.push(row?);
                }
            }
            found.sort_by_key(|(seq, _)| *seq);
            found.dedup_by_key(|(seq, _)| *seq);
            Ok(found.into_iter().map(|(_, m)| m).collect())
        })
        .await
    }

    async fn delete(&self, scope: &Scope, id: &str, claim_id: Option<&str>) -> StorageResult<()> {
        // Claim ids are UUIDs: any other names no claim, once the message
        // is known to be there (as on Redis).
        let malformed = claim_id.is_some_and(|c| Uuid::try_parse(c).is_err());
        let scope = scope.clone();
        let id = id.to_owned();
        let given = claim_id.map(str::to_owned);
        self.write("message delete", move |conn, now| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let row: Option<(i64, Option<String>, i64)> = tx
                .prepare_cached(
                    "SELECT seq, claim_id, claim_expires_ms FROM messages \
                     WHERE id = ?1 AND project = ?2 AND queue = ?3 AND expires_ms > ?4",
                )?
                .query_row(params![id, scope.project, scope.queue, now], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            let Some((seq, held, held_until)) = row else {
                return Ok(());
            };
            if malformed {
                return Err(StorageError::ClaimNotFound.into());
            }
            let held = held.filter(|_| held_until > now);
            match (held, given) {
                (None, None) => {}
                (Some(_), None) => return Err(StorageError::MessageIsClaimed.into()),
                (None, Some(_)) => return Err(StorageError::MessageNotClaimed.into()),
                (Some(held), Some(given)) if held == given => {}
                (Some(_), Some(given)) => {
                    let exists = tx
                        .prepare_cached(
                            "SELECT 1 FROM claims WHERE id = ?1 AND project = ?2 AND queue = ?3 \
                             AND expires_ms > ?4",
                        )?
                        .exists(params![given, scope.project, scope.queue, now])?;
                    return Err(if exists {
                        StorageError::MessageIsClaimed
                    } else {
                        StorageError::ClaimNotFound
                    }
                    .into());
                }
            }
            tx.prepare_cached("DELETE FROM messages WHERE seq = ?1")?
                .execute(params![seq])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn bulk_delete(
        &self,
        scope: &Scope,
        ids: &[String],
        claim_ids: Option<&[String]>,
    ) -> StorageResult<()> {
        let scope = scope.clone();
        let ids = ids.to_vec();
        let claim_ids: Option<HashSet<String>> = claim_ids.map(|c| c.iter().cloned().collect());
        self.write("message bulk_delete", move |conn, now| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for chunk in ids.chunks(IDS_PER_STATEMENT) {
                if let Some(claim_ids) = &claim_ids {
                    let mut stmt = tx.prepare(&bulk_claim_check_sql(chunk.len()))?;
                    let rows = stmt.query_map(
                        params_from_iter(
                            [&scope.project as &dyn rusqlite::ToSql, &scope.queue, &now]
                                .into_iter()
                                .chain(chunk.iter().map(|id| id as &dyn rusqlite::ToSql)),
                        ),
                        |r| Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)?)),
                    )?;
                    for row in rows {
                        let (held, until) = row?;
                        let held_by_given =
                            held.is_some_and(|c| until > now && claim_ids.contains(&c));
                        if !held_by_given {
                            return Err(StorageError::ClaimMismatch.into());
                        }
                    }
                }
                tx.execute(
                    &bulk_delete_sql(chunk.len()),
                    params_from_iter(
                        [&scope.project, &scope.queue]
                            .into_iter()
                            .chain(chunk.iter()),
                    ),
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn pop(&self, scope: &Scope, limit: usize) -> StorageResult<Vec<Message>> {
        let scope = scope.clone();
        self.write("message pop", move |conn, now| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let popped = claimable(&tx, &scope, now, limit)?;
            {
                let mut delete = tx.prepare_cached("DELETE FROM messages WHERE seq = ?1")?;
                for (seq, _) in &popped {
                    delete.execute(params![seq])?;
                }
            }
            tx.commit()?;
            Ok(popped.into_iter().map(|(_, m)| m).collect())
        })
        .await
    }

    async fn stats(&self, scope: &Scope) -> StorageResult<QueueStats> {
        let scope = scope.clone();
        self.read("message stats", move |conn, now| {
            // One read transaction: the counts and stamps come from one snapshot.
            let tx = conn.transaction()?;
            let rows: i64 = tx
                .prepare_cached(STATS_ROWS)?
                .query_row(params![scope.project, scope.queue], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            let expired: i64 = tx
                .prepare_cached(STATS_EXPIRED)?
                .query_row(params![scope.project, scope.queue, now], |r| r.get(0))?;
            let claimed: i64 = tx
                .prepare_cached(STATS_CLAIMED)?
                .query_row(params![scope.project, scope.queue, now], |r| r.get(0))?;
            let total = rows - expired;
            let stamp = |sql: &str| -> DbResult<Option<MessageStamp>> {
                Ok(tx
                    .prepare_cached(sql)?
                    .query_row(params![scope.project, scope.queue, now], |r| {
                        Ok(MessageStamp {
                            id: r.get(0)?,
                            created_ms: r.get(1)?,
                        })
                    })
                    .optional()?)
            };
            let (oldest, newest) = if total > 0 {
                (
                    stamp(
                        "SELECT id, created_ms FROM messages WHERE project = ?1 AND queue = ?2 \
                         AND expires_ms > ?3 ORDER BY seq ASC LIMIT 1",
                    )?,
                    stamp(
                        "SELECT id, created_ms FROM messages WHERE project = ?1 AND queue = ?2 \
                         AND expires_ms > ?3 ORDER BY seq DESC LIMIT 1",
                    )?,
                )
            } else {
                (None, None)
            };
            let total = total.max(0) as u64;
            let claimed = claimed.max(0) as u64;
            Ok(QueueStats {
                claimed,
                free: total.saturating_sub(claimed),
                total,
                oldest,
                newest,
            })
        })
        .await
    }

    async fn purge(&self, scope: &Scope) -> StorageResult<()> {
        let scope = scope.clone();
        self.write("message purge", move |conn, _| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.prepare_cached("DELETE FROM messages WHERE project = ?1 AND queue = ?2")?
                .execute(params![scope.project, scope.queue])?;
            tx.prepare_cached("DELETE FROM claims WHERE project = ?1 AND queue = ?2")?
                .execute(params![scope.project, scope.queue])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}
