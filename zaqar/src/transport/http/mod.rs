//! The HTTP v2 transport.
//!
//! One warp filter takes every request. The auth layer ([`crate::auth`])
//! runs first, as the reference's middleware does (with Keystone: every path
//! but `/`); then [`router::Endpoint`] parses the path, the reference's
//! request hooks run in its order (method, pre-signed URL, content type,
//! `Accept`, `Client-ID`, `X-Project-ID`, queue name, policy) and one
//! api-core call answers. `GET /metrics` ([`crate::metrics`]) is answered
//! before auth when `[metrics] enabled`. This module only translates: every rule
//! lives in [`crate::api`].

pub mod home;
pub mod query;
pub mod render;
pub mod router;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::Filter;

use crate::api::messages::{BulkDeleteOutcome, BulkDeleteParams, MessageListParams};
use crate::api::policy::Policy;
use crate::api::queues::QueueListParams;
use crate::api::subscriptions::SubscriptionListParams;
use crate::api::{validate, Api, Payload};
use crate::auth::signature::{comma_list, Signature};
use crate::auth::{AuthLayer, Caller, Credentials, TOKEN_HEADER};
use crate::context::RequestContext;
use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
use query::Query;
use render::{empty, json, json_with, Json};
use router::Endpoint;

/// What the HTTP transport needs to answer requests.
pub struct HttpState {
    /// The api core.
    pub api: Api,
    /// The policy enforcer.
    pub policy: Policy,
    /// Who requests act for (noauth or Keystone).
    pub auth: AuthLayer,
    /// Response counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// How long a request body may take to arrive (`[drivers:transport:wsgi]
    /// header_read_timeout`: a client that sends its head quickly and its
    /// body never would otherwise hold the connection forever).
    pub body_timeout: std::time::Duration,
}

/// The warp filter serving the whole v2 API.
pub fn routes(state: Arc<HttpState>) -> BoxedFilter<(Response,)> {
    let with_state = warp::any().map(move || state.clone());
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .and(with_state)
        .and_then(
            |method: Method,
             path: warp::path::FullPath,
             query: String,
             headers: HeaderMap,
             body,
             state| async move {
                Ok::<_, Infallible>(
                    handle(state, method, path.as_str(), &query, headers, body).await,
                )
            },
        )
        .boxed()
}

/// Answers one request, always with a response (errors rendered here).
async fn handle<S, B>(
    state: Arc<HttpState>,
    method: Method,
    path: &str,
    raw_query: &str,
    headers: HeaderMap,
    body: S,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: Buf,
{
    let started = Instant::now();
    let request_id = format!("req-{}", uuid::Uuid::new_v4());
    let mut response =
        if path == "/metrics" && method == Method::GET && state.api.config().metrics_enabled {
            metrics(&state)
        } else {
            let credentials = credentials(&headers);
            let answer = match state
                .auth
                .authenticate(&credentials, method.as_str(), path)
                .await
            {
                Ok(caller) => {
                    dispatch(
                        &state,
                        &method,
                        path,
                        raw_query,
                        &headers,
                        body,
                        &request_id,
                        &caller,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            answer.unwrap_or_else(|e| render::error(&e, &method))
        };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-openstack-request-id", v);
    }
    let status = response.status();
    state.metrics.record(status.as_u16());
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    if status.is_server_error() {
        tracing::warn!(request_id, %method, path, status = status.as_u16(), elapsed_ms, "request failed");
    } else {
        tracing::debug!(request_id, %method, path, status = status.as_u16(), elapsed_ms, "request");
    }
    response
}

/// `GET /metrics`.
fn metrics(state: &HttpState) -> Response {
    let mut r = Response::new(state.metrics.render(state.auth.validator()).into());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    r
}

/// The reference's request hooks, then the endpoint's handler.
#[allow(clippy::too_many_arguments)]
async fn dispatch<S, B>(
    state: &HttpState,
    method: &Method,
    path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    body: S,
    request_id: &str,
    caller: &Caller,
) -> ApiResult<Response>
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: Buf,
{
    let api = &state.api;
    let endpoint = Endpoint::parse(path).ok_or(ApiError::RouteNotFound)?;
    if endpoint == Endpoint::Health && !api.config().admin_mode {
        return Err(ApiError::RouteNotFound);
    }
    if !endpoint.allows(method) {
        return Err(ApiError::MethodNotAllowed(endpoint.allowed()));
    }
    let payload = read_body_within(headers, body, api.max_body_size(), state.body_timeout).await?;
    let content_type = header(headers, "content-type");
    if payload.len().is_some()
        && content_type.is_some_and(|c| c.eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    {
        return Err(ApiError::bad_request(
            "Invalid Content-Type",
            "Endpoint does not accept `application/x-www-form-urlencoded` content; currently supported media type \
             is `application/json`; specify proper client-side media type with the \"Content-Type\" header.",
        ));
    }
    if !accepts_json(header(headers, "accept")) {
        return Err(ApiError::NotAcceptable);
    }
    if endpoint == Endpoint::Versions {
        return Ok(json_with(StatusCode::MULTIPLE_CHOICES, &home::versions()));
    }
    let ctx = caller.context(
        header(headers, "client-id"),
        api.limits(),
        request_id.to_owned(),
    )?;
    if let Some(queue) = endpoint.queue() {
        validate::queue_identification(queue, &ctx.project_id)?;
    }
    if let Some(rule) = endpoint.policy_rule(method) {
        state.policy.enforce(rule, &ctx)?;
    }
    let query = Query::parse(raw_query);
    handle_endpoint(api, &ctx, method, endpoint, path, &query, headers, &payload).await
}

#[allow(clippy::too_many_arguments)]
async fn handle_endpoint(
    api: &Api,
    ctx: &RequestContext,
    method: &Method,
    endpoint: Endpoint,
    path: &str,
    query: &Query,
    headers: &HeaderMap,
    payload: &Payload,
) -> ApiResult<Response> {
    let now = api.now_ms();
    let m = method.as_str();
    match (endpoint, m) {
        (Endpoint::Home, _) => Ok(render::home(api.config().admin_mode)),
        (Endpoint::Ping, "HEAD") => Ok(empty(StatusCode::NO_CONTENT)),
        (Endpoint::Ping, _) => Ok(empty(if api.ping().await {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        })),
        (Endpoint::Health, _) => Ok(json(&api.health().await)),
        (Endpoint::Queues, _) => {
            let params = QueueListParams {
                marker: query.get("marker").map(String::from),
                limit: query.int("limit")?,
                detailed: query.bool("detailed")?.unwrap_or(false),
                with_count: query.bool("with_count")?.unwrap_or(false),
            };
            let listing = api.queue_list(ctx, params).await?;
            Ok(render::queue_listing(path, query, &listing))
        }
        (Endpoint::Queue(q), "PUT") => {
            let created = api.queue_create(ctx, &q, payload).await?;
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::NO_CONTENT
            };
            Ok(render::with_location(empty(status), path))
        }
        (Endpoint::Queue(q), "GET") => Ok(json(&api.queue_get(ctx, &q).await?)),
        (Endpoint::Queue(q), "PATCH") => {
            let metadata = api
                .queue_update(ctx, &q, header(headers, "content-type"), payload)
                .await?;
            Ok(json(&metadata))
        }
        (Endpoint::Queue(q), _) => {
            api.queue_delete(ctx, &q).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (Endpoint::QueueStats(q), _) => {
            let stats = api.queue_stats(ctx, &q).await?;
            Ok(render::stats(&q, &stats, now))
        }
        (Endpoint::QueuePurge(q), _) => {
            api.queue_purge(ctx, &q, payload).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (Endpoint::Messages(q), "POST") => {
            let ids = api.messages_post(ctx, &q, payload).await?;
            Ok(render::posted(path, &ids))
        }
        (Endpoint::Messages(q), "GET") => match query.list("ids") {
            Some(ids) => {
                let messages = api.messages_get_by_ids(ctx, &q, &ids).await?;
                Ok(json(&Json::from(render::MessagesOnly {
                    messages: messages
                        .iter()
                        .map(|m| render::message_view(&q, m, None, now))
                        .collect(),
                })))
            }
            None => {
                let params = MessageListParams {
                    marker: query.get("marker").map(String::from),
                    limit: query.int("limit")?,
                    echo: query.bool("echo")?,
                    include_claimed: query.bool("include_claimed")?,
                    include_delayed: query.bool("include_delayed")?,
                };
                let listing = api.messages_list(ctx, &q, params).await?;
                Ok(render::message_listing(path, &q, query, &listing, now))
            }
        },
        (Endpoint::Messages(q), _) => {
            let params = BulkDeleteParams {
                ids: query.list("ids"),
                claim_ids: query.list("claim_ids"),
                pop: query.int("pop")?,
            };
            match api.messages_delete_bulk(ctx, &q, params).await? {
                BulkDeleteOutcome::Deleted => Ok(empty(StatusCode::NO_CONTENT)),
                BulkDeleteOutcome::Popped(messages) => Ok(render::popped(&messages, now)),
            }
        }
        (Endpoint::Message(q, id), "GET") => {
            let message = api.message_get(ctx, &q, &id).await?;
            Ok(json(&render::message_view(&q, &message, None, now)))
        }
        (Endpoint::Message(q, id), _) => {
            api.message_delete(ctx, &q, &id, query.get("claim_id"))
                .await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (Endpoint::Claims(q), _) => match api
            .claim_create(ctx, &q, query.int("limit")?, payload)
            .await?
        {
            None => Ok(empty(StatusCode::NO_CONTENT)),
            Some(claim) => Ok(render::claim_created(path, &q, &claim, now)),
        },
        (Endpoint::Claim(q, id), "GET") => {
            let claim = api.claim_get(ctx, &q, &id).await?;
            Ok(render::claim(path, &q, &claim, now))
        }
        (Endpoint::Claim(q, id), "PATCH") => {
            api.claim_update(ctx, &q, &id, payload).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (Endpoint::Claim(q, id), _) => {
            api.claim_delete(ctx, &q, &id).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (Endpoint::QueueShare(q), _) => Ok(json(&api.queue_share(ctx, &q, payload)?)),
        (Endpoint::Subscriptions(q), "POST") => {
            match api.subscription_create(ctx, &q, payload).await {
                Ok(id) => Ok(render::subscription_created(path, &id)),
                Err(e @ ApiError::Conflict(_)) => {
                    Ok(render::with_location(render::error(&e, method), path))
                }
                Err(e) => Err(e),
            }
        }
        (Endpoint::Subscriptions(q), _) => {
            let params = SubscriptionListParams {
                marker: query.get("marker").map(String::from),
                limit: query.int("limit")?,
            };
            let listing = api.subscription_list(ctx, &q, params).await?;
            Ok(render::subscription_listing(path, query, &listing, now))
        }
        (Endpoint::Subscription(q, id), "GET") => {
            let subscription = api.subscription_get(ctx, &q, &id).await?;
            Ok(json(&render::subscription_view(&subscription, now)))
        }
        (Endpoint::Subscription(q, id), "PATCH") => {
            api.subscription_update(ctx, &q, &id, payload).await?;
            Ok(render::with_location(empty(StatusCode::NO_CONTENT), path))
        }
        (Endpoint::Subscription(q, id), _) => {
            api.subscription_delete(ctx, &q, &id).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (Endpoint::SubscriptionConfirm(q, id), _) => {
            api.subscription_confirm(ctx, &q, &id, payload).await?;
            Ok(render::with_location(empty(StatusCode::NO_CONTENT), path))
        }
        (Endpoint::Versions, _) => Ok(json_with(StatusCode::MULTIPLE_CHOICES, &home::versions())),
    }
}

/// What the request presents to the auth layer. Values that are not
/// visible ASCII are read lossily: a garbled token or signature is refused
/// by the auth layer, never mistaken for an absent one.
fn credentials(headers: &HeaderMap) -> Credentials {
    let text = |name: &str| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    Credentials {
        token: text(TOKEN_HEADER),
        signature: text("url-signature").map(|signature| Signature {
            signature,
            expires: text("url-expires"),
            methods: text("url-methods").map_or_else(Vec::new, |m| comma_list(&m)),
            paths: text("url-paths").map_or_else(Vec::new, |p| comma_list(&p)),
        }),
        project: text("x-project-id"),
        user_id: text("x-user-id"),
        roles: text("x-roles"),
    }
}

/// A header's value as text (`None` when absent or not visible ASCII).
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether the `Accept` header admits `application/json` (a missing one does).
fn accepts_json(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return true;
    };
    if accept.trim().is_empty() {
        return true;
    }
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q_zero = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .is_some_and(|q| q.trim().parse::<f32>().map(|q| q <= 0.0).unwrap_or(false))
        });
        !q_zero && matches!(media.as_str(), "*/*" | "application/*" | "application/json")
    })
}

fn unreadable_body() -> ApiError {
    ApiError::invalid_body("Request body could not be read.")
}

/// Reads the body up to `cap` bytes within `deadline`; a longer one is
/// reported by length only.
async fn read_body_within<S, B>(
    headers: &HeaderMap,
    body: S,
    cap: u64,
    deadline: std::time::Duration,
) -> ApiResult<Payload>
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: Buf,
{
    tokio::time::timeout(deadline, read_body(headers, body, cap))
        .await
        .map_err(|_| unreadable_body())?
}

/// Reads the body up to `cap` bytes; a longer one is reported by length only.
async fn read_body<S, B>(headers: &HeaderMap, mut body: S, cap: u64) -> ApiResult<Payload>
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: Buf,
{
    let declared = header(headers, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = declared {
        if n > cap {
            return Ok(Payload::Oversized(n));
        }
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = body.next().await {
        // A malformed chunked encoding or a connection cut mid-body: the
        // client's fault, a 400 (never a 503).
        let mut chunk = chunk.map_err(|_| unreadable_body())?;
        if buf.len() as u64 + chunk.remaining() as u64 > cap {
            return Ok(Payload::Oversized(
                buf.len() as u64 + chunk.remaining() as u64,
            ));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            buf.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    if declared.is_none() && buf.is_empty() {
        return Ok(Payload::Absent);
    }
    Ok(Payload::Bytes(Bytes::from(buf)))
}
