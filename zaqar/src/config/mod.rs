//! `zaqar.conf`: the reference's INI file, section and option names.
//!
//! The file is read once at start-up into a typed [`Config`]. Every option
//! is declared once ([`sections`], with the [`option::section!`] macro):
//! its name, type, default, bounds and help; the same declarations print
//! the sample configuration ([`sample_config`]). A bad value stops the
//! server with a message naming the section and the option; an option we
//! do not know is logged as a warning (sections that belong to other
//! libraries in the reference, such as `[keystone_authtoken]` or
//! `[oslo_policy]`, are kept as raw maps for the parts of the server that
//! read them).

pub mod option;
pub mod sections;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use option::{OptionDoc, OptionValue};
pub use sections::{
    default_data_dir, AuthStrategy, ClientIdMode, EmailTemplate, NotificationConfig,
    PipelineConfig, RedisConfig, SignedUrlConfig, SmtpMode, StoreEngine, TransportConfig,
};
use sections::{
    DefaultSection, DriversSection, ListenSection, ManagementSqliteSection, MetricsSection,
    PoolingCatalogSection, SqliteSection,
};

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

/// A listener: its address and the limits of its connections (see
/// [`ListenSection`] for what each means).
#[derive(Clone, Debug, PartialEq)]
pub struct Listen {
    /// Address to bind.
    pub bind: IpAddr,
    /// Port to bind (0 picks a free one).
    pub port: u16,
    /// Most connections served at once.
    pub max_connections: usize,
    /// Time a new connection has to send a whole request head.
    pub header_read_timeout: Duration,
    /// Time an idle connection has to send its next request head.
    pub keepalive_timeout: Duration,
}

impl Listen {
    fn from_section(s: ListenSection, default_port: u16) -> Listen {
        Listen {
            bind: s.bind,
            port: s.port.unwrap_or(default_port),
            max_connections: s.max_connections,
            header_read_timeout: Duration::from_secs(s.header_read_timeout),
            keepalive_timeout: Duration::from_secs(s.keepalive_timeout),
        }
    }
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
    /// `[DEFAULT] pooling`: spread queues over pools.
    pub pooling: bool,
    /// `[DEFAULT] unreliable`: let the MongoDB store run on a standalone
    /// server or with a write concern below a majority.
    pub unreliable: bool,
    /// `[pooling:catalog] enable_virtual_pool`.
    pub enable_virtual_pool: bool,
    /// `[drivers] transport`: serve the HTTP API.
    pub serve_http: bool,
    /// `[drivers] transport`: serve the WebSocket API.
    pub serve_websocket: bool,
    /// `[drivers] message_store`.
    pub message_store: StoreEngine,
    /// `[drivers] management_store`.
    pub management_store: String,
    /// `[drivers:transport:wsgi]`.
    pub http: Listen,
    /// `[drivers:transport:websocket]`.
    pub websocket: Listen,
    /// `[drivers:message_store:sqlite] uri`: the database file.
    pub sqlite_path: PathBuf,
    /// `[drivers:management_store:sqlite] uri`: the management database
    /// file (pooling with `management_store = sqlite`).
    pub management_sqlite_path: PathBuf,
    /// `[drivers:management_store:redis]`.
    pub management_redis: RedisConfig,
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
    /// `[metrics] enabled`.
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
    "sharding",
    "enable_deprecated_api_versions",
    "transport_url",
];

/// Reads sections and remembers which options were consumed.
pub struct Reader {
    sections: BTreeMap<String, HashMap<String, String>>,
    used: BTreeSet<(String, String)>,
}

impl Reader {
    /// The raw (trimmed) value of an option, marking it as read.
    pub fn raw(&mut self, section: &str, option: &str) -> Option<String> {
        let value = self.sections.get(section)?.get(option)?.trim().to_owned();
        self.used.insert((section.to_owned(), option.to_owned()));
        Some(value)
    }

    /// An option's value, or `default()` when it is absent (or empty and
    /// the type has no empty value, such as a number).
    ///
    /// # Errors
    /// The value is not one of the type, naming section and option.
    pub fn get<T: OptionValue>(
        &mut self,
        section: &str,
        option: &str,
        default: impl FnOnce() -> T,
    ) -> Result<T, ConfigError> {
        match self.raw(section, option) {
            None => Ok(default()),
            Some(raw) => match T::parse_option(&raw) {
                Ok(v) => Ok(v),
                Err(_) if raw.is_empty() => Ok(default()),
                Err(reason) => Err(invalid(section, option, reason)),
            },
        }
    }

    /// Options present in our sections that nothing read.
    fn unused(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (section, options) in &self.sections {
            if FOREIGN_SECTIONS.contains(&section.as_str())
                || section.starts_with("drivers:management_store:")
                || section.starts_with("stages:")
                // Read by storage::mongodb::options, which warns about
                // unknown options itself.
                || section == "drivers:message_store:mongodb"
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

/// The error for `option` of `section`.
pub fn invalid(section: &str, option: &str, reason: String) -> ConfigError {
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
        let defaults = DefaultSection::read(&mut r)?;
        let drivers = DriversSection::read(&mut r)?;
        let (mut serve_http, mut serve_websocket) = (false, false);
        for t in &drivers.transport {
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
        let message_store = drivers.message_store.unwrap_or(drivers.storage);
        if drivers.management_store != message_store.to_string()
            && drivers.management_store != "mongodb"
            && !defaults.pooling
        {
            tracing::info!(
                "[drivers] management_store = {}: queue records are kept by the message store \
                 ({message_store}), so no separate management database is used",
                drivers.management_store
            );
        }
        let redis = RedisConfig::read(&mut r)?;
        let management_redis = RedisConfig::read_in(&mut r, "drivers:management_store:redis")?;
        let catalog = PoolingCatalogSection::read(&mut r)?;
        if defaults.pooling
            && !["sqlite", "redis", "mongodb"].contains(&drivers.management_store.as_str())
        {
            return Err(invalid(
                "drivers",
                "management_store",
                format!(
                    "{} cannot hold the pooling catalogue (pooling = true needs sqlite, redis or mongodb)",
                    drivers.management_store
                ),
            ));
        }
        let http = Listen::from_section(ListenSection::read(&mut r)?, 8888);
        let websocket = Listen::from_section(
            ListenSection::read_in(&mut r, "drivers:transport:websocket")?,
            9000,
        );
        let sqlite = SqliteSection::read(&mut r)?;
        let sqlite_file = |uri: &str| PathBuf::from(uri.strip_prefix("sqlite://").unwrap_or(uri));
        let sqlite_path = if sqlite.uri.is_empty() {
            default_data_dir().join("zaqar.sqlite")
        } else {
            sqlite_file(&sqlite.uri)
        };
        let management_sqlite = ManagementSqliteSection::read(&mut r)?;
        let management_sqlite_path = if management_sqlite.uri.is_empty() {
            sqlite_path.clone()
        } else {
            sqlite_file(&management_sqlite.uri)
        };
        let transport = TransportConfig::read(&mut r)?;
        let pipeline = PipelineConfig::read(&mut r)?;
        let notification = NotificationConfig::read(&mut r)?;
        let s = "notification";
        if notification.smtp_mode == SmtpMode::SelfLocal && notification.smtp_host.is_none() {
            return Err(invalid(
                s,
                "smtp_host",
                "required when smtp_mode = self_local".into(),
            ));
        }
        if notification.max_notifier_workers_per_project > notification.max_notifier_workers {
            return Err(invalid(
                s,
                "max_notifier_workers_per_project",
                format!(
                    "{} is more than max_notifier_workers ({})",
                    notification.max_notifier_workers_per_project,
                    notification.max_notifier_workers
                ),
            ));
        }
        let signed_url = SignedUrlConfig::read(&mut r)?;
        let metrics = MetricsSection::read(&mut r)?;
        for unused in r.unused() {
            tracing::warn!("unknown configuration option {unused} is ignored");
        }
        Ok(Config {
            auth_strategy: defaults.auth_strategy,
            admin_mode: defaults.admin_mode,
            enable_checksum: defaults.enable_checksum,
            pooling: defaults.pooling,
            unreliable: defaults.unreliable,
            enable_virtual_pool: catalog.enable_virtual_pool,
            serve_http,
            serve_websocket,
            message_store,
            management_store: drivers.management_store,
            http,
            websocket,
            sqlite_path,
            management_sqlite_path,
            management_redis,
            redis,
            transport,
            pipeline,
            notification,
            signed_url,
            metrics_enabled: metrics.enabled,
            config_dir: None,
            sections: r.sections,
        })
    }
}

/// Every option this server reads, section by section, in the order of a
/// sample `zaqar.conf`.
pub fn all_options() -> Vec<OptionDoc> {
    let mut all = DefaultSection::options();
    all.extend(DriversSection::options());
    all.extend(ListenSection::options());
    all.extend(ListenSection::options_in("drivers:transport:websocket"));
    all.extend(PoolingCatalogSection::options());
    all.extend(SqliteSection::options());
    all.extend(ManagementSqliteSection::options());
    all.extend(RedisConfig::options());
    all.extend(RedisConfig::options_in("drivers:management_store:redis"));
    all.extend(TransportConfig::options());
    all.extend(PipelineConfig::options());
    all.extend(NotificationConfig::options());
    all.extend(SignedUrlConfig::options());
    all.extend(MetricsSection::options());
    all
}

/// A sample `zaqar.conf`: every option, commented out at its default, with
/// its help and type.
pub fn sample_config() -> String {
    let mut out = String::new();
    let mut section = "";
    for o in all_options() {
        if o.section != section {
            if !section.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!("[{}]\n\n", o.section));
            section = o.section;
        }
        for line in o.help.lines() {
            out.push_str(&format!("#{line}\n"));
        }
        out.push_str(&format!("# ({})\n#{} = {}\n\n", o.kind, o.name, o.default));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_declares_every_option_at_its_default() {
        let sample = sample_config();
        // Uncommented, the sample is a valid configuration equal to none.
        let uncommented: String = sample
            .lines()
            .filter(|l| l.starts_with('[') || (l.starts_with('#') && l.contains(" = ")))
            .map(|l| format!("{}\n", l.trim_start_matches('#')))
            .collect();
        let from_sample = Config::parse(&uncommented).unwrap();
        let plain = Config::parse("").unwrap();
        assert_eq!(
            format!("{:?}", from_sample.transport),
            format!("{:?}", plain.transport)
        );
        assert_eq!(from_sample.notification, plain.notification);
        assert_eq!(from_sample.http, plain.http);
        assert_eq!(from_sample.websocket.port, 9000);
        assert_eq!(from_sample.redis, plain.redis);
        assert_eq!(from_sample.pipeline, plain.pipeline);
        // Every option has help.
        for o in all_options() {
            assert!(
                !o.help.trim().is_empty(),
                "[{}] {} has no help",
                o.section,
                o.name
            );
        }
        assert!(sample.contains("#max_messages_post_size = 262144"));
    }

    #[test]
    fn defaults_without_a_file() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.auth_strategy, AuthStrategy::None);
        assert_eq!(c.http.port, 8888);
        assert_eq!(c.websocket.port, 9000);
        assert!(c.serve_http && c.serve_websocket);
        assert_eq!(c.message_store, StoreEngine::Sqlite);
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
        assert_eq!(c.pipeline.message_pipeline, vec!["a", "b"]);
    }

    #[test]
    fn notification_and_signed_url_sections() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.notification.max_notifier_workers, 10);
        assert_eq!(c.notification.workers_per_project(), 5);
        assert_eq!(
            c.notification.smtp_command.0,
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
        assert_eq!(c.notification.workers_per_project(), 2);
        assert!(c.notification.require_confirmation);
        assert_eq!(c.notification.allowed_subscriber_networks.len(), 2);
        assert_eq!(c.notification.smtp_command.0, vec!["/bin/cat", "-u"]);
        assert_eq!(
            c.notification.webhook_proxy.as_ref().map(|u| u.as_str()),
            Some("http://proxy.example:3128/")
        );
        let t = &c.notification.subscribe_template();
        assert_eq!(
            (t.topic.as_str(), t.body.as_str(), t.sender.as_str()),
            ("Hi, there", "Go {2}, now", "me@x")
        );
        assert_eq!(c.signed_url.secret_key.as_deref(), Some("s3cret"));
        assert_eq!(c.pipeline.subscription_pipeline, vec!["x"]);
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
        assert_eq!(c.message_store, StoreEngine::Redis);
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
