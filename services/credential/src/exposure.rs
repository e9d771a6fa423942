//! Exposure after a leaver: which credentials an actor (a user or an API token) revealed whose
//! revealed secure values are still the credential's values — what that actor could still use —
//! and marking them all due for rotation in one call.
//!
//! The audit log is the record: every reveal's entry (`credential.revealed`, or
//! `credential.break_glass` for a break-glass reveal; the current or a past version) names the
//! credential version and, in `fieldVersions`, each revealed value's version. A value keeps its
//! version while it is unchanged, so a revealed value is still in use exactly when the
//! credential's current value of that field has the version revealed. Entries from before
//! `fieldVersions` was recorded fall back to time: the reveal is still exposing when it happened
//! at or after the credential's `secretsChangedAt` (`createdAt` when missing), and then every
//! current secure value counts. `credential.totp_generated` entries are codes only (the seed
//! never left vault) and never count; a `totp` seed counts only when a reveal showed it (the
//! caller held `credential.totp.seed.read`, so the entry lists it).
//!
//! Decisions:
//! - credentials since deleted (or whose type went) are left out: their values are gone; the
//!   report counts them in `deleted`;
//! - credentials of a type whose `permissionScope` the caller lacks are left out of the report
//!   and of the mark, and counted in `hidden` (the caller learns that there are some, not which
//!   ones; someone holding the scope sees them). A `ttscm user offboard` sees every type;
//! - the cost: the actor's reveals are read page by page through the audit log's actor and
//!   action filters (on the embedded journal each page is one pass over the file, so pages are
//!   large), then each revealed credential once from the store. Fine for a report asked for
//!   when someone leaves; not a hot path.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde_json::json;
use ttscm_contract::audit::{
    AuditEntry, ExposedCredential, ExposedCredentialRef, ExposureMarked, ExposureReport, GetExposure,
    ListAuditEvents, MarkExposureDue,
};
use ttscm_contract::credential::ListWindow;
use ttscm_contract::{FieldError, PrincipalKind, WireError};
use ttscm_runtime::audit::AuditRecord;
use ttscm_runtime::service::{BusClient, CallContext, ServiceOp};
use ttscm_runtime::{Bus, Settings, Store, clock};

use crate::service::{Service, check_scope, store_failed};
use crate::store::{CREDENTIALS, CredentialDoc, from_document};

/// The audit actions that are reveals (a TOTP code is not one).
const REVEAL_ACTIONS: [&str; 2] = ["credential.revealed", "credential.break_glass"];

/// Audit entries read per page: each filtered page of the embedded journal is one pass over the
/// file, so few large pages cost less than many small ones.
const READ_PAGE: u64 = 1000;

/// Most credentials named in the mark's audit entry (beyond, the entry gives the count only).
const IDS_IN_ENTRY: usize = 100;

/// Whose sight the report is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sight {
    /// The caller's: credentials of types whose scope it lacks are hidden.
    Caller,
    /// Everything (a `ttscm` command run with the store's own access).
    Everything,
}

/// One reveal as the audit entry records it.
struct Reveal {
    at: String,
    version: Option<u64>,
    /// `fieldId` and value version of each value shown (`None`: an entry from before they were
    /// recorded).
    field_versions: Option<Vec<(String, u64)>>,
}

impl Reveal {
    fn of(entry: &AuditEntry) -> Self {
        let detail = |key: &str| entry.details.as_ref().and_then(|d| d.get(key));
        Self {
            at: entry.at.clone(),
            version: detail("version").and_then(|v| v.parse().ok()),
            field_versions: detail("fieldVersions").map(|list| parse_field_versions(list)),
        }
    }
}

/// `field@version,…` as a reveal's entry writes it (see `history::field_versions`).
fn parse_field_versions(list: &str) -> Vec<(String, u64)> {
    list.split(',')
        .filter_map(|item| {
            let (field, version) = item.rsplit_once('@')?;
            Some((field.to_owned(), version.parse().ok()?))
        })
        .collect()
}

/// Whether `at` is at or after `since` (both RFC 3339; unreadable times count as after, so a
/// reveal is never dropped for its format).
fn at_or_after(at: &str, since: &str) -> bool {
    match (clock::parse_iso(at), clock::parse_iso(since)) {
        (Some(at), Some(since)) => at >= since,
        _ => true,
    }
}

/// The fields of `credential` whose values `reveals` showed and that are still its values.
fn still_exposed(credential: &CredentialDoc, reveals: &[Reveal]) -> BTreeSet<String> {
    let current: HashMap<&str, u64> = credential
        .values
        .iter()
        .map(|v| (v.field_id.as_str(), v.version))
        .collect();
    let secrets_changed_at = credential
        .secrets_changed_at
        .as_deref()
        .unwrap_or(&credential.created_at);
    let mut exposed = BTreeSet::new();
    for reveal in reveals {
        match &reveal.field_versions {
            Some(shown) => exposed.extend(
                shown
                    .iter()
                    .filter(|(field, version)| current.get(field.as_str()) == Some(version))
                    .map(|(field, _)| field.clone()),
            ),
            // Recorded before value versions: by time, and then every secure value now.
            None if at_or_after(&reveal.at, secrets_changed_at) => exposed.extend(
                credential
                    .values
                    .iter()
                    .filter(|v| v.sealed)
                    .map(|v| v.field_id.clone()),
            ),
            None => {}
        }
    }
    exposed
}

/// An actor's exposure: each credential still exposed (as stored now, and as reported).
#[derive(Debug, Clone, Default)]
pub struct Exposure {
    /// The credentials, most recently revealed first.
    pub found: Vec<(CredentialDoc, ExposedCredential)>,
    /// Left out: the caller lacks their type's scope.
    pub hidden: u64,
    /// Left out: deleted since.
    pub deleted: u64,
    /// Reveals read.
    pub reveals: u64,
    /// The actor's kind as its entries name it (`None`: no reveals on record).
    pub actor_kind: Option<PrincipalKind>,
}

impl Exposure {
    /// The report of `window` of it.
    pub fn report(&self, window: ListWindow) -> ExposureReport {
        let all = self.found.iter().map(|(_, exposed)| exposed.clone());
        let items = match window.page {
            Some((page, rpp)) => all
                .skip(usize::try_from(page.saturating_sub(1).saturating_mul(rpp)).unwrap_or(usize::MAX))
                .take(usize::try_from(rpp).unwrap_or(usize::MAX))
                .collect(),
            None => all.collect(),
        };
        ExposureReport {
            items,
            total: self.found.len() as u64,
            hidden: self.hidden,
            deleted: self.deleted,
            reveals: self.reveals,
        }
    }

    /// The audit record of marking it (`marked` the outcome) as asked for `actor` since
    /// `since`: one `credential.exposure_marked` entry about the actor.
    pub fn mark_record(&self, actor: &str, since: Option<&str>, marked: &ExposureMarked) -> AuditRecord {
        let kind = match self.actor_kind {
            Some(PrincipalKind::ApiToken) => "api_token",
            _ => "user",
        };
        let mut record = AuditRecord::new("credential.exposure_marked", kind, actor)
            .detail("actor", actor)
            .detail("since", since.unwrap_or("always"))
            .detail("count", marked.credentials.len().to_string())
            .detail("marked", marked.marked.to_string())
            .detail("alreadyDue", marked.already_due.to_string())
            .detail("hidden", marked.hidden.to_string());
        if marked.credentials.len() <= IDS_IN_ENTRY {
            record = record.detail("credentialIds", marked.credentials.join(","));
        }
        record
    }
}

fn invalid(path: &str, message: &str) -> WireError {
    WireError::validation(vec![FieldError::new(vec![json!(path)], message)])
}

/// `actor` and `since` checked (400 naming the one that is wrong); `since` normalized.
fn checked(actor: &str, since: Option<&str>) -> Result<Option<String>, WireError> {
    if actor.trim().is_empty() {
        return Err(invalid(
            "actor",
            "actor is required: the id of a user or an API token",
        ));
    }
    since
        .map(|s| {
            clock::parse_iso(s)
                .map(clock::format_iso)
                .ok_or_else(|| invalid("since", "since must be an RFC 3339 time"))
        })
        .transpose()
}

impl Service {
    /// The credential service as a `ttscm` command runs it beside the store (no serving): its
    /// bus (for events, change announcements and company names), `store` and the audit log
    /// the command opened.
    pub fn for_command(
        bus: &Bus,
        store: &Store,
        audit: ttscm_runtime::audit::AuditLog,
        settings: &Settings,
    ) -> Self {
        Service {
            store: store.clone(),
            client: BusClient::new(bus.clone(), settings.request_timeout()),
            events: crate::events::Events::new(bus.clone(), store.clone()),
            audit: crate::audit::AuditLog::new(audit),
            caches: Arc::new(crate::caches::Caches::default()),
            checkpoint_every: None,
            verify_max_entries: settings.audit.verify_max_entries.max(1),
            list_max_unpaged: settings.credential.list_max_unpaged,
            credential_settings: settings.credential.clone(),
            audit_settings: settings.audit.clone(),
            turns: crate::turns::WriteTurns::default(),
            turn_wait: settings.request_timeout(),
        }
    }

    /// Every reveal by `actor` at or after `since`, by credential, oldest first; and the
    /// actor's kind.
    async fn reveals_by(
        &self,
        actor: &str,
        since: Option<&str>,
    ) -> Result<(BTreeMap<String, Vec<Reveal>>, u64, Option<PrincipalKind>), WireError> {
        // In the mesh, entries still on their way through the stream are copied first.
        self.audit.settled().await.map_err(store_failed)?;
        let mut seen = HashSet::new();
        let mut by_credential: BTreeMap<String, Vec<Reveal>> = BTreeMap::new();
        let mut kind = None;
        for action in REVEAL_ACTIONS {
            for page in 1.. {
                let query = ListAuditEvents {
                    actor: Some(actor.to_owned()),
                    action: Some(action.to_owned()),
                    from: since.map(str::to_owned),
                    page,
                    rpp: READ_PAGE,
                    ..ListAuditEvents::default()
                };
                let listed = self.audit.list(&query).await.map_err(store_failed)?;
                let last = (listed.items.len() as u64) < READ_PAGE;
                for entry in listed.items {
                    // Entries appended meanwhile shift the pages (newest first): an entry may
                    // come twice, never not at all.
                    if !seen.insert(entry.seq) {
                        continue;
                    }
                    kind.get_or_insert(entry.actor.kind);
                    let id = entry
                        .credential_id
                        .clone()
                        .unwrap_or_else(|| entry.target.id.clone());
                    by_credential.entry(id).or_default().push(Reveal::of(&entry));
                }
                if last {
                    break;
                }
            }
        }
        for reveals in by_credential.values_mut() {
            reveals.sort_by(|a, b| a.at.cmp(&b.at));
        }
        Ok((by_credential, seen.len() as u64, kind))
    }

    /// The credentials `actor` revealed at or after `since` whose revealed values are still in
    /// use, as `sight` may see them (see the module docs).
    pub async fn exposure(
        &self,
        ctx: &CallContext,
        actor: &str,
        since: Option<&str>,
        sight: Sight,
    ) -> Result<Exposure, WireError> {
        let since = checked(actor, since)?;
        let (by_credential, reveals, actor_kind) = self.reveals_by(actor, since.as_deref()).await?;
        let mut exposure = Exposure {
            reveals,
            actor_kind,
            ..Exposure::default()
        };
        for (id, reveals) in by_credential {
            let Some(document) = self.store.get(CREDENTIALS, &id).await.map_err(store_failed)? else {
                exposure.deleted += 1;
                continue;
            };
            let credential: CredentialDoc = from_document(document).map_err(store_failed)?;
            let Some(credential_type) = self
                .type_by_id(&credential.type_id)
                .await?
                .filter(|t| !t.deleting)
            else {
                exposure.deleted += 1;
                continue;
            };
            let field_ids = still_exposed(&credential, &reveals);
            if field_ids.is_empty() {
                continue;
            }
            if sight == Sight::Caller && check_scope(ctx, &credential_type).is_err() {
                exposure.hidden += 1;
                continue;
            }
            let versions: BTreeSet<u64> = reveals.iter().filter_map(|r| r.version).collect();
            let exposed = ExposedCredential {
                credential: ExposedCredentialRef {
                    id: credential.id.clone(),
                    name: credential.name.clone(),
                    type_id: credential.type_id.clone(),
                    company_id: credential.company_id.clone(),
                    company_name: None,
                },
                field_ids: field_ids.into_iter().collect(),
                revealed_at: reveals.last().map(|r| r.at.clone()).unwrap_or_default(),
                reveals: reveals.len() as u64,
                versions: versions.into_iter().collect(),
                rotation_due: credential.rotation_due,
            };
            exposure.found.push((credential, exposed));
        }
        exposure.found.sort_by(|(_, a), (_, b)| {
            b.revealed_at
                .cmp(&a.revealed_at)
                .then_with(|| a.credential.id.cmp(&b.credential.id))
        });
        self.name_companies(ctx, &mut exposure).await;
        Ok(exposure)
    }

    /// Adds company names where company-sync answers for them; without them the report still
    /// names each company by id (a display nicety is no reason to fail an offboarding).
    async fn name_companies(&self, ctx: &CallContext, exposure: &mut Exposure) {
        let ids: BTreeSet<String> = exposure.found.iter().map(|(c, _)| c.company_id.clone()).collect();
        if ids.is_empty() {
            return;
        }
        match self.companies(ctx, ids.into_iter().collect()).await {
            Ok(names) => {
                for (_, exposed) in &mut exposure.found {
                    exposed.credential.company_name =
                        names.get(&exposed.credential.company_id).map(|c| c.name.clone());
                }
            }
            Err(error) => {
                tracing::warn!(error = %error.message, "company names unavailable for the exposure report");
            }
        }
    }

    /// Marks every credential of `exposure` due for rotation (reason `exposure`; each that
    /// becomes due emits `credential.rotation_due`; one deleted meanwhile counts as due
    /// already). The caller records the mark ([`Exposure::mark_record`]).
    pub async fn mark_exposure(
        &self,
        ctx: &CallContext,
        exposure: &Exposure,
    ) -> Result<ExposureMarked, WireError> {
        let mut marked = ExposureMarked {
            hidden: exposure.hidden,
            ..ExposureMarked::default()
        };
        for (credential, _) in &exposure.found {
            if self.mark_due(ctx, credential, "exposure").await? {
                marked.marked += 1;
            } else {
                marked.already_due += 1;
            }
            marked.credentials.push(credential.id.clone());
        }
        Ok(marked)
    }
}

/// The exposure report for `actor`, as the caller may see it.
impl ServiceOp<Service> for GetExposure {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<ExposureReport, WireError> {
        let exposure = service
            .exposure(&ctx, &self.actor, self.since.as_deref(), Sight::Caller)
            .await?;
        Ok(exposure.report(self.window))
    }
}

/// Marks the credentials of `actor`'s exposure the caller may see due for rotation, and records
/// one `credential.exposure_marked` entry (each credential made due emitted its event).
impl ServiceOp<Service> for MarkExposureDue {
    async fn run(self, service: Arc<Service>, ctx: CallContext) -> Result<ExposureMarked, WireError> {
        let since = checked(&self.actor, self.since.as_deref())?;
        let exposure = service
            .exposure(&ctx, &self.actor, since.as_deref(), Sight::Caller)
            .await?;
        let marked = service.mark_exposure(&ctx, &exposure).await?;
        service
            .record(&ctx, exposure.mark_record(&self.actor, since.as_deref(), &marked))
            .await?;
        Ok(marked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoredValue;

    fn value(field: &str, version: u64) -> StoredValue {
        StoredValue {
            id: field.into(),
            field_id: field.into(),
            sealed: true,
            value: "blob".into(),
            version,
        }
    }

    /// A stored credential (read from its document, so fields added later keep their defaults).
    fn credential(values: Vec<StoredValue>, secrets_changed_at: Option<&str>) -> CredentialDoc {
        let document = json!({
            "id": "c", "name": "n", "typeId": "t", "companyId": "k", "values": values, "revision": 3,
            "secretsChangedAt": secrets_changed_at,
            "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z",
        });
        from_document(crate::store::to_document(&document)).expect("a credential document")
    }

    fn reveal(at: &str, field_versions: Option<&str>) -> Reveal {
        Reveal {
            at: at.into(),
            version: None,
            field_versions: field_versions.map(parse_field_versions),
        }
    }

    #[test]
    fn a_revealed_value_is_exposed_while_its_version_is_current() {
        let stored = credential(vec![value("secret", 1), value("pin", 3)], None);
        let shown = [reveal("2026-01-02T00:00:00Z", Some("secret@1,pin@1"))];
        assert_eq!(
            still_exposed(&stored, &shown).into_iter().collect::<Vec<_>>(),
            vec!["secret".to_owned()]
        );
    }

    #[test]
    fn an_entry_without_field_versions_is_judged_by_time() {
        let stored = credential(vec![value("secret", 0)], Some("2026-02-01T00:00:00.000Z"));
        assert!(still_exposed(&stored, &[reveal("2026-01-15T00:00:00Z", None)]).is_empty());
        assert_eq!(
            still_exposed(&stored, &[reveal("2026-02-02T00:00:00Z", None)]).len(),
            1
        );
    }

    #[test]
    fn a_reveal_of_nothing_exposes_nothing() {
        let stored = credential(vec![value("secret", 1)], None);
        assert!(still_exposed(&stored, &[reveal("2026-01-02T00:00:00Z", Some(""))]).is_empty());
    }

    #[test]
    fn actor_and_since_are_checked() {
        assert!(checked("", None).is_err());
        assert!(checked("u", Some("yesterday")).is_err());
        assert_eq!(
            checked("u", Some("2026-01-02T03:04:05+01:00")).expect("valid"),
            Some("2026-01-02T02:04:05.000Z".to_owned())
        );
    }
}
