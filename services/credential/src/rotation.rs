//! Rotation due dates: a credential is due for rotation when its secure values should be
//! changed — marked by a break-glass reveal, an exposure mark, or the rotation scheduler once
//! its type's `rotationDays` have passed since they last changed. `credential.rotation_due` is
//! emitted once per transition from not due to due (the conditional write's winner emits it); a
//! changed secure value clears the mark (`Service::write_version`).
//!
//! Two views of "due" that agree:
//! - **stored**: `rotationDue: true` on the credential, set by [`Service::mark_due`];
//! - **by date**: the type's `rotationDays` passed since `secretsChangedAt` (or `createdAt` in
//!   documents from before it was kept).
//!
//! The wire credential's `rotationDue` and the lists' `rotationDue=true` filter take either
//! ([`rotation_state`], [`Service::due_filter`]), so a credential whose days passed reads due at
//! once, before any sweep. The scheduler ([`Service::rotation_forever`]) turns the date into the
//! stored mark — and so the event — every `TTSCM_CREDENTIAL__ROTATION_CHECK_SECS`, under a
//! lease in `credential_rotation_state` so one replica sweeps at a time; the mark's conditional
//! write keeps the event to one even when sweeps overlap.
//!
//! A mark stays until a secure value is written (removing a type's `rotationDays` does not clear
//! marks already made; it stops new ones by date).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use ttscm_contract::{FieldError, WireError};
use ttscm_runtime::service::CallContext;
use ttscm_runtime::store::{Document, FindOptions, Order, Scalar};
use ttscm_runtime::{Filter, Shutdown, StoreError, Update, clock, ids};

use crate::service::{Service, store_failed};
use crate::store::{CREDENTIAL_TYPES, CREDENTIALS, CredentialDoc, TypeDoc, from_document};

/// The rotation scheduler's lease (one document, `id: "lease"`). Owned by the credential service.
pub const ROTATION_STATE: &str = "credential_rotation_state";
const LEASE_ID: &str = "lease";

/// The longest `rotationDays` a type may set (ten years).
pub const MAX_ROTATION_DAYS: u32 = 3650;

/// How long a sweep may hold the lease before another replica may take it (a replica that died
/// mid-sweep).
const SWEEP_TTL: Duration = Duration::from_secs(10 * 60);

/// Credentials marked per query of a sweep (marked ones drop out of the next query).
const SWEEP_BATCH: u64 = 500;

const DAY: Duration = Duration::from_secs(86_400);

/// Adds a 400 naming `rotationDays` unless `days` is absent or from 1 to [`MAX_ROTATION_DAYS`].
pub(crate) fn check_rotation_days(days: Option<u32>, errors: &mut Vec<FieldError>) {
    if days.is_some_and(|d| !(1..=MAX_ROTATION_DAYS).contains(&d)) {
        errors.push(FieldError::new(
            vec![json!("rotationDays")],
            format!("rotationDays must be a whole number of days from 1 to {MAX_ROTATION_DAYS}"),
        ));
    }
}

/// When the schedule makes `credential` due: `rotation_days` after its secure values last
/// changed (`None` without a schedule, or for an unreadable timestamp).
pub fn due_at(credential: &CredentialDoc, rotation_days: Option<u32>) -> Option<String> {
    let changed = credential
        .secrets_changed_at
        .as_deref()
        .unwrap_or(&credential.created_at);
    let days = rotation_days?;
    Some(clock::format_iso(clock::parse_iso(changed)? + DAY * days))
}

/// Whether `credential` is due at `now` (ISO) — marked, or its schedule passed — and when the
/// schedule makes it due.
pub fn rotation_state(
    credential: &CredentialDoc,
    credential_type: &TypeDoc,
    now: &str,
) -> (bool, Option<String>) {
    let at = due_at(credential, credential_type.rotation_days);
    let passed = at.as_deref().is_some_and(|at| at <= now);
    (credential.rotation_due || passed, at)
}

/// `days` before `now` (ISO), formatted; `None` for an unreadable `now`.
fn cutoff(now: &str, days: u32) -> Option<String> {
    Some(clock::format_iso(clock::parse_iso(now)? - DAY * days))
}

/// Credentials of `type_id` whose secure values last changed `days` or more before `now`.
fn schedule_passed(type_id: &str, days: u32, now: &str) -> Option<Filter> {
    let cutoff = cutoff(now, days)?;
    Some(Filter::And(vec![
        Filter::eq("typeId", type_id),
        Filter::Or(vec![
            Filter::Lte("secretsChangedAt".into(), cutoff.clone().into()),
            Filter::And(vec![
                Filter::Eq("secretsChangedAt".into(), Scalar::Null),
                Filter::Lte("createdAt".into(), cutoff.into()),
            ]),
        ]),
    ]))
}

/// A `now` that is not an ISO-8601 timestamp (only a caller of [`Service::sweep_rotation`]
/// can pass one; the service's own are the clock's).
fn bad_now(now: &str) -> WireError {
    WireError::validation(vec![FieldError::new(
        vec![json!("now")],
        format!("now must be an ISO-8601 timestamp, not {now:?}"),
    )])
}

impl Service {
    /// Marks `credential` due for rotation because of `reason` (`break_glass`, `exposure`,
    /// `schedule`); answers whether this call made it due (then `credential.rotation_due` was
    /// emitted, durably, before answering). Already due: nothing happens.
    pub(crate) async fn mark_due(
        &self,
        ctx: &CallContext,
        credential: &CredentialDoc,
        reason: &str,
    ) -> Result<bool, WireError> {
        let not_due = Filter::And(vec![
            Filter::id(&credential.id),
            Filter::Ne("rotationDue".into(), true.into()),
        ]);
        let marked = self
            .store
            .update_one(CREDENTIALS, &not_due, &Update::default().set("rotationDue", true))
            .await;
        self.credentials_changed(Some(&credential.id)).await;
        if !marked.map_err(store_failed)? {
            return Ok(false);
        }
        self.events
            .publish(ctx, "credential", "rotation_due", &credential.id, || {
                let mut data = Service::event_data(credential);
                data["reason"] = json!(reason);
                data
            })
            .await;
        Ok(true)
    }

    /// The types with a rotation schedule (not being deleted), as stored now.
    async fn scheduled_types(&self) -> Result<Vec<TypeDoc>, WireError> {
        let documents = self
            .store
            .find(CREDENTIAL_TYPES, &FindOptions::new(Filter::All))
            .await
            .map_err(store_failed)?;
        let mut scheduled = Vec::new();
        for document in documents {
            let credential_type: TypeDoc = from_document(document).map_err(store_failed)?;
            if credential_type.rotation_days.is_some() && !credential_type.deleting {
                scheduled.push(credential_type);
            }
        }
        Ok(scheduled)
    }

    /// The lists' `rotationDue=true`: credentials marked due, or whose type's schedule passed at
    /// `now` (ISO) — the same rule as the wire's `rotationDue`, so a list never waits for a sweep.
    pub(crate) async fn due_filter(&self, now: &str) -> Result<Filter, WireError> {
        let mut due = vec![Filter::eq("rotationDue", true)];
        for credential_type in self.scheduled_types().await? {
            let days = credential_type.rotation_days.unwrap_or(MAX_ROTATION_DAYS);
            due.push(schedule_passed(&credential_type.id, days, now).ok_or_else(|| bad_now(now))?);
        }
        Ok(Filter::Or(due))
    }

    /// Marks due (reason `schedule`) every credential not yet marked whose type's
    /// `rotationDays` have passed at `now` (ISO-8601); answers how many this call marked. Takes
    /// no lease (the scheduler does): sweeps that overlap emit each event once all the same, as
    /// only one conditional write makes a credential due. Tests pass a `now` in the future.
    pub async fn sweep_rotation(&self, now: &str) -> Result<u64, WireError> {
        let ctx = self.client.bus().service_context();
        let mut marked = 0;
        for credential_type in self.scheduled_types().await? {
            let days = credential_type.rotation_days.unwrap_or(MAX_ROTATION_DAYS);
            let passed = schedule_passed(&credential_type.id, days, now).ok_or_else(|| bad_now(now))?;
            let filter = Filter::And(vec![passed, Filter::Ne("rotationDue".into(), true.into())]);
            // Marked credentials leave the filter, so each query finds the next ones; a batch
            // that marks none (all taken by another sweep meanwhile, or vanished) ends the type.
            loop {
                let documents = self
                    .store
                    .find(
                        CREDENTIALS,
                        &FindOptions::new(filter.clone())
                            .sort("id", Order::Asc)
                            .page(0, SWEEP_BATCH),
                    )
                    .await
                    .map_err(store_failed)?;
                let found = documents.len() as u64;
                let mut marked_now = 0;
                for document in documents {
                    let credential: CredentialDoc = from_document(document).map_err(store_failed)?;
                    if self.mark_due(&ctx, &credential, "schedule").await? {
                        marked_now += 1;
                    }
                }
                marked += marked_now;
                if found < SWEEP_BATCH || marked_now == 0 {
                    break;
                }
            }
        }
        Ok(marked)
    }

    /// Sweeps every `rotation_check_secs` until `shutdown`, when this replica holds the lease.
    pub(crate) async fn rotation_forever(self: Arc<Self>, shutdown: Shutdown) {
        let every = self.credential_settings.rotation_check_secs;
        if every == 0 {
            return;
        }
        let every = Duration::from_secs(every);
        let holder = ids::new_id();
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let started = clock::unix_now_millis();
            match self.take_lease(&holder, started, SWEEP_TTL).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(error) => {
                    tracing::warn!(%error, "could not take the rotation lease; trying again later");
                    continue;
                }
            }
            match self.sweep_rotation(&clock::now_iso()).await {
                Ok(0) => {}
                Ok(marked) => tracing::info!(marked, "credentials became due for rotation"),
                Err(error) => tracing::warn!(%error, "rotation sweep failed; trying again later"),
            }
            // Held until the next sweep is due: another replica's tick before then skips, so
            // the mesh sweeps once per interval (this replica keeps the turn while it lives).
            let until = started + i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
            if let Err(error) = self.hold_lease(&holder, until).await {
                tracing::warn!(%error, "could not extend the rotation lease; it expires on its own");
            }
        }
    }

    /// Takes the scheduler's lease for `ttl` if it is free, expired, or already `holder`'s.
    async fn take_lease(&self, holder: &str, now: i64, ttl: Duration) -> Result<bool, StoreError> {
        let until = now + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let filter = Filter::And(vec![
            Filter::id(LEASE_ID),
            Filter::Or(vec![
                Filter::Lt("until".into(), Scalar::Int(now)),
                Filter::eq("holder", holder),
            ]),
        ]);
        let update = Update::default().set("holder", holder).set("until", until);
        if self.store.update_one(ROTATION_STATE, &filter, &update).await? {
            return Ok(true);
        }
        let mut lease = Document::new();
        lease.insert("id".into(), json!(LEASE_ID));
        lease.insert("holder".into(), json!(holder));
        lease.insert("until".into(), json!(until));
        match self.store.insert(ROTATION_STATE, lease).await {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Sets the lease `holder` holds to end at `until` (Unix ms).
    async fn hold_lease(&self, holder: &str, until: i64) -> Result<(), StoreError> {
        let filter = Filter::And(vec![Filter::id(LEASE_ID), Filter::eq("holder", holder)]);
        self.store
            .update_one(ROTATION_STATE, &filter, &Update::default().set("until", until))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(created_at: &str, secrets_changed_at: Option<&str>) -> CredentialDoc {
        CredentialDoc {
            id: "c1".into(),
            name: "Domain admin".into(),
            type_id: "t1".into(),
            company_id: "co1".into(),
            values: Vec::new(),
            revision: 1,
            version_info: None,
            secrets_changed_at: secrets_changed_at.map(str::to_owned),
            rotation_due: false,
            created_at: created_at.into(),
            updated_at: created_at.into(),
        }
    }

    #[test]
    fn the_due_date_counts_from_the_last_change_of_secure_values() {
        let changed = credential("2025-01-01T00:00:00.000Z", Some("2025-03-01T12:30:00.250Z"));
        assert_eq!(
            due_at(&changed, Some(30)).as_deref(),
            Some("2025-03-31T12:30:00.250Z")
        );
        // Older documents without secretsChangedAt count from their creation.
        let old = credential("2024-02-28T00:00:00.000Z", None);
        assert_eq!(
            due_at(&old, Some(2)).as_deref(),
            Some("2024-03-01T00:00:00.000Z"),
            "2024 is a leap year"
        );
        assert_eq!(due_at(&old, None), None);
    }

    #[test]
    fn a_credential_is_due_once_its_days_have_passed_or_when_marked() {
        let mut credential_type: TypeDoc = serde_json::from_value(json!({
            "id": "t1", "name": "T", "nameKey": "t", "fields": [],
            "createdAt": "2025-01-01T00:00:00.000Z", "updatedAt": "2025-01-01T00:00:00.000Z",
            "rotationDays": 10
        }))
        .expect("a type document");
        let mut doc = credential("2025-01-01T00:00:00.000Z", Some("2025-01-01T00:00:00.000Z"));
        let due = "2025-01-11T00:00:00.000Z";
        assert_eq!(
            rotation_state(&doc, &credential_type, "2025-01-10T23:59:59.999Z"),
            (false, Some(due.to_owned()))
        );
        assert_eq!(
            rotation_state(&doc, &credential_type, due),
            (true, Some(due.to_owned()))
        );
        credential_type.rotation_days = None;
        assert_eq!(
            rotation_state(&doc, &credential_type, "2099-01-01T00:00:00.000Z"),
            (false, None)
        );
        doc.rotation_due = true;
        assert_eq!(
            rotation_state(&doc, &credential_type, "2025-01-02T00:00:00.000Z"),
            (true, None)
        );
    }

    #[test]
    fn the_filter_cutoff_is_the_same_instant_as_the_due_date() {
        // A credential is listed as due exactly when `rotation_state` says so.
        assert_eq!(
            cutoff("2025-01-11T00:00:00.000Z", 10).as_deref(),
            Some("2025-01-01T00:00:00.000Z")
        );
        assert_eq!(cutoff("yesterday", 10), None);
    }

    #[test]
    fn rotation_days_outside_one_to_ten_years_are_refused_naming_the_field() {
        for (days, refused) in [
            (None, false),
            (Some(1), false),
            (Some(3650), false),
            (Some(0), true),
            (Some(3651), true),
        ] {
            let mut errors = Vec::new();
            check_rotation_days(days, &mut errors);
            assert_eq!(!errors.is_empty(), refused, "{days:?}");
        }
    }
}
