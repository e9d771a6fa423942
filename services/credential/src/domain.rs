//! Pure rules of credential types and values: what a valid field definition, type and value
//! is. No I/O; every error carries the path of the offending input.

use std::collections::HashSet;

use serde_json::{Value, json};
use ttscm_contract::FieldError;
use ttscm_contract::credential::{CredentialTypeInput, FieldDefinition, FieldValueInput};

/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Longest type or credential name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Value types a field may have.
pub const VALUE_TYPES: &[&str] = &["plain_text", "password", "email", "url", "note", "number", "totp"];

fn err(path: Vec<Value>, message: impl Into<String>) -> FieldError {
    FieldError::new(path, message)
}

/// Checks a name: non-empty after trimming, at most [`MAX_NAME_CHARS`], no control characters.
pub fn check_name(name: &str, path: Vec<Value>, errors: &mut Vec<FieldError>) {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        errors.push(err(path, "Name is required"));
    } else if trimmed.chars().count() > MAX_NAME_CHARS {
        errors.push(err(
            path,
            format!("Name must be at most {MAX_NAME_CHARS} characters"),
        ));
    } else if trimmed.chars().any(char::is_control) {
        errors.push(err(path, "Name must not contain control characters"));
    }
}

fn is_field_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Validates field definitions; `totp` fields are made secure (they always are).
pub fn check_fields(fields: &mut [FieldDefinition], errors: &mut Vec<FieldError>) {
    let mut seen = HashSet::new();
    for (i, field) in fields.iter_mut().enumerate() {
        let at = |key: &str| vec![json!("fields"), json!(i), json!(key)];
        if !is_field_id(&field.id) {
            errors.push(err(
                at("id"),
                "Field id must be letters, digits or '_', start with a letter, at most 64 characters",
            ));
        } else if !seen.insert(field.id.clone()) {
            errors.push(err(at("id"), format!("Field id '{}' is used twice", field.id)));
        }
        check_name(&field.name, at("name"), errors);
        if !VALUE_TYPES.contains(&field.value_type.as_str()) {
            errors.push(err(
                at("valueType"),
                format!("valueType must be one of {}", VALUE_TYPES.join(", ")),
            ));
        }
        if field.value_type == "totp" {
            field.secure = true;
        }
        field.name = field.name.trim().to_owned();
    }
}

/// Validates a permission scope string.
pub fn check_scope(scope: &Option<String>, errors: &mut Vec<FieldError>) {
    if let Some(scope) = scope
        && (ttscm_contract::Permission::parse(scope).is_err() || scope.contains('*'))
    {
        errors.push(err(
            vec![json!("permissionScope")],
            "permissionScope must be a permission like 'aws.credentials'",
        ));
    }
}

/// Validates an icon URL: absolute `https`, at most 2048 characters.
pub fn check_icon(icon: &Option<String>, errors: &mut Vec<FieldError>) {
    if let Some(icon) = icon {
        let ok = icon.len() <= 2048
            && url::Url::parse(icon).is_ok_and(|u| u.scheme() == "https" && u.host().is_some());
        if !ok {
            errors.push(err(vec![json!("icon")], "icon must be an https URL"));
        }
    }
}

/// Validates a whole type input, normalising it in place.
pub fn check_type_input(input: &mut CredentialTypeInput) -> Vec<FieldError> {
    let mut errors = Vec::new();
    check_name(&input.name, vec![json!("name")], &mut errors);
    input.name = input.name.trim().to_owned();
    check_scope(&input.permission_scope, &mut errors);
    check_icon(&input.icon, &mut errors);
    check_fields(&mut input.fields, &mut errors);
    errors
}

/// Whether `value` (already a string) parses as `value_type`.
pub fn value_parses_as(value_type: &str, value: &str) -> Result<(), &'static str> {
    match value_type {
        "plain_text" if value.contains(['\n', '\r']) => Err("must be a single line"),
        "email" => {
            let ok = value.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }) && !value.contains(char::is_whitespace)
                && value.matches('@').count() == 1;
            if ok {
                Ok(())
            } else {
                Err("must be an e-mail address")
            }
        }
        "url" => match url::Url::parse(value) {
            Ok(u) if u.has_host() || u.scheme() == "file" => Ok(()),
            _ => Err("must be an absolute URL"),
        },
        "number" => match value.trim().parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(()),
            _ => Err("must be a number"),
        },
        // An `otpauth://totp/` URI or a bare base32 secret, as vault will read it.
        "totp" => ttscm_runtime::totp::TotpSeed::parse(value).map(drop),
        _ => Ok(()),
    }
}

/// A validated value for one field.
#[derive(Clone)]
pub struct CheckedValue {
    /// The value's id (kept from the request or the existing credential, or new).
    pub id: Option<String>,
    /// The field.
    pub field_id: String,
    /// Whether the field is secure.
    pub secure: bool,
    /// The value as text.
    pub text: String,
}

/// Validates a full set of values against a type's fields. Missing optional fields and empty
/// optional values are left out.
pub fn check_values(
    fields: &[FieldDefinition],
    values: &[FieldValueInput],
) -> Result<Vec<CheckedValue>, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, input) in values.iter().enumerate() {
        let at = |key: &str| vec![json!("fields"), json!(i), json!(key)];
        let Some(field) = fields.iter().find(|f| f.id == input.field_id) else {
            errors.push(err(
                at("fieldId"),
                format!(
                    "Unknown field '{}'",
                    input.field_id.chars().take(64).collect::<String>()
                ),
            ));
            continue;
        };
        if !seen.insert(field.id.clone()) {
            errors.push(err(at("fieldId"), format!("Field '{}' is given twice", field.id)));
            continue;
        }
        let text = match (&input.value, field.value_type.as_str()) {
            (Value::String(s), _) => s.clone(),
            (Value::Number(n), "number") => n.to_string(),
            _ => {
                errors.push(err(at("value"), "Value must be a string"));
                continue;
            }
        };
        if text.len() > MAX_VALUE_BYTES {
            errors.push(err(
                at("value"),
                format!("Value must be at most {MAX_VALUE_BYTES} bytes"),
            ));
            continue;
        }
        if text.is_empty() {
            continue;
        }
        if let Err(problem) = value_parses_as(&field.value_type, &text) {
            errors.push(err(at("value"), format!("Value of '{}' {problem}", field.id)));
            continue;
        }
        out.push(CheckedValue {
            id: input.id.clone(),
            field_id: field.id.clone(),
            secure: field.secure,
            text,
        });
    }
    for field in fields.iter().filter(|f| f.required) {
        if !out.iter().any(|v| v.field_id == field.id)
            && !errors
                .iter()
                .any(|e| e.message.contains(&format!("'{}'", field.id)))
        {
            errors.push(err(
                vec![json!("fields")],
                format!("Field '{}' is required", field.id),
            ));
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(id: &str, value_type: &str, required: bool) -> FieldDefinition {
        FieldDefinition {
            id: id.into(),
            name: id.into(),
            required,
            secure: false,
            value_type: value_type.into(),
        }
    }

    fn input(field_id: &str, value: Value) -> FieldValueInput {
        FieldValueInput {
            id: None,
            field_id: field_id.into(),
            value,
        }
    }

    #[test]
    fn values_are_checked_against_their_type_with_paths() {
        let fields = [
            def("mail", "email", true),
            def("n", "number", false),
            def("otp", "totp", false),
        ];
        let errors = check_values(
            &fields,
            &[
                input("mail", json!("nope")),
                input("n", json!("x")),
                input("zz", json!("1")),
            ],
        )
        .err()
        .expect("invalid");
        let paths: Vec<_> = errors.iter().map(|e| e.path.clone()).collect();
        assert!(paths.contains(&vec![json!("fields"), json!(0), json!("value")]));
        assert!(paths.contains(&vec![json!("fields"), json!(1), json!("value")]));
        assert!(paths.contains(&vec![json!("fields"), json!(2), json!("fieldId")]));
        assert!(
            check_values(
                &fields,
                &[
                    input("mail", json!("a@b.co")),
                    input("n", json!(4.5)),
                    input("otp", json!("JBSWY3DPEHPK3PXP"))
                ]
            )
            .is_ok()
        );
    }

    #[test]
    fn a_missing_required_field_and_a_duplicate_are_refused() {
        let fields = [def("user", "plain_text", true)];
        assert!(check_values(&fields, &[]).is_err());
        assert!(check_values(&fields, &[input("user", json!("a")), input("user", json!("b"))]).is_err());
    }

    #[test]
    fn field_definitions_need_identifier_ids_and_known_types() {
        let mut fields = vec![
            def("1bad", "plain_text", false),
            def("ok", "weird", false),
            def("ok", "totp", false),
        ];
        let mut errors = Vec::new();
        check_fields(&mut fields, &mut errors);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(fields[2].secure, "totp fields are always secure");
    }
}
