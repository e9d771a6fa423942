//! The access-token signing key (Ed25519, `EdDSA` in JWT terms): from settings in mesh mode (a
//! k8s Secret shared by all identity replicas), generated once and kept in the data dir in
//! embedded mode.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};
use secrecy::{ExposeSecret, SecretSlice};
use serde::{Deserialize, Serialize};
use ttscm_contract::identity::{AccessClaims, PublicKey};
use ttscm_runtime::Settings;

use crate::IdentityError;

/// File holding the embedded mode's generated key, inside the data dir.
pub const KEY_FILE: &str = "identity-signing-key.json";

/// The signing key; `Debug` never shows the private half.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    pkcs8: SecretSlice<u8>,
    public: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("private", &"***")
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    kid: String,
    pkcs8: String,
}

impl SigningKey {
    /// A key from base64 PKCS#8 DER.
    pub fn from_base64(kid: &str, pkcs8_base64: &str) -> Result<Self, IdentityError> {
        let bad =
            || IdentityError::Config("TTSCM_IDENTITY__SIGNING_KEY is not a base64 PKCS#8 Ed25519 key".into());
        let der = STANDARD.decode(pkcs8_base64.trim()).map_err(|_| bad())?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|_| bad())?;
        Ok(Self {
            kid: kid.to_owned(),
            public: pair.public_key().as_ref().to_vec(),
            pkcs8: der.into(),
        })
    }

    /// A new random key.
    pub fn generate(kid: &str) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let der = Ed25519KeyPair::generate_pkcs8(&rng).expect("the OS random number generator is available");
        Self::from_base64(kid, &STANDARD.encode(der.as_ref())).expect("a freshly generated key parses")
    }

    /// The private key as base64 PKCS#8, for `ttscm keys generate`-style output.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.pkcs8.expose_secret())
    }

    /// Loads the key the settings call for: the configured one, or (embedded store only) the one
    /// in the data dir, generated on first start.
    pub fn load(settings: &Settings) -> Result<Self, IdentityError> {
        let kid = settings
            .identity
            .signing_kid
            .clone()
            .unwrap_or_else(|| "k1".into());
        if let Some(key) = &settings.identity.signing_key {
            return Self::from_base64(&kid, key.expose_secret());
        }
        if settings.mongodb_uri.is_some() {
            return Err(IdentityError::Config(
                "TTSCM_IDENTITY__SIGNING_KEY is required with MongoDB (every identity replica must sign with the same key); \
                 generate one with `ttscm keys signing-key`"
                    .into(),
            ));
        }
        Self::load_or_create(&settings.data_dir.join(KEY_FILE))
    }

    fn load_or_create(path: &Path) -> Result<Self, IdentityError> {
        let io = |e: std::io::Error| IdentityError::Config(format!("cannot use {}: {e}", path.display()));
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let file: KeyFile = serde_json::from_str(&text)
                    .map_err(|e| IdentityError::Config(format!("{} is corrupt: {e}", path.display())))?;
                Self::from_base64(&file.kid, &file.pkcs8)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate(&format!("k{}", ttscm_runtime::clock::unix_now()));
                let file = KeyFile {
                    kid: key.kid.clone(),
                    pkcs8: key.to_base64(),
                };
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                ttscm_runtime::ed25519::write_private(
                    path,
                    &serde_json::to_vec(&file).expect("key file serializes"),
                )
                .map_err(io)?;
                tracing::info!(path = %path.display(), kid = %key.kid, "generated the access-token signing key");
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half as the edge receives it.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            kid: self.kid.clone(),
            alg: "EdDSA".into(),
            x: URL_SAFE_NO_PAD.encode(&self.public),
        }
    }

    /// Signs access-token claims.
    pub fn sign(&self, claims: &AccessClaims) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let key = EncodingKey::from_ed_der(self.pkcs8.expose_secret());
        jsonwebtoken::encode(&header, claims, &key)
            .expect("Ed25519 signing of serializable claims cannot fail")
    }
}
