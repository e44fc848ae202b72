//! [`MessageStore`] on `D_part<i>.messages` (layout in the module docs of
//! [`super`]).
//!
//! The list marker is a message's sequence number `k` in its queue, in
//! decimal. Sequence numbers come from the queue's counter and only grow,
//! so a marker stays meaningful after its message is gone. A marker that is
//! not a positive number, or that is beyond the counter (the queue was
//! purged and its counter dropped since), is unknown: the listing starts
//! from the beginning, as on the other drivers.
//!
//! # Grouped posts
//!
//! Posts to one queue that arrive while an earlier post to it is being
//! written wait for it and are then written together, as one reservation,
//! one insert and one release (see [`crate::storage::group_commit`]):
//! their messages get consecutive numbers, post after post in the order
//! they arrived.
//!
//! # Sequence numbers and concurrent posts
//!
//! A post reserves its sequence numbers on the queue's counter document
//! (one atomic update: `n += count`, and an *in-flight* entry `{s: first,
//! u: until, t: token}`), inserts its messages, then removes the entry. Two
//! posts on one queue never wait for each other, but their inserts may land
//! out of order: the later reservation first. A listing therefore reads the
//! counter first and shows only messages numbered up to the counter as it
//! was then, and below the first number still in flight; what lies beyond
//! shows on the next page, once the posts before it have landed. So a
//! reader paging with markers never skips a message, with no transaction
//! and no lock: a post that dies between its reservation and the removal
//! of its entry only holds listings of that queue back until the entry
//! runs out ([`IN_FLIGHT_GRACE`] after the post's time limit). (A
//! transaction around the counter and the inserts would order them too,
//! but a transaction abandoned by a crashed API server holds the counter
//! for the server's `transactionLifetimeLimitSeconds`, 60 s by default,
//! and every post to the queue waits that long.)

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::{FindOptions, ReturnDocument};
use serde_json::value::RawValue;

use super::{corrupt, date, duplicate_key, ms, Failure, MongoStore, OpResult, Ready, CHUNK};
use crate::storage::{
    ListQuery, Message, MessagePage, MessageStamp, MessageStore, MessageVolume, NewMessage, Posted,
    QueueStats, Scope, StorageError, StorageResult, Subscribed,
};

/// An integer field, whatever integer or double type it was stored as.
pub(super) fn int(doc: &Document, key: &str) -> OpResult<i64> {
    match doc.get(key) {
        Some(Bson::Int64(n)) => Ok(*n),
        Some(Bson::Int32(n)) => Ok(i64::from(*n)),
        Some(Bson::Double(f)) if f.is_finite() => Ok(*f as i64),
        other => Err(corrupt("document", format!("field {key} is {other:?}"))),
    }
}

/// Decodes a message document; returns `(k, message)`. The claim id is
/// only reported while the claim is live at `now`.
pub(super) fn message_from(doc: &Document, now: i64) -> OpResult<(i64, Message)> {
    let id = doc
        .get_object_id("_id")
        .map_err(|e| corrupt("message", e))?;
    let body = doc.get_str("b").map_err(|e| corrupt("message", e))?;
    let body = RawValue::from_string(body.to_owned()).map_err(|e| corrupt("message body", e))?;
    let claim_ends = int(doc, "ce")?;
    let claim_id = match doc.get("c") {
        Some(Bson::ObjectId(c)) if claim_ends > now => Some(c.to_hex()),
        _ => None,
    };
    let message = Message {
        id: id.to_hex(),
        ttl: int(doc, "t")?,
        created_ms: int(doc, "cr")?,
        body,
        claim_id,
        claim_count: int(doc, "cc")?,
        checksum: doc.get_str("cs").ok().map(str::to_owned),
    };
    Ok((int(doc, "k")?, message))
}

/// Decodes a list of message documents, in the order given.
pub(super) fn messages_from(docs: &[Document], now: i64) -> OpResult<Vec<Message>> {
    docs.iter()
        .map(|d| message_from(d, now).map(|(_, m)| m))
        .collect()
}

/// Parses message (or claim) ids; ids that are no ObjectId name nothing.
pub(super) fn object_ids(ids: &[String]) -> Vec<ObjectId> {
    let mut oids: Vec<ObjectId> = ids
        .iter()
        .filter_map(|id| ObjectId::parse_str(id).ok())
        .collect();
    oids.sort();
    oids.dedup();
    oids
}

/// The filter of a queue's live messages that a claim or pop may take.
pub(super) fn claimable(scope: &Scope, now: i64) -> Document {
    doc! {
        "p": &scope.project, "q": &scope.queue,
        "e": { "$gt": date(now) }, "d": { "$lte": now }, "ce": { "$lte": now },
    }
}

/// The index that serves a query of one queue in sequence order.
pub(super) const QUEUE_ORDER: &str = "queue_order";
/// The index that serves a claim's messages.
pub(super) const BY_CLAIM: &str = "by_claim";

/// Finds documents in `k` order through the index `index` (the queries
/// are written for one index each; naming it keeps the planner, and a
/// plan cached for another shape of the same query, from choosing
/// otherwise).
pub(super) async fn find_in_order(
    coll: &mongodb::Collection<Document>,
    filter: Document,
    limit: usize,
    index: &str,
) -> mongodb::error::Result<Vec<Document>> {
    let options = FindOptions::builder()
        .sort(doc! { "k": 1 })
        .limit(i64::try_from(limit).unwrap_or(i64::MAX))
        .hint(mongodb::options::Hint::Name(index.to_owned()))
        .build();
    coll.find(filter)
        .with_options(options)
        .await?
        .try_collect()
        .await
}

/// One post waiting to be written with the others of its queue (the
/// driver groups concurrent posts to a queue: [`crate::storage::group_commit`]).
pub(super) struct PendingPost {
    client_id: String,
    messages: Vec<NewMessage>,
    ids: Vec<ObjectId>,
}

/// The most messages one grouped post writes.
pub(super) const POST_BATCH: usize = 1_000;

/// How long past a post's own time limit its in-flight entry holds
/// listings back (clock differences between API servers included).
pub(super) const IN_FLIGHT_GRACE: i64 = 5_000;

/// Reserves `n` sequence numbers of the queue's counter (creating it) and
/// records them as in flight until `until` (ms) under `token`, dropping
/// entries that ran out; returns the first number.
async fn reserve_once(
    r: &Ready,
    scope: &Scope,
    n: i64,
    now: i64,
    until: i64,
    token: ObjectId,
) -> OpResult<i64> {
    let update = vec![
        doc! { "$set": { "n": { "$add": [ { "$ifNull": [ "$n", 0i64 ] }, n ] } } },
        doc! { "$set": { "f": { "$concatArrays": [
            { "$filter": {
                "input": { "$ifNull": [ "$f", [] ] },
                "cond": { "$gt": [ "$$this.u", now ] },
            } },
            [ { "s": { "$subtract": [ "$n", n.saturating_sub(1) ] }, "u": until, "t": token } ],
        ] } } },
    ];
    let counters = r.counters(&scope.project);
    let key = doc! { "p": &scope.project, "q": &scope.queue };
    let mut counter = counters
        .find_one_and_update(key.clone(), update)
        .upsert(true)
        .return_document(ReturnDocument::After)
        .await?;
    if counter.is_none() {
        // MongoDB always returns the document here. SecantusDB answers
        // null for an upsert that lost the race to create it (and applied
        // it as an update): the token finds this reservation either way.
        counter = counters.find_one(key).await?;
    }
    let entries = counter.as_ref().and_then(|c| c.get_array("f").ok());
    let mine = entries
        .into_iter()
        .flatten()
        .filter_map(Bson::as_document)
        .find(|e| e.get_object_id("t").ok() == Some(token));
    match mine {
        Some(entry) => int(entry, "s"),
        None => Err(corrupt(
            "queue counter",
            "the reservation just made is missing",
        )),
    }
}

/// Ends the in-flight entry of the reservation `token`.
pub(super) async fn release(
    r: &Ready,
    scope: &Scope,
    token: ObjectId,
) -> mongodb::error::Result<()> {
    r.counters(&scope.project)
        .update_one(
            doc! { "p": &scope.project, "q": &scope.queue },
            doc! { "$pull": { "f": { "t": token } } },
        )
        .await?;
    Ok(())
}

/// The highest sequence number a listing that starts now may show (see
/// the module docs), and the counter; `None` when the queue has no counter
/// (so no messages).
async fn listable(
    r: &Ready,
    scope: &Scope,
    now: i64,
) -> mongodb::error::Result<Option<(i64, i64)>> {
    let counter = r
        .counters(&scope.project)
        .find_one(doc! { "p": &scope.project, "q": &scope.queue })
        .await?;
    let Some(counter) = counter else {
        return Ok(None);
    };
    let n = int(&counter, "n").unwrap_or(0);
    let mut upto = n;
    if let Ok(entries) = counter.get_array("f") {
        for entry in entries.iter().filter_map(Bson::as_document) {
            let (Ok(first), Ok(until)) = (int(entry, "s"), int(entry, "u")) else {
                continue;
            };
            if until > now {
                upto = upto.min(first.saturating_sub(1));
            }
        }
    }
    Ok(Some((upto, n)))
}

impl MongoStore {
    /// The live (unexpired) message `id` of `scope`, with its sequence
    /// number: what a get and a marker lookup both read.
    async fn live_message(
        &self,
        what: &'static str,
        scope: &Scope,
        id: ObjectId,
    ) -> StorageResult<Option<(i64, Message)>> {
        self.run(what, true, |r, now| async move {
            let found = r
                .messages(&scope.project)
                .find_one(doc! {
                    "_id": id, "p": &scope.project, "q": &scope.queue, "e": { "$gt": date(now) },
                })
                .await?;
            found.as_ref().map(|d| message_from(d, now)).transpose()
        })
        .await
    }

    /// A random pause before the `attempt`-th retry of a conflicting
    /// reservation: the reference's linear back-off (`attempt /
    /// max_attempts · max_retry_sleep`) plus up to `max_retry_jitter`.
    fn conflict_backoff(&self, attempt: u32) -> std::time::Duration {
        let o = &self.inner.options;
        let ratio = f64::from(attempt) / f64::from(o.max_attempts.max(1));
        let random = (uuid::Uuid::new_v4().as_u128() & 0xffff) as f64 / 65535.0;
        o.max_retry_sleep.mul_f64(ratio.min(1.0)) + o.max_retry_jitter.mul_f64(random)
    }

    /// Reserves `n` sequence numbers of the queue (see the module docs)
    /// under `token`, in flight until the end of this operation's time limit
    /// plus [`IN_FLIGHT_GRACE`]. Two first posts to a queue may race to
    /// create its counter: the loser tries again (`max_attempts`, with a
    /// linear back-off up to `max_retry_sleep` plus up to
    /// `max_retry_jitter`).
    pub(super) async fn reserve(
        &self,
        r: &Ready,
        scope: &Scope,
        n: usize,
        now: i64,
        token: ObjectId,
    ) -> OpResult<i64> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let limit =
            i64::try_from(self.inner.options.operation_timeout.as_millis()).unwrap_or(i64::MAX);
        let until = now.saturating_add(limit).saturating_add(IN_FLIGHT_GRACE);
        let mut attempt = 0;
        loop {
            match reserve_once(r, scope, n, now, until, token).await {
                Err(Failure::Mongo(e))
                    if duplicate_key(&e) && attempt + 1 < self.inner.options.max_attempts =>
                {
                    tokio::time::sleep(self.conflict_backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Stores a batch of posts to one queue (see [`PendingPost`]): reserve
    /// the numbers of all their messages (and, beside it, see whether the
    /// queue has subscriptions), insert them, release. Three round trips
    /// however many posts the batch carries; every post of the batch gets
    /// the same outcome: whether the queue has live subscriptions, and
    /// confirmed ones (`None` when a lookup failed: the notifier looks
    /// again).
    async fn write_posts(
        &self,
        scope: &Scope,
        posts: &[PendingPost],
    ) -> StorageResult<Option<Subscribed>> {
        let count: usize = posts.iter().map(|p| p.messages.len()).sum();
        // Not tried again after a failure: the messages may be stored.
        self.run("message post", false, |r, now| async move {
            let token = ObjectId::new();
            let subscriptions = r.subscriptions();
            let live = subscriptions
                .find_one(doc! {
                    "p": &scope.project, "q": &scope.queue, "e": { "$gt": date(now) },
                })
                .projection(doc! { "_id": 1 });
            let confirmed = subscriptions
                .find_one(doc! {
                    "p": &scope.project, "q": &scope.queue, "cf": true,
                    "e": { "$gt": date(now) },
                })
                .hint(mongodb::options::Hint::Name("confirmed".to_owned()))
                .projection(doc! { "_id": 1 });
            // The subscription lookups run beside the reservation.
            let (first, live, confirmed) =
                tokio::join!(self.reserve(&r, scope, count, now, token), live, confirmed);
            let first = first?;
            let mut docs = Vec::with_capacity(count);
            let messages = posts.iter().flat_map(|p| {
                p.ids
                    .iter()
                    .zip(&p.messages)
                    .map(move |m| (&p.client_id, m))
            });
            for (k, (client_id, (id, m))) in (first..).zip(messages) {
                let mut d = doc! {
                    "_id": id, "p": &scope.project, "q": &scope.queue, "k": k,
                    "u": client_id, "t": m.ttl, "cr": now,
                    "e": date(now.saturating_add(ms(m.ttl))),
                    "d": now.saturating_add(ms(m.delay.max(0))),
                    "ce": 0i64, "cc": 0i64, "b": m.body.get(),
                };
                if let Some(cs) = &m.checksum {
                    d.insert("cs", cs.as_str());
                }
                docs.push(d);
            }
            let messages = r.messages(&scope.project);
            if let Err(e) = messages.insert_many(&docs).await {
                if !duplicate_key(&e) {
                    return Err(e.into());
                }
                // The ids are made here, so a duplicate is this batch's own
                // document: the driver retried an insert whose answer was
                // lost, and the server did not recognise the retry
                // (SecantusDB under load; MongoDB answers such a retry with
                // the first outcome). Store whatever is still missing.
                match messages.insert_many(&docs).ordered(false).await {
                    Err(e) if !super::only_duplicates(&e) => return Err(e.into()),
                    _ => {}
                }
            }
            // Were this to fail, the entry runs out by itself.
            release(&r, scope, token).await?;
            Ok(match (live, confirmed) {
                (Ok(live), Ok(confirmed)) => {
                    Some(Subscribed::from_flags(live.is_some(), confirmed.is_some()))
                }
                _ => None,
            })
        })
        .await
    }

    /// Deletes the messages with `filter` plus one of `ids`, in chunks.
    async fn delete_chunks(
        &self,
        what: &'static str,
        ids: &[ObjectId],
        filter: Document,
        project: &str,
    ) -> StorageResult<()> {
        for chunk in ids.chunks(CHUNK) {
            let filter = &filter;
            self.run(what, true, |r, _| async move {
                let mut f = filter.clone();
                f.insert("_id", doc! { "$in": chunk });
                r.messages(project).delete_many(f).await?;
                Ok(())
            })
            .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl MessageStore for MongoStore {
    async fn post(
        &self,
        scope: &Scope,
        client_id: &str,
        messages: Vec<NewMessage>,
    ) -> StorageResult<Posted> {
        if messages.is_empty() {
            return Ok(Posted::default());
        }
        // Refused before the first write, as on every driver.
        let now = self.inner.clock.now_ms();
        for m in &messages {
            crate::storage::deadline::message_times(now, m.ttl, m.delay)?;
        }
        let ids: Vec<ObjectId> = messages.iter().map(|_| ObjectId::new()).collect();
        let posted: Vec<String> = ids.iter().map(|id| id.to_hex()).collect();
        let weight = messages.len();
        let post = PendingPost {
            client_id: client_id.to_owned(),
            messages,
            ids,
        };
        let store = self.clone();
        let outcome = self
            .inner
            .posts
            .submit(scope.clone(), post, weight, move |scope, posts| {
                let store = store.clone();
                async move {
                    let outcome = store.write_posts(&scope, &posts).await;
                    vec![outcome; posts.len()]
                }
            })
            .await;
        let subscribed = outcome.unwrap_or_else(|| {
            Err(StorageError::Unavailable(
                "the MongoDB post was abandoned".to_owned(),
            ))
        })?;
        Ok(Posted {
            ids: posted,
            subscribed,
            woke_others: false,
        })
    }

    async fn list(&self, scope: &Scope, query: &ListQuery) -> StorageResult<MessagePage> {
        let marker = query
            .marker
            .as_deref()
            .and_then(|m| m.parse::<i64>().ok())
            .filter(|k| *k > 0);
        let found = self
            .run("message list", true, |r, now| async move {
                // The counter first, then the page (see the module docs).
                let Some((upto, counter)) = listable(&r, scope, now).await? else {
                    return Ok(Vec::new());
                };
                let after = marker.filter(|m| *m <= counter).unwrap_or(0);
                let mut filter = doc! {
                    "p": &scope.project, "q": &scope.queue,
                    "k": { "$gt": after, "$lte": upto }, "e": { "$gt": date(now) },
                };
                if !query.echo {
                    filter.insert("u", doc! { "$ne": &query.client_id });
                }
                if !query.include_claimed {
                    filter.insert("ce", doc! { "$lte": now });
                }
                if !query.include_delayed {
                    filter.insert("d", doc! { "$lte": now });
                }
                let docs = find_in_order(
                    &r.messages(&scope.project),
                    filter,
                    query.limit,
                    QUEUE_ORDER,
                )
                .await?;
                docs.iter()
                    .map(|d| message_from(d, now))
                    .collect::<OpResult<Vec<_>>>()
            })
            .await?;
        let next_marker = found.last().map(|(k, _)| k.to_string());
        Ok(MessagePage {
            messages: found.into_iter().map(|(_, m)| m).collect(),
            next_marker,
        })
    }

    async fn get(&self, scope: &Scope, id: &str) -> StorageResult<Option<Message>> {
        let Ok(oid) = ObjectId::parse_str(id) else {
            return Ok(None);
        };
        Ok(self
            .live_message("message get", scope, oid)
            .await?
            .map(|(_, m)| m))
    }

    async fn marker_of(&self, scope: &Scope, id: &str) -> StorageResult<Option<String>> {
        let Ok(oid) = ObjectId::parse_str(id) else {
            return Ok(None);
        };
        Ok(self
            .live_message("message marker", scope, oid)
            .await?
            .map(|(k, _)| k.to_string()))
    }

    async fn bulk_get(&self, scope: &Scope, ids: &[String]) -> StorageResult<Vec<Message>> {
        let oids = object_ids(ids);
        let mut found = Vec::new();
        for chunk in oids.chunks(CHUNK) {
            let docs = self
                .run("message bulk_get", true, |r, now| async move {
                    let filter = doc! {
                        "_id": { "$in": chunk }, "p": &scope.project, "q": &scope.queue,
                        "e": { "$gt": date(now) },
                    };
                    let docs =
                        find_in_order(&r.messages(&scope.project), filter, chunk.len(), "_id_")
                            .await?;
                    docs.iter()
                        .map(|d| message_from(d, now))
                        .collect::<OpResult<Vec<_>>>()
                })
                .await?;
            found.extend(docs);
        }
        found.sort_by_key(|(k, _)| *k);
        Ok(found.into_iter().map(|(_, m)| m).collect())
    }

    async fn delete(&self, scope: &Scope, id: &str, claim_id: Option<&str>) -> StorageResult<()> {
        let Ok(oid) = ObjectId::parse_str(id) else {
            return Ok(());
        };
        // A claim id that is no ObjectId names no claim: refused once the
        // message is known to be there (a message that is not is deleted
        // already, as on the other stores and the reference's Redis).
        let given = claim_id.map(|c| ObjectId::parse_str(c).ok());
        self.run("message delete", true, |r, now| async move {
            let messages = r.messages(&scope.project);
            // Each delete is conditional on the claim state it was decided
            // on; when that changed in between (a claim came or went), the
            // rules are applied again to the new state.
            for _ in 0..3 {
                let found = messages
                    .find_one(doc! {
                        "_id": oid, "p": &scope.project, "q": &scope.queue, "e": { "$gt": date(now) },
                    })
                    .projection(doc! { "c": 1, "ce": 1 })
                    .await?;
                let Some(found) = found else {
                    return Ok(());
                };
                if given == Some(None) {
                    return Err(StorageError::ClaimNotFound.into());
                }
                let held = match found.get("c") {
                    Some(Bson::ObjectId(c)) if int(&found, "ce")? > now => Some(*c),
                    _ => None,
                };
                let condition = match (held, given) {
                    (None, None) => doc! { "ce": { "$lte": now } },
                    (Some(_), None) => return Err(StorageError::MessageIsClaimed.into()),
                    (None, Some(_)) => return Err(StorageError::MessageNotClaimed.into()),
                    (Some(held), Some(Some(given))) if held == given => {
                        doc! { "c": held, "ce": { "$gt": now } }
                    }
                    (Some(_), Some(given)) => {
                        let live = match given {
                            None => false,
                            Some(given) => r
                                .claims(&scope.project)
                                .find_one(doc! {
                                    "_id": given, "p": &scope.project, "q": &scope.queue,
                                    "e": { "$gt": date(now) },
                                })
                                .projection(doc! { "_id": 1 })
                                .await?
                                .is_some(),
                        };
                        return Err(if live {
                            StorageError::MessageIsClaimed
                        } else {
                            StorageError::ClaimNotFound
                        }
                        .into());
                    }
                };
                let mut filter = doc! { "_id": oid, "p": &scope.project, "q": &scope.queue };
                filter.extend(condition);
                if messages.delete_one(filter).await?.deleted_count == 1 {
                    return Ok(());
                }
            }
            Err(StorageError::Unavailable(
                "MongoDB message delete: the message's claim kept changing".to_owned(),
            )
            .into())
        })
        .await
    }

    async fn bulk_delete(
        &self,
        scope: &Scope,
        ids: &[String],
        claim_ids: Option<&[String]>,
    ) -> StorageResult<()> {
        let oids = object_ids(ids);
        let base = doc! { "p": &scope.project, "q": &scope.queue };
        let Some(claim_ids) = claim_ids else {
            return self
                .delete_chunks("message bulk_delete", &oids, base, &scope.project)
                .await;
        };
        let claims = object_ids(claim_ids);
        // All or nothing: every live message among the ids must be held by
        // one of the given live claims, checked before anything is deleted.
        for chunk in oids.chunks(CHUNK) {
            let claims = &claims;
            self.run("message bulk_delete", true, |r, now| async move {
                let stray = r
                    .messages(&scope.project)
                    .find_one(doc! {
                        "_id": { "$in": chunk }, "p": &scope.project, "q": &scope.queue,
                        "e": { "$gt": date(now) },
                        "$or": [ { "c": { "$nin": claims } }, { "ce": { "$lte": now } } ],
                    })
                    .projection(doc! { "_id": 1 })
                    .await?;
                match stray {
                    Some(_) => Err(StorageError::ClaimMismatch.into()),
                    None => Ok(()),
                }
            })
            .await?;
        }
        let now = self.inner.clock.now_ms();
        let mut held = base;
        held.insert("c", doc! { "$in": &claims });
        held.insert("ce", doc! { "$gt": now });
        self.delete_chunks("message bulk_delete", &oids, held, &scope.project)
            .await
    }

    async fn pop(&self, scope: &Scope, limit: usize) -> StorageResult<Vec<Message>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let taker = ObjectId::new();
        self.run("message pop", true, |r, now| async move {
            let messages = r.messages(&scope.project);
            // Take the candidates as a claim would (conditionally, so a
            // racing claim or pop keeps the ones it won), then delete
            // what this pop took. A pop interrupted in between leaves its
            // messages held for a minute, then they are claimable again.
            let candidates =
                find_in_order(&messages, claimable(scope, now), limit, QUEUE_ORDER).await?;
            if candidates.is_empty() {
                return Ok(Vec::new());
            }
            let ids: Vec<Bson> = candidates
                .iter()
                .filter_map(|d| d.get("_id").cloned())
                .collect();
            let mut filter = claimable(scope, now);
            filter.insert("_id", doc! { "$in": &ids });
            let taken = messages
                .update_many(
                    filter,
                    doc! { "$set": { "c": taker, "ce": now.saturating_add(60_000) } },
                )
                .await?;
            let popped = if taken.modified_count as usize == candidates.len() {
                candidates
            } else {
                find_in_order(
                    &messages,
                    doc! { "c": taker, "p": &scope.project, "q": &scope.queue },
                    limit,
                    BY_CLAIM,
                )
                .await?
            };
            messages
                .delete_many(doc! { "c": taker, "p": &scope.project, "q": &scope.queue })
                .await?;
            let mut popped = messages_from(&popped, now)?;
            for m in &mut popped {
                m.claim_id = None;
            }
            Ok(popped)
        })
        .await
    }

    async fn stats(&self, scope: &Scope) -> StorageResult<QueueStats> {
        self.run("message stats", true, |r, now| async move {
            let pipeline = [
                doc! { "$match": {
                    "p": &scope.project, "q": &scope.queue, "e": { "$gt": date(now) },
                } },
                doc! { "$sort": { "k": 1 } },
                doc! { "$group": {
                    "_id": Bson::Null,
                    "total": { "$sum": 1i64 },
                    "claimed": { "$sum": { "$cond": [ { "$gt": [ "$ce", now ] }, 1i64, 0i64 ] } },
                    "oldest": { "$first": { "id": "$_id", "cr": "$cr" } },
                    "newest": { "$last": { "id": "$_id", "cr": "$cr" } },
                } },
            ];
            let groups: Vec<Document> = r
                .messages(&scope.project)
                .aggregate(pipeline)
                .hint(mongodb::options::Hint::Name(QUEUE_ORDER.to_owned()))
                .await?
                .try_collect()
                .await?;
            let Some(g) = groups.first() else {
                return Ok(QueueStats::default());
            };
            let stamp = |key: &str| -> OpResult<Option<MessageStamp>> {
                let Ok(s) = g.get_document(key) else {
                    return Ok(None);
                };
                Ok(Some(MessageStamp {
                    id: s
                        .get_object_id("id")
                        .map_err(|e| corrupt("message", e))?
                        .to_hex(),
                    created_ms: int(s, "cr")?,
                }))
            };
            let total = int(g, "total")?.max(0) as u64;
            let claimed = int(g, "claimed")?.max(0) as u64;
            Ok(QueueStats {
                claimed,
                free: total.saturating_sub(claimed),
                total,
                oldest: stamp("oldest")?,
                newest: stamp("newest")?,
            })
        })
        .await
    }

    async fn purge(&self, scope: &Scope) -> StorageResult<()> {
        self.run("message purge", true, |r, now| async move {
            let filter = doc! { "p": &scope.project, "q": &scope.queue };
            r.messages(&scope.project)
                .delete_many(filter.clone())
                .await?;
            r.claims(&scope.project).delete_many(filter).await?;
            // The counter goes too, unless a post is in flight (its
            // messages, numbered by this counter, may still land); a queue
            // posted to again starts over, and old markers are unknown.
            r.counters(&scope.project)
                .delete_one(doc! {
                    "p": &scope.project, "q": &scope.queue,
                    "f": { "$not": { "$elemMatch": { "u": { "$gt": now } } } },
                })
                .await?;
            Ok(())
        })
        .await
    }

    async fn volume(&self) -> StorageResult<Option<MessageVolume>> {
        self.run("message volume", true, |r, now| async move {
            let mut volume = MessageVolume::default();
            for part in r.parts.iter() {
                let messages = part.collection::<Document>(super::MESSAGES);
                volume.total += messages
                    .count_documents(doc! { "e": { "$gt": date(now) } })
                    .await?;
                volume.claimed += messages
                    .count_documents(doc! {
                        "c": { "$exists": true }, "ce": { "$gt": now }, "e": { "$gt": date(now) },
                    })
                    .await?;
            }
            volume.free = volume.total.saturating_sub(volume.claimed);
            Ok(Some(volume))
        })
        .await
    }
}
