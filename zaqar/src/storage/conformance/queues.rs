//! The conformance suite: queue records: create, metadata, listing, delete.

use super::*;

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

    let names = |entries: &[crate::storage::QueueEntry]| {
        entries.iter().map(|e| e.name.clone()).collect::<Vec<_>>()
    };
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

/// Topics are queues under a reserved name prefix (see
/// [`crate::storage::names`]): the topic and the queue of one name are two
/// records, every topic lists after every queue, and a count counts queues.
pub(crate) async fn topic_names_are_their_own_namespace(backend: Backend, _clock: ManualClock) {
    use crate::storage::names::{topic_storage_name, TOPIC_PREFIX};
    let p = project();
    let q = &backend.queues;
    for name in ["zz", "a", "Z-9"] {
        q.create(&scope(&p, name), &metadata(json!({"queue": name})))
            .await
            .unwrap();
    }
    for name in ["a", "b"] {
        let stored = topic_storage_name(name);
        assert!(q
            .create(&scope(&p, &stored), &metadata(json!({"topic": name})))
            .await
            .unwrap());
    }
    assert_eq!(
        q.get(&scope(&p, "a")).await.unwrap(),
        Some(metadata(json!({"queue": "a"})))
    );
    assert_eq!(
        q.get(&scope(&p, &topic_storage_name("a"))).await.unwrap(),
        Some(metadata(json!({"topic": "a"})))
    );
    assert_eq!(q.count(&p).await.unwrap(), 3);
    let names = |entries: Vec<crate::storage::QueueEntry>| {
        entries.into_iter().map(|e| e.name).collect::<Vec<_>>()
    };
    assert_eq!(
        names(q.list(&p, None, 10, false).await.unwrap()),
        [
            "Z-9",
            "a",
            "zz",
            &topic_storage_name("a"),
            &topic_storage_name("b")
        ]
    );
    assert_eq!(
        names(q.list(&p, Some(TOPIC_PREFIX), 10, false).await.unwrap()),
        [topic_storage_name("a"), topic_storage_name("b")]
    );
    assert_eq!(
        names(
            q.list(&p, Some(&topic_storage_name("a")), 10, false)
                .await
                .unwrap()
        ),
        [topic_storage_name("b")]
    );
    // Messages of the topic and the queue of one name stay apart.
    let (queue, topic) = (scope(&p, "a"), scope(&p, &topic_storage_name("a")));
    post_n(&backend, &topic, 2).await;
    assert_eq!(all_ids(&backend, &queue).await.len(), 0);
    assert_eq!(all_ids(&backend, &topic).await.len(), 2);
    q.delete(&topic).await.unwrap();
    assert!(q.get(&queue).await.unwrap().is_some());
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
