//! `/healthcheck`, as oslo.middleware's healthcheck answers load
//! balancers: `GET` 200 `OK` (`HEAD` 204), or 503 `DISABLED BY FILE` while
//! `[healthcheck] disable_by_file_path` (or the file of this listener's
//! port in `disable_by_file_paths`) exists. No authentication, no store
//! access: it says whether this process should get traffic, not whether
//! the store answers (that is `GET /v2/ping`).

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;

use crate::config::HealthcheckSection;

/// The file that disables this listener, if any exists now.
fn disabled_by(options: &HealthcheckSection, port: u16) -> bool {
    if options
        .disable_by_file_path
        .as_deref()
        .is_some_and(|p| std::path::Path::new(p).exists())
    {
        return true;
    }
    options.disable_by_file_paths.iter().any(|pair| {
        pair.split_once(':').is_some_and(|(p, path)| {
            p.trim().parse::<u16>() == Ok(port) && std::path::Path::new(path.trim()).exists()
        })
    })
}

/// The answer to `method` on the healthcheck path of the listener on
/// `port`.
pub fn answer(
    options: &HealthcheckSection,
    port: u16,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    let disabled = disabled_by(options, port);
    let reason = if disabled { "DISABLED BY FILE" } else { "OK" };
    let json = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let (body, content_type) = if json {
        (
            serde_json::json!({"detailed": false, "reasons": [reason]}).to_string(),
            "application/json",
        )
    } else {
        (reason.to_owned(), "text/plain; charset=UTF-8")
    };
    let head = method == Method::HEAD;
    let mut r = Response::new(if head { String::new() } else { body }.into());
    *r.status_mut() = match (disabled, head) {
        (true, _) => StatusCode::SERVICE_UNAVAILABLE,
        (false, true) => StatusCode::NO_CONTENT,
        (false, false) => StatusCode::OK,
    };
    if !head {
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_then_disabled_by_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("down");
        let options = HealthcheckSection {
            disable_by_file_path: Some(file.display().to_string()),
            disable_by_file_paths: vec![format!("9999:{}", dir.path().join("p").display())],
            ..HealthcheckSection::default()
        };
        let h = HeaderMap::new();
        assert_eq!(
            answer(&options, 8888, &Method::GET, &h).status(),
            StatusCode::OK
        );
        assert_eq!(
            answer(&options, 8888, &Method::HEAD, &h).status(),
            StatusCode::NO_CONTENT
        );
        std::fs::write(dir.path().join("p"), "").unwrap();
        assert_eq!(
            answer(&options, 8888, &Method::GET, &h).status(),
            StatusCode::OK
        );
        assert_eq!(
            answer(&options, 9999, &Method::GET, &h).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            answer(&options, 8888, &Method::GET, &h).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
