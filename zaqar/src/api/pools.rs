//! Pool and flavor operations (admin mode with pooling): the reference's
//! validation, texts and status codes, without its bugs (behaviour notes,
//! appendix): a PATCH is checked like a PUT (unknown fields refused, a URI of
//! another pool is 409), a flavor's pools are exactly its `pool_list`
//! (a re-PUT drops the pools left out), every pool of a flavor must be of one
//! kind of store, and a pool that still holds queues cannot be deleted (the
//! reference orphans them).

use serde_json::{Map, Value};

use super::body::as_int;
use super::validate::{self, no_greater_than};
use super::{Api, Payload};
use crate::context::RequestContext;
use crate::error::{storage_error, ApiError, ApiResult};
use crate::storage::catalogue::{FlavorRecord, PoolRecord};
use crate::storage::engines;
use crate::storage::pooling::PooledStore;

/// Default pool and flavor page size.
pub const DEFAULT_PAGE: usize = 10;
/// Longest pool URI (the reference's schema).
pub const MAX_URI_LEN: usize = 255;
/// Longest flavor name given as a pool's `flavor` (the reference's schema).
pub const MAX_FLAVOR_LEN: usize = 255;
/// Largest pool weight (the reference's schema: 2^32 - 1).
pub const MAX_WEIGHT: i64 = 4_294_967_295;
/// Most pools one flavor document may list.
pub const MAX_POOL_LIST: usize = 100;

/// Parameters of a pool or flavor listing.
#[derive(Clone, Debug, Default)]
pub struct AdminListParams {
    /// Name of the last entry of the previous page.
    pub marker: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
    /// Include options (pools) or capabilities (flavors).
    pub detailed: bool,
}

/// A flavor with the names of its pools.
#[derive(Clone, Debug, PartialEq)]
pub struct FlavorWithPools {
    /// The flavor.
    pub flavor: FlavorRecord,
    /// Names of the pools serving it.
    pub pool_list: Vec<String>,
}

/// One page of pools.
#[derive(Clone, Debug)]
pub struct PoolListing {
    /// The pools.
    pub pools: Vec<PoolRecord>,
    /// Whether options are shown.
    pub detailed: bool,
    /// Marker for the next page.
    pub next_marker: String,
}

/// One page of flavors.
#[derive(Clone, Debug)]
pub struct FlavorListing {
    /// The flavors with their pools.
    pub flavors: Vec<FlavorWithPools>,
    /// Whether capabilities are shown.
    pub detailed: bool,
    /// Marker for the next page.
    pub next_marker: String,
}

fn pool_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Pool {name} does not exist"))
}

fn flavor_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Flavor {name} does not exist"))
}

/// Pool and flavor names: the queue-name alphabet, 1 to 64 characters (the
/// reference takes any path segment; names appear in storage keys).
fn check_name(what: &str, name: &str) -> ApiResult<()> {
    if validate::queue_identification_problem(name, "").is_some() {
        return Err(ApiError::invalid(format!(
            "{what} names may only contain ASCII letters, digits, underscores, dashes and dots, and be 1 \
             to 64 characters long."
        )));
    }
    Ok(())
}

/// A body that must be a JSON object.
fn object(api: &Api, payload: &Payload) -> ApiResult<Map<String, Value>> {
    match api.body_document(payload)? {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::invalid_body("Document type not supported.")),
    }
}

/// The fields of a pool document (PUT: `uri` and `weight` required).
struct PoolFields {
    uri: Option<String>,
    weight: Option<i64>,
    flavor: Option<Option<String>>,
    options: Option<Map<String, Value>>,
}

fn pool_fields(doc: &Map<String, Value>, create: bool) -> ApiResult<PoolFields> {
    let schema = |why: String| ApiError::invalid_body(why);
    if let Some(k) = doc
        .keys()
        .find(|k| !matches!(k.as_str(), "uri" | "weight" | "flavor" | "options"))
    {
        return Err(schema(format!(
            "Additional properties are not allowed ('{k}' was unexpected)"
        )));
    }
    let uri = match doc.get("uri") {
        None => None,
        Some(Value::String(u)) if u.len() <= MAX_URI_LEN => Some(u.clone()),
        Some(Value::String(_)) => {
            return Err(schema(format!(
                "uri is longer than {MAX_URI_LEN} characters"
            )))
        }
        Some(_) => return Err(schema("uri is not of type 'string'".into())),
    };
    let weight = match doc.get("weight") {
        None => None,
        Some(v @ Value::Number(_)) => match as_int(v) {
            Some(w) if (0..=MAX_WEIGHT).contains(&w) => Some(w),
            Some(_) => return Err(schema(format!("weight must be between 0 and {MAX_WEIGHT}"))),
            None => return Err(schema("weight is not of type 'integer'".into())),
        },
        Some(_) => return Err(schema("weight is not of type 'integer'".into())),
    };
    let flavor = match doc.get("flavor") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(f)) if f.is_empty() => Some(None),
        Some(Value::String(f)) if f.len() <= MAX_FLAVOR_LEN => {
            check_name("Flavor", f)?;
            Some(Some(f.clone()))
        }
        Some(Value::String(_)) => {
            return Err(schema(format!(
                "flavor is longer than {MAX_FLAVOR_LEN} characters"
            )))
        }
        Some(_) => return Err(schema("flavor is not of type 'string'".into())),
    };
    let options = match doc.get("options") {
        None => None,
        Some(Value::Object(o)) => Some(o.clone()),
        Some(_) => return Err(schema("options is not of type 'object'".into())),
    };
    if create {
        if uri.is_none() {
            return Err(schema("'uri' is a required property".into()));
        }
        if weight.is_none() {
            return Err(schema("'weight' is a required property".into()));
        }
    }
    Ok(PoolFields {
        uri,
        weight,
        flavor,
        options,
    })
}

impl Api {
    fn pooled(&self) -> ApiResult<&PooledStore> {
        self.storage().pools.as_ref().ok_or(ApiError::RouteNotFound)
    }

    /// `GET /v2/pools`.
    pub async fn pool_list(&self, params: AdminListParams) -> ApiResult<PoolListing> {
        let limit = validate::limit(
            params.limit,
            self.limits().max_pools_per_page,
            no_greater_than,
        )?
        .unwrap_or(DEFAULT_PAGE);
        let pools = self
            .pooled()?
            .catalogue()
            .list_pools(params.marker.as_deref(), limit)
            .await
            .map_err(storage_error("Pools could not be listed."))?;
        let next_marker = pools
            .last()
            .map(|p| p.name.clone())
            .or(params.marker)
            .unwrap_or_default();
        Ok(PoolListing {
            pools,
            detailed: params.detailed,
            next_marker,
        })
    }

    /// `GET /v2/pools/{name}`.
    pub async fn pool_get(&self, name: &str) -> ApiResult<PoolRecord> {
        self.pooled()?
            .catalogue()
            .get_pool(name)
            .await
            .map_err(storage_error("Pool could not be read."))?
            .ok_or_else(|| pool_not_found(name))
    }

    /// Refuses a pool whose store is unreachable, or whose kind differs from
    /// the other pools of its flavor; a `PUT` (`replacing`) also compares it
    /// with the pool of the same name it replaces, as the reference does
    /// (so a flavor's only pool cannot be swapped for another kind of store).
    async fn check_pool(&self, pool: &PoolRecord, replacing: bool) -> ApiResult<()> {
        let pooled = self.pooled()?;
        let kind = engines::engine_of(&pool.uri)
            .map_err(|_| ApiError::invalid_body(format!("cannot connect to {}", pool.uri)))?;
        if !pooled.reachable(pool).await {
            return Err(ApiError::invalid_body(format!(
                "cannot connect to {}",
                pool.uri
            )));
        }
        if let Some(flavor) = &pool.flavor {
            let peers = pooled
                .catalogue()
                .pools_of_flavor(Some(flavor))
                .await
                .map_err(storage_error("Pool could not be created."))?;
            for peer in peers.iter().filter(|p| replacing || p.name != pool.name) {
                if engines::engine_of(&peer.uri).ok() != Some(kind) {
                    return Err(ApiError::bad_request(
                        "Unable to create pool",
                        format!(
                            "The capabilities of pool {} differ from those of pool {} of flavor {flavor}: \
                             the pools of a flavor must be of one kind of store.",
                            pool.name, peer.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `PUT /v2/pools/{name}`: registers (or replaces) a pool.
    pub async fn pool_create(&self, name: &str, payload: &Payload) -> ApiResult<()> {
        check_name("Pool", name)?;
        let fields = pool_fields(&object(self, payload)?, true)?;
        let pool = PoolRecord {
            name: name.to_owned(),
            uri: fields.uri.unwrap_or_default(),
            weight: fields.weight.unwrap_or_default(),
            flavor: fields.flavor.flatten(),
            options: fields.options.unwrap_or_default(),
        };
        self.check_pool(&pool, true).await?;
        let pooled = self.pooled()?;
        pooled
            .catalogue()
            .put_pool(&pool)
            .await
            .map_err(storage_error("Pool could not be created."))?;
        pooled.forget(name);
        Ok(())
    }

    /// `PATCH /v2/pools/{name}`: changes some fields; the pool as it is then.
    pub async fn pool_update(&self, name: &str, payload: &Payload) -> ApiResult<PoolRecord> {
        let doc = object(self, payload)?;
        if !["uri", "weight", "flavor", "options"]
            .iter()
            .any(|k| doc.contains_key(*k))
        {
            return Err(ApiError::invalid_body(
                "One of `uri`, `weight`, `flavor`, or `options` needs to be specified",
            ));
        }
        let fields = pool_fields(&doc, false)?;
        let mut pool = self.pool_get(name).await?;
        if let Some(uri) = fields.uri.filter(|u| *u != pool.uri) {
            // Its queues' messages are in the old store: pointing the pool
            // elsewhere would strand them (the reference lets it happen).
            let queues = self
                .pooled()?
                .catalogue()
                .queues_on_pool(name)
                .await
                .map_err(storage_error("Pool could not be updated."))?;
            if queues > 0 {
                return Err(ApiError::Conflict(
                    format!(
                        "Pool {name} holds {queues} queue(s): its uri cannot change while their messages \
                         are in its store."
                    )
                    .into(),
                ));
            }
            pool.uri = uri;
        }
        if let Some(weight) = fields.weight {
            pool.weight = weight;
        }
        if let Some(flavor) = fields.flavor {
            pool.flavor = flavor;
        }
        if let Some(options) = fields.options {
            pool.options = options;
        }
        self.check_pool(&pool, false).await?;
        let pooled = self.pooled()?;
        pooled
            .catalogue()
            .put_pool(&pool)
            .await
            .map_err(storage_error("Pool could not be updated."))?;
        pooled.forget(name);
        Ok(pool)
    }

    /// `DELETE /v2/pools/{name}`: refused while the pool is its flavor's
    /// only pool (the reference's rule) or still holds queues (ours: the
    /// reference orphans them).
    pub async fn pool_delete(&self, name: &str) -> ApiResult<()> {
        let pooled = self.pooled()?;
        let what = "Pool could not be deleted.";
        let Some(pool) = pooled
            .catalogue()
            .get_pool(name)
            .await
            .map_err(storage_error(what))?
        else {
            return Ok(());
        };
        if let Some(flavor) = &pool.flavor {
            let peers = pooled
                .catalogue()
                .pools_of_flavor(Some(flavor))
                .await
                .map_err(storage_error(what))?;
            if peers.iter().all(|p| p.name == name) {
                return Err(ApiError::Forbidden {
                    title: "Unable to delete".into(),
                    description: format!(
                        "This pool is used by flavors {flavor}; It cannot be deleted."
                    )
                    .into(),
                });
            }
        }
        let queues = pooled
            .catalogue()
            .queues_on_pool(name)
            .await
            .map_err(storage_error(what))?;
        if queues > 0 {
            return Err(ApiError::Forbidden {
                title: "Unable to delete".into(),
                description: format!(
                    "Pool {name} still holds {queues} queue(s); delete them first, or set the pool's weight \
                     to 0 so that no new queue goes there."
                )
                .into(),
            });
        }
        pooled
            .catalogue()
            .delete_pool(name)
            .await
            .map_err(storage_error(what))?;
        pooled.forget(name);
        Ok(())
    }

    /// The names of the pools of `flavor`.
    async fn pool_names(&self, flavor: &str) -> ApiResult<Vec<String>> {
        Ok(self
            .pooled()?
            .catalogue()
            .pools_of_flavor(Some(flavor))
            .await
            .map_err(storage_error("Flavor could not be read."))?
            .into_iter()
            .map(|p| p.name)
            .collect())
    }

    /// `GET /v2/flavors`.
    pub async fn flavor_list(
        &self,
        ctx: &RequestContext,
        params: AdminListParams,
    ) -> ApiResult<FlavorListing> {
        let limit = validate::limit(
            params.limit,
            self.limits().max_flavors_per_page,
            no_greater_than,
        )?
        .unwrap_or(DEFAULT_PAGE);
        let flavors = self
            .pooled()?
            .catalogue()
            .list_flavors(&ctx.project_id, params.marker.as_deref(), limit)
            .await
            .map_err(storage_error("Flavors could not be listed."))?;
        let next_marker = flavors
            .last()
            .map(|f| f.name.clone())
            .or(params.marker)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(flavors.len());
        for flavor in flavors {
            let pool_list = self.pool_names(&flavor.name).await?;
            out.push(FlavorWithPools { flavor, pool_list });
        }
        Ok(FlavorListing {
            flavors: out,
            detailed: params.detailed,
            next_marker,
        })
    }

    /// `GET /v2/flavors/{name}`.
    pub async fn flavor_get(&self, ctx: &RequestContext, name: &str) -> ApiResult<FlavorWithPools> {
        let flavor = self
            .pooled()?
            .catalogue()
            .get_flavor(&ctx.project_id, name)
            .await
            .map_err(storage_error("Flavor could not be read."))?
            .ok_or_else(|| flavor_not_found(name))?;
        let pool_list = self.pool_names(name).await?;
        Ok(FlavorWithPools { flavor, pool_list })
    }

    /// The `pool_list` of a flavor document, its pools checked: they exist
    /// and are of one kind. `failure` builds the 400 for a missing pool.
    async fn flavor_pools(
        &self,
        doc: &Map<String, Value>,
        failure: impl Fn(String) -> ApiError,
    ) -> ApiResult<Vec<PoolRecord>> {
        let list = match doc.get("pool_list") {
            Some(Value::Array(items)) => items,
            Some(_) => return Err(ApiError::invalid_body("pool_list is not of type 'array'")),
            None => return Err(ApiError::invalid_body("'pool_list' is a required property")),
        };
        if list.is_empty() {
            return Err(ApiError::bad_request("Unable to create", "Bad Request"));
        }
        if list.len() > MAX_POOL_LIST {
            return Err(ApiError::invalid_body(format!(
                "pool_list may name at most {MAX_POOL_LIST} pools"
            )));
        }
        let mut pools: Vec<PoolRecord> = Vec::with_capacity(list.len());
        for item in list {
            let Some(name) = item.as_str() else {
                return Err(ApiError::invalid_body("pool_list items must be pool names"));
            };
            if pools.iter().any(|p| p.name == name) {
                continue;
            }
            let pool = self
                .pooled()?
                .catalogue()
                .get_pool(name)
                .await
                .map_err(storage_error("Flavor could not be created."))?
                .ok_or_else(|| failure(format!("Pool {name} does not exist")))?;
            pools.push(pool);
        }
        let kinds: Vec<_> = pools
            .iter()
            .map(|p| engines::engine_of(&p.uri).ok())
            .collect();
        if kinds.windows(2).any(|w| w[0] != w[1]) {
            return Err(failure(
                "the pools of a flavor must be of one kind of store (their capabilities differ)"
                    .into(),
            ));
        }
        Ok(pools)
    }

    /// Makes `pools` exactly the pools of `flavor`: each gets the flavor,
    /// and the flavor's other pools lose it.
    async fn assign_pools(&self, flavor: &str, pools: &[PoolRecord]) -> ApiResult<()> {
        let pooled = self.pooled()?;
        let what = "Flavor could not be created.";
        for old in pooled
            .catalogue()
            .pools_of_flavor(Some(flavor))
            .await
            .map_err(storage_error(what))?
        {
            if !pools.iter().any(|p| p.name == old.name) {
                let cleared = PoolRecord {
                    flavor: None,
                    ..old
                };
                pooled
                    .catalogue()
                    .put_pool(&cleared)
                    .await
                    .map_err(storage_error(what))?;
            }
        }
        for pool in pools {
            let assigned = PoolRecord {
                flavor: Some(flavor.to_owned()),
                ..pool.clone()
            };
            pooled
                .catalogue()
                .put_pool(&assigned)
                .await
                .map_err(storage_error(what))?;
        }
        Ok(())
    }

    fn capabilities_of(pools: &[PoolRecord]) -> Vec<String> {
        pools
            .first()
            .and_then(|p| engines::engine_of(&p.uri).ok())
            .map(|kind| {
                engines::capabilities(kind)
                    .iter()
                    .map(|c| (*c).to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `PUT /v2/flavors/{name}`: creates (or replaces) a flavor of the
    /// caller's project with exactly the listed pools.
    pub async fn flavor_create(
        &self,
        ctx: &RequestContext,
        name: &str,
        payload: &Payload,
    ) -> ApiResult<()> {
        check_name("Flavor", name)?;
        let doc = object(self, payload)?;
        if let Some(k) = doc
            .keys()
            .find(|k| !matches!(k.as_str(), "pool_list" | "capabilities"))
        {
            return Err(ApiError::invalid_body(format!(
                "Additional properties are not allowed ('{k}' was unexpected)"
            )));
        }
        let pools = self
            .flavor_pools(&doc, |why| {
                ApiError::bad_request(
                    "Unable to create",
                    format!("Flavor {name} could not be created, error:{why}"),
                )
            })
            .await?;
        let flavor = FlavorRecord {
            project: ctx.project_id.clone(),
            name: name.to_owned(),
            capabilities: Self::capabilities_of(&pools),
        };
        self.pooled()?
            .catalogue()
            .put_flavor(&flavor)
            .await
            .map_err(storage_error("Flavor could not be created."))?;
        self.assign_pools(name, &pools).await
    }

    /// `PATCH /v2/flavors/{name}`: replaces the flavor's pools.
    pub async fn flavor_update(
        &self,
        ctx: &RequestContext,
        name: &str,
        payload: &Payload,
    ) -> ApiResult<FlavorWithPools> {
        let doc = object(self, payload)?;
        if !doc.contains_key("pool_list") {
            return Err(ApiError::invalid_body("`pool_list` needs to be specified"));
        }
        if matches!(doc.get("pool_list"), Some(Value::Array(a)) if a.is_empty()) {
            return Err(ApiError::bad_request("Unable to create", "Bad Request"));
        }
        let mut flavor = self.flavor_get(ctx, name).await?.flavor;
        let pools = self
            .flavor_pools(&doc, |why| {
                ApiError::bad_request(
                    "updatefail",
                    format!("Flavor {name} cant be updated, error:{why}"),
                )
            })
            .await?;
        flavor.capabilities = Self::capabilities_of(&pools);
        self.pooled()?
            .catalogue()
            .put_flavor(&flavor)
            .await
            .map_err(storage_error("Flavor could not be updated."))?;
        self.assign_pools(name, &pools).await?;
        let pool_list = pools.into_iter().map(|p| p.name).collect();
        Ok(FlavorWithPools { flavor, pool_list })
    }

    /// `DELETE /v2/flavors/{name}`: its pools lose the flavor.
    pub async fn flavor_delete(&self, ctx: &RequestContext, name: &str) -> ApiResult<()> {
        let pooled = self.pooled()?;
        let what = "Flavor could not be deleted.";
        if pooled
            .catalogue()
            .get_flavor(&ctx.project_id, name)
            .await
            .map_err(storage_error(what))?
            .is_some()
        {
            self.assign_pools(name, &[]).await?;
        }
        pooled
            .catalogue()
            .delete_flavor(&ctx.project_id, name)
            .await
            .map_err(storage_error(what))
    }
}
