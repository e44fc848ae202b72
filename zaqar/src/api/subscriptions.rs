//! Subscription operations: list, create, get, update, delete, confirm.
//!
//! Validation, statuses and texts are the reference's (behaviour notes
//! §1.8), with these deliberate differences, each answering 400 where the
//! reference answers 503 or stores nonsense:
//!
//! - a body that is not an object, or a `subscriber` that is not a string
//!   (or is empty), is refused with the reference's own messages;
//! - `ttl` of `0` or `null` means "not given" (default on create, unchanged
//!   on update) instead of an already expired subscription;
//! - `options.post_headers` must be an object and `options.post_data` a
//!   string, since delivery could not use anything else;
//! - webhook and `trust+` subscribers whose host is or resolves to an
//!   address that is not globally reachable (loopback, private, link-local
//!   where the metadata service lives, unique-local, documentation, ...)
//!   are refused unless `[notification] allowed_subscriber_networks` allows it
//!   (see [`crate::notification::ssrf`]);
//! - with Keystone, a `trust+` subscription given an `options.trust_id`
//!   of its own is accepted only if Keystone, asked with the caller's
//!   token, shows a trust from the caller to the `[trustee]` user (the
//!   reference accepts any id, so a caller could borrow someone else's
//!   trust); without one, a trust is created as the reference does (see
//!   [`crate::notification::trust`]) and deleted again if the subscription
//!   is not stored. Without Keystone (noauth, pre-signed requests) there is
//!   no token to create a trust with: `options.trust_id` is required
//!   (400 otherwise, where the reference fails with 503).

use serde_json::{Map, Value};

use super::metadata::{truthy, validate_retry_policy};
use super::queues::scope;
use super::topics::queue_subscriber_target;
use super::validate::{self, may_not_exceed, python_list, queue_identification_problem};
use super::{Api, Payload};
use crate::auth::signature::{sign, DATE_FORMAT};
use crate::context::RequestContext;
use crate::error::{storage_error, ApiError, ApiResult};
use crate::notification::ssrf::AddressPolicy;
use crate::notification::trust::{TrustError, TrustRequest};
use crate::notification::{confirmation_payload, ConfirmationGrant, ConfirmationKind};
use crate::storage::names;
use crate::storage::outbox::NewDelivery;
use crate::storage::{
    Metadata, NewSubscription, Scope, StorageError, Subscription, SubscriptionUpdate,
};

/// The subscriptions a connection holds itself: over WebSocket, a
/// `subscription_create` without a subscriber makes the connection the
/// subscriber. The transport keeps them (they live as long as the
/// connection); the api core decides when one is made, read or removed,
/// with the same validation and policy as stored subscriptions.
pub trait ConnectionSubscriptions: Send {
    /// Subscribes the connection to `scope` for `ttl` seconds; the
    /// subscription's id.
    ///
    /// # Errors
    /// The connection holds as many subscriptions as it may (400), or is
    /// subscribed to `scope` already (409).
    fn subscribe(&mut self, scope: &Scope, ttl: i64, options: Metadata) -> ApiResult<String>;
    /// The connection's live subscription `id` on `scope`.
    fn get(&self, scope: &Scope, id: &str) -> Option<Subscription>;
    /// The connection's live subscriptions on `scope`.
    fn list(&self, scope: &Scope) -> Vec<Subscription>;
    /// Ends the connection's subscription `id` on `scope`; whether it had one.
    fn unsubscribe(&mut self, scope: &Scope, id: &str) -> bool;
}

/// Smallest subscription TTL (seconds).
pub const MIN_SUBSCRIPTION_TTL: i64 = 60;
/// Default subscription page size.
pub const DEFAULT_SUBSCRIPTION_PAGE: usize = 10;
/// The latest expiry Python's datetime can represent: 9999-12-31T23:59:59.999999Z, in ms.
const MAX_EXPIRY_MS: i64 = 253_402_300_799_999;

/// Parameters of a subscription listing.
#[derive(Clone, Debug, Default)]
pub struct SubscriptionListParams {
    /// Id of the last subscription of the previous page.
    pub marker: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
}

/// One page of subscriptions.
#[derive(Clone, Debug)]
pub struct SubscriptionListing {
    /// The subscriptions, in creation order.
    pub subscriptions: Vec<Subscription>,
    /// Marker for the next page: the last id, else the given marker, else `""`.
    pub next_marker: String,
}

/// What a subscription document is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DocumentMode {
    /// `POST`: `subscriber` required.
    Create,
    /// `PATCH`: every field optional, at least one given.
    Update,
    /// A connection's own subscription: no `subscriber`, any field optional.
    Connection,
}

/// A checked subscription document (`POST` or `PATCH` body).
#[derive(Clone, Debug, Default)]
struct Document {
    subscriber: Option<String>,
    ttl: Option<i64>,
    options: Option<Metadata>,
    /// An update names an empty subscriber ("", 0, ...): refused, but only
    /// once the subscription is known to exist, as the reference looks it
    /// up first (a create refuses it in the check itself).
    empty_subscriber: bool,
}

fn subscription_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Subscription {id} does not exist"))
}

/// The 409 of a duplicate subscriber.
pub fn already_exists() -> ApiError {
    ApiError::Conflict(
        "Such subscription already exists.Subscriptions are unique by project + queue + subscriber URI.".into(),
    )
}

/// The answer when Keystone would not create (or show) a trust.
fn trust_error(what: &str, e: TrustError) -> ApiError {
    match e {
        TrustError::Refused(why) => {
            tracing::info!(reason = %why, "trust refused");
            ApiError::invalid(format!(
                "A Keystone trust could not be {what} for this subscription: {why}"
            ))
        }
        TrustError::Unavailable(why) => {
            tracing::warn!(reason = %why, "trust not created: Keystone unavailable");
            ApiError::Unavailable("Subscription could not be created.".into())
        }
    }
}

/// The scheme of a subscriber URI as Python's `urlparse` reads it (empty
/// when there is none).
fn scheme(uri: &str) -> String {
    match uri.split_once(':') {
        Some((s, _))
            if s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            s.to_ascii_lowercase()
        }
        _ => String::new(),
    }
}

impl Api {
    /// Validates a subscription document as the reference's
    /// `subscription_patching` (and `subscription_posting` when `create`).
    ///
    /// A topic's subscriber may also be `queue:NAME` (see
    /// [`super::topics`]); a queue's may not (a queue copying into a queue
    /// could loop).
    fn subscription_document(
        &self,
        doc: Value,
        mode: DocumentMode,
        on_topic: bool,
    ) -> ApiResult<Document> {
        let create = mode == DocumentMode::Create;
        if mode == DocumentMode::Connection && doc.as_object().is_some_and(|d| d.is_empty()) {
            return Ok(Document::default());
        }
        let Value::Object(doc) = doc else {
            return Err(ApiError::invalid(if create {
                "Missing parameter subscriber in body."
            } else if !truthy(&doc) {
                // The reference asks for something to change first.
                "No subscription to create."
            } else {
                "Subscriptions must be a dict."
            }));
        };
        if create && !doc.contains_key("subscriber") {
            return Err(ApiError::invalid("Missing parameter subscriber in body."));
        }
        if doc.is_empty() {
            return Err(ApiError::invalid("No subscription to create."));
        }
        let type_error = || self.subscriber_type_error();
        // A subscriber that is present but falsy ("", null, 0, ...) is not
        // checked by the reference until the options and the ttl have been:
        // its refusal waits for them, so a bad ttl is told first.
        let mut empty_subscriber = false;
        let subscriber = match doc.get("subscriber") {
            None | Some(Value::Null) if !create => None,
            Some(Value::Bool(false)) if !create => None,
            Some(v) if !truthy(v) => {
                empty_subscriber = true;
                None
            }
            Some(Value::String(s)) => {
                match queue_subscriber_target(s) {
                    Some(target)
                        if on_topic && queue_identification_problem(target, "").is_some() =>
                    {
                        return Err(ApiError::invalid(
                            "A queue: subscriber names a queue of the project: ASCII letters, digits, \
                             underscores, and dashes, at most 64 characters.",
                        ));
                    }
                    Some(_) if on_topic => {}
                    Some(_) => return Err(type_error()),
                    None if !self.limits().subscriber_types.contains(&scheme(s)) => {
                        return Err(type_error())
                    }
                    None => {}
                }
                Some(s.clone())
            }
            _ => return Err(type_error()),
        };
        let options = match doc.get("options") {
            None | Some(Value::Null) => None,
            Some(Value::Object(o)) => Some(o.clone()),
            Some(v) if !truthy(v) => Some(Map::new()),
            Some(_) => return Err(ApiError::invalid("Options must be a dict.")),
        };
        if let Some(o) = &options {
            validate_retry_policy(o.get("_retry_policy"))?;
            match o.get("post_headers") {
                None | Some(Value::Null | Value::Object(_)) => {}
                Some(_) => return Err(ApiError::invalid("post_headers must be a dict.")),
            }
            match o.get("post_data") {
                None | Some(Value::Null | Value::String(_)) => {}
                Some(_) => return Err(ApiError::invalid("post_data must be a string.")),
            }
        }
        let ttl = match doc.get("ttl") {
            None | Some(Value::Null) => None,
            Some(v) if !truthy(v) => None,
            Some(Value::Bool(true)) => Some(1),
            Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
            Some(_) => return Err(ApiError::invalid("TTL must be an integer.")),
        };
        if let Some(ttl) = ttl {
            if ttl < MIN_SUBSCRIPTION_TTL {
                return Err(ApiError::invalid(format!(
                    "The TTL for a subscription must be at least {MIN_SUBSCRIPTION_TTL} seconds long."
                )));
            }
            let now_s = self.now_ms() / 1000;
            if ttl > (MAX_EXPIRY_MS / 1000) - now_s {
                return Err(ApiError::invalid(
                    "The TTL seconds for a subscription plus current time must be less than 9999-12-31 \
                     23:59:59.999999.",
                ));
            }
        }
        if empty_subscriber && mode != DocumentMode::Update {
            return Err(type_error());
        }
        Ok(Document {
            subscriber,
            ttl,
            options,
            empty_subscriber,
        })
    }

    /// The refusal of a subscriber whose scheme is not served.
    fn subscriber_type_error(&self) -> ApiError {
        ApiError::invalid(format!(
            "The subscriber type of subscription must be supported in the list {}.",
            python_list(&self.limits().subscriber_types)
        ))
    }

    /// Refuses webhook and `trust+` subscribers that point inside the
    /// cloud (see [`crate::notification::ssrf`]).
    async fn check_subscriber_address(&self, subscriber: &str) -> ApiResult<()> {
        let target = subscriber.strip_prefix("trust+").unwrap_or(subscriber);
        if !matches!(scheme(target).as_str(), "http" | "https") {
            return Ok(());
        }
        let Ok(url) = reqwest::Url::parse(target) else {
            return Ok(());
        };
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return Ok(());
        };
        let policy = AddressPolicy::new(
            self.config()
                .notification
                .allowed_subscriber_networks
                .clone(),
        );
        policy
            .check_host(host, port)
            .await
            .map_err(ApiError::invalid)
    }

    /// Creates the Keystone trust of a new `trust+` subscription, as the
    /// reference: from the caller (with the caller's token) to the
    /// `[trustee]` user, on the caller's project, with the caller's roles,
    /// impersonating, until the subscription expires.
    ///
    /// # Errors
    /// 400 without a caller token (noauth, pre-signed) or when Keystone
    /// refuses the trust; 503 without `[trustee]` credentials or when
    /// Keystone cannot be reached.
    async fn create_subscription_trust(&self, ctx: &RequestContext, ttl: i64) -> ApiResult<String> {
        let (Some(token), Some(user)) = (&ctx.auth_token, &ctx.user_id) else {
            return Err(ApiError::invalid(
                "A trust+ subscription needs options.trust_id here: the request carries no Keystone token to \
                 create a trust with (the server runs without auth_strategy = keystone, or the request is \
                 pre-signed).",
            ));
        };
        let Some(trusts) = self.trusts() else {
            tracing::error!(
                "trust+ subscription refused: no [trustee] auth_url, username and password"
            );
            return Err(ApiError::Unavailable(
                "Subscription could not be created: this server has no [trustee] credentials to create a trust \
                 with."
                    .into(),
            ));
        };
        let expires_at = chrono::DateTime::from_timestamp_millis(
            self.now_ms().saturating_add(ttl.saturating_mul(1000)),
        )
        .map(|at| at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
        let request = TrustRequest {
            trustor_token: token.expose(),
            trustor_user_id: user,
            project_id: &ctx.project_id,
            roles: &ctx.roles,
            expires_at,
        };
        trusts
            .create_trust(&request)
            .await
            .map_err(|e| trust_error("created", e))
    }

    /// In Keystone mode, refuses an `options.trust_id` that is not a trust
    /// from the caller to the `[trustee]` user. Without a caller token
    /// (noauth) the id is taken as given, as the reference does.
    async fn check_given_trust(&self, ctx: &RequestContext, given: &Value) -> ApiResult<()> {
        let Value::String(trust_id) = given else {
            return Err(ApiError::invalid("trust_id must be a string."));
        };
        let (Some(token), Some(user), Some(trusts)) =
            (&ctx.auth_token, &ctx.user_id, self.trusts())
        else {
            return Ok(());
        };
        trusts
            .verify_trust(token.expose(), user, trust_id)
            .await
            .map_err(|e| trust_error("used", e))
    }

    /// `GET /v2/queues/{q}/subscriptions` (a missing queue lists nothing).
    pub async fn subscription_list(
        &self,
        ctx: &RequestContext,
        queue: &str,
        params: SubscriptionListParams,
        connection: Option<&mut dyn ConnectionSubscriptions>,
    ) -> ApiResult<SubscriptionListing> {
        let limit = validate::limit(
            params.limit,
            self.limits().max_subscriptions_per_page,
            may_not_exceed,
        )?
        .unwrap_or(DEFAULT_SUBSCRIPTION_PAGE);
        let scope = scope(ctx, queue);
        let mut subscriptions = match (&connection, &params.marker) {
            // The connection's own come first, on the first page.
            (Some(c), None) => c.list(&scope),
            _ => Vec::new(),
        };
        subscriptions.extend(
            self.storage
                .subscriptions
                .list(&scope, params.marker.as_deref(), limit)
                .await
                .map_err(storage_error("Subscriptions could not be listed."))?,
        );
        let next_marker = match subscriptions.last() {
            Some(s) => s.id.clone(),
            None => params.marker.unwrap_or_default(),
        };
        Ok(SubscriptionListing {
            subscriptions,
            next_marker,
        })
    }

    /// `POST /v2/queues/{q}/subscriptions`: the new subscription's id, or
    /// the existing one's when the same subscriber is still unconfirmed
    /// (its confirmation request is sent again).
    ///
    /// # Errors
    /// 400 on validation, 409 when the subscriber already has a confirmed
    /// subscription to the queue, 503 when storage fails.
    pub async fn subscription_create(
        &self,
        ctx: &RequestContext,
        queue: &str,
        payload: &Payload,
        connection: Option<&mut dyn ConnectionSubscriptions>,
    ) -> ApiResult<String> {
        const WHAT: &str = "Subscription could not be created.";
        let scope = scope(ctx, queue);
        let doc = self.body_document_or_empty(payload)?;
        // Over HTTP the reference reads the body, then creates the queue,
        // even if the document is then refused; over WebSocket it checks
        // the document first.
        let over_websocket = connection.is_some();
        if !over_websocket {
            self.create_queue_if_missing(&scope, WHAT).await?;
        }
        if let Some(connection) = connection {
            // Without a subscriber (or with an empty one, as the
            // reference reads it) the connection itself is the subscriber.
            if !doc.get("subscriber").is_some_and(truthy) {
                let mut doc = doc;
                if let Some(fields) = doc.as_object_mut() {
                    fields.remove("subscriber");
                }
                let doc = self.subscription_document(doc, DocumentMode::Connection, false)?;
                self.create_queue_if_missing(&scope, WHAT).await?;
                let ttl = doc.ttl.unwrap_or(self.limits().default_subscription_ttl);
                return connection.subscribe(&scope, ttl, doc.options.unwrap_or_default());
            }
        }
        let on_topic = !names::is_queue(queue);
        let doc = self.subscription_document(doc, DocumentMode::Create, on_topic)?;
        if over_websocket {
            self.create_queue_if_missing(&scope, WHAT).await?;
        }
        let subscriber = doc.subscriber.unwrap_or_default();
        self.check_subscriber_address(&subscriber).await?;
        let mut options = doc.options.unwrap_or_default();
        let ttl = doc.ttl.unwrap_or(self.limits().default_subscription_ttl);
        let mut new_trust = None;
        if scheme(&subscriber).starts_with("trust+") {
            if let Some(given) = options.get("trust_id") {
                self.check_given_trust(ctx, given).await?;
            } else if self
                .storage
                .subscriptions
                .get_with_subscriber(&scope, &subscriber)
                .await
                .map_err(storage_error(WHAT))?
                .is_none()
            {
                // (An existing subscription is answered below without a new trust.)
                let id = self.create_subscription_trust(ctx, ttl).await?;
                options.insert("trust_id".into(), Value::from(id.as_str()));
                new_trust = Some(id);
            }
        }
        let new = NewSubscription {
            subscriber: subscriber.clone(),
            ttl,
            options,
        };
        let created = self.storage.subscriptions.create(&scope, &new).await;
        if let (Some(trust_id), Some(token), Ok(None) | Err(_)) =
            (&new_trust, &ctx.auth_token, &created)
        {
            if let Some(trusts) = &self.trusts() {
                trusts.delete_trust(token.expose(), trust_id).await;
            }
        }
        let created = created.map_err(storage_error(WHAT))?;
        let subscription = match created {
            Some(id) => self
                .storage
                .subscriptions
                .get(&scope, &id)
                .await
                .ok()
                .flatten()
                .unwrap_or(Subscription {
                    id,
                    source: queue.to_owned(),
                    subscriber: new.subscriber,
                    ttl,
                    expires_ms: self.now_ms() + ttl * 1000,
                    options: new.options,
                    confirmed: false,
                }),
            None => {
                let existing = self
                    .storage
                    .subscriptions
                    .get_with_subscriber(&scope, &subscriber)
                    .await
                    .map_err(storage_error(WHAT))?
                    .ok_or_else(|| ApiError::Unavailable(WHAT.into()))?;
                // Over WebSocket the reference refuses any subscriber that
                // exists (409); over HTTP only a confirmed one.
                if existing.confirmed || over_websocket {
                    return Err(already_exists());
                }
                existing
            }
        };
        if queue_subscriber_target(&subscription.subscriber).is_some() {
            // A copy into a queue of the caller's own project has nobody
            // to ask: it is confirmed as it is made.
            if !subscription.confirmed {
                self.storage
                    .subscriptions
                    .confirm(&scope, &subscription.id, true)
                    .await
                    .map_err(storage_error(WHAT))?;
            }
            return Ok(subscription.id);
        }
        self.send_confirmation(&scope, &subscription, ConfirmationKind::Subscribe, ttl)
            .await;
        Ok(subscription.id)
    }

    /// `GET /v2/queues/{q}/subscriptions/{id}`.
    pub async fn subscription_get(
        &self,
        ctx: &RequestContext,
        queue: &str,
        id: &str,
        connection: Option<&mut dyn ConnectionSubscriptions>,
    ) -> ApiResult<Subscription> {
        if let Some(own) = connection.and_then(|c| c.get(&scope(ctx, queue), id)) {
            return Ok(own);
        }
        self.storage
            .subscriptions
            .get(&scope(ctx, queue), id)
            .await
            .map_err(storage_error("Subscription could not be retrieved."))?
            .ok_or_else(|| subscription_not_found(id))
    }

    /// `PATCH /v2/queues/{q}/subscriptions/{id}`.
    ///
    /// # Errors
    /// 400 on validation, 404 when missing, 409 when the new subscriber is
    /// taken, and (as the reference) 400 "Unable to update subscription"
    /// for anything else.
    pub async fn subscription_update(
        &self,
        ctx: &RequestContext,
        queue: &str,
        id: &str,
        payload: &Payload,
    ) -> ApiResult<()> {
        let doc = self.body_document_or_empty(payload)?;
        // Whether the document names a field at all (a ttl of 0 changes
        // nothing here, but the reference then looks the subscription up).
        let names_a_field = doc.as_object().is_some_and(|d| {
            ["subscriber", "ttl", "options"]
                .iter()
                .any(|k| d.get(*k).is_some_and(|v| !v.is_null()))
        });
        let doc = self.subscription_document(doc, DocumentMode::Update, !names::is_queue(queue))?;
        if doc.empty_subscriber {
            // The reference (which would store it) looks the subscription
            // up first.
            self.must_exist(ctx, queue, id).await?;
            return Err(self.subscriber_type_error());
        }
        if let Some(s) = &doc.subscriber {
            self.check_subscriber_address(s).await?;
        }
        if let Some(given) = doc.options.as_ref().and_then(|o| o.get("trust_id")) {
            self.check_given_trust(ctx, given).await?;
        }
        let unable = || {
            ApiError::bad_request(
                "Unable to update subscription",
                format!("Subscription {id} could not be updated."),
            )
        };
        if doc.subscriber.is_none() && doc.ttl.is_none() && doc.options.is_none() {
            if names_a_field {
                self.must_exist(ctx, queue, id).await?;
            }
            return Err(unable());
        }
        let update = SubscriptionUpdate {
            subscriber: doc.subscriber,
            ttl: doc.ttl,
            options: doc.options,
        };
        match self.storage.subscriptions.update(&scope(ctx, queue), id, &update).await {
            Ok(()) => Ok(()),
            Err(StorageError::SubscriptionNotFound) => Err(subscription_not_found(id)),
            Err(StorageError::SubscriptionExists) => Err(ApiError::Conflict(
                "Such subscription already exists. Subscriptions are unique by project + queue + subscriber URI."
                    .into(),
            )),
            Err(e) => {
                tracing::warn!(error = %e, "subscription update failed");
                Err(unable())
            }
        }
    }

    /// Creates the queue a subscription is made on when it does not exist.
    async fn create_queue_if_missing(&self, scope: &Scope, what: &'static str) -> ApiResult<()> {
        let exists = self
            .storage
            .queues
            .get(scope)
            .await
            .map_err(storage_error(what))?;
        if exists.is_none() {
            self.storage
                .queues
                .create(scope, &Metadata::new())
                .await
                .map_err(storage_error(what))?;
        }
        Ok(())
    }

    /// 404 when the subscription does not exist (a store that cannot say
    /// lets the request go on to its own error).
    async fn must_exist(&self, ctx: &RequestContext, queue: &str, id: &str) -> ApiResult<()> {
        match self.storage.subscriptions.get(&scope(ctx, queue), id).await {
            Ok(None) => Err(subscription_not_found(id)),
            _ => Ok(()),
        }
    }

    /// `DELETE /v2/queues/{q}/subscriptions/{id}` (missing ones too).
    pub async fn subscription_delete(
        &self,
        ctx: &RequestContext,
        queue: &str,
        id: &str,
        connection: Option<&mut dyn ConnectionSubscriptions>,
    ) -> ApiResult<()> {
        if connection.is_some_and(|c| c.unsubscribe(&scope(ctx, queue), id)) {
            return Ok(());
        }
        self.storage
            .subscriptions
            .delete(&scope(ctx, queue), id)
            .await
            .map_err(storage_error("Subscription could not be deleted."))
    }

    /// `PUT /v2/queues/{q}/subscriptions/{id}/confirm` with
    /// `{"confirmed": bool}`; unconfirming sends an unsubscribe
    /// confirmation when `require_confirmation` is on.
    ///
    /// # Errors
    /// 400 when `confirmed` is not a boolean, 404 when missing, and (as
    /// the reference) 400 "Unable to confirm subscription" otherwise.
    pub async fn subscription_confirm(
        &self,
        ctx: &RequestContext,
        queue: &str,
        id: &str,
        payload: &Payload,
    ) -> ApiResult<()> {
        let doc = self.body_document_or_empty(payload)?;
        let Some(confirmed) = doc.get("confirmed").and_then(Value::as_bool) else {
            return Err(ApiError::invalid("The 'confirmed' should be boolean."));
        };
        let scope = scope(ctx, queue);
        let unable = |e: StorageError| {
            tracing::warn!(error = %e, "subscription confirm failed");
            ApiError::bad_request(
                "Unable to confirm subscription",
                format!("Subscription {id} could not be confirmed."),
            )
        };
        match self
            .storage
            .subscriptions
            .confirm(&scope, id, confirmed)
            .await
        {
            Ok(()) => {}
            Err(StorageError::SubscriptionNotFound) => return Err(subscription_not_found(id)),
            Err(e) => return Err(unable(e)),
        }
        if !confirmed {
            if let Ok(Some(sub)) = self.storage.subscriptions.get(&scope, id).await {
                let ttl = self.limits().default_subscription_ttl;
                self.send_confirmation(&scope, &sub, ConfirmationKind::Unsubscribe, ttl)
                    .await;
            }
        }
        Ok(())
    }

    /// Queues a (un)subscribe confirmation request for `subscription`,
    /// pre-signed for `PUT` on its confirm path for `ttl` seconds. Nothing
    /// happens unless `[notification] require_confirmation` is on and
    /// `[signed_url] secret_key` is set; failures are logged, never
    /// answered.
    async fn send_confirmation(
        &self,
        scope: &Scope,
        subscription: &Subscription,
        kind: ConfirmationKind,
        ttl: i64,
    ) {
        if !self.config().notification.require_confirmation
            || queue_subscriber_target(&subscription.subscriber).is_some()
        {
            return;
        }
        let Some(key) = self.config().signed_url.secret_key.as_deref() else {
            tracing::error!(
                "cannot send a confirmation request: [signed_url] secret_key is not set"
            );
            return;
        };
        let Some(outbox) = &self.storage.outbox else {
            tracing::warn!("cannot send a confirmation request: the store keeps no outbox");
            return;
        };
        let path = format!(
            "{}/subscriptions/{}/confirm",
            crate::storage::names::api_path(&scope.queue),
            subscription.id
        );
        let expires = chrono::DateTime::from_timestamp_millis(
            self.now_ms().saturating_add(ttl.saturating_mul(1000)),
        )
        .unwrap_or_default()
        .format(DATE_FORMAT)
        .to_string();
        let signature = sign(
            key,
            std::slice::from_ref(&path),
            &["PUT".to_owned()],
            Some(&scope.project),
            &expires,
        );
        let grant = ConfirmationGrant {
            method: "PUT",
            path: &path,
            expires: &expires,
            signature: &signature,
        };
        let delivery = NewDelivery {
            project: scope.project.clone(),
            queue: scope.queue.clone(),
            subscription_id: subscription.id.clone(),
            subscriber: subscription.subscriber.clone(),
            options: subscription.options.clone(),
            queue_retry_policy: None,
            payload: confirmation_payload(kind, &scope.queue, &scope.project, &grant),
        };
        match outbox.enqueue(vec![delivery]).await {
            Ok(()) => self.storage.outbox_wake.notify_one(),
            Err(e) => tracing::warn!(error = %e, "confirmation request could not be queued"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::scheme;

    #[test]
    fn schemes_as_python_reads_them() {
        assert_eq!(scheme("http://x"), "http");
        assert_eq!(scheme("HTTPS://x"), "https");
        assert_eq!(scheme("trust+http://x"), "trust+http");
        assert_eq!(scheme("mailto:a@b"), "mailto");
        assert_eq!(scheme("no-scheme"), "");
        assert_eq!(scheme("1http://x"), "");
    }
}
