//! `:backfill` in the console: the same walk as `conveyor backfill`, on a thread of its own, sending through
//! the console's link (its own engine or the daemon's). Its progress goes to the status line; `:backfill
//! stop` stops starting runs (those started go on).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::Message;
use super::link::Link;
use crate::backfill::{self, Drive, Edge, Outcome, Plan, Step, Tally};
use crate::definition::load_folder;
use crate::store::Store;

/// What `:backfill` asked for, as typed: times are read against the workflow's zone once it is loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub workflow: String,
    pub from: String,
    pub to: Option<String>,
    pub parallel: usize,
    pub rerun: bool,
    pub dry_run: bool,
}

/// Plans the backfill off the screen's thread and walks it; the returned brakes stop it.
pub fn start(
    request: Request,
    link: Link,
    workflows: PathBuf,
    state: PathBuf,
    tx: mpsc::Sender<Message>,
    store: Arc<Mutex<Store>>,
) -> Arc<Drive> {
    let brakes = Arc::new(Drive::default());
    let driving = brakes.clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let say = |result: Result<String, String>| {
            let _ = tx.blocking_send(Message::Reply(result, None));
        };
        let plan = match plan(&request, &workflows, &store) {
            Ok(plan) => plan,
            Err(error) => return say(Err(error)),
        };
        let starting = plan.to_start().count();
        let skipped = plan.instants.len() - starting;
        if request.dry_run || starting == 0 {
            let (first, last) = match (plan.instants.first(), plan.instants.last()) {
                (Some(first), Some(last)) => (first.shown.clone(), last.shown.clone()),
                _ => return say(Ok(format!("backfill {}: no instant in that range", plan.workflow))),
            };
            let verb = if request.dry_run { "would start" } else { "to start" };
            return say(Ok(format!(
                "backfill {}: {} instants from {first} to {last}; {starting} {verb}, {skipped} already run",
                plan.workflow,
                plan.instants.len()
            )));
        }
        let mut report = |step: Option<&Step>, tally: &Tally| {
            if step.is_some() {
                say(Ok(progress(&plan.workflow, tally)));
            }
        };
        let location = link.location();
        let sender = move |command| handle.block_on(link.send(command));
        let outcome = backfill::drive(&plan, &state, &location, &sender, &driving, &mut report);
        say(ended(&plan.workflow, &outcome));
    });
    brakes
}

/// Stops starting runs; the walk then ends without waiting for the runs started.
pub fn stop(brakes: &Drive) {
    brakes.stop_starting.store(true, Ordering::SeqCst);
    brakes.stop_waiting.store(true, Ordering::SeqCst);
}

fn plan(request: &Request, workflows: &std::path::Path, store: &Mutex<Store>) -> Result<Plan, String> {
    let catalog = load_folder(workflows);
    let workflow = catalog.workflow(&request.workflow).ok_or_else(|| format!("no workflow `{}`", request.workflow))?;
    let zone = backfill::schedule_of(workflow)?.zone();
    let from = backfill::parse_time(&request.from, zone, Edge::From, "--from")?;
    let to = match &request.to {
        Some(text) => backfill::parse_time(text, zone, Edge::To, "--to")?,
        None => chrono::Utc::now(),
    };
    // The console's own store: the state folder's file, or the cluster's database.
    let store = store.lock().expect("store lock");
    Plan::new(workflow, from, to, backfill::DEFAULT_MAX_INSTANTS, request.parallel, request.rerun, Some(&*store))
}

fn progress(workflow: &str, tally: &Tally) -> String {
    let failed = if tally.failed > 0 { format!(", {} failed", tally.failed) } else { String::new() };
    format!("backfill {workflow}: {}/{} started, {} ended{failed}", tally.started, tally.total, tally.ended())
}

fn ended(workflow: &str, outcome: &Outcome) -> Result<String, String> {
    let Tally { total, started, skipped, succeeded, failed, .. } = outcome.tally;
    let summary =
        format!("{started} of {total} started, {succeeded} succeeded, {failed} failed, {skipped} already run");
    match (&outcome.error, outcome.stopped) {
        (Some(error), _) => Err(format!("backfill {workflow} stopped ({summary}): {error}")),
        (None, true) => Ok(format!(
            "backfill {workflow} stopped: {summary}; the {} runs still active go on",
            outcome.still_active.len()
        )),
        (None, false) => Ok(format!("backfill {workflow} done: {summary}")),
    }
}
