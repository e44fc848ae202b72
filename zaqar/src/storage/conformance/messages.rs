//! The conformance suite: posting, listing, scoping and expiry of messages.

use super::*;

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

/// A message id stands for the marker after that message; unknown ids
/// have none.
pub(crate) async fn marker_of_a_message_id(backend: Backend, _clock: ManualClock) {
    let p = project();
    let s = scope(&p, "markers");
    let ids = post_n(&backend, &s, 3).await;
    let m = &backend.messages;
    let marker = m.marker_of(&s, &ids[0]).await.unwrap().expect("a marker");
    let mut query = list_all(10);
    query.marker = Some(marker);
    let page = m.list(&s, &query).await.unwrap();
    assert_eq!(super::ids(&page.messages), ids[1..]);
    assert_eq!(m.marker_of(&s, "nope").await.unwrap(), None);
    assert_eq!(
        m.marker_of(&scope(&p, "other"), &ids[0]).await.unwrap(),
        None
    );
}
