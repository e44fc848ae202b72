//! A lean HTTP/1.1 client: one keep-alive connection per worker.
//!
//! Each worker owns one [`Client`]; it never shares the connection, so the
//! number of connections is exactly the number of workers (as a `wrk` run
//! with one connection per worker would have it). A connection that fails is
//! dropped and the next request opens a new one; that failure is reported as
//! a transport error, never retried behind the caller's back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where the server is and what every request carries.
#[derive(Clone, Debug)]
pub struct Target {
    /// `host:port` to connect to.
    pub authority: String,
    /// Headers sent with every request (`Client-ID`, `X-Project-ID`,
    /// `X-Auth-Token`, `Host`, `Accept`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Limit for one request, connecting included.
    pub timeout: Duration,
    /// Connections opened by every client of this target (a server that
    /// does not keep connections alive shows here).
    pub connects: Arc<AtomicU64>,
}

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Connecting failed.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The HTTP exchange failed (connection closed, bad response).
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// The request took longer than the target's timeout.
    #[error("timed out")]
    Timeout,
    /// The request could not be built (a bad header value or path).
    #[error("request: {0}")]
    Request(#[from] http::Error),
}

/// An HTTP answer: status, body and the `Location` header.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: StatusCode,
    /// The whole body.
    pub body: Bytes,
    /// `Location`, when the server sent one.
    pub location: Option<String>,
}

/// One worker's connection to the server.
pub struct Client {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    /// A client for `target`; it connects on the first request.
    pub fn new(target: Target) -> Self {
        Client {
            target,
            sender: None,
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, TransportError> {
        self.target.connects.fetch_add(1, Ordering::Relaxed);
        let stream = TcpStream::connect(&self.target.authority)
            .await
            .map_err(TransportError::Connect)?;
        stream.set_nodelay(true).map_err(TransportError::Connect)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // The connection ends when the sender is dropped or the server closes it.
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Sends one request and reads the whole answer.
    ///
    /// # Errors
    /// The server could not be reached, closed the connection, or did not
    /// answer within the target's timeout. The connection is then dropped.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Answer, TransportError> {
        let timeout = self.target.timeout;
        match tokio::time::timeout(timeout, self.exchange(method, path, body)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                Err(TransportError::Timeout)
            }
        }
    }

    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Answer, TransportError> {
        let mut builder = Request::builder().method(method).uri(path);
        for (name, value) in &self.target.headers {
            builder = builder.header(name, value);
        }
        let request = match body {
            Some(b) => builder
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(Full::new(b))?,
            None => builder.body(Full::new(Bytes::new()))?,
        };
        let sender = match &mut self.sender {
            Some(s) if !s.is_closed() => s,
            _ => self.sender.insert(self.connect().await?),
        };
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let location = response
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            body,
            location,
        })
    }
}

/// The `Host` header value for an authority.
pub fn host_header(authority: &str) -> Option<(HeaderName, HeaderValue)> {
    HeaderValue::from_str(authority).ok().map(|v| (HOST, v))
}
