//! The vault key ring: master keys by key id, one of them active. Keys are zeroized on drop and
//! never printed (`Debug` shows kids only).

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use ttscm_runtime::Settings;
use zeroize::Zeroizing;

/// File holding the embedded mode's generated key ring, inside the data dir.
pub const KEYRING_FILE: &str = "vault-keys.json";

/// Why the key ring cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    /// Settings or the key file are missing or malformed.
    #[error("{0}")]
    Config(String),
}

/// Master keys by kid.
pub struct KeyRing {
    keys: BTreeMap<String, Zeroizing<[u8; 32]>>,
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

#[derive(Serialize, Deserialize)]
struct KeyFile {
    active: String,
    keys: BTreeMap<String, String>,
}

impl KeyRing {
    /// Parses `kid:base64key,…` with an optional active kid (default: the last listed).
    pub fn parse(spec: &str, active: Option<&str>) -> Result<Self, KeyRingError> {
        let mut keys = BTreeMap::new();
        let mut last = None;
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (kid, key) = entry
                .split_once(':')
                .ok_or_else(|| KeyRingError::Config("TTSCM_VAULT__KEYS entries are kid:base64key".into()))?;
            let kid = kid.trim();
            if kid.is_empty()
                || !kid
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(KeyRingError::Config(format!(
                    "vault key id '{kid}' must be letters, digits, '-' or '_'"
                )));
            }
            let bytes = Zeroizing::new(
                STANDARD
                    .decode(key.trim())
                    .map_err(|_| KeyRingError::Config(format!("vault key '{kid}' is not base64")))?,
            );
            let key: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| KeyRingError::Config(format!("vault key '{kid}' must be 32 bytes")))?;
            keys.insert(kid.to_owned(), Zeroizing::new(key));
            last = Some(kid.to_owned());
        }
        let active = match active {
            Some(kid) => kid.to_owned(),
            None => last.ok_or_else(|| KeyRingError::Config("TTSCM_VAULT__KEYS holds no keys".into()))?,
        };
        if !keys.contains_key(&active) {
            return Err(KeyRingError::Config(format!(
                "the active vault key '{active}' is not in the key ring"
            )));
        }
        Ok(Self { keys, active })
    }

    /// Loads the ring the settings call for: configured, or (embedded store only) the data dir's.
    pub fn load(settings: &Settings) -> Result<Self, KeyRingError> {
        if let Some(spec) = &settings.vault.keys {
            return Self::parse(spec.expose_secret(), settings.vault.active_kid.as_deref());
        }
        if settings.mongodb_uri.is_some() {
            return Err(KeyRingError::Config(
                "TTSCM_VAULT__KEYS is required with MongoDB (every vault replica needs the same keys); \
                 generate one with `ttscm keys vault-key`"
                    .into(),
            ));
        }
        Self::load_or_create(&settings.data_dir.join(KEYRING_FILE))
    }

    fn load_or_create(path: &Path) -> Result<Self, KeyRingError> {
        let io = |e: std::io::Error| KeyRingError::Config(format!("cannot use {}: {e}", path.display()));
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let file: KeyFile = serde_json::from_str(&text)
                    .map_err(|e| KeyRingError::Config(format!("{} is corrupt: {e}", path.display())))?;
                let spec: Vec<String> = file.keys.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                Self::parse(&spec.join(","), Some(&file.active))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let kid = format!("v{}", ttscm_runtime::clock::unix_now());
                let key = Zeroizing::new(ttscm_runtime::ids::random_bytes::<32>());
                let file = KeyFile {
                    active: kid.clone(),
                    keys: BTreeMap::from([(kid.clone(), STANDARD.encode(*key))]),
                };
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                write_private(path, &serde_json::to_vec(&file).expect("key file serializes")).map_err(io)?;
                tracing::info!(path = %path.display(), kid, "generated the vault key ring; back this file up");
                Ok(Self {
                    keys: BTreeMap::from([(kid.clone(), key)]),
                    active: kid,
                })
            }
            Err(e) => Err(io(e)),
        }
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
        self.keys.get(kid).map(|k| &**k)
    }
}

/// Writes a file readable only by its owner.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}
