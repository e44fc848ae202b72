//! The api core's one error type.
//!
//! Every failure a client can see is an [`ApiError`]; each transport renders
//! it in one place (HTTP: status + `{"title", "description"}`; WebSocket: an
//! error frame), so the same bad input gets the same answer on both.

use std::borrow::Cow;

use http::StatusCode;

use crate::storage::StorageError;

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// 400 "Invalid request body": the body could not be used.
    #[error("Invalid request body: {0}")]
    InvalidBody(Cow<'static, str>),
    /// 400 "Invalid request body": one field of the body is missing or not
    /// of its type. Rendered as [`ApiError::InvalidBody`]; the WebSocket
    /// API words it as the reference's field check does ("Bad request. ...").
    #[error("Invalid request body: {0}")]
    InvalidField(Cow<'static, str>),
    /// 400 "Invalid queue identification": a queue name or project id is not
    /// acceptable, for the reason given. HTTP masks the reason, as the
    /// reference does; the WebSocket API tells it.
    #[error("Invalid queue identification: {0}")]
    InvalidQueueIdentification(&'static str),
    /// 400 "Invalid API request": a validation rule failed.
    #[error("Invalid API request: {0}")]
    InvalidRequest(Cow<'static, str>),
    /// 400 with a title of its own (headers, queue names, delete rules).
    #[error("{title}")]
    BadRequest {
        /// Error title.
        title: Cow<'static, str>,
        /// Error description, when there is one.
        description: Option<Cow<'static, str>>,
    },
    /// 401: no usable Keystone token. Rendered with
    /// `WWW-Authenticate: <www_authenticate>` (`Keystone uri="..."`), which
    /// tells the client where to get a token.
    #[error("401 Unauthorized")]
    Unauthorized {
        /// The `WWW-Authenticate` header value.
        www_authenticate: Cow<'static, str>,
    },
    /// 403 with a title of its own.
    #[error("{title}")]
    Forbidden {
        /// Error title.
        title: Cow<'static, str>,
        /// Error description.
        description: Cow<'static, str>,
    },
    /// 404 "Not found" with a description.
    #[error("Not found: {0}")]
    NotFound(Cow<'static, str>),
    /// 404 with the bare framework body (unknown route, refused signature).
    #[error("404 Not Found")]
    RouteNotFound,
    /// 405 for a known path with another method.
    #[error("405 Method Not Allowed")]
    MethodNotAllowed(&'static [&'static str]),
    /// 406: the client does not accept JSON.
    #[error("406 Not Acceptable")]
    NotAcceptable,
    /// 409 "Resource conflict".
    #[error("Resource conflict: {0}")]
    Conflict(Cow<'static, str>),
    /// 415 for a PATCH without the JSON-patch media type.
    #[error("415 Unsupported Media Type")]
    UnsupportedMediaType(Cow<'static, str>),
    /// 503: the backend failed; the description says what could not be done.
    #[error("Service temporarily unavailable: {0}")]
    Unavailable(Cow<'static, str>),
    /// 500: a fault of ours; the description is logged, not the details.
    #[error("Internal server error: {0}")]
    Internal(String),
}

impl ApiError {
    /// 400 "Invalid request body".
    pub fn invalid_body(description: impl Into<Cow<'static, str>>) -> Self {
        ApiError::InvalidBody(description.into())
    }

    /// 400 "Invalid API request".
    pub fn invalid(description: impl Into<Cow<'static, str>>) -> Self {
        ApiError::InvalidRequest(description.into())
    }

    /// 400 with its own title and description.
    pub fn bad_request(
        title: impl Into<Cow<'static, str>>,
        description: impl Into<Cow<'static, str>>,
    ) -> Self {
        ApiError::BadRequest {
            title: title.into(),
            description: Some(description.into()),
        }
    }

    /// 404 "Not found".
    pub fn not_found(description: impl Into<Cow<'static, str>>) -> Self {
        ApiError::NotFound(description.into())
    }

    /// 403 refused by policy.
    pub fn not_authorized() -> Self {
        ApiError::Forbidden {
            title: "Not authorized".into(),
            description: "You are not authorized to complete this action.".into(),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidBody(_)
            | ApiError::InvalidField(_)
            | ApiError::InvalidQueueIdentification(_)
            | ApiError::InvalidRequest(_)
            | ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `title` of the error body.
    pub fn title(&self) -> Cow<'static, str> {
        match self {
            ApiError::InvalidBody(_) | ApiError::InvalidField(_) => "Invalid request body".into(),
            ApiError::InvalidQueueIdentification(_) => "Invalid queue identification".into(),
            ApiError::InvalidRequest(_) => "Invalid API request".into(),
            ApiError::BadRequest { title, .. } | ApiError::Forbidden { title, .. } => title.clone(),
            ApiError::Unauthorized { .. } => "Unauthorized".into(),
            ApiError::NotFound(_) => "Not found".into(),
            ApiError::RouteNotFound => "404 Not Found".into(),
            ApiError::MethodNotAllowed(_) => "405 Method Not Allowed".into(),
            ApiError::NotAcceptable => "406 Not Acceptable".into(),
            ApiError::Conflict(_) => "Resource conflict".into(),
            ApiError::UnsupportedMediaType(_) => "415 Unsupported Media Type".into(),
            ApiError::Unavailable(_) => "Service temporarily unavailable".into(),
            ApiError::Internal(_) => "Internal server error".into(),
        }
    }

    /// The `description` of the error body, when it has one.
    pub fn description(&self) -> Option<Cow<'static, str>> {
        match self {
            ApiError::InvalidBody(d)
            | ApiError::InvalidField(d)
            | ApiError::InvalidRequest(d)
            | ApiError::NotFound(d)
            | ApiError::Conflict(d)
            | ApiError::UnsupportedMediaType(d) => Some(d.clone()),
            ApiError::BadRequest { description, .. } => description.clone(),
            ApiError::InvalidQueueIdentification(_) => {
                Some("The format of the submitted queue name or project id is not valid.".into())
            }
            ApiError::Forbidden { description, .. } => Some(description.clone()),
            ApiError::Unauthorized { .. } => Some("The request you have made requires authentication.".into()),
            ApiError::Unavailable(d) => Some(format!("{d} Please try again in a few seconds.").into()),
            ApiError::NotAcceptable => Some(
                "Endpoint only serves `application/json`; specify client-side media type support with \
                 the \"Accept\" header."
                    .into(),
            ),
            ApiError::Internal(_) => Some("An unexpected error prevented the server from fulfilling the request.".into()),
            ApiError::RouteNotFound | ApiError::MethodNotAllowed(_) => None,
        }
    }

    /// The error as the JSON body clients parse.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        body.insert("title".into(), self.title().into_owned().into());
        if let Some(d) = self.description() {
            body.insert("description".into(), d.into_owned().into());
        }
        serde_json::Value::Object(body)
    }
}

/// Turns a storage failure into the answer for one operation: `what` is the
/// reference's 503 text for it (e.g. "Messages could not be enqueued.").
pub fn storage_error(what: &'static str) -> impl Fn(StorageError) -> ApiError {
    move |err| match err {
        StorageError::Unavailable(reason) => {
            tracing::warn!(%reason, "{what}");
            ApiError::Unavailable(what.into())
        }
        StorageError::NotImplemented(op) => ApiError::Internal(format!("{op} is not implemented")),
        StorageError::Rejected(why) => ApiError::invalid(why),
        StorageError::Conflict(why) => ApiError::Conflict(why.into()),
        other => {
            tracing::warn!(error = %other, "{what}");
            ApiError::Unavailable(what.into())
        }
    }
}

/// Result alias for the api core.
pub type ApiResult<T> = Result<T, ApiError>;
