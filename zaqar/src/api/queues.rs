//! Queue operations: list, create, get, update metadata, delete, stats, purge.

use serde_json::Value;

use super::body::{self, document_type_not_supported};
use super::metadata::{self, with_defaults, QueuePolicy};
use super::validate::{self, no_greater_than};
use super::{Api, Payload};
use crate::context::RequestContext;
use crate::error::{storage_error, ApiError, ApiResult};
use crate::storage::{names, Metadata, QueueEntry, QueueStats, Scope, StorageError};

/// Parameters of a queue listing.
#[derive(Clone, Debug, Default)]
pub struct QueueListParams {
    /// Name of the last queue of the previous page.
    pub marker: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
    /// Include each queue's metadata.
    pub detailed: bool,
    /// Include the number of queues of the project.
    pub with_count: bool,
    /// Only queues whose name contains this.
    pub name: Option<String>,
    /// Only queues whose metadata holds each of these keys with this value
    /// (an integer when the query's text is one), as the reference's
    /// MongoDB store filters: `GET /v2/queues?node=31`.
    pub filters: Vec<(String, serde_json::Value)>,
}

/// The most queue filters a listing applies (the rest are ignored).
pub const MAX_QUEUE_FILTERS: usize = 16;

/// The most queues a filtered listing reads to fill one page: a filter
/// that matches few of a crowded project's queues answers a short page
/// (continue from its next link) instead of reading every queue.
pub const FILTER_SCAN_BUDGET: usize = 10_000;

impl QueueListParams {
    /// Whether `entry` passes the name and metadata filters.
    fn admits(&self, entry: &QueueEntry) -> bool {
        if let Some(name) = &self.name {
            if !entry.name.contains(name.as_str()) {
                return false;
            }
        }
        let metadata = entry.metadata.as_ref();
        self.filters
            .iter()
            .all(|(key, value)| metadata.and_then(|m| m.get(key)) == Some(value))
    }
}

/// One page of queues.
#[derive(Clone, Debug)]
pub struct QueueListing {
    /// The queues (when detailed, with their metadata as stored: the
    /// WebSocket API shows it so, as the reference's does).
    pub queues: Vec<QueueEntry>,
    /// The reserved keys HTTP shows in a detailed listing, with the
    /// defaults for those unset (see [`QueueListing::shown`]).
    pub defaults: Vec<(&'static str, serde_json::Value)>,
    /// Marker for the next page: the last name, else the given marker.
    pub next_marker: String,
    /// Number of queues of the project, when asked for.
    pub count: Option<u64>,
}

impl QueueListing {
    /// A listed queue's metadata as HTTP shows it: with the reserved
    /// defaults.
    pub fn shown(&self, stored: &Metadata) -> Metadata {
        metadata::fill_defaults(stored.clone(), &self.defaults)
    }
}

/// Default queue page size.
pub const DEFAULT_QUEUE_PAGE: usize = 10;

/// What a purge removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PurgeTargets {
    /// Remove every message (and claim).
    pub messages: bool,
    /// Remove every subscription.
    pub subscriptions: bool,
}

impl Api {
    /// `GET /v2/queues`: the project's queues (its topics, stored after
    /// every queue, end the listing; see [`crate::storage::names`]).
    pub async fn queue_list(
        &self,
        ctx: &RequestContext,
        params: QueueListParams,
    ) -> ApiResult<QueueListing> {
        let given = params.marker.clone();
        let mut listing = self.queue_list_stored(ctx, params).await?;
        if let Some(first_topic) = listing
            .queues
            .iter()
            .position(|q| !names::is_queue(&q.name))
        {
            listing.queues.truncate(first_topic);
            listing.next_marker = match listing.queues.last() {
                Some(q) => q.name.clone(),
                None => given.unwrap_or_default(),
            };
        }
        Ok(listing)
    }

    /// A page of stored names (queues and topics alike) after `marker`.
    pub(super) async fn queue_list_stored(
        &self,
        ctx: &RequestContext,
        params: QueueListParams,
    ) -> ApiResult<QueueListing> {
        let limit = validate::limit(
            params.limit,
            self.limits().max_queues_per_page,
            no_greater_than,
        )?
        .unwrap_or(DEFAULT_QUEUE_PAGE);
        let err = storage_error("Queues could not be listed.");
        let mut params = params;
        params.filters.truncate(MAX_QUEUE_FILTERS);
        let mut queues = if params.name.is_none() && params.filters.is_empty() {
            self.storage
                .queues
                .list(
                    &ctx.project_id,
                    params.marker.as_deref(),
                    limit,
                    params.detailed,
                )
                .await
                .map_err(&err)?
        } else {
            self.filtered_queues(ctx, &params, limit).await?
        };
        if params.detailed {
            for q in &mut queues {
                q.metadata.get_or_insert_with(Metadata::new);
            }
        }
        let count = if params.with_count {
            Some(
                self.storage
                    .queues
                    .count(&ctx.project_id)
                    .await
                    .map_err(&err)?,
            )
        } else {
            None
        };
        let next_marker = match queues.last() {
            Some(q) => q.name.clone(),
            None => params.marker.unwrap_or_default(),
        };
        Ok(QueueListing {
            queues,
            defaults: metadata::reserved_defaults(self.limits()).to_vec(),
            next_marker,
            count,
        })
    }

    /// `PUT /v2/queues/{q}`: `true` when created, `false` when it existed.
    pub async fn queue_create(
        &self,
        ctx: &RequestContext,
        queue: &str,
        payload: &Payload,
    ) -> ApiResult<bool> {
        let metadata = self.metadata_document(payload, |doc| match doc {
            Value::Object(m) => Ok(m),
            _ => Err(document_type_not_supported()),
        })?;
        metadata::validate(&metadata, self.limits())?;
        let created = self
            .storage
            .queues
            .create(&scope(ctx, queue), &metadata)
            .await
            .map_err(storage_error("Queue could not be created."))?;
        if created {
            self.ensure_dead_letter_queue(ctx, &metadata).await?;
        }
        Ok(created)
    }

    /// Creates the dead-letter queue a queue's metadata names, so that the
    /// messages moved there can be listed and claimed (the reference leaves
    /// them in a queue that may not exist).
    async fn ensure_dead_letter_queue(
        &self,
        ctx: &RequestContext,
        metadata: &Metadata,
    ) -> ApiResult<()> {
        if let Some(dlq) = QueuePolicy::from_metadata(metadata).dead_letter {
            if validate::queue_identification_problem(&dlq.queue, &ctx.project_id).is_none() {
                self.storage
                    .queues
                    .create(&scope(ctx, &dlq.queue), &Metadata::new())
                    .await
                    .map_err(storage_error("Queue could not be created."))?;
            }
        }
        Ok(())
    }

    /// Up to `limit` queues after the marker that pass the filters, read a
    /// page at a time (at most [`FILTER_SCAN_BUDGET`] queues in all).
    async fn filtered_queues(
        &self,
        ctx: &RequestContext,
        params: &QueueListParams,
        limit: usize,
    ) -> ApiResult<Vec<QueueEntry>> {
        const PAGE: usize = 100;
        let err = storage_error("Queues could not be listed.");
        let with_metadata = params.detailed || !params.filters.is_empty();
        let mut marker = params.marker.clone();
        let mut found = Vec::new();
        let mut scanned = 0;
        while found.len() < limit && scanned < FILTER_SCAN_BUDGET {
            let page = self
                .storage
                .queues
                .list(&ctx.project_id, marker.as_deref(), PAGE, with_metadata)
                .await
                .map_err(&err)?;
            let full = page.len() == PAGE;
            for mut entry in page {
                scanned += 1;
                marker = Some(entry.name.clone());
                if params.admits(&entry) {
                    if !params.detailed {
                        entry.metadata = None;
                    }
                    found.push(entry);
                    if found.len() == limit {
                        break;
                    }
                }
            }
            if !full {
                break;
            }
        }
        Ok(found)
    }

    /// `GET /v2/queues/{q}`: the stored metadata (empty for a queue that
    /// does not exist, which is no error, as the reference answers); see
    /// [`Self::metadata_reply`] for the reserved defaults.
    pub async fn queue_get(&self, ctx: &RequestContext, queue: &str) -> ApiResult<Metadata> {
        let stored = self
            .storage
            .queues
            .get(&scope(ctx, queue))
            .await
            .map_err(storage_error("Queue metadata could not be retrieved."))?;
        Ok(stored.unwrap_or_default())
    }

    /// The reply to a metadata read or change: `stored`, and as shown with
    /// the reserved defaults.
    pub(crate) fn metadata_reply(&self, stored: Metadata) -> crate::api::reply::Reply {
        crate::api::reply::Reply::QueueMetadata {
            shown: with_defaults(stored.clone(), self.limits()),
            stored,
        }
    }

    /// `PATCH /v2/queues/{q}`: applies a JSON-patch to the metadata and
    /// returns the result as stored.
    pub async fn queue_update(
        &self,
        ctx: &RequestContext,
        queue: &str,
        content_type: Option<&str>,
        payload: &Payload,
    ) -> ApiResult<Metadata> {
        const PATCH_TYPE: &str = "application/openstack-messaging-v2.0-json-patch";
        // The reference answers every PATCH validation failure as a body error.
        let as_body_error = |e: ApiError| match e {
            ApiError::InvalidRequest(d) => ApiError::InvalidBody(d),
            other => other,
        };
        let max = self.limits().max_queue_metadata;
        if payload.len().is_some_and(|n| n > max as u64) {
            return Err(ApiError::invalid_body(format!(
                "Queue metadata is too large. Max size: {max}"
            )));
        }
        if content_type.map(|c| c.split(';').next().unwrap_or("").trim()) != Some(PATCH_TYPE) {
            return Err(ApiError::UnsupportedMediaType(
                format!("Accepted media type for PATCH: {{'Accept-Patch': '{PATCH_TYPE}'}}.")
                    .into(),
            ));
        }
        if payload.is_empty() {
            return Err(ApiError::invalid_body(
                "PATCH body could not be empty for update.",
            ));
        }
        let ops = metadata::parse_patch(&self.body_document(payload)?).map_err(as_body_error)?;
        let scope = scope(ctx, queue);
        let err = storage_error("Queue could not be updated.");
        let mut stored = self
            .storage
            .queues
            .get(&scope)
            .await
            .map_err(&err)?
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "Queue {queue} does not exist for project {}",
                    ctx.project_id
                ))
            })?;
        metadata::apply_patch(&mut stored, ops, self.limits())?;
        metadata::validate(&stored, self.limits()).map_err(as_body_error)?;
        self.ensure_dead_letter_queue(ctx, &stored).await?;
        match self.storage.queues.set_metadata(&scope, &stored).await {
            Ok(()) => Ok(stored),
            Err(StorageError::QueueNotFound) => Err(ApiError::not_found(format!(
                "Queue {queue} does not exist for project {}",
                ctx.project_id
            ))),
            Err(e) => Err(err(e)),
        }
    }

    /// `DELETE /v2/queues/{q}` (missing queues too).
    pub async fn queue_delete(&self, ctx: &RequestContext, queue: &str) -> ApiResult<()> {
        self.storage
            .queues
            .delete(&scope(ctx, queue))
            .await
            .map_err(storage_error("Queue could not be deleted."))
    }

    /// `GET /v2/queues/{q}/stats` (zeros for a missing queue).
    ///
    /// Also, when `report_missing`, whether the queue is missing (only an
    /// empty queue is looked up; otherwise `false`).
    pub async fn queue_stats(
        &self,
        ctx: &RequestContext,
        queue: &str,
        report_missing: bool,
    ) -> ApiResult<(QueueStats, bool)> {
        let what = "Queue stats could not be read.";
        let scope = scope(ctx, queue);
        let stats = self
            .storage
            .messages
            .stats(&scope)
            .await
            .map_err(storage_error(what))?;
        let missing = report_missing
            && stats.total == 0
            && self
                .storage
                .queues
                .get(&scope)
                .await
                .map_err(storage_error(what))?
                .is_none();
        Ok((stats, missing))
    }

    /// Reads the body of `POST /v2/queues/{q}/purge`.
    pub fn purge_targets(&self, payload: &Payload) -> ApiResult<PurgeTargets> {
        if payload.is_empty() {
            return Ok(PurgeTargets {
                messages: true,
                subscriptions: true,
            });
        }
        let doc = self.body_document(payload)?;
        let missing = || ApiError::invalid("Post body must contain key \"resource_types\".");
        // A list (or any other non-object) has no such key: the reference's
        // answer, 400 "Invalid API request".
        let Value::Object(doc) = doc else {
            return Err(missing());
        };
        let Some(types) = doc.get("resource_types") else {
            return Err(missing());
        };
        let subset_error = || {
            ApiError::invalid("Resource types must be a sub set of {'messages', 'subscriptions'}.")
        };
        let Value::Array(types) = types else {
            return Err(subset_error());
        };
        let mut targets = PurgeTargets {
            messages: false,
            subscriptions: false,
        };
        for t in types {
            match t.as_str() {
                Some("messages") => targets.messages = true,
                Some("subscriptions") => targets.subscriptions = true,
                _ => return Err(subset_error()),
            }
        }
        Ok(targets)
    }

    /// `POST /v2/queues/{q}/purge`.
    pub async fn queue_purge(
        &self,
        ctx: &RequestContext,
        queue: &str,
        payload: &Payload,
    ) -> ApiResult<()> {
        let targets = self.purge_targets(payload)?;
        if targets.messages {
            self.storage
                .messages
                .purge(&scope(ctx, queue))
                .await
                .map_err(storage_error("Queue could not be purged."))?;
        }
        if targets.subscriptions {
            match self.storage.subscriptions.purge(&scope(ctx, queue)).await {
                // A store without subscriptions has none to purge.
                Ok(()) | Err(StorageError::NotImplemented(_)) => {}
                Err(e) => return Err(storage_error("Queue could not be purged.")(e)),
            }
        }
        Ok(())
    }

    /// Parses a metadata-sized body (queue PUT/PATCH) into `T`.
    fn metadata_document<T>(
        &self,
        payload: &Payload,
        read: impl FnOnce(Value) -> ApiResult<T>,
    ) -> ApiResult<T>
    where
        T: Default,
    {
        let max = self.limits().max_queue_metadata;
        if payload.len().is_some_and(|n| n > max as u64) {
            return Err(ApiError::invalid(format!(
                "Queue metadata is too large. Max size: {max}"
            )));
        }
        if payload.is_empty() {
            return Ok(T::default());
        }
        read(self.body_document(payload)?)
    }

    /// Parses a JSON body, an absent or empty one being `{}` (the routes
    /// whose fields are all optional).
    pub(crate) fn body_document_or_empty(&self, payload: &Payload) -> ApiResult<Value> {
        if payload.is_empty() {
            Ok(Value::Object(serde_json::Map::new()))
        } else {
            self.body_document(payload)
        }
    }

    /// Parses a JSON body (object or array) within the body cap
    /// ([`Api::max_body_size`]): the HTTP transport stops reading past it,
    /// and a document a WebSocket frame carried is measured against the
    /// same cap, so a body one transport refuses is not stored through the
    /// other.
    pub(crate) fn body_document(&self, payload: &Payload) -> ApiResult<Value> {
        let too_large = || ApiError::invalid_body("Request body is too large.");
        match payload {
            Payload::Oversized(_) => Err(too_large()),
            p if p.len().is_some_and(|n| n > self.max_body_size()) => Err(too_large()),
            other => body::parse(other.bytes()),
        }
    }
}

/// The scope of a request on one queue.
pub(crate) fn scope(ctx: &RequestContext, queue: &str) -> Scope {
    Scope::new(ctx.project_id.as_str(), queue)
}
