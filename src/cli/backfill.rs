//! `conveyor backfill WORKFLOW --from T --to T`: a run per past instant of a schedule, in the engine that
//! holds the state folder (a daemon or a console), or in an engine of its own when none does.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::Utc;
use tokio::signal::unix::Signal;

use super::fail;
use crate::backfill::{self, Drive, Edge, Outcome, Plan, Step, Tally};
use crate::definition::load_folder;
use crate::engine::{Command, Engine, EngineConfig, Origin, Reply, Stop};
use crate::store::{StateLock, StoreError, StoreLocation};

#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    /// The workflow's id (it must have a schedule).
    #[arg(add = clap_complete::ArgValueCompleter::new(super::complete::workflows))]
    pub workflow: String,
    /// The first instant: RFC 3339 (`2026-03-01T00:00:00-05:00`) or a date (`2026-03-01`, from its first
    /// moment in the schedule's zone).
    #[arg(long, value_name = "TIME")]
    pub from: String,
    /// The last instant, included: RFC 3339, or a date (through its last second). Default: now.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// At most this many runs of the workflow active at once (never more than its `max_active_runs`).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub parallel: usize,
    /// Start a run for instants that already have one too.
    #[arg(long)]
    pub rerun: bool,
    /// List the instants and whether each would be started or skipped; start nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Refuse a range with more instants than this.
    #[arg(long, value_name = "N", default_value_t = backfill::DEFAULT_MAX_INSTANTS)]
    pub max: usize,
}

pub fn run(workflows: &Path, state: &Path, location: &StoreLocation, args: &BackfillArgs) -> ExitCode {
    let plan = match plan(workflows, state, location, args) {
        Ok(plan) => plan,
        Err(error) => return fail(error),
    };
    if args.dry_run {
        return dry_run(&plan);
    }
    let starting = plan.to_start().count();
    let skipped = plan.instants.len() - starting;
    if starting == 0 {
        println!(
            "{}: nothing to start ({} instants, {skipped} already run; --rerun runs them again)",
            plan.workflow,
            plan.instants.len()
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return fail(format!("cannot start the runtime: {error}")),
    };
    let code = runtime.block_on(walk(workflows, state, location, plan));
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

fn plan(workflows: &Path, state: &Path, location: &StoreLocation, args: &BackfillArgs) -> Result<Plan, String> {
    let catalog = load_folder(workflows);
    let workflow = catalog
        .workflow(&args.workflow)
        .ok_or_else(|| format!("no workflow `{}` in {}", args.workflow, workflows.display()))?;
    let zone = backfill::schedule_of(workflow)?.zone();
    let from = backfill::parse_time(&args.from, zone, Edge::From, "--from")?;
    let to = match &args.to {
        Some(text) => backfill::parse_time(text, zone, Edge::To, "--to")?,
        None => Utc::now(),
    };
    let store = crate::store::peek(state, location)
        .map_err(|error| format!("cannot read the runs in {}: {error}", state.display()))?;
    Plan::new(workflow, from, to, args.max, args.parallel, args.rerun, store.as_ref())
}

fn dry_run(plan: &Plan) -> ExitCode {
    let mut out = std::io::stdout().lock();
    for instant in &plan.instants {
        let what = match (&instant.existing, plan.rerun) {
            (None, _) => "start".to_string(),
            (Some(run), true) => format!("start again (has run {run})"),
            (Some(run), false) => format!("skip (has run {run})"),
        };
        let _ = writeln!(out, "{}  {what}", instant.shown);
    }
    let starting = plan.to_start().count();
    let _ = writeln!(
        out,
        "dry run: {} instants of {}; {starting} would start, {} skipped; nothing was started",
        plan.instants.len(),
        plan.workflow,
        plan.instants.len() - starting
    );
    ExitCode::SUCCESS
}

/// Which engine the commands go to.
enum Target {
    Daemon(PathBuf),
    Own(Engine),
}

async fn walk(workflows: &Path, state: &Path, location: &StoreLocation, plan: Plan) -> ExitCode {
    let target = match open_engine(workflows, state, location) {
        Ok(target) => target,
        Err(error) => return fail(error),
    };
    let brakes = Arc::new(Drive::default());
    let own = matches!(target, Target::Own(_));
    // Listening starts here, before the first run does: a Ctrl-C from then on is never the default's, which
    // would end this process without a word.
    let interrupts = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
        Ok(interrupts) => interrupts,
        Err(error) => return fail(format!("cannot listen for Ctrl-C: {error}")),
    };
    let watcher =
        tokio::spawn(brake_on_ctrl_c(interrupts, brakes.clone(), own, state.to_path_buf(), plan.workflow.clone()));
    let handle = tokio::runtime::Handle::current();
    let sender = match &target {
        Target::Daemon(state) => {
            let (state, location) = (state.clone(), location.clone());
            Box::new(move |command: Command| {
                crate::engine::client::send(&state, &location, &command).map_err(|error| error.to_string())
            }) as Box<dyn Send + Fn(Command) -> Result<Reply, String>>
        }
        Target::Own(engine) => {
            let engine = engine.clone();
            Box::new(move |command: Command| handle.block_on(engine.send_as(command, Origin::local("cli"))))
        }
    };
    let (state_dir, location, driving) = (state.to_path_buf(), location.clone(), brakes.clone());
    let walked = tokio::task::spawn_blocking(move || {
        let mut progress = Progress::new(std::io::stdout().is_terminal());
        let outcome = backfill::drive(&plan, &state_dir, &location, &sender, &driving, &mut |step, tally| {
            progress.show(step, tally)
        });
        progress.finish();
        (plan, outcome)
    })
    .await;
    watcher.abort();
    let (plan, outcome) = match walked {
        Ok(walked) => walked,
        Err(error) => return fail(format!("the backfill stopped: {error}")),
    };
    if let Target::Own(engine) = &target {
        if outcome.still_active.is_empty() {
            engine.shutdown().await;
        } else {
            // A second Ctrl-C: stopped on purpose, as `conveyor run`'s are, so no engine resumes them by itself.
            engine.shutdown_as(Stop::ByOperator).await;
        }
    }
    summarise(&plan, &outcome, own)
}

/// The daemon's or console's engine when one holds the state folder; else one of this process's own, with
/// every workflow known but no trigger live (no schedule fires while it backfills).
fn open_engine(workflows: &Path, state: &Path, location: &StoreLocation) -> Result<Target, String> {
    if StateLock::is_held(state) {
        eprintln!("an engine already holds {}: the runs start there", state.display());
        return Ok(Target::Daemon(state.to_path_buf()));
    }
    let catalog = load_folder(workflows);
    let config = EngineConfig { subreaper: true, store: location.clone(), ..EngineConfig::new(workflows, state) };
    match Engine::open(config, catalog.registry.clone()) {
        Ok(engine) => {
            for workflow in catalog.workflows {
                engine.register(workflow);
            }
            Ok(Target::Own(engine))
        }
        Err(crate::engine::EngineError::Store(StoreError::Locked { .. }) | crate::engine::EngineError::Standby(_)) => {
            Ok(Target::Daemon(state.to_path_buf()))
        }
        Err(error) => Err(error.to_string()),
    }
}

/// The first Ctrl-C stops new runs; the runs started go on. In an engine of this process they are waited for,
/// and a second Ctrl-C stops waiting (the engine then stops them, resumable).
async fn brake_on_ctrl_c(mut interrupts: Signal, brakes: Arc<Drive>, own: bool, state: PathBuf, workflow: String) {
    if interrupts.recv().await.is_none() {
        return;
    }
    brakes.stop_starting.store(true, Ordering::SeqCst);
    if !own {
        brakes.stop_waiting.store(true, Ordering::SeqCst);
        eprintln!(
            "\ninterrupted: no new run starts; the runs already started go on in the engine holding {} (`conveyor history {workflow}`)",
            state.display()
        );
        return;
    }
    eprintln!(
        "\ninterrupted: no new run starts; waiting for the runs already started to end (Ctrl-C again stops them; `conveyor resume RUN` carries them on)"
    );
    if interrupts.recv().await.is_some() {
        brakes.stop_waiting.store(true, Ordering::SeqCst);
    }
}

fn summarise(plan: &Plan, outcome: &Outcome, own: bool) -> ExitCode {
    let Tally { total, started, skipped, succeeded, failed, gone } = outcome.tally;
    let mut line =
        format!("backfill of {}: {started} of {total} started, {succeeded} succeeded, {failed} failed", plan.workflow);
    if gone > 0 {
        line.push_str(&format!(", {gone} ended and pruned"));
    }
    line.push_str(&format!(", {skipped} skipped (already run)"));
    println!("{line}");
    if !outcome.still_active.is_empty() {
        let where_ = if own { "stopped, waiting for `conveyor resume RUN`" } else { "still running" };
        println!("runs {where_}: {}", outcome.still_active.join(" "));
    }
    if let Some(error) = &outcome.error {
        return fail(format!("backfill stopped: {error}"));
    }
    if outcome.stopped {
        return ExitCode::from(130);
    }
    if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// A one-line bar on a terminal, redrawn in place; a line per step otherwise.
struct Progress {
    bar: bool,
    drawn: bool,
}

impl Progress {
    fn new(bar: bool) -> Progress {
        Progress { bar, drawn: false }
    }

    fn show(&mut self, step: Option<&Step>, tally: &Tally) {
        let mut out = std::io::stdout().lock();
        if self.bar {
            let _ = write!(out, "\r\x1b[2K{}", bar(tally));
            self.drawn = true;
        } else if let Some(step) = step {
            let _ = writeln!(out, "{}", describe(step));
        }
        let _ = out.flush();
    }

    fn finish(&mut self) {
        if self.drawn {
            println!();
        }
    }
}

fn describe(step: &Step) -> String {
    match step {
        Step::Started { instant, run } => format!("{}  started run {run}", instant.shown),
        Step::Skipped { instant, run } => format!("{}  skipped: already has run {run}", instant.shown),
        Step::Ended { run, state: Some(state) } => format!("run {run} {state}"),
        Step::Ended { run, state: None } => format!("run {run} ended (pruned before its outcome was read)"),
    }
}

fn bar(tally: &Tally) -> String {
    const WIDTH: usize = 24;
    let total = tally.total.max(1);
    let filled = WIDTH * tally.ended() / total;
    let failed = if tally.failed > 0 { format!(", {} failed", tally.failed) } else { String::new() };
    format!(
        "[{}{}] {}/{} started, {} ended{failed}",
        "#".repeat(filled),
        "-".repeat(WIDTH - filled),
        tally.started,
        tally.total,
        tally.ended()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_with_ended_runs_and_names_failures() {
        let tally = Tally { total: 4, started: 3, succeeded: 1, failed: 1, ..Tally::default() };
        assert_eq!(bar(&tally), "[############------------] 3/4 started, 2 ended, 1 failed");
        assert_eq!(bar(&Tally::default()), "[------------------------] 0/0 started, 0 ended");
    }
}
