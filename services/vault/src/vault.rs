//! The vault: owns the key ring and seals, opens and re-seals values for other services. Its
//! operations run under a lock in the caller's task (see [`SharedVault`]).
//!
//! Callers are services (the credential service), which have already authorized their own
//! caller; vault checks no principal. Each value is bound to its place (credential id, field
//! id), so a caller can only get back what was sealed for the place it names.
//!
//! In embedded mode the vault re-reads the key file when it changes (checked at most every
//! [`RELOAD_INTERVAL`], and at once when a value names a kid the ring does not hold), so
//! `ttscm vault rotate` takes effect without a restart. In mesh mode keys come from settings and
//! never change while running.
//!
//! Handlers never log plaintext or keys: only counts, kids and places.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

// tokio's clock: tests can pause it.
use tokio::time::Instant;
use ttscm_contract::audit::AuditCheckpoint;
use ttscm_contract::vault::{
    CheckpointKey, GenerateTotp, GetCheckpointKey, Place, Plaintexts, Reseal, Seal, SealItem, SealedItem,
    SignAuditHead, TotpCode, Unseal,
};
use ttscm_contract::webhook::{OpenWebhookSecrets, SealWebhookSecret, WebhookSecrets};
use ttscm_contract::{ErrorCode, FieldError, WireError};
use ttscm_runtime::Settings;
use ttscm_runtime::audit::AuditHead;
use ttscm_runtime::audit::checkpoint;
use ttscm_runtime::ed25519::Ed25519Key;
use ttscm_runtime::service::{CallContext, ServiceOp};
use zeroize::Zeroize;

use crate::keyring::{self, FileVersion, KeyRing, KeyRingError};
use crate::seal::{self, Plaintext, SealError, ValuePlace};

/// Largest plaintext vault seals, in bytes (the 64 KiB per value).
pub const MAX_VALUE_LEN: usize = 64 * 1024;

/// How often, at most, the embedded key file is checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// What a caller sees when a value does not open at the place it names. Says nothing about the
/// value.
pub const NOT_SEALED_HERE: &str =
    "A sealed value failed to open: it was not sealed for this credential field";

/// The key file the ring was read from, and when it was last checked for changes.
struct KeyFileWatch {
    /// `<data_dir>/vault-keys.json`.
    path: PathBuf,
    /// The file version the ring reflects (`None`: could not be read).
    version: Option<FileVersion>,
    /// When the file was last checked.
    checked_at: Instant,
    /// How long to trust the loaded ring before checking again.
    interval: Duration,
}

/// The vault service's state: the key ring and, in embedded mode, where it is reloaded from.
pub struct Vault {
    /// The keys; replaced whole when the key file changes.
    ring: KeyRing,
    /// Present in embedded mode only: where to reload the ring from.
    watch: Option<KeyFileWatch>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("ring", &self.ring)
            .field("reloads_from", &self.watch.as_ref().map(|w| &w.path))
            .finish()
    }
}

impl Vault {
    /// A vault whose ring never changes (mesh mode, or tests).
    pub fn new(ring: KeyRing) -> Self {
        Self { ring, watch: None }
    }

    /// A vault with the ring `settings` call for, reloading it from the data dir's key file
    /// every `interval` at most when the ring comes from there (embedded mode).
    pub fn from_settings(settings: &Settings, interval: Duration) -> Result<Self, KeyRingError> {
        let Some(path) = keyring::file_path(settings) else {
            return Ok(Self::new(KeyRing::load(settings)?));
        };
        // The version is read before the file, so a change in between is seen as a change.
        let before = keyring::file_version(&path);
        let ring = KeyRing::load(settings)?;
        let version = before.or_else(|| keyring::file_version(&path));
        Ok(Self {
            ring,
            watch: Some(KeyFileWatch {
                path,
                version,
                checked_at: Instant::now(),
                interval,
            }),
        })
    }

    /// The kid new values are sealed with.
    pub fn active_kid(&self) -> &str {
        self.ring.active_kid()
    }

    /// How many keys the ring holds.
    pub fn key_count(&self) -> usize {
        self.ring.len()
    }

    /// The key file the ring is reloaded from (embedded mode), if any.
    pub fn key_file(&self) -> Option<&std::path::Path> {
        self.watch.as_ref().map(|w| w.path.as_path())
    }

    /// Reloads the ring if its key file changed. Unless `now`, checks at most once per interval.
    fn refresh(&mut self, now: bool) {
        let Some(watch) = &mut self.watch else { return };
        if !now && watch.checked_at.elapsed() < watch.interval {
            return;
        }
        watch.checked_at = Instant::now();
        let version = keyring::file_version(&watch.path);
        if version == watch.version {
            return;
        }
        watch.version = version;
        match KeyRing::from_file(&watch.path) {
            Ok(ring) => {
                tracing::info!(
                    active_kid = ring.active_kid(),
                    keys = ring.len(),
                    "reloaded the vault key ring"
                );
                self.ring = ring;
            }
            Err(error) => tracing::error!(
                %error,
                active_kid = self.ring.active_kid(),
                "could not reload the vault key ring; keeping the loaded one"
            ),
        }
    }

    /// Seals each item with the active key. Refuses the whole call if any item is too large.
    pub fn seal(&mut self, op: &Seal) -> Result<Vec<String>, WireError> {
        let too_large: Vec<FieldError> = op
            .items
            .iter()
            .enumerate()
            .filter(|(_, item)| item.plaintext.len() > MAX_VALUE_LEN)
            .map(|(index, _)| {
                FieldError::new(
                    vec!["items".into(), index.into(), "plaintext".into()],
                    format!("A value must be at most {MAX_VALUE_LEN} bytes (64 KiB)"),
                )
            })
            .collect();
        if !too_large.is_empty() {
            return Err(WireError::validation(too_large));
        }
        self.refresh(false);
        let mut kept = 0usize;
        let sealed = op
            .items
            .iter()
            .map(|item| {
                if let Some(current) = &item.keep_if_equal
                    && self.opens_to(current, item.plaintext.as_bytes())
                {
                    kept += 1;
                    return Ok(current.sealed.clone());
                }
                seal::seal(&self.ring, (&item.place).into(), item.plaintext.as_bytes()).map_err(seal_failed)
            })
            .collect::<Result<Vec<_>, _>>()?;
        tracing::debug!(
            values = sealed.len(),
            kept,
            kid = self.ring.active_kid(),
            "sealed values"
        );
        Ok(sealed)
    }

    /// Opens each item at its place. Any item that does not open fails the whole call.
    pub fn unseal(&mut self, op: &Unseal) -> Result<Plaintexts, WireError> {
        self.refresh(false);
        let mut plaintexts = Vec::with_capacity(op.items.len());
        for (index, item) in op.items.iter().enumerate() {
            let opened = self.open(index, item).and_then(|plaintext| {
                plaintext
                    .into_string()
                    .ok_or_else(|| not_text(index, &item.place))
            });
            match opened {
                Ok(text) => plaintexts.push(text),
                Err(error) => {
                    plaintexts.iter_mut().for_each(Zeroize::zeroize);
                    return Err(error);
                }
            }
        }
        tracing::debug!(values = plaintexts.len(), "opened values");
        Ok(Plaintexts(plaintexts))
    }

    /// Moves each item to the active key: opens it at its place (so a value that does not open
    /// fails the call, as in [`Self::unseal`]) and seals it again — bound to its entry of
    /// `to_versions` when given — unless it already uses the active key and stays at its place,
    /// in which case it comes back unchanged.
    pub fn reseal(&mut self, op: &Reseal) -> Result<Vec<String>, WireError> {
        if !op.to_versions.is_empty() && op.to_versions.len() != op.items.len() {
            return Err(WireError::validation(vec![FieldError::new(
                vec!["toVersions".into()],
                "toVersions must be empty or give one version per item",
            )]));
        }
        self.refresh(false);
        let mut resealed = Vec::with_capacity(op.items.len());
        let mut moved = 0usize;
        for (index, item) in op.items.iter().enumerate() {
            let plaintext = self.open(index, item)?;
            let kid = seal::inspect(&item.sealed)
                .map_err(|error| open_failed(index, &item.place, error))?
                .kid;
            let from = ValuePlace::from(&item.place);
            let to = match op.to_versions.get(index) {
                Some(&version) => from.at_version(version),
                None => from,
            };
            if kid == self.ring.active_kid() && to == from {
                resealed.push(item.sealed.clone());
            } else {
                let sealed = seal::seal(&self.ring, to, plaintext.as_bytes()).map_err(seal_failed)?;
                resealed.push(sealed);
                moved += 1;
            }
        }
        tracing::debug!(
            values = resealed.len(),
            moved,
            kid = self.ring.active_kid(),
            "re-sealed values"
        );
        Ok(resealed)
    }

    /// Whether `current` opens at its place to exactly `plaintext` (compared in constant time).
    /// A value that does not open is simply not equal: the caller seals the new one.
    fn opens_to(&mut self, current: &SealedItem, plaintext: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        match self.open(0, current) {
            Ok(opened) => bool::from(opened.as_bytes().ct_eq(plaintext)),
            Err(_) => false,
        }
    }

    /// Opens one item; a kid the ring lacks makes it check the key file at once and try again.
    fn open(&mut self, index: usize, item: &SealedItem) -> Result<Plaintext, WireError> {
        let place = ValuePlace::from(&item.place);
        let result = match seal::open(&self.ring, place, &item.sealed) {
            Err(SealError::UnknownKid(_)) if self.watch.is_some() => {
                self.refresh(true);
                seal::open(&self.ring, place, &item.sealed)
            }
            result => result,
        };
        result.map_err(|error| open_failed(index, &item.place, error))
    }
}

fn open_failed(index: usize, place: &Place, error: SealError) -> WireError {
    tracing::warn!(
        item = index,
        credential_id = %place.credential_id,
        field_id = %place.field_id,
        %error,
        "a sealed value failed to open"
    );
    match error {
        SealError::DoesNotOpen => WireError::new(ErrorCode::Internal, NOT_SEALED_HERE),
        SealError::UnknownKid(kid) => WireError::new(
            ErrorCode::Internal,
            format!("A sealed value uses vault key '{kid}', which this vault does not hold"),
        ),
        SealError::Malformed | SealError::UnsupportedVersion(_) => WireError::new(
            ErrorCode::Internal,
            "A sealed value failed to open: it is not a sealed value this vault understands",
        ),
        SealError::Rng => WireError::internal(),
    }
}

fn not_text(index: usize, place: &Place) -> WireError {
    tracing::warn!(
        item = index,
        credential_id = %place.credential_id,
        field_id = %place.field_id,
        "a sealed value opened but does not hold text"
    );
    WireError::new(
        ErrorCode::Internal,
        "A sealed value failed to open: it does not hold text",
    )
}

fn seal_failed(error: SealError) -> WireError {
    tracing::error!(%error, "sealing failed");
    WireError::internal()
}

/// Runs a handler's work, answering a panic with a 500 instead of unwinding into the caller.
fn guarded<T>(work: impl FnOnce() -> Result<T, WireError>) -> Result<T, WireError> {
    std::panic::catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|_| {
        tracing::error!("a vault handler panicked");
        Err(WireError::internal())
    })
}

/// The vault as its handlers share it: one [`Vault`] behind a lock (the router's state).
///
/// Vault's handlers are synchronous and take microseconds (a seal of 1 KiB is ~3 µs), so they
/// run under this lock in the caller's task — in one process, the credential service's request
/// task itself — instead of through an actix mailbox on another thread: on the 2-core target a
/// cross-thread wake-up and the reply's wake-up back cost more than the work.
///
/// The audit-checkpoint key sits beside it, outside the lock: it never changes while running.
#[derive(Debug)]
pub struct SharedVault {
    vault: parking_lot::Mutex<Vault>,
    checkpoint_key: Ed25519Key,
}

impl SharedVault {
    /// Shares `vault` and the key that signs audit checkpoints with the handlers.
    pub fn new(vault: Vault, checkpoint_key: Ed25519Key) -> Self {
        Self {
            vault: parking_lot::Mutex::new(vault),
            checkpoint_key,
        }
    }

    fn with<T>(&self, work: impl FnOnce(&mut Vault) -> Result<T, WireError>) -> Result<T, WireError> {
        // A panic inside `work` is answered as a 500 by `guarded` before the lock is released,
        // and leaves the ring as it was (handlers only replace it whole); the lock does not
        // poison.
        let mut vault = self.vault.lock();
        guarded(|| work(&mut vault))
    }
}

/// Seals the items, then wipes their plaintext.
impl ServiceOp<SharedVault> for Seal {
    async fn run(mut self, vault: Arc<SharedVault>, _: CallContext) -> Result<Vec<String>, WireError> {
        let result = credential_places(self.items.iter().map(|i| &i.place))
            .and_then(|()| vault.with(|vault| vault.seal(&self)));
        for item in &mut self.items {
            item.plaintext.zeroize();
        }
        result
    }
}

/// The place of a webhook endpoint's secret: a key domain of its own (`webhook/<endpoint>`; a
/// credential id never holds a `/`), so these operations never open a credential's value.
fn webhook_place(endpoint_id: &str, secret_id: &str) -> Place {
    Place {
        credential_id: format!("webhook/{endpoint_id}"),
        field_id: secret_id.to_owned(),
        version: None,
    }
}

/// The credential operations serve credential places only: a place in the webhook domain (a
/// `/` in its credential id, which generated ids never hold) is refused, so the component that
/// may open credential values cannot open a webhook secret either.
fn credential_places<'a>(places: impl IntoIterator<Item = &'a Place>) -> Result<(), WireError> {
    if places.into_iter().any(|p| p.credential_id.contains('/')) {
        return Err(WireError::new(
            ErrorCode::Validation,
            "A credential id does not hold a '/'",
        ));
    }
    Ok(())
}

/// Seals a webhook endpoint's signing secret, then wipes it.
impl ServiceOp<SharedVault> for SealWebhookSecret {
    async fn run(mut self, vault: Arc<SharedVault>, _: CallContext) -> Result<String, WireError> {
        let seal = Seal {
            items: vec![SealItem {
                place: webhook_place(&self.endpoint_id, &self.secret_id),
                plaintext: std::mem::take(&mut self.plaintext),
                keep_if_equal: None,
            }],
        };
        let mut sealed = vault.with(|vault| vault.seal(&seal))?;
        sealed.pop().ok_or_else(WireError::internal)
    }
}

/// Opens a webhook endpoint's signing secrets.
impl ServiceOp<SharedVault> for OpenWebhookSecrets {
    async fn run(self, vault: Arc<SharedVault>, _: CallContext) -> Result<WebhookSecrets, WireError> {
        let unseal = Unseal {
            items: self
                .secrets
                .iter()
                .map(|secret| SealedItem {
                    place: webhook_place(&self.endpoint_id, &secret.secret_id),
                    sealed: secret.sealed.clone(),
                })
                .collect(),
        };
        let mut opened = vault.with(|vault| vault.unseal(&unseal))?;
        Ok(WebhookSecrets(std::mem::take(&mut opened.0)))
    }
}

/// Opens the items.
impl ServiceOp<SharedVault> for Unseal {
    async fn run(self, vault: Arc<SharedVault>, _: CallContext) -> Result<Plaintexts, WireError> {
        credential_places(self.items.iter().map(|i| &i.place))?;
        vault.with(|vault| vault.unseal(&self))
    }
}

/// Opens the seed, computes the code now and drops the seed (wiped): only the code leaves.
impl ServiceOp<SharedVault> for GenerateTotp {
    async fn run(self, vault: Arc<SharedVault>, _: CallContext) -> Result<TotpCode, WireError> {
        credential_places([&self.item.place])?;
        let seed = vault.with(|vault| {
            vault.unseal(&Unseal {
                items: vec![self.item],
            })
        })?;
        let parsed = seed
            .0
            .first()
            .map(|text| ttscm_runtime::totp::TotpSeed::parse(text))
            .ok_or_else(WireError::internal)?
            // Stored before TOTP values were checked this closely, or not by TTSCM.
            .map_err(|reason| {
                WireError::new(
                    ErrorCode::Validation,
                    format!("The stored TOTP value is not usable: it {reason}"),
                )
            })?;
        let code = parsed.code_now();
        Ok(TotpCode {
            code: code.code,
            period: code.period,
            expires_in: code.expires_in,
        })
    }
}

/// Moves the items to the active key.
impl ServiceOp<SharedVault> for Reseal {
    async fn run(self, vault: Arc<SharedVault>, _: CallContext) -> Result<Vec<String>, WireError> {
        credential_places(self.items.iter().map(|i| &i.place))?;
        vault.with(|vault| vault.reseal(&self))
    }
}

/// Signs a head of the audit chain with the checkpoint key. Vault cannot read the log (it has
/// no store): it vouches that the credential service, the only caller the mesh lets ask, showed
/// it this head at this time.
impl ServiceOp<SharedVault> for SignAuditHead {
    async fn run(self, vault: Arc<SharedVault>, _: CallContext) -> Result<AuditCheckpoint, WireError> {
        if self.seq == 0 || !checkpoint::is_entry_hash(&self.hash) {
            return Err(WireError::new(
                ErrorCode::Validation,
                "A head is a sequence number from 1 and a hash of 64 hex digits",
            ));
        }
        let signed = checkpoint::sign(
            &vault.checkpoint_key,
            &AuditHead {
                seq: self.seq,
                hash: self.hash,
            },
        );
        tracing::debug!(
            seq = signed.seq,
            key_id = signed.key_id,
            "signed an audit checkpoint"
        );
        Ok(signed)
    }
}

/// The checkpoint key's public half.
impl ServiceOp<SharedVault> for GetCheckpointKey {
    async fn run(self, vault: Arc<SharedVault>, _: CallContext) -> Result<CheckpointKey, WireError> {
        Ok(CheckpointKey {
            key_id: vault.checkpoint_key.key_id(),
            public_key: vault.checkpoint_key.public_base64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use ttscm_contract::vault::SealItem;

    use super::*;

    fn place(credential_id: &str, field_id: &str) -> Place {
        Place {
            credential_id: credential_id.into(),
            field_id: field_id.into(),
            version: None,
        }
    }

    fn seal_op(values: &[(&str, &str, &str)]) -> Seal {
        Seal {
            items: values
                .iter()
                .map(|(credential, field, plaintext)| SealItem {
                    place: place(credential, field),
                    plaintext: (*plaintext).into(),
                    keep_if_equal: None,
                })
                .collect(),
        }
    }

    fn embedded(dir: &tempfile::TempDir) -> Settings {
        Settings {
            data_dir: dir.path().to_path_buf(),
            ..Settings::default()
        }
    }

    #[test]
    fn values_up_to_64_kib_seal() {
        let mut vault =
            Vault::new(KeyRing::parse("k:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", None).expect("ring"));
        let largest = "x".repeat(MAX_VALUE_LEN);
        assert_eq!(
            vault
                .seal(&seal_op(&[("c", "a", ""), ("c", "b", &largest)]))
                .expect("seals")
                .len(),
            2
        );
        // A larger value is refused: `tests/vault.rs::a_value_over_64_kib_is_a_validation_error`.
    }

    #[test]
    fn an_unchanged_value_keeps_its_blob_and_a_changed_one_is_sealed_at_the_new_version() {
        let mut vault =
            Vault::new(KeyRing::parse("k:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", None).expect("ring"));
        let at = |version| Place {
            version: Some(version),
            ..place("c", "f")
        };
        let item = |plaintext: &str, keep: Option<SealedItem>| SealItem {
            place: at(2),
            plaintext: plaintext.into(),
            keep_if_equal: keep,
        };
        let first = vault
            .seal(&Seal {
                items: vec![SealItem {
                    place: at(1),
                    plaintext: "same".into(),
                    keep_if_equal: None,
                }],
            })
            .expect("seals")
            .remove(0);
        let stored = SealedItem {
            place: at(1),
            sealed: first.clone(),
        };
        let again = vault
            .seal(&Seal {
                items: vec![
                    item("same", Some(stored.clone())),
                    item("other", Some(stored.clone())),
                    item("sam", Some(stored.clone())),
                    // The stored blob presented at a place it was not sealed for is not equal.
                    item(
                        "same",
                        Some(SealedItem {
                            place: at(2),
                            sealed: first.clone(),
                        }),
                    ),
                ],
            })
            .expect("seals");
        assert_eq!(
            again[0], first,
            "an equal value keeps its blob (and so its version)"
        );
        for (index, plaintext) in [(1, "other"), (2, "sam"), (3, "same")] {
            assert_ne!(again[index], first);
            let opened = vault
                .unseal(&Unseal {
                    items: vec![SealedItem {
                        place: at(2),
                        sealed: again[index].clone(),
                    }],
                })
                .expect("a new value opens at the new version");
            assert_eq!(opened.0, vec![plaintext.to_owned()]);
        }
    }

    #[test]
    fn reseal_can_bind_an_unversioned_value_to_a_version() {
        let mut vault =
            Vault::new(KeyRing::parse("k:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", None).expect("ring"));
        let old = vault.seal(&seal_op(&[("c", "f", "v")])).expect("seals").remove(0);
        let item = SealedItem {
            place: place("c", "f"),
            sealed: old.clone(),
        };
        let same = vault
            .reseal(&Reseal {
                items: vec![item.clone()],
                to_versions: Vec::new(),
            })
            .expect("reseals");
        assert_eq!(
            same,
            vec![old.clone()],
            "already under the active key and at its place"
        );
        let moved = vault
            .reseal(&Reseal {
                items: vec![item.clone()],
                to_versions: vec![7],
            })
            .expect("reseals")
            .remove(0);
        assert_ne!(moved, old);
        let open_at = |vault: &mut Vault, version, sealed: &str| {
            vault.unseal(&Unseal {
                items: vec![SealedItem {
                    place: Place {
                        version,
                        ..place("c", "f")
                    },
                    sealed: sealed.to_owned(),
                }],
            })
        };
        assert_eq!(
            open_at(&mut vault, Some(7), &moved).expect("opens").0,
            vec!["v".to_owned()]
        );
        assert!(open_at(&mut vault, None, &moved).is_err());
        assert!(
            vault
                .reseal(&Reseal {
                    items: vec![item],
                    to_versions: vec![1, 2],
                })
                .is_err(),
            "one version per item"
        );
    }

    #[test]
    fn a_rotated_key_file_is_picked_up_once_the_interval_has_passed() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut vault = Vault::from_settings(&embedded(&dir), Duration::ZERO).expect("vault");
        let first = vault.active_kid().to_owned();
        let sealed = vault.seal(&seal_op(&[("c", "f", "before")])).expect("seals");

        let second = keyring::rotate_file(&dir.path().join(keyring::KEYRING_FILE)).expect("rotates");
        let after = vault.seal(&seal_op(&[("c", "f", "after")])).expect("seals");
        assert_ne!(first, second);
        assert_eq!(seal::inspect(&after[0]).expect("header").kid, second);

        let opened = vault
            .unseal(&Unseal {
                items: vec![
                    SealedItem {
                        place: place("c", "f"),
                        sealed: sealed[0].clone(),
                    },
                    SealedItem {
                        place: place("c", "f"),
                        sealed: after[0].clone(),
                    },
                ],
            })
            .expect("both keys open");
        assert_eq!(opened.0, vec!["before".to_owned(), "after".to_owned()]);
    }

    #[test]
    fn a_value_under_a_kid_the_ring_lacks_makes_the_actor_reload_at_once() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let settings = embedded(&dir);
        let mut vault = Vault::from_settings(&settings, Duration::from_secs(3600)).expect("vault");
        let first = vault.active_kid().to_owned();

        let second = keyring::rotate_file(&dir.path().join(keyring::KEYRING_FILE)).expect("rotates");
        assert_eq!(vault.active_kid(), first, "the interval has not passed");
        let elsewhere = KeyRing::load(&settings).expect("the rotated ring");
        let sealed = seal::seal(&elsewhere, ValuePlace::new("c", "f"), b"new").expect("seals");

        let opened = vault
            .unseal(&Unseal {
                items: vec![SealedItem {
                    place: place("c", "f"),
                    sealed,
                }],
            })
            .expect("opens after reloading");
        assert_eq!(opened.0, vec!["new".to_owned()]);
        assert_eq!(vault.active_kid(), second);
    }

    #[test]
    fn a_corrupt_key_file_leaves_the_loaded_ring_in_use() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut vault = Vault::from_settings(&embedded(&dir), Duration::ZERO).expect("vault");
        let kid = vault.active_kid().to_owned();
        let path = dir.path().join(keyring::KEYRING_FILE);
        std::fs::remove_file(&path).expect("removes");
        std::fs::write(&path, "{ not json").expect("writes");
        let sealed = vault.seal(&seal_op(&[("c", "f", "still works")])).expect("seals");
        assert_eq!(seal::inspect(&sealed[0]).expect("header").kid, kid);
    }

    #[test]
    fn keys_from_settings_are_never_reloaded() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let settings = Settings {
            vault: ttscm_runtime::settings::VaultSettings {
                keys: Some("k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()),
                ..Default::default()
            },
            ..embedded(&dir)
        };
        let vault = Vault::from_settings(&settings, Duration::ZERO).expect("vault");
        assert!(vault.watch.is_none());
        assert!(!dir.path().join(keyring::KEYRING_FILE).exists());
    }

    #[test]
    fn the_actor_prints_kids_but_no_key_bytes() {
        let key = [0x5au8; 32];
        let spec = format!(
            "k1:{}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key)
        );
        let vault = Vault::new(KeyRing::parse(&spec, None).expect("ring"));
        let printed = format!("{vault:?} {vault:#?}");
        assert!(printed.contains("k1"));
        assert!(!printed.contains("90, 90"), "{printed}");
        assert!(!printed.contains("Wlpa"), "{printed}");
    }
}
