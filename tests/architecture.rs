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
    assert_eq!(services.len(), 5, "five service crates: {services:?}");
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
    let webhook = ttscm_webhook::router();
    add(webhook.service(), webhook.subjects().collect());
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

/// The generated NATS permissions grant least privilege: each operation's subject may be
/// subscribed to only by the service serving it and published on only by its declared callers;
/// vault answers only its callers; only edges see sign-in deliveries; only the components that
/// record (credential, identity, webhook) append to the audit stream and only credential
/// acknowledges it; nobody holds a catch-all; each inbox is readable by its owner only.
#[test]
fn generated_nats_permissions_grant_each_component_only_what_it_uses() {
    use ttscm::mesh::{integrator_permissions, permissions};
    use ttscm_contract::{Component, operations, subjects};
    let all: Vec<_> = Component::ALL.iter().map(|c| (*c, permissions(*c))).collect();
    for op in operations() {
        let subscribers: Vec<_> = all
            .iter()
            .filter(|(_, p)| p.subscribe.contains(op.subject))
            .map(|(c, _)| *c)
            .collect();
        assert_eq!(
            subscribers.len(),
            1,
            "{} is served by exactly one component: {subscribers:?}",
            op.subject
        );
        let publishers: Vec<_> = all
            .iter()
            .filter(|(_, p)| p.publish.contains(op.subject))
            .map(|(c, _)| *c)
            .collect();
        let mut callers = op.callers.to_vec();
        callers.sort_unstable();
        assert_eq!(
            publishers, callers,
            "{} may be called by its declared callers only",
            op.subject
        );
    }
    let vault = &all.iter().find(|(c, _)| *c == Component::Vault).expect("vault").1;
    let vault_publishes: Vec<_> = vault.publish.iter().map(String::as_str).collect();
    assert_eq!(
        vault_publishes,
        ["_INBOX_credential.>", "_INBOX_edge.>", "_INBOX_webhook.>"],
        "vault only answers"
    );
    for (component, p) in &all {
        for subject in p.publish.iter().chain(&p.subscribe) {
            assert!(
                subject != ">" && !subject.starts_with("ttscm.>") && subject != "$JS.API.>",
                "{component}: {subject}"
            );
        }
        let login = format!("{}.*", subjects::EDGE_LOGIN_DELIVERY_PREFIX);
        assert_eq!(
            p.subscribe.contains(&login),
            *component == Component::Edge,
            "{component}: login deliveries"
        );
        // The audit chain's writers append to its stream; only its owner (the credential
        // service, whose copier moves entries into the store) consumes and acknowledges them.
        assert_eq!(
            p.publish.contains(subjects::AUDIT_SUBJECT),
            matches!(
                component,
                Component::Credential | Component::Identity | Component::Webhook
            ),
            "{component}: audit"
        );
        let acks = format!("$JS.ACK.{}.>", subjects::AUDIT_STREAM);
        assert_eq!(
            p.publish.contains(&acks),
            *component == Component::Credential,
            "{component}: acknowledges audit entries"
        );
        let inboxes: Vec<_> = p.subscribe.iter().filter(|s| s.starts_with("_INBOX")).collect();
        assert_eq!(
            inboxes,
            [&format!("{}.>", component.inbox_prefix())],
            "{component} reads its own inbox only"
        );
    }
    let integrator = integrator_permissions();
    assert!(
        integrator
            .publish
            .iter()
            .all(|s| s.starts_with("$JS.") && s.contains("TTSCM_EVENTS") || s == "$JS.API.INFO")
    );
    assert!(!integrator.subscribe.iter().any(|s| s.starts_with("ttscm.")
        && !s.starts_with("ttscm.events.")
        && !s.starts_with("ttscm.integrations.")));
}
