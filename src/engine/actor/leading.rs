//! The engine on a shared database acts only while it leads: unsure, it waits (running tasks carry on, nothing
//! new starts, nothing is written); replaced, it stops what it runs and ends, writing nothing more, for the
//! engine that leads now recovers those runs from the database.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::{Actor, Request};
use crate::engine::leadership::{Leadership, Verdict};
use crate::engine::membership::Standing;

/// How an engine unsure of its lead stopped waiting.
pub(super) enum LeadWait {
    Act,
    StepDown(String),
    Shutdown(Option<oneshot::Sender<()>>),
}

/// How often an engine unsure of its lead looks again, when no news comes (a renewal stuck on the database).
const RECHECK: Duration = Duration::from_millis(200);

impl Actor {
    /// Makes this engine act under `leadership`; `stepped_down` is raised when it gives the lead up.
    pub fn lead(&mut self, leadership: Leadership, stepped_down: Arc<AtomicBool>) {
        self.leadership = Some(leadership);
        self.stepped_down = stepped_down;
    }

    pub(super) fn verdict(&self) -> Verdict {
        self.leadership.as_ref().map_or(Verdict::Act, Leadership::verdict)
    }

    pub(super) fn standing_watch(&self) -> Option<watch::Receiver<Standing>> {
        self.leadership.as_ref().map(|leadership| leadership.membership.watch())
    }

    /// Ends the engine at the end of this turn without writing anything more: its task processes are stopped,
    /// and the engine that leads now recovers its runs.
    pub(super) fn step_down(&mut self, reason: String) {
        tracing::warn!("this engine steps down: {reason}; stopping its task processes, writing nothing more");
        self.stepped_down.store(true, Ordering::SeqCst);
        self.held_starts.take();
        self.fatal = Some(format!("stepped down: {reason}"));
    }

    /// On a shared store, an attempt's process starts only once the step that launched it is committed: a
    /// leader paused before its commit and resumed after another took over starts nothing (its commit is
    /// refused by term, and the senders are dropped with it). `None` for SQLite, whose lock cannot be lost.
    pub(super) fn start_after_commit(&self) -> Option<oneshot::Receiver<()>> {
        self.leadership.as_ref()?;
        let (go, committed) = oneshot::channel();
        self.held_starts.borrow_mut().push(go);
        Some(committed)
    }

    /// The step's commit went through: its attempts may start.
    pub(super) fn release_starts(&mut self) {
        for go in self.held_starts.take() {
            let _ = go.send(());
        }
    }

    pub(super) fn is_stepping_down(&self) -> bool {
        self.stepped_down.load(Ordering::SeqCst)
    }

    /// Waits until the database says whether this engine still leads. Requests wait their turn, except a
    /// shutdown.
    pub(super) async fn wait_to_lead(
        &mut self,
        requests: &mut mpsc::UnboundedReceiver<Request>,
        standing: &mut Option<watch::Receiver<Standing>>,
    ) -> LeadWait {
        tracing::warn!(
            "this engine cannot tell whether it still leads (its lease was not renewed in time): starting nothing until it can; running tasks carry on"
        );
        loop {
            match self.verdict() {
                Verdict::Act => {
                    tracing::info!("the lease is renewed: this engine carries on");
                    return LeadWait::Act;
                }
                Verdict::StepDown(reason) => return LeadWait::StepDown(reason),
                Verdict::Wait => {}
            }
            tokio::select! {
                _ = standing_changed(standing) => {}
                _ = tokio::time::sleep(RECHECK) => {}
                request = requests.recv() => if let Some(reply) = self.defer_unless_shutdown(request) {
                    return LeadWait::Shutdown(reply);
                },
            }
        }
    }
}

/// Resolves when the standing changes; never, for an engine that does not share its store.
pub(super) async fn standing_changed(standing: &mut Option<watch::Receiver<Standing>>) {
    match standing {
        Some(receiver) => {
            if receiver.changed().await.is_err() {
                std::future::pending::<()>().await
            }
        }
        None => std::future::pending().await,
    }
}
