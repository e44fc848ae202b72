//! The operations of the v2 API: one vocabulary for every transport.
//!
//! A transport parses its wire format into an [`Operation`] (HTTP: method,
//! path and query; WebSocket: action and body) and hands it to
//! [`Api::execute`](super::Api::execute). What is true of an operation
//! whatever carried it is a property of its [`OperationKind`]: its name
//! (the reference's WebSocket action names, extended to the operations
//! only HTTP had), its HTTP route, its policy rule, and whether it exists
//! only in admin mode.

use super::messages::{BulkDeleteParams, MessageListParams};
use super::pools::AdminListParams;
use super::queues::QueueListParams;
use super::subscriptions::SubscriptionListParams;
use super::Payload;

/// One request of the v2 API, parsed from its transport.
#[derive(Clone, Debug)]
pub enum Operation {
    /// `GET /`: the versions document.
    GetVersions,
    /// `GET /v2/`: the home document.
    GetHomeDoc,
    /// `GET /v2/openapi.json`: the OpenAPI document of the API.
    GetOpenApi,
    /// `GET /v2/ping` (`probe`: ask the store) or `HEAD /v2/ping` (not).
    Ping {
        /// Whether the store is asked (GET) or not (HEAD).
        probe: bool,
    },
    /// `GET /v2/health` (admin mode).
    CheckHealth,
    /// `GET /v2/queues`.
    QueueList(QueueListParams),
    /// `PUT /v2/queues/{q}`.
    QueueCreate {
        /// Queue name.
        queue: String,
        /// The metadata document.
        metadata: Payload,
    },
    /// `GET /v2/queues/{q}`.
    QueueGet {
        /// Queue name.
        queue: String,
    },
    /// `PATCH /v2/queues/{q}`.
    QueueUpdate {
        /// Queue name.
        queue: String,
        /// The request's `Content-Type` (must be the JSON-patch type).
        content_type: Option<String>,
        /// The JSON-patch document.
        patch: Payload,
    },
    /// `DELETE /v2/queues/{q}`.
    QueueDelete {
        /// Queue name.
        queue: String,
    },
    /// `GET /v2/queues/{q}/stats`.
    QueueStats {
        /// Queue name.
        queue: String,
        /// Tell a missing queue from an empty one (the WebSocket API answers
        /// it with 404; HTTP does not ask, and saves the lookup).
        report_missing: bool,
    },
    /// `POST /v2/queues/{q}/purge`.
    QueuePurge {
        /// Queue name.
        queue: String,
        /// `{"resource_types": [...]}`, optional.
        body: Payload,
    },
    /// `POST /v2/queues/{q}/share`.
    QueueShare {
        /// Queue name.
        queue: String,
        /// `{"methods", "paths", "expires"}`.
        body: Payload,
    },
    /// `POST /v2/queues/{q}/messages`.
    MessagePost {
        /// Queue name.
        queue: String,
        /// `{"messages": [...]}`.
        body: Payload,
    },
    /// `GET /v2/queues/{q}/messages`.
    MessageList {
        /// Queue name.
        queue: String,
        /// Paging and filters.
        params: MessageListParams,
    },
    /// `GET /v2/queues/{q}/messages?ids=...`.
    MessageGetMany {
        /// Queue name.
        queue: String,
        /// Message ids.
        ids: Vec<String>,
    },
    /// `DELETE /v2/queues/{q}/messages?ids=...|pop=N`.
    MessageDeleteMany {
        /// Queue name.
        queue: String,
        /// Ids, claim ids or pop.
        params: BulkDeleteParams,
    },
    /// `GET /v2/queues/{q}/messages/{id}`.
    MessageGet {
        /// Queue name.
        queue: String,
        /// Message id.
        id: String,
    },
    /// `DELETE /v2/queues/{q}/messages/{id}`.
    MessageDelete {
        /// Queue name.
        queue: String,
        /// Message id.
        id: String,
        /// `claim_id`, when the message is claimed.
        claim_id: Option<String>,
    },
    /// `POST /v2/queues/{q}/claims`.
    ClaimCreate {
        /// Queue name.
        queue: String,
        /// `limit`.
        limit: Option<i64>,
        /// `wait`: seconds to wait for a claimable message (long polling).
        wait: Option<i64>,
        /// `{"ttl", "grace"}`, optional.
        body: Payload,
    },
    /// `GET /v2/queues/{q}/claims/{id}`.
    ClaimGet {
        /// Queue name.
        queue: String,
        /// Claim id.
        id: String,
    },
    /// `PATCH /v2/queues/{q}/claims/{id}`.
    ClaimUpdate {
        /// Queue name.
        queue: String,
        /// Claim id.
        id: String,
        /// `{"ttl", "grace"}`.
        body: Payload,
    },
    /// `DELETE /v2/queues/{q}/claims/{id}`.
    ClaimDelete {
        /// Queue name.
        queue: String,
        /// Claim id.
        id: String,
    },
    /// `GET /v2/queues/{q}/subscriptions`.
    SubscriptionList {
        /// Queue name.
        queue: String,
        /// Paging.
        params: SubscriptionListParams,
    },
    /// `POST /v2/queues/{q}/subscriptions`.
    SubscriptionCreate {
        /// Queue name.
        queue: String,
        /// `{"subscriber", "ttl", "options"}`.
        body: Payload,
    },
    /// `GET /v2/queues/{q}/subscriptions/{id}`.
    SubscriptionGet {
        /// Queue name.
        queue: String,
        /// Subscription id.
        id: String,
    },
    /// `PATCH /v2/queues/{q}/subscriptions/{id}`.
    SubscriptionUpdate {
        /// Queue name.
        queue: String,
        /// Subscription id.
        id: String,
        /// The fields to change.
        body: Payload,
    },
    /// `DELETE /v2/queues/{q}/subscriptions/{id}`.
    SubscriptionDelete {
        /// Queue name.
        queue: String,
        /// Subscription id.
        id: String,
    },
    /// `PUT /v2/queues/{q}/subscriptions/{id}/confirm`.
    SubscriptionConfirm {
        /// Queue name.
        queue: String,
        /// Subscription id.
        id: String,
        /// `{"confirmed": bool}`.
        body: Payload,
    },
    /// `GET /v2/pools` (admin mode with pooling).
    PoolList(AdminListParams),
    /// `PUT /v2/pools/{name}`.
    PoolCreate {
        /// Pool name.
        name: String,
        /// `{"uri", "weight", "flavor", "options"}`.
        body: Payload,
    },
    /// `GET /v2/pools/{name}`.
    PoolGet {
        /// Pool name.
        name: String,
        /// Show the options.
        detailed: bool,
    },
    /// `PATCH /v2/pools/{name}`.
    PoolUpdate {
        /// Pool name.
        name: String,
        /// Fields to change.
        body: Payload,
    },
    /// `DELETE /v2/pools/{name}`.
    PoolDelete {
        /// Pool name.
        name: String,
    },
    /// `GET /v2/flavors`.
    FlavorList(AdminListParams),
    /// `PUT /v2/flavors/{name}`.
    FlavorCreate {
        /// Flavor name.
        name: String,
        /// `{"pool_list", "capabilities"}`.
        body: Payload,
    },
    /// `GET /v2/flavors/{name}`.
    FlavorGet {
        /// Flavor name.
        name: String,
    },
    /// `PATCH /v2/flavors/{name}`.
    FlavorUpdate {
        /// Flavor name.
        name: String,
        /// `{"pool_list"}`.
        body: Payload,
    },
    /// `DELETE /v2/flavors/{name}`.
    FlavorDelete {
        /// Flavor name.
        name: String,
    },
    /// An operation on a topic (`/v2/topics/...`): the queue operation of
    /// the same shape, its `queue` naming the topic.
    Topic(TopicOperation),
}

/// A queue-shaped operation acting on a topic. Only the kinds that have a
/// topic counterpart ([`OperationKind::on_topic`]) can be wrapped.
#[derive(Clone, Debug)]
pub struct TopicOperation(Box<Operation>);

impl TopicOperation {
    /// Wraps `inner` (whose queue name is the topic's), `None` when its
    /// kind has no topic counterpart (claims, share, admin operations).
    pub fn new(inner: Operation) -> Option<Self> {
        inner
            .kind()
            .on_topic()
            .is_some()
            .then(|| TopicOperation(Box::new(inner)))
    }

    /// The queue-shaped operation.
    pub fn inner(&self) -> &Operation {
        &self.0
    }

    /// The queue-shaped operation, owned.
    pub fn into_inner(self) -> Operation {
        *self.0
    }
}

/// What kind of operation a request is: everything about it that does not
/// depend on its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum OperationKind {
    GetVersions,
    GetHomeDoc,
    GetOpenApi,
    Ping,
    CheckHealth,
    QueueList,
    QueueCreate,
    QueueGet,
    QueueUpdate,
    QueueDelete,
    QueueStats,
    QueuePurge,
    QueueShare,
    MessagePost,
    MessageList,
    MessageGetMany,
    MessageDeleteMany,
    MessageGet,
    MessageDelete,
    ClaimCreate,
    ClaimGet,
    ClaimUpdate,
    ClaimDelete,
    SubscriptionList,
    SubscriptionCreate,
    SubscriptionGet,
    SubscriptionUpdate,
    SubscriptionDelete,
    SubscriptionConfirm,
    PoolList,
    PoolCreate,
    PoolGet,
    PoolUpdate,
    PoolDelete,
    FlavorList,
    FlavorCreate,
    FlavorGet,
    FlavorUpdate,
    FlavorDelete,
    TopicList,
    TopicCreate,
    TopicGet,
    TopicUpdate,
    TopicDelete,
    TopicStats,
    TopicPurge,
    TopicMessagePost,
    TopicMessageList,
    TopicMessageGetMany,
    TopicMessageDeleteMany,
    TopicMessageGet,
    TopicMessageDelete,
    TopicSubscriptionList,
    TopicSubscriptionCreate,
    TopicSubscriptionGet,
    TopicSubscriptionUpdate,
    TopicSubscriptionDelete,
    TopicSubscriptionConfirm,
}

impl OperationKind {
    /// Every kind, in the order of the API reference.
    pub const ALL: [OperationKind; 58] = [
        OperationKind::GetVersions,
        OperationKind::GetHomeDoc,
        OperationKind::GetOpenApi,
        OperationKind::Ping,
        OperationKind::CheckHealth,
        OperationKind::QueueList,
        OperationKind::QueueCreate,
        OperationKind::QueueGet,
        OperationKind::QueueUpdate,
        OperationKind::QueueDelete,
        OperationKind::QueueStats,
        OperationKind::QueuePurge,
        OperationKind::QueueShare,
        OperationKind::MessagePost,
        OperationKind::MessageList,
        OperationKind::MessageGetMany,
        OperationKind::MessageDeleteMany,
        OperationKind::MessageGet,
        OperationKind::MessageDelete,
        OperationKind::ClaimCreate,
        OperationKind::ClaimGet,
        OperationKind::ClaimUpdate,
        OperationKind::ClaimDelete,
        OperationKind::SubscriptionList,
        OperationKind::SubscriptionCreate,
        OperationKind::SubscriptionGet,
        OperationKind::SubscriptionUpdate,
        OperationKind::SubscriptionDelete,
        OperationKind::SubscriptionConfirm,
        OperationKind::PoolList,
        OperationKind::PoolCreate,
        OperationKind::PoolGet,
        OperationKind::PoolUpdate,
        OperationKind::PoolDelete,
        OperationKind::FlavorList,
        OperationKind::FlavorCreate,
        OperationKind::FlavorGet,
        OperationKind::FlavorUpdate,
        OperationKind::FlavorDelete,
        OperationKind::TopicList,
        OperationKind::TopicCreate,
        OperationKind::TopicGet,
        OperationKind::TopicUpdate,
        OperationKind::TopicDelete,
        OperationKind::TopicStats,
        OperationKind::TopicPurge,
        OperationKind::TopicMessagePost,
        OperationKind::TopicMessageList,
        OperationKind::TopicMessageGetMany,
        OperationKind::TopicMessageDeleteMany,
        OperationKind::TopicMessageGet,
        OperationKind::TopicMessageDelete,
        OperationKind::TopicSubscriptionList,
        OperationKind::TopicSubscriptionCreate,
        OperationKind::TopicSubscriptionGet,
        OperationKind::TopicSubscriptionUpdate,
        OperationKind::TopicSubscriptionDelete,
        OperationKind::TopicSubscriptionConfirm,
    ];

    /// The topic counterpart of a queue-shaped kind (`QueueGet` ->
    /// `TopicGet`, `MessagePost` -> `TopicMessagePost`, ...); `None` for
    /// kinds topics do not have (claims, share, the rest).
    pub fn on_topic(self) -> Option<OperationKind> {
        use OperationKind::*;
        Some(match self {
            QueueList => TopicList,
            QueueCreate => TopicCreate,
            QueueGet => TopicGet,
            QueueUpdate => TopicUpdate,
            QueueDelete => TopicDelete,
            QueueStats => TopicStats,
            QueuePurge => TopicPurge,
            MessagePost => TopicMessagePost,
            MessageList => TopicMessageList,
            MessageGetMany => TopicMessageGetMany,
            MessageDeleteMany => TopicMessageDeleteMany,
            MessageGet => TopicMessageGet,
            MessageDelete => TopicMessageDelete,
            SubscriptionList => TopicSubscriptionList,
            SubscriptionCreate => TopicSubscriptionCreate,
            SubscriptionGet => TopicSubscriptionGet,
            SubscriptionUpdate => TopicSubscriptionUpdate,
            SubscriptionDelete => TopicSubscriptionDelete,
            SubscriptionConfirm => TopicSubscriptionConfirm,
            _ => return None,
        })
    }

    /// The queue-shaped kind a topic kind wraps (`TopicGet` -> `QueueGet`);
    /// `None` for the kinds that are not topic kinds.
    pub fn queue_counterpart(self) -> Option<OperationKind> {
        OperationKind::ALL
            .into_iter()
            .find(|q| q.on_topic() == Some(self))
    }

    /// Whether the kind acts on topics (it has a queue counterpart).
    pub fn is_topic(self) -> bool {
        self.queue_counterpart().is_some()
    }

    /// The operation's name: the reference's WebSocket action name where
    /// it has one, else a name in the same style.
    pub fn name(self) -> &'static str {
        use OperationKind::*;
        match self {
            GetVersions => "get_versions",
            GetHomeDoc => "get_home_doc",
            GetOpenApi => "get_openapi",
            Ping => "ping_node",
            CheckHealth => "check_node_health",
            QueueList => "queue_list",
            QueueCreate => "queue_create",
            QueueGet => "queue_get",
            QueueUpdate => "queue_update",
            QueueDelete => "queue_delete",
            QueueStats => "queue_get_stats",
            QueuePurge => "queue_purge",
            QueueShare => "queue_share",
            MessagePost => "message_post",
            MessageList => "message_list",
            MessageGetMany => "message_get_many",
            MessageDeleteMany => "message_delete_many",
            MessageGet => "message_get",
            MessageDelete => "message_delete",
            ClaimCreate => "claim_create",
            ClaimGet => "claim_get",
            ClaimUpdate => "claim_update",
            ClaimDelete => "claim_delete",
            SubscriptionList => "subscription_list",
            SubscriptionCreate => "subscription_create",
            SubscriptionGet => "subscription_get",
            SubscriptionUpdate => "subscription_update",
            SubscriptionDelete => "subscription_delete",
            SubscriptionConfirm => "subscription_confirm",
            PoolList => "pool_list",
            PoolCreate => "pool_create",
            PoolGet => "pool_get",
            PoolUpdate => "pool_update",
            PoolDelete => "pool_delete",
            FlavorList => "flavor_list",
            FlavorCreate => "flavor_create",
            FlavorGet => "flavor_get",
            FlavorUpdate => "flavor_update",
            FlavorDelete => "flavor_delete",
            TopicList => "topic_list",
            TopicCreate => "topic_create",
            TopicGet => "topic_get",
            TopicUpdate => "topic_update",
            TopicDelete => "topic_delete",
            TopicStats => "topic_get_stats",
            TopicPurge => "topic_purge",
            TopicMessagePost => "topic_message_post",
            TopicMessageList => "topic_message_list",
            TopicMessageGetMany => "topic_message_get_many",
            TopicMessageDeleteMany => "topic_message_delete_many",
            TopicMessageGet => "topic_message_get",
            TopicMessageDelete => "topic_message_delete",
            TopicSubscriptionList => "topic_subscription_list",
            TopicSubscriptionCreate => "topic_subscription_create",
            TopicSubscriptionGet => "topic_subscription_get",
            TopicSubscriptionUpdate => "topic_subscription_update",
            TopicSubscriptionDelete => "topic_subscription_delete",
            TopicSubscriptionConfirm => "topic_subscription_confirm",
        }
    }

    /// The policy rule guarding the operation (the reference's names);
    /// `None` for the documents anyone may read.
    pub fn policy_rule(self) -> Option<&'static str> {
        use OperationKind::*;
        Some(match self {
            GetVersions | GetHomeDoc | GetOpenApi => return None,
            Ping => "ping:get",
            CheckHealth => "health:get",
            QueueList => "queues:get_all",
            QueueCreate => "queues:create",
            QueueGet => "queues:get",
            QueueUpdate => "queues:update",
            QueueDelete => "queues:delete",
            QueueStats => "queues:stats",
            QueuePurge => "queues:purge",
            QueueShare => "queues:share",
            MessagePost => "messages:create",
            MessageList | MessageGetMany => "messages:get_all",
            MessageDeleteMany => "messages:delete_all",
            MessageGet => "messages:get",
            MessageDelete => "messages:delete",
            ClaimCreate => "claims:create",
            ClaimGet => "claims:get",
            ClaimUpdate => "claims:update",
            ClaimDelete => "claims:delete",
            SubscriptionList => "subscription:get_all",
            SubscriptionCreate => "subscription:create",
            SubscriptionGet => "subscription:get",
            SubscriptionUpdate => "subscription:update",
            SubscriptionDelete => "subscription:delete",
            SubscriptionConfirm => "subscription:confirm",
            PoolList => "pools:get_all",
            PoolCreate => "pools:create",
            PoolGet => "pools:get",
            PoolUpdate => "pools:update",
            PoolDelete => "pools:delete",
            FlavorList => "flavors:get_all",
            FlavorCreate => "flavors:create",
            FlavorGet => "flavors:get",
            FlavorUpdate => "flavors:update",
            FlavorDelete => "flavors:delete",
            TopicList => "topics:get_all",
            TopicCreate => "topics:create",
            TopicGet => "topics:get",
            TopicUpdate => "topics:update",
            TopicDelete => "topics:delete",
            TopicStats => "topics:stats",
            TopicPurge => "topics:purge",
            TopicMessagePost => "messages:create",
            TopicMessageList => "messages:get_all",
            TopicMessageGetMany => "messages:get_all",
            TopicMessageDeleteMany => "messages:delete_all",
            TopicMessageGet => "messages:get",
            TopicMessageDelete => "messages:delete",
            TopicSubscriptionList => "subscription:get_all",
            TopicSubscriptionCreate => "subscription:create",
            TopicSubscriptionGet => "subscription:get",
            TopicSubscriptionUpdate => "subscription:update",
            TopicSubscriptionDelete => "subscription:delete",
            TopicSubscriptionConfirm => "subscription:confirm",
        })
    }

    /// Whether the operation exists only with `[DEFAULT] admin_mode`
    /// (elsewhere it is answered as a route the server does not have).
    pub fn admin_mode_only(self) -> bool {
        matches!(self, OperationKind::CheckHealth) || self.pooling_only()
    }

    /// Whether the operation exists only with `[DEFAULT] pooling` (and
    /// admin mode): the pool and flavor operations.
    pub fn pooling_only(self) -> bool {
        use OperationKind::*;
        matches!(
            self,
            PoolList
                | PoolCreate
                | PoolGet
                | PoolUpdate
                | PoolDelete
                | FlavorList
                | FlavorCreate
                | FlavorGet
                | FlavorUpdate
                | FlavorDelete
        )
    }

    /// Whether the operation needs a request context (`Client-ID`, project);
    /// only the open documents do not (the versions document, as in the
    /// reference, and the OpenAPI document).
    pub fn needs_context(self) -> bool {
        !self.is_open()
    }

    /// Whether anyone may ask for the operation, without credentials of
    /// any kind (the auth layer is not consulted): the versions document
    /// and the OpenAPI document.
    pub fn is_open(self) -> bool {
        matches!(self, OperationKind::GetVersions | OperationKind::GetOpenApi)
    }

    /// The HTTP method and path template of the operation (`{queue}`,
    /// `{id}` stand for the parameters); a WebSocket frame is checked
    /// against a pre-signed URL as the same request over HTTP.
    pub fn http_route(self) -> (&'static str, &'static str) {
        use OperationKind::*;
        match self {
            GetVersions => ("GET", "/"),
            GetHomeDoc => ("GET", "/v2/"),
            GetOpenApi => ("GET", "/v2/openapi.json"),
            Ping => ("GET", "/v2/ping"),
            CheckHealth => ("GET", "/v2/health"),
            QueueList => ("GET", "/v2/queues"),
            QueueCreate => ("PUT", "/v2/queues/{queue}"),
            QueueGet => ("GET", "/v2/queues/{queue}"),
            QueueUpdate => ("PATCH", "/v2/queues/{queue}"),
            QueueDelete => ("DELETE", "/v2/queues/{queue}"),
            QueueStats => ("GET", "/v2/queues/{queue}/stats"),
            QueuePurge => ("POST", "/v2/queues/{queue}/purge"),
            QueueShare => ("POST", "/v2/queues/{queue}/share"),
            MessagePost => ("POST", "/v2/queues/{queue}/messages"),
            MessageList | MessageGetMany => ("GET", "/v2/queues/{queue}/messages"),
            MessageDeleteMany => ("DELETE", "/v2/queues/{queue}/messages"),
            MessageGet => ("GET", "/v2/queues/{queue}/messages/{id}"),
            MessageDelete => ("DELETE", "/v2/queues/{queue}/messages/{id}"),
            ClaimCreate => ("POST", "/v2/queues/{queue}/claims"),
            ClaimGet => ("GET", "/v2/queues/{queue}/claims/{id}"),
            ClaimUpdate => ("PATCH", "/v2/queues/{queue}/claims/{id}"),
            ClaimDelete => ("DELETE", "/v2/queues/{queue}/claims/{id}"),
            SubscriptionList => ("GET", "/v2/queues/{queue}/subscriptions"),
            SubscriptionCreate => ("POST", "/v2/queues/{queue}/subscriptions"),
            SubscriptionGet => ("GET", "/v2/queues/{queue}/subscriptions/{id}"),
            SubscriptionUpdate => ("PATCH", "/v2/queues/{queue}/subscriptions/{id}"),
            SubscriptionDelete => ("DELETE", "/v2/queues/{queue}/subscriptions/{id}"),
            SubscriptionConfirm => ("PUT", "/v2/queues/{queue}/subscriptions/{id}/confirm"),
            PoolList => ("GET", "/v2/pools"),
            PoolCreate => ("PUT", "/v2/pools/{id}"),
            PoolGet => ("GET", "/v2/pools/{id}"),
            PoolUpdate => ("PATCH", "/v2/pools/{id}"),
            PoolDelete => ("DELETE", "/v2/pools/{id}"),
            FlavorList => ("GET", "/v2/flavors"),
            FlavorCreate => ("PUT", "/v2/flavors/{id}"),
            FlavorGet => ("GET", "/v2/flavors/{id}"),
            FlavorUpdate => ("PATCH", "/v2/flavors/{id}"),
            FlavorDelete => ("DELETE", "/v2/flavors/{id}"),
            TopicList => ("GET", "/v2/topics"),
            TopicCreate => ("PUT", "/v2/topics/{queue}"),
            TopicGet => ("GET", "/v2/topics/{queue}"),
            TopicUpdate => ("PATCH", "/v2/topics/{queue}"),
            TopicDelete => ("DELETE", "/v2/topics/{queue}"),
            TopicStats => ("GET", "/v2/topics/{queue}/stats"),
            TopicPurge => ("POST", "/v2/topics/{queue}/purge"),
            TopicMessagePost => ("POST", "/v2/topics/{queue}/messages"),
            TopicMessageList => ("GET", "/v2/topics/{queue}/messages"),
            TopicMessageGetMany => ("GET", "/v2/topics/{queue}/messages"),
            TopicMessageDeleteMany => ("DELETE", "/v2/topics/{queue}/messages"),
            TopicMessageGet => ("GET", "/v2/topics/{queue}/messages/{id}"),
            TopicMessageDelete => ("DELETE", "/v2/topics/{queue}/messages/{id}"),
            TopicSubscriptionList => ("GET", "/v2/topics/{queue}/subscriptions"),
            TopicSubscriptionCreate => ("POST", "/v2/topics/{queue}/subscriptions"),
            TopicSubscriptionGet => ("GET", "/v2/topics/{queue}/subscriptions/{id}"),
            TopicSubscriptionUpdate => ("PATCH", "/v2/topics/{queue}/subscriptions/{id}"),
            TopicSubscriptionDelete => ("DELETE", "/v2/topics/{queue}/subscriptions/{id}"),
            TopicSubscriptionConfirm => ("PUT", "/v2/topics/{queue}/subscriptions/{id}/confirm"),
        }
    }
}

impl Operation {
    /// The operation's kind.
    pub fn kind(&self) -> OperationKind {
        use Operation as O;
        use OperationKind as K;
        match self {
            O::GetVersions => K::GetVersions,
            O::GetHomeDoc => K::GetHomeDoc,
            O::GetOpenApi => K::GetOpenApi,
            O::Ping { .. } => K::Ping,
            O::CheckHealth => K::CheckHealth,
            O::QueueList(_) => K::QueueList,
            O::QueueCreate { .. } => K::QueueCreate,
            O::QueueGet { .. } => K::QueueGet,
            O::QueueUpdate { .. } => K::QueueUpdate,
            O::QueueDelete { .. } => K::QueueDelete,
            O::QueueStats { .. } => K::QueueStats,
            O::QueuePurge { .. } => K::QueuePurge,
            O::QueueShare { .. } => K::QueueShare,
            O::MessagePost { .. } => K::MessagePost,
            O::MessageList { .. } => K::MessageList,
            O::MessageGetMany { .. } => K::MessageGetMany,
            O::MessageDeleteMany { .. } => K::MessageDeleteMany,
            O::MessageGet { .. } => K::MessageGet,
            O::MessageDelete { .. } => K::MessageDelete,
            O::ClaimCreate { .. } => K::ClaimCreate,
            O::ClaimGet { .. } => K::ClaimGet,
            O::ClaimUpdate { .. } => K::ClaimUpdate,
            O::ClaimDelete { .. } => K::ClaimDelete,
            O::SubscriptionList { .. } => K::SubscriptionList,
            O::SubscriptionCreate { .. } => K::SubscriptionCreate,
            O::SubscriptionGet { .. } => K::SubscriptionGet,
            O::SubscriptionUpdate { .. } => K::SubscriptionUpdate,
            O::SubscriptionDelete { .. } => K::SubscriptionDelete,
            O::SubscriptionConfirm { .. } => K::SubscriptionConfirm,
            O::PoolList(_) => K::PoolList,
            O::PoolCreate { .. } => K::PoolCreate,
            O::PoolGet { .. } => K::PoolGet,
            O::PoolUpdate { .. } => K::PoolUpdate,
            O::PoolDelete { .. } => K::PoolDelete,
            O::FlavorList(_) => K::FlavorList,
            O::FlavorCreate { .. } => K::FlavorCreate,
            O::FlavorGet { .. } => K::FlavorGet,
            O::FlavorUpdate { .. } => K::FlavorUpdate,
            O::FlavorDelete { .. } => K::FlavorDelete,
            // Only kinds with a counterpart are wrapped (TopicOperation::new).
            O::Topic(t) => t.inner().kind().on_topic().unwrap_or(K::TopicGet),
        }
    }

    /// The queue the operation names, to change it (the api core puts a
    /// topic's stored name there).
    pub fn queue_mut(&mut self) -> Option<&mut String> {
        use Operation as O;
        match self {
            O::QueueCreate { queue, .. }
            | O::QueueGet { queue }
            | O::QueueUpdate { queue, .. }
            | O::QueueDelete { queue }
            | O::QueueStats { queue, .. }
            | O::QueuePurge { queue, .. }
            | O::QueueShare { queue, .. }
            | O::MessagePost { queue, .. }
            | O::MessageList { queue, .. }
            | O::MessageGetMany { queue, .. }
            | O::MessageDeleteMany { queue, .. }
            | O::MessageGet { queue, .. }
            | O::MessageDelete { queue, .. }
            | O::ClaimCreate { queue, .. }
            | O::ClaimGet { queue, .. }
            | O::ClaimUpdate { queue, .. }
            | O::ClaimDelete { queue, .. }
            | O::SubscriptionList { queue, .. }
            | O::SubscriptionCreate { queue, .. }
            | O::SubscriptionGet { queue, .. }
            | O::SubscriptionUpdate { queue, .. }
            | O::SubscriptionDelete { queue, .. }
            | O::SubscriptionConfirm { queue, .. } => Some(queue),
            _ => None,
        }
    }

    /// The queue the operation names, if any.
    pub fn queue(&self) -> Option<&str> {
        use Operation as O;
        match self {
            O::GetVersions
            | O::GetHomeDoc
            | O::GetOpenApi
            | O::Ping { .. }
            | O::CheckHealth
            | O::QueueList(_)
            | O::PoolList(_)
            | O::PoolCreate { .. }
            | O::PoolGet { .. }
            | O::PoolUpdate { .. }
            | O::PoolDelete { .. }
            | O::FlavorList(_)
            | O::FlavorCreate { .. }
            | O::FlavorGet { .. }
            | O::FlavorUpdate { .. }
            | O::FlavorDelete { .. } => None,
            O::QueueCreate { queue, .. }
            | O::QueueGet { queue }
            | O::QueueUpdate { queue, .. }
            | O::QueueDelete { queue }
            | O::QueueStats { queue, .. }
            | O::QueuePurge { queue, .. }
            | O::QueueShare { queue, .. }
            | O::MessagePost { queue, .. }
            | O::MessageList { queue, .. }
            | O::MessageGetMany { queue, .. }
            | O::MessageDeleteMany { queue, .. }
            | O::MessageGet { queue, .. }
            | O::MessageDelete { queue, .. }
            | O::ClaimCreate { queue, .. }
            | O::ClaimGet { queue, .. }
            | O::ClaimUpdate { queue, .. }
            | O::ClaimDelete { queue, .. }
            | O::SubscriptionList { queue, .. }
            | O::SubscriptionCreate { queue, .. }
            | O::SubscriptionGet { queue, .. }
            | O::SubscriptionUpdate { queue, .. }
            | O::SubscriptionDelete { queue, .. }
            | O::SubscriptionConfirm { queue, .. } => Some(queue),
            O::Topic(t) => t.inner().queue(),
        }
    }

    /// The id in the operation's path (message, claim or subscription).
    pub fn resource_id(&self) -> Option<&str> {
        use Operation as O;
        match self {
            O::MessageGet { id, .. }
            | O::MessageDelete { id, .. }
            | O::ClaimGet { id, .. }
            | O::ClaimUpdate { id, .. }
            | O::ClaimDelete { id, .. }
            | O::SubscriptionGet { id, .. }
            | O::SubscriptionUpdate { id, .. }
            | O::SubscriptionDelete { id, .. }
            | O::SubscriptionConfirm { id, .. } => Some(id),
            O::PoolCreate { name, .. }
            | O::PoolGet { name, .. }
            | O::PoolUpdate { name, .. }
            | O::PoolDelete { name }
            | O::FlavorCreate { name, .. }
            | O::FlavorGet { name }
            | O::FlavorUpdate { name, .. }
            | O::FlavorDelete { name } => Some(name),
            O::Topic(t) => t.inner().resource_id(),
            _ => None,
        }
    }

    /// The HTTP method and path of this request (the route with its
    /// parameters filled in).
    pub fn http_route(&self) -> (&'static str, String) {
        let (method, template) = self.kind().http_route();
        let path = template
            .split('/')
            .map(|segment| match segment {
                "{queue}" => self.queue().unwrap_or_default(),
                "{id}" => self.resource_id().unwrap_or_default(),
                other => other,
            })
            .collect::<Vec<_>>()
            .join("/");
        (method, path)
    }
}
