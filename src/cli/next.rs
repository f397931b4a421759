//! `conveyor next`: a workflow's upcoming fire times.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, Utc};

use super::fail;
use crate::definition::{Trigger, load_folder};

pub fn run(workflows: &Path, id: &str, count: usize, from: Option<&str>, as_json: bool) -> ExitCode {
    let from = match from {
        None => Utc::now(),
        Some(text) => match DateTime::parse_from_rfc3339(text) {
            Ok(time) => time.with_timezone(&Utc),
            Err(error) => {
                return fail(format!(
                    "bad --from `{text}`: {error}; expected RFC 3339, e.g. 2026-03-08T00:00:00-05:00"
                ));
            }
        },
    };
    let catalog = load_folder(workflows);
    let Some(workflow) = catalog.workflow(id) else {
        return fail(format!("no workflow `{id}` in {}", workflows.display()));
    };
    let Trigger::Schedule(schedule) = &workflow.trigger else {
        return fail(format!("workflow `{id}` has a {} trigger, not a schedule", workflow.trigger.kind()));
    };
    let times = schedule.fires_after(from).take(count).map(|time| super::list::in_zone(schedule, time));
    match print(times, as_json) {
        Ok(0) if count > 0 && !as_json => {
            let from = from.to_rfc3339();
            eprintln!("conveyor: workflow `{id}` has no fire after {from} (fires are found up to the year 5000)");
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::SUCCESS,
        // `conveyor next … -n 100000 | head` is a normal way to stop reading.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => fail(format!("cannot write the fire times: {error}")),
    }
}

/// Writes each time as it is found, so a large `-n` never builds a list of that size; returns how many.
fn print(times: impl Iterator<Item = String>, as_json: bool) -> std::io::Result<usize> {
    let mut out = std::io::stdout().lock();
    let mut printed = 0;
    if as_json {
        write!(out, "[")?;
    }
    for time in times {
        if as_json {
            let separator = if printed == 0 { "" } else { "," };
            write!(out, "{separator}{}", serde_json::Value::from(time))?;
        } else {
            writeln!(out, "{time}")?;
        }
        printed += 1;
    }
    if as_json {
        writeln!(out, "]")?;
    }
    out.flush()?;
    Ok(printed)
}
