//! Topics: publish/subscribe resources beside queues.
//!
//! A topic has the queue's operations minus claims and sharing: metadata,
//! stats, purge, messages and subscriptions. Every store keeps it as a
//! queue under a name no queue can have ([`crate::storage::names`]), so
//! the topic `t` and the queue `t` of a project are two resources, on
//! every store and through pooling.
//!
//! [`Api::run_topic`] checks the topic name (the reference's texts), puts
//! the stored name into the queue-shaped operation, runs it as the queue
//! operation, and maps the stored name back out of whatever it answers
//! (listing names, subscription sources, error texts). Posting to a topic
//! notifies its subscribers through the notifier stage and its durable
//! outbox as for a queue; a topic's subscriber may also be `queue:NAME`
//! (this implementation's extension), which copies each message into that
//! queue of the same project so that workers can claim from a fan-out.

use std::borrow::Cow;

use super::metadata;
use super::operation::{Operation, TopicOperation};
use super::queues::QueueListParams;
use super::reply::Reply;
use super::subscriptions::ConnectionSubscriptions;
use super::validate::{PROJECT_ID_MAX_LEN, QUEUE_NAME_MAX_LEN};
use super::Api;
use crate::context::RequestContext;
use crate::error::{ApiError, ApiResult};
use crate::notification::{Outcome, QueueSink};
use crate::storage::names::{self, topic_storage_name};

/// The subscriber scheme that copies a topic's messages into a queue.
pub const QUEUE_SUBSCRIBER_SCHEME: &str = "queue";

/// Checks a topic name and project id (the reference's `topic_identification`).
///
/// # Errors
/// 400 "Invalid API request" with the reference's text.
pub fn topic_identification(topic: &str, project: &str) -> ApiResult<()> {
    if project.len() > PROJECT_ID_MAX_LEN {
        return Err(ApiError::invalid(format!(
            "Project ids may not be more than {PROJECT_ID_MAX_LEN} characters long."
        )));
    }
    if topic.len() > QUEUE_NAME_MAX_LEN {
        return Err(ApiError::invalid(format!(
            "Topic names may not be more than {QUEUE_NAME_MAX_LEN} characters long."
        )));
    }
    // The reference's text names no dots, but its check (the queue names'
    // pattern) allows them, and its tests create `Service.test_topic`.
    if topic.is_empty()
        || !topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(ApiError::invalid(
            "Topic names may only contain ASCII letters, digits, underscores, and dashes.",
        ));
    }
    Ok(())
}

/// The queue a `queue:NAME` subscriber names, if the subscriber is one.
pub fn queue_subscriber_target(subscriber: &str) -> Option<&str> {
    let (scheme, rest) = subscriber.split_once(':')?;
    scheme
        .eq_ignore_ascii_case(QUEUE_SUBSCRIBER_SCHEME)
        .then_some(rest)
}

/// `text` with the stored name of a topic replaced by what clients call
/// it (`Queue ~topic~t` -> `Topic t`).
fn client_text(text: Cow<'static, str>, stored: &str, topic: &str) -> Cow<'static, str> {
    if !text.contains(stored) {
        return text;
    }
    text.replace(&format!("Queue {stored}"), &format!("Topic {topic}"))
        .replace(&format!("queue {stored}"), &format!("topic {topic}"))
        .replace(stored, topic)
        .into()
}

/// The error `e` as clients of the topic see it.
fn client_error(e: ApiError, stored: &str, topic: &str) -> ApiError {
    let fix = |t| client_text(t, stored, topic);
    match e {
        ApiError::InvalidBody(t) => ApiError::InvalidBody(fix(t)),
        ApiError::InvalidField(t) => ApiError::InvalidField(fix(t)),
        ApiError::InvalidRequest(t) => ApiError::InvalidRequest(fix(t)),
        ApiError::BadRequest { title, description } => ApiError::BadRequest {
            title,
            description: description.map(fix),
        },
        ApiError::NotFound(t) => ApiError::NotFound(fix(t)),
        ApiError::Conflict(t) => ApiError::Conflict(fix(t)),
        ApiError::Unavailable(t) => ApiError::Unavailable(fix(t)),
        other => other,
    }
}

impl Api {
    /// Runs an operation on a topic (module docs).
    pub(super) async fn run_topic(
        &self,
        ctx: &RequestContext,
        operation: TopicOperation,
        connection: Option<&mut dyn ConnectionSubscriptions>,
    ) -> ApiResult<Reply> {
        let mut inner = operation.into_inner();
        if let Operation::QueueList(params) = inner {
            return Ok(Reply::Topics(self.topic_list(ctx, params).await?));
        }
        let topic = inner.queue().unwrap_or_default().to_owned();
        let stored = topic_storage_name(&topic);
        if let Some(queue) = inner.queue_mut() {
            queue.clone_from(&stored);
        }
        let reply = Box::pin(self.run(ctx, inner, connection))
            .await
            .map_err(|e| client_error(e, &stored, &topic))?;
        Ok(match reply {
            Reply::Subscriptions(mut listing) => {
                for s in &mut listing.subscriptions {
                    s.source.clone_from(&topic);
                }
                Reply::Subscriptions(listing)
            }
            Reply::Subscription(mut s) => {
                s.source.clone_from(&topic);
                Reply::Subscription(s)
            }
            Reply::QueueMetadata { stored, .. } => Reply::QueueMetadata {
                shown: metadata::fill_defaults(
                    stored.clone(),
                    &metadata::topic_reserved_defaults(self.limits()),
                ),
                stored,
            },
            other => other,
        })
    }

    /// `GET /v2/topics`: the project's topics in name order, after
    /// `marker` (a topic name).
    async fn topic_list(
        &self,
        ctx: &RequestContext,
        params: QueueListParams,
    ) -> ApiResult<super::queues::QueueListing> {
        let marker = match &params.marker {
            Some(m) => topic_storage_name(m),
            None => names::TOPIC_PREFIX.to_owned(),
        };
        let listed = QueueListParams {
            marker: Some(marker),
            limit: params.limit,
            detailed: params.detailed,
            with_count: false,
            name: params.name.clone(),
            filters: params.filters.clone(),
        };
        let mut listing = self.queue_list_stored(ctx, listed).await?;
        listing.defaults = metadata::topic_reserved_defaults(self.limits()).to_vec();
        listing
            .queues
            .retain(|q| names::topic_of(&q.name).is_some());
        for q in &mut listing.queues {
            q.name = names::display_name(&q.name).to_owned();
        }
        listing.next_marker = match listing.queues.last() {
            Some(q) => q.name.clone(),
            None => params.marker.unwrap_or_default(),
        };
        Ok(listing)
    }
}

/// The `Client-ID` of the messages a topic copies into a queue.
pub const FAN_OUT_CLIENT_ID: &str = "00000000-0000-4000-8000-00000000f0a0";

#[async_trait::async_trait]
impl QueueSink for Api {
    async fn copy(&self, project: &str, queue: &str, payload: &serde_json::Value) -> Outcome {
        let mut message = serde_json::Map::new();
        for key in ["ttl", "body", "delay"] {
            if let Some(v) = payload.get(key) {
                message.insert(key.into(), v.clone());
            }
        }
        let doc = serde_json::json!({ "messages": [message] });
        let ctx = RequestContext {
            project_id: project.to_owned(),
            client_id: FAN_OUT_CLIENT_ID.to_owned(),
            user_id: None,
            roles: Vec::new(),
            request_id: format!("req-{}", uuid::Uuid::new_v4()),
            auth_token: None,
        };
        if let Err(e) = super::validate::queue_identification(queue, project) {
            return Outcome::GiveUp(e.to_string());
        }
        match self
            .messages_post(&ctx, queue, &super::Payload::document(&doc))
            .await
        {
            Ok(_) => Outcome::Delivered,
            Err(e @ (ApiError::Unavailable(_) | ApiError::Internal(_))) => {
                Outcome::Retry(e.to_string())
            }
            Err(e) => Outcome::GiveUp(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_the_reference() {
        assert!(topic_identification("a-b_C9", "p").is_ok());
        assert!(topic_identification("Service.test_topic", "p").is_ok());
        let text = |e: ApiError| e.body()["description"].as_str().unwrap().to_owned();
        assert_eq!(
            text(topic_identification(&"a".repeat(65), "p").unwrap_err()),
            "Topic names may not be more than 64 characters long."
        );
        for bad in ["", "a@b", "a b", "~topic~a", "é"] {
            assert_eq!(
                text(topic_identification(bad, "p").unwrap_err()),
                "Topic names may only contain ASCII letters, digits, underscores, and dashes.",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn stored_names_never_reach_clients() {
        let stored = topic_storage_name("t");
        let e = client_error(
            ApiError::not_found(format!("Queue {stored} does not exist for project p")),
            &stored,
            "t",
        );
        assert_eq!(
            e,
            ApiError::not_found("Topic t does not exist for project p")
        );
        let e = client_error(
            ApiError::not_found(format!("Message m does not exist in queue {stored}")),
            &stored,
            "t",
        );
        assert_eq!(
            e,
            ApiError::not_found("Message m does not exist in topic t")
        );
    }

    #[test]
    fn queue_subscribers() {
        assert_eq!(queue_subscriber_target("queue:jobs"), Some("jobs"));
        assert_eq!(queue_subscriber_target("QUEUE:jobs"), Some("jobs"));
        assert_eq!(queue_subscriber_target("http://x"), None);
        assert_eq!(queue_subscriber_target("queues"), None);
    }
}
