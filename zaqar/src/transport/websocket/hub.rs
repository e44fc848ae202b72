//! WebSocket subscriptions: an in-process registry of the connections that
//! listen to a queue, fed by a message-store stage.
//!
//! `subscription_create` without a subscriber registers the connection for
//! (project, queue) in the [`Hub`]; the [`PublishStage`] sits in front of the
//! message pipeline and, once a post has been stored, publishes each new
//! message to that queue's listeners. Each listener holds a bounded
//! broadcast receiver: one that falls behind is a slow reader and its
//! connection is closed instead of buffering without end. Nothing here is
//! durable: a subscription lives as long as its connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use tokio::sync::broadcast;

use crate::storage::{MessageStore, NewMessage, Posted, Scope, StorageResult};

/// How many deliveries a listener may lag behind before it is cut off.
pub const LISTENER_BACKLOG: usize = 256;

/// One message pushed to listeners: the notification document.
pub type Delivery = Arc<Value>;

/// The registry of listening connections, by (project, queue).
#[derive(Default)]
pub struct Hub {
    queues: Mutex<HashMap<(String, String), broadcast::Sender<Delivery>>>,
}

impl Hub {
    /// An empty registry.
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub::default())
    }

    /// Starts listening to `scope`'s new messages.
    pub fn subscribe(&self, scope: &Scope) -> broadcast::Receiver<Delivery> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues
            .entry((scope.project.clone(), scope.queue.clone()))
            .or_insert_with(|| broadcast::channel(LISTENER_BACKLOG).0)
            .subscribe()
    }

    /// Forgets `scope` when nobody listens to it any more (called after a
    /// listener's receiver is dropped).
    pub fn release(&self, scope: &Scope) {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let key = (scope.project.clone(), scope.queue.clone());
        if queues.get(&key).is_some_and(|tx| tx.receiver_count() == 0) {
            queues.remove(&key);
        }
    }

    /// Number of queues with listeners.
    pub fn queues_listened(&self) -> usize {
        self.queues.lock().map(|q| q.len()).unwrap_or(0)
    }

    fn sender(&self, scope: &Scope) -> Option<broadcast::Sender<Delivery>> {
        let queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues
            .get(&(scope.project.clone(), scope.queue.clone()))
            .cloned()
    }

    /// Pushes stored messages to `scope`'s listeners; a delayed message is
    /// pushed when its delay has passed.
    pub fn publish(&self, scope: &Scope, ids: &[String], messages: &[NewMessage]) {
        let Some(tx) = self.sender(scope) else {
            return;
        };
        for (id, m) in ids.iter().zip(messages) {
            let doc = Arc::new(notification(&scope.queue, id, m));
            if m.delay > 0 {
                let tx = tx.clone();
                let delay = Duration::from_secs(m.delay as u64);
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(doc);
                });
            } else {
                // No receiver left is not an error: the queue was just released.
                let _ = tx.send(doc);
            }
        }
    }
}

/// The document a listener receives for one message: the message as posted
/// plus its id, its queue and `Message_Type: Notification` (the fields the
/// reference's notifications carry).
pub fn notification(queue: &str, id: &str, m: &NewMessage) -> Value {
    let mut doc = Map::new();
    doc.insert("id".into(), Value::from(id));
    doc.insert(
        "body".into(),
        serde_json::from_str(m.body.get()).unwrap_or(Value::Null),
    );
    doc.insert("ttl".into(), Value::from(m.ttl));
    doc.insert("queue_name".into(), Value::from(queue));
    doc.insert("Message_Type".into(), Value::from("Notification"));
    Value::Object(doc)
}

/// The message-pipeline stage that publishes posted messages to the hub
/// once the stores after it have accepted them.
pub struct PublishStage {
    next: Arc<dyn MessageStore>,
    hub: Arc<Hub>,
}

impl PublishStage {
    /// Puts the stage in front of `next`.
    pub fn wrap(next: Arc<dyn MessageStore>, hub: Arc<Hub>) -> Arc<dyn MessageStore> {
        Arc::new(PublishStage { next, hub })
    }
}

#[async_trait]
impl MessageStore for PublishStage {
    fn next(&self) -> Option<&dyn MessageStore> {
        Some(self.next.as_ref())
    }

    async fn post(
        &self,
        scope: &Scope,
        client_id: &str,
        messages: Vec<NewMessage>,
    ) -> StorageResult<Posted> {
        if self.hub.sender(scope).is_none() {
            return self.next.post(scope, client_id, messages).await;
        }
        let copy = messages.clone();
        let posted = self.next.post(scope, client_id, messages).await?;
        self.hub.publish(scope, &posted.ids, &copy);
        Ok(posted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn msg(body: &str) -> NewMessage {
        NewMessage {
            ttl: 60,
            delay: 0,
            body: RawValue::from_string(body.to_owned()).unwrap(),
            checksum: None,
        }
    }

    #[tokio::test]
    async fn listeners_get_new_messages_of_their_queue_only() {
        let hub = Hub::new();
        let a = Scope::new("p", "a");
        let mut rx = hub.subscribe(&a);
        hub.publish(&Scope::new("p", "b"), &["x".into()], &[msg("1")]);
        hub.publish(&Scope::new("other", "a"), &["y".into()], &[msg("2")]);
        hub.publish(&a, &["z".into()], &[msg(r#"{"k": [1]}"#)]);
        let got = rx.recv().await.unwrap();
        assert_eq!(got["id"], "z");
        assert_eq!(got["body"], serde_json::json!({"k": [1]}));
        assert_eq!(got["queue_name"], "a");
        assert_eq!(got["Message_Type"], "Notification");
        assert!(rx.try_recv().is_err());
        drop(rx);
        hub.release(&a);
        assert_eq!(hub.queues_listened(), 0);
    }

    #[tokio::test]
    async fn a_lagging_listener_is_told() {
        let hub = Hub::new();
        let a = Scope::new("p", "a");
        let mut rx = hub.subscribe(&a);
        for i in 0..LISTENER_BACKLOG + 1 {
            hub.publish(&a, &[i.to_string()], &[msg("1")]);
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
    }
}
