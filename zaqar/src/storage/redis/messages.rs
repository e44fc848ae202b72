//! The messages of the Redis driver (see the module docs of [`super`]
//! for the record layout and the scripts).

use super::*;

#[async_trait]
impl MessageStore for RedisStore {
    async fn post(
        &self,
        scope: &Scope,
        client_id: &str,
        messages: Vec<NewMessage>,
    ) -> StorageResult<Posted> {
        if messages.is_empty() {
            return Ok(Posted::default());
        }
        let ids: Vec<String> = messages.iter().map(|_| crate::storage::new_id()).collect();
        // The records are written here, so the script only stores them
        // (see post.lua for the argument layout).
        let now = self.inner.clock.now_ms();
        let times = messages
            .iter()
            .map(|m| deadline::message_times(now, m.ttl, m.delay))
            .collect::<StorageResult<Vec<_>>>()?;
        let expiries: Vec<i64> = times.iter().map(|t| t.0).collect();
        let last_expiry = expiries.iter().copied().max().unwrap_or(now);
        let runs = runs(&expiries);
        let mut list: Vec<Vec<u8>> = Vec::with_capacity(2 * (messages.len() + runs.len()));
        for ((id, m), times) in ids.iter().zip(&messages).zip(&times) {
            list.push(id.clone().into_bytes());
            list.push(record(m, client_id, now, *times));
        }
        for (expiry, count) in &runs {
            list.push(int(*expiry).into_bytes());
            list.push(int(*count).into_bytes());
        }
        let (spill, inline) = self.list_arg(scope, list).await?;
        let mut args: Vec<Vec<u8>> = Vec::with_capacity(6 + inline.len());
        args.push(int(messages.len()).into_bytes());
        args.push(int(last_expiry).into_bytes());
        args.push(int(runs.len()).into_bytes());
        args.push(spill);
        // The script publishes the long-poll wake-up itself (post.lua).
        args.push(self.inner.wake_channel.clone().into_bytes());
        args.push(wake::encode(scope).into_bytes());
        // The metadata the api core validated against, when it came from
        // memory: the script refuses the post if it changed since.
        args.push(self.inner.stamped.stamp(scope).into_bytes());
        args.extend(inline);
        let (stored, subscriptions, unconfirmed): (i64, i64, i64) = self
            .eval_queue_at(
                "message post",
                false,
                &self.inner.scripts.post,
                scope,
                now,
                args,
            )
            .await?;
        if stored < 0 {
            self.inner.stamped.forget(scope);
            return Err(StorageError::MetadataChanged);
        }
        Ok(Posted {
            ids,
            subscribed: Some(Subscribed::from_flags(
                subscriptions > 0,
                subscriptions > unconfirmed,
            )),
            woke_others: true,
        })
    }

    async fn list(&self, scope: &Scope, query: &ListQuery) -> StorageResult<MessagePage> {
        let args = vec![
            query.marker.clone().unwrap_or_default(),
            query.limit.min(MAX_PER_CALL).to_string(),
            flag(query.echo).to_owned(),
            query.client_id.clone(),
            flag(query.include_claimed).to_owned(),
            flag(query.include_delayed).to_owned(),
            // The stamp of the metadata the api core took the delay policy
            // from: the script refuses the listing if it changed since.
            metadata_stamp::StampedMetadata::validated_stamp(),
        ];
        let (marker, rows, stale): (String, Vec<MessageRow>, String) = self
            .eval_queue("message list", true, &self.inner.scripts.list, scope, args)
            .await?;
        if !stale.is_empty() {
            self.inner.stamped.forget(scope);
            return Err(StorageError::MetadataChanged);
        }
        let messages = to_messages(rows)?;
        Ok(MessagePage {
            next_marker: Some(marker).filter(|m| !m.is_empty() && !messages.is_empty()),
            messages,
        })
    }

    async fn get(&self, scope: &Scope, id: &str) -> StorageResult<Option<Message>> {
        let rows: Vec<MessageRow> = self
            .eval_queue(
                "message get",
                true,
                &self.inner.scripts.get,
                scope,
                vec![id.to_owned()],
            )
            .await?;
        Ok(to_messages(rows)?.into_iter().next())
    }

    async fn marker_of(&self, scope: &Scope, id: &str) -> StorageResult<Option<String>> {
        // The marker is the message's rank, its score in the queue's index.
        let Some(message) = MessageStore::get(self, scope, id).await? else {
            return Ok(None);
        };
        let key = keys::queue_route_key(&keys::queue_prefix(&self.inner.ns, scope));
        let score: Option<String> = self
            .inner
            .conn
            .run("message marker", true, |mut conn| {
                let (key, id) = (key.clone(), message.id.clone());
                async move {
                    ::redis::cmd("ZSCORE")
                        .arg(key)
                        .arg(id)
                        .query_async(&mut conn)
                        .await
                }
            })
            .await?;
        Ok(score.filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())))
    }

    async fn bulk_get(&self, scope: &Scope, ids: &[String]) -> StorageResult<Vec<Message>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut unique = ids.to_vec();
        unique.sort();
        unique.dedup();
        // A read: one call per chunk of ids is as good as one call.
        let mut out = Vec::new();
        for chunk in unique.chunks(VALUES_PER_COMMAND) {
            let rows: Vec<MessageRow> = self
                .eval_queue(
                    "message bulk get",
                    true,
                    &self.inner.scripts.get,
                    scope,
                    chunk.to_vec(),
                )
                .await?;
            out.extend(to_messages(rows)?);
        }
        Ok(out)
    }

    async fn delete(&self, scope: &Scope, id: &str, claim_id: Option<&str>) -> StorageResult<()> {
        // '1': a claim id is given; '2': one that names no claim.
        let claim_flag = match claim_id {
            None => "0",
            Some(c) if names_a_claim(c) => "1",
            Some(_) => "2",
        };
        let args = vec![
            id.to_owned(),
            claim_flag.to_owned(),
            claim_id.unwrap_or("").to_owned(),
        ];
        let outcome: String = self
            .eval_queue(
                "message delete",
                true,
                &self.inner.scripts.delete,
                scope,
                args,
            )
            .await?;
        match outcome.as_str() {
            "ok" => Ok(()),
            "is_claimed" => Err(StorageError::MessageIsClaimed),
            "not_claimed" => Err(StorageError::MessageNotClaimed),
            "no_claim" => Err(StorageError::ClaimNotFound),
            other => Err(StorageError::Unavailable(format!(
                "unexpected delete outcome {other:?}"
            ))),
        }
    }

    async fn bulk_delete(
        &self,
        scope: &Scope,
        ids: &[String],
        claim_ids: Option<&[String]>,
    ) -> StorageResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut claims = claim_ids.unwrap_or(&[]).to_vec();
        claims.sort();
        claims.dedup();
        let (nclaims, nids) = (claims.len(), ids.len());
        let list = claims
            .into_iter()
            .chain(ids.iter().cloned())
            .map(String::into_bytes)
            .collect();
        // One script (all or nothing), however many ids: a long list is spilled.
        let (spill, inline) = self.list_arg(scope, list).await?;
        let mut args = vec![
            flag(claim_ids.is_some()).as_bytes().to_vec(),
            nclaims.to_string().into_bytes(),
            nids.to_string().into_bytes(),
            spill,
        ];
        args.extend(inline);
        let outcome: String = self
            .eval_queue(
                "message bulk delete",
                true,
                &self.inner.scripts.bulk_delete,
                scope,
                args,
            )
            .await?;
        match outcome.as_str() {
            "ok" => Ok(()),
            _ => Err(StorageError::ClaimMismatch),
        }
    }

    async fn pop(&self, scope: &Scope, limit: usize) -> StorageResult<Vec<Message>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows: Vec<MessageRow> = self
            .eval_queue(
                "message pop",
                false,
                &self.inner.scripts.pop,
                scope,
                vec![limit.min(MAX_PER_CALL).to_string()],
            )
            .await?;
        to_messages(rows)
    }

    async fn stats(&self, scope: &Scope) -> StorageResult<QueueStats> {
        let row: Vec<u8> = self
            .eval_queue(
                "queue stats",
                true,
                &self.inner.scripts.stats,
                scope,
                Vec::<String>::new(),
            )
            .await?;
        let (total, free, oid, ocr, nid, ncr) = super::to_stats(&row)?;
        let stamp = |id: String, created_ms: i64| {
            (!id.is_empty()).then_some(MessageStamp { id, created_ms })
        };
        Ok(QueueStats {
            claimed: total.saturating_sub(free),
            free,
            total,
            oldest: stamp(oid, ocr),
            newest: stamp(nid, ncr),
        })
    }

    async fn purge(&self, scope: &Scope) -> StorageResult<()> {
        let _: String = self
            .eval_queue(
                "queue purge",
                true,
                &self.inner.scripts.purge,
                scope,
                Vec::<String>::new(),
            )
            .await?;
        Ok(())
    }
}

/// Whether `id` can be a claim id of this store (a UUID, in any of the forms
/// that parse as one): a delete of a message that exists with any other
/// claim id is refused as naming no claim, before the message's claim is
/// looked at; one of a message that does not exist is done, as the
/// reference's Redis driver does.
fn names_a_claim(id: &str) -> bool {
    uuid::Uuid::try_parse(id).is_ok()
}
