//! `zaqar.conf`: the reference's INI file, section and option names.
//!
//! The file is read once at start-up into a typed [`Config`]. Every value is
//! checked there: a bad value stops the server with a message naming the
//! section and the option; an option we do not know is logged as a warning
//! (sections that belong to other libraries in the reference, such as
//! `[keystone_authtoken]` or `[oslo_policy]`, are kept as raw maps for the
//! parts of the server that read them).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::storage::pipeline::PipelineConfig;

/// A configuration error, naming the section and option at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or is not valid INI.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An option has a value we cannot use.
    #[error("[{section}] {option}: {reason}")]
    Invalid {
        /// Section name.
        section: String,
        /// Option name.
        option: String,
        /// What is wrong with the value.
        reason: String,
    },
}

/// `[transport] client_id_uuid_safe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientIdMode {
    /// Client-ID must be a UUID.
    Strict,
    /// Any string of `min_length_client_id..=max_length_client_id` characters.
    Off,
}

/// `[transport]`: limits and defaults of the API, with the reference's defaults.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// TTL of a message posted without one (seconds).
    pub default_message_ttl: i64,
    /// Delay shown as the default of `_default_message_delay`.
    pub default_message_delay: i64,
    /// TTL of a claim created without one.
    pub default_claim_ttl: i64,
    /// Grace of a claim created without one.
    pub default_claim_grace: i64,
    /// TTL of a subscription created without one.
    pub default_subscription_ttl: i64,
    /// Largest `limit` for queue listings.
    pub max_queues_per_page: i64,
    /// Largest `limit` for message listings (and ids per request).
    pub max_messages_per_page: i64,
    /// Largest `limit` for subscription listings.
    pub max_subscriptions_per_page: i64,
    /// Largest claim `limit` and `pop` value.
    pub max_messages_per_claim_or_pop: i64,
    /// Largest queue metadata document (bytes).
    pub max_queue_metadata: i64,
    /// Largest message post body (bytes).
    pub max_messages_post_size: i64,
    /// Largest message TTL (seconds).
    pub max_message_ttl: i64,
    /// Largest message delay (seconds).
    pub max_message_delay: i64,
    /// Largest claim TTL (seconds).
    pub max_claim_ttl: i64,
    /// Largest claim grace (seconds).
    pub max_claim_grace: i64,
    /// Accepted subscriber URI schemes.
    pub subscriber_types: Vec<String>,
    /// Largest `limit` for flavor listings.
    pub max_flavors_per_page: i64,
    /// Largest `limit` for pool listings.
    pub max_pools_per_page: i64,
    /// How Client-ID is validated.
    pub client_id_uuid_safe: ClientIdMode,
    /// Shortest Client-ID when not a UUID.
    pub min_length_client_id: usize,
    /// Longest Client-ID when not a UUID.
    pub max_length_client_id: usize,
    /// Bulk delete by ids requires the matching claim ids.
    pub message_delete_with_claim_id: bool,
    /// `AES256` (the only working choice in the reference).
    pub message_encryption_algorithms: String,
    /// Key material for encrypted queues.
    pub message_encryption_key: String,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            default_message_ttl: 3600,
            default_message_delay: 0,
            default_claim_ttl: 300,
            default_claim_grace: 60,
            default_subscription_ttl: 3600,
            max_queues_per_page: 20,
            max_messages_per_page: 20,
            max_subscriptions_per_page: 20,
            max_messages_per_claim_or_pop: 20,
            max_queue_metadata: 64 * 1024,
            max_messages_post_size: 256 * 1024,
            max_message_ttl: 1_209_600,
            max_message_delay: 900,
            max_claim_ttl: 43_200,
            max_claim_grace: 43_200,
            subscriber_types: ["http", "https", "mailto", "trust+http", "trust+https"]
                .map(String::from)
                .to_vec(),
            max_flavors_per_page: 20,
            max_pools_per_page: 20,
            client_id_uuid_safe: ClientIdMode::Strict,
            min_length_client_id: 10,
            max_length_client_id: 36,
            message_delete_with_claim_id: false,
            message_encryption_algorithms: "AES256".into(),
            message_encryption_key: "AES256".into(),
        }
    }
}

/// A listener address (`bind` + `port`).
#[derive(Clone, Debug, PartialEq)]
pub struct Listen {
    /// Address to bind.
    pub bind: IpAddr,
    /// Port to bind (0 picks a free one).
    pub port: u16,
}

/// `[DEFAULT] auth_strategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthStrategy {
    /// No authentication: `X-Project-ID` and `X-Roles` are trusted.
    None,
    /// Keystone token validation on every route.
    Keystone,
}

/// The whole configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// `[DEFAULT] auth_strategy`.
    pub auth_strategy: AuthStrategy,
    /// `[DEFAULT] admin_mode`: serve the admin routes (health, pools, flavors).
    pub admin_mode: bool,
    /// `[DEFAULT] enable_checksum`: store an MD5 checksum of each body.
    pub enable_checksum: bool,
    /// `[drivers] transport`: serve the HTTP API.
    pub serve_http: bool,
    /// `[drivers] transport`: serve the WebSocket API.
    pub serve_websocket: bool,
    /// `[drivers] message_store`.
    pub message_store: String,
    /// `[drivers] management_store`.
    pub management_store: String,
    /// `[drivers:transport:wsgi] bind, port`.
    pub http: Listen,
    /// `[drivers:transport:websocket] bind, port`.
    pub websocket: Listen,
    /// `[drivers:message_store:sqlite] uri`: the database file.
    pub sqlite_path: PathBuf,
    /// `[transport]`.
    pub transport: TransportConfig,
    /// `[storage] *_pipeline`.
    pub pipeline: PipelineConfig,
    /// Every section as read, for the parts of the server (and its
    /// libraries) that read their own sections (`[keystone_authtoken]`, ...).
    pub sections: BTreeMap<String, HashMap<String, String>>,
}

impl Default for Config {
    fn default() -> Self {
        Config::from_sections(BTreeMap::new()).expect("the defaults are valid")
    }
}

/// Sections whose options belong to libraries the reference loads; their
/// options are not ours to warn about.
const FOREIGN_SECTIONS: &[&str] = &[
    "keystone_authtoken",
    "trustee",
    "oslo_policy",
    "cors",
    "cache",
    "profiler",
    "oslo_messaging_notifications",
    "oslo_middleware",
    "healthcheck",
    "oslo_reports",
    "notification",
    "signed_url",
    "pooling:catalog",
];

/// Options of `[DEFAULT]` that oslo.log and friends define.
const FOREIGN_DEFAULT_OPTIONS: &[&str] = &[
    "debug",
    "verbose",
    "log_file",
    "log_dir",
    "use_syslog",
    "use_stderr",
    "log_config_append",
    "default_log_levels",
    "logging_context_format_string",
    "unreliable",
    "pooling",
    "sharding",
    "enable_deprecated_api_versions",
    "transport_url",
];

/// Reads sections and remembers which options were consumed.
struct Reader {
    sections: BTreeMap<String, HashMap<String, String>>,
    used: BTreeSet<(String, String)>,
}

impl Reader {
    fn raw(&mut self, section: &str, option: &str) -> Option<String> {
        let value = self.sections.get(section)?.get(option)?.trim().to_owned();
        self.used.insert((section.to_owned(), option.to_owned()));
        Some(value)
    }

    fn string(&mut self, section: &str, option: &str, default: &str) -> String {
        self.raw(section, option)
            .unwrap_or_else(|| default.to_owned())
    }

    fn parse<T: std::str::FromStr>(
        &mut self,
        section: &str,
        option: &str,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.raw(section, option) {
            None => Ok(default),
            Some(v) if v.is_empty() => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|e: T::Err| invalid(section, option, format!("{v:?}: {e}"))),
        }
    }

    fn int(
        &mut self,
        section: &str,
        option: &str,
        default: i64,
        min: i64,
    ) -> Result<i64, ConfigError> {
        let v: i64 = self.parse(section, option, default)?;
        if v < min {
            return Err(invalid(
                section,
                option,
                format!("{v} is below the minimum {min}"),
            ));
        }
        Ok(v)
    }

    fn boolean(&mut self, section: &str, option: &str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(section, option) {
            None => Ok(default),
            Some(v) => parse_bool(&v)
                .ok_or_else(|| invalid(section, option, format!("{v:?} is not a boolean"))),
        }
    }

    fn list(&mut self, section: &str, option: &str, default: &[&str]) -> Vec<String> {
        match self.raw(section, option) {
            None => default.iter().map(|s| s.to_string()).collect(),
            Some(v) => split_list(&v),
        }
    }

    /// Options present in our sections that nothing read.
    fn unused(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (section, options) in &self.sections {
            if FOREIGN_SECTIONS.contains(&section.as_str())
                || section.starts_with("drivers:management_store:")
            {
                continue;
            }
            for option in options.keys() {
                if section == "DEFAULT" && FOREIGN_DEFAULT_OPTIONS.contains(&option.as_str()) {
                    continue;
                }
                if !self.used.contains(&(section.clone(), option.clone())) {
                    out.push(format!("[{section}] {option}"));
                }
            }
        }
        out
    }
}

fn invalid(section: &str, option: &str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        section: section.to_owned(),
        option: option.to_owned(),
        reason,
    }
}

/// oslo.config booleans.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "on" | "yes" | "y" | "t" => Some(true),
        "false" | "0" | "off" | "no" | "n" | "f" | "" => Some(false),
        _ => None,
    }
}

/// oslo.config lists: comma separated, blanks dropped.
pub fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

impl Config {
    /// Reads `path`.
    ///
    /// # Errors
    /// An unreadable file or an invalid value.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Read { reason, .. } => ConfigError::Read {
                path: path.to_owned(),
                reason,
            },
            other => other,
        })
    }

    /// Parses INI text.
    ///
    /// # Errors
    /// Malformed INI or an invalid value.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut opts = ini::ParseOption::default();
        opts.enabled_escape = false;
        opts.enabled_quote = false;
        let ini = ini::Ini::load_from_str_opt(text, opts).map_err(|e| ConfigError::Read {
            path: PathBuf::from("<config>"),
            reason: e.to_string(),
        })?;
        let mut sections: BTreeMap<String, HashMap<String, String>> = BTreeMap::new();
        for (name, props) in ini.iter() {
            let entry = sections
                .entry(name.unwrap_or("DEFAULT").to_owned())
                .or_default();
            for (k, v) in props.iter() {
                entry.insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        Config::from_sections(sections)
    }

    /// Builds the configuration from parsed sections.
    ///
    /// # Errors
    /// The first invalid value.
    pub fn from_sections(
        sections: BTreeMap<String, HashMap<String, String>>,
    ) -> Result<Config, ConfigError> {
        let mut r = Reader {
            sections,
            used: BTreeSet::new(),
        };
        let auth = r.string("DEFAULT", "auth_strategy", "");
        let auth_strategy = match auth.to_ascii_lowercase().as_str() {
            "" | "noauth" => AuthStrategy::None,
            "keystone" => AuthStrategy::Keystone,
            other => {
                return Err(invalid(
                    "DEFAULT",
                    "auth_strategy",
                    format!("{other:?} is not one of '', noauth, keystone"),
                ))
            }
        };
        let admin_mode = r.boolean("DEFAULT", "admin_mode", false)?;
        let enable_checksum = r.boolean("DEFAULT", "enable_checksum", false)?;

        let transports = r.list("drivers", "transport", &["wsgi", "websocket"]);
        let (mut serve_http, mut serve_websocket) = (false, false);
        for t in &transports {
            match t.as_str() {
                "wsgi" | "http" => serve_http = true,
                "websocket" => serve_websocket = true,
                other => {
                    return Err(invalid(
                        "drivers",
                        "transport",
                        format!("unknown transport {other:?} (known: wsgi, websocket)"),
                    ))
                }
            }
        }
        if !serve_http && !serve_websocket {
            return Err(invalid(
                "drivers",
                "transport",
                "no transport enabled".into(),
            ));
        }
        let mut message_store = r.string("drivers", "message_store", "");
        if message_store.is_empty() {
            message_store = r.string("drivers", "storage", "sqlite");
        }
        let management_store = r.string("drivers", "management_store", "sqlite");
        for (option, value) in [
            ("message_store", &message_store),
            ("management_store", &management_store),
        ] {
            if value != "sqlite" {
                return Err(invalid(
                    "drivers",
                    option,
                    format!("{value:?} is not a driver of this build (available: sqlite)"),
                ));
            }
        }

        let http = Listen {
            bind: r.parse(
                "drivers:transport:wsgi",
                "bind",
                IpAddr::from([127, 0, 0, 1]),
            )?,
            port: r.parse("drivers:transport:wsgi", "port", 8888)?,
        };
        let websocket = Listen {
            bind: r.parse(
                "drivers:transport:websocket",
                "bind",
                IpAddr::from([127, 0, 0, 1]),
            )?,
            port: r.parse("drivers:transport:websocket", "port", 9000)?,
        };
        let _ = r.raw("drivers:transport:websocket", "external-port");

        let uri = r.string("drivers:message_store:sqlite", "uri", "");
        let sqlite_path = if uri.is_empty() {
            default_data_dir().join("zaqar.sqlite")
        } else {
            PathBuf::from(uri.strip_prefix("sqlite://").unwrap_or(&uri))
        };

        let d = TransportConfig::default();
        let s = "transport";
        let client_id_uuid_safe = match r.string(s, "client_id_uuid_safe", "strict").as_str() {
            "strict" => ClientIdMode::Strict,
            "off" => ClientIdMode::Off,
            other => {
                return Err(invalid(
                    s,
                    "client_id_uuid_safe",
                    format!("{other:?} is not one of strict, off"),
                ))
            }
        };
        let transport = TransportConfig {
            default_message_ttl: r.int(s, "default_message_ttl", d.default_message_ttl, 1)?,
            default_message_delay: r.int(s, "default_message_delay", d.default_message_delay, 0)?,
            default_claim_ttl: r.int(s, "default_claim_ttl", d.default_claim_ttl, 1)?,
            default_claim_grace: r.int(s, "default_claim_grace", d.default_claim_grace, 0)?,
            default_subscription_ttl: r.int(
                s,
                "default_subscription_ttl",
                d.default_subscription_ttl,
                1,
            )?,
            max_queues_per_page: r.int(s, "max_queues_per_page", d.max_queues_per_page, 1)?,
            max_messages_per_page: r.int(s, "max_messages_per_page", d.max_messages_per_page, 1)?,
            max_subscriptions_per_page: r.int(
                s,
                "max_subscriptions_per_page",
                d.max_subscriptions_per_page,
                1,
            )?,
            max_messages_per_claim_or_pop: r.int(
                s,
                "max_messages_per_claim_or_pop",
                d.max_messages_per_claim_or_pop,
                1,
            )?,
            max_queue_metadata: r.int(s, "max_queue_metadata", d.max_queue_metadata, 1)?,
            max_messages_post_size: r.int(
                s,
                "max_messages_post_size",
                d.max_messages_post_size,
                1,
            )?,
            max_message_ttl: r.int(s, "max_message_ttl", d.max_message_ttl, 60)?,
            max_message_delay: r.int(s, "max_message_delay", d.max_message_delay, 0)?,
            max_claim_ttl: r.int(s, "max_claim_ttl", d.max_claim_ttl, 60)?,
            max_claim_grace: r.int(s, "max_claim_grace", d.max_claim_grace, 60)?,
            subscriber_types: r.list(
                s,
                "subscriber_types",
                &["http", "https", "mailto", "trust+http", "trust+https"],
            ),
            max_flavors_per_page: r.int(s, "max_flavors_per_page", d.max_flavors_per_page, 1)?,
            max_pools_per_page: r.int(s, "max_pools_per_page", d.max_pools_per_page, 1)?,
            client_id_uuid_safe,
            min_length_client_id: r.parse(s, "min_length_client_id", d.min_length_client_id)?,
            max_length_client_id: r.parse(s, "max_length_client_id", d.max_length_client_id)?,
            message_delete_with_claim_id: r.boolean(s, "message_delete_with_claim_id", false)?,
            message_encryption_algorithms: r.string(s, "message_encryption_algorithms", "AES256"),
            message_encryption_key: r.string(s, "message_encryption_key", "AES256"),
        };

        let pipeline = PipelineConfig {
            queue: r.list("storage", "queue_pipeline", &[]),
            message: r.list("storage", "message_pipeline", &[]),
            claim: r.list("storage", "claim_pipeline", &[]),
        };
        let _ = r.raw("storage", "subscription_pipeline");
        let _ = r.raw("storage", "topic_pipeline");

        for unused in r.unused() {
            tracing::warn!("unknown configuration option {unused} is ignored");
        }
        Ok(Config {
            auth_strategy,
            admin_mode,
            enable_checksum,
            serve_http,
            serve_websocket,
            message_store,
            management_store,
            http,
            websocket,
            sqlite_path,
            transport,
            pipeline,
            sections: r.sections,
        })
    }
}

/// Where the embedded store keeps its file when no `uri` is set:
/// `$ZAQAR_DATA_DIR`, else `$XDG_DATA_HOME/zaqar`, else `~/.local/share/zaqar`,
/// else `./zaqar-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ZAQAR_DATA_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("zaqar");
    }
    if let Some(home) = std::env::var_os("HOME") {
        return PathBuf::from(home).join(".local/share/zaqar");
    }
    PathBuf::from("zaqar-data")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_a_file() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.auth_strategy, AuthStrategy::None);
        assert_eq!(c.http.port, 8888);
        assert_eq!(c.websocket.port, 9000);
        assert!(c.serve_http && c.serve_websocket);
        assert_eq!(c.message_store, "sqlite");
        assert_eq!(c.transport.max_messages_post_size, 262_144);
        assert_eq!(c.transport.client_id_uuid_safe, ClientIdMode::Strict);
    }

    #[test]
    fn reads_reference_names() {
        let c = Config::parse(
            "[DEFAULT]\nadmin_mode = True\nenable_checksum = yes\n\
             [drivers]\ntransport = wsgi\n\
             [drivers:transport:wsgi]\nbind = 0.0.0.0\nport = 8080\n\
             [drivers:message_store:sqlite]\nuri = sqlite:///tmp/x.db\n\
             [transport]\nmax_messages_per_page = 5\nclient_id_uuid_safe = off\n\
             [storage]\nmessage_pipeline = a, b\n",
        )
        .unwrap();
        assert!(c.admin_mode && c.enable_checksum);
        assert!(c.serve_http && !c.serve_websocket);
        assert_eq!(c.http.port, 8080);
        assert_eq!(c.sqlite_path, PathBuf::from("/tmp/x.db"));
        assert_eq!(c.transport.max_messages_per_page, 5);
        assert_eq!(c.transport.client_id_uuid_safe, ClientIdMode::Off);
        assert_eq!(c.pipeline.message, vec!["a", "b"]);
    }

    #[test]
    fn invalid_values_name_section_and_option() {
        let e = Config::parse("[transport]\nmax_claim_ttl = soon\n").unwrap_err();
        assert!(
            e.to_string().starts_with("[transport] max_claim_ttl:"),
            "{e}"
        );
        let e = Config::parse("[DEFAULT]\nadmin_mode = maybe\n").unwrap_err();
        assert!(e.to_string().starts_with("[DEFAULT] admin_mode:"), "{e}");
        let e = Config::parse("[drivers]\nmessage_store = swift\n").unwrap_err();
        assert!(e.to_string().contains("message_store"), "{e}");
    }
}
