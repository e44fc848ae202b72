//! The conformance suite: deleting, popping, counting and purging messages.

use super::*;

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
    // A claim id the store never hands out names no claim, whether the
    // message is claimed or not (as the reference answers).
    for message in [&posted[0], &posted[3]] {
        assert!(matches!(
            m.delete(&s, message, Some("not-a-claim")).await,
            Err(StorageError::ClaimNotFound)
        ));
    }
    assert_eq!(
        all_ids(&backend, &s).await,
        posted,
        "failed deletes delete nothing"
    );

    m.delete(&s, &posted[0], Some(&c.id)).await.unwrap();
    assert!(m.get(&s, &posted[0]).await.unwrap().is_none());
    // A message that is gone is deleted already, whatever the claim id:
    // the malformed one is refused only for a message that is there.
    m.delete(&s, &posted[0], Some("not-a-claim")).await.unwrap();
    m.delete(
        &scope(&project(), "delete-none"),
        &posted[1],
        Some("not-a-claim"),
    )
    .await
    .unwrap();
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
