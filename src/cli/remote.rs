//! Operator commands from any shell: written to the store, acted on by the engine that holds the state
//! folder (a console or a daemon), whose answer is printed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{RunArgs, fail, parse_params, read_input};
use crate::engine::{Command, Reply, current_user};
use crate::store::{StateLock, Store};

/// The engine polls for commands every 250 ms; this leaves room for a busy one. A command no engine took by
/// then is expired in the store, so it never runs later behind the operator's back.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

fn no_engine(state: &Path) -> String {
    format!(
        "no engine holds {}: start one with `conveyor daemon` or the console (`conveyor`), or run a workflow here with `conveyor run WORKFLOW`",
        state.display()
    )
}

/// Sends `command` to the engine holding `state` and waits for its answer.
pub fn send(state: &Path, command: &Command) -> Result<Reply, String> {
    if !StateLock::is_held(state) {
        return Err(no_engine(state));
    }
    send_within(state, command, answer_within())
}

/// `CONVEYOR_ANSWER_WITHIN` (seconds) shortens or lengthens the wait, for scripts and tests.
fn answer_within() -> Duration {
    std::env::var("CONVEYOR_ANSWER_WITHIN")
        .ok()
        .and_then(|text| text.parse::<f64>().ok())
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0 && *seconds < 86_400.0)
        .map_or(ANSWER_WITHIN, Duration::from_secs_f64)
}

fn send_within(state: &Path, command: &Command, within: Duration) -> Result<Reply, String> {
    let store = Store::open(state).map_err(|error| error.to_string())?;
    let now = chrono::Utc::now();
    let deadline = now + chrono::Duration::from_std(within).unwrap_or(chrono::Duration::seconds(30));
    let id = store
        .enqueue_command(now, &current_user(), &command.to_json(), deadline)
        .map_err(|error| format!("the command could not be queued: {error}"))?;
    let asked = Instant::now();
    loop {
        let result = match store.command_result(id) {
            Ok(result) => result,
            // A busy store is retried until the deadline; what counts is what the engine recorded.
            Err(_) if asked.elapsed() <= within => None,
            Err(error) => return Err(format!("cannot read the command's outcome: {error}")),
        };
        match result {
            Some((true, outcome)) => {
                return serde_json::from_str(&outcome).or_else(|_| Ok(Reply::new(outcome)));
            }
            Some((false, error)) => return Err(error),
            None if asked.elapsed() > within => {
                // Either this marks it expired (it will never run) or the engine took it first (read its answer).
                return match store.expire_command(id, chrono::Utc::now()) {
                    Ok(true) => Err(format!(
                        "not carried out: the engine holding {} did not take the command within {}s (it may be busy or stuck; see its log); nothing was done",
                        state.display(),
                        within.as_secs_f64()
                    )),
                    Ok(false) => match store.command_result(id) {
                        Ok(Some((true, outcome))) => {
                            serde_json::from_str(&outcome).or_else(|_| Ok(Reply::new(outcome)))
                        }
                        Ok(Some((false, error))) => Err(error),
                        _ => Err("the command's outcome could not be read; see `conveyor history`".into()),
                    },
                    // The engine's own deadline check records it as not carried out: it never runs late.
                    Err(error) => Err(format!(
                        "not carried out: no engine took the command within {}s, and the store is not writable ({error}); the engine will record it as expired",
                        within.as_secs_f64()
                    )),
                };
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn report(result: Result<Reply, String>) -> ExitCode {
    match result {
        Ok(reply) => {
            println!("{}", crate::text::visible(&reply.message));
            ExitCode::SUCCESS
        }
        Err(error) => fail(error),
    }
}

pub fn trigger(state: &Path, args: &RunArgs) -> ExitCode {
    let (params, input) = match (parse_params(&args.params), read_input(&args.input)) {
        (Ok(params), Ok(input)) => (params, input),
        (Err(error), _) | (_, Err(error)) => return fail(error),
    };
    report(send(state, &Command::Trigger { workflow: args.workflow.clone(), input, params }))
}

pub fn trigger_and_follow(
    state: &Path,
    workflow: &str,
    input: Option<Value>,
    params: BTreeMap<String, Value>,
) -> ExitCode {
    match send(state, &Command::Trigger { workflow: workflow.to_string(), input, params }) {
        Ok(reply) => {
            println!("{}", crate::text::visible(&reply.message));
            match reply.run {
                Some(run) => super::follow::follow_from_store(state, &run),
                None => ExitCode::SUCCESS,
            }
        }
        Err(error) => fail(error),
    }
}

/// `pause`/`resume` take a workflow id or a run id. With no engine running, a workflow's pause is written
/// to the store directly: the next engine honours it.
pub fn pause(workflows: &Path, state: &Path, target: &str, paused: bool) -> ExitCode {
    let is_workflow = crate::definition::load_folder(workflows).workflow(target).is_some();
    let command = match (is_workflow, paused) {
        (true, true) => Command::PauseWorkflow { workflow: target.into() },
        (true, false) => Command::ResumeWorkflow { workflow: target.into() },
        (false, true) => Command::PauseRun { run: target.into() },
        (false, false) => Command::ResumeRun { run: target.into() },
    };
    if is_workflow && !StateLock::is_held(state) {
        let result = Store::open(state).and_then(|store| {
            let now = chrono::Utc::now();
            store.set_paused(target, paused, now)?;
            let word = if paused { "paused" } else { "resumed" };
            let outcome = format!("workflow {target} {word} (no engine is running: the next one starts it this way)");
            store.audit(now, &current_user(), "cli", &command.to_json(), true, &outcome)?;
            Ok(outcome)
        });
        return report(result.map(Reply::new).map_err(|error| error.to_string()));
    }
    report(send(state, &command))
}

pub fn operate(state: &Path, command: super::Command) -> ExitCode {
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
    report(send(state, &command))
}
