//! The storage pipeline: stages named in `[storage] *_pipeline`, assembled
//! in front of the driver.
//!
//! For each resource the order is the reference's: the driver's built-in
//! stages first, then the configured stages in the order they are listed,
//! then the driver. A stage is registered under a name with a constructor
//! that receives the store after it (and a [`StageContext`] with the other
//! resources' pipelines); naming an unknown stage is a start-up error.
//!
//! A message stage can be registered *on by default*
//! ([`StageRegistry::on_by_default`]): unless `message_pipeline` names it
//! (reference deployments name the notifier there, which places it where it
//! is named), it runs first, outermost, so it sees a post only after every
//! other stage and the driver accepted it. The registry is a mechanism: the
//! server decides which stages exist and which are on by default (the
//! notifier when the driver keeps an outbox, the WebSocket publisher when
//! that transport is served). A tutorial on writing stages is in
//! `doc/source/contributor/writing_pipeline_stages.rst`, with the example
//! stage of [`super::stages::example`].

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::outbox::Outbox;
use super::{ClaimStore, MessageStore, QueueStore, Scope, StorageResult, SubscriptionStore};
use crate::config::{Config, PipelineConfig};

/// The stores of one driver, before any stage is added.
#[derive(Clone)]
pub struct Backend {
    /// Queue records.
    pub queues: Arc<dyn QueueStore>,
    /// Messages.
    pub messages: Arc<dyn MessageStore>,
    /// Claims.
    pub claims: Arc<dyn ClaimStore>,
    /// Subscriptions ([`SubscriptionsUnsupported`] for a driver without them).
    pub subscriptions: Arc<dyn SubscriptionStore>,
    /// The notification outbox, when the driver keeps one; without it the
    /// notifier is not enabled by default.
    pub outbox: Option<Arc<dyn Outbox>>,
    /// The management plane of pooling (pools, flavors, catalogue), when
    /// the driver can be a management store.
    pub catalogue: Option<Arc<dyn super::catalogue::Catalogue>>,
    /// The store's broadcast of long-poll wake-ups between server
    /// processes, when it has one (see [`super::wake`]).
    pub wake_bus: Option<Arc<dyn super::wake::WakeBus>>,
}

impl Backend {
    /// The same stores without the outbox: a pool's pipeline carries no
    /// notifier of its own (the pooled deployment's one outbox is the
    /// management store's).
    pub fn without_outbox(backend: &Backend) -> Backend {
        Backend {
            outbox: None,
            ..backend.clone()
        }
    }
}

/// The subscription store of a driver that does not keep subscriptions
/// yet: every operation answers [`super::StorageError::NotImplemented`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SubscriptionsUnsupported;

impl SubscriptionStore for SubscriptionsUnsupported {}

/// The assembled pipelines, as the api core uses them.
#[derive(Clone)]
pub struct Storage {
    /// Queue pipeline.
    pub queues: Arc<dyn QueueStore>,
    /// Message pipeline.
    pub messages: Arc<dyn MessageStore>,
    /// Claim pipeline.
    pub claims: Arc<dyn ClaimStore>,
    /// Subscription pipeline.
    pub subscriptions: Arc<dyn SubscriptionStore>,
    /// The driver's notification outbox (confirmation requests are queued
    /// there too), when it has one.
    pub outbox: Option<Arc<dyn Outbox>>,
    /// Wakes the delivery workers after something was queued.
    pub outbox_wake: Arc<Notify>,
    /// The pooled driver, when queues are spread over pools: the pool and
    /// flavor operations and the health report go to it.
    pub pools: Option<super::pooling::PooledStore>,
    /// The long-polling requests of this process.
    pub waiters: Arc<super::wake::Waiters>,
    /// The store's broadcast of wake-ups between processes, if any.
    pub wake_bus: Option<Arc<dyn super::wake::WakeBus>>,
}

/// What a stage constructor may use besides the store after it.
#[derive(Clone)]
pub struct StageContext {
    /// The driver's stores (no stages), for stages that must read or write
    /// another resource directly.
    pub backend: Backend,
    /// The whole configuration: a stage reads its own options from
    /// [`Config::sections`] (a section named after the stage, by convention).
    pub config: Arc<Config>,
    /// Woken whenever deliveries are added to the outbox, so the delivery
    /// workers start at once instead of at their next poll.
    pub outbox_wake: Arc<Notify>,
}

/// Builds a stage of resource `S` in front of the store after it.
pub type StageFn<S> = Arc<dyn Fn(Arc<S>, &StageContext) -> Arc<S> + Send + Sync>;
/// Builds a queue stage in front of `next`.
pub type QueueStageFn = StageFn<dyn QueueStore>;
/// Builds a message stage in front of `next`.
pub type MessageStageFn = StageFn<dyn MessageStore>;
/// Builds a claim stage in front of `next`.
pub type ClaimStageFn = StageFn<dyn ClaimStore>;
/// Builds a subscription stage in front of `next`.
pub type SubscriptionStageFn = StageFn<dyn SubscriptionStore>;

/// A stage name that no registered stage answers to.
#[derive(Debug, thiserror::Error)]
#[error("[storage] {pipeline}: unknown stage {name:?} (known: {known})")]
pub struct UnknownStage {
    /// Which option named it (`queue_pipeline`, ...).
    pub pipeline: &'static str,
    /// The unknown name.
    pub name: String,
    /// The names that are registered for that pipeline.
    pub known: String,
}

/// Stage constructors by name.
#[derive(Clone, Default)]
pub struct StageRegistry {
    queue: BTreeMap<String, QueueStageFn>,
    message: BTreeMap<String, MessageStageFn>,
    claim: BTreeMap<String, ClaimStageFn>,
    subscription: BTreeMap<String, SubscriptionStageFn>,
    /// Message stages that run unless the configuration places them, in
    /// the order they were marked (the first is outermost).
    message_defaults: Vec<String>,
}

impl StageRegistry {
    /// Registers a subscription stage under `name`.
    pub fn register_subscription_stage(
        &mut self,
        name: &str,
        build: impl Fn(Arc<dyn SubscriptionStore>, &StageContext) -> Arc<dyn SubscriptionStore>
            + Send
            + Sync
            + 'static,
    ) -> &mut Self {
        self.subscription.insert(name.to_owned(), Arc::new(build));
        self
    }

    /// Registers a queue stage under `name`.
    pub fn register_queue_stage(
        &mut self,
        name: &str,
        build: impl Fn(Arc<dyn QueueStore>, &StageContext) -> Arc<dyn QueueStore>
            + Send
            + Sync
            + 'static,
    ) -> &mut Self {
        self.queue.insert(name.to_owned(), Arc::new(build));
        self
    }

    /// Registers a message stage under `name`.
    pub fn register_message_stage(
        &mut self,
        name: &str,
        build: impl Fn(Arc<dyn MessageStore>, &StageContext) -> Arc<dyn MessageStore>
            + Send
            + Sync
            + 'static,
    ) -> &mut Self {
        self.message.insert(name.to_owned(), Arc::new(build));
        self
    }

    /// Registers a claim stage under `name`.
    pub fn register_claim_stage(
        &mut self,
        name: &str,
        build: impl Fn(Arc<dyn ClaimStore>, &StageContext) -> Arc<dyn ClaimStore>
            + Send
            + Sync
            + 'static,
    ) -> &mut Self {
        self.claim.insert(name.to_owned(), Arc::new(build));
        self
    }

    /// Makes the message stage `name` run even when `message_pipeline`
    /// does not name it: first (outermost), before the configured stages,
    /// in the order stages were marked.
    pub fn on_by_default(&mut self, name: &str) -> &mut Self {
        if !self.message_defaults.iter().any(|n| n == name) {
            self.message_defaults.push(name.to_owned());
        }
        self
    }

    /// Checks that every configured name is registered.
    ///
    /// # Errors
    /// The first name that no stage answers to.
    pub fn check(&self, config: &PipelineConfig) -> Result<(), UnknownStage> {
        check_names("queue_pipeline", &config.queue_pipeline, &self.queue)?;
        check_names("message_pipeline", &config.message_pipeline, &self.message)?;
        check_names("claim_pipeline", &config.claim_pipeline, &self.claim)?;
        check_names(
            "subscription_pipeline",
            &config.subscription_pipeline,
            &self.subscription,
        )
    }

    /// Assembles the pipelines in front of `backend`, with a default
    /// configuration except for the stage lists (tests, tools).
    ///
    /// # Errors
    /// A configured stage name that is not registered.
    pub fn assemble(
        &self,
        backend: Backend,
        config: &PipelineConfig,
    ) -> Result<Storage, UnknownStage> {
        let settings = Config {
            pipeline: config.clone(),
            ..Config::default()
        };
        self.assemble_with(backend, Arc::new(settings), Arc::new(Notify::new()))
    }

    /// Assembles the pipelines named in `settings.pipeline` in front of
    /// `backend`; `outbox_wake` is handed to the stages (see [`StageContext`]).
    ///
    /// # Errors
    /// A configured stage name that is not registered.
    pub fn assemble_with(
        &self,
        backend: Backend,
        settings: Arc<Config>,
        outbox_wake: Arc<Notify>,
    ) -> Result<Storage, UnknownStage> {
        let mut pipeline = settings.pipeline.clone();
        self.check(&pipeline)?;
        let unplaced: Vec<String> = self
            .message_defaults
            .iter()
            .filter(|n| self.message.contains_key(*n) && !pipeline.message_pipeline.contains(n))
            .cloned()
            .collect();
        pipeline.message_pipeline.splice(0..0, unplaced);
        let config = &pipeline;
        let ctx = StageContext {
            backend: backend.clone(),
            config: settings.clone(),
            outbox_wake: outbox_wake.clone(),
        };
        let mut queues = backend.queues.clone();
        for name in config.queue_pipeline.iter().rev() {
            queues = (self.queue[name])(queues, &ctx);
        }
        let mut messages = backend.messages.clone();
        for name in config.message_pipeline.iter().rev() {
            messages = (self.message[name])(messages, &ctx);
        }
        let mut claims = backend.claims.clone();
        for name in config.claim_pipeline.iter().rev() {
            claims = (self.claim[name])(claims, &ctx);
        }
        let mut subscriptions = backend.subscriptions.clone();
        for name in config.subscription_pipeline.iter().rev() {
            subscriptions = (self.subscription[name])(subscriptions, &ctx);
        }
        // Built-in stages come first, as in the reference.
        let queues: Arc<dyn QueueStore> = Arc::new(QueueDeletePurgesMessages {
            next: queues,
            messages: backend.messages.clone(),
        });
        Ok(Storage {
            queues,
            messages,
            claims,
            subscriptions,
            outbox: backend.outbox.clone(),
            outbox_wake,
            pools: None,
            waiters: Arc::default(),
            wake_bus: backend.wake_bus.clone(),
        })
    }
}

fn check_names<T>(
    pipeline: &'static str,
    names: &[String],
    known: &BTreeMap<String, T>,
) -> Result<(), UnknownStage> {
    match names.iter().find(|n| !known.contains_key(*n)) {
        None => Ok(()),
        Some(name) => Err(UnknownStage {
            pipeline,
            name: name.clone(),
            known: if known.is_empty() {
                "none".to_owned()
            } else {
                known.keys().cloned().collect::<Vec<_>>().join(", ")
            },
        }),
    }
}

/// Built-in queue stage: deleting a queue first purges its messages and
/// claims from the message store, which may be another backend than the one
/// holding queue records.
struct QueueDeletePurgesMessages {
    next: Arc<dyn QueueStore>,
    messages: Arc<dyn MessageStore>,
}

#[async_trait]
impl QueueStore for QueueDeletePurgesMessages {
    fn next(&self) -> Option<&dyn QueueStore> {
        Some(self.next.as_ref())
    }

    async fn delete(&self, scope: &Scope) -> StorageResult<()> {
        self.messages.purge(scope).await?;
        self.next.delete(scope).await
    }
}
