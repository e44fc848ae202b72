//! Paths of the v2 API parsed into typed endpoints, with the methods each allows.

use http::Method;

/// A route of the v2 API, with its path parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/`
    Versions,
    /// `/v2/`
    Home,
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
            _ => return None,
        })
    }

    /// The methods this endpoint answers.
    pub fn allowed(&self) -> &'static [&'static str] {
        match self {
            Endpoint::Versions
            | Endpoint::Home
            | Endpoint::Health
            | Endpoint::Queues
            | Endpoint::QueueStats(_) => &["GET"],
            Endpoint::Ping => &["GET", "HEAD"],
            Endpoint::Queue(_) => &["GET", "PUT", "PATCH", "DELETE"],
            Endpoint::QueuePurge(_) | Endpoint::QueueShare(_) | Endpoint::Claims(_) => &["POST"],
            Endpoint::Messages(_) => &["GET", "POST", "DELETE"],
            Endpoint::Message(_, _) => &["GET", "DELETE"],
            Endpoint::Claim(_, _) | Endpoint::Subscription(_, _) => &["GET", "PATCH", "DELETE"],
            Endpoint::Subscriptions(_) => &["GET", "POST"],
            Endpoint::SubscriptionConfirm(_, _) => &["PUT"],
        }
    }

    /// Whether `method` is one this endpoint answers.
    pub fn allows(&self, method: &Method) -> bool {
        self.allowed().contains(&method.as_str())
    }

    /// The queue named in the path, if any.
    pub fn queue(&self) -> Option<&str> {
        match self {
            Endpoint::Queue(q)
            | Endpoint::QueueStats(q)
            | Endpoint::QueuePurge(q)
            | Endpoint::QueueShare(q)
            | Endpoint::Messages(q)
            | Endpoint::Message(q, _)
            | Endpoint::Claims(q)
            | Endpoint::Claim(q, _)
            | Endpoint::Subscriptions(q)
            | Endpoint::Subscription(q, _)
            | Endpoint::SubscriptionConfirm(q, _) => Some(q),
            _ => None,
        }
    }

    /// The policy rule guarding `method` on this endpoint (reference names).
    pub fn policy_rule(&self, method: &Method) -> Option<&'static str> {
        let m = method.as_str();
        Some(match (self, m) {
            (Endpoint::Versions | Endpoint::Home, _) => return None,
            (Endpoint::Ping, _) => "ping:get",
            (Endpoint::Health, _) => "health:get",
            (Endpoint::Queues, _) => "queues:get_all",
            (Endpoint::Queue(_), "PUT") => "queues:create",
            (Endpoint::Queue(_), "PATCH") => "queues:update",
            (Endpoint::Queue(_), "DELETE") => "queues:delete",
            (Endpoint::Queue(_), _) => "queues:get",
            (Endpoint::QueueStats(_), _) => "queues:stats",
            (Endpoint::QueuePurge(_), _) => "queues:purge",
            (Endpoint::QueueShare(_), _) => "queues:share",
            (Endpoint::Messages(_), "POST") => "messages:create",
            (Endpoint::Messages(_), "DELETE") => "messages:delete_all",
            (Endpoint::Messages(_), _) => "messages:get_all",
            (Endpoint::Message(_, _), "DELETE") => "messages:delete",
            (Endpoint::Message(_, _), _) => "messages:get",
            (Endpoint::Claims(_), _) => "claims:create",
            (Endpoint::Claim(_, _), "PATCH") => "claims:update",
            (Endpoint::Claim(_, _), "DELETE") => "claims:delete",
            (Endpoint::Claim(_, _), _) => "claims:get",
            (Endpoint::Subscriptions(_), "POST") => "subscription:create",
            (Endpoint::Subscriptions(_), _) => "subscription:get_all",
            (Endpoint::Subscription(_, _), "PATCH") => "subscription:update",
            (Endpoint::Subscription(_, _), "DELETE") => "subscription:delete",
            (Endpoint::Subscription(_, _), _) => "subscription:get",
            (Endpoint::SubscriptionConfirm(_, _), _) => "subscription:confirm",
        })
    }
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
        assert_eq!(Endpoint::parse("/v2/queues/q/nope"), None);
        assert!(Endpoint::Ping.allows(&Method::HEAD));
        assert!(!Endpoint::Queues.allows(&Method::POST));
    }
}
