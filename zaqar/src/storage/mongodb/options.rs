//! Options of the MongoDB driver: `[drivers:message_store:mongodb]` and
//! `[drivers:management_store:mongodb]`, with the reference's names and
//! defaults, read from the raw sections of `zaqar.conf`.
//!
//! | Option | Default | Bounds | Meaning |
//! |---|---|---|---|
//! | `uri` | `mongodb://127.0.0.1:27017` | `mongodb://` (any other scheme such as the reference's `mongodb.fifo://` is read as `mongodb://`); `mongodb+srv://` is refused (no DNS resolver in this build) | hosts, `replicaSet=`, `w=`, `journal=`, `tls=`/`ssl=`, `serverSelectionTimeoutMS` (default here 5000), `maxPoolSize` (default here 100), `socketTimeoutMS` (ours: the longest one storage operation may take, default 10000) ... |
//! | `database` | `zaqar` | 1..=40 bytes of `[A-Za-z0-9_-]` | base name of the databases (see the driver docs) |
//! | `partitions` | 2 | 1..=256 (message store only) | message databases `<database>_part<i>`; never change it after deployment |
//! | `max_attempts` | 1000 | 1..=100000 | tries of a post whose reservation raced another post to create the queue's counter |
//! | `max_retry_sleep` | 0.1 | 0..=60 s | longest pause between those tries (grows linearly with the try) |
//! | `max_retry_jitter` | 0.005 | 0..=60 s | random extra pause between those tries |
//! | `max_reconnect_attempts` | 10 | 0..=1000 | extra tries of an operation after a failover or a dropped connection |
//! | `reconnect_sleep` | 0.020 | 0..=60 s | first pause before such a try, doubled each time |
//! | `ssl_keyfile` | unset | readable file | private key of the client certificate (may be in `ssl_certfile` instead) |
//! | `ssl_certfile` | unset | readable file | client certificate (PEM) |
//! | `ssl_cert_reqs` | `CERT_REQUIRED` | `CERT_NONE`, `CERT_OPTIONAL`, `CERT_REQUIRED` | `CERT_NONE` accepts any server certificate |
//! | `ssl_ca_certs` | unset | readable file | CA certificates the server's certificate is checked against (else the public roots) |
//!
//! The `ssl_*` options apply when the URI turns TLS on (`ssl=true` or
//! `tls=true`), as in the reference. `[DEFAULT] unreliable` (read by
//! [`crate::config`]) allows a standalone server and a write concern below
//! a majority.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use mongodb::options::{Acknowledgment, ConnectionString};

/// The message store's section.
pub const MESSAGE_SECTION: &str = "drivers:message_store:mongodb";
/// The management store's section.
pub const MANAGEMENT_SECTION: &str = "drivers:management_store:mongodb";

/// Every option a section may hold; others are warned about.
const KNOWN: &[&str] = &[
    "uri",
    "database",
    "partitions",
    "max_attempts",
    "max_retry_sleep",
    "max_retry_jitter",
    "max_reconnect_attempts",
    "reconnect_sleep",
    "ssl_keyfile",
    "ssl_certfile",
    "ssl_cert_reqs",
    "ssl_ca_certs",
];

/// Default `uri`.
pub const DEFAULT_URI: &str = "mongodb://127.0.0.1:27017";
/// Default `serverSelectionTimeoutMS` when the URI does not set it: how
/// long an operation waits for a usable server before answering 503 (the
/// driver's own default, 30 s, would hold every request that long while
/// the database is down).
pub const DEFAULT_SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Default operation time limit (`socketTimeoutMS` in the URI).
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `maxPoolSize` when the URI does not set it (the driver's is 10,
/// too few for a busy API server).
pub const DEFAULT_MAX_POOL_SIZE: u32 = 100;

/// `ssl_cert_reqs`: whether the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertReqs {
    /// `CERT_NONE`: any certificate is accepted (no protection against a
    /// man in the middle; for tests only).
    None,
    /// `CERT_OPTIONAL`: as `CERT_REQUIRED` (a client always receives the
    /// server's certificate, so "if provided" means always).
    Optional,
    /// `CERT_REQUIRED` (default): the certificate must chain to a trusted CA.
    Required,
}

/// Why a write concern or topology is refused without `unreliable`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteConcernLevel {
    /// `w=majority` (our default) or a custom tag set.
    Majority,
    /// `w=<n>`.
    Nodes(u32),
}

/// The options of one MongoDB section, validated.
#[derive(Clone, Debug)]
pub struct MongoOptions {
    /// The section they came from (for messages).
    pub section: &'static str,
    /// The connection string as configured (a password may be in it: never log it).
    pub uri: String,
    /// The parsed connection string, with `socketTimeoutMS` taken out.
    pub connection: ConnectionString,
    /// Base database name.
    pub database: String,
    /// Number of message databases.
    pub partitions: u32,
    /// Tries of a post's reservation that raced another post to create the
    /// queue's counter.
    pub max_attempts: u32,
    /// Longest linear back-off between those tries.
    pub max_retry_sleep: Duration,
    /// Random extra back-off.
    pub max_retry_jitter: Duration,
    /// Extra tries after a failover or dropped connection.
    pub max_reconnect_attempts: u32,
    /// First pause before such a try (doubled each time).
    pub reconnect_sleep: Duration,
    /// `ssl_keyfile`.
    pub ssl_keyfile: Option<PathBuf>,
    /// `ssl_certfile`.
    pub ssl_certfile: Option<PathBuf>,
    /// `ssl_cert_reqs`.
    pub ssl_cert_reqs: CertReqs,
    /// `ssl_ca_certs`.
    pub ssl_ca_certs: Option<PathBuf>,
    /// `[DEFAULT] unreliable`: a standalone server or a write concern
    /// below a majority is accepted.
    pub unreliable: bool,
    /// Longest time one storage operation may take, retries included
    /// (`socketTimeoutMS`).
    pub operation_timeout: Duration,
}

impl MongoOptions {
    /// Options for `uri` with every other option at its default (tests).
    ///
    /// # Errors
    /// The URI is not a MongoDB connection string we can use.
    pub fn for_uri(uri: &str, database: &str) -> Result<MongoOptions, String> {
        let mut sections = BTreeMap::new();
        let section: HashMap<String, String> = [
            ("uri".to_owned(), uri.to_owned()),
            ("database".to_owned(), database.to_owned()),
        ]
        .into();
        sections.insert(MESSAGE_SECTION.to_owned(), section);
        MongoOptions::from_sections(&sections, MESSAGE_SECTION, false)
    }

    /// Reads and checks `section` (one of [`MESSAGE_SECTION`] and
    /// [`MANAGEMENT_SECTION`]) of `sections`.
    ///
    /// # Errors
    /// `[section] option: what is wrong`, naming the first bad option.
    pub fn from_sections(
        sections: &BTreeMap<String, HashMap<String, String>>,
        section: &'static str,
        unreliable: bool,
    ) -> Result<MongoOptions, String> {
        let empty = HashMap::new();
        let raw = sections.get(section).unwrap_or(&empty);
        for key in raw.keys() {
            if !KNOWN.contains(&key.as_str()) {
                tracing::warn!("unknown configuration option [{section}] {key} is ignored");
            }
        }
        let get = |option: &str| raw.get(option).map(|v| v.trim()).filter(|v| !v.is_empty());
        let bad = |option: &str, why: String| format!("[{section}] {option}: {why}");

        let uri = get("uri").unwrap_or(DEFAULT_URI).to_owned();
        let (connection, operation_timeout) = parse_uri(&uri).map_err(|why| bad("uri", why))?;

        let database = get("database").unwrap_or("zaqar").to_owned();
        if database.is_empty()
            || database.len() > 40
            || !database
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(bad(
                "database",
                format!("{database:?} is not 1 to 40 characters of letters, digits, '_' and '-'"),
            ));
        }

        let int = |option: &str, default: u32, min: u32, max: u32| -> Result<u32, String> {
            match get(option) {
                None => Ok(default),
                Some(v) => v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| {
                        bad(
                            option,
                            format!("{v:?} is not a whole number between {min} and {max}"),
                        )
                    }),
            }
        };
        let secs = |option: &str, default: f64| -> Result<Duration, String> {
            match get(option) {
                None => Ok(Duration::from_secs_f64(default)),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && (0.0..=60.0).contains(s))
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| {
                        bad(
                            option,
                            format!("{v:?} is not a number of seconds between 0 and 60"),
                        )
                    }),
            }
        };
        let file = |option: &str| -> Result<Option<PathBuf>, String> {
            match get(option) {
                None => Ok(None),
                Some(path) => {
                    std::fs::metadata(path)
                        .map_err(|e| bad(option, format!("cannot read {path:?}: {e}")))?;
                    Ok(Some(PathBuf::from(path)))
                }
            }
        };
        let ssl_cert_reqs = match get("ssl_cert_reqs").unwrap_or("CERT_REQUIRED") {
            "CERT_NONE" => CertReqs::None,
            "CERT_OPTIONAL" => CertReqs::Optional,
            "CERT_REQUIRED" => CertReqs::Required,
            other => {
                return Err(bad(
                    "ssl_cert_reqs",
                    format!("{other:?} is not one of CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED"),
                ))
            }
        };
        Ok(MongoOptions {
            section,
            uri,
            connection,
            database,
            partitions: int("partitions", 2, 1, 256)?,
            max_attempts: int("max_attempts", 1000, 1, 100_000)?,
            max_retry_sleep: secs("max_retry_sleep", 0.1)?,
            max_retry_jitter: secs("max_retry_jitter", 0.005)?,
            max_reconnect_attempts: int("max_reconnect_attempts", 10, 0, 1000)?,
            reconnect_sleep: secs("reconnect_sleep", 0.020)?,
            ssl_keyfile: file("ssl_keyfile")?,
            ssl_certfile: file("ssl_certfile")?,
            ssl_cert_reqs,
            ssl_ca_certs: file("ssl_ca_certs")?,
            unreliable,
            operation_timeout,
        })
    }

    /// The write concern the URI asks for (`w`), `Majority` when it does
    /// not say.
    pub fn write_concern_level(&self) -> WriteConcernLevel {
        match self
            .connection
            .write_concern
            .as_ref()
            .and_then(|wc| wc.w.clone())
        {
            Some(Acknowledgment::Nodes(n)) => WriteConcernLevel::Nodes(n),
            _ => WriteConcernLevel::Majority,
        }
    }

    /// Whether TLS is on (`tls=true` or `ssl=true` in the URI).
    pub fn tls(&self) -> bool {
        matches!(self.connection.tls, Some(mongodb::options::Tls::Enabled(_)))
    }
}

/// Parses the URI, the reference's way: whatever the scheme says
/// (`mongodb.fifo://`...), the rest is a `mongodb://` connection string.
/// `socketTimeoutMS`, which the Rust driver refuses, becomes the operation
/// time limit.
fn parse_uri(uri: &str) -> Result<(ConnectionString, Duration), String> {
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| "the URI has no scheme (expected mongodb://host:port/...)".to_owned())?;
    if scheme == "mongodb+srv" {
        return Err(
            "mongodb+srv:// needs DNS SRV lookups, which this build does not do: list the hosts \
             in a mongodb:// URI"
                .to_owned(),
        );
    }
    if !scheme.starts_with("mongodb") {
        return Err(format!(
            "unsupported scheme {scheme:?} (expected mongodb://)"
        ));
    }
    let mut connection = ConnectionString::parse(format!("mongodb://{rest}"))
        .map_err(|e| format!("not a usable MongoDB connection string: {}", e.kind))?;
    #[allow(deprecated)]
    let timeout = connection
        .socket_timeout
        .take()
        .filter(|t| !t.is_zero())
        .unwrap_or(DEFAULT_OPERATION_TIMEOUT);
    if connection
        .write_concern
        .as_ref()
        .and_then(|wc| wc.w.as_ref())
        .is_some_and(|w| matches!(w, Acknowledgment::Nodes(0)))
    {
        return Err("w=0 (unacknowledged writes) would lose messages; use w=majority".to_owned());
    }
    Ok((connection, timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(options: &[(&str, &str)]) -> Result<MongoOptions, String> {
        let mut sections = BTreeMap::new();
        sections.insert(
            MESSAGE_SECTION.to_owned(),
            options
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        MongoOptions::from_sections(&sections, MESSAGE_SECTION, false)
    }

    #[test]
    fn defaults_are_the_reference_ones() {
        let o = parse(&[]).unwrap();
        assert_eq!(o.uri, DEFAULT_URI);
        assert_eq!(o.database, "zaqar");
        assert_eq!(o.partitions, 2);
        assert_eq!(o.max_attempts, 1000);
        assert_eq!(o.max_retry_sleep, Duration::from_millis(100));
        assert_eq!(o.max_retry_jitter, Duration::from_millis(5));
        assert_eq!(o.max_reconnect_attempts, 10);
        assert_eq!(o.reconnect_sleep, Duration::from_millis(20));
        assert_eq!(o.ssl_cert_reqs, CertReqs::Required);
        assert_eq!(o.operation_timeout, DEFAULT_OPERATION_TIMEOUT);
        assert_eq!(o.write_concern_level(), WriteConcernLevel::Majority);
        assert!(!o.tls() && !o.unreliable);
    }

    #[test]
    fn reads_uri_options() {
        let o = parse(&[
            (
                "uri",
                "mongodb.fifo://a:1,b:2/?replicaSet=rs0&w=1&ssl=true&socketTimeoutMS=2500",
            ),
            ("database", "zq-1"),
            ("partitions", "4"),
            ("max_retry_sleep", "0.5"),
            ("ssl_cert_reqs", "CERT_NONE"),
        ])
        .unwrap();
        assert_eq!(o.connection.replica_set.as_deref(), Some("rs0"));
        assert_eq!(o.write_concern_level(), WriteConcernLevel::Nodes(1));
        assert!(o.tls());
        assert_eq!(o.operation_timeout, Duration::from_millis(2500));
        assert_eq!((o.database.as_str(), o.partitions), ("zq-1", 4));
        assert_eq!(o.max_retry_sleep, Duration::from_millis(500));
        assert_eq!(o.ssl_cert_reqs, CertReqs::None);
    }

    #[test]
    fn errors_name_section_and_option() {
        for (options, starts) in [
            (
                vec![("uri", "redis://h")],
                "[drivers:message_store:mongodb] uri:",
            ),
            (
                vec![("uri", "mongodb+srv://h")],
                "[drivers:message_store:mongodb] uri:",
            ),
            (
                vec![("uri", "mongodb://h/?w=0")],
                "[drivers:message_store:mongodb] uri:",
            ),
            (
                vec![("uri", "mongodb://h:notaport")],
                "[drivers:message_store:mongodb] uri:",
            ),
            (
                vec![("database", "a.b")],
                "[drivers:message_store:mongodb] database:",
            ),
            (
                vec![("partitions", "0")],
                "[drivers:message_store:mongodb] partitions:",
            ),
            (
                vec![("max_attempts", "-1")],
                "[drivers:message_store:mongodb] max_attempts:",
            ),
            (
                vec![("reconnect_sleep", "soon")],
                "[drivers:message_store:mongodb] reconnect_sleep:",
            ),
            (
                vec![("max_retry_jitter", "NaN")],
                "[drivers:message_store:mongodb] max_retry_jitter:",
            ),
            (
                vec![("ssl_cert_reqs", "maybe")],
                "[drivers:message_store:mongodb] ssl_cert_reqs:",
            ),
            (
                vec![("ssl_ca_certs", "/nonexistent/ca.pem")],
                "[drivers:message_store:mongodb] ssl_ca_certs:",
            ),
        ] {
            let e = parse(&options).unwrap_err();
            assert!(e.starts_with(starts), "{options:?}: {e}");
        }
    }
}
