//! Keystone v3 token validation for warp services.
//!
//! Any Rust service behind Keystone can use this crate: it reads the
//! `[keystone_authtoken]` options keystonemiddleware reads, validates each
//! `X-Auth-Token` against Keystone (`GET /v3/auth/tokens`) as the configured
//! service user, caches the answers, and hands the application an
//! [`Identity`] instead of request headers.
//!
//! ```no_run
//! use std::collections::HashMap;
//! use keystone_middleware::{authenticate, AuthTokenConfig, Identity, Validator};
//! use warp::Filter;
//!
//! # async fn run(section: HashMap<String, String>) -> Result<(), Box<dyn std::error::Error>> {
//! let config = AuthTokenConfig::from_options(&section)?;
//! let validator = Validator::new(config)?;
//! let hello = warp::path!("hello")
//!     .and(authenticate(validator.clone()))
//!     .map(|who: Identity| format!("hello {}", who.user_name));
//! # Ok(()) }
//! ```
//!
//! Rejections carry an [`AuthRejection`]: 401 with
//! `WWW-Authenticate: Keystone uri="..."` for a bad token, 503 when Keystone
//! cannot be asked and the token is not cached. A service should also strip
//! [`IDENTITY_HEADERS`] from incoming requests ([`strip_identity_headers`]).

#![deny(missing_docs)]

mod config;
mod error;
mod filter;
mod headers;
mod identity;
mod keystone;
mod stats;
mod validator;

pub use config::{
    AuthTokenConfig, ConfigError, DEFAULT_CACHE_CAPACITY, DEFAULT_HTTP_TIMEOUT,
    DEFAULT_MAX_RETRIES, DEFAULT_TOKEN_CACHE_TIME,
};
pub use error::{www_authenticate_value, AuthError, UnauthorizedReason, UnavailableReason};
pub use filter::{authenticate, authenticate_deferred, AuthRejection};
pub use headers::{is_identity_header, strip_identity_headers, IDENTITY_HEADERS};
pub use identity::{CatalogEndpoint, CatalogService, Identity};
pub use stats::Stats;
pub use validator::{Validator, INVALID_TOKEN_TTL, MAX_TOKEN_LEN};
