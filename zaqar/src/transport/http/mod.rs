//! The HTTP v2 transport.
//!
//! One warp filter takes every request. The auth layer ([`crate::auth`])
//! runs first, as the reference's middleware does (with Keystone: every path
//! but `/` and `/v2/openapi.json`, the operations whose kind
//! [`is_open`](OperationKind::is_open)); then [`router::Endpoint`] parses the path, the reference's
//! request hooks run in its order (method, pre-signed URL, content type,
//! `Accept`, `Client-ID`, `X-Project-ID`, queue name, policy) and one
//! api-core call answers. `GET /metrics` ([`crate::metrics`]) is answered
//! before auth when `[metrics] enabled`. This module only translates: every rule
//! lives in [`crate::api`].

pub mod cors;
pub mod healthcheck;
pub mod query;
pub mod render;
pub mod router;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use percent_encoding::percent_decode_str;
use tracing::Instrument;
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::Filter;

use crate::api::execute::Request;
use crate::api::operation::OperationKind;
use crate::api::{Api, Payload};
use crate::auth::signature::{comma_list, Signature};
use crate::auth::{AuthLayer, Caller, Credentials};
use crate::error::{ApiError, ApiResult};
use query::Query;
use router::Endpoint;

/// What the HTTP transport needs to answer requests.
pub struct HttpState {
    /// The api core.
    pub api: Api,
    /// Who requests act for (noauth or Keystone).
    pub auth: AuthLayer,
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
             state: Arc<HttpState>| async move {
                let deadline = state.body_timeout;
                let declared =
                    header(&headers, &CONTENT_LENGTH).and_then(|v| v.trim().parse::<u64>().ok());
                let mut body = Tracked {
                    inner: body,
                    read: false,
                };
                // The path as the reference's WSGI server hands it on:
                // percent-decoded, so `%41bc` names the queue `Abc` and a
                // `%2F` is a `/` that routes as one.
                let path = percent_decode_str(path.as_str()).decode_utf8_lossy();
                let response = handle(state, method, &path, &query, headers, &mut body).await;
                // An answer given before the body was read (a 401, 404, 405,
                // ...): read it first, or hyper closes the connection when
                // the body has not fully arrived yet, and a client reusing it
                // gets a reset instead of its next answer. (A body the
                // handler read, drained or gave up on is left as it is.)
                if !body.read {
                    let _ = tokio::time::timeout(deadline, drain(&mut body, declared.unwrap_or(0)))
                        .await;
                }
                Ok::<_, Infallible>(response)
            },
        )
        .boxed()
}

/// A request body that remembers whether the handler read from it.
struct Tracked<S> {
    inner: S,
    read: bool,
}

impl<S: Stream + Unpin> Stream for Tracked<S> {
    type Item = S::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        self.read = true;
        std::pin::Pin::new(&mut self.inner).poll_next(cx)
    }
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
    let request_id = ["req-", &crate::storage::new_id()].concat();
    // Every log line of this request (api core, storage, stages) carries
    // its id, and the caller's own id when it sent one (a service calling
    // on behalf of another request), as oslo's global_request_id.
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        global_request_id = tracing::field::Empty,
    );
    if let Some(global) = global_request_id(&headers) {
        span.record("global_request_id", global);
    }
    // The operation, once the request parsed into one: the latency
    // histogram's label ("none" for a request refused before that).
    let mut operation: Option<OperationKind> = None;
    let preflight = cors::is_preflight(&state.api.config().cors, &method, &headers);
    let mut response = async {
        let config = state.api.config();
        if path == config.healthcheck.path && (method == Method::GET || method == Method::HEAD) {
            healthcheck::answer(&config.healthcheck, config.http.port, &method, &headers)
        } else if preflight {
            cors::preflight(&config.cors, &headers)
        } else if path == "/metrics" && method == Method::GET && config.metrics_enabled {
            metrics(&state).await
        } else {
            let credentials = credentials(&headers);
            // The open documents (versions, OpenAPI) need no credentials:
            // the auth layer is not asked, so a bad or absent token or
            // signature cannot hide them.
            let open = Endpoint::parse(path).is_some_and(|e| e.kind().is_open());
            let caller = if open {
                Ok(Caller::default())
            } else {
                state
                    .auth
                    .authenticate(&credentials, method.as_str(), path)
                    .await
            };
            let answer = match caller {
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
                        &mut operation,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            answer.unwrap_or_else(|e| render::error(&e, &method))
        }
    }
    .instrument(span.clone())
    .await;
    let _in_span = span.enter();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-openstack-request-id", v);
    }
    if !preflight {
        cors::decorate(&state.api.config().cors, &headers, &mut response);
    }
    let status = response.status();
    let took = started.elapsed();
    let m = crate::metrics::global();
    m.record(status.as_u16());
    m.request(
        "http",
        operation.map_or("none", OperationKind::name),
        status.as_u16(),
        took,
    );
    let elapsed_ms = took.as_secs_f64() * 1000.0;
    // One line per request, as the reference's WSGI server logs it (the
    // span adds the request id); target zaqar::access, so that
    // `default_log_levels = zaqar.access=WARN` silences it.
    if status.is_server_error() {
        tracing::warn!(target: crate::logging::ACCESS_TARGET, "\"{method} {path}\" status: {} time: {:.4}", status.as_u16(), elapsed_ms / 1000.0);
    } else {
        tracing::info!(target: crate::logging::ACCESS_TARGET, "\"{method} {path}\" status: {} time: {:.4}", status.as_u16(), elapsed_ms / 1000.0);
    }
    response
}

/// The `X-OpenStack-Request-ID` a caller sent, when it has the form of one
/// (`req-` and a UUID): logged as the global request id.
fn global_request_id(headers: &HeaderMap) -> Option<&str> {
    let id = header(headers, &names::REQUEST_ID)?;
    let uuid = id.strip_prefix("req-")?;
    uuid::Uuid::try_parse(uuid).is_ok().then_some(id)
}

/// `GET /metrics`: the outbox gauges are read now (bounded by a second, so
/// a store that does not answer does not hold the scrape).
async fn metrics(state: &HttpState) -> Response {
    let m = crate::metrics::global();
    if let Some(outbox) = state.api.storage().outbox.as_ref() {
        let read = async {
            let depth = outbox.depth().await.ok().flatten();
            let now = state.api.now_ms();
            let overdue = match outbox.next_due_ms().await {
                Ok(Some(due)) if due < now => {
                    std::time::Duration::from_millis(u64::try_from(now - due).unwrap_or(0))
                }
                _ => std::time::Duration::ZERO,
            };
            m.outbox(depth, overdue);
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), read).await;
    }
    let mut r = Response::new(m.render(state.auth.validator()).into());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    r
}

/// The HTTP-only checks (route, method, body, media types), then the
/// operation through the api core, then its rendering.
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
    operation_kind: &mut Option<OperationKind>,
) -> ApiResult<Response>
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: Buf,
{
    let api = &state.api;
    let endpoint = Endpoint::parse(path).ok_or(ApiError::RouteNotFound)?;
    if !api.serves(endpoint.kind()) {
        return Err(ApiError::RouteNotFound);
    }
    if method == Method::OPTIONS {
        return Ok(render::options(endpoint.allowed()));
    }
    if !endpoint.allows(method) {
        return Err(ApiError::MethodNotAllowed(endpoint.allowed()));
    }
    let payload = read_body_within(headers, body, api.max_body_size(), state.body_timeout).await?;
    let content_type = header(headers, &CONTENT_TYPE);
    if payload.len().is_some()
        && content_type.is_some_and(|c| c.eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    {
        return Err(ApiError::bad_request(
            "Invalid Content-Type",
            "Endpoint does not accept `application/x-www-form-urlencoded` content; currently supported media type \
             is `application/json`; specify proper client-side media type with the \"Content-Type\" header.",
        ));
    }
    if !accepts_json(header(headers, &ACCEPT)) {
        return Err(ApiError::NotAcceptable);
    }
    let query = Query::parse(raw_query);
    let request = Request {
        caller,
        client_id: header(headers, &names::CLIENT_ID),
        request_id,
        connection: None,
    };
    let (queue, topic) = endpoint.queue();
    let operation = match endpoint.operation(method, &query, content_type, payload) {
        Ok(operation) => operation,
        // A parameter the operation could not read: the reference checks
        // the ids and the queue's name first, and answers for them.
        Err(e) => {
            return Err(api
                .identified(&request, queue.as_deref(), topic)
                .err()
                .unwrap_or(e))
        }
    };
    let kind = operation.kind();
    *operation_kind = Some(kind);
    match api.execute(request, operation).await {
        Ok(reply) => Ok(render::reply(reply, path, &query, api.now_ms())),
        // A duplicate subscription answers its 409 with the collection's
        // Location, and a flavor without pools its 400 with the flavor's, as
        // the reference does.
        Err(e @ ApiError::Conflict(_)) if kind == OperationKind::SubscriptionCreate => {
            Ok(render::with_location(render::error(&e, method), path))
        }
        Err(e @ ApiError::BadRequest { .. })
            if matches!(
                kind,
                OperationKind::FlavorCreate | OperationKind::FlavorUpdate
            ) && e.title() == "Unable to create" =>
        {
            Ok(render::with_location(render::error(&e, method), path))
        }
        Err(e) => Err(e),
    }
}

/// What the request presents to the auth layer. Values that are not
/// visible ASCII are read lossily: a garbled token or signature is refused
/// by the auth layer, never mistaken for an absent one.
fn credentials(headers: &HeaderMap) -> Credentials {
    let text = |name: &HeaderName| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    Credentials {
        token: text(&names::AUTH_TOKEN),
        signature: text(&names::URL_SIGNATURE).map(|signature| Signature {
            signature,
            expires: text(&names::URL_EXPIRES),
            methods: text(&names::URL_METHODS).map_or_else(Vec::new, |m| comma_list(&m)),
            paths: text(&names::URL_PATHS).map_or_else(Vec::new, |p| comma_list(&p)),
        }),
        project: text(&names::PROJECT_ID),
        user_id: text(&names::USER_ID),
        roles: text(&names::ROLES),
    }
}

/// The request headers of our own that every request looks up, as names
/// made once: a lookup by `&str` parses the name on each call.
mod names {
    use http::HeaderName;

    /// The Keystone token ([`crate::auth::TOKEN_HEADER`]).
    pub const AUTH_TOKEN: HeaderName = HeaderName::from_static(crate::auth::TOKEN_HEADER);
    /// A signed URL's signature.
    pub const URL_SIGNATURE: HeaderName = HeaderName::from_static("url-signature");
    /// A signed URL's expiry.
    pub const URL_EXPIRES: HeaderName = HeaderName::from_static("url-expires");
    /// A signed URL's methods.
    pub const URL_METHODS: HeaderName = HeaderName::from_static("url-methods");
    /// A signed URL's paths.
    pub const URL_PATHS: HeaderName = HeaderName::from_static("url-paths");
    /// The project, without Keystone.
    pub const PROJECT_ID: HeaderName = HeaderName::from_static("x-project-id");
    /// The user, without Keystone.
    pub const USER_ID: HeaderName = HeaderName::from_static("x-user-id");
    /// The roles, without Keystone.
    pub const ROLES: HeaderName = HeaderName::from_static("x-roles");
    /// The caller's global request id.
    pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-openstack-request-id");
    /// The client's id.
    pub const CLIENT_ID: HeaderName = HeaderName::from_static("client-id");
}

/// A header's value as text (`None` when absent or not visible ASCII).
fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
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
    let declared = header(headers, &CONTENT_LENGTH).and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = declared {
        if n > cap {
            drain(body, n).await;
            return Ok(Payload::Oversized(n));
        }
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = body.next().await {
        // A malformed chunked encoding or a connection cut mid-body: the
        // client's fault, a 400 (never a 503).
        let mut chunk = chunk.map_err(|_| unreadable_body())?;
        if buf.len() as u64 + chunk.remaining() as u64 > cap {
            let seen = buf.len() as u64 + chunk.remaining() as u64;
            drain(body, seen).await;
            return Ok(Payload::Oversized(seen));
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

/// The most of an oversized body read (and dropped) so that the answer
/// reaches the client: a connection closed with unread request bytes is
/// reset by the kernel, which can destroy the answer in flight.
const DRAIN_LIMIT: u64 = 4 * 1024 * 1024;

/// Reads and drops the rest of a body already `seen` bytes long (or
/// declared so), when it is within [`DRAIN_LIMIT`]; a longer one is left
/// unread (the connection then closes after the answer). The caller's body
/// deadline bounds the time.
async fn drain<S, B>(mut body: S, seen: u64)
where
    S: Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: Buf,
{
    if seen > DRAIN_LIMIT {
        return;
    }
    let mut read = 0u64;
    while let Some(Ok(chunk)) = body.next().await {
        read += chunk.remaining() as u64;
        if read > DRAIN_LIMIT {
            return;
        }
    }
}
