//! Turning the parameters given to a run (strings from a command line, or JSON values) into the typed
//! values its workflow declares.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::model::{Param, ParamType, Workflow};

/// Declared defaults, overridden by `given`. Unknown names and values of the wrong type are refused.
pub fn resolve_params(workflow: &Workflow, given: &BTreeMap<String, Value>) -> Result<Map<String, Value>, String> {
    resolve_declared(&workflow.id, &workflow.params, given)
}

/// `resolve_params` over a workflow's declared parameters alone, for callers that hold the declarations and not
/// the workflow (the console checks a trigger before sending it).
pub fn resolve_declared(
    workflow: &str,
    params: &[Param],
    given: &BTreeMap<String, Value>,
) -> Result<Map<String, Value>, String> {
    let mut resolved = Map::new();
    for param in params {
        if let Some(default) = &param.default {
            resolved.insert(param.name.clone(), default.clone());
        }
    }
    for (name, value) in given {
        let Some(param) = params.iter().find(|param| &param.name == name) else {
            let known: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
            let known = if known.is_empty() {
                "it declares none".to_string()
            } else {
                format!("expected one of {}", known.join(", "))
            };
            return Err(format!("workflow `{workflow}` has no parameter `{name}`: {known}"));
        };
        let typed = typed(value, param.kind).ok_or_else(|| {
            format!("parameter `{name}` of workflow `{workflow}` is a {}: got {value}", param.kind.name())
        })?;
        resolved.insert(name.clone(), typed);
    }
    Ok(resolved)
}

/// Parameters written `NAME=VALUE` (after `--param` on the command line, `-p` in the console), as strings:
/// `resolve_params` converts them to the declared types.
pub fn parse_assignments<S: AsRef<str>>(pairs: &[S], flag: &str) -> Result<BTreeMap<String, Value>, String> {
    pairs
        .iter()
        .map(|pair| {
            let pair = pair.as_ref();
            let (name, value) =
                pair.split_once('=').ok_or_else(|| format!("bad {flag} `{pair}`: expected NAME=VALUE"))?;
            Ok((name.trim().to_string(), Value::String(value.to_string())))
        })
        .collect()
}

/// A value (a string as typed, or JSON) in the declared type, if it is one.
pub fn typed(value: &Value, kind: ParamType) -> Option<Value> {
    match (kind, value) {
        (ParamType::String, Value::String(_)) => Some(value.clone()),
        (ParamType::String, Value::Number(_) | Value::Bool(_)) => Some(Value::String(value.to_string())),
        (ParamType::Integer, Value::Number(number)) if number.is_i64() => Some(value.clone()),
        (ParamType::Integer, Value::String(text)) => text.trim().parse::<i64>().ok().map(Value::from),
        (ParamType::Float, Value::Number(number)) => number.as_f64().map(Value::from),
        (ParamType::Float, Value::String(text)) => {
            text.trim().parse::<f64>().ok().filter(|f| f.is_finite()).map(Value::from)
        }
        (ParamType::Boolean, Value::Bool(_)) => Some(value.clone()),
        (ParamType::Boolean, Value::String(text)) => match text.trim() {
            "true" | "yes" | "1" => Some(Value::Bool(true)),
            "false" | "no" | "0" => Some(Value::Bool(false)),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::{Registry, parse_workflow};
    use serde_json::json;
    use std::path::Path;

    fn workflow() -> Workflow {
        let source = "id = \"W\"\n[params]\nlabel = \"x\"\nlimit = { type = \"integer\", default = 5 }\nfull = false\nratio = { type = \"float\" }\n[[tasks]]\nname = \"T\"\nrun = \"true\"\n";
        parse_workflow(Path::new("w.toml"), source, &Registry::default()).unwrap()
    }

    #[test]
    fn defaults_are_overridden_by_typed_values() {
        let given = BTreeMap::from([
            ("limit".to_string(), json!("12")),
            ("full".to_string(), json!("yes")),
            ("ratio".to_string(), json!(0.5)),
        ]);
        let resolved = resolve_params(&workflow(), &given).unwrap();
        assert_eq!(Value::Object(resolved), json!({"label": "x", "limit": 12, "full": true, "ratio": 0.5}));
    }

    #[test]
    fn the_declarations_alone_check_values_as_the_workflow_does() {
        let workflow = workflow();
        let given = BTreeMap::from([("limit".to_string(), json!("many"))]);
        assert_eq!(resolve_declared("W", &workflow.params, &given), resolve_params(&workflow, &given));
        assert_eq!(
            resolve_declared("Bare", &[], &BTreeMap::from([("x".to_string(), json!(1))])).unwrap_err(),
            "workflow `Bare` has no parameter `x`: it declares none"
        );
        assert_eq!(typed(&json!(" 7 "), ParamType::Integer), Some(json!(7)));
        assert_eq!(typed(&json!("maybe"), ParamType::Boolean), None);
    }

    #[test]
    fn unknown_and_ill_typed_params_are_refused() {
        let unknown = BTreeMap::from([("limt".to_string(), json!("1"))]);
        assert_eq!(
            resolve_params(&workflow(), &unknown).unwrap_err(),
            "workflow `W` has no parameter `limt`: expected one of full, label, limit, ratio"
        );
        let ill_typed = BTreeMap::from([("limit".to_string(), json!("many"))]);
        assert_eq!(
            resolve_params(&workflow(), &ill_typed).unwrap_err(),
            "parameter `limit` of workflow `W` is a integer: got \"many\""
        );
    }
}
