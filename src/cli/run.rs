use std::path::Path;
use std::process::ExitCode;

use super::follow::{attempt_line, exit_code, log_line, run_line, task_line};
use super::{RunArgs, fail, parse_params, read_input};
use crate::definition::load_folder;
use crate::engine::{Command, Engine, EngineConfig, Event, Origin, Stop};
use crate::state::{AttemptState, RunState};
use crate::store::{StateLock, StoreError, StoreLocation};
use crate::tasks::Stream;

pub fn run(workflows: &Path, state: &Path, location: &StoreLocation, args: &RunArgs) -> ExitCode {
    let catalog = load_folder(workflows);
    if catalog.workflow(&args.workflow).is_none() {
        let problems: Vec<String> = catalog.problems().map(ToString::to_string).collect();
        return fail(if problems.is_empty() {
            format!("no workflow `{}` in {}", args.workflow, workflows.display())
        } else {
            format!(
                "no valid workflow `{}` in {}; problems:\n{}",
                args.workflow,
                workflows.display(),
                problems.join("\n")
            )
        });
    }
    let (params, input) = match (parse_params(&args.params), read_input(&args.input)) {
        (Ok(params), Ok(input)) => (params, input),
        (Err(error), _) | (_, Err(error)) => return fail(error),
    };
    if StateLock::is_held(state) {
        eprintln!("an engine already holds {}: starting the run there and following it", state.display());
        return super::remote::trigger_and_follow(state, location, &args.workflow, input, params);
    }
    // One thread: a run's steps follow each other, and handing work between threads cost more than it won
    // (docs/benchmarks.md). Blocking work (secrets, HTTP, a capped log's tail) still has tokio's blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return fail(format!("cannot start the runtime: {error}")),
    };
    // The run's on_success/on_failure/on_cancel handler runs after the run ends: the engine stays up until it is
    // done, or it would be cut short with the engine (a handler that releases what a failed run held must finish).
    let handler_of = |state: RunState| {
        let workflow = catalog.workflow(&args.workflow)?;
        let handler = match state {
            RunState::Succeeded => workflow.on_success.as_ref(),
            RunState::Failed => workflow.on_failure.as_ref(),
            RunState::Cancelled => workflow.on_cancel.as_ref(),
            _ => None,
        };
        handler.map(|task| task.name.clone())
    };
    let handlers = (handler_of(RunState::Succeeded), handler_of(RunState::Failed), handler_of(RunState::Cancelled));
    let code = runtime.block_on(async move {
        let mut config = EngineConfig::new(workflows, state);
        config.subreaper = true;
        config.store = location.clone();
        let engine = match Engine::open(config, catalog.registry.clone()) {
            Ok(engine) => engine,
            Err(crate::engine::EngineError::Store(StoreError::Locked { .. })) => {
                return super::remote::trigger_and_follow(state, location, &args.workflow, input, params);
            }
            Err(crate::engine::EngineError::Standby(leader)) => {
                eprintln!("another engine leads ({leader}): starting the run there and following it");
                return super::remote::trigger_and_follow(state, location, &args.workflow, input, params);
            }
            Err(error) => return fail(error),
        };
        for workflow in catalog.workflows {
            engine.register(workflow);
        }
        let mut events = engine.subscribe();
        let trigger = Command::Trigger { workflow: args.workflow.clone(), input, params };
        let run_id = match engine.send_as(trigger, Origin::local("cli")).await {
            Ok(reply) => {
                println!("{}", reply.message);
                reply.run.unwrap_or_default()
            }
            Err(error) => {
                engine.shutdown().await;
                return fail(error);
            }
        };
        let mut handler = None;
        let mut code = None;
        let code = loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => {
                        if let Some(ended) = print_event(&run_id, &event) {
                            handler = match &event {
                                Event::Run(run) if run.state == RunState::Succeeded => handlers.0.clone(),
                                Event::Run(run) if run.state == RunState::Failed => handlers.1.clone(),
                                Event::Run(run) if run.state == RunState::Cancelled => handlers.2.clone(),
                                _ => None,
                            };
                            code = Some(ended);
                        }
                        if let Event::Attempt(attempt) = &event
                            && attempt.run_id == run_id
                            && Some(&attempt.task) == handler.as_ref()
                            && attempt.state != AttemptState::Running
                        {
                            handler = None;
                        }
                        if handler.is_none() && let Some(code) = code.take() { break code }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        println!("… {missed} events skipped; `conveyor logs {run_id}` has everything");
                    }
                    Err(_) => break ExitCode::FAILURE,
                },
                _ = tokio::signal::ctrl_c() => {
                    eprintln!("interrupted: stopping the run's tasks; `conveyor resume {run_id}` carries it on");
                    // Stopped on purpose: no engine resumes it by itself.
                    engine.shutdown_as(Stop::ByOperator).await;
                    return ExitCode::from(130);
                }
                ended = engine.ended() => {
                    let reason = ended.err().unwrap_or_else(|| "the engine stopped by itself".into());
                    return fail(format!("the engine stopped: {reason}"));
                }
            }
        };
        engine.shutdown().await;
        code
    });
    // An expression past its budget may still be computing on a blocking thread: it does not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

/// Prints one event of `run_id`; the exit code once the run has ended.
fn print_event(run_id: &str, event: &Event) -> Option<ExitCode> {
    match event {
        Event::Attempt(attempt) if attempt.run_id == run_id && attempt.state == AttemptState::Running => {
            println!("{}", attempt_line(attempt));
        }
        Event::Task(task) if task.run_id == run_id => {
            if let Some(line) = task_line(task) {
                println!("{line}");
            }
        }
        Event::Log { run_id: id, task, line, stream, .. } if id == run_id && *stream != Stream::Engine => {
            println!("{}", log_line(task, line));
        }
        Event::Run(run) if run.id == run_id && run.state.is_finished() => {
            println!("{}", run_line(run));
            return Some(exit_code(run.state));
        }
        _ => {}
    }
    None
}
