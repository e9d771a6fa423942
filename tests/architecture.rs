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
