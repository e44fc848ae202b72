//! The versions document (`GET /`) and the JSON-Home document (`GET /v2/`).

use serde_json::{json, Map, Value};

/// `GET /`: the API versions this server speaks.
pub fn versions() -> Value {
    json!({
        "versions": [{
            "id": "2",
            "status": "CURRENT",
            "updated": "2014-9-24T04:06:47Z",
            "media-types": [{
                "base": "application/json",
                "type": "application/vnd.openstack.messaging-v2+json",
            }],
            "links": [{"href": "/v2/", "rel": "self"}],
        }]
    })
}

/// One JSON-Home resource: relation, URI template, template variables,
/// allowed methods and whether it accepts a JSON body.
type Resource = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
    bool,
);

const Q: (&str, &str) = ("queue_name", "param/queue_name");

const RESOURCES: &[Resource] = &[
    (
        "queues",
        "/v2/queues{?marker,limit,detailed}",
        &[
            ("marker", "param/marker"),
            ("limit", "param/queue_limit"),
            ("detailed", "param/detailed"),
        ],
        &["GET"],
        false,
    ),
    (
        "queue",
        "/v2/queues/{queue_name}",
        &[Q],
        &["GET", "PUT", "DELETE", "PATCH"],
        false,
    ),
    (
        "queue_stats",
        "/v2/queues/{queue_name}/stats",
        &[Q],
        &["GET"],
        false,
    ),
    (
        "queue_share",
        "/v2/queues/{queue_name}/share",
        &[Q],
        &["POST"],
        true,
    ),
    (
        "queue_purge",
        "/v2/queues/{queue_name}/purge",
        &[Q],
        &["POST"],
        true,
    ),
    (
        "messages",
        "/v2/queues/{queue_name}/messages{?marker,limit,echo,include_claimed}",
        &[
            Q,
            ("marker", "param/marker"),
            ("limit", "param/messages_limit"),
            ("echo", "param/echo"),
            ("include_claimed", "param/include_claimed"),
        ],
        &["GET"],
        false,
    ),
    (
        "post_messages",
        "/v2/queues/{queue_name}/messages",
        &[Q],
        &["POST"],
        true,
    ),
    (
        "messages_delete",
        "/v2/queues/{queue_name}/messages{?ids,pop}",
        &[Q, ("ids", "param/ids"), ("pop", "param/pop")],
        &["DELETE"],
        false,
    ),
    (
        "message_delete",
        "/v2/queues/{queue_name}/messages/{message_id}{?claim}",
        &[
            Q,
            ("message_id", "param/message_id"),
            ("claim", "param/claim_id"),
        ],
        &["DELETE"],
        false,
    ),
    (
        "message_get",
        "/v2/queues/{queue_name}/messages/{message_id}",
        &[Q, ("message_id", "param/message_id")],
        &["GET"],
        false,
    ),
    (
        "claim",
        "/v2/queues/{queue_name}/claims/{claim_id}",
        &[Q, ("claim_id", "param/claim_id")],
        &["GET"],
        false,
    ),
    (
        "post_claim",
        "/v2/queues/{queue_name}/claims{?limit}",
        &[Q, ("limit", "param/claim_limit")],
        &["POST"],
        true,
    ),
    (
        "patch_claim",
        "/v2/queues/{queue_name}/claims/{claim_id}",
        &[Q, ("claim_id", "param/claim_id")],
        &["PATCH"],
        true,
    ),
    (
        "delete_claim",
        "/v2/queues/{queue_name}/claims/{claim_id}",
        &[Q, ("claim_id", "param/claim_id")],
        &["DELETE"],
        false,
    ),
    (
        "subscriptions_get",
        "/v2/queues/{queue_name}/subscriptions{?marker,limit}",
        &[
            Q,
            ("marker", "param/marker"),
            ("limit", "param/subscription_limit"),
        ],
        &["GET"],
        false,
    ),
    (
        "subscriptions_post",
        "/v2/queues/{queue_name}/subscriptions",
        &[Q, ("limit", "param/subscription_limit")],
        &["POST"],
        true,
    ),
    (
        "subscription",
        "/v2/queues/{queue_name}/subscriptions/{subscriptions_id}",
        &[Q, ("subscriptions_id", "param/subscriptions_id")],
        &["GET", "DELETE"],
        false,
    ),
    (
        "subscription_patch",
        "/v2/queues/{queue_name}/subscriptions/{subscriptions_id}",
        &[Q, ("subscriptions_id", "param/subscriptions_id")],
        &["PATCH"],
        true,
    ),
    ("ping", "/v2/ping", &[], &["GET"], false),
];

const ADMIN_RESOURCES: &[Resource] = &[
    (
        "pools",
        "/v2/pools{?detailed,limit,marker}",
        &[
            ("detailed", "param/detailed"),
            ("limit", "param/pool_limit"),
            ("marker", "param/marker"),
        ],
        &["GET"],
        false,
    ),
    (
        "pool",
        "/v2/pools/{pool_name}",
        &[("pool_name", "param/pool_name")],
        &["GET", "PUT", "PATCH", "DELETE"],
        false,
    ),
    (
        "flavors",
        "/v2/flavors{?detailed,limit,marker}",
        &[
            ("detailed", "param/detailed"),
            ("limit", "param/flavor_limit"),
            ("marker", "param/marker"),
        ],
        &["GET"],
        false,
    ),
    (
        "flavor",
        "/v2/flavors/{flavor_name}",
        &[("flavor_name", "param/flavor_name")],
        &["GET", "PUT", "PATCH", "DELETE"],
        false,
    ),
];

fn resource(template: &str, vars: &[(&str, &str)], allow: &[&str], accepts_body: bool) -> Value {
    let mut entry = Map::new();
    entry.insert("href-template".into(), template.into());
    if !vars.is_empty() {
        let vars: Map<String, Value> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        entry.insert("href-vars".into(), vars.into());
    }
    let mut hints = Map::new();
    hints.insert(
        "allow".into(),
        allow.iter().map(|m| Value::from(*m)).collect(),
    );
    hints.insert("formats".into(), json!({"application/json": {}}));
    if accepts_body {
        hints.insert("accept-post".into(), json!(["application/json"]));
    }
    entry.insert("hints".into(), hints.into());
    entry.into()
}

/// `GET /v2/`: the JSON-Home document (admin resources with `admin_mode`).
pub fn document(admin_mode: bool) -> Value {
    let mut resources = Map::new();
    let admin: &[Resource] = if admin_mode { ADMIN_RESOURCES } else { &[] };
    for (rel, template, vars, allow, body) in RESOURCES.iter().chain(admin) {
        resources.insert(format!("rel/{rel}"), resource(template, vars, allow, *body));
    }
    if admin_mode {
        resources.insert(
            "rel/health".into(),
            json!({"href": "/v2/health", "hints": {"allow": ["GET"], "formats": {"application/json": {}}}}),
        );
    }
    json!({ "resources": resources })
}
