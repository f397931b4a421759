//! `conveyor gates`: every gate waiting for an operator, read from the store (no engine needed).

use std::path::Path;
use std::process::ExitCode;

use serde_json::{Value, json};

use super::fail;
use super::history::print_table;
use crate::store::StoreLocation;
use crate::text::visible;

pub fn run(state: &Path, location: &StoreLocation, as_json: bool) -> ExitCode {
    if *location == StoreLocation::StateFolder && !state.join(crate::store::DATABASE_FILE).exists() {
        if as_json {
            println!("[]");
        } else {
            println!("no gate waits (no store in {})", state.display());
        }
        return ExitCode::SUCCESS;
    }
    let store = match crate::store::open(state, location) {
        Ok(store) => store,
        Err(error) => return fail(error),
    };
    let tasks = match store.waiting_gates() {
        Ok(tasks) => tasks,
        Err(error) => return fail(error),
    };
    let mut gates = Vec::new();
    for task in tasks {
        let workflow = store.run(&task.run_id).ok().flatten().map(|run| run.workflow).unwrap_or_default();
        let gate = crate::tasks::gate_summary(task.output.as_ref().unwrap_or(&Value::Null));
        gates.push((task, workflow, gate));
    }
    if as_json {
        let listed: Vec<Value> = gates
            .iter()
            .map(|(task, workflow, gate)| {
                let items: Vec<Value> = gate
                    .held
                    .iter()
                    .map(|(id, fields)| {
                        let fields: serde_json::Map<String, Value> = fields.iter().cloned().collect();
                        json!({"id": id, "fields": fields})
                    })
                    .collect();
                json!({
                    "run": task.run_id, "workflow": workflow, "task": task.name, "items": items,
                    "rules": gate.rules, "held_by": gate.held_by, "waiting_since": gate.waiting_since,
                    "expires_at": gate.expires_at, "on_timeout": gate.on_timeout,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&listed).expect("gates serialise"));
        return ExitCode::SUCCESS;
    }
    let header = ["RUN", "WORKFLOW", "TASK", "ITEM", "FIELDS", "WAITING SINCE", "EXPIRES"].map(String::from);
    let mut rows = Vec::new();
    for (task, workflow, gate) in &gates {
        for (id, fields) in &gate.held {
            let fields: Vec<String> =
                fields.iter().map(|(name, value)| format!("{name}={}", crate::tasks::plain_field(value))).collect();
            // Items come from task output: shown, never obeyed.
            rows.push([
                task.run_id.clone(),
                workflow.clone(),
                task.name.clone(),
                visible(id).into_owned(),
                visible(&fields.join(" ")).into_owned(),
                gate.waiting_since.clone().unwrap_or_else(|| "-".into()),
                gate.expires_at.clone().unwrap_or_else(|| "never".into()),
            ]);
        }
    }
    print_table(&header, &rows);
    if rows.is_empty() {
        println!("(no gate waits)");
    }
    ExitCode::SUCCESS
}
