//! Serving a listener: the accept loop and the limits every connection
//! lives under, for both transports.
//!
//! warp's own server keeps every connection as long as the client likes, so
//! a few hundred clients that open a connection and never finish a request
//! head held descriptors until the process ran out and every other client
//! timed out. This loop owns the connections instead:
//!
//! - at most `max_connections` are served at once; past it the loop stops
//!   accepting (new clients wait in the kernel's backlog) until one closes;
//! - a new connection must deliver a whole request head within
//!   `header_read_timeout`, and a connection idle between requests must
//!   deliver the next head within `keepalive_timeout`, else it is closed
//!   (a request being answered is never cut by these);
//! - on shutdown the loop stops accepting, asks every connection to finish
//!   its request in flight and close, and returns once all are closed;
//! - an accept error (e.g. the process' descriptor limit) backs off instead
//!   of spinning;
//! - a connection the server closes first lingers, reading and dropping
//!   what the client still sends, so that its answer is not lost to a reset
//!   ([`super::lingering`]).
//!
//! Requests are answered by a warp filter; HTTP upgrades (WebSocket) are
//! handed over as warp expects, after which the upgraded connection is the
//! transport's to limit.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower_service::Service;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use super::lingering::Lingering;
use crate::config::Listen;

/// The limits of one listener's connections.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionLimits {
    /// Most connections served at once.
    pub max_connections: usize,
    /// Time a new connection has to deliver its first request head.
    pub header_read_timeout: Duration,
    /// Time an idle connection has to deliver its next request head.
    pub keepalive_timeout: Duration,
}

impl From<&Listen> for ConnectionLimits {
    fn from(listen: &Listen) -> Self {
        ConnectionLimits {
            max_connections: listen.max_connections,
            header_read_timeout: listen.header_read_timeout,
            keepalive_timeout: listen.keepalive_timeout,
        }
    }
}

/// Longest pause after failing accepts.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `routes` on `listener` until `shutdown` turns true, then waits
/// for every connection to finish its request in flight and close.
pub async fn serve(
    listener: TcpListener,
    routes: BoxedFilter<(Response,)>,
    limits: ConnectionLimits,
    shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let service = warp::service(routes);
    let mut stop = shutdown.clone();
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, pause_ms = backoff.as_millis() as u64, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(10);
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            service.clone(),
            limits.clone(),
            shutdown.clone(),
            permit,
        ));
    }
    drop(listener);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// What the requests of one connection are doing, for its deadlines.
///
/// The connection's loop is woken only when its deadline may have moved
/// earlier: at the end of the first request (the keep-alive timeout may be
/// shorter than the header-read one), and at the end of a request while
/// the loop waits with no deadline at all. Otherwise its armed timer is
/// never later than the current deadline (an idle deadline only moves
/// later), so the loop looks again when it fires: no wake-up and no new
/// timer per request.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    answered_one: AtomicBool,
    /// The loop is about to wait, or waits, with no deadline.
    unbounded: AtomicBool,
    idle_since: Mutex<Option<Instant>>,
    changed: Notify,
}

impl Activity {
    /// When the connection must have delivered its next request head, or
    /// `None` while a request is being answered.
    fn deadline(&self, opened: Instant, limits: &ConnectionLimits) -> Option<Instant> {
        // SeqCst, paired with `InFlight::drop`: either this sees the
        // request end, or the end sees `unbounded` and wakes the loop.
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        if !self.answered_one.load(Ordering::Acquire) {
            return Some(opened + limits.header_read_timeout);
        }
        let idle_since = *self.idle_since.lock().unwrap_or_else(|e| e.into_inner());
        Some(idle_since.unwrap_or(opened) + limits.keepalive_timeout)
    }
}

/// Marks a request in flight until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> InFlight {
        // No wake-up: a request in flight only removes the deadline, and
        // the loop finds that out when its timer fires.
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        *a.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        let first = !a.answered_one.swap(true, Ordering::AcqRel);
        a.in_flight.fetch_sub(1, Ordering::SeqCst);
        if first || a.unbounded.load(Ordering::SeqCst) {
            a.changed.notify_one();
        }
    }
}

async fn serve_connection<S>(
    stream: TcpStream,
    service: S,
    limits: ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) where
    S: Service<
            http::Request<hyper::body::Incoming>,
            Response = Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let opened = Instant::now();
    let activity = Arc::new(Activity::default());
    let tracked = activity.clone();
    let handler = hyper::service::service_fn(move |request: http::Request<_>| {
        let guard = InFlight::begin(&tracked);
        let mut service = service.clone();
        async move {
            // hyper lets a target without a path through (authority form,
            // `GET host:80`), and warp's `path::full()` panics on it.
            if request.uri().path_and_query().is_none() {
                drop(guard);
                return Ok(target_without_path());
            }
            let response = service.call(request).await;
            drop(guard);
            response
        }
    });
    let connection = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(Lingering::new(stream)), handler)
        .with_upgrades();
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        // Said before looking (see `Activity::deadline`).
        activity.unbounded.store(true, Ordering::SeqCst);
        let deadline = activity.deadline(opened, &limits);
        if deadline.is_some() {
            activity.unbounded.store(false, Ordering::SeqCst);
        }
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = activity.changed.notified() => {}
            _ = sleep_until(deadline) => {
                if activity.deadline(opened, &limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!("closing a connection that sent no complete request in time");
                    return;
                }
            }
            _ = stopped(&mut shutdown), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The answer to a request whose target has no path: 400, as the HTTP
/// API renders errors.
fn target_without_path() -> Response {
    let e = crate::error::ApiError::bad_request(
        "Invalid request target",
        "The request target must be a path (origin form, e.g. /v2/queues).",
    );
    let mut response = super::http::render::error(&e, &http::Method::GET);
    if let Ok(id) = http::HeaderValue::from_str(&format!("req-{}", uuid::Uuid::new_v4())) {
        response.headers_mut().insert("x-openstack-request-id", id);
    }
    response
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Completes when the shutdown signal is (or was) given.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|s| *s).await.is_err() {
        // The sender is gone: nobody can ask for a shutdown any more.
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use warp::Filter;

    /// Defect (found by the fuzz harness): `GET $ HTTP/1.1` (a target
    /// without a path) made warp's `path::full()` panic in the connection
    /// task; the client got no answer.
    #[tokio::test]
    async fn a_target_without_a_path_is_answered_400() {
        let routes = warp::path::full()
            .map(|p: warp::path::FullPath| Response::new(p.as_str().to_owned().into()))
            .boxed();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let limits = ConnectionLimits {
            max_connections: 4,
            header_read_timeout: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(5),
        };
        let server = tokio::spawn(serve(listener, routes, limits, stopped));
        for (target, status) in [("$", "400"), ("example.com:80", "400"), ("/a", "200")] {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.unwrap();
            let answer = String::from_utf8_lossy(&answer);
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status} ")),
                "{target}: {answer}"
            );
        }
        stop.send(true).unwrap();
        server.await.unwrap();
    }
}
