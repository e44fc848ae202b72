//! The auth layer: who a request acts for, for both transports.
//!
//! `[DEFAULT] auth_strategy` picks one of two modes ([`AuthLayer`]):
//!
//! - **noauth** (empty): the reference's behaviour. `X-Project-ID`,
//!   `X-Roles` and `X-User-ID` are trusted as sent, so any client can act
//!   for any project and as admin (the server warns at start-up).
//! - **keystone**: every HTTP request except those for `/` carries an
//!   `X-Auth-Token`, validated by [`keystone_middleware::Validator`] (cached;
//!   one Keystone call per new token however many requests carry it). The
//!   token's project is the request's project, its roles and user the
//!   request's. Identity headers a client sent (`X-Roles`, `X-User-Id`,
//!   ...) are removed before anything reads them. A client `X-Project-ID`
//!   naming another project than the token's is refused with 403: no
//!   request can reach another project (the reference lets
//!   keystonemiddleware overwrite the header instead; refusing tells a
//!   confused client what is wrong).
//!
//! Pre-signed requests (a `URL-Signature` header; WebSocket frames with the
//! pre-signed header set) skip token validation, as in the reference: their
//! signature, checked by [`crate::api::signed_url`], covers the project,
//! paths, methods and expiry. They act with no user and **no roles**: the
//! reference would take `X-Roles` from such a request as sent, which lets a
//! holder of a signed URL claim `admin`; we do not.
//!
//! Failures: a missing, invalid, expired or revoked token, or one not scoped
//! to a project, is a 401 with `WWW-Authenticate: Keystone uri="..."`;
//! Keystone unreachable with the token not cached is a 503. Never a 500.

use std::time::SystemTime;

use async_trait::async_trait;
use http::HeaderMap;
use keystone_middleware::{
    strip_identity_headers, AuthError, AuthTokenConfig, Identity, Validator,
};

use crate::config::{split_list, AuthStrategy, Config, TransportConfig};
use crate::context::{AuthToken, RequestContext};
use crate::error::{ApiError, ApiResult};
use crate::transport::websocket::auth as ws_auth;

/// The header that carries a Keystone token.
pub const TOKEN_HEADER: &str = "x-auth-token";

/// How requests are authenticated. Cheap to clone.
#[derive(Clone, Debug)]
pub enum AuthLayer {
    /// `auth_strategy` empty: identity headers are trusted.
    NoAuth,
    /// `auth_strategy = keystone`: tokens are validated.
    Keystone(Validator),
}

/// Why the auth layer could not be built.
#[derive(Debug, thiserror::Error)]
#[error("[keystone_authtoken] {0}")]
pub struct AuthConfigError(#[from] keystone_middleware::ConfigError);

/// Who a request acts for, as the auth layer established it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Caller {
    /// The project a token is scoped to. `None` when the request names its
    /// own project (noauth, pre-signed): then [`Caller::claimed_project`].
    pub token_project: Option<String>,
    /// The `X-Project-ID` the request sent.
    pub claimed_project: Option<String>,
    /// The user, when known.
    pub user_id: Option<String>,
    /// Role names.
    pub roles: Vec<String>,
    /// When the token expires (Keystone mode).
    pub expires_at: Option<SystemTime>,
    /// The validated token itself (Keystone mode), for the Keystone calls
    /// made on the caller's behalf (a `trust+` subscription's trust).
    pub token: Option<AuthToken>,
}

impl Caller {
    /// A caller whose headers are trusted (noauth mode).
    pub fn trusted(project: Option<&str>, user: Option<&str>, roles: Option<&str>) -> Caller {
        Caller {
            token_project: None,
            claimed_project: project.map(String::from),
            user_id: user.map(String::from),
            roles: roles.map(split_list).unwrap_or_default(),
            expires_at: None,
            token: None,
        }
    }

    /// A pre-signed request in Keystone mode: the signed project, no user,
    /// no roles.
    pub fn presigned(project: Option<&str>) -> Caller {
        Caller {
            claimed_project: project.map(String::from),
            ..Caller::default()
        }
    }

    /// The bearer of a validated token.
    ///
    /// # Errors
    /// 401 when the token is not scoped to a project (a domain- or
    /// system-scoped or unscoped token has no queues).
    pub fn from_identity(identity: Identity, www_authenticate: &str) -> ApiResult<Caller> {
        let Some(project) = identity.project_id else {
            tracing::info!(user = %identity.user_id, "token refused: not scoped to a project");
            return Err(unauthorized(www_authenticate));
        };
        Ok(Caller {
            token_project: Some(project),
            claimed_project: None,
            user_id: Some(identity.user_id),
            roles: identity.roles,
            expires_at: Some(identity.expires_at.into()),
            token: None,
        })
    }

    /// The project the request acts for.
    pub fn project(&self) -> Option<&str> {
        self.token_project
            .as_deref()
            .or(self.claimed_project.as_deref())
    }

    /// Refuses a request whose `X-Project-ID` names another project than
    /// its token.
    ///
    /// # Errors
    /// 403 naming both projects' header.
    pub fn check_claim(&self, claimed: Option<&[u8]>) -> ApiResult<()> {
        match (&self.token_project, claimed) {
            (Some(token), Some(claimed)) if token.as_bytes() != claimed => Err(ApiError::Forbidden {
                title: "Project mismatch".into(),
                description: "The X-Project-ID header names another project than the one the token is scoped \
                              to. Send no X-Project-ID, or the token's project."
                    .into(),
            }),
            _ => Ok(()),
        }
    }

    /// The request context: the validated `Client-ID` and project, the
    /// caller's user and roles.
    ///
    /// # Errors
    /// 400 for a missing or malformed `Client-ID` or project (the
    /// reference's texts).
    pub fn context(
        &self,
        client_id: Option<&str>,
        limits: &TransportConfig,
        request_id: String,
    ) -> ApiResult<RequestContext> {
        Ok(RequestContext {
            client_id: crate::api::validate::client_id(client_id, limits)?,
            project_id: crate::api::validate::project_id(self.project())?,
            user_id: self.user_id.clone(),
            roles: self.roles.clone(),
            request_id,
            auth_token: self.token.clone(),
        })
    }
}

impl AuthLayer {
    /// The layer `config` asks for. Does not contact Keystone.
    ///
    /// # Errors
    /// `[keystone_authtoken]` is incomplete or invalid (Keystone mode).
    pub fn from_config(config: &Config) -> Result<AuthLayer, AuthConfigError> {
        match config.auth_strategy {
            AuthStrategy::None => Ok(AuthLayer::NoAuth),
            AuthStrategy::Keystone => {
                let empty = Default::default();
                let section = config.sections.get("keystone_authtoken").unwrap_or(&empty);
                let validator = Validator::new(AuthTokenConfig::from_options(section)?)?;
                Ok(AuthLayer::Keystone(validator))
            }
        }
    }

    /// The validator, in Keystone mode.
    pub fn validator(&self) -> Option<&Validator> {
        match self {
            AuthLayer::NoAuth => None,
            AuthLayer::Keystone(v) => Some(v),
        }
    }

    /// Authenticates one HTTP request (Keystone: before routing, as the
    /// reference's middleware does) and, in Keystone mode, removes the
    /// identity headers from `headers` so nothing after this reads them.
    ///
    /// # Errors
    /// 401 (no usable token), 403 (`X-Project-ID` of another project), 503
    /// (Keystone unreachable, token not cached).
    pub async fn authenticate_http(
        &self,
        path: &str,
        headers: &mut HeaderMap,
    ) -> ApiResult<Caller> {
        let text =
            |h: &HeaderMap, name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(String::from);
        let validator = match self {
            AuthLayer::NoAuth => {
                return Ok(Caller::trusted(
                    text(headers, "x-project-id").as_deref(),
                    text(headers, "x-user-id").as_deref(),
                    text(headers, "x-roles").as_deref(),
                ))
            }
            AuthLayer::Keystone(v) => v,
        };
        let claimed = headers.get("x-project-id").cloned();
        let removed =
            strip_identity_headers(headers).saturating_sub(usize::from(claimed.is_some()));
        if removed > 0 {
            tracing::info!(removed, "identity headers sent by the client were removed");
        }
        // The reference leaves exactly `/` open, and lets a request with a
        // URL-Signature through to the signature check.
        if path == "/" {
            return Ok(Caller::default());
        }
        if headers.contains_key("url-signature") {
            return Ok(Caller::presigned(
                claimed.as_ref().and_then(|v| v.to_str().ok()),
            ));
        }
        let token = headers
            .get(TOKEN_HEADER)
            .map(|v| v.to_str().unwrap_or("\u{0}"))
            .unwrap_or("");
        let identity = validate(validator, token).await?;
        let mut caller = Caller::from_identity(identity, validator.www_authenticate())?;
        caller.check_claim(claimed.as_ref().map(|v| v.as_bytes()))?;
        caller.token = Some(AuthToken::new(token));
        Ok(caller)
    }
}

/// Validates `token`, turning a failure into the client's answer.
///
/// # Errors
/// 401 with `WWW-Authenticate` for a bad token, 503 when Keystone cannot be
/// asked.
pub async fn validate(validator: &Validator, token: &str) -> ApiResult<Identity> {
    validator
        .validate(token)
        .await
        .map_err(|e| auth_error(validator, &e))
}

fn auth_error(validator: &Validator, e: &AuthError) -> ApiError {
    match e {
        AuthError::Unauthorized(reason) => {
            tracing::info!(%reason, "token refused");
            unauthorized(validator.www_authenticate())
        }
        AuthError::Unavailable(reason) => {
            tracing::warn!(%reason, "token could not be validated");
            ApiError::Unavailable("The identity service could not validate the token.".into())
        }
    }
}

fn unauthorized(www_authenticate: &str) -> ApiError {
    ApiError::Unauthorized {
        www_authenticate: www_authenticate.to_owned().into(),
    }
}

/// The WebSocket transport's token validator: the same Keystone
/// [`Validator`] (and cache) as HTTP.
#[derive(Clone, Debug)]
pub struct KeystoneTokens(pub Validator);

#[async_trait]
impl ws_auth::TokenValidator for KeystoneTokens {
    async fn validate(&self, token: &str) -> Result<ws_auth::Identity, ws_auth::AuthFailure> {
        let failure = |e: ApiError| ws_auth::AuthFailure {
            status: e.status().as_u16(),
            reason: e.to_string(),
        };
        let identity = validate(&self.0, token).await.map_err(failure)?;
        let caller = Caller::from_identity(identity, self.0.www_authenticate()).map_err(failure)?;
        Ok(ws_auth::Identity {
            project_id: caller.token_project.unwrap_or_default(),
            user_id: caller.user_id,
            roles: caller.roles,
            expires_at: caller.expires_at,
            token: Some(AuthToken::new(token)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn keystone_layer() -> AuthLayer {
        // Nothing listens on port 9: validation fails as unreachable.
        let config = AuthTokenConfig::from_options([
            ("www_authenticate_uri", "http://127.0.0.1:9/v3"),
            ("auth_url", "http://127.0.0.1:9/v3"),
            ("auth_type", "password"),
            ("username", "zaqar"),
            ("password", "secret"),
            ("project_name", "service"),
            ("user_domain_name", "Default"),
            ("project_domain_name", "Default"),
            ("http_request_max_retries", "0"),
            ("http_connect_timeout", "1"),
        ])
        .unwrap();
        AuthLayer::Keystone(Validator::new(config).unwrap())
    }

    #[tokio::test]
    async fn noauth_trusts_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-project-id", HeaderValue::from_static("p"));
        h.insert("x-roles", HeaderValue::from_static("admin, member"));
        let caller = AuthLayer::NoAuth
            .authenticate_http("/v2/queues", &mut h)
            .await
            .unwrap();
        assert_eq!(caller.project(), Some("p"));
        assert_eq!(caller.roles, vec!["admin", "member"]);
        assert!(h.contains_key("x-roles"));
    }

    #[tokio::test]
    async fn keystone_refuses_missing_tokens_and_strips_headers() {
        let layer = keystone_layer();
        let mut h = HeaderMap::new();
        h.insert("x-roles", HeaderValue::from_static("admin"));
        h.insert("x-project-id", HeaderValue::from_static("p"));
        let err = layer
            .authenticate_http("/v2/queues", &mut h)
            .await
            .unwrap_err();
        assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
        assert!(
            matches!(&err, ApiError::Unauthorized { www_authenticate } if www_authenticate.contains("127.0.0.1:9"))
        );
        assert!(!h.contains_key("x-roles") && !h.contains_key("x-project-id"));
        // Keystone unreachable, token not cached: 503, not 401 or 500.
        h.insert(TOKEN_HEADER, HeaderValue::from_static("gAAAAABtoken"));
        let err = layer
            .authenticate_http("/v2/queues", &mut h)
            .await
            .unwrap_err();
        assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn keystone_leaves_root_and_presigned_requests_to_later_checks() {
        let layer = keystone_layer();
        let mut h = HeaderMap::new();
        h.insert("x-roles", HeaderValue::from_static("admin"));
        let caller = layer.authenticate_http("/", &mut h).await.unwrap();
        assert!(caller.roles.is_empty());
        h.insert("url-signature", HeaderValue::from_static("abc"));
        h.insert("x-project-id", HeaderValue::from_static("p"));
        h.insert("x-roles", HeaderValue::from_static("admin"));
        let caller = layer
            .authenticate_http("/v2/queues/q/messages", &mut h)
            .await
            .unwrap();
        assert_eq!(caller.project(), Some("p"));
        assert!(caller.roles.is_empty(), "a signed URL grants no role");
    }

    #[test]
    fn a_claim_for_another_project_is_refused() {
        let caller = Caller {
            token_project: Some("a".into()),
            ..Caller::default()
        };
        assert!(caller.check_claim(None).is_ok());
        assert!(caller.check_claim(Some(b"a")).is_ok());
        let err = caller.check_claim(Some(b"b")).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::FORBIDDEN);
        assert_eq!(caller.project(), Some("a"));
    }
}
