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

mod catalogue;
mod claims;
mod limits;
mod messages;
mod queues;
mod removal;

pub(crate) use catalogue::*;
pub(crate) use claims::*;
pub(crate) use limits::*;
pub(crate) use messages::*;
pub(crate) use queues::*;
pub(crate) use removal::*;

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
///
/// `conformance_tests!(open, heavy: open_heavy)` opens the behaviours that
/// write tens of thousands of records (the ones past Lua's `unpack` limit,
/// a 20,000-message purge, 1,000 pools) with `open_heavy`: a driver whose
/// test server is slow at that volume runs them on demand.
macro_rules! conformance_tests {
    ($open:path) => {
        $crate::storage::conformance::conformance_tests!($open, heavy: $open);
    };
    ($open:path, heavy: $heavy:path) => {
        $crate::storage::conformance::conformance_tests!(@each $heavy;
            dead_letter_thousands_in_one_claim,
            mass_expiry_leaves_queue_usable,
            expiry_past_collection_budget_stays_invisible,
            bulk_operations_past_unpack_limit,
            purge_of_a_large_queue,
            queue_list_past_unpack_limit,
            catalogue_pool_bound,
            claims_reach_past_many_delayed_messages,
            claims_reach_past_many_claimed_messages,
        );
        $crate::storage::conformance::conformance_tests!(@each $open;
            queue_create_get_and_metadata,
            queue_list_paging_and_count,
            topic_names_are_their_own_namespace,
            queue_delete,
            queue_is_alive,
            post_keeps_input_order,
            list_markers_and_paging,
            marker_of_a_message_id,
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
            catalogue_pools,
            catalogue_flavors,
            catalogue_mapping,
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
