//! One WebSocket connection: a reader that answers frames in order, a
//! writer that owns the socket, and the bounded outbox between them.
//!
//! Everything sent to the client (responses, subscription deliveries,
//! pings, the close frame) goes through the writer. The outbox is bounded
//! in frames and in bytes; a client that does not read fast enough fills it
//! and is disconnected (close code 1008) rather than allowed to grow the
//! server's memory. The reader closes an idle connection (no frame, not even
//! a pong to the writer's pings, within the idle timeout), the writer
//! closes every connection with 1001 on shutdown, and a Keystone session is
//! closed with 4003 when its token expires.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, watch, OwnedSemaphorePermit};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::upgrade::Socket as WebSocket;

use super::auth::Session;
use super::frame::{self, Encoding};
use super::handler;
use super::WsState;
use crate::api::subscriptions::ConnectionSubscriptions;
use crate::error::ApiError;
use crate::storage::{Metadata, Scope, Subscription};

/// Close code: the server goes away (shutdown, idle connection).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: policy violation (the client does not read its frames).
pub const CLOSE_POLICY: u16 = 1008;
/// Close code: a frame larger than the limit.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code: the session's token expired.
pub const CLOSE_AUTH_EXPIRED: u16 = 4003;

/// Most live subscriptions one connection may hold (each is a listener of
/// one queue, with a task and a bounded backlog).
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 100;

/// The close reason sent on shutdown.
const SHUTDOWN_REASON: &str = "Server is shutting down.";

/// Why and how a connection is being closed.
type CloseRequest = Option<(u16, String)>;

/// The sending side shared by the reader and the subscription forwarders.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Message>,
    queued_bytes: Arc<AtomicUsize>,
    max_bytes: usize,
    close: Arc<watch::Sender<CloseRequest>>,
}

impl Outbox {
    /// Queues a frame; `false` (and the connection is being closed) when the
    /// client is too slow or the connection is gone.
    pub fn push(&self, msg: Message) -> bool {
        let n = msg.len();
        let before = self.queued_bytes.fetch_add(n, Ordering::AcqRel);
        if before > 0 && before + n > self.max_bytes {
            self.queued_bytes.fetch_sub(n, Ordering::AcqRel);
            self.slow_reader();
            return false;
        }
        match self.tx.try_send(msg) {
            Ok(()) => {
                crate::metrics::global().ws_frame("out");
                true
            }
            Err(e) => {
                self.queued_bytes.fetch_sub(n, Ordering::AcqRel);
                if matches!(e, mpsc::error::TrySendError::Full(_)) {
                    self.slow_reader();
                }
                false
            }
        }
    }

    /// Queues a document in `encoding`.
    pub fn push_doc(&self, doc: &Value, encoding: Encoding) -> bool {
        match frame::encode(doc, encoding) {
            Ok(bytes) => self.push(match encoding {
                Encoding::Json => Message::text(String::from_utf8(bytes).unwrap_or_default()),
                Encoding::MessagePack => Message::binary(bytes),
            }),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a websocket frame");
                true
            }
        }
    }

    fn slow_reader(&self) {
        tracing::info!("websocket client does not read its frames: disconnecting it");
        self.close(
            CLOSE_POLICY,
            "Send queue full: the client does not read fast enough.",
        );
    }

    /// Asks the writer to close the connection (the first request wins).
    pub fn close(&self, code: u16, reason: &str) {
        self.close.send_if_modified(|c| {
            if c.is_none() {
                *c = Some((code, reason.to_owned()));
                true
            } else {
                false
            }
        });
    }
}

/// A WebSocket subscription of this connection.
pub struct LocalSubscription {
    record: Subscription,
    scope: Scope,
    task: JoinHandle<()>,
}

/// The state of one connection, as the frame handler sees it.
pub struct Conn {
    /// Shared transport state.
    pub state: Arc<WsState>,
    /// Authentication state.
    pub session: Session,
    outbox: Outbox,
    id: String,
    /// The encoding of the frame being answered (new subscriptions push in it).
    encoding: Encoding,
    subscriptions: HashMap<String, LocalSubscription>,
}

impl Conn {
    /// This connection's id (names it as a subscriber).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Sets the encoding of the frame being answered.
    pub fn set_encoding(&mut self, encoding: Encoding) {
        self.encoding = encoding;
    }

    fn live(&self, scope: &Scope, id: &str) -> Option<&LocalSubscription> {
        self.subscriptions
            .get(id)
            .filter(|s| &s.scope == scope && !s.task.is_finished())
    }

    /// Ends every subscription (the connection is closing).
    async fn end_subscriptions(&mut self) {
        for (_, sub) in self.subscriptions.drain() {
            sub.task.abort();
            let _ = sub.task.await;
            self.state.hub.release(&sub.scope);
        }
    }
}

impl ConnectionSubscriptions for Conn {
    /// Starts pushing `scope`'s new messages to this connection, in the
    /// encoding of the frame that asked, for `ttl` seconds or until it
    /// closes (409 when it is subscribed there already, as the reference).
    fn subscribe(
        &mut self,
        scope: &Scope,
        ttl: i64,
        options: Metadata,
    ) -> Result<String, ApiError> {
        self.subscriptions.retain(|_, s| !s.task.is_finished());
        if self.subscriptions.values().any(|s| &s.scope == scope) {
            return Err(ApiError::Conflict(
                "This connection is subscribed to the queue already.".into(),
            ));
        }
        if self.subscriptions.len() >= MAX_SUBSCRIPTIONS_PER_CONNECTION {
            return Err(ApiError::invalid(format!(
                "A WebSocket connection may hold at most {MAX_SUBSCRIPTIONS_PER_CONNECTION} subscriptions; \
                 delete one first."
            )));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let mut rx = self.state.hub.subscribe(scope);
        let outbox = self.outbox.clone();
        let hub = self.state.hub.clone();
        let task_scope = scope.clone();
        let encoding = self.encoding;
        let lifetime = std::time::Duration::from_secs(ttl.max(0).unsigned_abs());
        let task = tokio::spawn(async move {
            let forward = async {
                loop {
                    match rx.recv().await {
                        Ok(doc) => {
                            if !outbox.push_doc(&doc, encoding) {
                                break;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            outbox.slow_reader();
                            break;
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                }
            };
            let _ = tokio::time::timeout(lifetime, forward).await;
            drop(rx);
            hub.release(&task_scope);
        });
        let now = self.state.api.now_ms();
        let record = Subscription {
            id: id.clone(),
            source: scope.queue.clone(),
            subscriber: format!("websocket:{}", self.id),
            ttl,
            expires_ms: now.saturating_add(ttl.saturating_mul(1000)),
            options,
            confirmed: true,
        };
        self.subscriptions.insert(
            id.clone(),
            LocalSubscription {
                record,
                scope: scope.clone(),
                task,
            },
        );
        Ok(id)
    }

    fn get(&self, scope: &Scope, id: &str) -> Option<Subscription> {
        self.live(scope, id).map(|s| s.record.clone())
    }

    fn list(&self, scope: &Scope) -> Vec<Subscription> {
        let mut own: Vec<&LocalSubscription> = self
            .subscriptions
            .values()
            .filter(|s| &s.scope == scope && !s.task.is_finished())
            .collect();
        own.sort_by_key(|s| s.record.expires_ms - s.record.ttl.saturating_mul(1000));
        own.into_iter().map(|s| s.record.clone()).collect()
    }

    fn unsubscribe(&mut self, scope: &Scope, id: &str) -> bool {
        if self.subscriptions.get(id).is_none_or(|s| &s.scope != scope) {
            return false;
        }
        let Some(sub) = self.subscriptions.remove(id) else {
            return false;
        };
        let live = !sub.task.is_finished();
        sub.task.abort();
        let hub = self.state.hub.clone();
        tokio::spawn(async move {
            let _ = sub.task.await;
            hub.release(&sub.scope);
        });
        live
    }
}

/// Serves one upgraded connection until it closes; `permit` is its slot
/// under the connection limit.
pub async fn run(
    socket: WebSocket,
    state: Arc<WsState>,
    shutdown: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) {
    let limits = state.limits.clone();
    let (sink, stream) = socket.split();
    let (tx, rx) = mpsc::channel(limits.send_queue_frames);
    let (close_tx, close_rx) = watch::channel::<CloseRequest>(None);
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let outbox = Outbox {
        tx,
        queued_bytes: queued_bytes.clone(),
        max_bytes: limits.send_queue_bytes,
        close: Arc::new(close_tx),
    };
    let writer = tokio::spawn(write_loop(
        sink,
        rx,
        queued_bytes,
        outbox.close.clone(),
        shutdown.clone(),
        limits.clone(),
    ));
    let mut conn = Conn {
        state,
        session: Session::default(),
        outbox: outbox.clone(),
        id: uuid::Uuid::new_v4().to_string(),
        encoding: Encoding::Json,
        subscriptions: HashMap::new(),
    };
    tracing::debug!(conn = %conn.id, "websocket connection open");
    crate::metrics::global().ws_connection(1);
    read_loop(&mut conn, stream, close_rx, shutdown.clone()).await;
    if *shutdown.borrow() {
        // However the reader noticed it (the signal, or the socket ending
        // under it), a shutdown closes with 1001.
        outbox.close(CLOSE_GOING_AWAY, SHUTDOWN_REASON);
    }
    conn.end_subscriptions().await;
    tracing::debug!(conn = %conn.id, "websocket connection closed");
    crate::metrics::global().ws_connection(-1);
    drop(conn);
    drop(outbox);
    let _ = tokio::time::timeout(limits.write_timeout, writer).await;
    drop(permit);
}

async fn read_loop(
    conn: &mut Conn,
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    mut closing: watch::Receiver<CloseRequest>,
    mut shutdown: watch::Receiver<bool>,
) {
    let idle = conn.state.limits.idle_timeout;
    loop {
        let expiry = conn.session.expires_at;
        let next = tokio::select! {
            biased;
            _ = closing.changed() => break,
            _ = stopped(&mut shutdown) => break,
            _ = async { match expiry { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {
                conn.session = Session::default();
                conn.outbox.close(CLOSE_AUTH_EXPIRED, "Authentication expired.");
                break;
            }
            next = tokio::time::timeout(idle, stream.next()) => next,
        };
        let msg = match next {
            Err(_) => {
                conn.outbox.close(CLOSE_GOING_AWAY, "Idle timeout.");
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                tracing::debug!(error = %e, "websocket read failed");
                if e.to_string().contains("too long")
                    || e.to_string().to_ascii_lowercase().contains("size")
                {
                    conn.outbox.close(CLOSE_TOO_BIG, "Frame too large.");
                }
                break;
            }
            Ok(Some(Ok(msg))) => msg,
        };
        let encoding = if msg.is_text() {
            Encoding::Json
        } else if msg.is_binary() {
            Encoding::MessagePack
        } else if msg.is_close() {
            break;
        } else {
            continue; // ping / pong: the connection is alive
        };
        crate::metrics::global().ws_frame("in");
        // Boxed: the state of a request in progress (the whole api call) is
        // allocated while a frame is answered, not for as long as the
        // connection is open; an idle connection keeps only the loop's own.
        let reply = Box::pin(handler::respond(conn, &msg.into_data(), encoding)).await;
        if !conn.outbox.push_doc(&reply, encoding) {
            break;
        }
    }
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Message>,
    queued_bytes: Arc<AtomicUsize>,
    close_tx: Arc<watch::Sender<CloseRequest>>,
    mut shutdown: watch::Receiver<bool>,
    limits: super::WsLimits,
) {
    let mut closing = close_tx.subscribe();
    let start = tokio::time::Instant::now() + limits.ping_interval;
    let mut ping = tokio::time::interval_at(start, limits.ping_interval);
    let close: CloseRequest = loop {
        tokio::select! {
            biased;
            _ = closing.changed() => break current(&closing),
            _ = stopped(&mut shutdown) => break Some((CLOSE_GOING_AWAY, SHUTDOWN_REASON.to_owned())),
            item = rx.recv() => match item {
                Some(msg) => {
                    let n = msg.len();
                    let sent = tokio::time::timeout(limits.write_timeout, sink.send(msg)).await;
                    queued_bytes.fetch_sub(n, Ordering::AcqRel);
                    match sent {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break None,
                        Err(_) => break Some((CLOSE_POLICY, "Write timeout: the client does not read.".to_owned())),
                    }
                }
                None if *shutdown.borrow() => break Some((CLOSE_GOING_AWAY, SHUTDOWN_REASON.to_owned())),
                None => break Some((1000, String::new())),
            },
            _ = ping.tick() => {
                match tokio::time::timeout(limits.write_timeout, sink.send(Message::Ping(Default::default()))).await {
                    Ok(Ok(())) => {}
                    _ => break None,
                }
            }
        }
    };
    if let Some((code, reason)) = close {
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            sink.send(Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            }))),
        )
        .await;
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), sink.close()).await;
    // Tell the reader (it may be waiting for a frame) that the socket is done.
    close_tx.send_if_modified(|c| {
        if c.is_none() {
            *c = Some((1006, String::new()));
            true
        } else {
            false
        }
    });
}

/// Completes when the shutdown signal is (or was) given.
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

fn current(closing: &watch::Receiver<CloseRequest>) -> CloseRequest {
    closing.borrow().clone()
}
