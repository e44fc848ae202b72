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
//!
//! A delayed message is pushed when its delay has passed. Until then the
//! hub keeps only its id and when it is due (at most [`MAX_DELAYED`] of
//! them), in one schedule served by one task; when it is due the body is
//! read from the store, and only if someone still listens to its queue.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::{broadcast, Notify};
use tokio::time::Instant;

use crate::storage::{MessageStore, NewMessage, Posted, Scope, StorageResult};

/// How many deliveries a listener may lag behind before it is cut off.
pub const LISTENER_BACKLOG: usize = 256;

/// Most delayed messages waiting to be pushed, over all listened queues;
/// past it new delayed messages are not pushed (WebSocket subscriptions
/// are best effort; the messages themselves are stored as usual).
pub const MAX_DELAYED: usize = 100_000;

/// One message pushed to listeners: the notification document.
pub type Delivery = Arc<Value>;

/// A delayed message waiting for its push: when, where, which.
type Due = Reverse<(Instant, u64, Scope, String)>;

/// The registry of listening connections, by (project, queue).
#[derive(Default)]
pub struct Hub {
    /// Opens bodies sealed at rest before they are pushed.
    keyring: OnceLock<Arc<crate::storage::encryption::Keyring>>,
    queues: Mutex<HashMap<(String, String), broadcast::Sender<Delivery>>>,
    delayed: Mutex<DelaySchedule>,
    delayed_added: Notify,
    scheduler: OnceLock<()>,
}

#[derive(Default)]
struct DelaySchedule {
    heap: BinaryHeap<Due>,
    seq: u64,
}

impl Hub {
    /// An empty registry.
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub::default())
    }

    /// Opens bodies of encrypted queues with `keyring` before pushing them.
    pub fn set_keyring(&self, keyring: Arc<crate::storage::encryption::Keyring>) {
        let _ = self.keyring.set(keyring);
    }

    /// The document pushed for a message, its body opened when sealed
    /// (`None`, logged, when it cannot be opened).
    fn document(&self, scope: &Scope, ttl: i64, body: &RawValue) -> Option<Value> {
        match self.keyring.get().map(|k| k.open(body)) {
            Some(Ok(Some(plain))) => Some(notification(&scope.queue, ttl, &plain)),
            Some(Err(e)) => {
                tracing::error!(queue = %scope.queue, project = %scope.project, error = %e, "cannot open an encrypted message for a websocket push");
                None
            }
            _ => Some(notification(&scope.queue, ttl, body)),
        }
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

    /// Pushes stored messages to `scope`'s listeners now; delayed ones are
    /// scheduled (ids only) and returned, for [`Hub::schedule`].
    pub fn publish(
        &self,
        scope: &Scope,
        ids: &[String],
        messages: &[NewMessage],
    ) -> Vec<(Duration, String)> {
        let Some(tx) = self.sender(scope) else {
            return Vec::new();
        };
        let mut delayed = Vec::new();
        for (id, m) in ids.iter().zip(messages) {
            if m.delay > 0 {
                delayed.push((Duration::from_secs(m.delay.unsigned_abs()), id.clone()));
            } else {
                // No receiver left is not an error: the queue was just released.
                if let Some(doc) = self.document(scope, m.ttl, &m.body) {
                    let _ = tx.send(Arc::new(doc));
                }
            }
        }
        delayed
    }

    /// Remembers delayed messages of `scope` to push when due; `false`
    /// when the schedule is full (they are then not pushed).
    fn schedule(&self, scope: &Scope, delayed: Vec<(Duration, String)>) -> bool {
        let now = Instant::now();
        let mut schedule = self.delayed.lock().unwrap_or_else(|e| e.into_inner());
        if schedule.heap.len() + delayed.len() > MAX_DELAYED {
            return false;
        }
        for (delay, id) in delayed {
            schedule.seq += 1;
            let seq = schedule.seq;
            schedule
                .heap
                .push(Reverse((now + delay, seq, scope.clone(), id)));
        }
        drop(schedule);
        self.delayed_added.notify_one();
        true
    }

    /// Number of delayed messages waiting to be pushed.
    pub fn delayed_waiting(&self) -> usize {
        self.delayed.lock().map(|s| s.heap.len()).unwrap_or(0)
    }

    /// The entries that are due, removed from the schedule; or when the
    /// next one will be.
    fn take_due(&self) -> Result<Vec<(Scope, String)>, Option<Instant>> {
        let now = Instant::now();
        let mut schedule = self.delayed.lock().unwrap_or_else(|e| e.into_inner());
        let mut due = Vec::new();
        while let Some(Reverse((at, _, _, _))) = schedule.heap.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, _, scope, id))) = schedule.heap.pop() {
                due.push((scope, id));
            }
        }
        if due.is_empty() {
            Err(schedule.heap.peek().map(|Reverse((at, ..))| *at))
        } else {
            Ok(due)
        }
    }

    /// Pushes delayed messages when due, reading each from `store` then
    /// (skipped when nobody listens to its queue any more, or it is gone).
    async fn run_schedule(self: Arc<Hub>, store: Arc<dyn MessageStore>) {
        loop {
            match self.take_due() {
                Ok(due) => {
                    for (scope, id) in due {
                        let Some(tx) = self.sender(&scope) else {
                            continue;
                        };
                        match store.get(&scope, &id).await {
                            Ok(Some(m)) => {
                                if let Some(doc) = self.document(&scope, m.ttl, &m.body) {
                                    let _ = tx.send(Arc::new(doc));
                                }
                            }
                            Ok(None) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "a delayed websocket push could not read its message")
                            }
                        }
                    }
                }
                Err(Some(at)) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.delayed_added.notified() => {}
                    }
                }
                Err(None) => self.delayed_added.notified().await,
            }
        }
    }
}

/// The document a listener receives for one message, exactly the
/// reference's: the message's `body` and `ttl`, its queue (`queue_name`, a
/// topic's `topic_name`) and `Message_Type: Notification`; no id.
pub fn notification(queue: &str, ttl: i64, body: &RawValue) -> Value {
    let mut doc = Map::new();
    doc.insert(
        "body".into(),
        serde_json::from_str(body.get()).unwrap_or(Value::Null),
    );
    doc.insert("ttl".into(), Value::from(ttl));
    let (key, name) = crate::storage::names::source_field(queue);
    doc.insert(key.into(), Value::from(name));
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
        let delayed = self.hub.publish(scope, &posted.ids, &copy);
        if !delayed.is_empty() {
            self.hub.scheduler.get_or_init(|| {
                tokio::spawn(self.hub.clone().run_schedule(self.next.clone()));
            });
            if !self.hub.schedule(scope, delayed) {
                tracing::warn!(
                    max = MAX_DELAYED,
                    "too many delayed websocket pushes waiting: some are not pushed"
                );
            }
        }
        Ok(posted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn msg(body: &str) -> NewMessage {
        delayed(body, 0)
    }

    fn delayed(body: &str, delay: i64) -> NewMessage {
        NewMessage {
            ttl: 60,
            delay,
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
        assert_eq!(
            *got,
            serde_json::json!({"body": {"k": [1]}, "ttl": 60, "queue_name": "a",
                               "Message_Type": "Notification"})
        );
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

    /// Issue 11, defect 8: each delayed message once held a task with its
    /// parsed body for the whole delay (+400 MB for 40 posts of 240 KB),
    /// even after the listener left. The hub now keeps ids only and reads
    /// bodies from the store when due, for queues still listened to.
    #[tokio::test]
    async fn delayed_messages_are_kept_as_ids_and_read_when_due() {
        let dir = tempfile::tempdir().unwrap();
        let clock: crate::storage::clock::SharedClock = Arc::new(crate::storage::SystemClock);
        let store = crate::storage::sqlite::SqliteStore::open(&dir.path().join("z.db"), clock)
            .unwrap()
            .backend();
        let hub = Hub::new();
        let stage = PublishStage::wrap(store.messages.clone(), hub.clone());
        let listened = Scope::new("p", "a");
        let abandoned = Scope::new("p", "b");
        for scope in [&listened, &abandoned] {
            store.queues.create(scope, &Map::new()).await.unwrap();
        }
        let mut rx = hub.subscribe(&listened);
        let gone = hub.subscribe(&abandoned);
        let big = format!("\"{}\"", "x".repeat(240 * 1024));
        let posted = stage
            .post(&listened, "c", vec![delayed(&big, 1), msg("1")])
            .await
            .unwrap();
        stage
            .post(&abandoned, "c", vec![delayed(&big, 1)])
            .await
            .unwrap();
        // the undelayed message is pushed at once; the delayed ones wait as ids
        assert_eq!(rx.recv().await.unwrap()["body"], 1);
        assert_eq!(posted.ids.len(), 2);
        assert_eq!(hub.delayed_waiting(), 2);
        let schedule_bytes: usize = hub
            .delayed
            .lock()
            .unwrap()
            .heap
            .iter()
            .map(|Reverse((_, _, scope, id))| scope.project.len() + scope.queue.len() + id.len())
            .sum();
        assert!(schedule_bytes < 1024, "the schedule holds no bodies");
        drop(gone);
        hub.release(&abandoned);
        let due = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("the delayed message is pushed when due")
            .unwrap();
        assert_eq!(due["body"].as_str().map(str::len), Some(240 * 1024));
        // the abandoned queue's entry was dropped without a push
        tokio::time::timeout(Duration::from_secs(30), async {
            while hub.delayed_waiting() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("every due entry leaves the schedule");
    }

    #[test]
    fn the_schedule_is_bounded() {
        let hub = Hub::new();
        let scope = Scope::new("p", "a");
        let many: Vec<(Duration, String)> = (0..MAX_DELAYED)
            .map(|i| (Duration::from_secs(60), i.to_string()))
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            assert!(hub.schedule(&scope, many));
            assert!(!hub.schedule(&scope, vec![(Duration::from_secs(1), "x".into())]));
            assert_eq!(hub.delayed_waiting(), MAX_DELAYED);
        });
    }
}
