//! The route table: every route the edge serves, in the order a request tries them.
//!
//! Order is a hot-path choice: consecutive routes under one `/v1/<area>/` are tried as a group
//! (a request pays one prefix check per other group), and within the table and each group the
//! most frequent come first. A route declares its method, path (parameters named as the spec
//! names them), log name, access, success status and message, and its handler — for most, the
//! one bus operation it forwards, built from the request. `edge/tests/route_table.rs` checks the
//! table against the spec; [`crate::routes`] turns it into warp filters.

use std::time::Duration;

use ttscm_contract::audit::{CreateAuditCheckpoint, GetAuditCheckpoint, VerifyAudit};
use ttscm_contract::company::{
    CreateCompany, DeleteCompany, GetCompany, GetCompanyConfigurations, GetCompanySyncStatus, RunCompanySync,
    UpdateCompany,
};
use ttscm_contract::credential::{
    CreateCredential, CreateCredentialType, DeleteCredential, DeleteCredentialType, GetCredentialFields,
    GetCredentialType, GetTotpCode, ListCredentialTypes, RevealPastSecureValues, RevealSecureValues,
    UpdateCredentialType, VerifyCredentialVersions,
};
use ttscm_contract::identity::{
    CreateRole, DeleteRole, GetMe, ListRoles, RefreshSession, SetUserRoles, UpdateMe, UpdateRole,
};
use ttscm_contract::permission::names;
use warp::http::StatusCode;

use crate::routes::Access::{Permissions, Public, RefreshToken, Scopes, SignedIn};
use crate::routes::Method::{Delete, Get, Patch, Post, Put};
use crate::routes::{Custom, Forward, Handler, Reads, RouteSpec, route};
use crate::{auth_routes, company_routes, credential_routes, misc_routes, readiness, user_routes};

/// Every route, in the order tried.
pub fn route_table() -> &'static [RouteSpec] {
    ROUTES
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
        .allow(Permissions(&[names::CREDENTIAL_FETCH]))
        .answers(OK, "Credential Fetched Successfully!")
        .by(&Custom(credential_routes::get)),
    route(Get, "/v1/credential/credentials/:id/secure-values", "credential.reveal")
        .allow(Permissions(&[names::CREDENTIAL_FETCH, names::CREDENTIAL_SECURE_VALUES_READ]))
        .reads(Reads::Query)
        .answers(OK, "Secure Values Fetched Successfully!").no_store()
        .by(&Forward(|r| Ok(RevealSecureValues { justification: credential_routes::justification(r)?, id: r.param() }))),
    route(Get, "/v1/credential/credentials/:id/totp/:fieldId", "credential.totp").beyond_spec()
        .allow(Permissions(&[names::CREDENTIAL_TOTP_READ]))
        .reads(Reads::Query)
        .answers(OK, "TOTP Code Generated Successfully!").no_store()
        .by(&Forward(|r| Ok(GetTotpCode { justification: credential_routes::justification(r)?, id: r.param(), field_id: r.param() }))),
    route(Get, "/v1/credential/credentials/:id/fields", "credential.fields_get")
        .allow(Permissions(&[names::CREDENTIAL_FETCH, names::CREDENTIAL_FIELDS_FETCH]))
        .answers(OK, "Credential Fields Fetched Successfully!")
        .by(&Forward(|r| Ok(GetCredentialFields { id: r.param() }))),
    route(Get, "/v1/credential/credentials/company/:companyId", "credential.by_company")
        .allow(Permissions(&[names::CREDENTIAL_FETCH_MANY])).reads(Reads::Query)
        .answers(OK, "Company Credentials Fetched Successfully!")
        .by(&Custom(credential_routes::by_company)),
    route(Get, "/v1/credential/credentials", "credential.list").beyond_spec()
        .allow(Permissions(&[names::CREDENTIAL_FETCH_MANY])).reads(Reads::Query)
        .answers(OK, "Credentials Fetched Successfully!")
        .by(&Custom(credential_routes::across_companies)),
    route(Get, "/v1/credential/credentials/:id/history", "credential.history").beyond_spec()
        .allow(Permissions(&[names::CREDENTIAL_FETCH])).reads(Reads::Query)
        .answers(OK, "Credential History Fetched Successfully!")
        .by(&Custom(credential_routes::history)),
    route(Get, "/v1/credential/credentials/:id/history/:version/secure-values", "credential.history_reveal").beyond_spec()
        .allow(Permissions(&[names::CREDENTIAL_FETCH, names::CREDENTIAL_SECURE_VALUES_READ]))
        .reads(Reads::Query)
        .answers(OK, "Secure Values Fetched Successfully!").no_store()
        .by(&Forward(|r| Ok(RevealPastSecureValues { justification: credential_routes::justification(r)?, id: r.param(), version: credential_routes::version(r)? }))),
    route(Post, "/v1/credential/credentials/:id/history/:version/restore", "credential.restore").beyond_spec()
        .allow(Permissions(&[names::CREDENTIAL_UPDATE, names::CREDENTIAL_FIELDS_UPDATE]))
        .reads(Reads::Header("if-match"))
        .answers(OK, "Credential Version Restored Successfully!")
        .by(&Custom(credential_routes::restore)),
    route(Post, "/v1/credential/credentials", "credential.create")
        .allow(Permissions(&[names::CREDENTIAL_CREATE])).reads(Reads::Body)
        .answers(CREATED, "Credential Created Successfully!")
        .by(&Forward(|r| Ok(CreateCredential { input: r.body()? }))),
    route(Put, "/v1/credential/credentials/:id/fields", "credential.fields_update")
        .allow(Permissions(&[names::CREDENTIAL_UPDATE, names::CREDENTIAL_FIELDS_UPDATE])).reads(Reads::Body)
        .answers(OK, "Credential Fields Updated Successfully!")
        .by(&Custom(credential_routes::put_fields)),
    route(Patch, "/v1/credential/credentials/:id", "credential.update")
        .allow(Permissions(&[names::CREDENTIAL_UPDATE])).reads(Reads::Body)
        .answers(OK, "Credential Updated Successfully!")
        .by(&Custom(credential_routes::rename)),
    route(Delete, "/v1/credential/credentials/:id", "credential.delete")
        .allow(Permissions(&[names::CREDENTIAL_DELETE]))
        .answers(OK, "Credential Deleted Successfully!")
        .by(&Forward(|r| Ok(DeleteCredential { id: r.param() }))),

    // ---- credential types ----
    route(Get, "/v1/credential-type/credential-types", "credential_type.list")
        .allow(Permissions(&[names::CREDENTIAL_TYPE_FETCH_MANY]))
        .answers(OK, "Credential Types Fetched Successfully!")
        .by(&Forward(|_| Ok(ListCredentialTypes {}))),
    route(Get, "/v1/credential-type/credential-types/:identifier", "credential_type.get")
        .allow(Permissions(&[names::CREDENTIAL_TYPE_FETCH]))
        .answers(OK, "Credential Type Fetched Successfully!")
        .by(&Forward(|r| Ok(GetCredentialType { identifier: r.param() }))),
    route(Get, "/v1/credential-type/credential-types/:id/credentials", "credential_type.credentials")
        .allow(Permissions(&[names::CREDENTIAL_TYPE_FETCH, names::CREDENTIAL_FETCH_MANY])).reads(Reads::Query)
        .answers(OK, "Credentials Fetched Successfully!")
        .by(&Custom(credential_routes::by_type)),
    route(Post, "/v1/credential-type/credential-types", "credential_type.create")
        .allow(Permissions(&[names::CREDENTIAL_TYPE_CREATE])).reads(Reads::Body)
        .answers(CREATED, "Credential Type Created Successfully!")
        .by(&Forward(|r| Ok(CreateCredentialType { input: r.body()? }))),
    route(Patch, "/v1/credential-type/credential-types/:id", "credential_type.update")
        .allow(Permissions(&[names::CREDENTIAL_TYPE_UPDATE])).reads(Reads::Body)
        .answers(OK, "Credential Type Updated Successfully!")
        .by(&Forward(|r| Ok(UpdateCredentialType { patch: r.body()?, id: r.param() }))),
    route(Delete, "/v1/credential-type/credential-types/:id", "credential_type.delete")
        .allow(Permissions(&[names::CREDENTIAL_TYPE_DELETE]))
        .answers(OK, "Credential Type Deleted Successfully!")
        .by(&Forward(|r| Ok(DeleteCredentialType { id: r.param() }))),

    // ---- the signed-in user: every app start and page load asks ----
    route(Get, "/v1/user/@me", "user.me")
        .allow(Scopes(&[names::USER_READ]))
        .answers(OK, "Fetched user.")
        .by(&Forward(|_| Ok(GetMe {}))),

    // ---- companies (list and get per the spec; manual companies and sync beyond it) ----
    route(Get, "/v1/company/companies", "company.list")
        .allow(Permissions(&[names::COMPANY_FETCH_MANY])).reads(Reads::Query)
        .answers(OK, "Companies Fetched Successfully!")
        .by(&Custom(company_routes::list)),
    route(Get, "/v1/company/companies/:identifier/configurations", "company.configurations")
        .allow(Permissions(&[names::COMPANY_FETCH, names::COMPANY_FETCH_CONFIGURATIONS]))
        .answers(OK, "Company Configurations Fetched Successfully!").deadline(CONFIGURATIONS_DEADLINE)
        .by(&Forward(|r| Ok(GetCompanyConfigurations { id: r.param() }))),
    route(Get, "/v1/company/sync", "company.sync_status").beyond_spec()
        .allow(Permissions(&[names::COMPANY_SYNC]))
        .answers(OK, "Company Sync Status Fetched Successfully!")
        .by(&Forward(|_| Ok(GetCompanySyncStatus {}))),
    route(Post, "/v1/company/sync", "company.sync_run").beyond_spec()
        .allow(Permissions(&[names::COMPANY_SYNC])).reads(Reads::Query)
        .answers(OK, "Company Sync Finished!").deadline(SYNC_DEADLINE)
        .by(&Forward(|r| Ok(RunCompanySync { full: company_routes::full_sync(&r.query)? }))),
    route(Post, "/v1/company/companies", "company.create").beyond_spec()
        .allow(Permissions(&[names::COMPANY_CREATE])).reads(Reads::Body)
        .answers(CREATED, "Company Created Successfully!")
        .by(&Forward(|r| Ok(CreateCompany { input: r.body()? }))),
    route(Get, "/v1/company/companies/:identifier", "company.get")
        .allow(Permissions(&[names::COMPANY_FETCH]))
        .answers(OK, "Company Fetched Successfully!")
        .by(&Forward(|r| Ok(GetCompany { id: r.param() }))),
    route(Patch, "/v1/company/companies/:id", "company.update").beyond_spec()
        .allow(Permissions(&[names::COMPANY_UPDATE])).reads(Reads::Body)
        .answers(OK, "Company Updated Successfully!")
        .by(&Forward(|r| Ok(UpdateCompany { patch: r.body()?, id: r.param() }))),
    route(Delete, "/v1/company/companies/:id", "company.delete").beyond_spec()
        .allow(Permissions(&[names::COMPANY_DELETE]))
        .answers(OK, "Company Deleted Successfully!")
        .by(&Forward(|r| Ok(DeleteCompany { id: r.param() }))),

    // ---- users and roles (beyond `@me`, the administration sign-in needs) ----
    route(Patch, "/v1/user/@me", "user.me_update")
        .allow(Scopes(&[names::USER_WRITE])).reads(Reads::Body)
        .answers(OK, "Successfully updated user.")
        .by(&Forward(|r| r.body::<UpdateMe>())),
    route(Get, "/v1/user/users", "user.list").beyond_spec()
        .allow(Permissions(&[names::USER_FETCH_MANY])).reads(Reads::Query)
        .answers(OK, "Users Fetched Successfully!")
        .by(&Custom(user_routes::list)),
    route(Put, "/v1/user/users/:id/roles", "user.roles_update").beyond_spec()
        .allow(Permissions(&[names::USER_ROLES_UPDATE])).reads(Reads::Body)
        .answers(OK, "User Roles Updated Successfully!")
        .by(&Forward(|r| Ok(SetUserRoles { roles: r.body::<user_routes::RolesBody>()?.roles, id: r.param() }))),
    route(Get, "/v1/role/roles", "role.list").beyond_spec()
        .allow(Permissions(&[names::ROLE_FETCH_MANY]))
        .answers(OK, "Roles Fetched Successfully!")
        .by(&Forward(|_| Ok(ListRoles {}))),
    route(Post, "/v1/role/roles", "role.create").beyond_spec()
        .allow(Permissions(&[names::ROLE_CREATE])).reads(Reads::Body)
        .answers(CREATED, "Role Created Successfully!")
        .by(&Forward(|r| Ok(CreateRole { input: r.body()? }))),
    route(Patch, "/v1/role/roles/:id", "role.update").beyond_spec()
        .allow(Permissions(&[names::ROLE_UPDATE])).reads(Reads::Body)
        .answers(OK, "Role Updated Successfully!")
        .by(&Forward(|r| Ok(UpdateRole { input: r.body()?, id: r.param() }))),
    route(Delete, "/v1/role/roles/:id", "role.delete").beyond_spec()
        .allow(Permissions(&[names::ROLE_DELETE]))
        .answers(OK, "Role Deleted Successfully!")
        .by(&Forward(|r| Ok(DeleteRole { id: r.param() }))),

    // ---- audit (beyond the spec) ----
    route(Get, "/v1/audit/events", "audit.events").beyond_spec()
        .allow(Permissions(&[names::AUDIT_FETCH_MANY])).reads(Reads::Query)
        .answers(OK, "Audit Events Fetched Successfully!")
        .by(&Custom(misc_routes::audit_events)),
    route(Get, "/v1/audit/exposure", "audit.exposure").beyond_spec()
        .allow(Permissions(&[names::AUDIT_FETCH_MANY, names::CREDENTIAL_FETCH_MANY])).reads(Reads::Query)
        .answers(OK, "Exposure Fetched Successfully!")
        .by(&Custom(misc_routes::exposure)),
    route(Post, "/v1/audit/exposure", "audit.exposure_mark").beyond_spec()
        .allow(Permissions(&[names::AUDIT_FETCH_MANY, names::CREDENTIAL_FETCH_MANY, names::CREDENTIAL_UPDATE]))
        .reads(Reads::Query)
        .answers(OK, "Exposed Credentials Marked Due For Rotation!")
        .by(&Custom(misc_routes::mark_exposure)),
    route(Get, "/v1/audit/verify", "audit.verify").beyond_spec()
        .allow(Permissions(&[names::AUDIT_VERIFY])).reads(Reads::Query)
        .answers(OK, "Audit Chain Verified!")
        .by(&Forward(|r| Ok(VerifyAudit {
            checkpoint: r.query.get("checkpoint").cloned(),
            full: r.query.get("full").is_some_and(|v| v == "true"),
        }))),
    route(Get, "/v1/audit/verify/credentials", "audit.verify_credentials").beyond_spec()
        .allow(Permissions(&[names::AUDIT_VERIFY]))
        .answers(OK, "Credentials Verified Against The Audit Log!").deadline(VERIFY_CREDENTIALS_DEADLINE)
        .by(&Forward(|_| Ok(VerifyCredentialVersions {}))),
    route(Get, "/v1/audit/checkpoint", "audit.checkpoint").beyond_spec()
        .allow(Permissions(&[names::AUDIT_VERIFY]))
        .answers(OK, "Audit Checkpoint Fetched Successfully!")
        .by(&Forward(|_| Ok(GetAuditCheckpoint {}))),
    route(Post, "/v1/audit/checkpoint", "audit.checkpoint_create").beyond_spec()
        .allow(Permissions(&[names::AUDIT_VERIFY]))
        .answers(CREATED, "Audit Checkpoint Signed Successfully!")
        .by(&Forward(|_| Ok(CreateAuditCheckpoint {}))),

    // ---- sign-in (see auth_routes for the flow) ----
    route(Get, "/v1/auth/uri", "auth.uri")
        .allow(Public).reads(Reads::QueryAndHeaders(&["cookie", "origin"]))
        .answers(OK, "Successfully fetch Auth URI").no_store()
        .by(&Custom(auth_routes::begin)),
    route(Get, "/v1/auth/ws", "auth.ws").beyond_spec()
        .allow(Public).reads(Reads::Query)
        .answers(StatusCode::SWITCHING_PROTOCOLS, "")
        .with(Handler::WebSocket(auth_routes::upgrade)),
    route(Get, "/v1/auth/redirect", "auth.redirect")
        .allow(Public).reads(Reads::QueryAndHeaders(&["accept", "cookie"]))
        .answers(OK, "Successfully authenticated").no_store()
        .by(&Custom(auth_routes::redirect)),
    route(Post, "/v1/auth/refresh", "auth.refresh")
        .allow(RefreshToken).reads(Reads::Header("x-refresh-token"))
        .answers(CREATED, "Token refreshed successfully!").no_store()
        .by(&Forward(|r| Ok(RefreshSession { token_hash: auth_routes::refresh_token_hash(r.header.take())? }))),
    route(Post, "/v1/auth/logout", "auth.logout").beyond_spec()
        .allow(SignedIn)
        .answers(OK, "Successfully logged out.")
        .by(&Custom(auth_routes::logout)),

    // ---- probes (outside /v1) ----
    route(Get, "/healthz", "healthz").beyond_spec()
        .allow(Public)
        .answers(OK, "Alive")
        .with(Handler::Fixed),
    route(Get, "/readyz", "readyz").beyond_spec()
        .allow(Public)
        .answers(OK, "Ready")
        .by(&Custom(readiness::readiness)),
];
