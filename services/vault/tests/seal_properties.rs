//! Properties of the sealed-value format (`seal.rs`), checked with proptest: whatever string or
//! bytes arrive as a sealed value — random, or a real blob truncated, extended or with bytes
//! overwritten — [`open`] and [`inspect`] answer a [`SealError`] (never a panic, never a
//! plaintext); and a value sealed at one place opens there to the same bytes, and nowhere else.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use ttscm_vault::KeyRing;
use ttscm_vault::seal::{NONCE_LEN, SealError, TAG_LEN, VERSION, ValuePlace, inspect, open, seal};

/// A ring of two keys, `old` and the active `new`.
fn ring() -> KeyRing {
    let spec = format!(
        "old:{},new:{}",
        STANDARD.encode([0x11u8; 32]),
        STANDARD.encode([0xabu8; 32])
    );
    KeyRing::parse(&spec, Some("new")).expect("a valid test ring")
}

const HERE: ValuePlace<'static> = ValuePlace {
    credential_id: "c1",
    field_id: "password",
    version: None,
};

/// A blob with the format's header and whatever follows: version 1, a kid the ring holds (or
/// not, or not a kid at all), a kid length that may lie, then arbitrary bytes.
fn header_then_anything() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just(VERSION), any::<u8>()],
        prop_oneof![
            Just(b"new".to_vec()),
            Just(b"old".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..80),
        ],
        prop_oneof![Just(None), any::<u8>().prop_map(Some)],
        proptest::collection::vec(any::<u8>(), 0..(NONCE_LEN + TAG_LEN + 64)),
    )
        .prop_map(|(version, kid, lying_len, rest)| {
            let len = lying_len.unwrap_or(u8::try_from(kid.len()).unwrap_or(u8::MAX));
            let mut blob = vec![version, len];
            blob.extend_from_slice(&kid);
            blob.extend_from_slice(&rest);
            blob
        })
}

/// How a real blob is damaged.
#[derive(Debug, Clone)]
enum Damage {
    /// Cut to this length (modulo its length).
    Truncate(usize),
    /// Byte at this index (modulo the length) xor-ed with a non-zero mask.
    Flip(usize, u8),
    /// These bytes appended.
    Append(Vec<u8>),
    /// These bytes inserted at this index (modulo the length + 1).
    Insert(usize, Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), 1..=u8::MAX).prop_map(|(i, mask)| Damage::Flip(i, mask)),
        proptest::collection::vec(any::<u8>(), 1..32).prop_map(Damage::Append),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..32))
            .prop_map(|(i, bytes)| Damage::Insert(i, bytes)),
    ]
}

fn apply(blob: &mut Vec<u8>, damage: &Damage) {
    match damage {
        Damage::Truncate(len) => blob.truncate(len % blob.len()),
        Damage::Flip(i, mask) => {
            let i = i % blob.len();
            blob[i] ^= mask;
        }
        Damage::Append(bytes) => blob.extend_from_slice(bytes),
        Damage::Insert(i, bytes) => {
            let i = i % (blob.len() + 1);
            blob.splice(i..i, bytes.iter().copied());
        }
    }
}

/// An id as a credential or field might have one: any text, short.
fn id() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..12).prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #[test]
    fn any_string_as_a_sealed_value_is_refused_without_a_panic(sealed in any::<String>()) {
        // Random text is not a blob of this ring sealed here: only an error can come back.
        prop_assert!(open(&ring(), HERE, &sealed).is_err());
        let _ = inspect(&sealed);
    }

    #[test]
    fn any_bytes_as_a_sealed_value_are_refused_without_a_panic(
        blob in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let sealed = STANDARD.encode(&blob);
        let error = open(&ring(), HERE, &sealed).expect_err("random bytes do not open");
        if blob.first() != Some(&VERSION) {
            let expected = blob.first().map_or(SealError::Malformed, |&v| SealError::UnsupportedVersion(v));
            prop_assert_eq!(error, expected);
        }
        let _ = inspect(&sealed);
    }

    #[test]
    fn a_blob_with_the_format_header_and_anything_after_is_refused_without_a_panic(
        blob in header_then_anything(),
    ) {
        let sealed = STANDARD.encode(&blob);
        let error = open(&ring(), HERE, &sealed).expect_err("no key opens made-up bytes");
        prop_assert_ne!(error, SealError::Rng);
        if let Ok(header) = inspect(&sealed) {
            // What inspect reads back is what the blob says.
            prop_assert_eq!(header.version, VERSION);
            prop_assert_eq!(header.kid.as_bytes(), &blob[2..2 + header.kid.len()]);
        }
    }

    #[test]
    fn a_damaged_blob_never_opens(plaintext in proptest::collection::vec(any::<u8>(), 0..64), damage in damage()) {
        let ring = ring();
        let mut blob = STANDARD.decode(seal(&ring, HERE, &plaintext).expect("seals")).expect("base64");
        apply(&mut blob, &damage);
        prop_assert!(open(&ring, HERE, &STANDARD.encode(&blob)).is_err(), "{:?} still opened", damage);
    }

    #[test]
    fn a_sealed_value_opens_at_its_place_and_nowhere_else(
        plaintext in proptest::collection::vec(any::<u8>(), 0..2048),
        (credential, field) in (id(), id()),
        (other_credential, other_field) in (id(), id()),
    ) {
        let ring = ring();
        let here = ValuePlace::new(&credential, &field);
        let sealed = seal(&ring, here, &plaintext).expect("seals");
        let opened = open(&ring, here, &sealed).expect("opens at its place");
        prop_assert_eq!(opened.as_bytes(), &plaintext[..]);
        let elsewhere = ValuePlace::new(&other_credential, &other_field);
        if elsewhere != here {
            prop_assert_eq!(open(&ring, elsewhere, &sealed).unwrap_err(), SealError::DoesNotOpen);
        }
        // Sealing twice never gives the same blob (random nonces).
        prop_assert_ne!(seal(&ring, here, &plaintext).expect("seals"), sealed);
    }
}
