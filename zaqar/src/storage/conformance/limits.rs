//! Behaviour at the limits, for every driver: absurd durations that reach
//! a store directly (past the api core's bounds) and list arguments in the
//! thousands (past Lua's `unpack` limit of about 8,000 values, which once
//! made a Redis claim lose every message it dead-lettered and a queue with
//! 9,000 messages expiring at once answer 503 for ever).
//!
//! Sizes here are deliberately at or past 8,000 items per list. The store
//! API takes any `limit`, so claims and pops are called with limits far
//! above the api core's defaults.

use serde_json::json;

use super::{all_ids_paged, claim, ids, list_default, new_message, post_n, project, scope, CLIENT};
use crate::storage::clock::ManualClock;
use crate::storage::deadline::MAX_SECONDS;
use crate::storage::pipeline::Backend;
use crate::storage::{ClaimRequest, DeadLetter, Scope, StorageError};

/// Past Lua's `unpack` limit (LUAI_MAXCSTACK, 8,000).
const PAST_UNPACK: usize = 8_200;

/// Posts `n` messages of one `ttl` in one call (bodies `{"n": i}`).
async fn post_ttl(backend: &Backend, s: &Scope, n: usize, ttl: i64) -> Vec<String> {
    let messages = (0..n)
        .map(|i| new_message(json!({ "n": i }), ttl, 0))
        .collect();
    let ids = backend
        .messages
        .post(s, CLIENT, messages)
        .await
        .expect("post")
        .ids;
    assert_eq!(ids.len(), n);
    ids
}

/// Calls stats until the total is `expected` (a store may collect a large
/// expiry over a few calls; the readers must never show what expired
/// meanwhile). Fails after `calls` calls.
async fn settles_to(backend: &Backend, s: &Scope, expected: u64, calls: usize) {
    let mut seen = Vec::new();
    for _ in 0..calls {
        let total = backend.messages.stats(s).await.expect("stats").total;
        if total == expected {
            return;
        }
        seen.push(total);
    }
    panic!("stats never reached {expected} in {calls} calls: {seen:?}");
}

/// A duration no store may write, whatever the api core let through, is
/// refused before anything changes: a renewal with a grace of 9e18 s (it
/// once deleted every message of a Redis queue, and made SQLite messages
/// immortal), absurd or negative claim ttls, message ttls and delays. A
/// large but representable claim ttl (a century) is honoured for the
/// claim's messages only, and they still expire when it ends.
pub(crate) async fn absurd_durations_are_refused_and_lose_nothing(
    backend: Backend,
    clock: ManualClock,
) {
    let p = project();
    let s = scope(&p, "absurd");
    let bystander = scope(&p, "bystander");
    let posted = post_n(&backend, &s, 6).await;
    let others = post_n(&backend, &bystander, 2).await;
    let c = backend
        .claims
        .create(&s, &claim(60, 60, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&c.messages), posted[..2]);

    let absurd = [
        (60, 9_000_000_000_000_000_000),
        (60, i64::MAX),
        (60, MAX_SECONDS),
        (i64::MAX, 60),
        (9_000_000_000_000_000_000, 0),
        (60, -1),
        (-1, 60),
        (i64::MIN, i64::MIN),
    ];
    for (ttl, grace) in absurd {
        let renewed = backend.claims.update(&s, &c.id, ttl, grace).await;
        assert!(
            matches!(renewed, Err(StorageError::Rejected(_))),
            "renewal with ttl {ttl}, grace {grace}: {renewed:?}"
        );
        let created = backend.claims.create(&s, &claim(ttl, grace, 10)).await;
        assert!(
            matches!(created, Err(StorageError::Rejected(_))),
            "claim with ttl {ttl}, grace {grace}: {created:?}"
        );
        // Nothing moved: every message is there, the claim still holds
        // its two, the others are still free.
        assert_eq!(all_ids_paged(&backend, &s, 100).await, posted);
        let info = backend.claims.get(&s, &c.id).await.unwrap().unwrap();
        assert_eq!(ids(&info.messages), posted[..2]);
        let free = backend.messages.list(&s, &list_default(20)).await.unwrap();
        assert_eq!(ids(&free.messages), posted[2..]);
        assert_eq!(all_ids_paged(&backend, &bystander, 100).await, others);
    }
    for (ttl, delay) in [(i64::MAX, 0), (MAX_SECONDS, 0), (-60, 0), (60, i64::MAX)] {
        let posted_absurd = backend
            .messages
            .post(&s, CLIENT, vec![new_message(json!("x"), ttl, delay)])
            .await;
        assert!(
            matches!(posted_absurd, Err(StorageError::Rejected(_))),
            "post with ttl {ttl}, delay {delay}: {posted_absurd:?}"
        );
    }
    let stats = backend.messages.stats(&s).await.unwrap();
    assert_eq!((stats.claimed, stats.free, stats.total), (2, 4, 6));

    // A claim of a century: representable, so honoured for the claim's
    // messages (and nothing else).
    let century = 100 * 365 * 86_400;
    backend.claims.update(&s, &c.id, century, 60).await.unwrap();
    clock.advance_secs(3601);
    assert_eq!(all_ids_paged(&backend, &s, 100).await, posted[..2]);
    assert!(all_ids_paged(&backend, &bystander, 100).await.is_empty());
    let m = backend.messages.get(&s, &posted[0]).await.unwrap().unwrap();
    assert_eq!(m.ttl, century + 60);
    // ... and they still end when it does.
    clock.advance_secs(century);
    assert!(all_ids_paged(&backend, &s, 100).await.is_empty());
    assert_eq!(backend.messages.stats(&s).await.unwrap().total, 0);
}

/// One claim dead-letters thousands of messages at once (5,000, the
/// reported case, and past 8,000): every one of them reaches the
/// dead-letter queue, in order, and none is lost. Redis once removed 5,000
/// from the source, then failed to add them to its hand-over outbox: one
/// 503 and every one of them gone.
pub(crate) async fn dead_letter_thousands_in_one_claim(backend: Backend, _clock: ManualClock) {
    let p = project();
    for n in [5_000, PAST_UNPACK] {
        let s = scope(&p, &format!("many-dead-{n}"));
        let dlq = scope(&p, &format!("many-dead-{n}-dlq"));
        let posted = post_ttl(&backend, &s, n, 3600).await;
        let policy = |limit| ClaimRequest {
            dead_letter: Some(DeadLetter {
                max_claim_count: 1,
                queue: dlq.queue.clone(),
                ttl: None,
            }),
            ..claim(60, 60, limit)
        };
        // Every message claimed once (in claims of 1,000), then released.
        let mut claimed = Vec::new();
        let mut claims = Vec::new();
        while claimed.len() < posted.len() {
            let c = backend
                .claims
                .create(&s, &policy(1000))
                .await
                .unwrap()
                .unwrap();
            assert!(c.messages.iter().all(|m| m.claim_count == 1));
            claimed.extend(ids(&c.messages));
            claims.push(c.id);
        }
        assert_eq!(claimed, posted);
        for id in &claims {
            backend.claims.delete(&s, id).await.unwrap();
        }

        // The next claim finds only messages at their maximum: all move.
        let moved = backend.claims.create(&s, &policy(n)).await;
        assert!(matches!(moved, Ok(None)), "{n}: {moved:?}");
        assert_eq!(backend.messages.stats(&s).await.unwrap().total, 0);
        let stats = backend.messages.stats(&dlq).await.unwrap();
        assert_eq!((stats.total, stats.free), (n as u64, n as u64));
        assert_eq!(all_ids_paged(&backend, &dlq, 1000).await, posted);
    }
}

/// More than 9,000 messages expiring at once (one large post, several small
/// ones, and a few a claim kept alive) leave a queue that answers stats,
/// posts, claims and listings, and never shows an expired message.
pub(crate) async fn mass_expiry_leaves_queue_usable(backend: Backend, clock: ManualClock) {
    let s = scope(&project(), "mass-expiry");
    let mut posted = post_ttl(&backend, &s, 9_000, 60).await;
    for _ in 0..5 {
        posted.extend(post_ttl(&backend, &s, 100, 60).await);
    }
    let c = backend
        .claims
        .create(&s, &claim(120, 60, 10))
        .await
        .unwrap()
        .unwrap();
    let kept = ids(&c.messages);
    assert_eq!(kept, posted[..10]);
    clock.advance_secs(61);

    let fresh = post_n(&backend, &s, 1).await;
    assert!(backend
        .messages
        .get(&s, &posted[500])
        .await
        .unwrap()
        .is_none());
    let page = backend.messages.list(&s, &list_default(20)).await.unwrap();
    assert_eq!(ids(&page.messages), fresh);
    let mut got = ids(&backend.messages.bulk_get(&s, &posted).await.unwrap());
    got.sort();
    let mut live = kept.clone();
    live.sort();
    assert_eq!(got, live);
    let taken = backend
        .claims
        .create(&s, &claim(60, 60, 20))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&taken.messages), fresh);
    settles_to(&backend, &s, 11, 10).await;
    let stats = backend.messages.stats(&s).await.unwrap();
    assert_eq!((stats.claimed, stats.free), (11, 0));
    assert_eq!(
        all_ids_paged(&backend, &s, 1000).await,
        [kept.clone(), fresh.clone()].concat()
    );
    // The claim's messages end at claim end + grace; the fresh message,
    // its claim over, can be popped.
    clock.advance_secs(120);
    assert_eq!(all_ids_paged(&backend, &s, 1000).await, fresh);
    assert_eq!(ids(&backend.messages.pop(&s, 10).await.unwrap()), fresh);
}

/// An expiry larger than one call's garbage collection: while the store
/// catches up, no listing, get, claim or pop ever returns an expired
/// message, and stats reach the truth within a few calls.
pub(crate) async fn expiry_past_collection_budget_stays_invisible(
    backend: Backend,
    clock: ManualClock,
) {
    let s = scope(&project(), "huge-expiry");
    let posted = post_ttl(&backend, &s, 25_000, 60).await;
    let survivors = post_ttl(&backend, &s, 3, 600).await;
    clock.advance_secs(61);
    for round in 0..4 {
        let page = backend.messages.list(&s, &list_default(20)).await.unwrap();
        assert_eq!(ids(&page.messages), survivors, "round {round}");
        assert!(backend
            .messages
            .get(&s, &posted[24_999 - round])
            .await
            .unwrap()
            .is_none());
        let got = backend.messages.bulk_get(&s, &posted[..50]).await.unwrap();
        assert!(got.is_empty(), "round {round}: {} expired", got.len());
    }
    let c = backend
        .claims
        .create(&s, &claim(60, 60, 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&c.messages), survivors[..2]);
    let popped = backend.messages.pop(&s, 5).await.unwrap();
    assert_eq!(ids(&popped), survivors[2..]);
    settles_to(&backend, &s, 2, 10).await;
}

/// Bulk reads and deletes of 10,000 ids, pops of more than 8,000, claim
/// checks against thousands of claim ids: whole, in order, all or nothing.
pub(crate) async fn bulk_operations_past_unpack_limit(backend: Backend, _clock: ManualClock) {
    let s = scope(&project(), "bulk");
    let posted = post_ttl(&backend, &s, 10_000, 3600).await;
    let mut asked = posted.clone();
    asked.extend((0..5).map(|_| uuid::Uuid::new_v4().to_string()));
    let got = backend.messages.bulk_get(&s, &asked).await.unwrap();
    assert_eq!(got.len(), posted.len());

    let c = backend
        .claims
        .create(&s, &claim(300, 60, 10_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&c.messages), posted);
    // One claim id that holds none of them: nothing is deleted.
    let other = uuid::Uuid::new_v4().to_string();
    let mismatch = backend
        .messages
        .bulk_delete(&s, &posted, Some(std::slice::from_ref(&other)))
        .await;
    assert!(
        matches!(mismatch, Err(StorageError::ClaimMismatch)),
        "{mismatch:?}"
    );
    assert_eq!(backend.messages.stats(&s).await.unwrap().total, 10_000);
    // The right one among thousands of others: all deleted.
    let mut claim_ids: Vec<String> = (0..9_000)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    claim_ids.push(c.id.clone());
    backend
        .messages
        .bulk_delete(&s, &posted, Some(&claim_ids))
        .await
        .unwrap();
    assert_eq!(backend.messages.stats(&s).await.unwrap().total, 0);
    assert!(backend
        .claims
        .get(&s, &c.id)
        .await
        .unwrap()
        .is_none_or(|i| i.messages.is_empty()));

    // Without claims.
    let posted = post_ttl(&backend, &s, 10_000, 3600).await;
    backend
        .messages
        .bulk_delete(&s, &posted, None)
        .await
        .unwrap();
    assert_eq!(backend.messages.stats(&s).await.unwrap().total, 0);

    // A pop of more than 8,000.
    let posted = post_ttl(&backend, &s, PAST_UNPACK, 3600).await;
    let popped = backend.messages.pop(&s, PAST_UNPACK).await.unwrap();
    assert_eq!(ids(&popped), posted);
    assert_eq!(backend.messages.stats(&s).await.unwrap().total, 0);
}

/// Purging a queue of 20,000 messages (some claimed) empties it, and only it.
pub(crate) async fn purge_of_a_large_queue(backend: Backend, _clock: ManualClock) {
    let p = project();
    let s = scope(&p, "big");
    let other = scope(&p, "small");
    post_ttl(&backend, &s, 20_000, 3600).await;
    let kept = post_n(&backend, &other, 3).await;
    let mut claims = Vec::new();
    for _ in 0..5 {
        let c = backend
            .claims
            .create(&s, &claim(300, 60, 1000))
            .await
            .unwrap()
            .unwrap();
        claims.push(c.id);
    }
    backend.messages.purge(&s).await.unwrap();
    assert_eq!(
        backend.messages.stats(&s).await.unwrap(),
        Default::default()
    );
    for id in &claims {
        assert!(backend.claims.get(&s, id).await.unwrap().is_none());
    }
    assert!(all_ids_paged(&backend, &s, 1000).await.is_empty());
    assert!(backend
        .claims
        .create(&s, &claim(60, 60, 10))
        .await
        .unwrap()
        .is_none());
    assert_eq!(all_ids_paged(&backend, &other, 100).await, kept);
    let again = post_n(&backend, &s, 1).await;
    assert_eq!(all_ids_paged(&backend, &s, 100).await, again);
}

/// A detailed listing of more than 8,000 queues returns every one with its
/// metadata (Redis read them in one HMGET of all the names).
pub(crate) async fn queue_list_past_unpack_limit(backend: Backend, _clock: ManualClock) {
    let p = project();
    for i in 0..PAST_UNPACK {
        let md = crate::storage::Metadata::from_iter([("i".to_owned(), json!(i))]);
        backend
            .queues
            .create(&scope(&p, &format!("q{i:05}")), &md)
            .await
            .unwrap();
    }
    let listed = backend
        .queues
        .list(&p, None, PAST_UNPACK, true)
        .await
        .unwrap();
    assert_eq!(listed.len(), PAST_UNPACK);
    for (i, entry) in listed.iter().enumerate() {
        assert_eq!(entry.name, format!("q{i:05}"));
        assert_eq!(entry.metadata.as_ref().unwrap()["i"], json!(i));
    }
}
