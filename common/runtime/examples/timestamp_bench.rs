//! Micro-benchmark: formatting a timestamp as the API shows it (`2026-01-01T00:00:00.000Z`),
//! [`ttscm_runtime::clock::format_iso`] (digits written in place) against the `time` crate's
//! formatter with the same description. The reveal path stamps one audit entry per request.
//!
//! `cargo run --release -p ttscm-runtime --example timestamp_bench`

use std::hint::black_box;
use std::time::Instant;

use time::OffsetDateTime;
use time::macros::format_description;

const ROUNDS: u32 = 2_000_000;

fn time_crate(at: OffsetDateTime) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    at.format(&format)
        .expect("a UTC date with a 4-digit year formats")
}

fn measure(name: &str, instants: &[OffsetDateTime], format: impl Fn(OffsetDateTime) -> String) -> f64 {
    // Warm up, then take the best of five runs (the host's speed drifts).
    let mut best = f64::MAX;
    for _ in 0..6 {
        let started = Instant::now();
        let mut bytes = 0usize;
        for i in 0..ROUNDS {
            let at = instants[i as usize % instants.len()];
            bytes += black_box(format(black_box(at))).len();
        }
        let ns = started.elapsed().as_nanos() as f64 / f64::from(ROUNDS);
        black_box(bytes);
        best = best.min(ns);
    }
    println!("{name:<28} {best:>7.1} ns/op");
    best
}

fn main() {
    let now = OffsetDateTime::now_utc();
    let instants: Vec<OffsetDateTime> = (0..1024i64)
        .map(|i| now + time::Duration::milliseconds(i * 7_919))
        .collect();
    for at in &instants {
        assert_eq!(ttscm_runtime::clock::format_iso(*at), time_crate(*at));
    }
    let fast = measure("clock::format_iso", &instants, ttscm_runtime::clock::format_iso);
    let general = measure("time format_description", &instants, time_crate);
    println!("the time crate costs {:+.1} ns per call", general - fast);
}
