//! The identity headers a client could forge.
//!
//! keystonemiddleware tells the service who is calling through request
//! headers (`X-Roles`, `X-Project-Id`, ...), so it must first delete any such
//! header the client sent. Our services receive an [`crate::Identity`]
//! instead, but they still strip these before anything else reads the
//! request (logging, proxying, a handler reading headers by mistake).

use warp::http::HeaderMap;

/// Every identity header keystonemiddleware sets or removes, lower-case:
/// user and service (`X-Service-*`) variants, the deprecated `X-Tenant*`,
/// `X-User`, `X-Role` spellings, the status and catalog headers.
/// `X-Auth-Token` and `X-Service-Token` are credentials, not identity, and
/// are not listed.
pub const IDENTITY_HEADERS: &[&str] = &[
    "x-identity-status",
    "x-service-identity-status",
    "x-domain-id",
    "x-domain-name",
    "x-project-id",
    "x-project-name",
    "x-project-domain-id",
    "x-project-domain-name",
    "x-user-id",
    "x-user-name",
    "x-user-domain-id",
    "x-user-domain-name",
    "x-roles",
    "x-is-admin-project",
    "x-system-scope",
    "openstack-system-scope",
    "x-service-domain-id",
    "x-service-domain-name",
    "x-service-project-id",
    "x-service-project-name",
    "x-service-project-domain-id",
    "x-service-project-domain-name",
    "x-service-user-id",
    "x-service-user-name",
    "x-service-user-domain-id",
    "x-service-user-domain-name",
    "x-service-roles",
    "x-service-is-admin-project",
    "x-service-system-scope",
    "x-service-catalog",
    "x-catalog",
    "x-tenant-id",
    "x-tenant-name",
    "x-tenant",
    "x-user",
    "x-role",
    "x-auth-project-id",
    "x-trust-id",
    "x-trustee-id",
    "x-trustor-id",
];

/// Whether `name` (any case) is an identity header of [`IDENTITY_HEADERS`].
pub fn is_identity_header(name: &str) -> bool {
    IDENTITY_HEADERS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
}

/// Removes every identity header from `headers`; returns how many values
/// were removed (worth a log line: a client tried to forge its identity, or
/// a proxy in front leaks headers).
pub fn strip_identity_headers(headers: &mut HeaderMap) -> usize {
    let mut removed = 0;
    for name in IDENTITY_HEADERS {
        if let warp::http::header::Entry::Occupied(entry) = headers.entry(*name) {
            removed += entry.remove_entry_mult().1.count();
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderValue;

    #[test]
    fn strips_forged_headers_and_keeps_credentials() {
        let mut h = HeaderMap::new();
        for name in [
            "X-Roles",
            "X-Project-Id",
            "X-Tenant-Id",
            "X-Service-Roles",
            "X-Identity-Status",
        ] {
            h.append(name, HeaderValue::from_static("forged"));
        }
        h.append("X-Roles", HeaderValue::from_static("admin"));
        h.insert("X-Auth-Token", HeaderValue::from_static("tok"));
        h.insert("X-Service-Token", HeaderValue::from_static("svc"));
        h.insert("X-Project-ID-Other", HeaderValue::from_static("x"));
        assert_eq!(strip_identity_headers(&mut h), 6);
        assert_eq!(h.len(), 3);
        assert!(h.contains_key("x-auth-token"));
        assert!(h.contains_key("x-service-token"));
    }

    #[test]
    fn names_are_valid_lowercase_headers() {
        for name in IDENTITY_HEADERS {
            assert_eq!(*name, name.to_ascii_lowercase());
            assert!(warp::http::HeaderName::from_static(name).as_str() == *name);
        }
        assert!(is_identity_header("X-User-Id"));
        assert!(!is_identity_header("X-Auth-Token"));
    }
}
