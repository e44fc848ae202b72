//! Who a WebSocket connection acts for: the `authenticate` action and the
//! hooks the Keystone and pre-signed-URL work plug into.
//!
//! With `auth_strategy = keystone` a connection starts unauthenticated:
//! every frame but `authenticate` is refused (403 `Not authentified.`)
//! unless a pre-signed header set admits it. `authenticate` hands the
//! frame's `X-Auth-Token` to a [`TokenValidator`]; on success the
//! connection acts for the token's project and roles until the token
//! expires (the connection is then closed with 4003), and every later frame
//! must name that project. Without an auth strategy, headers are trusted as
//! on HTTP and `authenticate` answers a plain success.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::actions::Action;

/// What a validated token says about its bearer.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// The token's project.
    pub project_id: String,
    /// The token's user.
    pub user_id: Option<String>,
    /// The token's role names.
    pub roles: Vec<String>,
    /// When the token expires (`None`: never, as far as the validator knows).
    pub expires_at: Option<SystemTime>,
}

/// Why a token was not accepted.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct AuthFailure {
    /// Status answered to the `authenticate` frame (401 for a bad token,
    /// 503 when the identity service cannot be reached).
    pub status: u16,
    /// Logged reason (the client gets `Authentication failed.`).
    pub reason: String,
}

/// Validates a Keystone token.
///
/// The Keystone integration implements this over
/// `keystone_middleware::Validator::validate(token) -> Result<Identity, AuthError>`
/// and passes it to [`Authenticator::keystone`].
#[async_trait]
pub trait TokenValidator: Send + Sync {
    /// Validates `token`.
    ///
    /// # Errors
    /// The token is invalid or expired, or the identity service failed.
    async fn validate(&self, token: &str) -> Result<Identity, AuthFailure>;
}

/// The authentication mode of the WebSocket transport.
#[derive(Clone)]
pub enum Authenticator {
    /// `auth_strategy` empty: `X-Project-ID` and `X-Roles` are trusted.
    NoAuth,
    /// `auth_strategy = keystone`; `None` until a validator is wired in, in
    /// which case no token can be validated (only pre-signed frames pass).
    Keystone(Option<Arc<dyn TokenValidator>>),
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Authenticator::NoAuth => f.write_str("NoAuth"),
            Authenticator::Keystone(v) => write!(f, "Keystone(validator: {})", v.is_some()),
        }
    }
}

impl Authenticator {
    /// Keystone mode with a validator.
    pub fn keystone(validator: Arc<dyn TokenValidator>) -> Self {
        Authenticator::Keystone(Some(validator))
    }

    /// Whether frames need an authenticated connection.
    pub fn required(&self) -> bool {
        matches!(self, Authenticator::Keystone(_))
    }

    /// Whether a frame carrying pre-signed headers may pass unauthenticated.
    ///
    /// Only the message actions can be pre-signed (GET: list/get/get_many,
    /// POST: post, DELETE: delete/delete_many), and the frame's
    /// `URL-Signature`, `URL-Expires`, `URL-Methods`, `URL-Paths` (arrays)
    /// and `X-Project-ID` must verify against `[signed_url] secret_key`.
    ///
    /// TODO(signed-urls): verify with the signed-URL module once it exists;
    /// until then no frame is admitted this way.
    pub fn presigned_admits(&self, action: Action, headers: &Map<String, Value>) -> bool {
        let _method = match action {
            Action::MessageList | Action::MessageGet | Action::MessageGetMany => "GET",
            Action::MessagePost => "POST",
            Action::MessageDelete | Action::MessageDeleteMany => "DELETE",
            _ => return false,
        };
        let _signed = headers.contains_key("URL-Signature");
        false
    }
}

/// The authentication state of one connection.
#[derive(Clone, Debug, Default)]
pub struct Session {
    /// The identity of the last successful `authenticate`.
    pub identity: Option<Identity>,
    /// When that identity's token expires: the connection is then closed
    /// with 4003.
    pub expires_at: Option<tokio::time::Instant>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_frame_is_presigned_yet() {
        let mut headers = Map::new();
        headers.insert("URL-Signature".into(), Value::from("abc"));
        let auth = Authenticator::Keystone(None);
        assert!(auth.required());
        assert!(!auth.presigned_admits(Action::MessageList, &headers));
        assert!(!auth.presigned_admits(Action::QueueList, &headers));
        assert!(!Authenticator::NoAuth.required());
    }
}
