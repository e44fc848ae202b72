//! Zaqar in Rust: the OpenStack multi-tenant messaging service.
//!
//! Layers, from the wire inwards: [`transport`] (HTTP v2, WebSocket) →
//! [`api`] (validation, limits, reserved metadata, policy) → [`storage`]
//! (pipeline stages, then a driver).

pub mod api;
pub mod auth;
pub mod config;
pub mod context;
pub mod error;
pub mod json;
pub mod logging;
pub mod metrics;
pub mod notification;
pub mod server;
pub mod status;
pub mod storage;
pub mod transport;
