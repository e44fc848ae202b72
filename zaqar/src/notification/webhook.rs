//! Webhook delivery (`http`, `https`): one `POST` per notification.

use serde_json::Value;

use super::ssrf::AddressPolicy;
use super::Outcome;
use crate::storage::outbox::NewDelivery;

/// The request body: the payload as JSON, or `options.post_data` with
/// every `"$zaqar_message$"` (quotes included) replaced by it.
pub fn body(delivery: &NewDelivery) -> String {
    let json = delivery.payload.to_string();
    match delivery.options.get("post_data") {
        Some(Value::String(template)) => template.replace("\"$zaqar_message$\"", &json),
        Some(Value::Null) | None => json,
        // The reference would crash on a non-string template; we send the
        // template as JSON, with the same replacement.
        Some(other) => other.to_string().replace("\"$zaqar_message$\"", &json),
    }
}

/// `POST`s the delivery to `url` with `Content-Type: application/json`,
/// then `extra` headers, then `options.post_headers` (later ones win).
/// 2xx and 3xx are delivered; 5xx, timeouts and connection errors are worth
/// a retry; anything else is final.
pub async fn post(
    http: &reqwest::Client,
    policy: &AddressPolicy,
    url: &str,
    delivery: &NewDelivery,
    extra: &[(&str, String)],
) -> Outcome {
    let parsed = match reqwest::Url::parse(url) {
        Ok(u) => u,
        Err(e) => return Outcome::GiveUp(format!("invalid subscriber URL: {e}")),
    };
    // IP literals never reach the resolver, so they are checked here; names
    // are checked by the client's resolver (see `ssrf`).
    let host = parsed.host_str().unwrap_or("");
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        if let Err(why) = policy.check(ip) {
            return Outcome::GiveUp(why);
        }
    }
    let mut request = http.post(parsed).header("Content-Type", "application/json");
    for (name, value) in extra {
        request = request.header(*name, value.as_str());
    }
    if let Some(Value::Object(headers)) = delivery.options.get("post_headers") {
        for (name, value) in headers {
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            request = request.header(name.as_str(), value);
        }
    }
    match request.body(body(delivery)).send().await {
        Ok(resp) => {
            let status = resp.status();
            if status.is_success() || status.is_redirection() {
                Outcome::Delivered
            } else if status.is_server_error() {
                Outcome::Retry(format!("subscriber answered {status}"))
            } else {
                Outcome::GiveUp(format!("subscriber answered {status}"))
            }
        }
        // The error's text would carry the whole URL (credentials and
        // query included) into the logs: the reasons go without it (the
        // caller logs the subscriber, redacted).
        Err(e) if e.is_builder() || e.is_request() && !e.is_connect() && !e.is_timeout() => {
            Outcome::GiveUp(format!(
                "request could not be made: {}",
                chain(&e.without_url())
            ))
        }
        Err(e) => Outcome::Retry(chain(&e.without_url())),
    }
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn delivery(options: Value) -> NewDelivery {
        NewDelivery {
            project: "p".into(),
            queue: "q".into(),
            subscription_id: "s".into(),
            subscriber: "http://x/".into(),
            options: options.as_object().cloned().unwrap_or_default(),
            queue_retry_policy: None,
            payload: json!({"body": {"a": 1}, "queue_name": "q"}),
        }
    }

    #[test]
    fn post_data_templating() {
        assert_eq!(
            body(&delivery(json!({}))),
            r#"{"body":{"a":1},"queue_name":"q"}"#
        );
        let d = delivery(
            json!({"post_data": "{\"text\": \"$zaqar_message$\", \"again\": \"$zaqar_message$\"}"}),
        );
        let sent: Value = serde_json::from_str(&body(&d)).unwrap();
        assert_eq!(sent["text"]["body"]["a"], 1);
        assert_eq!(sent["again"]["queue_name"], "q");
        // Without the quotes the marker is left alone.
        let d = delivery(json!({"post_data": "plain $zaqar_message$"}));
        assert_eq!(body(&d), "plain $zaqar_message$");
    }
}
