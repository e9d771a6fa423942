//! The chain: how an entry gets its place (`seq`, `prevHash`) and its `hash`, and how a stored
//! entry is checked against it.
//!
//! An entry's `hash` is SHA-256 (hex) over its canonical JSON — the [`AuditEntry`] as serde
//! writes it, with `hash` empty (the last field) and `prevHash` the previous entry's hash
//! ([`GENESIS`] for the first). Changing any stored entry breaks verification from that entry on.
//!
//! Serialized once: the appending caller serializes its entry ([`NewAuditEntry::new`], in its
//! own task, in parallel with other requests), leaving out only `seq` and `prevHash`; the
//! batch's leader splices those in, hashes the text, splices the hash in and stores that text
//! ([`AuditEntryText`]) as it is.

use ttscm_contract::audit::AuditEntry;

/// The `prevHash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An entry as a caller appends it, before it has a place in the chain: its canonical JSON
/// without `seq` and `prevHash`. Its id and time are fixed when it is made.
#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    /// The entry's id (kept across retries, so an entry already stored is recognised).
    id: String,
    /// `{"id":"…","seq":` — the JSON before the sequence number.
    before_seq: String,
    /// `,"at":…,"prevHash":"` — the JSON between the sequence number and the previous hash.
    before_prev_hash: String,
}

/// The end of an entry's canonical JSON after `prevHash`'s value: `hash`, empty, is its last
/// field (hex digits need no escaping, so the value is spliced in as it is).
const UNHASHED_TAIL: &str = r#"","hash":""}"#;

impl NewAuditEntry {
    /// `entry`, to be appended: its `seq`, `prev_hash` and `hash` are set by the append.
    pub fn new(mut entry: AuditEntry) -> Self {
        entry.seq = 0;
        entry.prev_hash.clear();
        entry.hash.clear();
        let json = serde_json::to_string(&entry).expect("audit entries serialize");
        // `{"id":"<id>","seq":0,…,"prevHash":"","hash":""}`: `id` and `seq` are the struct's
        // first fields, `prevHash` and `hash` its last (an unescaped `","seq":0,` cannot occur
        // inside the id's string). Checked in every build: the slicing relies on that layout.
        let seq_at = json.find(r#","seq":0,"#).expect("seq follows id") + r#","seq":"#.len();
        assert!(
            json.ends_with(r#""prevHash":"","hash":""}"#),
            "prevHash and hash end an audit entry"
        );
        Self {
            before_seq: json[..seq_at].to_owned(),
            before_prev_hash: json[seq_at + 1..json.len() - UNHASHED_TAIL.len()].to_owned(),
            id: entry.id,
        }
    }

    /// The entry's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The entry at `seq` after `prev_hash`, ready to store (hashed as [`entry_hash`] does).
    pub(crate) fn seal(&self, seq: u64, prev_hash: &str) -> AuditEntryText {
        let mut digits = itoa::Buffer::new();
        let seq_text = digits.format(seq);
        let mut json = String::with_capacity(
            self.before_seq.len()
                + seq_text.len()
                + self.before_prev_hash.len()
                + prev_hash.len()
                + 64
                + UNHASHED_TAIL.len(),
        );
        json.push_str(&self.before_seq);
        json.push_str(seq_text);
        json.push_str(&self.before_prev_hash);
        json.push_str(prev_hash);
        json.push_str(UNHASHED_TAIL);
        let mut hex = [0u8; 64];
        hex::encode_to_slice(
            ring::digest::digest(&ring::digest::SHA256, json.as_bytes()),
            &mut hex,
        )
        .expect("64 hex digits hold 32 bytes");
        let hash = std::str::from_utf8(&hex).expect("hex digits are ASCII");
        json.truncate(json.len() - 2);
        json.push_str(hash);
        json.push_str("\"}");
        debug_assert!(serde_json::from_str::<serde::de::IgnoredAny>(&json).is_ok());
        AuditEntryText {
            id: self.id.clone(),
            seq,
            hash: hash.to_owned(),
            json,
        }
    }
}

/// A chained entry as it is stored: its JSON text (handed to the storage as it is, neither
/// parsed nor serialized again) and the keys the storage needs without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditEntryText {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) hash: String,
    pub(crate) json: String,
}

impl AuditEntryText {
    /// The entry in `line` (one JSON object), refused unless it has an id, a seq and a hash.
    pub(crate) fn parse(line: &str) -> Result<Self, crate::store::StoreError> {
        let corrupt = |what: String| crate::store::StoreError::Corrupt(format!("an audit entry: {what}"));
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| corrupt(e.to_string()))?;
        let field = |k: &str| {
            value
                .get(k)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        match (
            field("id"),
            value.get("seq").and_then(serde_json::Value::as_u64),
            field("hash"),
        ) {
            (Some(id), Some(seq), Some(hash)) => Ok(Self {
                id,
                seq,
                hash,
                json: line.to_owned(),
            }),
            _ => Err(corrupt("no id, seq or hash".into())),
        }
    }
}

/// `entries` chained after `(seq, hash)`: the texts to store, the new head last.
pub(crate) fn chain(entries: &[NewAuditEntry], mut seq: u64, prev: &str) -> Vec<AuditEntryText> {
    let mut texts: Vec<AuditEntryText> = Vec::with_capacity(entries.len());
    for entry in entries {
        seq += 1;
        let text = entry.seal(seq, texts.last().map_or(prev, |t| t.hash.as_str()));
        texts.push(text);
    }
    texts
}

/// The hash an entry should have: SHA-256 over its canonical JSON with `hash` empty.
pub fn entry_hash(entry: &AuditEntry) -> String {
    let digest = |e: &AuditEntry| {
        let bytes = serde_json::to_vec(e).expect("audit entries serialize");
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes))
    };
    if entry.hash.is_empty() {
        return digest(entry);
    }
    let mut unhashed = entry.clone();
    unhashed.hash = String::new();
    digest(&unhashed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ttscm_contract::audit::{AuditActor, AuditTarget};

    /// The stored JSON, made from the hashed JSON by splicing in the hash, reads back as the
    /// entry with that hash, and verification recomputes the same hash — names with quotes,
    /// escapes and non-ASCII included.
    #[test]
    fn a_stored_entry_verifies_against_the_hash_it_was_stored_with() {
        let entry = AuditEntry {
            id: "e1".into(),
            seq: 99,
            at: "2026-01-01T00:00:00.000Z".into(),
            action: "credential.revealed".into(),
            actor: AuditActor {
                id: "u1".into(),
                kind: ttscm_contract::PrincipalKind::User,
                name: "Zoë \"the admin\" \\ O'Brien\n".into(),
            },
            target: AuditTarget {
                kind: "credential".into(),
                id: "c1".into(),
            },
            credential_id: Some("c1".into()),
            type_id: None,
            company_id: Some("k1".into()),
            request_id: "r1".into(),
            client_ip: Some("::1".into()),
            details: None,
            prev_hash: "ignored".into(),
            hash: "ignored".into(),
        };
        let new = NewAuditEntry::new(entry);
        let stored = new.seal(7, GENESIS);
        let read: AuditEntry = serde_json::from_str(&stored.json).expect("stored JSON is an entry");
        assert_eq!((read.seq, read.id.as_str()), (7, "e1"));
        assert_eq!(read.hash, stored.hash);
        assert_eq!(read.prev_hash, GENESIS);
        // The stored text is the entry's canonical JSON, as serde writes it.
        assert_eq!(stored.json, serde_json::to_string(&read).expect("serializes"));
        assert_eq!(entry_hash(&read), stored.hash);
        // Placed again further along the chain, the same entry hashes differently.
        let later = chain(std::slice::from_ref(&new), 12_345_678_900, &stored.hash).remove(0);
        let later_read: AuditEntry = serde_json::from_str(&later.json).expect("an entry");
        assert_eq!(
            (later_read.seq, later_read.prev_hash.as_str()),
            (12_345_678_901, stored.hash.as_str())
        );
        assert_eq!(entry_hash(&later_read), later.hash);
        assert_eq!(read.actor.name, "Zoë \"the admin\" \\ O'Brien\n");
        let mut tampered = read.clone();
        tampered.company_id = Some("k2".into());
        assert_ne!(entry_hash(&tampered), stored.hash);
        assert_eq!(AuditEntryText::parse(&stored.json).expect("parses"), stored);
        assert!(AuditEntryText::parse(r#"{"id":"a"}"#).is_err());
    }
}
