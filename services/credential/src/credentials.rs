//! The credential operations: list by type or company, count, get, create, rename, update
//! fields, read fields, reveal secure values (audited before they leave), delete.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use ttscm_contract::credential::*;
use ttscm_contract::{FieldError, WireError};
use ttscm_runtime::service::{CallContext, ServiceOp};
use ttscm_runtime::store::{FindOptions, Order};
use ttscm_runtime::{Filter, clock, ids};

use crate::domain;
use crate::service::{Change, Service, check_scope, credential_not_found, store_failed};
use crate::store::{CREDENTIALS, CredentialDoc, TypeDoc, VersionInfo, from_document, to_document};
use crate::types::{changed_concurrently, conforms};

impl Service {
    /// After a write of `credential`'s values checked against `credential_type`: when the type
    /// changed meanwhile (a migration that read the credential before the write), brings the
    /// stored values in line with the type as stored now, so a value of a field that became
    /// secure is never left unsealed. Answers the credential and type as they are now.
    async fn settle(
        &self,
        ctx: &CallContext,
        credential: CredentialDoc,
        credential_type: Arc<TypeDoc>,
    ) -> Result<(CredentialDoc, Arc<TypeDoc>), WireError> {
        let Some(current) = self.type_fresh(&credential.type_id).await? else {
            return Ok((credential, credential_type));
        };
        if conforms(&credential, &current) {
            return Ok((credential, credential_type));
        }
        let settled = self.conform(ctx, &credential.id, &current).await?;
        Ok((settled.unwrap_or(credential), Arc::new(current)))
    }

    /// The credentials `filter` matches, ordered by name, then id — the page `window` asks for,
    /// or all of them (refused beyond [`Service::list_max_unpaged`]) — and how many match.
    ///
    /// The total is counted only when the page does not tell it: a whole list, or a page that
    /// is not full and not past the end, holds every match from its offset on. (On FerretDB a
    /// count decodes every matching document, as the page's read does.)
    async fn credentials_in(
        &self,
        filter: Filter,
        window: ListWindow,
    ) -> Result<(Vec<CredentialDoc>, u64), WireError> {
        let (skip, limit) = match window.page {
            Some((page, rpp)) => (page.saturating_sub(1).saturating_mul(rpp), rpp),
            // One more than answered at once: its presence says the list is too long.
            None => (0, self.list_max_unpaged.saturating_add(1)),
        };
        let options = FindOptions::new(filter.clone())
            .sort("name", Order::Asc)
            .sort("id", Order::Asc)
            .page(skip, limit);
        let documents = self
            .store
            .find(CREDENTIALS, &options)
            .await
            .map_err(store_failed)?;
        let total = match ttscm_runtime::store::total_from_page(skip, limit, documents.len() as u64) {
            Some(total) => total,
            None => self
                .store
                .count(CREDENTIALS, &filter)
                .await
                .map_err(store_failed)?,
        };
        if window.page.is_none() && total > self.list_max_unpaged {
            return Err(WireError::validation(vec![FieldError::new(
                vec![json!("page")],
                format!(
                    "This list has {total} credentials, more than the {} answered at once: ask for it in pages with page and rpp",
                    self.list_max_unpaged
                ),
            )]));
        }
        let credentials = documents
            .into_iter()
            .map(from_document)
            .collect::<Result<_, _>>()
            .map_err(store_failed)?;
        Ok((credentials, total))
    }

    /// Announces `action` on `credential` with its plain event data (ids and name, no values).
    pub(crate) async fn credential_event(&self, ctx: &CallContext, action: &str, credential: &CredentialDoc) {
        self.events
            .publish(ctx, "credential", action, &credential.id, || {
                Self::event_data(credential)
            })
            .await;
    }

    pub(crate) fn event_data(credential: &CredentialDoc) -> Value {
        json!({"id": credential.id, "name": credential.name, "typeId": credential.type_id, "companyId": credential.company_id})
    }

    pub(crate) async fn with_companies(
        &self,
        ctx: &CallContext,
        credentials: Vec<(CredentialDoc, Arc<TypeDoc>)>,
    ) -> Result<Vec<Credential>, WireError> {
        let mut company_ids: Vec<String> = credentials.iter().map(|(c, _)| c.company_id.clone()).collect();
        company_ids.sort();
        company_ids.dedup();
        let companies = if company_ids.is_empty() {
            HashMap::new()
        } else {
            self.companies(ctx, company_ids).await?
        };
        Ok(credentials
            .iter()
            .map(|(c, t)| Self::to_wire(c, t, companies.get(&c.company_id).cloned()))
            .collect())
    }
}

/// 412 unless the caller's `If-Match` (when given) is `read`'s version.
pub(crate) fn if_match_holds(if_match: Option<u64>, read: &CredentialDoc) -> Result<(), WireError> {
    match if_match {
        Some(version) if i64::try_from(version).ok() != Some(read.revision) => {
            Err(crate::service::precondition_failed(read.revision))
        }
        _ => Ok(()),
    }
}

/// The version a write of `read` makes.
pub(crate) fn next_version(read: &CredentialDoc) -> u64 {
    u64::try_from(read.revision).unwrap_or_default() + 1
}

/// Every credential of a type (or a page of them).
impl ServiceOp<Service> for ListCredentialsByType {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<CredentialList, WireError> {
        let id = self.id.as_str();
        let credential_type = service.live_type(id).await?;
        check_scope(&ctx, &credential_type)?;
        let mut filter = vec![Filter::eq("typeId", id)];
        if self.rotation_due {
            filter.push(service.due_filter(&clock::now_iso()).await?);
        }
        let (credentials, total) = service.credentials_in(Filter::And(filter), self.window).await?;
        let credentials = credentials
            .into_iter()
            .map(|credential| (credential, credential_type.clone()))
            .collect();
        let items = service.with_companies(&ctx, credentials).await?;
        Ok(CredentialList { items, total })
    }
}

/// Every credential of a company the caller may see (or a page of them): credentials of types
/// whose scope it lacks are left out before paging, so pages and totals count what it sees.
impl ServiceOp<Service> for ListCredentialsByCompany {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<CredentialList, WireError> {
        let company_id = self.company_id.as_str();
        let company = service
            .company(&ctx, company_id)
            .await?
            .ok_or_else(|| WireError::not_found("Company"))?;
        let mut filter = vec![Filter::eq("companyId", company_id)];
        for hidden in service.hidden_types(&ctx).await? {
            filter.push(Filter::Ne("typeId".into(), hidden.into()));
        }
        if self.rotation_due {
            filter.push(service.due_filter(&clock::now_iso()).await?);
        }
        let (credentials, total) = service.credentials_in(Filter::And(filter), self.window).await?;
        let mut types: HashMap<String, Option<Arc<TypeDoc>>> = HashMap::new();
        let mut items = Vec::with_capacity(credentials.len());
        for credential in credentials {
            if !types.contains_key(&credential.type_id) {
                let found = service.type_by_id(&credential.type_id).await?;
                types.insert(credential.type_id.clone(), found);
            }
            if let Some(Some(credential_type)) = types.get(&credential.type_id) {
                items.push(Service::to_wire(
                    &credential,
                    credential_type,
                    Some(company.clone()),
                ));
            }
        }
        Ok(CredentialList { items, total })
    }
}

/// Credentials of every company the caller may see (or a page of them) — with `rotation_due`,
/// those due for rotation (marked, or their type's `rotationDays` passed; see `rotation.rs`).
/// Like a company's list, types whose scope the caller lacks are left out before paging.
impl ServiceOp<Service> for ListCredentials {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<CredentialList, WireError> {
        let mut filter: Vec<Filter> = service
            .hidden_types(&ctx)
            .await?
            .into_iter()
            .map(|hidden| Filter::Ne("typeId".into(), hidden.into()))
            .collect();
        if self.rotation_due {
            filter.push(service.due_filter(&clock::now_iso()).await?);
        }
        let filter = if filter.is_empty() {
            Filter::All
        } else {
            Filter::And(filter)
        };
        let (credentials, total) = service.credentials_in(filter, self.window).await?;
        let mut typed = Vec::with_capacity(credentials.len());
        for credential in credentials {
            if let Some(credential_type) = service.type_by_id(&credential.type_id).await? {
                typed.push((credential, credential_type));
            }
        }
        let items = service.with_companies(&ctx, typed).await?;
        Ok(CredentialList { items, total })
    }
}

impl Service {
    /// The ids of the types whose scope the caller of `ctx` lacks.
    async fn hidden_types(&self, ctx: &CallContext) -> Result<Vec<String>, WireError> {
        let documents = self
            .store
            .find(crate::store::CREDENTIAL_TYPES, &FindOptions::new(Filter::All))
            .await
            .map_err(store_failed)?;
        let mut hidden = Vec::new();
        for document in documents {
            let credential_type: TypeDoc = from_document(document).map_err(store_failed)?;
            if check_scope(ctx, &credential_type).is_err() {
                hidden.push(credential_type.id);
            }
        }
        Ok(hidden)
    }
}

/// How many credentials a company has.
impl ServiceOp<Service> for CountCompanyCredentials {
    async fn run(self, service: Arc<Service>, _: CallContext) -> Result<u64, WireError> {
        let company_id = self.company_id.as_str();
        service
            .store
            .count(CREDENTIALS, &Filter::eq("companyId", company_id))
            .await
            .map_err(store_failed)
    }
}

/// One credential.
impl ServiceOp<Service> for GetCredential {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Credential, WireError> {
        let id = self.id.as_str();
        let (credential, credential_type) = service.accessible(&ctx, id).await?;
        let company = service.company(&ctx, &credential.company_id).await?;
        Ok(Service::to_wire(&credential, &credential_type, company))
    }
}

/// Creates a credential.
impl ServiceOp<Service> for CreateCredential {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Credential, WireError> {
        let store = service.store.clone();
        ttscm_runtime::idempotency::once_op(&store, ctx, "credential.create", self, |op, ctx| {
            create_credential(op, service, ctx)
        })
        .await
    }
}

/// The create itself (run once per `Idempotency-Key`).
async fn create_credential(
    op: CreateCredential,
    service: Arc<Service>,
    ctx: CallContext,
) -> Result<Credential, WireError> {
    let input = op.input;
    let mut errors = Vec::new();
    domain::check_name(&input.name, vec![json!("name")], &mut errors);
    // Fresh, not cached: the values are sealed by what the type says now.
    let credential_type = match service.type_fresh(&input.type_id).await? {
        Some(t) if !t.deleting => Some(Arc::new(t)),
        _ => {
            errors.push(FieldError::new(
                vec![json!("typeId")],
                "Credential type not found",
            ));
            None
        }
    };
    let company = service.company(&ctx, &input.company_id).await?;
    if company.is_none() {
        errors.push(FieldError::new(vec![json!("companyId")], "Company not found"));
    }
    let checked = match &credential_type {
        Some(t) => match domain::check_values(&t.fields, &input.fields) {
            Ok(checked) => checked,
            Err(problems) => {
                errors.extend(problems);
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    if !errors.is_empty() {
        return Err(WireError::validation(errors));
    }
    let credential_type = credential_type.ok_or_else(WireError::internal)?;
    check_scope(&ctx, &credential_type)?;
    let id = ids::new_id();
    let values = service.seal(&ctx, &id, checked, &[], 1).await?;
    let now = clock::now_iso();
    let credential = CredentialDoc {
        id,
        name: input.name.trim().to_owned(),
        type_id: credential_type.id.clone(),
        company_id: input.company_id,
        version_info: Some(VersionInfo {
            at: now.clone(),
            actor: ttscm_runtime::audit::actor_of(&ctx),
            change: "created".into(),
            field_ids: crate::service::written_fields(&[], &values),
            restored_from: None,
        }),
        values,
        revision: 1,
        secrets_changed_at: Some(now.clone()),
        rotation_due: false,
        created_at: now.clone(),
        updated_at: now,
    };
    service
        .store
        .insert(CREDENTIALS, to_document(&credential))
        .await
        .map_err(store_failed)?;
    service.caches.clear_type_list();
    if let Err(error) = service
        .record(&ctx, Service::version_record("credential.created", &credential))
        .await
    {
        let _ = service.store.delete(CREDENTIALS, &credential.id).await;
        service.credentials_changed(Some(&credential.id)).await;
        return Err(error);
    }
    service.credential_event(&ctx, "created", &credential).await;
    let (credential, credential_type) = service.settle(&ctx, credential, credential_type).await?;
    Ok(Service::to_wire(&credential, &credential_type, company))
}

/// Renames a credential.
impl ServiceOp<Service> for UpdateCredential {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Credential, WireError> {
        let id = self.id.as_str();
        let patch = self.patch;
        let mut errors = Vec::new();
        domain::check_name(&patch.name, vec![json!("name")], &mut errors);
        if !errors.is_empty() {
            return Err(WireError::validation(errors));
        }
        let name = patch.name.trim().to_owned();
        let (turn, mut retries) = service.turn_to_write(id).await?;
        let (credential, credential_type) = loop {
            let (read, credential_type) = service.accessible_fresh(&ctx, id).await?;
            if_match_holds(self.if_match, &read)?;
            let values = read.values.clone();
            if let Some(credential) = service
                .write_version(&ctx, &read, Change::Renamed, values, name.clone())
                .await?
            {
                break (credential, credential_type);
            }
            if !retries.wait().await {
                return Err(changed_concurrently());
            }
        };
        drop(turn);
        service
            .record(&ctx, Service::version_record("credential.updated", &credential))
            .await?;
        service.credential_event(&ctx, "updated", &credential).await;
        let company = service.company(&ctx, &credential.company_id).await?;
        Ok(Service::to_wire(&credential, &credential_type, company))
    }
}

/// Replaces a credential's values.
impl ServiceOp<Service> for UpdateCredentialFields {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Credential, WireError> {
        let id = self.id.as_str();
        let input = self.input;
        // Validated and sealed by the type as stored now (not the cached one), written only if
        // the credential is still as read (a type migration may be rewriting it): else again.
        let (turn, mut retries) = service.turn_to_write(id).await?;
        let (credential, credential_type) = loop {
            let read = service.credential_fresh(id).await?;
            let credential_type = Arc::new(
                service
                    .type_fresh(&read.type_id)
                    .await?
                    .ok_or_else(credential_not_found)?,
            );
            check_scope(&ctx, &credential_type)?;
            if_match_holds(self.if_match, &read)?;
            let checked = domain::check_values(&credential_type.fields, &input.fields)
                .map_err(WireError::validation)?;
            let next = next_version(&read);
            let values = service.seal(&ctx, id, checked, &read.values, next).await?;
            if let Some(credential) = service
                .write_version(&ctx, &read, Change::FieldsUpdated, values, read.name.clone())
                .await?
            {
                break (credential, credential_type);
            }
            if !retries.wait().await {
                return Err(changed_concurrently());
            }
        };
        drop(turn);
        let (credential, credential_type) = service.settle(&ctx, credential, credential_type).await?;
        service
            .record(
                &ctx,
                Service::version_record("credential.fields_updated", &credential),
            )
            .await?;
        service
            .events
            .publish(&ctx, "credential", "fields_updated", id, || {
                let mut data = Service::event_data(&credential);
                data["fieldIds"] = json!(
                    credential
                        .values
                        .iter()
                        .map(|v| v.field_id.clone())
                        .collect::<Vec<_>>()
                );
                data
            })
            .await;
        let company = service.company(&ctx, &credential.company_id).await?;
        Ok(Service::to_wire(&credential, &credential_type, company))
    }
}

/// Values, secure ones sealed.
impl ServiceOp<Service> for GetCredentialFields {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<Vec<FieldValue>, WireError> {
        let id = self.id.as_str();
        let (credential, _) = service.accessible(&ctx, id).await?;
        Ok(credential
            .values
            .iter()
            .map(|v| FieldValue {
                id: v.id.clone(),
                field_id: v.field_id.clone(),
                value: Value::String(v.value.clone()),
            })
            .collect())
    }
}

/// Secure values in the clear, once the audit entry is stored (`Service::reveal`).
///
/// The entry is written while vault opens the values (the two round trips overlap), so
/// nothing leaves before it is stored, and an attempt that then fails in vault (503, or a
/// value that does not open) is still on record: the log errs on the side of recording.
///
/// `totp` fields' seeds are left out unless the caller holds
/// [`ttscm_contract::permission::names::CREDENTIAL_TOTP_SEED_READ`] (their codes come from [`GetTotpCode`]).
impl ServiceOp<Service> for RevealSecureValues {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<SecureValues, WireError> {
        let (credential, credential_type) = service.accessible(&ctx, &self.id).await?;
        let version = next_version(&credential) - 1;
        service
            .reveal(
                &ctx,
                &credential,
                &credential_type,
                self.justification,
                &credential.values,
                version,
            )
            .await
    }
}

/// A `totp` field's current code, computed by vault from the sealed seed (which is not opened
/// here), once the audit entry (`credential.totp_generated`, with the field) is stored — written
/// while vault computes, as a reveal's.
impl ServiceOp<Service> for GetTotpCode {
    async fn run(
        self,
        service: Arc<Service>,
        ctx: CallContext,
    ) -> Result<ttscm_contract::vault::TotpCode, WireError> {
        let id = self.id.as_str();
        let (credential, credential_type) = service.accessible(&ctx, id).await?;
        let not_found = || WireError::not_found("TOTP field");
        if !credential_type
            .fields
            .iter()
            .any(|f| f.id == self.field_id && f.value_type == "totp")
        {
            return Err(not_found());
        }
        let seed = credential
            .values
            .iter()
            .find(|v| v.field_id == self.field_id && v.sealed)
            .ok_or_else(not_found)?;
        let justified = service
            .justify(&ctx, &credential, &credential_type, self.justification)
            .await?;
        let mut record = justified.record("credential.totp_generated", &credential);
        record.details.insert("fieldId".into(), self.field_id.clone());
        let (code, recorded) = tokio::join!(
            service.totp_code(&ctx, id, seed),
            service.record_numbered(&ctx, record),
        );
        let seq = recorded?;
        let code = code?;
        service
            .after_reveal(
                &ctx,
                &credential,
                &credential_type,
                &justified,
                seq,
                "TOTP code generated",
            )
            .await?;
        Ok(code)
    }
}

/// Deletes a credential and its sealed values.
impl ServiceOp<Service> for DeleteCredential {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<(), WireError> {
        let id = self.id.as_str();
        let (credential, _) = service.accessible_fresh(&ctx, id).await?;
        service
            .record(
                &ctx,
                Service::credential_record("credential.deleted", &credential),
            )
            .await?;
        let deleted = service.store.delete(CREDENTIALS, id).await;
        service.credentials_changed(Some(id)).await;
        if !deleted.map_err(store_failed)? {
            return Err(credential_not_found());
        }
        service.forget_history(id).await?;
        service.caches.clear_type_list();
        service.credential_event(&ctx, "deleted", &credential).await;
        Ok(())
    }
}
