//! The caller of a request, forwarded by the edge in a bus header so services can enforce
//! data-dependent rules (e.g. a credential type's `permissionScope`) and write audit entries.

use serde::{Deserialize, Serialize};

use crate::{Component, PermissionSet};

/// What kind of caller a principal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A person signed in through Entra ID.
    User,
    /// A machine using an API token.
    ApiToken,
    /// A component of the mesh doing work it started itself (health checks, jobs); its id is
    /// the component's name and only that component may vouch for it.
    Service,
    /// Nobody authenticated: only the actor of audit entries about anonymous requests (a failed
    /// sign-in); never a principal on a request.
    Anonymous,
}

/// An authenticated caller and its effective permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    /// User id or API token id.
    pub id: String,
    /// User or API token.
    pub kind: PrincipalKind,
    /// Display name (user name or token name), for audit entries.
    pub name: String,
    /// Effective permissions: the union of the principal's roles' permissions.
    pub permissions: PermissionSet,
    /// OAuth-style scopes of a user's access token (`user.read user.write`); empty for API tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// The sign-in session (refresh-token family) of a user's access token; `None` for API
    /// tokens. Sign-out revokes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

impl Principal {
    /// The service principal of `component`: the caller of work the component starts itself.
    /// It holds no permission: such work reaches other services only through operations that
    /// need none (health checks); a job that needs more names it here.
    pub fn service(component: Component) -> Self {
        Self {
            id: component.name().to_owned(),
            kind: PrincipalKind::Service,
            name: component.name().to_owned(),
            permissions: PermissionSet::default(),
            scopes: Vec::new(),
            session_id: None,
        }
    }
}
