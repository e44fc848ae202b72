//! Trust notifications (`trust+http`, `trust+https`): a webhook whose
//! request carries a Keystone token obtained from a trust.
//!
//! As in the reference, the trust is made when the subscription is
//! created (trustor = the caller, trustee = the `[trustee]` user, the
//! caller's project and roles, impersonation, expiring with the
//! subscription) and its id is kept in `options.trust_id`; each delivery
//! asks Keystone for a token scoped to that trust.
//!
//! What is wired today: delivery (token from `options.trust_id` with the
//! `[trustee]` credentials) and [`TrustTokens::create_trust`] itself. Making
//! the trust at subscription time needs the caller's own token, which the
//! request context does not carry yet; until the Keystone auth layer passes
//! it, a `trust+` subscription must be created with an explicit
//! `options.trust_id` (see [`crate::api::subscriptions`]).

use async_trait::async_trait;
use serde_json::{json, Value};

use super::ssrf::AddressPolicy;
use super::{webhook, Outcome};
use crate::config::Config;
use crate::storage::outbox::NewDelivery;

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

/// Keystone trust operations the notifier needs.
#[async_trait]
pub trait TrustTokens: Send + Sync {
    /// A token for the trustee, scoped to `trust_id`.
    async fn token_for_trust(&self, trust_id: &str) -> Result<String, String>;
    /// Creates a trust to the trustee and returns its id.
    async fn create_trust(&self, request: &TrustRequest<'_>) -> Result<String, String>;
}

/// [`TrustTokens`] against Keystone v3 with the `[trustee]` password
/// credentials (`auth_url`, `username`, `password`, `user_domain_id` or
/// `user_domain_name`).
pub struct KeystoneTrusts {
    http: reqwest::Client,
    auth_url: String,
    username: String,
    password: String,
    user_domain: Value,
}

impl KeystoneTrusts {
    /// Reads `[trustee]`; `None` when it has no `auth_url`, `username` and
    /// `password`.
    pub fn from_config(config: &Config, http: reqwest::Client) -> Option<Self> {
        let s = config.sections.get("trustee")?;
        let get = |k: &str| {
            s.get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let auth_url = get("auth_url")?;
        let user_domain = match (get("user_domain_id"), get("user_domain_name")) {
            (Some(id), _) => json!({"id": id}),
            (None, Some(name)) => json!({"name": name}),
            (None, None) => json!({"id": "default"}),
        };
        Some(KeystoneTrusts {
            http,
            auth_url: auth_url
                .trim_end_matches('/')
                .trim_end_matches("/v3")
                .to_owned(),
            username: get("username")?,
            password: get("password")?,
            user_domain,
        })
    }

    fn password_identity(&self) -> Value {
        json!({"methods": ["password"], "password": {"user": {
            "name": self.username, "domain": self.user_domain, "password": self.password}}})
    }

    async fn issue(&self, scope: Option<Value>) -> Result<(String, Value), String> {
        let mut auth = json!({"identity": self.password_identity()});
        if let Some(scope) = scope {
            auth["scope"] = scope;
        }
        let resp = self
            .http
            .post(format!("{}/v3/auth/tokens", self.auth_url))
            .header("Content-Type", "application/json")
            .body(json!({"auth": auth}).to_string())
            .send()
            .await
            .map_err(|e| format!("keystone: {e}"))?;
        let status = resp.status();
        let token = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: Value = resp
            .bytes()
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        match (status.is_success(), token) {
            (true, Some(t)) => Ok((t, body)),
            _ => Err(format!(
                "keystone refused the trustee's authentication ({status})"
            )),
        }
    }
}

#[async_trait]
impl TrustTokens for KeystoneTrusts {
    async fn token_for_trust(&self, trust_id: &str) -> Result<String, String> {
        let (token, _) = self
            .issue(Some(json!({"OS-TRUST:trust": {"id": trust_id}})))
            .await?;
        Ok(token)
    }

    async fn create_trust(&self, r: &TrustRequest<'_>) -> Result<String, String> {
        let (_, body) = self.issue(None).await?;
        let trustee = body["token"]["user"]["id"]
            .as_str()
            .ok_or("keystone: no trustee user id")?
            .to_owned();
        let roles: Vec<Value> = r.roles.iter().map(|n| json!({"name": n})).collect();
        let mut trust = json!({"trustor_user_id": r.trustor_user_id, "trustee_user_id": trustee,
            "project_id": r.project_id, "impersonation": true, "roles": roles});
        if let Some(at) = &r.expires_at {
            trust["expires_at"] = json!(at);
        }
        let resp = self
            .http
            .post(format!("{}/v3/OS-TRUST/trusts", self.auth_url))
            .header("Content-Type", "application/json")
            .header("X-Auth-Token", r.trustor_token)
            .body(json!({"trust": trust}).to_string())
            .send()
            .await
            .map_err(|e| format!("keystone: {e}"))?;
        let status = resp.status();
        let body: Value = resp
            .bytes()
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        body["trust"]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("keystone did not create the trust ({status})"))
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
        Err(e) => return Outcome::Retry(e),
    };
    let url = delivery
        .subscriber
        .strip_prefix("trust+")
        .unwrap_or(&delivery.subscriber);
    webhook::post(http, policy, url, delivery, &[("X-Auth-Token", token)]).await
}
