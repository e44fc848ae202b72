//! [`Catalogue`] in three collections of the main database `D`:
//! `pools` (`_id` the name, `uri` unique, weight `w`, flavor `f`, options
//! `o` as JSON text), `flavors` (project `p`, name `n` unique together,
//! capabilities `c`) and `catalogue` (project `p`, queue `q` unique
//! together, pool `pool`, indexed).

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::FindOptions;

use super::{corrupt, duplicate_key, Failure, MongoStore, OpResult};
use crate::storage::catalogue::{
    Catalogue, FlavorRecord, PoolRecord, MAX_FLAVORS_PER_PROJECT, MAX_POOLS,
};
use crate::storage::{Metadata, Scope, StorageError, StorageResult};

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn pool_from(doc: &Document) -> OpResult<PoolRecord> {
    let options = doc.get_str("o").map_err(|e| corrupt("pool", e))?;
    Ok(PoolRecord {
        name: doc
            .get_str("_id")
            .map_err(|e| corrupt("pool", e))?
            .to_owned(),
        uri: doc
            .get_str("uri")
            .map_err(|e| corrupt("pool", e))?
            .to_owned(),
        weight: doc.get_i64("w").map_err(|e| corrupt("pool", e))?,
        flavor: match doc.get("f") {
            Some(Bson::String(f)) => Some(f.clone()),
            _ => None,
        },
        options: serde_json::from_str::<Metadata>(options)
            .map_err(|e| corrupt("pool's options", e))?,
    })
}

fn flavor_from(doc: &Document) -> OpResult<FlavorRecord> {
    let capabilities = doc
        .get_array("c")
        .map_err(|e| corrupt("flavor", e))?
        .iter()
        .map(|c| c.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| corrupt("flavor", "a capability is not a string"))?;
    Ok(FlavorRecord {
        project: doc
            .get_str("p")
            .map_err(|e| corrupt("flavor", e))?
            .to_owned(),
        name: doc
            .get_str("n")
            .map_err(|e| corrupt("flavor", e))?
            .to_owned(),
        capabilities,
    })
}

async fn collect<T>(
    cursor: mongodb::Cursor<Document>,
    decode: fn(&Document) -> OpResult<T>,
) -> OpResult<Vec<T>> {
    let docs: Vec<Document> = cursor.try_collect().await?;
    docs.iter().map(decode).collect()
}

#[async_trait]
impl Catalogue for MongoStore {
    async fn list_pools(&self, marker: Option<&str>, n: usize) -> StorageResult<Vec<PoolRecord>> {
        self.run("pool list", true, |r, _| async move {
            let filter = match marker {
                Some(m) => doc! { "_id": { "$gt": m } },
                None => doc! {},
            };
            let options = FindOptions::builder()
                .sort(doc! { "_id": 1 })
                .limit(limit(n))
                .build();
            collect(
                r.pools().find(filter).with_options(options).await?,
                pool_from,
            )
            .await
        })
        .await
    }

    async fn get_pool(&self, name: &str) -> StorageResult<Option<PoolRecord>> {
        self.run("pool get", true, |r, _| async move {
            let found = r.pools().find_one(doc! { "_id": name }).await?;
            found.as_ref().map(pool_from).transpose()
        })
        .await
    }

    async fn put_pool(&self, pool: &PoolRecord) -> StorageResult<()> {
        let options = serde_json::to_string(&pool.options).map_err(|e| {
            StorageError::Unavailable(format!("MongoDB: cannot encode pool options: {e}"))
        })?;
        let options = &options;
        self.run("pool put", true, |r, _| async move {
            let exists = r
                .pools()
                .find_one(doc! { "_id": &pool.name })
                .await?
                .is_some();
            if !exists && r.pools().count_documents(doc! {}).await? >= MAX_POOLS as u64 {
                return Err(StorageError::Rejected(format!(
                    "A deployment may have at most {MAX_POOLS} pools."
                ))
                .into());
            }
            let flavor = pool.flavor.as_deref().map_or(Bson::Null, Bson::from);
            let record = doc! {
                "_id": &pool.name, "uri": &pool.uri, "w": pool.weight, "f": flavor, "o": options,
            };
            match r
                .pools()
                .replace_one(doc! { "_id": &pool.name }, record)
                .upsert(true)
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if duplicate_key(&e) => Err(StorageError::Conflict(
                    "The database URI is in use by another pool.".into(),
                )
                .into()),
                Err(e) => Err(Failure::Mongo(e)),
            }
        })
        .await
    }

    async fn delete_pool(&self, name: &str) -> StorageResult<()> {
        self.run("pool delete", true, |r, _| async move {
            r.pools().delete_one(doc! { "_id": name }).await?;
            Ok(())
        })
        .await
    }

    async fn pools_of_flavor(&self, flavor: Option<&str>) -> StorageResult<Vec<PoolRecord>> {
        self.run("pools of flavor", true, |r, _| async move {
            let f = flavor.map_or(Bson::Null, Bson::from);
            let options = FindOptions::builder()
                .sort(doc! { "_id": 1 })
                .limit(limit(MAX_POOLS))
                .build();
            collect(
                r.pools()
                    .find(doc! { "f": f })
                    .with_options(options)
                    .await?,
                pool_from,
            )
            .await
        })
        .await
    }

    async fn list_flavors(
        &self,
        project: &str,
        marker: Option<&str>,
        n: usize,
    ) -> StorageResult<Vec<FlavorRecord>> {
        self.run("flavor list", true, |r, _| async move {
            let mut filter = doc! { "p": project };
            if let Some(marker) = marker {
                filter.insert("n", doc! { "$gt": marker });
            }
            let options = FindOptions::builder()
                .sort(doc! { "p": 1, "n": 1 })
                .limit(limit(n))
                .build();
            collect(
                r.flavors().find(filter).with_options(options).await?,
                flavor_from,
            )
            .await
        })
        .await
    }

    async fn get_flavor(&self, project: &str, name: &str) -> StorageResult<Option<FlavorRecord>> {
        self.run("flavor get", true, |r, _| async move {
            let found = r
                .flavors()
                .find_one(doc! { "p": project, "n": name })
                .await?;
            found.as_ref().map(flavor_from).transpose()
        })
        .await
    }

    async fn put_flavor(&self, flavor: &FlavorRecord) -> StorageResult<()> {
        self.run("flavor put", true, |r, _| async move {
            let key = doc! { "p": &flavor.project, "n": &flavor.name };
            let exists = r.flavors().find_one(key.clone()).await?.is_some();
            if !exists
                && r.flavors()
                    .count_documents(doc! { "p": &flavor.project })
                    .await?
                    >= MAX_FLAVORS_PER_PROJECT as u64
            {
                return Err(StorageError::Rejected(format!(
                    "A project may have at most {MAX_FLAVORS_PER_PROJECT} flavors."
                ))
                .into());
            }
            let record = doc! {
                "p": &flavor.project, "n": &flavor.name, "c": &flavor.capabilities,
            };
            match r.flavors().replace_one(key, record).upsert(true).await {
                // Two concurrent creations: one upsert inserted, the other
                // lost the unique index; the flavor exists either way.
                Ok(_) => Ok(()),
                Err(e) if duplicate_key(&e) => Ok(()),
                Err(e) => Err(Failure::Mongo(e)),
            }
        })
        .await
    }

    async fn delete_flavor(&self, project: &str, name: &str) -> StorageResult<()> {
        self.run("flavor delete", true, |r, _| async move {
            r.flavors()
                .delete_one(doc! { "p": project, "n": name })
                .await?;
            Ok(())
        })
        .await
    }

    async fn lookup(&self, scope: &Scope) -> StorageResult<Option<String>> {
        self.run("catalogue lookup", true, |r, _| async move {
            let found = r
                .catalogue()
                .find_one(doc! { "p": &scope.project, "q": &scope.queue })
                .projection(doc! { "pool": 1, "_id": 0 })
                .await?;
            found
                .map(|d| {
                    d.get_str("pool")
                        .map(str::to_owned)
                        .map_err(|e| corrupt("catalogue entry", e))
                })
                .transpose()
        })
        .await
    }

    async fn map(&self, scope: &Scope, pool: &str) -> StorageResult<()> {
        self.run("catalogue map", true, |r, _| async move {
            let key = doc! { "p": &scope.project, "q": &scope.queue };
            match r
                .catalogue()
                .update_one(key, doc! { "$set": { "pool": pool } })
                .upsert(true)
                .await
            {
                Ok(_) => Ok(()),
                // A concurrent map of the same queue inserted first: write
                // ours over it, as the last map wins.
                Err(e) if duplicate_key(&e) => {
                    r.catalogue()
                        .update_one(
                            doc! { "p": &scope.project, "q": &scope.queue },
                            doc! { "$set": { "pool": pool } },
                        )
                        .await?;
                    Ok(())
                }
                Err(e) => Err(Failure::Mongo(e)),
            }
        })
        .await
    }

    async fn unmap(&self, scope: &Scope) -> StorageResult<()> {
        self.run("catalogue unmap", true, |r, _| async move {
            r.catalogue()
                .delete_one(doc! { "p": &scope.project, "q": &scope.queue })
                .await?;
            Ok(())
        })
        .await
    }

    async fn queues_on_pool(&self, pool: &str) -> StorageResult<u64> {
        self.run("catalogue count", true, |r, _| async move {
            Ok(r.catalogue().count_documents(doc! { "pool": pool }).await?)
        })
        .await
    }
}
