//! Credential service operations: credential types, credentials, and the audit log. Request
//! bodies are parsed by the edge straight into the `*Input`/`*Patch` types, which deny unknown
//! fields, so an unexpected key is a 400 naming it.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::company::CompanySummary;
use crate::subjects;

/// One field definition of a credential type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldDefinition {
    /// Identifier, unique within the type: letters, digits, `_`; starts with a letter; ≤ 64.
    #[schema(schema_with = crate::schema::field_id)]
    pub id: String,
    /// Display name.
    #[schema(schema_with = crate::schema::name)]
    pub name: String,
    /// Whether every credential must have a value.
    #[serde(default)]
    pub required: bool,
    /// Whether values are sealed by vault (always true for `totp`).
    #[serde(default)]
    pub secure: bool,
    /// One of `plain_text`, `password`, `email`, `url`, `note`, `number`, `totp`.
    #[schema(schema_with = crate::schema::value_type)]
    pub value_type: String,
}

/// A credential type as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialType {
    /// Id.
    pub id: String,
    /// Unique name (case-insensitively).
    pub name: String,
    /// Extra permission every access to this type's credentials requires.
    pub permission_scope: Option<String>,
    /// Icon URL (https).
    pub icon: Option<String>,
    /// Field definitions.
    pub fields: Vec<FieldDefinition>,
    /// How many credentials use the type.
    pub credential_count: u64,
    /// What a reveal of its credentials must carry (beyond the spec; left out when `none`).
    #[serde(default, skip_serializing_if = "RevealPolicy::is_none")]
    pub reveal_policy: RevealPolicy,
    /// Days after which a credential's secure values are due for rotation, counted from their
    /// last change (beyond the spec; left out when unset: no schedule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_days: Option<u32>,
    /// Created (ISO-8601 UTC, ms).
    pub created_at: String,
    /// Last updated (ISO-8601 UTC, ms).
    pub updated_at: String,
}

/// What a reveal (`secure-values`, a TOTP code) of a type's credentials must carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevealPolicy {
    /// `none` (the spec's behaviour), `reason` (a free-text reason) or `ticket` (an open
    /// ConnectWise service ticket of the credential's company).
    #[serde(default)]
    pub require: RevealRequirement,
    /// Under `ticket`: a credential of a company without a ConnectWise id (kept by hand) may be
    /// revealed with a reason instead (otherwise it cannot be revealed but by break-glass).
    #[serde(default)]
    pub reason_without_connect_wise: bool,
    /// Under `ticket`: add an internal note to the ticket for each reveal.
    #[serde(default = "yes")]
    pub ticket_note: bool,
}

fn yes() -> bool {
    true
}

impl Default for RevealPolicy {
    fn default() -> Self {
        Self {
            require: RevealRequirement::None,
            reason_without_connect_wise: false,
            ticket_note: true,
        }
    }
}

impl RevealPolicy {
    /// Whether it is the default (no requirement).
    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }
}

/// See [`RevealPolicy::require`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RevealRequirement {
    /// Nothing beyond the permissions.
    #[default]
    None,
    /// A reason.
    Reason,
    /// An open ConnectWise ticket of the credential's company.
    Ticket,
}

/// Why a reveal happens: what the reveal route's query carries (`ticket`, `reason`,
/// `breakGlass`). Checked against the type's [`RevealPolicy`] and recorded with the reveal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Justification {
    /// A ConnectWise service ticket number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<u64>,
    /// Free text (at most 500 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Bypass the policy (needs `credential.break_glass` and a reason).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub break_glass: bool,
}

/// The body of `POST /credential-type/credential-types`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialTypeInput {
    /// Name.
    #[schema(schema_with = crate::schema::name)]
    pub name: String,
    /// Extra permission for the type's credentials.
    #[serde(default)]
    #[schema(schema_with = crate::schema::permission_scope)]
    pub permission_scope: Option<String>,
    /// Icon URL.
    #[serde(default)]
    #[schema(schema_with = crate::schema::https_url)]
    pub icon: Option<String>,
    /// Field definitions.
    pub fields: Vec<FieldDefinition>,
    /// What reveals must carry (beyond the spec; default: nothing).
    #[serde(default)]
    pub reveal_policy: Option<RevealPolicy>,
    /// Rotation schedule in days, 1 to 3650 (beyond the spec; default: none).
    #[serde(default, deserialize_with = "whole_days")]
    #[schema(schema_with = crate::schema::rotation_days)]
    pub rotation_days: Option<u32>,
}

/// A number of days: a JSON integer, also written with a zero fraction (`30.0` — JSON Schema's
/// `integer` admits it, and clients computing days may send it), or `null`. Anything else is
/// refused with serde's message.
fn whole_days<'de, D>(deserializer: D) -> Result<Option<u32>, D::Error>
where
    D: Deserializer<'de>,
{
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if let Some(days) = number.as_u64() {
        return u32::try_from(days)
            .map(Some)
            .map_err(|_| D::Error::custom(format!("{number} days is out of range")));
    }
    match number.as_f64() {
        Some(days) if days.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&days) => {
            Ok(Some(days as u32))
        }
        _ => Err(D::Error::custom(format!(
            "expected a whole number of days, not {number}"
        ))),
    }
}

/// [`whole_days`], `Some(None)` for an explicit `null`, `None` for an absent key.
fn explicit_null_days<'de, D>(deserializer: D) -> Result<Option<Option<u32>>, D::Error>
where
    D: Deserializer<'de>,
{
    whole_days(deserializer).map(Some)
}

/// `Some(None)` for an explicit `null`, `None` for an absent key.
fn explicit_null<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The body of `PATCH /credential-type/credential-types/:id`; absent keys stay as they are,
/// `null` clears `permissionScope`, `icon` or `rotationDays`. On the bus an absent key is left
/// out too (`skip_serializing_if`): written as `null` it would arrive as "clear".
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialTypePatch {
    /// New name.
    #[serde(default)]
    #[schema(schema_with = crate::schema::optional_name)]
    pub name: Option<String>,
    /// New scope, or `null` to remove it.
    #[serde(
        default,
        deserialize_with = "explicit_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(schema_with = crate::schema::permission_scope)]
    pub permission_scope: Option<Option<String>>,
    /// New icon, or `null` to remove it.
    #[serde(
        default,
        deserialize_with = "explicit_null",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(schema_with = crate::schema::https_url)]
    pub icon: Option<Option<String>>,
    /// The complete new list of field definitions.
    #[serde(default)]
    pub fields: Option<Vec<FieldDefinition>>,
    /// The new reveal policy, whole (beyond the spec).
    #[serde(default)]
    pub reveal_policy: Option<RevealPolicy>,
    /// New rotation schedule in days, or `null` to remove it (beyond the spec).
    #[serde(
        default,
        deserialize_with = "explicit_null_days",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(schema_with = crate::schema::rotation_days)]
    pub rotation_days: Option<Option<u32>>,
}

/// A field value in a request; `id` is optional (the server assigns stable ids).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldValueInput {
    /// The value's id, if the client knows it.
    #[serde(default)]
    pub id: Option<String>,
    /// The field it fills.
    pub field_id: String,
    /// The value: a string (a number is also accepted for `number` fields).
    #[schema(schema_with = crate::schema::field_value)]
    pub value: Value,
}

/// The body of `POST /credential/credentials`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialInput {
    /// Name.
    #[schema(schema_with = crate::schema::name)]
    pub name: String,
    /// The credential type.
    pub type_id: String,
    /// The company it belongs to.
    pub company_id: String,
    /// Values.
    pub fields: Vec<FieldValueInput>,
}

/// The body of `PATCH /credential/credentials/:id` (the name only).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialPatch {
    /// New name.
    #[schema(schema_with = crate::schema::name)]
    pub name: String,
}

/// The body of `PUT /credential/credentials/:id/fields`: the complete new set of values.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialFieldsInput {
    /// Values.
    pub fields: Vec<FieldValueInput>,
}

/// The type as embedded in a credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialTypeSummary {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Field definitions.
    pub fields: Vec<FieldDefinition>,
    /// Extra permission.
    pub permission_scope: Option<String>,
}

/// A credential as the API shows it: non-secure values only, keyed by field id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Type id.
    pub type_id: String,
    /// Company id.
    pub company_id: String,
    /// Non-secure values by field id.
    pub fields: BTreeMap<String, Value>,
    /// The type.
    #[serde(rename = "type")]
    pub credential_type: CredentialTypeSummary,
    /// The company.
    pub company: CompanySummary,
    /// Created.
    pub created_at: String,
    /// Last updated.
    pub updated_at: String,
    /// The version (also the `ETag`): bumped by every change of values or name.
    #[serde(default)]
    pub version: u64,
    /// Whether its secure values are due for rotation: marked (break-glass reveal, exposure,
    /// the scheduler) or its type's `rotationDays` passed since they last changed (beyond the
    /// spec). Cleared when a secure value is written again.
    #[serde(default)]
    pub rotation_due: bool,
    /// When its type's schedule makes it due (left out when the type has no `rotationDays`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_due_at: Option<String>,
}

/// One value as `GET …/fields` shows it: secure values sealed (base64).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldValue {
    /// The value's stable id.
    pub id: String,
    /// The field it fills.
    pub field_id: String,
    /// The value, or the sealed blob for secure fields.
    pub value: Value,
}

/// Decrypted secure values by field id; `Debug` hides them.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct SecureValues(pub BTreeMap<String, String>);

impl Drop for SecureValues {
    fn drop(&mut self) {
        for value in self.0.values_mut() {
            zeroize::Zeroize::zeroize(value);
        }
    }
}

impl std::fmt::Debug for SecureValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// List every credential type.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListCredentialTypes {}

crate::operation!(ListCredentialTypes => subjects::CREDENTIAL_TYPE_LIST, Vec<CredentialType>);

/// Get a credential type by id or (case-insensitive) name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetCredentialType {
    /// Id or name.
    pub identifier: String,
}

crate::operation!(GetCredentialType => subjects::CREDENTIAL_TYPE_GET, CredentialType);

/// Create a credential type.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateCredentialType {
    /// The body.
    pub input: CredentialTypeInput,
}

crate::operation!(CreateCredentialType => subjects::CREDENTIAL_TYPE_CREATE, CredentialType);

/// Update a credential type.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateCredentialType {
    /// The type's id.
    pub id: String,
    /// The body.
    pub patch: CredentialTypePatch,
}

crate::operation!(UpdateCredentialType => subjects::CREDENTIAL_TYPE_UPDATE, CredentialType);

/// Delete a credential type and every credential of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteCredentialType {
    /// The type's id.
    pub id: String,
}

crate::operation!(DeleteCredentialType => subjects::CREDENTIAL_TYPE_DELETE, ());

/// Which part of a list to answer: a page (`page` from 1, `rpp` per page), or everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListWindow {
    /// Page (from 1) and records per page; `None`: the whole list (refused beyond the
    /// service's cap, naming `page` and `rpp`).
    pub page: Option<(u64, u64)>,
}

/// A list of credentials: the items answered and how many there are in all.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialList {
    /// The credentials (one page, or all).
    pub items: Vec<Credential>,
    /// How many match in all.
    pub total: u64,
}

/// Every credential of a type (or one page of them), ordered by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListCredentialsByType {
    /// The type's id.
    pub id: String,
    /// Which part.
    #[serde(default)]
    pub window: ListWindow,
    /// Only credentials due for rotation (`?rotationDue=true`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rotation_due: bool,
}

crate::operation!(ListCredentialsByType => subjects::CREDENTIAL_LIST_BY_TYPE, CredentialList);

/// Every credential of a company the caller may see (or one page of them), ordered by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListCredentialsByCompany {
    /// The company's id.
    pub company_id: String,
    /// Which part.
    #[serde(default)]
    pub window: ListWindow,
    /// Only credentials due for rotation (`?rotationDue=true`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rotation_due: bool,
}

crate::operation!(ListCredentialsByCompany => subjects::CREDENTIAL_LIST_BY_COMPANY, CredentialList);

/// Credentials of every company the caller may see (or one page of them), ordered by name —
/// with `rotation_due`, those due for rotation (`GET /v1/credential/credentials?rotationDue=true`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListCredentials {
    /// Which part.
    #[serde(default)]
    pub window: ListWindow,
    /// Only credentials due for rotation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rotation_due: bool,
}

crate::operation!(ListCredentials => subjects::CREDENTIAL_LIST, CredentialList);

/// Get one credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetCredential {
    /// Id.
    pub id: String,
}

crate::operation!(GetCredential => subjects::CREDENTIAL_GET, Credential);

/// Create a credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateCredential {
    /// The body.
    pub input: CredentialInput,
}

crate::operation!(CreateCredential => subjects::CREDENTIAL_CREATE, Credential);

/// Rename a credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateCredential {
    /// Id.
    pub id: String,
    /// The body.
    pub patch: CredentialPatch,
    /// `If-Match`: the version the caller read; another current version is 412.
    #[serde(default)]
    pub if_match: Option<u64>,
}

crate::operation!(UpdateCredential => subjects::CREDENTIAL_UPDATE, Credential);

/// Replace a credential's values.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateCredentialFields {
    /// Id.
    pub id: String,
    /// The body.
    pub input: CredentialFieldsInput,
    /// `If-Match`: the version the caller read; another current version is 412.
    #[serde(default)]
    pub if_match: Option<u64>,
}

crate::operation!(UpdateCredentialFields => subjects::CREDENTIAL_FIELDS_UPDATE, Credential);

/// A credential's values, secure ones sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetCredentialFields {
    /// Id.
    pub id: String,
}

crate::operation!(GetCredentialFields => subjects::CREDENTIAL_FIELDS_GET, Vec<FieldValue>);

/// Reveal a credential's secure values (audited).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevealSecureValues {
    /// Id.
    pub id: String,
    /// Why (the route's `ticket`, `reason`, `breakGlass`).
    #[serde(default)]
    pub justification: Justification,
}

crate::operation!(RevealSecureValues => subjects::CREDENTIAL_REVEAL, SecureValues);

/// The current code of a credential's `totp` field (`GET …/:id/totp/:fieldId`; audited). The
/// code is computed in vault: the seed is not opened anywhere else.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetTotpCode {
    /// The credential's id.
    pub id: String,
    /// The `totp` field's id.
    pub field_id: String,
    /// Why (the route's `ticket`, `reason`, `breakGlass`): the type's reveal policy applies.
    #[serde(default)]
    pub justification: Justification,
}

crate::operation!(GetTotpCode => subjects::CREDENTIAL_TOTP, crate::vault::TotpCode);

/// One version of a credential as its history lists it: what made it, and its non-secure values
/// (secure values only through [`RevealPastSecureValues`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialVersion {
    /// The version.
    pub version: u64,
    /// Whether it is the credential as it is now.
    pub current: bool,
    /// When it was made (`None`: a version from before history was kept).
    pub at: Option<String>,
    /// Who made it.
    pub actor: Option<crate::audit::AuditActor>,
    /// `created`, `fields_updated`, `renamed`, `migrated` or `restored`.
    pub change: Option<String>,
    /// The fields whose values it wrote.
    pub field_ids: Vec<String>,
    /// For `restored`: the version it restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<u64>,
    /// The credential's name in it.
    pub name: String,
    /// Its non-secure values by field id.
    pub fields: BTreeMap<String, Value>,
    /// Its secure fields (values sealed; revealed through `…/history/:version/secure-values`).
    pub secure_field_ids: Vec<String>,
}

/// A credential's versions, newest first (or one page of them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListCredentialHistory {
    /// The credential's id.
    pub id: String,
    /// Which part.
    #[serde(default)]
    pub window: ListWindow,
}

/// A page of versions and how many there are.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialHistory {
    /// The versions, newest first.
    pub items: Vec<CredentialVersion>,
    /// How many versions are kept in all.
    pub total: u64,
}

crate::operation!(ListCredentialHistory => subjects::CREDENTIAL_HISTORY, CredentialHistory);

/// Reveal the secure values of a past (or the current) version: audited and policy-checked as
/// a reveal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevealPastSecureValues {
    /// The credential's id.
    pub id: String,
    /// The version.
    pub version: u64,
    /// Why (the route's `ticket`, `reason`, `breakGlass`).
    #[serde(default)]
    pub justification: Justification,
}

crate::operation!(RevealPastSecureValues => subjects::CREDENTIAL_HISTORY_REVEAL, SecureValues);

/// Make a new version whose values equal those of a past version (the name stays as it is).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreCredentialVersion {
    /// The credential's id.
    pub id: String,
    /// The version to restore.
    pub version: u64,
    /// `If-Match`: the version the caller read; another current version is 412.
    #[serde(default)]
    pub if_match: Option<u64>,
}

crate::operation!(RestoreCredentialVersion => subjects::CREDENTIAL_RESTORE, Credential);

/// Check every credential against the audit log: its version, and the version each of its values
/// was written in, must be what the (hash-chained, signed) log last recorded for it — so an older
/// document, or an older value with its version tag, copied over the current one by someone who
/// can write the store is found. Reads the whole log and every credential: an on-demand check.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifyCredentialVersions {}

/// One credential that is not what the audit log says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionMismatch {
    /// The credential.
    pub credential_id: String,
    /// What differs (ids and version numbers only).
    pub problem: String,
}

/// The outcome of [`VerifyCredentialVersions`].
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionVerification {
    /// Whether every checked credential matches the log.
    pub consistent: bool,
    /// Credentials checked against the log.
    pub checked: u64,
    /// Credentials the log has no versioned write of (from before versions; checked once written).
    pub not_covered: u64,
    /// Audit entries read.
    pub entries_read: u64,
    /// The credentials that differ.
    pub mismatches: Vec<VersionMismatch>,
}

crate::operation!(VerifyCredentialVersions => subjects::CREDENTIAL_VERIFY_VERSIONS, VersionVerification);

/// How many credentials belong to a company (company-sync asks before deleting one).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CountCompanyCredentials {
    /// The company's id.
    pub company_id: String,
}

crate::operation!(CountCompanyCredentials => subjects::CREDENTIAL_COUNT_BY_COMPANY, u64, callers: [crate::Component::CompanySync]);

/// Delete a credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteCredential {
    /// Id.
    pub id: String,
}

crate::operation!(DeleteCredential => subjects::CREDENTIAL_DELETE, ());
