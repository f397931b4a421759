//! `conveyor daemon`: the scheduler and engine without a screen.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};

use super::fail;
use crate::definition::{Catalog, load_folder};
use crate::engine::{Engine, EngineConfig, EngineError, Event, Membership};
use crate::metrics::Metrics;
use crate::store::StoreLocation;

pub fn run(
    workflows: &Path,
    state: &Path,
    location: &StoreLocation,
    metrics: Option<&str>,
    serves: &[String],
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return fail(format!("cannot start the runtime: {error}")),
    };
    let code = runtime.block_on(async move {
        if !workflows.is_dir() {
            return fail(format!("{}: no such folder (set --workflows DIR)", workflows.display()));
        }
        let catalog = load_folder(workflows);
        for problem in catalog.problems() {
            tracing::error!("{problem}");
        }
        let metrics = match Metrics::open(metrics, &catalog) {
            Ok(metrics) => metrics,
            Err(error) => return fail(error),
        };
        let serves = match routes_served(serves, &catalog) {
            Ok(serves) => serves,
            Err(error) => return fail(error),
        };
        let membership = match Membership::join_serving(state, location, &serves) {
            Ok(membership) => membership.map(Arc::new),
            Err(error) => return fail(error),
        };
        // Leading or standing by, this process runs the attempts offered on the routes it serves.
        let _worker = match &membership {
            Some(membership) => match start_worker(membership, workflows, state, location, serves, &catalog) {
                Ok(worker) => Some(worker),
                Err(error) => return fail(error),
            },
            None => None,
        };
        let (mut terminate, mut interrupt) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(terminate), Ok(interrupt)) => (terminate, interrupt),
            _ => return fail("cannot listen for SIGTERM and SIGINT"),
        };
        let mut metrics = metrics;
        // On a database several engines share, this process runs an engine only while it leads; otherwise it
        // waits in standby, ready to take over when the leader's lease lapses.
        let (engine, signal) = loop {
            if let Some(membership) = &membership
                && membership.leading().is_none()
            {
                tracing::info!("standby ({}): taking over when the leader's lease lapses", membership.standing());
                tokio::select! {
                    _ = membership.wait_to_lead() => {}
                    _ = terminate.recv() => return stop_standby("SIGTERM"),
                    _ = interrupt.recv() => return stop_standby("SIGINT"),
                }
            }
            let mut config = EngineConfig::new(workflows, state);
            config.subreaper = true;
            config.store = location.clone();
            config.membership = membership.clone();
            config.own_worker = false;
            config.commit_timer = metrics.as_ref().map(Metrics::commit_timer);
            let engine = match Engine::open(config, catalog.registry.clone()) {
                Ok(engine) => engine,
                // The lead changed hands between the bid and the opening: wait again.
                Err(EngineError::Standby(_)) if membership.is_some() => continue,
                Err(error) => return fail(error),
            };
            if let Some(metrics) = metrics.take() {
                metrics.serve(&engine, workflows, state, location);
            }
            match serve(&engine, &catalog, workflows, state, location, &mut terminate, &mut interrupt).await {
                Served::Signal(signal) => break (engine, signal),
                Served::Fault(reason) => return fail(format!("the engine stopped: {reason}")),
                Served::SteppedDown => {
                    tracing::warn!("stepped down: another engine leads now and recovers this engine's runs");
                }
            }
        };
        tracing::info!("{signal}: stopping; running tasks get their grace period, their runs stay resumable");
        notify(&[sd_notify::NotifyState::Stopping]);
        engine.shutdown().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    });
    // An expression past its budget may still be computing on a blocking thread: it does not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

/// The routes `--serves` names, checked against the registry: all of them when it names none.
fn routes_served(serves: &[String], catalog: &Catalog) -> Result<Vec<String>, String> {
    if serves.is_empty() {
        return Ok(vec![crate::work::ALL_ROUTES.to_string()]);
    }
    let registry = &catalog.registry;
    for route in serves {
        let known = route == crate::tasks::INLINE_ROUTE
            || route == crate::work::ALL_ROUTES
            || registry.services.contains_key(route)
            || registry.agents.contains_key(route);
        if !known {
            return Err(format!(
                "--serves {route}: no service or agent of that name is registered (`inline` stands for tasks with their own command)"
            ));
        }
    }
    Ok(serves.to_vec())
}

fn start_worker(
    membership: &Membership,
    workflows: &Path,
    state: &Path,
    location: &StoreLocation,
    routes: Vec<String>,
    catalog: &Catalog,
) -> Result<crate::work::Worker, String> {
    let capacity = crate::engine::max_parallel_tasks(&catalog.registry, crate::engine::default_max_parallel());
    let (workflows, state) = (std::path::absolute(workflows), std::path::absolute(state));
    let (workflows, state) = (workflows.map_err(|error| error.to_string())?, state.map_err(|error| error.to_string())?);
    let setup = crate::work::WorkerSetup::here(membership.engine(), routes, capacity, &workflows, &state);
    tracing::info!("serving {} with up to {capacity} attempt(s) at once", setup.routes.join(", "));
    // Strays of a task (a double fork) come back to this process, as they do to a leading engine's.
    crate::tasks::reclaim::become_subreaper();
    crate::work::Worker::serve(location, setup).map_err(|error| format!("cannot start the worker: {error}"))
}

/// How an engine's service ended.
enum Served {
    Signal(&'static str),
    /// Another engine sharing the database took the lead: this process waits in standby again.
    SteppedDown,
    Fault(String),
}

/// Runs the workflows on `engine` until a signal, a fault, or (on a shared database) the lead passes on.
async fn serve(
    engine: &Engine,
    catalog: &Catalog,
    workflows: &Path,
    state: &Path,
    location: &StoreLocation,
    terminate: &mut tokio::signal::unix::Signal,
    interrupt: &mut tokio::signal::unix::Signal,
) -> Served {
    let count = catalog.workflows.len();
    let mut broken: Vec<String> = catalog.broken.keys().map(|file| file.display().to_string()).collect();
    for workflow in &catalog.workflows {
        engine.register(workflow.clone());
    }
    if let Err(error) = engine.start_all().await {
        tracing::error!("some workflows could not be activated: {error}");
    }
    if let Err(error) = engine.watch_workflows().await {
        tracing::error!("the workflows folder is not watched, so edits need a restart: {error}");
    }
    tracing::info!(
        "conveyor daemon (PID {}) running {count} workflow(s) from {}, state in {}, records in {}",
        std::process::id(),
        workflows.display(),
        state.display(),
        shown(location)
    );
    // Under systemd (`Type=notify`): ready once the store is open and the workflows are loaded.
    let status = format!("running {count} workflow(s)");
    notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)]);
    if let Some(every) = sd_notify::watchdog_enabled() {
        tokio::spawn(watchdog(engine.clone(), every));
    }
    let mut events = engine.subscribe();
    loop {
        tokio::select! {
            _ = terminate.recv() => return Served::Signal("SIGTERM"),
            _ = interrupt.recv() => return Served::Signal("SIGINT"),
            ended = engine.ended() => {
                if engine.stepped_down() {
                    return Served::SteppedDown;
                }
                // A fault ended the engine: the process fails, so a supervisor starts a new one, which
                // recovers what this one left.
                let reason = ended.err().unwrap_or_else(|| "the engine stopped by itself".into());
                tracing::error!("{reason}");
                return Served::Fault(reason);
            }
            event = events.recv() => match event {
                Ok(event) => log_event(&event, &mut broken),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!("the log fell {missed} events behind; the store has them all");
                }
                Err(_) => return Served::Signal("the engine stopping"),
            },
        }
    }
}

/// A standby stops: it ran nothing, so nothing is left to stop (its membership leaves as it is dropped).
fn stop_standby(signal: &str) -> ExitCode {
    tracing::info!("{signal}: stopping (standby, nothing was running here)");
    ExitCode::SUCCESS
}

/// Tells systemd (when `NOTIFY_SOCKET` is set; otherwise nothing happens).
fn notify(state: &[sd_notify::NotifyState]) {
    if let Err(error) = sd_notify::notify(state) {
        tracing::warn!("telling systemd {state:?} failed: {error}");
    }
}

/// `WATCHDOG=1` twice per `WATCHDOG_USEC`, each time only after the engine's own loop has answered: a wedged
/// engine stops the pings and systemd restarts it (a new engine recovers what it left).
async fn watchdog(engine: Engine, every: std::time::Duration) {
    let half = every / 2;
    let mut ticks = tokio::time::interval(half);
    loop {
        ticks.tick().await;
        match tokio::time::timeout(half, engine.barrier()).await {
            Ok(Ok(())) => notify(&[sd_notify::NotifyState::Watchdog]),
            Ok(Err(_)) => return,
            Err(_) => tracing::error!("the engine did not answer within {half:?}: no watchdog ping"),
        }
    }
}

/// The daemon's own log: what an operator tailing it wants to see, one line each. `last_broken` is the broken
/// files the last reload (or the start) found.
fn log_event(event: &Event, last_broken: &mut Vec<String>) {
    match event {
        Event::Run(run) if run.state.is_finished() => match &run.error {
            Some(error) => tracing::info!("run {} of {} {}: {error}", run.id, run.workflow, run.state),
            None => tracing::info!("run {} of {} {}", run.id, run.workflow, run.state),
        },
        Event::Run(run) if run.started_at == Some(run.created_at) && run.finished_at.is_none() => {
            tracing::info!("run {} of {} started ({})", run.id, run.workflow, run.trigger);
        }
        Event::Alert(alert) => tracing::warn!("alert {}: {}", alert.id, alert.message),
        Event::Command { who, command, ok, outcome, .. } => {
            tracing::info!("command from {who}: {command} → {} {outcome}", if *ok { "ok:" } else { "refused:" });
        }
        Event::Reloaded { changed, removed, broken } => {
            // A reload that changed no workflow and no file's brokenness (a registry edit, say) is not worth a line.
            if !changed.is_empty() || !removed.is_empty() || broken != last_broken {
                tracing::info!("workflows reloaded: changed {changed:?}, removed {removed:?}, broken {broken:?}");
            }
            last_broken.clone_from(broken);
        }
        _ => {}
    }
}

/// Where the records are, for the start-up line: the password stays hidden (`DatabaseUrl`'s Display).
fn shown(location: &StoreLocation) -> String {
    match location {
        StoreLocation::StateFolder => "the state folder".into(),
        StoreLocation::Postgres(url) => url.to_string(),
    }
}
