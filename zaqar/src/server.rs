//! The server: builds the stores and the api core from a [`Config`], binds
//! the listeners and serves until a shutdown signal.
//!
//! [`serve`] takes listeners that are already bound and a shutdown future,
//! so tests can run a whole server on port 0 in-process and stop it.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api::policy::{Policy, PolicyError};
use crate::api::Api;
use crate::auth::{AuthConfigError, AuthLayer};
use crate::config::PipelineConfig;
use crate::config::{AuthStrategy, Config};
use crate::notification::{notifier_stage, NOTIFIER_STAGE};
use crate::storage::clock::SharedClock;
use crate::storage::engines;
use crate::storage::pipeline::{Backend, StageRegistry, Storage};
use crate::storage::pooling::{PoolOpener, PooledStore};
use crate::storage::StorageError;
use crate::storage::SystemClock;
use crate::transport::http::{self, HttpState};
use crate::transport::listener::{self, ConnectionLimits};
use crate::transport::websocket::hub::{Hub, PublishStage};
use crate::transport::websocket::{self, WsLimits, WsState};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    /// A pipeline names an unknown stage.
    #[error(transparent)]
    Pipeline(#[from] crate::storage::pipeline::UnknownStage),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// The policy file is missing or invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// `[keystone_authtoken]` is incomplete or invalid.
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    /// Something the configuration asks for is not available in this build.
    #[error("{0}")]
    Unsupported(String),
}

/// Builds the api core from the configuration (stores, pipelines).
///
/// # Errors
/// The store cannot be opened or a pipeline names an unknown stage.
pub fn build_api(config: Arc<Config>) -> Result<Api, StartError> {
    Ok(build(config)?.0)
}

/// Builds the api core and, when the WebSocket transport is on, the
/// registry of WebSocket subscriptions whose publishing stage is put in
/// front of the message pipeline (a built-in stage: it runs first, lets the
/// post through, then pushes the stored messages to listening connections).
///
/// # Errors
/// The store cannot be opened or a pipeline names an unknown stage.
pub fn build(config: Arc<Config>) -> Result<(Api, Option<Arc<Hub>>), StartError> {
    let clock: SharedClock = Arc::new(SystemClock);
    let wake = Arc::new(tokio::sync::Notify::new());
    let hub = config.serve_websocket.then(Hub::new);
    if let Some(hub) = &hub {
        hub.set_keyring(Arc::new(crate::storage::encryption::Keyring::from_config(
            &config.transport,
        )));
    }
    let storage = if config.pooling {
        pooled_storage(&config, clock.clone(), hub.as_ref(), wake)?
    } else {
        let backend = engines::open_configured(&config, clock.clone())?;
        stage_registry(hub.as_ref(), &backend).assemble_with(backend, config.clone(), wake)?
    };
    Ok((Api::new(storage, config, clock), hub))
}

/// The storage of a pooled deployment (see [`crate::storage::pooling`]):
/// the management store keeps the queue records, the catalogue and the
/// notification outbox; each pool gets a driver with the configured message,
/// claim and subscription stages; the queue stages, the notifier and the
/// WebSocket publisher run once, in front of the pooled driver.
fn pooled_storage(
    config: &Arc<Config>,
    clock: SharedClock,
    hub: Option<&Arc<Hub>>,
    wake: Arc<tokio::sync::Notify>,
) -> Result<Storage, StartError> {
    let management = match config.management_store.as_str() {
        "redis" => engines::open_pool(
            &config.management_redis.uri,
            &Default::default(),
            config,
            clock.clone(),
        )?,
        "mongodb" => engines::open_mongodb_management(config, clock.clone())?,
        _ => engines::open_pool(
            &format!("sqlite://{}", config.management_sqlite_path.display()),
            &Default::default(),
            config,
            clock.clone(),
        )?,
    };
    let catalogue = management.catalogue.clone().ok_or_else(|| {
        StartError::Unsupported("the management store keeps no pooling catalogue".into())
    })?;
    // The notifier runs once, in front of the pooled driver (below), even
    // where a pipeline names it.
    let mut message_pipeline = config.pipeline.message_pipeline.clone();
    message_pipeline.retain(|n| n != NOTIFIER_STAGE);
    let pool_config = Arc::new(Config {
        pipeline: PipelineConfig {
            queue_pipeline: Vec::new(),
            message_pipeline,
            ..config.pipeline.clone()
        },
        ..(**config).clone()
    });
    let pool_registry = stage_registry(None, &Backend::without_outbox(&management));
    let virtual_pool = if config.enable_virtual_pool {
        let backend = engines::open_configured(config, clock.clone())?;
        Some(pool_registry.assemble_with(
            Backend::without_outbox(&backend),
            pool_config.clone(),
            wake.clone(),
        )?)
    } else {
        None
    };
    let opener_clock = clock.clone();
    let opener_wake = wake.clone();
    let opener: PoolOpener = Arc::new(move |pool| {
        let backend = engines::open_named_pool(
            &pool.name,
            &pool.uri,
            &pool.options,
            &pool_config,
            opener_clock.clone(),
        )?;
        pool_registry
            .assemble_with(
                Backend::without_outbox(&backend),
                pool_config.clone(),
                opener_wake.clone(),
            )
            .map_err(|e| StorageError::Unavailable(e.to_string()))
    });
    let pooled = PooledStore::new(
        catalogue.clone(),
        management.queues.clone(),
        virtual_pool,
        opener,
    );
    let backend = Backend {
        queues: Arc::new(pooled.clone()),
        messages: Arc::new(pooled.clone()),
        claims: Arc::new(pooled.clone()),
        subscriptions: Arc::new(pooled.clone()),
        outbox: management.outbox.clone(),
        catalogue: Some(catalogue),
        // Pools are many stores: waiters rely on the poll across processes.
        wake_bus: None,
    };
    let top_config = Arc::new(Config {
        pipeline: PipelineConfig {
            queue_pipeline: config.pipeline.queue_pipeline.clone(),
            ..PipelineConfig::default()
        },
        ..(**config).clone()
    });
    let mut storage = stage_registry(hub, &backend).assemble_with(backend, top_config, wake)?;
    storage.pools = Some(pooled);
    Ok(storage)
}

/// The name of the stage that pushes posted messages to WebSocket
/// subscribers.
pub const WEBSOCKET_PUBLISH_STAGE: &str = "zaqar.transport.websocket.publish";

/// Every storage stage this server has, and which run by default:
///
/// - the WebSocket publisher (on whenever the WebSocket transport is
///   served, outermost: it pushes what every other stage let through);
/// - the notifier (`zaqar.notification.notifier`: on by default when the
///   driver keeps an outbox);
/// - the queue metadata cache and the tutorial's example stage (only when
///   a pipeline names them).
pub fn stage_registry(hub: Option<&Arc<Hub>>, backend: &Backend) -> StageRegistry {
    let mut registry = StageRegistry::default();
    if let Some(hub) = hub {
        let hub = hub.clone();
        registry
            .register_message_stage(WEBSOCKET_PUBLISH_STAGE, move |next, _| {
                PublishStage::wrap(next, hub.clone())
            })
            .on_by_default(WEBSOCKET_PUBLISH_STAGE);
    }
    registry.register_message_stage(NOTIFIER_STAGE, notifier_stage);
    if backend.outbox.is_some() {
        registry.on_by_default(NOTIFIER_STAGE);
    }
    crate::storage::stages::example::register(&mut registry);
    crate::storage::stages::metadata_cache::register(&mut registry);
    registry
}

/// Serves the HTTP API on `http` until `shutdown` completes, then lets
/// in-flight requests finish.
///
/// # Errors
/// The policy file or `[keystone_authtoken]` is invalid.
pub async fn serve(
    api: Api,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    serve_all(api, Some(http), None, shutdown).await
}

/// The policy and the auth layer the configuration asks for. Does not
/// contact Keystone.
///
/// # Errors
/// The policy file or `[keystone_authtoken]` is invalid.
pub fn build_access(
    config: &Config,
    clock: SharedClock,
) -> Result<(Policy, AuthLayer), StartError> {
    let policy = Policy::load(config)?;
    let auth = AuthLayer::from_config(config, clock)?;
    Ok((policy, auth))
}

/// Serves the HTTP API on `http` and the WebSocket API on `websocket` until
/// `shutdown` completes (one signal stops both), then lets in-flight HTTP
/// requests finish and closes WebSocket connections with 1001.
///
/// # Errors
/// The policy file or `[keystone_authtoken]` is invalid (checked before
/// anything is served).
pub async fn serve_all(
    api: Api,
    http: Option<TcpListener>,
    websocket: Option<(TcpListener, Arc<Hub>)>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let config = Arc::new(api.config().clone());
    let (policy, auth) = build_access(&config, api.clock())?;
    let api = api.with_policy(policy);
    if api.config().auth_strategy == AuthStrategy::None {
        tracing::warn!(
            "auth_strategy is empty (noauth): X-Project-ID and X-Roles are trusted, so any client can act for any \
             project and as admin"
        );
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut tasks = Vec::new();
    // Long polling: wake-ups from the other processes of the store, and
    // every waiting request answered at once on shutdown.
    let waiters = api.storage().waiters.clone();
    if let Some(bus) = api.storage().wake_bus.clone() {
        let waiters = waiters.clone();
        tokio::spawn(async move { bus.listen(waiters).await });
    }
    {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            waiters.close();
        });
    }
    if let Some(outbox) = api.storage().outbox.clone() {
        let config = config.clone();
        let wake = api.storage().outbox_wake.clone();
        match crate::notification::Notifier::new(outbox, config, api.clock(), wake) {
            Ok(notifier) => {
                let notifier = notifier.with_queue_sink(Arc::new(api.clone())).with_fanout(
                    api.storage().subscriptions.clone(),
                    api.storage().queues.clone(),
                );
                let mut stop = stop_rx.clone();
                tasks.push(tokio::spawn(notifier.run(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })));
            }
            Err(e) => tracing::error!(error = %e, "notifications are disabled"),
        }
    }
    // The policy reloader is not waited for: it holds no connection.
    tokio::spawn(reload_policy_on_change(api.clone(), stop_rx.clone()));
    if let Some((listener, hub)) = websocket {
        let limits = WsLimits {
            max_connections: config.websocket.max_connections,
            ..WsLimits::default()
        };
        let state = WsState::new(api.clone(), auth.clone(), hub, limits);
        tasks.push(tokio::spawn(websocket::serve(
            state,
            listener,
            ConnectionLimits::from(&config.websocket),
            stop_rx.clone(),
        )));
    }
    if let Some(listener) = http {
        let state = Arc::new(HttpState {
            api,
            auth,
            body_timeout: config.http.header_read_timeout,
        });
        let routes = http::routes(state);
        let limits = ConnectionLimits::from(&config.http);
        tasks.push(tokio::spawn(listener::serve(
            listener,
            routes,
            limits,
            stop_rx.clone(),
        )));
    }
    for task in tasks {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "a transport task failed");
        }
    }
    Ok(())
}

/// How often the policy file's modification time is looked at.
const POLICY_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Reloads the policy on SIGHUP, and when its file changes on disk (as
/// oslo.policy re-reads a changed file), until `stop`. Requests in flight
/// keep the rules they started with; no connection is touched. An invalid
/// file is logged and the rules in force stay.
async fn reload_policy_on_change(api: Api, mut stop: tokio::sync::watch::Receiver<bool>) {
    let path = Policy::file_of(api.config()).ok().flatten();
    let stamp = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| (m.modified().ok(), m.len()))
    };
    let mut seen = stamp(&path);
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        let hangup = async {
            #[cfg(unix)]
            if let Some(h) = hup.as_mut() {
                h.recv().await;
                return;
            }
            std::future::pending::<()>().await;
        };
        let why = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = hangup => "SIGHUP",
            () = tokio::time::sleep(POLICY_CHECK_INTERVAL) => {
                let now = stamp(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                "the policy file changed"
            }
        };
        match api.reload_policy() {
            Ok(()) => tracing::info!(reason = why, "policy reloaded"),
            Err(e) => {
                tracing::error!(reason = why, error = %e, "policy not reloaded: the rules in force stay");
            }
        }
    }
}

async fn bind(listen: &crate::config::Listen) -> Result<TcpListener, StartError> {
    let addr = std::net::SocketAddr::new(listen.bind, listen.port);
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Binds the configured listeners and serves until `shutdown`.
///
/// # Errors
/// The store cannot be opened, a pipeline is wrong, or a port cannot be bound.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let config = Arc::new(config);
    let (api, hub) = build(config.clone())?;
    let http = if config.serve_http {
        let listener = bind(&config.http).await?;
        tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            store = %config.message_store, "serving the Zaqar v2 HTTP API");
        Some(listener)
    } else {
        None
    };
    let websocket = match hub {
        Some(hub) => {
            let listener = bind(&config.websocket).await?;
            tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                "serving the Zaqar v2 WebSocket API");
            Some((listener, hub))
        }
        None => None,
    };
    // The stores outlive serving, to be closed while the runtime still runs.
    let stores = api.storage().clone();
    serve_all(api, http, websocket, shutdown).await?;
    #[cfg(feature = "mongodb")]
    crate::storage::mongodb::MongoStore::close_all().await;
    drop(stores);
    tracing::info!("stopped");
    Ok(())
}
