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
use crate::api::signed_url::{self, SignedHeaders};

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
    /// The validated token, kept for the session's Keystone calls made on
    /// the caller's behalf (a `trust+` subscription's trust). Never shown.
    pub token: Option<crate::context::AuthToken>,
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
/// [`crate::auth::KeystoneTokens`] implements it over the Keystone
/// middleware's validator (the HTTP transport's, with its cache); the
/// server passes it to [`Authenticator::keystone`].
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
    /// `URL-Signature`, `URL-Expires`, `URL-Methods`, `URL-Paths` (JSON
    /// arrays, as the reference's clients send them; comma-separated
    /// strings are read too) and `X-Project-ID` must verify against `key`
    /// (`[signed_url] secret_key`) at `now_ms`, as HTTP's do. Unlike the
    /// reference, which checks only the signature, the signed paths must
    /// also cover the frame's queue (`/v2/queues/<queue>/messages`): a URL
    /// signed for one queue opens no other.
    pub fn presigned_admits(
        &self,
        action: Action,
        headers: &Map<String, Value>,
        queue: Option<&str>,
        key: Option<&str>,
        now_ms: i64,
    ) -> bool {
        let method = match action {
            Action::MessageList | Action::MessageGet | Action::MessageGetMany => "GET",
            Action::MessagePost => "POST",
            Action::MessageDelete | Action::MessageDeleteMany => "DELETE",
            _ => return false,
        };
        let (Some(queue), Some(Value::String(signature))) = (queue, headers.get("URL-Signature"))
        else {
            return false;
        };
        let (Some(methods), Some(paths)) =
            (joined(headers, "URL-Methods"), joined(headers, "URL-Paths"))
        else {
            return false;
        };
        let signed = SignedHeaders {
            signature,
            expires: headers.get("URL-Expires").and_then(Value::as_str),
            methods: Some(&methods),
            paths: Some(&paths),
            project: headers.get("X-Project-ID").and_then(Value::as_str),
        };
        let path = format!("/v2/queues/{queue}/messages");
        signed_url::verify(key, &signed, method, &path, now_ms).is_ok()
    }
}

/// A pre-signed header as the comma-separated list HTTP carries: a JSON
/// array of strings (the reference's form) or a string.
fn joined(headers: &Map<String, Value>, name: &str) -> Option<String> {
    match headers.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => {
            let items: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            Some(items?.join(","))
        }
        _ => None,
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
    fn presigned_frames_verify_like_urls() {
        let now = chrono::DateTime::parse_from_rfc3339("2029-01-01T00:00:00Z")
            .unwrap()
            .timestamp_millis();
        let paths = vec!["/v2/queues/q/messages".to_owned()];
        let methods = vec!["GET".to_owned(), "POST".to_owned()];
        let sig = signed_url::sign("k", &paths, &methods, Some("p"), "2030-01-01T00:00:00");
        let headers: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "URL-Signature": sig,
            "URL-Expires": "2030-01-01T00:00:00",
            "URL-Methods": ["GET", "POST"],
            "URL-Paths": ["/v2/queues/q/messages"],
            "X-Project-ID": "p",
        }))
        .unwrap();
        let auth = Authenticator::Keystone(None);
        assert!(auth.required());
        assert!(!Authenticator::NoAuth.required());
        let admits = |action, queue, key| auth.presigned_admits(action, &headers, queue, key, now);
        assert!(admits(Action::MessageList, Some("q"), Some("k")));
        assert!(admits(Action::MessagePost, Some("q"), Some("k")));
        assert!(
            !admits(Action::MessageDelete, Some("q"), Some("k")),
            "method not signed"
        );
        assert!(
            !admits(Action::QueueList, Some("q"), Some("k")),
            "not a message action"
        );
        assert!(
            !admits(Action::MessageList, Some("other"), Some("k")),
            "another queue"
        );
        assert!(
            !admits(Action::MessageList, Some("q"), Some("wrong")),
            "another key"
        );
        assert!(
            !admits(Action::MessageList, Some("q"), None),
            "no key configured"
        );
        let mut tampered = headers.clone();
        tampered.insert("X-Project-ID".into(), Value::from("other"));
        assert!(!auth.presigned_admits(Action::MessageList, &tampered, Some("q"), Some("k"), now));
    }
}
