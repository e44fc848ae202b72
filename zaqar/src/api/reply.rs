//! What an operation answers, before any transport renders it.
//!
//! [`Api::execute`](super::Api::execute) returns one [`Reply`] per
//! operation; the HTTP transport turns it into a status, headers and a
//! body (adding hrefs and links), the WebSocket transport into a response
//! frame. Neither decides anything the reply does not say.

use super::messages::MessageListing;
use super::pools::{FlavorListing, FlavorWithPools, PoolListing};
use super::queues::QueueListing;
use super::signed_url::SignedUrl;
use super::subscriptions::SubscriptionListing;
use crate::storage::catalogue::PoolRecord;
use crate::storage::{ClaimInfo, Message, Metadata, NewClaim, QueueStats, Subscription};

/// The typed result of one operation.
#[derive(Clone, Debug)]
pub enum Reply {
    /// `get_versions`: the versions document.
    Versions,
    /// `get_openapi`: the OpenAPI document.
    OpenApi(serde_json::Value),
    /// `get_home_doc`: the home document (admin entries with admin mode).
    HomeDoc {
        /// Whether the admin routes are served.
        admin_mode: bool,
    },
    /// `ping_node`: whether the store answered.
    Pong {
        /// The store answered (always true for a ping that does not probe).
        alive: bool,
    },
    /// `check_node_health`: the health document.
    Health(serde_json::Value),
    /// `queue_list`.
    Queues(QueueListing),
    /// `topic_list`: topics, named as clients know them.
    Topics(QueueListing),
    /// `queue_create`: whether the queue is new.
    QueueCreated {
        /// `false` when it existed (its metadata kept).
        created: bool,
    },
    /// `queue_get` and `queue_update`: the metadata as stored, and as
    /// shown with reserved defaults (HTTP shows these; the WebSocket API
    /// the stored, as the reference's does).
    QueueMetadata {
        /// As stored (empty for a missing queue).
        stored: Metadata,
        /// With every reserved key's default filled in.
        shown: Metadata,
    },
    /// `queue_delete`.
    QueueDeleted,
    /// `queue_get_stats`; `missing` when the operation asked and the queue
    /// does not exist (zero stats: the WebSocket API answers them with 404).
    QueueStats {
        /// The counts and the oldest and newest messages.
        stats: QueueStats,
        /// No such queue.
        missing: bool,
    },
    /// `queue_purge`.
    QueuePurged,
    /// `queue_share`.
    SignedUrl(SignedUrl),
    /// `message_post`: the new ids, in the order posted.
    MessagesPosted(Vec<String>),
    /// `message_list`.
    MessagePage(MessageListing),
    /// `message_get_many`.
    Messages(Vec<Message>),
    /// `message_delete_many` by ids.
    MessagesDeleted,
    /// `message_delete_many` with `pop`: what was removed.
    MessagesPopped(Vec<Message>),
    /// `message_get`.
    Message(Message),
    /// `message_delete`.
    MessageDeleted,
    /// `claim_create`: `None` when nothing could be claimed.
    ClaimCreated(Option<NewClaim>),
    /// `claim_get`.
    Claim(ClaimInfo),
    /// `claim_update`.
    ClaimUpdated,
    /// `claim_delete`.
    ClaimDeleted,
    /// `subscription_list`: the connection's own subscriptions first, then
    /// the stored ones.
    Subscriptions(SubscriptionListing),
    /// `subscription_create`: the subscription's id.
    SubscriptionCreated {
        /// The id (an existing unconfirmed subscription keeps its own).
        id: String,
    },
    /// `subscription_get`.
    Subscription(Subscription),
    /// `subscription_update`.
    SubscriptionUpdated,
    /// `subscription_delete`.
    SubscriptionDeleted,
    /// `subscription_confirm`.
    SubscriptionConfirmed,
    /// `pool_list`.
    Pools(PoolListing),
    /// `pool_get` and `pool_update` (the latter never detailed).
    Pool {
        /// The pool.
        pool: PoolRecord,
        /// Show its options.
        detailed: bool,
    },
    /// `pool_create`.
    PoolCreated,
    /// `pool_delete`.
    PoolDeleted,
    /// `flavor_list`.
    Flavors(FlavorListing),
    /// `flavor_get` and `flavor_update`.
    Flavor(FlavorWithPools),
    /// `flavor_create`.
    FlavorCreated,
    /// `flavor_delete`.
    FlavorDeleted,
}
