//! Trust notifications (`trust+http`, `trust+https`): a webhook whose
//! request carries a Keystone token obtained from a trust.
//!
//! As in the reference, the trust is made when the subscription is
//! created, with the caller's own token (see
//! [`crate::context::AuthToken`]): trustor = the caller, trustee = the
//! `[trustee]` user, the caller's project and roles, impersonation,
//! expiring with the subscription. Its id is kept in `options.trust_id`
//! (a subscription created with an `options.trust_id` of its own keeps
//! that one). Each delivery authenticates the `[trustee]` user scoped to
//! that trust and `POST`s the payload, with the token in `X-Auth-Token`,
//! to the subscriber URL without its `trust+` prefix.
//!
//! Differences from the reference:
//!
//! - a trust-scoped token is reused for later deliveries of the same trust
//!   until shortly before it expires (the reference asks Keystone for one
//!   per delivery), and forgotten as soon as a delivery with it fails;
//! - Keystone refusing the trustee's token (a deleted or expired trust) is
//!   final for that notification, Keystone unreachable is retried;
//! - Keystone is called with a client of its own, not the webhook client,
//!   so the subscriber-address guard ([`super::ssrf`]) never applies to
//!   Keystone itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Value};

use super::ssrf::AddressPolicy;
use super::{webhook, Outcome};
use crate::config::Config;
use crate::storage::outbox::NewDelivery;

/// A cached trust token is used until this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(120);
/// Cached trust tokens kept at most (the cache is emptied when full).
const TOKEN_CACHE_MAX: usize = 1024;

/// What a trust needs to be created.
#[derive(Clone, Debug)]
pub struct TrustRequest<'a> {
    /// The caller's token (the trustor authenticates the creation).
    pub trustor_token: &'a str,
    /// The caller's user id.
    pub trustor_user_id: &'a str,
    /// The project the trust is scoped to.
    pub project_id: &'a str,
    /// Role names delegated.
    pub roles: &'a [String],
    /// When the trust ends (ISO 8601), if it does.
    pub expires_at: Option<String>,
}

/// Why a Keystone trust operation failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TrustError {
    /// Keystone answered and refused (4xx): asking again will not help.
    #[error("keystone refused: {0}")]
    Refused(String),
    /// Keystone could not be reached or failed (5xx, no answer).
    #[error("keystone unavailable: {0}")]
    Unavailable(String),
}

/// Keystone trust operations the notifier and the subscription API need.
#[async_trait]
pub trait TrustTokens: Send + Sync {
    /// A token for the trustee, scoped to `trust_id`.
    async fn token_for_trust(&self, trust_id: &str) -> Result<String, TrustError>;
    /// Creates a trust to the trustee and returns its id.
    async fn create_trust(&self, request: &TrustRequest<'_>) -> Result<String, TrustError>;
    /// Checks, with the caller's token, that `trust_id` is a trust from
    /// the caller (`trustor_user_id`) to the trustee, so a subscription
    /// cannot borrow someone else's trust by naming its id.
    async fn verify_trust(
        &self,
        trustor_token: &str,
        trustor_user_id: &str,
        trust_id: &str,
    ) -> Result<(), TrustError>;
    /// Deletes a trust made by [`TrustTokens::create_trust`] that ended up
    /// unused (best effort: failures are only logged).
    async fn delete_trust(&self, trustor_token: &str, trust_id: &str);
    /// Forgets any cached token of `trust_id` (a delivery with it failed).
    fn forget(&self, _trust_id: &str) {}
}

/// [`TrustTokens`] against Keystone v3 with the `[trustee]` password
/// credentials (`auth_url`, `username` or `user_id`, `password`,
/// `user_domain_id` or `user_domain_name`) and session options (`timeout`,
/// `cafile`, `insecure`), as the reference's keystoneauth options.
pub struct KeystoneTrusts {
    http: reqwest::Client,
    auth_url: String,
    user: Value,
    trustee_id: tokio::sync::OnceCell<String>,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

impl std::fmt::Debug for KeystoneTrusts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeystoneTrusts")
            .field("auth_url", &self.auth_url)
            .finish_non_exhaustive()
    }
}

/// Reads a Keystone answer's JSON body (`Null` when there is none).
async fn json_body(resp: reqwest::Response) -> Value {
    resp.bytes()
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// The error of a Keystone answer that was not a success.
fn refusal(what: &str, status: reqwest::StatusCode, body: &Value) -> TrustError {
    let message = body["error"]["message"].as_str().unwrap_or("");
    let text = format!("{what} ({status}) {message}").trim_end().to_owned();
    if status.is_client_error() {
        TrustError::Refused(text)
    } else {
        TrustError::Unavailable(text)
    }
}

impl KeystoneTrusts {
    /// Reads `[trustee]`; `Ok(None)` when it has no `auth_url`, user or
    /// `password`.
    ///
    /// # Errors
    /// `cafile` cannot be read, or the HTTP client cannot be built.
    pub fn from_config(config: &Config) -> Result<Option<Self>, String> {
        let Some(s) = config.sections.get("trustee") else {
            return Ok(None);
        };
        let get = |k: &str| {
            s.get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let (Some(auth_url), Some(password)) = (get("auth_url"), get("password")) else {
            return Ok(None);
        };
        let user = match (get("user_id"), get("username")) {
            (Some(id), _) => json!({"id": id, "password": password}),
            (None, Some(name)) => {
                let domain = match (get("user_domain_id"), get("user_domain_name")) {
                    (Some(id), _) => json!({"id": id}),
                    (None, Some(name)) => json!({"name": name}),
                    (None, None) => json!({"id": "default"}),
                };
                json!({"name": name, "domain": domain, "password": password})
            }
            (None, None) => return Ok(None),
        };
        let timeout = get("timeout")
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|t| t.is_finite() && *t > 0.0)
            .unwrap_or(30.0);
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(timeout))
            .user_agent(concat!("zaqar-rs/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = get("cafile") {
            let pem = std::fs::read(&path).map_err(|e| format!("[trustee] cafile {path}: {e}"))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("[trustee] cafile {path}: {e}"))?;
            builder = builder.add_root_certificate(cert);
        }
        if get("insecure").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot build the Keystone HTTP client: {e}"))?;
        Ok(Some(KeystoneTrusts {
            http,
            auth_url: auth_url
                .trim_end_matches('/')
                .trim_end_matches("/v3")
                .to_owned(),
            user,
            trustee_id: tokio::sync::OnceCell::new(),
            tokens: Mutex::new(HashMap::new()),
        }))
    }

    /// Authenticates the trustee (with `scope`, if any): the token, when
    /// it expires, and the token document.
    async fn issue(&self, scope: Option<Value>) -> Result<(String, Value), TrustError> {
        let mut auth =
            json!({"identity": {"methods": ["password"], "password": {"user": self.user}}});
        if let Some(scope) = scope {
            auth["scope"] = scope;
        }
        let resp = self
            .http
            .post(format!("{}/v3/auth/tokens?nocatalog", self.auth_url))
            .json(&json!({"auth": auth}))
            .send()
            .await
            .map_err(|e| TrustError::Unavailable(e.to_string()))?;
        let status = resp.status();
        let token = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = json_body(resp).await;
        match (status.is_success(), token) {
            (true, Some(t)) => Ok((t, body)),
            _ => Err(refusal(
                "authentication of the [trustee] user",
                status,
                &body,
            )),
        }
    }

    /// The trustee's user id (asked once).
    async fn trustee_id(&self) -> Result<String, TrustError> {
        self.trustee_id
            .get_or_try_init(|| async {
                let (_, body) = self.issue(None).await?;
                body["token"]["user"]["id"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        TrustError::Unavailable("no user id in the trustee's token".into())
                    })
            })
            .await
            .cloned()
    }
}

#[async_trait]
impl TrustTokens for KeystoneTrusts {
    async fn token_for_trust(&self, trust_id: &str) -> Result<String, TrustError> {
        if let Ok(cache) = self.tokens.lock() {
            if let Some((token, until)) = cache.get(trust_id) {
                if Instant::now() < *until {
                    return Ok(token.clone());
                }
            }
        }
        let (token, body) = self
            .issue(Some(json!({"OS-TRUST:trust": {"id": trust_id}})))
            .await?;
        let left = body["token"]["expires_at"]
            .as_str()
            .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
            .and_then(|at| {
                (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                    .to_std()
                    .ok()
            })
            .and_then(|left| left.checked_sub(TOKEN_MARGIN));
        if let (Some(left), Ok(mut cache)) = (left, self.tokens.lock()) {
            if cache.len() >= TOKEN_CACHE_MAX {
                cache.clear();
            }
            cache.insert(trust_id.to_owned(), (token.clone(), Instant::now() + left));
        }
        Ok(token)
    }

    async fn create_trust(&self, r: &TrustRequest<'_>) -> Result<String, TrustError> {
        let trustee = self.trustee_id().await?;
        let roles: Vec<Value> = r.roles.iter().map(|n| json!({"name": n})).collect();
        let mut trust = json!({"trustor_user_id": r.trustor_user_id, "trustee_user_id": trustee,
            "project_id": r.project_id, "impersonation": true, "roles": roles});
        if let Some(at) = &r.expires_at {
            trust["expires_at"] = json!(at);
        }
        let resp = self
            .http
            .post(format!("{}/v3/OS-TRUST/trusts", self.auth_url))
            .header("X-Auth-Token", r.trustor_token)
            .json(&json!({"trust": trust}))
            .send()
            .await
            .map_err(|e| TrustError::Unavailable(e.to_string()))?;
        let status = resp.status();
        let body = json_body(resp).await;
        match body["trust"]["id"].as_str() {
            Some(id) if status.is_success() => Ok(id.to_owned()),
            _ => Err(refusal("trust creation", status, &body)),
        }
    }

    async fn verify_trust(
        &self,
        trustor_token: &str,
        trustor_user_id: &str,
        trust_id: &str,
    ) -> Result<(), TrustError> {
        let trustee = self.trustee_id().await?;
        let resp = self
            .http
            .get(format!("{}/v3/OS-TRUST/trusts/{trust_id}", self.auth_url))
            .header("X-Auth-Token", trustor_token)
            .send()
            .await
            .map_err(|e| TrustError::Unavailable(e.to_string()))?;
        let status = resp.status();
        let body = json_body(resp).await;
        if !status.is_success() {
            return Err(refusal("trust lookup", status, &body));
        }
        let trust = &body["trust"];
        if trust["trustor_user_id"].as_str() != Some(trustor_user_id)
            || trust["trustee_user_id"].as_str() != Some(trustee.as_str())
        {
            return Err(TrustError::Refused(
                "the trust is not one from the caller to the [trustee] user".into(),
            ));
        }
        Ok(())
    }

    async fn delete_trust(&self, trustor_token: &str, trust_id: &str) {
        let result = self
            .http
            .delete(format!("{}/v3/OS-TRUST/trusts/{trust_id}", self.auth_url))
            .header("X-Auth-Token", trustor_token)
            .send()
            .await;
        match result {
            Ok(resp) if resp.status().is_success() => {}
            Ok(resp) => {
                tracing::warn!(%trust_id, status = %resp.status(), "unused trust not deleted")
            }
            Err(e) => tracing::warn!(%trust_id, error = %e, "unused trust not deleted"),
        }
    }

    fn forget(&self, trust_id: &str) {
        if let Ok(mut cache) = self.tokens.lock() {
            cache.remove(trust_id);
        }
    }
}

/// Delivers a `trust+` notification: token from the trust, then a webhook
/// to the URL without its `trust+` prefix.
pub async fn post(
    trusts: &dyn TrustTokens,
    http: &reqwest::Client,
    policy: &AddressPolicy,
    delivery: &NewDelivery,
) -> Outcome {
    let Some(trust_id) = delivery.options.get("trust_id").and_then(Value::as_str) else {
        return Outcome::GiveUp("trust+ subscription without options.trust_id".into());
    };
    let token = match trusts.token_for_trust(trust_id).await {
        Ok(t) => t,
        Err(e @ TrustError::Refused(_)) => return Outcome::GiveUp(e.to_string()),
        Err(e @ TrustError::Unavailable(_)) => return Outcome::Retry(e.to_string()),
    };
    let url = match delivery.subscriber.get(..6) {
        Some(prefix) if prefix.eq_ignore_ascii_case("trust+") => &delivery.subscriber[6..],
        _ => delivery.subscriber.as_str(),
    };
    let outcome = webhook::post(http, policy, url, delivery, &[("X-Auth-Token", token)]).await;
    if !matches!(outcome, Outcome::Delivered) {
        trusts.forget(trust_id);
    }
    outcome
}
