//! The conformance suite: claims: lifecycle, renewal, expiry, exclusivity, delays and dead letters.

use super::*;

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

/// More delayed messages at the head of a queue than a claim reads at once
/// (10,500): claims still find the free messages behind them (a driver that
/// reads a bounded number of records per call may need a second call, never
/// more: each call moves past what it read), and then every time; listings
/// with delayed messages still show the passed-over ones, in order; once
/// the delay ends they are claimed in order.
pub(crate) async fn claims_reach_past_many_delayed_messages(backend: Backend, clock: ManualClock) {
    let p = project();
    let s = scope(&p, "delayed-head");
    let mut delayed = Vec::new();
    for chunk in 0..21 {
        let batch = (0..500)
            .map(|i| new_message(json!({ "d": chunk * 500 + i }), 3600, 600))
            .collect();
        delayed.extend(backend.messages.post(&s, CLIENT, batch).await.unwrap().ids);
    }
    let free = post_n(&backend, &s, 20).await;
    let mut first = None;
    for _ in 0..2 {
        first = backend
            .claims
            .create(&s, &claim(300, 60, 10))
            .await
            .unwrap()
            .filter(|c| !c.messages.is_empty());
        if first.is_some() {
            break;
        }
    }
    let first = first.expect("free messages behind the delayed ones are claimed");
    assert_eq!(ids(&first.messages), free[..10]);
    let c = backend
        .claims
        .create(&s, &claim(300, 60, 10))
        .await
        .unwrap()
        .expect("and at once the next time");
    assert_eq!(ids(&c.messages), free[10..]);
    assert!(backend
        .claims
        .create(&s, &claim(300, 60, 10))
        .await
        .unwrap()
        .is_none_or(|c| c.messages.is_empty()));
    let stats = backend.messages.stats(&s).await.unwrap();
    assert_eq!(
        (stats.claimed, stats.free, stats.total),
        (20, 10_500, 10_520)
    );
    // Unclaimed with delayed: the passed-over messages, from the first.
    let page = backend
        .messages
        .list(
            &s,
            &ListQuery {
                include_claimed: false,
                ..list_all(5)
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&page.messages), delayed[..5]);
    // Without delayed ones: nothing unclaimed is visible yet.
    let page = backend.messages.list(&s, &list_default(5)).await.unwrap();
    assert!(page.messages.is_empty());
    clock.advance_secs(600);
    let c = backend
        .claims
        .create(&s, &claim(300, 60, 10))
        .await
        .unwrap()
        .expect("due messages are claimed");
    assert_eq!(ids(&c.messages), delayed[..10]);
    let page = backend.messages.list(&s, &list_default(5)).await.unwrap();
    assert_eq!(ids(&page.messages), delayed[10..15]);
}

/// More claimed messages at the head of a queue than a claim reads at once
/// (10,500, held by claims of 600 s): claims find the free messages behind
/// them at once, and then every time; the messages of a deleted claim are
/// claimable again at once, oldest first; an extended claim keeps its
/// messages past its first end, while the others' come back.
pub(crate) async fn claims_reach_past_many_claimed_messages(backend: Backend, clock: ManualClock) {
    let p = project();
    let s = scope(&p, "claimed-head");
    let mut head = Vec::new();
    for chunk in 0..21 {
        let batch = (0..500)
            .map(|i| new_message(json!({ "h": chunk * 500 + i }), 7200, 0))
            .collect();
        head.extend(backend.messages.post(&s, CLIENT, batch).await.unwrap().ids);
    }
    let mut held = Vec::new();
    for _ in 0..21 {
        let c = backend
            .claims
            .create(&s, &claim(600, 60, 500))
            .await
            .unwrap()
            .expect("the head is claimed");
        held.push(c);
    }
    let claimed: Vec<String> = held.iter().flat_map(|c| ids(&c.messages)).collect();
    assert_eq!(claimed, head);
    let free = post_n(&backend, &s, 20).await;
    let c = backend
        .claims
        .create(&s, &claim(300, 60, 10))
        .await
        .unwrap()
        .expect("free messages behind the claimed ones are claimed");
    assert_eq!(ids(&c.messages), free[..10]);
    let c = backend
        .claims
        .create(&s, &claim(300, 60, 10))
        .await
        .unwrap()
        .expect("and at once the next time");
    assert_eq!(ids(&c.messages), free[10..]);
    assert!(backend
        .claims
        .create(&s, &claim(300, 60, 10))
        .await
        .unwrap()
        .is_none_or(|c| c.messages.is_empty()));
    let stats = backend.messages.stats(&s).await.unwrap();
    assert_eq!(
        (stats.claimed, stats.free, stats.total),
        (10_520, 0, 10_520)
    );
    // Released in the middle of the head: claimable at once.
    backend.claims.delete(&s, &held[3].id).await.unwrap();
    let c = backend
        .claims
        .create(&s, &claim(300, 60, 10))
        .await
        .unwrap()
        .expect("a deleted claim's messages are claimed again");
    assert_eq!(ids(&c.messages), head[1_500..1_510]);
    // The first claim outlives the others.
    backend
        .claims
        .update(&s, &held[0].id, 1200, 60)
        .await
        .unwrap();
    clock.advance_secs(601);
    // Every message of the ended claims comes back, the extended claim's
    // do not. (In which order is the driver's: one that releases ended
    // claims a bounded number at a time may hand out the first ones it
    // released first; SQLite's own tests pin oldest-first.)
    let mut back = Vec::new();
    let mut empty = 0;
    for _ in 0..50 {
        match backend
            .claims
            .create(&s, &claim(300, 60, 1_000))
            .await
            .unwrap()
        {
            Some(c) if !c.messages.is_empty() => back.extend(ids(&c.messages)),
            _ if empty == 1 => break,
            _ => empty += 1,
        }
    }
    let mut expected: Vec<String> = head[500..].iter().chain(&free).cloned().collect();
    expected.sort();
    back.sort();
    assert_eq!(back.len(), expected.len());
    assert!(back == expected, "not the messages of the ended claims");
    let stats = backend.messages.stats(&s).await.unwrap();
    assert_eq!((stats.claimed, stats.total), (10_520, 10_520));
}
