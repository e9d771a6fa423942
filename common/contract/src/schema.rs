//! What the API description says about a wire field beyond its Rust type: the rules the
//! services check a request against (lengths, patterns, ranges), so that a request valid
//! against the OpenAPI document is one a service accepts. Each function is a field's
//! `#[schema(schema_with = …)]` and names the check it mirrors.

use serde_json::{Value, json};
use utoipa::openapi::Schema;

fn schema(value: Value) -> Schema {
    serde_json::from_value(value).expect("a JSON Schema utoipa reads")
}

/// No control characters (C0, DEL, C1) and at least one character that is not white space.
const VISIBLE_TEXT: &str =
    "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$";

/// A credential type's, field's or credential's name (`credential::domain::check_name`): not
/// blank, at most 200 characters, no control characters.
pub fn name() -> Schema {
    schema(json!({"type": "string", "minLength": 1, "maxLength": 200, "pattern": VISIBLE_TEXT}))
}

/// [`name`], or absent/`null` (a patch).
pub fn optional_name() -> Schema {
    schema(json!({"type": ["string", "null"], "minLength": 1, "maxLength": 200, "pattern": VISIBLE_TEXT}))
}

/// A field definition's id (`credential::domain::is_field_id`).
pub fn field_id() -> Schema {
    schema(json!({"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]{0,63}$"}))
}

/// A field's value type (`credential::domain::VALUE_TYPES`).
pub fn value_type() -> Schema {
    schema(json!({
        "type": "string",
        "enum": ["plain_text", "password", "email", "url", "note", "number", "totp"],
    }))
}

/// A permission without wildcards, as a type's scope (`credential::domain::check_scope`,
/// `Permission::parse`), or `null`.
pub fn permission_scope() -> Schema {
    schema(json!({
        "type": ["string", "null"],
        "maxLength": 128,
        "pattern": "^[a-z0-9_@-]+(\\.[a-z0-9_@-]+)*$",
    }))
}

/// An `https` URL (a type's icon, a user's image), or `null`: a host of letters, digits and
/// dots, then an optional path (what `url::Url` parses as https with a host).
pub fn https_url() -> Schema {
    schema(json!({
        "type": ["string", "null"],
        "maxLength": 2048,
        "pattern": "^https://[a-z0-9]+(\\.[a-z0-9]+)*(/[A-Za-z0-9._~/-]*)?$",
    }))
}

/// A rotation schedule in days, 1 to 3650 (`credential::rotation::check_rotation_days`), or
/// `null`.
pub fn rotation_days() -> Schema {
    schema(json!({"type": ["integer", "null"], "minimum": 1, "maximum": 3650}))
}

/// A company name: 1 to 200 characters once trimmed (`company-sync`'s `parse_name`).
pub fn company_name() -> Schema {
    schema(json!({"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"}))
}

/// A role name (`identity::roles::valid_name`), or absent/`null` in an update.
pub fn role_name() -> Schema {
    schema(json!({"type": ["string", "null"], "pattern": "^[A-Za-z0-9_.-]{1,64}$"}))
}

/// Permission strings, wildcards allowed (`Permission::parse`), or absent/`null` in an update.
pub fn permissions() -> Schema {
    schema(json!({
        "type": ["array", "null"],
        "items": {"type": "string", "maxLength": 128, "pattern": "^(\\*|[a-z0-9_@-]+(\\.[a-z0-9_@-]+)*(\\.\\*)?)$"},
    }))
}

/// A user's display name: 1 to 100 characters once trimmed, no control characters or
/// text-direction overrides (identity's `UpdateMe`), or absent/`null`.
pub fn user_name() -> Schema {
    schema(json!({
        "type": ["string", "null"],
        "minLength": 1,
        "maxLength": 100,
        "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f\\u202a-\\u202e\\u2066-\\u2069]*[^\\s\\x00-\\x1f\\x7f-\\x9f\\u202a-\\u202e\\u2066-\\u2069][^\\x00-\\x1f\\x7f-\\x9f\\u202a-\\u202e\\u2066-\\u2069]*$",
    }))
}

/// A field value in a request: a string, or a number for a `number` field
/// (`credential::domain::check_values`).
pub fn field_value() -> Schema {
    schema(json!({"type": ["string", "number"]}))
}
