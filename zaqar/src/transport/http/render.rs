//! Responses of the HTTP transport: bodies, hrefs, headers and error bodies
//! exactly as the reference's clients expect them.

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::{Method, StatusCode};
use serde::Serialize;
use serde_json::value::RawValue;
use warp::reply::Response;

use super::query::{to_query_string, Query};
use crate::api::messages::MessageListing;
use crate::api::queues::QueueListing;
use crate::api::reply::Reply;
use crate::api::subscriptions::SubscriptionListing;
use crate::api::views::{self, SubscriptionView};
use crate::error::ApiError;
use crate::storage::{ClaimInfo, Message, NewClaim, QueueStats};

/// A body serialised as JSON (a thin wrapper so any `Serialize` can be rendered).
pub struct Json<T>(pub T);

impl<T> From<T> for Json<T> {
    fn from(v: T) -> Self {
        Json(v)
    }
}

impl<T: Serialize> Serialize for Json<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// A response with no body.
pub fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Bytes::new().into());
    *r.status_mut() = status;
    r
}

/// A 201 without a body, typed as JSON as the reference's are.
fn created_empty() -> Response {
    let mut r = empty(StatusCode::CREATED);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The answer to `OPTIONS` on a route: 200, no body, the methods it
/// answers in `Allow`.
pub fn options(allowed: &[&str]) -> Response {
    let mut r = empty(StatusCode::OK);
    if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
        r.headers_mut().insert(ALLOW, v);
    }
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A 200 JSON response.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Response {
    json_with(StatusCode::OK, value)
}

/// A JSON response with the given status.
pub fn json_with<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut r = Response::new(Bytes::from(body).into());
            *r.status_mut() = status;
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        Err(e) => error(&ApiError::Internal(e.to_string()), &Method::GET),
    }
}

/// Adds a `Location` header.
pub fn with_location(mut r: Response, location: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

/// Renders an error: status, `{"title", "description"}`, and the headers
/// some statuses carry.
pub fn error(e: &ApiError, method: &Method) -> Response {
    let mut body = e.body();
    if let (ApiError::NotAcceptable, serde_json::Value::Object(map)) = (e, &mut body) {
        map.insert(
            "link".into(),
            serde_json::json!({
                "text": "14.1 Accept, Hypertext Transfer Protocol -- HTTP/1.1",
                "href": "http://www.w3.org/Protocols/rfc2616/rfc2616-sec14.html",
                "rel": "help",
            }),
        );
    }
    let mut r = if method == Method::HEAD {
        let mut r = empty(e.status());
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    } else {
        json_with(e.status(), &body)
    };
    if let ApiError::MethodNotAllowed(allowed) = e {
        if let Ok(v) = HeaderValue::from_str(&format!("{}, OPTIONS", allowed.join(", "))) {
            r.headers_mut().insert(ALLOW, v);
        }
    }
    if let ApiError::Unauthorized { www_authenticate } = e {
        if let Ok(v) = HeaderValue::from_str(www_authenticate) {
            r.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
        }
    }
    if let ApiError::Internal(detail) = e {
        tracing::error!(%detail, "internal error");
    }
    r
}

/// Renders the reply of the request for `path` (with `query`), as of
/// `now` (ms).
pub fn reply(reply: Reply, path: &str, query: &Query, now: i64) -> Response {
    let queue = resource_of(path);
    match reply {
        Reply::Versions => json_with(StatusCode::MULTIPLE_CHOICES, &crate::api::home::versions()),
        Reply::HomeDoc { admin_mode } => home(admin_mode),
        Reply::OpenApi(doc) => json(&doc),
        Reply::Pong { alive: true } => empty(StatusCode::NO_CONTENT),
        Reply::Pong { alive: false } => empty(StatusCode::SERVICE_UNAVAILABLE),
        Reply::Health(health) => json(&health),
        Reply::Queues(listing) => queue_listing(path, query, &listing, "queues"),
        Reply::Topics(listing) => queue_listing(path, query, &listing, "topics"),
        Reply::QueueCreated { created: true } => with_location(created_empty(), path),
        Reply::QueueCreated { created: false } => {
            with_location(empty(StatusCode::NO_CONTENT), path)
        }
        Reply::QueueMetadata { shown, .. } => json(&shown),
        Reply::QueueStats { stats: stats_, .. } => stats(queue, &stats_, now),
        Reply::SignedUrl(signed) => json(&signed),
        Reply::MessagesPosted(ids) => posted(path, &ids),
        Reply::MessagePage(listing) => message_listing(path, queue, query, &listing, now),
        Reply::Messages(messages) => json(&MessagesOnly {
            messages: messages
                .iter()
                .map(|m| message_view(queue, m, None, now))
                .collect(),
        }),
        Reply::MessagesPopped(messages) => popped(&messages, now),
        Reply::Message(m) => json(&message_view(queue, &m, None, now)),
        Reply::ClaimCreated(None) => empty(StatusCode::NO_CONTENT),
        Reply::ClaimCreated(Some(new)) => claim_created(path, queue, &new, now),
        Reply::Claim(info) => claim(path, queue, &info, now),
        Reply::Subscriptions(listing) => subscription_listing(path, query, &listing, now),
        Reply::SubscriptionCreated { id } => subscription_created(path, &id),
        Reply::Subscription(s) => json(&SubscriptionView::of(&s, now)),
        Reply::SubscriptionUpdated | Reply::SubscriptionConfirmed => {
            with_location(empty(StatusCode::NO_CONTENT), path)
        }
        Reply::Pools(listing) => admin_listing(
            path,
            query,
            "pools",
            &listing.next_marker,
            listing
                .pools
                .iter()
                .map(|p| (p.name.as_str(), views::PoolView::of(p, listing.detailed))),
        ),
        Reply::Pool { pool, detailed } => {
            json(&with_href(views::PoolView::of(&pool, detailed), path))
        }
        Reply::Flavors(listing) => admin_listing(
            path,
            query,
            "flavors",
            &listing.next_marker,
            listing.flavors.iter().map(|f| {
                (
                    f.flavor.name.as_str(),
                    views::FlavorView::listed(f, listing.detailed),
                )
            }),
        ),
        Reply::Flavor(f) => json(&with_href(views::FlavorView::full(&f), path)),
        Reply::PoolCreated | Reply::FlavorCreated => with_location(created_empty(), path),
        Reply::PoolDeleted | Reply::FlavorDeleted => empty(StatusCode::NO_CONTENT),
        Reply::QueueDeleted
        | Reply::QueuePurged
        | Reply::MessagesDeleted
        | Reply::MessageDeleted
        | Reply::ClaimUpdated
        | Reply::ClaimDeleted
        | Reply::SubscriptionDeleted => empty(StatusCode::NO_CONTENT),
    }
}

/// A view with the `href` of its resource.
#[derive(Serialize)]
struct WithHref<T> {
    #[serde(flatten)]
    view: T,
    href: String,
}

fn with_href<T>(view: T, href: &str) -> WithHref<T> {
    WithHref {
        view,
        href: href.to_owned(),
    }
}

/// `GET /v2/pools` and `/v2/flavors`: the entries with their hrefs, and a
/// `next` link (none for an empty page), as the reference renders them.
fn admin_listing<'a, T: Serialize + 'a>(
    path: &str,
    query: &Query,
    key: &'static str,
    next_marker: &str,
    entries: impl Iterator<Item = (&'a str, T)>,
) -> Response {
    let entries: Vec<WithHref<T>> = entries
        .map(|(name, view)| with_href(view, &format!("{path}/{name}")))
        .collect();
    let mut links = Vec::new();
    if !entries.is_empty() {
        let mut pairs = supplied(query, &["marker", "limit", "detailed"]);
        set_marker(&mut pairs, next_marker);
        links.push(Link {
            rel: "next",
            href: [path, &to_query_string(&pairs)].concat(),
        });
    }
    let mut body = serde_json::Map::new();
    body.insert(
        key.into(),
        serde_json::to_value(entries).unwrap_or_default(),
    );
    body.insert(
        "links".into(),
        serde_json::to_value(links).unwrap_or_default(),
    );
    json(&body)
}

/// The queue or topic of a `/v2/queues/{q}/...` or `/v2/topics/{t}/...`
/// path, as the path of that resource (`""` for other paths): message
/// hrefs are built on it.
fn resource_of(path: &str) -> &str {
    for collection in ["/v2/queues/", "/v2/topics/"] {
        if let Some(rest) = path.strip_prefix(collection) {
            let name = rest.split('/').next().unwrap_or("");
            return &path[..collection.len() + name.len()];
        }
    }
    ""
}

/// `GET /v2/`.
pub fn home(admin_mode: bool) -> Response {
    let body =
        serde_json::to_string_pretty(&crate::api::home::document(admin_mode)).unwrap_or_default();
    let mut r = Response::new(Bytes::from(body).into());
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json-home"),
    );
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=86400"));
    r
}

/// A message as the HTTP API shows it: the common view plus its href.
pub struct MessageView<'a> {
    message: views::MessageView<'a>,
    href: String,
}

impl Serialize for MessageView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("MessageView", views::MessageView::FIELDS + 1)?;
        self.message.write_fields(&mut out)?;
        out.serialize_field("href", &self.href)?;
        out.end()
    }
}

/// The view of `m` in `queue`; `claim_id` overrides the message's own claim
/// (claim responses name the new claim).
pub fn message_view<'a>(
    queue: &str,
    m: &'a Message,
    claim_id: Option<&str>,
    now: i64,
) -> MessageView<'a> {
    let mut href = [queue, "/messages/", &m.id].concat();
    if let Some(cid) = claim_id.or(m.claim_id.as_deref()) {
        href.push_str("?claim_id=");
        href.push_str(cid);
    }
    MessageView {
        message: views::MessageView::of(m, now),
        href,
    }
}

/// `{"messages": [...]}`.
#[derive(Serialize)]
pub struct MessagesOnly<'a> {
    /// The messages.
    pub messages: Vec<MessageView<'a>>,
}

#[derive(Serialize)]
struct Link {
    rel: &'static str,
    href: String,
}

/// `GET /v2/queues` (`key`: `queues`) and `GET /v2/topics` (`topics`).
pub fn queue_listing(path: &str, query: &Query, listing: &QueueListing, key: &str) -> Response {
    #[derive(Serialize)]
    struct Entry<'a> {
        name: &'a str,
        href: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        metadata: Option<crate::storage::Metadata>,
    }
    #[derive(Serialize)]
    struct Links {
        links: Vec<Link>,
        #[serde(skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
    }
    let queues: Vec<Entry> = listing
        .queues
        .iter()
        .map(|q| Entry {
            name: &q.name,
            href: [path, "/", &q.name].concat(),
            metadata: q.metadata.as_ref().map(|m| listing.shown(m)),
        })
        .collect();
    let mut links = Vec::new();
    if !queues.is_empty() {
        let mut pairs = supplied(
            query,
            &["marker", "limit", "detailed", "name", "with_count"],
        );
        set_marker(&mut pairs, &listing.next_marker);
        links.push(Link {
            rel: "next",
            href: [path, &to_query_string(&pairs)].concat(),
        });
    }
    let mut body = serde_json::Map::new();
    body.insert(
        key.to_owned(),
        serde_json::to_value(&queues).unwrap_or_default(),
    );
    if let Ok(serde_json::Value::Object(rest)) = serde_json::to_value(Links {
        links,
        count: listing.count.filter(|&c| c > 0),
    }) {
        body.extend(rest);
    }
    json(&body)
}

/// The supplied parameters among `names`, in that order, normalised as the
/// reference echoes them (booleans as `true`/`false`).
fn supplied<'a>(query: &Query, names: &[&'a str]) -> Vec<(&'a str, String)> {
    let mut pairs = Vec::new();
    for &name in names {
        let Some(value) = query.get(name) else {
            continue;
        };
        let value = match query.bool(name) {
            Ok(Some(b)) if !matches!(name, "marker" | "limit" | "name") => b.to_string(),
            _ => value.to_owned(),
        };
        pairs.push((name, value));
    }
    pairs
}

fn set_marker(pairs: &mut Vec<(&str, String)>, marker: &str) {
    match pairs.iter_mut().find(|(k, _)| *k == "marker") {
        Some(p) => p.1 = marker.to_owned(),
        None => pairs.push(("marker", marker.to_owned())),
    }
}

/// `GET /v2/queues/{q}/messages`.
pub fn message_listing(
    path: &str,
    queue: &str,
    query: &Query,
    listing: &MessageListing,
    now: i64,
) -> Response {
    #[derive(Serialize)]
    struct Body<'a> {
        messages: Vec<MessageView<'a>>,
        links: Vec<Link>,
    }
    let messages: Vec<MessageView> = listing
        .messages
        .iter()
        .map(|m| message_view(queue, m, None, now))
        .collect();
    let mut links = Vec::new();
    if let (false, Some(marker)) = (messages.is_empty(), &listing.next_marker) {
        let mut pairs = supplied(
            query,
            &[
                "marker",
                "limit",
                "echo",
                "include_claimed",
                "include_delayed",
            ],
        );
        if listing.include_delayed_forced {
            match pairs.iter_mut().find(|(k, _)| *k == "include_delayed") {
                Some(p) => p.1 = "true".into(),
                None => pairs.push(("include_delayed", "true".into())),
            }
        }
        set_marker(&mut pairs, marker);
        links.push(Link {
            rel: "next",
            href: [path, &to_query_string(&pairs)].concat(),
        });
    }
    json(&Body { messages, links })
}

/// `POST /v2/queues/{q}/messages`: 201, Location and the new hrefs.
pub fn posted(path: &str, ids: &[String]) -> Response {
    #[derive(Serialize)]
    struct Body {
        resources: Vec<String>,
    }
    // Concatenated, not formatted: this is every post's answer.
    let resources = ids.iter().map(|id| [path, "/", id].concat()).collect();
    let r = json_with(StatusCode::CREATED, &Body { resources });
    let listed = [path, "?ids=", &ids.join(",")].concat();
    // A bulk post of thousands of messages would make a header clients
    // refuse (Python's http.client stops at 64 KiB): past the bound the
    // Location is the collection itself (the ids are in the body).
    if listed.len() <= MAX_LOCATION_LEN {
        with_location(r, &listed)
    } else {
        with_location(r, path)
    }
}

/// Longest `Location` a post answers with (8 KiB: what proxies and clients
/// accept for one header line).
pub const MAX_LOCATION_LEN: usize = 8192;

/// `DELETE /v2/queues/{q}/messages?pop=N`: the popped messages, no hrefs.
pub fn popped(messages: &[Message], now: i64) -> Response {
    #[derive(Serialize)]
    struct Popped<'a> {
        id: &'a str,
        age: i64,
        ttl: i64,
        body: &'a RawValue,
        claim_id: Option<&'a str>,
        claim_count: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        checksum: Option<&'a str>,
    }
    #[derive(Serialize)]
    struct Body<'a> {
        messages: Vec<Popped<'a>>,
    }
    let messages = messages
        .iter()
        .map(|m| Popped {
            id: &m.id,
            age: m.age(now),
            ttl: m.ttl,
            body: &m.body,
            claim_id: None,
            claim_count: m.claim_count,
            checksum: m.checksum.as_deref(),
        })
        .collect();
    json(&Body { messages })
}

/// `GET /v2/queues/{q}/stats`.
pub fn stats(queue: &str, s: &QueueStats, now: i64) -> Response {
    #[derive(Serialize)]
    struct Stamp {
        #[serde(flatten)]
        stamp: views::StampView,
        href: String,
    }
    json(&views::StatsView::of(s, |m| Stamp {
        stamp: views::StampView::of(m, now),
        href: [queue, "/messages/", &m.id].concat(),
    }))
}

/// `POST /v2/queues/{q}/claims`: 201, Location and the claimed messages.
pub fn claim_created(path: &str, queue: &str, claim: &NewClaim, now: i64) -> Response {
    let body = MessagesOnly {
        messages: claim
            .messages
            .iter()
            .map(|m| message_view(queue, m, Some(&claim.id), now))
            .collect(),
    };
    with_location(
        json_with(StatusCode::CREATED, &body),
        &format!("{path}/{}", claim.id),
    )
}

/// `GET /v2/queues/{q}/claims/{id}`.
pub fn claim(path: &str, queue: &str, claim: &ClaimInfo, now: i64) -> Response {
    #[derive(Serialize)]
    struct Body<'a> {
        age: i64,
        ttl: i64,
        messages: Vec<MessageView<'a>>,
        href: &'a str,
    }
    json(&Body {
        age: ((now - claim.updated_ms) / 1000).max(0),
        ttl: claim.ttl,
        messages: claim
            .messages
            .iter()
            .map(|m| message_view(queue, m, Some(&claim.id), now))
            .collect(),
        href: path,
    })
}

/// `POST /v2/queues/{q}/subscriptions`: 201, Location and the id.
pub fn subscription_created(path: &str, id: &str) -> Response {
    #[derive(Serialize)]
    struct Body<'a> {
        subscription_id: &'a str,
    }
    with_location(
        json_with(
            StatusCode::CREATED,
            &Body {
                subscription_id: id,
            },
        ),
        path,
    )
}

/// `GET /v2/queues/{q}/subscriptions`: the page and a `next` link (none
/// for an empty page); the link carries the given marker and limit.
pub fn subscription_listing(
    path: &str,
    query: &Query,
    listing: &SubscriptionListing,
    now: i64,
) -> Response {
    #[derive(Serialize)]
    struct Body<'a> {
        subscriptions: Vec<SubscriptionView<'a>>,
        links: Vec<Link>,
    }
    let subscriptions: Vec<SubscriptionView> = listing
        .subscriptions
        .iter()
        .map(|s| SubscriptionView::of(s, now))
        .collect();
    let mut links = Vec::new();
    if !subscriptions.is_empty() {
        let mut pairs = supplied(query, &["marker", "limit"]);
        set_marker(&mut pairs, &listing.next_marker);
        links.push(Link {
            rel: "next",
            href: [path, &to_query_string(&pairs)].concat(),
        });
    }
    json(&Body {
        subscriptions,
        links,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(checksum: Option<&str>, claim_id: Option<&str>) -> Message {
        Message {
            id: "m1".into(),
            ttl: 300,
            created_ms: 1_000,
            body: RawValue::from_string(r#"{"a": [1, "x"]}"#.into()).unwrap(),
            claim_id: claim_id.map(str::to_owned),
            claim_count: 2,
            checksum: checksum.map(str::to_owned),
        }
    }

    /// A message's fields in the reference's order, the body as posted,
    /// the checksum only when there is one, the href last (with the claim
    /// that holds the message).
    #[test]
    fn messages_show_their_fields_then_their_href() {
        let plain = message(None, None);
        assert_eq!(
            serde_json::to_string(&message_view("/v2/queues/q", &plain, None, 61_999 + 1_000))
                .unwrap(),
            r#"{"id":"m1","ttl":300,"age":61,"body":{"a": [1, "x"]},"href":"/v2/queues/q/messages/m1"}"#
        );
        let claimed = message(Some("MD5:abc"), Some("c1"));
        assert_eq!(
            serde_json::to_string(&message_view("/v2/queues/q", &claimed, None, 1_000)).unwrap(),
            r#"{"id":"m1","ttl":300,"age":0,"body":{"a": [1, "x"]},"checksum":"MD5:abc","href":"/v2/queues/q/messages/m1?claim_id=c1"}"#
        );
        let claiming = message(None, None);
        let view = message_view("/v2/queues/q", &claiming, Some("c2"), 1_000);
        assert!(serde_json::to_string(&view)
            .unwrap()
            .ends_with(r#""href":"/v2/queues/q/messages/m1?claim_id=c2"}"#));
    }
}
