//! The route table: every route the edge serves, in the order a request tries them.
//!
//! Order is a hot-path choice: consecutive routes under one `/v1/<area>/` are tried as a group
//! (a request pays one prefix check per other group), and within the table and each group the
//! most frequent come first. A route declares its method, path (parameters named as the spec
//! names them), log name, access, success status and message, and its handler — for most, the
//! one bus operation it forwards, built from the request. `edge/tests/route_table.rs` checks the
//! table against the spec; [`crate::routes`] turns it into warp filters.

use std::time::Duration;

use ttscm_contract::audit::{
    AuditCheckpoint, AuditEntry, AuditVerification, CreateAuditCheckpoint, ExposureMarked, ExposureReport,
    GetAuditCheckpoint, VerifyAudit,
};
use ttscm_contract::company::{
    Company, CompanyInput, CreateCompany, DeleteCompany, GetCompany, GetCompanyConfigurations,
    GetCompanySyncStatus, RunCompanySync, SyncReport, SyncStatus, UpdateCompany,
};
use ttscm_contract::credential::{
    CreateCredential, CreateCredentialType, Credential, CredentialFieldsInput, CredentialInput,
    CredentialPatch, CredentialType, CredentialTypeInput, CredentialTypePatch, CredentialVersion,
    DeleteCredential, DeleteCredentialType, FieldValue, GetCredentialFields, GetCredentialType, GetTotpCode,
    ListCredentialTypes, RevealPastSecureValues, RevealSecureValues, SecureValues, UpdateCredentialType,
    VerifyCredentialVersions, VersionVerification,
};
use ttscm_contract::identity::{
    CreateRole, DeleteRole, GetMe, ListRoles, LoggedOut, LoginStart, RefreshSession, Role, RoleInput,
    SetUserRoles, TokenPair, UpdateMe, UpdateRole, User,
};
use ttscm_contract::permission::names;
use ttscm_contract::vault::TotpCode;
use ttscm_contract::webhook::{
    CreateWebhookEndpoint, DeleteWebhookEndpoint, GetWebhookEndpoint, ListWebhookEndpoints,
    ReplayWebhookDeliveries, ReplayWebhookDelivery, RotateWebhookSecret, UpdateWebhookEndpoint,
    WebhookDelivery, WebhookEndpoint, WebhookEndpointInput, WebhookEndpointPatch, WebhookEndpointWithSecret,
    WebhookReplay, WebhookReplayInput,
};
use warp::http::StatusCode;

use crate::routes::Access::{Permissions, Public, RefreshToken, Scopes, SignedIn};
use crate::routes::Method::{Delete, Get, Patch, Post, Put};
use crate::routes::{Custom, Forward, Handler, Reads, RouteSpec, route};
use serde_json::{Value, json};

use crate::openapi::{Data, Param, Schemas, any_value, params, schema};
use crate::{
    auth_routes, company_routes, credential_routes, misc_routes, openapi, readiness, user_routes,
    webhook_routes,
};

/// Every route, in the order tried.
pub fn route_table() -> &'static [RouteSpec] {
    ROUTES
}

/// What a reveal's query may carry.
const REVEAL: &[Param] = &[params::TICKET, params::REASON, params::BREAK_GLASS];
/// What a credential list's query may carry.
const CREDENTIAL_LIST: &[Param] = &[params::PAGE, params::RPP, params::ROTATION_DUE];
/// What the audit events' query may carry.
const AUDIT_EVENTS: &[Param] = &[
    params::PAGE,
    params::RPP,
    params::ACTOR,
    params::TARGET,
    params::ACTION,
    params::FROM,
    params::TO,
];

/// A role's create: [`RoleInput`] with its name and permissions.
fn role_create(schemas: &mut Schemas) -> Value {
    json!({
        "allOf": [schema::<RoleInput>(schemas)],
        "properties": {"name": {"type": "string"}, "permissions": {"type": "array"}},
        "required": ["name", "permissions"],
    })
}

/// A role's update: [`RoleInput`]'s permissions (a role's name cannot change: users and API
/// tokens refer to it).
fn role_update(schemas: &mut Schemas) -> Value {
    json!({
        "allOf": [schema::<RoleInput>(schemas)],
        "properties": {"name": {"type": "null"}},
    })
}

const OK: StatusCode = StatusCode::OK;
const CREATED: StatusCode = StatusCode::CREATED;

/// How long the configurations route waits: company-sync tries ConnectWise twice with a 5 s
/// limit each, so its 502 arrives before this.
const CONFIGURATIONS_DEADLINE: Duration = Duration::from_secs(15);
/// How long `GET /v1/audit/verify/credentials` waits: it reads the whole audit log and every
/// credential.
const VERIFY_CREDENTIALS_DEADLINE: Duration = Duration::from_secs(120);
/// How long `POST /v1/company/sync` waits for the sync it starts (a full sync of a large
/// ConnectWise tenant, with rate limiting, takes a while).
const SYNC_DEADLINE: Duration = Duration::from_secs(300);

#[rustfmt::skip]
static ROUTES: &[RouteSpec] = &[
    route(Get, "/v1/teapot", "teapot")
        .allow(Public).answers(StatusCode::IM_A_TEAPOT, "I'm a teapot")
        .by(&Custom(misc_routes::teapot)),

    // ---- credentials: the reveal and the reads first ----
    route(Get, "/v1/credential/credentials/:id", "credential.get")
        .gives(Data::One(schema::<Credential>))
        .allow(Permissions(&[names::CREDENTIAL_FETCH]))
        .answers(OK, "Credential Fetched Successfully!")
        .by(&Custom(credential_routes::get)),
    route(Get, "/v1/credential/credentials/:id/secure-values", "credential.reveal")
        .gives(Data::One(schema::<SecureValues>)).params(REVEAL)
        .allow(Permissions(&[names::CREDENTIAL_FETCH, names::CREDENTIAL_SECURE_VALUES_READ]))
        .reads(Reads::Query)
        .answers(OK, "Secure Values Fetched Successfully!").no_store()
        .by(&Forward(|r| Ok(RevealSecureValues { justification: credential_routes::justification(r)?, id: r.param() }))),
    route(Get, "/v1/credential/credentials/:id/totp/:fieldId", "credential.totp").beyond_spec()
        .gives(Data::One(schema::<TotpCode>)).params(REVEAL)
        .allow(Permissions(&[names::CREDENTIAL_TOTP_READ]))
        .reads(Reads::Query)
        .answers(OK, "TOTP Code Generated Successfully!").no_store()
        .by(&Forward(|r| Ok(GetTotpCode { justification: credential_routes::justification(r)?, id: r.param(), field_id: r.param() }))),
    route(Get, "/v1/credential/credentials/:id/fields", "credential.fields_get")
        .gives(Data::Array(schema::<FieldValue>))
        .allow(Permissions(&[names::CREDENTIAL_FETCH, names::CREDENTIAL_FIELDS_FETCH]))
        .answers(OK, "Credential Fields Fetched Successfully!")
        .by(&Forward(|r| Ok(GetCredentialFields { id: r.param() }))),
    route(Get, "/v1/credential/credentials/company/:companyId", "credential.by_company")
        .gives(Data::List(schema::<Credential>)).params(CREDENTIAL_LIST)
        .allow(Permissions(&[names::CREDENTIAL_FETCH_MANY])).reads(Reads::Query)
        .answers(OK, "Company Credentials Fetched Successfully!")
        .by(&Custom(credential_routes::by_company)),
    route(Get, "/v1/credential/credentials", "credential.list").beyond_spec()
        .gives(Data::List(schema::<Credential>)).params(CREDENTIAL_LIST)
        .allow(Permissions(&[names::CREDENTIAL_FETCH_MANY])).reads(Reads::Query)
        .answers(OK, "Credentials Fetched Successfully!")
        .by(&Custom(credential_routes::across_companies)),
    route(Get, "/v1/credential/credentials/:id/history", "credential.history").beyond_spec()
        .gives(Data::List(schema::<CredentialVersion>)).params(&[params::PAGE, params::RPP])
        .allow(Permissions(&[names::CREDENTIAL_FETCH])).reads(Reads::Query)
        .answers(OK, "Credential History Fetched Successfully!")
        .by(&Custom(credential_routes::history)),
    route(Get, "/v1/credential/credentials/:id/history/:version/secure-values", "credential.history_reveal").beyond_spec()
        .gives(Data::One(schema::<SecureValues>)).params(REVEAL)
        .allow(Permissions(&[names::CREDENTIAL_FETCH, names::CREDENTIAL_SECURE_VALUES_READ]))
        .reads(Reads::Query)
        .answers(OK, "Secure Values Fetched Successfully!").no_store()
        .by(&Forward(|r| Ok(RevealPastSecureValues { justification: credential_routes::justification(r)?, id: r.param(), version: credential_routes::version(r)? }))),
    route(Post, "/v1/credential/credentials/:id/history/:version/restore", "credential.restore").beyond_spec()
        .gives(Data::One(schema::<Credential>)).params(&[params::IF_MATCH])
        .allow(Permissions(&[names::CREDENTIAL_UPDATE, names::CREDENTIAL_FIELDS_UPDATE]))
        .reads(Reads::Header("if-match"))
        .answers(OK, "Credential Version Restored Successfully!")
        .by(&Custom(credential_routes::restore)),
    route(Post, "/v1/credential/credentials", "credential.create")
        .takes(schema::<CredentialInput>).gives(Data::One(schema::<Credential>)).params(&[params::IDEMPOTENCY_KEY])
        .allow(Permissions(&[names::CREDENTIAL_CREATE])).reads(Reads::Body)
        .answers(CREATED, "Credential Created Successfully!")
        .by(&Forward(|r| Ok(CreateCredential { input: r.body()? }))),
    route(Put, "/v1/credential/credentials/:id/fields", "credential.fields_update")
        .takes(schema::<CredentialFieldsInput>).gives(Data::One(schema::<Credential>)).params(&[params::IF_MATCH])
        .allow(Permissions(&[names::CREDENTIAL_UPDATE, names::CREDENTIAL_FIELDS_UPDATE])).reads(Reads::Body)
        .answers(OK, "Credential Fields Updated Successfully!")
        .by(&Custom(credential_routes::put_fields)),
    route(Patch, "/v1/credential/credentials/:id", "credential.update")
        .takes(schema::<CredentialPatch>).gives(Data::One(schema::<Credential>)).params(&[params::IF_MATCH])
        .allow(Permissions(&[names::CREDENTIAL_UPDATE])).reads(Reads::Body)
        .answers(OK, "Credential Updated Successfully!")
        .by(&Custom(credential_routes::rename)),
    route(Delete, "/v1/credential/credentials/:id", "credential.delete")
        .gives(Data::Null)
        .allow(Permissions(&[names::CREDENTIAL_DELETE]))
        .answers(OK, "Credential Deleted Successfully!")
        .by(&Forward(|r| Ok(DeleteCredential { id: r.param() }))),

    // ---- credential types ----
    route(Get, "/v1/credential-type/credential-types", "credential_type.list")
        .gives(Data::Array(schema::<CredentialType>))
        .allow(Permissions(&[names::CREDENTIAL_TYPE_FETCH_MANY]))
        .answers(OK, "Credential Types Fetched Successfully!")
        .by(&Forward(|_| Ok(ListCredentialTypes {}))),
    route(Get, "/v1/credential-type/credential-types/:identifier", "credential_type.get")
        .gives(Data::One(schema::<CredentialType>))
        .allow(Permissions(&[names::CREDENTIAL_TYPE_FETCH]))
        .answers(OK, "Credential Type Fetched Successfully!")
        .by(&Forward(|r| Ok(GetCredentialType { identifier: r.param() }))),
    route(Get, "/v1/credential-type/credential-types/:id/credentials", "credential_type.credentials")
        .gives(Data::List(schema::<Credential>)).params(CREDENTIAL_LIST)
        .allow(Permissions(&[names::CREDENTIAL_TYPE_FETCH, names::CREDENTIAL_FETCH_MANY])).reads(Reads::Query)
        .answers(OK, "Credentials Fetched Successfully!")
        .by(&Custom(credential_routes::by_type)),
    route(Post, "/v1/credential-type/credential-types", "credential_type.create")
        .takes(schema::<CredentialTypeInput>).gives(Data::One(schema::<CredentialType>)).params(&[params::IDEMPOTENCY_KEY])
        .allow(Permissions(&[names::CREDENTIAL_TYPE_CREATE])).reads(Reads::Body)
        .answers(CREATED, "Credential Type Created Successfully!")
        .by(&Forward(|r| Ok(CreateCredentialType { input: r.body()? }))),
    route(Patch, "/v1/credential-type/credential-types/:id", "credential_type.update")
        .takes(schema::<CredentialTypePatch>).gives(Data::One(schema::<CredentialType>))
        .allow(Permissions(&[names::CREDENTIAL_TYPE_UPDATE])).reads(Reads::Body)
        .answers(OK, "Credential Type Updated Successfully!")
        .by(&Forward(|r| Ok(UpdateCredentialType { patch: r.body()?, id: r.param() }))),
    route(Delete, "/v1/credential-type/credential-types/:id", "credential_type.delete")
        .gives(Data::Null)
        .allow(Permissions(&[names::CREDENTIAL_TYPE_DELETE]))
        .answers(OK, "Credential Type Deleted Successfully!")
        .by(&Forward(|r| Ok(DeleteCredentialType { id: r.param() }))),

    // ---- the signed-in user: every app start and page load asks ----
    route(Get, "/v1/user/@me", "user.me")
        .gives(Data::One(schema::<User>))
        .allow(Scopes(&[names::USER_READ]))
        .answers(OK, "Fetched user.")
        .by(&Forward(|_| Ok(GetMe {}))),

    // ---- companies (list and get per the spec; manual companies and sync beyond it) ----
    route(Get, "/v1/company/companies", "company.list")
        .gives(Data::Paged(schema::<Company>)).params(&[params::PAGE, params::COMPANY_RPP, params::SEARCH])
        .allow(Permissions(&[names::COMPANY_FETCH_MANY])).reads(Reads::Query)
        .answers(OK, "Companies Fetched Successfully!")
        .by(&Custom(company_routes::list)),
    route(Get, "/v1/company/companies/:identifier/configurations", "company.configurations")
        .gives(Data::Array(any_value))
        .allow(Permissions(&[names::COMPANY_FETCH, names::COMPANY_FETCH_CONFIGURATIONS]))
        .answers(OK, "Company Configurations Fetched Successfully!").deadline(CONFIGURATIONS_DEADLINE)
        .by(&Forward(|r| Ok(GetCompanyConfigurations { id: r.param() }))),
    route(Get, "/v1/company/sync", "company.sync_status").beyond_spec()
        .gives(Data::One(schema::<SyncStatus>))
        .allow(Permissions(&[names::COMPANY_SYNC]))
        .answers(OK, "Company Sync Status Fetched Successfully!")
        .by(&Forward(|_| Ok(GetCompanySyncStatus {}))),
    route(Post, "/v1/company/sync", "company.sync_run").beyond_spec()
        .gives(Data::One(schema::<SyncReport>)).params(&[params::FULL])
        .allow(Permissions(&[names::COMPANY_SYNC])).reads(Reads::Query)
        .answers(OK, "Company Sync Finished!").deadline(SYNC_DEADLINE)
        .by(&Forward(|r| Ok(RunCompanySync { full: company_routes::full_sync(&r.query)? }))),
    route(Post, "/v1/company/companies", "company.create").beyond_spec()
        .takes(schema::<CompanyInput>).gives(Data::One(schema::<Company>)).params(&[params::IDEMPOTENCY_KEY])
        .allow(Permissions(&[names::COMPANY_CREATE])).reads(Reads::Body)
        .answers(CREATED, "Company Created Successfully!")
        .by(&Forward(|r| Ok(CreateCompany { input: r.body()? }))),
    route(Get, "/v1/company/companies/:identifier", "company.get")
        .gives(Data::One(schema::<Company>))
        .allow(Permissions(&[names::COMPANY_FETCH]))
        .answers(OK, "Company Fetched Successfully!")
        .by(&Forward(|r| Ok(GetCompany { id: r.param() }))),
    route(Patch, "/v1/company/companies/:id", "company.update").beyond_spec()
        .takes(schema::<CompanyInput>).gives(Data::One(schema::<Company>))
        .allow(Permissions(&[names::COMPANY_UPDATE])).reads(Reads::Body)
        .answers(OK, "Company Updated Successfully!")
        .by(&Forward(|r| Ok(UpdateCompany { patch: r.body()?, id: r.param() }))),
    route(Delete, "/v1/company/companies/:id", "company.delete").beyond_spec()
        .gives(Data::Null)
        .allow(Permissions(&[names::COMPANY_DELETE]))
        .answers(OK, "Company Deleted Successfully!")
        .by(&Forward(|r| Ok(DeleteCompany { id: r.param() }))),

    // ---- users and roles (beyond `@me`, the administration sign-in needs) ----
    route(Patch, "/v1/user/@me", "user.me_update")
        .takes(schema::<UpdateMe>).gives(Data::One(schema::<User>))
        .allow(Scopes(&[names::USER_WRITE])).reads(Reads::Body)
        .answers(OK, "Successfully updated user.")
        .by(&Forward(|r| r.body::<UpdateMe>())),
    route(Get, "/v1/user/users", "user.list").beyond_spec()
        .gives(Data::Paged(schema::<User>)).params(&[params::PAGE, params::RPP, params::SEARCH])
        .allow(Permissions(&[names::USER_FETCH_MANY])).reads(Reads::Query)
        .answers(OK, "Users Fetched Successfully!")
        .by(&Custom(user_routes::list)),
    route(Put, "/v1/user/users/:id/roles", "user.roles_update").beyond_spec()
        .takes(schema::<user_routes::RolesBody>).gives(Data::One(schema::<User>))
        .allow(Permissions(&[names::USER_ROLES_UPDATE])).reads(Reads::Body)
        .answers(OK, "User Roles Updated Successfully!")
        .by(&Forward(|r| Ok(SetUserRoles { roles: r.body::<user_routes::RolesBody>()?.roles, id: r.param() }))),
    route(Get, "/v1/role/roles", "role.list").beyond_spec()
        .gives(Data::Array(schema::<Role>))
        .allow(Permissions(&[names::ROLE_FETCH_MANY]))
        .answers(OK, "Roles Fetched Successfully!")
        .by(&Forward(|_| Ok(ListRoles {}))),
    route(Post, "/v1/role/roles", "role.create").beyond_spec()
        .takes(role_create).gives(Data::One(schema::<Role>)).params(&[params::IDEMPOTENCY_KEY])
        .allow(Permissions(&[names::ROLE_CREATE])).reads(Reads::Body)
        .answers(CREATED, "Role Created Successfully!")
        .by(&Forward(|r| Ok(CreateRole { input: r.body()? }))),
    route(Patch, "/v1/role/roles/:id", "role.update").beyond_spec()
        .takes(role_update).gives(Data::One(schema::<Role>))
        .allow(Permissions(&[names::ROLE_UPDATE])).reads(Reads::Body)
        .answers(OK, "Role Updated Successfully!")
        .by(&Forward(|r| Ok(UpdateRole { input: r.body()?, id: r.param() }))),
    route(Delete, "/v1/role/roles/:id", "role.delete").beyond_spec()
        .gives(Data::One(schema::<Role>))
        .allow(Permissions(&[names::ROLE_DELETE]))
        .answers(OK, "Role Deleted Successfully!")
        .by(&Forward(|r| Ok(DeleteRole { id: r.param() }))),

    // ---- audit (beyond the spec) ----
    route(Get, "/v1/audit/events", "audit.events").beyond_spec()
        .gives(Data::Paged(schema::<AuditEntry>)).params(AUDIT_EVENTS)
        .allow(Permissions(&[names::AUDIT_FETCH_MANY])).reads(Reads::Query)
        .answers(OK, "Audit Events Fetched Successfully!")
        .by(&Custom(misc_routes::audit_events)),
    route(Get, "/v1/audit/exposure", "audit.exposure").beyond_spec()
        .gives(Data::OnePaged(schema::<ExposureReport>)).params(&[params::EXPOSED_BY, params::SINCE, params::PAGE, params::RPP])
        .allow(Permissions(&[names::AUDIT_FETCH_MANY, names::CREDENTIAL_FETCH_MANY])).reads(Reads::Query)
        .answers(OK, "Exposure Fetched Successfully!")
        .by(&Custom(misc_routes::exposure)),
    route(Post, "/v1/audit/exposure", "audit.exposure_mark").beyond_spec()
        .gives(Data::One(schema::<ExposureMarked>)).params(&[params::EXPOSED_BY, params::SINCE])
        .allow(Permissions(&[names::AUDIT_FETCH_MANY, names::CREDENTIAL_FETCH_MANY, names::CREDENTIAL_UPDATE]))
        .reads(Reads::Query)
        .answers(OK, "Exposed Credentials Marked Due For Rotation!")
        .by(&Custom(misc_routes::mark_exposure)),
    route(Get, "/v1/audit/verify", "audit.verify").beyond_spec()
        .gives(Data::One(schema::<AuditVerification>)).params(&[params::CHECKPOINT, params::FULL_VERIFY])
        .allow(Permissions(&[names::AUDIT_VERIFY])).reads(Reads::Query)
        .answers(OK, "Audit Chain Verified!")
        .by(&Forward(|r| Ok(VerifyAudit {
            checkpoint: r.query.get("checkpoint").cloned(),
            full: company_routes::full_sync(&r.query)?,
        }))),
    route(Get, "/v1/audit/verify/credentials", "audit.verify_credentials").beyond_spec()
        .gives(Data::One(schema::<VersionVerification>))
        .allow(Permissions(&[names::AUDIT_VERIFY]))
        .answers(OK, "Credentials Verified Against The Audit Log!").deadline(VERIFY_CREDENTIALS_DEADLINE)
        .by(&Forward(|_| Ok(VerifyCredentialVersions {}))),
    route(Get, "/v1/audit/checkpoint", "audit.checkpoint").beyond_spec()
        .gives(Data::One(schema::<AuditCheckpoint>))
        .allow(Permissions(&[names::AUDIT_VERIFY]))
        .answers(OK, "Audit Checkpoint Fetched Successfully!")
        .by(&Forward(|_| Ok(GetAuditCheckpoint {}))),
    route(Post, "/v1/audit/checkpoint", "audit.checkpoint_create").beyond_spec()
        .gives(Data::One(schema::<AuditCheckpoint>))
        .allow(Permissions(&[names::AUDIT_VERIFY]))
        .answers(CREATED, "Audit Checkpoint Signed Successfully!")
        .by(&Forward(|_| Ok(CreateAuditCheckpoint {}))),

    // ---- webhooks (beyond the spec; see webhook_routes) ----
    route(Get, "/v1/webhook/endpoints", "webhook.list").beyond_spec()
        .gives(Data::Array(schema::<WebhookEndpoint>))
        .allow(Permissions(&[names::WEBHOOK_MANAGE]))
        .answers(OK, "Webhook Endpoints Fetched Successfully!")
        .by(&Forward(|_| Ok(ListWebhookEndpoints {}))),
    route(Post, "/v1/webhook/endpoints", "webhook.create").beyond_spec()
        .takes(schema::<WebhookEndpointInput>).gives(Data::One(schema::<WebhookEndpointWithSecret>))
        .allow(Permissions(&[names::WEBHOOK_MANAGE])).reads(Reads::Body)
        .answers(CREATED, "Webhook Endpoint Created Successfully!").no_store()
        .by(&Forward(|r| Ok(CreateWebhookEndpoint { input: r.body()? }))),
    route(Get, "/v1/webhook/endpoints/:id", "webhook.get").beyond_spec()
        .gives(Data::One(schema::<WebhookEndpoint>))
        .allow(Permissions(&[names::WEBHOOK_MANAGE]))
        .answers(OK, "Webhook Endpoint Fetched Successfully!")
        .by(&Forward(|r| Ok(GetWebhookEndpoint { id: r.param() }))),
    route(Patch, "/v1/webhook/endpoints/:id", "webhook.update").beyond_spec()
        .takes(schema::<WebhookEndpointPatch>).gives(Data::One(schema::<WebhookEndpoint>))
        .allow(Permissions(&[names::WEBHOOK_MANAGE])).reads(Reads::Body)
        .answers(OK, "Webhook Endpoint Updated Successfully!")
        .by(&Forward(|r| Ok(UpdateWebhookEndpoint { patch: r.body()?, id: r.param() }))),
    route(Delete, "/v1/webhook/endpoints/:id", "webhook.delete").beyond_spec()
        .gives(Data::Null)
        .allow(Permissions(&[names::WEBHOOK_MANAGE]))
        .answers(OK, "Webhook Endpoint Deleted Successfully!")
        .by(&Forward(|r| Ok(DeleteWebhookEndpoint { id: r.param() }))),
    route(Post, "/v1/webhook/endpoints/:id/rotate-secret", "webhook.rotate_secret").beyond_spec()
        .gives(Data::One(schema::<WebhookEndpointWithSecret>))
        .allow(Permissions(&[names::WEBHOOK_MANAGE]))
        .answers(OK, "Webhook Secret Rotated Successfully!").no_store()
        .by(&Forward(|r| Ok(RotateWebhookSecret { id: r.param() }))),
    route(Get, "/v1/webhook/endpoints/:id/deliveries", "webhook.deliveries").beyond_spec()
        .gives(Data::Paged(schema::<WebhookDelivery>)).params(&[webhook_routes::STATUS, params::PAGE, params::RPP])
        .allow(Permissions(&[names::WEBHOOK_MANAGE])).reads(Reads::Query)
        .answers(OK, "Webhook Deliveries Fetched Successfully!")
        .by(&Custom(webhook_routes::deliveries)),
    route(Post, "/v1/webhook/endpoints/:id/deliveries/:deliveryId/replay", "webhook.replay_one").beyond_spec()
        .gives(Data::One(schema::<WebhookDelivery>))
        .allow(Permissions(&[names::WEBHOOK_MANAGE]))
        .answers(OK, "Webhook Delivery Queued Again!")
        .by(&Forward(|r| Ok(ReplayWebhookDelivery { id: r.param(), delivery_id: r.param() }))),
    route(Post, "/v1/webhook/endpoints/:id/replay", "webhook.replay").beyond_spec()
        .takes(schema::<WebhookReplayInput>).gives(Data::One(schema::<WebhookReplay>))
        .allow(Permissions(&[names::WEBHOOK_MANAGE])).reads(Reads::Body)
        .answers(OK, "Webhook Deliveries Queued Again!")
        .by(&Forward(|r| Ok(ReplayWebhookDeliveries { input: r.body()?, id: r.param() }))),

    // ---- sign-in (see auth_routes for the flow) ----
    route(Get, "/v1/auth/uri", "auth.uri")
        .gives(Data::One(schema::<LoginStart>)).params(&[params::BINDING, params::CLIENT])
        .allow(Public).reads(Reads::QueryAndHeaders(&["cookie", "origin"]))
        .answers(OK, "Successfully fetch Auth URI").no_store()
        .by(&Custom(auth_routes::begin)),
    route(Get, "/v1/auth/ws", "auth.ws").beyond_spec()
        .params(&[params::CALLBACK_KEY])
        .allow(Public).reads(Reads::Query)
        .answers(StatusCode::SWITCHING_PROTOCOLS, "")
        .with(Handler::WebSocket(auth_routes::upgrade)),
    route(Get, "/v1/auth/redirect", "auth.redirect")
        .gives(Data::OneOrPage(schema::<ttscm_contract::identity::SignedIn>)).params(&[params::CODE, params::STATE, params::ERROR, params::ERROR_DESCRIPTION, params::CONFIRM])
        .allow(Public).reads(Reads::QueryAndHeaders(&["accept", "cookie"]))
        .answers(OK, "Successfully authenticated").no_store()
        .by(&Custom(auth_routes::redirect)),
    route(Post, "/v1/auth/refresh", "auth.refresh")
        .gives(Data::One(schema::<TokenPair>))
        .allow(RefreshToken).reads(Reads::Header("x-refresh-token"))
        .answers(CREATED, "Token refreshed successfully!").no_store()
        .by(&Forward(|r| Ok(RefreshSession { token_hash: auth_routes::refresh_token_hash(r.header.take())? }))),
    route(Post, "/v1/auth/logout", "auth.logout").beyond_spec()
        .gives(Data::One(schema::<LoggedOut>))
        .allow(SignedIn)
        .answers(OK, "Successfully logged out.")
        .by(&Custom(auth_routes::logout)),

    // ---- the API description (edge/src/openapi.rs) ----
    route(Get, "/v1/openapi.json", "openapi.document").beyond_spec()
        .gives(Data::Raw("application/json", openapi::openapi_document))
        .allow(Public).answers(OK, "The OpenAPI document")
        .by(&Custom(openapi::serve_document)),
    route(Get, "/v1/docs", "openapi.page").beyond_spec()
        .gives(Data::Raw("text/html", openapi::text_body))
        .allow(Public).answers(OK, "The API's browsable documentation")
        .by(&Custom(openapi::serve_page)),
    route(Get, "/v1/docs/swagger-ui-bundle.js", "openapi.page_script").beyond_spec()
        .gives(Data::Raw("text/javascript", openapi::text_body))
        .allow(Public).answers(OK, "The documentation page's script")
        .by(&Custom(openapi::serve_script)),
    route(Get, "/v1/docs/swagger-ui.css", "openapi.page_stylesheet").beyond_spec()
        .gives(Data::Raw("text/css", openapi::text_body))
        .allow(Public).answers(OK, "The documentation page's stylesheet")
        .by(&Custom(openapi::serve_stylesheet)),

    // ---- probes (outside /v1) ----
    route(Get, "/healthz", "healthz").beyond_spec()
        .gives(Data::Null)
        .allow(Public)
        .answers(OK, "Alive")
        .with(Handler::Fixed),
    route(Get, "/readyz", "readyz").beyond_spec()
        .gives(Data::One(any_value))
        .allow(Public)
        .answers(OK, "Ready")
        .by(&Custom(readiness::readiness)),
];
