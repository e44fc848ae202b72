//! Claim operations: create, get, renew, release.

use serde_json::Value;

use super::body::{document_type_not_supported, int_field};
use super::metadata::{with_current_metadata, write_error, QueuePolicy};
use super::queues::scope;
use super::validate::{self, may_not_exceed};
use super::{Api, Payload};
use crate::context::RequestContext;
use crate::error::{storage_error, ApiError, ApiResult};
use crate::storage::{ClaimInfo, ClaimRequest, NewClaim, Scope, StorageError};

/// Default number of messages a claim takes.
pub const DEFAULT_CLAIM_LIMIT: usize = 10;

impl Api {
    /// Reads `{"ttl", "grace"}` with the configured defaults.
    fn claim_document(&self, payload: &Payload) -> ApiResult<(i64, i64)> {
        let limits = self.limits();
        let doc = self.body_document(payload)?;
        let Value::Object(doc) = doc else {
            return Err(document_type_not_supported());
        };
        let ttl = int_field(&doc, "ttl", limits.default_claim_ttl)?;
        let grace = int_field(&doc, "grace", limits.default_claim_grace)?;
        Ok((ttl, grace))
    }

    /// `POST /v2/queues/{q}/claims`: `None` when nothing could be claimed.
    pub async fn claim_create(
        &self,
        ctx: &RequestContext,
        queue: &str,
        limit: Option<i64>,
        wait: Option<i64>,
        payload: &Payload,
    ) -> ApiResult<Option<NewClaim>> {
        let limits = self.limits();
        let (ttl, grace) = if payload.is_empty() {
            (limits.default_claim_ttl, limits.default_claim_grace)
        } else {
            self.claim_document(payload)?
        };
        validate::claim_ttl(ttl, limits)?;
        let limit = validate::limit(limit, limits.max_messages_per_claim_or_pop, may_not_exceed)?
            .unwrap_or(DEFAULT_CLAIM_LIMIT);
        validate::claim_grace(grace, limits)?;
        let scope = scope(ctx, queue);
        let mut poll = self.long_poll(&scope, wait)?;
        loop {
            let claim = self.claim_create_once(&scope, ttl, grace, limit).await?;
            if claim.is_some() || !poll.wait().await {
                return Ok(claim);
            }
        }
    }

    /// One attempt of [`Api::claim_create`]. A store that answered the
    /// metadata (the dead-letter policy) from memory refuses the claim when
    /// it has changed since: then read it again and claim again.
    async fn claim_create_once(
        &self,
        scope: &Scope,
        ttl: i64,
        grace: i64,
        limit: usize,
    ) -> ApiResult<Option<NewClaim>> {
        let what = "Claim could not be created.";
        let mut claim = with_current_metadata(what, |fresh| async move {
            let Some(metadata) = self.metadata_for_write(scope, fresh, what).await? else {
                return Ok(None);
            };
            let request = ClaimRequest {
                ttl,
                grace,
                limit,
                dead_letter: QueuePolicy::from_metadata(&metadata).dead_letter,
            };
            self.storage
                .claims
                .create(scope, &request)
                .await
                .map_err(write_error(what))
        })
        .await?;
        if let Some(c) = &mut claim {
            if let Err(e) = self.open_bodies(scope, &mut c.messages) {
                // Nobody will see this claim's id: release its messages now
                // (for a server that can open them) instead of at its expiry.
                if let Err(r) = self.storage.claims.delete(scope, &c.id).await {
                    tracing::warn!(queue = %scope.queue, error = %r, "cannot release a claim whose messages do not open; they return when it expires");
                }
                return Err(e);
            }
        }
        Ok(claim)
    }

    /// `GET /v2/queues/{q}/claims/{id}`.
    pub async fn claim_get(
        &self,
        ctx: &RequestContext,
        queue: &str,
        claim_id: &str,
    ) -> ApiResult<ClaimInfo> {
        let scope = scope(ctx, queue);
        let mut info = self
            .storage
            .claims
            .get(&scope, claim_id)
            .await
            .map_err(storage_error("Claim could not be queried."))?
            .ok_or_else(|| claim_not_found(ctx, queue, claim_id))?;
        self.open_bodies(&scope, &mut info.messages)?;
        Ok(info)
    }

    /// `PATCH /v2/queues/{q}/claims/{id}`: renews the claim.
    pub async fn claim_update(
        &self,
        ctx: &RequestContext,
        queue: &str,
        claim_id: &str,
        payload: &Payload,
    ) -> ApiResult<()> {
        let (ttl, grace) = self.claim_document(payload)?;
        validate::claim_ttl(ttl, self.limits())?;
        // The reference checks only the TTL on renewal; a grace is bounded
        // as on creation (a huge one once outlived max_message_ttl, and on
        // Redis overflowed into deleting the whole queue).
        validate::claim_grace(grace, self.limits())?;
        match self
            .storage
            .claims
            .update(&scope(ctx, queue), claim_id, ttl, grace)
            .await
        {
            Ok(()) => Ok(()),
            Err(StorageError::ClaimNotFound) => Err(claim_not_found(ctx, queue, claim_id)),
            Err(e) => Err(storage_error("Claim could not be updated.")(e)),
        }
    }

    /// `DELETE /v2/queues/{q}/claims/{id}`: releases the messages.
    pub async fn claim_delete(
        &self,
        ctx: &RequestContext,
        queue: &str,
        claim_id: &str,
    ) -> ApiResult<()> {
        let scope = scope(ctx, queue);
        self.storage
            .claims
            .delete(&scope, claim_id)
            .await
            .map_err(storage_error("Claim could not be deleted."))?;
        // The released messages are claimable again.
        self.wake(&scope).await;
        Ok(())
    }
}

fn claim_not_found(ctx: &RequestContext, queue: &str, claim_id: &str) -> ApiError {
    ApiError::not_found(format!(
        "Claim {claim_id} does not exist in queue {queue} for project {}",
        ctx.project_id
    ))
}
