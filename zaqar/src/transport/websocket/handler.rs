//! Answers one decoded frame: the reference's framing checks, the
//! authentication gate, the HTTP header rules, policy, then one api-core
//! call rendered in the WebSocket body shapes.
//!
//! Errors of every kind become a [`WsError`], rendered in one place
//! ([`WsError::body`]); an [`ApiError`] keeps the title and description
//! it has over HTTP, so the same bad input reads the same on both.

use std::time::{Instant, SystemTime};

use http::StatusCode;
use serde_json::{json, Map, Value};

use super::actions::{self, Action, Checked};
use super::auth as ws_auth;
use super::connection::Conn;
use super::frame::{self, Echo, Encoding, FrameError};
use crate::api::messages::{BulkDeleteOutcome, BulkDeleteParams, MessageListParams};
use crate::api::queues::QueueListParams;
use crate::api::subscriptions::SubscriptionListParams;
use crate::api::{validate, Payload};
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::storage::{Message, QueueStats, Scope, Subscription};

/// Everything a frame can be answered with instead of a result.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The frame could not be read as a request (400).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The api core refused the request (its own status).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Keystone mode, connection not authenticated (403).
    #[error("Not authentified.")]
    NotAuthentified,
    /// `authenticate` failed, with the status to answer.
    #[error("Authentication failed.")]
    AuthenticationFailed(u16),
    /// The action exists but this server does not offer it yet (501).
    #[error("{0}")]
    NotImplemented(&'static str),
}

impl WsError {
    /// The status of the response frame.
    pub fn status(&self) -> u16 {
        match self {
            WsError::Frame(_) => 400,
            WsError::Api(e) => e.status().as_u16(),
            WsError::NotAuthentified => 403,
            WsError::AuthenticationFailed(status) => *status,
            WsError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED.as_u16(),
        }
    }

    /// The body of the response frame.
    ///
    /// Framing and authentication errors are `{"error": <text>}` as the
    /// reference sends them. An api-core error carries its HTTP
    /// `title`/`description` plus the reference's WebSocket keys:
    /// `error` (the text python-zaqarclient shows: the description, else the
    /// title) and `exception` (the title).
    pub fn body(&self) -> Value {
        match self {
            WsError::Api(e) => {
                if let ApiError::Internal(detail) = e {
                    tracing::error!(%detail, "internal error");
                }
                let mut body = match e.body() {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                let title = e.title().into_owned();
                let text = e
                    .description()
                    .map(|d| d.into_owned())
                    .unwrap_or_else(|| title.clone());
                body.insert("error".into(), Value::from(text));
                body.insert("exception".into(), Value::from(title));
                Value::Object(body)
            }
            other => json!({ "error": other.to_string() }),
        }
    }
}

/// The result of an action: status and body.
type Answer = Result<(u16, Value), WsError>;

/// Answers the frame `bytes` of `encoding`; the response document to send.
pub async fn respond(conn: &mut Conn, bytes: &[u8], encoding: Encoding) -> Value {
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
        return render(
            echo,
            Err(ApiError::invalid_body("JSON contains integer that is too large.").into()),
        );
    }
    let answer = match actions::check(&doc) {
        Ok(checked) => answer(conn, &checked, encoding).await,
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

/// The authentication gate, the header rules, the queue name and policy,
/// then the action.
async fn answer(conn: &mut Conn, c: &Checked<'_>, encoding: Encoding) -> Answer {
    let state = conn.state.clone();
    if c.spec.action == Action::Authenticate {
        return authenticate(conn, c).await;
    }
    let api = &state.api;
    // Who the frame acts for (crate::auth, the same rules as HTTP): the
    // session's caller once `authenticate` succeeded; else a signature that
    // verifies for the operation's HTTP route; else, without Keystone, the
    // trusted headers.
    let credentials = ws_auth::credentials(c.headers);
    let caller = match &conn.session.caller {
        Some(caller) => {
            caller.check_claim(credentials.project.as_deref())?;
            caller.clone()
        }
        None if credentials.signature.is_some() || !state.auth.requires_token() => {
            let (method, path) = ws_auth::http_route(c);
            state.auth.authenticate(&credentials, method, &path).await?
        }
        None => return Err(WsError::NotAuthentified),
    };
    let ctx = caller.context(
        c.header("Client-ID"),
        api.limits(),
        format!("req-{}", uuid::Uuid::new_v4()),
    )?;
    if let Some(queue) = c.queue() {
        validate::queue_identification(queue, &ctx.project_id)?;
    }
    if let Some(rule) = c.spec.policy {
        state.policy.enforce(rule, &ctx)?;
    }
    dispatch(conn, c, &ctx, encoding).await
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

/// A message as the WebSocket API shows it.
fn message_view(m: &Message, claim_id: Option<&str>, now: i64) -> Value {
    let mut v = Map::new();
    v.insert("id".into(), Value::from(m.id.as_str()));
    v.insert(
        "claim_id".into(),
        claim_id
            .or(m.claim_id.as_deref())
            .map_or(Value::Null, Value::from),
    );
    v.insert("ttl".into(), Value::from(m.ttl));
    v.insert("age".into(), Value::from(m.age(now)));
    v.insert(
        "body".into(),
        serde_json::from_str(m.body.get()).unwrap_or(Value::Null),
    );
    if let Some(sum) = &m.checksum {
        v.insert("checksum".into(), Value::from(sum.as_str()));
    }
    Value::Object(v)
}

fn stats_view(s: &QueueStats, now: i64) -> Value {
    let mut counts = Map::new();
    counts.insert("claimed".into(), s.claimed.into());
    counts.insert("free".into(), s.free.into());
    counts.insert("total".into(), s.total.into());
    if s.total > 0 {
        for (key, stamp) in [("oldest", &s.oldest), ("newest", &s.newest)] {
            if let Some(m) = stamp {
                let created = chrono::DateTime::from_timestamp_millis(m.created_ms)
                    .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_default();
                counts.insert(
                    key.into(),
                    json!({"id": m.id, "age": ((now - m.created_ms) / 1000).max(0), "created": created}),
                );
            }
        }
    }
    json!({ "messages": counts })
}

/// The JSON document `{key: value}` as a body for the api core, or
/// [`Payload::Absent`] when the frame has no such field.
fn payload_of(c: &Checked<'_>, keys: &[&str]) -> Payload {
    let mut doc = Map::new();
    for k in keys {
        if let Some(v) = c.body.get(*k) {
            doc.insert((*k).to_owned(), v.clone());
        }
    }
    if doc.is_empty() {
        return Payload::Absent;
    }
    to_payload(&Value::Object(doc))
}

fn to_payload(v: &Value) -> Payload {
    match serde_json::to_vec(v) {
        Ok(bytes) => Payload::Bytes(bytes.into()),
        Err(_) => Payload::Absent,
    }
}

/// A boolean field the schema does not type: a boolean, or a string the
/// HTTP transport would accept, else the HTTP transport's error.
fn loose_bool(c: &Checked<'_>, name: &str) -> Result<Option<bool>, ApiError> {
    match c.body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if crate::config::parse_bool(s).is_some() => Ok(crate::config::parse_bool(s)),
        Some(_) => Err(ApiError::invalid(format!(
            "The \"{name}\" parameter is invalid. The value of the parameter must be \"true\" or \"false\"."
        ))),
    }
}

/// A list of ids (`message_ids`, `claim_ids`); an empty list counts as none,
/// as a blank `ids=` does over HTTP.
fn id_list(c: &Checked<'_>, name: &str) -> Option<Vec<String>> {
    let items = c.body.get(name)?.as_array()?;
    let ids: Vec<String> = items
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    (!ids.is_empty()).then_some(ids)
}

/// Runs the action.
async fn dispatch(
    conn: &mut Conn,
    c: &Checked<'_>,
    ctx: &RequestContext,
    encoding: Encoding,
) -> Answer {
    let state = conn.state.clone();
    let api = &state.api;
    let now = api.now_ms();
    let q = c.queue().unwrap_or_default();
    let str_field = |name: &str| c.str_field(name).unwrap_or_default().to_owned();
    match c.spec.action {
        Action::Authenticate => authenticate(conn, c).await,
        Action::GetHomeDoc => Ok((
            200,
            crate::transport::http::home::document(api.config().admin_mode),
        )),
        Action::PingNode => {
            if api.ping().await {
                Ok((204, json!({})))
            } else {
                Err(ApiError::Unavailable("Storage is not reachable.".into()).into())
            }
        }
        Action::CheckNodeHealth => Ok((
            200,
            serde_json::to_value(api.health().await).unwrap_or_default(),
        )),
        Action::QueueList => {
            let params = QueueListParams {
                marker: c.str_field("marker").map(String::from),
                limit: c.int_field("limit"),
                detailed: c
                    .body
                    .get("detailed")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                with_count: loose_bool(c, "with_count")?.unwrap_or(false),
            };
            let listing = api.queue_list(ctx, params).await?;
            let queues: Vec<Value> = listing
                .queues
                .iter()
                .map(|entry| {
                    let mut v = Map::new();
                    v.insert("name".into(), Value::from(entry.name.as_str()));
                    if let Some(m) = &entry.metadata {
                        v.insert(
                            "metadata".into(),
                            Value::Object(m.clone().into_iter().collect()),
                        );
                    }
                    Value::Object(v)
                })
                .collect();
            let mut body = json!({ "queues": queues });
            if let Some(count) = listing.count.filter(|&n| n > 0) {
                body["count"] = count.into();
            }
            Ok((200, body))
        }
        Action::QueueCreate => {
            let created = api
                .queue_create(ctx, q, &payload_of_value(c.body.get("metadata")))
                .await?;
            Ok((
                if created { 201 } else { 204 },
                Value::from(format!("Queue {q} created.")),
            ))
        }
        Action::QueueGet => {
            let metadata = api.queue_get(ctx, q).await?;
            Ok((200, Value::Object(metadata.into_iter().collect())))
        }
        Action::QueueDelete => {
            api.queue_delete(ctx, q).await?;
            Ok((204, Value::from(format!("Queue {q} removed."))))
        }
        Action::QueueGetStats => {
            let stats = api.queue_stats(ctx, q).await?;
            Ok((200, stats_view(&stats, now)))
        }
        Action::QueuePurge => {
            api.queue_purge(ctx, q, &payload_of(c, &["resource_types"]))
                .await?;
            Ok((204, json!({})))
        }
        Action::MessageList => {
            let params = MessageListParams {
                marker: c.str_field("marker").map(String::from),
                limit: c.int_field("limit"),
                echo: c.body.get("echo").and_then(Value::as_bool),
                include_claimed: c.body.get("include_claimed").and_then(Value::as_bool),
                include_delayed: loose_bool(c, "include_delayed")?,
            };
            let listing = api.messages_list(ctx, q, params).await?;
            let messages: Vec<Value> = listing
                .messages
                .iter()
                .map(|m| message_view(m, None, now))
                .collect();
            Ok((200, json!({ "messages": messages })))
        }
        Action::MessageGet => {
            let m = api.message_get(ctx, q, &str_field("message_id")).await?;
            Ok((200, json!({ "messages": message_view(&m, None, now) })))
        }
        Action::MessageGetMany => {
            let ids = id_list(c, "message_ids").unwrap_or_default();
            let messages = api.messages_get_by_ids(ctx, q, &ids).await?;
            let messages: Vec<Value> = messages
                .iter()
                .map(|m| message_view(m, None, now))
                .collect();
            Ok((200, json!({ "messages": messages })))
        }
        Action::MessagePost => {
            let ids = api
                .messages_post(ctx, q, &payload_of(c, &["messages"]))
                .await?;
            Ok((201, json!({ "message_ids": ids })))
        }
        Action::MessageDelete => {
            api.message_delete(ctx, q, &str_field("message_id"), c.str_field("claim_id"))
                .await?;
            Ok((204, json!({})))
        }
        Action::MessageDeleteMany => {
            let params = BulkDeleteParams {
                ids: id_list(c, "message_ids"),
                claim_ids: id_list(c, "claim_ids"),
                pop: c.int_field("pop"),
            };
            match api.messages_delete_bulk(ctx, q, params).await? {
                BulkDeleteOutcome::Deleted => Ok((204, json!({}))),
                BulkDeleteOutcome::Popped(messages) => {
                    let messages: Vec<Value> = messages
                        .iter()
                        .map(|m| {
                            let mut v = message_view(m, None, now);
                            v["claim_count"] = m.claim_count.into();
                            v
                        })
                        .collect();
                    Ok((200, json!({ "messages": messages })))
                }
            }
        }
        Action::ClaimCreate => {
            let payload = payload_of(c, &["ttl", "grace"]);
            match api
                .claim_create(ctx, q, c.int_field("limit"), &payload)
                .await?
            {
                None => Ok((204, json!({ "claim_id": null }))),
                Some(claim) => {
                    let messages: Vec<Value> = claim
                        .messages
                        .iter()
                        .map(|m| message_view(m, Some(&claim.id), now))
                        .collect();
                    Ok((201, json!({ "claim_id": claim.id, "messages": messages })))
                }
            }
        }
        Action::ClaimGet => {
            let claim = api.claim_get(ctx, q, &str_field("claim_id")).await?;
            let messages: Vec<Value> = claim
                .messages
                .iter()
                .map(|m| message_view(m, Some(&claim.id), now))
                .collect();
            Ok((
                200,
                json!({"age": ((now - claim.updated_ms) / 1000).max(0), "ttl": claim.ttl, "messages": messages}),
            ))
        }
        Action::ClaimUpdate => {
            let payload = match payload_of(c, &["ttl", "grace"]) {
                Payload::Absent => to_payload(&json!({})),
                p => p,
            };
            let id = str_field("claim_id");
            api.claim_update(ctx, q, &id, &payload).await?;
            Ok((204, Value::from(format!("Claim {id} updated."))))
        }
        Action::ClaimDelete => {
            let id = str_field("claim_id");
            api.claim_delete(ctx, q, &id).await?;
            Ok((204, Value::from(format!("Claim {id} deleted."))))
        }
        Action::SubscriptionCreate => {
            let subscriber = c.str_field("subscriber").unwrap_or_default();
            if !subscriber.is_empty() {
                // A stored subscription (webhook, mailto, trust+): the api core's rules.
                let payload = payload_of(c, &["subscriber", "ttl", "options"]);
                let id = api.subscription_create(ctx, q, &payload).await?;
                return Ok((
                    201,
                    json!({"subscription_id": id, "message": format!("Subscription {q} created.")}),
                ));
            }
            let ttl = c.int_field("ttl");
            if let Some(ttl) = ttl {
                if ttl < validate::MIN_SUBSCRIPTION_TTL {
                    return Err(ApiError::invalid(
                        "The TTL for a subscription must be at least 60 seconds long.",
                    )
                    .into());
                }
            }
            // As the reference does, subscribing creates the queue.
            api.queue_create(ctx, q, &Payload::Absent).await?;
            let options = c.body.get("options").cloned().unwrap_or_else(|| json!({}));
            let scope = Scope::new(ctx.project_id.as_str(), q);
            let id = conn.subscribe(scope, ttl, options, encoding)?;
            Ok((
                201,
                json!({"subscription_id": id, "message": format!("Subscription {q} created.")}),
            ))
        }
        Action::SubscriptionGet => {
            let id = str_field("subscription_id");
            if let Some(sub) = conn.subscription(&ctx.project_id, q, &id) {
                return Ok((200, sub.view(&id, conn.id())));
            }
            let sub = api.subscription_get(ctx, q, &id).await?;
            Ok((200, stored_subscription_view(&sub, now)))
        }
        Action::SubscriptionDelete => {
            let id = str_field("subscription_id");
            if conn.subscription(&ctx.project_id, q, &id).is_some() {
                conn.unsubscribe(&ctx.project_id, q, &id);
            } else {
                api.subscription_delete(ctx, q, &id).await?;
            }
            Ok((204, Value::from(format!("Subscription {id} removed."))))
        }
        Action::SubscriptionList => {
            let params = SubscriptionListParams {
                marker: c.str_field("marker").map(String::from),
                limit: c.int_field("limit"),
            };
            let listing = api.subscription_list(ctx, q, params).await?;
            let mut subs = conn.subscriptions_of(&ctx.project_id, q);
            subs.extend(
                listing
                    .subscriptions
                    .iter()
                    .map(|s| stored_subscription_view(s, now)),
            );
            Ok((200, json!({ "subscriptions": subs })))
        }
        Action::PoolList
        | Action::PoolCreate
        | Action::PoolUpdate
        | Action::PoolGet
        | Action::PoolDelete => Err(WsError::NotImplemented(
            "Pools are not available: this server does not implement pooling yet.",
        )),
        Action::FlavorList
        | Action::FlavorCreate
        | Action::FlavorUpdate
        | Action::FlavorGet
        | Action::FlavorDelete => Err(WsError::NotImplemented(
            "Flavors are not available: this server does not implement pooling yet.",
        )),
    }
}

/// A JSON value as a body, [`Payload::Absent`] when the field is missing.
fn payload_of_value(v: Option<&Value>) -> Payload {
    match v {
        None => Payload::Absent,
        Some(v) => to_payload(v),
    }
}

/// A stored subscription, as HTTP shows it.
fn stored_subscription_view(s: &Subscription, now: i64) -> Value {
    serde_json::to_value(crate::transport::http::render::subscription_view(s, now))
        .unwrap_or(Value::Null)
}

/// A subscription of this connection, as `subscription_get` shows it.
pub fn subscription_view(
    queue: &str,
    id: &str,
    conn_id: &str,
    ttl: Option<i64>,
    options: &Value,
    since: Instant,
) -> Value {
    json!({
        "id": id,
        "source": queue,
        "subscriber": format!("websocket:{conn_id}"),
        "ttl": ttl,
        "age": since.elapsed().as_secs(),
        "options": options,
        "confirmed": true,
    })
}
