//! [`Catalogue`] on three tables of schema version 4: `pools` (keyed by
//! name, the URI unique), `flavors` (keyed by project and name) and
//! `catalogue` (keyed by project and queue, indexed by pool).

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};

use super::{DbError, DbResult, SqliteStore};
use crate::storage::catalogue::{
    Catalogue, FlavorRecord, PoolRecord, MAX_FLAVORS_PER_PROJECT, MAX_POOLS,
};
use crate::storage::{Metadata, Scope, StorageError, StorageResult};

/// The tables of version 4.
pub(super) const SCHEMA_V4: &str = "
CREATE TABLE IF NOT EXISTS pools (
    name    TEXT    NOT NULL PRIMARY KEY,
    uri     TEXT    NOT NULL UNIQUE,
    weight  INTEGER NOT NULL,
    flavor  TEXT,
    options TEXT    NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pools_by_flavor ON pools (flavor);
CREATE TABLE IF NOT EXISTS flavors (
    project      TEXT NOT NULL,
    name         TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    PRIMARY KEY (project, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS catalogue (
    project TEXT NOT NULL,
    queue   TEXT NOT NULL,
    pool    TEXT NOT NULL,
    PRIMARY KEY (project, queue)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS catalogue_by_pool ON catalogue (pool);
";

fn pool_from_row(row: &Row<'_>) -> DbResult<PoolRecord> {
    let options: String = row.get(4)?;
    Ok(PoolRecord {
        name: row.get(0)?,
        uri: row.get(1)?,
        weight: row.get(2)?,
        flavor: row.get(3)?,
        options: serde_json::from_str::<Metadata>(&options)
            .map_err(|e| DbError::Corrupt(format!("pool options: {e}")))?,
    })
}

fn flavor_from_row(row: &Row<'_>) -> DbResult<FlavorRecord> {
    let capabilities: String = row.get(2)?;
    Ok(FlavorRecord {
        project: row.get(0)?,
        name: row.get(1)?,
        capabilities: serde_json::from_str(&capabilities)
            .map_err(|e| DbError::Corrupt(format!("flavor capabilities: {e}")))?,
    })
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

const POOL_COLUMNS: &str = "name, uri, weight, flavor, options";

#[async_trait]
impl Catalogue for SqliteStore {
    async fn list_pools(&self, marker: Option<&str>, n: usize) -> StorageResult<Vec<PoolRecord>> {
        let marker = marker.unwrap_or("").to_owned();
        self.read("pool list", move |conn, _| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {POOL_COLUMNS} FROM pools WHERE name > ?1 ORDER BY name LIMIT ?2"
            ))?;
            let mut rows = stmt.query(params![marker, limit(n)])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(pool_from_row(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn get_pool(&self, name: &str) -> StorageResult<Option<PoolRecord>> {
        let name = name.to_owned();
        self.read("pool get", move |conn, _| {
            let mut stmt =
                conn.prepare_cached(&format!("SELECT {POOL_COLUMNS} FROM pools WHERE name = ?1"))?;
            let mut rows = stmt.query(params![name])?;
            rows.next()?.map(pool_from_row).transpose()
        })
        .await
    }

    async fn put_pool(&self, pool: &PoolRecord) -> StorageResult<()> {
        let pool = pool.clone();
        let options = serde_json::to_string(&pool.options).map_err(|e| {
            StorageError::Unavailable(format!("sqlite: cannot encode pool options: {e}"))
        })?;
        self.write("pool put", move |conn, _| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let holder: Option<String> = tx
                .prepare_cached("SELECT name FROM pools WHERE uri = ?1")?
                .query_row(params![pool.uri], |r| r.get(0))
                .optional()?;
            if holder.as_deref().is_some_and(|h| h != pool.name) {
                return Err(StorageError::Conflict(
                    "The database URI is in use by another pool.".into(),
                )
                .into());
            }
            let exists: bool = tx
                .prepare_cached("SELECT 1 FROM pools WHERE name = ?1")?
                .query_row(params![pool.name], |_| Ok(()))
                .optional()?
                .is_some();
            if !exists {
                let count: i64 = tx
                    .prepare_cached("SELECT COUNT(*) FROM pools")?
                    .query_row([], |r| r.get(0))?;
                if count >= limit(MAX_POOLS) {
                    return Err(StorageError::Rejected(format!(
                        "A deployment may have at most {MAX_POOLS} pools."
                    ))
                    .into());
                }
            }
            tx.prepare_cached(
                "INSERT INTO pools (name, uri, weight, flavor, options) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (name) DO UPDATE SET uri = ?2, weight = ?3, flavor = ?4, options = ?5",
            )?
            .execute(params![pool.name, pool.uri, pool.weight, pool.flavor, options])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn delete_pool(&self, name: &str) -> StorageResult<()> {
        let name = name.to_owned();
        self.write("pool delete", move |conn, _| {
            conn.prepare_cached("DELETE FROM pools WHERE name = ?1")?
                .execute(params![name])?;
            Ok(())
        })
        .await
    }

    async fn pools_of_flavor(&self, flavor: Option<&str>) -> StorageResult<Vec<PoolRecord>> {
        let flavor = flavor.map(str::to_owned);
        self.read("pools of flavor", move |conn, _| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {POOL_COLUMNS} FROM pools WHERE flavor IS ?1 ORDER BY name LIMIT ?2"
            ))?;
            let mut rows = stmt.query(params![flavor, limit(MAX_POOLS)])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(pool_from_row(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn list_flavors(
        &self,
        project: &str,
        marker: Option<&str>,
        n: usize,
    ) -> StorageResult<Vec<FlavorRecord>> {
        let (project, marker) = (project.to_owned(), marker.unwrap_or("").to_owned());
        self.read("flavor list", move |conn, _| {
            let mut stmt = conn.prepare_cached(
                "SELECT project, name, capabilities FROM flavors \
                 WHERE project = ?1 AND name > ?2 ORDER BY name LIMIT ?3",
            )?;
            let mut rows = stmt.query(params![project, marker, limit(n)])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(flavor_from_row(row)?);
            }
            Ok(out)
        })
        .await
    }

    async fn get_flavor(&self, project: &str, name: &str) -> StorageResult<Option<FlavorRecord>> {
        let (project, name) = (project.to_owned(), name.to_owned());
        self.read("flavor get", move |conn, _| {
            let mut stmt = conn.prepare_cached(
                "SELECT project, name, capabilities FROM flavors WHERE project = ?1 AND name = ?2",
            )?;
            let mut rows = stmt.query(params![project, name])?;
            rows.next()?.map(flavor_from_row).transpose()
        })
        .await
    }

    async fn put_flavor(&self, flavor: &FlavorRecord) -> StorageResult<()> {
        let flavor = flavor.clone();
        let capabilities = serde_json::to_string(&flavor.capabilities).map_err(|e| {
            StorageError::Unavailable(format!("sqlite: cannot encode capabilities: {e}"))
        })?;
        self.write("flavor put", move |conn, _| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let exists = tx
                .prepare_cached("SELECT 1 FROM flavors WHERE project = ?1 AND name = ?2")?
                .query_row(params![flavor.project, flavor.name], |_| Ok(()))
                .optional()?
                .is_some();
            if !exists {
                let count: i64 = tx
                    .prepare_cached("SELECT COUNT(*) FROM flavors WHERE project = ?1")?
                    .query_row(params![flavor.project], |r| r.get(0))?;
                if count >= limit(MAX_FLAVORS_PER_PROJECT) {
                    return Err(StorageError::Rejected(format!(
                        "A project may have at most {MAX_FLAVORS_PER_PROJECT} flavors."
                    ))
                    .into());
                }
            }
            tx.prepare_cached(
                "INSERT INTO flavors (project, name, capabilities) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (project, name) DO UPDATE SET capabilities = ?3",
            )?
            .execute(params![flavor.project, flavor.name, capabilities])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn delete_flavor(&self, project: &str, name: &str) -> StorageResult<()> {
        let (project, name) = (project.to_owned(), name.to_owned());
        self.write("flavor delete", move |conn, _| {
            conn.prepare_cached("DELETE FROM flavors WHERE project = ?1 AND name = ?2")?
                .execute(params![project, name])?;
            Ok(())
        })
        .await
    }

    async fn lookup(&self, scope: &Scope) -> StorageResult<Option<String>> {
        let scope = scope.clone();
        self.read("catalogue lookup", move |conn, _| {
            Ok(conn
                .prepare_cached("SELECT pool FROM catalogue WHERE project = ?1 AND queue = ?2")?
                .query_row(params![scope.project, scope.queue], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn map(&self, scope: &Scope, pool: &str) -> StorageResult<()> {
        let (scope, pool) = (scope.clone(), pool.to_owned());
        self.write("catalogue map", move |conn, _| {
            conn.prepare_cached(
                "INSERT INTO catalogue (project, queue, pool) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (project, queue) DO UPDATE SET pool = ?3",
            )?
            .execute(params![scope.project, scope.queue, pool])?;
            Ok(())
        })
        .await
    }

    async fn unmap(&self, scope: &Scope) -> StorageResult<()> {
        let scope = scope.clone();
        self.write("catalogue unmap", move |conn, _| {
            conn.prepare_cached("DELETE FROM catalogue WHERE project = ?1 AND queue = ?2")?
                .execute(params![scope.project, scope.queue])?;
            Ok(())
        })
        .await
    }

    async fn queues_on_pool(&self, pool: &str) -> StorageResult<u64> {
        let pool = pool.to_owned();
        self.read("catalogue count", move |conn, _| {
            let n: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM catalogue WHERE pool = ?1")?
                .query_row(params![pool], |r| r.get(0))?;
            Ok(n.max(0) as u64)
        })
        .await
    }
}
