//! The pre-signed URL scheme: how a grant is signed and how a request
//! carrying one is checked.
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
use sha2::Sha256;

use crate::error::{ApiError, ApiResult};

/// The format of `expires` in signatures and share answers.
pub const DATE_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

/// Most paths, and most methods, one signature may list; a request listing
/// more is refused without computing anything.
pub const MAX_SIGNED_ITEMS: usize = 16;

/// A signature a request presents (the `URL-*` headers; WebSocket frames
/// carry the same headers, with JSON arrays for the lists).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Signature {
    /// `URL-Signature`: lowercase hex HMAC-SHA256.
    pub signature: String,
    /// `URL-Expires`.
    pub expires: Option<String>,
    /// `URL-Methods`.
    pub methods: Vec<String>,
    /// `URL-Paths`.
    pub paths: Vec<String>,
}

/// Splits a comma-separated header value (`URL-Methods`, `URL-Paths`).
pub fn comma_list(value: &str) -> Vec<String> {
    value.split(',').map(str::to_owned).collect()
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

/// Checks a pre-signed request for `project` (its `X-Project-ID`). Any
/// failure is the bare 404 the reference answers
/// ([`ApiError::RouteNotFound`]): wrong method, a path not granted, an
/// unparsable or past expiry, a signature that does not match, too many
/// listed items, or no `[signed_url] secret_key` on this server.
///
/// # Errors
/// [`ApiError::RouteNotFound`].
pub fn verify(
    key: Option<&str>,
    signature: &Signature,
    project: Option<&str>,
    method: &str,
    request_path: &str,
    now_ms: i64,
) -> ApiResult<()> {
    let refuse = || ApiError::RouteNotFound;
    let key = key.ok_or_else(refuse)?;
    if signature.methods.len() > MAX_SIGNED_ITEMS || signature.paths.len() > MAX_SIGNED_ITEMS {
        return Err(refuse());
    }
    if !signature.methods.iter().any(|m| m == method) {
        return Err(refuse());
    }
    if !signature.paths.iter().any(|p| covers(p, request_path)) {
        return Err(refuse());
    }
    let expires = signature
        .expires
        .as_deref()
        .and_then(parse_expires)
        .ok_or_else(refuse)?;
    if expires.timestamp_millis() <= now_ms {
        return Err(refuse());
    }
    let expected = sign(
        key,
        &signature.paths,
        &signature.methods,
        project,
        &expires.format(DATE_FORMAT).to_string(),
    );
    if !constant_time_eq(&expected, &signature.signature) {
        return Err(refuse());
    }
    Ok(())
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
        let s = Signature {
            signature: sig,
            expires: Some("2030-01-01T00:00:00".into()),
            methods: comma_list("GET,POST"),
            paths: comma_list("/v2/queues/q/messages"),
        };
        let p = Some("p");
        assert!(verify(Some("k"), &s, p, "GET", "/v2/queues/q/messages", now).is_ok());
        assert!(verify(Some("k"), &s, p, "GET", "/v2/queues/q/messages/abc", now).is_ok());
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
                verify(key, &s, p, method, path, at),
                Err(ApiError::RouteNotFound),
                "{key:?} {method} {path}"
            );
        }
        assert!(verify(
            Some("k"),
            &s,
            Some("other"),
            "GET",
            "/v2/queues/q/messages",
            now
        )
        .is_err());
        assert!(verify(Some("k"), &s, None, "GET", "/v2/queues/q/messages", now).is_err());
        // Not visible ASCII (as a transport reads it, lossily) never verifies.
        let garbled = Signature {
            signature: String::from_utf8_lossy(&[0xff]).into_owned(),
            ..s.clone()
        };
        assert!(verify(Some("k"), &garbled, p, "GET", "/v2/queues/q/messages", now).is_err());
        let too_many = Signature {
            methods: vec!["GET".into(); MAX_SIGNED_ITEMS + 1],
            ..s.clone()
        };
        assert!(verify(Some("k"), &too_many, p, "GET", "/v2/queues/q/messages", now).is_err());
        // An equivalent expiry spelling normalises to the signed one.
        let spelled = Signature {
            expires: Some("2030-01-01T01:00:00+01:00".into()),
            ..s
        };
        assert!(verify(Some("k"), &spelled, p, "GET", "/v2/queues/q/messages", now).is_ok());
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
