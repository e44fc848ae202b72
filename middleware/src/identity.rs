//! Who is calling: the facts of a validated token, read from Keystone's
//! `GET /v3/auth/tokens` answer.

use chrono::{DateTime, Utc};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

/// The identity behind a valid token.
///
/// Project fields are `None` for tokens not scoped to a project (unscoped,
/// domain- or system-scoped); a service that keeps data per project should
/// refuse those.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// The user's id.
    pub user_id: String,
    /// The user's name.
    pub user_name: String,
    /// Id of the user's domain.
    pub user_domain_id: String,
    /// Name of the user's domain.
    pub user_domain_name: String,
    /// Id of the project the token is scoped to.
    pub project_id: Option<String>,
    /// Name of the project the token is scoped to.
    pub project_name: Option<String>,
    /// Id of that project's domain.
    pub project_domain_id: Option<String>,
    /// Name of that project's domain.
    pub project_domain_name: Option<String>,
    /// Id of the domain a domain-scoped token is scoped to.
    pub domain_id: Option<String>,
    /// Name of the domain a domain-scoped token is scoped to.
    pub domain_name: Option<String>,
    /// `Some("all")` for a system-scoped token.
    pub system_scope: Option<String>,
    /// Role names on the scope, as Keystone lists them (implied roles
    /// included).
    pub roles: Vec<String>,
    /// Whether the project is Keystone's admin project. Keystone only says so
    /// when an admin project is configured; absent, it is `true`, as
    /// keystoneauth reads it.
    pub is_admin_project: bool,
    /// When the token stops being valid.
    pub expires_at: DateTime<Utc>,
    /// When the token was issued.
    pub issued_at: Option<DateTime<Utc>>,
    /// The token's audit ids: safe to log, unlike the token.
    pub audit_ids: Vec<String>,
}

impl Identity {
    /// Whether the token carries `role` (compared case-insensitively, as
    /// oslo.policy does).
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r.eq_ignore_ascii_case(role))
    }
}

/// One service of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogService {
    /// The service's id.
    #[serde(default)]
    pub id: String,
    /// The service's type (`messaging`, `identity`, ...).
    #[serde(rename = "type", default)]
    pub service_type: String,
    /// The service's name (`zaqar`, `keystone`, ...).
    #[serde(default)]
    pub name: String,
    /// Where the service can be reached.
    #[serde(default)]
    pub endpoints: Vec<CatalogEndpoint>,
}

/// One endpoint of a catalog service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEndpoint {
    /// The endpoint's id.
    #[serde(default)]
    pub id: String,
    /// `public`, `internal` or `admin`.
    #[serde(default)]
    pub interface: String,
    /// The region's id.
    #[serde(default)]
    pub region_id: Option<String>,
    /// The region (the same as `region_id` in Keystone v3).
    #[serde(default)]
    pub region: Option<String>,
    /// The endpoint's URL.
    pub url: String,
}

/// The body of `GET /v3/auth/tokens`.
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    pub(crate) token: TokenBody,
}

#[derive(Deserialize)]
pub(crate) struct TokenBody {
    user: Named<Named<IgnoredAny>>,
    #[serde(default)]
    project: Option<Named<Named<IgnoredAny>>>,
    #[serde(default)]
    domain: Option<Named<IgnoredAny>>,
    #[serde(default)]
    system: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    roles: Vec<Named<IgnoredAny>>,
    #[serde(default)]
    is_admin_project: Option<bool>,
    pub(crate) expires_at: DateTime<Utc>,
    #[serde(default)]
    issued_at: Option<DateTime<Utc>>,
    #[serde(default)]
    audit_ids: Vec<String>,
    #[serde(default)]
    pub(crate) catalog: Option<Vec<CatalogService>>,
}

/// An `{"id", "name", "domain"}` object of Keystone's token body.
#[derive(Deserialize)]
#[serde(bound = "D: Deserialize<'de>")]
struct Named<D> {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    domain: Option<D>,
}

impl TokenBody {
    /// The identity, without the catalog.
    pub(crate) fn identity(&self) -> Identity {
        let user_domain = self.user.domain.as_ref();
        let project = self.project.as_ref();
        let project_domain = project.and_then(|p| p.domain.as_ref());
        Identity {
            user_id: self.user.id.clone(),
            user_name: self.user.name.clone(),
            user_domain_id: user_domain.map(|d| d.id.clone()).unwrap_or_default(),
            user_domain_name: user_domain.map(|d| d.name.clone()).unwrap_or_default(),
            project_id: project.map(|p| p.id.clone()),
            project_name: project.map(|p| p.name.clone()),
            project_domain_id: project_domain.map(|d| d.id.clone()),
            project_domain_name: project_domain.map(|d| d.name.clone()),
            domain_id: self.domain.as_ref().map(|d| d.id.clone()),
            domain_name: self.domain.as_ref().map(|d| d.name.clone()),
            system_scope: self.system.as_ref().map(|s| {
                s.iter()
                    .find(|(_, v)| v.as_bool() == Some(true))
                    .map(|(k, _)| k.clone())
                    .unwrap_or_default()
            }),
            roles: self.roles.iter().map(|r| r.name.clone()).collect(),
            is_admin_project: self.is_admin_project.unwrap_or(true),
            expires_at: self.expires_at,
            issued_at: self.issued_at,
            audit_ids: self.audit_ids.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Keystone 30 answer for a project-scoped token, as recorded.
    const PROJECT_TOKEN: &str = r#"{"token": {"methods": ["password"],
      "user": {"domain": {"id": "default", "name": "Default"},
               "id": "3c38fd", "name": "alice", "password_expires_at": null},
      "audit_ids": ["rr3d5KDHTAK0oLa7IxX84g"],
      "expires_at": "2026-11-28T04:44:14.000000Z",
      "issued_at": "2026-11-28T03:44:14.000000Z",
      "project": {"domain": {"id": "default", "name": "Default"},
                  "id": "615ce1", "name": "proj-a"},
      "is_domain": false,
      "roles": [{"id": "102e", "name": "member"}, {"id": "3413", "name": "reader"}]}}"#;

    #[test]
    fn reads_a_project_token() {
        let body: TokenResponse = serde_json::from_str(PROJECT_TOKEN).unwrap();
        let id = body.token.identity();
        assert_eq!(id.user_id, "3c38fd");
        assert_eq!(id.user_name, "alice");
        assert_eq!(id.user_domain_name, "Default");
        assert_eq!(id.project_id.as_deref(), Some("615ce1"));
        assert_eq!(id.project_name.as_deref(), Some("proj-a"));
        assert_eq!(id.project_domain_id.as_deref(), Some("default"));
        assert_eq!(id.roles, vec!["member", "reader"]);
        assert!(id.has_role("Member"));
        assert!(!id.has_role("admin"));
        assert!(id.is_admin_project);
        assert_eq!(id.system_scope, None);
        assert_eq!(id.expires_at.to_rfc3339(), "2026-11-28T04:44:14+00:00");
        assert!(body.token.catalog.is_none());
    }

    #[test]
    fn reads_system_scope_and_catalog() {
        let body: TokenResponse = serde_json::from_str(
            r#"{"token": {"user": {"id": "u", "name": "admin",
                "domain": {"id": "default", "name": "Default"}},
              "system": {"all": true}, "roles": [{"id": "r", "name": "admin"}],
              "is_admin_project": false,
              "expires_at": "2030-01-01T00:00:00Z",
              "catalog": [{"id": "s", "type": "identity", "name": "keystone",
                "endpoints": [{"id": "e", "interface": "public",
                  "region_id": "RegionOne", "region": "RegionOne",
                  "url": "http://127.0.0.1:5055/v3"}]}]}}"#,
        )
        .unwrap();
        let id = body.token.identity();
        assert_eq!(id.system_scope.as_deref(), Some("all"));
        assert_eq!(id.project_id, None);
        assert!(!id.is_admin_project);
        let catalog = body.token.catalog.unwrap();
        assert_eq!(catalog[0].service_type, "identity");
        assert_eq!(catalog[0].endpoints[0].url, "http://127.0.0.1:5055/v3");
    }
}
