//! [`QueueStore`] on `D.queues`: one document per queue, `p` + `q` unique.
//!
//! Metadata is kept as the JSON text the api core wrote (`m`), so keys keep
//! their order and any JSON value round-trips exactly (BSON has no
//! unsigned 64-bit integers, and keys starting with `$` or holding dots are
//! awkward in MongoDB documents).

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::options::FindOptions;

use super::{corrupt, duplicate_key, Failure, MongoStore, OpResult};
use crate::storage::{names, Metadata, QueueEntry, QueueStore, Scope, StorageError, StorageResult};

fn encode(metadata: &Metadata) -> StorageResult<String> {
    serde_json::to_string(metadata)
        .map_err(|e| StorageError::Unavailable(format!("cannot encode queue metadata: {e}")))
}

fn decode(doc: &Document) -> OpResult<Metadata> {
    let text = doc.get_str("m").map_err(|e| corrupt("queue", e))?;
    serde_json::from_str(text).map_err(|e| corrupt("queue's metadata", e))
}

#[async_trait]
impl QueueStore for MongoStore {
    async fn create(&self, scope: &Scope, metadata: &Metadata) -> StorageResult<bool> {
        let m = encode(metadata)?;
        let m = &m;
        self.run("queue create", true, |r, now| async move {
            let record = doc! {
                "p": &scope.project, "q": &scope.queue, "m": m, "cr": now,
            };
            match r.queues().insert_one(record).await {
                Ok(_) => Ok(true),
                // A retried insert that had gone through also lands here:
                // the queue exists either way.
                Err(e) if duplicate_key(&e) => Ok(false),
                Err(e) => Err(Failure::Mongo(e)),
            }
        })
        .await
    }

    async fn get(&self, scope: &Scope) -> StorageResult<Option<Metadata>> {
        self.run("queue get", true, |r, _| async move {
            let found = r
                .queues()
                .find_one(doc! { "p": &scope.project, "q": &scope.queue })
                .projection(doc! { "m": 1, "_id": 0 })
                .await?;
            found.as_ref().map(decode).transpose()
        })
        .await
    }

    async fn set_metadata(&self, scope: &Scope, metadata: &Metadata) -> StorageResult<()> {
        let m = encode(metadata)?;
        let m = &m;
        self.run("queue set_metadata", true, |r, _| async move {
            let updated = r
                .queues()
                .update_one(
                    doc! { "p": &scope.project, "q": &scope.queue },
                    doc! { "$set": { "m": m } },
                )
                .await?;
            if updated.matched_count == 0 {
                return Err(StorageError::QueueNotFound.into());
            }
            Ok(())
        })
        .await
    }

    async fn delete(&self, scope: &Scope) -> StorageResult<()> {
        self.run("queue delete", true, |r, _| async move {
            // (The messages and the queue's counter go with the purge the
            // pipeline runs first.)
            r.queues()
                .delete_one(doc! { "p": &scope.project, "q": &scope.queue })
                .await?;
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
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run("queue list", true, |r, _| async move {
            let mut filter = doc! { "p": project };
            if let Some(marker) = marker {
                filter.insert("q", doc! { "$gt": marker });
            }
            let projection = if detailed {
                doc! { "q": 1, "m": 1, "_id": 0 }
            } else {
                doc! { "q": 1, "_id": 0 }
            };
            let options = FindOptions::builder()
                .sort(doc! { "p": 1, "q": 1 })
                .limit(limit)
                .projection(projection)
                .build();
            let docs: Vec<Document> = r
                .queues()
                .find(filter)
                .with_options(options)
                .await?
                .try_collect()
                .await?;
            docs.iter()
                .map(|d| {
                    Ok(QueueEntry {
                        name: d.get_str("q").map_err(|e| corrupt("queue", e))?.to_owned(),
                        metadata: if detailed { Some(decode(d)?) } else { None },
                    })
                })
                .collect()
        })
        .await
    }

    async fn count(&self, project: &str) -> StorageResult<u64> {
        self.run("queue count", true, |r, _| async move {
            Ok(r.queues()
                .count_documents(doc! { "p": project, "q": { "$lt": names::NAMESPACE_END } })
                .await?)
        })
        .await
    }

    async fn is_alive(&self) -> bool {
        self.run("ping", true, |r, _| async move {
            r.client
                .database("admin")
                .run_command(doc! { "ping": 1 })
                .await?;
            Ok(())
        })
        .await
        .is_ok()
    }
}
