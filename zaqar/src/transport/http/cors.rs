//! `[cors]`: cross-origin requests from browsers (Horizon's messaging
//! panels, a web console), as oslo.middleware's CORS filter answers them.
//!
//! Nothing happens while `allowed_origin` is empty, or for a request whose
//! `Origin` is not allowed. A preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) is answered here, before
//! authentication (browsers send no token with it): 200, with the CORS
//! headers only when the method and every requested header are allowed.
//! Any other request from an allowed origin gets
//! `Access-Control-Allow-Origin` (and credentials and exposed headers) on
//! its response, whatever its status.

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;

use crate::config::CorsSection;

/// Headers a browser may always send (the CORS "simple" request headers).
const SIMPLE_HEADERS: &[&str] = &[
    "cache-control",
    "content-language",
    "content-type",
    "expires",
    "last-modified",
    "pragma",
];

/// The allowed origin of `headers`' `Origin`, if CORS applies to it.
fn allowed_origin<'h>(cors: &CorsSection, headers: &'h HeaderMap) -> Option<&'h str> {
    if cors.allowed_origin.is_empty() {
        return None;
    }
    let origin = headers.get("origin")?.to_str().ok()?;
    cors.allowed_origin
        .iter()
        .any(|o| o == origin || o == "*")
        .then_some(origin)
}

/// Whether the request is a preflight CORS answers itself.
pub fn is_preflight(cors: &CorsSection, method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key("access-control-request-method")
        && allowed_origin(cors, headers).is_some()
}

/// The answer to a preflight ([`is_preflight`]).
pub fn preflight(cors: &CorsSection, headers: &HeaderMap) -> Response {
    let mut response = Response::new(Default::default());
    *response.status_mut() = StatusCode::OK;
    let Some(origin) = allowed_origin(cors, headers) else {
        return response;
    };
    let requested_method = headers
        .get("access-control-request-method")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !cors
        .allow_methods
        .iter()
        .any(|m| m.eq_ignore_ascii_case(requested_method))
    {
        return response;
    }
    let requested_headers: Vec<String> = headers
        .get_all("access-control-request-headers")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .collect();
    let permitted = |h: &String| {
        SIMPLE_HEADERS.contains(&h.to_ascii_lowercase().as_str())
            || cors.allow_headers.iter().any(|a| a.eq_ignore_ascii_case(h))
    };
    if !requested_headers.iter().all(permitted) {
        return response;
    }
    let h = response.headers_mut();
    set(h, "access-control-allow-origin", origin);
    if let Some(age) = cors.max_age {
        set(h, "access-control-max-age", &age.to_string());
    }
    set(h, "access-control-allow-methods", requested_method);
    if !requested_headers.is_empty() {
        set(
            h,
            "access-control-allow-headers",
            &requested_headers.join(","),
        );
    }
    if cors.allow_credentials {
        set(h, "access-control-allow-credentials", "true");
    }
    h.append(http::header::VARY, HeaderValue::from_static("Origin"));
    response
}

/// Adds the CORS headers of an actual request's response.
pub fn decorate(cors: &CorsSection, request: &HeaderMap, response: &mut Response) {
    let Some(origin) = allowed_origin(cors, request) else {
        return;
    };
    let h = response.headers_mut();
    set(h, "access-control-allow-origin", origin);
    if cors.allow_credentials {
        set(h, "access-control-allow-credentials", "true");
    }
    if !cors.expose_headers.is_empty() {
        set(
            h,
            "access-control-expose-headers",
            &cors.expose_headers.join(","),
        );
    }
    h.append(http::header::VARY, HeaderValue::from_static("Origin"));
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str]) -> CorsSection {
        CorsSection {
            allowed_origin: origins.iter().map(|s| s.to_string()).collect(),
            ..CorsSection::default()
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn preflight_answers_only_what_is_allowed() {
        let c = cors(&["https://ui.example"]);
        let ok = headers(&[
            ("origin", "https://ui.example"),
            ("access-control-request-method", "PUT"),
            (
                "access-control-request-headers",
                "X-Auth-Token, content-type",
            ),
        ]);
        assert!(is_preflight(&c, &Method::OPTIONS, &ok));
        let r = preflight(&c, &ok);
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], "https://ui.example");
        assert_eq!(h["access-control-allow-methods"], "PUT");
        assert_eq!(
            h["access-control-allow-headers"],
            "X-Auth-Token,content-type"
        );
        assert_eq!(h["access-control-max-age"], "3600");
        assert_eq!(h["access-control-allow-credentials"], "true");
        for bad in [
            headers(&[
                ("origin", "https://ui.example"),
                ("access-control-request-method", "TRACE"),
            ]),
            headers(&[
                ("origin", "https://ui.example"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "X-Evil"),
            ]),
        ] {
            let r = preflight(&c, &bad);
            assert_eq!(r.status(), StatusCode::OK);
            assert!(r.headers().get("access-control-allow-origin").is_none());
        }
        let other = headers(&[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "GET"),
        ]);
        assert!(!is_preflight(&c, &Method::OPTIONS, &other));
        assert!(!is_preflight(&cors(&[]), &Method::OPTIONS, &ok));
    }

    #[test]
    fn actual_requests_get_origin_credentials_and_exposed_headers() {
        let c = cors(&["*"]);
        let mut r = Response::new(Default::default());
        decorate(&c, &headers(&[("origin", "https://a.example")]), &mut r);
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            "https://a.example"
        );
        assert!(r.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("X-OpenStack-Request-ID"));
        let mut r = Response::new(Default::default());
        decorate(&c, &HeaderMap::new(), &mut r);
        assert!(r.headers().is_empty());
    }
}
