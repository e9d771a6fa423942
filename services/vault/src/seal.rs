//! The sealed-value format and its crypto: pure functions over a [`KeyRing`], no I/O.
//!
//! A sealed value is, base64 (standard alphabet, padded) on the wire:
//!
//! ```text
//! version (1 byte, = 1) | kid length (1 byte) | kid | nonce (24 bytes) | tag (16 bytes) | ciphertext
//! ```
//!
//! `tag | ciphertext` is XSalsa20-Poly1305's output in NaCl `secretbox` layout. The nonce is 24
//! random bytes from the OS RNG, so nonces never need coordinating between replicas.
//!
//! The key of each value is derived with HKDF-SHA256 from the kid's master key, salt
//! [`HKDF_SALT`], and an info string binding the value's place and the blob's header: the
//! version, the kid, the credential id and the field id, each length-prefixed so that no two
//! (kid, credential, field) triples share an info string, then — for values written since
//! credentials have versions — the credential version in which the value was written (8 bytes,
//! big-endian; a value from before has no such suffix, so the two kinds never share a key). A
//! blob copied to another credential, field or credential version, or given another kid or
//! format version, is opened with a different key and fails authentication: [`open`] returns an
//! error, never someone else's plaintext.
//!
//! HKDF-Extract depends on the master key only, so the key ring computes it once per key
//! ([`extract`]) and each value costs one HKDF-Expand.
//!
//! Derived keys and plaintext buffers are zeroized after use; [`Plaintext`] zeroizes itself and
//! prints `***`. (ring's HMAC keeps short-lived internal state on the stack that it does not
//! zeroize; that is the one copy of key-derived material this module cannot wipe.)

use std::ops::Range;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hkdf, hmac};
use ttscm_contract::vault::Place;
use xsalsa20poly1305::aead::{AeadInPlace, KeyInit};
use xsalsa20poly1305::{Key, Nonce, Tag, XSalsa20Poly1305};
use zeroize::{Zeroize, Zeroizing};

use crate::keyring::{KeyRing, is_valid_kid};

/// The format version this code writes (and the only one it reads).
pub const VERSION: u8 = 1;

/// Length of the random nonce, in bytes.
pub const NONCE_LEN: usize = 24;

/// Length of the Poly1305 tag, in bytes.
pub const TAG_LEN: usize = 16;

/// HKDF salt: fixed, naming the scheme, so keys derived here are used nowhere else.
pub const HKDF_SALT: &[u8] = b"ttscm-vault-v1";

/// Where a value lives, as the key derivation sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValuePlace<'a> {
    /// The credential's id.
    pub credential_id: &'a str,
    /// The field's id within the credential's type.
    pub field_id: &'a str,
    /// The credential version in which the value was written (`None`: from before versions).
    pub version: Option<u64>,
}

impl<'a> ValuePlace<'a> {
    /// The place of field `field_id` of credential `credential_id`, unversioned.
    pub fn new(credential_id: &'a str, field_id: &'a str) -> Self {
        Self {
            credential_id,
            field_id,
            version: None,
        }
    }

    /// This place as written in credential version `version`.
    pub fn at_version(self, version: u64) -> Self {
        Self {
            version: Some(version),
            ..self
        }
    }
}

impl<'a> From<&'a Place> for ValuePlace<'a> {
    fn from(place: &'a Place) -> Self {
        Self {
            version: place.version,
            ..Self::new(&place.credential_id, &place.field_id)
        }
    }
}

/// Why a value could not be sealed or opened. Messages name no plaintext and no key bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Not base64, too short, or a header that does not parse.
    #[error("the sealed value is malformed")]
    Malformed,
    /// A format version this code does not know.
    #[error("sealed-value format version {0} is not supported")]
    UnsupportedVersion(u8),
    /// Sealed with a key the ring does not hold (kids are not secret).
    #[error("the sealed value uses vault key '{0}', which is not in the key ring")]
    UnknownKid(String),
    /// Authentication failed: sealed for another place, or altered.
    #[error("the sealed value does not open at this place")]
    DoesNotOpen,
    /// The OS random number generator failed.
    #[error("the operating system's random number generator failed")]
    Rng,
}

/// An opened value. Zeroized on drop; `Debug` prints `***`.
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The value as text, or `None` if it is not UTF-8 (then the bytes are zeroized). The
    /// `String` is the caller's to protect from here on.
    pub fn into_string(mut self) -> Option<String> {
        match String::from_utf8(std::mem::take(&mut *self.0)) {
            Ok(text) => Some(text),
            Err(error) => {
                error.into_bytes().zeroize();
                None
            }
        }
    }
}

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Plaintext(***)")
    }
}

/// The readable header of a sealed value (nothing in it is secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobHeader {
    /// Format version.
    pub version: u8,
    /// The kid of the master key it was sealed with.
    pub kid: String,
    /// The random nonce.
    pub nonce: [u8; NONCE_LEN],
}

/// Byte ranges of a blob's parts.
struct Layout {
    kid: Range<usize>,
    nonce: Range<usize>,
    tag: Range<usize>,
    /// Where the ciphertext starts (it runs to the end).
    body: usize,
}

impl Layout {
    fn parse(blob: &[u8]) -> Result<Self, SealError> {
        let (&version, _) = blob.split_first().ok_or(SealError::Malformed)?;
        if version != VERSION {
            return Err(SealError::UnsupportedVersion(version));
        }
        let kid_len = usize::from(*blob.get(1).ok_or(SealError::Malformed)?);
        let kid = 2..2 + kid_len;
        let nonce = kid.end..kid.end + NONCE_LEN;
        let tag = nonce.end..nonce.end + TAG_LEN;
        if blob.len() < tag.end {
            return Err(SealError::Malformed);
        }
        let kid_text = std::str::from_utf8(&blob[kid.clone()]).map_err(|_| SealError::Malformed)?;
        if !is_valid_kid(kid_text) {
            return Err(SealError::Malformed);
        }
        Ok(Self {
            kid,
            nonce,
            body: tag.end,
            tag,
        })
    }

    fn kid<'b>(&self, blob: &'b [u8]) -> &'b str {
        std::str::from_utf8(&blob[self.kid.clone()]).expect("Layout::parse checked the kid is UTF-8")
    }
}

/// HKDF-Extract (RFC 5869 §2.2) of `master` with [`HKDF_SALT`]: `HMAC-SHA256(salt, master)`.
pub(crate) fn extract(master: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, HKDF_SALT), master);
    let mut prk = Zeroizing::new([0u8; 32]);
    prk.copy_from_slice(tag.as_ref());
    prk
}

/// Derives the key of the value at `place` sealed under `kid`, from the HKDF pseudorandom key
/// `prk` of `kid`'s master key (HKDF-Expand, RFC 5869 §2.3).
fn derive_key(prk: &[u8; 32], kid: &str, place: ValuePlace<'_>) -> Zeroizing<[u8; 32]> {
    let length = |text: &str| {
        u64::try_from(text.len())
            .expect("a length always fits in 64 bits")
            .to_be_bytes()
    };
    let (kid_len, credential_len, field_len) =
        (length(kid), length(place.credential_id), length(place.field_id));
    let written_in = place.version.map(u64::to_be_bytes);
    let info: [&[u8]; 8] = [
        &[VERSION],
        &kid_len,
        kid.as_bytes(),
        &credential_len,
        place.credential_id.as_bytes(),
        &field_len,
        place.field_id.as_bytes(),
        written_in.as_ref().map_or(&[], |v| v.as_slice()),
    ];
    // `prk` is the output of HKDF-Extract, a uniformly random key, which is what ring's
    // "less safe" constructor asks for.
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, prk);
    let okm = prk
        .expand(&info, hkdf::HKDF_SHA256)
        .expect("32 bytes is within HKDF-SHA256's output limit");
    let mut key = Zeroizing::new([0u8; 32]);
    okm.fill(&mut *key)
        .expect("the output length is the key type's length, 32 bytes");
    key
}

fn cipher(key: &[u8; 32]) -> XSalsa20Poly1305 {
    // The cipher keeps its own copy of the key and zeroizes it on drop.
    XSalsa20Poly1305::new(Key::from_slice(key))
}

/// Seals `plaintext` for `place` with the ring's active key; returns the blob, base64.
pub fn seal(ring: &KeyRing, place: ValuePlace<'_>, plaintext: &[u8]) -> Result<String, SealError> {
    let kid = ring.active_kid();
    let prk = ring
        .prk(kid)
        .expect("the active kid is always in the ring (KeyRing checks on load)");
    let kid_len = u8::try_from(kid.len()).expect("kids are at most 64 bytes (KeyRing checks on load)");
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).map_err(|_| SealError::Rng)?;

    let body = 2 + kid.len() + NONCE_LEN + TAG_LEN;
    let mut blob = Vec::with_capacity(body + plaintext.len());
    blob.push(VERSION);
    blob.push(kid_len);
    blob.extend_from_slice(kid.as_bytes());
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&[0u8; TAG_LEN]);
    // The plaintext is copied only here, and encrypted in place right away.
    blob.extend_from_slice(plaintext);

    let key = derive_key(prk, kid, place);
    let tag = cipher(&key)
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), b"", &mut blob[body..])
        .expect("XSalsa20-Poly1305 encrypts any plaintext when there is no associated data");
    blob[body - TAG_LEN..body].copy_from_slice(&tag);
    Ok(STANDARD.encode(&blob))
}

/// Opens the blob `sealed` (base64) as the value at `place`. Fails unless it was sealed for
/// exactly this place, with a key in the ring, and is unaltered.
pub fn open(ring: &KeyRing, place: ValuePlace<'_>, sealed: &str) -> Result<Plaintext, SealError> {
    let mut blob = Zeroizing::new(STANDARD.decode(sealed).map_err(|_| SealError::Malformed)?);
    let layout = Layout::parse(&blob)?;
    let kid = layout.kid(&blob);
    let prk = ring
        .prk(kid)
        .ok_or_else(|| SealError::UnknownKid(kid.to_owned()))?;
    let key = derive_key(prk, kid, place);
    let nonce = *Nonce::from_slice(&blob[layout.nonce.clone()]);
    let tag = *Tag::from_slice(&blob[layout.tag.clone()]);
    cipher(&key)
        .decrypt_in_place_detached(&nonce, b"", &mut blob[layout.body..], &tag)
        .map_err(|_| SealError::DoesNotOpen)?;
    // Move the plaintext to the front and clear the rest, so the buffer holds nothing else.
    let len = blob.len() - layout.body;
    blob.copy_within(layout.body.., 0);
    blob[len..].fill(0);
    blob.truncate(len);
    Ok(Plaintext(blob))
}

/// Reads the header of `sealed` without opening it.
pub fn inspect(sealed: &str) -> Result<BlobHeader, SealError> {
    let blob = STANDARD.decode(sealed).map_err(|_| SealError::Malformed)?;
    let layout = Layout::parse(&blob)?;
    Ok(BlobHeader {
        version: VERSION,
        kid: layout.kid(&blob).to_owned(),
        nonce: blob[layout.nonce.clone()]
            .try_into()
            .expect("Layout::parse made the nonce range NONCE_LEN long"),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const OLD_KEY: [u8; 32] = [0x11; 32];
    const NEW_KEY: [u8; 32] = [0xab; 32];

    fn ring(entries: &[(&str, [u8; 32])], active: &str) -> KeyRing {
        let spec: Vec<String> = entries
            .iter()
            .map(|(kid, key)| format!("{kid}:{}", STANDARD.encode(key)))
            .collect();
        KeyRing::parse(&spec.join(","), Some(active)).expect("a valid test ring")
    }

    fn old_ring() -> KeyRing {
        ring(&[("old", OLD_KEY)], "old")
    }

    fn rotated_ring() -> KeyRing {
        ring(&[("old", OLD_KEY), ("new", NEW_KEY)], "new")
    }

    const HERE: ValuePlace<'static> = ValuePlace {
        credential_id: "c1",
        field_id: "password",
        version: None,
    };

    #[test]
    fn the_precomputed_extract_is_rings_hkdf_extract() {
        let info: [&[u8]; 1] = [b"info"];
        let mut expected = [0u8; 32];
        hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT)
            .extract(&OLD_KEY)
            .expand(&info, hkdf::HKDF_SHA256)
            .expect("expands")
            .fill(&mut expected)
            .expect("fills");
        let mut actual = [0u8; 32];
        hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &*extract(&OLD_KEY))
            .expand(&info, hkdf::HKDF_SHA256)
            .expect("expands")
            .fill(&mut actual)
            .expect("fills");
        assert_eq!(actual, expected);
    }

    #[test]
    fn a_sealed_value_opens_at_its_place() {
        let ring = old_ring();
        for plaintext in [&b""[..], b"hunter2", &[0xffu8; 4096][..]] {
            let sealed = seal(&ring, HERE, plaintext).expect("seals");
            assert_eq!(open(&ring, HERE, &sealed).expect("opens").as_bytes(), plaintext);
        }
    }

    #[test]
    fn the_blob_has_the_documented_layout() {
        let ring = old_ring();
        let sealed = seal(&ring, HERE, b"abc").expect("seals");
        let blob = STANDARD.decode(&sealed).expect("base64");
        assert_eq!(blob[0], VERSION);
        assert_eq!(usize::from(blob[1]), "old".len());
        assert_eq!(&blob[2..5], b"old");
        assert_eq!(blob.len(), 2 + 3 + NONCE_LEN + TAG_LEN + 3);
        let header = inspect(&sealed).expect("inspects");
        assert_eq!(header.kid, "old");
        assert_eq!(&header.nonce[..], &blob[5..5 + NONCE_LEN]);
    }

    #[test]
    fn a_hundred_thousand_seals_never_repeat_a_nonce() {
        let ring = old_ring();
        let mut nonces = HashSet::new();
        for _ in 0..100_000 {
            let sealed = seal(&ring, HERE, b"").expect("seals");
            let nonce = inspect(&sealed).expect("inspects").nonce;
            assert!(
                nonces.insert(nonce),
                "nonce repeated after {} seals",
                nonces.len()
            );
        }
    }

    #[test]
    fn a_blob_copied_to_another_credential_or_field_does_not_open() {
        let ring = old_ring();
        let sealed = seal(&ring, HERE, b"secret").expect("seals");
        for elsewhere in [
            ValuePlace::new("c2", "password"),
            ValuePlace::new("c1", "pin"),
            // Length prefixes keep these from sharing the derivation input with ("c1", "password").
            ValuePlace::new("c1p", "assword"),
            ValuePlace::new("c", "1password"),
        ] {
            assert_eq!(
                open(&ring, elsewhere, &sealed).unwrap_err(),
                SealError::DoesNotOpen
            );
        }
    }

    #[test]
    fn a_blob_opens_only_in_the_credential_version_it_was_written_in() {
        let ring = old_ring();
        let at_three = HERE.at_version(3);
        let sealed = seal(&ring, at_three, b"secret").expect("seals");
        assert_eq!(
            open(&ring, at_three, &sealed).expect("opens").as_bytes(),
            b"secret"
        );
        for elsewhere in [
            HERE,
            HERE.at_version(2),
            HERE.at_version(4),
            HERE.at_version(3 << 32),
        ] {
            assert_eq!(
                open(&ring, elsewhere, &sealed).unwrap_err(),
                SealError::DoesNotOpen
            );
        }
        // A value from before versions opens only unversioned (not as "version 0").
        let unversioned = seal(&ring, HERE, b"old").expect("seals");
        assert_eq!(open(&ring, HERE, &unversioned).expect("opens").as_bytes(), b"old");
        assert_eq!(
            open(&ring, HERE.at_version(0), &unversioned).unwrap_err(),
            SealError::DoesNotOpen
        );
    }

    #[test]
    fn flipping_any_bit_of_a_blob_makes_it_fail_to_open() {
        let ring = old_ring();
        let sealed = seal(&ring, HERE, b"0123456789abcdef").expect("seals");
        let blob = STANDARD.decode(&sealed).expect("base64");
        for bit in 0..blob.len() * 8 {
            let mut tampered = blob.clone();
            tampered[bit / 8] ^= 1 << (bit % 8);
            let result = open(&ring, HERE, &STANDARD.encode(&tampered));
            assert!(result.is_err(), "bit {bit} flipped still opened");
        }
    }

    #[test]
    fn truncated_or_garbled_blobs_are_malformed() {
        let ring = old_ring();
        let sealed = seal(&ring, HERE, b"x").expect("seals");
        let blob = STANDARD.decode(&sealed).expect("base64");
        for len in 0..2 + 3 + NONCE_LEN + TAG_LEN {
            let short = STANDARD.encode(&blob[..len]);
            assert!(open(&ring, HERE, &short).is_err(), "{len} bytes opened");
        }
        assert_eq!(
            open(&ring, HERE, "not base64!").unwrap_err(),
            SealError::Malformed
        );
        let mut other_version = blob.clone();
        other_version[0] = 2;
        assert_eq!(
            open(&ring, HERE, &STANDARD.encode(&other_version)).unwrap_err(),
            SealError::UnsupportedVersion(2)
        );
    }

    #[test]
    fn a_blob_under_an_unknown_kid_names_the_kid() {
        let sealed = seal(&rotated_ring(), HERE, b"secret").expect("seals");
        assert_eq!(
            open(&old_ring(), HERE, &sealed).unwrap_err(),
            SealError::UnknownKid("new".into())
        );
    }

    #[test]
    fn after_rotation_old_blobs_open_and_new_blobs_use_the_new_kid() {
        let before = seal(&old_ring(), HERE, b"old secret").expect("seals");
        let rotated = rotated_ring();
        assert_eq!(
            open(&rotated, HERE, &before).expect("opens").as_bytes(),
            b"old secret"
        );
        let after = seal(&rotated, HERE, b"new secret").expect("seals");
        assert_eq!(inspect(&after).expect("inspects").kid, "new");
        assert_eq!(
            open(&rotated, HERE, &after).expect("opens").as_bytes(),
            b"new secret"
        );
    }

    #[test]
    fn the_same_key_under_another_kid_does_not_open_a_blob() {
        let sealed = seal(&old_ring(), HERE, b"secret").expect("seals");
        let mut blob = STANDARD.decode(&sealed).expect("base64");
        blob[2..5].copy_from_slice(b"odl");
        let twin = ring(&[("odl", OLD_KEY)], "odl");
        assert_eq!(
            open(&twin, HERE, &STANDARD.encode(&blob)).unwrap_err(),
            SealError::DoesNotOpen
        );
    }

    #[test]
    fn debug_output_never_shows_keys_or_plaintext() {
        let ring = rotated_ring();
        let sealed = seal(&ring, HERE, b"canary-plaintext").expect("seals");
        let plaintext = open(&ring, HERE, &sealed).expect("opens");
        let printed = format!(
            "{ring:?} {ring:#?} {plaintext:?} {plaintext:#?} {:?}",
            open(&old_ring(), HERE, &sealed),
        );
        assert!(!printed.contains("canary"), "{printed}");
        for key in [OLD_KEY, NEW_KEY] {
            assert!(!printed.contains(&STANDARD.encode(key)), "{printed}");
            assert!(!printed.contains(&format!("{}, {}", key[0], key[1])), "{printed}");
            assert!(
                !printed.contains(&format!("{:02x}{:02x}", key[0], key[1])),
                "{printed}"
            );
        }
        assert_eq!(format!("{plaintext:?}"), "Plaintext(***)");
    }

    #[test]
    fn plaintext_converts_to_a_string_only_when_it_is_utf8() {
        let ring = old_ring();
        let text = seal(&ring, HERE, "pässword".as_bytes()).expect("seals");
        assert_eq!(
            open(&ring, HERE, &text).expect("opens").into_string().as_deref(),
            Some("pässword")
        );
        let bytes = seal(&ring, HERE, &[0xff, 0xfe]).expect("seals");
        assert_eq!(open(&ring, HERE, &bytes).expect("opens").into_string(), None);
    }
}
