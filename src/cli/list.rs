use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::definition::{Catalog, Trigger, Workflow, load_folder};
use crate::schedule::Schedule;

pub fn run(folder: &Path, as_json: bool) -> ExitCode {
    if !folder.is_dir() {
        eprintln!("{}: no such folder (set --workflows DIR)", folder.display());
        return ExitCode::FAILURE;
    }
    let catalog = load_folder(folder);
    let now = Utc::now();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&to_json(&catalog, now)).expect("JSON values serialise"));
    } else {
        print_table(&catalog, now);
    }
    ExitCode::SUCCESS
}

fn next_fire(workflow: &Workflow, now: DateTime<Utc>) -> Option<String> {
    match &workflow.trigger {
        Trigger::Schedule(schedule) => schedule.next_after(now).map(|next| in_zone(schedule, next)),
        _ => None,
    }
}

/// RFC 3339 with the offset of the schedule's own zone, as operators read times there.
pub fn in_zone(schedule: &Schedule, time: DateTime<Utc>) -> String {
    schedule.in_zone(time)
}

fn to_json(catalog: &Catalog, now: DateTime<Utc>) -> serde_json::Value {
    let workflows: Vec<_> = catalog
        .workflows
        .iter()
        .map(|workflow| {
            let trigger = match &workflow.trigger {
                Trigger::Schedule(schedule) => {
                    json!({"type": "schedule", "cron": schedule.expression(), "timezone": schedule.zone().to_string()})
                }
                Trigger::Event { watch, .. } => json!({"type": "event", "watch": watch}),
                Trigger::Manual => json!({"type": "manual"}),
            };
            json!({
                "id": workflow.id,
                "description": workflow.description,
                "file": workflow.file,
                "trigger": trigger,
                "tasks": workflow.tasks.len(),
                "next_fire": next_fire(workflow, now),
            })
        })
        .collect();
    let broken: Vec<_> = catalog
        .broken
        .iter()
        .map(|(file, problems)| {
            let problems: Vec<_> =
                problems.iter().map(|p| json!({"line": p.line, "column": p.column, "message": p.message})).collect();
            json!({"file": file, "problems": problems})
        })
        .collect();
    json!({"workflows": workflows, "broken": broken})
}

fn print_table(catalog: &Catalog, now: DateTime<Utc>) {
    let rows: Vec<[String; 5]> = catalog
        .workflows
        .iter()
        .map(|workflow| {
            [
                workflow.id.clone(),
                workflow.trigger.summary(),
                workflow.tasks.len().to_string(),
                next_fire(workflow, now).unwrap_or_else(|| "-".to_string()),
                workflow.file.display().to_string(),
            ]
        })
        .collect();
    let header = ["ID", "TRIGGER", "TASKS", "NEXT FIRE", "FILE"].map(String::from);
    super::history::print_table(&header, &rows);
    if rows.is_empty() {
        println!("(no workflows in {})", catalog.folder.display());
    }
    for (file, problems) in &catalog.broken {
        let first = &problems[0];
        println!("BROKEN  {}:{}:{}: {}", file.display(), first.line, first.column, first.message);
    }
}
