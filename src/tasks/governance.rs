//! Governance layers: built-in policy rules over the items of a task's input, and a gate where items wait
//! for an operator's yes or no.
//!
//! The layer takes the list at `items` (a dotted path into the input; the whole input when unset), judges
//! every item by each rule (`item` and `input` are in scope), drops the items a rule rejects, and holds the
//! items `approval` picks until an operator approves or rejects them. Its output is its input with the list
//! replaced by the items that passed, and a `governance` record of what happened to each.

use serde_json::{Map, Value, json};

use super::{Attempt, Ending, Execution, Executor};
use crate::definition::Layer;

pub struct GovernanceExecutor {
    pub name: String,
    pub layer: Layer,
}

impl Executor for GovernanceExecutor {
    fn execute(&self, attempt: Attempt) -> Execution {
        let (name, layer) = (self.name.clone(), self.layer.clone());
        Box::pin(async move {
            let Attempt { input, log, .. } = attempt;
            let what = format!("layer {name}");
            let judging = log.clone();
            let judged = super::budget::run_bounded(&what, super::budget::LAYER_BUDGET, move || {
                judge(&name, &layer, &input, &mut |line| judging.engine_line(line))
            });
            match judged.await {
                Ok(Verdict { output, waiting: 0 }) => Ending::Succeeded { output },
                Ok(Verdict { output, waiting }) => Ending::AwaitingApproval { output, waiting },
                Err(error) => {
                    log.engine_line(&error);
                    Ending::failed(error)
                }
            }
        })
    }
}

#[derive(Debug)]
pub struct Verdict {
    pub output: Value,
    /// Items held for an operator (in `output.governance.pending`).
    pub waiting: usize,
}

/// An item's name in messages: its `id` or `name` when it has one, else its place in the list.
fn label(item: &Value, index: usize) -> String {
    match item.get("id").or_else(|| item.get("name")) {
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => format!("item {}", index + 1),
    }
}

fn items_of<'a>(input: &'a Value, path: Option<&str>) -> Result<&'a Vec<Value>, String> {
    let mut value = input;
    if let Some(path) = path {
        for key in path.split('.') {
            value =
                value.get(key).ok_or_else(|| format!("the input has no `{path}`: expected a list of items there"))?;
        }
    }
    value.as_array().ok_or_else(|| format!("`{}` in the input is not a list", path.unwrap_or("the input")))
}

fn replace_items(input: &Value, path: Option<&str>, items: Vec<Value>) -> Value {
    let Some(path) = path else { return Value::Array(items) };
    let mut output = input.clone();
    let mut slot = &mut output;
    for key in path.split('.') {
        slot = &mut slot[key];
    }
    *slot = Value::Array(items);
    output
}

fn check(expression: &str, program: &cel::Program, item: &Value, input: &Value) -> Result<bool, String> {
    let mut context = cel::Context::default();
    context.add_variable("item", item).map_err(|error| error.to_string())?;
    context.add_variable("input", input).map_err(|error| error.to_string())?;
    match program.execute(&context) {
        Ok(cel::Value::Bool(result)) => Ok(result),
        Ok(other) => Err(format!("`{expression}` gave {other:?}, not true or false")),
        Err(error) => Err(format!("`{expression}` failed: {error}")),
    }
}

/// Applies a layer's rules and approval test to the input.
pub fn judge(name: &str, layer: &Layer, input: &Value, log: &mut dyn FnMut(&str)) -> Result<Verdict, String> {
    let path = layer.items.as_deref();
    let items = match path {
        None if !input.is_array() => std::slice::from_ref(input).to_vec(),
        _ => items_of(input, path).map_err(|error| format!("layer {name}: {error}"))?.clone(),
    };
    // Each expression is compiled once for all the items, not once per item.
    let rules: Vec<(&str, &str, std::sync::Arc<cel::Program>)> = layer
        .rules
        .iter()
        .map(|rule| {
            let program = crate::definition::compiled_expression(&rule.expr)
                .map_err(|error| format!("layer {name}, rule `{}`: {error}", rule.name))?;
            Ok((rule.name.as_str(), rule.expr.as_str(), program))
        })
        .collect::<Result<_, String>>()?;
    let approval = match &layer.approval {
        Some(expression) => Some((
            expression.as_str(),
            crate::definition::compiled_expression(expression)
                .map_err(|error| format!("layer {name}, approval: {error}"))?,
        )),
        None => None,
    };
    let (mut passed, mut pending, mut rejected) = (Vec::new(), Vec::new(), Vec::new());
    for (index, item) in items.into_iter().enumerate() {
        let who = label(&item, index);
        let mut failed = Vec::new();
        for (rule, expression, program) in &rules {
            match check(expression, program, &item, input) {
                Ok(true) => {}
                Ok(false) => failed.push(rule.to_string()),
                Err(error) => return Err(format!("layer {name}, rule `{rule}`, {who}: {error}")),
            }
        }
        if !failed.is_empty() {
            log(&format!("{who}: rejected by {}", failed.join(", ")));
            rejected.push(json!({"item": item, "by": failed}));
            continue;
        }
        let needs_approval = match &approval {
            Some((expression, program)) => check(expression, program, &item, input)
                .map_err(|error| format!("layer {name}, approval, {who}: {error}"))?,
            None => false,
        };
        if needs_approval {
            log(&format!("{who}: waits for an operator's approval"));
            pending.push(item);
        } else {
            log(&format!("{who}: passes"));
            passed.push(item);
        }
    }
    log(&format!("{} passed, {} rejected, {} waiting for approval", passed.len(), rejected.len(), pending.len()));
    let waiting = pending.len();
    let mut output = if path.is_none() && !input.is_array() {
        // A single item judged: it passes on as it was, or is replaced by null.
        passed.first().cloned().unwrap_or(Value::Null)
    } else {
        replace_items(input, path, passed)
    };
    let record = json!({"layer": name, "items": path, "rejected": rejected, "approved": [], "pending": pending});
    attach(&mut output, record);
    Ok(Verdict { output, waiting })
}

fn attach(output: &mut Value, record: Value) {
    match output {
        Value::Object(map) => {
            map.insert("governance".into(), record);
        }
        other => {
            let mut map = Map::new();
            map.insert("value".into(), other.take());
            map.insert("governance".into(), record);
            *other = Value::Object(map);
        }
    }
}

/// An operator's answer at the gate: pending items join the passed ones (approve) or the rejected ones.
pub fn decide(output: &Value, approve: bool, who: &str) -> Result<(Value, usize), String> {
    let mut output = output.clone();
    let record = output.get_mut("governance").ok_or("the task holds no governance record")?;
    let pending = record.get_mut("pending").and_then(Value::as_array_mut).map(std::mem::take).unwrap_or_default();
    let count = pending.len();
    let path = record.get("items").and_then(Value::as_str).map(str::to_string);
    if approve {
        if let Some(approved) = record.get_mut("approved").and_then(Value::as_array_mut) {
            approved.extend(pending.iter().map(|item| json!({"item": item, "by": who})));
        }
        let record = output["governance"].clone();
        let mut passed = match &path {
            Some(path) => items_of(&output, Some(path)).cloned().unwrap_or_default(),
            None => Vec::new(),
        };
        passed.extend(pending);
        output = match &path {
            Some(path) => replace_items(&output, Some(path), passed),
            None => output,
        };
        output["governance"] = record;
    } else if let Some(rejected) = record.get_mut("rejected").and_then(Value::as_array_mut) {
        rejected.extend(pending.into_iter().map(|item| json!({"item": item, "by": [format!("operator {who}")]})));
    }
    Ok((output, count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::Rule;

    fn layer() -> Layer {
        Layer {
            description: None,
            items: Some("applications".into()),
            rules: vec![Rule { name: "eligible".into(), expr: "item.score >= 0.7".into() }],
            approval: Some("item.amount > 100000".into()),
        }
    }

    fn input() -> Value {
        json!({"batch": 7, "applications": [
            {"id": "A-1", "score": 0.9, "amount": 5000},
            {"id": "A-2", "score": 0.95, "amount": 150000},
            {"id": "A-3", "score": 0.2, "amount": 9000},
        ]})
    }

    #[test]
    fn rules_drop_items_and_approval_holds_them() {
        let mut lines = Vec::new();
        let verdict = judge("Gate", &layer(), &input(), &mut |line| lines.push(line.to_string())).unwrap();
        assert_eq!(verdict.waiting, 1);
        assert_eq!(verdict.output["batch"], 7);
        assert_eq!(verdict.output["applications"], json!([{"id": "A-1", "score": 0.9, "amount": 5000}]));
        assert_eq!(verdict.output["governance"]["rejected"][0]["by"], json!(["eligible"]));
        assert_eq!(verdict.output["governance"]["pending"][0]["id"], "A-2");
        assert_eq!(
            lines,
            vec![
                "A-1: passes",
                "A-2: waits for an operator's approval",
                "A-3: rejected by eligible",
                "1 passed, 1 rejected, 1 waiting for approval",
            ]
        );
    }

    #[test]
    fn approving_passes_the_held_items_and_rejecting_drops_them() {
        let verdict = judge("Gate", &layer(), &input(), &mut |_| {}).unwrap();
        let (approved, count) = decide(&verdict.output, true, "ada").unwrap();
        assert_eq!(count, 1);
        let ids: Vec<&str> =
            approved["applications"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
        assert_eq!(ids, vec!["A-1", "A-2"]);
        assert_eq!(approved["governance"]["approved"][0]["by"], "ada");
        assert_eq!(approved["governance"]["pending"], json!([]));
        let (rejected, _) = decide(&verdict.output, false, "bo").unwrap();
        assert_eq!(rejected["applications"].as_array().unwrap().len(), 1);
        assert_eq!(rejected["governance"]["rejected"][1]["by"], json!(["operator bo"]));
    }

    #[test]
    fn a_missing_list_or_a_broken_rule_fails_clearly() {
        let error = judge("Gate", &layer(), &json!({"other": []}), &mut |_| {}).unwrap_err();
        assert_eq!(error, "layer Gate: the input has no `applications`: expected a list of items there");
        let mut bad = layer();
        bad.rules[0].expr = "item.score >= 'high'".into();
        let error = judge("Gate", &bad, &input(), &mut |_| {}).unwrap_err();
        assert!(error.starts_with("layer Gate, rule `eligible`, A-1: "), "{error}");
    }
}
