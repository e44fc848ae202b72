//! The storage pipeline: stages named in `[storage] *_pipeline`, assembled
//! in front of the driver.
//!
//! For each resource the order is the reference's: the driver's built-in
//! stages first, then the configured stages in the order they are listed,
//! then the driver. A stage is registered under a name with a constructor
//! that receives the store after it (and a [`StageContext`] with the other
//! resources' pipelines); naming an unknown stage is a start-up error.
//!
//! The notifier (`zaqar.notification.notifier`, see [`crate::notification`])
//! is on by default: when the driver keeps an outbox and no
//! `message_pipeline` names the notifier, it is put first (outermost) in the
//! message pipeline, so it sees a post only after every other stage and the
//! driver accepted it. Naming it in `message_pipeline` (as reference
//! deployments do) places it where it is named instead; it is never added
//! twice. A tutorial on writing stages is in
//! `doc/source/contributor/writing_pipeline_stages.rst`, with the example
//! stage of [`super::stages::example`].

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::outbox::Outbox;
use super::{ClaimStore, MessageStore, QueueStore, Scope, StorageResult, SubscriptionStore};
use crate::config::Config;

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

/// Builds a queue stage in front of `next`.
pub type QueueStageFn = fn(Arc<dyn QueueStore>, &StageContext) -> Arc<dyn QueueStore>;
/// Builds a message stage in front of `next`.
pub type MessageStageFn = fn(Arc<dyn MessageStore>, &StageContext) -> Arc<dyn MessageStore>;
/// Builds a claim stage in front of `next`.
pub type ClaimStageFn = fn(Arc<dyn ClaimStore>, &StageContext) -> Arc<dyn ClaimStore>;
/// Builds a subscription stage in front of `next`.
pub type SubscriptionStageFn =
    fn(Arc<dyn SubscriptionStore>, &StageContext) -> Arc<dyn SubscriptionStore>;

/// The names of the configured stages, one list per resource (`[storage]`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PipelineConfig {
    /// `[storage] queue_pipeline`.
    pub queue: Vec<String>,
    /// `[storage] message_pipeline`.
    pub message: Vec<String>,
    /// `[storage] claim_pipeline`.
    pub claim: Vec<String>,
    /// `[storage] subscription_pipeline`.
    pub subscription: Vec<String>,
}

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
}

impl StageRegistry {
    /// A registry with every stage this crate ships: the notifier
    /// (`zaqar.notification.notifier`) and the tutorial's example stage
    /// (`zaqar.stages.example.max_body_size`), and the queue metadata cache
    /// (`zaqar.stages.metadata_cache`).
    pub fn with_builtin_stages() -> Self {
        let mut registry = StageRegistry::default();
        registry.register_message_stage(
            crate::notification::NOTIFIER_STAGE,
            crate::notification::notifier_stage,
        );
        super::stages::example::register(&mut registry);
        super::stages::metadata_cache::register(&mut registry);
        registry
    }

    /// Registers a subscription stage under `name`.
    pub fn register_subscription_stage(
        &mut self,
        name: &str,
        build: SubscriptionStageFn,
    ) -> &mut Self {
        self.subscription.insert(name.to_owned(), build);
        self
    }

    /// Registers a queue stage under `name`.
    pub fn register_queue_stage(&mut self, name: &str, build: QueueStageFn) -> &mut Self {
        self.queue.insert(name.to_owned(), build);
        self
    }

    /// Registers a message stage under `name`.
    pub fn register_message_stage(&mut self, name: &str, build: MessageStageFn) -> &mut Self {
        self.message.insert(name.to_owned(), build);
        self
    }

    /// Registers a claim stage under `name`.
    pub fn register_claim_stage(&mut self, name: &str, build: ClaimStageFn) -> &mut Self {
        self.claim.insert(name.to_owned(), build);
        self
    }

    /// Checks that every configured name is registered.
    ///
    /// # Errors
    /// The first name that no stage answers to.
    pub fn check(&self, config: &PipelineConfig) -> Result<(), UnknownStage> {
        check_names("queue_pipeline", &config.queue, &self.queue)?;
        check_names("message_pipeline", &config.message, &self.message)?;
        check_names("claim_pipeline", &config.claim, &self.claim)?;
        check_names(
            "subscription_pipeline",
            &config.subscription,
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
        let notifier = crate::notification::NOTIFIER_STAGE;
        if backend.outbox.is_some()
            && !pipeline.message.iter().any(|n| n == notifier)
            && self.message.contains_key(notifier)
        {
            pipeline.message.insert(0, notifier.to_owned());
        }
        let config = &pipeline;
        let ctx = StageContext {
            backend: backend.clone(),
            config: settings.clone(),
            outbox_wake: outbox_wake.clone(),
        };
        let mut queues = backend.queues.clone();
        for name in config.queue.iter().rev() {
            queues = (self.queue[name])(queues, &ctx);
        }
        let mut messages = backend.messages.clone();
        for name in config.message.iter().rev() {
            messages = (self.message[name])(messages, &ctx);
        }
        let mut claims = backend.claims.clone();
        for name in config.claim.iter().rev() {
            claims = (self.claim[name])(claims, &ctx);
        }
        let mut subscriptions = backend.subscriptions.clone();
        for name in config.subscription.iter().rev() {
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
