//! Paths of the v2 API parsed into typed endpoints, with the methods each allows.

use http::Method;

use super::query::Query;
use crate::api::messages::{BulkDeleteParams, MessageListParams};
use crate::api::operation::{Operation, OperationKind, TopicOperation};
use crate::api::pools::AdminListParams;
use crate::api::queues::QueueListParams;
use crate::api::subscriptions::SubscriptionListParams;
use crate::api::Payload;
use crate::error::ApiResult;

/// A route of the v2 API, with its path parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/`
    Versions,
    /// `/v2/`
    Home,
    /// `/v2/openapi.json`
    OpenApi,
    /// `/v2/ping`
    Ping,
    /// `/v2/health`
    Health,
    /// `/v2/queues`
    Queues,
    /// `/v2/queues/{q}`
    Queue(String),
    /// `/v2/queues/{q}/stats`
    QueueStats(String),
    /// `/v2/queues/{q}/purge`
    QueuePurge(String),
    /// `/v2/queues/{q}/share`
    QueueShare(String),
    /// `/v2/queues/{q}/messages`
    Messages(String),
    /// `/v2/queues/{q}/messages/{id}`
    Message(String, String),
    /// `/v2/queues/{q}/claims`
    Claims(String),
    /// `/v2/queues/{q}/claims/{id}`
    Claim(String, String),
    /// `/v2/queues/{q}/subscriptions`
    Subscriptions(String),
    /// `/v2/queues/{q}/subscriptions/{id}`
    Subscription(String, String),
    /// `/v2/queues/{q}/subscriptions/{id}/confirm`
    SubscriptionConfirm(String, String),
    /// `/v2/pools`
    Pools,
    /// `/v2/pools/{name}`
    Pool(String),
    /// `/v2/flavors`
    Flavors,
    /// `/v2/flavors/{name}`
    Flavor(String),
    /// `/v2/topics...`: the queue endpoint of the same shape (a listing, a
    /// resource, its stats, purge, messages and subscriptions), on a topic.
    Topic(Box<Endpoint>),
}

impl Endpoint {
    /// Parses a request path; `None` for a path the API does not have.
    pub fn parse(path: &str) -> Option<Endpoint> {
        if path == "/" {
            return Some(Endpoint::Versions);
        }
        let rest = path.strip_prefix("/v2/")?;
        let seg: Vec<&str> = rest.split('/').collect();
        let s = |i: usize| seg[i].to_owned();
        Some(match seg.as_slice() {
            [""] => Endpoint::Home,
            ["openapi.json"] => Endpoint::OpenApi,
            ["ping"] => Endpoint::Ping,
            ["health"] => Endpoint::Health,
            ["queues"] => Endpoint::Queues,
            ["queues", _] => Endpoint::Queue(s(1)),
            ["queues", _, "stats"] => Endpoint::QueueStats(s(1)),
            ["queues", _, "purge"] => Endpoint::QueuePurge(s(1)),
            ["queues", _, "share"] => Endpoint::QueueShare(s(1)),
            ["queues", _, "messages"] => Endpoint::Messages(s(1)),
            ["queues", _, "messages", id] if !id.is_empty() => Endpoint::Message(s(1), s(3)),
            ["queues", _, "claims"] => Endpoint::Claims(s(1)),
            ["queues", _, "claims", id] if !id.is_empty() => Endpoint::Claim(s(1), s(3)),
            ["queues", _, "subscriptions"] => Endpoint::Subscriptions(s(1)),
            ["queues", _, "subscriptions", id] if !id.is_empty() => {
                Endpoint::Subscription(s(1), s(3))
            }
            ["queues", _, "subscriptions", id, "confirm"] if !id.is_empty() => {
                Endpoint::SubscriptionConfirm(s(1), s(3))
            }
            ["pools"] => Endpoint::Pools,
            ["pools", name] if !name.is_empty() => Endpoint::Pool(s(1)),
            ["flavors"] => Endpoint::Flavors,
            ["flavors", name] if !name.is_empty() => Endpoint::Flavor(s(1)),
            ["topics", ..] => {
                let inner = Endpoint::parse(&format!("/v2/queues{}", &rest["topics".len()..]))?;
                match inner {
                    Endpoint::Queues
                    | Endpoint::Queue(_)
                    | Endpoint::QueueStats(_)
                    | Endpoint::QueuePurge(_)
                    | Endpoint::Messages(_)
                    | Endpoint::Message(_, _)
                    | Endpoint::Subscriptions(_)
                    | Endpoint::Subscription(_, _)
                    | Endpoint::SubscriptionConfirm(_, _) => Endpoint::Topic(Box::new(inner)),
                    _ => return None,
                }
            }
            _ => return None,
        })
    }

    /// The name of the queue (or topic: then `true`) the endpoint addresses.
    pub fn queue(&self) -> (Option<String>, bool) {
        use Endpoint as E;
        match self {
            E::Queue(q)
            | E::QueueStats(q)
            | E::QueuePurge(q)
            | E::QueueShare(q)
            | E::Messages(q)
            | E::Message(q, _)
            | E::Claims(q)
            | E::Claim(q, _)
            | E::Subscriptions(q)
            | E::Subscription(q, _)
            | E::SubscriptionConfirm(q, _) => (Some(q.clone()), false),
            E::Topic(inner) => (inner.queue().0, true),
            E::Versions
            | E::Home
            | E::OpenApi
            | E::Ping
            | E::Health
            | E::Queues
            | E::Pools
            | E::Pool(_)
            | E::Flavors
            | E::Flavor(_) => (None, false),
        }
    }

    /// The methods this endpoint answers, in alphabetical order (as the
    /// reference lists them in `Allow`; `OPTIONS` is answered everywhere).
    pub fn allowed(&self) -> &'static [&'static str] {
        match self {
            Endpoint::Versions
            | Endpoint::Home
            | Endpoint::OpenApi
            | Endpoint::Health
            | Endpoint::Queues
            | Endpoint::QueueStats(_) => &["GET"],
            Endpoint::Ping => &["GET", "HEAD"],
            Endpoint::Queue(_) => &["DELETE", "GET", "PATCH", "PUT"],
            Endpoint::QueuePurge(_) | Endpoint::QueueShare(_) | Endpoint::Claims(_) => &["POST"],
            Endpoint::Messages(_) => &["DELETE", "GET", "POST"],
            Endpoint::Message(_, _) => &["DELETE", "GET"],
            Endpoint::Claim(_, _) | Endpoint::Subscription(_, _) => &["DELETE", "GET", "PATCH"],
            Endpoint::Subscriptions(_) => &["GET", "POST"],
            Endpoint::SubscriptionConfirm(_, _) => &["PUT"],
            Endpoint::Pools | Endpoint::Flavors => &["GET"],
            Endpoint::Pool(_) | Endpoint::Flavor(_) => &["DELETE", "GET", "PATCH", "PUT"],
            Endpoint::Topic(inner) => inner.allowed(),
        }
    }

    /// Whether `method` is one this endpoint answers.
    pub fn allows(&self, method: &Method) -> bool {
        self.allowed().contains(&method.as_str())
    }

    /// The operation this endpoint and `method` (one it allows) ask for,
    /// with its parameters read from the query and the body.
    ///
    /// # Errors
    /// 400 for a query parameter of the wrong type.
    pub fn operation(
        self,
        method: &Method,
        query: &Query,
        content_type: Option<&str>,
        body: Payload,
    ) -> ApiResult<Operation> {
        use Operation as O;
        let m = method.as_str();
        if let Endpoint::Topic(inner) = self {
            let op = inner.operation(method, query, content_type, body)?;
            return TopicOperation::new(op)
                .map(Operation::Topic)
                .ok_or(crate::error::ApiError::RouteNotFound);
        }
        Ok(match (self, m) {
            (Endpoint::Versions, _) => O::GetVersions,
            (Endpoint::Home, _) => O::GetHomeDoc,
            (Endpoint::OpenApi, _) => O::GetOpenApi,
            (Endpoint::Ping, "HEAD") => O::Ping { probe: false },
            (Endpoint::Ping, _) => O::Ping { probe: true },
            (Endpoint::Health, _) => O::CheckHealth,
            (Endpoint::Queues, _) => O::QueueList(QueueListParams {
                marker: query.get("marker").map(String::from),
                limit: query.int("limit")?,
                detailed: query.bool("detailed")?.unwrap_or(false),
                with_count: query.bool("with_count")?.unwrap_or(false),
                name: query.get("name").map(String::from),
                // Every other parameter filters on metadata, as the
                // reference's: an integer when it reads as one.
                filters: query
                    .others(&["marker", "limit", "detailed", "name", "with_count"])
                    .into_iter()
                    .map(|(k, v)| {
                        let value = v
                            .trim()
                            .parse::<i64>()
                            .map_or_else(|_| serde_json::Value::from(v.as_str()), Into::into);
                        (k, value)
                    })
                    .collect(),
            }),
            (Endpoint::Queue(queue), "PUT") => O::QueueCreate {
                queue,
                metadata: body,
            },
            (Endpoint::Queue(queue), "PATCH") => O::QueueUpdate {
                queue,
                content_type: content_type.map(String::from),
                patch: body,
            },
            (Endpoint::Queue(queue), "DELETE") => O::QueueDelete { queue },
            (Endpoint::Queue(queue), _) => O::QueueGet { queue },
            (Endpoint::QueueStats(queue), _) => O::QueueStats {
                queue,
                report_missing: false,
            },
            (Endpoint::QueuePurge(queue), _) => O::QueuePurge { queue, body },
            (Endpoint::QueueShare(queue), _) => O::QueueShare { queue, body },
            (Endpoint::Messages(queue), "POST") => O::MessagePost { queue, body },
            (Endpoint::Messages(queue), "GET") => match query.list("ids") {
                Some(ids) => O::MessageGetMany { queue, ids },
                None => O::MessageList {
                    queue,
                    params: MessageListParams {
                        marker: query.get("marker").map(String::from),
                        limit: query.int("limit")?,
                        echo: query.bool("echo")?,
                        include_claimed: query.bool("include_claimed")?,
                        include_delayed: query.bool("include_delayed")?,
                        wait: query.int("wait")?,
                    },
                },
            },
            (Endpoint::Messages(queue), _) => O::MessageDeleteMany {
                queue,
                params: BulkDeleteParams {
                    ids: query.list("ids"),
                    claim_ids: query.list("claim_ids"),
                    pop: query.int("pop")?,
                },
            },
            (Endpoint::Message(queue, id), "DELETE") => O::MessageDelete {
                queue,
                id,
                claim_id: query.get("claim_id").map(String::from),
            },
            (Endpoint::Message(queue, id), _) => O::MessageGet { queue, id },
            (Endpoint::Claims(queue), _) => O::ClaimCreate {
                queue,
                limit: query.int("limit")?,
                wait: query.int("wait")?,
                body,
            },
            (Endpoint::Claim(queue, id), "PATCH") => O::ClaimUpdate { queue, id, body },
            (Endpoint::Claim(queue, id), "DELETE") => O::ClaimDelete { queue, id },
            (Endpoint::Claim(queue, id), _) => O::ClaimGet { queue, id },
            (Endpoint::Subscriptions(queue), "POST") => O::SubscriptionCreate { queue, body },
            (Endpoint::Subscriptions(queue), _) => O::SubscriptionList {
                queue,
                params: SubscriptionListParams {
                    marker: query.get("marker").map(String::from),
                    limit: query.int("limit")?,
                },
            },
            (Endpoint::Subscription(queue, id), "PATCH") => {
                O::SubscriptionUpdate { queue, id, body }
            }
            (Endpoint::Subscription(queue, id), "DELETE") => O::SubscriptionDelete { queue, id },
            (Endpoint::Subscription(queue, id), _) => O::SubscriptionGet { queue, id },
            (Endpoint::SubscriptionConfirm(queue, id), _) => {
                O::SubscriptionConfirm { queue, id, body }
            }
            (Endpoint::Pools, _) => O::PoolList(admin_list(query)?),
            (Endpoint::Pool(name), "PUT") => O::PoolCreate { name, body },
            (Endpoint::Pool(name), "PATCH") => O::PoolUpdate { name, body },
            (Endpoint::Pool(name), "DELETE") => O::PoolDelete { name },
            (Endpoint::Pool(name), _) => O::PoolGet {
                name,
                detailed: query.bool("detailed")?.unwrap_or(false),
            },
            (Endpoint::Flavors, _) => O::FlavorList(admin_list(query)?),
            (Endpoint::Flavor(name), "PUT") => O::FlavorCreate { name, body },
            (Endpoint::Flavor(name), "PATCH") => O::FlavorUpdate { name, body },
            (Endpoint::Flavor(name), "DELETE") => O::FlavorDelete { name },
            (Endpoint::Flavor(name), _) => O::FlavorGet { name },
            (Endpoint::Topic(_), _) => return Err(crate::error::ApiError::RouteNotFound),
        })
    }

    /// The kind of operation behind this endpoint (for any method it
    /// allows, the kind of its GET, or first, operation), so the router can
    /// tell an endpoint the server does not serve before its methods.
    pub fn kind(&self) -> OperationKind {
        use OperationKind as K;
        match self {
            Endpoint::Versions => K::GetVersions,
            Endpoint::Home => K::GetHomeDoc,
            Endpoint::OpenApi => K::GetOpenApi,
            Endpoint::Ping => K::Ping,
            Endpoint::Health => K::CheckHealth,
            Endpoint::Queues => K::QueueList,
            Endpoint::Queue(_) => K::QueueGet,
            Endpoint::QueueStats(_) => K::QueueStats,
            Endpoint::QueuePurge(_) => K::QueuePurge,
            Endpoint::QueueShare(_) => K::QueueShare,
            Endpoint::Messages(_) => K::MessageList,
            Endpoint::Message(_, _) => K::MessageGet,
            Endpoint::Claims(_) => K::ClaimCreate,
            Endpoint::Claim(_, _) => K::ClaimGet,
            Endpoint::Subscriptions(_) => K::SubscriptionList,
            Endpoint::Subscription(_, _) => K::SubscriptionGet,
            Endpoint::SubscriptionConfirm(_, _) => K::SubscriptionConfirm,
            Endpoint::Pools => K::PoolList,
            Endpoint::Pool(_) => K::PoolGet,
            Endpoint::Flavors => K::FlavorList,
            Endpoint::Flavor(_) => K::FlavorGet,
            Endpoint::Topic(inner) => inner.kind().on_topic().unwrap_or(K::TopicGet),
        }
    }
}

/// The paging parameters of a pool or flavor listing.
fn admin_list(query: &Query) -> ApiResult<AdminListParams> {
    Ok(AdminListParams {
        marker: query.get("marker").map(String::from),
        limit: query.int("limit")?,
        detailed: query.bool("detailed")?.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_of_the_reference() {
        assert_eq!(Endpoint::parse("/"), Some(Endpoint::Versions));
        assert_eq!(Endpoint::parse("/v2/"), Some(Endpoint::Home));
        assert_eq!(Endpoint::parse("/v2"), None);
        assert_eq!(
            Endpoint::parse("/v2/queues/"),
            Some(Endpoint::Queue(String::new()))
        );
        assert_eq!(
            Endpoint::parse("/v2/queues/q/messages/m"),
            Some(Endpoint::Message("q".into(), "m".into()))
        );
        assert_eq!(Endpoint::parse("/v2/queues/q/messages/"), None);
        // The longest route (five segments), and one segment past it.
        assert_eq!(
            Endpoint::parse("/v2/queues/q/subscriptions/s/confirm"),
            Some(Endpoint::SubscriptionConfirm("q".into(), "s".into()))
        );
        assert_eq!(
            Endpoint::parse("/v2/queues/q/subscriptions/s/confirm/x"),
            None
        );
        assert_eq!(Endpoint::parse(&"/v2/queues/q".repeat(1000)), None);
        assert_eq!(
            Endpoint::parse("/v2/topics/t/subscriptions/s/confirm"),
            Some(Endpoint::Topic(Box::new(Endpoint::SubscriptionConfirm(
                "t".into(),
                "s".into()
            ))))
        );
        assert_eq!(Endpoint::parse("/v2/topics/t/messages/m/x/y"), None);
        assert_eq!(Endpoint::parse("/v2/queues/q/nope"), None);
        assert_eq!(
            Endpoint::parse("/v2/topics/t/messages/m"),
            Some(Endpoint::Topic(Box::new(Endpoint::Message(
                "t".into(),
                "m".into()
            ))))
        );
        assert_eq!(Endpoint::parse("/v2/topics/t/claims"), None);
        assert_eq!(Endpoint::parse("/v2/topics/t/share"), None);
        assert_eq!(
            Endpoint::parse("/v2/topics"),
            Some(Endpoint::Topic(Box::new(Endpoint::Queues)))
        );
        assert!(Endpoint::Ping.allows(&Method::HEAD));
        for e in [
            Endpoint::Queue("q".into()),
            Endpoint::Messages("q".into()),
            Endpoint::Claim("q".into(), "c".into()),
            Endpoint::Pool("p".into()),
        ] {
            let allowed = e.allowed();
            assert!(allowed.windows(2).all(|w| w[0] < w[1]), "{allowed:?}");
        }
        assert!(!Endpoint::Queues.allows(&Method::POST));
    }
}
