//! How records look to clients, for every transport.
//!
//! A transport renders a [`Reply`](super::reply::Reply) with these views and
//! adds only what is its own: HTTP adds `href`s and links, WebSocket a
//! message's `claim_id` and the stats' message ids.

use serde::ser::SerializeStruct;
use serde::Serialize;
use serde_json::value::RawValue;

use super::pools::FlavorWithPools;
use crate::storage::catalogue::PoolRecord;
use crate::storage::{Message, MessageStamp, Metadata, QueueStats, Subscription};

/// A message: what both transports show of it. Each transport's own view
/// writes these fields and then its own ([`MessageView::write_fields`]).
pub struct MessageView<'a> {
    /// Message id.
    pub id: &'a str,
    /// Time to live, seconds.
    pub ttl: i64,
    /// Seconds since it was posted.
    pub age: i64,
    /// The body as posted.
    pub body: &'a RawValue,
    /// `MD5:<hex>` when checksums are on.
    pub checksum: Option<&'a str>,
}

impl<'a> MessageView<'a> {
    /// The view of `m` as of `now` (ms).
    pub fn of(m: &'a Message, now: i64) -> Self {
        MessageView {
            id: &m.id,
            ttl: m.ttl,
            age: m.age(now),
            body: &m.body,
            checksum: m.checksum.as_deref(),
        }
    }

    /// How many fields [`write_fields`](Self::write_fields) may write.
    pub const FIELDS: usize = 5;

    /// Writes the view's fields into a struct a transport serializes, before
    /// its own fields. Instead of serde's `flatten`, whose map machinery cost
    /// 4-6 % of the server's instructions for a claim or a listing of ten.
    pub fn write_fields<S: SerializeStruct>(&self, out: &mut S) -> Result<(), S::Error> {
        out.serialize_field("id", self.id)?;
        out.serialize_field("ttl", &self.ttl)?;
        out.serialize_field("age", &self.age)?;
        out.serialize_field("body", self.body)?;
        match self.checksum {
            Some(checksum) => out.serialize_field("checksum", checksum),
            None => out.skip_field("checksum"),
        }
    }
}

/// The oldest or newest message of a queue in its stats.
#[derive(Serialize)]
pub struct StampView {
    /// Seconds since it was posted.
    pub age: i64,
    /// When it was posted, `YYYY-MM-DDTHH:MM:SSZ`.
    pub created: String,
}

impl StampView {
    /// The view of `m` as of `now` (ms).
    pub fn of(m: &MessageStamp, now: i64) -> Self {
        StampView {
            age: ((now - m.created_ms) / 1000).max(0),
            // The RFC 3339 writer, not format(): the same text for every
            // time a store keeps (years 0 to 9999), without parsing a
            // format string on each call.
            created: chrono::DateTime::from_timestamp_millis(m.created_ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
        }
    }
}

/// A queue's message counts, with the oldest and newest messages (shown
/// only when there are messages) as each transport shows them (`S`).
#[derive(Serialize)]
pub struct CountsView<S> {
    /// Claimed messages.
    pub claimed: u64,
    /// Messages not claimed.
    pub free: u64,
    /// All live messages.
    pub total: u64,
    /// The oldest message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest: Option<S>,
    /// The newest message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest: Option<S>,
}

/// `{"messages": counts}`: a queue's stats.
#[derive(Serialize)]
pub struct StatsView<S> {
    /// The counts.
    pub messages: CountsView<S>,
}

impl<S> StatsView<S> {
    /// The stats `s`, each stamp shown by `stamp`.
    pub fn of(s: &QueueStats, stamp: impl Fn(&MessageStamp) -> S) -> Self {
        let shown = |m: &Option<MessageStamp>| m.as_ref().filter(|_| s.total > 0).map(&stamp);
        StatsView {
            messages: CountsView {
                claimed: s.claimed,
                free: s.free,
                total: s.total,
                oldest: shown(&s.oldest),
                newest: shown(&s.newest),
            },
        }
    }
}

/// A subscription, the same on both transports.
#[derive(Serialize)]
pub struct SubscriptionView<'a> {
    /// Subscription id.
    pub id: &'a str,
    /// The queue it listens to.
    pub source: &'a str,
    /// Where notifications go.
    pub subscriber: &'a str,
    /// Lifetime, seconds.
    pub ttl: i64,
    /// Seconds since it started (or its ttl was last reset).
    pub age: i64,
    /// Its options.
    pub options: &'a Metadata,
    /// Whether the subscriber confirmed.
    pub confirmed: bool,
}

impl<'a> SubscriptionView<'a> {
    /// The view of `s` as of `now` (ms).
    pub fn of(s: &'a Subscription, now: i64) -> Self {
        SubscriptionView {
            id: &s.id,
            source: &s.source,
            subscriber: &s.subscriber,
            ttl: s.ttl,
            age: s.age(now),
            options: &s.options,
            confirmed: s.confirmed,
        }
    }
}

/// A pool; its options only when detailed.
#[derive(Serialize)]
pub struct PoolView<'a> {
    /// Pool name.
    pub name: &'a str,
    /// The pool's flavor (`null` without one).
    pub flavor: Option<&'a str>,
    /// Where its store is.
    pub uri: &'a str,
    /// Its weight.
    pub weight: i64,
    /// Its driver options (detailed only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<&'a Metadata>,
}

impl<'a> PoolView<'a> {
    /// The view of `p`.
    pub fn of(p: &'a PoolRecord, detailed: bool) -> Self {
        PoolView {
            name: &p.name,
            flavor: p.flavor.as_deref(),
            uri: &p.uri,
            weight: p.weight,
            options: detailed.then_some(&p.options),
        }
    }
}

/// A flavor: its pools (as a listing shows them only when there are some),
/// and its capabilities when asked for.
#[derive(Serialize)]
pub struct FlavorView<'a> {
    /// Flavor name.
    pub name: &'a str,
    /// Its pools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool_list: Option<&'a [String]>,
    /// What its pools can do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<&'a [String]>,
}

impl<'a> FlavorView<'a> {
    /// A flavor as a listing shows it.
    pub fn listed(f: &'a FlavorWithPools, detailed: bool) -> Self {
        FlavorView {
            name: &f.flavor.name,
            pool_list: (!f.pool_list.is_empty()).then_some(f.pool_list.as_slice()),
            capabilities: detailed.then_some(f.flavor.capabilities.as_slice()),
        }
    }

    /// A flavor as its own resource shows it (pools and capabilities always).
    pub fn full(f: &'a FlavorWithPools) -> Self {
        FlavorView {
            name: &f.flavor.name,
            pool_list: Some(&f.pool_list),
            capabilities: Some(&f.flavor.capabilities),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stats show creation times as `YYYY-MM-DDTHH:MM:SSZ` (the reference's
    /// form), at the ends of the range a store keeps and in between.
    #[test]
    fn stamps_show_creation_to_the_second() {
        let shown = |created_ms| {
            let m = MessageStamp {
                id: "m".into(),
                created_ms,
            };
            StampView::of(&m, created_ms + 61_500)
        };
        for (ms, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (1_700_000_000_999, "2023-11-14T22:13:20Z"),
            (
                crate::storage::deadline::MAX_DEADLINE_MS,
                "9999-12-31T23:59:59Z",
            ),
        ] {
            let view = shown(ms);
            assert_eq!((view.created.as_str(), view.age), (text, 61));
        }
    }
}
