//! The claims of the Redis driver (see the module docs of [`super`]
//! for the record layout and the scripts).

use super::*;

#[async_trait]
impl ClaimStore for RedisStore {
    async fn create(
        &self,
        scope: &Scope,
        request: &ClaimRequest,
    ) -> StorageResult<Option<NewClaim>> {
        let id = crate::storage::new_id();
        let max = request
            .dead_letter
            .as_ref()
            .map_or(-1, |d| d.max_claim_count.clamp(0, i64::from(i32::MAX)));
        let now = self.inner.clock.now_ms();
        let times = ClaimTimes::new(now, request.ttl, request.grace)?;
        let mut args = vec![id.clone()];
        args.extend(claim_time_args(&times));
        args.extend([
            int(request.limit.min(MAX_PER_CALL)),
            int(max),
            int(DLQ_LEASE_MS),
            // The metadata the api core took the dead-letter policy from,
            // when it came from memory: the script refuses the claim if it
            // changed since.
            self.inner.stamped.stamp(scope),
        ]);
        let (rows, dead, stale): (Vec<MessageRow>, Vec<String>, String) = self
            .eval_queue_at(
                "claim create",
                false,
                &self.inner.scripts.claim_create,
                scope,
                now,
                args,
            )
            .await?;
        if !stale.is_empty() {
            self.inner.stamped.forget(scope);
            return Err(StorageError::MetadataChanged);
        }
        let messages = to_messages(rows)?;
        if !dead.is_empty() {
            self.dead_letter(scope, request, dead).await?;
        }
        Ok((!messages.is_empty()).then_some(NewClaim { id, messages }))
    }

    async fn get(&self, scope: &Scope, claim_id: &str) -> StorageResult<Option<ClaimInfo>> {
        let reply: ::redis::Value = self
            .eval_queue(
                "claim get",
                true,
                &self.inner.scripts.claim_get,
                scope,
                vec![claim_id.to_owned()],
            )
            .await?;
        let parts: Vec<::redis::Value> = FromRedisValue::from_redis_value(reply)
            .map_err(|e| StorageError::Unavailable(format!("unexpected claim reply: {e}")))?;
        if parts.is_empty() {
            return Ok(None);
        }
        let (ttl, updated_ms, rows): (i64, i64, Vec<MessageRow>) =
            FromRedisValue::from_redis_value(::redis::Value::Array(parts))
                .map_err(|e| StorageError::Unavailable(format!("unexpected claim reply: {e}")))?;
        Ok(Some(ClaimInfo {
            id: claim_id.to_owned(),
            ttl,
            updated_ms,
            messages: to_messages(rows)?,
        }))
    }

    async fn update(
        &self,
        scope: &Scope,
        claim_id: &str,
        ttl: i64,
        grace: i64,
    ) -> StorageResult<()> {
        let now = self.inner.clock.now_ms();
        let times = ClaimTimes::new(now, ttl, grace)?;
        let mut args = vec![claim_id.to_owned()];
        args.extend(claim_time_args(&times));
        let outcome: String = self
            .eval_queue_at(
                "claim update",
                true,
                &self.inner.scripts.claim_update,
                scope,
                now,
                args,
            )
            .await?;
        match outcome.as_str() {
            "ok" => Ok(()),
            _ => Err(StorageError::ClaimNotFound),
        }
    }

    async fn delete(&self, scope: &Scope, claim_id: &str) -> StorageResult<()> {
        let _: String = self
            .eval_queue(
                "claim delete",
                true,
                &self.inner.scripts.claim_delete,
                scope,
                vec![claim_id.to_owned()],
            )
            .await?;
        Ok(())
    }
}
