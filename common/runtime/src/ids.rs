//! Opaque, collision-resistant, cuid-style ids (`c` + 24 lowercase base-36 characters): a
//! millisecond timestamp (so ids roughly sort by creation), a process-local counter and 72 bits
//! from a thread-local CSPRNG seeded from the OS (`rand`'s `ThreadRng`: no system call per id;
//! ids are not secrets, keys and nonces come from the OS RNG directly). Written here rather than taken from a crate because the cuid crates pull in
//! big-number and hashing dependencies for what is a dozen lines.

use std::sync::atomic::{AtomicU32, Ordering};

use ring::rand::{SecureRandom, SystemRandom};

const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn push_base36(out: &mut String, value: u128, width: usize) {
    debug_assert!(width <= 12, "36^12 < 2^64");
    // The last `width` digits, computed in 64 bits: one 128-bit division instead of one per
    // digit (each a library call; ids are made on every audited request).
    let mut value = u64::try_from(value % 36u128.pow(width as u32)).expect("36^12 < 2^64");
    let mut digits = [b'0'; 12];
    for slot in digits[..width].iter_mut().rev() {
        *slot = ALPHABET[(value % 36) as usize];
        value /= 36;
    }
    out.push_str(std::str::from_utf8(&digits[..width]).expect("base-36 digits are ASCII"));
}

/// A new id.
pub fn new_id() -> String {
    let millis = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let mut random = [0u8; 9];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut random);
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

/// A request id in the same shape as [`new_id`], without a system call: the time, a counter,
/// and a random value drawn once per process. Request ids correlate logs; they are not secrets
/// and need not be unpredictable, and the edge makes one for every request.
pub fn new_request_id() -> String {
    static PROCESS_RANDOM: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let random = *PROCESS_RANDOM.get_or_init(|| {
        random_bytes::<9>()
            .iter()
            .fold(0u128, |acc, b| (acc << 8) | u128::from(*b))
    });
    let millis = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut out = String::with_capacity(25);
    out.push('c');
    push_base36(&mut out, u128::try_from(millis).unwrap_or(0), 9);
    push_base36(&mut out, u128::from(count % 1_679_616), 4);
    push_base36(&mut out, (random ^ u128::from(count)) % 36u128.pow(11), 11);
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

    #[test]
    fn base36_keeps_the_last_digits_of_any_value() {
        let naive = |mut value: u128, width: usize| {
            let mut digits = vec![b'0'; width];
            for slot in digits.iter_mut().rev() {
                *slot = ALPHABET[(value % 36) as usize];
                value /= 36;
            }
            String::from_utf8(digits).expect("ASCII")
        };
        for (value, width) in [
            (0u128, 4),
            (35, 1),
            (36, 2),
            (1_679_615, 4),
            (1_679_616, 4),
            (u128::from(u64::MAX), 12),
            ((1u128 << 72) - 1, 11),
            (u128::MAX, 9),
        ] {
            let mut out = String::new();
            push_base36(&mut out, value, width);
            assert_eq!(out, naive(value, width), "{value} in {width} digits");
        }
    }

    #[test]
    fn request_ids_have_the_same_shape_and_do_not_repeat() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| is_id(id)), "{:?}", ids.iter().next());
    }
}
