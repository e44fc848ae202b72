//! [`QueueStore`] on the `queues` table.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::{DbError, DbResult, SqliteStore};
use crate::storage::{names, Metadata, QueueEntry, QueueStore, Scope, StorageError, StorageResult};

fn encode(metadata: &Metadata) -> StorageResult<String> {
    serde_json::to_string(metadata).map_err(|e| {
        StorageError::Unavailable(format!("sqlite: cannot encode queue metadata: {e}"))
    })
}

fn decode(text: &str) -> DbResult<Metadata> {
    serde_json::from_str(text).map_err(|e| DbError::Corrupt(format!("queue metadata: {e}")))
}

#[async_trait]
impl QueueStore for SqliteStore {
    async fn create(&self, scope: &Scope, metadata: &Metadata) -> StorageResult<bool> {
        let scope = scope.clone();
        let metadata = encode(metadata)?;
        self.write("queue create", move |conn, now| {
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO queues (project, name, metadata, created_ms) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (project, name) DO NOTHING",
                )?
                .execute(params![scope.project, scope.queue, metadata, now])?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn get(&self, scope: &Scope) -> StorageResult<Option<Metadata>> {
        let scope = scope.clone();
        self.read("queue get", move |conn, _| {
            let text: Option<String> = conn
                .prepare_cached("SELECT metadata FROM queues WHERE project = ?1 AND name = ?2")?
                .query_row(params![scope.project, scope.queue], |r| r.get(0))
                .optional()?;
            text.map(|t| decode(&t)).transpose()
        })
        .await
    }

    async fn set_metadata(&self, scope: &Scope, metadata: &Metadata) -> StorageResult<()> {
        let scope = scope.clone();
        let metadata = encode(metadata)?;
        self.write("queue set_metadata", move |conn, _| {
            let updated = conn
                .prepare_cached("UPDATE queues SET metadata = ?3 WHERE project = ?1 AND name = ?2")?
                .execute(params![scope.project, scope.queue, metadata])?;
            if updated == 0 {
                return Err(StorageError::QueueNotFound.into());
            }
            Ok(())
        })
        .await
    }

    async fn delete(&self, scope: &Scope) -> StorageResult<()> {
        let scope = scope.clone();
        self.write("queue delete", move |conn, _| {
            conn.prepare_cached("DELETE FROM queues WHERE project = ?1 AND name = ?2")?
                .execute(params![scope.project, scope.queue])?;
            Ok(())
        })
        .await
    }

    async fn list(
        &self,
        project: &str,
        marker: Option<&str>,
        limit: usize,
        detailed: bool,
    ) -> StorageResult<Vec<QueueEntry>> {
        let project = project.to_owned();
        // Queue names are never empty, so "" sorts before every one of them.
        let marker = marker.unwrap_or("").to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read("queue list", move |conn, _| {
            let mut stmt = conn.prepare_cached(
                "SELECT name, metadata FROM queues WHERE project = ?1 AND name > ?2 \
                 ORDER BY name LIMIT ?3",
            )?;
            let mut rows = stmt.query(params![project, marker, limit])?;
            let mut queues = Vec::new();
            while let Some(row) = rows.next()? {
                let metadata = if detailed {
                    Some(decode(&row.get::<_, String>(1)?)?)
                } else {
                    None
                };
                queues.push(QueueEntry {
                    name: row.get(0)?,
                    metadata,
                });
            }
            Ok(queues)
        })
        .await
    }

    async fn count(&self, project: &str) -> StorageResult<u64> {
        let project = project.to_owned();
        self.read("queue count", move |conn, _| {
            let n: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM queues WHERE project = ?1 AND name < ?2")?
                .query_row(params![project, names::NAMESPACE_END], |r| r.get(0))?;
            Ok(n.max(0) as u64)
        })
        .await
    }

    async fn is_alive(&self) -> bool {
        self.read("ping", |conn, _| {
            conn.prepare_cached("SELECT 1")?
                .query_row([], |r| r.get::<_, i64>(0))?;
            Ok(())
        })
        .await
        .is_ok()
    }
}
