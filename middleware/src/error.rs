//! Why a request could not be authenticated, in two kinds the client can act
//! on: its token is no good (401, get a new one) or Keystone cannot be asked
//! right now (503, try again later). Nothing here maps to a 500.

use warp::http::StatusCode;

/// The outcome of a failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The client's token is missing, malformed, invalid, expired or revoked:
    /// answer 401 with [`www_authenticate_value`].
    #[error("authentication required: {0}")]
    Unauthorized(UnauthorizedReason),
    /// Keystone could not tell whether the token is good and no cached answer
    /// was at hand: answer 503.
    #[error("identity service unavailable: {0}")]
    Unavailable(UnavailableReason),
}

/// What was wrong with the client's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnauthorizedReason {
    /// The request carried no `X-Auth-Token`.
    #[error("no X-Auth-Token was given")]
    MissingToken,
    /// The token is too long or holds characters no Keystone token has; it
    /// was refused without asking Keystone.
    #[error("the token is malformed")]
    MalformedToken,
    /// Keystone does not know the token, or it was revoked (Keystone answers
    /// 404 for both).
    #[error("the token is invalid or revoked")]
    InvalidToken,
    /// The token's `expires_at` has passed.
    #[error("the token has expired")]
    ExpiredToken,
}

/// Why Keystone could not be asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnavailableReason {
    /// No connection, a timeout, or the connection broke, after all retries.
    #[error("Keystone is unreachable: {detail}")]
    Unreachable {
        /// The transport error, for the log.
        detail: String,
    },
    /// Keystone refused the service user's credentials, or refused the
    /// service token even after it was renewed.
    #[error("Keystone refused the service credentials (HTTP {status})")]
    ServiceAuthRejected {
        /// Keystone's status code.
        status: u16,
    },
    /// The service user may not validate tokens (it lacks the `admin` or
    /// `service` role on its project).
    #[error("the service user is not allowed to validate tokens (HTTP 403)")]
    ServiceForbidden,
    /// Keystone answered with a status this client does not expect.
    #[error("Keystone answered HTTP {status}")]
    UnexpectedStatus {
        /// Keystone's status code.
        status: u16,
    },
    /// Keystone's answer lacked a field or was not JSON.
    #[error("Keystone's answer could not be read: {detail}")]
    MalformedResponse {
        /// What was missing or wrong.
        detail: String,
    },
}

impl AuthError {
    /// 401 for [`AuthError::Unauthorized`], 503 for [`AuthError::Unavailable`].
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Whether the client's token is at fault (as opposed to Keystone).
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, AuthError::Unauthorized(_))
    }

    pub(crate) fn unavailable(reason: UnavailableReason) -> Self {
        AuthError::Unavailable(reason)
    }

    pub(crate) fn unauthorized(reason: UnauthorizedReason) -> Self {
        AuthError::Unauthorized(reason)
    }
}

/// The `WWW-Authenticate` header value that tells a client where to get a
/// token: `Keystone uri="<www_authenticate_uri>"`.
pub fn www_authenticate_value(www_authenticate_uri: &str) -> String {
    format!("Keystone uri=\"{www_authenticate_uri}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let u = AuthError::Unauthorized(UnauthorizedReason::InvalidToken);
        let s = AuthError::Unavailable(UnavailableReason::ServiceForbidden);
        assert_eq!(u.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(s.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(u.is_unauthorized());
        assert!(!s.is_unauthorized());
        assert_eq!(
            www_authenticate_value("http://k:5000"),
            "Keystone uri=\"http://k:5000\""
        );
    }
}
