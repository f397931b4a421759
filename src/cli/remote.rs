//! Operator commands from any shell: written to the store, acted on by the engine that holds the state
//! folder (a console or a daemon), whose answer is printed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;

use super::{RunArgs, fail, parse_params, read_input};
use crate::engine::client::send;
use crate::engine::{Command, Reply, current_user};
use crate::store::{StateLock, StoreLocation};

fn report<E: std::fmt::Display>(result: Result<Reply, E>) -> ExitCode {
    match result {
        Ok(reply) => {
            println!("{}", crate::text::visible(&reply.message));
            ExitCode::SUCCESS
        }
        Err(error) => fail(error),
    }
}

pub fn trigger(state: &Path, location: &StoreLocation, args: &RunArgs) -> ExitCode {
    let (params, input) = match (parse_params(&args.params), read_input(&args.input)) {
        (Ok(params), Ok(input)) => (params, input),
        (Err(error), _) | (_, Err(error)) => return fail(error),
    };
    report(send(state, location, &Command::Trigger { workflow: args.workflow.clone(), input, params }))
}

pub fn trigger_and_follow(
    state: &Path,
    location: &StoreLocation,
    workflow: &str,
    input: Option<Value>,
    params: BTreeMap<String, Value>,
) -> ExitCode {
    match send(state, location, &Command::Trigger { workflow: workflow.to_string(), input, params }) {
        Ok(reply) => {
            println!("{}", crate::text::visible(&reply.message));
            match reply.run {
                Some(run) => super::follow::follow_from_store(state, location, &run),
                None => ExitCode::SUCCESS,
            }
        }
        Err(error) => fail(error),
    }
}

/// `pause`/`resume` take a workflow id or a run id. With no engine running, a workflow's pause is written
/// to the store directly: the next engine honours it.
pub fn pause(workflows: &Path, state: &Path, location: &StoreLocation, target: &str, paused: bool) -> ExitCode {
    let is_workflow = crate::definition::load_folder(workflows).workflow(target).is_some();
    let command = match (is_workflow, paused) {
        (true, true) => Command::PauseWorkflow { workflow: target.into() },
        (true, false) => Command::ResumeWorkflow { workflow: target.into() },
        (false, true) => Command::PauseRun { run: target.into() },
        (false, false) => Command::ResumeRun { run: target.into() },
    };
    if is_workflow && *location == StoreLocation::StateFolder && !StateLock::is_held(state) {
        let result = crate::store::open(state, location).and_then(|store| {
            let now = chrono::Utc::now();
            store.set_paused(target, paused, now)?;
            let word = if paused { "paused" } else { "resumed" };
            let outcome = format!("workflow {target} {word} (no engine is running: the next one starts it this way)");
            store.audit(now, &current_user(), "cli", &command.to_json(), true, &outcome)?;
            Ok(outcome)
        });
        return report(result.map(Reply::new));
    }
    report(send(state, location, &command))
}

pub fn operate(state: &Path, location: &StoreLocation, command: super::Command) -> ExitCode {
    use super::Command as Cli;
    let command = match command {
        Cli::Cancel { run } => Command::CancelRun { run },
        Cli::Retry { run, task } => Command::RetryTask { run, task },
        Cli::Skip { run, task } => Command::SkipTask { run, task },
        Cli::Reroute { run, task, to } => Command::RerouteTask { run, task, to },
        Cli::Approve(gate) => {
            let super::GateArgs { run, task, items, comment } = gate;
            Command::Approve { run, task: task.unwrap_or_default(), items, comment }
        }
        Cli::Reject(gate) => {
            let super::GateArgs { run, task, items, comment } = gate;
            Command::Reject { run, task: task.unwrap_or_default(), items, comment }
        }
        Cli::Ack { id } => Command::AckAlert { id },
        other => unreachable!("{other:?} is dispatched elsewhere"),
    };
    report(send(state, location, &command))
}
