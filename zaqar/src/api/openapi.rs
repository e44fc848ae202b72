//! The OpenAPI 3.1 document of the v2 HTTP API, as this server serves it.
//!
//! The document is built from the operation model: [`describe`] gives every
//! [`OperationKind`] its entry (summary, parameters, request body,
//! responses per status) through an exhaustive `match`, so a new kind does
//! not compile until it is described, and [`document`] assembles the
//! entries of the operations a server serves, with the limits of its
//! configuration (page sizes, TTL bounds) and its auth strategy. Routes and
//! methods come from [`OperationKind::http_route`], the table the HTTP
//! router is tested against. Served at `GET /v2/openapi.json` without
//! authentication; `tools/api_ref.py` renders the API reference from it.

use serde_json::{json, Map, Value};

use super::operation::OperationKind;
use super::validate::{
    MIN_CLAIM_GRACE, MIN_CLAIM_TTL, MIN_MESSAGE_TTL, MIN_SUBSCRIPTION_TTL, QUEUE_NAME_MAX_LEN,
};
use crate::config::{AuthStrategy, ClientIdMode, Config, TransportConfig};

/// The media type of a queue metadata patch.
pub const JSON_PATCH_TYPE: &str = "application/openstack-messaging-v2.0-json-patch";

/// What the document says of one operation.
#[derive(Clone, Debug)]
pub struct OperationDoc {
    /// One line: what the operation does.
    pub summary: &'static str,
    /// The longer description (Markdown).
    pub description: &'static str,
    /// The tag (section of the API reference) it belongs to.
    pub tag: &'static str,
    /// What `{id}` in the route stands for: its parameter name and text.
    pub id_param: Option<(&'static str, &'static str)>,
    /// Query parameters (OpenAPI parameter objects).
    pub query: Vec<Value>,
    /// The request body (an OpenAPI request body object), if any.
    pub request: Option<Value>,
    /// Responses: status and response object (errors included).
    pub responses: Vec<(u16, Value)>,
    /// Whether `HEAD` is answered too (with the same statuses, no body).
    pub head: bool,
    /// OpenAPI links from a success status to the operations that can use
    /// what it made: target, and its parameters as runtime expressions
    /// (`path.queue_name`, ...); the context headers are carried along.
    pub links: Vec<Link>,
}

/// An OpenAPI link of an [`OperationDoc`].
#[derive(Clone, Debug)]
pub struct Link {
    /// The status whose response the link starts from.
    pub status: u16,
    /// The operation it leads to.
    pub target: OperationKind,
    /// The target's parameters: qualified name and runtime expression.
    pub parameters: Vec<(&'static str, &'static str)>,
}

/// The queue of the request, for a link.
const SAME_QUEUE: (&str, &str) = ("path.queue_name", "$request.path.queue_name");

/// Links from `status` to each of `targets` in the same queue, with `more`.
fn links_to(
    status: u16,
    targets: &[OperationKind],
    more: &[(&'static str, &'static str)],
) -> Vec<Link> {
    targets
        .iter()
        .map(|&target| Link {
            status,
            target,
            parameters: std::iter::once(SAME_QUEUE)
                .chain(more.iter().copied())
                .collect(),
        })
        .collect()
}

/// The server's settings the document depends on.
pub struct DocContext<'a> {
    /// `[transport]` limits.
    pub limits: &'a TransportConfig,
    /// `[DEFAULT] auth_strategy`.
    pub auth: AuthStrategy,
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

/// A response with a JSON body of `schema`.
fn body(description: &str, schema: Value) -> Value {
    json!({
        "description": description,
        "headers": { "X-Openstack-Request-Id": { "$ref": "#/components/headers/RequestId" } },
        "content": json_content(schema),
    })
}

/// A response without a body.
fn empty(description: &str) -> Value {
    json!({
        "description": description,
        "headers": { "X-Openstack-Request-Id": { "$ref": "#/components/headers/RequestId" } },
    })
}

/// A response naming the resource in `Location`.
fn located(mut response: Value, what: &str) -> Value {
    response["headers"]["Location"] = json!({
        "description": what,
        "schema": { "type": "string" },
    });
    response
}

/// The error response `{"title", "description"}` for `status`.
fn error(status: u16) -> (u16, Value) {
    let text = match status {
        400 => "The request is malformed: a header, parameter or body breaks a rule.",
        401 => "No valid Keystone token (Keystone mode only).",
        403 => "The policy does not allow the operation, or the resource may not be changed.",
        404 => "No such resource, or a route this server does not serve.",
        405 => "The path does not answer this method.",
        406 => "The client does not accept `application/json`.",
        409 => "The resource conflicts with one that exists.",
        415 => "The body's media type is not the one required.",
        503 => "The store could not be reached.",
        _ => "Error.",
    };
    (
        status,
        json!({
            "description": text,
            "headers": { "X-Openstack-Request-Id": { "$ref": "#/components/headers/RequestId" } },
            "content": json_content(schema_ref("Error")),
        }),
    )
}

/// The errors every operation with a request context may answer.
fn context_errors(extra: &[u16]) -> Vec<(u16, Value)> {
    let mut statuses = vec![400, 401, 403, 404, 406, 503];
    statuses.extend_from_slice(extra);
    statuses.sort_unstable();
    statuses.dedup();
    statuses.into_iter().map(error).collect()
}

fn with_errors(mut ok: Vec<(u16, Value)>, extra: &[u16]) -> Vec<(u16, Value)> {
    ok.extend(context_errors(extra));
    ok
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({
        "name": name,
        "in": "query",
        "required": false,
        "description": description,
        "schema": schema,
    })
}

fn limit_param(what: &str, max: i64) -> Value {
    query(
        "limit",
        &format!("How many {what} to return (default and maximum: {max})."),
        json!({ "type": "integer", "minimum": 1, "maximum": max }),
    )
}

fn wait_param(what: &str, max: i64) -> Value {
    query(
        "wait",
        &format!(
            "Long polling: wait up to this many seconds (at most {max}) for {what}, answering as \
             soon as there is one (an extension; no Zaqar has it)."
        ),
        json!({ "type": "integer", "minimum": 0, "maximum": max }),
    )
}

fn marker_param() -> Value {
    query(
        "marker",
        "Where the page starts: the marker of the previous page's `next` link.",
        json!({ "type": "string" }),
    )
}

fn bool_param(name: &str, description: &str) -> Value {
    query(name, description, json!({ "type": "boolean" }))
}

fn required_body(schema: Value, description: &str) -> Value {
    json!({ "required": true, "description": description, "content": json_content(schema) })
}

fn optional_body(schema: Value, description: &str) -> Value {
    json!({ "required": false, "description": description, "content": json_content(schema) })
}

/// The claim document `{"ttl", "grace"}` within the server's bounds.
fn claim_body_schema(limits: &TransportConfig) -> Value {
    json!({
        "type": "object",
        "properties": {
            "ttl": { "type": "integer", "minimum": MIN_CLAIM_TTL, "maximum": limits.max_claim_ttl,
                     "description": "How long the claim lasts, seconds." },
            "grace": { "type": "integer", "minimum": MIN_CLAIM_GRACE, "maximum": limits.max_claim_grace,
                       "description": "How much longer the claimed messages live past the claim, seconds." },
        },
    })
}

/// The subscription document (`subscriber` required on create).
fn subscription_body_schema(limits: &TransportConfig, create: bool) -> Value {
    let schemes = limits
        .subscriber_types
        .iter()
        .map(|s| regex_escape(s))
        .collect::<Vec<_>>()
        .join("|");
    let mut schema = json!({
        "type": "object",
        "properties": {
            "subscriber": { "type": "string", "pattern": format!("^({schemes}):"),
                            "description": "Where notifications go: a URI of an accepted scheme." },
            "ttl": { "type": "integer", "minimum": MIN_SUBSCRIPTION_TTL,
                     "description": "Lifetime, seconds." },
            "options": { "type": "object", "description": "Delivery options." },
        },
    });
    if create {
        schema["required"] = json!(["subscriber"]);
    }
    schema
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escape = matches!(
                c,
                '.' | '+' | '*' | '?' | '(' | ')' | '[' | ']' | '|' | '^' | '$' | '\\'
            );
            escape.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect()
}

/// The entry of `kind` in the document.
pub fn describe(kind: OperationKind, cx: &DocContext<'_>) -> OperationDoc {
    use OperationKind::*;
    let l = cx.limits;
    let mut doc = OperationDoc {
        summary: "",
        description: "",
        tag: "",
        id_param: None,
        query: Vec::new(),
        request: None,
        responses: Vec::new(),
        head: false,
        links: Vec::new(),
    };
    // A topic operation is its queue counterpart on `/v2/topics`.
    if let Some(queue_kind) = kind.queue_counterpart() {
        let mut doc = describe(queue_kind, cx);
        doc.tag = "Topics";
        if kind == TopicList {
            // The one answer of another shape: the page's key is `topics`.
            doc.summary = "List topics";
            doc.description = "A page of the project's topics, by name.";
            for (status, response) in &mut doc.responses {
                if *status == 200 {
                    *response = body("A page of topics.", schema_ref("TopicList"));
                }
            }
        }
        return doc;
    }
    let ok = |schema: &str, text: &str| (200, body(text, schema_ref(schema)));
    let no_content = |text: &str| (204, empty(text));
    match kind {
        // Described as their queue counterparts (above).
        TopicList
        | TopicCreate
        | TopicGet
        | TopicUpdate
        | TopicDelete
        | TopicStats
        | TopicPurge
        | TopicMessagePost
        | TopicMessageList
        | TopicMessageGetMany
        | TopicMessageDeleteMany
        | TopicMessageGet
        | TopicMessageDelete
        | TopicSubscriptionList
        | TopicSubscriptionCreate
        | TopicSubscriptionGet
        | TopicSubscriptionUpdate
        | TopicSubscriptionDelete
        | TopicSubscriptionConfirm => {}
        GetVersions => {
            doc.summary = "List the API versions";
            doc.description = "The versions this server speaks. Needs no authentication.";
            doc.tag = "Versions";
            doc.responses = vec![
                (300, body("The versions.", schema_ref("Versions"))),
                error(406),
            ];
        }
        GetOpenApi => {
            doc.summary = "Get this document";
            doc.description =
                "The OpenAPI 3.1 document of the API as this server serves it (its limits, its \
                 auth strategy, its admin routes). Needs no authentication.";
            doc.tag = "Versions";
            doc.responses = vec![
                (200, body("The document.", json!({ "type": "object" }))),
                error(406),
            ];
        }
        GetHomeDoc => {
            doc.summary = "Get the home document";
            doc.description =
                "The JSON-Home document of the v2 API: its resources and their URI templates.";
            doc.tag = "Versions";
            doc.responses = with_errors(
                vec![(
                    200,
                    json!({
                        "description": "The home document.",
                        "headers": { "X-Openstack-Request-Id": { "$ref": "#/components/headers/RequestId" } },
                        "content": { "application/json-home": { "schema": schema_ref("HomeDocument") } },
                    }),
                )],
                &[],
            );
        }
        Ping => {
            doc.summary = "Ping the node";
            doc.description =
                "`GET` asks the message store; `HEAD` only checks that the server answers.";
            doc.tag = "Health";
            doc.head = true;
            let mut responses = vec![
                no_content("The node is alive."),
                (503, empty("The store does not answer.")),
            ];
            responses.extend(
                context_errors(&[])
                    .into_iter()
                    .filter(|(status, _)| *status != 503),
            );
            doc.responses = responses;
        }
        CheckHealth => {
            doc.summary = "Check the node's health";
            doc.description = "The state of the store and of each pool. Admin mode only.";
            doc.tag = "Health";
            doc.responses = with_errors(vec![ok("Health", "The health document.")], &[]);
        }
        QueueList => {
            doc.summary = "List queues";
            doc.description = "A page of the project's queues, in name order, with a `next` link when the page is not empty. Any other query parameter filters on metadata: `?node=31` lists the queues whose metadata holds `node` equal to 31 (an integer when the value reads as one).";
            doc.tag = "Queues";
            doc.query = vec![
                marker_param(),
                limit_param("queues", l.max_queues_per_page),
                bool_param("detailed", "Show each queue's metadata."),
                bool_param("with_count", "Add the number of queues of the project."),
                query(
                    "name",
                    "Only queues whose name contains this.",
                    json!({ "type": "string" }),
                ),
            ];
            doc.responses = with_errors(vec![ok("QueueList", "A page of queues.")], &[]);
        }
        QueueCreate => {
            doc.summary = "Create a queue";
            doc.description =
                "Creates the queue with the given metadata; an existing queue keeps its own.";
            doc.tag = "Queues";
            doc.request = Some(optional_body(
                schema_ref("QueueMetadata"),
                "The queue's metadata (reserved keys start with `_`).",
            ));
            doc.responses = with_errors(
                vec![
                    (201, located(empty("The queue was created."), "The queue.")),
                    (204, located(empty("The queue existed."), "The queue.")),
                ],
                &[],
            );
            let uses = [
                MessagePost,
                MessageList,
                QueueGet,
                QueueUpdate,
                QueueStats,
                QueueShare,
                ClaimCreate,
                SubscriptionCreate,
                SubscriptionList,
                QueuePurge,
                QueueDelete,
            ];
            doc.links = links_to(201, &uses, &[]);
            doc.links.extend(links_to(204, &uses, &[]));
        }
        QueueGet => {
            doc.summary = "Show a queue's metadata";
            doc.description = "The queue's metadata, with the reserved keys' defaults.";
            doc.tag = "Queues";
            doc.responses = with_errors(vec![ok("QueueMetadata", "The metadata.")], &[]);
        }
        QueueUpdate => {
            doc.summary = "Update a queue's metadata";
            doc.description = "Applies a JSON-patch (`add`, `replace`, `remove` under `/metadata/`) to the queue's metadata.";
            doc.tag = "Queues";
            doc.request = Some(json!({
                "required": true,
                "description": "The changes.",
                "content": { JSON_PATCH_TYPE: { "schema": schema_ref("MetadataPatch") } },
            }));
            doc.responses = with_errors(
                vec![ok("QueueMetadata", "The metadata after the change.")],
                &[409, 415],
            );
        }
        QueueDelete => {
            doc.summary = "Delete a queue";
            doc.description =
                "Deletes the queue, its messages and claims (a missing queue is no error).";
            doc.tag = "Queues";
            doc.responses = with_errors(vec![no_content("The queue is gone.")], &[]);
        }
        QueueStats => {
            doc.summary = "Show a queue's statistics";
            doc.description =
                "Message counts, with the oldest and newest message when there are messages.";
            doc.tag = "Queues";
            doc.responses = with_errors(vec![ok("QueueStats", "The statistics.")], &[]);
        }
        QueuePurge => {
            doc.summary = "Purge a queue";
            doc.description =
                "Deletes the queue's messages and/or subscriptions, keeping the queue.";
            doc.tag = "Queues";
            doc.request = Some(optional_body(
                json!({
                    "type": "object",
                    "properties": {
                        "resource_types": {
                            "type": "array",
                            "items": { "enum": ["messages", "subscriptions"] },
                        },
                    },
                }),
                "What to purge (default: both).",
            ));
            doc.responses = with_errors(vec![no_content("Purged.")], &[]);
        }
        QueueShare => {
            doc.summary = "Pre-sign a URL of a queue";
            doc.description = "Signs a grant on the queue's messages, claims or subscriptions that a client without credentials can present in the `URL-*` headers.";
            doc.tag = "Queues";
            doc.request = Some(optional_body(
                json!({
                    "type": "object",
                    "properties": {
                        "methods": { "type": "array", "items": { "enum": ["GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE"] } },
                        "paths": { "type": "array", "items": { "enum": ["messages", "subscriptions", "claims"] } },
                        "expires": { "type": "string", "description": "When the grant expires (ISO 8601, UTC; default in a day)." },
                    },
                    "additionalProperties": false,
                }),
                "What the grant allows.",
            ));
            doc.responses = with_errors(vec![ok("SignedUrl", "The signed grant.")], &[]);
        }
        MessagePost => {
            doc.summary = "Post messages";
            doc.description = "Enqueues the messages (creating the queue if needed), in order.";
            doc.tag = "Messages";
            doc.request = Some(required_body(
                json!({
                    "type": "object",
                    "required": ["messages"],
                    "properties": {
                        "messages": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["body"],
                                "properties": {
                                    "body": { "description": "Any JSON document." },
                                    "ttl": { "type": "integer", "minimum": MIN_MESSAGE_TTL, "maximum": l.max_message_ttl },
                                    "delay": { "type": "integer", "minimum": 0, "maximum": l.max_message_delay },
                                },
                            },
                        },
                    },
                }),
                &format!(
                    "The messages (at most {} bytes in all).",
                    l.max_messages_post_size
                ),
            ));
            doc.responses = with_errors(
                vec![(
                    201,
                    located(
                        body("The messages were enqueued.", schema_ref("Posted")),
                        "The new messages (`?ids=`).",
                    ),
                )],
                &[],
            );
            let first = (
                "path.message_id",
                "$response.body#/resources/0#regex:/messages/([^/?]+)$",
            );
            doc.links = links_to(201, &[MessageGet, MessageDelete], &[first]);
            doc.links
                .extend(links_to(201, &[ClaimCreate, MessageList, QueueStats], &[]));
        }
        MessageList => {
            doc.summary = "List messages";
            doc.description = "A page of the queue's messages, oldest first; with `ids`, those messages (see *Get a set of messages*).";
            doc.tag = "Messages";
            doc.query = vec![
                marker_param(),
                limit_param("messages", l.max_messages_per_page),
                bool_param("echo", "Include the messages this client posted."),
                bool_param("include_claimed", "Include claimed messages."),
                bool_param("include_delayed", "Include messages still delayed."),
                wait_param("a message to list", l.max_long_poll_wait),
            ];
            doc.responses = with_errors(vec![ok("MessageList", "A page of messages.")], &[]);
        }
        MessageGetMany => {
            doc.summary = "Get a set of messages";
            doc.description = "The messages named in `ids` that exist.";
            doc.tag = "Messages";
            doc.query = vec![query(
                "ids",
                &format!(
                    "Message ids, comma-separated (at most {}).",
                    l.max_messages_per_page
                ),
                json!({ "type": "string" }),
            )];
            doc.responses = with_errors(vec![ok("Messages", "The messages.")], &[]);
        }
        MessageDeleteMany => {
            doc.summary = "Delete a set of messages, or pop";
            doc.description = "Deletes the messages named in `ids` (with their `claim_ids` when claimed), or claims and deletes `pop` messages at once, answering them.";
            doc.tag = "Messages";
            doc.query = vec![
                query(
                    "ids",
                    "Message ids, comma-separated.",
                    json!({ "type": "string" }),
                ),
                query(
                    "claim_ids",
                    "Claim ids of claimed messages, comma-separated.",
                    json!({ "type": "string" }),
                ),
                query(
                    "pop",
                    "How many messages to pop.",
                    json!({ "type": "integer", "minimum": 1, "maximum": l.max_messages_per_claim_or_pop }),
                ),
            ];
            doc.responses = with_errors(
                vec![
                    ok("Popped", "The popped messages."),
                    no_content("The messages are gone."),
                ],
                &[],
            );
        }
        MessageGet => {
            doc.summary = "Get a message";
            doc.description = "One message.";
            doc.tag = "Messages";
            doc.id_param = Some(("message_id", "The message's id."));
            doc.responses = with_errors(vec![ok("Message", "The message.")], &[]);
        }
        MessageDelete => {
            doc.summary = "Delete a message";
            doc.description = "Deletes the message; a claimed one only with its live `claim_id`.";
            doc.tag = "Messages";
            doc.id_param = Some(("message_id", "The message's id."));
            doc.query = vec![query(
                "claim_id",
                "The claim holding the message.",
                json!({ "type": "string" }),
            )];
            doc.responses = with_errors(vec![no_content("The message is gone.")], &[]);
        }
        ClaimCreate => {
            doc.summary = "Claim messages";
            doc.description =
                "Claims up to `limit` free messages for `ttl` seconds; 204 when there are none.";
            doc.tag = "Claims";
            doc.query = vec![
                limit_param("messages", l.max_messages_per_claim_or_pop),
                wait_param("a message to claim", l.max_long_poll_wait),
            ];
            doc.request = Some(optional_body(
                claim_body_schema(l),
                "The claim's lifetime and grace (the server's defaults otherwise).",
            ));
            doc.responses = with_errors(
                vec![
                    (
                        201,
                        located(
                            body("The claimed messages.", schema_ref("Messages")),
                            "The claim.",
                        ),
                    ),
                    no_content("No message could be claimed."),
                ],
                &[],
            );
            let claim = (
                "path.claim_id",
                "$response.header.Location#regex:/claims/([^/?]+)$",
            );
            doc.links = links_to(201, &[ClaimGet, ClaimUpdate, ClaimDelete], &[claim]);
            doc.links.extend(links_to(
                201,
                &[MessageDelete],
                &[
                    ("path.message_id", "$response.body#/messages/0/id"),
                    (
                        "query.claim_id",
                        "$response.header.Location#regex:/claims/([^/?]+)$",
                    ),
                ],
            ));
        }
        ClaimGet => {
            doc.summary = "Show a claim";
            doc.description = "The claim and its messages.";
            doc.tag = "Claims";
            doc.id_param = Some(("claim_id", "The claim's id."));
            doc.responses = with_errors(vec![ok("Claim", "The claim.")], &[]);
        }
        ClaimUpdate => {
            doc.summary = "Renew a claim";
            doc.description =
                "Sets the claim's ttl (and grace), extending its messages' lives as needed.";
            doc.tag = "Claims";
            doc.id_param = Some(("claim_id", "The claim's id."));
            doc.request = Some(required_body(
                claim_body_schema(l),
                "The new ttl and grace.",
            ));
            doc.responses = with_errors(vec![no_content("The claim was renewed.")], &[]);
        }
        ClaimDelete => {
            doc.summary = "Release a claim";
            doc.description = "Releases the claim: its messages are free again.";
            doc.tag = "Claims";
            doc.id_param = Some(("claim_id", "The claim's id."));
            doc.responses = with_errors(vec![no_content("The claim is released.")], &[]);
        }
        SubscriptionList => {
            doc.summary = "List subscriptions";
            doc.description = "A page of the queue's subscriptions.";
            doc.tag = "Subscriptions";
            doc.query = vec![
                marker_param(),
                limit_param("subscriptions", l.max_subscriptions_per_page),
            ];
            doc.responses = with_errors(
                vec![ok("SubscriptionList", "A page of subscriptions.")],
                &[],
            );
        }
        SubscriptionCreate => {
            doc.summary = "Create a subscription";
            doc.description = "Subscribes a subscriber to the queue's messages; 409 when the same subscriber is confirmed already.";
            doc.tag = "Subscriptions";
            doc.request = Some(required_body(
                subscription_body_schema(l, true),
                "The subscription.",
            ));
            doc.responses = with_errors(
                vec![(
                    201,
                    located(
                        body("The subscription.", schema_ref("SubscriptionCreated")),
                        "The subscriptions of the queue.",
                    ),
                )],
                &[409],
            );
            doc.links = links_to(
                201,
                &[
                    SubscriptionGet,
                    SubscriptionUpdate,
                    SubscriptionConfirm,
                    SubscriptionDelete,
                ],
                &[("path.subscription_id", "$response.body#/subscription_id")],
            );
        }
        SubscriptionGet => {
            doc.summary = "Show a subscription";
            doc.description = "One subscription.";
            doc.tag = "Subscriptions";
            doc.id_param = Some(("subscription_id", "The subscription's id."));
            doc.responses = with_errors(vec![ok("Subscription", "The subscription.")], &[]);
        }
        SubscriptionUpdate => {
            doc.summary = "Update a subscription";
            doc.description = "Changes the subscriber, ttl or options.";
            doc.tag = "Subscriptions";
            doc.id_param = Some(("subscription_id", "The subscription's id."));
            doc.request = Some(required_body(
                subscription_body_schema(l, false),
                "The fields to change.",
            ));
            doc.responses = with_errors(
                vec![(204, located(empty("Updated."), "The subscription."))],
                &[409],
            );
        }
        SubscriptionDelete => {
            doc.summary = "Delete a subscription";
            doc.description = "Deletes the subscription (a missing one is no error).";
            doc.tag = "Subscriptions";
            doc.id_param = Some(("subscription_id", "The subscription's id."));
            doc.responses = with_errors(vec![no_content("The subscription is gone.")], &[]);
        }
        SubscriptionConfirm => {
            doc.summary = "Confirm a subscription";
            doc.description = "Confirms (or unconfirms) the subscription: the subscriber's answer to the confirmation request.";
            doc.tag = "Subscriptions";
            doc.id_param = Some(("subscription_id", "The subscription's id."));
            doc.request = Some(required_body(
                json!({
                    "type": "object",
                    "required": ["confirmed"],
                    "properties": { "confirmed": { "type": "boolean" } },
                }),
                "The confirmation.",
            ));
            doc.responses = with_errors(
                vec![(204, located(empty("Confirmed."), "The subscription."))],
                &[],
            );
        }
        PoolList => {
            doc.summary = "List pools";
            doc.description = "A page of the pools. Admin mode with pooling only.";
            doc.tag = "Pools";
            doc.query = vec![
                marker_param(),
                limit_param("pools", l.max_pools_per_page),
                bool_param("detailed", "Show each pool's options."),
            ];
            doc.responses = with_errors(vec![ok("PoolList", "A page of pools.")], &[]);
        }
        PoolCreate => {
            doc.summary = "Create a pool";
            doc.description = "Registers a store as a pool.";
            doc.tag = "Pools";
            doc.id_param = Some(("pool_name", "The pool's name."));
            doc.request = Some(required_body(
                json!({
                    "allOf": [schema_ref("PoolRequest")],
                    "required": ["uri", "weight"],
                }),
                "The pool.",
            ));
            doc.responses = with_errors(
                vec![(201, located(empty("The pool was created."), "The pool."))],
                &[409],
            );
        }
        PoolGet => {
            doc.summary = "Show a pool";
            doc.description = "One pool.";
            doc.tag = "Pools";
            doc.id_param = Some(("pool_name", "The pool's name."));
            doc.query = vec![bool_param("detailed", "Show the pool's options.")];
            doc.responses = with_errors(vec![ok("Pool", "The pool.")], &[]);
        }
        PoolUpdate => {
            doc.summary = "Update a pool";
            doc.description = "Changes the pool's uri, weight, flavor or options.";
            doc.tag = "Pools";
            doc.id_param = Some(("pool_name", "The pool's name."));
            doc.request = Some(required_body(
                schema_ref("PoolRequest"),
                "The fields to change.",
            ));
            doc.responses = with_errors(vec![ok("Pool", "The pool.")], &[409]);
        }
        PoolDelete => {
            doc.summary = "Delete a pool";
            doc.description = "Removes the pool (refused while a flavor still needs it).";
            doc.tag = "Pools";
            doc.id_param = Some(("pool_name", "The pool's name."));
            doc.responses = with_errors(vec![no_content("The pool is gone.")], &[409]);
        }
        FlavorList => {
            doc.summary = "List flavors";
            doc.description = "A page of the project's flavors. Admin mode with pooling only.";
            doc.tag = "Flavors";
            doc.query = vec![
                marker_param(),
                limit_param("flavors", l.max_flavors_per_page),
                bool_param("detailed", "Show each flavor's capabilities."),
            ];
            doc.responses = with_errors(vec![ok("FlavorList", "A page of flavors.")], &[]);
        }
        FlavorCreate => {
            doc.summary = "Create a flavor";
            doc.description = "Creates a flavor over the given pools.";
            doc.tag = "Flavors";
            doc.id_param = Some(("flavor_name", "The flavor's name."));
            doc.request = Some(required_body(
                json!({
                    "allOf": [schema_ref("FlavorRequest")],
                    "required": ["pool_list"],
                }),
                "The flavor.",
            ));
            doc.responses = with_errors(
                vec![(
                    201,
                    located(empty("The flavor was created."), "The flavor."),
                )],
                &[409],
            );
        }
        FlavorGet => {
            doc.summary = "Show a flavor";
            doc.description = "One flavor with its pools and capabilities.";
            doc.tag = "Flavors";
            doc.id_param = Some(("flavor_name", "The flavor's name."));
            doc.responses = with_errors(vec![ok("Flavor", "The flavor.")], &[]);
        }
        FlavorUpdate => {
            doc.summary = "Update a flavor";
            doc.description = "Replaces the flavor's pools.";
            doc.tag = "Flavors";
            doc.id_param = Some(("flavor_name", "The flavor's name."));
            doc.request = Some(required_body(
                schema_ref("FlavorRequest"),
                "The fields to change.",
            ));
            doc.responses = with_errors(vec![ok("Flavor", "The flavor.")], &[409]);
        }
        FlavorDelete => {
            doc.summary = "Delete a flavor";
            doc.description = "Deletes the flavor (its pools stay).";
            doc.tag = "Flavors";
            doc.id_param = Some(("flavor_name", "The flavor's name."));
            doc.responses = with_errors(vec![no_content("The flavor is gone.")], &[]);
        }
    }
    doc
}

/// The path of `kind` in the document: its route with named parameters.
pub fn path_of(kind: OperationKind, doc: &OperationDoc) -> String {
    let (_, template) = kind.http_route();
    let id = doc.id_param.map_or("id", |(name, _)| name);
    template
        .replace("{queue}", "{queue_name}")
        .replace("{id}", &format!("{{{id}}}"))
}

/// The header parameters of an operation that needs a request context.
fn context_parameters(cx: &DocContext<'_>) -> Vec<Value> {
    let client_id = match cx.limits.client_id_uuid_safe {
        ClientIdMode::Strict => json!({ "type": "string", "format": "uuid" }),
        ClientIdMode::Off => json!({
            "type": "string",
            "minLength": cx.limits.min_length_client_id,
            "maxLength": cx.limits.max_length_client_id,
        }),
    };
    vec![
        json!({
            "name": "Client-ID",
            "in": "header",
            "required": true,
            "description": "The client's id: what `echo` compares and what a message's poster is.",
            "schema": client_id,
        }),
        json!({
            "name": "X-Project-ID",
            "in": "header",
            // With Keystone the project comes from the token.
            "required": cx.auth == AuthStrategy::None,
            "description": "The project (tenant) the request acts in.",
            "schema": { "type": "string", "minLength": 1, "maxLength": 256 },
        }),
        json!({
            "name": "URL-Expires",
            "in": "header",
            "required": false,
            "description": "With `URL-Signature`: the grant's expiry.",
            "schema": { "type": "string" },
        }),
        json!({
            "name": "URL-Methods",
            "in": "header",
            "required": false,
            "description": "With `URL-Signature`: the methods granted, comma-separated.",
            "schema": { "type": "string" },
        }),
        json!({
            "name": "URL-Paths",
            "in": "header",
            "required": false,
            "description": "With `URL-Signature`: the paths granted, comma-separated.",
            "schema": { "type": "string" },
        }),
    ]
}

/// Merges `extra` into the operation object `op` (two kinds on one route:
/// message listing and the listing by ids): parameters by name, responses
/// by status (either schema).
fn merge_operation(op: &mut Value, extra: Value) {
    let names: Vec<String> = op["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if let (Some(ps), Some(more)) = (
        op["parameters"].as_array_mut(),
        extra["parameters"].as_array(),
    ) {
        for p in more {
            if !names.iter().any(|n| Some(n.as_str()) == p["name"].as_str()) {
                ps.push(p.clone());
            }
        }
    }
    if let (Some(rs), Some(more)) = (
        op["responses"].as_object_mut(),
        extra["responses"].as_object(),
    ) {
        for (status, r) in more {
            match rs.get_mut(status) {
                None => {
                    rs.insert(status.clone(), r.clone());
                }
                Some(existing) => {
                    let (a, b) = (
                        existing
                            .pointer("/content/application~1json/schema")
                            .cloned(),
                        r.pointer("/content/application~1json/schema").cloned(),
                    );
                    if let (Some(a), Some(b)) = (a, b) {
                        if a != b {
                            existing["content"]["application/json"]["schema"] =
                                json!({ "anyOf": [a, b] });
                        }
                    }
                }
            }
        }
    }
    let summary = format!(
        "{} / {}",
        op["summary"].as_str().unwrap_or_default(),
        extra["summary"].as_str().unwrap_or_default()
    );
    op["summary"] = summary.into();
    let description = format!(
        "{}\n\n{}",
        op["description"].as_str().unwrap_or_default(),
        extra["description"].as_str().unwrap_or_default()
    );
    op["description"] = description.into();
    if let Some(ids) = extra["x-operation-kinds"].as_array() {
        if let Some(kinds) = op["x-operation-kinds"].as_array_mut() {
            kinds.extend(ids.iter().cloned());
        }
    }
}

/// The operation object of `kind` for method `method`.
fn operation_object(
    kind: OperationKind,
    doc: &OperationDoc,
    cx: &DocContext<'_>,
    head: bool,
) -> Value {
    let mut parameters = Vec::new();
    let (_, template) = kind.http_route();
    if template.contains("{queue}") {
        parameters.push(json!({
            "name": "queue_name",
            "in": "path",
            "required": true,
            "description": "The queue's name.",
            "schema": { "type": "string", "pattern": "^[A-Za-z0-9_.-]+$", "minLength": 1,
                        "maxLength": QUEUE_NAME_MAX_LEN },
        }));
    }
    if let Some((name, text)) = doc.id_param {
        parameters.push(json!({
            "name": name,
            "in": "path",
            "required": true,
            "description": text,
            "schema": { "type": "string", "minLength": 1 },
        }));
    }
    if kind.needs_context() {
        parameters.extend(context_parameters(cx));
    }
    parameters.extend(doc.query.iter().cloned());
    let mut responses = Map::new();
    for (status, response) in &doc.responses {
        let mut response = response.clone();
        if head {
            if let Some(r) = response.as_object_mut() {
                r.remove("content");
            }
        }
        responses.insert(status.to_string(), response);
    }
    let mut op = json!({
        "operationId": if head { format!("{}_head", kind.name()) } else { kind.name().to_owned() },
        "summary": doc.summary,
        "description": doc.description,
        "tags": [doc.tag],
        "parameters": parameters,
        "responses": responses,
        "x-operation-kinds": [kind.name()],
    });
    if let (Some(request), false) = (&doc.request, head) {
        op["requestBody"] = request.clone();
    }
    if kind.is_open() {
        op["security"] = json!([]);
    } else if kind.needs_context() {
        let mut security = Vec::new();
        match cx.auth {
            AuthStrategy::None => security.push(json!({})),
            AuthStrategy::Keystone => security.push(json!({ "keystone": [] })),
        }
        security.push(json!({ "signedUrl": [] }));
        op["security"] = Value::Array(security);
    }
    op
}

/// The links of `doc` (to operations the server serves) into its
/// operation object, each carrying the request's context headers.
fn add_links(op: &mut Value, doc: &OperationDoc, serves: &impl Fn(OperationKind) -> bool) {
    for link in doc.links.iter().filter(|l| serves(l.target)) {
        let mut parameters = Map::new();
        for (name, expr) in &link.parameters {
            parameters.insert((*name).to_owned(), Value::from(*expr));
        }
        for header in ["Client-ID", "X-Project-ID"] {
            parameters.insert(
                format!("header.{header}"),
                Value::from(format!("$request.header.{header}")),
            );
        }
        let name = link.target.name();
        op["responses"][link.status.to_string()]["links"][name] = json!({
            "operationId": name,
            "parameters": parameters,
        });
    }
}

/// The whole document for a server with `config`, listing the operations
/// `serves` says it has.
pub fn document(config: &Config, serves: impl Fn(OperationKind) -> bool) -> Value {
    let cx = DocContext {
        limits: &config.transport,
        auth: config.auth_strategy,
    };
    let mut paths = Map::new();
    let mut tags: Vec<&str> = Vec::new();
    for kind in OperationKind::ALL {
        if !serves(kind) {
            continue;
        }
        let doc = describe(kind, &cx);
        if !tags.contains(&doc.tag) {
            tags.push(doc.tag);
        }
        let path = path_of(kind, &doc);
        let (method, _) = kind.http_route();
        let method = method.to_ascii_lowercase();
        let item = paths
            .entry(path)
            .or_insert_with(|| Value::Object(Map::new()));
        let mut op = operation_object(kind, &doc, &cx, false);
        add_links(&mut op, &doc, &serves);
        match item.get_mut(&method) {
            Some(existing) => merge_operation(existing, op),
            None => {
                item[&method] = op;
            }
        }
        if doc.head {
            item["head"] = operation_object(kind, &doc, &cx, true);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Zaqar messaging API",
            "version": "2.0",
            "description": "The v2 HTTP API of the OpenStack messaging service, as this server serves it. \
                            Every error answers `{\"title\", \"description\"}`.",
            "license": { "name": "Apache 2.0", "identifier": "Apache-2.0" },
        },
        "servers": [{ "url": "/" }],
        "tags": tags.iter().map(|t| json!({ "name": t })).collect::<Vec<_>>(),
        "paths": paths,
        "components": components(),
    })
}

/// The shared schemas, headers and security schemes.
fn components() -> Value {
    let link = json!({
        "type": "object",
        "required": ["rel", "href"],
        "properties": { "rel": { "type": "string" }, "href": { "type": "string" } },
    });
    let links = json!({ "type": "array", "items": schema_ref("Link") });
    let message = json!({
        "type": "object",
        "required": ["id", "ttl", "age", "body", "href"],
        "properties": {
            "id": { "type": "string" },
            "ttl": { "type": "integer" },
            "age": { "type": "integer", "minimum": 0 },
            "body": { "description": "The body as posted." },
            "href": { "type": "string" },
            "checksum": { "type": "string", "description": "`MD5:<hex>` when checksums are on." },
        },
        "additionalProperties": false,
    });
    let stamp = json!({
        "type": "object",
        "required": ["age", "created", "href"],
        "properties": {
            "age": { "type": "integer", "minimum": 0 },
            "created": { "type": "string" },
            "href": { "type": "string" },
        },
    });
    json!({
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["title"],
                "properties": {
                    "title": { "type": "string" },
                    "description": { "type": "string" },
                },
            },
            "Link": link,
            "Versions": {
                "type": "object",
                "required": ["versions"],
                "properties": { "versions": { "type": "array", "items": { "type": "object" } } },
            },
            "HomeDocument": {
                "type": "object",
                "required": ["resources"],
                "properties": { "resources": { "type": "object" } },
            },
            "Health": { "type": "object" },
            "QueueMetadata": {
                "type": "object",
                "description": "Free-form metadata; reserved keys start with `_` (`_default_message_ttl`, `_max_messages_post_size`, `_dead_letter_queue`, ...).",
            },
            "MetadataPatch": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["op", "path"],
                    "properties": {
                        "op": { "enum": ["add", "replace", "remove"] },
                        "path": { "type": "string", "pattern": "^/metadata/" },
                        "value": {},
                    },
                },
            },
            "QueueList": {
                "type": "object",
                "required": ["queues", "links"],
                "properties": {
                    "queues": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "href"],
                            "properties": {
                                "name": { "type": "string" },
                                "href": { "type": "string" },
                                "metadata": schema_ref("QueueMetadata"),
                            },
                        },
                    },
                    "links": links,
                    "count": { "type": "integer", "minimum": 1 },
                },
            },
            "TopicList": {
                "type": "object",
                "required": ["topics", "links"],
                "properties": {
                    "topics": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "href"],
                            "properties": {
                                "name": { "type": "string" },
                                "href": { "type": "string" },
                                "metadata": schema_ref("QueueMetadata"),
                            },
                        },
                    },
                    "links": links,
                    "count": { "type": "integer", "minimum": 1 },
                },
            },
            "QueueStats": {
                "type": "object",
                "required": ["messages"],
                "properties": {
                    "messages": {
                        "type": "object",
                        "required": ["claimed", "free", "total"],
                        "properties": {
                            "claimed": { "type": "integer", "minimum": 0 },
                            "free": { "type": "integer", "minimum": 0 },
                            "total": { "type": "integer", "minimum": 0 },
                            "oldest": stamp,
                            "newest": stamp,
                        },
                    },
                },
            },
            "SignedUrl": {
                "type": "object",
                "required": ["paths", "methods", "project", "expires", "signature"],
                "properties": {
                    "paths": { "type": "array", "items": { "type": "string" } },
                    "methods": { "type": "array", "items": { "type": "string" } },
                    "project": { "type": "string" },
                    "expires": { "type": "string" },
                    "signature": { "type": "string" },
                },
            },
            "Message": message,
            "Messages": {
                "type": "object",
                "required": ["messages"],
                "properties": { "messages": { "type": "array", "items": schema_ref("Message") } },
            },
            "MessageList": {
                "type": "object",
                "required": ["messages", "links"],
                "properties": {
                    "messages": { "type": "array", "items": schema_ref("Message") },
                    "links": links,
                },
            },
            "Popped": {
                "type": "object",
                "required": ["messages"],
                "properties": {
                    "messages": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["id", "age", "ttl", "body", "claim_id", "claim_count"],
                            "properties": {
                                "id": { "type": "string" },
                                "age": { "type": "integer", "minimum": 0 },
                                "ttl": { "type": "integer" },
                                "body": {},
                                "claim_id": { "type": "null" },
                                "claim_count": { "type": "integer", "minimum": 0 },
                                "checksum": { "type": "string" },
                            },
                        },
                    },
                },
            },
            "Posted": {
                "type": "object",
                "required": ["resources"],
                "properties": { "resources": { "type": "array", "items": { "type": "string" } } },
            },
            "Claim": {
                "type": "object",
                "required": ["age", "ttl", "messages", "href"],
                "properties": {
                    "age": { "type": "integer", "minimum": 0 },
                    "ttl": { "type": "integer" },
                    "messages": { "type": "array", "items": schema_ref("Message") },
                    "href": { "type": "string" },
                },
            },
            "Subscription": {
                "type": "object",
                "required": ["id", "source", "subscriber", "ttl", "age", "options", "confirmed"],
                "properties": {
                    "id": { "type": "string" },
                    "source": { "type": "string" },
                    "subscriber": { "type": "string" },
                    "ttl": { "type": "integer" },
                    "age": { "type": "integer", "minimum": 0 },
                    "options": { "type": "object" },
                    "confirmed": { "type": "boolean" },
                },
            },
            "SubscriptionList": {
                "type": "object",
                "required": ["subscriptions", "links"],
                "properties": {
                    "subscriptions": { "type": "array", "items": schema_ref("Subscription") },
                    "links": links,
                },
            },
            "SubscriptionCreated": {
                "type": "object",
                "required": ["subscription_id"],
                "properties": { "subscription_id": { "type": "string" } },
            },
            "PoolRequest": {
                "type": "object",
                "properties": {
                    "uri": { "type": "string" },
                    "weight": { "type": "integer", "minimum": 0 },
                    "flavor": { "type": ["string", "null"] },
                    "options": { "type": "object" },
                },
                "additionalProperties": false,
            },
            "Pool": {
                "type": "object",
                "required": ["name", "flavor", "uri", "weight", "href"],
                "properties": {
                    "name": { "type": "string" },
                    "flavor": { "type": ["string", "null"] },
                    "uri": { "type": "string" },
                    "weight": { "type": "integer" },
                    "options": { "type": "object" },
                    "href": { "type": "string" },
                },
            },
            "PoolList": {
                "type": "object",
                "required": ["pools", "links"],
                "properties": {
                    "pools": { "type": "array", "items": schema_ref("Pool") },
                    "links": links,
                },
            },
            "FlavorRequest": {
                "type": "object",
                "properties": {
                    "pool_list": { "type": "array", "items": { "type": "string" }, "minItems": 1 },
                    "capabilities": { "type": "object" },
                },
                "additionalProperties": false,
            },
            "Flavor": {
                "type": "object",
                "required": ["name", "href"],
                "properties": {
                    "name": { "type": "string" },
                    "pool_list": { "type": "array", "items": { "type": "string" } },
                    "capabilities": { "type": "array", "items": { "type": "string" } },
                    "href": { "type": "string" },
                },
            },
            "FlavorList": {
                "type": "object",
                "required": ["flavors", "links"],
                "properties": {
                    "flavors": { "type": "array", "items": schema_ref("Flavor") },
                    "links": links,
                },
            },
        },
        "headers": {
            "RequestId": {
                "description": "The request's id (`req-<uuid>`), also in the server's log.",
                "schema": { "type": "string", "pattern": "^req-" },
            },
        },
        "securitySchemes": {
            "keystone": {
                "type": "apiKey",
                "in": "header",
                "name": "X-Auth-Token",
                "description": "A Keystone token scoped to a project.",
            },
            "signedUrl": {
                "type": "apiKey",
                "in": "header",
                "name": "URL-Signature",
                "description": "A pre-signed URL (`POST /v2/queues/{queue_name}/share`), with its `URL-Expires`, `URL-Methods` and `URL-Paths`.",
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ini: &str) -> Config {
        Config::parse(ini).unwrap()
    }

    fn full() -> Value {
        document(
            &config("[DEFAULT]\nadmin_mode = true\npooling = true\n"),
            |_| true,
        )
    }

    /// Every `$ref` in `v` names a component of `doc`.
    fn check_refs(doc: &Value, v: &Value) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    let pointer = r.strip_prefix('#').expect("local ref");
                    assert!(doc.pointer(pointer).is_some(), "dangling {r}");
                }
                map.values().for_each(|x| check_refs(doc, x));
            }
            Value::Array(items) => items.iter().for_each(|x| check_refs(doc, x)),
            _ => {}
        }
    }

    #[test]
    fn every_operation_kind_is_described() {
        let c = config("");
        let cx = DocContext {
            limits: &c.transport,
            auth: c.auth_strategy,
        };
        for kind in OperationKind::ALL {
            let d = describe(kind, &cx);
            assert!(!d.summary.is_empty(), "{kind:?} has no summary");
            assert!(!d.description.is_empty(), "{kind:?} has no description");
            assert!(!d.tag.is_empty(), "{kind:?} has no tag");
            assert!(
                d.responses.iter().any(|(s, _)| (200..400).contains(s)),
                "{kind:?} has no success response"
            );
            for (status, response) in &d.responses {
                assert!(response["description"].is_string(), "{kind:?} {status}");
                // A ping whose store does not answer is the one bodiless error.
                if *status >= 400 && (kind, *status) != (OperationKind::Ping, 503) {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Error",
                        "{kind:?} {status} is not the error body"
                    );
                }
            }
            let (_, template) = kind.http_route();
            assert_eq!(
                template.contains("{id}"),
                d.id_param.is_some(),
                "{kind:?}: the id of {template} is not described"
            );
        }
    }

    #[test]
    fn document_names_every_operation_once() {
        let doc = full();
        let text = serde_json::to_string(&doc).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, doc);
        assert_eq!(doc["openapi"], "3.1.0");
        let mut kinds: Vec<String> = Vec::new();
        for (_, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if method == "head" {
                    continue;
                }
                for k in op["x-operation-kinds"].as_array().unwrap() {
                    kinds.push(k.as_str().unwrap().to_owned());
                }
            }
        }
        kinds.sort();
        let mut want: Vec<String> = OperationKind::ALL
            .iter()
            .map(|k| k.name().to_owned())
            .collect();
        want.sort();
        assert_eq!(kinds, want);
        check_refs(&doc, &doc);
        // Every link leads to an operation of the document, and names
        // parameters that operation has.
        let mut operations = Map::new();
        for (_, item) in doc["paths"].as_object().unwrap() {
            for (_, op) in item.as_object().unwrap() {
                operations.insert(op["operationId"].as_str().unwrap().to_owned(), op.clone());
            }
        }
        let mut links = 0;
        for op in operations.values() {
            for (_, response) in op["responses"].as_object().unwrap() {
                let Some(ls) = response["links"].as_object() else {
                    continue;
                };
                for (_, link) in ls {
                    links += 1;
                    let target = &operations[link["operationId"].as_str().unwrap()];
                    for (qualified, _) in link["parameters"].as_object().unwrap() {
                        let (place, name) = qualified.split_once('.').unwrap();
                        assert!(
                            target["parameters"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .any(|p| p["in"] == place && p["name"] == name),
                            "{} has no {qualified}",
                            link["operationId"]
                        );
                    }
                }
            }
        }
        assert!(links > 20, "{links} links");
    }

    #[test]
    fn document_follows_the_configuration() {
        let plain = document(&config(""), |k| !k.admin_mode_only());
        assert!(plain["paths"].get("/v2/pools").is_none());
        assert!(plain["paths"].get("/v2/health").is_none());
        let limit = plain["paths"]["/v2/queues"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap()
            .clone();
        assert_eq!(limit["schema"]["maximum"], 20);
        let project = |doc: &Value| {
            doc["paths"]["/v2/queues"]["get"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "X-Project-ID")
                .unwrap()["required"]
                .clone()
        };
        assert_eq!(project(&plain), true);
        let keystone = document(
            &config("[DEFAULT]\nauth_strategy = keystone\n[transport]\nmax_queues_per_page = 7\n"),
            |_| true,
        );
        assert_eq!(project(&keystone), false);
        assert_eq!(
            keystone["paths"]["/v2/queues"]["get"]["security"][0],
            json!({"keystone": []})
        );
        // The open documents ask for nothing.
        let open = &keystone["paths"]["/v2/openapi.json"]["get"];
        assert_eq!(open["security"], json!([]));
        assert!(open["parameters"].as_array().unwrap().is_empty());
    }

    #[test]
    fn the_two_message_reads_share_their_route() {
        let doc = full();
        let op = &doc["paths"]["/v2/queues/{queue_name}/messages"]["get"];
        let names: Vec<&str> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"ids") && names.contains(&"marker"));
        assert!(
            op["responses"]["200"]["content"]["application/json"]["schema"]["anyOf"].is_array()
        );
        assert!(doc["paths"]["/v2/ping"]["head"]["responses"]["204"]
            .get("content")
            .is_none());
    }
}
