//! [`Outbox`] on `D.outbox`: one document per pending delivery.
//!
//! Fields: `_id` (ObjectId, the delivery id), `p` project, `q` queue, `sid`
//! subscription id, `u` subscriber, `o` options, `rp` the queue's retry
//! policy, `pl` payload (the three as JSON text), `a` failed attempts, `cr`
//! created (ms), `due` (ms), `l` leased until (ms, 0 when not leased), `tok`
//! the token of the lease that took it.
//!
//! A lease is conditional, as claims are: the deliveries are picked, then
//! taken by one `updateMany` whose filter repeats "due and not leased", with
//! a token of this lease, and read back by that token; two API servers
//! never lease one delivery. Picking is fair (see [`Outbox::lease_fair`]):
//! one aggregation finds each project's oldest due delivery (the projects
//! at their cap are left out), then the `limit` projects whose oldest
//! waited longest are served in turns, each from a query on
//! `by_project (p, due, _id)`. The aggregation reads every due delivery,
//! so a lease costs time in proportion to the due backlog (the outbox is
//! normally short: deliveries leave it as they are made).

use std::collections::HashMap;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::FindOptions;
use serde_json::Value;

use super::messages::int;
use super::{corrupt, only_duplicates, Failure, MongoStore, OpResult, CHUNK};
use crate::storage::outbox::{Delivery, FairShare, NewDelivery, Outbox};
use crate::storage::{StorageError, StorageResult};

fn json<T: serde::Serialize>(what: &str, value: &T) -> StorageResult<String> {
    serde_json::to_string(value)
        .map_err(|e| StorageError::Unavailable(format!("cannot encode the {what}: {e}")))
}

fn delivery_from(doc: &Document) -> OpResult<Delivery> {
    let text =
        |key: &str| -> OpResult<&str> { doc.get_str(key).map_err(|e| corrupt("delivery", e)) };
    let parse = |key: &str| -> OpResult<Value> {
        serde_json::from_str(text(key)?).map_err(|e| corrupt("delivery", e))
    };
    let options = match parse("o")? {
        Value::Object(map) => map,
        other => return Err(corrupt("delivery", format!("options are {other}"))),
    };
    let queue_retry_policy = match doc.get("rp") {
        Some(Bson::String(p)) => Some(serde_json::from_str(p).map_err(|e| corrupt("delivery", e))?),
        _ => None,
    };
    Ok(Delivery {
        id: doc
            .get_object_id("_id")
            .map_err(|e| corrupt("delivery", e))?
            .to_hex(),
        attempts: int(doc, "a")?.clamp(0, i64::from(u32::MAX)) as u32,
        created_ms: int(doc, "cr")?,
        delivery: NewDelivery {
            project: text("p")?.to_owned(),
            queue: text("q")?.to_owned(),
            subscription_id: text("sid")?.to_owned(),
            subscriber: text("u")?.to_owned(),
            options,
            queue_retry_policy,
            payload: parse("pl")?,
        },
    })
}

fn delivery_id(id: &str) -> StorageResult<ObjectId> {
    ObjectId::parse_str(id).map_err(|_| StorageError::Unavailable(format!("bad outbox id {id:?}")))
}

#[async_trait]
impl Outbox for MongoStore {
    async fn enqueue(&self, deliveries: Vec<NewDelivery>) -> StorageResult<()> {
        let mut docs = Vec::with_capacity(deliveries.len());
        for d in &deliveries {
            let policy = match &d.queue_retry_policy {
                Some(p) => Bson::String(json("retry policy", p)?),
                None => Bson::Null,
            };
            docs.push(doc! {
                "_id": ObjectId::new(), "p": &d.project, "q": &d.queue,
                "sid": &d.subscription_id, "u": &d.subscriber,
                "o": json("delivery options", &d.options)?, "rp": policy,
                "pl": json("delivery payload", &d.payload)?,
                "a": 0i64, "l": 0i64,
            });
        }
        for chunk in docs.chunks(CHUNK) {
            // The ids are chosen here, so trying again after a failover
            // cannot queue a delivery twice.
            self.run("outbox enqueue", true, |r, now| async move {
                let rows = chunk.iter().map(|d| {
                    let mut d = d.clone();
                    d.insert("cr", now);
                    d.insert("due", now);
                    d
                });
                match r.outbox().insert_many(rows).ordered(false).await {
                    Ok(_) => Ok(()),
                    Err(e) if only_duplicates(&e) => Ok(()),
                    Err(e) => Err(Failure::Mongo(e)),
                }
            })
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
        let token = ObjectId::new();
        let capped: Vec<&str> = share
            .in_flight
            .keys()
            .filter(|p| share.quota(p, limit) == 0)
            .map(String::as_str)
            .collect();
        let capped = &capped;
        // Not retried: a lease that failed half-way leaves its deliveries
        // leased until the lease runs out, then they are due again.
        self.run("outbox lease", false, |r, now| async move {
            let outbox = r.outbox();
            let due = doc! { "due": { "$lte": now }, "l": { "$lte": now } };
            let mut heads_filter = due.clone();
            heads_filter.insert("p", doc! { "$nin": capped });
            let pipeline = [
                doc! { "$match": heads_filter },
                doc! { "$sort": { "due": 1, "_id": 1 } },
                doc! { "$group": { "_id": "$p", "due": { "$first": "$due" }, "id": { "$first": "$_id" } } },
                doc! { "$sort": { "due": 1, "id": 1 } },
                doc! { "$limit": i64::try_from(limit).unwrap_or(i64::MAX) },
            ];
            let heads: Vec<Document> = outbox.aggregate(pipeline).await?.try_collect().await?;
            let per_project = heads.iter().filter_map(|h| h.get_str("_id").ok()).map(|project| {
                let mut filter = due.clone();
                filter.insert("p", project);
                let options = FindOptions::builder()
                    .sort(doc! { "due": 1, "_id": 1 })
                    .limit(i64::try_from(share.quota(project, limit)).unwrap_or(i64::MAX))
                    .projection(doc! { "_id": 1 })
                    .build();
                let outbox = &outbox;
                async move {
                    let docs: Vec<Document> =
                        outbox.find(filter).with_options(options).await?.try_collect().await?;
                    Ok::<_, mongodb::error::Error>(
                        docs.iter().filter_map(|d| d.get_object_id("_id").ok()).collect::<Vec<_>>(),
                    )
                }
            });
            let lists = futures_util::future::try_join_all(per_project).await?;
            // Turns: every project's first, then every project's second...
            let mut picked: Vec<ObjectId> = Vec::with_capacity(limit);
            'rounds: for round in 0.. {
                let before = picked.len();
                for ids in &lists {
                    if picked.len() == limit {
                        break 'rounds;
                    }
                    if let Some(id) = ids.get(round) {
                        picked.push(*id);
                    }
                }
                if picked.len() == before {
                    break;
                }
            }
            if picked.is_empty() {
                return Ok(Vec::new());
            }
            let mut take = due.clone();
            take.insert("_id", doc! { "$in": &picked });
            outbox
                .update_many(
                    take,
                    doc! { "$set": { "l": now.saturating_add(lease_ms), "tok": token } },
                )
                .await?;
            let taken: Vec<Document> = outbox
                .find(doc! { "_id": { "$in": &picked }, "tok": token })
                .await?
                .try_collect()
                .await?;
            let mut by_id: HashMap<ObjectId, Document> = taken
                .into_iter()
                .filter_map(|d| Some((d.get_object_id("_id").ok()?, d)))
                .collect();
            picked
                .iter()
                .filter_map(|id| by_id.remove(id))
                .map(|d| delivery_from(&d))
                .collect()
        })
        .await
    }

    async fn complete(&self, id: &str) -> StorageResult<()> {
        let id = delivery_id(id)?;
        self.run("outbox complete", true, |r, _| async move {
            r.outbox().delete_one(doc! { "_id": id }).await?;
            Ok(())
        })
        .await
    }

    async fn retry_at(&self, id: &str, attempts: u32, due_ms: i64) -> StorageResult<()> {
        let id = delivery_id(id)?;
        self.run("outbox retry", true, |r, _| async move {
            r.outbox()
                .update_one(
                    doc! { "_id": id },
                    doc! { "$set": { "a": i64::from(attempts), "due": due_ms, "l": 0i64 } },
                )
                .await?;
            Ok(())
        })
        .await
    }

    async fn next_due_ms(&self) -> StorageResult<Option<i64>> {
        self.run("outbox next due", true, |r, _| async move {
            let pipeline = [doc! { "$group": {
                "_id": Bson::Null, "next": { "$min": { "$max": [ "$due", "$l" ] } },
            } }];
            let groups: Vec<Document> = r.outbox().aggregate(pipeline).await?.try_collect().await?;
            groups.first().map(|g| int(g, "next")).transpose()
        })
        .await
    }

    async fn depth(&self) -> StorageResult<Option<u64>> {
        self.run("outbox depth", true, |r, _| async move {
            Ok(Some(r.outbox().estimated_document_count().await?))
        })
        .await
    }
}
