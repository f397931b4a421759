//! Stored, then announced: a step's events, alert sinks and answers go out only after its commit. While the
//! store refuses writes the engine holds everything — it takes no new step, so nothing new starts — and
//! writes the held steps again with a growing delay until the store takes them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::{Actor, Internal, Request};
use crate::engine::Event;
use crate::store::{AlertRecord, StoreError};

/// Since when the store has refused writes, and the first reason it gave.
pub struct StoreTrouble {
    since: DateTime<Utc>,
    error: String,
    /// Writes go through again; the alert saying so goes with the next step's writes.
    over: Option<Duration>,
    /// That alert is in the batch being committed.
    alerted: bool,
}

pub enum StoreWait {
    /// The held writes are committed and announced.
    Writable,
    /// A shutdown came meanwhile (its answer, if it asked for one).
    Shutdown(Option<oneshot::Sender<()>>),
}

const FIRST_RETRY: Duration = Duration::from_millis(100);
const LONGEST_RETRY: Duration = Duration::from_secs(5);

impl Actor {
    /// Commits the step's batch, then announces what it changed: what an operator sees is already durable.
    pub(super) fn flush(&mut self) {
        self.save_attempts();
        if let Some(trouble) = &mut self.store_trouble
            && let Some(held) = trouble.over
            && !trouble.alerted
        {
            trouble.alerted = true;
            let message = format!(
                "the store refused writes for {} from {} ({}); the engine held its work meanwhile and has carried on",
                humantime::format_duration(Duration::from_secs(held.as_secs().max(1))),
                crate::store::timestamp(trouble.since),
                trouble.error
            );
            self.alert("warning", None, None, None, message);
        }
        let started = std::time::Instant::now();
        let committed = self.store.commit_batch();
        if let Some(timer) = &self.config.commit_timer {
            timer(started.elapsed());
        }
        match committed {
            Ok(()) => {
                if let Some(error) = self.store.take_trouble() {
                    // The step waited for the store and got through on a retry: the same story, told once.
                    self.store_refused(StoreError::Unavailable(error));
                } else if self.store_trouble.as_ref().is_some_and(|trouble| trouble.alerted) {
                    self.store_trouble = None;
                }
                self.announce()
            }
            Err(error) => {
                self.store.take_trouble();
                self.store_refused(error)
            }
        }
    }

    /// Events, alert sinks and answers of everything committed so far.
    fn announce(&mut self) {
        self.release_starts();
        let events: Vec<Event> = self.pending_events.borrow_mut().drain(..).collect();
        for event in events {
            // An alert comes again when acknowledged: that is news for views, not for the sinks.
            if let Event::Alert(alert) = &event
                && alert.acked_at.is_none()
            {
                tracing::info!("alert: {}", alert.message);
                crate::engine::alerts::notify(&self.registry.alerts, alert, &self.config.workflows_dir);
            }
            // No subscriber is fine: everything is in the store.
            let _ = self.events.send(event);
        }
        for answer in self.pending_answers.drain(..) {
            answer();
        }
        if let Some(trouble) = &mut self.store_trouble
            && trouble.over.is_none()
        {
            let held = (Utc::now() - trouble.since).to_std().unwrap_or_default();
            trouble.over = Some(held);
            let held = humantime::format_duration(Duration::from_millis(held.as_millis() as u64));
            tracing::warn!("the store accepts writes again after {held}; carrying on");
        }
    }

    /// A commit failed: the first time, say so once (log and alert sinks; the store cannot keep the alert
    /// yet), and hold everything until the store takes the writes.
    fn store_refused(&mut self, error: StoreError) {
        if let StoreError::Fenced(why) = error {
            self.step_down(why);
            return;
        }
        if let StoreError::Replaced(_) = error {
            self.fatal = Some(error.to_string());
            return;
        }
        if let Some(trouble) = &mut self.store_trouble {
            // Still the same outage; an alert already written waits in the held writes.
            trouble.over = None;
            tracing::debug!("the store still refuses writes: {}", error.reason());
            return;
        }
        let error = error.reason();
        tracing::error!(
            "the store refuses writes ({error}): the engine holds its work (nothing is announced or started) and tries again until it accepts them"
        );
        let alert = AlertRecord {
            id: 0,
            at: self.now(),
            severity: "error".into(),
            workflow: None,
            run_id: None,
            task: None,
            message: format!("the store refuses writes ({error}): the engine holds its work until it accepts them"),
            acked_at: None,
        };
        crate::engine::alerts::notify(&self.registry.alerts, &alert, &self.config.workflows_dir);
        self.store_trouble = Some(StoreTrouble { since: Utc::now(), error, over: None, alerted: false });
    }

    /// Retries the held writes with a growing delay; requests that come meanwhile wait their turn, except a
    /// shutdown.
    pub(super) async fn wait_for_store(&mut self, requests: &mut mpsc::UnboundedReceiver<Request>) -> StoreWait {
        let mut delay = FIRST_RETRY;
        loop {
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    request = requests.recv() => if let Some(reply) = self.defer_unless_shutdown(request) {
                        return StoreWait::Shutdown(reply);
                    },
                }
            }
            match self.store.retry_pending() {
                Ok(()) => {
                    self.store.take_trouble();
                    self.announce();
                    return StoreWait::Writable;
                }
                Err(StoreError::Fenced(why)) => {
                    self.step_down(why);
                    return StoreWait::Writable;
                }
                Err(error @ StoreError::Replaced(_)) => {
                    self.fatal = Some(error.to_string());
                    return StoreWait::Writable;
                }
                Err(error) => {
                    tracing::debug!("the store still refuses writes: {error}");
                    delay = (delay * 2).min(LONGEST_RETRY);
                }
            }
        }
    }

    /// A request that came while the engine waits (for the store, for its lease): a shutdown ends the wait
    /// (`Some`, with its answer if it asked for one); anything else waits its turn.
    pub(super) fn defer_unless_shutdown(&mut self, request: Option<Request>) -> Option<Option<oneshot::Sender<()>>> {
        match request {
            Some(Request::Shutdown(reply, stop)) => {
                self.closing = Some(stop);
                Some(Some(reply))
            }
            None => Some(None),
            Some(other) => {
                self.deferred.push_back(other);
                None
            }
        }
    }

    /// A fault ends the engine: every running attempt is stopped (its process group gets SIGTERM, then
    /// SIGKILL), and what can still be stored is.
    pub(super) async fn stop_everything_now(&mut self, internal_rx: &mut mpsc::UnboundedReceiver<Internal>) {
        if !self.is_stepping_down() {
            tracing::error!("the engine stops on a fault; its runs are recovered by the next engine");
        }
        self.closing = Some(crate::engine::Stop::Resumable);
        self.cancel_every_attempt();
        let deadline = tokio::time::Instant::now() + self.config.kill_grace + Duration::from_secs(2);
        while self.anything_running() {
            match tokio::time::timeout_at(deadline, internal_rx.recv()).await {
                Ok(Some(Internal::Done(done))) => {
                    // Nothing is written: the store may be what failed; the next engine starts from what it has.
                    if let Some(run) = self.runs.get_mut(&done.run_id)
                        && let Some(slot) = run.slot_get_mut(done.index)
                    {
                        slot.record.state = crate::state::TaskState::Pending;
                    }
                    self.handlers.remove(&done.run_id);
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }
}
