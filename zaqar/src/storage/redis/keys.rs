//! Key layout: where a project's queue records and a queue's messages live.
//!
//! Every key of one queue starts with the same prefix carrying a Redis
//! Cluster hash tag, `<ns>:q{<plen>:<project>:<qlen>:<queue>}`, so every
//! script touching one queue runs in one slot. The lengths (in bytes) make
//! the tag unambiguous whatever the names contain: project `p.sub` + queue
//! `zq` and project `p` + queue `sub.zq` give different keys. The queue
//! records of a project live under `<ns>:p{<plen>:<project>}`, another slot.
//!
//! Should a name contain `}`, Redis takes the tag up to it: the tag then is
//! a prefix of ours, still the same for every key of that queue, so the
//! keys stay together and distinct.

use crate::storage::Scope;

/// The key prefix of one queue's keys (see the module docs).
pub(crate) fn queue_prefix(ns: &str, scope: &Scope) -> String {
    // Every request builds it: concatenated, not formatted.
    let (mut plen, mut qlen) = (itoa::Buffer::new(), itoa::Buffer::new());
    [
        ns,
        ":q{",
        plen.format(scope.project.len()),
        ":",
        &scope.project,
        ":",
        qlen.format(scope.queue.len()),
        ":",
        &scope.queue,
        "}",
    ]
    .concat()
}

/// The key routing a queue script: the queue's message index.
pub(crate) fn queue_route_key(prefix: &str) -> String {
    [prefix, ":msgs"].concat()
}

/// The key that exists while a long poll of some server process waits for
/// the queue under `prefix` (see [`super::wake`]).
pub(crate) fn queue_polled_key(prefix: &str) -> String {
    [prefix, ":polled"].concat()
}

/// The guard key of the slot holding keys under `prefix` (a queue's, a
/// project's, the outbox's or the pooling catalogue's): a key no one ever
/// writes, declared by every script next to its routing key. Redis Cluster
/// runs a script only where every declared key is, and a key that exists
/// nowhere is never there while its slot moves between masters: the source
/// answers ASK or TRYAGAIN, the target TRYAGAIN, before anything runs. So no
/// script runs on half a migrated slot (reading keys that already left as
/// missing, or creating on the target keys the source still holds), and
/// none stops half-way on the source at a key that just left (Redis checks
/// every key a script touches, and an error then keeps the writes made
/// before it). The driver retries such refusals until the request's
/// deadline ([`super::conn`]); outside a migration the key costs nothing.
pub(crate) fn slot_guard_key(prefix: &str) -> String {
    [prefix, ":guard"].concat()
}

/// The key prefix of the deployment's notification outbox: one hash tag
/// for the whole outbox (see [`super::subscriptions`] for why).
pub(crate) fn outbox_prefix(ns: &str) -> String {
    format!("{ns}:o{{outbox}}")
}

/// The key prefix of one project's queue records.
pub(crate) fn project_prefix(ns: &str, project: &str) -> String {
    let mut plen = itoa::Buffer::new();
    [ns, ":p{", plen.format(project.len()), ":", project, "}"].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_names_do_not_collide() {
        let a = queue_prefix("zq", &Scope::new("p.sub", "zq"));
        let b = queue_prefix("zq", &Scope::new("p", "sub.zq"));
        assert_ne!(a, b);
        assert_eq!(a, "zq:q{5:p.sub:2:zq}");
    }

    #[test]
    fn separators_in_names_do_not_collide() {
        let a = queue_prefix("zq", &Scope::new("a:1:b", "c"));
        let b = queue_prefix("zq", &Scope::new("a", "b:1:c"));
        assert_ne!(a, b);
        assert_ne!(project_prefix("zq", "a"), project_prefix("zq", "a}"));
    }

    #[test]
    fn guard_keys_share_the_slot_of_their_prefix() {
        let q = queue_prefix("zq", &Scope::new("p", "q"));
        assert_eq!(slot_guard_key(&q), "zq:q{1:p:1:q}:guard");
        assert_ne!(slot_guard_key(&q), queue_route_key(&q));
    }

    #[test]
    fn project_and_queue_keys_differ() {
        assert_eq!(project_prefix("zq", "p"), "zq:p{1:p}");
        assert!(queue_prefix("zq", &Scope::new("p", "q")).starts_with("zq:q{"));
    }
}
