//! Notifications: the notifier stage, the durable outbox it feeds, and the
//! delivery workers that drain it.
//!
//! # Flow
//!
//! 1. [`NotifierStage`] (registered as `zaqar.notification.notifier`, on by
//!    default, see [`crate::storage::pipeline`]) wraps message `post`. Once
//!    the messages are stored, and when the queue has live subscriptions
//!    (confirmed ones with `require_confirmation`; the stores say so in
//!    [`Posted::subscribed`], read in the post's own transaction or script,
//!    so queues without subscribers to notify pay nothing), it
//!    writes **one** outbox row for the whole post, a fan-out row holding
//!    the notification documents, and wakes the workers. The post's cost
//!    does not grow with the number of subscribers, and it never waits for
//!    a delivery. (The reference notifies *before* storing and from an
//!    in-memory thread pool, so a restart loses what was pending.)
//! 2. A worker expands a fan-out row ([`Notifier::with_fanout`]): it reads
//!    the queue's subscriptions (those live then; with
//!    `require_confirmation` only the confirmed ones, read through the
//!    stores' index of them, so unconfirmed ones cost nothing), queues one
//!    row per (message, subscriber), and
//!    only then deletes the fan-out row. A server dying half-way expands it
//!    again once its lease runs out: a subscriber may then be notified
//!    twice, never not at all (deliveries are at least once anyway).
//! 3. [`Notifier`] leases due rows and delivers each on its channel, at
//!    most `[notification] max_notifier_workers` at a time, and at most
//!    `max_notifier_workers_per_project` of one project, the projects
//!    taking turns (see [`Notifier::run`]). A row is deleted
//!    only when delivered or given up, so each delivery happens at least
//!    once, across restarts too.
//!
//! # Channels
//!
//! - `http`, `https` ([`webhook`]): `POST` of the payload as JSON (or of
//!   `options.post_data` with `"$zaqar_message$"` replaced by it), with
//!   `Content-Type: application/json` plus `options.post_headers`. Retries
//!   follow the retry policy ([`retry`]) on connection errors, timeouts
//!   **and 5xx answers**; the reference only retries on connection errors.
//!   A 4xx is final. Targets are guarded by [`ssrf`].
//! - `trust+http`, `trust+https` ([`trust`]): a webhook carrying an
//!   `X-Auth-Token` obtained from the Keystone trust in `options.trust_id`.
//! - `queue:NAME` (topics only, an extension): the message is posted to
//!   the queue `NAME` of the topic's project through a [`QueueSink`] (the
//!   api core, so the queue's own rules, limits and subscribers apply). A
//!   refused post (a rule of the queue) is final; a store failure is
//!   retried.
//! - `mailto:` ([`mailto`]): an RFC 822 message piped to `smtp_command`
//!   (`smtp_mode = third_part`) or sent over SMTP by the server itself
//!   (`smtp_mode = self_local`).
//!
//! # Payload
//!
//! The reference's: the posted message (`ttl`, `body`, and `delay` when it
//! has one) plus `"Message_Type": "Notification"` and `"queue_name"`.
//! Confirmation requests ([`confirmation_payload`]) have their own keys.

pub mod mailto;
pub mod redact;
pub mod retry;
pub mod ssrf;
pub mod trust;
pub mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio::sync::{Notify, Semaphore};

use crate::config::Config;
use crate::storage::clock::SharedClock;
use crate::storage::names;
use crate::storage::outbox::{Delivery, FairShare, NewDelivery, Outbox};
use crate::storage::pipeline::StageContext;
use crate::storage::{
    MessageStore, NewMessage, Posted, QueueStore, Scope, StorageResult, SubscriptionStore,
};

/// The stage name, as reference configurations spell it.
pub const NOTIFIER_STAGE: &str = "zaqar.notification.notifier";

/// Subscriptions read per page when fanning a post out.
const FANOUT_PAGE: usize = 100;
/// Delivery rows queued per outbox call when expanding a fan-out row.
const FANOUT_ENQUEUE_CHUNK: usize = 1000;
/// The subscriber of a fan-out row (a scheme no subscription can have: the
/// API accepts only its own channels).
pub const FANOUT_SUBSCRIBER: &str = "zaqar-fanout:";
/// Longest wait before a fan-out row whose expansion failed (the stores
/// unavailable) is tried again; it is never given up for that.
const FANOUT_RETRY_MAX_SECS: u64 = 60;
/// Longest sleep of the dispatcher between two looks at the outbox.
const MAX_IDLE: Duration = Duration::from_secs(2);
/// Sleep of the dispatcher while due deliveries wait for their project's
/// cap (a finished delivery wakes it sooner).
const CAPPED_IDLE: Duration = Duration::from_millis(250);
/// Extra lease time beyond the per-request timeout.
const LEASE_MARGIN_MS: i64 = 30_000;

/// The stage constructor registered under [`NOTIFIER_STAGE`].
pub fn notifier_stage(next: Arc<dyn MessageStore>, ctx: &StageContext) -> Arc<dyn MessageStore> {
    if ctx.backend.outbox.is_none() {
        tracing::warn!("{NOTIFIER_STAGE}: this store keeps no outbox; notifications are disabled");
    }
    Arc::new(NotifierStage {
        next,
        outbox: ctx.backend.outbox.clone(),
        wake: ctx.outbox_wake.clone(),
        keyring: Arc::new(crate::storage::encryption::Keyring::from_config(
            &ctx.config.transport,
        )),
        require_confirmation: ctx.config.notification.require_confirmation,
    })
}

/// The message stage that queues one fan-out row for each post to a queue
/// with subscribers (see the module docs).
pub struct NotifierStage {
    next: Arc<dyn MessageStore>,
    outbox: Option<Arc<dyn Outbox>>,
    wake: Arc<Notify>,
    keyring: Arc<crate::storage::encryption::Keyring>,
    /// `[notification] require_confirmation`: a post to a queue whose
    /// subscriptions are all unconfirmed then queues nothing.
    require_confirmation: bool,
}

/// The fan-out row of one post: the notification documents of its
/// messages, to be copied to every subscriber of the queue.
fn fanout_row(scope: &Scope, payloads: Vec<Value>) -> NewDelivery {
    NewDelivery {
        project: scope.project.clone(),
        queue: scope.queue.clone(),
        subscription_id: String::new(),
        subscriber: FANOUT_SUBSCRIBER.to_owned(),
        options: Map::new(),
        queue_retry_policy: None,
        payload: serde_json::json!({ "messages": payloads }),
    }
}

/// The notification document for one posted message to the queue (or
/// topic) stored as `queue`: its `queue_name` (a topic's: `topic_name`).
pub fn notification_payload(queue: &str, message: &NewMessage) -> Value {
    let mut m = Map::new();
    m.insert("ttl".into(), message.ttl.into());
    let body = serde_json::from_str(message.body.get()).unwrap_or(Value::Null);
    m.insert("body".into(), body);
    if message.delay > 0 {
        m.insert("delay".into(), message.delay.into());
    }
    m.insert("Message_Type".into(), "Notification".into());
    let (key, name) = names::source_field(queue);
    m.insert(key.into(), name.into());
    Value::Object(m)
}

#[async_trait]
impl MessageStore for NotifierStage {
    fn next(&self) -> Option<&dyn MessageStore> {
        Some(self.next.as_ref())
    }

    async fn post(
        &self,
        scope: &Scope,
        client_id: &str,
        messages: Vec<NewMessage>,
    ) -> StorageResult<Posted> {
        let Some(outbox) = &self.outbox else {
            return self.next.post(scope, client_id, messages).await;
        };
        // A copy for the payloads (bodies are copied, not parsed, until
        // the queue turns out to have subscribers).
        let copy = messages.clone();
        let posted = self.next.post(scope, client_id, messages).await?;
        if posted
            .subscribed
            .is_some_and(|s| !s.notifies(self.require_confirmation))
        {
            return Ok(posted);
        }
        // Subscribers get the plaintext of an encrypted queue's messages
        // (the key never leaves the server, so ciphertext would be of no
        // use to them).
        let mut payloads = Vec::with_capacity(copy.len());
        for m in &copy {
            match self.keyring.open(&m.body) {
                Ok(None) => payloads.push(notification_payload(&scope.queue, m)),
                Ok(Some(plain)) => {
                    let opened = NewMessage {
                        body: plain,
                        ..m.clone()
                    };
                    payloads.push(notification_payload(&scope.queue, &opened));
                }
                Err(e) => {
                    tracing::error!(queue = %scope.queue, project = %scope.project, error = %e, "cannot open an encrypted message to notify its subscribers");
                }
            }
        }
        if payloads.is_empty() {
            return Ok(posted);
        }
        match outbox.enqueue(vec![fanout_row(scope, payloads)]).await {
            Ok(()) => self.wake.notify_one(),
            Err(e) => {
                tracing::warn!(queue = %scope.queue, error = %e, "notifications could not be queued")
            }
        }
        Ok(posted)
    }
}

/// Where `queue:NAME` deliveries go: a queue of the delivery's project.
#[async_trait]
pub trait QueueSink: Send + Sync {
    /// Posts the message of `payload` (a notification document: `ttl`,
    /// `body`, `delay`) to `queue` of `project`.
    async fn copy(&self, project: &str, queue: &str, payload: &Value) -> Outcome;
}

/// The kind of confirmation request sent to a subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfirmationKind {
    /// Sent on subscription (`SubscriptionConfirmation`).
    Subscribe,
    /// Sent when a subscriber unconfirms (`UnsubscribeConfirmation`).
    Unsubscribe,
}

/// The pre-signed request a confirmation asks the subscriber to make.
#[derive(Clone, Copy, Debug)]
pub struct ConfirmationGrant<'a> {
    /// The signed method (`PUT`).
    pub method: &'a str,
    /// The signed path (the subscription's confirm path).
    pub path: &'a str,
    /// When the signature expires.
    pub expires: &'a str,
    /// The signature.
    pub signature: &'a str,
}

/// The confirmation request document (reference keys): the pre-signed
/// `PUT` of the confirm path and the bodies to send to it.
pub fn confirmation_payload(
    kind: ConfirmationKind,
    queue: &str,
    project: &str,
    grant: &ConfirmationGrant<'_>,
) -> Value {
    let (key, name) = names::source_field(queue);
    let noun = names::noun(queue);
    let (message_type, message) = match kind {
        ConfirmationKind::Subscribe => (
            "SubscriptionConfirmation",
            format!("You have chosen to subscribe to the {noun}: {name}"),
        ),
        ConfirmationKind::Unsubscribe => (
            "UnsubscribeConfirmation",
            format!(
                "You have unsubscribed successfully to the {noun}: {name}, you can resubscribe it by using \
                 confirmed=True."
            ),
        ),
    };
    let mut doc = serde_json::json!({
        "Message_Type": message_type,
        "Message": message,
        "URL-Signature": grant.signature,
        "URL-Methods": grant.method,
        "URL-Paths": grant.path,
        "X-Project-ID": project,
        "URL-Expires": grant.expires,
        "SubscribeBody": {"confirmed": true},
        "UnsubscribeBody": {"confirmed": false},
    });
    doc[key] = Value::from(name);
    doc
}

/// Whether a delivery attempt worked, may work later, or never will.
#[derive(Debug)]
pub enum Outcome {
    /// Delivered.
    Delivered,
    /// Failed in a way a retry may fix (connection error, timeout, 5xx).
    Retry(String),
    /// Failed for good (4xx, refused address, bad subscriber).
    GiveUp(String),
}

/// The HTTP client of every subscriber delivery (webhook and `trust+`).
///
/// It never follows redirects, resolves names through the address guard
/// ([`ssrf::GuardedResolver`]) and ignores the proxy variables of the
/// environment (`HTTP_PROXY`, `ALL_PROXY`, ...): through a proxy, the proxy
/// would resolve the subscriber's name and the guard would never see the
/// address. Only `[notification] webhook_proxy` sends deliveries through a
/// proxy, which is then the guard (subscriber IP literals are still
/// checked here).
///
/// # Errors
/// The client cannot be built (TLS set-up, a proxy URL reqwest refuses).
pub fn webhook_client(
    n: &crate::config::NotificationConfig,
    policy: &ssrf::AddressPolicy,
) -> Result<reqwest::Client, String> {
    let builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(n.webhook_timeout))
        .connect_timeout(Duration::from_secs(n.webhook_timeout))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("zaqar-rs/", env!("CARGO_PKG_VERSION")));
    let builder = match &n.webhook_proxy {
        None => builder
            .no_proxy()
            .dns_resolver(Arc::new(ssrf::GuardedResolver {
                policy: policy.clone(),
            })),
        Some(url) => {
            let proxy = reqwest::Proxy::all(url.clone())
                .map_err(|e| format!("[notification] webhook_proxy: {e}"))?;
            // Only the proxy's own name would go through a resolver here;
            // an operator's proxy may well sit on a private network.
            builder.proxy(proxy)
        }
    };
    builder
        .build()
        .map_err(|e| format!("cannot build the webhook HTTP client: {e}"))
}

/// The deliveries of each project in flight on this server, for fair
/// leases, and a signal whenever one ends.
#[derive(Clone, Default)]
struct InFlight {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    freed: Arc<Notify>,
}

impl InFlight {
    fn snapshot(&self) -> HashMap<String, usize> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Counts a delivery of `project` until the returned guard is dropped.
    fn start(&self, project: &str) -> InFlightGuard {
        if let Ok(mut c) = self.counts.lock() {
            *c.entry(project.to_owned()).or_default() += 1;
        }
        InFlightGuard {
            owner: self.clone(),
            project: project.to_owned(),
        }
    }
}

/// One delivery in flight (see [`InFlight::start`]).
struct InFlightGuard {
    owner: InFlight,
    project: String,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Ok(mut c) = self.owner.counts.lock() {
            if let Some(n) = c.get_mut(&self.project) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.remove(&self.project);
                }
            }
        }
        self.owner.freed.notify_one();
    }
}

/// The delivery workers: lease due outbox rows and deliver them.
#[derive(Clone)]
pub struct Notifier {
    outbox: Arc<dyn Outbox>,
    config: Arc<Config>,
    clock: SharedClock,
    wake: Arc<Notify>,
    http: reqwest::Client,
    policy: ssrf::AddressPolicy,
    trusts: Option<Arc<dyn trust::TrustTokens>>,
    queues: Option<Arc<dyn QueueSink>>,
    fanout: Option<FanoutStores>,
}

/// What expanding a fan-out row reads: the queue's subscriptions and its
/// metadata (for `_retry_policy`).
#[derive(Clone)]
struct FanoutStores {
    subscriptions: Arc<dyn SubscriptionStore>,
    queues: Arc<dyn QueueStore>,
}

impl Notifier {
    /// A notifier draining `outbox`; `wake` is the handle the notifier
    /// stage (and confirmations) notify after enqueuing.
    ///
    /// # Errors
    /// The HTTP client cannot be built (TLS set-up).
    pub fn new(
        outbox: Arc<dyn Outbox>,
        config: Arc<Config>,
        clock: SharedClock,
        wake: Arc<Notify>,
    ) -> Result<Self, String> {
        let n = &config.notification;
        let policy = ssrf::AddressPolicy::new(n.allowed_subscriber_networks.clone());
        let http = webhook_client(n, &policy)?;
        let trusts = trust::KeystoneTrusts::from_config(&config)?
            .map(|k| Arc::new(k) as Arc<dyn trust::TrustTokens>);
        Ok(Notifier {
            outbox,
            config,
            clock,
            wake,
            http,
            policy,
            trusts,
            queues: None,
            fanout: None,
        })
    }

    /// Expands fan-out rows ([`NotifierStage`]) with the subscriptions and
    /// queue records of these stores (the deployment's, pools included).
    pub fn with_fanout(
        mut self,
        subscriptions: Arc<dyn SubscriptionStore>,
        queues: Arc<dyn QueueStore>,
    ) -> Self {
        self.fanout = Some(FanoutStores {
            subscriptions,
            queues,
        });
        self
    }

    /// Replaces fan-out row `d` by one delivery per (message, subscriber):
    /// `Delivered` once they are all queued.
    async fn expand(&self, d: &Delivery) -> Outcome {
        let Some(stores) = &self.fanout else {
            return Outcome::GiveUp("fan-out row but no subscription store".into());
        };
        let Some(payloads) = d.delivery.payload.get("messages").and_then(Value::as_array) else {
            return Outcome::GiveUp("fan-out row without messages".into());
        };
        let scope = Scope::new(d.delivery.project.clone(), d.delivery.queue.clone());
        let require_confirmation = self.config.notification.require_confirmation;
        // A page of subscriptions at a time, its rows queued a chunk at a
        // time: memory stays bounded however many subscriptions the queue has.
        let mut queue_retry_policy: Option<Option<Value>> = None;
        let mut rows = Vec::with_capacity(FANOUT_ENQUEUE_CHUNK);
        let mut marker: Option<String> = None;
        loop {
            // Under `require_confirmation` only the confirmed ones are
            // read: a queue's unconfirmed subscriptions cost nothing here.
            let page = if require_confirmation {
                stores
                    .subscriptions
                    .list_confirmed(&scope, marker.as_deref(), FANOUT_PAGE)
                    .await
            } else {
                stores
                    .subscriptions
                    .list(&scope, marker.as_deref(), FANOUT_PAGE)
                    .await
            };
            let page = match page {
                Ok(page) => page,
                Err(e) => return Outcome::Retry(format!("cannot read subscriptions: {e}")),
            };
            let full = page.len() == FANOUT_PAGE;
            marker = page.last().map(|s| s.id.clone());
            for sub in page {
                // The queue's metadata, read once, when there is a subscriber.
                let policy = match &queue_retry_policy {
                    Some(p) => p.clone(),
                    None => {
                        let p = match stores.queues.get(&scope).await {
                            Ok(m) => m.and_then(|m| m.get("_retry_policy").cloned()),
                            Err(e) => {
                                tracing::debug!(error = %e, "queue metadata unreadable: default retry policy");
                                None
                            }
                        };
                        queue_retry_policy = Some(p.clone());
                        p
                    }
                };
                for payload in payloads {
                    rows.push(NewDelivery {
                        project: scope.project.clone(),
                        queue: scope.queue.clone(),
                        subscription_id: sub.id.clone(),
                        subscriber: sub.subscriber.clone(),
                        options: sub.options.clone(),
                        queue_retry_policy: policy.clone(),
                        payload: payload.clone(),
                    });
                    if rows.len() == FANOUT_ENQUEUE_CHUNK {
                        if let Err(e) = self.outbox.enqueue(std::mem::take(&mut rows)).await {
                            return Outcome::Retry(format!("cannot queue deliveries: {e}"));
                        }
                        self.wake.notify_one();
                    }
                }
            }
            if !full {
                break;
            }
        }
        if !rows.is_empty() {
            if let Err(e) = self.outbox.enqueue(rows).await {
                return Outcome::Retry(format!("cannot queue deliveries: {e}"));
            }
        }
        self.wake.notify_one();
        Outcome::Delivered
    }

    /// Delivers `queue:NAME` subscriptions through `sink`.
    pub fn with_queue_sink(mut self, sink: Arc<dyn QueueSink>) -> Self {
        self.queues = Some(sink);
        self
    }

    /// Runs the dispatcher until `shutdown` completes. Deliveries in flight
    /// at shutdown are abandoned; their rows come back when the lease runs
    /// out.
    ///
    /// Workers are shared out fairly ([`crate::storage::outbox::FairShare`]):
    /// one project has at most `max_notifier_workers_per_project`
    /// deliveries in flight, and the projects with due deliveries take
    /// turns, so a tenant whose subscribers hang until the webhook timeout
    /// delays nobody else.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let n = &self.config.notification;
        let workers = n.max_notifier_workers.max(1);
        let per_project = n.workers_per_project().clamp(1, workers);
        let slots = Arc::new(Semaphore::new(workers));
        let in_flight = InFlight::default();
        let lease_ms = i64::try_from(n.webhook_timeout)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000)
            .saturating_add(LEASE_MARGIN_MS);
        tracing::info!(workers, per_project, "notification delivery started");
        loop {
            let free = slots.available_permits();
            let mut leased = 0;
            if free > 0 {
                let share = FairShare {
                    per_project,
                    in_flight: in_flight.snapshot(),
                };
                match self.outbox.lease_fair(free, lease_ms, &share).await {
                    Ok(batch) => {
                        leased = batch.len();
                        for d in batch {
                            let Ok(permit) = slots.clone().acquire_owned().await else {
                                return;
                            };
                            let busy = in_flight.start(&d.delivery.project);
                            let me = self.clone();
                            tokio::spawn(async move {
                                me.deliver(d).await;
                                drop(permit);
                                drop(busy);
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the notification outbox"),
                }
            }
            if leased > 0 && leased == free {
                // Maybe more is due: look again as soon as a slot frees up.
                tokio::select! {
                    _ = &mut shutdown => break,
                    permit = slots.clone().acquire_owned() => drop(permit),
                }
                continue;
            }
            let now = self.clock.now_ms();
            let idle = match self.outbox.next_due_ms().await {
                // Due but not leased: its project is at its cap, and a
                // finishing delivery wakes us (or the lease failed).
                Ok(Some(due)) if due <= now => CAPPED_IDLE,
                Ok(Some(due)) => {
                    Duration::from_millis((due - now).clamp(20, MAX_IDLE.as_millis() as i64) as u64)
                }
                _ => MAX_IDLE,
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {}
                _ = in_flight.freed.notified() => {}
                _ = tokio::time::sleep(idle) => {}
            }
        }
        tracing::info!("notification delivery stopped");
    }

    /// Tries one delivery and records the result in the outbox.
    async fn deliver(&self, d: Delivery) {
        if d.delivery.subscriber == FANOUT_SUBSCRIBER {
            return self.deliver_fanout(d).await;
        }
        let outcome = self.attempt(&d).await;
        crate::metrics::global().delivery(
            delivery_kind(&d.delivery.subscriber),
            match &outcome {
                Outcome::Delivered => "delivered",
                Outcome::GiveUp(_) => "dropped",
                Outcome::Retry(_) => "retry",
            },
        );
        let sid = &d.delivery.subscription_id;
        // Subscriber URIs can hold credentials: never logged whole.
        let subscriber = redact::redact(&d.delivery.subscriber);
        let result = match outcome {
            Outcome::Delivered => {
                tracing::debug!(subscription = %sid, attempts = d.attempts, "notification delivered");
                self.outbox.complete(&d.id).await
            }
            Outcome::GiveUp(why) => {
                tracing::warn!(subscription = %sid, %subscriber, %why, "notification dropped");
                self.outbox.complete(&d.id).await
            }
            Outcome::Retry(why) => {
                let policy = retry::effective(
                    d.delivery.options.get("_retry_policy"),
                    d.delivery.queue_retry_policy.as_ref(),
                );
                // The policy is clamped there, not trusted: the row may
                // predate the API's bounds.
                match retry::wait_before_retry(policy, u64::from(d.attempts)) {
                    Some(wait) => {
                        tracing::info!(subscription = %sid, %subscriber, attempt = d.attempts.saturating_add(1), wait_secs = wait, %why, "notification will be retried");
                        let wait_ms = i64::try_from(wait).unwrap_or(i64::MAX).saturating_mul(1000);
                        let due = self.clock.now_ms().saturating_add(wait_ms);
                        self.outbox
                            .retry_at(&d.id, d.attempts.saturating_add(1), due)
                            .await
                    }
                    None => {
                        tracing::warn!(subscription = %sid, %subscriber, attempts = d.attempts.saturating_add(1), %why, "notification retries exhausted");
                        self.outbox.complete(&d.id).await
                    }
                }
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot update the notification outbox");
        }
    }

    /// Expands a fan-out row and records the result: deleted once expanded
    /// (or malformed), tried again after a growing pause when the stores
    /// failed, however long that lasts.
    async fn deliver_fanout(&self, d: Delivery) {
        let outcome = self.expand(&d).await;
        crate::metrics::global().delivery(
            "fanout",
            match &outcome {
                Outcome::Delivered => "delivered",
                Outcome::GiveUp(_) => "dropped",
                Outcome::Retry(_) => "retry",
            },
        );
        let result = match outcome {
            Outcome::Delivered => self.outbox.complete(&d.id).await,
            Outcome::GiveUp(why) => {
                tracing::error!(queue = %d.delivery.queue, project = %d.delivery.project, %why, "fan-out row dropped");
                self.outbox.complete(&d.id).await
            }
            Outcome::Retry(why) => {
                let wait = 1u64
                    .checked_shl(d.attempts.min(16))
                    .unwrap_or(u64::MAX)
                    .min(FANOUT_RETRY_MAX_SECS);
                tracing::warn!(queue = %d.delivery.queue, project = %d.delivery.project, wait_secs = wait, %why, "fan-out will be retried");
                let due = self.clock.now_ms().saturating_add(wait as i64 * 1000);
                self.outbox
                    .retry_at(&d.id, d.attempts.saturating_add(1), due)
                    .await
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot update the notification outbox");
        }
    }

    /// One attempt on the subscriber's channel.
    async fn attempt(&self, d: &Delivery) -> Outcome {
        let subscriber = d.delivery.subscriber.as_str();
        let scheme = subscriber
            .split_once(':')
            .map(|(s, _)| s.to_ascii_lowercase())
            .unwrap_or_default();
        match scheme.as_str() {
            "http" | "https" => {
                webhook::post(&self.http, &self.policy, subscriber, &d.delivery, &[]).await
            }
            "trust+http" | "trust+https" => match &self.trusts {
                Some(t) => trust::post(t.as_ref(), &self.http, &self.policy, &d.delivery).await,
                None => Outcome::GiveUp(
                    "trust+ subscriber but no [trustee] Keystone credentials are configured".into(),
                ),
            },
            "mailto" => mailto::send(&self.config.notification, &d.delivery).await,
            "queue" => match &self.queues {
                Some(sink) => {
                    let target = &subscriber["queue:".len()..];
                    sink.copy(&d.delivery.project, target, &d.delivery.payload)
                        .await
                }
                None => Outcome::GiveUp("queue: subscriber but no queue sink".into()),
            },
            other => Outcome::GiveUp(format!("no channel for subscriber scheme {other:?}")),
        }
    }

    /// Nudges the dispatcher (after something was enqueued elsewhere).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// The `kind` label of the delivery metrics: the subscriber's channel.
fn delivery_kind(subscriber: &str) -> &'static str {
    let scheme = subscriber.split_once(':').map_or("", |(s, _)| s);
    if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
        "webhook"
    } else if scheme.to_ascii_lowercase().starts_with("trust+") {
        "trust"
    } else if scheme.eq_ignore_ascii_case("mailto") {
        "mailto"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use tokio::sync::Notify;

    use super::*;
    use crate::storage::clock::{Clock, ManualClock};
    use crate::storage::sqlite::SqliteStore;

    /// A subscriber URL on a loopback port that refuses connections (it was
    /// bound, then closed): every attempt fails and asks for a retry.
    fn refusing_subscriber() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        drop(listener);
        format!("http://127.0.0.1:{port}/hook")
    }

    fn loopback_config() -> Arc<Config> {
        let mut config = Config::default();
        config.notification.allowed_subscriber_networks = vec!["127.0.0.0/8".parse().unwrap()];
        config.notification.webhook_timeout = 5;
        Arc::new(config)
    }

    /// Defect: a `_retry_policy` stored before the API bounded it (here
    /// `maximum_delay` and the retry counts near 2^63, in the subscription
    /// options and the queue's policy of a durable outbox row) made the
    /// worker build the whole backoff series and abort the process, again
    /// after every restart. The delivery path clamps the stored policy.
    #[tokio::test]
    async fn a_stored_hostile_policy_is_clamped_at_delivery() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let clock = ManualClock::new();
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("zaqar.sqlite"), Arc::new(clock.clone()))
                .expect("open"),
        );
        let huge = 9_000_000_000_000_000_000_i64;
        let mut options = serde_json::Map::new();
        options.insert(
            "_retry_policy".into(),
            json!({"retries_with_no_delay": 0, "minimum_delay_retries": 0,
                   "minimum_delay": 5, "maximum_delay": huge, "maximum_delay_retries": huge}),
        );
        store
            .enqueue(vec![NewDelivery {
                project: "p".into(),
                queue: "q".into(),
                subscription_id: "s".into(),
                subscriber: refusing_subscriber(),
                options,
                queue_retry_policy: Some(json!({"maximum_delay": huge, "minimum_delay": -huge})),
                payload: json!({"body": 1}),
            }])
            .await
            .unwrap();
        let notifier = Notifier::new(
            store.clone(),
            loopback_config(),
            Arc::new(clock.clone()),
            Arc::new(Notify::new()),
        )
        .expect("notifier");

        // First failure: the first step of the clamped series, 5 s.
        let d = store.lease_due(1, 60_000).await.unwrap().remove(0);
        notifier.deliver(d).await;
        assert_eq!(
            store.next_due_ms().await.unwrap(),
            Some(clock.now_ms() + 5_000)
        );

        // The 1000th retry (the last one allowed) waits 5 + 5 * 999 s, the
        // series' step within the one-day bound.
        clock.advance_secs(5);
        let d = store.lease_due(1, 60_000).await.unwrap().remove(0);
        store.retry_at(&d.id, 999, clock.now_ms()).await.unwrap();
        let d = store.lease_due(1, 60_000).await.unwrap().remove(0);
        assert_eq!(d.attempts, 999);
        notifier.deliver(d).await;
        assert_eq!(
            store.next_due_ms().await.unwrap(),
            Some(clock.now_ms() + (5 + 5 * 999) * 1000)
        );

        // Past MAX_RETRIES (attempt counts from storage are not trusted
        // either): given up, the row is gone.
        clock.advance_secs(5 + 5 * 999);
        let d = store.lease_due(1, 60_000).await.unwrap().remove(0);
        store
            .retry_at(&d.id, u32::MAX, clock.now_ms())
            .await
            .unwrap();
        let d = store.lease_due(1, 60_000).await.unwrap().remove(0);
        notifier.deliver(d).await;
        assert_eq!(store.next_due_ms().await.unwrap(), None);
    }

    /// A post writes one outbox row whatever the number of subscribers (its
    /// cost must not grow with them); a worker expands it into one delivery
    /// per (message, subscriber), then deletes it. Subscribers unconfirmed
    /// under `require_confirmation` get nothing.
    #[tokio::test]
    async fn a_post_queues_one_row_that_a_worker_fans_out() {
        use crate::storage::{Metadata, NewSubscription};

        let dir = tempfile::tempdir().expect("temporary directory");
        let clock = ManualClock::new();
        let store = SqliteStore::open(&dir.path().join("zaqar.sqlite"), Arc::new(clock.clone()))
            .expect("open");
        let backend = store.backend();
        let outbox = backend.outbox.clone().expect("an outbox");
        let scope = Scope::new("p", "q");
        backend
            .queues
            .create(&scope, &Metadata::new())
            .await
            .unwrap();
        let mut confirmed = Vec::new();
        for i in 0..250 {
            let id = backend
                .subscriptions
                .create(
                    &scope,
                    &NewSubscription {
                        subscriber: format!("http://127.0.0.1:9/s/{i}"),
                        ttl: 3600,
                        options: Metadata::new(),
                    },
                )
                .await
                .unwrap()
                .expect("a new subscription");
            if i % 5 != 0 {
                backend
                    .subscriptions
                    .confirm(&scope, &id, true)
                    .await
                    .unwrap();
                confirmed.push(id);
            }
        }
        let mut config = (*loopback_config()).clone();
        config.notification.require_confirmation = true;
        let config = Arc::new(config);
        let wake = Arc::new(Notify::new());
        let ctx = StageContext {
            backend: backend.clone(),
            config: config.clone(),
            outbox_wake: wake.clone(),
        };
        let stage = notifier_stage(backend.messages.clone(), &ctx);
        let message = |n: i64| NewMessage {
            ttl: 300,
            delay: 0,
            body: serde_json::value::to_raw_value(&json!({"n": n})).unwrap(),
            checksum: None,
        };
        stage
            .post(&scope, "c", vec![message(1), message(2)])
            .await
            .unwrap();
        assert_eq!(outbox.depth().await.unwrap(), Some(1));

        let notifier = Notifier::new(outbox.clone(), config, Arc::new(clock.clone()), wake)
            .expect("notifier")
            .with_fanout(backend.subscriptions.clone(), backend.queues.clone());
        let mut rows = outbox.lease_due(10, 60_000).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].delivery.subscriber, FANOUT_SUBSCRIBER);
        notifier.deliver(rows.remove(0)).await;

        let rows = outbox.lease_due(10_000, 60_000).await.unwrap();
        assert_eq!(rows.len(), 2 * confirmed.len());
        let mut seen: Vec<(String, i64)> = rows
            .iter()
            .map(|d| {
                assert_eq!(d.delivery.payload["queue_name"], "q");
                (
                    d.delivery.subscription_id.clone(),
                    d.delivery.payload["body"]["n"].as_i64().unwrap(),
                )
            })
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 2 * confirmed.len());
        assert!(seen.iter().all(|(id, _)| confirmed.contains(id)));
    }
}
