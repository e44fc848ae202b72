//! Transports: thin adapters between the wire and the [`api`](crate::api) core.

pub mod http;
pub mod listener;
pub mod websocket;
