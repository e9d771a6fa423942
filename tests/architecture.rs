//! Architecture invariants checked from `cargo metadata`.

use std::process::Command;

#[test]
fn no_service_crate_depends_on_another_service_crate() {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("metadata is JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let services: Vec<&str> = packages
        .iter()
        .filter(|p| {
            p["manifest_path"]
                .as_str()
                .is_some_and(|m| m.contains("/services/"))
        })
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(services.len(), 4, "four service crates: {services:?}");
    for package in packages {
        let name = package["name"].as_str().unwrap_or_default();
        let deps: Vec<&str> = package["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["name"].as_str())
            .collect();
        if services.contains(&name) || name == "ttscm-edge" {
            for dep in &deps {
                assert!(!services.contains(dep), "{name} depends on service crate {dep}");
            }
        }
    }
}

/// Which service serves each subject, from the routers the services declare.
fn served_subjects() -> Vec<(&'static str, &'static str)> {
    let mut served = Vec::new();
    let mut add = |service: &'static str, subjects: Vec<&'static str>| {
        served.extend(subjects.into_iter().map(|subject| (subject, service)));
    };
    let identity = ttscm_identity::router();
    add(identity.service(), identity.subjects().collect());
    let company_sync = ttscm_company_sync::router();
    add(company_sync.service(), company_sync.subjects().collect());
    let credential = ttscm_credential::router();
    add(credential.service(), credential.subjects().collect());
    let vault = ttscm_vault::router();
    add(vault.service(), vault.subjects().collect());
    served
}

#[test]
fn every_operation_of_the_contract_is_served_by_exactly_one_service() {
    let served = served_subjects();
    let operations: Vec<_> = ttscm_contract::operations().collect();
    // The contract's list is produced by the `operation!` declarations themselves; this guards
    // against the list being empty because registration stopped working.
    assert!(
        operations.len() >= 40,
        "the contract lists {} operations",
        operations.len()
    );
    let mut problems = Vec::new();
    for operation in &operations {
        let servers: Vec<&str> = served
            .iter()
            .filter(|(subject, _)| *subject == operation.subject)
            .map(|(_, service)| *service)
            .collect();
        if servers.len() != 1 {
            problems.push(format!(
                "{} ({}) is served by {servers:?}",
                operation.name, operation.subject
            ));
        }
    }
    for (subject, service) in &served {
        if !operations.iter().any(|operation| operation.subject == *subject) {
            problems.push(format!(
                "{service} serves {subject}, which the contract does not declare"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_two_operations_share_a_subject() {
    let mut subjects: Vec<&str> = ttscm_contract::operations().map(|o| o.subject).collect();
    let count = subjects.len();
    subjects.sort_unstable();
    subjects.dedup();
    assert_eq!(
        subjects.len(),
        count,
        "two operations are declared on one subject"
    );
}
