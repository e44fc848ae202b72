//! [`SubscriptionStore`] on the `subscriptions` table and [`Outbox`] on the
//! `outbox` table (schema version 2).
//!
//! Subscriptions are ordered by an `AUTOINCREMENT` `seq` (creation order);
//! the list marker is a subscription id, resolved to its `seq`. A
//! subscription is live while `expires_ms > now`. Uniqueness of (project,
//! queue, subscriber) among live subscriptions is checked inside the
//! writing transaction, after expired rows of that queue are deleted, so an
//! expired subscription never blocks a new one. Expired rows are otherwise
//! invisible and are deleted the next time the queue gets a subscription
//! (or is purged).
//!
//! Outbox rows are due when `due_ms <= now` and not leased
//! (`lease_until_ms <= now`). A lease walks the projects with deliveries
//! and each one's oldest due rows through `outbox_by_project (project,
//! due_ms, seq)` (schema version 3), so its cost grows with the number of
//! projects, not with the rows a project has queued.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};
use serde_json::Value;

use super::{DbError, DbResult, SqliteStore};
use crate::storage::deadline;
use crate::storage::outbox::{Delivery, FairShare, NewDelivery, Outbox};
use crate::storage::{
    Metadata, NewSubscription, Scope, StorageError, StorageResult, Subscription, SubscriptionStore,
    SubscriptionUpdate,
};

/// Tables added by schema version 2.
pub(super) const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS subscriptions (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL UNIQUE,
    project    TEXT    NOT NULL,
    queue      TEXT    NOT NULL,
    subscriber TEXT    NOT NULL,
    ttl        INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    options    TEXT    NOT NULL,
    confirmed  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS subscriptions_by_queue ON subscriptions (project, queue, seq);

CREATE TABLE IF NOT EXISTS outbox (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    project            TEXT    NOT NULL,
    queue              TEXT    NOT NULL,
    subscription_id    TEXT    NOT NULL,
    subscriber         TEXT    NOT NULL,
    options            TEXT    NOT NULL,
    queue_retry_policy TEXT,
    payload            TEXT    NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    created_ms         INTEGER NOT NULL,
    due_ms             INTEGER NOT NULL,
    lease_until_ms     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_by_due ON outbox (due_ms);
";

/// Added by schema version 3: the index behind fair leases (the projects
/// with deliveries, and each one's oldest due delivery).
pub(super) const SCHEMA_V3: &str = "
CREATE INDEX IF NOT EXISTS outbox_by_project ON outbox (project, due_ms, seq);
";

/// Added by schema version 8: the confirmed subscriptions of each queue in
/// creation order, which the notifier's fan-out pages through under
/// `require_confirmation` without reading the unconfirmed ones.
pub(super) const SCHEMA_V8: &str = "
CREATE INDEX IF NOT EXISTS subscriptions_confirmed_seq ON subscriptions (project, queue, seq)
    WHERE confirmed = 1;
";

/// The subscription columns [`raw_row`] reads, in order.
macro_rules! columns {
    () => {
        "id, queue, subscriber, ttl, expires_ms, options, confirmed"
    };
}

const COLUMNS: &str = columns!();

/// A page of a queue's live subscriptions (parameters: project, queue,
/// seq of the marker, now, limit).
const LIST: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM subscriptions WHERE project = ?1 AND queue = ?2 AND seq > ?3 AND expires_ms > ?4 \
     ORDER BY seq LIMIT ?5"
);

/// [`LIST`] of the confirmed ones only.
pub(super) const LIST_CONFIRMED: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM subscriptions WHERE project = ?1 AND queue = ?2 AND seq > ?3 AND confirmed = 1 \
     AND expires_ms > ?4 ORDER BY seq LIMIT ?5"
);

impl SqliteStore {
    /// A page of live subscriptions after `marker` in creation order: every
    /// one, or only the confirmed ones (through `subscriptions_confirmed_seq`).
    async fn list_where(
        &self,
        scope: &Scope,
        marker: Option<&str>,
        limit: usize,
        confirmed_only: bool,
    ) -> StorageResult<Vec<Subscription>> {
        let scope = scope.clone();
        let marker = marker.map(str::to_owned);
        self.read("subscription list", move |conn, now| {
            // An unknown marker starts from the first subscription.
            let after: i64 = match marker {
                None => 0,
                Some(m) => conn
                    .prepare_cached("SELECT seq FROM subscriptions WHERE id = ?1 AND project = ?2 AND queue = ?3")?
                    .query_row(params![m, scope.project, scope.queue], |r| r.get(0))
                    .optional()?
                    .unwrap_or(0),
            };
            let sql = if confirmed_only { LIST_CONFIRMED } else { LIST };
            let rows = conn
                .prepare_cached(sql)?
                .query_map(params![scope.project, scope.queue, after, now, limit as i64], raw_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(finish_row).collect()
        })
        .await
    }
}

fn encode<T: serde::Serialize>(what: &str, value: &T) -> StorageResult<String> {
    serde_json::to_string(value)
        .map_err(|e| StorageError::Unavailable(format!("sqlite: cannot encode {what}: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> DbResult<T> {
    serde_json::from_str(text).map_err(|e| DbError::Corrupt(format!("{what}: {e}")))
}

/// Reads a row of [`COLUMNS`]; the options are decoded afterwards.
fn raw_row(r: &Row<'_>) -> rusqlite::Result<(Subscription, String)> {
    Ok((
        Subscription {
            id: r.get(0)?,
            source: r.get(1)?,
            subscriber: r.get(2)?,
            ttl: r.get(3)?,
            expires_ms: r.get(4)?,
            options: Metadata::new(),
            confirmed: r.get::<_, i64>(6)? != 0,
        },
        r.get(5)?,
    ))
}

fn finish_row((mut s, options): (Subscription, String)) -> DbResult<Subscription> {
    s.options = decode("subscription options", &options)?;
    Ok(s)
}

/// The live subscription of the queue with `subscriber`, if any.
fn live_with_subscriber(
    conn: &rusqlite::Connection,
    scope: &Scope,
    subscriber: &str,
    now: i64,
) -> DbResult<Option<Subscription>> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM subscriptions WHERE project = ?1 AND queue = ?2 AND subscriber = ?3 \
             AND expires_ms > ?4 ORDER BY seq LIMIT 1"
        ))?
        .query_row(params![scope.project, scope.queue, subscriber, now], raw_row)
        .optional()?;
    row.map(finish_row).transpose()
}

#[async_trait]
impl SubscriptionStore for SqliteStore {
    async fn list(
        &self,
        scope: &Scope,
        marker: Option<&str>,
        limit: usize,
    ) -> StorageResult<Vec<Subscription>> {
        self.list_where(scope, marker, limit, false).await
    }

    async fn list_confirmed(
        &self,
        scope: &Scope,
        marker: Option<&str>,
        limit: usize,
    ) -> StorageResult<Vec<Subscription>> {
        self.list_where(scope, marker, limit, true).await
    }

    async fn get(&self, scope: &Scope, id: &str) -> StorageResult<Option<Subscription>> {
        let scope = scope.clone();
        let id = id.to_owned();
        self.read("subscription get", move |conn, now| {
            let row = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM subscriptions WHERE id = ?1 AND project = ?2 AND queue = ?3 \
                     AND expires_ms > ?4"
                ))?
                .query_row(params![id, scope.project, scope.queue, now], raw_row)
                .optional()?;
            row.map(finish_row).transpose()
        })
        .await
    }

    async fn get_with_subscriber(
        &self,
        scope: &Scope,
        subscriber: &str,
    ) -> StorageResult<Option<Subscription>> {
        let scope = scope.clone();
        let subscriber = subscriber.to_owned();
        self.read("subscription get_with_subscriber", move |conn, now| {
            live_with_subscriber(conn, &scope, &subscriber, now)
        })
        .await
    }

    async fn create(
        &self,
        scope: &Scope,
        subscription: &NewSubscription,
    ) -> StorageResult<Option<String>> {
        let scope = scope.clone();
        let options = encode("subscription options", &subscription.options)?;
        let subscriber = subscription.subscriber.clone();
        let ttl = subscription.ttl;
        self.write("subscription create", move |conn, now| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.prepare_cached("DELETE FROM subscriptions WHERE project = ?1 AND queue = ?2 AND expires_ms <= ?3")?
                .execute(params![scope.project, scope.queue, now])?;
            if live_with_subscriber(&tx, &scope, &subscriber, now)?.is_some() {
                return Ok(None);
            }
            let id = crate::storage::subscription_id();
            tx.prepare_cached(
                "INSERT INTO subscriptions (id, project, queue, subscriber, ttl, expires_ms, options, confirmed) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)",
            )?
            .execute(params![
                id,
                scope.project,
                scope.queue,
                subscriber,
                ttl,
                deadline::after(now, ttl, "subscription TTL")?,
                options
            ])?;
            tx.commit()?;
            Ok(Some(id))
        })
        .await
    }

    async fn update(
        &self,
        scope: &Scope,
        id: &str,
        update: &SubscriptionUpdate,
    ) -> StorageResult<()> {
        let scope = scope.clone();
        let id = id.to_owned();
        let options = update
            .options
            .as_ref()
            .map(|o| encode("subscription options", o))
            .transpose()?;
        let subscriber = update.subscriber.clone();
        let ttl = update.ttl;
        self.write("subscription update", move |conn, now| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let current: Option<String> = tx
                .prepare_cached(
                    "SELECT subscriber FROM subscriptions WHERE id = ?1 AND project = ?2 AND queue = ?3 \
                     AND expires_ms > ?4",
                )?
                .query_row(params![id, scope.project, scope.queue, now], |r| r.get(0))
                .optional()?;
            let Some(current) = current else {
                return Err(StorageError::SubscriptionNotFound.into());
            };
            if let Some(new) = subscriber.as_deref().filter(|s| *s != current) {
                if live_with_subscriber(&tx, &scope, new, now)?.is_some() {
                    return Err(StorageError::SubscriptionExists.into());
                }
            }
            tx.prepare_cached(
                "UPDATE subscriptions SET subscriber = COALESCE(?2, subscriber), ttl = COALESCE(?3, ttl), \
                 expires_ms = COALESCE(?4, expires_ms), options = COALESCE(?5, options) WHERE id = ?1",
            )?
            .execute(params![
                id,
                subscriber,
                ttl,
                ttl.map(|t| deadline::after(now, t, "subscription TTL"))
                    .transpose()?,
                options
            ])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn delete(&self, scope: &Scope, id: &str) -> StorageResult<()> {
        let scope = scope.clone();
        let id = id.to_owned();
        self.write("subscription delete", move |conn, _| {
            conn.prepare_cached(
                "DELETE FROM subscriptions WHERE id = ?1 AND project = ?2 AND queue = ?3",
            )?
            .execute(params![id, scope.project, scope.queue])?;
            Ok(())
        })
        .await
    }

    async fn confirm(&self, scope: &Scope, id: &str, confirmed: bool) -> StorageResult<()> {
        let scope = scope.clone();
        let id = id.to_owned();
        self.write("subscription confirm", move |conn, now| {
            let n = conn
                .prepare_cached(
                    "UPDATE subscriptions SET confirmed = ?4 WHERE id = ?1 AND project = ?2 AND queue = ?3 \
                     AND expires_ms > ?5",
                )?
                .execute(params![id, scope.project, scope.queue, confirmed as i64, now])?;
            if n == 0 {
                return Err(StorageError::SubscriptionNotFound.into());
            }
            Ok(())
        })
        .await
    }

    async fn purge(&self, scope: &Scope) -> StorageResult<()> {
        let scope = scope.clone();
        self.write("subscription purge", move |conn, _| {
            conn.prepare_cached("DELETE FROM subscriptions WHERE project = ?1 AND queue = ?2")?
                .execute(params![scope.project, scope.queue])?;
            Ok(())
        })
        .await
    }
}

/// The `seq`s a fair lease takes (see [`Outbox::lease_fair`]), in order.
///
/// The projects with deliveries are found by a skip scan of
/// `outbox_by_project` (one index probe per project, however many rows each
/// has), each project's oldest due and unleased delivery by one more probe;
/// the `limit` projects whose oldest waited longest are served, each up to
/// its quota, one delivery per project per round.
fn fair_pick(
    tx: &rusqlite::Transaction<'_>,
    now: i64,
    limit: usize,
    share: &FairShare,
) -> DbResult<Vec<i64>> {
    let mut first_project =
        tx.prepare_cached("SELECT project FROM outbox ORDER BY project LIMIT 1")?;
    let mut next_project = tx
        .prepare_cached("SELECT project FROM outbox WHERE project > ?1 ORDER BY project LIMIT 1")?;
    let mut due = tx.prepare_cached(
        "SELECT seq, due_ms FROM outbox WHERE project = ?1 AND due_ms <= ?2 AND lease_until_ms <= ?2 \
         ORDER BY due_ms, seq LIMIT ?3",
    )?;
    // (oldest due ms, its seq, project, quota) of every project with work.
    let mut heads: Vec<(i64, i64, String, usize)> = Vec::new();
    let mut project = first_project
        .query_row([], |r| r.get::<_, String>(0))
        .optional()?;
    while let Some(p) = project {
        let quota = share.quota(&p, limit);
        if quota > 0 {
            let head = due
                .query_row(params![p, now, 1], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })
                .optional()?;
            if let Some((seq, due_ms)) = head {
                heads.push((due_ms, seq, p.clone(), quota));
            }
        }
        project = next_project
            .query_row(params![p], |r| r.get::<_, String>(0))
            .optional()?;
    }
    heads.sort();
    heads.truncate(limit);
    let mut lists = Vec::with_capacity(heads.len());
    for (_, _, project, quota) in &heads {
        let seqs = due
            .query_map(params![project, now, *quota as i64], |r| r.get::<_, i64>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        lists.push(seqs);
    }
    let mut picked = Vec::with_capacity(limit);
    for round in 0.. {
        let before = picked.len();
        for seqs in &lists {
            if picked.len() == limit {
                return Ok(picked);
            }
            if let Some(seq) = seqs.get(round) {
                picked.push(*seq);
            }
        }
        if picked.len() == before {
            break;
        }
    }
    Ok(picked)
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn enqueue(&self, deliveries: Vec<NewDelivery>) -> StorageResult<()> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(deliveries.len());
        for d in deliveries {
            let options = encode("delivery options", &d.options)?;
            let policy = d
                .queue_retry_policy
                .as_ref()
                .map(|p| encode("retry policy", p))
                .transpose()?;
            let payload = encode("delivery payload", &d.payload)?;
            rows.push((
                d.project,
                d.queue,
                d.subscription_id,
                d.subscriber,
                options,
                policy,
                payload,
            ));
        }
        self.write("outbox enqueue", move |conn, now| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO outbox (project, queue, subscription_id, subscriber, options, queue_retry_policy, \
                     payload, created_ms, due_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
                )?;
                for (project, queue, sid, subscriber, options, policy, payload) in &rows {
                    stmt.execute(params![project, queue, sid, subscriber, options, policy, payload, now])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn lease_fair(
        &self,
        limit: usize,
        lease_ms: i64,
        share: &FairShare,
    ) -> StorageResult<Vec<Delivery>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let share = share.clone();
        self.write("outbox lease", move |conn, now| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let picked = fair_pick(&tx, now, limit, &share)?;
            let mut out = Vec::with_capacity(picked.len());
            {
                let mut lease = tx.prepare_cached("UPDATE outbox SET lease_until_ms = ?2 WHERE seq = ?1")?;
                let mut row = tx.prepare_cached(
                    "SELECT project, queue, subscription_id, subscriber, options, queue_retry_policy, payload, \
                     attempts, created_ms FROM outbox WHERE seq = ?1",
                )?;
                for seq in picked {
                    lease.execute(params![seq, now.saturating_add(lease_ms)])?;
                    let (project, queue, sid, subscriber, options, policy, payload, attempts, created_ms) =
                        row.query_row(params![seq], |r| {
                            Ok((
                                r.get::<_, String>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, String>(2)?,
                                r.get::<_, String>(3)?,
                                r.get::<_, String>(4)?,
                                r.get::<_, Option<String>>(5)?,
                                r.get::<_, String>(6)?,
                                r.get::<_, i64>(7)?,
                                r.get::<_, i64>(8)?,
                            ))
                        })?;
                    let options: Metadata = decode("delivery options", &options)?;
                    let policy: Option<Value> = policy.map(|p| decode("retry policy", &p)).transpose()?;
                    let payload: Value = decode("delivery payload", &payload)?;
                    out.push(Delivery {
                        id: seq.to_string(),
                        attempts: attempts.clamp(0, u32::MAX as i64) as u32,
                        created_ms,
                        delivery: NewDelivery {
                            project,
                            queue,
                            subscription_id: sid,
                            subscriber,
                            options,
                            queue_retry_policy: policy,
                            payload,
                        },
                    });
                }
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn complete(&self, id: &str) -> StorageResult<()> {
        let seq: i64 = id
            .parse()
            .map_err(|_| StorageError::Unavailable(format!("bad outbox id {id:?}")))?;
        self.write("outbox complete", move |conn, _| {
            conn.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?
                .execute(params![seq])?;
            Ok(())
        })
        .await
    }

    async fn retry_at(&self, id: &str, attempts: u32, due_ms: i64) -> StorageResult<()> {
        let seq: i64 = id
            .parse()
            .map_err(|_| StorageError::Unavailable(format!("bad outbox id {id:?}")))?;
        self.write("outbox retry", move |conn, _| {
            conn.prepare_cached(
                "UPDATE outbox SET attempts = ?2, due_ms = ?3, lease_until_ms = 0 WHERE seq = ?1",
            )?
            .execute(params![seq, attempts as i64, due_ms])?;
            Ok(())
        })
        .await
    }

    async fn next_due_ms(&self) -> StorageResult<Option<i64>> {
        self.read("outbox next due", move |conn, _| {
            let due: Option<i64> = conn
                .prepare_cached("SELECT MIN(MAX(due_ms, lease_until_ms)) FROM outbox")?
                .query_row([], |r| r.get(0))?;
            Ok(due)
        })
        .await
    }

    async fn depth(&self) -> StorageResult<Option<u64>> {
        self.read("outbox depth", move |conn, _| {
            let n: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM outbox")?
                .query_row([], |r| r.get(0))?;
            Ok(Some(u64::try_from(n).unwrap_or(0)))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::SqliteStore;
    use crate::storage::clock::ManualClock;
    use crate::storage::outbox::{NewDelivery, Outbox};
    use crate::storage::pipeline::Backend;
    use crate::storage::subscription_conformance::{subscription_conformance_tests, Keep};

    async fn open(clock: ManualClock) -> (Backend, Keep) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store =
            SqliteStore::open(&dir.path().join("zaqar.sqlite"), Arc::new(clock)).expect("open");
        (store.backend(), Box::new(dir))
    }

    subscription_conformance_tests!(open);

    fn delivery(n: i64) -> NewDelivery {
        NewDelivery {
            project: "p".into(),
            queue: "q".into(),
            subscription_id: "s".into(),
            subscriber: "http://example.com/".into(),
            options: serde_json::Map::new(),
            queue_retry_policy: Some(json!({"minimum_delay": 1})),
            payload: json!({"body": n}),
        }
    }

    #[tokio::test]
    async fn outbox_rows_survive_reopening_until_completed() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("zaqar.sqlite");
        let clock = ManualClock::new();
        {
            let store = SqliteStore::open(&path, Arc::new(clock.clone())).expect("open");
            store.enqueue(vec![delivery(1), delivery(2)]).await.unwrap();
            let leased = store.lease_due(10, 30_000).await.unwrap();
            assert_eq!(leased.len(), 2);
            // Leased rows are invisible until the lease runs out.
            assert!(store.lease_due(10, 30_000).await.unwrap().is_empty());
            store.complete(&leased[0].id).await.unwrap();
        }
        let store = SqliteStore::open(&path, Arc::new(clock.clone())).expect("reopen");
        assert!(store.lease_due(10, 30_000).await.unwrap().is_empty());
        clock.advance_secs(31);
        let again = store.lease_due(10, 30_000).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].delivery, delivery(2));
        assert_eq!(
            again[0].delivery.queue_retry_policy,
            Some(json!({"minimum_delay": 1}))
        );
    }

    #[tokio::test]
    async fn outbox_retry_reschedules() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let clock = ManualClock::new();
        let store =
            SqliteStore::open(&dir.path().join("db"), Arc::new(clock.clone())).expect("open");
        assert_eq!(store.next_due_ms().await.unwrap(), None);
        store.enqueue(vec![delivery(1)]).await.unwrap();
        let d = store.lease_due(10, 60_000).await.unwrap().remove(0);
        assert_eq!(d.attempts, 0);
        let due = clock.now_ms() + 5_000;
        store.retry_at(&d.id, 1, due).await.unwrap();
        assert_eq!(store.next_due_ms().await.unwrap(), Some(due));
        assert!(store.lease_due(10, 60_000).await.unwrap().is_empty());
        clock.advance_secs(5);
        let d = store.lease_due(10, 60_000).await.unwrap().remove(0);
        assert_eq!(d.attempts, 1);
        store.complete(&d.id).await.unwrap();
        assert_eq!(store.next_due_ms().await.unwrap(), None);
    }

    use crate::storage::Clock;
}
