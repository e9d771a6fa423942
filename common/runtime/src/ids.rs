//! Opaque, collision-resistant, cuid-style ids (`c` + 24 lowercase base-36 characters): a
//! millisecond timestamp (so ids roughly sort by creation), a process-local counter and 72 bits
//! from the OS RNG. Written here rather than taken from a crate because the cuid crates pull in
//! big-number and hashing dependencies for what is a dozen lines.

use std::sync::atomic::{AtomicU32, Ordering};

use ring::rand::{SecureRandom, SystemRandom};

const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn push_base36(out: &mut String, mut value: u128, width: usize) {
    let mut digits = vec![b'0'; width];
    for slot in digits.iter_mut().rev() {
        *slot = ALPHABET[(value % 36) as usize];
        value /= 36;
    }
    out.extend(digits.into_iter().map(char::from));
}

/// A new id.
pub fn new_id() -> String {
    let millis = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let mut random = [0u8; 9];
    SystemRandom::new()
        .fill(&mut random)
        .expect("the OS random number generator is available");
    let mut out = String::with_capacity(25);
    out.push('c');
    push_base36(&mut out, u128::try_from(millis).unwrap_or(0), 9);
    push_base36(
        &mut out,
        u128::from(COUNTER.fetch_add(1, Ordering::Relaxed) % 1_679_616),
        4,
    );
    push_base36(
        &mut out,
        random.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b)),
        11,
    );
    out
}

/// Whether `text` has the shape of an id from [`new_id`].
pub fn is_id(text: &str) -> bool {
    text.len() == 25
        && text.starts_with('c')
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// `n` random bytes from the OS RNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the OS random number generator is available");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_documented_shape_and_do_not_repeat() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| is_id(id)), "{:?}", ids.iter().next());
    }
}
