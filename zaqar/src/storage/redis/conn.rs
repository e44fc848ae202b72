//! The connection to Redis: one multiplexed connection (or a Cluster
//! connection) shared by every request, made lazily, remade after a failure.
//!
//! Each storage operation runs under a deadline (`request_timeout`). If
//! there is no connection, the operation tries to connect, up to
//! `max_reconnect_attempts` times with `reconnect_sleep·2^n` pauses, as long
//! as the deadline allows. Once a command has been sent it is never retried
//! (a script that may have run must not run twice): a failure drops the
//! connection, so that the next operation reconnects, and the operation
//! answers [`StorageError::Unavailable`]. With Sentinel, reconnecting asks
//! the sentinels for the current master, which is how a failover is
//! followed (the old master answers `READONLY` or drops the connection).

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use ::redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind,
    IntoConnectionInfo, Pipeline, RedisConnectionInfo, RedisError, RedisFuture, RedisResult,
    ServerErrorKind, TlsMode, Value,
};
use tokio::time::{sleep, timeout_at, Instant};

use super::options::{HostPort, RedisOptions, RedisTopology};
use crate::storage::{StorageError, StorageResult};

/// A live connection of either kind; cheap to clone.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server (standalone, unix socket or Sentinel's master).
    Single(MultiplexedConnection),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

enum Target {
    Single(Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    /// The client, and the nodes named in the URI (for pub/sub, which a
    /// Cluster broadcasts to every node: any one of them will do).
    Cluster(ClusterClient, Vec<ConnectionInfo>),
}

/// Makes, keeps and remakes the connection (see the module docs).
pub(crate) struct Connector {
    target: Target,
    config: AsyncConnectionConfig,
    current: Mutex<Option<Conn>>,
    connecting: tokio::sync::Mutex<()>,
    request_timeout: Duration,
    max_attempts: u32,
    reconnect_sleep: Duration,
}

fn tcp_addr(hp: &HostPort, tls: bool) -> ConnectionAddr {
    if tls {
        ConnectionAddr::TcpTls {
            host: hp.host.clone(),
            port: hp.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(hp.host.clone(), hp.port)
    }
}

fn config_error(e: RedisError) -> StorageError {
    StorageError::Unavailable(format!("invalid Redis configuration: {e}"))
}

impl Connector {
    /// Builds the connector; no connection is made yet.
    pub(crate) fn new(options: &RedisOptions) -> StorageResult<Self> {
        let mut redis_info = RedisConnectionInfo::default().set_db(options.db);
        if let Some(user) = &options.username {
            redis_info = redis_info.set_username(user);
        }
        if let Some(pass) = &options.password {
            redis_info = redis_info.set_password(pass);
        }
        let info = |addr: ConnectionAddr| -> StorageResult<ConnectionInfo> {
            Ok(addr
                .into_connection_info()
                .map_err(config_error)?
                .set_redis_settings(redis_info.clone()))
        };
        let target = match &options.topology {
            RedisTopology::Server(hp) => Target::Single(
                Client::open(info(tcp_addr(hp, options.tls))?).map_err(config_error)?,
            ),
            RedisTopology::Unix(path) => Target::Single(
                Client::open(info(ConnectionAddr::Unix(path.clone()))?).map_err(config_error)?,
            ),
            RedisTopology::Sentinel {
                sentinels,
                master,
                sentinel_username,
                sentinel_password,
            } => {
                let mut sentinel_info = RedisConnectionInfo::default();
                if let Some(user) = sentinel_username {
                    sentinel_info = sentinel_info.set_username(user);
                }
                if let Some(pass) = sentinel_password {
                    sentinel_info = sentinel_info.set_password(pass);
                }
                let nodes = sentinels
                    .iter()
                    .map(|hp| {
                        Ok(tcp_addr(hp, options.tls)
                            .into_connection_info()
                            .map_err(config_error)?
                            .set_redis_settings(sentinel_info.clone()))
                    })
                    .collect::<StorageResult<Vec<_>>>()?;
                let mut node_info = SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(redis_info.clone());
                if options.tls {
                    node_info = node_info.set_tls_mode(TlsMode::Secure);
                }
                let client = SentinelClient::build(
                    nodes,
                    master.clone(),
                    Some(node_info),
                    SentinelServerType::Master,
                )
                .map_err(config_error)?;
                Target::Sentinel(tokio::sync::Mutex::new(client))
            }
            RedisTopology::Cluster(nodes) => {
                let nodes = nodes
                    .iter()
                    .map(|hp| info(tcp_addr(hp, options.tls)))
                    .collect::<StorageResult<Vec<_>>>()?;
                let mut builder = ClusterClient::builder(nodes.clone())
                    .connection_timeout(options.socket_timeout)
                    .response_timeout(options.socket_timeout)
                    // Redirections are followed at once; a refusal (TRYAGAIN,
                    // CLUSTERDOWN) comes back after two short pauses (the
                    // crate's first pause, 1.28 s, would outlast the response
                    // timeout), and `run` keeps trying until the deadline.
                    .retries(2)
                    .min_retry_wait(10)
                    .max_retry_wait(100);
                if let Some(user) = &options.username {
                    builder = builder.username(user);
                }
                if let Some(pass) = &options.password {
                    builder = builder.password(pass);
                }
                if options.tls {
                    builder = builder.tls(TlsMode::Secure);
                }
                Target::Cluster(builder.build().map_err(config_error)?, nodes)
            }
        };
        Ok(Connector {
            target,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(options.socket_timeout))
                .set_response_timeout(Some(options.socket_timeout)),
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            request_timeout: options.request_timeout,
            max_attempts: options.max_reconnect_attempts.max(1),
            reconnect_sleep: options.reconnect_sleep,
        })
    }

    fn cached(&self) -> Option<Conn> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn invalidate(&self) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    async fn open(&self) -> RedisResult<Conn> {
        match &self.target {
            Target::Single(client) => Ok(Conn::Single(
                client
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await?,
            )),
            Target::Sentinel(sentinel) => {
                let client = sentinel.lock().await.async_get_client().await?;
                Ok(Conn::Single(
                    client
                        .get_multiplexed_async_connection_with_config(&self.config)
                        .await?,
                ))
            }
            Target::Cluster(client, _) => Ok(Conn::Cluster(client.get_async_connection().await?)),
        }
    }

    /// A new pub/sub connection: to the server; on Sentinel, to the current
    /// master (a failover breaks it, and the caller subscribes again, to the
    /// new one); on Cluster, to the first node of the URI that answers
    /// (Redis Cluster delivers a `PUBLISH` on any node to subscribers on
    /// every node).
    pub(crate) async fn pubsub(&self) -> RedisResult<::redis::aio::PubSub> {
        match &self.target {
            Target::Single(client) => client.get_async_pubsub().await,
            Target::Sentinel(sentinel) => {
                let client = sentinel.lock().await.async_get_client().await?;
                client.get_async_pubsub().await
            }
            Target::Cluster(_, nodes) => {
                let mut last = None;
                for node in nodes {
                    match Client::open(node.clone()) {
                        Ok(client) => match client.get_async_pubsub().await {
                            Ok(pubsub) => return Ok(pubsub),
                            Err(e) => last = Some(e),
                        },
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    ::redis::RedisError::from((ErrorKind::InvalidClientConfig, "no Cluster node"))
                }))
            }
        }
    }

    /// The current connection, connecting (with retries) when there is none.
    async fn connection(&self, deadline: Instant) -> StorageResult<Conn> {
        if let Some(conn) = self.cached() {
            return Ok(conn);
        }
        let unavailable =
            |why: String| StorageError::Unavailable(format!("cannot connect to Redis: {why}"));
        let _guard = timeout_at(deadline, self.connecting.lock())
            .await
            .map_err(|_| {
                unavailable("timed out waiting for another connection attempt".to_owned())
            })?;
        // Someone else may have connected while we waited.
        if let Some(conn) = self.cached() {
            return Ok(conn);
        }
        let mut pause = self.reconnect_sleep;
        let mut attempt = 1;
        loop {
            let error = match timeout_at(deadline, self.open()).await {
                Ok(Ok(conn)) => {
                    *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
                    return Ok(conn);
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out".to_owned(),
            };
            if attempt >= self.max_attempts || Instant::now() + pause >= deadline {
                tracing::warn!(attempt, error = %error, "Redis connection failed");
                return Err(unavailable(error));
            }
            sleep(pause).await;
            pause *= 2;
            attempt += 1;
        }
    }

    /// Runs `op` (named `what` in errors) on the connection within the deadline.
    ///
    /// `idempotent` operations (running them twice leaves the same state
    /// and answer as running them once) are tried once more on a fresh
    /// connection when the cached one turns out broken, as it is after
    /// Redis restarted; the others answer `Unavailable` at once, since the
    /// command may have run before the connection broke.
    ///
    /// Any operation is tried again, after a short pause growing to
    /// [`REFUSAL_PAUSE_MAX`], while Redis refuses it before running it
    /// ([`refused_unrun`]: a slot moving or a cluster electing a master), up
    /// to the deadline.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        what: &'static str,
        idempotent: bool,
        op: F,
    ) -> StorageResult<T>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let deadline = Instant::now() + self.request_timeout;
        let mut may_retry = idempotent;
        let mut pause = REFUSAL_PAUSE_MIN;
        loop {
            let conn = self.connection(deadline).await?;
            match timeout_at(deadline, op(conn)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) if refused_unrun(&e) && Instant::now() + pause < deadline => {
                    tracing::debug!(operation = what, error = %e, "Redis refused the operation before running it; retrying");
                    sleep(pause).await;
                    pause = (pause * 2).min(REFUSAL_PAUSE_MAX);
                }
                Ok(Err(e)) => {
                    if drops_connection(&e) {
                        self.invalidate();
                        if may_retry {
                            may_retry = false;
                            tracing::info!(operation = what, error = %e, "Redis connection broken; retrying");
                            continue;
                        }
                    }
                    tracing::warn!(operation = what, error = %e, "Redis operation failed");
                    return Err(StorageError::Unavailable(format!(
                        "Redis {what} failed: {e}"
                    )));
                }
                Err(_) => {
                    self.invalidate();
                    tracing::warn!(operation = what, "Redis operation timed out");
                    return Err(StorageError::Unavailable(format!(
                        "Redis did not complete {what} within {:?}",
                        self.request_timeout
                    )));
                }
            }
        }
    }
}

/// The first pause before an operation Redis refused is tried again.
const REFUSAL_PAUSE_MIN: Duration = Duration::from_millis(10);
/// The longest pause between tries of a refused operation.
const REFUSAL_PAUSE_MAX: Duration = Duration::from_millis(200);

/// Whether Redis refused the command before running any of it, so trying it
/// again is safe whatever it does: its slot is moving between masters
/// (`TRYAGAIN`, or a redirection the client gave up following), the cluster
/// is electing a master (`CLUSTERDOWN`), or the server is loading its data
/// (`LOADING`) or has lost its master (`MASTERDOWN`).
fn refused_unrun(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Server(
            ServerErrorKind::TryAgain
                | ServerErrorKind::Ask
                | ServerErrorKind::Moved
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::BusyLoading
                | ServerErrorKind::MasterDown
        )
    )
}

/// Errors after which the connection is not trusted any more. A script's
/// own error reply is the one kind that leaves it usable.
fn drops_connection(e: &RedisError) -> bool {
    !matches!(
        e.kind(),
        ErrorKind::Server(ServerErrorKind::ResponseError)
            | ErrorKind::Server(ServerErrorKind::NoScript)
            | ErrorKind::UnexpectedReturnType
            | ErrorKind::Parse
    )
}
