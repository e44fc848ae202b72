//! The conformance suite against the SQLite driver, plus what only this
//! driver has: persistence across reopening and the reaper.

use std::sync::Arc;

use serde_json::json;

use super::SqliteStore;
use crate::storage::clock::{Clock, ManualClock};
use crate::storage::conformance::{conformance_tests, project, Keep};
use crate::storage::pipeline::Backend;
use crate::storage::{ClaimRequest, ListQuery, Metadata, NewMessage, Scope};

async fn open(clock: ManualClock) -> (Backend, Keep) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(&dir.path().join("zaqar.sqlite"), Arc::new(clock)).expect("open");
    (store.backend(), Box::new(dir))
}

conformance_tests!(open);

fn message(ttl: i64) -> NewMessage {
    NewMessage {
        ttl,
        delay: 0,
        body: serde_json::value::to_raw_value(&json!({"persist": true})).expect("json"),
        checksum: None,
    }
}

fn everything() -> ListQuery {
    ListQuery {
        marker: None,
        limit: 20,
        echo: true,
        client_id: String::new(),
        include_claimed: true,
        include_delayed: true,
    }
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zaqar.sqlite");
    let clock = ManualClock::new();
    let s = Scope::new(project(), "durable");
    let metadata: Metadata = serde_json::from_value(json!({"_default_message_ttl": 120})).unwrap();

    let (posted, claim_id, marker) = {
        let store = SqliteStore::open(&path, Arc::new(clock.clone())).unwrap();
        let b = store.backend();
        b.queues.create(&s, &metadata).await.unwrap();
        let posted = b
            .messages
            .post(&s, "c", vec![message(600), message(600)])
            .await
            .unwrap()
            .ids;
        let claim = ClaimRequest {
            ttl: 300,
            grace: 60,
            limit: 1,
            dead_letter: None,
        };
        let c = b.claims.create(&s, &claim).await.unwrap().unwrap();
        let marker = b
            .messages
            .list(&s, &everything())
            .await
            .unwrap()
            .next_marker;
        (posted, c.id, marker)
    };

    let store = SqliteStore::open(&path, Arc::new(clock.clone())).unwrap();
    let b = store.backend();
    assert_eq!(b.queues.get(&s).await.unwrap(), Some(metadata));
    let page = b.messages.list(&s, &everything()).await.unwrap();
    assert_eq!(
        page.messages
            .iter()
            .map(|m| m.id.clone())
            .collect::<Vec<_>>(),
        posted
    );
    assert_eq!(
        page.next_marker, marker,
        "markers stay valid across restarts"
    );
    let info = b.claims.get(&s, &claim_id).await.unwrap().unwrap();
    assert_eq!(info.messages[0].id, posted[0]);
    // New ids keep growing after a restart: the marker of the old page
    // does not hide new messages.
    let more = b
        .messages
        .post(&s, "c", vec![message(600)])
        .await
        .unwrap()
        .ids;
    let next = ListQuery {
        marker,
        ..everything()
    };
    let page = b.messages.list(&s, &next).await.unwrap();
    assert_eq!(
        page.messages
            .iter()
            .map(|m| m.id.clone())
            .collect::<Vec<_>>(),
        more
    );
}

#[tokio::test]
async fn reaper_deletes_expired_rows() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    // Opened outside the runtime, so without the background reaper: on a
    // loaded machine its 10-second tick could otherwise reap between the
    // clock's advance and the pass this test counts.
    let path = dir.path().join("db");
    let shared = Arc::new(clock.clone());
    let store = std::thread::spawn(move || SqliteStore::open(&path, shared))
        .join()
        .unwrap()
        .unwrap();
    let b = store.backend();
    let s = Scope::new(project(), "reap");
    let batch = (0..super::REAP_BATCH + 10).map(|_| message(60)).collect();
    b.messages.post(&s, "c", batch).await.unwrap();
    b.messages.post(&s, "c", vec![message(600)]).await.unwrap();
    let claim = ClaimRequest {
        ttl: 60,
        grace: 0,
        limit: 1,
        dead_letter: None,
    };
    b.claims.create(&s, &claim).await.unwrap().unwrap();

    assert_eq!(
        store.reap_expired().await.unwrap(),
        super::Reaped::default()
    );
    clock.advance_secs(61);
    let reaped = store.reap_expired().await.unwrap();
    assert_eq!(reaped.messages, super::REAP_BATCH as u64 + 10);
    assert_eq!(reaped.claims, 1);
    let rows: i64 = store
        .read("count", |conn, _| {
            Ok(conn.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))?)
        })
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn reaper_stops_when_the_store_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db"), Arc::new(ManualClock::new())).unwrap();
    let backend = store.backend();
    let reaper = store.spawn_reaper();
    drop(store);
    assert!(!reaper.is_finished(), "the backend still holds the store");
    drop(backend);
    tokio::time::timeout(std::time::Duration::from_secs(5), reaper)
        .await
        .expect("reaper stopped")
        .expect("reaper did not panic");
}

#[test]
fn open_outside_a_runtime_and_reject_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    assert!(SqliteStore::open(&path, Arc::new(ManualClock::new())).is_ok());
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let err = SqliteStore::open(&garbage, Arc::new(ManualClock::new())).unwrap_err();
    assert!(err.to_string().contains("sqlite"), "{err}");
}

/// The hot statements use the index meant for them, never a table scan.
#[tokio::test]
async fn hot_queries_use_their_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db"), Arc::new(ManualClock::new())).unwrap();
    let cases: Vec<(String, &str)> = vec![
        (super::messages::CLAIMABLE.to_owned(), "messages_free"),
        (super::schema::RELEASE_DUE.to_owned(), "messages_blocked"),
        (
            super::claims::CLAIM_MESSAGES.to_owned(),
            "messages_by_claim",
        ),
        (
            super::messages::bulk_get_sql(3),
            "sqlite_autoindex_messages_1",
        ),
        (
            super::schema::REAP_MESSAGES.to_owned(),
            "messages_by_expiry",
        ),
        (super::schema::REAP_CLAIMS.to_owned(), "claims_by_expiry"),
    ];
    let plans = store
        .read("explain", move |conn, _| {
            let mut plans = Vec::new();
            for (sql, index) in cases {
                let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                let mut rows = stmt.raw_query();
                let mut steps = Vec::new();
                while let Some(row) = rows.next()? {
                    steps.push(row.get::<_, String>(3)?);
                }
                plans.push((sql, index, steps));
            }
            Ok(plans)
        })
        .await
        .unwrap();
    for (sql, index, steps) in plans {
        assert!(
            steps.iter().all(|s| !s.starts_with("SCAN")),
            "{sql}: {steps:?}"
        );
        assert!(steps.iter().any(|s| s.contains(index)), "{sql}: {steps:?}");
    }
}

/// The query plans of the statements whose cost must not grow with a queue's
/// depth. Plans do not depend on the data (no `ANALYZE` is ever run), so an
/// empty database shows the plan every database gets.
mod plans {
    use std::sync::Arc;

    use super::super::claims::CLAIM_MESSAGES;
    use super::super::messages::{
        bulk_claim_check_sql, bulk_delete_sql, bulk_get_sql, CLAIMABLE, LIST, STATS_CLAIMED,
        STATS_EXPIRED, STATS_ROWS, SUBSCRIBED,
    };
    use super::super::schema::{REAP_CLAIMS, REAP_MESSAGES, RELEASE_DUE};
    use super::super::SqliteStore;
    use crate::storage::clock::ManualClock;

    /// The `detail` lines of `EXPLAIN QUERY PLAN sql` (nothing is bound:
    /// the statement is planned, not run).
    fn plan(store: &SqliteStore, sql: &str) -> Vec<String> {
        let conn = store.inner.writer.lock().unwrap();
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let mut rows = stmt.raw_query();
        let mut details = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            details.push(row.get::<_, String>(3).unwrap());
        }
        details
    }

    fn open() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(
            &dir.path().join("zaqar.sqlite"),
            Arc::new(ManualClock::new()),
        )
        .unwrap();
        (store, dir)
    }

    /// Asserts that `sql` reaches `messages` only through `index` (a
    /// search, never a scan of the table or of a queue).
    fn assert_searches(store: &SqliteStore, sql: &str, index: &str) {
        let details = plan(store, sql);
        let on_messages: Vec<&String> = details
            .iter()
            .filter(|d| d.contains(" messages "))
            .collect();
        assert!(
            !on_messages.is_empty(),
            "{sql}: no access to messages in {details:?}"
        );
        for d in on_messages {
            assert!(
                d.starts_with("SEARCH messages USING") && d.contains(index),
                "{sql}: expected a search of {index}, got {details:?}"
            );
        }
    }

    #[test]
    fn bulk_delete_and_its_claim_check_find_rows_by_id() {
        let (store, _dir) = open();
        for n in [1, 10, 200] {
            // The regression: these searched `messages_by_queue (project=? AND
            // queue=?)`, a walk over the whole queue for every statement.
            assert_searches(
                &store,
                &bulk_delete_sql(n),
                "sqlite_autoindex_messages_1 (id=?)",
            );
            assert_searches(
                &store,
                &bulk_claim_check_sql(n),
                "sqlite_autoindex_messages_1 (id=?)",
            );
            assert_searches(
                &store,
                &bulk_get_sql(n),
                "sqlite_autoindex_messages_1 (id=?)",
            );
        }
    }

    #[test]
    fn claims_and_listings_walk_one_queue_in_seq_order() {
        let (store, _dir) = open();
        // Searching an index by (project, queue) reads rows in seq order and
        // stops at LIMIT: no sort of the whole queue. Listings read every
        // message of the queue; claims only the free ones.
        for (sql, index) in [
            (LIST, "messages_by_queue (project=? AND queue=?"),
            (CLAIMABLE, "messages_free (project=? AND queue=?"),
        ] {
            assert_searches(&store, sql, index);
            let details = plan(&store, sql);
            assert!(
                !details.iter().any(|d| d.contains("TEMP B-TREE")),
                "{sql}: sorts its rows: {details:?}"
            );
        }
        assert_searches(&store, CLAIM_MESSAGES, "messages_by_claim (claim_id=?)");
    }

    #[test]
    fn the_fanout_pages_confirmed_subscriptions_by_index() {
        let (store, _dir) = open();
        // Without the partial index in seq order this read every
        // unconfirmed subscription of the queue for each post's fan-out.
        let details = plan(&store, super::super::subscriptions::LIST_CONFIRMED);
        assert!(
            details
                .iter()
                .any(|d| d.starts_with("SEARCH subscriptions USING")
                    && d.ends_with(
                        "subscriptions_confirmed_seq (project=? AND queue=? AND seq>?)"
                    )),
            "{details:?}"
        );
        assert!(
            !details.iter().any(|d| d.contains("TEMP B-TREE")),
            "sorted after the search: {details:?}"
        );
    }

    #[test]
    fn a_post_finds_a_confirmed_subscription_by_index() {
        let (store, _dir) = open();
        // Without the partial index this walked every subscription of the
        // queue on each post while none was confirmed.
        let details = plan(&store, SUBSCRIBED);
        assert!(
            details
                .iter()
                .any(|d| d.starts_with("SEARCH subscriptions USING")
                    && d.ends_with(
                        "subscriptions_confirmed (project=? AND queue=? AND expires_ms>?)"
                    )),
            "{details:?}"
        );
        assert!(
            !details.iter().any(|d| d.starts_with("SCAN subscriptions")),
            "{details:?}"
        );
    }

    #[test]
    fn claims_release_due_messages_by_their_time() {
        let (store, _dir) = open();
        assert_searches(
            &store,
            RELEASE_DUE,
            "messages_blocked (project=? AND queue=? AND blocked_until_ms>? AND blocked_until_ms<?)",
        );
    }

    #[test]
    fn the_reaper_finds_expired_rows_by_expiry() {
        let (store, _dir) = open();
        assert!(plan(&store, REAP_MESSAGES)
            .iter()
            .any(|d| d.contains("messages_by_expiry")));
        assert!(plan(&store, REAP_CLAIMS)
            .iter()
            .any(|d| d.contains("claims_by_expiry")));
    }

    #[test]
    fn stats_count_without_walking_the_queue() {
        let (store, _dir) = open();
        assert_searches(&store, STATS_EXPIRED, "messages_by_expiry (expires_ms<?)");
        assert_searches(
            &store,
            STATS_CLAIMED,
            "messages_claimed (project=? AND queue=? AND claim_expires_ms>?)",
        );
        let details = plan(&store, STATS_ROWS);
        assert!(
            details
                .iter()
                .all(|d| d.starts_with("SEARCH queue_counts USING PRIMARY KEY")),
            "{details:?}"
        );
    }
}

/// Takes a file of this build back to version 5: no `blocked_until_ms`
/// column, none of its indexes.
const UNDO_V6: &str = "DROP INDEX messages_free; DROP INDEX messages_blocked; \
     ALTER TABLE messages DROP COLUMN blocked_until_ms; PRAGMA user_version = 5;";

/// A version-4 file (no per-queue counts) opened by this build gets its
/// counts from the rows already there.
#[tokio::test]
async fn upgrading_to_version_5_counts_the_messages_already_there() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zaqar.sqlite");
    let clock = ManualClock::new();
    let s = Scope::new(project(), "counted");
    {
        let store = SqliteStore::open(&path, Arc::new(clock.clone())).unwrap();
        let b = store.backend();
        b.queues.create(&s, &Metadata::default()).await.unwrap();
        b.messages
            .post(&s, "c", vec![message(600), message(600), message(600)])
            .await
            .unwrap();
        // Back to what version 4 wrote.
        let conn = store.inner.writer.lock().unwrap();
        conn.execute_batch(&format!(
            "{UNDO_V6} DROP TRIGGER messages_count_insert; DROP TRIGGER messages_count_delete; \
             DROP INDEX messages_claimed; DROP TABLE queue_counts; PRAGMA user_version = 4;"
        ))
        .unwrap();
    }
    let store = SqliteStore::open(&path, Arc::new(clock.clone())).unwrap();
    let b = store.backend();
    let stats = b.messages.stats(&s).await.unwrap();
    assert_eq!((stats.total, stats.free, stats.claimed), (3, 3, 0));
    b.messages.post(&s, "c", vec![message(600)]).await.unwrap();
    assert_eq!(b.messages.stats(&s).await.unwrap().total, 4);
}

/// Concurrent posts are written in shared transactions: each post still
/// gets its own messages, together and in its order, on its own queue, and
/// a post the store refuses (a TTL past what time can hold) fails alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_posts_stay_whole_and_fail_alone() {
    let (backend, _keep) = open(ManualClock::new()).await;
    let queues = [Scope::new(project(), "a"), Scope::new(project(), "b")];
    let posts: Vec<_> = (0..30usize)
        .map(|p| {
            let backend = backend.clone();
            let s = queues[p % 2].clone();
            tokio::spawn(async move {
                let ttl = if p == 13 { i64::MAX } else { 600 };
                let outcome = backend
                    .messages
                    .post(&s, "c", vec![message(ttl), message(ttl), message(ttl)])
                    .await;
                (p, outcome.map(|posted| posted.ids))
            })
        })
        .collect();
    let mut posted = vec![Vec::new(), Vec::new()];
    for post in posts {
        let (p, outcome) = post.await.unwrap();
        if p == 13 {
            assert!(outcome.is_err(), "the overflowing post is refused");
        } else {
            posted[p % 2].push(outcome.expect("the other posts are stored"));
        }
    }
    for (s, posted) in queues.iter().zip(&posted) {
        let mut listed = Vec::new();
        let mut query = ListQuery {
            limit: 100,
            ..everything()
        };
        loop {
            let page = backend.messages.list(s, &query).await.unwrap();
            if page.messages.is_empty() {
                break;
            }
            listed.extend(page.messages.into_iter().map(|m| m.id));
            query.marker = page.next_marker;
        }
        assert_eq!(listed.len(), posted.len() * 3, "queue {}", s.queue);
        for ids in posted {
            let at = listed.iter().position(|id| id == &ids[0]).expect("listed");
            assert_eq!(&listed[at..at + 3], ids.as_slice());
        }
    }
}

/// The number of SQLite virtual-machine steps of one run of `sql` on the
/// writer connection, in a transaction that is rolled back: a measure of the
/// rows the statement reads that does not depend on the machine's speed.
fn vm_steps(store: &SqliteStore, sql: &str, params: impl rusqlite::Params) -> i32 {
    let mut conn = store.inner.writer.lock().unwrap();
    let tx = conn.transaction().unwrap();
    let mut stmt = tx.prepare(sql).unwrap();
    let mut rows = stmt.query(params).unwrap();
    while rows.next().unwrap().is_some() {}
    drop(rows);
    let steps = stmt.get_status(rusqlite::StatementStatus::VmStep);
    drop(stmt);
    tx.rollback().unwrap();
    steps
}

/// A claim behind thousands of claimed or delayed messages reads the free
/// messages only: its statements take as many steps as on a queue without a
/// blocked head. (Before version 6, the claim's query read every blocked
/// message, on every claim, while holding the writer: 33,213 steps behind
/// 3,000 claimed messages, 213 on the free queue.)
#[tokio::test]
async fn claims_do_not_read_a_blocked_head() {
    use super::messages::CLAIMABLE;
    use super::schema::RELEASE_DUE;

    const BLOCKED: usize = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let store = SqliteStore::open(&dir.path().join("db"), Arc::new(clock.clone())).unwrap();
    let b = store.backend();
    let free = Scope::new(project(), "free");
    let claimed = Scope::new(project(), "claimed");
    let delayed = Scope::new(project(), "delayed");
    b.messages
        .post(&claimed, "c", (0..BLOCKED).map(|_| message(3600)).collect())
        .await
        .unwrap();
    let long = |limit| ClaimRequest {
        ttl: 3600,
        grace: 60,
        limit,
        dead_letter: None,
    };
    let held = b.claims.create(&claimed, &long(BLOCKED)).await.unwrap();
    assert_eq!(held.unwrap().messages.len(), BLOCKED);
    let later = (0..BLOCKED)
        .map(|_| NewMessage {
            delay: 900,
            ..message(3600)
        })
        .collect();
    b.messages.post(&delayed, "c", later).await.unwrap();
    for s in [&free, &claimed, &delayed] {
        b.messages
            .post(s, "c", (0..20).map(|_| message(3600)).collect())
            .await
            .unwrap();
    }

    let now = clock.now_ms();
    let steps = |s: &Scope| {
        let claim = vm_steps(
            &store,
            CLAIMABLE,
            rusqlite::params![s.project, s.queue, now, 10],
        );
        let release = vm_steps(
            &store,
            RELEASE_DUE,
            rusqlite::params![s.project, s.queue, now],
        );
        (claim, release)
    };
    let on_free = steps(&free);
    assert!(on_free.0 < 1_000, "{on_free:?}");
    for s in [&claimed, &delayed] {
        let behind = steps(s);
        assert!(
            behind.0 <= on_free.0 + 100 && behind.1 <= on_free.1 + 100,
            "free queue {on_free:?}, behind {BLOCKED} {}: {behind:?}",
            s.queue
        );
        // And the claim gets the free messages behind the head.
        let c = b.claims.create(s, &long(30)).await.unwrap().unwrap();
        assert_eq!(c.messages.len(), 20, "{}", s.queue);
    }
}

/// A version-6 file (no index of confirmed subscriptions) opened by this
/// build: its confirmed subscriptions are found by the new index.
#[tokio::test]
async fn upgrading_to_version_7_indexes_confirmed_subscriptions() {
    use crate::storage::{NewSubscription, Subscribed};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zaqar.sqlite");
    let clock = ManualClock::new();
    let s = Scope::new(project(), "confirmed");
    let new = |subscriber: &str| NewSubscription {
        subscriber: subscriber.into(),
        ttl: 600,
        options: Metadata::default(),
    };
    {
        let store = SqliteStore::open(&path, Arc::new(clock.clone())).unwrap();
        let b = store.backend();
        b.queues.create(&s, &Metadata::default()).await.unwrap();
        let id = b
            .subscriptions
            .create(&s, &new("http://confirmed.example/"))
            .await
            .unwrap()
            .unwrap();
        b.subscriptions.confirm(&s, &id, true).await.unwrap();
        let conn = store.inner.writer.lock().unwrap();
        conn.execute_batch(
            "DROP INDEX subscriptions_confirmed; DROP INDEX subscriptions_confirmed_seq; \
             PRAGMA user_version = 6;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path, Arc::new(clock.clone())).unwrap();
    assert_eq!(
        super::schema_version_of(&path).unwrap(),
        Some(super::SCHEMA_VERSION)
    );
    let b = store.backend();
    let posted = b.messages.post(&s, "c", vec![message(600)]).await.unwrap();
    assert_eq!(posted.subscribed, Some(Subscribed::Confirmed));
    let confirmed = b.subscriptions.list_confirmed(&s, None, 10).await.unwrap();
    assert_eq!(confirmed.len(), 1);
    assert_eq!(confirmed[0].subscriber, "http://confirmed.example/");
}

/// A version-5 file opened by this build: its free, delayed, claimed and
/// released messages are sorted into the free and blocked indexes, and each
/// becomes claimable exactly when it did before.
#[tokio::test]
async fn upgrading_to_version_6_keeps_blocked_messages_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zaqar.sqlite");
    let clock = ManualClock::new();
    let s = Scope::new(project(), "upgraded");
    let claim = |ttl, limit| ClaimRequest {
        ttl,
        grace: 60,
        limit,
        dead_letter: None,
    };
    let ids_of =
        |c: &crate::storage::NewClaim| c.messages.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
    // In seq order: claimed for 300 s; claimed for 120 s (the claim has
    // ended at the upgrade); delayed for 600 s; released (its claim
    // deleted); never claimed.
    let ids = {
        let store = SqliteStore::open(&path, Arc::new(clock.clone())).unwrap();
        let b = store.backend();
        let delayed = |delay| NewMessage {
            delay,
            ..message(3600)
        };
        let ids = b
            .messages
            .post(
                &s,
                "c",
                vec![delayed(0), delayed(0), delayed(600), delayed(0), delayed(0)],
            )
            .await
            .unwrap()
            .ids;
        let held = b.claims.create(&s, &claim(300, 1)).await.unwrap().unwrap();
        assert_eq!(ids_of(&held), ids[..1]);
        let short = b.claims.create(&s, &claim(120, 1)).await.unwrap().unwrap();
        assert_eq!(ids_of(&short), ids[1..2]);
        let released = b.claims.create(&s, &claim(300, 1)).await.unwrap().unwrap();
        assert_eq!(ids_of(&released), ids[3..4]);
        b.claims.delete(&s, &released.id).await.unwrap();
        // Back to what version 5 wrote.
        let conn = store.inner.writer.lock().unwrap();
        conn.execute_batch(UNDO_V6).unwrap();
        ids
    };
    let start = clock.now_ms();
    clock.advance_secs(121);

    let store = SqliteStore::open(&path, Arc::new(clock.clone())).unwrap();
    let blocked: Vec<(String, i64)> = {
        let conn = store.inner.writer.lock().unwrap();
        let mut stmt = conn
            .prepare("SELECT id, blocked_until_ms FROM messages ORDER BY seq")
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows
    };
    assert_eq!(
        blocked,
        vec![
            (ids[0].clone(), start + 300_000),
            (ids[1].clone(), 0),
            (ids[2].clone(), start + 600_000),
            (ids[3].clone(), 0),
            (ids[4].clone(), 0),
        ]
    );

    let b = store.backend();
    let stats = b.messages.stats(&s).await.unwrap();
    assert_eq!((stats.total, stats.claimed), (5, 1));
    let c = b.claims.create(&s, &claim(60, 10)).await.unwrap().unwrap();
    assert_eq!(ids_of(&c), [&ids[1], &ids[3], &ids[4]].map(String::clone));
    b.claims.delete(&s, &c.id).await.unwrap();
    // The old claim holds its message until it ends; then it is the oldest
    // claimable. The delayed one comes due later.
    clock.advance_secs(180);
    let c = b.claims.create(&s, &claim(60, 10)).await.unwrap().unwrap();
    assert_eq!(
        ids_of(&c),
        [&ids[0], &ids[1], &ids[3], &ids[4]].map(String::clone)
    );
    b.claims.delete(&s, &c.id).await.unwrap();
    clock.advance_secs(300);
    let c = b.claims.create(&s, &claim(60, 10)).await.unwrap().unwrap();
    assert_eq!(ids_of(&c), ids);
}

/// On SQLite, claims always take the oldest claimable messages: after
/// claims end (deleted, run out, not the extended one) and a delay ends,
/// the next claim gets the released messages in their place in the queue.
#[tokio::test]
async fn claims_take_the_oldest_after_claims_and_delays_end() {
    let clock = ManualClock::new();
    let (b, _keep) = open(clock.clone()).await;
    let s = Scope::new(project(), "fifo");
    let claim = |ttl, limit| ClaimRequest {
        ttl,
        grace: 60,
        limit,
        dead_letter: None,
    };
    let got = |c: Option<crate::storage::NewClaim>| {
        let c = c.expect("a claim");
        (
            c.id,
            c.messages.into_iter().map(|m| m.id).collect::<Vec<_>>(),
        )
    };
    let messages = (0..8)
        .map(|i| NewMessage {
            delay: if i == 2 { 100 } else { 0 },
            ..message(3600)
        })
        .collect();
    let m = b.messages.post(&s, "c", messages).await.unwrap().ids;
    let (_, first) = got(b.claims.create(&s, &claim(600, 2)).await.unwrap());
    assert_eq!(first, m[0..2]);
    let (second, taken) = got(b.claims.create(&s, &claim(300, 2)).await.unwrap());
    assert_eq!(taken, m[3..5], "the delayed one is passed over");
    let (third, taken) = got(b.claims.create(&s, &claim(300, 2)).await.unwrap());
    assert_eq!(taken, m[5..7]);
    b.claims.update(&s, &third, 900, 60).await.unwrap();

    clock.advance_secs(50);
    b.claims.delete(&s, &second).await.unwrap();
    let (again, taken) = got(b.claims.create(&s, &claim(60, 2)).await.unwrap());
    assert_eq!(taken, m[3..5], "released at once, before the newer one");
    b.claims.delete(&s, &again).await.unwrap();

    clock.advance_secs(551);
    let (_, taken) = got(b.claims.create(&s, &claim(60, 10)).await.unwrap());
    assert_eq!(
        taken,
        [&m[0], &m[1], &m[2], &m[3], &m[4], &m[7]].map(String::clone)
    );
    clock.advance_secs(300);
    let (_, taken) = got(b.claims.create(&s, &claim(60, 10)).await.unwrap());
    assert_eq!(taken, m, "every claim has ended, the extended one too");
}
