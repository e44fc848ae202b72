//! [`Catalogue`] on Redis: the management plane under one hash tag,
//! `<ns>:m{mgmt}`, so that every change is one atomic script
//! (`catalogue.lua`) on Cluster too. Pools are a hash of JSON records by
//! name, with a sorted set of names for paging and a hash of URIs for
//! their uniqueness; flavors likewise, keyed `<plen>:<project>:<name>`;
//! the catalogue is a hash keyed `<plen>:<project>:<queue>` with a count of
//! queues per pool.

use async_trait::async_trait;
use redis::{AsyncCommands, Script};
use serde_json::{json, Value};

use super::RedisStore;
use crate::storage::catalogue::{
    Catalogue, FlavorRecord, PoolRecord, MAX_FLAVORS_PER_PROJECT, MAX_POOLS,
};
use crate::storage::{Metadata, Scope, StorageError, StorageResult};

fn script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("catalogue.lua")))
}

/// `<len>:<a>:<b>`: unambiguous whatever the names contain.
fn member(a: &str, b: &str) -> String {
    format!("{}:{a}:{b}", a.len())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(format!("Redis: a stored {what} is corrupt: {e}"))
}

fn pool_json(p: &PoolRecord) -> String {
    json!({"name": p.name, "uri": p.uri, "weight": p.weight, "flavor": p.flavor, "options": p.options})
        .to_string()
}

fn pool_from_json(text: &str) -> StorageResult<PoolRecord> {
    let v: Value = serde_json::from_str(text).map_err(|e| corrupt("pool", e))?;
    Ok(PoolRecord {
        name: v["name"].as_str().unwrap_or_default().to_owned(),
        uri: v["uri"].as_str().unwrap_or_default().to_owned(),
        weight: v["weight"].as_i64().unwrap_or(0),
        flavor: v["flavor"].as_str().map(str::to_owned),
        options: v["options"]
            .as_object()
            .cloned()
            .unwrap_or_else(Metadata::new),
    })
}

fn flavor_json(f: &FlavorRecord) -> String {
    json!({"project": f.project, "name": f.name, "capabilities": f.capabilities}).to_string()
}

fn flavor_from_json(text: &str) -> StorageResult<FlavorRecord> {
    let v: Value = serde_json::from_str(text).map_err(|e| corrupt("flavor", e))?;
    Ok(FlavorRecord {
        project: v["project"].as_str().unwrap_or_default().to_owned(),
        name: v["name"].as_str().unwrap_or_default().to_owned(),
        capabilities: v["capabilities"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

impl RedisStore {
    fn mgmt_prefix(&self) -> String {
        format!("{}:m{{mgmt}}", self.inner.ns)
    }

    async fn catalogue_op(&self, what: &'static str, args: Vec<String>) -> StorageResult<String> {
        let prefix = &self.mgmt_prefix();
        let args = &args;
        self.inner
            .conn
            .run(what, true, |mut conn| async move {
                let mut call = script().key(prefix);
                call.key(super::keys::slot_guard_key(prefix));
                for a in args {
                    call.arg(a);
                }
                call.invoke_async(&mut conn).await
            })
            .await
    }

    async fn hget(
        &self,
        what: &'static str,
        key: String,
        field: String,
    ) -> StorageResult<Option<String>> {
        let (key, field) = (&key, &field);
        self.inner
            .conn
            .run(
                what,
                true,
                |mut conn| async move { conn.hget(key, field).await },
            )
            .await
    }

    /// Members of a lexicographic set after `after` (exclusive) and
    /// within `[lo, hi]`, at most `n`, then their records from `hash`.
    async fn page(
        &self,
        what: &'static str,
        set: &str,
        hash: &str,
        (lo, hi): (String, String),
        n: usize,
    ) -> StorageResult<Vec<String>> {
        let count = isize::try_from(n).unwrap_or(isize::MAX);
        let (set, hash, lo, hi) = (set, hash, &lo, &hi);
        self.inner
            .conn
            .run(what, true, |mut conn| async move {
                let members: Vec<String> = redis::cmd("ZRANGEBYLEX")
                    .arg(set)
                    .arg(lo)
                    .arg(hi)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(count)
                    .query_async(&mut conn)
                    .await?;
                if members.is_empty() {
                    return Ok(Vec::new());
                }
                let records: Vec<Option<String>> = redis::cmd("HMGET")
                    .arg(hash)
                    .arg(&members)
                    .query_async(&mut conn)
                    .await?;
                Ok(records.into_iter().flatten().collect())
            })
            .await
    }
}

#[async_trait]
impl Catalogue for RedisStore {
    async fn list_pools(&self, marker: Option<&str>, n: usize) -> StorageResult<Vec<PoolRecord>> {
        let p = self.mgmt_prefix();
        let lo = match marker {
            Some(m) => format!("({m}"),
            None => "-".to_owned(),
        };
        let rows = self
            .page(
                "pool list",
                &format!("{p}:pool_names"),
                &format!("{p}:pools"),
                (lo, "+".into()),
                n.min(MAX_POOLS),
            )
            .await?;
        rows.iter().map(|r| pool_from_json(r)).collect()
    }

    async fn get_pool(&self, name: &str) -> StorageResult<Option<PoolRecord>> {
        let p = self.mgmt_prefix();
        self.hget("pool get", format!("{p}:pools"), name.to_owned())
            .await?
            .map(|t| pool_from_json(&t))
            .transpose()
    }

    async fn put_pool(&self, pool: &PoolRecord) -> StorageResult<()> {
        let args = vec![
            "put_pool".to_owned(),
            pool.name.clone(),
            pool.uri.clone(),
            pool_json(pool),
            MAX_POOLS.to_string(),
        ];
        match self.catalogue_op("pool put", args).await?.as_str() {
            "ok" => Ok(()),
            "uri_in_use" => Err(StorageError::Conflict(
                "The database URI is in use by another pool.".into(),
            )),
            _ => Err(StorageError::Rejected(format!(
                "A deployment may have at most {MAX_POOLS} pools."
            ))),
        }
    }

    async fn delete_pool(&self, name: &str) -> StorageResult<()> {
        self.catalogue_op("pool delete", vec!["delete_pool".into(), name.to_owned()])
            .await
            .map(drop)
    }

    async fn pools_of_flavor(&self, flavor: Option<&str>) -> StorageResult<Vec<PoolRecord>> {
        // Pools are few (at most MAX_POOLS): read them all and filter.
        let all = self.list_pools(None, MAX_POOLS).await?;
        Ok(all
            .into_iter()
            .filter(|p| p.flavor.as_deref() == flavor)
            .collect())
    }

    async fn list_flavors(
        &self,
        project: &str,
        marker: Option<&str>,
        n: usize,
    ) -> StorageResult<Vec<FlavorRecord>> {
        let p = self.mgmt_prefix();
        // Every member of the project starts `<plen>:<project>:`; the next
        // string after all of them is `<plen>:<project>;` (';' follows ':').
        let prefix = member(project, "");
        let lo = match marker {
            Some(m) => format!("({}", member(project, m)),
            None => format!("[{prefix}"),
        };
        let hi = format!("({}{};", project.len(), format_args!(":{project}"));
        let rows = self
            .page(
                "flavor list",
                &format!("{p}:flavor_names"),
                &format!("{p}:flavors"),
                (lo, hi),
                n.min(MAX_FLAVORS_PER_PROJECT),
            )
            .await?;
        rows.iter().map(|r| flavor_from_json(r)).collect()
    }

    async fn get_flavor(&self, project: &str, name: &str) -> StorageResult<Option<FlavorRecord>> {
        let p = self.mgmt_prefix();
        self.hget("flavor get", format!("{p}:flavors"), member(project, name))
            .await?
            .map(|t| flavor_from_json(&t))
            .transpose()
    }

    async fn put_flavor(&self, flavor: &FlavorRecord) -> StorageResult<()> {
        let args = vec![
            "put_flavor".to_owned(),
            member(&flavor.project, &flavor.name),
            flavor_json(flavor),
            MAX_FLAVORS_PER_PROJECT.to_string(),
        ];
        match self.catalogue_op("flavor put", args).await?.as_str() {
            "ok" => Ok(()),
            _ => Err(StorageError::Rejected(format!(
                "A project may have at most {MAX_FLAVORS_PER_PROJECT} flavors."
            ))),
        }
    }

    async fn delete_flavor(&self, project: &str, name: &str) -> StorageResult<()> {
        self.catalogue_op(
            "flavor delete",
            vec!["delete_flavor".into(), member(project, name)],
        )
        .await
        .map(drop)
    }

    async fn lookup(&self, scope: &Scope) -> StorageResult<Option<String>> {
        let p = self.mgmt_prefix();
        self.hget(
            "catalogue lookup",
            format!("{p}:catalogue"),
            member(&scope.project, &scope.queue),
        )
        .await
    }

    async fn map(&self, scope: &Scope, pool: &str) -> StorageResult<()> {
        let args = vec![
            "map".into(),
            member(&scope.project, &scope.queue),
            pool.to_owned(),
        ];
        self.catalogue_op("catalogue map", args).await.map(drop)
    }

    async fn unmap(&self, scope: &Scope) -> StorageResult<()> {
        let args = vec!["unmap".into(), member(&scope.project, &scope.queue)];
        self.catalogue_op("catalogue unmap", args).await.map(drop)
    }

    async fn queues_on_pool(&self, pool: &str) -> StorageResult<u64> {
        let p = self.mgmt_prefix();
        let n = self
            .hget(
                "catalogue count",
                format!("{p}:pool_queues"),
                pool.to_owned(),
            )
            .await?;
        Ok(n.and_then(|n| n.parse::<i64>().ok()).unwrap_or(0).max(0) as u64)
    }
}
