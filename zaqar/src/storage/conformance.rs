//! The driver conformance suite: behaviour tests written once, run against
//! every driver.
//!
//! Each test is an `async fn(Backend, ManualClock)`: it gets the three stores
//! of a driver wired to a [`ManualClock`] and moves that clock to test TTLs,
//! delays and claim expiry without sleeping. A driver runs the whole suite by
//! invoking [`conformance_tests!`] in its test module with an async function
//! that opens a fresh backend on a clock:
//!
//! ```ignore
//! async fn open(clock: ManualClock) -> (Backend, Keep) {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = SqliteStore::open(&dir.path().join("db"), Arc::new(clock)).unwrap();
//!     (store.backend(), Box::new(dir))
//! }
//! crate::storage::conformance::conformance_tests!(open);
//! ```
//!
//! The second value ([`Keep`]) is whatever must outlive the test (a temporary
//! directory, a server handle).
//!
//! Drivers backed by a shared server (Redis, MongoDB) run every test against
//! the same database, possibly in parallel, and leftovers from earlier runs:
//! so every test works in projects of its own ([`project`] gives a fresh
//! UUID) and never assumes the store is empty.

mod limits;

use std::any::Any;
use std::collections::HashSet;

use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::clock::{Clock, ManualClock};
use super::pipeline::Backend;
use super::{
    ClaimRequest, DeadLetter, ListQuery, Message, Metadata, NewMessage, Scope, StorageError,
};

/// What a driver's fixture keeps alive for the duration of one test.
pub(crate) type Keep = Box<dyn Any + Send>;

/// What a driver's `open` function gives a test: a backend and what must
/// outlive it, or nothing when the driver's server is not configured
/// (Redis without its test URL), in which case the test passes at once.
pub(crate) trait Fixture {
    /// The backend and its keep-alive, or `None` to skip.
    fn into_fixture(self) -> Option<(Backend, Keep)>;
}

impl Fixture for (Backend, Keep) {
    fn into_fixture(self) -> Option<(Backend, Keep)> {
        Some(self)
    }
}

impl Fixture for Option<(Backend, Keep)> {
    fn into_fixture(self) -> Option<(Backend, Keep)> {
        self
    }
}

/// Generates one `#[tokio::test]` per behaviour of the suite for a driver.
///
/// `$open` is an `async fn(ManualClock) -> (Backend, Keep)` giving a fresh
/// backend that reads time from that clock, or an
/// `async fn(ManualClock) -> Option<(Backend, Keep)>` for a driver that
/// needs a server: `None` skips the test (see [`Fixture`]). Either way
/// every behaviour listed here runs on every driver.
macro_rules! conformance_tests {
    ($open:path) => {
        $crate::storage::conformance::conformance_tests!(@each $open;
            queue_create_get_and_metadata,
            queue_list_paging_and_count,
            queue_delete,
            queue_is_alive,
            post_keeps_input_order,
            list_markers_and_paging,
            list_echo_filter,
            list_include_claimed,
            list_include_delayed,
            messages_are_scoped_to_project_and_queue,
            claims_are_scoped_to_project_and_queue,
            message_ttl_expiry,
            mixed_ttls_in_one_batch,
            unclaimed_order_across_claims_and_delays,
            post_and_claim_without_queue_record,
            claim_lifecycle,
            claim_extends_short_lived_messages,
            claim_expiry_releases_messages,
            claim_renew_extends_message_life,
            live_claim_messages_never_taken_by_another,
            claims_are_exclusive_under_concurrency,
            delayed_messages_not_claimed_nor_popped,
            dead_letter_moves_after_max_claims,
            claim_count_stays_zero_without_dead_letter,
            delete_honours_claim_rules,
            bulk_delete_and_claim_mismatch,
            pop_takes_oldest_claimable,
            stats_counts_and_stamps,
            purge_removes_messages_and_claims,
            absurd_durations_are_refused_and_lose_nothing,
            dead_letter_thousands_in_one_claim,
            mass_expiry_leaves_queue_usable,
            expiry_past_collection_budget_stays_invisible,
            bulk_operations_past_unpack_limit,
            purge_of_a_large_queue,
            queue_list_past_unpack_limit,
        );
    };
    (@each $open:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let clock = $crate::storage::clock::ManualClock::new();
                let fixture = $open(clock.clone()).await;
                let Some((backend, keep)) =
                    $crate::storage::conformance::Fixture::into_fixture(fixture)
                else {
                    return;
                };
                $crate::storage::conformance::$name(backend, clock).await;
                drop(keep);
            }
        )*
    };
}
pub(crate) use conformance_tests;
pub(crate) use limits::*;

// ---------------------------------------------------------------- helpers

/// A project id no other test (or earlier run) uses.
pub(crate) fn project() -> String {
    format!("conformance-{}", uuid::Uuid::new_v4().simple())
}

fn scope(project: &str, queue: &str) -> Scope {
    Scope::new(project, queue)
}

fn raw(value: Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(&value).expect("a json value serialises")
}

fn new_message(body: Value, ttl: i64, delay: i64) -> NewMessage {
    NewMessage {
        ttl,
        delay,
        body: raw(body),
        checksum: None,
    }
}

fn body(message: &Message) -> Value {
    serde_json::from_str(message.body.get()).expect("stored bodies are json")
}

fn ids(messages: &[Message]) -> Vec<String> {
    messages.iter().map(|m| m.id.clone()).collect()
}

fn metadata(value: Value) -> Metadata {
    match value {
        Value::Object(map) => map,
        other => panic!("metadata must be an object, got {other}"),
    }
}

const CLIENT: &str = "6c0e7d5a-1f0b-4a3e-9a57-0d6f4a1b2c3d";

/// A query that shows everything live.
fn list_all(limit: usize) -> ListQuery {
    ListQuery {
        marker: None,
        limit,
        echo: true,
        client_id: CLIENT.to_owned(),
        include_claimed: true,
        include_delayed: true,
    }
}

/// A query with the API defaults: no claimed, no delayed messages.
fn list_default(limit: usize) -> ListQuery {
    ListQuery {
        include_claimed: false,
        include_delayed: false,
        ..list_all(limit)
    }
}

fn claim(ttl: i64, grace: i64, limit: usize) -> ClaimRequest {
    ClaimRequest {
        ttl,
        grace,
        limit,
        dead_letter: None,
    }
}

/// Posts `n` messages with bodies `{"n": 0..n}` and a one-hour TTL.
async fn post_n(backend: &Backend, scope: &Scope, n: usize) -> Vec<String> {
    let messages = (0..n)
        .map(|i| new_message(json!({ "n": i }), 3600, 0))
        .collect();
    let ids = backend
        .messages
        .post(scope, CLIENT, messages)
        .await
        .expect("post")
        .ids;
    assert_eq!(ids.len(), n);
    ids
}

/// Every live message of the queue, claimed and delayed ones included.
async fn all_ids(backend: &Backend, scope: &Scope) -> Vec<String> {
    all_ids_paged(backend, scope, 7).await
}

/// [`all_ids`] in pages of `page`.
async fn all_ids_paged(backend: &Backend, scope: &Scope, page: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut query = list_all(page);
    loop {
        let page = backend.messages.list(scope, &query).await.expect("list");
        if page.messages.is_empty() {
            return out;
        }
        out.extend(ids(&page.messages));
        query.marker = page.next_marker;
    }
}

// ----------------------------------------------------------------- queues

/// Create reports whether it created; metadata is kept on re-create and
/// replaced (order kept) by `set_metadata`.
pub(crate) async fn queue_create_get_and_metadata(backend: Backend, _clock: ManualClock) {
    let p = project();
    let s = scope(&p, "fizbit");
    let q = &backend.queues;
    assert_eq!(q.get(&s).await.unwrap(), None);

    let first = metadata(json!({"b": 1, "a": {"x": [1, 2]}, "_default_message_ttl": 60}));
    assert!(q.create(&s, &first).await.unwrap());
    assert!(!q
        .create(&s, &metadata(json!({"other": true})))
        .await
        .unwrap());
    assert_eq!(q.get(&s).await.unwrap(), Some(first));

    let second = metadata(json!({"z": "last", "m": null, "a": 2}));
    q.set_metadata(&s, &second).await.unwrap();
    let stored = q.get(&s).await.unwrap().unwrap();
    assert_eq!(stored, second);
    assert_eq!(stored.keys().collect::<Vec<_>>(), ["z", "m", "a"]);

    let missing = scope(&p, "missing");
    assert!(matches!(
        q.set_metadata(&missing, &second).await,
        Err(StorageError::QueueNotFound)
    ));
    // Same name, other project: a different queue.
    assert_eq!(q.get(&scope(&project(), "fizbit")).await.unwrap(), None);
    assert!(matches!(
        q.set_metadata(&scope(&project(), "fizbit"), &second).await,
        Err(StorageError::QueueNotFound)
    ));
}

/// Listing is in name order, paged after a marker, scoped to the project.
pub(crate) async fn queue_list_paging_and_count(backend: Backend, _clock: ManualClock) {
    let p = project();
    let q = &backend.queues;
    for name in ["q-04", "q-01", "q-06", "q-00", "q-03", "q-05", "q-02"] {
        let md = metadata(json!({ "name": name }));
        assert!(q.create(&scope(&p, name), &md).await.unwrap());
    }
    let other = project();
    q.create(&scope(&other, "q-00a"), &Metadata::new())
        .await
        .unwrap();

    assert_eq!(q.count(&p).await.unwrap(), 7);
    assert_eq!(q.count(&other).await.unwrap(), 1);
    assert_eq!(q.count(&project()).await.unwrap(), 0);

    let names =
        |entries: &[super::QueueEntry]| entries.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
    let page = q.list(&p, None, 3, false).await.unwrap();
    assert_eq!(names(&page), ["q-00", "q-01", "q-02"]);
    assert!(page.iter().all(|e| e.metadata.is_none()));
    let page = q.list(&p, Some("q-02"), 3, true).await.unwrap();
    assert_eq!(names(&page), ["q-03", "q-04", "q-05"]);
    assert_eq!(page[0].metadata, Some(metadata(json!({"name": "q-03"}))));
    let page = q.list(&p, Some("q-05"), 3, false).await.unwrap();
    assert_eq!(names(&page), ["q-06"]);
    assert!(q.list(&p, Some("q-06"), 3, false).await.unwrap().is_empty());
    // A marker need not name an existing queue.
    let page = q.list(&p, Some("q-035"), 2, false).await.unwrap();
    assert_eq!(names(&page), ["q-04", "q-05"]);

    let page = q.list(&other, None, 10, false).await.unwrap();
    assert_eq!(names(&page), ["q-00a"]);
}

/// Deleting removes only that project's record; deleting twice is fine.
pub(crate) async fn queue_delete(backend: Backend, _clock: ManualClock) {
    let (p, p2) = (project(), project());
    let q = &backend.queues;
    q.create(&scope(&p, "gone"), &Metadata::new())
        .await
        .unwrap();
    q.create(&scope(&p2, "gone"), &Metadata::new())
        .await
        .unwrap();
    q.delete(&scope(&p, "gone")).await.unwrap();
    q.delete(&scope(&p, "gone")).await.unwrap();
    q.delete(&scope(&p, "never-was")).await.unwrap();
    assert_eq!(q.get(&scope(&p, "gone")).await.unwrap(), None);
    assert_eq!(q.count(&p).await.unwrap(), 0);
    assert!(q.get(&scope(&p2, "gone")).await.unwrap().is_some());
    assert!(q
        .create(&scope(&p, "gone"), &Metadata::new())
        .await
        .unwrap());
}

/// A healthy backend answers the ping.
pub(crate) async fn queue_is_alive(backend: Backend, _clock: ManualClock) {
    assert!(backend.queues.is_alive().await);
}

// --------------------------------------------------------------- messages

/// Post returns ids in input order; listing returns the messages as posted.
pub(crate) async fn post_keeps_input_order(backend: Backend, clock: ManualClock) {
    let s = scope(&project(), "order");
    let bodies = [
        json!({"event": "created", "nested": {"k": [1, 2, 3]}}),
        json!("a string"),
        json!(42.5),
        json!(null),
        json!([1, "two", {"three": 3}]),
    ];
    let mut messages: Vec<NewMessage> = bodies
        .iter()
        .map(|b| new_message(b.clone(), 120, 0))
        .collect();
    messages[1].checksum = Some("MD5:0123456789abcdef0123456789abcdef".to_owned());
    let posted_at = clock.now_ms();
    let first = backend
        .messages
        .post(&s, CLIENT, messages)
        .await
        .unwrap()
        .ids;
    assert_eq!(first.len(), 5);
    assert_eq!(
        first.iter().collect::<HashSet<_>>().len(),
        5,
        "ids are unique"
    );

    let page = backend.messages.list(&s, &list_all(10)).await.unwrap();
    assert_eq!(ids(&page.messages), first);
    for (m, b) in page.messages.iter().zip(&bodies) {
        assert_eq!(&body(m), b);
        assert_eq!(m.ttl, 120);
        assert_eq!(m.created_ms, posted_at);
        assert_eq!(m.claim_id, None);
        assert_eq!(m.claim_count, 0);
    }
    assert_eq!(page.messages[0].checksum, None);
    assert_eq!(
        page.messages[1].checksum.as_deref(),
        Some("MD5:0123456789abcdef0123456789abcdef")
    );
    // The body is kept byte for byte.
    assert_eq!(page.messages[0].body.get(), raw(bodies[0].clone()).get());

    clock.advance_secs(5);
    let second = post_n(&backend, &s, 2).await;
    let all = all_ids(&backend, &s).await;
    assert_eq!(all, [first.clone(), second].concat());
    let m = backend.messages.get(&s, &first[0]).await.unwrap().unwrap();
    assert_eq!(m.age(clock.now_ms()), 5);
}

/// Markers page through a queue; an unknown marker starts over; a marker
/// stays valid after its message is deleted.
pub(crate) async fn list_markers_and_paging(backend: Backend, _clock: ManualClock) {
    let s = scope(&project(), "paging");
    let posted = post_n(&backend, &s, 7).await;
    let m = &backend.messages;

    let mut query = list_default(3);
    let p1 = m.list(&s, &query).await.unwrap();
    assert_eq!(ids(&p1.messages), posted[0..3]);
    assert!(p1.next_marker.is_some());
    query.marker = p1.next_marker.clone();
    let p2 = m.list(&s, &query).await.unwrap();
    assert_eq!(ids(&p2.messages), posted[3..6]);
    query.marker = p2.next_marker.clone();
    let p3 = m.list(&s, &query).await.unwrap();
    assert_eq!(ids(&p3.messages), posted[6..7]);
    query.marker = p3.next_marker.clone();
    let p4 = m.list(&s, &query).await.unwrap();
    assert!(p4.messages.is_empty());
    assert_eq!(p4.next_marker, None);

    for unknown in ["not-a-marker", "", "-1"] {
        let q = ListQuery {
            marker: Some(unknown.to_owned()),
            ..list_default(3)
        };
        let page = m.list(&s, &q).await.unwrap();
        assert_eq!(ids(&page.messages), posted[0..3], "marker {unknown:?}");
    }

    // The message the marker points at is deleted: the next page is unchanged.
    m.delete(&s, &posted[2], None).await.unwrap();
    let q = ListQuery {
        marker: p1.next_marker.clone(),
        ..list_default(3)
    };
    assert_eq!(ids(&m.list(&s, &q).await.unwrap().messages), posted[3..6]);
    // A page that ends early still yields a marker to continue from.
    let q = ListQuery {
        marker: p2.next_marker.clone(),
        ..list_default(20)
    };
    let page = m.list(&s, &q).await.unwrap();
    assert_eq!(ids(&page.messages), posted[6..7]);
    assert!(page.next_marker.is_some());
}

/// Without echo, the caller's own messages are hidden.
pub(crate) async fn list_echo_filter(backend: Backend, _clock: ManualClock) {
    let s = scope(&project(), "echo");
    let other_client = "0b5c8f3e-9d2a-4c71-8e6f-3a2b1c0d9e8f";
    let mut mine = Vec::new();
    let mut theirs = Vec::new();
    for i in 0..2 {
        let msg = || vec![new_message(json!(i), 300, 0)];
        mine.extend(backend.messages.post(&s, CLIENT, msg()).await.unwrap().ids);
        theirs.extend(
            backend
                .messages
                .post(&s, other_client, msg())
                .await
                .unwrap()
                .ids,
        );
    }
    let q = ListQuery {
        echo: false,
        ..list_default(10)
    };
    let page = backend.messages.list(&s, &q).await.unwrap();
    assert_eq!(ids(&page.messages), theirs);
    let q = ListQuery {
        echo: true,
        ..list_default(10)
    };
    let page = backend.messages.list(&s, &q).await.unwrap();
    assert_eq!(page.messages.len(), 4);
    assert_eq!(page.messages[0].id, mine[0]);
}

/// Claimed messages are listed only with `include_claimed`, carrying their claim id.
pub(crate) async fn list_include_claimed(backend: Backend, _clock: ManualClock) {
    let s = scope(&project(), "claimed");
    let posted = post_n(&backend, &s, 4).await;
    let c = backend
        .claims
        .create(&s, &claim(60, 60, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&c.messages), posted[0..2]);

    let page = backend.messages.list(&s, &list_default(10)).await.unwrap();
    assert_eq!(ids(&page.messages), posted[2..4]);
    let q = ListQuery {
        include_claimed: true,
        ..list_default(10)
    };
    let page = backend.messages.list(&s, &q).await.unwrap();
    assert_eq!(ids(&page.messages), posted);
    assert_eq!(page.messages[0].claim_id.as_deref(), Some(c.id.as_str()));
    assert_eq!(page.messages[1].claim_id.as_deref(), Some(c.id.as_str()));
    assert_eq!(page.messages[2].claim_id, None);
}

/// Delayed messages are listed only with `include_delayed` until the delay passes.
pub(crate) async fn list_include_delayed(backend: Backend, clock: ManualClock) {
    let s = scope(&project(), "delayed");
    let posted = backend
        .messages
        .post(
            &s,
            CLIENT,
            vec![
                new_message(json!("later"), 300, 60),
                new_message(json!("now"), 300, 0),
            ],
        )
        .await
        .unwrap()
        .ids;
    let page = backend.messages.list(&s, &list_default(10)).await.unwrap();
    assert_eq!(ids(&page.messages), posted[1..]);
    let q = ListQuery {
        include_delayed: true,
        ..list_default(10)
    };
    assert_eq!(
        ids(&backend.messages.list(&s, &q).await.unwrap().messages),
        posted
    );
    // A delayed message can still be read by id.
    assert!(backend
        .messages
        .get(&s, &posted[0])
        .await
        .unwrap()
        .is_some());

    clock.advance_secs(61);
    let page = backend.messages.list(&s, &list_default(10)).await.unwrap();
    assert_eq!(ids(&page.messages), posted);
}

/// A message is invisible, and untouchable, through another queue or project.
pub(crate) async fn messages_are_scoped_to_project_and_queue(
    backend: Backend,
    _clock: ManualClock,
) {
    let (p, p2) = (project(), project());
    let home = scope(&p, "home");
    let sibling = scope(&p, "sibling");
    let foreign = scope(&p2, "home");
    let posted = post_n(&backend, &home, 2).await;
    let m = &backend.messages;

    assert!(m.get(&home, &posted[0]).await.unwrap().is_some());
    for elsewhere in [&sibling, &foreign] {
        assert!(m.get(elsewhere, &posted[0]).await.unwrap().is_none());
        assert!(m.bulk_get(elsewhere, &posted).await.unwrap().is_empty());
        assert!(m
            .list(elsewhere, &list_all(10))
            .await
            .unwrap()
            .messages
            .is_empty());
        assert_eq!(m.stats(elsewhere).await.unwrap().total, 0);
        assert!(m.pop(elsewhere, 10).await.unwrap().is_empty());
        assert!(backend
            .claims
            .create(elsewhere, &claim(60, 60, 10))
            .await
            .unwrap()
            .is_none());
        m.delete(elsewhere, &posted[0], None).await.unwrap();
        m.bulk_delete(elsewhere, &posted, None).await.unwrap();
        m.purge(elsewhere).await.unwrap();
    }
    let mut wanted = posted.clone();
    wanted.push("00000000-0000-4000-8000-000000000000".to_owned());
    let found = m.bulk_get(&home, &wanted).await.unwrap();
    assert_eq!(
        found.iter().map(|m| m.id.clone()).collect::<HashSet<_>>(),
        posted.iter().cloned().collect()
    );
    assert_eq!(all_ids(&backend, &home).await, posted);
}

/// A claim is invisible, and untouchable, through another queue or project.
pub(crate) async fn claims_are_scoped_to_project_and_queue(backend: Backend, _clock: ManualClock) {
    let (p, p2) = (project(), project());
    let home = scope(&p, "home");
    let posted = post_n(&backend, &home, 2).await;
    let c = backend
        .claims
        .create(&home, &claim(60, 60, 1))
        .await
        .unwrap()
        .unwrap();

    for elsewhere in [scope(&p, "sibling"), scope(&p2, "home")] {
        assert!(backend
            .claims
            .get(&elsewhere, &c.id)
            .await
            .unwrap()
            .is_none());
        assert!(matches!(
            backend.claims.update(&elsewhere, &c.id, 300, 60).await,
            Err(StorageError::ClaimNotFound)
        ));
        backend.claims.delete(&elsewhere, &c.id).await.unwrap();
        // Presenting the claim through another scope deletes nothing.
        backend
            .messages
            .delete(&elsewhere, &posted[0], Some(&c.id))
            .await
            .unwrap();
    }
    let info = backend.claims.get(&home, &c.id).await.unwrap().unwrap();
    assert_eq!(ids(&info.messages), posted[0..1]);
    assert_eq!(info.ttl, 60);
}

/// Messages vanish once their TTL has passed.
pub(crate) async fn message_ttl_expiry(backend: Backend, clock: ManualClock) {
    let s = scope(&project(), "ttl");
    let m = &backend.messages;
    let posted = m
        .post(
            &s,
            CLIENT,
            vec![new_message(json!(1), 60, 0), new_message(json!(2), 120, 0)],
        )
        .await
        .unwrap()
        .ids;
    clock.advance_secs(59);
    assert_eq!(all_ids(&backend, &s).await, posted);
    clock.advance_secs(2);
    assert!(m.get(&s, &posted[0]).await.unwrap().is_none());
    assert_eq!(ids(&m.bulk_get(&s, &posted).await.unwrap()), posted[1..]);
    assert_eq!(all_ids(&backend, &s).await, posted[1..]);
    assert_eq!(m.stats(&s).await.unwrap().total, 1);
    // Deleting an expired message is not an error.
    m.delete(&s, &posted[0], None).await.unwrap();
    clock.advance_secs(60);
    assert!(all_ids(&backend, &s).await.is_empty());
    assert!(m.pop(&s, 5).await.unwrap().is_empty());
    assert!(backend
        .claims
        .create(&s, &claim(60, 60, 5))
        .await
        .unwrap()
        .is_none());
    assert_eq!(m.stats(&s).await.unwrap().total, 0);
}

/// In one batch, each message expires on its own ttl, whatever its
/// neighbours' (stores may index a batch's expiries together).
pub(crate) async fn mixed_ttls_in_one_batch(backend: Backend, clock: ManualClock) {
    let s = scope(&project(), "mixed-ttl");
    let m = &backend.messages;
    let ttls = [60, 60, 120, 60, 180];
    let posted = m
        .post(
            &s,
            CLIENT,
            ttls.iter().map(|&t| new_message(json!(t), t, 0)).collect(),
        )
        .await
        .unwrap()
        .ids;
    clock.advance_secs(61);
    assert_eq!(
        all_ids(&backend, &s).await,
        [posted[2].clone(), posted[4].clone()]
    );
    assert_eq!(m.stats(&s).await.unwrap().total, 2);
    clock.advance_secs(60);
    assert_eq!(all_ids(&backend, &s).await, [posted[4].clone()]);
    clock.advance_secs(60);
    assert!(all_ids(&backend, &s).await.is_empty());
    assert_eq!(m.stats(&s).await.unwrap().total, 0);
}

/// Unclaimed messages keep one rank order through claims, releases and
/// delays (stores may keep messages a claim never looked at apart from
/// those it released or passed over): listings page across both, stats
/// count both, and a claim takes the oldest first.
pub(crate) async fn unclaimed_order_across_claims_and_delays(backend: Backend, clock: ManualClock) {
    let s = scope(&project(), "unclaimed-order");
    let posted = backend
        .messages
        .post(
            &s,
            CLIENT,
            (0..6)
                .map(|i| new_message(json!(i), 300, if i == 1 { 30 } else { 0 }))
                .collect(),
        )
        .await
        .unwrap()
        .ids;
    let at = |is: &[usize]| is.iter().map(|&i| posted[i].clone()).collect::<Vec<_>>();
    let unclaimed = |limit| ListQuery {
        include_delayed: true,
        ..list_default(limit)
    };
    let pages = |limit| {
        let backend = backend.clone();
        let s = s.clone();
        async move {
            let mut query = unclaimed(limit);
            let mut out = Vec::new();
            loop {
                let page = backend.messages.list(&s, &query).await.unwrap();
                if page.messages.is_empty() {
                    return out;
                }
                out.push(ids(&page.messages));
                query.marker = page.next_marker;
            }
        }
    };

    // The delayed message is passed over, not taken.
    let c = backend
        .claims
        .create(&s, &claim(60, 0, 3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&c.messages), at(&[0, 2, 3]));
    let stats = backend.messages.stats(&s).await.unwrap();
    assert_eq!((stats.claimed, stats.free, stats.total), (3, 3, 6));
    assert_eq!(pages(2).await, [at(&[1, 4]), at(&[5])]);

    // Released messages come back in their place.
    backend.claims.delete(&s, &c.id).await.unwrap();
    let stats = backend.messages.stats(&s).await.unwrap();
    assert_eq!((stats.claimed, stats.free, stats.total), (0, 6, 6));
    assert_eq!(pages(4).await, [at(&[0, 1, 2, 3]), at(&[4, 5])]);

    // Once its delay is over, the oldest goes first.
    clock.advance_secs(30);
    let c = backend
        .claims
        .create(&s, &claim(60, 0, 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&c.messages), posted);
    assert!(pages(10).await.is_empty());
}

/// Queues are implicit for messages: no record is needed, and none is created.
pub(crate) async fn post_and_claim_without_queue_record(backend: Backend, _clock: ManualClock) {
    let s = scope(&project(), "implicit");
    assert!(backend
        .claims
        .create(&s, &claim(60, 60, 10))
        .await
        .unwrap()
        .is_none());
    let posted = post_n(&backend, &s, 1).await;
    assert_eq!(all_ids(&backend, &s).await, posted);
    assert_eq!(backend.queues.get(&s).await.unwrap(), None);
    let c = backend
        .claims
        .create(&s, &claim(60, 60, 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&c.messages), posted);
}

// ----------------------------------------------------------------- claims

/// Create, get, renew and release a claim.
pub(crate) async fn claim_lifecycle(backend: Backend, clock: ManualClock) {
    let s = scope(&project(), "claims");
    let posted = post_n(&backend, &s, 3).await;
    let created_at = clock.now_ms();
    let c = backend
        .claims
        .create(&s, &claim(60, 30, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&c.messages), posted[0..2]);
    for m in &c.messages {
        assert_eq!(m.claim_id.as_deref(), Some(c.id.as_str()));
        assert_eq!(m.ttl, 3600, "long-lived messages keep their ttl");
    }

    let info = backend.claims.get(&s, &c.id).await.unwrap().unwrap();
    assert_eq!(info.id, c.id);
    assert_eq!(info.ttl, 60);
    assert_eq!(info.updated_ms, created_at);
    assert_eq!(ids(&info.messages), posted[0..2]);
    let m = backend.messages.get(&s, &posted[0]).await.unwrap().unwrap();
    assert_eq!(m.claim_id.as_deref(), Some(c.id.as_str()));

    clock.advance_secs(10);
    backend.claims.update(&s, &c.id, 120, 30).await.unwrap();
    let info = backend.claims.get(&s, &c.id).await.unwrap().unwrap();
    assert_eq!(info.ttl, 120);
    assert_eq!(info.updated_ms, clock.now_ms());
    // Renewed from now: alive past the original end.
    clock.advance_secs(100);
    assert!(backend.claims.get(&s, &c.id).await.unwrap().is_some());

    backend.claims.delete(&s, &c.id).await.unwrap();
    assert!(backend.claims.get(&s, &c.id).await.unwrap().is_none());
    let page = backend.messages.list(&s, &list_default(10)).await.unwrap();
    assert_eq!(
        ids(&page.messages),
        posted,
        "release makes the messages free again"
    );
    assert!(page.messages.iter().all(|m| m.claim_id.is_none()));
    assert!(matches!(
        backend.claims.update(&s, &c.id, 60, 60).await,
        Err(StorageError::ClaimNotFound)
    ));
    backend.claims.delete(&s, &c.id).await.unwrap();

    let unknown = "5d0c9a2b-7e6f-4b3a-8c1d-2e3f4a5b6c7d";
    assert!(backend.claims.get(&s, unknown).await.unwrap().is_none());
    assert!(backend
        .claims
        .get(&s, "not a uuid")
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        backend.claims.update(&s, unknown, 60, 60).await,
        Err(StorageError::ClaimNotFound)
    ));
}

/// A message that would die before its claim ends lives until claim end + grace.
pub(crate) async fn claim_extends_short_lived_messages(backend: Backend, clock: ManualClock) {
    let s = scope(&project(), "extend");
    let posted = backend
        .messages
        .post(
            &s,
            CLIENT,
            vec![
                new_message(json!("short"), 60, 0),
                new_message(json!("long"), 3600, 0),
            ],
        )
        .await
        .unwrap()
        .ids;
    let c = backend
        .claims
        .create(&s, &claim(100, 30, 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.messages[0].ttl, 130);
    assert_eq!(c.messages[1].ttl, 3600);

    clock.advance_secs(101);
    // The claim is over but the message lives on through the grace period.
    let m = backend.messages.get(&s, &posted[0]).await.unwrap().unwrap();
    assert_eq!(m.claim_id, None);
    assert_eq!(m.ttl, 130);
    clock.advance_secs(30);
    assert!(backend
        .messages
        .get(&s, &posted[0])
        .await
        .unwrap()
        .is_none());
    assert!(backend
        .messages
        .get(&s, &posted[1])
        .await
        .unwrap()
        .is_some());
}

/// An expired claim is gone and its messages can be claimed again; deleting
/// the old claim later does not disturb the new one.
pub(crate) async fn claim_expiry_releases_messages(backend: Backend, clock: ManualClock) {
    let s = scope(&project(), "expiry");
    let posted = post_n(&backend, &s, 2).await;
    let old = backend
        .claims
        .create(&s, &claim(60, 60, 10))
        .await
        .unwrap()
        .unwrap();
    assert!(backend
        .claims
        .create(&s, &claim(60, 60, 10))
        .await
        .unwrap()
        .is_none());
    clock.advance_secs(60);
    assert!(backend.claims.get(&s, &old.id).await.unwrap().is_none());
    assert!(matches!(
        backend.claims.update(&s, &old.id, 60, 60).await,
        Err(StorageError::ClaimNotFound)
    ));
    let m = backend.messages.get(&s, &posted[0]).await.unwrap().unwrap();
    assert_eq!(m.claim_id, None);
    assert_eq!(backend.messages.stats(&s).await.unwrap().claimed, 0);

    let new = backend
        .claims
        .create(&s, &claim(60, 60, 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&new.messages), posted);
    backend.claims.delete(&s, &old.id).await.unwrap();
    let info = backend.claims.get(&s, &new.id).await.unwrap().unwrap();
    assert_eq!(ids(&info.messages), posted);
}

/// Renewing a claim extends messages that would die before it ends.
pub(crate) async fn claim_renew_extends_message_life(backend: Backend, clock: ManualClock) {
    let s = scope(&project(), "renew");
    let posted = backend
        .messages
        .post(&s, CLIENT, vec![new_message(json!("m"), 100, 0)])
        .await
        .unwrap()
        .ids;
    let c = backend
        .claims
        .create(&s, &claim(60, 10, 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.messages[0].ttl, 100, "outlives the claim: untouched");
    clock.advance_secs(50);
    // Claim now ends at t0+170 > t0+100: the message lives to t0+190.
    backend.claims.update(&s, &c.id, 120, 20).await.unwrap();
    let info = backend.claims.get(&s, &c.id).await.unwrap().unwrap();
    assert_eq!(info.messages[0].ttl, 140);
    clock.advance_secs(130);
    let m = backend.messages.get(&s, &posted[0]).await.unwrap().unwrap();
    assert_eq!(m.claim_id, None, "the claim ended at t0+170");
    clock.advance_secs(10);
    assert!(backend
        .messages
        .get(&s, &posted[0])
        .await
        .unwrap()
        .is_none());
}

/// A claim never takes a message held by another live claim, even when it
/// comes after a claimable one (the reference gets this wrong).
pub(crate) async fn live_claim_messages_never_taken_by_another(
    backend: Backend,
    _clock: ManualClock,
) {
    let s = scope(&project(), "exclusive");
    let posted = post_n(&backend, &s, 5).await;
    let a = backend
        .claims
        .create(&s, &claim(300, 60, 1))
        .await
        .unwrap()
        .unwrap();
    let b = backend
        .claims
        .create(&s, &claim(300, 60, 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&a.messages), posted[0..1]);
    assert_eq!(ids(&b.messages), posted[1..2]);
    backend.claims.delete(&s, &a.id).await.unwrap();

    // posted[0] is free again, posted[1] is still b's.
    let c = backend
        .claims
        .create(&s, &claim(300, 60, 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&c.messages), [&posted[0..1], &posted[2..5]].concat());
    assert!(backend
        .claims
        .create(&s, &claim(300, 60, 10))
        .await
        .unwrap()
        .is_none());
    let info = backend.claims.get(&s, &b.id).await.unwrap().unwrap();
    assert_eq!(ids(&info.messages), posted[1..2]);
}

/// Concurrent claimers never share a message: each is claimed exactly once.
pub(crate) async fn claims_are_exclusive_under_concurrency(backend: Backend, _clock: ManualClock) {
    let s = scope(&project(), "race");
    let mut posted = Vec::new();
    for _ in 0..5 {
        posted.extend(post_n(&backend, &s, 20).await);
    }
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (backend, s) = (backend.clone(), s.clone());
            tokio::spawn(async move {
                let mut won = Vec::new();
                while let Some(c) = backend.claims.create(&s, &claim(300, 60, 3)).await.unwrap() {
                    assert!(!c.messages.is_empty());
                    won.extend(ids(&c.messages));
                }
                won
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.expect("claim task"));
    }
    assert_eq!(claimed.len(), 100, "every message claimed exactly once");
    let unique: HashSet<_> = claimed.iter().collect();
    assert_eq!(unique, posted.iter().collect());
    let stats = backend.messages.stats(&s).await.unwrap();
    assert_eq!((stats.claimed, stats.free), (100, 0));
}

/// Delayed messages are neither claimed nor popped until the delay passes.
pub(crate) async fn delayed_messages_not_claimed_nor_popped(backend: Backend, clock: ManualClock) {
    let p = project();
    let s = scope(&p, "delay");
    let posted = backend
        .messages
        .post(
            &s,
            CLIENT,
            vec![
                new_message(json!("later"), 300, 60),
                new_message(json!("now"), 300, 0),
            ],
        )
        .await
        .unwrap()
        .ids;
    let c = backend
        .claims
        .create(&s, &claim(300, 60, 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&c.messages), posted[1..]);
    assert!(backend.messages.pop(&s, 10).await.unwrap().is_empty());
    let stats = backend.messages.stats(&s).await.unwrap();
    assert_eq!((stats.claimed, stats.free, stats.total), (1, 1, 2));

    clock.advance_secs(60);
    let c = backend
        .claims
        .create(&s, &claim(60, 60, 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&c.messages), posted[..1]);

    let popq = scope(&p, "delay-pop");
    let delayed = backend
        .messages
        .post(&popq, CLIENT, vec![new_message(json!("d"), 300, 30)])
        .await
        .unwrap()
        .ids;
    assert!(backend.messages.pop(&popq, 10).await.unwrap().is_empty());
    clock.advance_secs(30);
    assert_eq!(
        ids(&backend.messages.pop(&popq, 10).await.unwrap()),
        delayed
    );
}

/// With `max_claim_count = 2`, the third claim moves the message to the
/// dead-letter queue (ttl rewritten, expiry kept) instead of claiming it.
pub(crate) async fn dead_letter_moves_after_max_claims(backend: Backend, clock: ManualClock) {
    let p = project();
    let s = scope(&p, "work");
    let dlq = scope(&p, "work-dlq");
    let policy = ClaimRequest {
        dead_letter: Some(DeadLetter {
            max_claim_count: 2,
            queue: dlq.queue.clone(),
            ttl: Some(500),
        }),
        ..claim(60, 60, 10)
    };
    let posted = post_n(&backend, &s, 1).await;
    for round in 1..=2 {
        let c = backend.claims.create(&s, &policy).await.unwrap().unwrap();
        assert_eq!(ids(&c.messages), posted);
        assert_eq!(c.messages[0].claim_count, round);
        backend.claims.delete(&s, &c.id).await.unwrap();
    }
    // A message whose claim expired is a candidate too.
    let c = backend.claims.create(&s, &claim(60, 60, 10)).await.unwrap();
    assert!(c.is_some());
    clock.advance_secs(60);

    assert!(
        backend.claims.create(&s, &policy).await.unwrap().is_none(),
        "every candidate moved"
    );
    assert!(backend
        .messages
        .get(&s, &posted[0])
        .await
        .unwrap()
        .is_none());
    assert_eq!(backend.messages.stats(&s).await.unwrap().total, 0);

    let moved = backend
        .messages
        .get(&dlq, &posted[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moved.ttl, 500);
    assert_eq!(moved.claim_id, None);
    assert_eq!(body(&moved), json!({"n": 0}));
    let stats = backend.messages.stats(&dlq).await.unwrap();
    assert_eq!((stats.claimed, stats.free, stats.total), (0, 1, 1));
    assert_eq!(all_ids(&backend, &dlq).await, posted);

    // Expiry time is kept (posted with one hour), not recomputed from the new ttl.
    clock.advance_secs(1000);
    assert!(backend
        .messages
        .get(&dlq, &posted[0])
        .await
        .unwrap()
        .is_some());
    let c = backend
        .claims
        .create(&dlq, &claim(60, 60, 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&c.messages), posted);
    clock.advance_secs(2600);
    assert!(backend
        .messages
        .get(&dlq, &posted[0])
        .await
        .unwrap()
        .is_none());
}

/// Without a dead-letter policy claims are not counted.
pub(crate) async fn claim_count_stays_zero_without_dead_letter(
    backend: Backend,
    _clock: ManualClock,
) {
    let s = scope(&project(), "uncounted");
    let posted = post_n(&backend, &s, 1).await;
    for _ in 0..3 {
        let c = backend
            .claims
            .create(&s, &claim(60, 60, 10))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ids(&c.messages), posted);
        assert_eq!(c.messages[0].claim_count, 0);
        backend.claims.delete(&s, &c.id).await.unwrap();
    }
}

// ------------------------------------------------------- delete, pop, stats

/// Each claim rule of single delete, and deletion with the right claim.
pub(crate) async fn delete_honours_claim_rules(backend: Backend, clock: ManualClock) {
    let s = scope(&project(), "delete");
    let posted = post_n(&backend, &s, 4).await;
    let m = &backend.messages;
    let c = backend
        .claims
        .create(&s, &claim(60, 60, 2))
        .await
        .unwrap()
        .unwrap();
    let d = backend
        .claims
        .create(&s, &claim(300, 60, 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&d.messages), posted[2..3]);
    let bogus = "5d0c9a2b-7e6f-4b3a-8c1d-2e3f4a5b6c7d";

    assert!(matches!(
        m.delete(&s, &posted[0], None).await,
        Err(StorageError::MessageIsClaimed)
    ));
    assert!(matches!(
        m.delete(&s, &posted[3], Some(&c.id)).await,
        Err(StorageError::MessageNotClaimed)
    ));
    assert!(matches!(
        m.delete(&s, &posted[0], Some(bogus)).await,
        Err(StorageError::ClaimNotFound)
    ));
    assert!(matches!(
        m.delete(&s, &posted[0], Some(&d.id)).await,
        Err(StorageError::MessageIsClaimed)
    ));
    assert_eq!(
        all_ids(&backend, &s).await,
        posted,
        "failed deletes delete nothing"
    );

    m.delete(&s, &posted[0], Some(&c.id)).await.unwrap();
    assert!(m.get(&s, &posted[0]).await.unwrap().is_none());
    let info = backend.claims.get(&s, &c.id).await.unwrap().unwrap();
    assert_eq!(
        ids(&info.messages),
        posted[1..2],
        "deleted message left its claim"
    );

    m.delete(&s, &posted[3], None).await.unwrap();
    let missing = "00000000-0000-4000-8000-000000000000";
    m.delete(&s, missing, None).await.unwrap();
    m.delete(&s, missing, Some(&c.id)).await.unwrap();

    // Once c has expired its message is free to delete without a claim.
    clock.advance_secs(60);
    m.delete(&s, &posted[1], None).await.unwrap();
    assert_eq!(all_ids(&backend, &s).await, posted[2..3]);
}

/// Bulk delete skips unknown ids; with claim ids it is all or nothing.
pub(crate) async fn bulk_delete_and_claim_mismatch(backend: Backend, _clock: ManualClock) {
    let s = scope(&project(), "bulk");
    let posted = post_n(&backend, &s, 5).await;
    let m = &backend.messages;
    let unknown = "00000000-0000-4000-8000-000000000000".to_owned();
    m.bulk_delete(&s, &[posted[0].clone(), posted[1].clone(), unknown], None)
        .await
        .unwrap();
    assert_eq!(all_ids(&backend, &s).await, posted[2..]);

    let c = backend
        .claims
        .create(&s, &claim(60, 60, 1))
        .await
        .unwrap()
        .unwrap();
    let d = backend
        .claims
        .create(&s, &claim(60, 60, 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&c.messages), posted[2..3]);
    assert_eq!(ids(&d.messages), posted[3..4]);

    // posted[4] is not claimed at all.
    let r = m
        .bulk_delete(&s, &posted[2..5], Some(&[c.id.clone(), d.id.clone()]))
        .await;
    assert!(matches!(r, Err(StorageError::ClaimMismatch)));
    // posted[3] is held by a claim that was not presented.
    let r = m
        .bulk_delete(&s, &posted[2..4], Some(std::slice::from_ref(&c.id)))
        .await;
    assert!(matches!(r, Err(StorageError::ClaimMismatch)));
    assert_eq!(all_ids(&backend, &s).await, posted[2..], "nothing deleted");

    m.bulk_delete(&s, &posted[2..4], Some(&[d.id.clone(), c.id.clone()]))
        .await
        .unwrap();
    assert_eq!(all_ids(&backend, &s).await, posted[4..]);
    assert!(backend
        .claims
        .get(&s, &c.id)
        .await
        .unwrap()
        .unwrap()
        .messages
        .is_empty());
}

/// Pop removes and returns the oldest claimable messages.
pub(crate) async fn pop_takes_oldest_claimable(backend: Backend, _clock: ManualClock) {
    let s = scope(&project(), "pop");
    let posted = post_n(&backend, &s, 5).await;
    let m = &backend.messages;
    let c = backend
        .claims
        .create(&s, &claim(60, 60, 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&c.messages), posted[0..1]);

    let popped = m.pop(&s, 2).await.unwrap();
    assert_eq!(ids(&popped), posted[1..3]);
    assert_eq!(body(&popped[0]), json!({"n": 1}));
    assert!(popped.iter().all(|m| m.claim_id.is_none()));
    assert!(m.get(&s, &posted[1]).await.unwrap().is_none());
    assert_eq!(ids(&m.pop(&s, 10).await.unwrap()), posted[3..5]);
    assert!(m.pop(&s, 10).await.unwrap().is_empty());
    assert_eq!(
        all_ids(&backend, &s).await,
        posted[0..1],
        "the claimed message stays"
    );
    assert!(m
        .pop(&scope(&project(), "never"), 3)
        .await
        .unwrap()
        .is_empty());
}

/// Stats count live messages: claimed, free (delayed included), total, and
/// name the oldest and newest.
pub(crate) async fn stats_counts_and_stamps(backend: Backend, clock: ManualClock) {
    let s = scope(&project(), "stats");
    let m = &backend.messages;
    let empty = m.stats(&s).await.unwrap();
    assert_eq!(empty, Default::default());

    let t0 = clock.now_ms();
    let first = post_n(&backend, &s, 2).await;
    clock.advance_secs(10);
    let last = m
        .post(&s, CLIENT, vec![new_message(json!("d"), 120, 30)])
        .await
        .unwrap()
        .ids;
    backend
        .claims
        .create(&s, &claim(60, 60, 1))
        .await
        .unwrap()
        .unwrap();

    let stats = m.stats(&s).await.unwrap();
    assert_eq!((stats.claimed, stats.free, stats.total), (1, 2, 3));
    let oldest = stats.oldest.unwrap();
    let newest = stats.newest.unwrap();
    assert_eq!(
        (oldest.id.as_str(), oldest.created_ms),
        (first[0].as_str(), t0)
    );
    assert_eq!(
        (newest.id.as_str(), newest.created_ms),
        (last[0].as_str(), t0 + 10_000)
    );

    // The claim ends (t0+70), then the newest message expires (t0+130).
    clock.advance_secs(121);
    let stats = m.stats(&s).await.unwrap();
    assert_eq!((stats.claimed, stats.free, stats.total), (0, 2, 2));
    assert_eq!(stats.newest.unwrap().id, first[1]);
    clock.advance_secs(3600);
    assert_eq!(m.stats(&s).await.unwrap(), Default::default());
}

/// Purge removes every message and claim of the queue, and nothing else.
pub(crate) async fn purge_removes_messages_and_claims(backend: Backend, _clock: ManualClock) {
    let p = project();
    let s = scope(&p, "purge");
    let other = scope(&p, "keep");
    backend.queues.create(&s, &Metadata::new()).await.unwrap();
    post_n(&backend, &s, 3).await;
    let kept = post_n(&backend, &other, 2).await;
    let c = backend
        .claims
        .create(&s, &claim(60, 60, 1))
        .await
        .unwrap()
        .unwrap();
    let c_other = backend
        .claims
        .create(&other, &claim(60, 60, 1))
        .await
        .unwrap()
        .unwrap();

    backend.messages.purge(&s).await.unwrap();
    assert!(all_ids(&backend, &s).await.is_empty());
    assert_eq!(
        backend.messages.stats(&s).await.unwrap(),
        Default::default()
    );
    assert!(backend.claims.get(&s, &c.id).await.unwrap().is_none());
    assert!(
        backend.queues.get(&s).await.unwrap().is_some(),
        "the queue record stays"
    );

    assert_eq!(all_ids(&backend, &other).await, kept);
    assert!(backend
        .claims
        .get(&other, &c_other.id)
        .await
        .unwrap()
        .is_some());
    let again = post_n(&backend, &s, 1).await;
    assert_eq!(all_ids(&backend, &s).await, again);
}
