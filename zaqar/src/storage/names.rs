//! Where topics live in a store: queues under a reserved name prefix.
//!
//! A topic is kept by every store exactly as a queue is (metadata record,
//! messages, subscriptions, catalogue entry on a pool), under the stored
//! name `~topic~<name>`. No queue can have that name: queue names are
//! ASCII letters, digits, `_` and `-`, and `~` is none of them. So the
//! topic `t` and the queue `t` of one project are two resources on every
//! store and through pooling, with no store knowing about topics.
//!
//! `~` sorts after every character a queue name may hold, so in the name
//! order every store lists queues in (bytewise), all of a project's topics
//! come after all of its queues: a queue listing stops at the first stored
//! topic name, and a topic listing starts after [`TOPIC_PREFIX`]. Stores
//! count only names before [`NAMESPACE_END`] as queues.
//!
//! The api core maps names in and out; clients never see a stored name.

/// The prefix of a topic's stored name.
pub const TOPIC_PREFIX: &str = "~topic~";

/// Every stored name at or after this one is not a queue's (it is a
/// topic's); queue names sort before it.
pub const NAMESPACE_END: &str = "~";

/// The stored name of the topic `topic`.
pub fn topic_storage_name(topic: &str) -> String {
    format!("{TOPIC_PREFIX}{topic}")
}

/// The topic a stored name is, if it is one.
pub fn topic_of(stored: &str) -> Option<&str> {
    stored.strip_prefix(TOPIC_PREFIX)
}

/// Whether a stored name is a queue's (not a topic's).
pub fn is_queue(stored: &str) -> bool {
    stored < NAMESPACE_END
}

/// The name a client knows a stored queue or topic by.
pub fn display_name(stored: &str) -> &str {
    topic_of(stored).unwrap_or(stored)
}

/// The key and value naming a stored queue or topic in documents sent to
/// subscribers: `("queue_name", q)` or `("topic_name", t)`.
pub fn source_field(stored: &str) -> (&'static str, &str) {
    match topic_of(stored) {
        Some(t) => ("topic_name", t),
        None => ("queue_name", stored),
    }
}

/// `queue` or `topic`: what a stored name is, in words.
pub fn noun(stored: &str) -> &'static str {
    match topic_of(stored) {
        Some(_) => "topic",
        None => "queue",
    }
}

/// The API path of a stored queue or topic (`/v2/queues/q`, `/v2/topics/t`).
pub fn api_path(stored: &str) -> String {
    match topic_of(stored) {
        Some(t) => format!("/v2/topics/{t}"),
        None => format!("/v2/queues/{stored}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_sort_after_every_queue_name() {
        let t = topic_storage_name("a");
        for q in ["z", "zzzz", "_", "-", "Z9", "~"] {
            if q != "~" {
                assert!(is_queue(q));
                assert!(q < t.as_str(), "{q}");
            }
        }
        assert!(!is_queue(&t));
        assert!(t.as_str() > TOPIC_PREFIX);
        assert_eq!(topic_of(&t), Some("a"));
        assert_eq!(display_name(&t), "a");
        assert_eq!(display_name("q"), "q");
        assert_eq!(api_path(&t), "/v2/topics/a");
        assert_eq!(api_path("q"), "/v2/queues/q");
    }
}
