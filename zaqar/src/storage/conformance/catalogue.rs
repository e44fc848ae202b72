//! The conformance suite: the management plane of pooling (pools, flavors,
//! the catalogue), on every driver that can be a management store.

use super::*;
use crate::storage::catalogue::{Catalogue, FlavorRecord, PoolRecord, MAX_POOLS};

fn catalogue(backend: &Backend) -> std::sync::Arc<dyn Catalogue> {
    backend
        .catalogue
        .clone()
        .expect("a management store keeps the pooling catalogue")
}

fn pool(name: &str, uri: &str, flavor: Option<&str>) -> PoolRecord {
    PoolRecord {
        name: name.into(),
        uri: uri.into(),
        weight: 10,
        flavor: flavor.map(String::from),
        options: metadata(json!({"k": 1})),
    }
}

/// Pools: create, replace, read, page in name order, URIs unique, filter by
/// flavor, delete.
pub(crate) async fn catalogue_pools(backend: Backend, _clock: ManualClock) {
    let c = catalogue(&backend);
    let tag = project();
    let names: Vec<String> = (0..5).map(|i| format!("{tag}-{i}")).collect();
    for (i, n) in names.iter().enumerate() {
        let flavor = (i % 2 == 0).then_some("gold");
        c.put_pool(&pool(n, &format!("redis://h{i}/{tag}"), flavor))
            .await
            .unwrap();
    }
    let got = c.get_pool(&names[1]).await.unwrap().unwrap();
    assert_eq!(got, pool(&names[1], &format!("redis://h1/{tag}"), None));
    assert!(c.get_pool("no-such-pool").await.unwrap().is_none());
    // Another pool's URI is a conflict; its own is fine (replace).
    let clash = c
        .put_pool(&pool("other", &format!("redis://h1/{tag}"), None))
        .await;
    assert!(matches!(clash, Err(StorageError::Conflict(_))), "{clash:?}");
    let mut changed = pool(&names[1], &format!("redis://h9/{tag}"), Some("gold"));
    changed.weight = 3;
    c.put_pool(&changed).await.unwrap();
    assert_eq!(c.get_pool(&names[1]).await.unwrap().unwrap(), changed);
    // The old URI is free again.
    c.put_pool(&pool(
        &format!("{tag}-x"),
        &format!("redis://h1/{tag}"),
        None,
    ))
    .await
    .unwrap();
    // Paging in name order.
    let first = c.list_pools(None, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    let rest = c.list_pools(Some(&first[1].name), 100).await.unwrap();
    let mut all: Vec<String> = first.iter().chain(&rest).map(|p| p.name.clone()).collect();
    assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
    all.retain(|n| n.starts_with(&tag));
    assert_eq!(all.len(), 6);
    // By flavor.
    let gold: Vec<String> = c
        .pools_of_flavor(Some("gold"))
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .filter(|n| n.starts_with(&tag))
        .collect();
    assert_eq!(
        gold,
        vec![
            names[0].clone(),
            names[1].clone(),
            names[2].clone(),
            names[4].clone()
        ]
    );
    let plain = c.pools_of_flavor(None).await.unwrap();
    assert!(plain.iter().all(|p| p.flavor.is_none()));
    assert!(plain.iter().any(|p| p.name == names[3]));
    // Delete (twice is fine).
    c.delete_pool(&names[0]).await.unwrap();
    c.delete_pool(&names[0]).await.unwrap();
    assert!(c.get_pool(&names[0]).await.unwrap().is_none());
    // Its URI is free.
    c.put_pool(&pool("again", &format!("redis://h0/{tag}"), None))
        .await
        .unwrap();
}

/// At most MAX_POOLS pools; replacing one at the bound still works.
pub(crate) async fn catalogue_pool_bound(backend: Backend, _clock: ManualClock) {
    let c = catalogue(&backend);
    let existing = c.list_pools(None, MAX_POOLS).await.unwrap().len();
    for i in existing..MAX_POOLS {
        c.put_pool(&pool(
            &format!("p{i:05}"),
            &format!("sqlite:///tmp/p{i}"),
            None,
        ))
        .await
        .unwrap();
    }
    let past = c
        .put_pool(&pool("one-more", "sqlite:///tmp/one-more", None))
        .await;
    assert!(matches!(past, Err(StorageError::Rejected(_))), "{past:?}");
    let mut last = c.list_pools(None, MAX_POOLS).await.unwrap().pop().unwrap();
    last.weight = 99;
    c.put_pool(&last).await.unwrap();
}

/// Flavors belong to a project: isolated, paged, replaced, deleted.
pub(crate) async fn catalogue_flavors(backend: Backend, _clock: ManualClock) {
    let c = catalogue(&backend);
    let (a, b) = (project(), project());
    let flavor = |p: &str, n: &str| FlavorRecord {
        project: p.into(),
        name: n.into(),
        capabilities: vec!["FIFO".into(), "CLAIMS".into()],
    };
    for n in ["silver", "gold", "bronze"] {
        c.put_flavor(&flavor(&a, n)).await.unwrap();
    }
    c.put_flavor(&flavor(&b, "gold")).await.unwrap();
    let names = |v: Vec<FlavorRecord>| v.into_iter().map(|f| f.name).collect::<Vec<_>>();
    assert_eq!(
        names(c.list_flavors(&a, None, 10).await.unwrap()),
        ["bronze", "gold", "silver"]
    );
    assert_eq!(
        names(c.list_flavors(&a, Some("bronze"), 1).await.unwrap()),
        ["gold"]
    );
    assert_eq!(names(c.list_flavors(&b, None, 10).await.unwrap()), ["gold"]);
    // A project whose name extends another's sees only its own.
    assert!(c
        .list_flavors(&format!("{a}x"), None, 10)
        .await
        .unwrap()
        .is_empty());
    let mut changed = flavor(&a, "gold");
    changed.capabilities = vec!["AOD".into()];
    c.put_flavor(&changed).await.unwrap();
    assert_eq!(c.get_flavor(&a, "gold").await.unwrap().unwrap(), changed);
    assert_eq!(
        c.get_flavor(&b, "gold").await.unwrap().unwrap(),
        flavor(&b, "gold")
    );
    c.delete_flavor(&a, "gold").await.unwrap();
    assert!(c.get_flavor(&a, "gold").await.unwrap().is_none());
    assert!(c.get_flavor(&b, "gold").await.unwrap().is_some());
}

/// The catalogue maps each (project, queue) to one pool, unambiguously,
/// and counts the queues of each pool.
pub(crate) async fn catalogue_mapping(backend: Backend, _clock: ManualClock) {
    let c = catalogue(&backend);
    let tag = project();
    let (p1, p2) = (format!("{tag}-1"), format!("{tag}-2"));
    let a = scope("p.sub", &tag);
    let b = scope("p", &format!("sub.{tag}"));
    assert_eq!(c.lookup(&a).await.unwrap(), None);
    c.map(&a, &p1).await.unwrap();
    c.map(&b, &p1).await.unwrap();
    assert_eq!(c.lookup(&a).await.unwrap().as_deref(), Some(p1.as_str()));
    assert_eq!(c.queues_on_pool(&p1).await.unwrap(), 2);
    // Remapping moves the count; mapping twice counts once.
    c.map(&b, &p2).await.unwrap();
    c.map(&b, &p2).await.unwrap();
    assert_eq!(c.queues_on_pool(&p1).await.unwrap(), 1);
    assert_eq!(c.queues_on_pool(&p2).await.unwrap(), 1);
    c.unmap(&a).await.unwrap();
    c.unmap(&a).await.unwrap();
    assert_eq!(c.lookup(&a).await.unwrap(), None);
    assert_eq!(c.lookup(&b).await.unwrap().as_deref(), Some(p2.as_str()));
    assert_eq!(c.queues_on_pool(&p1).await.unwrap(), 0);
}
