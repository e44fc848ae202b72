//! The per-request context: who is asking, for which project.
//!
//! Built once per request by the auth layer (noauth headers, Keystone, or a
//! pre-signed URL); nothing downstream reads raw auth headers.

/// Who is making a request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestContext {
    /// The project every queue of this request belongs to.
    pub project_id: String,
    /// The validated Client-ID header.
    pub client_id: String,
    /// The user, when authenticated.
    pub user_id: Option<String>,
    /// Role names (from the token, or `X-Roles` in noauth mode).
    pub roles: Vec<String>,
    /// `req-<uuid>`, echoed as `x-openstack-request-id`.
    pub request_id: String,
}

impl RequestContext {
    /// Whether the caller holds `role` (case-insensitive, as oslo.policy).
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r.eq_ignore_ascii_case(role))
    }

    /// Whether the caller is an administrator (`role:admin`).
    pub fn is_admin(&self) -> bool {
        self.has_role("admin")
    }
}
