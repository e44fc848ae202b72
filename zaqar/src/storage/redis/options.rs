//! Connection options of the Redis driver and the URI forms that set them.
//!
//! `[drivers:message_store:redis] uri` (and the management store's) accepts:
//!
//! | Form | Meaning |
//! |---|---|
//! | `redis://[user:pass@]host[:port][/db][?opts]` | one server (port 6379) |
//! | `rediss://...` | the same over TLS (rustls; certificates checked against the system roots, or the bundle `SSL_CERT_FILE` names) |
//! | `redis://[user:pass@]h1[:p1],h2[:p2]?master=name[&opts]` | Sentinel (port 26379): the sentinels, and the master they watch |
//! | `redis://[user:pass@]/path/to/redis.sock[?opts]` | unix socket |
//! | `redis+cluster://[user:pass@]h1[:p1],h2[:p2][?opts]` (`rediss+cluster://` for TLS) | Redis Cluster: any reachable nodes, the rest is discovered |
//!
//! Options: `dbid` (database number, default 0; not on Cluster),
//! `socket_timeout` (seconds for connecting and for each reply, default
//! 1.0: the reference's 0.1 is too tight for a claim script on a long
//! queue), `request_timeout` (seconds a request may spend in total,
//! reconnecting included, default 5.0), `key_prefix` (first segment of
//! every key, default `zq`: deployments, or test servers, sharing one
//! Redis database each take their own; no braces), and for Sentinel `master`,
//! `sentinel_username`, `sentinel_password`. User and password go to the
//! Redis servers (the Sentinel-watched master included); percent-encode
//! reserved characters in them. Unknown options are ignored with a warning,
//! as the reference ignores them.

use std::path::PathBuf;
use std::time::Duration;

/// A host and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// Which Redis deployment to talk to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisTopology {
    /// One server over TCP.
    Server(HostPort),
    /// One server over a unix socket.
    Unix(PathBuf),
    /// The master that Sentinel names; followed across failovers.
    Sentinel {
        /// The sentinels to ask.
        sentinels: Vec<HostPort>,
        /// The master's name in the sentinels' configuration.
        master: String,
        /// User for the sentinels themselves.
        sentinel_username: Option<String>,
        /// Password for the sentinels themselves.
        sentinel_password: Option<String>,
    },
    /// A Redis Cluster, reached through any of these nodes.
    Cluster(Vec<HostPort>),
}

/// How the Redis driver connects, from the URI plus `[drivers:*:redis]`.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisOptions {
    /// Where Redis is.
    pub topology: RedisTopology,
    /// Speak TLS (`rediss://`).
    pub tls: bool,
    /// ACL user name (Redis 6+).
    pub username: Option<String>,
    /// Password (`AUTH`).
    pub password: Option<String>,
    /// Database number (`dbid`).
    pub db: i64,
    /// Limit for connecting and for each reply (`socket_timeout`).
    pub socket_timeout: Duration,
    /// Limit for one storage operation as a whole, reconnect attempts
    /// included: past it the operation fails with `Unavailable` (`request_timeout`).
    pub request_timeout: Duration,
    /// How many times one operation tries to (re)connect before giving up
    /// (`max_reconnect_attempts`, 10); always within `request_timeout`.
    pub max_reconnect_attempts: u32,
    /// Pause before the first reconnect attempt, doubled for each next one
    /// (`reconnect_sleep`, 1.0 s); always within `request_timeout`.
    pub reconnect_sleep: Duration,
    /// First segment of every key, so that several deployments (or tests)
    /// can share one Redis. Must not contain `{` or `}`.
    pub key_prefix: String,
    /// After each script, wait (Redis `WAIT`) until this many replicas
    /// acknowledged the writes before answering; 0 = do not wait
    /// (`[drivers:message_store:redis] wait_replicas`).
    pub wait_replicas: u32,
    /// Longest such wait; fewer replicas by then is [`Unavailable`]
    /// (`wait_timeout_ms`). Keep it below `request_timeout`.
    ///
    /// [`Unavailable`]: crate::storage::StorageError::Unavailable
    pub wait_timeout: Duration,
    /// Run the per-queue scripts as Redis 7's function library (`FCALL`),
    /// which builds their helpers once per node; false runs every script as
    /// `EVALSHA`, as happens by itself on a Redis without functions
    /// (`[drivers:message_store:redis] lua_functions`).
    pub lua_functions: bool,
}

impl RedisOptions {
    /// Options for `topology` with every other field at its default.
    pub fn new(topology: RedisTopology) -> Self {
        RedisOptions {
            topology,
            tls: false,
            username: None,
            password: None,
            db: 0,
            socket_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            max_reconnect_attempts: 10,
            reconnect_sleep: Duration::from_secs(1),
            key_prefix: "zq".to_owned(),
            wait_replicas: 0,
            wait_timeout: Duration::from_secs(1),
            lua_functions: true,
        }
    }

    /// Parses a connection URI (forms in the module docs).
    ///
    /// # Errors
    /// A message naming what is wrong with the URI.
    pub fn from_uri(uri: &str) -> Result<RedisOptions, String> {
        let (scheme, rest) = uri
            .split_once("://")
            .ok_or_else(|| format!("Redis URI {uri:?} has no scheme (expected redis://...)"))?;
        let (tls, cluster) = match scheme {
            "redis" => (false, false),
            "rediss" => (true, false),
            "redis+cluster" => (false, true),
            "rediss+cluster" => (true, true),
            other => {
                return Err(format!(
                    "unsupported scheme {other:?} in Redis URI (expected redis, rediss, \
                     redis+cluster or rediss+cluster)"
                ))
            }
        };
        let (before_query, query) = match rest.split_once('?') {
            Some((a, q)) => (a, q),
            None => (rest, ""),
        };
        let (authority, path) = match before_query.find('/') {
            Some(i) => before_query.split_at(i),
            None => (before_query, ""),
        };
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };

        let mut username = None;
        let mut password = None;
        if let Some(info) = userinfo {
            let (user, pass) = match info.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (info, None),
            };
            let user = percent_decode(user)?;
            let pass = pass.map(percent_decode).transpose()?;
            if !user.is_empty() && pass.as_deref().unwrap_or("").is_empty() {
                return Err("Redis URI gives a user name without a password".to_owned());
            }
            username = Some(user).filter(|u| !u.is_empty());
            password = pass.filter(|p| !p.is_empty());
        }

        let mut master = None;
        let mut sentinel_username = None;
        let mut sentinel_password = None;
        let mut db = None;
        let mut socket_timeout = None;
        let mut request_timeout = None;
        let mut key_prefix = None;
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = value.into_owned();
            match key.as_ref() {
                "master" => master = Some(value).filter(|v| !v.is_empty()),
                "sentinel_username" => sentinel_username = Some(value),
                "sentinel_password" => sentinel_password = Some(value),
                "dbid" => {
                    db = Some(
                        value
                            .parse::<i64>()
                            .ok()
                            .filter(|d| *d >= 0)
                            .ok_or_else(|| {
                                format!("Redis URI option dbid={value:?} is not a database number")
                            })?,
                    )
                }
                "socket_timeout" => socket_timeout = Some(seconds("socket_timeout", &value)?),
                "request_timeout" => request_timeout = Some(seconds("request_timeout", &value)?),
                "key_prefix" => {
                    if value.is_empty() || value.contains(['{', '}']) {
                        return Err(format!(
                            "Redis URI option key_prefix={value:?} must be non-empty, without braces"
                        ));
                    }
                    key_prefix = Some(value)
                }
                other => tracing::warn!(option = other, "ignoring unknown Redis URI option"),
            }
        }

        let path_db = match path {
            "" | "/" => None,
            p if !hosts.is_empty() => Some(p[1..].parse::<i64>().map_err(|_| {
                format!("Redis URI path {p:?} is not a database number (use ?dbid=N)")
            })?),
            _ => None,
        };

        let topology = if hosts.is_empty() {
            if path.is_empty() || path == "/" {
                return Err(format!(
                    "Redis URI {uri:?} names no host and no unix socket"
                ));
            }
            if cluster || master.is_some() {
                return Err("a unix socket cannot be used with Sentinel or Cluster".to_owned());
            }
            if tls {
                return Err("rediss:// (TLS) cannot be used with a unix socket".to_owned());
            }
            RedisTopology::Unix(PathBuf::from(percent_decode(path)?))
        } else {
            let default_port = if master.is_some() { 26379 } else { 6379 };
            let nodes = hosts
                .split(',')
                .map(|h| parse_host_port(h, default_port))
                .collect::<Result<Vec<_>, _>>()?;
            if cluster {
                if master.is_some() {
                    return Err(
                        "?master= (Sentinel) cannot be used with redis+cluster://".to_owned()
                    );
                }
                RedisTopology::Cluster(nodes)
            } else if let Some(master) = master {
                RedisTopology::Sentinel {
                    sentinels: nodes,
                    master,
                    sentinel_username: sentinel_username.take().filter(|s| !s.is_empty()),
                    sentinel_password: sentinel_password.take().filter(|s| !s.is_empty()),
                }
            } else if nodes.len() > 1 {
                return Err(
                    "a Redis URI with several hosts needs ?master=<name> (Sentinel) or the \
                     redis+cluster:// scheme (Redis Cluster)"
                        .to_owned(),
                );
            } else {
                RedisTopology::Server(nodes.into_iter().next().expect("one node"))
            }
        };
        if sentinel_username.is_some() || sentinel_password.is_some() {
            return Err("sentinel_username/sentinel_password need ?master=<name>".to_owned());
        }
        let db = db.or(path_db).unwrap_or(0);
        if db != 0 && matches!(topology, RedisTopology::Cluster(_)) {
            return Err("Redis Cluster has only database 0 (drop dbid)".to_owned());
        }

        let mut options = RedisOptions::new(topology);
        options.tls = tls;
        options.username = username;
        options.password = password;
        options.db = db;
        if let Some(t) = socket_timeout {
            options.socket_timeout = t;
        }
        if let Some(t) = request_timeout {
            options.request_timeout = t;
        }
        if let Some(p) = key_prefix {
            options.key_prefix = p;
        }
        Ok(options)
    }
}

fn seconds(name: &str, value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            format!("Redis URI option {name}={value:?} is not a positive number of seconds")
        })
}

fn parse_host_port(text: &str, default_port: u16) -> Result<HostPort, String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed '[' in Redis host {text:?}"))?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("bad Redis host {text:?}"))?,
                ),
            ),
        }
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(format!("empty host in Redis URI host list {text:?}"));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("bad port {p:?} for Redis host {host:?}"))?,
    };
    Ok(HostPort {
        host: host.to_owned(),
        port,
    })
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in Redis URI part {text:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("Redis URI part {text:?} is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn single_server_with_options() {
        let o = RedisOptions::from_uri("redis://u:p%40ss@example:6380?dbid=3&socket_timeout=0.5")
            .unwrap();
        assert_eq!(o.topology, RedisTopology::Server(hp("example", 6380)));
        assert_eq!(o.username.as_deref(), Some("u"));
        assert_eq!(o.password.as_deref(), Some("p@ss"));
        assert_eq!(o.db, 3);
        assert_eq!(o.socket_timeout, Duration::from_millis(500));
        assert!(!o.tls);
        let o = RedisOptions::from_uri("redis://localhost").unwrap();
        assert_eq!(o.topology, RedisTopology::Server(hp("localhost", 6379)));
        assert_eq!(o.max_reconnect_attempts, 10);
        assert_eq!(o.reconnect_sleep, Duration::from_secs(1));
        let o = RedisOptions::from_uri("redis://:secret@[::1]:7000/2").unwrap();
        assert_eq!(o.topology, RedisTopology::Server(hp("::1", 7000)));
        assert_eq!(
            (o.username, o.password.as_deref(), o.db),
            (None, Some("secret"), 2)
        );
    }

    #[test]
    fn tls_sentinel_unix_cluster() {
        assert!(RedisOptions::from_uri("rediss://h:6390").unwrap().tls);
        let o =
            RedisOptions::from_uri("redis://s1:1,s2?master=mymaster&sentinel_password=x").unwrap();
        assert_eq!(
            o.topology,
            RedisTopology::Sentinel {
                sentinels: vec![hp("s1", 1), hp("s2", 26379)],
                master: "mymaster".to_owned(),
                sentinel_username: None,
                sentinel_password: Some("x".to_owned()),
            }
        );
        let o = RedisOptions::from_uri("redis:///var/run/redis.sock?dbid=1").unwrap();
        assert_eq!(
            o.topology,
            RedisTopology::Unix("/var/run/redis.sock".into())
        );
        assert_eq!(o.db, 1);
        assert_eq!(o.key_prefix, "zq");
        let o = RedisOptions::from_uri("redis://h?key_prefix=zq-test-1").unwrap();
        assert_eq!(o.key_prefix, "zq-test-1");
        let o = RedisOptions::from_uri("redis+cluster://a:1,b:2").unwrap();
        assert_eq!(
            o.topology,
            RedisTopology::Cluster(vec![hp("a", 1), hp("b", 2)])
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let err = |u: &str| RedisOptions::from_uri(u).unwrap_err();
        assert!(err("mongodb://x").contains("unsupported scheme"));
        assert!(err("localhost:6379").contains("no scheme"));
        assert!(err("redis://a,b").contains("master"));
        assert!(err("redis://user@h").contains("without a password"));
        assert!(err("redis://h:0").contains("bad port"));
        assert!(err("redis://h?dbid=x").contains("dbid"));
        assert!(err("redis://h?socket_timeout=-1").contains("socket_timeout"));
        assert!(err("redis+cluster://h?dbid=1").contains("database 0"));
        assert!(err("redis://").contains("no host"));
        assert!(err("rediss:///tmp/s").contains("unix socket"));
        assert!(err("redis://h?sentinel_password=x").contains("master"));
        assert!(err("redis://h?key_prefix=a{b}").contains("key_prefix"));
        assert!(err("redis://h?key_prefix=").contains("key_prefix"));
    }
}
