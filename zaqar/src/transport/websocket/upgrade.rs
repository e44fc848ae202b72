//! The WebSocket handshake (RFC 6455, section 4.2), answered here rather
//! than by warp's WebSocket filter, so that the buffers of a connection are
//! ours to size.
//!
//! warp gives no say over tungstenite's read buffer, which is allocated in
//! full when a connection opens (128 KiB): an idle connection cost about
//! 137 KiB, and 10,000 idle clients over a gigabyte. Here the read buffer
//! starts at [`READ_BUFFER`] and grows only while a larger frame is read;
//! nothing is written in advance. The handshake itself checks what warp's
//! filter checked (a `GET`, `Connection: upgrade`, `Upgrade: websocket`,
//! `Sec-WebSocket-Version: 13`, a key) and answers anything else with 400.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use warp::http::{header, HeaderMap, Method, StatusCode};
use warp::reply::{Reply, Response};
use warp::Filter;

/// An upgraded WebSocket connection.
pub type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// What a connection's read buffer starts with (it grows for larger
/// frames while they are read).
pub const READ_BUFFER: usize = 4 * 1024;

/// A valid upgrade request, ready to be answered.
pub struct Handshake {
    accept: String,
    on_upgrade: OnUpgrade,
}

impl Handshake {
    /// The `101 Switching Protocols` answer.
    pub fn response(&self) -> Response {
        let mut response = Response::default();
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("upgrade"),
        );
        headers.insert(
            header::UPGRADE,
            header::HeaderValue::from_static("websocket"),
        );
        if let Ok(accept) = header::HeaderValue::from_str(&self.accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        response
    }

    /// The connection once the client has switched protocols; frames
    /// larger than `max_frame` are refused.
    ///
    /// # Errors
    /// The connection ended before the upgrade completed.
    pub async fn socket(self, max_frame: usize) -> hyper::Result<Socket> {
        let upgraded = self.on_upgrade.await?;
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0)
            .max_frame_size(Some(max_frame))
            .max_message_size(Some(max_frame));
        Ok(
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await,
        )
    }
}

/// Extracts the handshake of an upgrade request; `None` for a request that
/// is not one (answer it with [`not_an_upgrade`]).
pub fn handshake(
) -> impl Filter<Extract = (Option<Handshake>,), Error = std::convert::Infallible> + Clone {
    warp::method()
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<OnUpgrade>())
        .map(
            |method: Method, headers: HeaderMap, on_upgrade: Option<OnUpgrade>| {
                check(&method, &headers, on_upgrade)
            },
        )
}

fn check(method: &Method, headers: &HeaderMap, on_upgrade: Option<OnUpgrade>) -> Option<Handshake> {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let key = headers.get(header::SEC_WEBSOCKET_KEY);
    let version_13 = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    match (key, on_upgrade) {
        (Some(key), Some(on_upgrade))
            if method == Method::GET
                && has(header::CONNECTION, "upgrade")
                && has(header::UPGRADE, "websocket")
                && version_13 =>
        {
            Some(Handshake {
                accept: derive_accept_key(key.as_bytes()),
                on_upgrade,
            })
        }
        _ => None,
    }
}

/// The answer to a request on the WebSocket port that is not an upgrade.
pub fn not_an_upgrade() -> Response {
    warp::reply::with_status(
        "This port serves the Zaqar WebSocket API: send a WebSocket upgrade \
         (GET with Connection: upgrade, Upgrade: websocket, \
         Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key).",
        StatusCode::BAD_REQUEST,
    )
    .into_response()
}
