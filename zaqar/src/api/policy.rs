//! Policy: which roles may call which operation, by the reference's rule names.
//!
//! The reference's default rules leave every data-plane operation open to
//! anyone who reaches the route and keep the admin operations (health,
//! pools, flavor changes) to `role:admin`.

use crate::context::RequestContext;
use crate::error::{ApiError, ApiResult};

/// Rules that default to `role:admin`.
const ADMIN_RULES: &[&str] = &[
    "health:get",
    "pools:get_all",
    "pools:create",
    "pools:get",
    "pools:delete",
    "pools:update",
    "flavors:create",
    "flavors:delete",
    "flavors:update",
];

/// The policy enforcer.
#[derive(Clone, Debug, Default)]
pub struct Policy;

impl Policy {
    /// Checks `rule` for the caller.
    ///
    /// # Errors
    /// 403 "Not authorized" when the rule refuses the caller.
    pub fn enforce(&self, rule: &str, ctx: &RequestContext) -> ApiResult<()> {
        if ADMIN_RULES.contains(&rule) && !ctx.is_admin() {
            return Err(ApiError::not_authorized());
        }
        Ok(())
    }
}
