//! `conveyor next`: a workflow's upcoming fire times.

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
    let times: Vec<String> =
        schedule.upcoming(from, count).into_iter().map(|time| super::list::in_zone(schedule, time)).collect();
    if as_json {
        println!("{}", serde_json::to_string(&times).expect("strings serialise"));
    } else {
        for time in times {
            println!("{time}");
        }
    }
    ExitCode::SUCCESS
}
