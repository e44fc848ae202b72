//! The subscription part of the driver conformance suite: behaviour tests
//! of [`SubscriptionStore`](super::SubscriptionStore), written once and run
//! against every driver that keeps subscriptions.
//!
//! It follows the shape of [`super::conformance`]: each test is an
//! `async fn(Backend, ManualClock)`, and a driver runs them all by invoking
//! [`subscription_conformance_tests!`] with its `open` function (an
//! `async fn(ManualClock) -> (Backend, Keep)`). Every test works in projects
//! of its own, so drivers backed by a shared server can run them in
//! parallel.

use std::any::Any;

use serde_json::json;

use super::clock::{Clock, ManualClock};
use super::outbox::{Delivery, FairShare, NewDelivery};
use super::pipeline::Backend;
use super::{
    Metadata, NewMessage, NewSubscription, Scope, StorageError, Subscribed, Subscription,
    SubscriptionUpdate,
};

/// What a driver's fixture keeps alive for the duration of one test.
pub(crate) type Keep = Box<dyn Any + Send>;

/// Generates one `#[tokio::test]` per subscription behaviour for a driver.
///
/// `$open` returns `(Backend, Keep)`, or `Option<(Backend, Keep)>` where
/// `None` skips the test (see [`super::conformance::Fixture`]).
macro_rules! subscription_conformance_tests {
    ($open:path) => {
        $crate::storage::subscription_conformance::subscription_conformance_tests!($open, heavy: $open);
    };
    // `heavy` opens the behaviour that writes 9,000 subscriptions (see
    // `conformance_tests!`).
    ($open:path, heavy: $heavy:path) => {
        $crate::storage::subscription_conformance::subscription_conformance_tests!(@each $heavy;
            subscription_heavy_queue,
        );
        $crate::storage::subscription_conformance::subscription_conformance_tests!(@each $open;
            subscription_create_and_get,
            subscription_list_paging,
            subscription_update,
            subscription_delete_and_purge,
            subscription_confirm,
            subscription_list_confirmed,
            subscription_duplicate_subscriber_rule,
            subscription_ttl_expiry,
            subscription_project_isolation,
            post_tells_whether_queue_is_subscribed,
            outbox_leases_are_fair,
            outbox_depth_counts_pending_deliveries,
        );
    };
    (@each $open:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let clock = $crate::storage::clock::ManualClock::new();
                let fixture = $open(clock.clone()).await;
                let Some((backend, _keep)) =
                    $crate::storage::conformance::Fixture::into_fixture(fixture)
                else {
                    return;
                };
                $crate::storage::subscription_conformance::$name(backend, clock).await;
            }
        )*
    };
}
pub(crate) use subscription_conformance_tests;

fn scope(queue: &str) -> Scope {
    Scope::new(format!("p-{}", uuid::Uuid::new_v4()), queue)
}

fn new(subscriber: &str, ttl: i64) -> NewSubscription {
    let mut options = Metadata::new();
    options.insert("post_data".into(), json!("{\"m\": \"$zaqar_message$\"}"));
    NewSubscription {
        subscriber: subscriber.into(),
        ttl,
        options,
    }
}

pub(crate) async fn subscription_create_and_get(b: Backend, clock: ManualClock) {
    let s = scope("q");
    let id = b
        .subscriptions
        .create(&s, &new("http://a.example/", 600))
        .await
        .unwrap()
        .unwrap();
    clock.advance_secs(7);
    let got = b
        .subscriptions
        .get(&s, &id)
        .await
        .unwrap()
        .expect("created");
    assert_eq!(got.id, id);
    assert_eq!(got.source, "q");
    assert_eq!(got.subscriber, "http://a.example/");
    assert_eq!(got.ttl, 600);
    assert_eq!(got.age(clock.now_ms()), 7);
    assert!(!got.confirmed, "new subscriptions are unconfirmed");
    assert_eq!(
        got.options["post_data"],
        json!("{\"m\": \"$zaqar_message$\"}")
    );
    assert!(b.subscriptions.get(&s, "nope").await.unwrap().is_none());
    assert!(b
        .subscriptions
        .get(&Scope::new(s.project.clone(), "other"), &id)
        .await
        .unwrap()
        .is_none());
    let by_uri = b
        .subscriptions
        .get_with_subscriber(&s, "http://a.example/")
        .await
        .unwrap();
    assert_eq!(by_uri.map(|x| x.id), Some(id));
}

pub(crate) async fn subscription_list_paging(b: Backend, _clock: ManualClock) {
    let s = scope("q");
    let mut ids = Vec::new();
    for i in 0..5 {
        let sub = new(&format!("http://h{i}.example/"), 600);
        ids.push(b.subscriptions.create(&s, &sub).await.unwrap().unwrap());
    }
    let first = b.subscriptions.list(&s, None, 2).await.unwrap();
    assert_eq!(
        first.iter().map(|x| &x.id).collect::<Vec<_>>(),
        vec![&ids[0], &ids[1]]
    );
    let second = b.subscriptions.list(&s, Some(&ids[1]), 2).await.unwrap();
    assert_eq!(
        second.iter().map(|x| &x.id).collect::<Vec<_>>(),
        vec![&ids[2], &ids[3]]
    );
    let last = b.subscriptions.list(&s, Some(&ids[3]), 2).await.unwrap();
    assert_eq!(last.len(), 1);
    // Ids sort in creation (listing) order, as the reference's ObjectIds:
    // a client may page with the id at any place of a sorted listing.
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids);
    assert!(b
        .subscriptions
        .list(&s, Some(&ids[4]), 2)
        .await
        .unwrap()
        .is_empty());
    // An unknown marker starts from the first.
    let restart = b.subscriptions.list(&s, Some("unknown"), 10).await.unwrap();
    assert_eq!(restart.len(), 5);
    assert!(b
        .subscriptions
        .list(&scope("q"), None, 10)
        .await
        .unwrap()
        .is_empty());
}

pub(crate) async fn subscription_update(b: Backend, clock: ManualClock) {
    let s = scope("q");
    let id = b
        .subscriptions
        .create(&s, &new("http://a.example/", 100))
        .await
        .unwrap()
        .unwrap();
    let other = b
        .subscriptions
        .create(&s, &new("http://b.example/", 100))
        .await
        .unwrap()
        .unwrap();
    clock.advance_secs(90);
    let mut options = Metadata::new();
    options.insert("post_headers".into(), json!({"X-A": "1"}));
    let update = SubscriptionUpdate {
        subscriber: Some("http://c.example/".into()),
        ttl: Some(200),
        options: Some(options.clone()),
    };
    b.subscriptions.update(&s, &id, &update).await.unwrap();
    let got = b.subscriptions.get(&s, &id).await.unwrap().unwrap();
    assert_eq!(got.subscriber, "http://c.example/");
    assert_eq!(got.ttl, 200);
    assert_eq!(got.options, options);
    assert_eq!(
        got.age(clock.now_ms()),
        0,
        "a new ttl restarts the subscription's clock"
    );
    // The new ttl counts from now: alive past the old expiry.
    clock.advance_secs(150);
    assert!(b.subscriptions.get(&s, &id).await.unwrap().is_some());
    assert!(b.subscriptions.get(&s, &other).await.unwrap().is_none());
    // Fields left out stay.
    let only_ttl = SubscriptionUpdate {
        ttl: Some(300),
        ..Default::default()
    };
    b.subscriptions.update(&s, &id, &only_ttl).await.unwrap();
    let got = b.subscriptions.get(&s, &id).await.unwrap().unwrap();
    assert_eq!(
        (got.subscriber.as_str(), got.options == options),
        ("http://c.example/", true)
    );
    let missing = b
        .subscriptions
        .update(&s, "nope", &only_ttl)
        .await
        .unwrap_err();
    assert!(
        matches!(missing, StorageError::SubscriptionNotFound),
        "{missing:?}"
    );
    // Keeping its own subscriber is not a duplicate.
    let same = SubscriptionUpdate {
        subscriber: Some("http://c.example/".into()),
        ..Default::default()
    };
    b.subscriptions.update(&s, &id, &same).await.unwrap();
}

pub(crate) async fn subscription_delete_and_purge(b: Backend, _clock: ManualClock) {
    let s = scope("q");
    let neighbour = Scope::new(s.project.clone(), "q2");
    let id = b
        .subscriptions
        .create(&s, &new("http://a.example/", 600))
        .await
        .unwrap()
        .unwrap();
    b.subscriptions.delete(&s, &id).await.unwrap();
    assert!(b.subscriptions.get(&s, &id).await.unwrap().is_none());
    b.subscriptions.delete(&s, &id).await.unwrap();
    b.subscriptions.delete(&s, "never-was").await.unwrap();
    // After a delete the same subscriber may subscribe again.
    assert!(b
        .subscriptions
        .create(&s, &new("http://a.example/", 600))
        .await
        .unwrap()
        .is_some());
    b.subscriptions
        .create(&s, &new("http://b.example/", 600))
        .await
        .unwrap()
        .unwrap();
    let kept = b
        .subscriptions
        .create(&neighbour, &new("http://a.example/", 600))
        .await
        .unwrap()
        .unwrap();
    b.subscriptions.purge(&s).await.unwrap();
    assert!(b.subscriptions.list(&s, None, 10).await.unwrap().is_empty());
    assert!(b
        .subscriptions
        .get(&neighbour, &kept)
        .await
        .unwrap()
        .is_some());
}

pub(crate) async fn subscription_confirm(b: Backend, _clock: ManualClock) {
    let s = scope("q");
    let id = b
        .subscriptions
        .create(&s, &new("mailto:a@example.com", 600))
        .await
        .unwrap()
        .unwrap();
    b.subscriptions.confirm(&s, &id, true).await.unwrap();
    assert!(
        b.subscriptions
            .get(&s, &id)
            .await
            .unwrap()
            .unwrap()
            .confirmed
    );
    b.subscriptions.confirm(&s, &id, false).await.unwrap();
    assert!(
        !b.subscriptions
            .get(&s, &id)
            .await
            .unwrap()
            .unwrap()
            .confirmed
    );
    let e = b.subscriptions.confirm(&s, "nope", true).await.unwrap_err();
    assert!(matches!(e, StorageError::SubscriptionNotFound), "{e:?}");
}

/// `list_confirmed` pages the live confirmed subscriptions in creation
/// order, as `list` pages them all, and follows every change of the flag.
pub(crate) async fn subscription_list_confirmed(b: Backend, clock: ManualClock) {
    let s = scope("q");
    let mut ids = Vec::new();
    for i in 0..7 {
        let ttl = if i == 5 { 60 } else { 600 };
        let sub = new(&format!("http://h{i}.example/"), ttl);
        ids.push(b.subscriptions.create(&s, &sub).await.unwrap().unwrap());
    }
    let listed = |page: Vec<Subscription>| page.into_iter().map(|x| x.id).collect::<Vec<_>>();
    assert!(b
        .subscriptions
        .list_confirmed(&s, None, 10)
        .await
        .unwrap()
        .is_empty());
    for i in [1, 3, 4, 5, 6] {
        b.subscriptions.confirm(&s, &ids[i], true).await.unwrap();
    }
    let first = b.subscriptions.list_confirmed(&s, None, 2).await.unwrap();
    assert!(first.iter().all(|x| x.confirmed));
    assert_eq!(listed(first), vec![ids[1].clone(), ids[3].clone()]);
    let second = b
        .subscriptions
        .list_confirmed(&s, Some(&ids[3]), 2)
        .await
        .unwrap();
    assert_eq!(listed(second), vec![ids[4].clone(), ids[5].clone()]);
    // A marker that is not a confirmed subscription still marks a place.
    let after_unconfirmed = b
        .subscriptions
        .list_confirmed(&s, Some(&ids[2]), 10)
        .await
        .unwrap();
    assert_eq!(listed(after_unconfirmed), ids[3..7].to_vec());
    // Unconfirmed again, deleted, expired: gone from the listing.
    b.subscriptions.confirm(&s, &ids[3], false).await.unwrap();
    b.subscriptions.delete(&s, &ids[4]).await.unwrap();
    clock.advance_secs(61);
    let now = b.subscriptions.list_confirmed(&s, None, 10).await.unwrap();
    assert_eq!(listed(now), vec![ids[1].clone(), ids[6].clone()]);
    // Nobody else's queue of the same name sees them.
    assert!(b
        .subscriptions
        .list_confirmed(&scope("q"), None, 10)
        .await
        .unwrap()
        .is_empty());
}

pub(crate) async fn subscription_duplicate_subscriber_rule(b: Backend, _clock: ManualClock) {
    let s = scope("q");
    let first = b
        .subscriptions
        .create(&s, &new("http://a.example/", 600))
        .await
        .unwrap();
    assert!(first.is_some());
    assert_eq!(
        b.subscriptions
            .create(&s, &new("http://a.example/", 900))
            .await
            .unwrap(),
        None
    );
    // Unique per queue (and project), not globally.
    let other_queue = Scope::new(s.project.clone(), "q2");
    assert!(b
        .subscriptions
        .create(&other_queue, &new("http://a.example/", 600))
        .await
        .unwrap()
        .is_some());
    // A PATCH may not take another subscription's subscriber.
    let second = b
        .subscriptions
        .create(&s, &new("http://b.example/", 600))
        .await
        .unwrap()
        .unwrap();
    let steal = SubscriptionUpdate {
        subscriber: Some("http://a.example/".into()),
        ..Default::default()
    };
    let e = b
        .subscriptions
        .update(&s, &second, &steal)
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::SubscriptionExists), "{e:?}");
    assert_eq!(b.subscriptions.list(&s, None, 10).await.unwrap().len(), 2);
}

pub(crate) async fn subscription_ttl_expiry(b: Backend, clock: ManualClock) {
    let s = scope("q");
    let id = b
        .subscriptions
        .create(&s, &new("http://a.example/", 60))
        .await
        .unwrap()
        .unwrap();
    let long = b
        .subscriptions
        .create(&s, &new("http://b.example/", 120))
        .await
        .unwrap()
        .unwrap();
    clock.advance_secs(59);
    assert!(b.subscriptions.get(&s, &id).await.unwrap().is_some());
    clock.advance_secs(2);
    assert!(b.subscriptions.get(&s, &id).await.unwrap().is_none());
    let listed = b.subscriptions.list(&s, None, 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|x| &x.id).collect::<Vec<_>>(),
        vec![&long]
    );
    assert!(b
        .subscriptions
        .get_with_subscriber(&s, "http://a.example/")
        .await
        .unwrap()
        .is_none());
    let e = b.subscriptions.confirm(&s, &id, true).await.unwrap_err();
    assert!(matches!(e, StorageError::SubscriptionNotFound), "{e:?}");
    let e = b
        .subscriptions
        .update(
            &s,
            &id,
            &SubscriptionUpdate {
                ttl: Some(600),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::SubscriptionNotFound), "{e:?}");
    // An expired subscription does not block its subscriber.
    let again = b
        .subscriptions
        .create(&s, &new("http://a.example/", 60))
        .await
        .unwrap();
    assert!(again.is_some_and(|new_id| new_id != id));
}

pub(crate) async fn subscription_project_isolation(b: Backend, _clock: ManualClock) {
    let mine = scope("shared");
    let theirs = scope("shared");
    let id = b
        .subscriptions
        .create(&mine, &new("http://a.example/", 600))
        .await
        .unwrap()
        .unwrap();
    assert!(b.subscriptions.get(&theirs, &id).await.unwrap().is_none());
    assert!(b
        .subscriptions
        .list(&theirs, None, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(b
        .subscriptions
        .get_with_subscriber(&theirs, "http://a.example/")
        .await
        .unwrap()
        .is_none());
    // Same subscriber in another project is no duplicate.
    assert!(b
        .subscriptions
        .create(&theirs, &new("http://a.example/", 600))
        .await
        .unwrap()
        .is_some());
    // Nothing another project does reaches my subscription.
    b.subscriptions.delete(&theirs, &id).await.unwrap();
    let e = b
        .subscriptions
        .confirm(&theirs, &id, true)
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::SubscriptionNotFound), "{e:?}");
    let e = b
        .subscriptions
        .update(
            &theirs,
            &id,
            &SubscriptionUpdate {
                ttl: Some(999),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::SubscriptionNotFound), "{e:?}");
    b.subscriptions.purge(&theirs).await.unwrap();
    let got = b.subscriptions.get(&mine, &id).await.unwrap().unwrap();
    assert_eq!((got.ttl, got.confirmed), (600, false));
}

/// A post says who was subscribed to the queue, so the notifier can skip
/// its lookup: nobody, then unconfirmed subscribers only, then confirmed
/// ones, following confirmations, unconfirmations, ttl changes and expiry;
/// another queue's subscriptions do not count.
pub(crate) async fn post_tells_whether_queue_is_subscribed(b: Backend, clock: ManualClock) {
    use Subscribed::{Confirmed, Nobody, Unconfirmed};
    let s = scope("posted");
    let other = scope("posted-other");
    let post = |s: Scope| {
        let b = b.clone();
        async move {
            let message = NewMessage {
                ttl: 600,
                delay: 0,
                body: serde_json::value::RawValue::from_string("{\"k\": 1}".into()).unwrap(),
                checksum: None,
            };
            b.messages.post(&s, "c", vec![message]).await.unwrap()
        }
    };
    b.queues.create(&s, &Metadata::new()).await.unwrap();
    b.queues.create(&other, &Metadata::new()).await.unwrap();
    let first = post(s.clone()).await;
    assert_eq!(first.ids.len(), 1);
    assert_eq!(first.subscribed, Some(Nobody));
    let theirs = b
        .subscriptions
        .create(&other, &new("http://other.example/", 60))
        .await
        .unwrap()
        .unwrap();
    b.subscriptions
        .confirm(&other, &theirs, true)
        .await
        .unwrap();
    assert_eq!(post(s.clone()).await.subscribed, Some(Nobody));
    let id = b
        .subscriptions
        .create(&s, &new("http://a.example/", 60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(post(s.clone()).await.subscribed, Some(Unconfirmed));
    b.subscriptions.confirm(&s, &id, true).await.unwrap();
    assert_eq!(post(s.clone()).await.subscribed, Some(Confirmed));
    b.subscriptions.confirm(&s, &id, false).await.unwrap();
    assert_eq!(post(s.clone()).await.subscribed, Some(Unconfirmed));
    b.subscriptions.confirm(&s, &id, true).await.unwrap();
    // A confirmed subscription given a longer ttl stays confirmed for it.
    let longer = SubscriptionUpdate {
        subscriber: None,
        ttl: Some(600),
        options: None,
    };
    b.subscriptions.update(&s, &id, &longer).await.unwrap();
    clock.advance_secs(61);
    assert_eq!(post(s.clone()).await.subscribed, Some(Confirmed));
    b.subscriptions.confirm(&s, &id, false).await.unwrap();
    // An unconfirmed one, too: unconfirmed for its whole new ttl.
    b.subscriptions.update(&s, &id, &longer).await.unwrap();
    clock.advance_secs(300);
    assert_eq!(post(s.clone()).await.subscribed, Some(Unconfirmed));
    clock.advance_secs(301);
    assert_eq!(post(s).await.subscribed, Some(Nobody));
}

/// Defect: a lease took the oldest due deliveries whoever they belonged to,
/// so a project with many deliveries to subscribers that hang held every
/// delivery worker and the other projects' notifications waited behind
/// them. A lease now caps each project and lets the projects take turns.
pub(crate) async fn outbox_leases_are_fair(b: Backend, clock: ManualClock) {
    let Some(outbox) = b.outbox.clone() else {
        return;
    };
    let delivery = |project: &str, n: u32| NewDelivery {
        project: project.to_owned(),
        queue: "q".into(),
        subscription_id: format!("s{n}"),
        subscriber: format!("http://subscriber.invalid/{n}"),
        options: Metadata::new(),
        queue_retry_policy: None,
        payload: json!({ "n": n }),
    };
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (x, y, z) = (format!("x-{tag}"), format!("y-{tag}"), format!("z-{tag}"));
    let share = |per_project: usize, busy: &[(&str, usize)]| FairShare {
        per_project,
        in_flight: busy.iter().map(|(p, n)| ((*p).to_owned(), *n)).collect(),
    };
    let seen = |leased: &[Delivery]| -> Vec<(String, u64)> {
        leased
            .iter()
            .map(|d| {
                let n = d.delivery.payload["n"].as_u64().unwrap();
                (d.delivery.project.clone(), n)
            })
            .collect()
    };
    // X queues ten deliveries, then Y one, then Z two.
    outbox
        .enqueue((0..10).map(|n| delivery(&x, n)).collect())
        .await
        .unwrap();
    clock.advance_secs(1);
    outbox.enqueue(vec![delivery(&y, 0)]).await.unwrap();
    clock.advance_secs(1);
    outbox
        .enqueue(vec![delivery(&z, 0), delivery(&z, 1)])
        .await
        .unwrap();

    // Turns: each project's oldest first (X, whose oldest waited longest,
    // leads), then the second of each.
    let got = outbox.lease_fair(5, 60_000, &share(10, &[])).await.unwrap();
    let expect = |v: &[(&String, u64)]| -> Vec<(String, u64)> {
        v.iter().map(|(p, n)| ((*p).clone(), *n)).collect()
    };
    assert_eq!(
        seen(&got),
        expect(&[(&x, 0), (&y, 0), (&z, 0), (&x, 1), (&z, 1)])
    );

    // A project's quota counts what it has in flight: X may take one more.
    let busy = [(x.as_str(), 2), (y.as_str(), 1), (z.as_str(), 2)];
    let got = outbox
        .lease_fair(10, 60_000, &share(3, &busy))
        .await
        .unwrap();
    assert_eq!(seen(&got), expect(&[(&x, 2)]));

    // X at its cap: its seven due deliveries wait, Y's new one does not.
    let busy = [(x.as_str(), 3), (y.as_str(), 1), (z.as_str(), 2)];
    assert!(outbox
        .lease_fair(10, 60_000, &share(3, &busy))
        .await
        .unwrap()
        .is_empty());
    outbox.enqueue(vec![delivery(&y, 1)]).await.unwrap();
    let got = outbox
        .lease_fair(10, 60_000, &share(3, &busy))
        .await
        .unwrap();
    assert_eq!(seen(&got), expect(&[(&y, 1)]));

    // Without a cap, the rest of X, oldest first; then nothing is due.
    let got = outbox.lease_due(10, 60_000).await.unwrap();
    assert_eq!(
        seen(&got),
        (3..10).map(|n| (x.clone(), n)).collect::<Vec<_>>()
    );
    assert!(outbox.lease_due(10, 60_000).await.unwrap().is_empty());

    // A rescheduled delivery rejoins its project; a completed one is gone
    // and its project leaves the lease's view once empty.
    outbox
        .retry_at(&got[0].id, 1, clock.now_ms() + 1_000)
        .await
        .unwrap();
    for d in &got[1..] {
        outbox.complete(&d.id).await.unwrap();
    }
    assert_eq!(
        outbox.next_due_ms().await.unwrap(),
        Some(clock.now_ms() + 1_000)
    );
    clock.advance_secs(1);
    let again = outbox.lease_fair(10, 60_000, &share(1, &[])).await.unwrap();
    assert_eq!(seen(&again), expect(&[(&x, 3)]));
    assert_eq!(again[0].attempts, 1);
}

/// The outbox depth (`/metrics`) counts what is queued, leased or waiting
/// for a retry, and drops as deliveries complete, completing one twice
/// included.
pub(crate) async fn outbox_depth_counts_pending_deliveries(b: Backend, clock: ManualClock) {
    let Some(outbox) = b.outbox.clone() else {
        return;
    };
    let depth = || async { outbox.depth().await.unwrap().expect("every driver counts") };
    let before = depth().await;
    let project = format!("d-{}", uuid::Uuid::new_v4().simple());
    outbox
        .enqueue(
            (0..3)
                .map(|n| NewDelivery {
                    project: project.clone(),
                    queue: "q".into(),
                    subscription_id: format!("s{n}"),
                    subscriber: format!("http://subscriber.invalid/{n}"),
                    options: Metadata::new(),
                    queue_retry_policy: None,
                    payload: json!({ "n": n }),
                })
                .collect(),
        )
        .await
        .unwrap();
    assert_eq!(depth().await, before + 3);
    let leased = outbox.lease_due(3, 60_000).await.unwrap();
    assert_eq!(leased.len(), 3);
    assert_eq!(
        depth().await,
        before + 3,
        "leased deliveries are still pending"
    );
    outbox
        .retry_at(&leased[0].id, 1, clock.now_ms() + 1_000)
        .await
        .unwrap();
    outbox.complete(&leased[1].id).await.unwrap();
    outbox.complete(&leased[1].id).await.unwrap();
    assert_eq!(depth().await, before + 2);
    outbox.complete(&leased[0].id).await.unwrap();
    outbox.complete(&leased[2].id).await.unwrap();
    assert_eq!(depth().await, before);
}

/// A queue with 9,000 subscriptions that expire together, and one that
/// lasts: posts tell whether it is subscribed, listings page through the
/// live ones only (a store may clean the expired ones up over several
/// calls, never show them), and an expired subscriber can subscribe again.
pub(crate) async fn subscription_heavy_queue(b: Backend, clock: ManualClock) {
    const N: usize = 9_000;
    let s = scope("crowded");
    let post = || {
        let (b, s) = (b.clone(), s.clone());
        async move {
            let message = NewMessage {
                ttl: 600,
                delay: 0,
                body: serde_json::value::RawValue::from_string("1".into()).unwrap(),
                checksum: None,
            };
            b.messages
                .post(&s, "c", vec![message])
                .await
                .unwrap()
                .subscribed
        }
    };
    let listed = || {
        let (b, s) = (b.clone(), s.clone());
        async move {
            let mut out = Vec::new();
            let mut marker: Option<String> = None;
            loop {
                let page = b
                    .subscriptions
                    .list(&s, marker.as_deref(), 1000)
                    .await
                    .unwrap();
                let Some(last) = page.last() else {
                    return out;
                };
                marker = Some(last.id.clone());
                out.extend(page.into_iter().map(|x| x.subscriber));
            }
        }
    };
    let mut created = Vec::with_capacity(N);
    for i in 0..N {
        let sub = new(&format!("http://h{i}.example/"), 60);
        created.push(b.subscriptions.create(&s, &sub).await.unwrap().unwrap());
    }
    let lasting = b
        .subscriptions
        .create(&s, &new("http://lasting.example/", 600))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(post().await, Some(Subscribed::Unconfirmed));
    b.subscriptions
        .confirm(&s, &created[N / 2], true)
        .await
        .unwrap();
    assert_eq!(post().await, Some(Subscribed::Confirmed));
    let all = listed().await;
    assert_eq!(all.len(), N + 1);
    assert_eq!(all[0], "http://h0.example/");
    let confirmed = b
        .subscriptions
        .list_confirmed(&s, None, 1000)
        .await
        .unwrap();
    assert_eq!(
        confirmed.iter().map(|x| &x.id).collect::<Vec<_>>(),
        [&created[N / 2]]
    );

    clock.advance_secs(61);
    // The only confirmed one expired with the others.
    assert_eq!(post().await, Some(Subscribed::Unconfirmed));
    assert_eq!(listed().await, ["http://lasting.example/"]);
    assert!(b
        .subscriptions
        .get(&s, &created[N - 1])
        .await
        .unwrap()
        .is_none());
    assert!(b
        .subscriptions
        .get_with_subscriber(&s, "http://h0.example/")
        .await
        .unwrap()
        .is_none());
    let again = b
        .subscriptions
        .create(&s, &new("http://h0.example/", 60))
        .await
        .unwrap();
    assert!(again.is_some(), "an expired subscriber subscribes again");
    b.subscriptions.delete(&s, &lasting).await.unwrap();
    b.subscriptions.delete(&s, &again.unwrap()).await.unwrap();
    assert_eq!(post().await, Some(Subscribed::Nobody));
    assert!(listed().await.is_empty());

    // A purge of more than a Redis script deletes in one call.
    for i in 0..2_100 {
        let sub = new(&format!("http://p{i}.example/"), 600);
        b.subscriptions.create(&s, &sub).await.unwrap().unwrap();
    }
    assert_eq!(listed().await.len(), 2_100);
    b.subscriptions.purge(&s).await.unwrap();
    assert!(listed().await.is_empty());
    assert_eq!(post().await, Some(Subscribed::Nobody));
    let back = b
        .subscriptions
        .create(&s, &new("http://p0.example/", 600))
        .await
        .unwrap();
    assert!(back.is_some(), "a purged subscriber subscribes again");
}
