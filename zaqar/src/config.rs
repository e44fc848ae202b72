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

/// `[notification] smtp_mode`: how e-mail notifications leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpMode {
    /// `third_part`: pipe an RFC 822 message to `smtp_command`.
    ThirdPart,
    /// `self_local`: speak SMTP over TLS to `smtp_host:smtp_port`.
    SelfLocal,
}

/// An e-mail template (`topic`, `body`, `sender`); `{0}`, `{1}`, `{2}` in
/// the body stand for the queue, the project and the confirmation link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailTemplate {
    /// Subject line.
    pub topic: String,
    /// Body text.
    pub body: String,
    /// `From:` address.
    pub sender: String,
}

/// `[notification]`: how subscribers are notified.
#[derive(Clone, Debug)]
pub struct NotificationConfig {
    /// `smtp_mode` (default `third_part`).
    pub smtp_mode: SmtpMode,
    /// `smtp_host`, for `self_local`.
    pub smtp_host: Option<String>,
    /// `smtp_port`, for `self_local` (default 465, SMTP over TLS).
    pub smtp_port: u16,
    /// `smtp_user_name`, for `self_local`.
    pub smtp_user_name: Option<String>,
    /// `smtp_user_password`, for `self_local`.
    pub smtp_user_password: Option<String>,
    /// `smtp_cafile` (ours): PEM file of CA certificates trusted for the
    /// SMTP server's certificate, besides the public roots (`self_local`).
    pub smtp_cafile: Option<String>,
    /// `smtp_command`: program and arguments (split on spaces) reading the
    /// message on stdin, for `third_part`.
    pub smtp_command: Vec<String>,
    /// `max_notifier_workers`: deliveries in flight at once (default 10).
    pub max_notifier_workers: usize,
    /// `max_notifier_workers_per_project` (ours): deliveries of one project
    /// in flight at once, so that a tenant whose subscribers hang cannot
    /// hold every worker (default: half of `max_notifier_workers`, rounded
    /// up; at most `max_notifier_workers`).
    pub max_notifier_workers_per_project: usize,
    /// `require_confirmation`: only confirmed subscriptions are notified,
    /// and new ones are sent a confirmation request.
    pub require_confirmation: bool,
    /// `external_confirmation_url`: page linked from confirmation e-mails.
    pub external_confirmation_url: Option<String>,
    /// `subscription_confirmation_email_template`.
    pub subscription_confirmation_email_template: EmailTemplate,
    /// `unsubscribe_confirmation_email_template`.
    pub unsubscribe_confirmation_email_template: EmailTemplate,
    /// `webhook_timeout` (ours): seconds one webhook request may take
    /// (connect + answer) before it counts as failed (default 10).
    pub webhook_timeout_secs: u64,
    /// `allowed_subscriber_networks` (ours): CIDRs that webhook and trust+
    /// subscribers may resolve to although they are loopback, private,
    /// link-local, unique-local or metadata addresses (empty by default:
    /// such subscribers are refused).
    pub allowed_subscriber_networks: Vec<ipnet::IpNet>,
    /// `webhook_proxy` (ours): an `http://` or `https://` proxy that every
    /// webhook and `trust+` delivery goes through. Unset (the default),
    /// deliveries use no proxy at all, whatever `HTTP_PROXY` and the like
    /// say: a proxy resolves the subscriber's name itself, out of reach of
    /// the address guard ([`crate::notification::ssrf`]). When set, that
    /// proxy is the guard.
    pub webhook_proxy: Option<reqwest::Url>,
}

impl Default for NotificationConfig {
    fn default() -> Self {
        NotificationConfig {
            smtp_mode: SmtpMode::ThirdPart,
            smtp_host: None,
            smtp_port: 465,
            smtp_user_name: None,
            smtp_user_password: None,
            smtp_cafile: None,
            smtp_command: split_command(DEFAULT_SMTP_COMMAND),
            max_notifier_workers: 10,
            max_notifier_workers_per_project: 5,
            require_confirmation: false,
            external_confirmation_url: None,
            subscription_confirmation_email_template: EmailTemplate {
                topic: "Zaqar Notification - Subscription Confirmation".into(),
                body: "You have chosen to subscribe to the queue: {0}. This queue belongs to project: {1}. To \
                       confirm this subscription, click or visit this link below: {2}"
                    .into(),
                sender: DEFAULT_SENDER.into(),
            },
            unsubscribe_confirmation_email_template: EmailTemplate {
                topic: "Zaqar Notification - Unsubscribe Confirmation".into(),
                body: "You have unsubscribed successfully to the queue: {0}. This queue belongs to project: {1}. \
                       To resubscribe this subscription, click or visit this link below: {2}"
                    .into(),
                sender: DEFAULT_SENDER.into(),
            },
            webhook_timeout_secs: 10,
            allowed_subscriber_networks: Vec::new(),
            webhook_proxy: None,
        }
    }
}

const DEFAULT_SMTP_COMMAND: &str = "/usr/sbin/sendmail -t -oi";
const DEFAULT_SENDER: &str = "Zaqar Notifications <no-reply@openstack.org>";

fn split_command(v: &str) -> Vec<String> {
    v.split(' ')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// `[signed_url]`: pre-signed URLs.
#[derive(Clone, Debug, Default)]
pub struct SignedUrlConfig {
    /// `secret_key`: the HMAC key; without it no URL can be signed (share
    /// answers 400) and no confirmation is sent.
    pub secret_key: Option<String>,
}

/// Message stores this build can open (`[drivers] message_store`).
pub const MESSAGE_STORES: &[&str] = &["sqlite", "redis"];

/// Management stores accepted in `[drivers] management_store`. Queue records
/// live with the message store, so any of the reference's names is accepted
/// and logged.
pub const MANAGEMENT_STORES: &[&str] = &["sqlite", "redis", "sqlalchemy", "mongodb"];

/// `[drivers:message_store:redis]`: where the Redis driver connects.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisConfig {
    /// Connection URI (standalone, Sentinel, unix socket, TLS or Cluster form).
    pub uri: String,
    /// Reconnection attempts before a request fails with 503.
    pub max_reconnect_attempts: u32,
    /// First pause between reconnections, in seconds (doubled each time).
    pub reconnect_sleep: f64,
    /// `wait_replicas` (ours): after each write, wait until this many
    /// replicas hold it (Redis `WAIT`) before acknowledging it; 0 (the
    /// default) acknowledges what the master has, as the reference does.
    pub wait_replicas: u32,
    /// `wait_timeout_ms` (ours): how long that wait may take; a write not
    /// on enough replicas by then answers 503 (default 1000).
    pub wait_timeout_ms: u64,
}

/// The names of the configured storage stages, one list per resource
/// (`[storage] *_pipeline`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PipelineConfig {
    /// `[storage] queue_pipeline`.
    pub queue: Vec<String>,
    /// `[storage] message_pipeline`.
    pub message: Vec<String>,
    /// `[storage] claim_pipeline`.
    pub claim: Vec<String>,
    /// `[storage] subscription_pipeline`.
    pub subscription: Vec<String>,
}

/// A listener: its address and the limits that keep slow or idle clients
/// from holding its connections (`[drivers:transport:wsgi]`,
/// `[drivers:transport:websocket]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Listen {
    /// `bind`: address to bind.
    pub bind: IpAddr,
    /// `port`: port to bind (0 picks a free one).
    pub port: u16,
    /// `max_connections` (ours): most connections served at once; past it
    /// new connections wait in the kernel's backlog until one closes.
    pub max_connections: usize,
    /// `header_read_timeout` (ours, seconds): how long a new connection
    /// may take to send a whole request head; a client that is slower
    /// (or sends nothing) is disconnected.
    pub header_read_timeout: std::time::Duration,
    /// `keepalive_timeout` (ours, seconds): how long a connection may stay
    /// idle between requests (the next request head must be complete by
    /// then) before it is closed.
    pub keepalive_timeout: std::time::Duration,
}

/// Default of `max_connections` on each listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default of `header_read_timeout` (seconds).
pub const DEFAULT_HEADER_READ_TIMEOUT: u64 = 30;
/// Default of `keepalive_timeout` (seconds).
pub const DEFAULT_KEEPALIVE_TIMEOUT: u64 = 75;

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
    /// `[drivers:message_store:redis]`.
    pub redis: RedisConfig,
    /// `[transport]`.
    pub transport: TransportConfig,
    /// `[storage] *_pipeline`.
    pub pipeline: PipelineConfig,
    /// `[notification]`.
    pub notification: NotificationConfig,
    /// `[signed_url]`.
    pub signed_url: SignedUrlConfig,
    /// `[metrics] enabled` (ours): serve `GET /metrics` (Prometheus text) on
    /// the HTTP listener. Off by default: the endpoint is not behind
    /// authentication (scrapers hold no Keystone token), so an operator
    /// turns it on where the listener is not reachable from tenants, or
    /// filters the path in front of it.
    pub metrics_enabled: bool,
    /// The directory of the configuration file ([`Config::load`] sets it):
    /// relative paths such as `[oslo_policy] policy_file` are taken from
    /// there. `None` for a configuration that came from no file.
    pub config_dir: Option<PathBuf>,
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
                || section.starts_with("stages:")
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

/// A listener section: address, port and connection limits.
fn read_listen(r: &mut Reader, section: &str, port: u16) -> Result<Listen, ConfigError> {
    let bounded =
        |r: &mut Reader, option: &str, default: u64, max: u64| -> Result<u64, ConfigError> {
            let v: u64 = r.parse(section, option, default)?;
            if !(1..=max).contains(&v) {
                return Err(invalid(
                    section,
                    option,
                    format!("{v} is not between 1 and {max}"),
                ));
            }
            Ok(v)
        };
    Ok(Listen {
        bind: r.parse(section, "bind", IpAddr::from([127, 0, 0, 1]))?,
        port: r.parse(section, "port", port)?,
        max_connections: bounded(
            r,
            "max_connections",
            DEFAULT_MAX_CONNECTIONS as u64,
            1_000_000,
        )? as usize,
        header_read_timeout: std::time::Duration::from_secs(bounded(
            r,
            "header_read_timeout",
            DEFAULT_HEADER_READ_TIMEOUT,
            3600,
        )?),
        keepalive_timeout: std::time::Duration::from_secs(bounded(
            r,
            "keepalive_timeout",
            DEFAULT_KEEPALIVE_TIMEOUT,
            3600,
        )?),
    })
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
        let mut config = Config::parse(&text).map_err(|e| match e {
            ConfigError::Read { reason, .. } => ConfigError::Read {
                path: path.to_owned(),
                reason,
            },
            other => other,
        })?;
        config.config_dir = Some(match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        });
        Ok(config)
    }

    /// Parses INI text.
    ///
    /// # Errors
    /// Malformed INI or an invalid value.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let opts = ini::ParseOption {
            enabled_escape: false,
            enabled_quote: false,
            ..Default::default()
        };
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
        if !MESSAGE_STORES.contains(&message_store.as_str()) {
            return Err(invalid(
                "drivers",
                "message_store",
                format!(
                    "{message_store:?} is not a driver of this build (available: {})",
                    MESSAGE_STORES.join(", ")
                ),
            ));
        }
        if !MANAGEMENT_STORES.contains(&management_store.as_str()) {
            return Err(invalid(
                "drivers",
                "management_store",
                format!(
                    "{management_store:?} is not a management store we know (known: {})",
                    MANAGEMENT_STORES.join(", ")
                ),
            ));
        }
        if management_store != message_store {
            tracing::info!(
                "[drivers] management_store = {management_store}: queue records are kept by the \
                 message store ({message_store}), so no separate management database is used"
            );
        }
        let redis = RedisConfig {
            uri: r.string(
                "drivers:message_store:redis",
                "uri",
                "redis://127.0.0.1:6379",
            ),
            max_reconnect_attempts: r.parse(
                "drivers:message_store:redis",
                "max_reconnect_attempts",
                10,
            )?,
            reconnect_sleep: r.parse("drivers:message_store:redis", "reconnect_sleep", 1.0)?,
            wait_replicas: r.parse("drivers:message_store:redis", "wait_replicas", 0)?,
            wait_timeout_ms: r.parse("drivers:message_store:redis", "wait_timeout_ms", 1000)?,
        };
        if redis.wait_replicas > 0 && !(1..=60_000).contains(&redis.wait_timeout_ms) {
            return Err(invalid(
                "drivers:message_store:redis",
                "wait_timeout_ms",
                format!("{} is not between 1 and 60000 ms", redis.wait_timeout_ms),
            ));
        }
        if !(0.0..=3600.0).contains(&redis.reconnect_sleep) {
            return Err(invalid(
                "drivers:message_store:redis",
                "reconnect_sleep",
                format!(
                    "{} is not between 0 and 3600 seconds",
                    redis.reconnect_sleep
                ),
            ));
        }
        for option in ["uri", "max_reconnect_attempts", "reconnect_sleep"] {
            let _ = r.raw("drivers:management_store:redis", option);
        }

        let http = read_listen(&mut r, "drivers:transport:wsgi", 8888)?;
        let websocket = read_listen(&mut r, "drivers:transport:websocket", 9000)?;
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
            subscription: r.list("storage", "subscription_pipeline", &[]),
        };
        let notification = read_notification(&mut r)?;
        let signed_url = SignedUrlConfig {
            secret_key: r.raw("signed_url", "secret_key").filter(|k| !k.is_empty()),
        };
        let _ = r.raw("storage", "topic_pipeline");
        let metrics_enabled = r.boolean("metrics", "enabled", false)?;

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
            redis,
            transport,
            pipeline,
            notification,
            signed_url,
            metrics_enabled,
            config_dir: None,
            sections: r.sections,
        })
    }
}

/// Reads `[notification]`.
fn read_notification(r: &mut Reader) -> Result<NotificationConfig, ConfigError> {
    let s = "notification";
    let d = NotificationConfig::default();
    let smtp_mode = match r.string(s, "smtp_mode", "third_part").as_str() {
        "third_part" => SmtpMode::ThirdPart,
        "self_local" => SmtpMode::SelfLocal,
        other => {
            return Err(invalid(
                s,
                "smtp_mode",
                format!("{other:?} is not one of third_part, self_local"),
            ))
        }
    };
    let smtp_command = split_command(&r.string(s, "smtp_command", DEFAULT_SMTP_COMMAND));
    if smtp_command.is_empty() {
        return Err(invalid(s, "smtp_command", "the command is empty".into()));
    }
    let optional = |r: &mut Reader, o: &str| r.raw(s, o).filter(|v| !v.is_empty());
    let smtp_host = optional(r, "smtp_host");
    if smtp_mode == SmtpMode::SelfLocal && smtp_host.is_none() {
        return Err(invalid(
            s,
            "smtp_host",
            "required when smtp_mode = self_local".into(),
        ));
    }
    let max_notifier_workers = r.int(s, "max_notifier_workers", 10, 1)?;
    let max_notifier_workers_per_project = r.int(
        s,
        "max_notifier_workers_per_project",
        (max_notifier_workers + 1) / 2,
        1,
    )?;
    if max_notifier_workers_per_project > max_notifier_workers {
        return Err(invalid(
            s,
            "max_notifier_workers_per_project",
            format!("{max_notifier_workers_per_project} is more than max_notifier_workers ({max_notifier_workers})"),
        ));
    }
    let webhook_timeout = r.int(s, "webhook_timeout", d.webhook_timeout_secs as i64, 1)?;
    let mut allowed_subscriber_networks = Vec::new();
    for net in r.list(s, "allowed_subscriber_networks", &[]) {
        let parsed = net
            .parse::<ipnet::IpNet>()
            .or_else(|_| net.parse::<IpAddr>().map(ipnet::IpNet::from))
            .map_err(|e| invalid(s, "allowed_subscriber_networks", format!("{net:?}: {e}")))?;
        allowed_subscriber_networks.push(parsed);
    }
    let webhook_proxy = match optional(r, "webhook_proxy") {
        None => None,
        Some(raw) => {
            let url = reqwest::Url::parse(raw.trim())
                .map_err(|e| invalid(s, "webhook_proxy", format!("{raw:?}: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(invalid(
                    s,
                    "webhook_proxy",
                    format!("{raw:?} is not an http:// or https:// URL with a host"),
                ));
            }
            Some(url)
        }
    };
    let subscription_confirmation_email_template = email_template(
        r,
        "subscription_confirmation_email_template",
        &d.subscription_confirmation_email_template,
    )?;
    let unsubscribe_confirmation_email_template = email_template(
        r,
        "unsubscribe_confirmation_email_template",
        &d.unsubscribe_confirmation_email_template,
    )?;
    Ok(NotificationConfig {
        smtp_mode,
        smtp_host,
        smtp_port: r.parse(s, "smtp_port", d.smtp_port)?,
        smtp_user_name: optional(r, "smtp_user_name"),
        smtp_user_password: optional(r, "smtp_user_password"),
        smtp_cafile: optional(r, "smtp_cafile"),
        smtp_command,
        max_notifier_workers: max_notifier_workers as usize,
        max_notifier_workers_per_project: max_notifier_workers_per_project as usize,
        require_confirmation: r.boolean(s, "require_confirmation", false)?,
        external_confirmation_url: optional(r, "external_confirmation_url"),
        subscription_confirmation_email_template,
        unsubscribe_confirmation_email_template,
        webhook_timeout_secs: webhook_timeout as u64,
        allowed_subscriber_networks,
        webhook_proxy,
    })
}

/// Reads an oslo.config dict option `topic:…,body:…,sender:…`. Values may
/// contain commas: a comma only separates entries when a known key follows.
fn email_template(
    r: &mut Reader,
    option: &str,
    default: &EmailTemplate,
) -> Result<EmailTemplate, ConfigError> {
    let Some(raw) = r.raw("notification", option).filter(|v| !v.is_empty()) else {
        return Ok(default.clone());
    };
    let mut t = default.clone();
    let mut rest = raw.as_str();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once(':')
            .ok_or_else(|| invalid("notification", option, format!("{rest:?} is not key:value")))?;
        let mut end = after.len();
        for k in [",topic:", ",body:", ",sender:"] {
            if let Some(i) = after.find(k) {
                end = end.min(i);
            }
        }
        let value = after[..end].trim().to_owned();
        match key.trim() {
            "topic" => t.topic = value,
            "body" => t.body = value,
            "sender" => t.sender = value,
            other => {
                return Err(invalid(
                    "notification",
                    option,
                    format!("unknown key {other:?} (known: topic, body, sender)"),
                ))
            }
        }
        rest = after[end..].strip_prefix(',').unwrap_or("");
    }
    Ok(t)
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
    fn notification_and_signed_url_sections() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.notification.max_notifier_workers, 10);
        assert_eq!(c.notification.max_notifier_workers_per_project, 5);
        assert_eq!(
            c.notification.smtp_command,
            vec!["/usr/sbin/sendmail", "-t", "-oi"]
        );
        assert!(c.notification.allowed_subscriber_networks.is_empty());
        assert!(c.notification.webhook_proxy.is_none());
        assert!(c.signed_url.secret_key.is_none());
        let c = Config::parse(
            "[notification]\nmax_notifier_workers = 3\nrequire_confirmation = true\n\
             allowed_subscriber_networks = 127.0.0.0/8, ::1\nsmtp_command = /bin/cat -u\n\
             subscription_confirmation_email_template = topic:Hi, there,body:Go {2}, now,sender:me@x\n\
             webhook_proxy = http://proxy.example:3128\n\
             [signed_url]\nsecret_key = s3cret\n\
             [storage]\nsubscription_pipeline = x\n",
        )
        .unwrap();
        assert_eq!(c.notification.max_notifier_workers, 3);
        assert_eq!(c.notification.max_notifier_workers_per_project, 2);
        assert!(c.notification.require_confirmation);
        assert_eq!(c.notification.allowed_subscriber_networks.len(), 2);
        assert_eq!(c.notification.smtp_command, vec!["/bin/cat", "-u"]);
        assert_eq!(
            c.notification.webhook_proxy.as_ref().map(|u| u.as_str()),
            Some("http://proxy.example:3128/")
        );
        let t = &c.notification.subscription_confirmation_email_template;
        assert_eq!(
            (t.topic.as_str(), t.body.as_str(), t.sender.as_str()),
            ("Hi, there", "Go {2}, now", "me@x")
        );
        assert_eq!(c.signed_url.secret_key.as_deref(), Some("s3cret"));
        assert_eq!(c.pipeline.subscription, vec!["x"]);
        for (text, option) in [
            (
                "[notification]\nmax_notifier_workers = 0\n",
                "[notification] max_notifier_workers:",
            ),
            (
                "[notification]\nallowed_subscriber_networks = nope\n",
                "[notification] allowed_subscriber_networks:",
            ),
            (
                "[notification]\nsmtp_mode = carrier_pigeon\n",
                "[notification] smtp_mode:",
            ),
            (
                "[notification]\nsmtp_mode = self_local\n",
                "[notification] smtp_host:",
            ),
            (
                "[notification]\nmax_notifier_workers = 4\nmax_notifier_workers_per_project = 5\n",
                "[notification] max_notifier_workers_per_project:",
            ),
            (
                "[notification]\nmax_notifier_workers_per_project = 0\n",
                "[notification] max_notifier_workers_per_project:",
            ),
            (
                "[notification]\nwebhook_proxy = socks5://p:1080\n",
                "[notification] webhook_proxy:",
            ),
            (
                "[notification]\nwebhook_proxy = not a url\n",
                "[notification] webhook_proxy:",
            ),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert!(e.to_string().starts_with(option), "{e}");
        }
    }

    #[test]
    fn redis_store_and_reference_management_names() {
        let c = Config::parse(
            "[drivers]\nmessage_store = redis\nmanagement_store = sqlalchemy\n\
             [drivers:message_store:redis]\nuri = redis://h:1?dbid=2\nreconnect_sleep = 0.5\n",
        )
        .unwrap();
        assert_eq!(c.message_store, "redis");
        assert_eq!(c.redis.uri, "redis://h:1?dbid=2");
        assert_eq!(c.redis.reconnect_sleep, 0.5);
        assert_eq!(c.redis.max_reconnect_attempts, 10);
        assert_eq!((c.redis.wait_replicas, c.redis.wait_timeout_ms), (0, 1000));
        let c = Config::parse(
            "[drivers:message_store:redis]\nwait_replicas = 1\nwait_timeout_ms = 250\n",
        )
        .unwrap();
        assert_eq!((c.redis.wait_replicas, c.redis.wait_timeout_ms), (1, 250));
        assert!(Config::parse(
            "[drivers:message_store:redis]\nwait_replicas = 1\nwait_timeout_ms = 0\n"
        )
        .is_err());
        let e = Config::parse("[drivers]\nmanagement_store = swift\n").unwrap_err();
        assert!(
            e.to_string().starts_with("[drivers] management_store:"),
            "{e}"
        );
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
