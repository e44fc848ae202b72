//! The queue records of the Redis driver (see the module docs of [`super`]
//! for the record layout and the scripts).

use super::*;
use crate::storage::names;

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
        Ok(created == 1)
    }

    async fn get(&self, scope: &Scope) -> StorageResult<Option<Metadata>> {
        let key = format!(
            "{}:meta",
            keys::project_prefix(&self.inner.ns, &scope.project)
        );
        let key = &key;
        let json: Option<String> = self
            .inner
            .conn
            .run("queue get", true, |mut conn| async move {
                ::redis::cmd("HGET")
                    .arg(key)
                    .arg(&scope.queue)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        json.as_deref().map(parse_metadata).transpose()
    }

    async fn set_metadata(&self, scope: &Scope, metadata: &Metadata) -> StorageResult<()> {
        let json = metadata_json(metadata)?;
        let updated: i64 = self
            .eval_project(
                "queue update",
                true,
                &scope.project,
                &["set", &scope.queue, &json],
            )
            .await?;
        if updated == 1 {
            Ok(())
        } else {
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
        Ok(())
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
