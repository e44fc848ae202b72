//! The action table: every action of the reference's request schema, with
//! the shape its frame must have, and the parsing of a checked frame into
//! the api core's [`Operation`].
//!
//! The shape check is the reference's JSON-schema check, written out: the
//! top-level keys a frame needs, the headers it needs (every known header
//! is a string), and the type of each body field it reads. Anything past
//! the shape (names, limits, values, policy) is the api core's to judge.

use serde_json::{Map, Value};

use super::frame::FrameError;
use crate::api::messages::{BulkDeleteParams, MessageListParams};
use crate::api::operation::{Operation, TopicOperation};
use crate::api::pools::AdminListParams;
use crate::api::queues::QueueListParams;
use crate::api::subscriptions::SubscriptionListParams;
use crate::api::Payload;
use crate::error::{ApiError, ApiResult};

/// The JSON type a schema field must have (JSON-schema draft 4 names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// `"string"`.
    String,
    /// `"integer"`: a whole number, not a float and not a boolean.
    Integer,
    /// `"boolean"`.
    Boolean,
    /// `"array"`.
    Array,
    /// `"object"`.
    Object,
}

impl FieldType {
    /// Whether `v` has this type.
    pub fn admits(self, v: &Value) -> bool {
        match self {
            FieldType::String => v.is_string(),
            FieldType::Integer => v.is_i64() || v.is_u64(),
            FieldType::Boolean => v.is_boolean(),
            FieldType::Array => v.is_array(),
            FieldType::Object => v.is_object(),
        }
    }
}

/// The headers the schema knows; each must be a string when present.
pub const KNOWN_HEADERS: &[&str] = &[
    "User-Agent",
    "Date",
    "Accept",
    "Client-ID",
    "X-Project-ID",
    "X-Auth-Token",
];

/// The headers every data action requires.
const DATA_HEADERS: &[&str] = &["Client-ID", "X-Project-ID"];

/// One action: its name and its frame's shape.
#[derive(Debug)]
pub struct ActionSpec {
    /// The action name (`queue_list`, ...).
    pub name: &'static str,
    /// The action (typed).
    pub action: Action,
    /// Whether the frame must carry a `body`.
    pub body_required: bool,
    /// Headers that must be present.
    pub headers_required: &'static [&'static str],
    /// Body fields the action reads, with their types.
    pub fields: &'static [(&'static str, FieldType)],
    /// Body fields that must be present.
    pub fields_required: &'static [&'static str],
    /// Whether the action is the queue action of the same shape on a topic
    /// (named by `topic_name`; an extension of the reference's schema).
    pub on_topic: bool,
}

/// Every action of the WebSocket API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Action {
    GetHomeDoc,
    CheckNodeHealth,
    PingNode,
    Authenticate,
    QueueList,
    QueueCreate,
    QueueDelete,
    QueueGet,
    QueueGetStats,
    QueuePurge,
    MessageList,
    MessageGet,
    MessageGetMany,
    MessagePost,
    MessageDelete,
    MessageDeleteMany,
    ClaimCreate,
    ClaimGet,
    ClaimUpdate,
    ClaimDelete,
    PoolList,
    PoolCreate,
    PoolUpdate,
    PoolGet,
    PoolDelete,
    FlavorList,
    FlavorCreate,
    FlavorUpdate,
    FlavorGet,
    FlavorDelete,
    SubscriptionList,
    SubscriptionCreate,
    SubscriptionDelete,
    SubscriptionGet,
}

use FieldType::{Array as A, Boolean as B, Integer as I, Object as O, String as S};

const Q: (&str, FieldType) = ("queue_name", S);
const T: (&str, FieldType) = ("topic_name", S);

macro_rules! spec {
    ($name:literal, $action:ident, body: $body:expr, headers: $h:expr, fields: [$($f:expr),*], required: [$($r:literal),*]) => {
        ActionSpec {
            name: $name,
            action: Action::$action,
            body_required: $body,
            headers_required: $h,
            fields: &[$($f),*],
            fields_required: &[$($r),*],
            on_topic: false,
        }
    };
    (topic $name:literal, $action:ident, body: $body:expr, headers: $h:expr, fields: [$($f:expr),*], required: [$($r:literal),*]) => {
        ActionSpec {
            name: $name,
            action: Action::$action,
            body_required: $body,
            headers_required: $h,
            fields: &[$($f),*],
            fields_required: &[$($r),*],
            on_topic: true,
        }
    };
}

/// The table, in the reference schema's order.
pub const ACTIONS: &[ActionSpec] = &[
    spec!("get_home_doc", GetHomeDoc, body: false, headers: &[], fields: [], required: []),
    spec!("check_node_health", CheckNodeHealth, body: false, headers: &[], fields: [], required: []),
    spec!("ping_node", PingNode, body: false, headers: &[], fields: [], required: []),
    spec!("authenticate", Authenticate, body: false, headers: &["X-Project-ID", "X-Auth-Token"], fields: [], required: []),
    spec!("queue_list", QueueList, body: false, headers: DATA_HEADERS, fields: [("marker", S), ("limit", I), ("detailed", B)], required: []),
    spec!("queue_create", QueueCreate, body: true, headers: DATA_HEADERS, fields: [Q], required: ["queue_name"]),
    spec!("queue_delete", QueueDelete, body: true, headers: DATA_HEADERS, fields: [Q], required: ["queue_name"]),
    spec!("queue_get", QueueGet, body: true, headers: DATA_HEADERS, fields: [Q], required: ["queue_name"]),
    spec!("queue_get_stats", QueueGetStats, body: true, headers: DATA_HEADERS, fields: [Q], required: ["queue_name"]),
    spec!("queue_purge", QueuePurge, body: true, headers: DATA_HEADERS, fields: [Q, ("resource_types", A)], required: ["queue_name"]),
    spec!("message_list", MessageList, body: true, headers: DATA_HEADERS, fields: [Q, ("marker", S), ("limit", I), ("echo", B), ("include_claimed", B), ("wait", I)], required: ["queue_name"]),
    spec!("message_get", MessageGet, body: true, headers: DATA_HEADERS, fields: [Q, ("message_id", S)], required: ["queue_name", "message_id"]),
    spec!("message_get_many", MessageGetMany, body: true, headers: DATA_HEADERS, fields: [Q, ("message_ids", A)], required: ["queue_name", "message_ids"]),
    spec!("message_post", MessagePost, body: true, headers: DATA_HEADERS, fields: [Q, ("messages", A)], required: ["queue_name", "messages"]),
    spec!("message_delete", MessageDelete, body: true, headers: DATA_HEADERS, fields: [Q, ("message_id", S), ("claim_id", S)], required: ["queue_name", "message_id"]),
    spec!("message_delete_many", MessageDeleteMany, body: true, headers: DATA_HEADERS, fields: [Q, ("message_ids", A), ("claim_ids", A), ("pop", I)], required: ["queue_name"]),
    spec!("claim_create", ClaimCreate, body: true, headers: DATA_HEADERS, fields: [Q, ("limit", I), ("ttl", I), ("grace", I), ("wait", I)], required: ["queue_name"]),
    spec!("claim_get", ClaimGet, body: true, headers: DATA_HEADERS, fields: [Q, ("claim_id", S)], required: ["queue_name", "claim_id"]),
    spec!("claim_update", ClaimUpdate, body: true, headers: DATA_HEADERS, fields: [Q, ("claim_id", S), ("ttl", I)], required: ["queue_name", "claim_id"]),
    spec!("claim_delete", ClaimDelete, body: true, headers: DATA_HEADERS, fields: [Q, ("claim_id", S)], required: ["queue_name", "claim_id"]),
    spec!("pool_list", PoolList, body: false, headers: DATA_HEADERS, fields: [("limit", I), ("marker", S), ("detailed", B)], required: []),
    spec!("pool_create", PoolCreate, body: true, headers: DATA_HEADERS, fields: [("pool_name", S), ("weight", I), ("uri", S), ("flavor", S), ("options", O)], required: ["pool_name"]),
    spec!("pool_update", PoolUpdate, body: true, headers: DATA_HEADERS, fields: [("pool_name", S), ("weight", I), ("uri", S), ("flavor", S), ("options", O)], required: ["pool_name"]),
    spec!("pool_get", PoolGet, body: true, headers: DATA_HEADERS, fields: [("pool_name", S), ("detailed", B)], required: ["pool_name"]),
    spec!("pool_delete", PoolDelete, body: true, headers: DATA_HEADERS, fields: [("pool_name", S)], required: ["pool_name"]),
    spec!("flavor_list", FlavorList, body: false, headers: DATA_HEADERS, fields: [("limit", I), ("marker", S), ("detailed", B)], required: []),
    spec!("flavor_create", FlavorCreate, body: true, headers: DATA_HEADERS, fields: [("flavor_name", S), ("pool_list", A), ("capabilities", O)], required: ["flavor_name", "pool_list"]),
    spec!("flavor_update", FlavorUpdate, body: true, headers: DATA_HEADERS, fields: [("flavor_name", S), ("pool_list", A), ("capabilities", O)], required: ["flavor_name"]),
    spec!("flavor_get", FlavorGet, body: true, headers: DATA_HEADERS, fields: [("flavor_name", S), ("detailed", B)], required: ["flavor_name"]),
    spec!("flavor_delete", FlavorDelete, body: true, headers: DATA_HEADERS, fields: [("flavor_name", S)], required: ["flavor_name"]),
    spec!("subscription_list", SubscriptionList, body: true, headers: DATA_HEADERS, fields: [Q], required: ["queue_name"]),
    spec!("subscription_create", SubscriptionCreate, body: true, headers: DATA_HEADERS, fields: [Q, ("subscriber", S), ("ttl", I), ("options", O)], required: ["queue_name"]),
    spec!("subscription_delete", SubscriptionDelete, body: true, headers: DATA_HEADERS, fields: [Q, ("subscription_id", S)], required: ["queue_name", "subscription_id"]),
    spec!("subscription_get", SubscriptionGet, body: true, headers: DATA_HEADERS, fields: [Q, ("subscription_id", S)], required: ["queue_name", "subscription_id"]),
    // Topics (this implementation's extension): the queue actions of the
    // same shapes, on `topic_name`.
    spec!(topic "topic_list", QueueList, body: false, headers: DATA_HEADERS, fields: [("marker", S), ("limit", I), ("detailed", B)], required: []),
    spec!(topic "topic_create", QueueCreate, body: true, headers: DATA_HEADERS, fields: [T], required: ["topic_name"]),
    spec!(topic "topic_delete", QueueDelete, body: true, headers: DATA_HEADERS, fields: [T], required: ["topic_name"]),
    spec!(topic "topic_get", QueueGet, body: true, headers: DATA_HEADERS, fields: [T], required: ["topic_name"]),
    spec!(topic "topic_get_stats", QueueGetStats, body: true, headers: DATA_HEADERS, fields: [T], required: ["topic_name"]),
    spec!(topic "topic_purge", QueuePurge, body: true, headers: DATA_HEADERS, fields: [T, ("resource_types", A)], required: ["topic_name"]),
    spec!(topic "topic_message_list", MessageList, body: true, headers: DATA_HEADERS, fields: [T, ("marker", S), ("limit", I), ("echo", B), ("include_claimed", B), ("wait", I)], required: ["topic_name"]),
    spec!(topic "topic_message_get", MessageGet, body: true, headers: DATA_HEADERS, fields: [T, ("message_id", S)], required: ["topic_name", "message_id"]),
    spec!(topic "topic_message_get_many", MessageGetMany, body: true, headers: DATA_HEADERS, fields: [T, ("message_ids", A)], required: ["topic_name", "message_ids"]),
    spec!(topic "topic_message_post", MessagePost, body: true, headers: DATA_HEADERS, fields: [T, ("messages", A)], required: ["topic_name", "messages"]),
    spec!(topic "topic_message_delete", MessageDelete, body: true, headers: DATA_HEADERS, fields: [T, ("message_id", S), ("claim_id", S)], required: ["topic_name", "message_id"]),
    spec!(topic "topic_message_delete_many", MessageDeleteMany, body: true, headers: DATA_HEADERS, fields: [T, ("message_ids", A), ("claim_ids", A), ("pop", I)], required: ["topic_name"]),
    spec!(topic "topic_subscription_list", SubscriptionList, body: true, headers: DATA_HEADERS, fields: [T], required: ["topic_name"]),
    spec!(topic "topic_subscription_create", SubscriptionCreate, body: true, headers: DATA_HEADERS, fields: [T, ("subscriber", S), ("ttl", I), ("options", O)], required: ["topic_name"]),
    spec!(topic "topic_subscription_delete", SubscriptionDelete, body: true, headers: DATA_HEADERS, fields: [T, ("subscription_id", S)], required: ["topic_name", "subscription_id"]),
    spec!(topic "topic_subscription_get", SubscriptionGet, body: true, headers: DATA_HEADERS, fields: [T, ("subscription_id", S)], required: ["topic_name", "subscription_id"]),
];

/// Looks an action up by name.
pub fn lookup(name: &str) -> Option<&'static ActionSpec> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// How the reference prints an action value it does not know (Python `str`).
fn action_text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "None".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(true)) => "True".into(),
        Some(Value::Bool(false)) => "False".into(),
        Some(other) => other.to_string(),
    }
}

/// A frame that passed the shape check.
#[derive(Debug)]
pub struct Checked<'a> {
    /// Its action.
    pub spec: &'static ActionSpec,
    /// Its headers (empty when absent).
    pub headers: &'a Map<String, Value>,
    /// Its body (empty when absent).
    pub body: &'a Map<String, Value>,
}

impl Checked<'_> {
    /// A string header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(Value::as_str)
    }

    /// A string body field.
    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.body.get(name).and_then(Value::as_str)
    }

    /// An integer body field (the shape check typed it).
    pub fn int_field(&self, name: &str) -> Option<i64> {
        self.body.get(name).and_then(Value::as_i64)
    }

    /// The queue (or, for a topic action, the topic) the frame names
    /// (validated by the api core).
    pub fn queue(&self) -> Option<&str> {
        self.str_field(if self.spec.on_topic {
            "topic_name"
        } else {
            "queue_name"
        })
    }
}

static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();

/// Finds the frame's action and checks the frame against its shape.
///
/// # Errors
/// [`FrameError::UnknownAction`] or [`FrameError::SchemaInvalid`] (with the
/// reason, which is logged, not sent).
pub fn check(doc: &Map<String, Value>) -> Result<Checked<'_>, FrameError> {
    let spec = match doc.get("action") {
        Some(Value::String(name)) => lookup(name),
        _ => None,
    }
    .ok_or_else(|| FrameError::UnknownAction(action_text(doc.get("action"))))?;
    let invalid = |why: String| FrameError::SchemaInvalid(why);
    let empty = EMPTY.get_or_init(Map::new);
    let headers = match doc.get("headers") {
        Some(Value::Object(h)) => h,
        Some(_) => return Err(invalid("headers is not an object".into())),
        None => return Err(invalid("headers is required".into())),
    };
    for name in KNOWN_HEADERS {
        if headers.get(*name).is_some_and(|v| !v.is_string()) {
            return Err(invalid(format!("header {name} is not a string")));
        }
    }
    if let Some(missing) = spec
        .headers_required
        .iter()
        .find(|h| !headers.contains_key(**h))
    {
        return Err(invalid(format!("header {missing} is required")));
    }
    let body = match doc.get("body") {
        Some(Value::Object(b)) => b,
        Some(_) if spec.body_required || !spec.fields.is_empty() => {
            return Err(invalid("body is not an object".into()))
        }
        Some(_) => empty,
        None if spec.body_required => return Err(invalid("body is required".into())),
        None => empty,
    };
    for (name, ty) in spec.fields {
        if body.get(*name).is_some_and(|v| !ty.admits(v)) {
            return Err(invalid(format!("body field {name} must be {ty:?}")));
        }
    }
    if let Some(missing) = spec
        .fields_required
        .iter()
        .find(|f| !body.contains_key(**f))
    {
        return Err(invalid(format!("body field {missing} is required")));
    }
    Ok(Checked {
        spec,
        headers,
        body,
    })
}

/// What a checked frame asks for.
#[derive(Debug)]
pub enum Request {
    /// `authenticate`: a session matter, answered by the transport.
    Authenticate,
    /// An operation of the api core.
    Operation(Operation),
}

impl Checked<'_> {
    /// The JSON document `{key: value}` of the body fields among `keys`, as
    /// a payload for the api core; [`Payload::Absent`] when the frame has
    /// none of them.
    fn payload(&self, keys: &[&str]) -> Payload {
        let mut doc = Map::new();
        for k in keys {
            if let Some(v) = self.body.get(*k) {
                doc.insert((*k).to_owned(), v.clone());
            }
        }
        if doc.is_empty() {
            return Payload::Absent;
        }
        Payload::document(&Value::Object(doc))
    }

    /// A boolean field the schema does not type: a boolean, or a string the
    /// HTTP transport would accept, else the HTTP transport's error.
    fn loose_bool(&self, name: &str) -> ApiResult<Option<bool>> {
        match self.body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if crate::config::parse_bool(s).is_some() => {
                Ok(crate::config::parse_bool(s))
            }
            Some(_) => Err(ApiError::invalid(format!(
                "The \"{name}\" parameter is invalid. The value of the parameter must be \"true\" or \"false\"."
            ))),
        }
    }

    /// An integer field the schema does not type, read as the reference's
    /// `int()` reads it: a number (a fraction cut), a boolean, or a string
    /// of digits; other text is refused with Python's words.
    fn loose_int(&self, name: &str) -> ApiResult<Option<i64>> {
        let refused = |kind: &str| {
            ApiError::invalid(format!(
                "int() argument must be a string, a bytes-like object or a real number, not '{kind}'"
            ))
        };
        match self.body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(i64::from(*b))),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite())
                        .map(|f| f.trunc() as i64)
                })
                .map(Some)
                .ok_or_else(|| refused("float")),
            Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| {
                // CPython shows at most 200 characters of the literal's repr.
                let quoted = std::iter::once('\'')
                    .chain(s.chars())
                    .chain(std::iter::once('\''));
                let shown: String = quoted.take(200).collect();
                ApiError::invalid(format!("invalid literal for int() with base 10: {shown}"))
            }),
            Some(Value::Array(_)) => Err(refused("list")),
            Some(Value::Object(_)) => Err(refused("dict")),
        }
    }

    /// A list of ids (`message_ids`, `claim_ids`). An empty list counts as
    /// none, as a blank `ids=` does over HTTP, unless `empty_is_given`: the
    /// reference's `message_delete_many` counts an empty `message_ids` as
    /// given (and then too short).
    fn id_list(&self, name: &str, empty_is_given: bool) -> Option<Vec<String>> {
        let items = self.body.get(name)?.as_array()?;
        let ids: Vec<String> = items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        (empty_is_given || !ids.is_empty()).then_some(ids)
    }

    fn admin_list(&self) -> AdminListParams {
        AdminListParams {
            marker: self.str_field("marker").map(String::from),
            limit: self.int_field("limit"),
            detailed: self
                .body
                .get("detailed")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    }

    fn string(&self, name: &str) -> String {
        self.str_field(name).unwrap_or_default().to_owned()
    }

    /// The request of the frame.
    ///
    /// # Errors
    /// 400 for a field of the wrong kind.
    pub fn request(&self) -> ApiResult<Request> {
        use Operation as O;
        let queue = || self.queue().unwrap_or_default().to_owned();
        // The reference reads a listing's paging fields with int(): `limit`,
        // then `ttl` and `grace` (which no listing uses), and refuses what
        // int() refuses. (The schema has typed queue_list's and
        // message_list's `limit` already.)
        let listing_limit = if matches!(
            self.spec.action,
            Action::QueueList | Action::MessageList | Action::SubscriptionList
        ) {
            let limit = self.loose_int("limit")?;
            self.loose_int("ttl")?;
            self.loose_int("grace")?;
            limit
        } else {
            None
        };
        let op = match self.spec.action {
            Action::Authenticate => return Ok(Request::Authenticate),
            Action::GetHomeDoc => O::GetHomeDoc,
            Action::CheckNodeHealth => O::CheckHealth,
            Action::PingNode => O::Ping { probe: true },
            Action::QueueList => O::QueueList(QueueListParams {
                marker: self.str_field("marker").map(String::from),
                limit: self.int_field("limit"),
                detailed: self
                    .body
                    .get("detailed")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                with_count: self.loose_bool("with_count")?.unwrap_or(false),
                ..QueueListParams::default()
            }),
            Action::QueueCreate => O::QueueCreate {
                queue: queue(),
                metadata: match self.body.get("metadata") {
                    // The reference reads a null (or any empty value) as no
                    // metadata.
                    None => Payload::Absent,
                    Some(v) if !crate::json::truthy(v) => Payload::Absent,
                    Some(v) => Payload::document(v),
                },
            },
            Action::QueueGet => O::QueueGet { queue: queue() },
            Action::QueueDelete => O::QueueDelete { queue: queue() },
            Action::QueueGetStats => O::QueueStats {
                queue: queue(),
                report_missing: true,
            },
            Action::QueuePurge => O::QueuePurge {
                queue: queue(),
                body: self.payload(&["resource_types"]),
            },
            Action::MessageList => O::MessageList {
                queue: queue(),
                params: MessageListParams {
                    marker: self.str_field("marker").map(String::from),
                    limit: self.int_field("limit"),
                    echo: self.body.get("echo").and_then(Value::as_bool),
                    include_claimed: self.body.get("include_claimed").and_then(Value::as_bool),
                    include_delayed: self.loose_bool("include_delayed")?,
                    wait: self.int_field("wait"),
                },
            },
            Action::MessageGet => O::MessageGet {
                queue: queue(),
                id: self.string("message_id"),
            },
            Action::MessageGetMany => O::MessageGetMany {
                queue: queue(),
                ids: self.id_list("message_ids", false).unwrap_or_default(),
            },
            Action::MessagePost => O::MessagePost {
                queue: queue(),
                body: self.payload(&["messages"]),
            },
            Action::MessageDelete => O::MessageDelete {
                queue: queue(),
                id: self.string("message_id"),
                claim_id: self.str_field("claim_id").map(String::from),
            },
            Action::MessageDeleteMany => O::MessageDeleteMany {
                queue: queue(),
                params: BulkDeleteParams {
                    ids: self.id_list("message_ids", true),
                    claim_ids: self.id_list("claim_ids", false),
                    pop: self.int_field("pop"),
                },
            },
            Action::ClaimCreate => O::ClaimCreate {
                queue: queue(),
                limit: self.int_field("limit"),
                wait: self.int_field("wait"),
                body: self.payload(&["ttl", "grace"]),
            },
            Action::ClaimGet => O::ClaimGet {
                queue: queue(),
                id: self.string("claim_id"),
            },
            Action::ClaimUpdate => O::ClaimUpdate {
                queue: queue(),
                id: self.string("claim_id"),
                body: match self.payload(&["ttl", "grace"]) {
                    Payload::Absent => Payload::document(&Value::Object(Map::new())),
                    p => p,
                },
            },
            Action::ClaimDelete => O::ClaimDelete {
                queue: queue(),
                id: self.string("claim_id"),
            },
            Action::SubscriptionList => O::SubscriptionList {
                queue: queue(),
                params: SubscriptionListParams {
                    marker: self.str_field("marker").map(String::from),
                    limit: listing_limit,
                },
            },
            Action::SubscriptionCreate => O::SubscriptionCreate {
                queue: queue(),
                body: self.payload(&["subscriber", "ttl", "options"]),
            },
            Action::SubscriptionGet => O::SubscriptionGet {
                queue: queue(),
                id: self.string("subscription_id"),
            },
            Action::SubscriptionDelete => O::SubscriptionDelete {
                queue: queue(),
                id: self.string("subscription_id"),
            },
            Action::PoolList => O::PoolList(self.admin_list()),
            Action::PoolCreate => O::PoolCreate {
                name: self.string("pool_name"),
                body: self.payload(&["uri", "weight", "flavor", "options"]),
            },
            Action::PoolUpdate => O::PoolUpdate {
                name: self.string("pool_name"),
                body: self.payload(&["uri", "weight", "flavor", "options"]),
            },
            Action::PoolGet => O::PoolGet {
                name: self.string("pool_name"),
                detailed: self
                    .body
                    .get("detailed")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            },
            Action::PoolDelete => O::PoolDelete {
                name: self.string("pool_name"),
            },
            Action::FlavorList => O::FlavorList(self.admin_list()),
            Action::FlavorCreate => O::FlavorCreate {
                name: self.string("flavor_name"),
                body: self.payload(&["pool_list", "capabilities"]),
            },
            Action::FlavorUpdate => O::FlavorUpdate {
                name: self.string("flavor_name"),
                body: self.payload(&["pool_list"]),
            },
            Action::FlavorGet => O::FlavorGet {
                name: self.string("flavor_name"),
            },
            Action::FlavorDelete => O::FlavorDelete {
                name: self.string("flavor_name"),
            },
        };
        if self.spec.on_topic {
            // The table pairs topic actions only with kinds topics have.
            return TopicOperation::new(op)
                .map(|t| Request::Operation(Operation::Topic(t)))
                .ok_or_else(|| {
                    ApiError::Internal(format!("{} is not a topic action", self.spec.name))
                });
        }
        Ok(Request::Operation(op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_json(v: Value) -> Result<&'static str, FrameError> {
        let doc = v.as_object().unwrap().clone();
        let doc: &'static Map<String, Value> = Box::leak(Box::new(doc));
        check(doc).map(|c| c.spec.name)
    }

    const HDRS: fn() -> Value = || json!({"Client-ID": "c", "X-Project-ID": "p"});

    #[test]
    fn the_table_has_every_reference_action_once() {
        assert_eq!(ACTIONS.len(), 34 + 16);
        for a in ACTIONS {
            assert_eq!(
                ACTIONS
                    .iter()
                    .filter(
                        |b| b.name == a.name || (b.action == a.action && b.on_topic == a.on_topic)
                    )
                    .count(),
                1,
                "{}",
                a.name
            );
            for r in a.fields_required {
                assert!(a.fields.iter().any(|(f, _)| f == r), "{}: {r}", a.name);
            }
        }
        assert!(lookup("message_post").is_some());
        assert!(lookup("topic_list").is_some_and(|a| a.on_topic));
        assert!(lookup("topic_claim_create").is_none());
    }

    #[test]
    fn unknown_actions_are_named_as_the_reference_prints_them() {
        let e = check_json(json!({"action": "nope", "headers": {}})).unwrap_err();
        assert_eq!(e.to_string(), "nope is not a valid action");
        let e = check_json(json!({"headers": {}})).unwrap_err();
        assert_eq!(e.to_string(), "None is not a valid action");
        let e = check_json(json!({"action": 5})).unwrap_err();
        assert_eq!(e.to_string(), "5 is not a valid action");
    }

    #[test]
    fn shape_checks() {
        assert_eq!(
            check_json(json!({"action": "queue_list", "headers": HDRS()})).unwrap(),
            "queue_list"
        );
        assert_eq!(
            check_json(json!({"action": "get_home_doc", "headers": {}})).unwrap(),
            "get_home_doc"
        );
        let schema = |v: Value| matches!(check_json(v), Err(FrameError::SchemaInvalid(_)));
        // missing headers, non-object headers, non-string known header
        assert!(schema(json!({"action": "queue_list"})));
        assert!(schema(json!({"action": "queue_list", "headers": []})));
        assert!(schema(
            json!({"action": "queue_list", "headers": {"Client-ID": 1, "X-Project-ID": "p"}})
        ));
        // required header / body / field
        assert!(schema(
            json!({"action": "queue_list", "headers": {"Client-ID": "c"}})
        ));
        assert!(schema(json!({"action": "queue_get", "headers": HDRS()})));
        assert!(schema(
            json!({"action": "queue_get", "headers": HDRS(), "body": {}})
        ));
        assert!(schema(
            json!({"action": "queue_get", "headers": HDRS(), "body": []})
        ));
        // field types: integer is not float nor boolean
        assert!(schema(
            json!({"action": "queue_list", "headers": HDRS(), "body": {"limit": 1.5}})
        ));
        assert!(schema(
            json!({"action": "queue_list", "headers": HDRS(), "body": {"limit": true}})
        ));
        assert!(schema(
            json!({"action": "queue_list", "headers": HDRS(), "body": {"detailed": "yes"}})
        ));
        assert!(schema(
            json!({"action": "message_post", "headers": HDRS(), "body": {"queue_name": "q", "messages": {}}})
        ));
        assert!(schema(
            json!({"action": "authenticate", "headers": {"X-Project-ID": "p"}})
        ));
        // unknown fields and headers are allowed
        assert!(check_json(json!({"action": "queue_get", "headers": {"Client-ID": "c", "X-Project-ID": "p", "X-Roles": ["a"]}, "body": {"queue_name": "q", "x": 1}})).is_ok());
    }
}
