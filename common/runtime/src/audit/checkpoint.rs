//! Signed checkpoints: a head of the chain ([`AuditHead`]) signed by vault's checkpoint key, and
//! the one way a log is checked — online by [`super::AuditLog::verify_against`], offline (an
//! exported log, `ttscm audit verify`) by [`verify_lines`] — against the chain and a checkpoint.
//!
//! The chain alone cannot show that its newest entries were deleted, or that the whole log was
//! rewritten and rehashed: both still verify. A checkpoint can. Vault (the only holder of key
//! material) signs the head periodically and on demand; copies kept outside TTSCM (the
//! `audit.checkpoint` events, a SIEM) outlive a store writer's edits. Against a checkpoint, a
//! log that ends before its `seq` was **truncated**, one whose entry at its `seq` has another
//! hash was **rewritten**. Entries appended after the newest checkpoint a verifier holds are
//! covered by the chain only.
//!
//! The token is a compact JWS (`EdDSA`, header `typ` [`TOKEN_TYPE`], `kid` the key's id) over
//! `{"seq", "hash", "iat"}`: any JOSE library verifies it with the public key.

use std::io::BufRead;

use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use ttscm_contract::audit::{
    AuditCheckpoint, AuditEntry, AuditVerification, CheckpointCheck, CheckpointOutcome,
};

use super::{AuditHead, GENESIS, entry_hash};
use crate::clock;
use crate::ed25519::Ed25519Key;

/// The JWT type of a checkpoint (so no other token of ours passes as one).
pub const TOKEN_TYPE: &str = "ttscm-audit-checkpoint+jwt";

#[derive(Serialize, Deserialize)]
struct Claims {
    seq: u64,
    hash: String,
    iat: u64,
}

/// Why a checkpoint token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Not a checkpoint token, or not signed by the key it was checked with.
    #[error("the checkpoint is not one signed by this vault's checkpoint key")]
    BadSignature,
    /// Signed, but its claims are not a head (no seq, a hash that is not 64 hex digits).
    #[error("the checkpoint's claims are not a head of the audit chain")]
    Malformed,
}

/// A checkpoint's content once its signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// The head it vouches for.
    pub head: AuditHead,
    /// When it was signed (ISO-8601).
    pub at: String,
}

/// Whether `hash` looks like an entry hash (64 lowercase hex digits).
pub fn is_entry_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Signs `head` with `key`, now.
pub fn sign(key: &Ed25519Key, head: &AuditHead) -> AuditCheckpoint {
    let iat = clock::unix_now();
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some(TOKEN_TYPE.to_owned());
    header.kid = Some(key.key_id());
    let claims = Claims {
        seq: head.seq,
        hash: head.hash.clone(),
        iat,
    };
    let token = jsonwebtoken::encode(&header, &claims, &key.encoding_key())
        .expect("Ed25519 signing of serializable claims cannot fail");
    AuditCheckpoint {
        seq: head.seq,
        hash: head.hash.clone(),
        at: at_of(iat),
        key_id: key.key_id(),
        public_key: key.public_base64(),
        token,
    }
}

fn at_of(iat: u64) -> String {
    let time = time::OffsetDateTime::from_unix_timestamp(i64::try_from(iat).unwrap_or(i64::MAX))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    clock::format_iso(time)
}

/// Opens `token` with the public key `public` (raw 32 bytes): its head, if vault signed it.
pub fn open(token: &str, public: &[u8]) -> Result<VerifiedCheckpoint, CheckpointError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| CheckpointError::BadSignature)?;
    if header.typ.as_deref() != Some(TOKEN_TYPE) || header.alg != Algorithm::EdDSA {
        return Err(CheckpointError::BadSignature);
    }
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_ed_der(public), &validation)
        .map_err(|_| CheckpointError::BadSignature)?
        .claims;
    if claims.seq == 0 || !is_entry_hash(&claims.hash) {
        return Err(CheckpointError::Malformed);
    }
    Ok(VerifiedCheckpoint {
        head: AuditHead {
            seq: claims.seq,
            hash: claims.hash,
        },
        at: at_of(claims.iat),
    })
}

/// How a log compares with `checkpoint`, given the hash of its entry at the checkpoint's `seq`
/// (`None` when it has none).
pub fn compare(checkpoint: &AuditHead, hash_there: Option<&str>) -> CheckpointOutcome {
    match hash_there {
        None => CheckpointOutcome::Truncated,
        Some(hash) if hash == checkpoint.hash => CheckpointOutcome::Matches,
        Some(_) => CheckpointOutcome::Rewritten,
    }
}

/// A checkpoint to check a log against, and where it came from (`given`, `stored`).
#[derive(Debug, Clone)]
pub struct CheckAgainst {
    /// The verified checkpoint.
    pub checkpoint: VerifiedCheckpoint,
    /// `given` or `stored`.
    pub source: &'static str,
}

/// The chain check, fed entries in sequence order from the first (or after a trusted head).
#[derive(Debug)]
pub struct ChainCheck {
    from: u64,
    expected_seq: u64,
    expected_prev: String,
    checked: u64,
    broken: Option<u64>,
}

impl Default for ChainCheck {
    fn default() -> Self {
        Self {
            from: 1,
            expected_seq: 1,
            expected_prev: GENESIS.to_owned(),
            checked: 0,
            broken: None,
        }
    }
}

impl ChainCheck {
    /// A check of the entries after `head` (trusted: e.g. a verified checkpoint).
    pub fn after(head: &AuditHead) -> Self {
        Self {
            from: head.seq + 1,
            expected_seq: head.seq + 1,
            expected_prev: head.hash.clone(),
            ..Self::default()
        }
    }

    /// A check that found the trusted head `at` changed: broken there, nothing else checked.
    pub fn broken_at(at: u64) -> Self {
        Self {
            from: at,
            expected_seq: at,
            broken: Some(at),
            ..Self::default()
        }
    }

    /// Whether a break was found.
    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// How many entries were fed.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// The last entry found intact (the head the check started after when none was), if the
    /// chain is intact so far.
    pub fn intact_head(&self) -> Option<AuditHead> {
        (self.broken.is_none() && self.expected_seq > 1).then(|| AuditHead {
            seq: self.expected_seq - 1,
            hash: self.expected_prev.clone(),
        })
    }

    /// Checks the entry stored at `seq` (`None`: the stored text is not an entry); answers
    /// whether the chain is still intact (once broken, the rest need not be fed).
    pub fn feed(&mut self, seq: u64, entry: Option<&AuditEntry>) -> bool {
        if self.broken.is_some() {
            return false;
        }
        self.checked += 1;
        let intact = entry.is_some_and(|e| {
            e.seq == self.expected_seq && e.prev_hash == self.expected_prev && entry_hash(e) == e.hash
        });
        if !intact {
            self.broken = Some(seq.max(self.expected_seq));
            return false;
        }
        if let Some(e) = entry {
            self.expected_prev.clone_from(&e.hash);
        }
        self.expected_seq += 1;
        true
    }

    /// The next `seq` the chain expects.
    pub fn next_seq(&self) -> u64 {
        self.expected_seq
    }

    /// The verdict: the chain's, and against `against` (with the hash the log holds at its
    /// `seq`) when given.
    pub fn finish(self, against: Option<(&CheckAgainst, Option<&str>)>) -> AuditVerification {
        let checkpoint = against.map(|(a, hash_there)| CheckpointCheck {
            seq: a.checkpoint.head.seq,
            hash: a.checkpoint.head.hash.clone(),
            at: a.checkpoint.at.clone(),
            source: a.source.to_owned(),
            outcome: compare(&a.checkpoint.head, hash_there),
        });
        AuditVerification {
            valid: self.broken.is_none()
                && checkpoint
                    .as_ref()
                    .is_none_or(|c| c.outcome == CheckpointOutcome::Matches),
            entries: self.checked,
            first_broken_seq: self.broken,
            verified_from: self.from,
            complete: true,
            pending: 0,
            checkpoint,
        }
    }
}

/// Verifies an exported log — one entry per line (JSON, as `ttscm audit export` writes it), in
/// sequence order from the first — and, when given, against a checkpoint. Blank lines are
/// skipped; a line that is not an entry breaks the chain there.
pub fn verify_lines(
    lines: impl BufRead,
    against: Option<&CheckAgainst>,
) -> std::io::Result<AuditVerification> {
    let mut check = ChainCheck::default();
    let mut hash_there = None;
    let wanted = against.map(|a| a.checkpoint.head.seq);
    for line in lines.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let seq = check.next_seq();
        let entry = serde_json::from_str::<AuditEntry>(&line).ok();
        if let Some(e) = &entry
            && Some(e.seq) == wanted
        {
            hash_there = Some(e.hash.clone());
        }
        // Keep reading past a break: the checkpoint's entry may come later.
        if !check.feed(entry.as_ref().map_or(seq, |e| e.seq), entry.as_ref()) && wanted.is_none() {
            break;
        }
    }
    Ok(check.finish(against.map(|a| (a, hash_there.as_deref()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: u64, fill: char) -> AuditHead {
        AuditHead {
            seq,
            hash: std::iter::repeat_n(fill, 64).collect(),
        }
    }

    /// A signed head opens with its key only, keeps its claims, and refuses other keys and
    /// other tokens; the comparison names truncation and rewriting.
    #[test]
    fn a_checkpoint_opens_with_its_key_only() {
        let key = Ed25519Key::generate();
        let signed = sign(&key, &head(42, 'a'));
        assert_eq!((signed.seq, signed.key_id.len()), (42, 16));
        let opened = open(&signed.token, key.public()).expect("opens");
        assert_eq!(opened.head, head(42, 'a'));
        assert_eq!(opened.at, signed.at);
        let other = Ed25519Key::generate();
        assert_eq!(
            open(&signed.token, other.public()),
            Err(CheckpointError::BadSignature)
        );
        assert_eq!(
            open("not.a.token", key.public()),
            Err(CheckpointError::BadSignature)
        );
        // Another signed JWT of ours (a different type) is not a checkpoint.
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("JWT".into());
        let forged = jsonwebtoken::encode(
            &header,
            &Claims {
                seq: 1,
                hash: head(1, 'b').hash,
                iat: 0,
            },
            &key.encoding_key(),
        )
        .expect("signs");
        assert_eq!(open(&forged, key.public()), Err(CheckpointError::BadSignature));
        let h = head(42, 'a');
        assert_eq!(compare(&h, None), CheckpointOutcome::Truncated);
        assert_eq!(compare(&h, Some(&h.hash)), CheckpointOutcome::Matches);
        assert_eq!(
            compare(&h, Some(&head(42, 'c').hash)),
            CheckpointOutcome::Rewritten
        );
    }
}
