//! An Ed25519 key as the components keep it (base64 PKCS#8 DER in a setting, or a file in the
//! data dir in embedded mode) and sign JWTs with (`EdDSA`, `jsonwebtoken`): the mesh's
//! principal keys and vault's audit-checkpoint key.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{DecodingKey, EncodingKey};
use ring::signature::{Ed25519KeyPair, KeyPair};
use secrecy::{ExposeSecret, SecretSlice};

/// A problem with a key setting or file (exit 64).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// An Ed25519 key pair; `Debug` never shows the private half.
#[derive(Clone)]
pub struct Ed25519Key {
    pkcs8: SecretSlice<u8>,
    public: Vec<u8>,
}

impl std::fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519Key")
            .field("public", &self.public_base64())
            .field("private", &"***")
            .finish()
    }
}

impl Ed25519Key {
    /// A key from base64 PKCS#8 DER; `setting` names where it came from in the error.
    pub fn from_base64(setting: &str, text: &str) -> Result<Self, KeyError> {
        let bad = || KeyError(format!("{setting} is not a base64 PKCS#8 Ed25519 key"));
        let der = STANDARD.decode(text.trim()).map_err(|_| bad())?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|_| bad())?;
        Ok(Self {
            public: pair.public_key().as_ref().to_vec(),
            pkcs8: der.into(),
        })
    }

    /// A new random key.
    pub fn generate() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let der = Ed25519KeyPair::generate_pkcs8(&rng).expect("the OS random number generator is available");
        Self::from_base64("a new key", &STANDARD.encode(der.as_ref()))
            .expect("a freshly generated key parses")
    }

    /// The key kept in the file at `path` (base64 PKCS#8, owner-readable only), made and written
    /// there first when the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let io = |e: std::io::Error| KeyError(format!("cannot use {}: {e}", path.display()));
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_base64(&path.display().to_string(), &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                write_private(path, key.to_base64().as_bytes()).map_err(io)?;
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The private key as base64 PKCS#8 (what a setting holds).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.pkcs8.expose_secret())
    }

    /// The public half, raw (32 bytes).
    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// The public half, base64url without padding.
    pub fn public_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.public)
    }

    /// A short id of the public half: the first 16 hex digits of its SHA-256.
    pub fn key_id(&self) -> String {
        key_id(&self.public)
    }

    /// The key to sign JWTs with (`EdDSA`).
    pub fn encoding_key(&self) -> EncodingKey {
        EncodingKey::from_ed_der(self.pkcs8.expose_secret())
    }
}

/// The id of the public key `public` (see [`Ed25519Key::key_id`]).
pub fn key_id(public: &[u8]) -> String {
    hex::encode(&ring::digest::digest(&ring::digest::SHA256, public).as_ref()[..8])
}

/// A public key from base64url (or standard base64), for verifying `EdDSA` JWTs; `what` names
/// it in the error.
pub fn public_key(what: &str, text: &str) -> Result<(Vec<u8>, DecodingKey), KeyError> {
    let text = text.trim().trim_end_matches('=');
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .ok()
        .filter(|b| b.len() == 32)
        .ok_or_else(|| KeyError(format!("{what} is not a base64url Ed25519 public key")))?;
    let key = DecodingKey::from_ed_der(&bytes);
    Ok((bytes, key))
}

/// Writes a file readable only by its owner; refuses to replace one (generated keys).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key survives its text form and its file; the file is private; a public key parses back.
    #[test]
    fn a_key_round_trips_through_its_setting_and_its_file() {
        let key = Ed25519Key::generate();
        let again = Ed25519Key::from_base64("X", &key.to_base64()).expect("parses");
        assert_eq!(again.public(), key.public());
        assert_eq!(key.key_id().len(), 16);
        let error = Ed25519Key::from_base64("TTSCM_X", "nope").expect_err("refused");
        assert_eq!(error.to_string(), "TTSCM_X is not a base64 PKCS#8 Ed25519 key");
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("k");
        let made = Ed25519Key::load_or_create(&path).expect("made");
        let read = Ed25519Key::load_or_create(&path).expect("read");
        assert_eq!(made.public(), read.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (bytes, _) = public_key("k", &key.public_base64()).expect("parses");
        assert_eq!(bytes, key.public());
        assert!(public_key("k", "short").is_err());
    }
}
