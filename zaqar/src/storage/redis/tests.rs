//! The conformance suite and the driver's own tests against real Redis.
//!
//! Each topology is read from an environment variable (set by
//! `eval "$(tests/redis/start.sh all)"`): `ZAQAR_TEST_REDIS_URL` (one
//! server), `ZAQAR_TEST_REDIS_CLUSTER_URL` (three-master Cluster),
//! `ZAQAR_TEST_REDIS_SENTINEL_URL` (Sentinel). A test whose variable is
//! unset prints why and passes. Every store gets a key prefix of its own,
//! so tests run in parallel on one Redis without seeing each other.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{RedisOptions, RedisStore};
use crate::storage::clock::{Clock, ManualClock};
use crate::storage::conformance::Keep;
use crate::storage::outbox::{NewDelivery, Outbox};
use crate::storage::pipeline::Backend;
use crate::storage::{ClaimRequest, DeadLetter, ListQuery, NewMessage, Scope, StorageError};

/// The URL in `var`, or `None` after printing a skip notice.
fn test_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            // run_tests.sh starts Redis and says so: then a missing URL is
            // a failure, never a silent pass.
            let required = std::env::var("ZAQAR_TEST_REQUIRE").unwrap_or_default();
            assert!(
                !required.split(',').any(|r| r == "redis"),
                "Redis is required (ZAQAR_TEST_REQUIRE) but {var} is not set"
            );
            eprintln!("skipped: {var} is not set (eval \"$(tests/redis/start.sh all)\" to run Redis tests)");
            None
        }
    }
}

fn options(url: &str) -> RedisOptions {
    let mut options = RedisOptions::from_uri(url).expect("test URL parses");
    options.key_prefix = format!("zqt-{}", uuid::Uuid::new_v4().simple());
    options
}

fn open(url: &str, clock: ManualClock) -> Backend {
    backend_with_prefix(url, clock).0
}

/// A backend on a key prefix of its own at `url`, and that prefix (for
/// looking under the driver).
fn backend_with_prefix(url: &str, clock: ManualClock) -> (Backend, String) {
    let opts = options(url);
    let prefix = opts.key_prefix.clone();
    let backend = RedisStore::connect(opts, Arc::new(clock))
        .expect("store")
        .backend();
    (backend, prefix)
}

/// A fresh backend on the topology in `var`, or `None` (the test skips).
fn fixture(var: &str, clock: ManualClock) -> Option<(Backend, Keep)> {
    let url = test_url(var)?;
    Some((open(&url, clock), Box::new(())))
}

/// Instantiates the shared suites for one topology: every behaviour of
/// `conformance.rs` and `subscription_conformance.rs` (their own macros
/// list them, so a new behaviour runs here without being named), plus the
/// outbox tests of this file.
macro_rules! topology {
    ($var:literal) => {
        use super::*;

        async fn open(clock: ManualClock) -> Option<(Backend, Keep)> {
            fixture($var, clock)
        }

        crate::storage::conformance::conformance_tests!(open);
        crate::storage::subscription_conformance::subscription_conformance_tests!(open);

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn outbox_lease_retry_complete() {
            if let Some(url) = test_url($var) {
                outbox_behaviour(&url, ManualClock::new()).await;
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn outbox_takes_thousands_at_once() {
            if let Some(url) = test_url($var) {
                outbox_thousands(&url).await;
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn scripts_refuse_bad_numbers_before_writing() {
            if let Some(url) = test_url($var) {
                bad_numbers_change_nothing(&url).await;
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn expired_messages_are_collected_a_budget_at_a_time() {
            if let Some(url) = test_url($var) {
                message_collection_is_bounded(&url).await;
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_post_on_one_process_wakes_waiters_of_another() {
            if let Some(url) = test_url($var) {
                wake_across_processes(&url).await;
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_post_wakes_waiters_of_another_process_by_itself() {
            if let Some(url) = test_url($var) {
                post_wakes_across_processes(&url).await;
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn expired_claims_are_released_a_budget_at_a_time() {
            if let Some(url) = test_url($var) {
                claim_release_is_bounded(&url).await;
            }
        }
    };
}

/// One Redis server.
mod standalone {
    topology!("ZAQAR_TEST_REDIS_URL");
}

/// One Redis server, every script run as `EVALSHA` with its helpers
/// prepended (`lua_functions = false`, and what a Redis before 7 gets):
/// the shared suites again, since the scripts' code differs by its prelude.
mod standalone_evalsha {
    use super::*;

    async fn open(clock: ManualClock) -> Option<(Backend, Keep)> {
        let url = test_url("ZAQAR_TEST_REDIS_URL")?;
        let mut opts = options(&url);
        opts.lua_functions = false;
        let store = RedisStore::connect(opts, Arc::new(clock)).expect("store");
        assert!(!store.inner.scripts.library.uses_functions());
        Some((store.backend(), Box::new(())))
    }

    crate::storage::conformance::conformance_tests!(open);
    crate::storage::subscription_conformance::subscription_conformance_tests!(open);
}

/// A three-master Redis Cluster.
mod cluster {
    topology!("ZAQAR_TEST_REDIS_CLUSTER_URL");
}

/// A Sentinel-watched master with a replica.
mod sentinel {
    topology!("ZAQAR_TEST_REDIS_SENTINEL_URL");
}

// ------------------------------------------------------------ long polling

/// Two stores on one deployment (one key prefix), as two server processes:
/// a publish on one reaches the waiters of the other without waiting for
/// their poll, on every topology (Sentinel: through the master; Cluster:
/// through any node), while a wait for the queue is announced; a queue
/// nobody announced a wait for gets no publish.
async fn wake_across_processes(url: &str) {
    use crate::storage::wake::{Waiters, WakeBus};

    let opts = options(url);
    let clock = Arc::new(ManualClock::new());
    let listener = RedisStore::connect(opts.clone(), clock.clone()).unwrap();
    let poster = RedisStore::connect(opts, clock).unwrap();
    let waiters = Arc::new(Waiters::default());
    let scope = Scope::new("p", "long-poll");
    let mut woken = waiters.watch(&scope);
    listener.expect(&scope, Duration::from_secs(30)).await;
    let listening = {
        let (waiters, listener) = (waiters.clone(), listener.clone());
        tokio::spawn(async move { listener.listen(waiters).await })
    };
    // The subscription is made in the background: publish until it is heard.
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            poster.publish(&scope).await;
            if tokio::time::timeout(Duration::from_millis(200), woken.changed())
                .await
                .is_ok()
            {
                return;
            }
        }
    })
    .await;
    assert!(heard.is_ok(), "no wake-up reached the other process");
    // Once subscribed, each publish is a wake-up (nothing else wakes these
    // waiters: no poll runs in this test).
    poster.publish(&scope).await;
    tokio::time::timeout(Duration::from_secs(5), woken.changed())
        .await
        .expect("woken by the publish")
        .unwrap();
    // A queue nobody waits for: nothing is published (the subscription is
    // up, so a publish would arrive within milliseconds), until a wait is
    // announced.
    let idle = Scope::new("p", "long-poll-idle");
    let mut idle_woken = waiters.watch(&idle);
    poster.publish(&idle).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), idle_woken.changed())
            .await
            .is_err(),
        "a wake-up was published for a queue no request waits for"
    );
    listener.expect(&idle, Duration::from_secs(30)).await;
    poster.publish(&idle).await;
    tokio::time::timeout(Duration::from_secs(5), idle_woken.changed())
        .await
        .expect("woken once a wait was announced")
        .unwrap();
    waiters.close();
    listening.await.unwrap();
}

/// A post publishes its own wake-up (from its script: `Posted::woke_others`),
/// so the waiters of another process on the store wake with no separate
/// publish, on every topology; only while a wait for the queue is announced,
/// and never after the announced wait ran out.
async fn post_wakes_across_processes(url: &str) {
    use crate::storage::wake::{Waiters, WakeBus};
    use crate::storage::MessageStore;

    let opts = options(url);
    let clock = Arc::new(ManualClock::new());
    let listener = RedisStore::connect(opts.clone(), clock.clone()).unwrap();
    let poster = RedisStore::connect(opts, clock).unwrap();
    let waiters = Arc::new(Waiters::default());
    let scope = Scope::new("p", "long-poll-post");
    let mut woken = waiters.watch(&scope);
    listener.expect(&scope, Duration::from_secs(30)).await;
    let listening = {
        let (waiters, listener) = (waiters.clone(), listener.clone());
        tokio::spawn(async move { listener.listen(waiters).await })
    };
    // The subscription is made in the background: post until one is heard.
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let posted = poster.post(&scope, "c", vec![msg(1, 60)]).await.unwrap();
            assert!(posted.woke_others);
            if tokio::time::timeout(Duration::from_millis(200), woken.changed())
                .await
                .is_ok()
            {
                return;
            }
        }
    })
    .await;
    assert!(heard.is_ok(), "no post woke the other process");
    poster.post(&scope, "c", vec![msg(2, 60)]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), woken.changed())
        .await
        .expect("woken by the post")
        .unwrap();
    // A wait announced for 300 ms: a post within it wakes, one after it
    // publishes nothing (the subscription is up: a publish would arrive
    // within milliseconds).
    let brief = Scope::new("p", "long-poll-brief");
    let mut brief_woken = waiters.watch(&brief);
    listener.expect(&brief, Duration::from_millis(300)).await;
    poster.post(&brief, "c", vec![msg(3, 60)]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), brief_woken.changed())
        .await
        .expect("woken by a post within the announced wait")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    poster.post(&brief, "c", vec![msg(4, 60)]).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), brief_woken.changed())
            .await
            .is_err(),
        "a post published a wake-up after the announced wait ran out"
    );
    waiters.close();
    listening.await.unwrap();
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
/// removes, and a second store on the same prefix (a restarted server)
/// sees exactly what is pending.
async fn outbox_behaviour(url: &str, clock: ManualClock) {
    let opts = options(url);
    let store = RedisStore::connect(opts.clone(), Arc::new(clock.clone())).unwrap();
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

    // Delivered; failed once (due in 5 s); the rest left leased.
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
    // A completed delivery is not brought back by a late retry.
    store
        .retry_at(&again[0].id, 2, clock.now_ms())
        .await
        .unwrap();

    // "Restart": a new store on the same keys finds the leased rows once
    // their lease ran out, and nothing else.
    drop(store);
    let store = RedisStore::connect(opts, Arc::new(clock.clone())).unwrap();
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
}

// ------------------------------------------------ driver-specific behaviour

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

/// A claim of up to `limit` messages for 60 s, with 60 s of grace and no
/// dead-letter policy.
fn claim_request(limit: usize) -> ClaimRequest {
    ClaimRequest {
        ttl: 60,
        grace: 60,
        limit,
        dead_letter: None,
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

/// Bodies come back byte for byte (no re-encoding by Lua's cjson), and one
/// post of many messages is one script call.
/// Deliveries queued by a version without per-project sets (one sorted
/// set `<O>:due`, hashes without a project) are still leased, retried and
/// completed after an upgrade, taking turns with the new ones; nothing is
/// migrated, they drain.
#[tokio::test]
async fn outbox_rows_of_the_previous_layout_drain() {
    let Some(url) = test_url("ZAQAR_TEST_REDIS_URL") else {
        return;
    };
    let clock = ManualClock::new();
    let opts = options(&url);
    let o = super::keys::outbox_prefix(&opts.key_prefix);
    let store = RedisStore::connect(opts, Arc::new(clock.clone())).unwrap();
    // What the previous outbox.lua wrote for two enqueued deliveries.
    let client = ::redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for n in [1u32, 2] {
        let id = format!("{n:020}");
        let json = super::subscriptions::delivery_json(&delivery(n)).unwrap();
        let _: () = ::redis::cmd("HSET")
            .arg(format!("{o}:d:{id}"))
            .arg("j")
            .arg(json)
            .arg("a")
            .arg("0")
            .arg("cr")
            .arg(clock.now_ms())
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: () = ::redis::cmd("ZADD")
            .arg(format!("{o}:due"))
            .arg(clock.now_ms())
            .arg(&id)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let _: () = ::redis::cmd("SET")
        .arg(format!("{o}:seq"))
        .arg(2)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(store.next_due_ms().await.unwrap(), Some(clock.now_ms()));
    clock.advance_secs(1);
    store.enqueue(vec![delivery(3)]).await.unwrap();

    // The old rows are one more group, with the new project's in turns.
    let leased = store.lease_due(10, 30_000).await.unwrap();
    let got: Vec<_> = leased.iter().map(|d| d.delivery.clone()).collect();
    assert_eq!(got, vec![delivery(1), delivery(3), delivery(2)]);
    assert_eq!(leased[2].id, format!("{:020}", 2));
    store.complete(&leased[0].id).await.unwrap();
    store.complete(&leased[1].id).await.unwrap();
    let due = clock.now_ms() + 5_000;
    store.retry_at(&leased[2].id, 1, due).await.unwrap();
    assert_eq!(store.next_due_ms().await.unwrap(), Some(due));
    clock.advance_secs(5);
    let again = store.lease_due(10, 30_000).await.unwrap();
    assert_eq!((again.len(), again[0].attempts), (1, 1));
    assert_eq!(again[0].delivery, delivery(2));
    store.complete(&again[0].id).await.unwrap();
    assert_eq!(store.next_due_ms().await.unwrap(), None);
    let left: i64 = ::redis::cmd("EXISTS")
        .arg(format!("{o}:due"))
        .arg(format!("{o}:ready"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

/// A connection of its own to the Redis at `url`, for looking under the
/// driver.
async fn raw_connection(url: &str) -> ::redis::aio::MultiplexedConnection {
    ::redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The keys matching `pattern`.
async fn keys_like(conn: &mut ::redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    ::redis::cmd("KEYS")
        .arg(pattern)
        .query_async(conn)
        .await
        .unwrap()
}

/// Deletes the one key matching `pattern` (there must be exactly one, as
/// an earlier release would not have written it) and returns its name.
async fn delete_the_key(conn: &mut ::redis::aio::MultiplexedConnection, pattern: &str) -> String {
    let keys = keys_like(conn, pattern).await;
    assert_eq!(keys.len(), 1, "{pattern}: {keys:?}");
    let _: () = ::redis::cmd("DEL")
        .arg(&keys[0])
        .query_async(conn)
        .await
        .unwrap();
    keys[0].clone()
}

/// Subscriptions written before the index of unconfirmed ones existed are
/// missing from it: a post then counts them as confirmed (the workers look
/// and skip them, as before), never the reverse, so nobody confirmed is
/// ever left out. Unconfirming one puts it in the index.
#[tokio::test]
async fn subscriptions_of_the_previous_layout_count_as_confirmed() {
    use crate::storage::Subscribed;
    let Some(url) = test_url("ZAQAR_TEST_REDIS_URL") else {
        return;
    };
    let (backend, prefix) = backend_with_prefix(&url, ManualClock::new());
    let scope = Scope::new("p", "older");
    let post = || async {
        backend
            .messages
            .post(&scope, "c", vec![msg(1, 600)])
            .await
            .unwrap()
            .subscribed
    };
    let new = crate::storage::NewSubscription {
        subscriber: "http://older.example/".into(),
        ttl: 600,
        options: Default::default(),
    };
    let id = backend
        .subscriptions
        .create(&scope, &new)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(post().await, Some(Subscribed::Unconfirmed));

    // What the previous subscription.lua left: no index of unconfirmed ones.
    let mut conn = raw_connection(&url).await;
    let pending = delete_the_key(&mut conn, &format!("{prefix}:*:subpend")).await;
    assert_eq!(post().await, Some(Subscribed::Confirmed));

    backend
        .subscriptions
        .confirm(&scope, &id, false)
        .await
        .unwrap();
    assert_eq!(post().await, Some(Subscribed::Unconfirmed));
    let pttl: i64 = ::redis::cmd("PTTL")
        .arg(&pending)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        pttl > 600_000,
        "the index outlives its subscription: {pttl}"
    );
}

/// Subscriptions written before the index of confirmed ones existed (or
/// before either index) are sorted into the indexes by the fan-out's first
/// `list_confirmed`, by their record's flag; a queue with more than the
/// script sorts in one call is filtered in full instead, and still lists
/// exactly the confirmed ones.
#[tokio::test]
async fn earlier_subscriptions_are_sorted_for_the_fanout() {
    let Some(url) = test_url("ZAQAR_TEST_REDIS_URL") else {
        return;
    };
    let (backend, prefix) = backend_with_prefix(&url, ManualClock::new());
    let mut conn = raw_connection(&url).await;
    // A queue with few enough to sort in one call, and one with one more.
    for (queue, n, sorted) in [("fewer", 4, true), ("many", 2001, false)] {
        let scope = Scope::new("p", queue);
        let mut ids = Vec::new();
        for i in 0..n {
            let new = crate::storage::NewSubscription {
                subscriber: format!("http://s{i}.example/"),
                ttl: 600,
                options: Default::default(),
            };
            let id = backend.subscriptions.create(&scope, &new).await.unwrap();
            ids.push(id.unwrap());
        }
        let picked = [ids[1 % n].clone(), ids[n - 1].clone()];
        for id in &picked {
            backend
                .subscriptions
                .confirm(&scope, id, true)
                .await
                .unwrap();
        }
        // What subscription.lua before either index left: neither key.
        for index in ["subok", "subpend"] {
            delete_the_key(&mut conn, &format!("{prefix}:*{queue}*:{index}")).await;
        }
        let confirmed: Vec<String> = backend
            .subscriptions
            .list_confirmed(&scope, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(confirmed, picked);
        let mut sizes = Vec::new();
        for index in ["subok", "subpend"] {
            let mut n = 0;
            for key in keys_like(&mut conn, &format!("{prefix}:*{queue}*:{index}")).await {
                let c: i64 = ::redis::cmd("ZCARD")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                n += c;
            }
            sizes.push(n);
        }
        if sorted {
            assert_eq!(sizes, [2, 2]);
        } else {
            assert_eq!(sizes[0], 0, "left unsorted, filtered instead");
        }
    }
}

/// Two stores ("servers") on one key prefix at `url`, and that prefix.
fn two_servers(url: &str) -> (RedisStore, RedisStore, String) {
    let opts = options(url);
    let prefix = opts.key_prefix.clone();
    let clock = Arc::new(ManualClock::new());
    let a = RedisStore::connect(opts.clone(), clock.clone()).unwrap();
    let b = RedisStore::connect(opts, clock).unwrap();
    (a, b, prefix)
}

/// Queue metadata with `_default_message_ttl` set to `ttl`.
fn ttl_metadata(ttl: i64) -> crate::storage::Metadata {
    let mut m = crate::storage::Metadata::new();
    m.insert("_default_message_ttl".into(), json!(ttl));
    m
}

/// Two servers on one Redis: what one keeps in memory of a queue's
/// metadata for its posts is refused by the post script as soon as the
/// other changes the metadata or deletes the queue, and a queue without a
/// stamp (written before stamps existed) is never kept.
#[tokio::test]
async fn posts_check_the_metadata_they_were_validated_against() {
    use crate::storage::QueueStore;
    let Some(url) = test_url("ZAQAR_TEST_REDIS_URL") else {
        return;
    };
    let (a, b, prefix) = two_servers(&url);
    let scope = Scope::new("p", "stamped");
    let meta = ttl_metadata;
    let post = || async {
        a.backend()
            .messages
            .post(&scope, "c", vec![msg(1, 600)])
            .await
    };

    assert!(b.create(&scope, &meta(100)).await.unwrap());
    assert_eq!(
        a.get_for_write(&scope, false).await.unwrap(),
        Some(meta(100))
    );
    post().await.unwrap();

    b.set_metadata(&scope, &meta(200)).await.unwrap();
    // A still answers from memory...
    assert_eq!(
        a.get_for_write(&scope, false).await.unwrap(),
        Some(meta(100))
    );
    // ...and its post script refuses, having written nothing.
    let depth = || async { a.backend().messages.stats(&scope).await.unwrap().total };
    let before = depth().await;
    assert!(matches!(post().await, Err(StorageError::MetadataChanged)));
    assert_eq!(depth().await, before);
    assert_eq!(
        a.get_for_write(&scope, false).await.unwrap(),
        Some(meta(200))
    );
    post().await.unwrap();

    // A's own change is seen at once.
    a.set_metadata(&scope, &meta(300)).await.unwrap();
    assert_eq!(
        a.get_for_write(&scope, false).await.unwrap(),
        Some(meta(300))
    );
    post().await.unwrap();

    // Asked for fresh metadata (a post that failed validation), A reads it.
    b.set_metadata(&scope, &meta(350)).await.unwrap();
    assert_eq!(
        a.get_for_write(&scope, false).await.unwrap(),
        Some(meta(300))
    );
    assert_eq!(
        a.get_for_write(&scope, true).await.unwrap(),
        Some(meta(350))
    );
    post().await.unwrap();

    QueueStore::delete(&b, &scope).await.unwrap();
    assert!(matches!(post().await, Err(StorageError::MetadataChanged)));
    assert_eq!(a.get_for_write(&scope, false).await.unwrap(), None);

    // A queue of before the stamps: read from Redis for every post.
    assert!(b.create(&scope, &meta(400)).await.unwrap());
    let mut conn = raw_connection(&url).await;
    delete_the_key(&mut conn, &format!("{prefix}:*stamped*:mv")).await;
    assert_eq!(
        a.get_for_write(&scope, false).await.unwrap(),
        Some(meta(400))
    );
    post().await.unwrap();
    let _: () = ::redis::cmd("HSET")
        .arg(format!("{prefix}:p{{1:p}}:meta"))
        .arg("stamped")
        .arg(r#"{"_default_message_ttl":500}"#)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        a.get_for_write(&scope, false).await.unwrap(),
        Some(meta(500))
    );
}

/// A listing takes the delay policy from the metadata a validated attempt
/// was handed; the list script refuses, having read nothing, when that
/// metadata changed since through another server, and a listing outside a
/// validated attempt (health, fan-out) is never checked.
#[tokio::test]
async fn listings_check_the_metadata_they_took_the_delay_policy_from() {
    use crate::storage::{validated, QueueStore};
    let Some(url) = test_url("ZAQAR_TEST_REDIS_URL") else {
        return;
    };
    let (a, b, _) = two_servers(&url);
    let scope = Scope::new("p", "listed");
    let meta = ttl_metadata;
    let list = || async { a.backend().messages.list(&scope, &everything()).await };
    assert!(b.create(&scope, &meta(100)).await.unwrap());
    b.backend()
        .messages
        .post(&scope, "c", vec![msg(1, 600)])
        .await
        .unwrap();

    validated::scope(async {
        assert_eq!(
            a.get_for_write(&scope, false).await.unwrap(),
            Some(meta(100))
        );
        assert_eq!(list().await.unwrap().messages.len(), 1);
        b.set_metadata(&scope, &meta(200)).await.unwrap();
        assert!(matches!(list().await, Err(StorageError::MetadataChanged)));
    })
    .await;
    // Outside a validated attempt: unchecked.
    assert_eq!(list().await.unwrap().messages.len(), 1);
    // Read afresh, the next attempt lists.
    validated::scope(async {
        assert_eq!(
            a.get_for_write(&scope, false).await.unwrap(),
            Some(meta(200))
        );
        assert_eq!(list().await.unwrap().messages.len(), 1);
        QueueStore::delete(&b, &scope).await.unwrap();
        assert!(matches!(list().await, Err(StorageError::MetadataChanged)));
    })
    .await;
}

/// Two requests on one server race a metadata change made through another
/// server: the second is refused, reads the new metadata and keeps it; the
/// first, which validated against the old metadata, must still be refused,
/// its post and its claim alike (each request checks the stamp it was
/// handed, not the one kept when its write runs).
#[tokio::test]
async fn a_write_checks_the_metadata_its_own_request_validated_against() {
    use crate::storage::{validated, QueueStore};
    let Some(url) = test_url("ZAQAR_TEST_REDIS_URL") else {
        return;
    };
    let (a, b, _) = two_servers(&url);
    let scope = Scope::new("p", "raced");
    let meta = ttl_metadata;
    let post = || async {
        a.backend()
            .messages
            .post(&scope, "c", vec![msg(1, 600)])
            .await
    };
    let claim = || async { a.backend().claims.create(&scope, &claim_request(1)).await };
    assert!(b.create(&scope, &meta(100)).await.unwrap());
    assert_eq!(
        a.get_for_write(&scope, true).await.unwrap(),
        Some(meta(100))
    );

    validated::scope(async {
        // The first request validates against what A keeps...
        assert_eq!(
            a.get_for_write(&scope, false).await.unwrap(),
            Some(meta(100))
        );
        // ...the metadata changes through B...
        b.set_metadata(&scope, &meta(200)).await.unwrap();
        // ...and a second request on A is refused, reads it again, posts.
        validated::scope(async {
            assert_eq!(
                a.get_for_write(&scope, false).await.unwrap(),
                Some(meta(100))
            );
            assert!(matches!(post().await, Err(StorageError::MetadataChanged)));
            assert_eq!(
                a.get_for_write(&scope, true).await.unwrap(),
                Some(meta(200))
            );
            post().await.unwrap();
        })
        .await;
        // The first request's writes are refused all the same.
        let depth = || async { a.backend().messages.stats(&scope).await.unwrap().total };
        let before = depth().await;
        assert!(matches!(post().await, Err(StorageError::MetadataChanged)));
        assert!(matches!(claim().await, Err(StorageError::MetadataChanged)));
        assert_eq!(depth().await, before);
    })
    .await;

    // A request that validates against the new metadata writes.
    validated::scope(async {
        assert_eq!(
            a.get_for_write(&scope, false).await.unwrap(),
            Some(meta(200))
        );
        post().await.unwrap();
        assert!(claim().await.unwrap().is_some());
    })
    .await;
}

#[tokio::test]
async fn bodies_are_stored_verbatim() {
    let Some(url) = test_url("ZAQAR_TEST_REDIS_URL") else {
        return;
    };
    let backend = open(&url, ManualClock::new());
    let scope = Scope::new("p", "q");
    let ids = backend
        .messages
        .post(&scope, "c", (0..50).map(|n| msg(n, 60)).collect())
        .await
        .unwrap()
        .ids;
    assert_eq!(ids.len(), 50);
    let got = backend
        .messages
        .get(&scope, &ids[7])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.body.get(),
        r#"{"n":7,"big":12345678901234567890,"f":0.1}"#
    );
}

/// Project `p.sub` + queue `zq` and project `p` + queue `sub.zq` are two queues.
#[tokio::test]
async fn dotted_names_are_distinct_queues() {
    let Some(url) = test_url("ZAQAR_TEST_REDIS_URL") else {
        return;
    };
    let backend = open(&url, ManualClock::new());
    let a = Scope::new("p.sub", "zq");
    let b = Scope::new("p", "sub.zq");
    let ids = backend
        .messages
        .post(&a, "c", vec![msg(1, 60)])
        .await
        .unwrap()
        .ids;
    assert!(backend.messages.get(&b, &ids[0]).await.unwrap().is_none());
    assert_eq!(backend.messages.stats(&b).await.unwrap().total, 0);
    backend
        .queues
        .create(&a, &Default::default())
        .await
        .unwrap();
    assert!(backend.queues.get(&b).await.unwrap().is_none());
    assert_eq!(backend.queues.count("p").await.unwrap(), 0);
}

/// A dead letter that left its queue but never reached the DLQ (the server
/// died between the steps) is handed over by a later claim once its lease
/// runs out: not lost, not duplicated.
#[tokio::test]
async fn interrupted_dead_letter_move_is_finished_later() {
    let Some(url) = test_url("ZAQAR_TEST_REDIS_URL") else {
        return;
    };
    let clock = ManualClock::new();
    let store = RedisStore::connect(options(&url), Arc::new(clock.clone())).unwrap();
    let backend = store.backend();
    let src = Scope::new("p", "src");
    let dlq = Scope::new("p", "dlq");
    let ids = backend
        .messages
        .post(&src, "c", vec![msg(1, 3600)])
        .await
        .unwrap()
        .ids;
    let request = ClaimRequest {
        ttl: 60,
        grace: 60,
        limit: 10,
        dead_letter: Some(DeadLetter {
            max_claim_count: 1,
            queue: "dlq".into(),
            ttl: None,
        }),
    };
    let claim = backend
        .claims
        .create(&src, &request)
        .await
        .unwrap()
        .unwrap();
    backend.claims.delete(&src, &claim.id).await.unwrap();
    // Simulate a server dying after the claim script: run only step one.
    let now = clock.now_ms();
    let times = crate::storage::deadline::ClaimTimes::new(now, 60, 60).unwrap();
    let mut args = vec!["x".to_owned()];
    args.extend(super::claim_time_args(&times));
    args.extend([
        "10".to_owned(),
        "1".to_owned(),
        super::DLQ_LEASE_MS.to_string(),
        String::new(),
    ]);
    let (rows, dead, stale): (Vec<super::MessageRow>, Vec<String>, String) = store
        .eval_queue_at(
            "claim create",
            false,
            &store.inner.scripts.claim_create,
            &src,
            now,
            args,
        )
        .await
        .unwrap();
    assert!(rows.is_empty() && stale.is_empty());
    assert_eq!(dead.len(), 1);
    assert_eq!(backend.messages.stats(&src).await.unwrap().total, 0);
    assert_eq!(backend.messages.stats(&dlq).await.unwrap().total, 0);
    // Within the lease nobody else hands it over.
    assert!(backend
        .claims
        .create(&src, &request)
        .await
        .unwrap()
        .is_none());
    assert_eq!(backend.messages.stats(&dlq).await.unwrap().total, 0);
    clock.advance_secs(31);
    assert!(backend
        .claims
        .create(&src, &request)
        .await
        .unwrap()
        .is_none());
    let moved = backend
        .messages
        .list(&dlq, &everything())
        .await
        .unwrap()
        .messages;
    assert_eq!(moved.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), ids);
    assert!(moved[0].claim_id.is_none());
    clock.advance_secs(31);
    assert!(backend
        .claims
        .create(&src, &request)
        .await
        .unwrap()
        .is_none());
    assert_eq!(backend.messages.stats(&dlq).await.unwrap().total, 1);
}

/// Redis unreachable: every operation fails with Unavailable within the
/// configured time, and ping says false; nothing hangs or panics.
#[tokio::test]
async fn unreachable_redis_is_unavailable_quickly() {
    // A loopback port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut options = RedisOptions::from_uri(&format!("redis://127.0.0.1:{port}")).unwrap();
    options.request_timeout = Duration::from_millis(800);
    options.reconnect_sleep = Duration::from_millis(100);
    let backend = RedisStore::connect(options, Arc::new(ManualClock::new()))
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
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

// ------------------------------------------------------ faults, durability

/// A redis-server this test process starts (and ends) itself.
struct OwnRedis {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl OwnRedis {
    /// Starts redis-server on `port` (0 = a free one) with data in `dir`,
    /// AOF with `appendfsync always`. `None` when redis-server is missing.
    fn start(port: u16, dir: &std::path::Path) -> Option<OwnRedis> {
        OwnRedis::start_with(port, dir, &[])
    }

    /// [`OwnRedis::start`] with more `redis-server` arguments.
    fn start_with(port: u16, dir: &std::path::Path, extra: &[&str]) -> Option<OwnRedis> {
        let port = if port == 0 {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
            listener.local_addr().ok()?.port()
        } else {
            port
        };
        let child = std::process::Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(dir)
            .args(extra)
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let redis = OwnRedis {
            child,
            port,
            dir: dir.to_owned(),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server on {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `kill -9`: no shutdown, no final fsync.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(mut self) -> OwnRedis {
        self.kill();
        OwnRedis::start(self.port, &self.dir).expect("restart redis-server")
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn own_redis(dir: &std::path::Path) -> Option<OwnRedis> {
    // Only where Redis tests are wanted (the same switch as the suite).
    test_url("ZAQAR_TEST_REDIS_URL")?;
    let redis = OwnRedis::start(0, dir);
    if redis.is_none() {
        eprintln!("skipped: redis-server not found");
    }
    redis
}

/// The names of the function libraries `url`'s Redis holds.
async fn function_libraries(url: &str) -> Vec<String> {
    let client = ::redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let list: Vec<std::collections::HashMap<String, ::redis::Value>> = ::redis::cmd("FUNCTION")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    list.iter()
        .filter_map(|lib| match lib.get("library_name") {
            Some(::redis::Value::BulkString(name)) => Some(String::from_utf8_lossy(name).into()),
            _ => None,
        })
        .collect()
}

/// A post, a claim of two, a deletion under the claim and the stats on
/// `queue` (new), checked: the scripts work, however they are run.
async fn post_claim_delete(store: &RedisStore, queue: &str) {
    let backend = store.clone().backend();
    let scope = Scope::new("p", queue);
    let posted = backend
        .messages
        .post(&scope, "c", (0..3).map(|i| msg(i, 60)).collect())
        .await
        .unwrap();
    assert_eq!(posted.ids.len(), 3);
    let claim = backend
        .claims
        .create(&scope, &claim_request(2))
        .await
        .unwrap()
        .expect("a claim");
    assert_eq!(claim.messages.len(), 2);
    assert_eq!(claim.messages[0].id, posted.ids[0]);
    backend
        .messages
        .delete(&scope, &claim.messages[0].id, Some(&claim.id))
        .await
        .unwrap();
    let stats = backend.messages.stats(&scope).await.unwrap();
    assert_eq!((stats.total, stats.claimed, stats.free), (2, 1, 1));
}

/// A Redis that lost the function library (a restart without persistence;
/// here `FUNCTION FLUSH`) gets it again from the next call, which then
/// succeeds; servers of another version keep their own library.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_library_is_loaded_again_when_redis_lost_it() {
    let dir = tempfile::tempdir().unwrap();
    let Some(redis) = own_redis(dir.path()) else {
        return;
    };
    let url = redis.url();
    let store = RedisStore::connect(options(&url), Arc::new(ManualClock::new())).unwrap();
    let library = store.inner.scripts.library.name().to_owned();
    assert!(library.starts_with("zaqar_"), "{library}");
    assert_eq!(function_libraries(&url).await, Vec::<String>::new());
    post_claim_delete(&store, "before").await;
    assert_eq!(function_libraries(&url).await, vec![library.clone()]);
    let client = ::redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () = ::redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    // Another version's library, as during a rolling upgrade.
    let () = ::redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("#!lua name=zaqar_other\nredis.register_function('zaqar_other_post', function() return 1 end)")
        .query_async(&mut conn)
        .await
        .unwrap();
    post_claim_delete(&store, "after").await;
    let mut libraries = function_libraries(&url).await;
    libraries.sort();
    assert_eq!(libraries, vec![library, "zaqar_other".to_owned()]);
    assert!(store.inner.scripts.library.uses_functions());
}

/// A Redis without functions (as before 7.0; here Redis 7 with `FCALL`
/// renamed away, which answers as Redis 6 does: "unknown command"): the
/// store runs every script as `EVALSHA` instead, and loads no library.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_run_as_evalsha_on_a_redis_without_functions() {
    let dir = tempfile::tempdir().unwrap();
    if test_url("ZAQAR_TEST_REDIS_URL").is_none() {
        return;
    }
    let Some(redis) = OwnRedis::start_with(0, dir.path(), &["--rename-command", "FCALL", ""])
    else {
        eprintln!("skipped: redis-server not found");
        return;
    };
    let url = redis.url();
    let store = RedisStore::connect(options(&url), Arc::new(ManualClock::new())).unwrap();
    assert!(store.inner.scripts.library.uses_functions());
    post_claim_delete(&store, "first").await;
    assert!(!store.inner.scripts.library.uses_functions());
    assert_eq!(function_libraries(&url).await, Vec::<String>::new());
    post_claim_delete(&store, "second").await;
}

/// Redis goes away: requests fail with Unavailable within the configured
/// time (no hang, no panic), ping says false; Redis comes back on the same
/// address: the same store works again without being rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_after_redis_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut redis) = own_redis(dir.path()) else {
        return;
    };
    let mut options = options(&redis.url());
    options.request_timeout = Duration::from_secs(2);
    options.reconnect_sleep = Duration::from_millis(100);
    let backend = RedisStore::connect(options, Arc::new(ManualClock::new()))
        .unwrap()
        .backend();
    let scope = Scope::new("p", "q");
    let before = backend
        .messages
        .post(&scope, "c", vec![msg(1, 600)])
        .await
        .unwrap()
        .ids;
    assert!(backend.queues.is_alive().await);

    redis.kill();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let err = backend
            .messages
            .post(&scope, "c", vec![msg(2, 600)])
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "took {:?}",
            started.elapsed()
        );
        assert!(!backend.queues.is_alive().await);
    }

    let _redis = redis.restart();
    assert!(backend.queues.is_alive().await);
    let after = backend
        .messages
        .post(&scope, "c", vec![msg(3, 600)])
        .await
        .unwrap()
        .ids;
    let listed: Vec<String> = backend
        .messages
        .list(&scope, &everything())
        .await
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.id)
        .collect();
    // appendfsync always: what was acknowledged before the kill is still there.
    assert_eq!(listed, [before, after].concat());
}

/// With `appendfsync always`, every acknowledged post, claim and delete
/// survives `kill -9` of Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let Some(redis) = own_redis(dir.path()) else {
        return;
    };
    let clock = ManualClock::new();
    let backend = RedisStore::connect(options(&redis.url()), Arc::new(clock.clone()))
        .unwrap()
        .backend();
    let scope = Scope::new("p", "durable");
    let mut posted = Vec::new();
    for round in 0..20 {
        posted.extend(
            backend
                .messages
                .post(
                    &scope,
                    "c",
                    (0..5).map(|n| msg(round * 5 + n, 600)).collect(),
                )
                .await
                .unwrap()
                .ids,
        );
    }
    let request = ClaimRequest {
        ttl: 300,
        grace: 60,
        limit: 10,
        dead_letter: None,
    };
    let claim = backend
        .claims
        .create(&scope, &request)
        .await
        .unwrap()
        .unwrap();
    backend
        .messages
        .delete(&scope, &posted[0], Some(&claim.id))
        .await
        .unwrap();

    let _redis = redis.restart();
    let listed: Vec<String> = {
        let mut query = everything();
        let mut all = Vec::new();
        loop {
            let page = backend.messages.list(&scope, &query).await.unwrap();
            if page.messages.is_empty() {
                break all;
            }
            all.extend(page.messages.into_iter().map(|m| m.id));
            query.marker = page.next_marker;
        }
    };
    assert_eq!(listed, posted[1..]);
    let info = backend
        .claims
        .get(&scope, &claim.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.messages.len(), 9);
}

/// A simple load loop (not a test: `cargo test -p zaqar --release
/// storage::redis::tests::load_loop -- --ignored --nocapture`): 16
/// concurrent clients on one queue; messages/s for post batches of 1 and 10,
/// and claim(10)+delete cycles per second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn load_loop() {
    let Some(url) = test_url("ZAQAR_TEST_REDIS_URL") else {
        return;
    };
    let backend = RedisStore::connect(options(&url), Arc::new(crate::storage::SystemClock))
        .unwrap()
        .backend();
    let scope = Scope::new("bench", "q");
    const TASKS: usize = 16;
    for batch in [1usize, 10] {
        let rounds = 4000 / batch / TASKS;
        let started = std::time::Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (backend, scope) = (backend.clone(), scope.clone());
                tokio::spawn(async move {
                    for _ in 0..rounds {
                        let messages = (0..batch as i64).map(|n| msg(n, 3600)).collect();
                        backend.messages.post(&scope, "c", messages).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let n = rounds * batch * TASKS;
        eprintln!(
            "post batch {batch}: {:.0} messages/s ({:.0} requests/s)",
            n as f64 / started.elapsed().as_secs_f64(),
            (rounds * TASKS) as f64 / started.elapsed().as_secs_f64()
        );
    }
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (backend, scope) = (backend.clone(), scope.clone());
            tokio::spawn(async move {
                let request = claim_request(10);
                let mut cycles = 0;
                while let Some(claim) = backend.claims.create(&scope, &request).await.unwrap() {
                    let ids: Vec<String> = claim.messages.iter().map(|m| m.id.clone()).collect();
                    backend
                        .messages
                        .bulk_delete(&scope, &ids, Some(std::slice::from_ref(&claim.id)))
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
    eprintln!(
        "claim(10)+delete: {:.0} cycles/s, {:.0} messages/s consumed",
        cycles as f64 / started.elapsed().as_secs_f64(),
        (cycles * 10) as f64 / started.elapsed().as_secs_f64()
    );
}

/// The unique-subscriber rule holds under concurrency: of 16 servers
/// subscribing the same URI to one queue at once, exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_subscribes_create_one() {
    let Some(url) = test_url("ZAQAR_TEST_REDIS_URL") else {
        return;
    };
    let opts = options(&url);
    let scope = Scope::new("p", "q");
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let backend = RedisStore::connect(opts.clone(), Arc::new(ManualClock::new()))
                .unwrap()
                .backend();
            let scope = scope.clone();
            tokio::spawn(async move {
                let new = crate::storage::NewSubscription {
                    subscriber: "http://a.example/".into(),
                    ttl: 600,
                    options: Default::default(),
                };
                backend.subscriptions.create(&scope, &new).await.unwrap()
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        created += usize::from(t.await.unwrap().is_some());
    }
    assert_eq!(created, 1);
}

/// `wait_replicas`: with the Sentinel topology's one replica, writes wait
/// for it and succeed; asking for two replicas answers Unavailable once
/// `wait_timeout` passes (the master applied the write all the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_replicas_acknowledges_after_replication() {
    let Some(url) = test_url("ZAQAR_TEST_REDIS_SENTINEL_URL") else {
        return;
    };
    let scope = Scope::new("p", "q");
    let mut opts = options(&url);
    opts.wait_replicas = 1;
    let backend = RedisStore::connect(opts.clone(), Arc::new(ManualClock::new()))
        .unwrap()
        .backend();
    let ids = backend
        .messages
        .post(&scope, "c", vec![msg(1, 600)])
        .await
        .unwrap()
        .ids;
    assert_eq!(ids.len(), 1);

    opts.wait_replicas = 2;
    opts.wait_timeout = Duration::from_millis(200);
    let backend = RedisStore::connect(opts, Arc::new(ManualClock::new()))
        .unwrap()
        .backend();
    let err = backend
        .messages
        .post(&scope, "c", vec![msg(2, 600)])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StorageError::Unavailable(m) if m.contains("1 of 2 replicas")),
        "{err:?}"
    );
    // Every script waits, reads included (they may write: expiry clean-up).
    let err = backend.messages.stats(&scope).await.unwrap_err();
    assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
}

/// Garbage collection: whatever path created them (a post, a claim, a
/// release that re-creates the free set), every key of a queue carries an
/// expiry, and that expiry outlives the queue's last message, so a queue
/// nobody touches again is dropped by Redis and a live one never is.
#[tokio::test]
async fn every_queue_key_expires_after_its_data() {
    let Some(url) = test_url("ZAQAR_TEST_REDIS_URL") else {
        return;
    };
    let clock = ManualClock::new();
    let (backend, prefix) = backend_with_prefix(&url, clock.clone());
    let scope = Scope::new("p", "gc");
    let claim = claim_request(10);
    backend
        .messages
        .post(&scope, "c", (0..3).map(|n| msg(n, 600)).collect())
        .await
        .unwrap();
    // Claim everything (the free set empties and disappears), release it
    // (the free set comes back), post and claim again.
    let first = backend
        .claims
        .create(&scope, &claim)
        .await
        .unwrap()
        .unwrap();
    backend.claims.delete(&scope, &first.id).await.unwrap();
    clock.advance_secs(30);
    backend
        .messages
        .post(&scope, "c", vec![msg(9, 900)])
        .await
        .unwrap();
    backend
        .claims
        .create(&scope, &claim)
        .await
        .unwrap()
        .unwrap();

    let client = ::redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{prefix}:q*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.len() >= 7, "queue keys: {keys:?}");
    for key in keys {
        let pttl: i64 = ::redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(pttl > 0, "{key} has no expiry ({pttl})");
        if !key.contains(":c:") && !key.contains(":cm:") {
            // The last message lives 900 s from now.
            assert!(
                pttl >= 900_000,
                "{key} would go before its data ({pttl} ms)"
            );
        }
    }
}

/// Collection looks at an index only once the time `<Q>:seq` keeps for it
/// has come (common.lua, DUE_RECHECK), and every write of an entry due
/// sooner brings that time forward. Two servers whose clocks differ by two
/// minutes share queues: the fast one's calls keep times two minutes ahead
/// of the slow one's clock, yet the slow one's message expiry, claim expiry
/// and end of a delay each take effect on time.
#[tokio::test]
async fn collection_times_follow_every_write() {
    let Some(url) = test_url("ZAQAR_TEST_REDIS_URL") else {
        return;
    };
    let opts = options(&url);
    let slow_clock = ManualClock::new();
    let fast_clock = ManualClock::at(slow_clock.now_ms() + 120_000);
    let slow = RedisStore::connect(opts.clone(), Arc::new(slow_clock.clone()))
        .unwrap()
        .backend();
    let fast = RedisStore::connect(opts.clone(), Arc::new(fast_clock.clone()))
        .unwrap()
        .backend();
    let mut conn = raw_connection(&url).await;
    let claim = |limit| ClaimRequest {
        ttl: 60,
        grace: 0,
        limit,
        dead_letter: None,
    };
    let scopes = ["expiry", "claim", "delay"].map(|q| Scope::new("p", q));
    for (i, scope) in scopes.iter().enumerate() {
        let mut first = msg(0, 3600);
        if i == 2 {
            first.delay = 10;
        }
        slow.messages.post(scope, "c", vec![first]).await.unwrap();
        // The fast server's call keeps every time a second past its clock.
        fast.messages.stats(scope).await.unwrap();
        let seq = format!("{}:seq", super::keys::queue_prefix(&opts.key_prefix, scope));
        let kept: Vec<Option<i64>> = ::redis::cmd("HMGET")
            .arg(&seq)
            .arg(&["dc", "dw", "de"])
            .query_async(&mut conn)
            .await
            .unwrap();
        let ahead = Some(fast_clock.now_ms() + 1000);
        assert_eq!(kept, vec![ahead, ahead, ahead], "{seq}");
    }
    let [expiry, claimed, delayed] = &scopes;
    slow.messages
        .post(expiry, "c", vec![msg(1, 60)])
        .await
        .unwrap();
    let held = slow.claims.create(claimed, &claim(1)).await.unwrap();
    assert_eq!(held.map(|c| c.messages.len()), Some(1));
    // This claim walks past the delayed message: it waits for its delay.
    let none = slow.claims.create(delayed, &claim(10)).await.unwrap();
    assert!(none.is_none());

    slow_clock.advance_secs(61);
    fast_clock.advance_secs(61);
    let stats = slow.messages.stats(expiry).await.unwrap();
    assert_eq!(
        (stats.total, stats.free),
        (1, 1),
        "the expired message is collected"
    );
    let stats = slow.messages.stats(claimed).await.unwrap();
    assert_eq!(
        (stats.claimed, stats.free),
        (0, 1),
        "the expired claim released its message"
    );
    let due = slow.claims.create(delayed, &claim(10)).await.unwrap();
    assert_eq!(due.map(|c| c.messages.len()), Some(1), "the delay ended");
}

/// Calls on a queue that never had a message (stats, a claim, a listing)
/// leave no key behind: the collection times are kept only in an existing
/// `<Q>:seq`.
#[tokio::test]
async fn reading_an_empty_queue_writes_nothing() {
    let Some(url) = test_url("ZAQAR_TEST_REDIS_URL") else {
        return;
    };
    let (backend, prefix) = backend_with_prefix(&url, ManualClock::new());
    let scope = Scope::new("p", "empty");
    for _ in 0..2 {
        backend.messages.stats(&scope).await.unwrap();
        let claim = claim_request(10);
        backend.claims.create(&scope, &claim).await.unwrap();
        backend.messages.list(&scope, &everything()).await.unwrap();
    }
    let mut conn = raw_connection(&url).await;
    assert_eq!(
        keys_like(&mut conn, &format!("{prefix}:*")).await,
        Vec::<String>::new()
    );
}

// ------------------------------------------------------- limits of scripts

/// A fan-out of 9,000 deliveries is queued whole (in several calls, each
/// at most a few thousand values) and leased back in order.
async fn outbox_thousands(url: &str) {
    let store = RedisStore::connect(options(url), Arc::new(ManualClock::new())).unwrap();
    let n = 9_000;
    store.enqueue((0..n).map(delivery).collect()).await.unwrap();
    let mut leased = Vec::new();
    loop {
        let page = store.lease_due(1000, 30_000).await.unwrap();
        if page.is_empty() {
            break;
        }
        leased.extend(page);
    }
    assert_eq!(leased.len(), n as usize);
    assert!(leased
        .iter()
        .zip(0..n)
        .all(|(d, i)| d.delivery == delivery(i)));
}

/// Everything a client can observe of a queue: its messages (claimed ones
/// included: id, ttl, claim), its stats, and each given claim.
async fn observe(backend: &Backend, scope: &Scope, claims: &[String]) -> String {
    let mut query = everything();
    query.limit = 1000;
    let page = backend.messages.list(scope, &query).await.unwrap();
    let messages: Vec<_> = page
        .messages
        .iter()
        .map(|m| (m.id.clone(), m.ttl, m.claim_id.clone()))
        .collect();
    let mut seen = format!(
        "{messages:?} {:?}",
        backend.messages.stats(scope).await.unwrap()
    );
    for c in claims {
        let info = backend.claims.get(scope, c).await.unwrap();
        let held = info.map(|i| (i.ttl, i.messages.len()));
        seen.push_str(&format!(" {c}:{held:?}"));
    }
    seen
}

/// The scripts check every number before their first write, whatever the
/// server sends: called directly (past the Rust side's checks) with
/// absurd, non-finite, fractional or negative times, each refuses, and
/// nothing observable changes. (Before, a renewal whose grace overflowed
/// deleted every message of the queue.)
async fn bad_numbers_change_nothing(url: &str) {
    use crate::storage::deadline::{ClaimTimes, MAX_DEADLINE_MS};
    let clock = ManualClock::new();
    let store = RedisStore::connect(options(url), Arc::new(clock.clone())).unwrap();
    let backend = store.backend();
    let s = Scope::new("p", "guarded");
    backend
        .messages
        .post(&s, "c", (0..5).map(|n| msg(n, 600)).collect())
        .await
        .unwrap();
    let claim = backend
        .claims
        .create(&s, &claim_request(2))
        .await
        .unwrap()
        .unwrap();
    let claims = [claim.id.clone()];
    let before = observe(&backend, &s, &claims).await;
    let now = clock.now_ms();
    let times = super::claim_time_args(&ClaimTimes::new(now, 60, 60).unwrap());
    let past = (MAX_DEADLINE_MS + 1).to_string();
    let bad = [
        "9e18",
        "9000000000000000000000",
        "1e308",
        "inf",
        "-inf",
        "nan",
        "-1",
        "1.5",
        "x",
        "",
        past.as_str(),
    ];
    let scripts = &store.inner.scripts;
    let refused = |r: crate::storage::StorageResult<::redis::Value>, what: String| {
        assert!(r.is_err(), "{what} was accepted");
    };
    for b in bad {
        for pos in 0..4 {
            let mut args = vec![claim.id.clone()];
            args.extend(times.iter().cloned());
            args[1 + pos] = b.to_owned();
            let r = store
                .eval_queue_at("t", false, &scripts.claim_update, &s, now, args)
                .await;
            refused(r, format!("claim update with {b:?} at {pos}"));
        }
        for pos in 0..7 {
            if pos == 5 && b == "-1" {
                // A max claim count of -1 means "no dead-letter policy".
                continue;
            }
            let mut args = vec!["x".to_owned()];
            args.extend(times.iter().cloned());
            args.extend(["10".to_owned(), "1".to_owned(), "30000".to_owned()]);
            args[1 + pos] = b.to_owned();
            let r = store
                .eval_queue_at("t", false, &scripts.claim_create, &s, now, args)
                .await;
            refused(r, format!("claim create with {b:?} at {pos}"));
        }
        // A post whose run expiry (or latest expiry) is bad (after the
        // spill: the wake-up channel and message, no metadata stamp, then
        // the list).
        for pos in [1, 9] {
            let mut args: Vec<String> = vec![
                "1".into(),
                (now + 60_000).to_string(),
                "1".into(),
                String::new(),
                "t:wake".into(),
                "1:pq".into(),
                String::new(),
                "id".into(),
                "record".into(),
                (now + 60_000).to_string(),
                "1".into(),
            ];
            args[pos] = b.to_owned();
            let r = store
                .eval_queue_at("t", false, &scripts.post, &s, now, args)
                .await;
            refused(r, format!("post with {b:?} at {pos}"));
        }
        let r = store
            .eval_queue_at(
                "t",
                false,
                &scripts.dlq_insert,
                &s,
                now,
                vec!["-1", "id", "60", b, "0", "c", "1", "", "0"],
            )
            .await;
        refused(r, format!("dead-letter insert with {b:?}"));
        let sub = vec!["create", "sid", "http://x.example/", "60", b, "{}"];
        let r = store
            .eval_queue_at("t", false, &scripts.subscription, &s, now, sub)
            .await;
        refused(r, format!("subscription create with {b:?}"));
    }
    // "Now" itself out of range.
    for now in [-1, MAX_DEADLINE_MS + 1] {
        let r = store
            .eval_queue_at("t", false, &scripts.stats, &s, now, Vec::<String>::new())
            .await;
        refused(r, format!("stats at {now}"));
    }
    assert_eq!(observe(&backend, &s, &claims).await, before);
    assert!(backend
        .subscriptions
        .list(&s, None, 10)
        .await
        .unwrap()
        .is_empty());
}

/// A large expiry is collected at most one budget per call: 25,000
/// messages expiring at once (never claimed: 1 unit each) take three calls,
/// and the stats of each call show the collection's progress.
async fn message_collection_is_bounded(url: &str) {
    let clock = ManualClock::new();
    let backend = open(url, clock.clone());
    let s = Scope::new("p", "gc-budget");
    backend
        .messages
        .post(&s, "c", (0..25_000).map(|n| msg(n, 60)).collect())
        .await
        .unwrap();
    clock.advance_secs(61);
    let mut totals = Vec::new();
    for _ in 0..4 {
        totals.push(backend.messages.stats(&s).await.unwrap().total);
    }
    assert_eq!(totals, [15_000, 5_000, 0, 0]);
}

/// Claims expiring together are released a budget at a time (thirteen
/// claims of 1,000 messages: three per call); meanwhile a claim that
/// expired and is not released yet is treated as gone by every reader.
async fn claim_release_is_bounded(url: &str) {
    let clock = ManualClock::new();
    let backend = open(url, clock.clone());
    let s = Scope::new("p", "claim-budget");
    backend
        .messages
        .post(&s, "c", (0..13_000).map(|n| msg(n, 3600)).collect())
        .await
        .unwrap();
    let mut claims = Vec::new();
    for _ in 0..13 {
        let request = ClaimRequest {
            ttl: 60,
            grace: 0,
            limit: 1000,
            dead_letter: None,
        };
        claims.push(backend.claims.create(&s, &request).await.unwrap().unwrap());
        // One second apart, so they are released in this order.
        clock.advance_secs(1);
    }
    clock.advance_secs(60);
    let last = &claims[12];
    // Call 1 releases claims 1-3: the other 10,000 messages still count as claimed.
    let stats = backend.messages.stats(&s).await.unwrap();
    assert_eq!((stats.claimed, stats.total), (10_000, 13_000));
    // Call 2 releases 4-6; the last claim expired, so it is gone.
    assert!(backend.claims.get(&s, &last.id).await.unwrap().is_none());
    // Call 3 releases 7-9; the last claim's messages are not claimed any more.
    let err = backend
        .messages
        .delete(&s, &last.messages[0].id, Some(&last.id))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::MessageNotClaimed), "{err:?}");
    // Call 4 releases 10-12, and lists the last claim's messages (ranks
    // 12,001 to 13,000 of this new queue) without a claim.
    let mut query = everything();
    query.limit = 1000;
    query.marker = Some("12000".into());
    let page = backend.messages.list(&s, &query).await.unwrap();
    assert_eq!(page.messages.len(), 1000);
    assert_eq!(page.messages[0].id, last.messages[0].id);
    assert!(page.messages.iter().all(|m| m.claim_id.is_none()));
    // Call 5 releases the last one; everything is claimable again.
    assert!(matches!(
        backend.claims.update(&s, &last.id, 60, 60).await,
        Err(StorageError::ClaimNotFound)
    ));
    let stats = backend.messages.stats(&s).await.unwrap();
    assert_eq!((stats.claimed, stats.free), (0, 13_000));
    let request = ClaimRequest {
        ttl: 60,
        grace: 0,
        limit: 10_000,
        dead_letter: None,
    };
    let all = backend.claims.create(&s, &request).await.unwrap().unwrap();
    assert_eq!(all.messages.len(), 10_000);
    assert_eq!(all.messages[0].id, claims[0].messages[0].id);
}

/// No command carries more than a few thousand values, whatever the caller
/// passed: after the largest operations of the conformance suite (posts of
/// 20,000 messages, bulk reads and deletes of 10,000 ids with 9,000 claim
/// ids, thousands of dead letters in one claim, mass expiry) and a fan-out
/// of 9,000 deliveries, Redis' slow log, set to record every command
/// (those run by scripts included), shows none longer than the inline
/// limit of a script call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_command_carries_thousands_of_values() {
    use crate::storage::conformance as suite;
    let dir = tempfile::tempdir().unwrap();
    let Some(redis) = own_redis(dir.path()) else {
        return;
    };
    let url = redis.url();
    let client = ::redis::Client::open(url.as_str()).unwrap();
    // The whole slow log is a large reply.
    let slow =
        ::redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(120)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&slow)
        .await
        .unwrap();
    let config = |name: &'static str, value: &'static str| {
        ::redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .clone()
    };
    let _: () = config("slowlog-log-slower-than", "0")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = config("slowlog-max-len", "400000")
        .query_async(&mut conn)
        .await
        .unwrap();

    // Redis logs every command here, so the largest scripts run slower than
    // usual: timeouts generous enough for a loaded machine (this test counts
    // values per command, not time).
    let fresh = || {
        let clock = ManualClock::new();
        let mut opts = options(&url);
        opts.socket_timeout = Duration::from_secs(30);
        opts.request_timeout = Duration::from_secs(60);
        let backend = RedisStore::connect(opts, Arc::new(clock.clone()))
            .expect("store")
            .backend();
        (backend, clock)
    };
    let (b, c) = fresh();
    suite::dead_letter_thousands_in_one_claim(b, c).await;
    let (b, c) = fresh();
    suite::bulk_operations_past_unpack_limit(b, c).await;
    let (b, c) = fresh();
    suite::mass_expiry_leaves_queue_usable(b, c).await;
    let (b, c) = fresh();
    suite::purge_of_a_large_queue(b, c).await;
    outbox_thousands(&url).await;

    let logged: i64 = ::redis::cmd("SLOWLOG")
        .arg("LEN")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        logged < 400_000,
        "the slow log overflowed ({logged} entries)"
    );
    let entries: Vec<::redis::Value> = ::redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    // Each entry: id, time, duration, arguments (at most 32 kept: the last
    // says "... (N more arguments)"), client address, client name.
    let mut longest = (0, String::new());
    for entry in entries {
        let ::redis::Value::Array(fields) = entry else {
            panic!("unexpected slow log entry {entry:?}");
        };
        let args: Vec<Vec<u8>> =
            ::redis::FromRedisValue::from_redis_value(fields[3].clone()).unwrap();
        let mut count = args.len();
        if let Some(more) = args.last().map(|a| String::from_utf8_lossy(a).into_owned()) {
            if let Some(n) = more
                .strip_prefix("... (")
                .and_then(|m| m.strip_suffix(" more arguments)"))
            {
                count = args.len() - 1 + n.parse::<usize>().unwrap();
            }
        }
        if count > longest.0 {
            longest = (count, String::from_utf8_lossy(&args[0]).into_owned());
        }
    }
    eprintln!(
        "{logged} commands logged; the longest: {} with {} arguments",
        longest.1, longest.0
    );
    assert!(
        longest.0 <= super::MAX_INLINE_VALUES + 16,
        "{} was sent with {} arguments",
        longest.1,
        longest.0
    );
}

/// Lists split for calls: by count, by bytes, an oversized item alone,
/// nothing lost or reordered.
#[test]
fn batches_split_by_count_and_bytes() {
    let items: Vec<usize> = vec![1, 1, 1, 1, 1, 9, 1, 1];
    let split = super::batches(&items, 3, 4, |n| *n);
    assert_eq!(split, [&[1, 1, 1][..], &[1, 1][..], &[9][..], &[1, 1][..]]);
    assert!(super::batches(&items[..0], 3, 4, |n| *n).is_empty());
    let many: Vec<usize> = (0..2_500).collect();
    let split = super::batches(&many, 1000, usize::MAX, |_| 1);
    assert_eq!(
        split.iter().map(|b| b.len()).collect::<Vec<_>>(),
        [1000, 1000, 500]
    );
    assert_eq!(split.concat(), many);
}

/// A message row the server cannot read (cut short, a wrong type, a body
/// that is not JSON) is a storage error, never a panic; a whole one reads
/// back field by field.
#[test]
fn message_rows_are_read_field_by_field() {
    let mut row = Vec::new();
    rmp::encode::write_str(&mut row, "m1").unwrap();
    rmp::encode::write_sint(&mut row, 60).unwrap();
    rmp::encode::write_sint(&mut row, 1_700_000_000_000).unwrap();
    rmp::encode::write_str(&mut row, r#"{"a": [1, "é"]}"#).unwrap();
    rmp::encode::write_str(&mut row, "c1").unwrap();
    rmp::encode::write_sint(&mut row, 2).unwrap();
    rmp::encode::write_str(&mut row, "").unwrap();
    let m = super::to_message(row.clone()).unwrap();
    assert_eq!(
        (m.id.as_str(), m.ttl, m.created_ms, m.body.get()),
        ("m1", 60, 1_700_000_000_000, r#"{"a": [1, "é"]}"#)
    );
    assert_eq!(
        (m.claim_id.as_deref(), m.claim_count, m.checksum),
        (Some("c1"), 2, None)
    );

    let mut not_json = row[..3].to_vec();
    rmp::encode::write_sint(&mut not_json, 60).unwrap();
    rmp::encode::write_sint(&mut not_json, 1).unwrap();
    rmp::encode::write_str(&mut not_json, "{").unwrap();
    for bad in [
        Vec::new(),
        row[..row.len() - 1].to_vec(),
        vec![0xc1],
        b"\x05".to_vec(),
        not_json,
    ] {
        assert!(
            matches!(
                super::to_message(bad.clone()),
                Err(StorageError::Unavailable(_))
            ),
            "{bad:?}"
        );
    }
}

/// `stats.lua` answers one MessagePack sequence of six fields; a short or
/// mistyped one is a 503, never a panic.
#[test]
fn stats_rows_are_read_field_by_field() {
    let mut row = Vec::new();
    rmp::encode::write_uint(&mut row, 12).unwrap();
    rmp::encode::write_uint(&mut row, 7).unwrap();
    rmp::encode::write_str(&mut row, "old").unwrap();
    rmp::encode::write_sint(&mut row, 1_700_000_000_000).unwrap();
    rmp::encode::write_str(&mut row, "").unwrap();
    rmp::encode::write_sint(&mut row, 0).unwrap();
    assert_eq!(
        super::to_stats(&row).unwrap(),
        (12, 7, "old".into(), 1_700_000_000_000, String::new(), 0)
    );
    let mut negative_count = Vec::new();
    rmp::encode::write_sint(&mut negative_count, -1).unwrap();
    negative_count.extend_from_slice(&row[1..]);
    for bad in [Vec::new(), row[..row.len() - 1].to_vec(), negative_count] {
        assert!(
            matches!(super::to_stats(&bad), Err(StorageError::Unavailable(_))),
            "{bad:?}"
        );
    }
}

// ------------------------------------------------------- slot migration

/// A command on one Cluster node (no redirection followed).
async fn node_cmd(port: u16, args: &[&str]) -> ::redis::Value {
    let client = ::redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut cmd = ::redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut conn).await.unwrap()
}

/// The masters of the test Cluster: (node id, port, slot ranges).
async fn cluster_masters(port: u16) -> Vec<(String, u16, Vec<(u16, u16)>)> {
    let text: String = ::redis::from_redis_value(node_cmd(port, &["CLUSTER", "NODES"]).await)
        .expect("CLUSTER NODES");
    text.lines()
        .filter(|l| l.contains("master") && !l.contains("fail"))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let port = f[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
            let ranges = f[8..]
                .iter()
                .filter(|r| !r.starts_with('['))
                .map(|r| {
                    let (a, b) = r.split_once('-').unwrap_or((r, r));
                    (a.parse().unwrap(), b.parse().unwrap())
                })
                .collect();
            (f[0].to_owned(), port, ranges)
        })
        .collect()
}

/// Puts a slot back to STABLE on the given nodes when dropped armed (a
/// failed test), so that one failure does not leave the shared test
/// Cluster refusing every later call on that slot.
struct SlotReset {
    slot: String,
    ports: Vec<u16>,
    armed: bool,
}

impl Drop for SlotReset {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (slot, ports) = (self.slot.clone(), self.ports.clone());
        let _ = std::thread::spawn(move || {
            for port in ports {
                if let Ok(mut conn) = ::redis::Client::open(format!("redis://127.0.0.1:{port}"))
                    .and_then(|c| c.get_connection())
                {
                    let _: ::redis::RedisResult<()> = ::redis::cmd("CLUSTER")
                        .arg("SETSLOT")
                        .arg(&slot)
                        .arg("STABLE")
                        .query(&mut conn);
                }
            }
        })
        .join();
    }
}

/// Resharding under load: while the slot of a busy queue moves to another
/// master (SETSLOT IMPORTING/MIGRATING, MIGRATE key by key, SETSLOT NODE),
/// a post and a claim issued half-way wait until the slot has settled
/// instead of running on a part of the queue, and afterwards nothing is
/// missing, doubled or left behind on the old master. (Before the guard key,
/// the post ran on the old master with the message records gone: "Script
/// attempted to access a non local key" after its first writes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_survives_its_slot_moving() {
    let Some(url) = test_url("ZAQAR_TEST_REDIS_CLUSTER_URL") else {
        return;
    };
    let opts = options(&url);
    let prefix = super::keys::queue_prefix(&opts.key_prefix, &Scope::new("p", "moving"));
    let backend = RedisStore::connect(opts, Arc::new(ManualClock::new()))
        .unwrap()
        .backend();
    let s = Scope::new("p", "moving");
    let request = ClaimRequest {
        ttl: 300,
        grace: 60,
        limit: 5,
        dead_letter: None,
    };
    backend
        .messages
        .post(&s, "c", (0..20).map(|n| msg(n, 600)).collect())
        .await
        .unwrap();
    let first = backend.claims.create(&s, &request).await.unwrap().unwrap();

    let seed: u16 = url
        .rsplit(',')
        .next()
        .and_then(|hp| hp.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    let route = super::keys::queue_route_key(&prefix);
    let ::redis::Value::Int(slot) = node_cmd(seed, &["CLUSTER", "KEYSLOT", &route]).await else {
        panic!("CLUSTER KEYSLOT");
    };
    let slot = slot as u16;
    let masters = cluster_masters(seed).await;
    let src = masters
        .iter()
        .position(|(_, _, r)| r.iter().any(|&(a, b)| a <= slot && slot <= b))
        .expect("an owner");
    let (src_id, src_port) = (masters[src].0.clone(), masters[src].1);
    let (dst_id, dst_port) = {
        let d = &masters[(src + 1) % masters.len()];
        (d.0.clone(), d.1)
    };
    let slot_s = slot.to_string();
    let mut reset = SlotReset {
        slot: slot_s.clone(),
        ports: vec![src_port, dst_port],
        armed: true,
    };
    node_cmd(
        dst_port,
        &["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &src_id],
    )
    .await;
    node_cmd(
        src_port,
        &["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &dst_id],
    )
    .await;
    let dst_port_s = dst_port.to_string();
    let migrate = |keys: Vec<String>| {
        let dst_port_s = dst_port_s.clone();
        async move {
            let mut args = vec!["MIGRATE", "127.0.0.1", &dst_port_s, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            node_cmd(src_port, &args).await
        }
    };
    // The message records leave first: half the queue is on each master.
    migrate(vec![format!("{prefix}:m")]).await;

    let post = {
        let (backend, s) = (backend.clone(), s.clone());
        tokio::spawn(async move { backend.messages.post(&s, "c", vec![msg(99, 600)]).await })
    };
    let claim = {
        let (backend, s, request) = (backend.clone(), s.clone(), request.clone());
        tokio::spawn(async move { backend.claims.create(&s, &request).await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !post.is_finished() && !claim.is_finished(),
        "a call ran while the slot was moving"
    );

    // The rest of the slot, then the new owner everywhere.
    loop {
        let keys: Vec<String> =
            match node_cmd(src_port, &["CLUSTER", "GETKEYSINSLOT", &slot_s, "100"]).await {
                ::redis::Value::Array(keys) => keys
                    .into_iter()
                    .map(|k| ::redis::from_redis_value(k).unwrap())
                    .collect(),
                other => panic!("GETKEYSINSLOT: {other:?}"),
            };
        if keys.is_empty() {
            break;
        }
        migrate(keys).await;
    }
    for (_, port, _) in &masters {
        node_cmd(*port, &["CLUSTER", "SETSLOT", &slot_s, "NODE", &dst_id]).await;
    }
    reset.armed = false;

    let posted = post
        .await
        .unwrap()
        .expect("the post went through once settled");
    assert_eq!(posted.ids.len(), 1);
    let second = claim
        .await
        .unwrap()
        .expect("the claim went through once settled")
        .expect("messages to claim");
    assert_eq!(second.messages.len(), 5);
    let stats = backend.messages.stats(&s).await.unwrap();
    assert_eq!((stats.total, stats.claimed), (21, 10));
    let kept = backend.claims.get(&s, &first.id).await.unwrap().unwrap();
    assert_eq!(kept.messages.len(), 5);
    let mut query = everything();
    query.limit = 50;
    let page = backend.messages.list(&s, &query).await.unwrap();
    let mut ids: Vec<_> = page.messages.iter().map(|m| m.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 21);
    assert!(ids.contains(&posted.ids[0]));
    let first_ids: Vec<_> = first.messages.iter().map(|m| &m.id).collect();
    assert!(second.messages.iter().all(|m| !first_ids.contains(&&m.id)));
    // Nothing of the queue stayed behind (or was created) on the old master.
    let ::redis::Value::Int(left) =
        node_cmd(src_port, &["CLUSTER", "COUNTKEYSINSLOT", &slot_s]).await
    else {
        panic!("COUNTKEYSINSLOT");
    };
    assert_eq!(left, 0);
}
