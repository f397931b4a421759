//! The part of JSON Schema that an agent's `output_schema` may use, checked when the registry loads (an
//! unknown keyword is an error there, never silently ignored) and applied to every reply.
//!
//! Supported: `type` (one name or a list), `properties`, `required`, `additionalProperties` (true/false),
//! `items`, `enum`, `const`, `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `minLength`,
//! `maxLength`, `minItems`, `maxItems`; `description` and `title` are notes.

use serde_json::Value;

const TYPES: &[&str] = &["object", "array", "string", "number", "integer", "boolean", "null"];
const KEYWORDS: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "description",
    "title",
];

/// Why a schema cannot be used, naming where in it (`properties.score.type`).
pub fn check_schema(schema: &Value) -> Result<(), String> {
    check_at(schema, "")
}

fn check_at(schema: &Value, path: &str) -> Result<(), String> {
    let here = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    let Some(object) = schema.as_object() else {
        return Err(format!(
            "{}: expected a table (a schema), found {schema}",
            if path.is_empty() { "the schema" } else { path }
        ));
    };
    for (key, value) in object {
        match key.as_str() {
            "type" => {
                let names: Vec<&Value> = match value {
                    Value::Array(names) => names.iter().collect(),
                    one => vec![one],
                };
                for name in names {
                    if !name.as_str().is_some_and(|name| TYPES.contains(&name)) {
                        return Err(format!(
                            "{}: unknown type {name}, expected one of {}",
                            here(key),
                            TYPES.join(", ")
                        ));
                    }
                }
            }
            "properties" => {
                let Some(properties) = value.as_object() else {
                    return Err(format!("{}: expected a table of property schemas", here(key)));
                };
                for (name, property) in properties {
                    check_at(property, &format!("{}.{name}", here(key)))?;
                }
            }
            "items" => check_at(value, &here(key))?,
            "required" => {
                if !value.as_array().is_some_and(|names| names.iter().all(Value::is_string)) {
                    return Err(format!("{}: expected a list of property names", here(key)));
                }
            }
            "additionalProperties" => {
                if !value.is_boolean() {
                    return Err(format!("{}: expected true or false (a schema here is not supported)", here(key)));
                }
            }
            "enum" => {
                if !value.is_array() {
                    return Err(format!("{}: expected a list of values", here(key)));
                }
            }
            "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" => {
                if !value.is_number() {
                    return Err(format!("{}: expected a number", here(key)));
                }
            }
            "minLength" | "maxLength" | "minItems" | "maxItems" => {
                if !value.is_u64() {
                    return Err(format!("{}: expected a whole number of 0 or more", here(key)));
                }
            }
            "const" | "description" | "title" => {}
            unknown => {
                return Err(format!(
                    "{}: `{unknown}` is not supported in an output schema (supported: {})",
                    here(unknown),
                    KEYWORDS.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// The first way `value` breaks `schema` (a schema that passed `check_schema`), as `$.score: expected …`.
pub fn violation(schema: &Value, value: &Value) -> Option<String> {
    violation_at(schema, value, "$")
}

fn violation_at(schema: &Value, value: &Value, path: &str) -> Option<String> {
    let schema = schema.as_object()?;
    if let Some(kind) = schema.get("type") {
        let names: Vec<&str> = match kind {
            Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
            one => one.as_str().into_iter().collect(),
        };
        if !names.iter().any(|name| is_type(value, name)) {
            return Some(format!("{path}: expected {}, found {}", names.join(" or "), describe(value)));
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let allowed: Vec<String> = allowed.iter().map(Value::to_string).collect();
        return Some(format!("{path}: expected one of {}, found {}", allowed.join(", "), describe(value)));
    }
    if let Some(expected) = schema.get("const")
        && expected != value
    {
        return Some(format!("{path}: expected {expected}, found {}", describe(value)));
    }
    if let Some(number) = value.as_f64() {
        let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
        type Check = (&'static str, fn(f64, f64) -> bool, &'static str);
        let checks: [Check; 4] = [
            ("minimum", |n, b| n >= b, "at least"),
            ("maximum", |n, b| n <= b, "at most"),
            ("exclusiveMinimum", |n, b| n > b, "more than"),
            ("exclusiveMaximum", |n, b| n < b, "less than"),
        ];
        for (key, holds, words) in checks {
            if let Some(limit) = bound(key)
                && !holds(number, limit)
            {
                return Some(format!("{path}: expected a number {words} {limit}, found {number}"));
            }
        }
    }
    let size = |key: &str| schema.get(key).and_then(Value::as_u64);
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if let Some(minimum) = size("minLength").filter(|minimum| length < *minimum) {
            return Some(format!("{path}: expected at least {minimum} characters, found {length}"));
        }
        if let Some(maximum) = size("maxLength").filter(|maximum| length > *maximum) {
            return Some(format!("{path}: expected at most {maximum} characters, found {length}"));
        }
    }
    if let Some(items) = value.as_array() {
        let count = items.len() as u64;
        if let Some(minimum) = size("minItems").filter(|minimum| count < *minimum) {
            return Some(format!("{path}: expected at least {minimum} items, found {count}"));
        }
        if let Some(maximum) = size("maxItems").filter(|maximum| count > *maximum) {
            return Some(format!("{path}: expected at most {maximum} items, found {count}"));
        }
        if let Some(item_schema) = schema.get("items") {
            for (index, item) in items.iter().enumerate() {
                if let Some(problem) = violation_at(item_schema, item, &format!("{path}[{index}]")) {
                    return Some(problem);
                }
            }
        }
    }
    if let Some(object) = value.as_object() {
        for name in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            if !object.contains_key(name) {
                return Some(format!("{path}: the required field `{name}` is missing"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (name, field) in object {
            match properties.and_then(|properties| properties.get(name)) {
                Some(field_schema) => {
                    if let Some(problem) = violation_at(field_schema, field, &format!("{path}.{name}")) {
                        return Some(problem);
                    }
                }
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Some(format!("{path}: the field `{name}` is not allowed"));
                }
                None => {}
            }
        }
    }
    None
}

fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|n| n.fract() == 0.0),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    }
}

/// `a string ("yes")`: what was found, short.
fn describe(value: &Value) -> String {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    };
    let text = value.to_string();
    let shown: String = text.chars().take(40).collect();
    if shown.len() < text.len() { format!("{kind} ({shown}…)") } else { format!("{kind} ({shown})") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn score_schema() -> Value {
        json!({
            "type": "object",
            "required": ["score", "reason"],
            "additionalProperties": false,
            "properties": {
                "score": {"type": "number", "minimum": 0, "maximum": 1},
                "reason": {"type": "string", "minLength": 1},
                "tags": {"type": "array", "items": {"enum": ["small", "large"]}, "maxItems": 2}
            }
        })
    }

    #[test]
    fn a_reply_that_fits_passes_and_each_break_is_named_by_its_path() {
        let schema = score_schema();
        assert_eq!(check_schema(&schema), Ok(()));
        assert_eq!(violation(&schema, &json!({"score": 0.7, "reason": "fits"})), None);
        let cases = [
            (json!({"score": "high", "reason": "x"}), "$.score: expected number, found a string (\"high\")"),
            (json!({"score": 1.5, "reason": "x"}), "$.score: expected a number at most 1, found 1.5"),
            (json!({"score": 0.5}), "$: the required field `reason` is missing"),
            (json!({"score": 0.5, "reason": "x", "extra": 1}), "$: the field `extra` is not allowed"),
            (json!({"score": 0.5, "reason": ""}), "$.reason: expected at least 1 characters, found 0"),
            (
                json!({"score": 0.5, "reason": "x", "tags": ["huge"]}),
                "$.tags[0]: expected one of \"small\", \"large\", found a string (\"huge\")",
            ),
            (json!([1]), "$: expected object, found a list ([1])"),
        ];
        for (reply, expected) in cases {
            assert_eq!(violation(&schema, &reply).as_deref(), Some(expected), "{reply}");
        }
    }

    #[test]
    fn a_schema_with_an_unknown_keyword_or_type_is_refused_where_it_is_wrong() {
        assert_eq!(
            check_schema(&json!({"properties": {"score": {"type": "float"}}})),
            Err("properties.score.type: unknown type \"float\", expected one of object, array, string, number, integer, boolean, null".into())
        );
        let error = check_schema(&json!({"type": "object", "patternProperties": {}})).unwrap_err();
        assert!(
            error.starts_with("patternProperties: `patternProperties` is not supported in an output schema"),
            "{error}"
        );
        assert!(check_schema(&json!("object")).unwrap_err().starts_with("the schema: expected a table"));
        assert!(check_schema(&json!({"minLength": -1})).is_err());
    }

    #[test]
    fn integers_accept_whole_floats_and_type_lists_accept_any() {
        assert_eq!(violation(&json!({"type": "integer"}), &json!(3.0)), None);
        assert!(violation(&json!({"type": "integer"}), &json!(3.5)).is_some());
        assert_eq!(violation(&json!({"type": ["string", "null"]}), &json!(null)), None);
    }
}
