//! Opening a store: the configured message store, or a pool's store from
//! its URI and options. One factory for both, so a pool of any kind opens
//! exactly as the same store configured alone would.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::clock::SharedClock;
use super::pipeline::Backend;
use super::sqlite::SqliteStore;
use super::{Metadata, StorageError, StorageResult};
use crate::config::{Config, RedisConfig, StoreEngine};

/// The engine a pool URI names, from its scheme.
///
/// # Errors
/// [`StorageError::Rejected`] for a scheme no engine of this build has.
pub fn engine_of(uri: &str) -> StorageResult<StoreEngine> {
    let scheme = uri
        .split_once(':')
        .map_or("", |(s, _)| s)
        .to_ascii_lowercase();
    match scheme.as_str() {
        "sqlite" => Ok(StoreEngine::Sqlite),
        "redis" | "rediss" | "redis+sentinel" | "redis+cluster" | "rediss+cluster" | "unix" => {
            Ok(StoreEngine::Redis)
        }
        "mongodb" => Ok(StoreEngine::Mongodb),
        _ => Err(StorageError::Rejected(format!(
            "{uri:?} is not the URI of a store this server can use (sqlite://, redis://, mongodb://)"
        ))),
    }
}

/// What the reference calls the capabilities of an engine: what a flavor
/// of its pools promises.
pub fn capabilities(engine: StoreEngine) -> &'static [&'static str] {
    match engine {
        StoreEngine::Sqlite => &["FIFO", "CLAIMS", "DURABILITY", "AOD"],
        StoreEngine::Redis => &["FIFO", "CLAIMS", "AOD", "HIGH_THROUGHPUT"],
        StoreEngine::Mongodb => &["FIFO", "CLAIMS", "DURABILITY", "AOD", "HIGH_THROUGHPUT"],
    }
}

/// Opens the configured message store.
///
/// # Errors
/// The store cannot be opened (SQLite: its directory or file; Redis: a URI
/// that makes no client).
pub fn open_configured(config: &Config, clock: SharedClock) -> StorageResult<Backend> {
    #[allow(unused_mut)]
    let mut backend = match config.message_store {
        StoreEngine::Sqlite => open_sqlite(&config.sqlite_path, clock.clone())?,
        StoreEngine::Redis => open_redis(
            &config.redis.uri,
            &config.redis,
            &Metadata::new(),
            clock.clone(),
        )?,
        StoreEngine::Mongodb => open_mongodb_configured(config, clock.clone())?,
    };
    // Without pooling, `management_store = mongodb` keeps the queue records
    // in its own section's database (the other engines keep them with the
    // messages).
    #[cfg(feature = "mongodb")]
    if config.management_store == "mongodb" && !config.pooling {
        if let Some(queues) =
            super::mongodb::management_queues(config, clock).map_err(StorageError::Rejected)?
        {
            backend.queues = queues;
        }
    }
    Ok(super::timed::wrap(
        backend,
        driver_name(config.message_store),
    ))
}

/// The `driver` label of the storage metrics.
fn driver_name(engine: StoreEngine) -> &'static str {
    match engine {
        StoreEngine::Sqlite => "sqlite",
        StoreEngine::Redis => "redis",
        StoreEngine::Mongodb => "mongodb",
    }
}

/// Opens a pool's store: its URI, with its options over the configured ones.
///
/// # Errors
/// [`StorageError::Rejected`] for a URI or option that cannot be used;
/// [`StorageError::Unavailable`] when the store cannot be opened.
pub fn open_pool(
    uri: &str,
    options: &Metadata,
    config: &Config,
    clock: SharedClock,
) -> StorageResult<Backend> {
    open_named_pool("", uri, options, config, clock)
}

/// [`open_pool`] for the pool `name`: its storage metrics carry the pool's
/// name.
///
/// # Errors
/// As [`open_pool`].
pub fn open_named_pool(
    name: &str,
    uri: &str,
    options: &Metadata,
    config: &Config,
    clock: SharedClock,
) -> StorageResult<Backend> {
    let engine = engine_of(uri)?;
    let backend = match engine {
        StoreEngine::Sqlite => {
            let path = uri
                .split_once("://")
                .map(|(_, p)| p)
                .filter(|p| !p.is_empty())
                .ok_or_else(|| StorageError::Rejected(format!("{uri:?} names no database file")))?;
            open_sqlite(Path::new(path), clock)
        }
        StoreEngine::Redis => open_redis(uri, &config.redis, options, clock),
        StoreEngine::Mongodb => open_mongodb_pool(uri, options, config, clock),
    }?;
    Ok(super::timed::wrap_pool(backend, driver_name(engine), name))
}

#[cfg(feature = "mongodb")]
fn open_mongodb_configured(config: &Config, clock: SharedClock) -> StorageResult<Backend> {
    use super::mongodb::{open_configured, options::MESSAGE_SECTION};
    let store = open_configured(config, MESSAGE_SECTION, clock).map_err(StorageError::Rejected)?;
    Ok(store.backend())
}

/// The management store of a pooled deployment on MongoDB: the
/// `[drivers:management_store:mongodb]` section, which keeps the queue
/// records, the catalogue, subscriptions and the notification outbox.
///
/// # Errors
/// [`StorageError::Rejected`] for a section that cannot be used.
#[cfg(feature = "mongodb")]
pub fn open_mongodb_management(config: &Config, clock: SharedClock) -> StorageResult<Backend> {
    use super::mongodb::{open_configured, options::MANAGEMENT_SECTION};
    let store =
        open_configured(config, MANAGEMENT_SECTION, clock).map_err(StorageError::Rejected)?;
    Ok(super::timed::wrap(store.backend(), "mongodb"))
}

/// The management store of a pooled deployment on MongoDB (not in this
/// build).
///
/// # Errors
/// Always: this build has no MongoDB driver.
#[cfg(not(feature = "mongodb"))]
pub fn open_mongodb_management(_: &Config, _: SharedClock) -> StorageResult<Backend> {
    Err(StorageError::Rejected(
        "this build has no MongoDB driver".into(),
    ))
}

/// A MongoDB pool: its URI, with its options as the options of a
/// `[drivers:message_store:mongodb]` section (`database`, `partitions`,
/// ...); nothing leaks from one pool's options to another's (the reference
/// shares them).
#[cfg(feature = "mongodb")]
fn open_mongodb_pool(
    uri: &str,
    options: &Metadata,
    config: &Config,
    clock: SharedClock,
) -> StorageResult<Backend> {
    use super::mongodb::options::{MongoOptions, MESSAGE_SECTION};
    use super::mongodb::MongoStore;
    let mut section: std::collections::HashMap<String, String> = options
        .iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect();
    section.insert("uri".into(), uri.to_owned());
    let sections = std::collections::BTreeMap::from([(MESSAGE_SECTION.to_owned(), section)]);
    let options = MongoOptions::from_sections(&sections, MESSAGE_SECTION, config.unreliable)
        .map_err(StorageError::Rejected)?;
    Ok(MongoStore::connect(options, clock)?.backend())
}

#[cfg(not(feature = "mongodb"))]
fn open_mongodb_configured(_: &Config, _: SharedClock) -> StorageResult<Backend> {
    Err(StorageError::Rejected(
        "this build has no MongoDB driver".into(),
    ))
}

#[cfg(not(feature = "mongodb"))]
fn open_mongodb_pool(
    uri: &str,
    _: &Metadata,
    _: &Config,
    _: SharedClock,
) -> StorageResult<Backend> {
    Err(StorageError::Rejected(format!(
        "{uri:?}: this build has no MongoDB driver"
    )))
}

fn open_sqlite(path: &Path, clock: SharedClock) -> StorageResult<Backend> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            StorageError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
    }
    Ok(SqliteStore::open(&PathBuf::from(path), clock)?.backend())
}

#[cfg(feature = "redis")]
fn open_redis(
    uri: &str,
    defaults: &RedisConfig,
    options: &Metadata,
    clock: SharedClock,
) -> StorageResult<Backend> {
    use super::redis::{RedisOptions, RedisStore, RedisTopology};
    let mut o = RedisOptions::from_uri(uri).map_err(StorageError::Rejected)?;
    let number = |key: &str| options.get(key).and_then(serde_json::Value::as_f64);
    o.max_reconnect_attempts = number("max_reconnect_attempts")
        .map_or(defaults.max_reconnect_attempts, |n| {
            n.clamp(0.0, 1000.0) as u32
        });
    o.reconnect_sleep = Duration::from_secs_f64(
        number("reconnect_sleep").map_or(defaults.reconnect_sleep, |n| n.clamp(0.0, 3600.0)),
    );
    o.wait_replicas =
        number("wait_replicas").map_or(defaults.wait_replicas, |n| n.clamp(0.0, 64.0) as u32);
    o.wait_timeout = Duration::from_millis(
        number("wait_timeout_ms")
            .map_or(defaults.wait_timeout_ms, |n| n.clamp(1.0, 60_000.0) as u64),
    );
    o.lua_functions = options
        .get("lua_functions")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(defaults.lua_functions);
    let replicated = matches!(
        o.topology,
        RedisTopology::Sentinel { .. } | RedisTopology::Cluster(_)
    );
    if replicated && o.wait_replicas == 0 {
        // Measured by the fault harness (doc/source/reliability.rst): a
        // master that dies takes the writes its replica had not received.
        tracing::warn!(
            "wait_replicas = 0 on a replicated Redis: a failover loses the writes acknowledged in the \
             last milliseconds before the master died; set wait_replicas = 1 to acknowledge only what a \
             replica holds"
        );
    }
    Ok(RedisStore::connect(o, clock)?.backend())
}

#[cfg(not(feature = "redis"))]
fn open_redis(uri: &str, _: &RedisConfig, _: &Metadata, _: SharedClock) -> StorageResult<Backend> {
    Err(StorageError::Rejected(format!(
        "{uri:?}: this build has no Redis driver"
    )))
}
