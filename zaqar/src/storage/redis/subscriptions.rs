//! [`SubscriptionStore`] and the notification [`Outbox`] on Redis.
//!
//! # Subscriptions
//!
//! A queue's subscriptions live under the queue's own hash tag (the same
//! slot as its messages; keys in `subscription.lua`): a hash per
//! subscription, a sorted set in creation order for listing and paging, a
//! sorted set by expiry, and a hash from subscriber URI to id. Every
//! operation is one script, so the rule that (project, queue, subscriber)
//! is unique among live subscriptions is checked and applied in one atomic
//! step, whatever the number of API servers. Expiry follows the injected
//! clock: each script first removes the subscriptions of that queue whose
//! expiry passed (each once in its life; no keyspace scan), so an expired
//! subscription never blocks its subscriber from subscribing again.
//!
//! # Outbox
//!
//! The [`Outbox`] trait leases due deliveries across *all* queues, oldest
//! first, and asks when the next one is due. On Redis Cluster a script
//! touches one slot, so a per-queue outbox would need a cross-slot index of
//! queues with pending deliveries, kept apart from (so not atomic with) the
//! queues themselves, and a lease would walk many slots. We keep **one
//! outbox per deployment (key prefix) under its own hash tag,
//! `<prefix>:o{outbox}`** instead: a sorted set by due time per project, a
//! sorted set of the projects by their earliest due time (for fair leases,
//! see [`Outbox::lease_fair`]), and a hash per delivery (keys in
//! `outbox.lua`). Each call is one script, so enqueueing a whole post's
//! fan-out is atomic, and a lease is one round trip.
//!
//! What that costs on Cluster: every outbox operation goes to the one
//! master owning that slot (and its memory holds every pending delivery),
//! so notification throughput is bounded by one node, not the cluster;
//! message traffic stays spread over the queues' slots. A deployment whose
//! deliveries outgrow one node would shard the outbox into a fixed number
//! of tags and lease from them in turn; that is not done here.
//!
//! Deliveries are enqueued right after the post they come from (the
//! notifier stage does so once the messages are stored): the post and its
//! deliveries are two scripts on two slots, so a server dying between the
//! two loses those notifications (as on SQLite, where they are two
//! transactions). Once enqueued, a delivery survives restarts of the
//! server and, with AOF, of Redis; it leaves only through
//! [`Outbox::complete`], so it is delivered at least once.
//!
//! # Round trips
//!
//! One per operation: subscription list, get, get by subscriber, create,
//! update, delete, confirm, purge; outbox enqueue (any number of
//! deliveries), lease (any limit), complete, retry, next due.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::{batches, keys, RedisStore, MAX_CALL_BYTES, MAX_PER_CALL, VALUES_PER_COMMAND};
use crate::storage::deadline::{self, MAX_DEADLINE_MS};
use crate::storage::outbox::{Delivery, FairShare, NewDelivery, Outbox};
use crate::storage::{
    Metadata, NewSubscription, Scope, StorageError, StorageResult, Subscription, SubscriptionStore,
    SubscriptionUpdate,
};

/// A subscription as `subscription.lua` renders it:
/// (id, subscriber, ttl s, expiry ms, options JSON, confirmed "0"/"1").
type SubscriptionRow = (String, String, i64, i64, String, String);

/// A leased delivery as `outbox.lua` renders it:
/// (id, failed attempts, created ms, delivery JSON).
type DeliveryRow = (String, i64, i64, String);

fn corrupt(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(format!("corrupt {what} in Redis: {e}"))
}

fn encode<T: serde::Serialize>(what: &str, value: &T) -> StorageResult<String> {
    serde_json::to_string(value)
        .map_err(|e| StorageError::Unavailable(format!("cannot encode {what}: {e}")))
}

fn to_subscription(scope: &Scope, row: SubscriptionRow) -> StorageResult<Subscription> {
    let (id, subscriber, ttl, expires_ms, options, confirmed) = row;
    Ok(Subscription {
        options: serde_json::from_str(&options).map_err(|e| corrupt("subscription options", e))?,
        id,
        source: scope.queue.clone(),
        subscriber,
        ttl,
        expires_ms,
        confirmed: confirmed == "1",
    })
}

fn to_subscriptions(scope: &Scope, rows: Vec<SubscriptionRow>) -> StorageResult<Vec<Subscription>> {
    rows.into_iter()
        .map(|r| to_subscription(scope, r))
        .collect()
}

/// The longest lease of outbox rows (ms).
const MAX_LEASE_MS: i64 = 86_400_000;

/// The expiry of a subscription living `ttl` seconds from `now_ms`
/// ([`deadline::after`]: refused past the year 9999, as the api core does).
fn expiry(now_ms: i64, ttl: i64) -> StorageResult<String> {
    Ok(deadline::after(now_ms, ttl, "subscription TTL")?.to_string())
}

fn flag(b: bool) -> String {
    if b { "1" } else { "0" }.to_owned()
}

pub(super) fn delivery_json(d: &NewDelivery) -> StorageResult<String> {
    encode(
        "delivery",
        &json!({
            "project": d.project,
            "queue": d.queue,
            "subscription_id": d.subscription_id,
            "subscriber": d.subscriber,
            "options": d.options,
            "queue_retry_policy": d.queue_retry_policy,
            "payload": d.payload,
        }),
    )
}

fn parse_delivery(json: &str) -> StorageResult<NewDelivery> {
    let mut v: Value = serde_json::from_str(json).map_err(|e| corrupt("delivery", e))?;
    let text = |v: &mut Value, key: &str| -> StorageResult<String> {
        match v.get_mut(key).map(Value::take) {
            Some(Value::String(s)) => Ok(s),
            _ => Err(corrupt("delivery", format!("no {key}"))),
        }
    };
    let options: Metadata = match v.get_mut("options").map(Value::take) {
        Some(Value::Object(o)) => o,
        _ => return Err(corrupt("delivery", "no options")),
    };
    Ok(NewDelivery {
        project: text(&mut v, "project")?,
        queue: text(&mut v, "queue")?,
        subscription_id: text(&mut v, "subscription_id")?,
        subscriber: text(&mut v, "subscriber")?,
        options,
        queue_retry_policy: v
            .get_mut("queue_retry_policy")
            .map(Value::take)
            .filter(|p| !p.is_null()),
        payload: v.get_mut("payload").map(Value::take).unwrap_or(Value::Null),
    })
}

impl RedisStore {
    /// Runs `subscription.lua` on the queue's slot with `op` and its arguments.
    async fn eval_subscriptions<T>(
        &self,
        what: &'static str,
        idempotent: bool,
        scope: &Scope,
        op: &str,
        args: Vec<String>,
    ) -> StorageResult<T>
    where
        T: ::redis::FromRedisValue + Send,
    {
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(op.to_owned());
        all.extend(args);
        self.eval_queue(
            what,
            idempotent,
            &self.inner.scripts.subscription,
            scope,
            all,
        )
        .await
    }

    /// Runs `outbox.lua` on the outbox's slot with `op` and its arguments.
    async fn eval_outbox<T>(
        &self,
        what: &'static str,
        idempotent: bool,
        op: &str,
        args: Vec<String>,
    ) -> StorageResult<T>
    where
        T: ::redis::FromRedisValue + Send,
    {
        let prefix = &keys::outbox_prefix(&self.inner.ns);
        let script = &self.inner.scripts.outbox;
        let args = &args;
        let now = self.inner.clock.now_ms();
        let wait = self.inner.wait;
        let reply = self
            .inner
            .conn
            .run(what, idempotent, |mut conn| async move {
                let mut call = script.key(format!("{prefix}:due"));
                call.key(keys::slot_guard_key(prefix));
                call.arg(prefix).arg(now).arg(op);
                for a in args {
                    call.arg(a);
                }
                super::invoke(&call, &mut conn, wait).await
            })
            .await?;
        self.replicated(what, reply)
    }

    /// Turns a script's outcome word into the trait's answer.
    fn outcome(outcome: &str) -> StorageResult<()> {
        match outcome {
            "ok" => Ok(()),
            "not_found" => Err(StorageError::SubscriptionNotFound),
            "exists" => Err(StorageError::SubscriptionExists),
            other => Err(StorageError::Unavailable(format!(
                "unexpected subscription outcome {other:?}"
            ))),
        }
    }
}

#[async_trait]
impl SubscriptionStore for RedisStore {
    async fn list(
        &self,
        scope: &Scope,
        marker: Option<&str>,
        limit: usize,
    ) -> StorageResult<Vec<Subscription>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let args = vec![
            marker.unwrap_or("").to_owned(),
            limit.min(MAX_PER_CALL).to_string(),
        ];
        let rows = self
            .eval_subscriptions("subscription list", true, scope, "list", args)
            .await?;
        to_subscriptions(scope, rows)
    }

    async fn list_confirmed(
        &self,
        scope: &Scope,
        marker: Option<&str>,
        limit: usize,
    ) -> StorageResult<Vec<Subscription>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let args = vec![
            marker.unwrap_or("").to_owned(),
            limit.min(MAX_PER_CALL).to_string(),
        ];
        // The script sorts a queue's subscriptions written before
        // `<Q>:subok` existed into it; beyond its budget it says so, and the
        // full listing is filtered here instead.
        let (index, rows): (String, Vec<SubscriptionRow>) = self
            .eval_subscriptions(
                "subscription list_confirmed",
                true,
                scope,
                "list_confirmed",
                args,
            )
            .await?;
        if index == "indexed" {
            to_subscriptions(scope, rows)
        } else {
            crate::storage::confirmed_by_filtering(self, scope, marker, limit).await
        }
    }

    async fn get(&self, scope: &Scope, id: &str) -> StorageResult<Option<Subscription>> {
        let rows = self
            .eval_subscriptions("subscription get", true, scope, "get", vec![id.to_owned()])
            .await?;
        Ok(to_subscriptions(scope, rows)?.pop())
    }

    async fn get_with_subscriber(
        &self,
        scope: &Scope,
        subscriber: &str,
    ) -> StorageResult<Option<Subscription>> {
        let rows = self
            .eval_subscriptions(
                "subscription get by subscriber",
                true,
                scope,
                "by_subscriber",
                vec![subscriber.to_owned()],
            )
            .await?;
        Ok(to_subscriptions(scope, rows)?.pop())
    }

    async fn create(
        &self,
        scope: &Scope,
        subscription: &NewSubscription,
    ) -> StorageResult<Option<String>> {
        let id = crate::storage::subscription_id();
        let args = vec![
            id.clone(),
            subscription.subscriber.clone(),
            subscription.ttl.to_string(),
            expiry(self.inner.clock.now_ms(), subscription.ttl)?,
            encode("subscription options", &subscription.options)?,
        ];
        let outcome: String = self
            .eval_subscriptions("subscription create", false, scope, "create", args)
            .await?;
        match outcome.as_str() {
            "exists" => Ok(None),
            other => Self::outcome(other).map(|()| Some(id)),
        }
    }

    async fn update(
        &self,
        scope: &Scope,
        id: &str,
        update: &SubscriptionUpdate,
    ) -> StorageResult<()> {
        let options = update
            .options
            .as_ref()
            .map(|o| encode("subscription options", o))
            .transpose()?;
        let ttl = update.ttl.unwrap_or(0);
        let expires = expiry(self.inner.clock.now_ms(), ttl)?;
        let args = vec![
            id.to_owned(),
            flag(update.subscriber.is_some()),
            update.subscriber.clone().unwrap_or_default(),
            flag(update.ttl.is_some()),
            ttl.to_string(),
            expires,
            flag(options.is_some()),
            options.unwrap_or_default(),
        ];
        let outcome: String = self
            .eval_subscriptions("subscription update", true, scope, "update", args)
            .await?;
        Self::outcome(&outcome)
    }

    async fn delete(&self, scope: &Scope, id: &str) -> StorageResult<()> {
        let outcome: String = self
            .eval_subscriptions(
                "subscription delete",
                true,
                scope,
                "delete",
                vec![id.to_owned()],
            )
            .await?;
        Self::outcome(&outcome)
    }

    async fn confirm(&self, scope: &Scope, id: &str, confirmed: bool) -> StorageResult<()> {
        let args = vec![id.to_owned(), flag(confirmed)];
        let outcome: String = self
            .eval_subscriptions("subscription confirm", true, scope, "confirm", args)
            .await?;
        Self::outcome(&outcome)
    }

    async fn purge(&self, scope: &Scope) -> StorageResult<()> {
        // The script deletes a bounded number per call and says when more
        // are left; every call removes at least one, so this ends.
        loop {
            let outcome: String = self
                .eval_subscriptions("subscription purge", true, scope, "purge", Vec::new())
                .await?;
            if outcome != "more" {
                return Self::outcome(&outcome);
            }
        }
    }
}

#[async_trait]
impl Outbox for RedisStore {
    async fn enqueue(&self, deliveries: Vec<NewDelivery>) -> StorageResult<()> {
        if deliveries.is_empty() {
            return Ok(());
        }
        // (project, delivery) pairs, the form the script takes.
        let rows = deliveries
            .iter()
            .map(|d| Ok([d.project.clone(), delivery_json(d)?]))
            .collect::<StorageResult<Vec<[String; 2]>>>()?;
        // A call per chunk (a fan-out can hold thousands of deliveries):
        // each chunk is atomic, and a failure leaves the earlier ones
        // queued, as delivery is at least once anyway.
        let pair_len = |r: &[String; 2]| r[0].len() + r[1].len();
        for chunk in batches(&rows, VALUES_PER_COMMAND / 2, MAX_CALL_BYTES, pair_len) {
            let flat: Vec<String> = chunk.iter().flat_map(|r| r.iter().cloned()).collect();
            // Not retried on a broken connection: the script may have run.
            let _: i64 = self
                .eval_outbox("outbox enqueue", false, "enqueue", flat)
                .await?;
        }
        Ok(())
    }

    async fn lease_fair(
        &self,
        limit: usize,
        lease_ms: i64,
        share: &FairShare,
    ) -> StorageResult<Vec<Delivery>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Counts beyond any real number of workers mean "no cap" and stay
        // exact as Lua numbers.
        const NO_CAP: usize = 1 << 40;
        let busy: Vec<(&String, &usize)> =
            share.in_flight.iter().filter(|(_, n)| **n > 0).collect();
        let mut args = Vec::with_capacity(4 + 2 * busy.len());
        args.push(limit.min(MAX_PER_CALL).to_string());
        args.push(lease_ms.clamp(0, MAX_LEASE_MS).to_string());
        args.push(share.per_project.min(NO_CAP).to_string());
        args.push(busy.len().to_string());
        for (project, n) in busy {
            args.push(project.clone());
            args.push((*n).min(NO_CAP).to_string());
        }
        // Not retried either: a lost reply leaves its rows leased, so they
        // only come back when the lease runs out.
        let rows: Vec<DeliveryRow> = self
            .eval_outbox("outbox lease", false, "lease", args)
            .await?;
        rows.into_iter()
            .map(|(id, attempts, created_ms, json)| {
                Ok(Delivery {
                    id,
                    attempts: attempts.clamp(0, u32::MAX as i64) as u32,
                    created_ms,
                    delivery: parse_delivery(&json)?,
                })
            })
            .collect()
    }

    async fn complete(&self, id: &str) -> StorageResult<()> {
        let _: String = self
            .eval_outbox("outbox complete", true, "complete", vec![id.to_owned()])
            .await?;
        Ok(())
    }

    async fn retry_at(&self, id: &str, attempts: u32, due_ms: i64) -> StorageResult<()> {
        let due_ms = due_ms.clamp(0, MAX_DEADLINE_MS);
        let args = vec![id.to_owned(), attempts.to_string(), due_ms.to_string()];
        let _: String = self
            .eval_outbox("outbox retry", true, "retry", args)
            .await?;
        Ok(())
    }

    async fn next_due_ms(&self) -> StorageResult<Option<i64>> {
        let due: String = self
            .eval_outbox("outbox next due", true, "next_due", Vec::new())
            .await?;
        if due.is_empty() {
            return Ok(None);
        }
        due.parse::<f64>()
            .map(|d| Some(d as i64))
            .map_err(|e| corrupt("outbox due time", e))
    }

    async fn depth(&self) -> StorageResult<Option<u64>> {
        let depth: String = self
            .eval_outbox("outbox depth", true, "depth", Vec::new())
            .await?;
        if depth.is_empty() {
            return Ok(None);
        }
        depth
            .parse::<u64>()
            .map(Some)
            .map_err(|e| corrupt("outbox depth", e))
    }
}
