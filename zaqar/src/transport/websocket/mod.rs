//! The WebSocket transport: the v2 API over persistent connections.
//!
//! A client connects on `[drivers:transport:websocket] bind:port` (any path)
//! and sends frames `{"action", "headers", "body"}` — JSON in text frames,
//! MessagePack in binary frames — and gets one response frame per request in
//! the same encoding. Like the HTTP transport this module only translates:
//! [`actions`] checks a frame's shape, [`handler`] applies the header rules
//! and policy and calls the same [`Api`] method HTTP calls, so validation,
//! limits and errors are the api core's. WebSocket subscriptions are pushed
//! from the [`hub`], fed by a message-pipeline stage.
//!
//! Limits ([`WsLimits`]): frame size, a bounded send queue per connection
//! (slow readers are disconnected), idle timeout with pings, a connection
//! cap; on shutdown every connection is closed with 1001.

pub mod actions;
pub mod auth;
pub mod connection;
pub mod frame;
pub mod handler;
pub mod hub;
pub mod upgrade;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use warp::filters::BoxedFilter;
use warp::reply::{Reply, Response};
use warp::Filter;

use super::listener::ConnectionLimits;
use crate::api::Api;
use crate::auth::AuthLayer;
use hub::Hub;

/// Limits of the WebSocket transport.
#[derive(Clone, Debug)]
pub struct WsLimits {
    /// Largest frame (and message) a client may send; a larger one closes
    /// the connection with 1009. Large enough for the biggest message post.
    pub max_frame_size: usize,
    /// Most frames waiting to be written to one client.
    pub send_queue_frames: usize,
    /// Most bytes waiting to be written to one client; past it the client
    /// is a slow reader and is disconnected.
    pub send_queue_bytes: usize,
    /// How often the server pings an idle client.
    pub ping_interval: Duration,
    /// A connection with no frame from the client (pongs count) for this
    /// long is closed.
    pub idle_timeout: Duration,
    /// How long one frame may take to be written before the client counts
    /// as not reading.
    pub write_timeout: Duration,
    /// Most simultaneous connections; more are refused with 503.
    pub max_connections: usize,
    /// How long shutdown waits for connections to close.
    pub shutdown_grace: Duration,
}

impl Default for WsLimits {
    fn default() -> Self {
        WsLimits {
            max_frame_size: 1024 * 1024,
            send_queue_frames: 64,
            send_queue_bytes: 4 * 1024 * 1024,
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            write_timeout: Duration::from_secs(20),
            max_connections: 4096,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// What the WebSocket transport needs to serve connections.
pub struct WsState {
    /// The api core.
    pub api: Api,
    /// Who frames act for (the same layer, and token cache, as HTTP).
    pub auth: AuthLayer,
    /// The WebSocket-subscription registry (the same one the publishing
    /// stage in the message pipeline feeds).
    pub hub: Arc<Hub>,
    /// Limits.
    pub limits: WsLimits,
    slots: Arc<Semaphore>,
}

impl WsState {
    /// The transport state; `hub` must be the one whose
    /// [`hub::PublishStage`] wraps `api`'s message pipeline.
    pub fn new(api: Api, auth: AuthLayer, hub: Arc<Hub>, limits: WsLimits) -> Arc<Self> {
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        Arc::new(WsState {
            api,
            auth,
            hub,
            limits,
            slots,
        })
    }

    /// Number of open connections.
    pub fn connections(&self) -> usize {
        self.limits.max_connections - self.slots.available_permits()
    }
}

/// The warp filter upgrading any request to a WebSocket connection (see
/// [`upgrade`] for why the handshake is ours).
pub fn routes(state: Arc<WsState>, shutdown: watch::Receiver<bool>) -> BoxedFilter<(Response,)> {
    upgrade::handshake()
        .map(move |handshake: Option<upgrade::Handshake>| {
            let Some(handshake) = handshake else {
                return upgrade::not_an_upgrade();
            };
            let state = state.clone();
            let shutdown = shutdown.clone();
            let Ok(permit) = state.slots.clone().try_acquire_owned() else {
                tracing::warn!(
                    max = state.limits.max_connections,
                    "websocket connection refused: limit reached"
                );
                return warp::reply::with_status(
                    "Too many connections.",
                    http::StatusCode::SERVICE_UNAVAILABLE,
                )
                .into_response();
            };
            let response = handshake.response();
            let max = state.limits.max_frame_size;
            tokio::spawn(async move {
                match handshake.socket(max).await {
                    Ok(socket) => connection::run(socket, state, shutdown, permit).await,
                    Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
                }
            });
            response
        })
        .boxed()
}

/// Serves WebSocket connections on `listener` until `shutdown` turns true,
/// then closes every connection with 1001 and waits (up to
/// [`WsLimits::shutdown_grace`]) for them to end.
pub async fn serve(
    state: Arc<WsState>,
    listener: TcpListener,
    connection_limits: ConnectionLimits,
    shutdown: watch::Receiver<bool>,
) {
    let routes = routes(state.clone(), shutdown.clone());
    super::listener::serve(listener, routes, connection_limits, shutdown).await;
    let all = state.limits.max_connections as u32;
    if tokio::time::timeout(state.limits.shutdown_grace, state.slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            open = state.connections(),
            "websocket connections still open after the shutdown grace"
        );
    }
}
