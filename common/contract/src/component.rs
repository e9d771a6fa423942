//! The components of the mesh, by the names they carry on the bus: NATS users, inbox prefixes,
//! service principals and the issuers of signed principals.

use serde::{Deserialize, Serialize};

/// A component of the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    /// The HTTP edge: authenticates callers and signs their principals.
    Edge,
    /// Sign-in, users, roles, tokens.
    Identity,
    /// Companies from ConnectWise.
    CompanySync,
    /// Credential types and credentials.
    Credential,
    /// Key material; seals and opens values.
    Vault,
    /// Delivers events to registered webhook endpoints.
    Webhook,
}

impl Component {
    /// Every component.
    pub const ALL: [Component; 6] = [
        Component::Edge,
        Component::Identity,
        Component::CompanySync,
        Component::Credential,
        Component::Vault,
        Component::Webhook,
    ];

    /// The component's name (`company-sync`).
    pub const fn name(self) -> &'static str {
        match self {
            Component::Edge => "edge",
            Component::Identity => "identity",
            Component::CompanySync => "company-sync",
            Component::Credential => "credential",
            Component::Vault => "vault",
            Component::Webhook => "webhook",
        }
    }

    /// The component called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The prefix of the component's reply inboxes (`_INBOX_edge`): each component may
    /// subscribe only to its own, so no one reads another component's replies.
    pub fn inbox_prefix(self) -> String {
        format!("_INBOX_{}", self.name())
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
