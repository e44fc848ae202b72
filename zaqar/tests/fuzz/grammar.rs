//! The strategies: grammar-aware generators of hostile requests.
//!
//! Requests are built from the api's own tables (every
//! [`OperationKind`]'s HTTP route, every WebSocket action of
//! [`ACTIONS`] with the fields its schema reads), so a new route or action
//! is fuzzed as soon as it exists; the body of each operation is generated
//! from its shape (queue metadata with every reserved key, JSON-patch
//! documents, messages, claims, subscriptions with `_retry_policy` and
//! options of every shape), and every value may be replaced by a hostile
//! one: numbers at and past every bound (2^63±1, floats, booleans, strings
//! holding numbers), long and non-ASCII strings, invalid UTF-8, deep
//! nesting, MessagePack u64/bin/ext/float32 values. Raw-byte mutations of
//! generated requests and of corpus entries cover what the grammar cannot
//! say.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};

use zaqar::api::operation::OperationKind;
use zaqar::transport::websocket::actions::{FieldType, ACTIONS};

use crate::case::{Bytes, Case, Framing, HttpCase, Node, RawCase, SeqCase, WsCase, WsFrame};

// ------------------------------------------------------------------ values

/// Numbers at and past every bound the api has, and values that only look
/// like numbers.
pub fn number() -> BoxedStrategy<Node> {
    let ints: Vec<i64> = vec![
        0,
        1,
        -1,
        5,
        30,
        59,
        60,
        61,
        300,
        3600,
        43_199,
        43_200,
        43_201,
        86_400,
        86_401,
        900,
        901,
        1000,
        1001,
        1_209_600,
        1_209_601,
        1_000_000,
        1_000_001,
        262_144,
        262_145,
        2_147_483_648,
        4_294_967_296,
        9_000_000_000_000_000_000,
        i64::MAX,
        i64::MAX - 1,
        i64::MIN,
        i64::MIN + 1,
    ];
    let raw = vec![
        "9223372036854775808",
        "9223372036854775809",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "123456789012345678901234567890",
        "1e400",
        "-1e400",
        "1e-400",
        "9e18",
        "9.2e18",
        "1e18",
        "60.0",
        "60.5",
        "1.5",
        "-0",
        "-0.0",
        "1E2",
        "0e0",
        "\"60\"",
        "\"-1\"",
        "\"9223372036854775808\"",
    ];
    prop_oneof![
        6 => select(ints).prop_map(Node::Int),
        2 => any::<i64>().prop_map(Node::Int),
        3 => select(raw).prop_map(|s| Node::Raw(s.to_owned())),
        1 => select(vec![u64::MAX, 1 << 63, (1 << 63) + 1]).prop_map(Node::U64),
        1 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Node::F64),
        1 => select(vec![60.0f32, 1.5, -0.0, f32::MAX]).prop_map(Node::F32),
        1 => any::<bool>().prop_map(Node::Bool),
        1 => Just(Node::Nil),
    ]
    .boxed()
}

/// Strings: short tokens, edge texts, placeholders, long runs.
pub fn text() -> BoxedStrategy<String> {
    let edges = vec![
        "",
        " ",
        "null",
        "true",
        "0",
        "-1",
        "é",
        "日本語",
        "\u{0}",
        "\u{7f}",
        "\u{ffff}",
        "\u{10ffff}",
        "a/b",
        "../..",
        "%00",
        "%ff",
        "\\",
        "\"",
        "\r\n",
        "$QUEUE",
        "$MESSAGE",
        "$CLAIMED",
        "$CLAIM",
        "$SUBSCRIPTION",
        "$PROJECT",
        "fuzz",
        "fuzz2",
        "messages",
        "subscriptions",
    ];
    prop_oneof![
        4 => "[a-zA-Z0-9_.-]{0,12}",
        4 => select(edges).prop_map(String::from),
        2 => "\\PC{0,16}",
        1 => (select(vec!['a', 'é', '\u{10ffff}', '[', '\u{0}']), select(vec![63usize, 64, 65, 255, 256, 257, 4096, 70_000]))
            .prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
    ]
    .boxed()
}

/// JSON texts a `Node::Raw` carries verbatim: strings with escapes that
/// are legal JSON but awkward (lone surrogates, NUL).
fn raw_strings() -> BoxedStrategy<Node> {
    select(vec![
        r#""\ud800""#,
        r#""\udfff\ud800""#,
        r#""\u0000""#,
        r#""a\u0000b""#,
        r#""\/\b\f""#,
    ])
    .prop_map(|s| Node::Raw(s.to_owned()))
    .boxed()
}

/// Values only MessagePack can carry (JSON gets a stand-in).
fn msgpack_only() -> BoxedStrategy<Node> {
    prop_oneof![
        vec(any::<u8>(), 0..8)
            .prop_map(|b| Node::BadStr(Bytes(b.into_iter().map(|x| x | 0x80).collect()))),
        vec(any::<u8>(), 0..16).prop_map(|b| Node::Bin(Bytes(b))),
        (any::<i8>(), vec(any::<u8>(), 0..16)).prop_map(|(t, b)| Node::Ext(t, Bytes(b))),
    ]
    .boxed()
}

/// Any value, nested a few levels.
pub fn any_value() -> BoxedStrategy<Node> {
    let leaf = prop_oneof![
        4 => number(),
        4 => text().prop_map(Node::Str),
        1 => raw_strings(),
        1 => msgpack_only(),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Node::Array),
            vec((text(), inner), 0..4).prop_map(Node::map),
        ]
    })
    .boxed()
}

/// Documents nested at and past the bounds (127 levels; deeper ones are
/// refused, not stored and rendered as `null`).
pub fn deep() -> BoxedStrategy<Node> {
    (
        select(vec![126usize, 127, 128, 129, 300, 3000, 100_000]),
        any::<bool>(),
    )
        .prop_map(|(depth, objects)| Node::Deep(depth, objects))
        .boxed()
}

/// A value meant for `field`: mostly of the right kind, sometimes anything.
fn hostile(right: BoxedStrategy<Node>) -> BoxedStrategy<Node> {
    prop_oneof![
        12 => right,
        1 => any_value(),
        1 => number(),
    ]
    .boxed()
}

/// An object of `fields` (each present or not, in order) plus, sometimes,
/// a key nobody asked for.
fn object(fields: Vec<(&'static str, BoxedStrategy<Node>)>) -> BoxedStrategy<Node> {
    let parts: Vec<BoxedStrategy<Option<(String, Node)>>> = fields
        .into_iter()
        .map(|(name, value)| {
            proptest::option::weighted(0.7, value.prop_map(move |v| (name.to_owned(), v))).boxed()
        })
        .collect();
    (
        parts,
        proptest::option::weighted(0.1, (text(), any_value())),
    )
        .prop_map(|(parts, extra)| Node::map(parts.into_iter().flatten().chain(extra)))
        .boxed()
}

fn strs(items: &[&'static str]) -> BoxedStrategy<Node> {
    select(items.to_vec())
        .prop_map(|s| Node::Str(s.to_owned()))
        .boxed()
}

// ------------------------------------------------------------------ bodies

/// A `_retry_policy` of every shape.
pub fn retry_policy() -> BoxedStrategy<Node> {
    hostile(object(vec![
        ("retries_with_no_delay", hostile(number())),
        ("minimum_delay_retries", hostile(number())),
        ("minimum_delay", hostile(number())),
        ("maximum_delay", hostile(number())),
        ("maximum_delay_retries", hostile(number())),
        (
            "retry_backoff_function",
            hostile(strs(&[
                "linear",
                "arithmetic",
                "geometric",
                "exponential",
                "",
                "LINEAR",
                "nope",
            ])),
        ),
        (
            "ignore_subscription_override",
            hostile(any::<bool>().prop_map(Node::Bool).boxed()),
        ),
    ]))
}

/// Queue metadata: every reserved key, and others.
pub fn metadata() -> BoxedStrategy<Node> {
    prop_oneof![
        8 => object(vec![
            ("_default_message_ttl", hostile(number())),
            ("_max_messages_post_size", hostile(number())),
            ("_default_message_delay", hostile(number())),
            ("_dead_letter_queue", hostile(text().prop_map(Node::Str).boxed())),
            ("_dead_letter_queue_messages_ttl", hostile(number())),
            ("_max_claim_count", hostile(number())),
            ("_enable_encrypt_messages", hostile(any::<bool>().prop_map(Node::Bool).boxed())),
            ("_retry_policy", retry_policy()),
            ("description", any_value()),
        ]),
        1 => any_value(),
        1 => deep(),
    ]
    .boxed()
}

/// A JSON-patch document on queue metadata.
pub fn patch() -> BoxedStrategy<Node> {
    let op = object(vec![
        (
            "op",
            hostile(strs(&[
                "add", "replace", "remove", "test", "move", "copy", "ADD",
            ])),
        ),
        (
            "path",
            hostile(strs(&[
                "/metadata/x",
                "/metadata/_default_message_ttl",
                "/metadata/_retry_policy",
                "/metadata/_max_claim_count",
                "/metadata/_dead_letter_queue",
                "/metadata/_max_messages_post_size",
                "/metadata/_enable_encrypt_messages",
                "/metadata",
                "/metadata/",
                "/x/y",
                "",
                "/",
                "/metadata/a/b",
                "/metadata/~1",
                "/metadata/~2",
                "/metadata/~0~1",
                "~",
                "/Metadata/k",
            ])),
        ),
        ("value", metadata_value()),
        (
            "from",
            strs(&["/metadata/x", "/metadata/_default_message_ttl"]),
        ),
    ]);
    prop_oneof![
        8 => vec(op, 0..4).prop_map(Node::Array),
        1 => any_value(),
        1 => metadata(),
    ]
    .boxed()
}

fn metadata_value() -> BoxedStrategy<Node> {
    prop_oneof![
        number(),
        retry_policy(),
        any_value(),
        text().prop_map(Node::Str)
    ]
    .boxed()
}

/// One message of a post.
fn message() -> BoxedStrategy<Node> {
    hostile(object(vec![
        ("body", prop_oneof![6 => any_value(), 1 => deep()].boxed()),
        ("ttl", hostile(number())),
        ("delay", hostile(number())),
    ]))
}

/// `{"messages": [...]}` and its mistakes.
pub fn messages_post() -> BoxedStrategy<Node> {
    prop_oneof![
        8 => vec(message(), 0..5).prop_map(|m| Node::map([("messages".to_owned(), Node::Array(m))])),
        1 => select(vec![11usize, 21, 100]).prop_map(|n| {
            let m = Node::map([("body".to_owned(), Node::Int(1)), ("ttl".to_owned(), Node::Int(60))]);
            Node::map([("messages".to_owned(), Node::Array(vec![m; n]))])
        }),
        1 => vec(message(), 0..3).prop_map(Node::Array),
        1 => any_value().prop_map(|v| Node::map([("messages".to_owned(), v)])),
    ]
    .boxed()
}

/// `{"ttl", "grace"}` of a claim.
pub fn claim_body() -> BoxedStrategy<Node> {
    hostile(object(vec![
        ("ttl", hostile(number())),
        ("grace", hostile(number())),
    ]))
}

/// A subscriber: only loopback port 1 (refuses at once) or names that are
/// not addresses, so no delivery leaves the machine.
pub fn subscriber() -> BoxedStrategy<Node> {
    hostile(strs(&[
        "http://127.0.0.1:1/",
        "http://127.0.0.1:1/fuzz?token=secret",
        "https://127.0.0.1:1/x",
        "http://[::1]:1/",
        "http://user:pass@127.0.0.1:1/",
        "mailto:fuzz@example.invalid",
        "mailto:",
        "trust+http://127.0.0.1:1/",
        "ws://127.0.0.1:1/",
        "ftp://127.0.0.1:1/",
        "http://",
        "http:///x",
        "http://10.255.255.1:1/",
        "http://169.254.169.254:1/",
        "http://0.0.0.0:1/",
        "http://[fec0::1]:1/",
        "http://127.0.0.1:99999/",
        "javascript:alert(1)",
        "not a url",
        "",
    ]))
}

/// Subscription options of every shape.
pub fn subscription_options() -> BoxedStrategy<Node> {
    hostile(object(vec![
        ("_retry_policy", retry_policy()),
        ("post_data", hostile(text().prop_map(Node::Str).boxed())),
        (
            "post_headers",
            hostile(
                vec((text(), text().prop_map(Node::Str)), 0..3)
                    .prop_map(Node::map)
                    .boxed(),
            ),
        ),
        ("name", any_value()),
    ]))
}

/// A subscription create or update body.
pub fn subscription_body() -> BoxedStrategy<Node> {
    hostile(object(vec![
        ("subscriber", subscriber()),
        ("ttl", hostile(number())),
        ("options", subscription_options()),
    ]))
}

fn share_body() -> BoxedStrategy<Node> {
    object(vec![
        (
            "methods",
            hostile(
                vec(
                    strs(&["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "get", ""]),
                    0..4,
                )
                .prop_map(Node::Array)
                .boxed(),
            ),
        ),
        (
            "paths",
            hostile(
                vec(
                    strs(&[
                        "messages",
                        "subscriptions",
                        "claims",
                        "/v2/queues/x",
                        "../..",
                    ]),
                    0..4,
                )
                .prop_map(Node::Array)
                .boxed(),
            ),
        ),
        (
            "expires",
            hostile(strs(&[
                "2099-01-01T00:00:00",
                "2000-01-01T00:00:00",
                "2099-13-45T99:99:99",
                "2099-01-01T00:00:00Z",
                "2099-01-01T00:00:00+01:00",
                "9999-12-31T23:59:59",
                "now",
                "",
            ])),
        ),
    ])
}

fn purge_body() -> BoxedStrategy<Node> {
    object(vec![(
        "resource_types",
        hostile(
            vec(strs(&["messages", "subscriptions", "queues", ""]), 0..3)
                .prop_map(Node::Array)
                .boxed(),
        ),
    )])
}

/// A pool document. URIs stay on loopback and under the test's own
/// directory: the fuzzed servers run without pooling (the routes answer
/// 404), and a pooled one must never be sent to create files elsewhere.
fn pool_body() -> BoxedStrategy<Node> {
    hostile(object(vec![
        (
            "uri",
            hostile(strs(&[
                "redis://127.0.0.1:1",
                "sqlite://target/tmp/fuzz-pool.sqlite",
                "mongodb://127.0.0.1:1",
                "",
                "nope",
            ])),
        ),
        ("weight", hostile(number())),
        ("flavor", hostile(text().prop_map(Node::Str).boxed())),
        ("options", any_value()),
    ]))
}

/// A flavor document.
fn flavor_body() -> BoxedStrategy<Node> {
    hostile(object(vec![
        (
            "pool_list",
            hostile(
                vec(text().prop_map(Node::Str), 0..4)
                    .prop_map(Node::Array)
                    .boxed(),
            ),
        ),
        ("capabilities", any_value()),
    ]))
}

fn confirm_body() -> BoxedStrategy<Node> {
    object(vec![(
        "confirmed",
        hostile(any::<bool>().prop_map(Node::Bool).boxed()),
    )])
}

/// The document an operation's request carries.
fn body_for(kind: OperationKind) -> Option<BoxedStrategy<Node>> {
    use OperationKind as K;
    // A topic operation reads what its queue counterpart reads.
    let kind = kind.queue_counterpart().unwrap_or(kind);
    match kind {
        K::QueueCreate => Some(metadata()),
        K::QueueUpdate => Some(patch()),
        K::QueuePurge => Some(purge_body()),
        K::QueueShare => Some(share_body()),
        K::MessagePost => Some(messages_post()),
        K::ClaimCreate | K::ClaimUpdate => Some(claim_body()),
        K::SubscriptionCreate | K::SubscriptionUpdate => Some(subscription_body()),
        K::SubscriptionConfirm => Some(confirm_body()),
        K::PoolCreate | K::PoolUpdate => Some(pool_body()),
        K::FlavorCreate | K::FlavorUpdate => Some(flavor_body()),
        K::GetVersions
        | K::GetHomeDoc
        | K::GetOpenApi
        | K::Ping
        | K::CheckHealth
        | K::QueueList
        | K::QueueGet
        | K::QueueDelete
        | K::QueueStats
        | K::MessageList
        | K::MessageGetMany
        | K::MessageDeleteMany
        | K::MessageGet
        | K::MessageDelete
        | K::ClaimGet
        | K::ClaimDelete
        | K::SubscriptionList
        | K::SubscriptionGet
        | K::SubscriptionDelete
        | K::PoolList
        | K::PoolGet
        | K::PoolDelete
        | K::FlavorList
        | K::FlavorGet
        | K::FlavorDelete => None,
        // (Mapped to their queue counterparts above.)
        _ => None,
    }
}

/// The query parameters an operation reads.
fn params_for(kind: OperationKind) -> &'static [&'static str] {
    use OperationKind as K;
    // A topic operation reads what its queue counterpart reads.
    let kind = kind.queue_counterpart().unwrap_or(kind);
    match kind {
        K::QueueList => &["marker", "limit", "detailed", "with_count", "name"],
        K::MessageList | K::MessageGetMany => &[
            "marker",
            "limit",
            "echo",
            "include_claimed",
            "include_delayed",
            "ids",
            "wait",
        ],
        K::MessageDeleteMany => &["ids", "claim_ids", "pop"],
        K::MessageDelete => &["claim_id"],
        K::ClaimCreate => &["limit", "wait"],
        K::SubscriptionList => &["marker", "limit"],
        _ => &[],
    }
}

/// The placeholder naming the resource in an operation's path.
fn id_for(kind: OperationKind) -> &'static [&'static str] {
    use OperationKind as K;
    let topic = kind.is_topic();
    // A topic operation reads what its queue counterpart reads.
    let kind = kind.queue_counterpart().unwrap_or(kind);
    match kind {
        K::MessageGet | K::MessageDelete if topic => &["$TOPIC_MESSAGE", "$MESSAGE"],
        K::SubscriptionGet
        | K::SubscriptionUpdate
        | K::SubscriptionDelete
        | K::SubscriptionConfirm
            if topic =>
        {
            &["$TOPIC_SUBSCRIPTION"]
        }
        K::MessageGet | K::MessageDelete => &["$MESSAGE", "$CLAIMED"],
        K::ClaimGet | K::ClaimUpdate | K::ClaimDelete => &["$CLAIM"],
        K::SubscriptionGet
        | K::SubscriptionUpdate
        | K::SubscriptionDelete
        | K::SubscriptionConfirm => &["$SUBSCRIPTION"],
        _ => &["$MESSAGE"],
    }
}

// ------------------------------------------------------------------ HTTP

/// Percent-encodes what is not an unreserved character.
fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~$".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn queue_segment() -> BoxedStrategy<String> {
    prop_oneof![
        24 => Just("$QUEUE".to_owned()),
        2 => text().prop_map(|t| pct(&t)),
        1 => select(vec!["", "..", "%2F", "%00", "%zz", "a%2Fb", "fuzz;x", "fuzz%20", "q.q"]).prop_map(String::from),
        1 => "[a-zA-Z0-9_-]{60,70}",
    ]
    .boxed()
}

fn id_segment(kind: OperationKind) -> BoxedStrategy<String> {
    prop_oneof![
        24 => select(id_for(kind).to_vec()).prop_map(String::from),
        2 => text().prop_map(|t| pct(&t)),
        1 => select(vec!["", "0", "-1", "5f3c2a1b9d8e7f6a5b4c3d2e", "3381af92-2b9e-11e3-b191-71861300734c", "%ff%fe", "$CLAIM", "$MESSAGE", "$SUBSCRIPTION"]).prop_map(String::from),
    ]
    .boxed()
}

fn query_value() -> BoxedStrategy<String> {
    prop_oneof![
        3 => number().prop_map(|n| pct(n.to_json().trim_matches('"'))),
        2 => select(vec!["true", "false", "True", "yes", "no", "on", "0", "1", "maybe", ""]).prop_map(String::from),
        2 => select(vec!["$MESSAGE", "$CLAIMED", "$MESSAGE,$CLAIMED", "$CLAIM", "$MESSAGE,,$MESSAGE", ",", "$SUBSCRIPTION"]).prop_map(String::from),
        2 => text().prop_map(|t| pct(&t)),
        1 => select(vec!["%zz", "%", "%ff%fe", "+", "a=b", "%26"]).prop_map(String::from),
        1 => (1usize..120).prop_map(|n| vec!["5f3c2a1b9d8e7f6a5b4c3d2e"; n].join(",")),
    ]
    .boxed()
}

fn query(kind: OperationKind) -> BoxedStrategy<String> {
    let known = params_for(kind);
    let name: BoxedStrategy<String> = if known.is_empty() {
        "[a-z_]{1,10}".boxed()
    } else {
        prop_oneof![
            6 => select(known.to_vec()).prop_map(String::from),
            1 => "[a-z_]{1,10}",
            1 => select(vec!["", "%00", "limit", "ids", "marker"]).prop_map(String::from),
        ]
        .boxed()
    };
    prop_oneof![
        8 => vec((name, query_value()), 0..5).prop_map(|pairs| {
            pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
        }),
        1 => select(vec!["&&", "=", "&=&", "limit", "limit&limit=", "a=1&a=2&a"]).prop_map(String::from),
    ]
    .boxed()
}

fn header_value() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        3 => text().prop_map(String::into_bytes),
        2 => select(vec![
            "",
            " ",
            "3381af92-2b9e-11e3-b191-71861300734",
            "{3381af92-2b9e-11e3-b191-71861300734c}",
            "urn:uuid:3381af92-2b9e-11e3-b191-71861300734c",
            "3381AF922B9E11E3B19171861300734C",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        2 => vec(0x80u8..=0xff, 1..8),
        1 => vec(any::<u8>(), 0..12),
        1 => select(vec![255usize, 256, 257, 60_000]).prop_map(|n| vec![b'p'; n]),
    ]
    .boxed()
}

fn placeholder_or(name: &'static str) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![30 => Just(name.as_bytes().to_vec()), 1 => header_value()].boxed()
}

fn headers(content_type: &'static str) -> BoxedStrategy<Vec<(Bytes, Bytes)>> {
    let h = |name: &'static str, v: BoxedStrategy<Vec<u8>>| {
        v.prop_map(move |v| (Bytes::from(name), Bytes(v))).boxed()
    };
    let opt = |p: f64, s: BoxedStrategy<(Bytes, Bytes)>| proptest::option::weighted(p, s).boxed();
    let signature = (
        prop_oneof![
            4 => Just(b"$SIGNATURE".to_vec()),
            1 => Just(b"0".repeat(64)),
            1 => "[0-9a-f]{64}".prop_map(String::into_bytes),
            1 => Just(vec![0xff]),
            1 => header_value(),
        ],
        select(vec![
            "$EXPIRES",
            "$EXPIRES",
            "2099-01-01T00:00:00",
            "2000-01-01T00:00:00",
            "garbage",
            "",
            "1e400",
        ]),
        select(vec![
            "$METHODS",
            "$METHODS",
            "GET",
            "GET,POST",
            "",
            "GET,,",
            "DELETE,PATCH,POST,PUT,GET,HEAD",
        ]),
        select(vec![
            "$PATHS",
            "$PATHS",
            "/v2/queues/$QUEUE/messages",
            "",
            "/v2/queues/$QUEUE/claims",
            "/v2/queues/$QUEUE",
            "garbage",
        ]),
    )
        .prop_map(|(sig, exp, methods, paths)| {
            vec![
                (Bytes::from("URL-Signature"), Bytes(sig)),
                (Bytes::from("URL-Expires"), Bytes::from(exp)),
                (Bytes::from("URL-Methods"), Bytes::from(methods)),
                (Bytes::from("URL-Paths"), Bytes::from(paths)),
            ]
        });
    (
        opt(0.98, h("Client-ID", placeholder_or("$CLIENT"))),
        opt(0.98, h("X-Project-ID", placeholder_or("$PROJECT"))),
        opt(
            0.9,
            h(
                "Content-Type",
                prop_oneof![
                    24 => Just(content_type.as_bytes().to_vec()),
                    1 => select(vec!["application/json", "application/x-www-form-urlencoded", "text/plain", "application/openstack-messaging-v2.0-json-patch", "", "application/json; charset=latin1"]).prop_map(|s| s.as_bytes().to_vec()),
                    1 => header_value(),
                ]
                .boxed(),
            ),
        ),
        opt(
            0.15,
            h(
                "Accept",
                prop_oneof![
                    select(vec!["application/json", "*/*", "text/plain", "application/json;q=0", "application/*;q=0.5, text/html", ",,,", "application/json;q=nan"]).prop_map(|s| s.as_bytes().to_vec()),
                    header_value(),
                ]
                .boxed(),
            ),
        ),
        opt(0.1, h("X-Roles", prop_oneof![Just(b"admin".to_vec()), Just(b"admin,member".to_vec()), header_value()].boxed())),
        proptest::option::weighted(0.08, signature),
        opt(0.03, h("X-Auth-Token", header_value())),
        opt(
            0.05,
            ("[A-Za-z0-9-]{1,20}", header_value()).prop_map(|(n, v)| (Bytes::from(n), Bytes(v))).boxed(),
        ),
        // a second Client-ID / X-Project-ID
        opt(
            0.03,
            (select(vec!["Client-ID", "X-Project-ID", "x-project-id"]), header_value())
                .prop_map(|(n, v)| (Bytes::from(n), Bytes(v)))
                .boxed(),
        ),
    )
        .prop_map(|(c, p, ct, acc, roles, sig, tok, extra, dup)| {
            let mut out: Vec<(Bytes, Bytes)> = [c, p, ct, acc, roles, tok, extra, dup].into_iter().flatten().collect();
            out.extend(sig.into_iter().flatten());
            out
        })
        .boxed()
}

fn framing() -> BoxedStrategy<Framing> {
    prop_oneof![
        60 => Just(Framing::Length),
        2 => (1usize..64).prop_map(Framing::Chunked),
        1 => select(vec!["zz\r\n", "0\r\n", "ffffffffffffffffff\r\n\r\n", "5\r\nab", "\r\n\r\n", "1;a=b\r\nx\r\n0\r\n\r\n"]).prop_map(|s| Framing::BadChunked(Bytes::from(s))),
        1 => Just(Framing::None),
    ]
    .boxed()
}

/// A body: the operation's document (sometimes broken), or none.
fn http_body(kind: OperationKind) -> BoxedStrategy<Option<Bytes>> {
    let doc = body_for(kind).unwrap_or_else(any_value);
    let has_body = body_for(kind).is_some();
    let text_of = doc.prop_map(|n| n.to_json().into_bytes());
    let broken = (
        body_for(kind).unwrap_or_else(any_value),
        0usize..64,
        select(vec![
            &b""[..],
            b"}",
            b"]",
            b",",
            b"garbage",
            b"\xff\xfe",
            b"NaN",
            b"\0",
        ]),
    )
        .prop_map(|(n, cut, tail)| {
            let mut t = n.to_json().into_bytes();
            let keep = t.len().saturating_sub(cut);
            t.truncate(keep);
            t.extend_from_slice(tail);
            t
        });
    let odd = select(vec![
        &b""[..],
        b"null",
        b"42",
        b"\"s\"",
        b"{}",
        b"[]",
        b"{'a': 1}",
        b"{\"a\": NaN}",
        b"{\"a\": Infinity}",
        b"\xef\xbb\xbf{}",
        b"{\"a\": \"\xff\"}",
        b"{\"a\":1,\"a\":2}",
    ])
    .prop_map(<[u8]>::to_vec);
    let deep_text = deep().prop_map(|n| n.to_json().into_bytes());
    let size = select(vec![65_537usize, 262_145, 300_000]).prop_map(|n| {
        let mut s = b"{\"messages\": [{\"body\": \"".to_vec();
        s.extend(std::iter::repeat_n(b'x', n));
        s.extend_from_slice(b"\", \"ttl\": 60}]}");
        s
    });
    let w = if has_body { 24 } else { 1 };
    prop_oneof![
        w => text_of.prop_map(|b| Some(Bytes(b))),
        (if has_body { 1 } else { 8 }) => Just(None),
        1 => broken.prop_map(|b| Some(Bytes(b))),
        1 => odd.prop_map(|b| Some(Bytes(b))),
        1 => deep_text.prop_map(|b| Some(Bytes(b))),
        1 => size.prop_map(|b| Some(Bytes(b))),
    ]
    .boxed()
}

fn content_type_for(kind: OperationKind) -> &'static str {
    if kind == OperationKind::QueueUpdate {
        "application/openstack-messaging-v2.0-json-patch"
    } else {
        "application/json"
    }
}

/// A request of one operation.
fn http_operation(kind: OperationKind) -> BoxedStrategy<HttpCase> {
    let (method, template) = kind.http_route();
    let methods: Vec<&'static str> = if kind == OperationKind::Ping {
        vec![method, "HEAD"]
    } else {
        vec![method]
    };
    let any_method = select(vec![
        "GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "TRACE", "FOO", "get",
        "CONNECT",
    ]);
    (
        prop_oneof![30 => select(methods), 1 => any_method],
        queue_segment(),
        id_segment(kind),
        proptest::option::weighted(0.5, query(kind)),
        prop_oneof![40 => Just(""), 1 => select(vec!["/", "//", "/x", "/.."])],
        headers(content_type_for(kind)),
        http_body(kind),
        framing(),
        proptest::bool::weighted(0.5),
    )
        .prop_map(
            move |(method, q, id, query, tail, headers, body, framing, setup)| {
                let mut target = template.replace("{queue}", &q).replace("{id}", &id);
                target.push_str(tail);
                if let Some(query) = query {
                    target.push('?');
                    target.push_str(&query);
                }
                HttpCase {
                    setup,
                    method: Bytes::from(method),
                    target: Bytes::from(target),
                    headers,
                    body,
                    framing,
                }
            },
        )
        .boxed()
}

/// A request of any operation of the api (every route, every method).
pub fn http_case() -> BoxedStrategy<HttpCase> {
    let kinds: Vec<BoxedStrategy<HttpCase>> = OperationKind::ALL
        .iter()
        .map(|k| http_operation(*k))
        .collect();
    proptest::strategy::Union::new(kinds).boxed()
}

/// Requests in sequence, in one project: what one leaves (metadata,
/// messages, claims, subscriptions) the next meets.
pub fn http_sequence() -> BoxedStrategy<Case> {
    (vec(http_case(), 2..5), proptest::bool::weighted(0.5))
        .prop_map(|(requests, setup)| Case::HttpSeq(SeqCase { setup, requests }))
        .boxed()
}

/// One change to a byte string.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// Flip a bit.
    Flip(Index, u8),
    /// Overwrite a byte.
    Set(Index, u8),
    /// Insert a token.
    Insert(Index, &'static [u8]),
    /// Remove up to n bytes.
    Delete(Index, usize),
    /// Repeat a stretch.
    Repeat(Index, usize, usize),
    /// Cut the rest.
    Truncate(Index),
}

fn mutation() -> BoxedStrategy<Mutation> {
    let tokens: Vec<&'static [u8]> = vec![
        b"\r\n",
        b"\r\n\r\n",
        b":",
        b"%",
        b"\0",
        b"\xff",
        b"{",
        b"[",
        b"\"",
        b",",
        b"9223372036854775808",
        b"-1",
        b"1e400",
        b"Transfer-Encoding: chunked\r\n",
        b"Content-Length: 99999999999999999999\r\n",
        b"Content-Length: 5\r\n",
        b"X-Project-ID: other\r\n",
        b"Expect: 100-continue\r\n",
        b"$CLAIM",
        b"$MESSAGE",
        b"/..",
        b"?limit=-1",
    ];
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        3 => (any::<Index>(), select(tokens)).prop_map(|(i, t)| Mutation::Insert(i, t)),
        2 => (any::<Index>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => (any::<Index>(), 1usize..32, 2usize..50).prop_map(|(i, n, k)| Mutation::Repeat(i, n, k)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
    .boxed()
}

/// `bytes` with `mutations` applied in order.
pub fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            bytes.push(b' ');
        }
        let len = bytes.len();
        match m {
            Mutation::Flip(i, bit) => bytes[i.index(len)] ^= 1 << bit,
            Mutation::Set(i, b) => bytes[i.index(len)] = *b,
            Mutation::Insert(i, t) => {
                let at = i.index(len + 1);
                bytes.splice(at..at, t.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let at = i.index(len);
                bytes.drain(at..(at + n).min(len));
            }
            Mutation::Repeat(i, n, k) => {
                let at = i.index(len);
                let piece = bytes[at..(at + n).min(len)].to_vec();
                for _ in 1..*k {
                    bytes.splice(at..at, piece.iter().copied());
                }
            }
            Mutation::Truncate(i) => bytes.truncate(i.index(len).max(1)),
        }
    }
    bytes
}

/// Raw requests: generated ones and corpus entries, their bytes mutated.
pub fn http_raw_case(corpus: Vec<Case>) -> BoxedStrategy<Case> {
    let bases: Vec<(Vec<u8>, bool, bool)> = corpus
        .into_iter()
        .flat_map(|c| match c {
            Case::Http(h) => vec![(unfilled_bytes(&h), h.is_head(), h.setup)],
            Case::HttpRaw(r) => vec![(r.bytes.0, r.head, r.setup)],
            Case::HttpSeq(q) => q
                .requests
                .iter()
                .map(|h| (unfilled_bytes(h), h.is_head(), q.setup))
                .collect(),
            Case::Ws(_) => Vec::new(),
        })
        .collect();
    let generated = http_case().prop_map(|h| (unfilled_bytes(&h), h.is_head(), h.setup));
    let base = if bases.is_empty() {
        generated.boxed()
    } else {
        prop_oneof![1 => generated, 1 => select(bases)].boxed()
    };
    (base, vec(mutation(), 1..6))
        .prop_map(|((bytes, head, setup), mutations)| {
            Case::HttpRaw(RawCase {
                setup,
                head,
                bytes: Bytes(mutate(bytes, &mutations)),
            })
        })
        .boxed()
}

/// The request's bytes with its placeholders left in (filled when run).
fn unfilled_bytes(h: &HttpCase) -> Vec<u8> {
    let keep = crate::case::Fill {
        project: "$PROJECT".into(),
        client: "$CLIENT".into(),
        message: "$MESSAGE".into(),
        claimed: "$CLAIMED".into(),
        claim: "$CLAIM".into(),
        subscription: "$SUBSCRIPTION".into(),
        topic_message: "$TOPIC_MESSAGE".into(),
        topic_subscription: "$TOPIC_SUBSCRIPTION".into(),
        grant: [
            "$SIGNATURE".into(),
            "$EXPIRES".into(),
            "$METHODS".into(),
            "$PATHS".into(),
        ],
    };
    h.to_bytes(&keep)
}

// ------------------------------------------------------------------ WebSocket

/// A value for a body field of an action, by the field's name and type.
fn ws_field(name: &'static str, ty: FieldType) -> BoxedStrategy<Node> {
    let typed: BoxedStrategy<Node> = match (name, ty) {
        ("queue_name" | "topic_name", _) => {
            prop_oneof![24 => Just(Node::Str("$QUEUE".into())), 1 => text().prop_map(Node::Str)]
                .boxed()
        }
        ("message_id", _) => strs(&["$MESSAGE", "$CLAIMED", "", "nope"]),
        ("claim_id", _) => strs(&["$CLAIM", "", "nope"]),
        ("subscription_id", _) => strs(&["$SUBSCRIPTION", "", "nope"]),
        ("message_ids" | "claim_ids", _) => {
            vec(strs(&["$MESSAGE", "$CLAIMED", "$CLAIM", "", "x"]), 0..4)
                .prop_map(Node::Array)
                .boxed()
        }
        ("messages", _) => vec(message(), 0..4).prop_map(Node::Array).boxed(),
        ("subscriber", _) => subscriber(),
        ("options", _) => subscription_options(),
        ("resource_types", _) => vec(strs(&["messages", "subscriptions", "x"]), 0..3)
            .prop_map(Node::Array)
            .boxed(),
        (_, FieldType::Integer) => number(),
        (_, FieldType::Boolean) => prop_oneof![
            any::<bool>().prop_map(Node::Bool),
            strs(&["true", "no", "maybe"])
        ]
        .boxed(),
        (_, FieldType::String) => text().prop_map(Node::Str).boxed(),
        (_, FieldType::Array) => vec(any_value(), 0..3).prop_map(Node::Array).boxed(),
        (_, FieldType::Object) => any_value(),
    };
    hostile(typed)
}

fn ws_headers() -> BoxedStrategy<Node> {
    let hv = || prop_oneof![3 => text().prop_map(Node::Str), 1 => any_value()].boxed();
    let entries = vec![
        (
            "Client-ID",
            prop_oneof![30 => Just(Node::Str("$CLIENT".into())), 1 => hv()].boxed(),
        ),
        (
            "X-Project-ID",
            prop_oneof![30 => Just(Node::Str("$PROJECT".into())), 1 => hv()].boxed(),
        ),
        (
            "X-Roles",
            prop_oneof![Just(Node::Str("admin".into())), hv()].boxed(),
        ),
        (
            "URL-Signature",
            prop_oneof![2 => strs(&["$SIGNATURE"]), 1 => Just(Node::Str("0".repeat(64))), 1 => hv()].boxed(),
        ),
        (
            "URL-Expires",
            prop_oneof![2 => strs(&["$EXPIRES"]), 1 => strs(&["2099-01-01T00:00:00", "garbage"]), 1 => hv()].boxed(),
        ),
        (
            "URL-Methods",
            prop_oneof![2 => strs(&["$METHODS"]), 1 => Just(Node::Array(vec![Node::Str("GET".into())])), 1 => hv()].boxed(),
        ),
        (
            "URL-Paths",
            prop_oneof![
                2 => strs(&["$PATHS"]),
                1 => Just(Node::Array(vec![Node::Str("/v2/queues/$QUEUE/messages".into())])),
                1 => hv(),
            ]
            .boxed(),
        ),
        ("X-Auth-Token", hv()),
        ("Accept", hv()),
    ];
    let weights = [0.98, 0.98, 0.1, 0.08, 0.08, 0.08, 0.08, 0.03, 0.03];
    let parts: Vec<BoxedStrategy<Option<(String, Node)>>> = entries
        .into_iter()
        .zip(weights)
        .map(|((name, s), w)| {
            proptest::option::weighted(w, s.prop_map(move |v| (name.to_owned(), v))).boxed()
        })
        .collect();
    prop_oneof![
        30 => parts.prop_map(|p| Node::map(p.into_iter().flatten())),
        1 => any_value(),
    ]
    .boxed()
}

fn ws_action_frame(index: usize) -> BoxedStrategy<Node> {
    let spec = &ACTIONS[index];
    let mut fields: Vec<(&'static str, BoxedStrategy<Node>)> = spec
        .fields
        .iter()
        .map(|(name, ty)| (*name, ws_field(name, *ty)))
        .collect();
    if spec.name == "queue_create" {
        fields.push(("metadata", metadata()));
    }
    if spec.name == "queue_list" {
        fields.push(("with_count", ws_field("with_count", FieldType::Boolean)));
    }
    if spec.name == "message_list" {
        fields.push((
            "include_delayed",
            ws_field("include_delayed", FieldType::Boolean),
        ));
    }
    if spec.name == "claim_update" {
        fields.push(("grace", number()));
    }
    let body = prop_oneof![24 => object(fields), 1 => any_value()];
    let name = spec.name;
    let action = prop_oneof![
        40 => Just(Node::Str(name.to_owned())),
        1 => prop_oneof![text().prop_map(Node::Str), any_value()],
    ];
    (
        action,
        proptest::option::weighted(0.99, ws_headers()),
        proptest::option::weighted(0.98, body),
        proptest::option::weighted(0.03, (text(), any_value())),
    )
        .prop_map(|(action, headers, body, extra)| {
            let mut entries = vec![("action".to_owned(), action)];
            entries.extend(headers.map(|h| ("headers".to_owned(), h)));
            entries.extend(body.map(|b| ("body".to_owned(), b)));
            entries.extend(extra);
            Node::map(entries)
        })
        .boxed()
}

/// A frame document of any action.
pub fn ws_document() -> BoxedStrategy<Node> {
    let all: Vec<BoxedStrategy<Node>> = (0..ACTIONS.len()).map(ws_action_frame).collect();
    prop_oneof![
        30 => proptest::strategy::Union::new(all),
        1 => any_value(),
        1 => deep(),
    ]
    .boxed()
}

/// WebSocket cases; `msgpack`: binary frames (else text).
pub fn ws_case(msgpack: bool) -> BoxedStrategy<Case> {
    let frame = ws_document().prop_map(move |n| {
        if msgpack {
            WsFrame::Msgpack(n)
        } else {
            WsFrame::Json(n)
        }
    });
    let mutated = (ws_document(), vec(mutation(), 1..5)).prop_map(move |(n, m)| {
        if msgpack {
            WsFrame::Binary(Bytes(mutate(n.to_msgpack(), &m)))
        } else {
            WsFrame::Text(
                String::from_utf8_lossy(&mutate(n.to_json().into_bytes(), &m)).into_owned(),
            )
        }
    });
    let one = prop_oneof![6 => frame, 1 => mutated];
    (vec(one, 1..4), proptest::bool::weighted(0.5))
        .prop_map(|(frames, setup)| Case::Ws(WsCase { setup, frames }))
        .boxed()
}
