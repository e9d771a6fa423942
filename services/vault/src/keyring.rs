//! The vault key ring: master keys by key id, one of them active. Keys are zeroized on drop and
//! never printed (`Debug` shows kids only).
//!
//! In mesh mode the ring comes from settings (`TTSCM_VAULT__KEYS`, `TTSCM_VAULT__ACTIVE_KID`) and
//! never changes while running. In embedded mode it lives in `<data_dir>/vault-keys.json`
//! (mode 0600): generated on first start, extended by [`rotate_file`] (`ttscm vault rotate`).
//! Every write goes to a temporary file that is renamed over the old one, under a lock file, so
//! a reader never sees half a file and two writers never lose each other's key.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use ttscm_runtime::Settings;
use zeroize::{Zeroize, Zeroizing};

/// File holding the embedded mode's generated key ring, inside the data dir.
pub const KEYRING_FILE: &str = "vault-keys.json";

/// Longest key id, in bytes (sealed blobs store the kid's length in one byte).
pub const MAX_KID_LEN: usize = 64;

/// Why the key ring cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    /// Settings or the key file are missing or malformed, or the key file cannot be written.
    #[error("{0}")]
    Config(String),
}

/// Master keys by kid.
pub struct KeyRing {
    /// Each kid's master key; zeroized when the ring is dropped.
    keys: BTreeMap<String, MasterKey>,
    /// The kid new values are sealed with; always a key of `keys`.
    active: String,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish()
    }
}

/// One master key, with its HKDF pseudorandom key precomputed (see [`crate::seal`]): extracting
/// it once per key instead of once per value saves a third of the per-value derivation.
struct MasterKey {
    /// The 32 bytes from settings or the key file.
    key: Zeroizing<[u8; 32]>,
    /// HKDF-Extract of `key` with vault's salt.
    prk: Zeroizing<[u8; 32]>,
}

impl MasterKey {
    fn new(key: Zeroizing<[u8; 32]>) -> Self {
        let prk = crate::seal::extract(&key);
        Self { key, prk }
    }
}

/// The key file's JSON: `{"active": kid, "keys": {kid: base64key}}`. Its key strings are
/// zeroized on drop.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    active: String,
    keys: BTreeMap<String, String>,
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        for key in self.keys.values_mut() {
            key.zeroize();
        }
    }
}

/// Whether `kid` is a usable key id: 1 to [`MAX_KID_LEN`] letters, digits, `-` or `_`.
pub fn is_valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl KeyRing {
    /// Parses `kid:base64key,…` with an optional active kid (default: the last listed).
    pub fn parse(spec: &str, active: Option<&str>) -> Result<Self, KeyRingError> {
        let mut entries = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (kid, key) = entry
                .split_once(':')
                .ok_or_else(|| KeyRingError::Config("TTSCM_VAULT__KEYS entries are kid:base64key".into()))?;
            entries.push((kid.trim(), key.trim()));
        }
        let active = match active {
            Some(kid) => kid,
            None => {
                entries
                    .last()
                    .ok_or_else(|| KeyRingError::Config("TTSCM_VAULT__KEYS holds no keys".into()))?
                    .0
            }
        };
        Self::from_entries(entries, active)
    }

    /// Builds a ring from `(kid, base64 key)` pairs.
    fn from_entries<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
        active: &str,
    ) -> Result<Self, KeyRingError> {
        let mut keys = BTreeMap::new();
        for (kid, key) in entries {
            if !is_valid_kid(kid) {
                return Err(KeyRingError::Config(format!(
                    "vault key id '{kid}' must be 1 to {MAX_KID_LEN} letters, digits, '-' or '_'"
                )));
            }
            let bytes = Zeroizing::new(
                STANDARD
                    .decode(key)
                    .map_err(|_| KeyRingError::Config(format!("vault key '{kid}' is not base64")))?,
            );
            let key: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| KeyRingError::Config(format!("vault key '{kid}' must be 32 bytes")))?;
            if keys
                .insert(kid.to_owned(), MasterKey::new(Zeroizing::new(key)))
                .is_some()
            {
                return Err(KeyRingError::Config(format!(
                    "vault key id '{kid}' is listed twice"
                )));
            }
        }
        if !keys.contains_key(active) {
            return Err(KeyRingError::Config(format!(
                "the active vault key '{active}' is not in the key ring"
            )));
        }
        Ok(Self {
            keys,
            active: active.to_owned(),
        })
    }

    /// Loads the ring the settings call for: configured, or (embedded store only) the data dir's.
    pub fn load(settings: &Settings) -> Result<Self, KeyRingError> {
        if let Some(spec) = &settings.vault.keys {
            return Self::parse(spec.expose_secret(), settings.vault.active_kid.as_deref());
        }
        match file_path(settings) {
            Some(path) => Self::load_or_create(&path),
            None => Err(KeyRingError::Config(
                "TTSCM_VAULT__KEYS is required with MongoDB (every vault replica needs the same keys); \
                 generate one with `ttscm keys vault-key`"
                    .into(),
            )),
        }
    }

    /// Reads the key file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, KeyRingError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io_error(path))?);
        let file: KeyFile = serde_json::from_str(&text)
            .map_err(|e| KeyRingError::Config(format!("{} is corrupt: {e}", path.display())))?;
        Self::from_entries(
            file.keys.iter().map(|(kid, key)| (kid.as_str(), key.as_str())),
            &file.active,
        )
    }

    /// Reads the key file at `path`, creating it with one new key if there is none.
    fn load_or_create(path: &Path) -> Result<Self, KeyRingError> {
        if path.exists() {
            return Self::from_file(path);
        }
        let _lock = lock(path)?;
        // Another process may have created it while this one waited for the lock.
        if path.exists() {
            return Self::from_file(path);
        }
        let ring = Self::empty().with_new_key();
        ring.write(path)?;
        tracing::info!(
            path = %path.display(),
            kid = ring.active,
            "generated the vault key ring; back this file up: without it sealed values cannot be opened"
        );
        Ok(ring)
    }

    fn empty() -> Self {
        Self {
            keys: BTreeMap::new(),
            active: String::new(),
        }
    }

    /// This ring plus a new random key, made active. Its kid is `v<unix seconds>`, with a
    /// counter appended if that kid is taken.
    fn with_new_key(mut self) -> Self {
        let base = format!("v{}", ttscm_runtime::clock::unix_now());
        let kid = std::iter::once(base.clone())
            .chain((2..).map(|n| format!("{base}-{n}")))
            .find(|kid| !self.keys.contains_key(kid))
            .expect("an unbounded sequence of kids holds one not in a finite ring");
        let key = Zeroizing::new(ttscm_runtime::ids::random_bytes::<32>());
        self.keys.insert(kid.clone(), MasterKey::new(key));
        self.active = kid;
        self
    }

    /// Writes the ring to `path` atomically (a 0600 temporary file renamed over it). The caller
    /// holds the lock.
    fn write(&self, path: &Path) -> Result<(), KeyRingError> {
        let file = KeyFile {
            active: self.active.clone(),
            keys: self
                .keys
                .iter()
                .map(|(kid, master)| (kid.clone(), STANDARD.encode(*master.key)))
                .collect(),
        };
        let json = Zeroizing::new(serde_json::to_vec_pretty(&file).expect("a key file serializes"));
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let temporary = sibling(path, "tmp");
        // A temporary file left by a crash is stale: the lock is held, nobody else writes it.
        if let Err(e) = std::fs::remove_file(&temporary)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(io_error(&temporary)(e));
        }
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut out = options.open(&temporary).map_err(io_error(&temporary))?;
        out.write_all(&json).map_err(io_error(&temporary))?;
        out.sync_all().map_err(io_error(&temporary))?;
        drop(out);
        std::fs::rename(&temporary, path).map_err(io_error(path))?;
        // Make the rename itself durable (best effort: not every platform can sync a directory).
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// The kid new values are sealed with.
    pub fn active_kid(&self) -> &str {
        &self.active
    }

    /// How many keys the ring holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the ring is empty (never, once loaded).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The master key of `kid`.
    pub fn key(&self, kid: &str) -> Option<&[u8; 32]> {
        self.keys.get(kid).map(|master| &*master.key)
    }

    /// The HKDF pseudorandom key of `kid`'s master key (what [`crate::seal`] derives from).
    pub(crate) fn prk(&self, kid: &str) -> Option<&[u8; 32]> {
        self.keys.get(kid).map(|master| &*master.prk)
    }

    /// The kids the ring holds, in order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}

/// Where the settings keep the key ring as a file: `<data_dir>/vault-keys.json` in embedded
/// mode, `None` when keys come from settings or the store is MongoDB (mesh mode).
pub fn file_path(settings: &Settings) -> Option<PathBuf> {
    (settings.vault.keys.is_none() && settings.mongodb_uri.is_none())
        .then(|| settings.data_dir.join(KEYRING_FILE))
}

/// Adds a new random key to the key file at `path` and makes it active; every old key stays,
/// so values sealed with them keep opening. Returns the new kid.
pub fn rotate_file(path: &Path) -> Result<String, KeyRingError> {
    let _lock = lock(path)?;
    if !path.exists() {
        return Err(KeyRingError::Config(format!(
            "there is no vault key ring at {} to rotate: vault creates it on its first start \
             (check TTSCM_DATA_DIR)",
            path.display()
        )));
    }
    let ring = KeyRing::from_file(path)?.with_new_key();
    ring.write(path)?;
    Ok(ring.active)
}

/// What identifies one version of the key file: if any part changes, the file was rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileVersion {
    modified: Option<SystemTime>,
    len: u64,
    /// The inode: every write renames a new file into place.
    #[cfg(unix)]
    inode: u64,
}

/// The version of the file at `path` now, or `None` if it cannot be read.
pub fn file_version(path: &Path) -> Option<FileVersion> {
    let metadata = std::fs::metadata(path).ok()?;
    Some(FileVersion {
        modified: metadata.modified().ok(),
        len: metadata.len(),
        #[cfg(unix)]
        inode: std::os::unix::fs::MetadataExt::ino(&metadata),
    })
}

/// Takes the exclusive lock guarding writes to the key file at `path` (held until dropped).
fn lock(path: &Path) -> Result<File, KeyRingError> {
    let lock_path = sibling(path, "lock");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(io_error(&lock_path))?;
    file.lock().map_err(io_error(&lock_path))?;
    Ok(file)
}

/// `path` with `.suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> KeyRingError + '_ {
    move |e| KeyRingError::Config(format!("cannot use {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_b64(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    #[test]
    fn the_last_listed_key_is_active_unless_one_is_named() {
        let spec = format!("a:{},b:{}", key_b64(1), key_b64(2));
        assert_eq!(KeyRing::parse(&spec, None).expect("valid").active_kid(), "b");
        assert_eq!(KeyRing::parse(&spec, Some("a")).expect("valid").active_kid(), "a");
        assert!(KeyRing::parse(&spec, Some("c")).is_err());
    }

    #[test]
    fn malformed_key_specs_are_refused() {
        assert!(KeyRing::parse("", None).is_err());
        assert!(KeyRing::parse("nocolon", None).is_err());
        assert!(KeyRing::parse("a:not-base64!", None).is_err());
        assert!(KeyRing::parse(&format!("a:{}", STANDARD.encode([1u8; 16])), None).is_err());
        assert!(KeyRing::parse(&format!("bad kid:{}", key_b64(1)), None).is_err());
        let long = "k".repeat(MAX_KID_LEN + 1);
        assert!(KeyRing::parse(&format!("{long}:{}", key_b64(1)), None).is_err());
        assert!(KeyRing::parse(&format!("a:{},a:{}", key_b64(1), key_b64(2)), None).is_err());
    }

    #[test]
    fn the_embedded_key_file_is_created_once_and_rotation_keeps_old_keys() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join(KEYRING_FILE);
        assert!(
            rotate_file(&path).is_err(),
            "nothing to rotate before the first start"
        );

        let first = KeyRing::load_or_create(&path).expect("created");
        let again = KeyRing::load_or_create(&path).expect("read back");
        assert_eq!(first.active_kid(), again.active_kid());
        assert_eq!(first.key(first.active_kid()), again.key(again.active_kid()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("exists").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let before = file_version(&path);
        let second = rotate_file(&path).expect("rotated");
        let third = rotate_file(&path).expect("rotated twice in one second");
        assert_ne!(second, first.active_kid());
        assert_ne!(third, second);
        assert_ne!(file_version(&path), before);
        let rotated = KeyRing::from_file(&path).expect("read back");
        assert_eq!(rotated.active_kid(), third);
        assert_eq!(rotated.len(), 3);
        assert_eq!(rotated.key(first.active_kid()), first.key(first.active_kid()));
    }
}
