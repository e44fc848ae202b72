//! `GET /v2/health`: whether storage answers, and a timed run of every
//! storage operation on a throw-away queue of a throw-away project.

use std::future::Future;
use std::time::Instant;

use serde::Serialize;
use serde_json::value::RawValue;

use super::Api;
use crate::storage::pipeline::Storage;
use crate::storage::{
    ClaimRequest, ListQuery, MessageVolume, Metadata, NewMessage, Scope, StorageResult,
};

/// The result of one probed operation.
#[derive(Clone, Debug, Serialize)]
pub struct OperationStatus {
    /// Whether it worked.
    pub succeeded: bool,
    /// How long it took.
    pub seconds: f64,
    /// A reference logged with the failure, to find it in the logs.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
}

/// The health document.
#[derive(Clone, Debug, Serialize)]
pub struct Health {
    /// Whether the store answers at all.
    pub storage_reachable: bool,
    /// Each probed operation by the reference's name, in the order run.
    pub operation_status: serde_json::Map<String, serde_json::Value>,
    /// Message counts of the whole store, for stores that report them
    /// (MongoDB, as the reference's MongoDB driver does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_volume: Option<MessageVolume>,
}

/// Messages the probe posts.
const PROBE_MESSAGES: usize = 100;

impl Api {
    /// The health document: the probe of the store, or with pooling
    /// `{"catalog_reachable": bool, "<pool>": <its probe>, ...}` as the
    /// reference reports it.
    pub async fn health(&self) -> serde_json::Value {
        let Some(pooled) = &self.storage().pools else {
            let health = self.probe(self.storage()).await;
            return serde_json::to_value(health).unwrap_or_default();
        };
        let mut doc = serde_json::Map::new();
        let catalog_reachable = self.storage().queues.is_alive().await;
        doc.insert("catalog_reachable".into(), catalog_reachable.into());
        if !catalog_reachable {
            return serde_json::Value::Object(doc);
        }
        let pools = pooled
            .catalogue()
            .list_pools(None, crate::storage::catalogue::MAX_POOLS)
            .await
            .unwrap_or_default();
        for pool in pools {
            let health = match pooled.stores(&pool).await {
                Ok(stores) => self.probe(&stores).await,
                Err(e) => {
                    tracing::warn!(pool = %pool.name, error = %e, "pool cannot be opened for the health probe");
                    Health {
                        storage_reachable: false,
                        operation_status: serde_json::Map::new(),
                        message_volume: None,
                    }
                }
            };
            doc.insert(pool.name, serde_json::to_value(health).unwrap_or_default());
        }
        serde_json::Value::Object(doc)
    }

    /// Runs the health probe on one store's pipelines.
    async fn probe(&self, s: &Storage) -> Health {
        let storage_reachable = s.queues.is_alive().await;
        let mut ops = serde_json::Map::new();
        if !storage_reachable {
            return Health {
                storage_reachable,
                operation_status: ops,
                message_volume: None,
            };
        }
        let scope = Scope::new(
            format!("health-{}", uuid::Uuid::new_v4()),
            format!("health-{}", uuid::Uuid::new_v4().simple()),
        );
        let client = uuid::Uuid::new_v4().to_string();
        record(
            &mut ops,
            "create_queue",
            s.queues.create(&scope, &Metadata::new()),
        )
        .await;
        let body = RawValue::from_string("{\"event\":\"health probe\"}".into()).ok();
        let messages: Vec<NewMessage> = (0..PROBE_MESSAGES)
            .filter_map(|_| {
                Some(NewMessage {
                    ttl: 600,
                    delay: 0,
                    body: body.clone()?,
                    checksum: None,
                })
            })
            .collect();
        let ids = record(
            &mut ops,
            "post_messages",
            s.messages.post(&scope, &client, messages),
        )
        .await
        .unwrap_or_default()
        .ids;
        let request = ClaimRequest {
            ttl: 60,
            grace: 300,
            limit: self.limits().max_messages_per_claim_or_pop as usize,
            dead_letter: None,
        };
        let claim = record(
            &mut ops,
            "claim_messages",
            s.claims.create(&scope, &request),
        )
        .await
        .flatten();
        let query = ListQuery {
            marker: None,
            limit: self.limits().max_messages_per_page as usize,
            echo: true,
            client_id: client.clone(),
            include_claimed: true,
            include_delayed: true,
        };
        record(&mut ops, "list_messages", s.messages.list(&scope, &query)).await;
        if let Some(claim) = &claim {
            let deletes = async {
                for m in &claim.messages {
                    s.messages.delete(&scope, &m.id, Some(&claim.id)).await?;
                }
                Ok(())
            };
            record(&mut ops, "delete_messages", deletes).await;
            record(&mut ops, "delete_claim", s.claims.delete(&scope, &claim.id)).await;
        }
        record(
            &mut ops,
            "bulk_delete_messages",
            s.messages.bulk_delete(&scope, &ids, None),
        )
        .await;
        record(&mut ops, "delete_queue", s.queues.delete(&scope)).await;
        let message_volume = s.messages.volume().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "health: message volume could not be read");
            None
        });
        Health {
            storage_reachable,
            operation_status: ops,
            message_volume,
        }
    }
}

/// Times `op`, records its status under `name`, and returns its value.
async fn record<T>(
    ops: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
    op: impl Future<Output = StorageResult<T>>,
) -> Option<T> {
    let started = Instant::now();
    let result = op.await;
    let seconds = started.elapsed().as_secs_f64();
    let (succeeded, reference, value) = match result {
        Ok(v) => (true, None, Some(v)),
        Err(e) => {
            let reference = uuid::Uuid::new_v4().to_string();
            tracing::warn!(operation = name, %reference, error = %e, "health probe failed");
            (false, Some(reference), None)
        }
    };
    let status = OperationStatus {
        succeeded,
        seconds,
        reference,
    };
    ops.insert(
        name.to_owned(),
        serde_json::to_value(status).unwrap_or_default(),
    );
    value
}
