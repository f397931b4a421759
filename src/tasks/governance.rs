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
    // What the operator judges by: every held item passed all the rules and was picked by `approval`.
    let rule_names: Vec<&str> = layer.rules.iter().map(|rule| rule.name.as_str()).collect();
    let record = json!({
        "layer": name, "items": path, "rejected": rejected, "approved": [], "pending": pending,
        "rules": rule_names, "held_by": layer.approval, "show": layer.show,
    });
    let mut record = record;
    if let Some(limit) = layer.approval_timeout {
        // The engine stamps `waiting_since` and `expires_at` from this when the task starts to wait.
        record["approval_timeout"] = json!(humantime::format_duration(limit).to_string());
        record["on_timeout"] = json!(layer.on_timeout);
    }
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

/// An item's identity at a gate (`--item ID`): its `id` field when it has one, else its place in the held
/// list, counted from 0.
pub fn item_id(item: &Value, index: usize) -> String {
    match item.get("id") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => index.to_string(),
        Some(other) => other.to_string(),
    }
}

/// An operator's (or a timeout's) answer at a gate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answer<'a> {
    pub approve: bool,
    pub who: &'a str,
    /// The held items answered, by `item_id`; empty answers all of them.
    pub items: &'a [String],
    pub comment: Option<&'a str>,
}

/// What an answer did: the new output, how many items it decided, how many are still held.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    pub output: Value,
    pub decided: Vec<String>,
    pub still_held: usize,
}

/// Answers a gate: the chosen pending items join the passed ones (approve) or the rejected ones, each with
/// who decided and the comment. An id that is not held is refused, naming the ones that are.
pub fn decide(output: &Value, answer: Answer) -> Result<Decided, String> {
    let mut output = output.clone();
    let record = output.get_mut("governance").ok_or("the task holds no governance record")?;
    let pending = record.get_mut("pending").and_then(Value::as_array_mut).map(std::mem::take).unwrap_or_default();
    let ids: Vec<String> = pending.iter().enumerate().map(|(index, item)| item_id(item, index)).collect();
    if let Some(unknown) = answer.items.iter().find(|wanted| !ids.contains(wanted)) {
        return Err(format!("no item `{unknown}` is held at this gate (held: {})", ids.join(", ")));
    }
    let (mut chosen, mut kept, mut decided) = (Vec::new(), Vec::new(), Vec::new());
    for (item, id) in pending.into_iter().zip(ids) {
        if answer.items.is_empty() || answer.items.contains(&id) {
            decided.push(id);
            chosen.push(item);
        } else {
            kept.push(item);
        }
    }
    let still_held = kept.len();
    record["pending"] = Value::Array(kept);
    let path = record.get("items").and_then(Value::as_str).map(str::to_string);
    let entry = |item: &Value, by: Value| {
        let mut entry = json!({"item": item, "by": by});
        if let Some(comment) = answer.comment {
            entry["comment"] = json!(comment);
        }
        entry
    };
    if answer.approve {
        if let Some(approved) = record.get_mut("approved").and_then(Value::as_array_mut) {
            approved.extend(chosen.iter().map(|item| entry(item, json!(answer.who))));
        }
        let record = output["governance"].clone();
        let mut passed = match &path {
            Some(path) => items_of(&output, Some(path)).cloned().unwrap_or_default(),
            None => Vec::new(),
        };
        passed.extend(chosen);
        output = match &path {
            Some(path) => replace_items(&output, Some(path), passed),
            None => output,
        };
        output["governance"] = record;
    } else if let Some(rejected) = record.get_mut("rejected").and_then(Value::as_array_mut) {
        let by = json!([format!("operator {}", answer.who)]);
        rejected.extend(chosen.iter().map(|item| entry(item, by.clone())));
    }
    Ok(Decided { output, decided, still_held })
}

/// The items still held in a gate's output, with their ids.
pub fn held_items(output: &Value) -> Vec<(String, Value)> {
    let pending = output.pointer("/governance/pending").and_then(Value::as_array);
    pending
        .map(|items| items.iter().enumerate().map(|(index, item)| (item_id(item, index), item.clone())).collect())
        .unwrap_or_default()
}

/// What an operator needs to judge a waiting gate, read from its task's output (for the CLI and the console).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GateSummary {
    /// Held items: id, then the fields the layer's `show` names (all of them when it names none).
    pub held: Vec<(String, Vec<(String, Value)>)>,
    pub rules: Vec<String>,
    /// The `approval` expression that held them.
    pub held_by: Option<String>,
    pub waiting_since: Option<String>,
    pub expires_at: Option<String>,
    pub on_timeout: Option<String>,
}

pub fn summary(output: &Value) -> GateSummary {
    let record = output.get("governance").cloned().unwrap_or(Value::Null);
    let strings = |key: &str| -> Vec<String> {
        let list = record.get(key).and_then(Value::as_array);
        list.map(|list| list.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default()
    };
    let text = |key: &str| record.get(key).and_then(Value::as_str).map(str::to_string);
    let show = strings("show");
    let held = held_items(output)
        .into_iter()
        .map(|(id, item)| {
            let fields = match (&show[..], &item) {
                ([], Value::Object(map)) => map.iter().map(|(key, value)| (key.clone(), value.clone())).collect(),
                ([], other) => vec![("value".to_string(), other.clone())],
                (names, _) => {
                    names.iter().map(|name| (name.clone(), item.get(name).cloned().unwrap_or(Value::Null))).collect()
                }
            };
            (id, fields)
        })
        .collect();
    GateSummary {
        held,
        rules: strings("rules"),
        held_by: text("held_by"),
        waiting_since: text("waiting_since"),
        expires_at: text("expires_at"),
        on_timeout: text("on_timeout"),
    }
}

/// A field's value as an operator reads it: strings without their quotes, a missing one as `-`.
pub fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
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
            show: vec!["id".into(), "amount".into()],
            approval_timeout: None,
            on_timeout: Default::default(),
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

    fn all(approve: bool, who: &str) -> Answer<'_> {
        Answer { approve, who, items: &[], comment: None }
    }

    #[test]
    fn approving_passes_the_held_items_and_rejecting_drops_them() {
        let verdict = judge("Gate", &layer(), &input(), &mut |_| {}).unwrap();
        let approved = decide(&verdict.output, all(true, "ada")).unwrap();
        assert_eq!((approved.decided, approved.still_held), (vec!["A-2".to_string()], 0));
        let approved = approved.output;
        let ids: Vec<&str> =
            approved["applications"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
        assert_eq!(ids, vec!["A-1", "A-2"]);
        assert_eq!(approved["governance"]["approved"][0]["by"], "ada");
        assert_eq!(approved["governance"]["pending"], json!([]));
        let rejected = decide(&verdict.output, all(false, "bo")).unwrap().output;
        assert_eq!(rejected["applications"].as_array().unwrap().len(), 1);
        assert_eq!(rejected["governance"]["rejected"][1]["by"], json!(["operator bo"]));
    }

    fn two_held() -> Value {
        let input = json!({"applications": [
            {"id": "A-1", "score": 0.9, "amount": 500000},
            {"id": "A-2", "score": 0.95, "amount": 150000},
        ]});
        judge("Gate", &layer(), &input, &mut |_| {}).unwrap().output
    }

    #[test]
    fn the_record_says_which_rules_held_items_passed_and_why_they_are_held() {
        let record = &two_held()["governance"];
        assert_eq!(record["rules"], json!(["eligible"]));
        assert_eq!(record["held_by"], "item.amount > 100000");
        assert_eq!(record["show"], json!(["id", "amount"]));
    }

    #[test]
    fn answering_one_item_decides_it_alone_and_keeps_the_others_held() {
        let items = ["A-2".to_string()];
        let answer = Answer { approve: false, who: "ada", items: &items, comment: Some("over budget") };
        let decided = decide(&two_held(), answer).unwrap();
        assert_eq!((decided.decided, decided.still_held), (vec!["A-2".to_string()], 1));
        let record = &decided.output["governance"];
        assert_eq!(record["pending"][0]["id"], "A-1");
        assert_eq!(record["rejected"][0]["item"]["id"], "A-2");
        assert_eq!(record["rejected"][0]["by"], json!(["operator ada"]));
        assert_eq!(record["rejected"][0]["comment"], "over budget");
        let items = ["A-1".to_string()];
        let answer = Answer { approve: true, who: "bo", items: &items, comment: Some("fine") };
        let decided = decide(&decided.output, answer).unwrap();
        assert_eq!(decided.still_held, 0);
        assert_eq!(decided.output["applications"][0]["id"], "A-1");
        assert_eq!(decided.output["governance"]["approved"][0]["comment"], "fine");
        assert_eq!(decided.output["governance"]["approved"][0]["by"], "bo");
    }

    #[test]
    fn items_without_an_id_are_named_by_their_place_in_the_held_list() {
        let input = json!({"applications": [{"score": 0.9, "amount": 500000}, {"score": 0.9, "amount": 700000}]});
        let output = judge("Gate", &layer(), &input, &mut |_| {}).unwrap().output;
        let held: Vec<String> = held_items(&output).into_iter().map(|(id, _)| id).collect();
        assert_eq!(held, vec!["0", "1"]);
        let items = ["1".to_string()];
        let decided = decide(&output, Answer { approve: true, who: "ada", items: &items, comment: None }).unwrap();
        assert_eq!(decided.output["applications"][0]["amount"], 700000);
        assert!(decided.output["governance"]["approved"][0].get("comment").is_none());
    }

    #[test]
    fn an_item_that_is_not_held_is_refused_with_the_ones_that_are() {
        let items = ["A-9".to_string()];
        let error =
            decide(&two_held(), Answer { approve: true, who: "ada", items: &items, comment: None }).unwrap_err();
        assert_eq!(error, "no item `A-9` is held at this gate (held: A-1, A-2)");
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
