//! The per-request context: who is asking, for which project.
//!
//! Built once per request by the auth layer (noauth headers, Keystone, or a
//! pre-signed URL); nothing downstream reads raw auth headers.
//!
//! With Keystone the context also keeps the caller's validated token
//! ([`AuthToken`]): creating a Keystone trust for a `trust+` subscription
//! must be done with the trustor's own token. The token is never logged
//! (its `Debug` is redacted, it has no `Display` or `Serialize`) and never
//! stored: it lives as long as the request (or the WebSocket session).

use std::fmt;
use std::sync::Arc;

/// A caller's validated Keystone token. Cheap to clone; its `Debug` shows
/// no part of it.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthToken(Arc<str>);

impl AuthToken {
    /// Wraps a token that was validated.
    pub fn new(token: &str) -> AuthToken {
        AuthToken(Arc::from(token))
    }

    /// The token itself, to send to Keystone (and nowhere else).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthToken(<redacted>)")
    }
}

/// Who is making a request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestContext {
    /// The project every queue of this request belongs to.
    pub project_id: String,
    /// The validated Client-ID header.
    pub client_id: String,
    /// The user, when authenticated.
    pub user_id: Option<String>,
    /// Role names (from the token, or `X-Roles` in noauth mode).
    pub roles: Vec<String>,
    /// `req-<uuid>`, echoed as `x-openstack-request-id`.
    pub request_id: String,
    /// The caller's validated token (Keystone mode; `None` in noauth mode
    /// and for pre-signed requests).
    pub auth_token: Option<AuthToken>,
}

impl RequestContext {
    /// Whether the caller holds `role` (case-insensitive, as oslo.policy).
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r.eq_ignore_ascii_case(role))
    }

    /// Whether the caller is an administrator (`role:admin`).
    pub fn is_admin(&self) -> bool {
        self.has_role("admin")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_never_shown() {
        let ctx = RequestContext {
            auth_token: Some(AuthToken::new("gAAAAAsecret")),
            ..RequestContext::default()
        };
        let shown = format!("{ctx:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert_eq!(ctx.auth_token.unwrap().expose(), "gAAAAAsecret");
    }
}
