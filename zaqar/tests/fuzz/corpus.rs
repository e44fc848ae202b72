//! The corpus: `zaqar/tests/fuzz-corpus/`, one case per JSON file.
//!
//! - `seeds/`: one valid request per HTTP operation and per WebSocket
//!   action (JSON and MessagePack), written by `write_seed_corpus` (an
//!   ignored test: `cargo test -p zaqar --test fuzz -- --ignored
//!   write_seed_corpus`) from [`seed_cases`];
//! - `found/`: every failure the fuzzer found, minimised, each named after
//!   the bug it caught.
//!
//! Every file is replayed by every `cargo test`, and the raw-mutation
//! target starts from corpus entries as well as from generated requests.

use std::path::{Path, PathBuf};

use zaqar::api::operation::OperationKind;
use zaqar::transport::websocket::actions::ACTIONS;

use crate::case::{Bytes, Case, Framing, HttpCase, Node, WsCase, WsFrame};

/// The corpus directory.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus")
}

/// Every corpus file with its case.
///
/// # Panics
/// A file that is not a case (the corpus must stay readable).
pub fn load() -> Vec<(PathBuf, Case)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).unwrap();
                let case: Case = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: not a fuzz case: {e}", path.display()));
                out.push((path, case));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn http(setup: bool, method: &str, target: &str, content_type: &str, body: Option<&str>) -> Case {
    Case::Http(HttpCase {
        setup,
        method: Bytes::from(method),
        target: Bytes::from(target),
        headers: vec![
            (Bytes::from("Client-ID"), Bytes::from("$CLIENT")),
            (Bytes::from("X-Project-ID"), Bytes::from("$PROJECT")),
            (Bytes::from("Content-Type"), Bytes::from(content_type)),
        ],
        body: body.map(Bytes::from),
        framing: Framing::Length,
    })
}

/// A valid request of every HTTP operation and every WebSocket action.
pub fn seed_cases() -> Vec<(String, Case)> {
    use OperationKind as K;
    let mut out = Vec::new();
    for kind in OperationKind::ALL {
        let (method, template) = kind.http_route();
        let name = kind.name();
        let topic = kind.is_topic();
        // A topic operation carries what its queue counterpart carries,
        // on the topic's own message and subscription.
        let kind = kind.queue_counterpart().unwrap_or(kind);
        let id = match kind {
            K::MessageGet | K::MessageDelete if topic => "$TOPIC_MESSAGE",
            K::SubscriptionGet
            | K::SubscriptionUpdate
            | K::SubscriptionDelete
            | K::SubscriptionConfirm
                if topic =>
            {
                "$TOPIC_SUBSCRIPTION"
            }
            K::MessageDelete => "$CLAIMED",
            K::ClaimGet | K::ClaimUpdate | K::ClaimDelete => "$CLAIM",
            K::SubscriptionGet
            | K::SubscriptionUpdate
            | K::SubscriptionDelete
            | K::SubscriptionConfirm => "$SUBSCRIPTION",
            _ => "$MESSAGE",
        };
        let mut target = template.replace("{queue}", "$QUEUE").replace("{id}", id);
        let query = match kind {
            K::QueueList => "?limit=5&detailed=true&with_count=true",
            K::MessageList => "?limit=5&echo=true&include_claimed=true",
            K::MessageGetMany | K::MessageDeleteMany if topic => "?ids=$TOPIC_MESSAGE",
            K::MessageDelete if topic => "",
            K::MessageGetMany => "?ids=$MESSAGE,$CLAIMED",
            K::MessageDeleteMany => "?ids=$MESSAGE",
            K::MessageDelete => "?claim_id=$CLAIM",
            K::ClaimCreate => "?limit=2",
            K::SubscriptionList => "?limit=5",
            _ => "",
        };
        target.push_str(query);
        let body = match kind {
            K::QueueCreate => Some(r#"{"_default_message_ttl": 3600, "description": "seed"}"#),
            K::QueueUpdate => {
                Some(r#"[{"op": "add", "path": "/metadata/description", "value": "x"}]"#)
            }
            K::QueuePurge => Some(r#"{"resource_types": ["messages"]}"#),
            K::QueueShare => Some(
                r#"{"methods": ["GET"], "paths": ["messages"], "expires": "2099-01-01T00:00:00"}"#,
            ),
            K::MessagePost => Some(r#"{"messages": [{"body": {"k": 1}, "ttl": 300, "delay": 0}]}"#),
            K::ClaimCreate | K::ClaimUpdate => Some(r#"{"ttl": 300, "grace": 60}"#),
            K::SubscriptionCreate => Some(
                r#"{"subscriber": "http://127.0.0.1:1/seed", "ttl": 3600, "options": {"_retry_policy": {"minimum_delay": 1, "maximum_delay": 20}}}"#,
            ),
            K::SubscriptionUpdate => Some(r#"{"ttl": 7200}"#),
            K::SubscriptionConfirm => Some(r#"{"confirmed": true}"#),
            _ => None,
        };
        let content_type = if kind == K::QueueUpdate {
            "application/openstack-messaging-v2.0-json-patch"
        } else {
            "application/json"
        };
        out.push((
            format!("http-{name}"),
            http(true, method, &target, content_type, body),
        ));
    }
    out.push((
        "http-ping_head".into(),
        http(false, "HEAD", "/v2/ping", "application/json", None),
    ));
    out.push((
        "http-message_pop".into(),
        http(
            true,
            "DELETE",
            "/v2/queues/$QUEUE/messages?pop=2",
            "application/json",
            None,
        ),
    ));
    for spec in ACTIONS {
        let s = |v: &str| Node::Str(v.to_owned());
        let body: Vec<(String, Node)> = spec
            .fields
            .iter()
            .filter_map(|(name, _)| {
                let v = match *name {
                    "queue_name" | "topic_name" => s("$QUEUE"),
                    "message_id" if spec.on_topic => s("$TOPIC_MESSAGE"),
                    "claim_id" if spec.on_topic => return None,
                    "subscription_id" if spec.on_topic => s("$TOPIC_SUBSCRIPTION"),
                    "message_ids" if spec.on_topic => Node::Array(vec![s("$TOPIC_MESSAGE")]),
                    "message_id" if spec.name == "message_delete" => s("$CLAIMED"),
                    "message_id" => s("$MESSAGE"),
                    "claim_id" => s("$CLAIM"),
                    "subscription_id" => s("$SUBSCRIPTION"),
                    "message_ids" => Node::Array(vec![s("$MESSAGE")]),
                    "messages" => Node::Array(vec![Node::map([
                        (
                            "body".to_owned(),
                            Node::map([("k".to_owned(), Node::Int(1))]),
                        ),
                        ("ttl".to_owned(), Node::Int(300)),
                    ])]),
                    "ttl" if spec.name.starts_with("subscription") => Node::Int(3600),
                    "ttl" => Node::Int(300),
                    "grace" => Node::Int(60),
                    "limit" => Node::Int(2),
                    "subscriber" => s("http://127.0.0.1:1/seed"),
                    "resource_types" => Node::Array(vec![s("messages")]),
                    "pool_name" => s("pool"),
                    "flavor_name" => s("flavor"),
                    _ => return None,
                };
                Some(((*name).to_owned(), v))
            })
            .collect();
        let doc = Node::map([
            ("action".to_owned(), s(spec.name)),
            (
                "headers".to_owned(),
                Node::map([
                    ("Client-ID".to_owned(), s("$CLIENT")),
                    ("X-Project-ID".to_owned(), s("$PROJECT")),
                    ("X-Auth-Token".to_owned(), s("none")),
                ]),
            ),
            ("body".to_owned(), Node::map(body)),
        ]);
        for (enc, frame) in [
            ("json", WsFrame::Json(doc.clone())),
            ("msgpack", WsFrame::Msgpack(doc.clone())),
        ] {
            out.push((
                format!("ws-{enc}-{}", spec.name),
                Case::Ws(WsCase {
                    setup: true,
                    frames: vec![frame],
                }),
            ));
        }
    }
    out
}

/// Writes `case` as pretty JSON to `path`.
pub fn write(path: &Path, case: &Case) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let mut text = serde_json::to_string_pretty(case).unwrap();
    text.push('\n');
    std::fs::write(path, text).unwrap();
}
