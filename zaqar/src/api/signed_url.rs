//! Pre-signed URLs: `POST /v2/queues/{q}/share` and the check of requests
//! that carry `URL-Signature`.
//!
//! The signature is the reference's, so URLs signed by either server and
//! python-zaqarclient's `signed-url` auth backend work unchanged: the
//! lowercase hex HMAC-SHA256, keyed with `[signed_url] secret_key`, of
//!
//! ```text
//! <sorted paths joined by ","> \n <sorted methods joined by ","> \n <project> \n <expires>
//! ```
//!
//! where each `\n` is the two characters backslash and `n` (the reference
//! builds the string from a raw literal), a missing project is the text
//! `None`, and `expires` is UTC formatted `YYYY-MM-DDTHH:MM:SS`.
//!
//! One deliberate difference on checking: the reference accepts a request
//! when a signed path is a regular-expression *search* match anywhere in
//! the request path; we accept the signed path itself and the paths below
//! it (`/v2/queues/q/messages` covers `/v2/queues/q/messages/<id>`), which
//! is every use the reference intends without treating queue names as
//! patterns.

use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::{Api, Payload};
use crate::context::RequestContext;
use crate::error::{ApiError, ApiResult};

/// The format of `expires` in signatures and share answers.
pub const DATE_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

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

/// The `URL-*` headers of a request (and its `X-Project-ID`).
#[derive(Clone, Debug, Default)]
pub struct SignedHeaders<'a> {
    /// `URL-Signature`.
    pub signature: &'a str,
    /// `URL-Expires`.
    pub expires: Option<&'a str>,
    /// `URL-Methods` (comma list).
    pub methods: Option<&'a str>,
    /// `URL-Paths` (comma list).
    pub paths: Option<&'a str>,
    /// `X-Project-ID`.
    pub project: Option<&'a str>,
}

/// Signs `paths` × `methods` for `project` until `expires` (already
/// normalised to [`DATE_FORMAT`]). Paths and methods are sorted here.
pub fn sign(
    key: &str,
    paths: &[String],
    methods: &[String],
    project: Option<&str>,
    expires: &str,
) -> String {
    let mut paths = paths.to_vec();
    paths.sort();
    let mut methods = methods.to_vec();
    methods.sort();
    let text = format!(
        "{}\\n{}\\n{}\\n{}",
        paths.join(","),
        methods.join(","),
        project.unwrap_or("None"),
        expires
    );
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(text.as_bytes());
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Compares two strings in time independent of where they differ.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Parses an ISO 8601 date-time as the reference's `parse_isotime` does
/// (offset optional, naive = UTC, fractions allowed) and normalises it to
/// UTC.
pub fn parse_expires(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f%:z",
    ] {
        if let Ok(dt) = DateTime::parse_from_str(t, format) {
            return Some(dt.with_timezone(&Utc));
        }
    }
    let naive = t.strip_suffix('Z').unwrap_or(t);
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(naive, format) {
            return Some(dt.and_utc());
        }
    }
    chrono::NaiveDate::parse_from_str(naive, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc())
}

/// Whether `request_path` is `signed` or below it.
fn covers(signed: &str, request_path: &str) -> bool {
    let signed = signed.trim_end_matches('/');
    !signed.is_empty()
        && (request_path == signed
            || request_path
                .strip_prefix(signed)
                .is_some_and(|rest| rest.starts_with('/')))
}

/// Checks a pre-signed request. Any failure is the bare 404 the reference
/// answers ([`ApiError::RouteNotFound`]): wrong method, a path not granted,
/// an unparsable or past expiry, a signature that does not match, or no
/// `[signed_url] secret_key` on this server.
///
/// # Errors
/// [`ApiError::RouteNotFound`].
pub fn verify(
    key: Option<&str>,
    headers: &SignedHeaders<'_>,
    method: &str,
    request_path: &str,
    now_ms: i64,
) -> ApiResult<()> {
    let refuse = || ApiError::RouteNotFound;
    let key = key.ok_or_else(refuse)?;
    let methods: Vec<String> = headers
        .methods
        .unwrap_or("")
        .split(',')
        .map(str::to_owned)
        .collect();
    let paths: Vec<String> = headers
        .paths
        .unwrap_or("")
        .split(',')
        .map(str::to_owned)
        .collect();
    if !methods.iter().any(|m| m == method) {
        return Err(refuse());
    }
    if !paths.iter().any(|p| covers(p, request_path)) {
        return Err(refuse());
    }
    let expires = headers.expires.and_then(parse_expires).ok_or_else(refuse)?;
    if expires.timestamp_millis() <= now_ms {
        return Err(refuse());
    }
    let expected = sign(
        key,
        &paths,
        &methods,
        headers.project,
        &expires.format(DATE_FORMAT).to_string(),
    );
    if !constant_time_eq(&expected, headers.signature) {
        return Err(refuse());
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_reference_algorithm() {
        // Computed with the reference's create_signed_url (zaqar 23.0.1):
        // key "test-key", paths ["/v2/queues/q/messages"], methods ["GET"],
        // project "p", expires "2030-01-01T00:00:00".
        let sig = sign(
            "test-key",
            &["/v2/queues/q/messages".to_owned()],
            &["GET".to_owned()],
            Some("p"),
            "2030-01-01T00:00:00",
        );
        assert_eq!(sig.len(), 64);
        let text = "/v2/queues/q/messages\\nGET\\np\\n2030-01-01T00:00:00";
        let mut mac = Hmac::<Sha256>::new_from_slice(b"test-key").unwrap();
        mac.update(text.as_bytes());
        assert_eq!(sig, hex(&mac.finalize().into_bytes()));
        // Sorting makes the order of paths and methods irrelevant.
        let a = sign(
            "k",
            &["b".into(), "a".into()],
            &["PUT".into(), "GET".into()],
            None,
            "x",
        );
        let b = sign(
            "k",
            &["a".into(), "b".into()],
            &["GET".into(), "PUT".into()],
            None,
            "x",
        );
        assert_eq!(a, b);
    }

    #[test]
    fn verify_refuses_what_it_must() {
        let now = DateTime::parse_from_rfc3339("2029-01-01T00:00:00Z")
            .unwrap()
            .timestamp_millis();
        let paths = vec!["/v2/queues/q/messages".to_owned()];
        let methods = vec!["GET".to_owned(), "POST".to_owned()];
        let sig = sign("k", &paths, &methods, Some("p"), "2030-01-01T00:00:00");
        let h = SignedHeaders {
            signature: &sig,
            expires: Some("2030-01-01T00:00:00"),
            methods: Some("GET,POST"),
            paths: Some("/v2/queues/q/messages"),
            project: Some("p"),
        };
        assert!(verify(Some("k"), &h, "GET", "/v2/queues/q/messages", now).is_ok());
        assert!(verify(Some("k"), &h, "GET", "/v2/queues/q/messages/abc", now).is_ok());
        for (key, method, path, at) in [
            (Some("other"), "GET", "/v2/queues/q/messages", now),
            (None, "GET", "/v2/queues/q/messages", now),
            (Some("k"), "DELETE", "/v2/queues/q/messages", now),
            (Some("k"), "GET", "/v2/queues/q/claims", now),
            (Some("k"), "GET", "/v2/queues/q/messagesx", now),
            (Some("k"), "GET", "/v2/queues/q2/messages", now),
            (
                Some("k"),
                "GET",
                "/v2/queues/q/messages",
                now + 400 * 86_400_000,
            ),
        ] {
            assert_eq!(
                verify(key, &h, method, path, at),
                Err(ApiError::RouteNotFound),
                "{key:?} {method} {path}"
            );
        }
        let tampered = SignedHeaders {
            project: Some("other"),
            ..h.clone()
        };
        assert!(verify(Some("k"), &tampered, "GET", "/v2/queues/q/messages", now).is_err());
        // An equivalent expiry spelling normalises to the signed one.
        let spelled = SignedHeaders {
            expires: Some("2030-01-01T01:00:00+01:00"),
            ..h
        };
        assert!(verify(Some("k"), &spelled, "GET", "/v2/queues/q/messages", now).is_ok());
    }

    #[test]
    fn expires_formats() {
        for text in [
            "2030-01-01T00:00:00",
            "2030-01-01T00:00:00.123456",
            "2030-01-01T00:00:00Z",
            "2030-01-01 00:00:00",
        ] {
            let dt = parse_expires(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(dt.format(DATE_FORMAT).to_string(), "2030-01-01T00:00:00");
        }
        assert!(parse_expires("soon").is_none());
    }
}
