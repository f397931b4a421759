use std::path::Path;
use std::process::ExitCode;

use super::fail;
use super::follow::seconds;
use crate::store::StoreLocation;
use crate::text::visible;

pub fn run(state: &Path, location: &StoreLocation, workflow: Option<&str>, limit: usize, as_json: bool) -> ExitCode {
    if *location == StoreLocation::StateFolder && !state.join(crate::store::DATABASE_FILE).exists() {
        if as_json {
            println!("[]");
        } else {
            println!("no runs yet (no store in {})", state.display());
        }
        return ExitCode::SUCCESS;
    }
    let store = match crate::store::open(state, location) {
        Ok(store) => store,
        Err(error) => return fail(error),
    };
    let runs = match store.runs(workflow, limit) {
        Ok(runs) => runs,
        Err(error) => return fail(error),
    };
    if as_json {
        // A run whose LLM agents counted tokens says how many, summed over its attempts.
        let mut listed = Vec::with_capacity(runs.len());
        for run in &runs {
            let mut entry = serde_json::to_value(run).expect("runs serialise");
            let attempts = store.attempts(&run.id, None).unwrap_or_default();
            let counted: Vec<_> = attempts.iter().filter(|attempt| attempt.prompt_tokens.is_some()).collect();
            if !counted.is_empty() {
                let sum = |tokens: fn(&&crate::store::AttemptRecord) -> Option<u64>| {
                    counted.iter().filter_map(tokens).sum::<u64>()
                };
                entry["tokens"] = serde_json::json!({
                    "prompt": sum(|attempt| attempt.prompt_tokens),
                    "completion": sum(|attempt| attempt.completion_tokens),
                });
            }
            listed.push(entry);
        }
        println!("{}", serde_json::to_string_pretty(&listed).expect("runs serialise"));
        return ExitCode::SUCCESS;
    }
    let header = ["RUN", "WORKFLOW", "STATE", "TRIGGER", "STARTED", "DURATION", "ERROR"].map(String::from);
    let rows: Vec<[String; 7]> = runs
        .iter()
        .map(|run| {
            let duration = match (run.started_at, run.finished_at) {
                (Some(start), Some(end)) => seconds(end - start),
                (Some(start), None) => format!("{}…", seconds(chrono::Utc::now() - start)),
                _ => "-".into(),
            };
            // The trigger names a file that arrived, the error may quote a server: shown, never obeyed.
            [
                run.id.clone(),
                run.workflow.clone(),
                run.state.to_string(),
                visible(&run.trigger).into_owned(),
                run.created_at.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string(),
                duration,
                visible(run.error.as_deref().unwrap_or_default()).into_owned(),
            ]
        })
        .collect();
    print_table(&header, &rows);
    if rows.is_empty() {
        println!("(no runs)");
    }
    ExitCode::SUCCESS
}

pub fn print_table<const N: usize>(header: &[String; N], rows: &[[String; N]]) {
    let mut widths = header.clone().map(|cell| cell.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(header).chain(rows) {
        let cells: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
}
