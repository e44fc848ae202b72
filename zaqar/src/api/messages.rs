//! Message operations: post, list, get (one or by ids), delete (one, by ids), pop.

use serde_json::value::RawValue;
use serde_json::Value;

use super::body::{as_int, check_integers, document_type_not_supported};
use super::checksum::checksum;
use super::metadata::{with_current_metadata, write_error, QueuePolicy, WriteError};
use super::queues::scope;
use super::validate::{self, may_not_exceed, python_list};
use super::{Api, Payload};
use crate::context::RequestContext;
use crate::error::{storage_error, ApiError, ApiResult};
use crate::storage::{ClaimRequest, ListQuery, Message, Metadata, NewMessage, Scope, StorageError};

/// Default message page size.
pub const DEFAULT_MESSAGE_PAGE: usize = 10;

/// Parameters of a message listing.
#[derive(Clone, Debug, Default)]
pub struct MessageListParams {
    /// Marker of the previous page.
    pub marker: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
    /// Include the caller's own messages.
    pub echo: Option<bool>,
    /// Include claimed messages.
    pub include_claimed: Option<bool>,
    /// Include delayed messages.
    pub include_delayed: Option<bool>,
    /// Seconds to wait for a message when there is none (long polling).
    pub wait: Option<i64>,
}

/// One page of messages.
#[derive(Clone, Debug)]
pub struct MessageListing {
    /// The messages.
    pub messages: Vec<Message>,
    /// Marker of the next page (when the page is not empty).
    pub next_marker: Option<String>,
    /// The queue is not a delay queue, so `include_delayed` was forced on
    /// (the next link says so, as the reference's does).
    pub include_delayed_forced: bool,
}

/// `body` with its `\u` escapes written as the characters they stand for
/// (the reference returns bodies as UTF-8, whatever escapes they were
/// posted with); the escapes JSON requires (`\"`, `\\`, control
/// characters) stay. A body without `\u` is kept byte for byte.
fn unescaped(body: &RawValue) -> Box<RawValue> {
    if !body.get().contains("\\u") {
        return body.to_owned();
    }
    serde_json::from_str::<Value>(body.get())
        .ok()
        .and_then(|v| serde_json::value::to_raw_value(&v).ok())
        .unwrap_or_else(|| body.to_owned())
}

/// What `DELETE /v2/queues/{q}/messages` asks for.
#[derive(Clone, Debug, Default)]
pub struct BulkDeleteParams {
    /// `ids=...`.
    pub ids: Option<Vec<String>>,
    /// `claim_ids=...` (only read with `message_delete_with_claim_id`).
    pub claim_ids: Option<Vec<String>>,
    /// `pop=N`.
    pub pop: Option<i64>,
}

/// The outcome of a bulk delete.
#[derive(Clone, Debug)]
pub enum BulkDeleteOutcome {
    /// Messages deleted by id.
    Deleted,
    /// Messages popped.
    Popped(Vec<Message>),
}

/// Seconds the messages of a pop on an encrypted queue stay claimed should
/// the server die between claiming and deleting them (see `pop_sealed`).
const POP_CLAIM_TTL: i64 = 60;

impl Api {
    /// `pop` on an encrypted queue: the messages are claimed, opened, and
    /// only then deleted under that claim, so a body this server cannot open
    /// (a key it lacks, a damaged body) is never deleted unread: the claim is
    /// released at once and the answer is 503. A server dying between the
    /// steps leaves the messages claimed for [`POP_CLAIM_TTL`] seconds.
    async fn pop_sealed(&self, scope: &Scope, limit: usize) -> ApiResult<Vec<Message>> {
        let what = "Messages could not be popped.";
        let request = ClaimRequest {
            ttl: POP_CLAIM_TTL,
            grace: 0,
            limit,
            dead_letter: None,
        };
        let Some(mut claim) = self
            .storage
            .claims
            .create(scope, &request)
            .await
            .map_err(storage_error(what))?
        else {
            return Ok(Vec::new());
        };
        if let Err(e) = self.open_bodies(scope, &mut claim.messages) {
            if let Err(r) = self.storage.claims.delete(scope, &claim.id).await {
                tracing::warn!(queue = %scope.queue, error = %r, "cannot release the claim of a failed pop; its messages return when it expires");
            }
            return Err(e);
        }
        let ids: Vec<String> = claim.messages.iter().map(|m| m.id.clone()).collect();
        self.storage
            .messages
            .bulk_delete(scope, &ids, Some(std::slice::from_ref(&claim.id)))
            .await
            .map_err(storage_error(what))?;
        for m in &mut claim.messages {
            m.claim_id = None;
        }
        Ok(claim.messages)
    }

    /// The metadata a post, claim or listing validates against, which the
    /// store may answer from memory unless `fresh` (see
    /// [`with_current_metadata`]); `None` when the queue does not exist.
    pub(super) async fn metadata_for_write(
        &self,
        scope: &Scope,
        fresh: bool,
        what: &'static str,
    ) -> ApiResult<Option<Metadata>> {
        self.storage
            .queues
            .get_for_write(scope, fresh)
            .await
            .map_err(storage_error(what))
    }

    /// Reads a queue's metadata, `None` when the queue does not exist.
    async fn queue_metadata(
        &self,
        scope: &Scope,
        what: &'static str,
    ) -> ApiResult<Option<Metadata>> {
        self.storage
            .queues
            .get(scope)
            .await
            .map_err(storage_error(what))
    }

    /// `POST /v2/queues/{q}/messages`: stores a batch and returns the ids in order.
    /// Creates the queue when it does not exist.
    pub async fn messages_post(
        &self,
        ctx: &RequestContext,
        queue: &str,
        payload: &Payload,
    ) -> ApiResult<Vec<String>> {
        // A store that answered the metadata from memory refuses the post
        // when it has changed since; then read, validate and post again.
        with_current_metadata("Messages could not be enqueued.", |fresh| {
            self.messages_post_once(ctx, queue, payload, fresh)
        })
        .await
    }

    /// One attempt of [`Self::messages_post`].
    async fn messages_post_once(
        &self,
        ctx: &RequestContext,
        queue: &str,
        payload: &Payload,
        fresh: bool,
    ) -> Result<Vec<String>, WriteError> {
        let scope = scope(ctx, queue);
        let what = "Messages could not be enqueued.";
        let policy = match self.metadata_for_write(&scope, fresh, what).await? {
            Some(m) => QueuePolicy::from_metadata(&m),
            None => {
                if crate::storage::names::is_queue(queue) {
                    validate::queue_identification(queue, &ctx.project_id)?;
                }
                self.storage
                    .queues
                    .create(&scope, &Metadata::new())
                    .await
                    .map_err(storage_error(what))?;
                QueuePolicy::default()
            }
        };
        let limits = self.limits();
        if let Some(len) = payload.len() {
            let global = limits.max_messages_post_size;
            if let Some(queue_max) = policy.max_post_size {
                let max = queue_max.min(global);
                if len > max as u64 && !fresh && queue_max < global {
                    // A limit lifted through another server must hold at
                    // once: refuse only on metadata read afresh.
                    return Err(WriteError::MetadataChanged);
                }
                if len > max as u64 {
                    return Err(ApiError::invalid(format!(
                        "Message collection size is too large. The max size for current queue is {max}. It is \
                         calculated by max size = min(max_messages_post_size_config: {global}, \
                         max_messages_post_size_queue: {queue_max})."
                    ))
                    .into());
                }
            }
            if len > global as u64 {
                return Err(ApiError::invalid(format!(
                    "Message collection size is too large. Max size {global}"
                ))
                .into());
            }
        }
        let default_ttl = policy.default_ttl.unwrap_or(limits.default_message_ttl);
        let messages = self.parse_messages(payload, default_ttl, policy.default_delay)?;
        if messages.is_empty() {
            return Err(ApiError::invalid("No messages to enqueu.").into());
        }
        for m in &messages {
            validate::message_ttl(m.ttl, limits)?;
            validate::message_delay(m.delay, limits)?;
        }
        let mut messages = messages;
        if policy.encrypt {
            self.seal_bodies(&scope, &mut messages)?;
        }
        match self
            .storage
            .messages
            .post(&scope, &ctx.client_id, messages)
            .await
        {
            Ok(posted) => {
                if posted.woke_others {
                    self.storage.waiters.wake(&scope);
                } else {
                    self.wake(&scope).await;
                }
                Ok(posted.ids)
            }
            Err(StorageError::QueueNotFound) => Err(ApiError::not_found(format!(
                "Queue {queue} does not exist for project {}",
                ctx.project_id
            ))
            .into()),
            Err(e) => Err(write_error(what)(e)),
        }
    }

    /// Parses `{"messages": [{"ttl", "body", "delay"}, ...]}` keeping each
    /// body's text as sent.
    fn parse_messages(
        &self,
        payload: &Payload,
        default_ttl: i64,
        default_delay: Option<i64>,
    ) -> ApiResult<Vec<NewMessage>> {
        let bytes = match payload {
            Payload::Absent => return Err(ApiError::invalid_body("Request body can not be empty")),
            Payload::Oversized(_) => {
                return Err(ApiError::invalid_body("Request body is too large."))
            }
            Payload::Bytes(b) | Payload::Document { json: b, .. } => b,
        };
        check_integers(bytes)?;
        let parse_error = || ApiError::invalid_body("Request body could not be parsed.");
        let no_messages = || ApiError::invalid("No messages were found in the request body.");
        // Each step reads only what the one before it kept: the document's
        // pairs (which checks the whole document), then the messages with
        // their pairs (the same error whether the list or an item is not
        // of its type).
        let messages: &RawValue = match bytes.trim_ascii_start().first() {
            Some(b'{') => {
                let top: Vec<(String, &RawValue)> =
                    serde_json::from_slice::<indexmap_free::Pairs>(bytes)
                        .map_err(|_| parse_error())?
                        .0;
                top.into_iter()
                    .rev()
                    .find(|(k, _)| k == "messages")
                    .map(|(_, v)| v)
                    .ok_or_else(no_messages)?
            }
            Some(b'[') => {
                serde_json::from_slice::<&RawValue>(bytes).map_err(|_| parse_error())?;
                return Err(no_messages());
            }
            _ => return Err(parse_error()),
        };
        let items: Vec<indexmap_free::Pairs> =
            serde_json::from_str(messages.get()).map_err(|_| document_type_not_supported())?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let fields = item.0;
            let field = |name: &str| {
                fields
                    .iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| *v)
            };
            let int = |name: &str, default: i64| -> ApiResult<i64> {
                match field(name) {
                    None => Ok(default),
                    Some(raw) => serde_json::from_str::<Value>(raw.get())
                        .ok()
                        .as_ref()
                        .and_then(as_int)
                        .ok_or_else(|| {
                            ApiError::InvalidField(
                                format!("The value of the \"{name}\" field must be a int.").into(),
                            )
                        }),
                }
            };
            let ttl = int("ttl", default_ttl)?;
            let body = field("body")
                .ok_or_else(|| ApiError::InvalidField("Missing \"body\" field.".into()))?;
            let delay = match default_delay {
                Some(d) => int("delay", d)?,
                None => 0,
            };
            let checksum = if self.config().enable_checksum {
                let value: Value = serde_json::from_str(body.get()).map_err(|_| parse_error())?;
                Some(checksum(&value))
            } else {
                None
            };
            out.push(NewMessage {
                ttl,
                delay,
                body: unescaped(body),
                checksum,
            });
        }
        Ok(out)
    }

    /// `GET /v2/queues/{q}/messages`.
    pub async fn messages_list(
        &self,
        ctx: &RequestContext,
        queue: &str,
        params: MessageListParams,
    ) -> ApiResult<MessageListing> {
        let limit = validate::limit(
            params.limit,
            self.limits().max_messages_per_page,
            may_not_exceed,
        )?
        .unwrap_or(DEFAULT_MESSAGE_PAGE);
        let scope = scope(ctx, queue);
        let mut params = params;
        if let Some(marker) = &params.marker {
            // Markers of our stores are sequence numbers (at most 19
            // digits); anything else is a message id to continue after.
            // One that names no message of the queue gives an empty page,
            // as the reference's MongoDB store answers a marker it cannot
            // read (its Redis store started over from the first message).
            let is_sequence = marker.len() <= 19
                && !marker.is_empty()
                && marker.bytes().all(|b| b.is_ascii_digit());
            if !is_sequence {
                params.marker = self
                    .storage
                    .messages
                    .marker_of(&scope, marker)
                    .await
                    .map_err(storage_error("Messages could not be listed."))?;
                if params.marker.is_none() {
                    return Ok(MessageListing {
                        messages: Vec::new(),
                        next_marker: None,
                        include_delayed_forced: false,
                    });
                }
            }
        }
        let mut poll = self.long_poll(&scope, params.wait)?;
        loop {
            let listing = self.messages_list_once(ctx, &scope, &params, limit).await?;
            if !listing.messages.is_empty() || !poll.wait().await {
                return Ok(listing);
            }
        }
    }

    /// One look of [`Api::messages_list`]. The delay policy comes from
    /// metadata the store may answer from memory (as for a post or a
    /// claim); a store that did refuses the listing when it has changed
    /// since, and the look is made again on metadata read afresh.
    async fn messages_list_once(
        &self,
        ctx: &RequestContext,
        scope: &Scope,
        params: &MessageListParams,
        limit: usize,
    ) -> ApiResult<MessageListing> {
        let what = "Messages could not be listed.";
        with_current_metadata(what, |fresh| {
            self.messages_list_look(ctx, scope, params, limit, fresh, what)
        })
        .await
    }

    /// One attempt of [`Self::messages_list_once`].
    async fn messages_list_look(
        &self,
        ctx: &RequestContext,
        scope: &Scope,
        params: &MessageListParams,
        limit: usize,
        fresh: bool,
        what: &'static str,
    ) -> Result<MessageListing, WriteError> {
        let Some(metadata) = self.metadata_for_write(scope, fresh, what).await? else {
            return Ok(MessageListing {
                messages: Vec::new(),
                next_marker: None,
                include_delayed_forced: false,
            });
        };
        let is_delay_queue = QueuePolicy::from_metadata(&metadata)
            .default_delay
            .is_some();
        let include_delayed_forced = !is_delay_queue && params.include_delayed != Some(true);
        let query = ListQuery {
            marker: params.marker.clone(),
            limit,
            echo: params.echo.unwrap_or(false),
            client_id: ctx.client_id.clone(),
            include_claimed: params.include_claimed.unwrap_or(false),
            include_delayed: !is_delay_queue || params.include_delayed.unwrap_or(false),
        };
        let mut page = self
            .storage
            .messages
            .list(scope, &query)
            .await
            .map_err(write_error(what))?;
        self.open_bodies(scope, &mut page.messages)?;
        Ok(MessageListing {
            messages: page.messages,
            next_marker: page.next_marker,
            include_delayed_forced,
        })
    }

    /// `GET /v2/queues/{q}/messages?ids=...`.
    pub async fn messages_get_by_ids(
        &self,
        ctx: &RequestContext,
        queue: &str,
        ids: &[String],
    ) -> ApiResult<Vec<Message>> {
        validate::limit(
            Some(ids.len() as i64),
            self.limits().max_messages_per_page,
            may_not_exceed,
        )?;
        let scope = scope(ctx, queue);
        let mut messages = self
            .storage
            .messages
            .bulk_get(&scope, ids)
            .await
            .map_err(storage_error("Message could not be retrieved."))?;
        self.open_bodies(&scope, &mut messages)?;
        if messages.is_empty() {
            return Err(ApiError::not_found(format!(
                "No messages with IDs: {} found in the queue {queue} for project {}.",
                python_list(ids),
                ctx.project_id
            )));
        }
        Ok(messages)
    }

    /// `DELETE /v2/queues/{q}/messages?ids=...|pop=N`.
    pub async fn messages_delete_bulk(
        &self,
        ctx: &RequestContext,
        queue: &str,
        params: BulkDeleteParams,
    ) -> ApiResult<BulkDeleteOutcome> {
        let limits = self.limits();
        let BulkDeleteParams {
            ids,
            claim_ids,
            pop,
        } = params;
        if pop.is_some() && ids.is_some() {
            return Err(ApiError::invalid(
                "pop and id params cannot be present together in the delete request.",
            ));
        }
        if pop.is_none() && ids.is_none() {
            return Err(ApiError::invalid(
                "The request should have either \"ids\" or \"pop\" parameter in the request, to be able to delete.",
            ));
        }
        let claim_ids = if limits.message_delete_with_claim_id {
            let has_ids = ids.as_ref().is_some_and(|i| !i.is_empty());
            let has_claims = claim_ids.as_ref().is_some_and(|c| !c.is_empty());
            if (has_ids && claim_ids.is_none()) || (ids.is_none() && has_claims) {
                return Err(ApiError::invalid(
                    "The request should have both \"ids\" and \"claim_ids\" parameter in the request when \
                     message_delete_with_claim_id is True.",
                ));
            }
            claim_ids
        } else {
            None
        };
        if let Some(pop) = pop {
            let max = limits.max_messages_per_claim_or_pop;
            if !(1..=max).contains(&pop) {
                return Err(ApiError::invalid(format!(
                    "Pop value must be at least 1 and may not be greater than {max}."
                )));
            }
            let scope = scope(ctx, queue);
            let what = "Messages could not be popped.";
            let encrypted = self
                .storage
                .queues
                .get(&scope)
                .await
                .map_err(storage_error(what))?
                .is_some_and(|m| QueuePolicy::from_metadata(&m).encrypt);
            let popped = if encrypted {
                self.pop_sealed(&scope, pop as usize).await?
            } else {
                let mut popped = self
                    .storage
                    .messages
                    .pop(&scope, pop as usize)
                    .await
                    .map_err(storage_error(what))?;
                self.open_bodies(&scope, &mut popped)?;
                popped
            };
            return Ok(BulkDeleteOutcome::Popped(popped));
        }
        let ids = ids.unwrap_or_default();
        let max = limits.max_messages_per_page;
        if ids.is_empty() || ids.len() as i64 > max {
            return Err(ApiError::invalid(format!(
                "ids parameter should have at least 1 and not greater than {max} values."
            )));
        }
        self.storage
            .messages
            .bulk_delete(&scope(ctx, queue), &ids, claim_ids.as_deref())
            .await
            .map_err(storage_error("Messages could not be deleted."))?;
        Ok(BulkDeleteOutcome::Deleted)
    }

    /// `GET /v2/queues/{q}/messages/{id}`.
    pub async fn message_get(
        &self,
        ctx: &RequestContext,
        queue: &str,
        id: &str,
    ) -> ApiResult<Message> {
        let scope = scope(ctx, queue);
        let what = "Message could not be retrieved.";
        match self
            .storage
            .messages
            .get(&scope, id)
            .await
            .map_err(storage_error(what))?
        {
            Some(m) => {
                let mut one = [m];
                self.open_bodies(&scope, &mut one)?;
                let [m] = one;
                Ok(m)
            }
            None => {
                let exists = self.queue_metadata(&scope, what).await?.is_some();
                Err(ApiError::not_found(if exists {
                    format!(
                        "Message {id} does not exist in queue {queue} for project {}",
                        ctx.project_id
                    )
                } else {
                    format!(
                        "Queue {queue} does not exist for project {}",
                        ctx.project_id
                    )
                }))
            }
        }
    }

    /// `DELETE /v2/queues/{q}/messages/{id}[?claim_id=...]`.
    pub async fn message_delete(
        &self,
        ctx: &RequestContext,
        queue: &str,
        id: &str,
        claim_id: Option<&str>,
    ) -> ApiResult<()> {
        let title = "Unable to delete";
        match self
            .storage
            .messages
            .delete(&scope(ctx, queue), id, claim_id)
            .await
        {
            Ok(()) => Ok(()),
            Err(StorageError::MessageNotClaimed) => Err(ApiError::bad_request(
                title,
                "A claim was specified, but the message is not currently claimed.",
            )),
            Err(StorageError::ClaimNotFound) => Err(ApiError::bad_request(
                title,
                "The specified claim does not exist or has expired.",
            )),
            Err(StorageError::MessageIsClaimed) => Err(ApiError::Forbidden {
                title: title.into(),
                description:
                    "This message is claimed; it cannot be deleted without a valid claim ID.".into(),
            }),
            Err(e) => Err(storage_error("Message could not be deleted.")(e)),
        }
    }
}

/// A JSON object read as its key/value pairs in order, values kept raw.
mod indexmap_free {
    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
    use serde_json::value::RawValue;

    /// The pairs of an object.
    pub struct Pairs<'a>(pub Vec<(String, &'a RawValue)>);

    impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<'a>(std::marker::PhantomData<&'a ()>);
            impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
                type Value = Pairs<'a>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                    let mut out = Vec::new();
                    while let Some((k, v)) = map.next_entry::<String, &'de RawValue>()? {
                        out.push((k, v));
                    }
                    Ok(Pairs(out))
                }
            }
            d.deserialize_map(V(std::marker::PhantomData))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_escapes_come_back_as_characters() {
        let raw = |s: &str| RawValue::from_string(s.to_owned()).unwrap();
        assert_eq!(
            unescaped(&raw(r#""caf\u00e9 \ud83d\ude00""#)).get(),
            "\"café 😀\""
        );
        assert_eq!(
            unescaped(&raw(r#"{"b": "\u0022\u005c\u0001", "a": 1.5}"#)).get(),
            r#"{"b":"\"\\\u0001","a":1.5}"#
        );
        // without \u: kept as sent, spaces included
        assert_eq!(unescaped(&raw(r#"{"a" : 1}"#)).get(), r#"{"a" : 1}"#);
    }
}
