//! The HTTP conversation with Keystone: the service token and token
//! validation. No caching here; see [`crate::validator`].

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::{AuthTokenConfig, ConfigError};
use crate::error::{AuthError, UnavailableReason};
use crate::identity::{TokenBody, TokenResponse};
use crate::stats::Counters;

/// Renew the service token this long before Keystone says it expires (or at
/// a quarter of its lifetime left, for short-lived tokens).
const RENEW_MARGIN: Duration = Duration::from_secs(60);
/// First pause between retries after a connection error; doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Talks to one Keystone as one service user.
pub(crate) struct KeystoneClient {
    http: reqwest::Client,
    tokens_url: String,
    /// The password-auth request body (holds the password; never logged).
    auth_body: serde_json::Value,
    max_retries: u32,
    service_token: Mutex<Option<ServiceToken>>,
    counters: Arc<Counters>,
}

/// The service user's own token.
struct ServiceToken {
    value: Arc<str>,
    renew_at: Instant,
}

#[derive(Deserialize)]
struct ServiceTokenResponse {
    token: ServiceTokenBody,
}

#[derive(Deserialize)]
struct ServiceTokenBody {
    expires_at: DateTime<Utc>,
}

impl KeystoneClient {
    /// Builds the HTTP client (TLS settings, timeouts) for `config`.
    pub(crate) fn new(
        config: &AuthTokenConfig,
        counters: Arc<Counters>,
    ) -> Result<Self, ConfigError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.http_connect_timeout)
            .timeout(config.http_connect_timeout)
            .user_agent(concat!(
                "keystone-middleware-rs/",
                env!("CARGO_PKG_VERSION")
            ))
            .pool_idle_timeout(Duration::from_secs(60));
        if let Some(path) = &config.cafile {
            let pem = std::fs::read(path).map_err(|e| ConfigError::CaFile {
                path: path.clone(),
                detail: e.to_string(),
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ConfigError::CaFile {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if config.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(ConfigError::Client)?;
        Ok(KeystoneClient {
            http,
            tokens_url: format!("{}/v3/auth/tokens", config.auth_url),
            auth_body: password_auth_body(config),
            max_retries: config.http_request_max_retries,
            service_token: Mutex::new(None),
            counters,
        })
    }

    /// Asks Keystone about `subject`. `Ok(None)` means Keystone does not
    /// accept the token (404: unknown, expired or revoked).
    ///
    /// A 401 means our service token went bad (revoked, keys rotated): it is
    /// renewed and the request tried once more.
    pub(crate) async fn validate(
        &self,
        subject: &str,
        with_catalog: bool,
    ) -> Result<Option<TokenBody>, AuthError> {
        let url = if with_catalog {
            format!("{}?allow_expired=false", self.tokens_url)
        } else {
            format!("{}?nocatalog&allow_expired=false", self.tokens_url)
        };
        let mut rejected: Option<Arc<str>> = None;
        for _ in 0..2 {
            let service = self.service_token(rejected.as_ref()).await?;
            let started = std::time::Instant::now();
            let response = self
                .send(|| {
                    Counters::bump(&self.counters.keystone_validations);
                    self.http
                        .get(&url)
                        .header("X-Auth-Token", &*service)
                        .header("X-Subject-Token", subject)
                })
                .await;
            Counters::bump(&self.counters.validation_calls);
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.counters
                .validation_micros
                .fetch_add(micros, std::sync::atomic::Ordering::Relaxed);
            let response = response?;
            match response.status() {
                StatusCode::OK => {
                    let body: TokenResponse = read_json(response).await?;
                    return Ok(Some(body.token));
                }
                StatusCode::NOT_FOUND => return Ok(None),
                StatusCode::UNAUTHORIZED => {
                    tracing::info!("Keystone refused the service token; renewing it");
                    rejected = Some(service);
                }
                StatusCode::FORBIDDEN => {
                    tracing::error!(
                        "the service user may not validate tokens: give it the admin or service role"
                    );
                    return Err(AuthError::unavailable(UnavailableReason::ServiceForbidden));
                }
                status => {
                    tracing::warn!(status = status.as_u16(), "unexpected answer from Keystone");
                    return Err(AuthError::unavailable(
                        UnavailableReason::UnexpectedStatus {
                            status: status.as_u16(),
                        },
                    ));
                }
            }
        }
        tracing::error!("Keystone refused a freshly issued service token");
        Err(AuthError::unavailable(
            UnavailableReason::ServiceAuthRejected {
                status: StatusCode::UNAUTHORIZED.as_u16(),
            },
        ))
    }

    /// The current service token, fetching a new one when there is none,
    /// when it is about to expire, or when it is the one Keystone just
    /// `rejected`. The lock makes concurrent callers share one fetch.
    async fn service_token(&self, rejected: Option<&Arc<str>>) -> Result<Arc<str>, AuthError> {
        let mut slot = self.service_token.lock().await;
        if let Some(current) = slot.as_ref() {
            let was_rejected = rejected.is_some_and(|r| Arc::ptr_eq(r, &current.value));
            if !was_rejected && Instant::now() < current.renew_at {
                return Ok(current.value.clone());
            }
        }
        *slot = None;
        let fresh = self.fetch_service_token().await?;
        let value = fresh.value.clone();
        *slot = Some(fresh);
        Ok(value)
    }

    /// `POST /v3/auth/tokens` with the service user's password.
    async fn fetch_service_token(&self) -> Result<ServiceToken, AuthError> {
        let url = format!("{}?nocatalog", self.tokens_url);
        let response = self
            .send(|| {
                Counters::bump(&self.counters.service_token_fetches);
                self.http.post(&url).json(&self.auth_body)
            })
            .await?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            tracing::error!(
                status = status.as_u16(),
                "Keystone refused the service user's password"
            );
            return Err(AuthError::unavailable(
                UnavailableReason::ServiceAuthRejected {
                    status: status.as_u16(),
                },
            ));
        }
        if !status.is_success() {
            tracing::warn!(
                status = status.as_u16(),
                "unexpected answer to service authentication"
            );
            return Err(AuthError::unavailable(
                UnavailableReason::UnexpectedStatus {
                    status: status.as_u16(),
                },
            ));
        }
        let value: Arc<str> = response
            .headers()
            .get("X-Subject-Token")
            .and_then(|v| v.to_str().ok())
            .map(Arc::from)
            .ok_or_else(|| malformed("no X-Subject-Token in the service token answer"))?;
        let body: ServiceTokenResponse = read_json(response).await?;
        let left = (body.token.expires_at - Utc::now())
            .to_std()
            .unwrap_or_default();
        tracing::debug!(valid_for = ?left, "obtained a service token");
        Ok(ServiceToken {
            value,
            renew_at: Instant::now() + renew_after(left),
        })
    }

    /// Sends the request built by `build`, retrying connection errors up to
    /// `http_request_max_retries` times with a growing pause.
    async fn send(&self, build: impl Fn() -> RequestBuilder) -> Result<Response, AuthError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            match build().send().await {
                Ok(response) => return Ok(response),
                Err(err) if err.is_connect() && attempt < self.max_retries => {
                    attempt += 1;
                    tracing::debug!(attempt, error = %err, "cannot connect to Keystone; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "Keystone request failed");
                    return Err(AuthError::unavailable(UnavailableReason::Unreachable {
                        detail: error_chain(&err),
                    }));
                }
            }
        }
    }
}

/// When to renew a token valid for `left`: [`RENEW_MARGIN`] before the end,
/// or with a quarter of its life left when it is short.
pub(crate) fn renew_after(left: Duration) -> Duration {
    let margin = RENEW_MARGIN.min(left / 4);
    left - margin
}

fn password_auth_body(config: &AuthTokenConfig) -> serde_json::Value {
    let user_domain = domain_ref(&config.user_domain_id, &config.user_domain_name);
    let project = match (&config.project_id, &config.project_name) {
        (Some(id), _) => json!({ "id": id }),
        (None, name) => json!({
            "name": name,
            "domain": domain_ref(&config.project_domain_id, &config.project_domain_name),
        }),
    };
    json!({
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": config.username,
                        "domain": user_domain,
                        "password": config.password,
                    }
                }
            },
            "scope": { "project": project }
        }
    })
}

fn domain_ref(id: &Option<String>, name: &Option<String>) -> serde_json::Value {
    match (id, name) {
        (Some(id), _) => json!({ "id": id }),
        (None, Some(name)) => json!({ "name": name }),
        (None, None) => json!({ "id": "default" }),
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(response: Response) -> Result<T, AuthError> {
    let bytes = response.bytes().await.map_err(|e| {
        AuthError::unavailable(UnavailableReason::Unreachable {
            detail: error_chain(&e),
        })
    })?;
    serde_json::from_slice(&bytes).map_err(|e| malformed(&e.to_string()))
}

fn malformed(detail: &str) -> AuthError {
    AuthError::unavailable(UnavailableReason::MalformedResponse {
        detail: detail.to_owned(),
    })
}

/// The error and its causes on one line (reqwest hides the useful part, such
/// as "Connection refused", in the source chain).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_a_minute_early_or_at_a_quarter_left() {
        assert_eq!(
            renew_after(Duration::from_secs(3600)),
            Duration::from_secs(3540)
        );
        assert_eq!(
            renew_after(Duration::from_secs(120)),
            Duration::from_secs(90)
        );
        assert_eq!(renew_after(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn auth_body_scopes_to_the_project() {
        let config = AuthTokenConfig::from_options([
            ("auth_url", "http://127.0.0.1:5000"),
            ("username", "zaqar"),
            ("password", "pw"),
            ("user_domain_name", "Default"),
            ("project_name", "service"),
        ])
        .unwrap();
        let body = password_auth_body(&config);
        let user = &body["auth"]["identity"]["password"]["user"];
        assert_eq!(user["name"], "zaqar");
        assert_eq!(user["domain"], json!({"name": "Default"}));
        let project = &body["auth"]["scope"]["project"];
        assert_eq!(project["name"], "service");
        assert_eq!(project["domain"], json!({"id": "default"}));
    }
}
