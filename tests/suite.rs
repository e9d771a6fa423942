//! The end-to-end suite as one test binary: one link and one copy of the statically linked
//! dependencies instead of one per file (each file was its own ~160 MB binary; 31 of them
//! made a clean build's target directory ~13 GB). `chaos` (kills the processes it starts,
//! timing-sensitive) and `metrics` (one process-wide recorder) stay binaries of their own:
//! see `[[test]]` in Cargo.toml.

#[macro_use]
mod support;
mod webhook_support;

mod abuse_limits;
mod api;
mod architecture;
mod audit_checkpoints;
mod audit_coverage;
mod bus_chunks;
mod canary;
mod cli;
mod companies;
mod company_events;
mod credentials;
mod delegation;
mod exposure;
mod faults;
mod history;
mod idempotency;
mod lists;
mod mesh_faults_and_events;
mod mesh_security;
mod openapi;
mod paths;
mod properties;
mod reveal_policies;
mod rotation;
mod siem;
mod sign_in;
mod tokens;
mod totp;
mod trust;
mod type_races;
mod vault_rotation;
mod webhook_delivery;
mod webhooks;
