//! The worker every engine on a shared store runs, leader and standbys alike: it claims offered attempts
//! on the routes it serves, as many as it has room for, runs each as a process here, ships its lines every
//! half second, and finishes it. A claim that no longer stands (its offerer withdrew or cancelled it, or
//! gave it up when this engine went silent) stops the process group and discards the result.
//!
//! It runs on a thread and runtime of its own: nothing an attempt does here can hold up this engine's loop.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::offer::woken;
use super::spec::{Spec, ending_to_json, stream_code};
use crate::store::EngineId;
use crate::store::work::{Claimed, Finish, OFFERS_CHANNEL, Shipment, WorkId, WorkQueue};
use crate::tasks::{Attempt, CancelHandle, Ending, LogSink, ProcessExecutor, Started, cancel_pair};

/// How often held claims are checked (and lines shipped): the longest a process outlives a lost claim.
const KEEP_EVERY: Duration = Duration::from_millis(500);
/// The look for offers when no notification came.
const CLAIM_EVERY: Duration = Duration::from_secs(1);
/// Between tries to finish while the database does not answer.
const FINISH_AGAIN: Duration = Duration::from_millis(500);

/// What a worker is and serves (`host` is this machine's name, as `WorkerSetup::here` fills it).
#[derive(Debug, Clone)]
pub struct WorkerSetup {
    /// Its engine's registration: claims are held in its name, and stand while its heartbeat does.
    pub engine: EngineId,
    pub host: String,
    /// The routes it claims (`*`: all).
    pub routes: Vec<String>,
    /// Attempts at once.
    pub capacity: usize,
    /// Where processes start (relative paths and `${file:…}` secrets resolve against it).
    pub workflows_dir: PathBuf,
    /// This host's state folder: output files, and the marker its processes carry.
    pub state_dir: PathBuf,
}

impl WorkerSetup {
    /// A worker of `engine` on this host.
    pub fn here(
        engine: EngineId,
        routes: Vec<String>,
        capacity: usize,
        workflows_dir: &Path,
        state_dir: &Path,
    ) -> Self {
        WorkerSetup {
            engine,
            host: crate::engine::hostname(),
            routes,
            capacity,
            workflows_dir: workflows_dir.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
        }
    }
}

/// A running worker; dropping it stops it: no more claims, running attempts stopped and given back as
/// lost, so their offerer retries them elsewhere at once.
pub struct Worker {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Opens a work queue of its own on the shared store at `location` and starts working with it.
    pub fn serve(location: &crate::store::StoreLocation, setup: WorkerSetup) -> crate::store::Result<Worker> {
        let queue = crate::store::work::open_queue(location, &setup.state_dir)?.ok_or_else(|| {
            crate::store::StoreError::Database("the store is shared by no engines: there is no work to claim".into())
        })?;
        Worker::start(queue, setup).map_err(crate::store::StoreError::Io)
    }

    pub fn start(queue: WorkQueue, setup: WorkerSetup) -> std::io::Result<Worker> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let marker = marker(&setup.state_dir)?;
        let (stop, stopped) = oneshot::channel();
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let thread = std::thread::Builder::new().name("conveyor-worker".into()).spawn(move || {
            let _logging = tracing::dispatcher::set_default(&dispatch);
            runtime.block_on(work(Arc::new(queue), setup, marker, stopped));
        })?;
        Ok(Worker { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The id this host's state folder gives its workers' processes (`CONVEYOR_STATE_ID`): the next worker on
/// the folder finds what an earlier one left running. Not the store's id, which every engine shares.
fn marker(state_dir: &Path) -> std::io::Result<String> {
    crate::store::create_private_dir(state_dir)?;
    let path = state_dir.join("worker.id");
    if let Ok(id) = std::fs::read_to_string(&path)
        && !id.trim().is_empty()
    {
        return Ok(id.trim().to_string());
    }
    let id = format!("worker-{:016x}", rand::random::<u64>());
    std::fs::write(&path, &id)?;
    Ok(id)
}

/// An attempt running here.
struct Running {
    cancel: CancelHandle,
    lines: Arc<Mutex<Shipping>>,
    /// Its claim no longer stands: stopped, and its result is not sent.
    lost: bool,
    /// Its process and that process's start time, until the next check of the claims tells them.
    pid: Option<(u32, Option<u64>)>,
}

/// Lines waiting to be shipped, numbered, up to the attempt's log limit.
#[derive(Default)]
struct Shipping {
    next: i64,
    pending: Vec<(i16, String)>,
    bytes: u64,
    limit: u64,
    dropped: u64,
}

impl Shipping {
    fn push(&mut self, code: i16, line: &str) {
        if self.bytes + line.len() as u64 > self.limit {
            self.dropped += 1;
            return;
        }
        self.bytes += line.len() as u64 + 1;
        self.pending.push((code, line.to_string()));
    }

    /// The lines waiting, as one shipment (`None`: none are).
    fn take(&mut self, id: WorkId) -> Option<Shipment> {
        if self.pending.is_empty() {
            return None;
        }
        let lines = std::mem::take(&mut self.pending);
        let first = self.next;
        self.next += lines.len() as i64;
        Some(Shipment { work: id, first, lines })
    }

    /// The last lines, with a note of any left out.
    fn take_last(&mut self, id: WorkId) -> Option<Shipment> {
        if self.dropped > 0 {
            let note = format!(
                "[conveyor] {} line(s) past max_log_size ({}) were not sent from the engine that ran it",
                self.dropped,
                crate::tasks::limits::format_size(self.limit)
            );
            self.pending.push((0, note));
        }
        self.take(id)
    }
}

async fn work(queue: Arc<WorkQueue>, setup: WorkerSetup, marker: String, mut stopped: oneshot::Receiver<()>) {
    stop_leftovers(&marker).await;
    let mut offered = queue.wake_ups(OFFERS_CHANNEL);
    let (finished, mut endings) = mpsc::unbounded_channel::<(WorkId, Ending)>();
    let (started, mut starts) = mpsc::unbounded_channel::<(WorkId, Started)>();
    let mut running: HashMap<WorkId, Running> = HashMap::new();
    let mut keep = tokio::time::interval(KEEP_EVERY);
    let mut look = true;
    let mut told_unavailable = false;
    let mut unfinished: Vec<Finish> = Vec::new();
    // A claim failed: its statement may have committed all the same.
    let mut orphans_possible = false;
    // Lines a check of the claims could not ship (the database did not answer).
    let mut backlog: Vec<Shipment> = Vec::new();
    let setup = Arc::new(setup);
    loop {
        let room = setup.capacity.saturating_sub(running.len());
        if look && room > 0 {
            match queue.claim(setup.engine, setup.host.clone(), setup.routes.clone(), room).await {
                Ok(claimed) => {
                    told_unavailable = false;
                    // A full batch may have left more behind.
                    look = claimed.len() == room;
                    for claim in claimed {
                        let id = claim.id;
                        let lines = Arc::new(Mutex::new(Shipping::default()));
                        let (cancel, stop) = cancel_pair();
                        running.insert(id, Running { cancel, lines: Arc::clone(&lines), lost: false, pid: None });
                        let context = Context { setup: Arc::clone(&setup), marker: marker.clone(), lines };
                        let (finished, started) = (finished.clone(), started.clone());
                        let attempt = tokio::spawn(run(claim, context, stop, started));
                        tokio::spawn(async move {
                            let ending = attempt
                                .await
                                .unwrap_or_else(|_| Ending::failed("the engine that claimed it failed running it"));
                            let _ = finished.send((id, ending));
                        });
                    }
                }
                Err(error) => {
                    look = false;
                    orphans_possible = true;
                    if !told_unavailable {
                        tracing::warn!("claiming offered work failed ({error}): trying again");
                        told_unavailable = true;
                    }
                }
            }
        }
        tokio::select! {
            _ = &mut stopped => break,
            () = woken(&mut offered) => look = true,
            () = tokio::time::sleep(CLAIM_EVERY) => look = true,
            // Idle, it still looks once in a while: a claim whose answer was lost is held by no one else.
            _ = keep.tick(), if !running.is_empty() || orphans_possible => {
                let mut known: Vec<i64> = running.keys().map(|id| id.0).collect();
                known.extend(unfinished.iter().map(|finish| finish.id.0));
                if keep_claims(&queue, &setup, &mut running, known, &mut backlog).await {
                    orphans_possible = false;
                }
            }
            Some((id, started)) = starts.recv() => {
                // Told with the next check of the claims: an attempt that ends before it needs no note.
                if let (Some(pid), Some(attempt)) = (started.pid, running.get_mut(&id)) {
                    attempt.pid = Some((pid, started.pid_start));
                }
            }
            Some(ended) = endings.recv() => {
                look = true;
                // Every ending already there goes in the same transaction.
                let mut ended = Some(ended);
                while let Some((id, ending)) = ended.take().or_else(|| endings.try_recv().ok()) {
                    let Some(done) = running.remove(&id) else { continue };
                    if done.lost {
                        continue;
                    }
                    let (mut lines, rest): (Vec<_>, Vec<_>) = backlog.drain(..).partition(|shipment| shipment.work == id);
                    backlog = rest;
                    lines.extend(done.lines.lock().expect("lines").take_last(id));
                    unfinished.push(Finish { id, lines, ending: Ok(ending_to_json(&ending)) });
                }
            }
            () = tokio::time::sleep(FINISH_AGAIN), if !unfinished.is_empty() => {}
        }
        finish_all(&queue, &setup, &mut unfinished).await;
    }
    finish_all(&queue, &setup, &mut unfinished).await;
    stop_all(&queue, &setup, running, &mut endings).await;
}

/// Finishes what ended (`unfinished`, emptied once the database takes it), in one transaction; what the
/// database does not take now (it is down) is kept and sent again, as an engine holds its writes: an outage
/// shorter than the claims' life loses no result.
async fn finish_all(queue: &WorkQueue, setup: &WorkerSetup, unfinished: &mut Vec<Finish>) {
    if unfinished.is_empty() {
        return;
    }
    match queue.finish_many(setup.engine, unfinished.clone()).await {
        Ok(stood) => {
            for finish in unfinished.iter().filter(|finish| !stood.contains(&finish.id)) {
                tracing::warn!("work {}: the claim was lost before it ended; its result is discarded", finish.id.0);
            }
            unfinished.clear();
        }
        Err(error) => tracing::debug!("finishing {} attempt(s) failed ({error}); trying again", unfinished.len()),
    }
}

/// Ships lines and checks every claim: a claim gone stops its attempt (result discarded); one asked to stop
/// stops it (its ending is sent). `known`: every claim this worker knows of; any other it holds is given
/// back. Whether the database answered.
async fn keep_claims(
    queue: &WorkQueue,
    setup: &WorkerSetup,
    running: &mut HashMap<WorkId, Running>,
    known: Vec<i64>,
    backlog: &mut Vec<Shipment>,
) -> bool {
    let held: Vec<i64> = running.iter().filter(|(_, running)| !running.lost).map(|(id, _)| id.0).collect();
    let mut lines = std::mem::take(backlog);
    lines.extend(running.iter().flat_map(|(id, running)| running.lines.lock().expect("lines").take(*id)));
    let pids: Vec<_> = running
        .iter_mut()
        .filter_map(|(id, running)| running.pid.take().map(|(pid, start)| (*id, pid, start)))
        .collect();
    let standing = match queue.keep(setup.engine, known, held.clone(), lines.clone(), pids).await {
        Ok(standing) => standing,
        // Not known: nothing is stopped on a guess (the claims lapse for the offerer if this lasts), and the
        // lines go with the next check or the attempt's ending.
        Err(_) => {
            *backlog = lines;
            return false;
        }
    };
    for id in held {
        let Some(attempt) = running.get_mut(&WorkId(id)) else { continue };
        match standing.iter().find(|standing| standing.id.0 == id) {
            Some(standing) if standing.cancel => attempt.cancel.cancel(),
            Some(_) => {}
            None => {
                tracing::warn!("work {id}: the claim was lost (given up, or taken over); stopping its process group");
                attempt.lost = true;
                attempt.cancel.cancel();
            }
        }
    }
    true
}

/// Stops every running attempt and gives its work back as lost, so its offerer retries it at once.
async fn stop_all(
    queue: &WorkQueue,
    setup: &WorkerSetup,
    mut running: HashMap<WorkId, Running>,
    endings: &mut mpsc::UnboundedReceiver<(WorkId, Ending)>,
) {
    if running.is_empty() {
        return;
    }
    tracing::info!("stopping {} attempt(s) this engine claimed; their offerer runs them again", running.len());
    for attempt in running.values() {
        attempt.cancel.cancel();
    }
    let why = format!("engine {} on {} stopped while it ran this attempt", setup.engine.0, setup.host);
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while !running.is_empty() {
            let Some((id, _)) = endings.recv().await else { return };
            if let Some(done) = running.remove(&id)
                && !done.lost
            {
                let lines = done.lines.lock().expect("lines").take_last(id).into_iter().collect();
                let _ = queue.finish(setup.engine, id, lines, Err(why.clone())).await;
            }
        }
    })
    .await;
    if waited.is_err() {
        tracing::warn!("{} attempt(s) did not stop within 30s", running.len());
    }
}

/// Processes an earlier worker on this state folder left (it was killed): their work was given up.
async fn stop_leftovers(marker: &str) {
    let marker = marker.to_string();
    let found =
        tokio::task::spawn_blocking(move || crate::tasks::reclaim::marked_processes(&marker)).await.unwrap_or_default();
    if !found.is_empty() {
        tracing::warn!("stopping {} process(es) an earlier engine on this state folder left running", found.len());
        let pids: Vec<i32> = found.iter().map(|stray| stray.pid).collect();
        crate::tasks::reclaim::stop_processes(&pids, Duration::from_secs(5)).await;
    }
}

struct Context {
    setup: Arc<WorkerSetup>,
    marker: String,
    lines: Arc<Mutex<Shipping>>,
}

/// Runs one claimed attempt as a process here.
async fn run(
    claim: Claimed,
    context: Context,
    stop: crate::tasks::Cancel,
    started: mpsc::UnboundedSender<(WorkId, Started)>,
) -> Ending {
    let Claimed { id, offer } = claim;
    let spec: Spec = match serde_json::from_value(offer.spec) {
        Ok(spec) => spec,
        Err(error) => return Ending::failed(format!("the offer could not be read by this engine: {error}")),
    };
    let Context { setup, marker, lines } = context;
    lines.lock().expect("lines").limit = spec.max_log_size;
    let shipping = Arc::clone(&lines);
    let log = LogSink::detached(Arc::new(move |stream, line: &str, _| {
        shipping.lock().expect("lines").push(stream_code(stream), line);
    }));
    log.engine_line(&format!("claimed by engine {} on {}", setup.engine.0, setup.host));
    let workdir = setup.workflows_dir.clone();
    let resolved = {
        let (env, workdir) = (spec.env.clone(), workdir.clone());
        tokio::task::spawn_blocking(move || crate::tasks::secrets::resolve(&env, &workdir, None))
            .await
            .unwrap_or_else(|error| Err(format!("reading the task's secrets failed: {error}")))
    };
    let resolved = match resolved {
        Ok(resolved) => resolved,
        Err(error) => {
            log.engine_line(&error);
            return Ending::failed(error);
        }
    };
    log.set_secrets(resolved.secrets.clone());
    for warning in &resolved.warnings {
        log.engine_line(warning);
    }
    let output_file = setup.state_dir.join("work").join(format!("{}.output.json", id.0));
    if let Some(folder) = output_file.parent() {
        let _ = crate::store::create_private_dir(folder);
    }
    let clock: crate::clock::SharedClock = Arc::new(crate::clock::SystemClock);
    let spawned: crate::tasks::Spawned = Box::new(move |process| {
        let _ = started.send((id, process));
    });
    let attempt = Attempt {
        run_id: offer.run_id,
        workflow: spec.workflow.clone(),
        task: offer.task,
        action: spec.action.clone(),
        number: offer.attempt,
        input: spec.input.clone(),
        params: spec.params.clone(),
        env: resolved.env,
        workdir,
        output_file: output_file.clone(),
        log: log.clone(),
        // The timeout counts from here, where the process starts; the offerer asks for a stop on a cancel.
        stop: crate::tasks::Stop::new(stop, spec.timeout(), clock),
        kill_grace: spec.kill_grace(),
        state_id: marker,
        scheduled_at: spec.scheduled_at.clone(),
        spawned: Some(spawned),
        limits: spec.limits(),
        usage: None,
    };
    let process = ProcessExecutor { argv: spec.argv.clone(), append_action: false };
    let ending = crate::tasks::supervise::execute(&process, attempt).await;
    let _ = std::fs::remove_file(output_file);
    resolved.secrets.mask_ending(ending)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_numbered_across_shipments_and_those_past_the_log_limit_are_counted_not_kept() {
        let mut shipping = Shipping { limit: 12, ..Default::default() };
        assert_eq!(shipping.take(WorkId(7)), None, "nothing waits: no shipment");
        shipping.push(1, "hello");
        let first = shipping.take(WorkId(7)).unwrap();
        assert_eq!(first, Shipment { work: WorkId(7), first: 0, lines: vec![(1, "hello".to_string())] });
        shipping.push(2, "world");
        shipping.push(1, "too much");
        let last = shipping.take_last(WorkId(7)).unwrap();
        assert_eq!((last.first, last.lines.len()), (1, 2), "{last:?}");
        assert_eq!(last.lines[0], (2, "world".to_string()));
        assert_eq!(last.lines[1].0, 0);
        assert!(last.lines[1].1.contains("1 line(s) past max_log_size (12 B)"), "{}", last.lines[1].1);
    }
}
