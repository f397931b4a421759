//! The leader's side: a process attempt becomes an offer, and its executor waits for whichever engine claims
//! it to finish it. One poller per engine watches every outstanding offer with one query (woken by the
//! endings' notifications, a 100 ms look as the backstop), feeds shipped lines into each attempt's log, and
//! gives up the claims of engines that went silent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::spec::{Spec, ending_from_json, stream_of};
use crate::store::work::{Holder, Look, Offer, Settled, WorkId, WorkQueue, fenced};
use crate::store::{EngineId, Term};
use crate::tasks::supervise::Waited;
use crate::tasks::{
    Attempt, Ending, Execution, Executor, LogSink, Offering, ProcessExecutor, SharedExecutor, Spawned, Started,
};

/// The look at outstanding offers when no notification came.
const LOOK_EVERY: Duration = Duration::from_millis(100);
/// How often claims are checked for engines gone silent.
const RESCUE_EVERY: Duration = Duration::from_secs(1);
/// How often work of earlier terms that settled unread is removed.
const CLEAR_EVERY: Duration = Duration::from_secs(30);
/// Between offers while the database does not answer.
const OFFER_AGAIN: Duration = Duration::from_secs(1);
/// How long an offer waits unclaimed before its log says so.
const UNCLAIMED_NOTE: Duration = Duration::from_secs(5);
/// How long past its kill grace an attempt asked to stop waits for its worker's answer.
const STOP_MARGIN: Duration = Duration::from_secs(5);

/// Offers process attempts at one term of the lead; clones share the poller, which ends with the last one.
#[derive(Clone)]
pub struct Offers(Arc<Hub>);

struct Hub {
    queue: Arc<WorkQueue>,
    term: Term,
    offers: mpsc::UnboundedSender<Pending>,
    watch: mpsc::UnboundedSender<Watch>,
}

/// An offer on its way to the database, and who waits to hear its id.
type Pending = (Offer, oneshot::Sender<Result<Option<WorkId>, String>>);

/// An offer the poller watches for its offerer.
struct Watch {
    id: WorkId,
    log: LogSink,
    /// The number of the next line to read.
    next_line: i64,
    spawned: Option<Spawned>,
    settled: oneshot::Sender<(Settled, Option<Holder>)>,
}

impl Offers {
    /// Starts watching on the current runtime, for `engine` leading at `term`: claims held by engines silent
    /// for `silent` are given up (but only once this poller has heard from the database for that long, so
    /// that an outage does not look like every engine dying).
    pub fn start(queue: WorkQueue, engine: EngineId, term: Term, silent: Duration) -> Offers {
        let queue = Arc::new(queue);
        let (watch, watched) = mpsc::unbounded_channel();
        let (offers, offered) = mpsc::unbounded_channel();
        tokio::spawn(poll(Arc::clone(&queue), watched, term, silent));
        tokio::spawn(offer_in_batches(Arc::clone(&queue), engine, term, offered));
        Offers(Arc::new(Hub { queue, term, offers, watch }))
    }
}

impl Offering for Offers {
    fn offered(&self, route: &str, process: ProcessExecutor) -> SharedExecutor {
        Arc::new(Offered { hub: Arc::clone(&self.0), route: route.to_string(), process })
    }
}

struct Offered {
    hub: Arc<Hub>,
    route: String,
    process: ProcessExecutor,
}

impl Executor for Offered {
    fn execute(&self, mut attempt: Attempt) -> Execution {
        let argv = self.process.argv_for(attempt.action.as_deref());
        let timeout = attempt.stop.hand_over_timeout();
        let offer = Offer {
            run_id: attempt.run_id.clone(),
            task: attempt.task.clone(),
            attempt: attempt.number,
            route: self.route.clone(),
            spec: serde_json::to_value(Spec::of(&attempt, argv, timeout)).expect("a spec serialises"),
        };
        Box::pin(offer_and_wait(Arc::clone(&self.hub), offer, attempt))
    }
}

async fn offer_and_wait(hub: Arc<Hub>, offer: Offer, mut attempt: Attempt) -> Ending {
    let log = attempt.log.clone();
    let route = offer.route.clone();
    let mut told_unavailable = false;
    let id = loop {
        let (reply, offered) = oneshot::channel();
        if hub.offers.send((offer.clone(), reply)).is_err() {
            return Ending::failed("the engine's offerer of work is gone");
        }
        tokio::select! {
            offered = offered => match offered.unwrap_or(Ok(None)) {
                Ok(Some(id)) => break id,
                Ok(None) => {
                    log.engine_line(&fenced(hub.term));
                    return Ending::Cancelled;
                }
                Err(error) => {
                    if !told_unavailable {
                        log.engine_line(&format!("offering it to the engines failed ({error}): trying again"));
                        told_unavailable = true;
                    }
                    tokio::time::sleep(OFFER_AGAIN).await;
                }
            },
            reason = attempt.stop.requested() => {
                reason.announce(&log, "it had not been offered yet");
                return reason.ending(Waited::Process);
            }
        }
    };
    let (settled, mut answer) = oneshot::channel();
    let watch = Watch { id, log: log.clone(), next_line: 0, spawned: attempt.spawned.take(), settled };
    if hub.watch.send(watch).is_err() {
        return Ending::failed("the engine's poller of offered work is gone");
    }
    let unclaimed_note = async {
        tokio::time::sleep(UNCLAIMED_NOTE).await;
        if hub.queue.unclaimed(id).await.unwrap_or(false) {
            log.engine_line(&format!(
                "no engine has claimed it for {}s: none that serves `{}` has room (`conveyor engines` shows what each serves)",
                UNCLAIMED_NOTE.as_secs(),
                route
            ));
        }
        std::future::pending::<Ending>().await
    };
    tokio::select! {
        // Never ends: the note is all it does.
        ending = unclaimed_note => ending,
        answered = &mut answer => match answered {
            Ok((settled, holder)) => ending_of(settled, holder, &log, attempt.kill_grace).await,
            Err(_) => Ending::failed("the engine's poller of offered work is gone"),
        },
        reason = attempt.stop.requested() => {
            match hub.queue.withdraw(id).await {
                Ok(true) => reason.announce(&log, "no engine had claimed it yet: the offer is withdrawn"),
                _ => {
                    reason.announce(&log, "asking the engine that runs it to stop its process group");
                    let _ = tokio::time::timeout(attempt.kill_grace + STOP_MARGIN, answer).await;
                }
            }
            reason.ending(Waited::Process)
        }
    }
}

/// The attempt's ending from how its offer settled. Work lost with its engine fails (the task's retries
/// apply); if that engine ran it on this host and its process group is still there, it is stopped.
async fn ending_of(settled: Settled, holder: Option<Holder>, log: &LogSink, grace: Duration) -> Ending {
    match settled {
        Settled::Done(ending) => ending_from_json(ending),
        Settled::Lost(why) => {
            let engine = holder
                .as_ref()
                .map_or("the engine".to_string(), |holder| format!("engine {} on {}", holder.engine.0, holder.host));
            let error = match why {
                Some(why) => format!("lost: {why}"),
                None => format!("lost: {engine} went silent while it ran this attempt"),
            };
            log.engine_line(&error);
            if let Some(Holder { host, pid: Some(pid), pid_start, .. }) = &holder
                && *host == crate::engine::hostname()
                && crate::tasks::reclaim::is_alive(*pid as i32)
                && crate::tasks::reclaim::start_time(*pid as i32) == *pid_start
            {
                log.engine_line(&format!("stopping its process group {pid}, left on this host"));
                crate::tasks::reclaim::stop_processes(&[*pid as i32], grace).await;
            }
            Ending::failed(error)
        }
    }
}

/// Offers what executors hand over, every offer waiting at that moment in one statement: attempts that become
/// ready together (a wide fan-out) cost the database one round trip, not one each.
async fn offer_in_batches(
    queue: Arc<WorkQueue>,
    engine: EngineId,
    term: Term,
    mut offered: mpsc::UnboundedReceiver<Pending>,
) {
    const MOST: usize = 500;
    while let Some(first) = offered.recv().await {
        let mut batch = vec![first];
        while batch.len() < MOST
            && let Ok(next) = offered.try_recv()
        {
            batch.push(next);
        }
        let (offers, replies): (Vec<Offer>, Vec<_>) = batch.into_iter().unzip();
        match queue.offer_many(engine, term, offers).await {
            Ok(ids) => {
                for (reply, id) in replies.into_iter().zip(ids) {
                    let _ = reply.send(Ok(id));
                }
            }
            Err(error) => {
                for reply in replies {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
        }
    }
}

/// The poller: ends once every `Offers` and every executor holding one is gone.
async fn poll(queue: Arc<WorkQueue>, mut watched: mpsc::UnboundedReceiver<Watch>, term: Term, silent: Duration) {
    let mut watching: HashMap<WorkId, Watch> = HashMap::new();
    let mut endings = queue.wake_ups(crate::store::work::ENDINGS_CHANNEL);
    // Since when the database has answered every look without a break.
    let mut answering_since = Some(Instant::now());
    let mut last_rescue = Instant::now();
    let mut last_clear = Instant::now();
    let mut told_unavailable = false;
    loop {
        tokio::select! {
            watch = watched.recv() => match watch {
                Some(watch) => { watching.insert(watch.id, watch); }
                None => return,
            },
            () = woken(&mut endings) => {}
            () = tokio::time::sleep(LOOK_EVERY), if !watching.is_empty() => {}
            () = tokio::time::sleep(RESCUE_EVERY) => {}
        }
        while let Ok(watch) = watched.try_recv() {
            watching.insert(watch.id, watch);
        }
        // An offerer that stopped waiting (its offer withdrawn) is not watched for.
        watching.retain(|_, watch| !watch.settled.is_closed());
        if !watching.is_empty() {
            let outstanding: Vec<(i64, i64)> = watching.values().map(|watch| (watch.id.0, watch.next_line)).collect();
            let unstarted: Vec<i64> =
                watching.values().filter(|watch| watch.spawned.is_some()).map(|watch| watch.id.0).collect();
            match queue.look(outstanding, unstarted).await {
                Ok(look) => {
                    answering_since.get_or_insert_with(Instant::now);
                    told_unavailable = false;
                    apply(look, &mut watching);
                }
                Err(error) => {
                    answering_since = None;
                    if !told_unavailable {
                        tracing::warn!("looking at offered work failed ({error}): trying again");
                        told_unavailable = true;
                    }
                }
            }
        }
        if last_rescue.elapsed() >= RESCUE_EVERY {
            last_rescue = Instant::now();
            if answering_since.is_some_and(|since| since.elapsed() >= silent) {
                match queue.rescue(silent).await {
                    Ok(0) => {}
                    Ok(lost) => tracing::warn!("gave up {lost} attempt(s) held by engines silent for {silent:?}"),
                    Err(_) => answering_since = None,
                }
            }
        }
        if last_clear.elapsed() >= CLEAR_EVERY {
            last_clear = Instant::now();
            let _ = queue.clear_earlier(term).await;
        }
    }
}

fn apply(look: Look, watching: &mut HashMap<WorkId, Watch>) {
    for (id, holder) in look.holders {
        if let Some(spawned) = watching.get_mut(&id).and_then(|watch| watch.spawned.take()) {
            spawned(Started { pid: holder.pid, pid_start: holder.pid_start, engine: Some(holder.engine.0) });
        }
    }
    for line in look.lines {
        if let Some(watch) = watching.get_mut(&line.work)
            && line.seq >= watch.next_line
        {
            watch.next_line = line.seq + 1;
            watch.log.line(stream_of(line.stream), line.text);
        }
    }
    for (id, settled, holder) in look.settled {
        let Some(mut watch) = watching.remove(&id) else { continue };
        if let (Some(spawned), Some(holder)) = (watch.spawned.take(), &holder) {
            spawned(Started { pid: None, pid_start: None, engine: Some(holder.engine.0) });
        }
        let _ = watch.settled.send((settled, holder));
    }
}

/// Resolves when `wake` is told something; never, when there is nothing to listen to.
pub(super) async fn woken(wake: &mut Option<mpsc::Receiver<()>>) {
    match wake {
        Some(receiver) => {
            if receiver.recv().await.is_none() {
                *wake = None;
            }
        }
        None => std::future::pending().await,
    }
}
