//! The OpenAPI document against the route table it is generated from: the same routes, every
//! route's answers described, every reference resolvable, every example valid against its schema.
//! (The end-to-end tests validate every response they receive against the document, and
//! Schemathesis fuzzes a live server with it: `tests/openapi.rs`.)

use std::collections::BTreeSet;

use serde_json::{Value, json};
use ttscm_edge::openapi::{Data, document, openapi_path};
use ttscm_edge::routes::Handler;
use ttscm_edge::table::route_table;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The document's operations as `METHOD /path`.
fn documented() -> BTreeSet<String> {
    let paths = document()["paths"].as_object().expect("paths is an object");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let item = item.as_object().expect("a path item is an object");
            item.keys()
                .filter(|key| METHODS.contains(&key.as_str()))
                .map(move |method| format!("{} {path}", method.to_ascii_uppercase()))
        })
        .collect()
}

#[test]
fn the_document_describes_exactly_the_routes_of_the_table() {
    let table: Vec<String> = route_table()
        .iter()
        .map(|r| format!("{} {}", r.method.as_str(), openapi_path(r.path)))
        .collect();
    let table_set: BTreeSet<String> = table.iter().cloned().collect();
    assert_eq!(table.len(), table_set.len(), "a route is declared twice");
    let documented = documented();
    let missing: Vec<_> = table_set.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&table_set).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes the document lacks: {missing:?}; operations no route serves: {extra:?}"
    );
    assert!(documented.contains("GET /v1/openapi.json"));
    assert!(documented.contains("GET /v1/credential/credentials/{id}/secure-values"));
}

#[test]
fn every_route_says_what_its_data_is() {
    let undeclared: Vec<&str> = route_table()
        .iter()
        .filter(|r| r.data.is_none())
        // The teapot answers its error; the sign-in socket answers 101 and speaks WebSocket.
        .filter(|r| r.status.as_u16() < 400 && !matches!(r.handler, Handler::WebSocket(_)))
        .map(|r| r.name)
        .collect();
    assert!(
        undeclared.is_empty(),
        "routes without `.gives(…)` in edge/src/table.rs: {undeclared:?}"
    );
}

#[test]
fn every_route_that_reads_a_body_names_its_schema() {
    use ttscm_edge::routes::Reads;
    for route in route_table() {
        assert_eq!(
            route.reads == Reads::Body,
            route.body.is_some(),
            "{}: a route reading a body names its schema with `.takes(…)`, and only such a route",
            route.name
        );
    }
}

#[test]
fn every_operation_has_its_success_and_the_errors_of_its_access() {
    let doc = document();
    for route in route_table() {
        let op = &doc["paths"][openapi_path(route.path)][route.method.as_str().to_ascii_lowercase()];
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.contains_key(&route.status.as_u16().to_string()),
            "{}: no {} response",
            route.name,
            route.status
        );
        assert_eq!(op["operationId"], route.name);
        use ttscm_edge::routes::Access;
        match route.access {
            Access::Permissions(_) | Access::Scopes(_) => {
                for status in ["400", "401", "403", "404", "429", "503", "504"] {
                    assert!(responses.contains_key(status), "{}: no {status}", route.name);
                }
                assert_ne!(op["security"], json!([]), "{}", route.name);
            }
            Access::Public => assert_eq!(op["security"], json!([]), "{}", route.name),
            _ => assert!(responses.contains_key("401"), "{}: no 401", route.name),
        }
        if route.body.is_some() {
            for status in ["413", "415"] {
                assert!(responses.contains_key(status), "{}: no {status}", route.name);
            }
        }
    }
}

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "$ref" {
                    out.push(v.as_str().expect("a $ref is a string"));
                } else {
                    refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_reference_in_the_document_resolves() {
    let doc = document();
    let mut found = Vec::new();
    refs(doc, &mut found);
    assert!(found.len() > 50, "the document refers to its schemas");
    for reference in found {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{reference} is not local"));
        assert!(doc.pointer(pointer).is_some(), "{reference} does not resolve");
    }
}

/// A validator of `schema` with the document's components in reach.
fn validator(schema: &Value) -> jsonschema::Validator {
    let mut root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": document()["components"].clone(),
    });
    let Value::Object(own) = schema else {
        panic!("a schema object")
    };
    for (key, value) in own {
        root[key] = value.clone();
    }
    jsonschema::validator_for(&root).expect("the schema compiles")
}

#[test]
fn every_example_in_the_document_is_valid_against_its_schema() {
    let doc = document();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            let Some(content) = op["requestBody"]["content"]["application/json"].as_object() else {
                continue;
            };
            if let Some(example) = content.get("example") {
                let errors: Vec<String> = validator(&content["schema"])
                    .iter_errors(example)
                    .map(|e| format!("{} at {}", e, e.instance_path()))
                    .collect();
                assert!(errors.is_empty(), "{method} {path}: {errors:?}");
                checked += 1;
            }
        }
    }
    for (name, response) in doc["components"]["responses"].as_object().expect("responses") {
        if let Some(example) = response["content"]["application/json"].get("example") {
            let schema = &response["content"]["application/json"]["schema"];
            assert!(validator(schema).is_valid(example), "{name}'s example");
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} examples");
}

#[test]
fn the_spec_s_envelopes_validate_and_others_do_not() {
    let doc = document();
    let op = &doc["paths"]["/v1/credential-type/credential-types"]["get"]["responses"];
    let ok = validator(&op["200"]["content"]["application/json"]["schema"]);
    assert!(ok.is_valid(&json!({
        "status": 200, "message": "Credential Types Fetched Successfully!", "data": [], "successful": true
    })));
    assert!(!ok.is_valid(&json!({
        "status": 200, "message": "Credential Types Fetched Successfully!", "data": {}, "successful": true
    })));
    assert!(!ok.is_valid(&json!({"status": 200, "message": "x", "data": [], "successful": true})));
    let bad_request =
        validator(&doc["components"]["responses"]["E400"]["content"]["application/json"]["schema"]);
    assert!(bad_request.is_valid(&json!({
        "status": 400, "message": "Validation error",
        "errors": [{"path": ["fields", 0, "value"], "message": "missing"}], "successful": false
    })));
    assert!(!bad_request.is_valid(&json!({"status": 404, "message": "x", "successful": false})));
    assert!(!bad_request.is_valid(&json!({"status": 400, "message": "x", "errors": [{"path": [true], "message": "m"}], "successful": false})));
}

#[test]
fn the_document_is_openapi_3_1_with_the_three_security_schemes() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let schemes = doc["components"]["securitySchemes"].as_object().expect("schemes");
    assert_eq!(
        schemes.keys().map(String::as_str).collect::<Vec<_>>(),
        ["accessToken", "apiToken", "refreshToken"]
    );
    assert_eq!(schemes["refreshToken"]["name"], "x-refresh-token");
    // The creates link their `data.id` to the routes that take it (Schemathesis' stateful phase).
    let links = &doc["paths"]["/v1/credential/credentials"]["post"]["responses"]["201"]["links"];
    assert_eq!(
        links["credential.get"]["parameters"]["id"], "$response.body#/data/id",
        "{links}"
    );
    let raw = route_table()
        .iter()
        .filter(|r| matches!(r.data, Some(Data::Raw(..))))
        .count();
    assert_eq!(raw, 4, "the document, the page and its two assets");
}

#[test]
fn the_document_is_built_in_a_few_milliseconds_and_is_not_huge() {
    let started = std::time::Instant::now();
    let bytes = serde_json::to_vec(document()).expect("serializes");
    let took = started.elapsed();
    eprintln!(
        "document: {} bytes, built and serialized in {took:?}",
        bytes.len()
    );
    assert!(bytes.len() < 1_000_000, "{} bytes", bytes.len());
    assert!(took < std::time::Duration::from_secs(2), "{took:?}");
}
