//! warp filters that authenticate a request by its `X-Auth-Token`.

use std::convert::Infallible;
use std::sync::Arc;

use warp::http::{HeaderValue, StatusCode};
use warp::{Filter, Rejection};

use crate::error::{AuthError, UnauthorizedReason};
use crate::identity::Identity;
use crate::validator::Validator;

/// The rejection of [`authenticate`]: the error, and the `WWW-Authenticate`
/// value to send with a 401. Find it in a `recover` handler with
/// `rejection.find::<AuthRejection>()`.
#[derive(Debug)]
pub struct AuthRejection {
    error: AuthError,
    www_authenticate: Arc<str>,
}

impl warp::reject::Reject for AuthRejection {}

impl AuthRejection {
    /// Pairs `error` with the validator's `WWW-Authenticate` value.
    pub fn new(error: AuthError, validator: &Validator) -> Self {
        AuthRejection {
            error,
            www_authenticate: Arc::from(validator.www_authenticate()),
        }
    }

    /// Why the request was refused.
    pub fn error(&self) -> &AuthError {
        &self.error
    }

    /// 401 or 503.
    pub fn status(&self) -> StatusCode {
        self.error.status()
    }

    /// The `WWW-Authenticate` header value to send, for a 401 only.
    pub fn www_authenticate(&self) -> Option<&str> {
        self.error
            .is_unauthorized()
            .then_some(&*self.www_authenticate)
    }
}

/// Extracts the caller's [`Identity`] from `X-Auth-Token`, or rejects with
/// [`AuthRejection`] (401 for a bad or missing token, 503 when Keystone
/// cannot be asked).
///
/// Place it after the path filters, so unmatched paths are not validated.
pub fn authenticate(
    validator: Validator,
) -> impl Filter<Extract = (Identity,), Error = Rejection> + Clone {
    authenticate_deferred(validator).and_then(|outcome: Result<Identity, AuthRejection>| async move {
        outcome.map_err(warp::reject::custom)
    })
}

/// Like [`authenticate`], but never rejects: extracts the outcome so the
/// application decides (what `delay_auth_decision = true` asks for: a
/// service with some anonymous routes, or one that answers in its own
/// format).
pub fn authenticate_deferred(
    validator: Validator,
) -> impl Filter<Extract = (Result<Identity, AuthRejection>,), Error = Infallible> + Clone {
    auth_token_header().then(move |header: Option<HeaderValue>| {
        let validator = validator.clone();
        async move {
            let outcome = match header.as_ref().map(HeaderValue::to_str) {
                None => Err(AuthError::Unauthorized(UnauthorizedReason::MissingToken)),
                Some(Err(_)) => Err(AuthError::Unauthorized(UnauthorizedReason::MalformedToken)),
                Some(Ok(token)) => validator.validate(token.trim()).await,
            };
            outcome.map_err(|error| AuthRejection::new(error, &validator))
        }
    })
}

/// The raw `X-Auth-Token` header, if any.
fn auth_token_header() -> impl Filter<Extract = (Option<HeaderValue>,), Error = Infallible> + Clone
{
    warp::header::value("x-auth-token")
        .map(Some)
        .or(warp::any().map(|| None))
        .unify()
}
