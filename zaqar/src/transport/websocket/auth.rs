//! What a WebSocket frame presents to the auth layer, and the
//! authentication state of a connection.
//!
//! The rules are the auth layer's ([`crate::auth`]), the same as HTTP's. What
//! is particular to WebSocket is the session: with `auth_strategy =
//! keystone` a connection starts unauthenticated, the `authenticate` action
//! validates the frame's `X-Auth-Token` and the connection then acts for the
//! token's caller until the token expires (the connection is then closed
//! with 4003); every later frame naming another project is refused as HTTP
//! refuses it (403 "Project mismatch"). An unauthenticated frame passes only
//! with a signature that verifies for its operation's HTTP route.

use serde_json::{Map, Value};

use crate::auth::signature::{comma_list, Signature};
use crate::auth::{Caller, Credentials};

/// The authentication state of one connection.
#[derive(Clone, Debug, Default)]
pub struct Session {
    /// The caller of the last successful `authenticate`.
    pub caller: Option<Caller>,
    /// When that caller's token expires: the connection is then closed
    /// with 4003.
    pub expires_at: Option<tokio::time::Instant>,
}

/// What the frame presents. Header values that are not strings (or string
/// lists, for `URL-Methods` and `URL-Paths`) are read as their JSON text,
/// so a malformed signature is refused, never mistaken for an absent one.
pub fn credentials(headers: &Map<String, Value>) -> Credentials {
    let text = |name: &str| {
        headers.get(name).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let list = |name: &str| match headers.get(name) {
        None => Vec::new(),
        Some(Value::String(s)) => comma_list(s),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(other) => vec![other.to_string()],
    };
    Credentials {
        token: text("X-Auth-Token"),
        signature: text("URL-Signature").map(|signature| Signature {
            signature,
            expires: text("URL-Expires"),
            methods: list("URL-Methods"),
            paths: list("URL-Paths"),
        }),
        project: text("X-Project-ID"),
        user_id: text("X-User-ID"),
        roles: text("X-Roles"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_present_signatures_as_lists_or_text() {
        let headers: Map<String, Value> = serde_json::from_value(json!({
            "URL-Signature": "abc",
            "URL-Expires": "2030-01-01T00:00:00",
            "URL-Methods": ["GET", "POST"],
            "URL-Paths": "/v2/queues/q/messages,/v2/queues/q/claims",
            "X-Project-ID": "p",
        }))
        .unwrap();
        let creds = credentials(&headers);
        let sig = creds.signature.unwrap();
        assert_eq!(sig.methods, vec!["GET", "POST"]);
        assert_eq!(sig.paths.len(), 2);
        assert_eq!(creds.project.as_deref(), Some("p"));
        // A signature that is not a string is still a signature (refused
        // later), never an absent one.
        let odd: Map<String, Value> = serde_json::from_value(json!({"URL-Signature": 5})).unwrap();
        assert_eq!(credentials(&odd).signature.unwrap().signature, "5");
        assert!(credentials(&Map::new()).signature.is_none());
    }
}
