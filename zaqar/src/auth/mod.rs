//! The auth layer: who a request acts for, decided in one place for both
//! transports.
//!
//! A transport reads what a request presents into [`Credentials`] (a token,
//! a signature, identity headers) and asks [`AuthLayer::authenticate`] for
//! the [`Caller`]; nothing after this reads raw auth headers. The rules:
//!
//! 1. **A signature authorises only once it verified.** A request that
//!    presents a signature (`URL-Signature`, whatever its bytes) is checked
//!    against `[signed_url] secret_key` for its method and path
//!    ([`signature::verify`]); any failure is the reference's bare 404. A
//!    verified request skips token validation, as in the reference, and acts
//!    for the signed project with **no user and no roles** in Keystone mode
//!    (the reference would take `X-Roles` from it as sent, which lets a
//!    holder of a signed URL claim `admin`; we do not).
//! 2. **Every other request goes through the mode** (`[DEFAULT]
//!    auth_strategy`, [`AuthMode`]):
//!    - *noauth* (empty): the reference's behaviour. `X-Project-ID`,
//!      `X-Roles` and `X-User-ID` are trusted as sent, so any client can act
//!      for any project and as admin (the server warns at start-up).
//!    - *keystone*: the `X-Auth-Token` is validated by
//!      [`keystone_middleware::Validator`] (cached; one Keystone call per new
//!      token however many requests carry it). The token's project is the
//!      request's project, its roles and user the request's; identity
//!      headers a client sent are ignored. A client `X-Project-ID` naming
//!      another project than the token's is refused with 403 (the
//!      reference lets keystonemiddleware overwrite the header instead;
//!      refusing tells a confused client what is wrong). Only `/` (the
//!      versions document) is open, as in the reference.
//!
//! Failures: a missing, invalid, expired or revoked token, or one not scoped
//! to a project, is a 401 with `WWW-Authenticate: Keystone uri="..."`;
//! Keystone unreachable with the token not cached is a 503. Never a 500.

pub mod signature;

use std::sync::Arc;
use std::time::SystemTime;

use keystone_middleware::{AuthError, AuthTokenConfig, Identity, Validator};

use crate::config::{split_list, AuthStrategy, Config};
use crate::context::AuthToken;
use crate::error::{ApiError, ApiResult};
use crate::storage::clock::SharedClock;
use signature::Signature;

/// The header that carries a Keystone token.
pub const TOKEN_HEADER: &str = "x-auth-token";

/// What a request presents to say who it acts for, as its transport read
/// it. Header values that are not valid text are kept lossily (a garbled
/// signature or token is then refused, never ignored).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Credentials {
    /// `X-Auth-Token`.
    pub token: Option<String>,
    /// The `URL-*` headers, when the request carries `URL-Signature`.
    pub signature: Option<Signature>,
    /// `X-Project-ID`.
    pub project: Option<String>,
    /// `X-User-ID` (trusted in noauth mode only).
    pub user_id: Option<String>,
    /// `X-Roles` (trusted in noauth mode only).
    pub roles: Option<String>,
}

/// How tokens are handled (`[DEFAULT] auth_strategy`).
#[derive(Clone, Debug)]
pub enum AuthMode {
    /// `auth_strategy` empty: identity headers are trusted.
    NoAuth,
    /// `auth_strategy = keystone`: tokens are validated.
    Keystone(Validator),
}

/// The auth layer. Cheap to clone.
#[derive(Clone)]
pub struct AuthLayer {
    mode: AuthMode,
    signing_key: Option<Arc<str>>,
    clock: SharedClock,
}

impl std::fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLayer")
            .field("mode", &self.mode)
            .field(
                "signing_key",
                &self.signing_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
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
    /// A caller whose identity headers are trusted (noauth mode).
    pub fn trusted(credentials: &Credentials) -> Caller {
        Caller {
            token_project: None,
            claimed_project: credentials.project.clone(),
            user_id: credentials.user_id.clone(),
            roles: credentials
                .roles
                .as_deref()
                .map(split_list)
                .unwrap_or_default(),
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
    pub fn check_claim(&self, claimed: Option<&str>) -> ApiResult<()> {
        match (&self.token_project, claimed) {
            (Some(token), Some(claimed)) if token != claimed => Err(ApiError::Forbidden {
                title: "Project mismatch".into(),
                description: "The X-Project-ID header names another project than the one the token is scoped \
                              to. Send no X-Project-ID, or the token's project."
                    .into(),
            }),
            _ => Ok(()),
        }
    }
}

impl AuthLayer {
    /// The layer `config` asks for. Does not contact Keystone.
    ///
    /// # Errors
    /// `[keystone_authtoken]` is incomplete or invalid (Keystone mode).
    pub fn from_config(config: &Config, clock: SharedClock) -> Result<AuthLayer, AuthConfigError> {
        let mode = match config.auth_strategy {
            AuthStrategy::None => AuthMode::NoAuth,
            AuthStrategy::Keystone => {
                let empty = Default::default();
                let section = config.sections.get("keystone_authtoken").unwrap_or(&empty);
                AuthMode::Keystone(Validator::new(AuthTokenConfig::from_options(section)?)?)
            }
        };
        Ok(AuthLayer::new(
            mode,
            config.signed_url.secret_key.as_deref(),
            clock,
        ))
    }

    /// A layer in `mode`, checking signatures with `signing_key`.
    pub fn new(mode: AuthMode, signing_key: Option<&str>, clock: SharedClock) -> AuthLayer {
        AuthLayer {
            mode,
            signing_key: signing_key.map(Arc::from),
            clock,
        }
    }

    /// The mode.
    pub fn mode(&self) -> &AuthMode {
        &self.mode
    }

    /// Whether requests need a validated token (Keystone mode).
    pub fn requires_token(&self) -> bool {
        matches!(self.mode, AuthMode::Keystone(_))
    }

    /// The validator, in Keystone mode.
    pub fn validator(&self) -> Option<&Validator> {
        match &self.mode {
            AuthMode::NoAuth => None,
            AuthMode::Keystone(v) => Some(v),
        }
    }

    /// Who a request for `method` on `path` acts for (the rules in the
    /// module documentation). A WebSocket frame is judged against the HTTP
    /// route of its operation.
    ///
    /// # Errors
    /// 404 (a signature that does not verify), 401 (no usable token), 403
    /// (`X-Project-ID` of another project than the token's), 503 (Keystone
    /// unreachable, token not cached).
    pub async fn authenticate(
        &self,
        credentials: &Credentials,
        method: &str,
        path: &str,
    ) -> ApiResult<Caller> {
        // The reference leaves exactly `/` open, signature or not.
        if path == "/" {
            return Ok(Caller::default());
        }
        if let Some(signed) = &credentials.signature {
            signature::verify(
                self.signing_key.as_deref(),
                signed,
                credentials.project.as_deref(),
                method,
                path,
                self.clock.now_ms(),
            )?;
            return Ok(match self.mode {
                AuthMode::NoAuth => Caller::trusted(credentials),
                AuthMode::Keystone(_) => Caller::presigned(credentials.project.as_deref()),
            });
        }
        match &self.mode {
            AuthMode::NoAuth => Ok(Caller::trusted(credentials)),
            AuthMode::Keystone(_) => {
                let token = credentials.token.as_deref().unwrap_or("");
                let caller = self.validate_token(token).await?;
                caller.check_claim(credentials.project.as_deref())?;
                Ok(caller)
            }
        }
    }

    /// The bearer of `token` (Keystone mode; the WebSocket `authenticate`
    /// action and every HTTP request use this).
    ///
    /// # Errors
    /// 401 for a bad token or one not scoped to a project, 503 when Keystone
    /// cannot be asked; in noauth mode there is nothing to validate against
    /// (401).
    pub async fn validate_token(&self, token: &str) -> ApiResult<Caller> {
        let AuthMode::Keystone(validator) = &self.mode else {
            return Err(unauthorized(""));
        };
        let identity = validator
            .validate(token)
            .await
            .map_err(|e| auth_error(validator, &e))?;
        let mut caller = Caller::from_identity(identity, validator.www_authenticate())?;
        caller.token = Some(AuthToken::new(token));
        Ok(caller)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::clock::ManualClock;

    const KEY: &str = "secret-key";

    fn clock() -> SharedClock {
        // 2029-01-01T00:00:00Z
        Arc::new(ManualClock::at(1_861_920_000_000))
    }

    fn keystone_mode() -> AuthMode {
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
        AuthMode::Keystone(Validator::new(config).unwrap())
    }

    fn signed(project: &str, methods: &str) -> Credentials {
        let paths = vec!["/v2/queues/q/messages".to_owned()];
        let methods = signature::comma_list(methods);
        let expires = "2030-01-01T00:00:00";
        Credentials {
            signature: Some(Signature {
                signature: signature::sign(KEY, &paths, &methods, Some(project), expires),
                expires: Some(expires.into()),
                methods,
                paths,
            }),
            project: Some(project.into()),
            roles: Some("admin".into()),
            ..Credentials::default()
        }
    }

    #[tokio::test]
    async fn noauth_trusts_headers() {
        let layer = AuthLayer::new(AuthMode::NoAuth, None, clock());
        let creds = Credentials {
            project: Some("p".into()),
            roles: Some("admin, member".into()),
            ..Credentials::default()
        };
        let caller = layer
            .authenticate(&creds, "GET", "/v2/queues")
            .await
            .unwrap();
        assert_eq!(caller.project(), Some("p"));
        assert_eq!(caller.roles, vec!["admin", "member"]);
    }

    #[tokio::test]
    async fn keystone_refuses_missing_tokens_and_ignores_identity_headers() {
        let layer = AuthLayer::new(keystone_mode(), Some(KEY), clock());
        let mut creds = Credentials {
            project: Some("p".into()),
            roles: Some("admin".into()),
            ..Credentials::default()
        };
        let err = layer
            .authenticate(&creds, "GET", "/v2/queues")
            .await
            .unwrap_err();
        assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
        assert!(
            matches!(&err, ApiError::Unauthorized { www_authenticate } if www_authenticate.contains("127.0.0.1:9"))
        );
        // Keystone unreachable, token not cached: 503, not 401 or 500.
        creds.token = Some("gAAAAABtoken".into());
        let err = layer
            .authenticate(&creds, "GET", "/v2/queues")
            .await
            .unwrap_err();
        assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        // Only the versions document is open.
        let caller = layer
            .authenticate(&Credentials::default(), "GET", "/")
            .await
            .unwrap();
        assert!(caller.roles.is_empty() && caller.project().is_none());
    }

    /// Issue 11, defect 1: a `URL-Signature` that is not visible ASCII (or
    /// any signature that does not verify) once skipped both token
    /// validation and the signature check. Now a signature authorises only
    /// after it verified, in both modes, with or without a secret key.
    #[tokio::test]
    async fn a_signature_authorises_only_once_verified() {
        for (mode, key) in [
            (keystone_mode(), Some(KEY)),
            (keystone_mode(), None),
            (AuthMode::NoAuth, Some(KEY)),
            (AuthMode::NoAuth, None),
        ] {
            let layer = AuthLayer::new(mode, key, clock());
            let garbled = Credentials {
                signature: Some(Signature {
                    signature: String::from_utf8_lossy(&[0xff]).into_owned(),
                    ..Signature::default()
                }),
                project: Some("victim".into()),
                ..Credentials::default()
            };
            for (method, path) in [
                ("GET", "/v2/queues"),
                ("GET", "/v2/queues/q/messages"),
                ("DELETE", "/v2/queues/q"),
            ] {
                let err = layer
                    .authenticate(&garbled, method, path)
                    .await
                    .unwrap_err();
                assert_eq!(err, ApiError::RouteNotFound, "{method} {path} key={key:?}");
            }
            let good = signed("p", "GET");
            let outcome = layer
                .authenticate(&good, "GET", "/v2/queues/q/messages")
                .await;
            match key {
                Some(_) => assert_eq!(outcome.unwrap().project(), Some("p")),
                None => assert_eq!(outcome.unwrap_err(), ApiError::RouteNotFound),
            }
            // A valid signature covers only what it signed.
            for (method, path) in [("DELETE", "/v2/queues/q/messages"), ("GET", "/v2/queues")] {
                let err = layer.authenticate(&good, method, path).await.unwrap_err();
                assert_eq!(err, ApiError::RouteNotFound, "{method} {path}");
            }
        }
    }

    #[tokio::test]
    async fn a_signed_request_grants_no_role_with_keystone() {
        let layer = AuthLayer::new(keystone_mode(), Some(KEY), clock());
        let caller = layer
            .authenticate(&signed("p", "GET,POST"), "POST", "/v2/queues/q/messages")
            .await
            .unwrap();
        assert_eq!(caller.project(), Some("p"));
        assert!(caller.roles.is_empty(), "a signed URL grants no role");
        assert!(caller.user_id.is_none());
    }

    #[test]
    fn a_claim_for_another_project_is_refused() {
        let caller = Caller {
            token_project: Some("a".into()),
            ..Caller::default()
        };
        assert!(caller.check_claim(None).is_ok());
        assert!(caller.check_claim(Some("a")).is_ok());
        let err = caller.check_claim(Some("b")).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::FORBIDDEN);
        assert_eq!(caller.project(), Some("a"));
    }

    #[test]
    fn debug_hides_the_signing_key() {
        let layer = AuthLayer::new(AuthMode::NoAuth, Some(KEY), clock());
        assert!(!format!("{layer:?}").contains(KEY));
    }
}
