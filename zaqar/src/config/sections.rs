//! Every section of `zaqar.conf` this server reads, one declaration per
//! option: name, type, default, bounds and help (the doc comment). Options
//! marked "(ours)" do not exist in the reference.

use std::net::IpAddr;
use std::path::PathBuf;

use super::option::{choice, not_empty, range, section, OptionValue};

/// Longest TTL, delay or grace any option may allow (seconds): ten years.
/// Every expiry is `now + value` in milliseconds, which this keeps far from
/// overflowing.
pub const MAX_SECONDS: i64 = 315_360_000;

choice! {
    /// `[DEFAULT] auth_strategy`.
    pub enum AuthStrategy {
        /// No authentication: `X-Project-ID` and `X-Roles` are trusted.
        None = "" | "noauth",
        /// Keystone token validation on every route.
        Keystone = "keystone",
    }
}

choice! {
    /// `[drivers] message_store`: the engine that keeps messages.
    pub enum StoreEngine {
        /// The embedded SQLite store (the default).
        Sqlite = "sqlite",
        /// Redis (standalone, Sentinel or Cluster).
        Redis = "redis",
        /// MongoDB (a replica set; a standalone server with `unreliable`).
        Mongodb = "mongodb",
    }
}

impl std::fmt::Display for StoreEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_option())
    }
}

choice! {
    /// `[transport] client_id_uuid_safe`.
    pub enum ClientIdMode {
        /// Client-ID must be a UUID.
        Strict = "strict",
        /// Any string of `min_length_client_id..=max_length_client_id` characters.
        Off = "off",
    }
}

choice! {
    /// `[notification] smtp_mode`: how e-mail notifications leave.
    pub enum SmtpMode {
        /// `third_part`: pipe an RFC 822 message to `smtp_command`.
        ThirdPart = "third_part",
        /// `self_local`: speak SMTP (TLS) to `smtp_host:smtp_port`.
        SelfLocal = "self_local",
    }
}

section! {
    /// `[DEFAULT]`: what the server is.
    pub struct DefaultSection in "DEFAULT" {
        /// Backend to use for authentication: empty (no authentication:
        /// identity headers are trusted) or `keystone`.
        auth_strategy: AuthStrategy = AuthStrategy::None;
        /// Serve the admin routes (health, pools, flavors).
        admin_mode: bool = false;
        /// Store an MD5 checksum of each message body and return it.
        enable_checksum: bool = false;
        /// Spread queues over the pools registered through the pool API
        /// (`/v2/pools`, admin mode), by flavor and weight.
        pooling: bool = false;
        /// Let the MongoDB store run on a standalone server or with a write
        /// concern below a majority (acknowledged writes may then be lost).
        unreliable: bool = false;
    }
}

section! {
    /// `[pooling:catalog]`: the pooling catalogue.
    pub struct PoolingCatalogSection in "pooling:catalog" {
        /// Serve queues that no pool fits (no pool of their flavor, or none
        /// with weight) from the configured message store instead of
        /// refusing them (503).
        enable_virtual_pool: bool = false;
    }
}

section! {
    /// `[drivers]`: which transports and stores.
    pub struct DriversSection in "drivers" {
        /// Transports to serve: `wsgi` (HTTP) and/or `websocket`, one process
        /// for both.
        transport: Vec<String> = vec!["wsgi".into(), "websocket".into()];
        /// Storage driver for messages: `sqlite` (embedded, default),
        /// `redis` or `mongodb`.
        message_store: Option<StoreEngine> = None;
        /// The reference's older name of `message_store`.
        storage: StoreEngine = StoreEngine::Sqlite;
        /// Storage driver of the management plane. Queue records live with
        /// the message store: any of the reference's names is accepted.
        management_store: String = "sqlite".into(), check |v: &String| {
            if ["sqlite", "redis", "sqlalchemy", "mongodb"].contains(&v.as_str()) {
                Ok(())
            } else {
                Err(format!("{v:?} is not one of sqlite, redis, sqlalchemy, mongodb"))
            }
        };
    }
}

section! {
    /// `[drivers:transport:wsgi]` and `[drivers:transport:websocket]`: a
    /// listener, and the limits that keep slow or idle clients from holding
    /// its connections.
    pub struct ListenSection in "drivers:transport:wsgi" {
        /// Address on which the server listens.
        bind: IpAddr = IpAddr::from([127, 0, 0, 1]);
        /// Port on which the server listens (default 8888 for wsgi, 9000 for
        /// websocket; 0 picks a free one).
        port: Option<u16> = None;
        /// (ours) Most connections served at once; past it new connections
        /// wait in the kernel's backlog until one closes.
        max_connections: usize = 4096, check range(1, 1_000_000);
        /// (ours) Seconds a new connection has to send a whole request head
        /// (and a request its body); a slower client is disconnected.
        header_read_timeout: u64 = 30, check range(1, 3600);
        /// (ours) Seconds a connection may stay idle between requests (the
        /// next request head must be complete by then) before it is closed.
        keepalive_timeout: u64 = 75, check range(1, 3600);
        /// The reference's advertised port of the WebSocket listener; read
        /// and ignored.
        external_port as "external-port": Option<u16> = None;
    }
}

section! {
    /// `[drivers:management_store:sqlite]`: where the management plane of
    /// pooling (queue records, pools, flavors, catalogue) lives when the
    /// management store is `sqlite`.
    pub struct ManagementSqliteSection in "drivers:management_store:sqlite" {
        /// The database file; empty: the message store's SQLite file when
        /// that is SQLite, else `zaqar.sqlite` in the data directory.
        uri: String = String::new();
    }
}

section! {
    /// `[drivers:message_store:sqlite]`: the embedded store.
    pub struct SqliteSection in "drivers:message_store:sqlite" {
        /// The database file (`sqlite:///path` or a path); empty: `zaqar.sqlite`
        /// in `$ZAQAR_DATA_DIR`, else `~/.local/share/zaqar`.
        uri: String = String::new();
    }
}

section! {
    /// `[drivers:message_store:redis]` (and `[drivers:management_store:redis]`):
    /// where the Redis driver connects.
    pub struct RedisConfig in "drivers:message_store:redis" {
        /// Connection URI: `redis://host:port`, `redis://:password@host`,
        /// `redis+sentinel://` / `?master=` (Sentinel), `redis://` with
        /// `socket_path`, `rediss://` (TLS) or `redis+cluster://`.
        uri: String = "redis://127.0.0.1:6379".into(), check not_empty;
        /// Reconnection attempts before a request fails with 503.
        max_reconnect_attempts: u32 = 10, check range(0, 1000);
        /// First pause between reconnections, in seconds (doubled each time).
        reconnect_sleep: f64 = 1.0, check range(0.0, 3600.0);
        /// (ours) After each write, wait until this many replicas hold it
        /// (Redis `WAIT`) before acknowledging it; 0 acknowledges what the
        /// master has, as the reference does.
        wait_replicas: u32 = 0, check range(0, 64);
        /// (ours) Milliseconds that wait may take; a write not on enough
        /// replicas by then answers 503.
        wait_timeout_ms: u64 = 1000, check range(1, 60_000);
        /// (ours) Run the per-queue Lua scripts as a Redis 7 function
        /// library (`FCALL`), whose helpers Redis builds once instead of on
        /// every call; false runs them as `EVALSHA` (a Redis before 7 gets
        /// that by itself).
        lua_functions: bool = true;
    }
}

section! {
    /// `[transport]`: limits and defaults of the API, with the reference's
    /// defaults. Every upper bound is checked at start-up, so that no
    /// configured limit can make the server's time arithmetic overflow.
    pub struct TransportConfig in "transport" {
        /// TTL of a message posted without one (seconds).
        default_message_ttl: i64 = 3600, check range(1, MAX_SECONDS);
        /// Delay shown as the default of `_default_message_delay` (seconds).
        default_message_delay: i64 = 0, check range(0, MAX_SECONDS);
        /// TTL of a claim created without one (seconds).
        default_claim_ttl: i64 = 300, check range(1, MAX_SECONDS);
        /// Grace of a claim created without one (seconds).
        default_claim_grace: i64 = 60, check range(0, MAX_SECONDS);
        /// TTL of a subscription created without one (seconds).
        default_subscription_ttl: i64 = 3600, check range(1, MAX_SECONDS);
        /// Largest `limit` of a queue listing.
        max_queues_per_page: i64 = 20, check range(1, 1000);
        /// Largest `limit` of a message listing, and most ids per request.
        max_messages_per_page: i64 = 20, check range(1, 1000);
        /// Largest `limit` of a subscription listing.
        max_subscriptions_per_page: i64 = 20, check range(1, 1000);
        /// Largest claim `limit` and `pop` value.
        max_messages_per_claim_or_pop: i64 = 20, check range(1, 1000);
        /// Largest queue metadata document (bytes).
        max_queue_metadata: i64 = 64 * 1024, check range(1, 16 * 1024 * 1024);
        /// Largest message post body (bytes).
        max_messages_post_size: i64 = 256 * 1024, check range(1, 64 * 1024 * 1024);
        /// Largest message TTL (seconds).
        max_message_ttl: i64 = 1_209_600, check range(60, MAX_SECONDS);
        /// Largest message delay (seconds).
        max_message_delay: i64 = 900, check range(0, MAX_SECONDS);
        /// Largest claim TTL (seconds).
        max_claim_ttl: i64 = 43_200, check range(60, MAX_SECONDS);
        /// Largest claim grace (seconds).
        max_claim_grace: i64 = 43_200, check range(60, MAX_SECONDS);
        /// Longest `wait` of a long-polling claim or message listing
        /// (seconds; 0 turns long polling off).
        max_long_poll_wait: i64 = 20, check range(0, 3600);
        /// Subscriber URI schemes accepted.
        subscriber_types: Vec<String> = ["http", "https", "mailto", "trust+http", "trust+https"]
            .map(String::from)
            .to_vec();
        /// Largest `limit` of a flavor listing.
        max_flavors_per_page: i64 = 20, check range(1, 1000);
        /// Largest `limit` of a pool listing.
        max_pools_per_page: i64 = 20, check range(1, 1000);
        /// How Client-ID is checked: `strict` (a UUID) or `off` (any string
        /// of `min_length_client_id..=max_length_client_id` characters).
        client_id_uuid_safe: ClientIdMode = ClientIdMode::Strict;
        /// Shortest Client-ID when not a UUID.
        min_length_client_id: usize = 10, check range(1, 1024);
        /// Longest Client-ID when not a UUID.
        max_length_client_id: usize = 36, check range(1, 1024);
        /// Bulk delete by ids requires the matching claim ids.
        message_delete_with_claim_id: bool = false;
        /// `AES256` (the only working choice in the reference).
        message_encryption_algorithms: String = "AES256".into();
        /// Key material for encrypted queues.
        message_encryption_key: String = "AES256".into();
    }
}

section! {
    /// `[storage]`: the stages of each storage pipeline, in order.
    pub struct PipelineConfig in "storage" {
        /// Stages in front of the queue store.
        queue_pipeline: Vec<String> = Vec::new();
        /// Stages in front of the message store (the notifier runs first
        /// unless named here).
        message_pipeline: Vec<String> = Vec::new();
        /// Stages in front of the claim store.
        claim_pipeline: Vec<String> = Vec::new();
        /// Stages in front of the subscription store.
        subscription_pipeline: Vec<String> = Vec::new();
        /// Stages in front of the topic store; read and ignored (topics are
        /// not served yet).
        topic_pipeline: Vec<String> = Vec::new();
    }
}

/// An e-mail template (`topic`, `body`, `sender`); `{0}`, `{1}`, `{2}` in
/// the body stand for the queue, the project and the confirmation link.
/// Written as the oslo.config dict `topic:…,body:…,sender:…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailTemplate {
    /// Subject line.
    pub topic: String,
    /// Body text.
    pub body: String,
    /// `From:` address.
    pub sender: String,
}

const DEFAULT_SENDER: &str = "Zaqar Notifications <no-reply@openstack.org>";

impl EmailTemplate {
    fn subscribe() -> Self {
        EmailTemplate {
            topic: "Zaqar Notification - Subscription Confirmation".into(),
            body: "You have chosen to subscribe to the queue: {0}. This queue belongs to project: {1}. To \
                   confirm this subscription, click or visit this link below: {2}"
                .into(),
            sender: DEFAULT_SENDER.into(),
        }
    }

    fn unsubscribe() -> Self {
        EmailTemplate {
            topic: "Zaqar Notification - Unsubscribe Confirmation".into(),
            body: "You have unsubscribed successfully to the queue: {0}. This queue belongs to project: {1}. \
                   To resubscribe this subscription, click or visit this link below: {2}"
                .into(),
            sender: DEFAULT_SENDER.into(),
        }
    }
}

/// The dict's entries override the defaults of the option they are read
/// for ([`NotificationConfig::read`] fills what is missing). Values may
/// contain commas: a comma only separates entries when a known key follows.
impl OptionValue for Option<EmailTemplate> {
    const KIND: &'static str = "dict (topic, body, sender)";
    fn parse_option(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Ok(None);
        }
        let mut t = EmailTemplate {
            topic: String::new(),
            body: String::new(),
            sender: String::new(),
        };
        let mut rest = raw;
        while !rest.is_empty() {
            let (key, after) = rest
                .split_once(':')
                .ok_or_else(|| format!("{rest:?} is not key:value"))?;
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
                    return Err(format!(
                        "unknown key {other:?} (known: topic, body, sender)"
                    ))
                }
            }
            rest = after[end..].strip_prefix(',').unwrap_or("");
        }
        Ok(Some(t))
    }
    fn to_option(&self) -> String {
        self.as_ref()
            .map(|t| format!("topic:{},body:{},sender:{}", t.topic, t.body, t.sender))
            .unwrap_or_default()
    }
}

/// A program and its arguments, written as one line split on spaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command(pub Vec<String>);

impl OptionValue for Command {
    const KIND: &'static str = "command line";
    fn parse_option(raw: &str) -> Result<Self, String> {
        let words: Vec<String> = raw
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if words.is_empty() {
            return Err("the command is empty".into());
        }
        Ok(Command(words))
    }
    fn to_option(&self) -> String {
        self.0.join(" ")
    }
}

impl OptionValue for reqwest::Url {
    const KIND: &'static str = "URL";
    fn parse_option(raw: &str) -> Result<Self, String> {
        reqwest::Url::parse(raw).map_err(|e| format!("{raw:?}: {e}"))
    }
    fn to_option(&self) -> String {
        self.to_string()
    }
}

section! {
    /// `[notification]`: how subscribers are notified.
    pub struct NotificationConfig in "notification" {
        /// How e-mail leaves: `third_part` (pipe to `smtp_command`) or
        /// `self_local` (SMTP to `smtp_host`).
        smtp_mode: SmtpMode = SmtpMode::ThirdPart;
        /// SMTP server, for `self_local`.
        smtp_host: Option<String> = None;
        /// SMTP port, for `self_local` (465: SMTP over TLS; other ports use
        /// STARTTLS).
        smtp_port: u16 = 465;
        /// SMTP user, for `self_local`.
        smtp_user_name: Option<String> = None;
        /// SMTP password, for `self_local`.
        smtp_user_password: Option<String> = None;
        /// (ours) PEM file of CA certificates trusted for the SMTP server's
        /// certificate, besides the public roots (`self_local`).
        smtp_cafile: Option<String> = None;
        /// Program and arguments (split on spaces) reading the message on
        /// stdin, for `third_part`.
        smtp_command: Command = Command(vec!["/usr/sbin/sendmail".into(), "-t".into(), "-oi".into()]);
        /// Deliveries in flight at once.
        max_notifier_workers: usize = 10, check range(1, 10_000);
        /// (ours) Deliveries of one project in flight at once, so that a
        /// tenant whose subscribers hang cannot hold every worker; 0 (the
        /// default) means half of `max_notifier_workers`, rounded up.
        max_notifier_workers_per_project: usize = 0, check range(0, 10_000);
        /// Only confirmed subscriptions are notified, and new ones are sent
        /// a confirmation request (needs `[signed_url] secret_key`).
        require_confirmation: bool = false;
        /// Page linked from confirmation e-mails.
        external_confirmation_url: Option<String> = None;
        /// Subscription confirmation e-mail: `topic:…,body:…,sender:…`.
        subscription_confirmation_email_template: Option<EmailTemplate> = None;
        /// Unsubscribe confirmation e-mail: `topic:…,body:…,sender:…`.
        unsubscribe_confirmation_email_template: Option<EmailTemplate> = None;
        /// (ours) Seconds one webhook request may take (connect + answer)
        /// before it counts as failed.
        webhook_timeout: u64 = 10, check range(1, 3600);
        /// (ours) CIDRs that webhook and trust+ subscribers may resolve to
        /// although they are loopback, private, link-local, unique-local or
        /// metadata addresses (empty: such subscribers are refused).
        allowed_subscriber_networks: Vec<ipnet::IpNet> = Vec::new();
        /// (ours) An `http://` or `https://` proxy every webhook and trust+
        /// delivery goes through. Unset, deliveries use no proxy at all,
        /// whatever `HTTP_PROXY` and the like say (a proxy would resolve the
        /// subscriber's name out of reach of the address guard); when set,
        /// that proxy is the guard.
        webhook_proxy: Option<reqwest::Url> = None, check |url: &Option<reqwest::Url>| match url {
            Some(u) if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() => {
                Err(format!("{u} is not an http:// or https:// URL with a host"))
            }
            _ => Ok(()),
        };
    }
}

impl NotificationConfig {
    /// The subscription confirmation template, defaults filled in.
    pub fn subscribe_template(&self) -> EmailTemplate {
        fill(
            &self.subscription_confirmation_email_template,
            EmailTemplate::subscribe(),
        )
    }

    /// The unsubscribe confirmation template, defaults filled in.
    pub fn unsubscribe_template(&self) -> EmailTemplate {
        fill(
            &self.unsubscribe_confirmation_email_template,
            EmailTemplate::unsubscribe(),
        )
    }

    /// Deliveries of one project in flight at most (the option, or its
    /// default of half the workers).
    pub fn workers_per_project(&self) -> usize {
        match self.max_notifier_workers_per_project {
            0 => self.max_notifier_workers.div_ceil(2),
            n => n,
        }
    }
}

fn fill(given: &Option<EmailTemplate>, default: EmailTemplate) -> EmailTemplate {
    let Some(t) = given else {
        return default;
    };
    let pick = |v: &String, d: String| if v.is_empty() { d } else { v.clone() };
    EmailTemplate {
        topic: pick(&t.topic, default.topic),
        body: pick(&t.body, default.body),
        sender: pick(&t.sender, default.sender),
    }
}

section! {
    /// `[signed_url]`: pre-signed URLs.
    pub struct SignedUrlConfig in "signed_url" {
        /// The HMAC key; without it no URL can be signed (share answers 400)
        /// and no confirmation is sent.
        secret_key: Option<String> = None;
    }
}

section! {
    /// `[metrics]` (ours): Prometheus metrics.
    pub struct MetricsSection in "metrics" {
        /// Serve `GET /metrics` (Prometheus text) on the HTTP listener. Off
        /// by default: the endpoint is not behind authentication (scrapers
        /// hold no Keystone token), so turn it on where the listener is not
        /// reachable from tenants, or filter the path in front of it.
        enabled: bool = false;
    }
}

/// The data directory of the embedded store when no `uri` is set:
/// `$ZAQAR_DATA_DIR`, else `$XDG_DATA_HOME/zaqar`, else
/// `~/.local/share/zaqar`, else `./zaqar-data`.
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

section! {
    /// `[DEFAULT]`, the options of oslo.log that this server honours.
    pub struct LoggingSection in "DEFAULT" {
        /// Log at DEBUG instead of INFO. `RUST_LOG`, when set, overrides the
        /// levels of the configuration.
        debug: bool = false;
        /// Write the log to this file (appended to) instead of stderr; a
        /// relative name is taken in `log_dir`.
        log_file: Option<String> = None;
        /// The directory of `log_file`; alone, the log goes to
        /// `<log_dir>/zaqar-server.log`.
        log_dir: Option<String> = None;
        /// One JSON document per log line (time, level, target, message,
        /// fields, request id), instead of text.
        use_json: bool = false;
        /// `logger=LEVEL` pairs; a dotted name is read as a Rust target
        /// (`zaqar.access=WARN` sets `zaqar::access`, the one line per
        /// request). Names of Python libraries are accepted and match nothing.
        default_log_levels: Vec<String> = Vec::new();
        /// strftime format of the time of a text log line (milliseconds are
        /// appended).
        log_date_format: String = "%Y-%m-%d %H:%M:%S".into();
    }
}

section! {
    /// `[cors]`: cross-origin resource sharing, as oslo.middleware's CORS
    /// filter (with Zaqar's defaults for headers and methods). Off while
    /// `allowed_origin` is empty.
    pub struct CorsSection in "cors" {
        /// Origins that may share the API's responses (`https://horizon.example`,
        /// or `*` for any), as the browser sends them in `Origin`.
        allowed_origin: Vec<String> = Vec::new();
        /// Tell the browser that the actual request may carry credentials.
        allow_credentials: bool = true;
        /// Response headers the browser may show to the page.
        expose_headers: Vec<String> = [
            "X-Auth-Token",
            "X-Subject-Token",
            "X-Service-Token",
            "X-OpenStack-Request-ID",
        ]
        .map(String::from)
        .to_vec();
        /// Seconds a browser may cache a preflight answer.
        max_age: Option<u32> = Some(3600);
        /// Methods an actual request may use.
        allow_methods: Vec<String> = ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD"]
            .map(String::from)
            .to_vec();
        /// Headers an actual request may carry (besides the simple ones).
        allow_headers: Vec<String> = [
            "X-Auth-Token",
            "X-Identity-Status",
            "X-Roles",
            "X-Service-Catalog",
            "X-User-Id",
            "X-Tenant-Id",
            "X-OpenStack-Request-ID",
            "X-Trace-Info",
            "X-Trace-HMAC",
            "Client-id",
        ]
        .map(String::from)
        .to_vec();
    }
}

section! {
    /// `[healthcheck]`: the `/healthcheck` endpoint, as oslo.middleware's
    /// healthcheck (for load balancers: no authentication, no store access).
    pub struct HealthcheckSection in "healthcheck" {
        /// The path it answers on.
        path: String = "/healthcheck".into(), check |v: &String| {
            if v.starts_with('/') && !v.starts_with("/v2") && v.len() > 1 {
                Ok(())
            } else {
                Err(format!("{v:?} must be an absolute path outside /v2"))
            }
        };
        /// While this file exists, answer 503 `DISABLED BY FILE` (take the
        /// node out of the load balancer before maintenance).
        disable_by_file_path: Option<String> = None;
        /// `port:path` pairs: the same, per listening port.
        disable_by_file_paths: Vec<String> = Vec::new();
    }
}
