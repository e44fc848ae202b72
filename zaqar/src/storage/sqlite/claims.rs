//! [`ClaimStore`] on the `claims` table and the claim columns of `messages`.
//!
//! A claim's expiry is written both on its row and on each message it holds
//! (`claim_expires_ms`), and both are changed in the same transaction, so
//! "is this message claimable" never needs a join. So is the time the
//! message is blocked until (`blocked_until_ms`, see `schema::schema_v6`),
//! which keeps claimed messages out of the index claims read.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

use super::messages::{claimable, query_messages};
use super::schema::message_columns;
use super::{DbResult, SqliteStore};
use crate::storage::deadline::ClaimTimes;
use crate::storage::{
    ClaimInfo, ClaimRequest, ClaimStore, DeadLetter, NewClaim, Scope, StorageError, StorageResult,
};

/// Live messages of a claim, oldest first. (The unary `+` keeps the planner
/// on `messages_by_claim` rather than scanning the queue.)
pub(super) const CLAIM_MESSAGES: &str = concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE claim_id = ?1 AND +project = ?2 AND +queue = ?3 \
     AND claim_expires_ms > ?4 AND expires_ms > ?4 ORDER BY seq"
);

/// Moves the message `seq` to the dead-letter queue: it gets a new `seq`
/// (it is appended to that queue), loses its claim and, when the policy
/// says so, gets a new `ttl`; its expiry time is kept. It is free there
/// (`blocked_until_ms` 0): it was claimable, so its delay had ended.
fn move_to_dead_letter(tx: &Transaction<'_>, seq: i64, dead_letter: &DeadLetter) -> DbResult<()> {
    type Moved = (
        String,
        String,
        String,
        String,
        i64,
        i64,
        i64,
        i64,
        i64,
        Option<String>,
    );
    let moved: Option<Moved> = tx
        .prepare_cached(
            "DELETE FROM messages WHERE seq = ?1 RETURNING id, project, client_id, body, ttl, \
             created_ms, expires_ms, delay_until_ms, claim_count, checksum",
        )?
        .query_row(params![seq], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
            ))
        })
        .optional()?;
    let Some((id, project, client_id, body, ttl, created, expires, delay_until, count, checksum)) =
        moved
    else {
        return Ok(());
    };
    tx.prepare_cached(
        "INSERT INTO messages (id, project, queue, client_id, body, ttl, created_ms, expires_ms, \
         delay_until_ms, claim_id, claim_expires_ms, claim_count, checksum, blocked_until_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, 0, ?10, ?11, 0)",
    )?
    .execute(params![
        id,
        project,
        dead_letter.queue,
        client_id,
        body,
        dead_letter.ttl.unwrap_or(ttl),
        created,
        expires,
        delay_until,
        count,
        checksum,
    ])?;
    Ok(())
}

#[async_trait]
impl ClaimStore for SqliteStore {
    async fn create(
        &self,
        scope: &Scope,
        request: &ClaimRequest,
    ) -> StorageResult<Option<NewClaim>> {
        let scope = scope.clone();
        let request = request.clone();
        self.write("claim create", move |conn, now| {
            let claim_id = crate::storage::new_id();
            let times = ClaimTimes::new(now, request.ttl, request.grace)?;
            let expires = times.ends_ms;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let candidates = claimable(&tx, &scope, now, request.limit)?;
            let counting = request.dead_letter.is_some();
            let mut claimed = 0usize;
            for (seq, message) in &candidates {
                if let Some(dl) = &request.dead_letter {
                    if message.claim_count >= dl.max_claim_count {
                        move_to_dead_letter(&tx, *seq, dl)?;
                        continue;
                    }
                }
                // SET expressions all see the row as it was before the update.
                tx.prepare_cached(
                    "UPDATE messages SET claim_id = ?2, claim_expires_ms = ?3, \
                     blocked_until_ms = ?3, claim_count = claim_count + ?4, \
                     ttl = CASE WHEN expires_ms < ?3 THEN ?5 ELSE ttl END, \
                     expires_ms = CASE WHEN expires_ms < ?3 THEN ?6 ELSE expires_ms END \
                     WHERE seq = ?1",
                )?
                .execute(params![
                    seq,
                    claim_id,
                    expires,
                    i64::from(counting),
                    times.message_ttl,
                    times.keep_until_ms,
                ])?;
                claimed += 1;
            }
            if claimed == 0 {
                // Dead-letter moves, if any, still happen.
                tx.commit()?;
                return Ok(None);
            }
            tx.prepare_cached(
                "INSERT INTO claims (id, project, queue, ttl, grace, updated_ms, expires_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                claim_id,
                scope.project,
                scope.queue,
                request.ttl,
                request.grace,
                now,
                expires
            ])?;
            let messages = query_messages(
                &tx,
                CLAIM_MESSAGES,
                params![claim_id, scope.project, scope.queue, now],
                now,
            )?;
            tx.commit()?;
            Ok(Some(NewClaim {
                id: claim_id,
                messages: messages.into_iter().map(|(_, m)| m).collect(),
            }))
        })
        .await
    }

    async fn get(&self, scope: &Scope, claim_id: &str) -> StorageResult<Option<ClaimInfo>> {
        let scope = scope.clone();
        let claim_id = claim_id.to_owned();
        self.read("claim get", move |conn, now| {
            // One snapshot for the claim and its messages.
            let tx = conn.transaction()?;
            let claim: Option<(i64, i64)> = tx
                .prepare_cached(
                    "SELECT ttl, updated_ms FROM claims \
                     WHERE id = ?1 AND project = ?2 AND queue = ?3 AND expires_ms > ?4",
                )?
                .query_row(params![claim_id, scope.project, scope.queue, now], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            let Some((ttl, updated_ms)) = claim else {
                return Ok(None);
            };
            let messages = query_messages(
                &tx,
                CLAIM_MESSAGES,
                params![claim_id, scope.project, scope.queue, now],
                now,
            )?;
            Ok(Some(ClaimInfo {
                id: claim_id,
                ttl,
                updated_ms,
                messages: messages.into_iter().map(|(_, m)| m).collect(),
            }))
        })
        .await
    }

    async fn update(
        &self,
        scope: &Scope,
        claim_id: &str,
        ttl: i64,
        grace: i64,
    ) -> StorageResult<()> {
        let scope = scope.clone();
        let claim_id = claim_id.to_owned();
        self.write("claim update", move |conn, now| {
            let times = ClaimTimes::new(now, ttl, grace)?;
            let expires = times.ends_ms;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let renewed = tx
                .prepare_cached(
                    "UPDATE claims SET ttl = ?5, grace = ?6, updated_ms = ?4, expires_ms = ?7 \
                     WHERE id = ?1 AND project = ?2 AND queue = ?3 AND expires_ms > ?4",
                )?
                .execute(params![
                    claim_id,
                    scope.project,
                    scope.queue,
                    now,
                    ttl,
                    grace,
                    expires
                ])?;
            if renewed == 0 {
                return Err(StorageError::ClaimNotFound.into());
            }
            tx.prepare_cached(
                "UPDATE messages SET claim_expires_ms = ?5, blocked_until_ms = ?5, \
                 ttl = CASE WHEN expires_ms < ?5 THEN ?6 ELSE ttl END, \
                 expires_ms = CASE WHEN expires_ms < ?5 THEN ?7 ELSE expires_ms END \
                 WHERE claim_id = ?1 AND +project = ?2 AND +queue = ?3 \
                 AND claim_expires_ms > ?4 AND expires_ms > ?4",
            )?
            .execute(params![
                claim_id,
                scope.project,
                scope.queue,
                now,
                expires,
                times.message_ttl,
                times.keep_until_ms,
            ])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn delete(&self, scope: &Scope, claim_id: &str) -> StorageResult<()> {
        let scope = scope.clone();
        let claim_id = claim_id.to_owned();
        self.write("claim delete", move |conn, now| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Back to the free index at once: a claimed message's delay has
            // ended (the CASE only guards against a clock set back).
            tx.prepare_cached(
                "UPDATE messages SET claim_id = NULL, claim_expires_ms = 0, \
                 blocked_until_ms = CASE WHEN delay_until_ms > ?4 THEN delay_until_ms ELSE 0 END \
                 WHERE claim_id = ?1 AND +project = ?2 AND +queue = ?3",
            )?
            .execute(params![claim_id, scope.project, scope.queue, now])?;
            tx.prepare_cached("DELETE FROM claims WHERE id = ?1 AND project = ?2 AND queue = ?3")?
                .execute(params![claim_id, scope.project, scope.queue])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}
