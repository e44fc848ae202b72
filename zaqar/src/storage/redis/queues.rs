//! The queue records of the Redis driver (see the module docs of [`super`]
//! for the record layout and the scripts).

use super::conn::Conn;
use super::*;
use crate::storage::names;
use crate::storage::validated;

impl RedisStore {
    /// The queue's metadata as stored (JSON), `None` when it does not exist.
    async fn metadata_json(&self, scope: &Scope) -> StorageResult<Option<String>> {
        let key = &self.meta_key(scope);
        self.inner
            .conn
            .run("queue get", true, |mut conn| async move {
                ::redis::cmd("HGET")
                    .arg(key)
                    .arg(&scope.queue)
                    .query_async(&mut conn)
                    .await
            })
            .await
    }

    /// The hash of the project's queue metadata (one field per queue).
    fn meta_key(&self, scope: &Scope) -> String {
        let mut key = keys::project_prefix(&self.inner.ns, &scope.project);
        key.push_str(":meta");
        key
    }

    /// The queue's metadata stamp, read *before* its metadata (see
    /// metadata_stamp.rs), and the metadata as stored.
    ///
    /// On one server both go in one pipeline, which the server runs in
    /// order: one round trip, where a queue not kept (the first post to it
    /// in [`metadata_stamp::ENTRY_TTL`]) once cost two more than a kept one.
    /// On Cluster the two keys are in different slots, perhaps on different
    /// nodes, whose replies could come in either order: one after the other.
    async fn stamp_then_metadata(
        &self,
        scope: &Scope,
    ) -> StorageResult<(Option<String>, Option<String>)> {
        let stamp_key = metadata_stamp::key(&keys::queue_prefix(&self.inner.ns, scope));
        let (stamp_key, meta_key) = (&stamp_key, &self.meta_key(scope));
        self.inner
            .conn
            .run("queue get", true, |conn| async move {
                match conn {
                    Conn::Single(mut conn) => {
                        ::redis::pipe()
                            .cmd("GET")
                            .arg(stamp_key)
                            .cmd("HGET")
                            .arg(meta_key)
                            .arg(&scope.queue)
                            .query_async(&mut conn)
                            .await
                    }
                    Conn::Cluster(mut conn) => {
                        let stamp = ::redis::cmd("GET")
                            .arg(stamp_key)
                            .query_async(&mut conn)
                            .await?;
                        let json = ::redis::cmd("HGET")
                            .arg(meta_key)
                            .arg(&scope.queue)
                            .query_async(&mut conn)
                            .await?;
                        Ok((stamp, json))
                    }
                }
            })
            .await
    }

    /// Gives the queue a new metadata stamp (`fresh`) or removes it, and
    /// forgets what this process kept of it (see metadata_stamp.rs).
    async fn write_stamp(&self, scope: &Scope, fresh: bool) -> StorageResult<()> {
        self.inner.stamped.forget(scope);
        let key = metadata_stamp::key(&keys::queue_prefix(&self.inner.ns, scope));
        let key = &key;
        let stamp = metadata_stamp::new_stamp();
        let stamp = &stamp;
        self.inner
            .conn
            .run("queue metadata stamp", true, |mut conn| async move {
                if fresh {
                    ::redis::cmd("SET")
                        .arg(key)
                        .arg(stamp)
                        .query_async::<()>(&mut conn)
                        .await
                } else {
                    ::redis::cmd("DEL")
                        .arg(key)
                        .query_async::<()>(&mut conn)
                        .await
                }
            })
            .await
    }
}

#[async_trait]
impl QueueStore for RedisStore {
    async fn create(&self, scope: &Scope, metadata: &Metadata) -> StorageResult<bool> {
        let json = metadata_json(metadata)?;
        let created: i64 = self
            .eval_project(
                "queue create",
                false,
                &scope.project,
                &["create", &scope.queue, &json],
            )
            .await?;
        if created == 1 {
            self.write_stamp(scope, true).await?;
        }
        Ok(created == 1)
    }

    async fn get_for_write(&self, scope: &Scope, fresh: bool) -> StorageResult<Option<Metadata>> {
        if !fresh {
            if let Some((metadata, stamp)) = self.inner.stamped.metadata(scope) {
                validated::record(Some(stamp));
                return Ok(Some(metadata));
            }
        }
        let (stamp, json) = self.stamp_then_metadata(scope).await?;
        let metadata = json.as_deref().map(parse_metadata).transpose()?;
        match (stamp, &metadata, &json) {
            (Some(stamp), Some(m), Some(json)) => {
                validated::record(Some(stamp.clone()));
                self.inner.stamped.keep(scope, stamp, m.clone(), json.len())
            }
            _ => {
                validated::record(None);
                self.inner.stamped.forget(scope)
            }
        }
        Ok(metadata)
    }

    async fn get(&self, scope: &Scope) -> StorageResult<Option<Metadata>> {
        let json = self.metadata_json(scope).await?;
        json.as_deref().map(parse_metadata).transpose()
    }

    async fn set_metadata(&self, scope: &Scope, metadata: &Metadata) -> StorageResult<()> {
        let json = metadata_json(metadata)?;
        // A new stamp before and after the write (see metadata_stamp.rs).
        self.write_stamp(scope, true).await?;
        let updated: i64 = self
            .eval_project(
                "queue update",
                true,
                &scope.project,
                &["set", &scope.queue, &json],
            )
            .await?;
        if updated == 1 {
            self.write_stamp(scope, true).await
        } else {
            self.write_stamp(scope, false).await?;
            Err(StorageError::QueueNotFound)
        }
    }

    async fn delete(&self, scope: &Scope) -> StorageResult<()> {
        let _: String = self
            .eval_project(
                "queue delete",
                true,
                &scope.project,
                &["delete", &scope.queue],
            )
            .await?;
        self.write_stamp(scope, false).await
    }

    async fn list(
        &self,
        project: &str,
        marker: Option<&str>,
        limit: usize,
        detailed: bool,
    ) -> StorageResult<Vec<QueueEntry>> {
        let limit = limit.min(MAX_PER_CALL).to_string();
        let (names, metas): (Vec<String>, Vec<String>) = self
            .eval_project(
                "queue list",
                true,
                project,
                &["list", marker.unwrap_or(""), &limit, flag(detailed)],
            )
            .await?;
        let mut metas = metas.into_iter();
        names
            .into_iter()
            .map(|name| {
                let metadata = match detailed {
                    true => Some(parse_metadata(
                        &metas.next().unwrap_or_else(|| "{}".to_owned()),
                    )?),
                    false => None,
                };
                Ok(QueueEntry { name, metadata })
            })
            .collect()
    }

    async fn count(&self, project: &str) -> StorageResult<u64> {
        let key = &format!("{}:queues", keys::project_prefix(&self.inner.ns, project));
        self.inner
            .conn
            .run("queue count", true, |mut conn| async move {
                // Members all score 0: lexicographic, queues before topics.
                ::redis::cmd("ZLEXCOUNT")
                    .arg(key)
                    .arg("-")
                    .arg(format!("({}", names::NAMESPACE_END))
                    .query_async(&mut conn)
                    .await
            })
            .await
    }

    async fn is_alive(&self) -> bool {
        self.inner
            .conn
            .run("ping", true, |mut conn| async move {
                ::redis::cmd("PING").query_async::<String>(&mut conn).await
            })
            .await
            .is_ok()
    }
}
