//! [`SubscriptionStore`] on `D.subscriptions`.
//!
//! A subscription's id is a UUID (`_id`, as on the other drivers); `o`, an
//! ObjectId made at creation, orders the listing: creation order for
//! subscriptions created by one API server (ObjectIds from several servers
//! are ordered by their second, then arbitrarily). A
//! unique index on (project, queue, subscriber) makes a second live
//! subscription with the same subscriber impossible, whatever the number
//! of API servers; an expired one holding the subscriber is deleted before
//! a create or a subscriber change. The options (`op`) are kept as JSON
//! text.

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{doc, Document};
use mongodb::options::{FindOptions, Hint};

use super::messages::int;
use super::{corrupt, date, duplicate_key, ms, Failure, MongoStore, OpResult, Ready};
use crate::storage::{
    Metadata, NewSubscription, Scope, StorageError, StorageResult, Subscription, SubscriptionStore,
    SubscriptionUpdate,
};

fn encode(options: &Metadata) -> StorageResult<String> {
    serde_json::to_string(options)
        .map_err(|e| StorageError::Unavailable(format!("cannot encode subscription options: {e}")))
}

fn subscription_from(doc: &Document) -> OpResult<Subscription> {
    let text = |key: &str| -> OpResult<String> {
        Ok(doc
            .get_str(key)
            .map_err(|e| corrupt("subscription", e))?
            .to_owned())
    };
    Ok(Subscription {
        id: text("_id")?,
        source: text("q")?,
        subscriber: text("u")?,
        ttl: int(doc, "t")?,
        expires_ms: doc
            .get_datetime("e")
            .map_err(|e| corrupt("subscription", e))?
            .timestamp_millis(),
        options: serde_json::from_str(&text("op")?)
            .map_err(|e| corrupt("subscription's options", e))?,
        confirmed: doc.get_bool("cf").unwrap_or(false),
    })
}

/// Deletes the expired subscription of the queue that holds `subscriber`,
/// if any, so that it does not block a live one.
async fn clear_expired(r: &Ready, scope: &Scope, subscriber: &str, now: i64) -> OpResult<()> {
    r.subscriptions()
        .delete_many(doc! {
            "p": &scope.project, "q": &scope.queue, "u": subscriber, "e": { "$lte": date(now) },
        })
        .await?;
    Ok(())
}

/// The filter of one live subscription of the queue.
fn live(scope: &Scope, id: &str, now: i64) -> Document {
    doc! { "_id": id, "p": &scope.project, "q": &scope.queue, "e": { "$gt": date(now) } }
}

impl MongoStore {
    /// A page of live subscriptions after `marker` in creation order: every
    /// one, or only the confirmed ones (index `confirmed_order`).
    async fn list_where(
        &self,
        scope: &Scope,
        marker: Option<&str>,
        limit: usize,
        confirmed_only: bool,
    ) -> StorageResult<Vec<Subscription>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run("subscription list", true, |r, now| async move {
            let subscriptions = r.subscriptions();
            // An unknown marker (not a subscription of this queue) starts
            // from the first.
            let after = match marker {
                Some(m) => subscriptions
                    .find_one(doc! { "_id": m, "p": &scope.project, "q": &scope.queue })
                    .projection(doc! { "o": 1 })
                    .await?
                    .and_then(|d| d.get_object_id("o").ok()),
                None => None,
            };
            let mut filter = doc! {
                "p": &scope.project, "q": &scope.queue, "e": { "$gt": date(now) },
            };
            if let Some(after) = after {
                filter.insert("o", doc! { "$gt": after });
            }
            if confirmed_only {
                filter.insert("cf", true);
            }
            let options = FindOptions::builder()
                .sort(doc! { "o": 1 })
                .limit(limit)
                .hint(confirmed_only.then(|| Hint::Name("confirmed_order".to_owned())))
                .build();
            let docs: Vec<Document> = subscriptions
                .find(filter)
                .with_options(options)
                .await?
                .try_collect()
                .await?;
            docs.iter().map(subscription_from).collect()
        })
        .await
    }
}

#[async_trait]
impl SubscriptionStore for MongoStore {
    async fn list(
        &self,
        scope: &Scope,
        marker: Option<&str>,
        limit: usize,
    ) -> StorageResult<Vec<Subscription>> {
        self.list_where(scope, marker, limit, false).await
    }

    async fn list_confirmed(
        &self,
        scope: &Scope,
        marker: Option<&str>,
        limit: usize,
    ) -> StorageResult<Vec<Subscription>> {
        self.list_where(scope, marker, limit, true).await
    }

    async fn get(&self, scope: &Scope, id: &str) -> StorageResult<Option<Subscription>> {
        self.run("subscription get", true, |r, now| async move {
            let found = r.subscriptions().find_one(live(scope, id, now)).await?;
            found.as_ref().map(subscription_from).transpose()
        })
        .await
    }

    async fn get_with_subscriber(
        &self,
        scope: &Scope,
        subscriber: &str,
    ) -> StorageResult<Option<Subscription>> {
        self.run("subscription get", true, |r, now| async move {
            let found = r
                .subscriptions()
                .find_one(doc! {
                    "p": &scope.project, "q": &scope.queue, "u": subscriber,
                    "e": { "$gt": date(now) },
                })
                .await?;
            found.as_ref().map(subscription_from).transpose()
        })
        .await
    }

    async fn create(
        &self,
        scope: &Scope,
        subscription: &NewSubscription,
    ) -> StorageResult<Option<String>> {
        let options = encode(&subscription.options)?;
        let options = &options;
        let id = crate::storage::subscription_id();
        let id = &id;
        let order = ObjectId::new();
        self.run("subscription create", true, |r, now| async move {
            clear_expired(&r, scope, &subscription.subscriber, now).await?;
            let record = doc! {
                "_id": id, "o": order, "p": &scope.project, "q": &scope.queue,
                "u": &subscription.subscriber, "t": subscription.ttl,
                "e": date(now.saturating_add(ms(subscription.ttl))),
                "op": options, "cf": false,
            };
            match r.subscriptions().insert_one(record).await {
                Ok(_) => Ok(Some(id.clone())),
                // Another live subscription has this subscriber (or a
                // retried insert had gone through: then it is this one).
                Err(e) if duplicate_key(&e) => {
                    let mine = r
                        .subscriptions()
                        .find_one(doc! { "_id": id })
                        .projection(doc! { "_id": 1 })
                        .await?;
                    Ok(mine.map(|_| id.clone()))
                }
                Err(e) => Err(Failure::Mongo(e)),
            }
        })
        .await
    }

    async fn update(
        &self,
        scope: &Scope,
        id: &str,
        update: &SubscriptionUpdate,
    ) -> StorageResult<()> {
        let options = update.options.as_ref().map(encode).transpose()?;
        let options = &options;
        self.run("subscription update", true, |r, now| async move {
            let mut set = Document::new();
            if let Some(subscriber) = &update.subscriber {
                clear_expired(&r, scope, subscriber, now).await?;
                set.insert("u", subscriber.as_str());
            }
            if let Some(ttl) = update.ttl {
                set.insert("t", ttl);
                set.insert("e", date(now.saturating_add(ms(ttl))));
            }
            if let Some(options) = options {
                set.insert("op", options.as_str());
            }
            let filter = live(scope, id, now);
            if set.is_empty() {
                let found = r.subscriptions().find_one(filter).await?;
                return match found {
                    Some(_) => Ok(()),
                    None => Err(StorageError::SubscriptionNotFound.into()),
                };
            }
            match r
                .subscriptions()
                .update_one(filter, doc! { "$set": set })
                .await
            {
                Ok(u) if u.matched_count == 0 => Err(StorageError::SubscriptionNotFound.into()),
                Ok(_) => Ok(()),
                Err(e) if duplicate_key(&e) => Err(StorageError::SubscriptionExists.into()),
                Err(e) => Err(Failure::Mongo(e)),
            }
        })
        .await
    }

    async fn delete(&self, scope: &Scope, id: &str) -> StorageResult<()> {
        self.run("subscription delete", true, |r, _| async move {
            r.subscriptions()
                .delete_one(doc! { "_id": id, "p": &scope.project, "q": &scope.queue })
                .await?;
            Ok(())
        })
        .await
    }

    async fn confirm(&self, scope: &Scope, id: &str, confirmed: bool) -> StorageResult<()> {
        self.run("subscription confirm", true, |r, now| async move {
            let updated = r
                .subscriptions()
                .update_one(live(scope, id, now), doc! { "$set": { "cf": confirmed } })
                .await?;
            if updated.matched_count == 0 {
                return Err(StorageError::SubscriptionNotFound.into());
            }
            Ok(())
        })
        .await
    }

    async fn purge(&self, scope: &Scope) -> StorageResult<()> {
        self.run("subscription purge", true, |r, _| async move {
            r.subscriptions()
                .delete_many(doc! { "p": &scope.project, "q": &scope.queue })
                .await?;
            Ok(())
        })
        .await
    }
}
