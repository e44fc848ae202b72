//! The `[keystone_authtoken]` options, under keystonemiddleware's names.
//!
//! The server reads its INI file itself and hands this module the section as
//! key/value pairs, so the crate stays independent of any INI library. Every
//! value is checked here, once, and an error names the option at fault.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The identity service settings of a protected service, as found in the
/// `[keystone_authtoken]` section of its configuration file.
///
/// Build it with [`AuthTokenConfig::from_options`]. Fields are public so an
/// application can also assemble one in code; [`crate::Validator::new`]
/// accepts either.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthTokenConfig {
    /// The public Keystone URL that clients are sent to in
    /// `WWW-Authenticate: Keystone uri="..."`. Defaults to `auth_url`; the
    /// deprecated `auth_uri` is read when this is absent.
    pub www_authenticate_uri: String,
    /// Base URL of Keystone, without the trailing `/v3` (which is stripped if
    /// given, as devstack often writes it).
    pub auth_url: String,
    /// Only `password` (or its alias `v3password`) is supported.
    pub auth_type: String,
    /// Name of the service user this service authenticates as.
    pub username: String,
    /// Password of the service user. Never printed by `Debug`.
    pub password: String,
    /// Domain of the service user, by name.
    pub user_domain_name: Option<String>,
    /// Domain of the service user, by id. When neither this nor the name is
    /// set, the id `default` is used.
    pub user_domain_id: Option<String>,
    /// Project the service token is scoped to, by name.
    pub project_name: Option<String>,
    /// Project the service token is scoped to, by id. One of `project_name`
    /// and `project_id` is required: Keystone lets a project-scoped `admin`
    /// or `service` role validate tokens.
    pub project_id: Option<String>,
    /// Domain of `project_name`, by name.
    pub project_domain_name: Option<String>,
    /// Domain of `project_name`, by id (`default` when neither is set).
    pub project_domain_id: Option<String>,
    /// Region of the identity endpoint; kept for catalog look-ups.
    pub region_name: Option<String>,
    /// How long a validated token is trusted without asking Keystone again;
    /// `None` (`token_cache_time <= 0`) disables the cache. Default 300 s.
    pub token_cache_time: Option<Duration>,
    /// Timeout of each request to Keystone (connect and whole request).
    /// keystonemiddleware has no timeout by default; we use 10 s so that a
    /// hung Keystone turns into a 503 instead of hung clients.
    pub http_connect_timeout: Duration,
    /// How many times a request to Keystone is retried after a connection
    /// error. Default 3.
    pub http_request_max_retries: u32,
    /// Roles an `X-Service-Token` must carry (default `service`).
    pub service_token_roles: Vec<String>,
    /// Whether a service token lacking `service_token_roles` is refused.
    pub service_token_roles_required: bool,
    /// When true the application, not the middleware, decides what to do
    /// with an unauthenticated request (see [`crate::authenticate_deferred`]).
    pub delay_auth_decision: bool,
    /// PEM file of the CA that signed Keystone's certificate.
    pub cafile: Option<PathBuf>,
    /// Skip verification of Keystone's TLS certificate. For tests only.
    pub insecure: bool,
    /// Most tokens held in the cache at once (not a keystonemiddleware
    /// option; fixed at 10 000 by [`AuthTokenConfig::from_options`]).
    pub cache_capacity: u64,
}

/// A `[keystone_authtoken]` value that is missing or cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required option is absent or empty.
    #[error("[keystone_authtoken] {option} is required")]
    Missing {
        /// The option's name.
        option: &'static str,
    },
    /// An option has a value of the wrong shape.
    #[error("[keystone_authtoken] {option} = {value:?} is invalid: expected {expected}")]
    Invalid {
        /// The option's name.
        option: &'static str,
        /// The value as written (never a password).
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// The CA file named by `cafile` cannot be read or parsed.
    #[error("[keystone_authtoken] cafile {path:?}: {detail}")]
    CaFile {
        /// The path as configured.
        path: PathBuf,
        /// Why it could not be used.
        detail: String,
    },
    /// The HTTP client could not be built from the TLS settings.
    #[error("cannot build the HTTP client for Keystone: {0}")]
    Client(#[source] reqwest::Error),
}

/// Default of `token_cache_time`, as in keystonemiddleware.
pub const DEFAULT_TOKEN_CACHE_TIME: Duration = Duration::from_secs(300);
/// Default request timeout (keystonemiddleware has none; see the field).
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `http_request_max_retries`.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// Default of [`AuthTokenConfig::cache_capacity`].
pub const DEFAULT_CACHE_CAPACITY: u64 = 10_000;

impl AuthTokenConfig {
    /// Reads the options of a `[keystone_authtoken]` section.
    ///
    /// Takes any iterator of name/value pairs: a `&HashMap<String, String>`,
    /// a `Vec<(&str, &str)>`, or an INI library's section iterator. Option
    /// names are matched case-insensitively; surrounding whitespace and
    /// quotes of values are not interpreted (the INI parser's job). Options
    /// this crate does not use (`memcached_servers`, ...) are ignored.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Missing`] when `auth_url`, `username`, `password` or
    /// both `project_name` and `project_id` are absent;
    /// [`ConfigError::Invalid`] when a value cannot be parsed (the error
    /// names the option).
    pub fn from_options<I, K, V>(options: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut raw = Raw::default();
        for (key, value) in options {
            raw.set(key.as_ref(), value.as_ref());
        }
        raw.build()
    }

    /// The value of the `WWW-Authenticate` header sent with a 401.
    pub fn www_authenticate(&self) -> String {
        crate::error::www_authenticate_value(&self.www_authenticate_uri)
    }
}

impl fmt::Debug for AuthTokenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthTokenConfig")
            .field("www_authenticate_uri", &self.www_authenticate_uri)
            .field("auth_url", &self.auth_url)
            .field("auth_type", &self.auth_type)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("user_domain_name", &self.user_domain_name)
            .field("user_domain_id", &self.user_domain_id)
            .field("project_name", &self.project_name)
            .field("project_id", &self.project_id)
            .field("project_domain_name", &self.project_domain_name)
            .field("project_domain_id", &self.project_domain_id)
            .field("region_name", &self.region_name)
            .field("token_cache_time", &self.token_cache_time)
            .field("http_connect_timeout", &self.http_connect_timeout)
            .field("http_request_max_retries", &self.http_request_max_retries)
            .field("service_token_roles", &self.service_token_roles)
            .field(
                "service_token_roles_required",
                &self.service_token_roles_required,
            )
            .field("delay_auth_decision", &self.delay_auth_decision)
            .field("cafile", &self.cafile)
            .field("insecure", &self.insecure)
            .field("cache_capacity", &self.cache_capacity)
            .finish()
    }
}

/// The section as written, before checking.
#[derive(Default)]
struct Raw {
    www_authenticate_uri: Option<String>,
    auth_uri: Option<String>,
    auth_url: Option<String>,
    auth_type: Option<String>,
    username: Option<String>,
    password: Option<String>,
    user_domain_name: Option<String>,
    user_domain_id: Option<String>,
    project_name: Option<String>,
    project_id: Option<String>,
    project_domain_name: Option<String>,
    project_domain_id: Option<String>,
    region_name: Option<String>,
    token_cache_time: Option<String>,
    http_connect_timeout: Option<String>,
    http_request_max_retries: Option<String>,
    service_token_roles: Option<String>,
    service_token_roles_required: Option<String>,
    delay_auth_decision: Option<String>,
    cafile: Option<String>,
    insecure: Option<String>,
}

impl Raw {
    fn set(&mut self, key: &str, value: &str) {
        let slot = match key.trim().to_ascii_lowercase().as_str() {
            "www_authenticate_uri" => &mut self.www_authenticate_uri,
            "auth_uri" => &mut self.auth_uri,
            "auth_url" => &mut self.auth_url,
            "auth_type" | "auth_plugin" => &mut self.auth_type,
            "username" => &mut self.username,
            "password" => &mut self.password,
            "user_domain_name" => &mut self.user_domain_name,
            "user_domain_id" => &mut self.user_domain_id,
            "project_name" => &mut self.project_name,
            "project_id" => &mut self.project_id,
            "project_domain_name" => &mut self.project_domain_name,
            "project_domain_id" => &mut self.project_domain_id,
            "region_name" => &mut self.region_name,
            "token_cache_time" => &mut self.token_cache_time,
            "http_connect_timeout" => &mut self.http_connect_timeout,
            "http_request_max_retries" => &mut self.http_request_max_retries,
            "service_token_roles" => &mut self.service_token_roles,
            "service_token_roles_required" => &mut self.service_token_roles_required,
            "delay_auth_decision" => &mut self.delay_auth_decision,
            "cafile" => &mut self.cafile,
            "insecure" => &mut self.insecure,
            _ => return,
        };
        let value = value.trim();
        *slot = (!value.is_empty()).then(|| value.to_owned());
    }

    fn build(self) -> Result<AuthTokenConfig, ConfigError> {
        let auth_url = normalize_auth_url(self.auth_url.as_deref())?;
        let www_authenticate_uri = match self.www_authenticate_uri.or(self.auth_uri) {
            Some(uri) => {
                check_url("www_authenticate_uri", &uri)?;
                uri
            }
            None => auth_url.clone(),
        };
        let auth_type = self.auth_type.unwrap_or_else(|| "password".to_owned());
        if !matches!(auth_type.as_str(), "password" | "v3password") {
            return Err(ConfigError::Invalid {
                option: "auth_type",
                value: auth_type,
                expected: "password (the only supported auth plugin)",
            });
        }
        let username = self
            .username
            .ok_or(ConfigError::Missing { option: "username" })?;
        let password = self
            .password
            .ok_or(ConfigError::Missing { option: "password" })?;
        if self.project_name.is_none() && self.project_id.is_none() {
            return Err(ConfigError::Missing {
                option: "project_name",
            });
        }
        let token_cache_time = match self.token_cache_time {
            None => Some(DEFAULT_TOKEN_CACHE_TIME),
            Some(v) => {
                let secs = parse_int::<i64>("token_cache_time", &v)?;
                (secs > 0).then(|| Duration::from_secs(secs.unsigned_abs()))
            }
        };
        let http_connect_timeout = match self.http_connect_timeout {
            None => DEFAULT_HTTP_TIMEOUT,
            Some(v) => {
                let secs = parse_int::<u64>("http_connect_timeout", &v)?;
                if secs == 0 {
                    return Err(ConfigError::Invalid {
                        option: "http_connect_timeout",
                        value: v,
                        expected: "a positive number of seconds",
                    });
                }
                Duration::from_secs(secs)
            }
        };
        let http_request_max_retries = match self.http_request_max_retries {
            None => DEFAULT_MAX_RETRIES,
            Some(v) => parse_int::<u32>("http_request_max_retries", &v)?,
        };
        let service_token_roles = match self.service_token_roles {
            None => vec!["service".to_owned()],
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        Ok(AuthTokenConfig {
            www_authenticate_uri,
            auth_url,
            auth_type,
            username,
            password,
            user_domain_name: self.user_domain_name,
            user_domain_id: self.user_domain_id,
            project_name: self.project_name,
            project_id: self.project_id,
            project_domain_name: self.project_domain_name,
            project_domain_id: self.project_domain_id,
            region_name: self.region_name,
            token_cache_time,
            http_connect_timeout,
            http_request_max_retries,
            service_token_roles,
            service_token_roles_required: parse_bool(
                "service_token_roles_required",
                self.service_token_roles_required,
            )?,
            delay_auth_decision: parse_bool("delay_auth_decision", self.delay_auth_decision)?,
            cafile: self.cafile.map(PathBuf::from),
            insecure: parse_bool("insecure", self.insecure)?,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
        })
    }
}

/// Checks `auth_url` and strips a trailing `/` and `/v3`.
fn normalize_auth_url(value: Option<&str>) -> Result<String, ConfigError> {
    let value = value.ok_or(ConfigError::Missing { option: "auth_url" })?;
    check_url("auth_url", value)?;
    let mut url = value.trim_end_matches('/');
    if let Some(base) = url.strip_suffix("/v3") {
        url = base.trim_end_matches('/');
    }
    Ok(url.to_owned())
}

fn check_url(option: &'static str, value: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => Err(ConfigError::Invalid {
            option,
            value: value.to_owned(),
            expected: "an http:// or https:// URL",
        }),
    }
}

fn parse_int<T: std::str::FromStr>(option: &'static str, value: &str) -> Result<T, ConfigError> {
    value.parse().map_err(|_| ConfigError::Invalid {
        option,
        value: value.to_owned(),
        expected: "an integer in range",
    })
}

/// Booleans as oslo.config spells them.
fn parse_bool(option: &'static str, value: Option<String>) -> Result<bool, ConfigError> {
    let Some(value) = value else {
        return Ok(false);
    };
    match value.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "on" | "y" | "yes" => Ok(true),
        "0" | "f" | "false" | "off" | "n" | "no" => Ok(false),
        _ => Err(ConfigError::Invalid {
            option,
            value,
            expected: "true or false",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn minimal() -> HashMap<String, String> {
        [
            ("auth_url", "http://127.0.0.1:5000/v3/"),
            ("username", "zaqar"),
            ("password", "secret"),
            ("project_name", "service"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn defaults_follow_keystonemiddleware() {
        let c = AuthTokenConfig::from_options(&minimal()).unwrap();
        assert_eq!(c.auth_url, "http://127.0.0.1:5000");
        assert_eq!(c.www_authenticate_uri, "http://127.0.0.1:5000");
        assert_eq!(c.auth_type, "password");
        assert_eq!(c.token_cache_time, Some(Duration::from_secs(300)));
        assert_eq!(c.http_request_max_retries, 3);
        assert_eq!(c.service_token_roles, vec!["service".to_owned()]);
        assert!(!c.service_token_roles_required);
        assert!(!c.delay_auth_decision);
        assert!(!c.insecure);
        assert_eq!(
            c.www_authenticate(),
            "Keystone uri=\"http://127.0.0.1:5000\""
        );
    }

    #[test]
    fn reads_every_option() {
        let mut m = minimal();
        for (k, v) in [
            ("www_authenticate_uri", "https://keystone.example/identity"),
            ("auth_type", "password"),
            ("user_domain_name", "Default"),
            ("project_domain_id", "default"),
            ("region_name", "RegionOne"),
            ("token_cache_time", "60"),
            ("http_connect_timeout", "3"),
            ("http_request_max_retries", "0"),
            ("service_token_roles", "service, admin"),
            ("service_token_roles_required", "True"),
            ("delay_auth_decision", "yes"),
            ("cafile", "/etc/ssl/ca.pem"),
            ("insecure", "off"),
            ("memcached_servers", "ignored:11211"),
        ] {
            m.insert(k.to_owned(), v.to_owned());
        }
        let c = AuthTokenConfig::from_options(&m).unwrap();
        assert_eq!(c.www_authenticate_uri, "https://keystone.example/identity");
        assert_eq!(c.user_domain_name.as_deref(), Some("Default"));
        assert_eq!(c.project_domain_id.as_deref(), Some("default"));
        assert_eq!(c.region_name.as_deref(), Some("RegionOne"));
        assert_eq!(c.token_cache_time, Some(Duration::from_secs(60)));
        assert_eq!(c.http_connect_timeout, Duration::from_secs(3));
        assert_eq!(c.http_request_max_retries, 0);
        assert_eq!(c.service_token_roles, vec!["service", "admin"]);
        assert!(c.service_token_roles_required);
        assert!(c.delay_auth_decision);
        assert_eq!(c.cafile, Some(PathBuf::from("/etc/ssl/ca.pem")));
        assert!(!c.insecure);
    }

    #[test]
    fn deprecated_auth_uri_is_read() {
        let mut m = minimal();
        m.insert("auth_uri".into(), "http://public.example:5000".into());
        let c = AuthTokenConfig::from_options(&m).unwrap();
        assert_eq!(c.www_authenticate_uri, "http://public.example:5000");
    }

    #[test]
    fn negative_cache_time_disables_cache() {
        let mut m = minimal();
        m.insert("token_cache_time".into(), "-1".into());
        let c = AuthTokenConfig::from_options(&m).unwrap();
        assert_eq!(c.token_cache_time, None);
    }

    #[test]
    fn errors_name_the_option() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("auth_url", None, "auth_url"),
            ("auth_url", Some("ftp://x"), "auth_url"),
            ("username", None, "username"),
            ("password", None, "password"),
            ("project_name", None, "project_name"),
            ("token_cache_time", Some("5m"), "token_cache_time"),
            ("http_connect_timeout", Some("0"), "http_connect_timeout"),
            (
                "http_request_max_retries",
                Some("-2"),
                "http_request_max_retries",
            ),
            ("insecure", Some("maybe"), "insecure"),
            ("delay_auth_decision", Some("2"), "delay_auth_decision"),
            ("auth_type", Some("token"), "auth_type"),
        ];
        for (key, value, option) in cases {
            let mut m = minimal();
            match value {
                Some(v) => m.insert((*key).to_owned(), (*v).to_owned()),
                None => m.remove(*key),
            };
            let err = AuthTokenConfig::from_options(&m).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(option), "{key}: {text}");
        }
    }

    #[test]
    fn password_is_not_printed() {
        let c = AuthTokenConfig::from_options(&minimal()).unwrap();
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn accepts_str_pairs() {
        let c = AuthTokenConfig::from_options([
            ("AUTH_URL", "http://[::1]:5000"),
            ("username", "u"),
            ("password", "p"),
            ("project_id", "abc"),
        ])
        .unwrap();
        assert_eq!(c.auth_url, "http://[::1]:5000");
        assert_eq!(c.project_id.as_deref(), Some("abc"));
    }
}
