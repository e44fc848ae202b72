//! The conformance suites and the driver's own tests against a real
//! MongoDB-wire server.
//!
//! `ZAQAR_TEST_MONGODB_URI` names the server (`eval "$(tests/mongodb/start.sh)"`
//! starts SecantusDB and sets it); unset, every test prints that it did
//! not run and passes; set but unreachable, every test fails. Each test
//! works in databases of its own (`zqt_<uuid>`, dropped afterwards), so
//! tests run in parallel on one server. Tests that stop and restart their
//! server (faults, durability) start their own SecantusDB from
//! `ZAQAR_TEST_SECANTUSD` (start.sh sets it too).
//!
//! Where SecantusDB differs from MongoDB, we follow MongoDB's documented
//! behaviour, and the test says so.

use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Document};
use serde_json::json;

use super::{options::MongoOptions, MongoStore};
use crate::storage::clock::{Clock, ManualClock};
use crate::storage::conformance::Keep;
use crate::storage::outbox::{NewDelivery, Outbox};
use crate::storage::pipeline::Backend;
use crate::storage::{ClaimRequest, DeadLetter, ListQuery, NewMessage, Scope, StorageError};

/// Fails the test when run_tests.sh said MongoDB is there
/// (`ZAQAR_TEST_REQUIRE` names it): a missing server is then an error,
/// never a silent pass.
fn unless_required(what: &str) {
    let required = std::env::var("ZAQAR_TEST_REQUIRE").unwrap_or_default();
    assert!(
        !required.split(',').any(|r| r == "mongodb"),
        "MongoDB is required (ZAQAR_TEST_REQUIRE) but {what} is not set"
    );
}

/// The server under test, or `None` after saying that the test did not run.
fn test_uri() -> Option<String> {
    match std::env::var("ZAQAR_TEST_MONGODB_URI") {
        Ok(uri) if !uri.is_empty() => Some(uri),
        _ => {
            unless_required("ZAQAR_TEST_MONGODB_URI");
            eprintln!(
                "NOT RUN: ZAQAR_TEST_MONGODB_URI is not set (eval \"$(tests/mongodb/start.sh)\" \
                 to run the MongoDB tests)"
            );
            None
        }
    }
}

/// Drops a test's databases when the test ends (on a thread and runtime
/// of its own: the test's runtime may be single-threaded or gone).
struct DropDatabases {
    uri: String,
    names: Vec<String>,
}

impl Drop for DropDatabases {
    fn drop(&mut self) {
        let uri = self.uri.clone();
        let names = std::mem::take(&mut self.names);
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(client) = mongodb::Client::with_uri_str(&uri).await else {
                    return;
                };
                for name in names {
                    let _ = client.database(&name).drop().await;
                }
                client.shutdown().await;
            });
        })
        .join();
    }
}

/// Options for a fresh set of databases on the test server, and their
/// cleaner.
fn fresh(uri: &str) -> (MongoOptions, DropDatabases) {
    let database = format!("zqt_{}", uuid::Uuid::new_v4().simple());
    let options = MongoOptions::for_uri(uri, &database).expect("test URI parses");
    let names = std::iter::once(database.clone())
        .chain((0..options.partitions).map(|i| format!("{database}_part{i}")))
        .collect();
    let cleaner = DropDatabases {
        uri: uri.to_owned(),
        names,
    };
    (options, cleaner)
}

fn store(options: MongoOptions, clock: &ManualClock) -> MongoStore {
    MongoStore::connect(options, Arc::new(clock.clone())).expect("store")
}

async fn open(clock: ManualClock) -> Option<(Backend, Keep)> {
    let uri = test_uri()?;
    let (mut options, cleaner) = fresh(&uri);
    // The conformance suites post up to 20,000 messages in one call, which
    // SecantusDB (Python) can take longer than the 10 s default to write on
    // a loaded two-core machine; the timeout itself is tested on its own.
    options.operation_timeout = std::time::Duration::from_secs(120);
    Some((store(options, &clock).backend(), Box::new(cleaner)))
}

/// [`open`] for the behaviours that write tens of thousands of records:
/// minutes each on SecantusDB (a Python server) where MongoDB takes
/// seconds (and long enough that its TTL monitor, on the wall clock,
/// reaps records the test's manual clock still holds live), so they run when `ZAQAR_TEST_MONGODB_HEAVY=1` (the documented
/// long run, `ZAQAR_TEST_MONGODB_HEAVY=1 ./run_tests.sh cargo-test`) and say
/// so when not.
async fn open_heavy(clock: ManualClock) -> Option<(Backend, Keep)> {
    if std::env::var("ZAQAR_TEST_MONGODB_HEAVY").as_deref() != Ok("1") {
        eprintln!(
            "NOT RUN: a bulk-volume behaviour; ZAQAR_TEST_MONGODB_HEAVY=1 runs it on MongoDB"
        );
        return None;
    }
    open(clock).await
}

crate::storage::conformance::conformance_tests!(open, heavy: open_heavy);
crate::storage::subscription_conformance::subscription_conformance_tests!(open, heavy: open_heavy);

// ------------------------------------------------------------------ helpers

fn msg(n: i64, ttl: i64) -> NewMessage {
    NewMessage {
        ttl,
        delay: 0,
        body: serde_json::value::to_raw_value(
            &json!({ "n": n, "big": 12345678901234567890u64, "f": 0.1 }),
        )
        .expect("json"),
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

fn claim(ttl: i64, limit: usize) -> ClaimRequest {
    ClaimRequest {
        ttl,
        grace: 60,
        limit,
        dead_letter: None,
    }
}

async fn all_ids(backend: &Backend, scope: &Scope) -> Vec<String> {
    let mut query = everything();
    let mut all = Vec::new();
    loop {
        let page = backend.messages.list(scope, &query).await.unwrap();
        if page.messages.is_empty() {
            return all;
        }
        all.extend(page.messages.into_iter().map(|m| m.id));
        query.marker = page.next_marker;
    }
}

// ------------------------------------------------------------------ outbox

fn delivery(n: u32) -> NewDelivery {
    let mut options = crate::storage::Metadata::new();
    options.insert("post_headers".into(), json!({"X-N": n.to_string()}));
    NewDelivery {
        project: "p".into(),
        queue: format!("q{n}"),
        subscription_id: format!("s{n}"),
        subscriber: format!("http://127.0.0.1:9/{n}"),
        options,
        queue_retry_policy: n.is_multiple_of(2).then(|| json!({"minimum_delay": 1})),
        payload: json!({"body": {"n": n}, "ttl": 60, "queue_name": format!("q{n}")}),
    }
}

/// The outbox contract: deliveries come back in order with their fields,
/// a lease hides them until it runs out, retry reschedules, complete
/// removes, and a second store on the same databases (a restarted server)
/// sees exactly what is pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_lease_retry_complete() {
    let Some(uri) = test_uri() else { return };
    let (opts, _cleaner) = fresh(&uri);
    let clock = ManualClock::new();
    let store = store(opts.clone(), &clock);
    assert_eq!(store.next_due_ms().await.unwrap(), None);
    assert!(store.lease_due(10, 30_000).await.unwrap().is_empty());
    store.enqueue(Vec::new()).await.unwrap();
    store.enqueue((0..5).map(delivery).collect()).await.unwrap();
    assert_eq!(store.next_due_ms().await.unwrap(), Some(clock.now_ms()));
    let first = store.lease_due(2, 30_000).await.unwrap();
    assert_eq!(
        first.iter().map(|d| d.delivery.clone()).collect::<Vec<_>>(),
        vec![delivery(0), delivery(1)]
    );
    assert_eq!(
        (first[0].attempts, first[0].created_ms),
        (0, clock.now_ms())
    );
    let rest = store.lease_due(10, 30_000).await.unwrap();
    assert_eq!(rest.len(), 3);
    assert!(store.lease_due(10, 30_000).await.unwrap().is_empty());
    assert_eq!(
        store.next_due_ms().await.unwrap(),
        Some(clock.now_ms() + 30_000),
        "leases count as due times"
    );

    store.complete(&first[0].id).await.unwrap();
    store.complete(&first[0].id).await.unwrap();
    let due = clock.now_ms() + 5_000;
    store.retry_at(&first[1].id, 1, due).await.unwrap();
    assert_eq!(store.next_due_ms().await.unwrap(), Some(due));
    clock.advance_secs(5);
    let again = store.lease_due(10, 30_000).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].id.as_str(), again[0].attempts),
        (first[1].id.as_str(), 1)
    );
    assert_eq!(again[0].delivery, delivery(1));
    store.complete(&again[0].id).await.unwrap();
    store
        .retry_at(&again[0].id, 2, clock.now_ms())
        .await
        .unwrap();

    drop(store);
    let store = self::store(opts, &clock);
    assert!(store.lease_due(10, 30_000).await.unwrap().is_empty());
    clock.advance_secs(26);
    let back = store.lease_due(10, 30_000).await.unwrap();
    assert_eq!(
        back.iter().map(|d| d.delivery.clone()).collect::<Vec<_>>(),
        vec![delivery(2), delivery(3), delivery(4)]
    );
    for d in back {
        store.complete(&d.id).await.unwrap();
    }
    assert_eq!(store.next_due_ms().await.unwrap(), None);
    assert!(store.complete("not-an-id").await.is_err());
}

/// Two stores (two API servers) leasing at once never get the same
/// delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_leases_never_share_a_delivery() {
    let Some(uri) = test_uri() else { return };
    let (opts, _cleaner) = fresh(&uri);
    let clock = ManualClock::new();
    let a = store(opts.clone(), &clock);
    let b = store(opts, &clock);
    a.enqueue((0..60).map(delivery).collect()).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let leased = s.lease_due(3, 60_000).await.unwrap();
                    if leased.is_empty() {
                        return got;
                    }
                    got.extend(leased.into_iter().map(|d| d.id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (60, 60));
}

// ------------------------------------------------ driver-specific behaviour

/// Bodies come back byte for byte (stored as JSON text: no BSON round
/// trip turns the big integer into a double).
#[tokio::test]
async fn bodies_are_stored_verbatim() {
    let Some(uri) = test_uri() else { return };
    let (opts, _cleaner) = fresh(&uri);
    let backend = store(opts, &ManualClock::new()).backend();
    let scope = Scope::new("p", "q");
    let raw = r#"{"n": 1, "big": 12345678901234567890, "f": 0.1, "$set": {"a.b": 1}}"#;
    let message = NewMessage {
        ttl: 600,
        delay: 0,
        body: serde_json::value::RawValue::from_string(raw.to_owned()).unwrap(),
        checksum: None,
    };
    let id = backend
        .messages
        .post(&scope, "c", vec![message])
        .await
        .unwrap()
        .ids
        .remove(0);
    let m = backend.messages.get(&scope, &id).await.unwrap().unwrap();
    assert_eq!(m.body.get(), raw);
    let metadata: crate::storage::Metadata =
        serde_json::from_value(json!({"$where": 1, "a.b": 18446744073709551615u64})).unwrap();
    backend.queues.create(&scope, &metadata).await.unwrap();
    assert_eq!(backend.queues.get(&scope).await.unwrap(), Some(metadata));
}

/// Project `p.sub` + queue `zq` and project `p` + queue `sub.zq` are two
/// queues (the reference's `p/q` keys would be one string).
#[tokio::test]
async fn dotted_and_slashed_names_are_distinct_queues() {
    let Some(uri) = test_uri() else { return };
    let (opts, _cleaner) = fresh(&uri);
    let backend = store(opts, &ManualClock::new()).backend();
    let pairs = [("p.sub", "zq"), ("p", "sub.zq"), ("p/x", "q"), ("p", "x/q")];
    let mut ids = Vec::new();
    for (p, q) in pairs {
        let s = Scope::new(p, q);
        backend
            .queues
            .create(&s, &serde_json::Map::new())
            .await
            .unwrap();
        ids.push(
            backend
                .messages
                .post(&s, "c", vec![msg(1, 600)])
                .await
                .unwrap()
                .ids,
        );
    }
    for ((p, q), posted) in pairs.iter().zip(&ids) {
        let s = Scope::new(*p, *q);
        assert_eq!(&all_ids(&backend, &s).await, posted);
        assert_eq!(backend.messages.stats(&s).await.unwrap().total, 1);
    }
    assert_eq!(backend.queues.count("p").await.unwrap(), 2);
}

/// The reference's MongoDB bug we do not copy: releasing or renewing a
/// claim reset the message's claim count, so dead-lettering never fired.
#[tokio::test]
async fn release_and_renewal_keep_claim_counts() {
    let Some(uri) = test_uri() else { return };
    let (opts, _cleaner) = fresh(&uri);
    let clock = ManualClock::new();
    let backend = store(opts, &clock).backend();
    let s = Scope::new("p", "work");
    let policy = ClaimRequest {
        dead_letter: Some(DeadLetter {
            max_claim_count: 2,
            queue: "dead".into(),
            ttl: None,
        }),
        ..claim(60, 10)
    };
    let posted = backend
        .messages
        .post(&s, "c", vec![msg(1, 3600)])
        .await
        .unwrap()
        .ids;
    let c = backend.claims.create(&s, &policy).await.unwrap().unwrap();
    backend.claims.update(&s, &c.id, 120, 60).await.unwrap();
    let m = backend.messages.get(&s, &posted[0]).await.unwrap().unwrap();
    assert_eq!(m.claim_count, 1, "renewal keeps the count");
    backend.claims.delete(&s, &c.id).await.unwrap();
    let m = backend.messages.get(&s, &posted[0]).await.unwrap().unwrap();
    assert_eq!(m.claim_count, 1, "release keeps the count");
    let c = backend.claims.create(&s, &policy).await.unwrap().unwrap();
    assert_eq!(c.messages[0].claim_count, 2);
    backend.claims.delete(&s, &c.id).await.unwrap();
    assert!(backend.claims.create(&s, &policy).await.unwrap().is_none());
    let dead = Scope::new("p", "dead");
    assert_eq!(all_ids(&backend, &dead).await, posted);
}

/// Two stores on one database (two API servers, each with its own client
/// and connection pool), 16 claimers: every message is claimed exactly
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_never_share_a_message() {
    let Some(uri) = test_uri() else { return };
    let (opts, _cleaner) = fresh(&uri);
    let clock = ManualClock::new();
    let a = store(opts.clone(), &clock).backend();
    let b = store(opts, &clock).backend();
    let s = Scope::new("p", "race");
    let mut posted = Vec::new();
    for round in 0..10 {
        let target = if round % 2 == 0 { &a } else { &b };
        posted.extend(
            target
                .messages
                .post(&s, "c", (0..10).map(|n| msg(n, 3600)).collect())
                .await
                .unwrap()
                .ids,
        );
    }
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let backend = if i % 2 == 0 { a.clone() } else { b.clone() };
            let s = s.clone();
            tokio::spawn(async move {
                let mut won = Vec::new();
                while let Some(c) = backend.claims.create(&s, &claim(300, 3)).await.unwrap() {
                    won.extend(c.messages.into_iter().map(|m| m.id));
                }
                won
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for t in tasks {
        claimed.extend(t.await.unwrap());
    }
    claimed.sort();
    let mut expected = posted.clone();
    expected.sort();
    assert_eq!(claimed, expected, "every message claimed exactly once");
}

/// Concurrent posts to one queue from two stores: a reader paging with
/// markers while they run never skips a message (listings stop below the
/// first sequence number still in flight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_never_skip_concurrent_posts() {
    let Some(uri) = test_uri() else { return };
    let (opts, _cleaner) = fresh(&uri);
    let clock = ManualClock::new();
    let a = store(opts.clone(), &clock).backend();
    let b = store(opts, &clock).backend();
    let s = Scope::new("p", "ordered");
    let writers: Vec<_> = (0..4)
        .map(|i| {
            let backend = if i % 2 == 0 { a.clone() } else { b.clone() };
            let s = s.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..10 {
                    ids.extend(
                        backend
                            .messages
                            .post(&s, "c", vec![msg(n, 3600), msg(n, 3600)])
                            .await
                            .unwrap()
                            .ids,
                    );
                }
                ids
            })
        })
        .collect();
    // Page through while the writers run, then to the end.
    let reader = {
        let backend = a.clone();
        let s = s.clone();
        let writers_done = Arc::new(tokio::sync::Notify::new());
        let done = writers_done.clone();
        (
            tokio::spawn(async move {
                let mut query = ListQuery {
                    limit: 3,
                    ..everything()
                };
                let mut seen = Vec::new();
                let mut finished = false;
                loop {
                    let page = backend.messages.list(&s, &query).await.unwrap();
                    if page.messages.is_empty() {
                        if finished {
                            return seen;
                        }
                        // Wait for the writers (or a moment), then look again.
                        finished = tokio::time::timeout(Duration::from_millis(50), done.notified())
                            .await
                            .is_ok();
                        continue;
                    }
                    seen.extend(page.messages.into_iter().map(|m| m.id));
                    query.marker = page.next_marker.or(query.marker);
                }
            }),
            writers_done,
        )
    };
    let mut posted = Vec::new();
    for w in writers {
        posted.extend(w.await.unwrap());
    }
    reader.1.notify_one();
    let seen = reader.0.await.unwrap();
    let mut seen_sorted = seen.clone();
    seen_sorted.sort();
    posted.sort();
    assert_eq!(seen_sorted, posted, "the reader saw every message once");
}

/// Concurrent posts to one queue through one store are written in groups
/// (one reservation, insert and release per group): every post still gets
/// its own messages, numbered consecutively in the order it gave them, and
/// the queue's numbers have no gap and no repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_posts_keep_each_post_whole_and_in_order() {
    let Some(uri) = test_uri() else { return };
    let (opts, _cleaner) = fresh(&uri);
    let clock = ManualClock::new();
    let st = store(opts, &clock);
    let backend = st.backend();
    let s = Scope::new("p", "grouped");
    let posts: Vec<_> = (0..24i64)
        .map(|p| {
            let backend = backend.clone();
            let s = s.clone();
            tokio::spawn(async move {
                let batch = (0..3).map(|i| msg(p * 10 + i, 3600)).collect();
                backend
                    .messages
                    .post(&s, &format!("c{p}"), batch)
                    .await
                    .unwrap()
                    .ids
            })
        })
        .collect();
    let mut posted = Vec::new();
    for post in posts {
        posted.push(post.await.unwrap());
    }
    let listed = all_ids(&backend, &s).await;
    assert_eq!(listed.len(), 72, "every message stored once");
    for ids in &posted {
        let at = listed.iter().position(|id| id == &ids[0]).expect("listed");
        assert_eq!(
            &listed[at..at + 3],
            ids.as_slice(),
            "a post's messages stay together, in order"
        );
    }
    let ready = st.ready().await.unwrap().clone();
    let counter = ready
        .counters("p")
        .find_one(doc! { "p": "p", "q": "grouped" })
        .await
        .unwrap()
        .expect("counter");
    assert_eq!(
        super::messages::int(&counter, "n").ok(),
        Some(72),
        "no number skipped"
    );
    let mut numbers: Vec<i64> = Vec::new();
    let mut found = ready
        .messages("p")
        .find(doc! { "p": "p", "q": "grouped" })
        .await
        .unwrap();
    while let Some(d) = found.try_next().await.unwrap() {
        numbers.push(super::messages::int(&d, "k").unwrap_or(-1));
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=72).collect::<Vec<_>>());
}

/// The listing rule behind the previous test, made deterministic: a post
/// whose numbers are reserved but whose messages have not landed yet holds
/// later messages back (they would otherwise be paged past it); once it
/// lands, or once its reservation runs out (the post died), they show.
#[tokio::test]
async fn listings_wait_for_posts_in_flight() {
    let Some(uri) = test_uri() else { return };
    let (opts, _cleaner) = fresh(&uri);
    let clock = ManualClock::new();
    let st = store(opts, &clock);
    let backend = st.backend();
    let s = Scope::new("p", "q");
    let ids = |page: crate::storage::MessagePage| -> Vec<String> {
        page.messages.into_iter().map(|m| m.id).collect()
    };
    let early = backend
        .messages
        .post(&s, "c", vec![msg(1, 3600), msg(2, 3600)])
        .await
        .unwrap()
        .ids;
    let ready = st.ready().await.unwrap().clone();
    let slow = mongodb::bson::oid::ObjectId::new();
    let reserved = st
        .reserve(&ready, &s, 1, clock.now_ms(), slow)
        .await
        .unwrap_or_else(|_| panic!("reserve"));
    assert_eq!(reserved, 3);
    let late = backend
        .messages
        .post(&s, "c", vec![msg(4, 3600)])
        .await
        .unwrap()
        .ids;
    let page = backend.messages.list(&s, &everything()).await.unwrap();
    let marker = page.next_marker.clone();
    assert_eq!(ids(page), early, "the message after the slow post waits");

    // The slow post lands: both show, in order, after the marker.
    let id = mongodb::bson::oid::ObjectId::new();
    let now = clock.now_ms();
    ready
        .messages("p")
        .insert_one(doc! {
            "_id": id, "p": "p", "q": "q", "k": 3i64, "u": "c", "t": 3600i64, "cr": now,
            "e": super::date(now + 3_600_000), "d": now, "ce": 0i64, "cc": 0i64, "b": "3",
        })
        .await
        .unwrap();
    super::messages::release(&ready, &s, slow).await.unwrap();
    let next = ListQuery {
        marker,
        ..everything()
    };
    let page = backend.messages.list(&s, &next).await.unwrap();
    assert_eq!(ids(page), [id.to_hex(), late[0].clone()]);

    // A post that died after reserving holds listings back only until its
    // reservation runs out.
    let dead = mongodb::bson::oid::ObjectId::new();
    st.reserve(&ready, &s, 2, clock.now_ms(), dead)
        .await
        .unwrap_or_else(|_| panic!("reserve"));
    let after = backend
        .messages
        .post(&s, "c", vec![msg(7, 3600)])
        .await
        .unwrap()
        .ids;
    let all = || async { ids(backend.messages.list(&s, &everything()).await.unwrap()) };
    assert!(!all().await.contains(&after[0]));
    clock.advance_secs(
        (super::options::DEFAULT_OPERATION_TIMEOUT.as_millis() as i64
            + super::messages::IN_FLIGHT_GRACE)
            / 1000
            + 1,
    );
    assert!(all().await.contains(&after[0]));
}

/// A marker from a queue that was purged (its counter dropped) and posted
/// to again is unknown: the listing starts from the beginning.
#[tokio::test]
async fn markers_of_a_deleted_queue_start_over() {
    let Some(uri) = test_uri() else { return };
    let (opts, _cleaner) = fresh(&uri);
    let backend = store(opts, &ManualClock::new()).backend();
    let s = Scope::new("p", "again");
    backend
        .queues
        .create(&s, &serde_json::Map::new())
        .await
        .unwrap();
    backend
        .messages
        .post(&s, "c", (0..5).map(|n| msg(n, 600)).collect())
        .await
        .unwrap();
    let marker = backend
        .messages
        .list(&s, &everything())
        .await
        .unwrap()
        .next_marker;
    backend.messages.purge(&s).await.unwrap();
    backend.queues.delete(&s).await.unwrap();
    let fresh_ids = backend
        .messages
        .post(&s, "c", vec![msg(9, 600)])
        .await
        .unwrap()
        .ids;
    let query = ListQuery {
        marker,
        ..everything()
    };
    let page = backend.messages.list(&s, &query).await.unwrap();
    assert_eq!(
        page.messages.into_iter().map(|m| m.id).collect::<Vec<_>>(),
        fresh_ids
    );
}

/// The message volume the health document reports: live messages of the
/// whole store, claimed and free.
#[tokio::test]
async fn volume_counts_live_messages() {
    let Some(uri) = test_uri() else { return };
    let (opts, _cleaner) = fresh(&uri);
    let clock = ManualClock::new();
    let backend = store(opts, &clock).backend();
    for (p, n) in [("a", 3), ("b", 4), ("c", 1)] {
        backend
            .messages
            .post(
                &Scope::new(p, "q"),
                "c",
                (0..n).map(|i| msg(i, 60)).collect(),
            )
            .await
            .unwrap();
    }
    backend
        .claims
        .create(&Scope::new("b", "q"), &claim(30, 2))
        .await
        .unwrap()
        .unwrap();
    let v = backend.messages.volume().await.unwrap().unwrap();
    assert_eq!((v.total, v.claimed, v.free), (8, 2, 6));
    clock.advance_secs(31);
    let v = backend.messages.volume().await.unwrap().unwrap();
    assert_eq!((v.total, v.claimed, v.free), (8, 0, 8));
    clock.advance_secs(60);
    let v = backend.messages.volume().await.unwrap().unwrap();
    assert_eq!(v.total, 0);
}

/// The hot queries use the index meant for them (`explain` of the query
/// with the hint the driver gives), never a collection scan. (SecantusDB's
/// planner scans the collection for these queries when not told which index
/// to use, and sorts the index scan's output where MongoDB reads it in
/// order; so the driver names the index, and this test does not look for
/// the absence of a SORT stage.)
#[tokio::test]
async fn hot_queries_use_their_index() {
    let Some(uri) = test_uri() else { return };
    let (opts, _cleaner) = fresh(&uri);
    let clock = ManualClock::new();
    let store = store(opts, &clock);
    let backend = store.backend();
    let s = Scope::new("p", "q");
    backend
        .messages
        .post(&s, "c", (0..20).map(|n| msg(n, 600)).collect())
        .await
        .unwrap();
    let c = backend
        .claims
        .create(&s, &claim(60, 2))
        .await
        .unwrap()
        .unwrap();
    let ready = store.ready().await.unwrap().clone();
    let now = clock.now_ms();
    let claim_id = mongodb::bson::oid::ObjectId::parse_str(&c.id).unwrap();
    let cases: Vec<(Document, Document, &str)> = vec![
        (
            super::messages::claimable(&s, now),
            doc! { "k": 1 },
            "queue_order",
        ),
        (
            doc! { "p": "p", "q": "q", "k": { "$gt": 3i64 }, "e": { "$gt": super::date(now) } },
            doc! { "k": 1 },
            "queue_order",
        ),
        (
            doc! { "c": claim_id, "p": "p", "q": "q", "ce": { "$gt": now } },
            doc! { "k": 1 },
            "by_claim",
        ),
    ];
    for (filter, sort, index) in cases {
        let explained = ready
            .part("p")
            .run_command(doc! {
                "explain": {
                    "find": super::MESSAGES, "filter": filter.clone(), "sort": sort, "hint": index,
                },
                "verbosity": "queryPlanner",
            })
            .await
            .unwrap();
        let plan = explained
            .get_document("queryPlanner")
            .and_then(|q| q.get_document("winningPlan"))
            .map(|p| p.to_string())
            .unwrap_or_default();
        assert!(!plan.contains("COLLSCAN"), "{filter}: {plan}");
        assert!(plan.contains(index), "{filter}: {plan}");
    }
}

/// MongoDB unreachable: every operation answers Unavailable within the
/// time limits (no hang, no panic), and ping says false.
#[tokio::test]
async fn unreachable_mongodb_is_unavailable_quickly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let options = MongoOptions::for_uri(
        &format!("mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=500&connectTimeoutMS=500"),
        "zaqar",
    )
    .unwrap();
    let backend = MongoStore::connect(options, Arc::new(ManualClock::new()))
        .unwrap()
        .backend();
    let started = std::time::Instant::now();
    assert!(!backend.queues.is_alive().await);
    let err = backend
        .messages
        .stats(&Scope::new("p", "q"))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
    let err = backend
        .messages
        .post(&Scope::new("p", "q"), "c", vec![msg(1, 60)])
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

/// The start-up check refuses a standalone server without `unreliable`,
/// and reports an unreachable one without refusing.
#[test]
fn startup_check_refuses_standalone_and_tolerates_absence() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let options = MongoOptions::for_uri(
        &format!("mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=300"),
        "zaqar",
    )
    .unwrap();
    let outcome = MongoStore::check_at_startup(&options);
    assert!(matches!(outcome, Ok(Some(_))), "{outcome:?}");

    let dir = tempfile::tempdir().unwrap();
    let Some(server) = OwnServer::start(dir.path(), &["--standalone"]) else {
        return;
    };
    let options = MongoOptions::for_uri(&server.uri(), "zaqar").unwrap();
    let refused = MongoStore::check_at_startup(&options).unwrap_err();
    assert!(
        refused.contains("standalone") && refused.contains("unreliable = true"),
        "{refused}"
    );
    let mut loose = options.clone();
    loose.unreliable = true;
    assert_eq!(MongoStore::check_at_startup(&loose), Ok(None));
}

/// A standalone server works when `unreliable` allows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_server_works_when_unreliable() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = OwnServer::start(dir.path(), &["--standalone"]) else {
        return;
    };
    let mut options = MongoOptions::for_uri(&server.uri(), "zaqar").unwrap();
    options.unreliable = true;
    let clock = ManualClock::new();
    let backend = store(options, &clock).backend();
    let s = Scope::new("p", "q");
    let posted = backend
        .messages
        .post(&s, "c", (0..3).map(|n| msg(n, 600)).collect())
        .await
        .unwrap()
        .ids;
    assert_eq!(all_ids(&backend, &s).await, posted);
    let c = backend
        .claims
        .create(&s, &claim(60, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.messages.len(), 2);
}

// ------------------------------------------------------ faults, durability

/// A SecantusDB server this test starts (and ends) itself, with its data
/// in a directory of the test's.
struct OwnServer {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
    args: Vec<String>,
}

impl OwnServer {
    /// Starts `$ZAQAR_TEST_SECANTUSD` on a free port, bound to 127.0.0.1.
    /// `None` (after saying so) when the variable is unset.
    fn start(dir: &std::path::Path, args: &[&str]) -> Option<OwnServer> {
        let Ok(binary) = std::env::var("ZAQAR_TEST_SECANTUSD") else {
            unless_required("ZAQAR_TEST_SECANTUSD");
            eprintln!(
                "NOT RUN: ZAQAR_TEST_SECANTUSD is not set (eval \"$(tests/mongodb/start.sh)\")"
            );
            return None;
        };
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
            listener.local_addr().ok()?.port()
        };
        Some(OwnServer::spawn(
            &binary,
            port,
            dir,
            args.iter().map(|a| (*a).to_owned()).collect(),
        ))
    }

    fn spawn(binary: &str, port: u16, dir: &std::path::Path, args: Vec<String>) -> OwnServer {
        let config = dir.join("secantusd.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nhost = \"127.0.0.1\"\nport = {port}\nstorage_path = \"{}\"\n\
                 log_level = \"WARNING\"\n[storage]\ncache_size = \"64M\"\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new(binary)
            .arg("--config")
            .arg(&config)
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start secantusd");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "secantusd on {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        OwnServer {
            child,
            port,
            dir: dir.to_owned(),
            args,
        }
    }

    fn uri(&self) -> String {
        let rs = if self.args.iter().any(|a| a == "--standalone") {
            ""
        } else {
            "&replicaSet=secantus"
        };
        format!(
            "mongodb://127.0.0.1:{}/?serverSelectionTimeoutMS=1000&connectTimeoutMS=1000{rs}",
            self.port
        )
    }

    /// `kill -9`: no shutdown, no checkpoint.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(mut self) -> OwnServer {
        self.kill();
        let binary = std::env::var("ZAQAR_TEST_SECANTUSD").expect("set when started");
        let args = std::mem::take(&mut self.args);
        OwnServer::spawn(&binary, self.port, &self.dir, args)
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// MongoDB goes away: requests answer Unavailable within the time limits
/// (no hang, no panic), ping says false; it comes back on the same
/// address: the same store works again without being rebuilt, and what
/// was acknowledged before is there (write concern majority + journal:
/// SecantusDB fsyncs its journal for `j: true` writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_after_mongodb_restarts_and_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut server) = OwnServer::start(dir.path(), &[]) else {
        return;
    };
    let clock = ManualClock::new();
    let options = MongoOptions::for_uri(&server.uri(), "zaqar").unwrap();
    let backend = store(options, &clock).backend();
    let s = Scope::new("p", "durable");
    let mut posted = Vec::new();
    for round in 0..10 {
        posted.extend(
            backend
                .messages
                .post(&s, "c", (0..5).map(|n| msg(round * 5 + n, 600)).collect())
                .await
                .unwrap()
                .ids,
        );
    }
    let c = backend
        .claims
        .create(&s, &claim(300, 10))
        .await
        .unwrap()
        .unwrap();
    backend
        .messages
        .delete(&s, &posted[0], Some(&c.id))
        .await
        .unwrap();
    assert!(backend.queues.is_alive().await);

    server.kill();
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let err = backend
            .messages
            .post(&s, "c", vec![msg(99, 600)])
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(12),
            "took {:?}",
            started.elapsed()
        );
        assert!(!backend.queues.is_alive().await);
    }

    let _server = server.restart();
    // The driver rediscovers the server by its heartbeat; the first
    // request after the restart may still find it unknown.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !backend.queues.is_alive().await {
        assert!(std::time::Instant::now() < deadline, "never recovered");
    }
    assert_eq!(all_ids(&backend, &s).await, posted[1..]);
    let info = backend.claims.get(&s, &c.id).await.unwrap().unwrap();
    assert_eq!(info.messages.len(), 9);
    let after = backend
        .messages
        .post(&s, "c", vec![msg(100, 600)])
        .await
        .unwrap()
        .ids;
    assert_eq!(
        all_ids(&backend, &s).await,
        [&posted[1..], &after[..]].concat()
    );
}

/// The primary steps down for two seconds while posts and claims run
/// (SecantusDB reproduces a one-node replica set's `replSetStepDown`:
/// writes fail with "not primary" until it is primary again): every
/// operation either succeeds, or fails with Unavailable; every post that
/// succeeded is there afterwards; and the store works again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_step_down_loses_no_acknowledged_post() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = OwnServer::start(dir.path(), &[]) else {
        return;
    };
    let clock = ManualClock::new();
    let options = MongoOptions::for_uri(&server.uri(), "zaqar").unwrap();
    let st = store(options, &clock);
    let backend = st.backend();
    let s = Scope::new("p", "stepdown");
    backend
        .messages
        .post(&s, "c", vec![msg(0, 600)])
        .await
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producers: Vec<_> = (0..4)
        .map(|i| {
            let (backend, s, stop) = (backend.clone(), s.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut acked, mut refused) = (Vec::new(), 0);
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    match backend
                        .messages
                        .post(&s, "c", vec![msg(i * 1000 + n, 600)])
                        .await
                    {
                        Ok(p) => acked.extend(p.ids),
                        Err(StorageError::Unavailable(_)) => refused += 1,
                        Err(e) => panic!("unexpected error {e:?}"),
                    }
                    match backend.claims.create(&s, &claim(60, 1)).await {
                        Ok(_) | Err(StorageError::Unavailable(_)) => {}
                        Err(e) => panic!("unexpected error {e:?}"),
                    }
                }
                (acked, refused)
            })
        })
        .collect();
    let ready = st.ready().await.unwrap().clone();
    ready
        .client
        .database("admin")
        .run_command(doc! { "replSetStepDown": 2, "force": true })
        .await
        .expect("step down");
    // Until the store writes again by itself (the driver finds the primary
    // back), then stop the producers.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while backend
        .messages
        .post(&s, "c", vec![msg(-1, 600)])
        .await
        .is_err()
    {
        assert!(std::time::Instant::now() < deadline, "never writable again");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut acked, mut refused) = (Vec::new(), 0);
    for p in producers {
        let (a, r) = p.await.unwrap();
        acked.extend(a);
        refused += r;
    }
    eprintln!(
        "{} posts acknowledged, {refused} refused during the step-down",
        acked.len()
    );
    assert!(refused > 0, "the step-down refused no post: did it happen?");
    let missing: Vec<String> = {
        let found = backend.messages.bulk_get(&s, &acked).await.unwrap();
        let found: std::collections::HashSet<_> = found.into_iter().map(|m| m.id).collect();
        acked
            .iter()
            .filter(|id| !found.contains(*id))
            .cloned()
            .collect()
    };
    // Claimed messages are still there (claims do not delete).
    assert!(missing.is_empty(), "acknowledged posts lost: {missing:?}");
    drop(server);
}

/// A load loop (not a test: `cargo test -p zaqar --release
/// storage::mongodb::tests::load_loop -- --ignored --nocapture`): 16
/// concurrent clients on one queue; messages/s for post batches of 1 and
/// 10, and claim(10)+delete cycles per second. (On SecantusDB's Python
/// server a write takes ~25 ms and a query of a queue reads the whole
/// queue, so these numbers measure it, not the driver; the claims of the
/// last part may run into the operation time limit on its long queue.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn load_loop() {
    let Some(uri) = test_uri() else { return };
    let (opts, _cleaner) = fresh(&uri);
    let backend = MongoStore::connect(opts, Arc::new(crate::storage::SystemClock))
        .unwrap()
        .backend();
    let scope = Scope::new("bench", "q");
    const TASKS: usize = 16;
    for batch in [1usize, 10] {
        let rounds = 1000 / batch / TASKS;
        let started = std::time::Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (backend, scope) = (backend.clone(), scope.clone());
                tokio::spawn(async move {
                    for _ in 0..rounds {
                        backend
                            .messages
                            .post(
                                &scope,
                                "c",
                                (0..batch as i64).map(|n| msg(n, 600)).collect(),
                            )
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let n = rounds * batch * TASKS;
        println!(
            "post batch {batch}: {:.0} messages/s",
            n as f64 / started.elapsed().as_secs_f64()
        );
    }
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (backend, scope) = (backend.clone(), scope.clone());
            tokio::spawn(async move {
                let mut cycles = 0;
                while let Some(c) = backend.claims.create(&scope, &claim(60, 10)).await.unwrap() {
                    let ids: Vec<String> = c.messages.iter().map(|m| m.id.clone()).collect();
                    backend
                        .messages
                        .bulk_delete(&scope, &ids, Some(std::slice::from_ref(&c.id)))
                        .await
                        .unwrap();
                    cycles += 1;
                }
                cycles
            })
        })
        .collect();
    let mut cycles = 0;
    for t in tasks {
        cycles += t.await.unwrap();
    }
    println!(
        "claim+delete: {:.0} cycles/s",
        cycles as f64 / started.elapsed().as_secs_f64()
    );
}
