//! Transports: thin adapters between the wire and the [`api`](crate::api) core.

pub mod http;
pub mod lingering;
pub mod listener;
pub mod websocket;

#[cfg(test)]
mod tests {
    //! The operation table: every HTTP route and every WebSocket action
    //! parse to the operation their kind names, so both transports share
    //! its policy rule, its admin gate and its handling.

    use http::Method;
    use serde_json::{json, Map, Value};

    use super::http::query::Query;
    use super::http::router::Endpoint;
    use super::websocket::actions::{self, Request};
    use crate::api::operation::OperationKind;
    use crate::api::Payload;

    /// The HTTP request that asks for `kind`: its route with sample
    /// parameters (and `ids` for the one operation a query selects).
    fn http_kind(kind: OperationKind) -> OperationKind {
        let (method, template) = kind.http_route();
        let path = template.replace("{queue}", "q").replace("{id}", "i");
        let query = if matches!(
            kind,
            OperationKind::MessageGetMany | OperationKind::TopicMessageGetMany
        ) {
            "ids=a,b"
        } else {
            ""
        };
        let endpoint = Endpoint::parse(&path).unwrap_or_else(|| panic!("{path} is not routed"));
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        assert!(endpoint.allows(&method), "{method} {path}");
        endpoint
            .operation(&method, &Query::parse(query), None, Payload::Absent)
            .unwrap()
            .kind()
    }

    /// The WebSocket frame for the action named `name`, with every
    /// required field.
    fn ws_kind(name: &str) -> Option<OperationKind> {
        let spec = actions::lookup(name)?;
        let mut body = Map::new();
        for field in spec.fields_required {
            let v = match *field {
                "message_ids" | "pool_list" => json!(["a"]),
                "messages" => json!([{"body": 1}]),
                _ => json!("x"),
            };
            body.insert((*field).to_owned(), v);
        }
        let doc: Map<String, Value> = serde_json::from_value(json!({
            "action": name,
            "headers": {"Client-ID": "c", "X-Project-ID": "p", "X-Auth-Token": "t"},
            "body": body,
        }))
        .unwrap();
        let doc: &'static Map<String, Value> = Box::leak(Box::new(doc));
        match actions::check(doc).unwrap().request().unwrap() {
            Request::Operation(op) => Some(op.kind()),
            Request::Authenticate => None,
        }
    }

    #[test]
    fn every_route_and_action_maps_to_its_operation() {
        for kind in OperationKind::ALL {
            assert_eq!(http_kind(kind), kind, "HTTP route of {kind:?}");
            // Operations the reference's WebSocket schema has keep its
            // action name; the others exist over HTTP only.
            if let Some(ws) = ws_kind(kind.name()) {
                assert_eq!(ws, kind, "WebSocket action {}", kind.name());
            }
        }
        let ws_only: Vec<&str> = actions::ACTIONS
            .iter()
            .map(|a| a.name)
            .filter(|name| OperationKind::ALL.iter().all(|k| k.name() != *name))
            .collect();
        // authenticate is a session matter.
        assert_eq!(ws_only, ["authenticate"]);
        let ws_operations = OperationKind::ALL
            .iter()
            .filter(|k| ws_kind(k.name()).is_some())
            .count();
        assert_eq!(
            ws_operations,
            33 + 16,
            "every action of the reference's schema, and the topic ones"
        );
    }

    /// The paths of every route the router has, with sample parameters.
    const ROUTER_PATHS: &[&str] = &[
        "/",
        "/v2/",
        "/v2/openapi.json",
        "/v2/ping",
        "/v2/health",
        "/v2/queues",
        "/v2/queues/q",
        "/v2/queues/q/stats",
        "/v2/queues/q/purge",
        "/v2/queues/q/share",
        "/v2/queues/q/messages",
        "/v2/queues/q/messages/i",
        "/v2/queues/q/claims",
        "/v2/queues/q/claims/i",
        "/v2/queues/q/subscriptions",
        "/v2/queues/q/subscriptions/i",
        "/v2/queues/q/subscriptions/i/confirm",
        "/v2/pools",
        "/v2/pools/i",
        "/v2/flavors",
        "/v2/flavors/i",
        "/v2/topics",
        "/v2/topics/q",
        "/v2/topics/q/stats",
        "/v2/topics/q/purge",
        "/v2/topics/q/messages",
        "/v2/topics/q/messages/i",
        "/v2/topics/q/subscriptions",
        "/v2/topics/q/subscriptions/i",
        "/v2/topics/q/subscriptions/i/confirm",
    ];

    /// The OpenAPI document (of a server serving everything) has exactly
    /// the routes and methods the HTTP router answers.
    #[test]
    fn openapi_document_matches_the_router() {
        let config =
            crate::config::Config::parse("[DEFAULT]\nadmin_mode = true\npooling = true\n").unwrap();
        let doc = crate::api::openapi::document(&config, |_| true);
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            // Sample values for the path parameters, as the router sees them.
            let sample: String = path
                .split('/')
                .map(|seg| match seg {
                    "{queue_name}" => "q",
                    s if s.starts_with('{') => "i",
                    s => s,
                })
                .collect::<Vec<_>>()
                .join("/");
            for method in item.as_object().unwrap().keys() {
                documented.push((sample.clone(), method.to_ascii_uppercase()));
            }
        }
        let mut routed: Vec<(String, String)> = Vec::new();
        for path in ROUTER_PATHS {
            let endpoint = Endpoint::parse(path).unwrap_or_else(|| panic!("{path}"));
            for method in endpoint.allowed() {
                routed.push(((*path).to_owned(), (*method).to_owned()));
            }
        }
        documented.sort();
        routed.sort();
        assert_eq!(documented, routed);
    }
}
