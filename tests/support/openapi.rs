//! Every response the end-to-end tests receive through the harness, validated against the
//! OpenAPI document (`ttscm_edge::openapi::document()`): the route is found as the edge finds
//! it (method and path against the table's patterns), the status must be one the document
//! declares for that route, and a JSON body must be valid against that status's schema. A
//! response that breaks the document panics with the route, the status and the problems.
//!
//! Validators are compiled once per schema and test binary, on first use.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;
use serde_json::{Value, json};
use ttscm_edge::openapi::{document, openapi_path};
use ttscm_edge::routes::match_path;
use ttscm_edge::table::route_table;

/// Compiled validators by the JSON pointer of their schema in the document.
static VALIDATORS: LazyLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// `pointer`'s schema, with the document's components in reach of its `$ref`s.
fn validator(pointer: &str) -> Arc<jsonschema::Validator> {
    if let Some(found) = VALIDATORS.lock().get(pointer) {
        return found.clone();
    }
    let doc = document();
    let schema = doc
        .pointer(pointer)
        .unwrap_or_else(|| panic!("{pointer} is in the document"));
    let mut root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"].clone(),
    });
    for (key, value) in schema.as_object().expect("a schema object") {
        root[key] = value.clone();
    }
    let compiled = Arc::new(jsonschema::validator_for(&root).expect("the document's schemas compile"));
    VALIDATORS.lock().insert(pointer.to_owned(), compiled.clone());
    compiled
}

/// A JSON pointer token (`/` and `~` escaped).
fn token(text: &str) -> String {
    text.replace('~', "~0").replace('/', "~1")
}

/// The pointer of the response object `response` (a `$ref` followed).
fn resolve(mut pointer: String) -> String {
    let doc = document();
    while let Some(reference) = doc
        .pointer(&pointer)
        .and_then(|r| r.get("$ref"))
        .and_then(Value::as_str)
    {
        pointer = reference.trim_start_matches('#').to_owned();
    }
    pointer
}

/// Panics unless the response (`status`, `content_type`, `body`) to `method path` is one the
/// OpenAPI document describes.
pub fn check_response(method: &str, path: &str, status: u16, content_type: Option<&str>, body: &[u8]) {
    let path = path.split('?').next().unwrap_or(path);
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    let route = route_table()
        .iter()
        .find(|r| r.method.as_str() == method && match_path(r.path, path).is_some());
    let (label, response) = match route {
        Some(route) => {
            let operation = format!(
                "/paths/{}/{}",
                token(&openapi_path(route.path)),
                method.to_ascii_lowercase()
            );
            let response = format!("{operation}/responses/{status}");
            if document().pointer(&response).is_none() {
                panic!(
                    "{method} {path} (route {}) answered {status}, which the OpenAPI document does not declare for it; \
                     body: {}",
                    route.name,
                    String::from_utf8_lossy(body)
                );
            }
            (
                format!("{method} {path} (route {})", route.name),
                resolve(response),
            )
        }
        // No route: the edge's own 404/405 (or a rejection before any route), always the error
        // envelope.
        None => (
            format!("{method} {path} (no route)"),
            "/components/responses/E404".to_owned(),
        ),
    };
    let doc = document();
    let content = &doc.pointer(&response).expect("the response resolves")["content"];
    let Some(media) = media else {
        assert!(
            body.is_empty() || content.is_null(),
            "{label} answered {status} without a content type"
        );
        return;
    };
    if route.is_none() {
        // The error envelope of whatever status the edge chose.
        let value: Value = serde_json::from_slice(body)
            .unwrap_or_else(|e| panic!("{label} answered {status} with a body that is not JSON: {e}"));
        let schema = validator("/components/schemas/ErrorEnvelope");
        let errors: Vec<String> = schema
            .iter_errors(&value)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{label} answered {status} {value}: {errors:?}");
        return;
    }
    assert!(
        content.get(&media).is_some(),
        "{label} answered {status} as {media}, which the OpenAPI document does not declare ({})",
        content
            .as_object()
            .map(|c| c.keys().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    );
    if media != "application/json" {
        return;
    }
    let value: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{label} answered {status} with a body that is not JSON: {e}"));
    let schema = validator(&format!("{response}/content/{}/schema", token(&media)));
    let errors: Vec<String> = schema
        .iter_errors(&value)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{label} answered {status} against the OpenAPI document's schema: {errors:?}\nbody: {value}"
    );
}
