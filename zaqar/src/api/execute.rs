//! The one entry point of the api core: [`Api::execute`].
//!
//! Every request of every transport passes here, and every rule that is not
//! about a wire format is applied here, once, in this order:
//!
//! 1. the admin-mode gate (an admin-only operation of a server without
//!    `admin_mode` is a route it does not have: 404);
//! 2. the request context: `Client-ID` and project validated (skipped only
//!    for the open documents: versions, as in the reference, and OpenAPI);
//! 3. the queue name of the operation;
//! 4. the policy rule of the operation;
//! 5. the operation itself, with its own validation and limits.

use super::messages::BulkDeleteOutcome;
use super::operation::Operation;
use super::reply::Reply;
use super::subscriptions::ConnectionSubscriptions;
use super::{topics, validate, Api};
use crate::auth::Caller;
use crate::context::RequestContext;
use crate::error::{ApiError, ApiResult};

/// Who asks, beside the operation itself.
pub struct Request<'a> {
    /// Who the auth layer says the request acts for.
    pub caller: &'a Caller,
    /// The `Client-ID` header as sent.
    pub client_id: Option<&'a str>,
    /// `req-<uuid>`: logged, and echoed by the transport.
    pub request_id: &'a str,
    /// The subscriptions the transport's connection can hold itself
    /// (WebSocket), if any.
    pub connection: Option<&'a mut dyn ConnectionSubscriptions>,
}

impl Api {
    /// Whether this server has the operation at all (admin-only operations
    /// exist only with `[DEFAULT] admin_mode`). Transports whose routing
    /// must answer 404 before anything else (HTTP's 405) ask this first.
    pub fn serves(&self, kind: super::operation::OperationKind) -> bool {
        (!kind.admin_mode_only() || self.config().admin_mode)
            && (!kind.pooling_only() || self.config().pooling)
    }

    /// The OpenAPI document of the operations this server serves, with its
    /// limits and auth strategy.
    pub fn openapi(&self) -> serde_json::Value {
        super::openapi::document(self.config(), |kind| self.serves(kind))
    }

    /// The request context of `caller`: the validated `Client-ID` and
    /// project, the caller's user and roles.
    ///
    /// # Errors
    /// 400 for a missing or malformed `Client-ID` or project (the
    /// reference's texts).
    pub fn context(
        &self,
        caller: &Caller,
        client_id: Option<&str>,
        request_id: &str,
    ) -> ApiResult<RequestContext> {
        Ok(RequestContext {
            client_id: validate::client_id(client_id, self.limits())?,
            project_id: validate::project_id(caller.project())?,
            user_id: caller.user_id.clone(),
            roles: caller.roles.clone(),
            request_id: request_id.to_owned(),
            auth_token: caller.token.clone(),
        })
    }

    /// The request's context, once its `Client-ID`, its project and the
    /// name of the queue (or topic) it addresses are valid: the checks the
    /// reference makes before it reads any parameter of the request.
    ///
    /// # Errors
    /// 400 for the first of them that is not valid.
    pub fn identified(
        &self,
        request: &Request<'_>,
        queue: Option<&str>,
        topic: bool,
    ) -> ApiResult<RequestContext> {
        let ctx = self.context(request.caller, request.client_id, request.request_id)?;
        match queue {
            Some(name) if topic => topics::topic_identification(name, &ctx.project_id)?,
            Some(name) => validate::queue_identification(name, &ctx.project_id)?,
            None => {}
        }
        Ok(ctx)
    }

    /// Applies every rule to `operation` and runs it (module docs).
    ///
    /// # Errors
    /// Any [`ApiError`]: the transport renders it.
    pub async fn execute(&self, request: Request<'_>, operation: Operation) -> ApiResult<Reply> {
        let kind = operation.kind();
        if !self.serves(kind) {
            return Err(ApiError::RouteNotFound);
        }
        match operation {
            Operation::GetVersions => return Ok(Reply::Versions),
            Operation::GetOpenApi => return Ok(Reply::OpenApi(self.openapi())),
            _ => {}
        }
        let ctx = self.identified(&request, operation.queue(), kind.is_topic())?;
        if let Some(rule) = kind.policy_rule() {
            self.policy().enforce(rule, &ctx)?;
        }
        self.run(&ctx, operation, request.connection).await
    }

    /// Runs an operation whose request passed every check of
    /// [`Api::execute`].
    pub(super) async fn run(
        &self,
        ctx: &RequestContext,
        operation: Operation,
        connection: Option<&mut dyn ConnectionSubscriptions>,
    ) -> ApiResult<Reply> {
        use Operation as O;
        Ok(match operation {
            O::GetVersions => Reply::Versions,
            O::GetOpenApi => Reply::OpenApi(self.openapi()),
            O::GetHomeDoc => Reply::HomeDoc {
                admin_mode: self.config().admin_mode,
            },
            O::Ping { probe } => Reply::Pong {
                alive: !probe || self.ping().await,
            },
            O::CheckHealth => Reply::Health(self.health().await),
            O::QueueList(params) => Reply::Queues(self.queue_list(ctx, params).await?),
            O::QueueCreate { queue, metadata } => Reply::QueueCreated {
                created: self.queue_create(ctx, &queue, &metadata).await?,
            },
            O::QueueGet { queue } => self.metadata_reply(self.queue_get(ctx, &queue).await?),
            O::QueueUpdate {
                queue,
                content_type,
                patch,
            } => self.metadata_reply(
                self.queue_update(ctx, &queue, content_type.as_deref(), &patch)
                    .await?,
            ),
            O::QueueDelete { queue } => {
                self.queue_delete(ctx, &queue).await?;
                Reply::QueueDeleted
            }
            O::QueueStats {
                queue,
                report_missing,
            } => {
                let (stats, missing) = self.queue_stats(ctx, &queue, report_missing).await?;
                Reply::QueueStats { stats, missing }
            }
            O::QueuePurge { queue, body } => {
                self.queue_purge(ctx, &queue, &body).await?;
                Reply::QueuePurged
            }
            O::QueueShare { queue, body } => {
                Reply::SignedUrl(self.queue_share(ctx, &queue, &body)?)
            }
            O::MessagePost { queue, body } => {
                Reply::MessagesPosted(self.messages_post(ctx, &queue, &body).await?)
            }
            O::MessageList { queue, params } => {
                Reply::MessagePage(self.messages_list(ctx, &queue, params).await?)
            }
            O::MessageGetMany { queue, ids } => {
                Reply::Messages(self.messages_get_by_ids(ctx, &queue, &ids).await?)
            }
            O::MessageDeleteMany { queue, params } => {
                match self.messages_delete_bulk(ctx, &queue, params).await? {
                    BulkDeleteOutcome::Deleted => Reply::MessagesDeleted,
                    BulkDeleteOutcome::Popped(messages) => Reply::MessagesPopped(messages),
                }
            }
            O::MessageGet { queue, id } => {
                Reply::Message(self.message_get(ctx, &queue, &id).await?)
            }
            O::MessageDelete {
                queue,
                id,
                claim_id,
            } => {
                self.message_delete(ctx, &queue, &id, claim_id.as_deref())
                    .await?;
                Reply::MessageDeleted
            }
            O::ClaimCreate {
                queue,
                limit,
                wait,
                body,
            } => Reply::ClaimCreated(self.claim_create(ctx, &queue, limit, wait, &body).await?),
            O::ClaimGet { queue, id } => Reply::Claim(self.claim_get(ctx, &queue, &id).await?),
            O::ClaimUpdate { queue, id, body } => {
                self.claim_update(ctx, &queue, &id, &body).await?;
                Reply::ClaimUpdated
            }
            O::ClaimDelete { queue, id } => {
                self.claim_delete(ctx, &queue, &id).await?;
                Reply::ClaimDeleted
            }
            O::SubscriptionList { queue, params } => Reply::Subscriptions(
                self.subscription_list(ctx, &queue, params, connection)
                    .await?,
            ),
            O::SubscriptionCreate { queue, body } => Reply::SubscriptionCreated {
                id: self
                    .subscription_create(ctx, &queue, &body, connection)
                    .await?,
            },
            O::SubscriptionGet { queue, id } => {
                Reply::Subscription(self.subscription_get(ctx, &queue, &id, connection).await?)
            }
            O::SubscriptionUpdate { queue, id, body } => {
                self.subscription_update(ctx, &queue, &id, &body).await?;
                Reply::SubscriptionUpdated
            }
            O::SubscriptionDelete { queue, id } => {
                self.subscription_delete(ctx, &queue, &id, connection)
                    .await?;
                Reply::SubscriptionDeleted
            }
            O::SubscriptionConfirm { queue, id, body } => {
                self.subscription_confirm(ctx, &queue, &id, &body).await?;
                Reply::SubscriptionConfirmed
            }
            O::PoolList(params) => Reply::Pools(self.pool_list(params).await?),
            O::PoolCreate { name, body } => {
                self.pool_create(&name, &body).await?;
                Reply::PoolCreated
            }
            O::PoolGet { name, detailed } => Reply::Pool {
                pool: self.pool_get(&name).await?,
                detailed,
            },
            O::PoolUpdate { name, body } => Reply::Pool {
                pool: self.pool_update(&name, &body).await?,
                detailed: false,
            },
            O::PoolDelete { name } => {
                self.pool_delete(&name).await?;
                Reply::PoolDeleted
            }
            O::FlavorList(params) => Reply::Flavors(self.flavor_list(ctx, params).await?),
            O::FlavorCreate { name, body } => {
                self.flavor_create(ctx, &name, &body).await?;
                Reply::FlavorCreated
            }
            O::FlavorGet { name } => Reply::Flavor(self.flavor_get(ctx, &name).await?),
            O::FlavorUpdate { name, body } => {
                Reply::Flavor(self.flavor_update(ctx, &name, &body).await?)
            }
            O::FlavorDelete { name } => {
                self.flavor_delete(ctx, &name).await?;
                Reply::FlavorDeleted
            }
            O::Topic(topic) => return self.run_topic(ctx, topic, connection).await,
        })
    }
}
