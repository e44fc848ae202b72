//! Answers one decoded frame: the reference's framing checks, then either
//! the session's `authenticate` or an operation of the api core (who the
//! frame acts for decided by the auth layer, everything else by
//! [`Api::execute`](crate::api::Api::execute)), rendered in the WebSocket
//! body shapes.
//!
//! Errors of every kind become a [`WsError`], rendered in one place
//! ([`WsError::body`]); an [`ApiError`] keeps the title and description
//! it has over HTTP, so the same bad input reads the same on both.

use std::time::SystemTime;

use serde::Serialize;
use serde_json::{json, Map, Value};
use tracing::Instrument;

use super::actions::{self, Checked, Request};
use super::auth as ws_auth;
use super::connection::Conn;
use super::frame::{self, Echo, Encoding, FrameError};
use crate::api::execute;
use crate::api::operation::{Operation, OperationKind};
use crate::api::reply::Reply;
use crate::api::views::{self, MessageView, StampView, StatsView, SubscriptionView};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::storage::Message;

/// Everything a frame can be answered with instead of a result.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The frame could not be read as a request (400).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The api core (or the auth layer) refused the request (its own status).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The api core refused the request, and the reference's WebSocket
    /// endpoint words that refusal its own way.
    #[error("{text}")]
    Endpoint {
        /// The refusal, as over HTTP.
        error: ApiError,
        /// The `exception` text, when not the description.
        exception: Option<String>,
        /// The endpoint's `error` text.
        text: String,
    },
    /// Keystone mode, connection not authenticated (403).
    #[error("Not authentified.")]
    NotAuthentified,
    /// `authenticate` failed, with the status to answer.
    #[error("Authentication failed.")]
    AuthenticationFailed(u16),
}

impl WsError {
    /// The status of the response frame.
    pub fn status(&self) -> u16 {
        match self {
            WsError::Frame(_) => 400,
            WsError::Api(e) | WsError::Endpoint { error: e, .. } => e.status().as_u16(),
            WsError::NotAuthentified => 403,
            WsError::AuthenticationFailed(status) => *status,
        }
    }

    /// The body of the response frame.
    ///
    /// Framing and authentication errors are `{"error": <text>}` as the
    /// reference sends them. An api-core error carries its HTTP
    /// `title`/`description` plus the reference's WebSocket keys:
    /// `exception` (what went wrong, as the reference's exception text: the
    /// description, else the title) and `error` (the text
    /// python-zaqarclient shows: the endpoint's own for a missing claim or
    /// subscription, else the same, where the reference sends null and the
    /// client then shows "None").
    pub fn body(&self) -> Value {
        let (e, exception, error_text) = match self {
            WsError::Api(e) => (e, None, None),
            WsError::Endpoint {
                error,
                exception,
                text,
            } => (error, exception.as_ref(), Some(text)),
            other => return json!({ "error": other.to_string() }),
        };
        if let ApiError::Internal(detail) = e {
            tracing::error!(%detail, "internal error");
        }
        let mut body = match e.body() {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let text = e.description().unwrap_or_else(|| e.title()).into_owned();
        let error = error_text.cloned().unwrap_or_else(|| text.clone());
        body.insert("error".into(), Value::from(error));
        body.insert(
            "exception".into(),
            Value::from(exception.cloned().unwrap_or(text)),
        );
        Value::Object(body)
    }
}

/// The result of an action: status and body.
type Answer = Result<(u16, Value), WsError>;

/// Answers the frame `bytes` of `encoding`; the response document to send.
pub async fn respond(conn: &mut Conn, bytes: &[u8], encoding: Encoding) -> Value {
    let started = std::time::Instant::now();
    let request_id = format!("req-{}", uuid::Uuid::new_v4());
    let span = tracing::info_span!("request", request_id = %request_id, conn = %conn.id());
    let reply = answer_frame(conn, bytes, encoding, request_id)
        .instrument(span)
        .await;
    let status = reply
        .pointer("/headers/status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(0);
    let action = reply
        .pointer("/request/action")
        .and_then(Value::as_str)
        .and_then(|a| actions::lookup(a).map(|spec| spec.name))
        .unwrap_or("none");
    crate::metrics::global().request("websocket", action, status, started.elapsed());
    reply
}

async fn answer_frame(
    conn: &mut Conn,
    bytes: &[u8],
    encoding: Encoding,
    request_id: String,
) -> Value {
    let doc = match frame::decode(bytes, encoding) {
        Ok(Value::Object(doc)) => doc,
        Ok(_) => return render(Echo::empty(), Err(FrameError::NotAnObject.into())),
        Err(e) => {
            tracing::debug!(error = %e, "undecodable frame");
            return render(Echo::empty(), Err(e.into()));
        }
    };
    let echo = Echo::of(&doc);
    if frame::has_oversized_integer(bytes, encoding) {
        let e = ApiError::invalid_body("JSON contains integer that is too large.");
        return render(echo, Err(e.into()));
    }
    let answer = match actions::check(&doc) {
        Ok(checked) => match checked.request() {
            Ok(Request::Authenticate) => authenticate(conn, &checked).await,
            Ok(Request::Operation(op)) => operate(conn, &checked, op, encoding, &request_id).await,
            Err(e) => Err(e.into()),
        },
        Err(e) => {
            if let FrameError::SchemaInvalid(why) = &e {
                tracing::debug!(why, "frame refused by the schema");
            }
            Err(e.into())
        }
    };
    render(echo, answer)
}

/// The response document for an answer.
fn render(echo: Echo, answer: Answer) -> Value {
    let (status, body) = match answer {
        Ok(ok) => ok,
        Err(e) => (e.status(), e.body()),
    };
    if status >= 500 {
        tracing::warn!(action = %echo.action, status, "websocket request failed");
    } else {
        tracing::debug!(action = %echo.action, status, "websocket request");
    }
    frame::response(echo, status, body)
}

/// Who the frame acts for (the auth layer's rules, as over HTTP): the
/// session's caller once `authenticate` succeeded; else a signature that
/// verifies for the operation's HTTP route; else, without Keystone, the
/// trusted headers.
async fn caller(conn: &Conn, c: &Checked<'_>, op: &Operation) -> Result<Caller, WsError> {
    let credentials = ws_auth::credentials(c.headers);
    match &conn.session.caller {
        Some(caller) => {
            caller.check_claim(credentials.project.as_deref())?;
            Ok(caller.clone())
        }
        None if credentials.signature.is_some() || !conn.state.auth.requires_token() => {
            let (method, path) = op.http_route();
            Ok(conn
                .state
                .auth
                .authenticate(&credentials, method, &path)
                .await?)
        }
        None => Err(WsError::NotAuthentified),
    }
}

/// Runs an operation through the api core and renders its reply.
async fn operate(
    conn: &mut Conn,
    c: &Checked<'_>,
    op: Operation,
    encoding: Encoding,
    request_id: &str,
) -> Answer {
    let caller = caller(conn, c, &op).await?;
    let state = conn.state.clone();
    let queue = op.queue().unwrap_or_default().to_owned();
    let id = op.resource_id().unwrap_or_default().to_owned();
    let topic = op.kind().is_topic();
    conn.set_encoding(encoding);
    let request = execute::Request {
        caller: &caller,
        client_id: c.header("Client-ID"),
        request_id,
        connection: Some(conn),
    };
    let kind = op.kind();
    let reply = match state.api.execute(request, op).await {
        // The reference's message_get_many answers ids it cannot find
        // with an empty list, not HTTP's 404.
        Err(ApiError::NotFound(_))
            if matches!(
                kind,
                OperationKind::MessageGetMany | OperationKind::TopicMessageGetMany
            ) =>
        {
            return Ok((200, json!({ "messages": [] })));
        }
        // A subscription that exists already: the reference's endpoint
        // answers 409 with these words (a string, not an error object).
        Err(ApiError::Conflict(_))
            if matches!(
                kind,
                OperationKind::SubscriptionCreate | OperationKind::TopicSubscriptionCreate
            ) =>
        {
            return Ok((
                409,
                Value::from(format!("Subscription {queue} not created.")),
            ));
        }
        reply => reply.map_err(|e| endpoint_error(kind, e, &queue, &id))?,
    };
    Ok(body_of(reply, &queue, &id, topic, state.api.now_ms())?)
}

/// The error of a refused operation, worded as the reference's endpoint
/// words it where that differs from HTTP: its own `error` text for a
/// missing claim or subscription, the reason a queue name or project id is
/// refused (HTTP masks it), and "Bad request. " before a field's error.
fn endpoint_error(kind: OperationKind, error: ApiError, queue: &str, id: &str) -> WsError {
    use OperationKind as K;
    let (exception, text) = match (&error, kind) {
        (ApiError::InvalidQueueIdentification(reason), _) => {
            (Some(reason.to_string()), reason.to_string())
        }
        // The reference's field checks raise its BadRequest, whose text
        // starts "Bad request. ".
        (ApiError::InvalidField(d), _) => (Some(format!("Bad request. {d}")), d.to_string()),
        (ApiError::NotFound(_), K::ClaimGet | K::ClaimUpdate) => {
            (None, format!("Claim {id} does not exist."))
        }
        (ApiError::NotFound(_), K::SubscriptionGet | K::TopicSubscriptionGet) => (
            None,
            format!("Subscription {id} for queue {queue} does not exist."),
        ),
        _ => return WsError::Api(error),
    };
    WsError::Endpoint {
        error,
        exception,
        text,
    }
}

/// `authenticate`: validates `X-Auth-Token` in Keystone mode.
async fn authenticate(conn: &mut Conn, c: &Checked<'_>) -> Answer {
    let auth = conn.state.auth.clone();
    if !auth.requires_token() {
        return Ok((
            200,
            json!({"message": "Authentication is not required: this server runs without an auth_strategy."}),
        ));
    }
    let token = c.header("X-Auth-Token").unwrap_or_default();
    match auth.validate_token(token).await {
        Ok(caller) => {
            caller.check_claim(c.header("X-Project-ID"))?;
            conn.session.expires_at = caller.expires_at.map(|at| {
                let left = at.duration_since(SystemTime::now()).unwrap_or_default();
                tokio::time::Instant::now() + left
            });
            conn.session.caller = Some(caller);
            Ok((200, json!({"message": "Authentified."})))
        }
        Err(e) => {
            tracing::info!(reason = %e, "websocket authentication failed");
            Err(WsError::AuthenticationFailed(e.status().as_u16()))
        }
    }
}

/// A message as the WebSocket API shows it: the common view plus the claim
/// holding it (`null` when none).
struct WsMessage<'a> {
    message: MessageView<'a>,
    claim_id: Option<&'a str>,
    /// Only in `pop`'s answer.
    claim_count: Option<i64>,
}

impl Serialize for WsMessage<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("WsMessage", MessageView::FIELDS + 2)?;
        self.message.write_fields(&mut out)?;
        out.serialize_field("claim_id", &self.claim_id)?;
        match self.claim_count {
            Some(count) => out.serialize_field("claim_count", &count)?,
            None => out.skip_field("claim_count")?,
        }
        out.end()
    }
}

fn message_view<'a>(m: &'a Message, claim_id: Option<&'a str>, now: i64) -> WsMessage<'a> {
    WsMessage {
        message: MessageView::of(m, now),
        claim_id: claim_id.or(m.claim_id.as_deref()),
        claim_count: None,
    }
}

fn messages<'a>(ms: &'a [Message], claim_id: Option<&'a str>, now: i64) -> Vec<WsMessage<'a>> {
    ms.iter().map(|m| message_view(m, claim_id, now)).collect()
}

fn value<T: Serialize>(v: T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The status and body of a reply, in the WebSocket API's shapes.
fn body_of(
    reply: Reply,
    queue: &str,
    id: &str,
    topic: bool,
    now: i64,
) -> Result<(u16, Value), ApiError> {
    let (key, noun) = match topic {
        true => ("topics", "Topic"),
        false => ("queues", "Queue"),
    };
    Ok(match reply {
        Reply::Versions => (300, crate::api::home::versions()),
        Reply::HomeDoc { admin_mode } => (200, crate::api::home::document(admin_mode)),
        Reply::OpenApi(doc) => (200, doc),
        Reply::Pong { alive: true } => (204, json!({})),
        Reply::Pong { alive: false } => {
            return Err(ApiError::Unavailable("Storage is not reachable.".into()))
        }
        Reply::Health(health) => (200, value(health)),
        Reply::Queues(listing) | Reply::Topics(listing) => {
            // Detailed, the metadata as stored (as the reference's).
            let queues: Vec<Value> = listing
                .queues
                .iter()
                .map(|entry| {
                    let mut v = Map::new();
                    v.insert("name".into(), Value::from(entry.name.as_str()));
                    if let Some(m) = &entry.metadata {
                        v.insert("metadata".into(), Value::Object(m.clone()));
                    }
                    Value::Object(v)
                })
                .collect();
            let mut body = json!({ key: queues });
            if let Some(count) = listing.count.filter(|&n| n > 0) {
                body["count"] = count.into();
            }
            (200, body)
        }
        Reply::QueueCreated { created } => (
            if created { 201 } else { 204 },
            Value::from(format!("{noun} {queue} created.")),
        ),
        // As the reference: the metadata as stored, no reserved defaults.
        Reply::QueueMetadata { stored, .. } => (200, Value::Object(stored)),
        Reply::QueueDeleted => (204, Value::from(format!("{noun} {queue} removed."))),
        Reply::QueueStats { stats, missing } => {
            #[derive(Serialize)]
            struct Stamp {
                id: String,
                #[serde(flatten)]
                stamp: StampView,
            }
            let view = StatsView::of(&stats, |m| Stamp {
                id: m.id.clone(),
                stamp: StampView::of(m, now),
            });
            // The reference's WebSocket API answers a missing queue's zero
            // stats with 404.
            (if missing { 404 } else { 200 }, value(view))
        }
        Reply::QueuePurged
        | Reply::MessagesDeleted
        | Reply::MessageDeleted
        | Reply::SubscriptionUpdated
        | Reply::SubscriptionConfirmed => (204, json!({})),
        Reply::SignedUrl(signed) => (200, value(signed)),
        Reply::MessagesPosted(ids) => (201, json!({ "message_ids": ids })),
        Reply::MessagePage(listing) => (
            200,
            json!({ "messages": value(messages(&listing.messages, None, now)) }),
        ),
        Reply::Messages(ms) => (200, json!({ "messages": value(messages(&ms, None, now)) })),
        Reply::MessagesPopped(ms) => {
            let popped: Vec<WsMessage> = ms
                .iter()
                .map(|m| WsMessage {
                    claim_count: Some(m.claim_count),
                    ..message_view(m, None, now)
                })
                .collect();
            (200, json!({ "messages": value(popped) }))
        }
        Reply::Message(m) => (
            200,
            json!({ "messages": value(message_view(&m, None, now)) }),
        ),
        Reply::ClaimCreated(None) => (204, json!({ "claim_id": null })),
        Reply::ClaimCreated(Some(claim)) => (
            201,
            json!({"claim_id": claim.id, "messages": value(messages(&claim.messages, Some(&claim.id), now))}),
        ),
        Reply::Claim(claim) => (
            200,
            json!({
                "age": ((now - claim.updated_ms) / 1000).max(0),
                "ttl": claim.ttl,
                "messages": value(messages(&claim.messages, Some(&claim.id), now)),
            }),
        ),
        Reply::ClaimUpdated => (204, Value::from(format!("Claim {id} updated."))),
        Reply::ClaimDeleted => (204, Value::from(format!("Claim {id} deleted."))),
        Reply::Subscriptions(listing) => {
            let subs: Vec<SubscriptionView> = listing
                .subscriptions
                .iter()
                .map(|s| SubscriptionView::of(s, now))
                .collect();
            (200, json!({ "subscriptions": value(subs) }))
        }
        Reply::SubscriptionCreated { id } => (
            201,
            json!({"subscription_id": id, "message": format!("Subscription {queue} created.")}),
        ),
        Reply::Subscription(s) => (200, value(views::SubscriptionView::of(&s, now))),
        Reply::SubscriptionDeleted => (204, Value::from(format!("Subscription {id} removed."))),
        Reply::Pools(listing) => {
            let pools: Vec<_> = listing
                .pools
                .iter()
                .map(|p| views::PoolView::of(p, listing.detailed))
                .collect();
            (200, json!({ "pools": value(pools) }))
        }
        Reply::Pool { pool, detailed } => (200, value(views::PoolView::of(&pool, detailed))),
        Reply::PoolCreated => (201, Value::from(format!("Pool {id} created."))),
        Reply::PoolDeleted => (204, Value::from(format!("Pool {id} removed."))),
        Reply::Flavors(listing) => {
            let flavors: Vec<_> = listing
                .flavors
                .iter()
                .map(|f| views::FlavorView::listed(f, listing.detailed))
                .collect();
            (200, json!({ "flavors": value(flavors) }))
        }
        Reply::Flavor(f) => (200, value(views::FlavorView::full(&f))),
        Reply::FlavorCreated => (201, Value::from(format!("Flavor {id} created."))),
        Reply::FlavorDeleted => (204, Value::from(format!("Flavor {id} removed."))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(claim_id: Option<&str>) -> Message {
        Message {
            id: "m1".into(),
            ttl: 300,
            created_ms: 1_000,
            body: serde_json::value::RawValue::from_string("[1]".into()).unwrap(),
            claim_id: claim_id.map(str::to_owned),
            claim_count: 3,
            checksum: Some("MD5:abc".into()),
        }
    }

    /// Over WebSocket a message carries its claim (`null` when none) after
    /// the common fields, and `claim_count` only in `pop`'s answer.
    #[test]
    fn messages_carry_their_claim_and_pop_its_count() {
        let free = message(None);
        assert_eq!(
            serde_json::to_string(&message_view(&free, None, 2_000)).unwrap(),
            r#"{"id":"m1","ttl":300,"age":1,"body":[1],"checksum":"MD5:abc","claim_id":null}"#
        );
        let held = message(Some("c1"));
        let popped = WsMessage {
            claim_count: Some(held.claim_count),
            ..message_view(&held, None, 1_000)
        };
        assert_eq!(
            value(popped),
            json!({"id": "m1", "ttl": 300, "age": 0, "body": [1], "checksum": "MD5:abc",
                   "claim_id": "c1", "claim_count": 3})
        );
    }
}
