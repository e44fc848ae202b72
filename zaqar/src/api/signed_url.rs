//! `POST /v2/queues/{q}/share`: signing a grant on a queue's resources.
//!
//! The signature scheme and the check of requests that carry one live in
//! the auth layer ([`crate::auth::signature`]).

use chrono::DateTime;
use serde_json::Value;

use super::{Api, Payload};
use crate::auth::signature::{parse_expires, sign, DATE_FORMAT};
use crate::context::RequestContext;
use crate::error::{ApiError, ApiResult};

/// Paths a share may grant (relative to the queue).
const VALID_PATHS: [&str; 3] = ["messages", "subscriptions", "claims"];

/// A signed grant, as `POST …/share` answers it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SignedUrl {
    /// Full paths granted, sorted.
    pub paths: Vec<String>,
    /// Methods granted, sorted.
    pub methods: Vec<String>,
    /// Project the grant acts for.
    pub project: String,
    /// Expiry, UTC, `YYYY-MM-DDTHH:MM:SS`.
    pub expires: String,
    /// Lowercase hex HMAC-SHA256.
    pub signature: String,
}

impl Api {
    /// `POST /v2/queues/{q}/share`: signs a grant on the queue's
    /// `messages` (default), `subscriptions` or `claims`.
    ///
    /// # Errors
    /// 400 "Invalid API request" for unknown keys, invalid paths, a
    /// `methods` that is not a list, an unusable or past `expires`, or a
    /// server without `[signed_url] secret_key`.
    pub fn queue_share(
        &self,
        ctx: &RequestContext,
        queue: &str,
        payload: &Payload,
    ) -> ApiResult<SignedUrl> {
        let doc = self.body_document(payload)?;
        let Value::Object(doc) = doc else {
            return Err(crate::api::body::document_type_not_supported());
        };
        let mut unknown: Vec<&str> = doc
            .keys()
            .map(String::as_str)
            .filter(|k| !matches!(*k, "methods" | "expires" | "paths"))
            .collect();
        if !unknown.is_empty() {
            unknown.sort();
            return Err(ApiError::invalid(format!(
                "Unknown keys: {}",
                python_set(&unknown)
            )));
        }
        let base = format!("/v2/queues/{queue}");
        let paths: Vec<String> = match doc.get("paths") {
            None | Some(Value::Null) => vec![format!("{base}/messages")],
            Some(Value::Array(items)) if items.is_empty() => vec![format!("{base}/messages")],
            Some(Value::Array(items)) => {
                let mut invalid: Vec<String> = Vec::new();
                let mut out = Vec::new();
                for item in items {
                    match item.as_str() {
                        Some(p) if VALID_PATHS.contains(&p) => out.push(format!("{base}/{p}")),
                        Some(p) => invalid.push(format!("'{p}'")),
                        None => invalid.push(item.to_string()),
                    }
                }
                if !invalid.is_empty() {
                    invalid.sort();
                    invalid.dedup();
                    return Err(ApiError::invalid(format!(
                        "Invalid paths: {{{}}}",
                        invalid.join(", ")
                    )));
                }
                out.sort();
                out.dedup();
                out
            }
            Some(_) => return Err(ApiError::invalid("Invalid paths: `paths` must be a list")),
        };
        let key = self
            .config()
            .signed_url
            .secret_key
            .as_deref()
            .ok_or_else(|| ApiError::invalid("The `key` can't be None"))?;
        let mut methods: Vec<String> = match doc.get("methods") {
            None | Some(Value::Null) => vec!["GET".to_owned()],
            Some(Value::Array(items)) if items.is_empty() => vec!["GET".to_owned()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|m| m.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ApiError::invalid("`methods` should be a list of strings"))?,
            Some(_) => return Err(ApiError::invalid("`methods` should be a list")),
        };
        methods.sort();
        let now = self.now_ms();
        let expires = match doc.get("expires") {
            None | Some(Value::Null) => {
                DateTime::from_timestamp_millis(now + 86_400_000).unwrap_or_default()
            }
            Some(v) => {
                let integer = match v {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => s.trim().parse::<i64>().ok(),
                    _ => None,
                };
                if let Some(n) = integer.filter(|n| *n != 0) {
                    return Err(ApiError::invalid(format!(
                        "`expires` should be date format, for example 2016-01-01T00:00:00, not integer value: {n}"
                    )));
                }
                let text = v
                    .as_str()
                    .ok_or_else(|| ApiError::invalid("`expires` should be a date string"))?;
                parse_expires(text).ok_or_else(|| {
                    ApiError::invalid(format!("Unable to parse date string '{text}'"))
                })?
            }
        };
        if expires.timestamp_millis() <= now {
            return Err(ApiError::invalid(
                "`expires` is lower than the current time",
            ));
        }
        let expires = expires.format(DATE_FORMAT).to_string();
        let signature = sign(key, &paths, &methods, Some(&ctx.project_id), &expires);
        Ok(SignedUrl {
            paths,
            methods,
            project: ctx.project_id.clone(),
            expires,
            signature,
        })
    }
}

/// `{'a', 'b'}` as Python prints a set of strings.
fn python_set(items: &[&str]) -> String {
    let inner: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
    format!("{{{}}}", inner.join(", "))
}
