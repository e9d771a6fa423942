//! Micro-benchmark of vault's sealing: `seal::seal` and `seal::open` (per-value HKDF key, random
//! nonce from the OS, blob header, base64) next to the raw `xsalsa20poly1305` cipher with one
//! fixed key and nonce (the baseline), in the same run, for a 64 B and a 1 KiB value.
//!
//! `cargo run --release -p ttscm-vault --example seal_bench [-- <iterations>]` prints a
//! markdown table. The goal: sealing a 1 KiB value costs at most 5 µs.

use std::hint::black_box;
use std::time::Instant;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ttscm_vault::KeyRing;
use ttscm_vault::seal::{self, ValuePlace};
use xsalsa20poly1305::aead::{Aead, KeyInit};
use xsalsa20poly1305::{Key, Nonce, XSalsa20Poly1305};

/// Iterations per measurement unless given on the command line.
const DEFAULT_ITERATIONS: u32 = 200_000;

/// The budget for sealing 1 KiB, in nanoseconds.
const SEAL_1K_GOAL_NS: f64 = 5_000.0;

/// Average nanoseconds per call of `op` over `iterations` calls, after a tenth as many to warm up.
fn ns_per_op(iterations: u32, mut op: impl FnMut()) -> f64 {
    for _ in 0..iterations / 10 {
        op();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        op();
    }
    start.elapsed().as_secs_f64() * 1e9 / f64::from(iterations)
}

/// [`ns_per_op`] of `op` on `input`, both kept from the optimiser.
fn timed<I: ?Sized, T>(iterations: u32, input: &I, op: impl Fn(&I) -> T) -> f64 {
    ns_per_op(iterations, || {
        black_box(op(black_box(input)));
    })
}

fn main() -> anyhow::Result<()> {
    let iterations = match std::env::args().nth(1) {
        Some(arg) => arg.parse().context("the argument is a number of iterations")?,
        None => DEFAULT_ITERATIONS,
    };
    let key = [7u8; 32];
    let ring = KeyRing::parse(&format!("bench:{}", STANDARD.encode(key)), None)?;
    let place = ValuePlace::new("cm1x2y3z4a5b6c7d8e9f0g1h2", "password");
    let raw = XSalsa20Poly1305::new(Key::from_slice(&key));
    let nonce = Nonce::from_slice(&[9u8; 24]);

    println!("{iterations} iterations per row\n");
    println!("| operation | value | raw cipher ns/op | vault ns/op | vault / raw |");
    println!("|---|---|---:|---:|---:|");
    let mut seal_1k = 0.0;
    for size in [64usize, 1024] {
        let plaintext = vec![b'x'; size];
        let label = if size < 1024 {
            format!("{size} B")
        } else {
            format!("{} KiB", size / 1024)
        };

        let raw_seal = timed(iterations, plaintext.as_slice(), |p| {
            raw.encrypt(nonce, p).expect("encrypts")
        });
        let vault_seal = timed(iterations, plaintext.as_slice(), |p| {
            seal::seal(&ring, place, p).expect("seals")
        });
        let ciphertext = raw.encrypt(nonce, plaintext.as_slice()).expect("encrypts");
        let sealed = seal::seal(&ring, place, &plaintext).expect("seals");
        let raw_open = timed(iterations, ciphertext.as_slice(), |c| {
            raw.decrypt(nonce, c).expect("decrypts")
        });
        let vault_open = timed(iterations, &sealed, |s| {
            seal::open(&ring, place, s).expect("opens")
        });

        for (operation, raw_ns, vault_ns) in [("seal", raw_seal, vault_seal), ("open", raw_open, vault_open)]
        {
            println!(
                "| {operation} | {label} | {raw_ns:.0} | {vault_ns:.0} | {:.2}× |",
                vault_ns / raw_ns
            );
        }
        if size == 1024 {
            seal_1k = vault_seal;
        }
    }
    println!(
        "\nGoal: sealing 1 KiB ≤ {:.1} µs — {:.2} µs, {}.",
        SEAL_1K_GOAL_NS / 1000.0,
        seal_1k / 1000.0,
        if seal_1k <= SEAL_1K_GOAL_NS {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}
