//! Permission strings (`credential.fetch`, wildcards `credential.*` and `*`) and the names the
//! spec requires per route, in one place.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A permission string, checked at parse time: dot-separated segments of `[a-z0-9_@-]`, where the
/// last segment may be `*` (which grants every permission below its prefix).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Permission(String);

/// Why a string is not a permission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a permission: use dot-separated lowercase segments, optionally ending in '*'")]
pub struct InvalidPermission(pub String);

impl Permission {
    /// Parses a permission string.
    pub fn parse(raw: &str) -> Result<Self, InvalidPermission> {
        let bad = || InvalidPermission(raw.chars().take(100).collect());
        if raw.is_empty() || raw.len() > 128 {
            return Err(bad());
        }
        let segments: Vec<&str> = raw.split('.').collect();
        for (i, segment) in segments.iter().enumerate() {
            let is_last = i + 1 == segments.len();
            let ok = if *segment == "*" {
                is_last
            } else {
                !segment.is_empty()
                    && segment
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-@".contains(&b))
            };
            if !ok {
                return Err(bad());
            }
        }
        Ok(Self(raw.to_owned()))
    }

    /// The permission as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether holding `self` grants `required`. `*` grants all; `a.*` grants `a` and `a.b.c`.
    pub fn grants(&self, required: &str) -> bool {
        match self.0.strip_suffix('*') {
            None => self.0 == required,
            Some("") => true,
            Some(prefix_with_dot) => {
                let prefix = &prefix_with_dot[..prefix_with_dot.len() - 1];
                required == prefix || required.starts_with(prefix_with_dot)
            }
        }
    }
}

impl TryFrom<String> for Permission {
    type Error = InvalidPermission;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Permission::parse(&raw)
    }
}

impl From<Permission> for String {
    fn from(permission: Permission) -> Self {
        permission.0
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The effective permissions of a principal: the union of its roles' permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PermissionSet(Vec<Permission>);

impl PermissionSet {
    /// A set from permissions (duplicates removed, sorted).
    pub fn new(mut permissions: Vec<Permission>) -> Self {
        permissions.sort();
        permissions.dedup();
        Self(permissions)
    }

    /// Whether the set grants `required`.
    pub fn grants(&self, required: &str) -> bool {
        self.0.iter().any(|held| held.grants(required))
    }

    /// Whether the set grants every permission in `required`.
    pub fn grants_all(&self, required: &[&str]) -> bool {
        required.iter().all(|r| self.grants(r))
    }

    /// The permissions, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &Permission> {
        self.0.iter()
    }
}

/// Permission names the spec requires, per route.
pub mod names {
    /// Every permission (the built-in `admin` role).
    pub const ALL: &str = "*";
    /// `GET /company/companies`.
    pub const COMPANY_FETCH_MANY: &str = "company.fetch.many";
    /// `GET /company/companies/:identifier`.
    pub const COMPANY_FETCH: &str = "company.fetch";
    /// `GET /company/companies/:identifier/configurations` (with `company.fetch`).
    pub const COMPANY_FETCH_CONFIGURATIONS: &str = "company.fetch.configurations";
    /// `GET /credential/credentials/:id`.
    pub const CREDENTIAL_FETCH: &str = "credential.fetch";
    /// `GET /credential/credentials/company/:companyId`, and (beyond the spec)
    /// `GET /credential/credentials?rotationDue=true`.
    pub const CREDENTIAL_FETCH_MANY: &str = "credential.fetch.many";
    /// `POST /credential/credentials`.
    pub const CREDENTIAL_CREATE: &str = "credential.create";
    /// `PATCH /credential/credentials/:id`.
    pub const CREDENTIAL_UPDATE: &str = "credential.update";
    /// `PUT /credential/credentials/:id/fields` (with `credential.update`).
    pub const CREDENTIAL_FIELDS_UPDATE: &str = "credential.fields.update";
    /// `GET /credential/credentials/:id/fields` (with `credential.fetch`).
    pub const CREDENTIAL_FIELDS_FETCH: &str = "credential.fields.fetch";
    /// `GET /credential/credentials/:id/secure-values` (with `credential.fetch`).
    pub const CREDENTIAL_SECURE_VALUES_READ: &str = "credential.secure_values.read";
    /// `GET /credential/credentials/:id/totp/:fieldId` (beyond the spec): a `totp` field's
    /// current code, computed in vault.
    pub const CREDENTIAL_TOTP_READ: &str = "credential.totp.read";
    /// Also needed for `secure-values` to include `totp` fields' seeds (beyond the spec): without
    /// it a reveal leaves them out, so a technician can use a shared MFA account's codes without
    /// being able to take its seed away.
    pub const CREDENTIAL_TOTP_SEED_READ: &str = "credential.totp.seed.read";
    /// Reveal with `breakGlass=true` and a reason despite the type's reveal policy (beyond the
    /// spec): alerted at once (`credential.break_glass` event) and recorded as such.
    pub const CREDENTIAL_BREAK_GLASS: &str = "credential.break_glass";
    /// `DELETE /credential/credentials/:id`.
    pub const CREDENTIAL_DELETE: &str = "credential.delete";
    /// `GET /credential-type/credential-types/:identifier`.
    pub const CREDENTIAL_TYPE_FETCH: &str = "credential_type.fetch";
    /// `GET /credential-type/credential-types`.
    pub const CREDENTIAL_TYPE_FETCH_MANY: &str = "credential_type.fetch.many";
    /// `POST /credential-type/credential-types`.
    pub const CREDENTIAL_TYPE_CREATE: &str = "credential_type.create";
    /// `PATCH /credential-type/credential-types/:id`.
    pub const CREDENTIAL_TYPE_UPDATE: &str = "credential_type.update";
    /// `DELETE /credential-type/credential-types/:id`.
    pub const CREDENTIAL_TYPE_DELETE: &str = "credential_type.delete";
    /// `GET /audit/events`.
    pub const AUDIT_FETCH_MANY: &str = "audit.fetch.many";
    /// `GET /audit/verify`.
    pub const AUDIT_VERIFY: &str = "audit.verify";
    /// Scope for `GET /user/@me`.
    pub const USER_READ: &str = "user.read";
    /// Scope for `PATCH /user/@me`.
    pub const USER_WRITE: &str = "user.write";
    /// `POST /company/companies` (beyond the spec: manual companies).
    pub const COMPANY_CREATE: &str = "company.create";
    /// `PATCH /company/companies/:id` (beyond the spec: manual companies).
    pub const COMPANY_UPDATE: &str = "company.update";
    /// `DELETE /company/companies/:id` (beyond the spec: manual companies).
    pub const COMPANY_DELETE: &str = "company.delete";
    /// `GET|POST /company/sync` (beyond the spec: ConnectWise sync status and run).
    pub const COMPANY_SYNC: &str = "company.sync";
    /// List roles (beyond the spec).
    pub const ROLE_FETCH_MANY: &str = "role.fetch.many";
    /// Create a role.
    pub const ROLE_CREATE: &str = "role.create";
    /// Update a role.
    pub const ROLE_UPDATE: &str = "role.update";
    /// Delete a role.
    pub const ROLE_DELETE: &str = "role.delete";
    /// List users.
    pub const USER_FETCH_MANY: &str = "user.fetch.many";
    /// Set a user's roles.
    pub const USER_ROLES_UPDATE: &str = "user.roles.update";
    /// Manage webhook endpoints: register, change, delete, rotate secrets, read delivery logs,
    /// replay (beyond the spec).
    pub const WEBHOOK_MANAGE: &str = "webhook.manage";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(raw: &str) -> Permission {
        Permission::parse(raw).expect("test permission is valid")
    }

    #[test]
    fn star_grants_everything() {
        assert!(p("*").grants("credential.fetch"));
    }

    #[test]
    fn prefix_wildcard_grants_the_prefix_and_below_but_not_siblings() {
        let held = p("credential.*");
        assert!(held.grants("credential"));
        assert!(held.grants("credential.fetch"));
        assert!(held.grants("credential.fields.fetch"));
        assert!(!held.grants("credential_type.fetch"));
        assert!(!held.grants("credentialx.fetch"));
    }

    #[test]
    fn exact_permission_grants_only_itself() {
        assert!(p("credential.fetch").grants("credential.fetch"));
        assert!(!p("credential.fetch").grants("credential.fetch.many"));
    }

    #[test]
    fn malformed_permissions_are_rejected() {
        for raw in ["", "a..b", "A.b", "a.*.b", "a b", "$ne", "a.", ".a"] {
            assert!(Permission::parse(raw).is_err(), "{raw} should be rejected");
        }
    }
}
