//! Example stage: refuse messages whose body is larger than a limit.
//!
//! Enable it with
//!
//! ```ini
//! [storage]
//! message_pipeline = zaqar.stages.example.max_body_size
//!
//! [stages:max_body_size]
//! max_body_bytes = 1024
//! ```
//!
//! A post with any message whose JSON body is longer than `max_body_bytes`
//! bytes is then answered 400 "Invalid API request" with the description
//! `Message body is larger than 1024 bytes.`, and nothing of that post is
//! stored. Every other operation passes through untouched.

// ANCHOR: stage
use std::sync::Arc;

use async_trait::async_trait;

use crate::storage::pipeline::{StageContext, StageRegistry};
use crate::storage::{MessageStore, NewMessage, Posted, Scope, StorageError, StorageResult};

/// The name to list in `[storage] message_pipeline`.
pub const NAME: &str = "zaqar.stages.example.max_body_size";

/// The configuration section the stage reads its option from.
pub const SECTION: &str = "stages:max_body_size";

/// The limit used when `max_body_bytes` is not set.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4096;

/// A message stage that refuses posts with an oversized message body.
pub struct MaxBodySize {
    /// The store after this stage: another stage or the driver.
    next: Arc<dyn MessageStore>,
    /// Largest accepted body, in bytes of its JSON text.
    max_body_bytes: usize,
}

impl MaxBodySize {
    /// A stage in front of `next` with the given limit.
    pub fn new(next: Arc<dyn MessageStore>, max_body_bytes: usize) -> Self {
        MaxBodySize {
            next,
            max_body_bytes,
        }
    }
}

#[async_trait]
impl MessageStore for MaxBodySize {
    // Every method this stage does not override forwards to `next()`.
    fn next(&self) -> Option<&dyn MessageStore> {
        Some(self.next.as_ref())
    }

    // Act *before* the operation: check, then hand over to the next store.
    async fn post(
        &self,
        scope: &Scope,
        client_id: &str,
        messages: Vec<NewMessage>,
    ) -> StorageResult<Posted> {
        if let Some(m) = messages
            .iter()
            .find(|m| m.body.get().len() > self.max_body_bytes)
        {
            tracing::debug!(queue = %scope.queue, size = m.body.get().len(), "message body over the limit");
            return Err(StorageError::Rejected(format!(
                "Message body is larger than {} bytes.",
                self.max_body_bytes
            )));
        }
        self.next.post(scope, client_id, messages).await
    }
}
// ANCHOR_END: stage

// ANCHOR: register
/// The constructor the registry calls, once, when the pipeline is built.
pub fn build(next: Arc<dyn MessageStore>, ctx: &StageContext) -> Arc<dyn MessageStore> {
    let raw = ctx
        .config
        .sections
        .get(SECTION)
        .and_then(|s| s.get("max_body_bytes"));
    let max_body_bytes = match raw.map(|v| v.trim().parse::<usize>()) {
        None => DEFAULT_MAX_BODY_BYTES,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            tracing::error!(
                "[{SECTION}] max_body_bytes: {:?} is not a positive integer; using {DEFAULT_MAX_BODY_BYTES}",
                raw.map(String::as_str).unwrap_or_default()
            );
            DEFAULT_MAX_BODY_BYTES
        }
    };
    Arc::new(MaxBodySize::new(next, max_body_bytes))
}

/// Registers the stage under [`NAME`].
pub fn register(registry: &mut StageRegistry) {
    registry.register_message_stage(NAME, build);
}
// ANCHOR_END: register

// ANCHOR: tests
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use serde_json::value::to_raw_value;

    use super::*;
    use crate::config::PipelineConfig;
    use crate::storage::pipeline::StageRegistry;
    use crate::storage::sqlite::SqliteStore;
    use crate::storage::SystemClock;

    fn message(body: serde_json::Value) -> NewMessage {
        NewMessage {
            ttl: 60,
            delay: 0,
            body: to_raw_value(&body).unwrap(),
            checksum: None,
        }
    }

    #[tokio::test]
    async fn refuses_oversized_bodies_and_passes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db"), Arc::new(SystemClock)).unwrap();
        // Assemble the pipeline as the server does, from stage names.
        let config = PipelineConfig {
            message_pipeline: vec![NAME.to_owned()],
            ..Default::default()
        };
        let mut registry = StageRegistry::default();
        register(&mut registry);
        let storage = registry.assemble(store.backend(), &config).unwrap();
        let scope = Scope::new("p", "q");

        let big = message(json!("x".repeat(DEFAULT_MAX_BODY_BYTES)));
        let err = storage
            .messages
            .post(&scope, "c", vec![big])
            .await
            .unwrap_err();
        assert!(
            matches!(err, StorageError::Rejected(ref why) if why.contains("4096")),
            "{err:?}"
        );
        assert_eq!(storage.messages.stats(&scope).await.unwrap().total, 0);

        let ids = storage
            .messages
            .post(&scope, "c", vec![message(json!({"ok": 1}))])
            .await
            .unwrap()
            .ids;
        assert_eq!(ids.len(), 1);
    }
}
// ANCHOR_END: tests
