//! Requests from the library's callers and commands queued in the store by other shells: each is handled,
//! audited, and answered once its step is committed.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Actor, Answer};
use crate::engine::command::{Command, CommandResult, Origin, Reply};
use crate::engine::{Event, Request};

impl Actor {
    /// Handles a request; the answer, if it has one, is sent once the step is committed.
    pub(super) fn request(&mut self, request: Request) -> Option<Answer> {
        match request {
            Request::Command(command, origin, reply) => {
                let result = self.command(&command, &origin);
                Some(Box::new(move || drop(reply.send(result))))
            }
            Request::Register(workflow) => {
                self.workflows.insert(workflow.id.clone(), Arc::new(*workflow));
                None
            }
            Request::Unregister(id) => {
                self.deactivate(&id);
                self.workflows.remove(&id);
                None
            }
            Request::Start(id, reply) => {
                let result = self.activate(&id);
                Some(Box::new(move || drop(reply.send(result))))
            }
            Request::StartAll(reply) => {
                self.activate_all = true;
                let mut ids: Vec<String> = self.workflows.keys().cloned().collect();
                ids.sort();
                let problems: Vec<String> =
                    ids.iter().filter_map(|id| self.activate(id).err().map(|error| format!("{id}: {error}"))).collect();
                for problem in &problems {
                    self.alert("error", None, None, None, problem.clone());
                }
                let result = if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) };
                Some(Box::new(move || drop(reply.send(result))))
            }
            Request::WatchFolder(reply) => {
                let result = self.watch_folder();
                Some(Box::new(move || drop(reply.send(result))))
            }
            Request::Barrier(reply) => {
                // Timers due by the clock count as sent before: a test that moved a manual clock sees their effect.
                self.fire_timers();
                Some(Box::new(move || {
                    let _ = reply.send(());
                }))
            }
            Request::Shutdown(..) | Request::Abandon(_) => unreachable!("handled by the loop"),
        }
    }

    /// Handles a command and records it in the audit trail.
    pub(super) fn command(&mut self, command: &Command, origin: &Origin) -> CommandResult {
        let named = self.gate_named(command);
        let command = named.as_ref().unwrap_or(command);
        let result = self.apply(command, origin);
        // A finished run loaded to answer a command that did not bring it back to life lives in the store
        // alone again; only active runs are kept in memory.
        self.runs.retain(|_, run| !run.record.state.is_finished());
        let (ok, outcome) = match &result {
            Ok(reply) => (true, reply.message.clone()),
            Err(error) => (false, error.clone()),
        };
        let text = command.to_json();
        if let Err(error) = self.store.audit(self.now(), &origin.who, &origin.via, &text, ok, &outcome) {
            tracing::error!("writing the audit trail failed: {error}");
        }
        self.publish(Event::Command { who: origin.who.clone(), via: origin.via.clone(), command: text, ok, outcome });
        result
    }

    pub(super) fn apply(&mut self, command: &Command, origin: &Origin) -> CommandResult {
        match command {
            Command::Trigger { workflow, input, params } => self.trigger(workflow, input.clone(), params, "manual"),
            Command::PauseWorkflow { workflow } => self.pause_workflow(workflow, true),
            Command::ResumeWorkflow { workflow } => self.pause_workflow(workflow, false),
            Command::PauseRun { run } => self.pause_run(run),
            Command::ResumeRun { run } => self.resume_run(run),
            Command::CancelRun { run } => self.cancel_run(run, origin),
            Command::RetryTask { run, task } => self.retry_task(run, task),
            Command::SkipTask { run, task } => self.skip_task(run, task),
            Command::RerouteTask { run, task, to } => self.reroute_task(run, task, to),
            Command::Approve { run, task, items, comment } | Command::Reject { run, task, items, comment } => {
                let approve = matches!(command, Command::Approve { .. });
                let answer = crate::tasks::Answer { approve, who: &origin.who, items, comment: comment.as_deref() };
                self.answer_gate(run, task, answer)
            }
            Command::AckAlert { id } => match self.store.ack_alert(*id, self.now()) {
                Ok(true) => {
                    // Views holding the alert see it acknowledged.
                    if let Ok(Some(alert)) = self.store.alert(*id) {
                        self.publish(Event::Alert(alert));
                    }
                    Ok(Reply::new(format!("alert {id} acknowledged")))
                }
                Ok(false) => Err(format!("no unacknowledged alert {id}")),
                Err(error) => Err(error.to_string()),
            },
            Command::Backfill { workflow, scheduled_at, rerun } => self.backfill(workflow, *scheduled_at, *rerun),
        }
    }

    /// Commands other shells wrote to the store.
    /// Reads the commands other processes queued in the store. A request sent through the API before a
    /// command was queued (a workflow registered, then triggered from another shell) must be handled first,
    /// even if the loop chose this poll before the request arrived: requests are taken in only after the
    /// read, so every one sent before a command it saw is among them, and they run before it.
    pub(super) fn read_queue(&mut self, requests: &mut mpsc::UnboundedReceiver<Request>) {
        // Deadlines are the wall clock's: the shell that queued a command waits in real time.
        let pending = match self.store.pending_commands(chrono::Utc::now()) {
            Ok(pending) => pending,
            Err(error) => {
                tracing::error!("reading queued commands failed: {error}");
                return;
            }
        };
        if pending.is_empty() {
            return;
        }
        while let Ok(request) = requests.try_recv() {
            self.deferred.push_back(request);
        }
        if self.deferred.is_empty() {
            self.run_queued(pending);
        } else {
            self.queued = Some(pending);
        }
    }

    pub(super) fn run_queued(&mut self, pending: Vec<crate::store::QueuedCommand>) {
        for queued in pending {
            let origin = Origin { who: queued.who.clone(), via: "cli".into() };
            let result = match serde_json::from_str::<Command>(&queued.command) {
                Ok(command) => self.command(&command, &origin),
                Err(error) => Err(format!("not a command this engine understands: {error}")),
            };
            let (ok, outcome) = match result {
                Ok(reply) => (true, serde_json::to_string(&reply).expect("replies serialise")),
                Err(error) => (false, error),
            };
            if let Err(error) = self.store.complete_command(queued.id, self.now(), ok, &outcome) {
                tracing::error!("recording a command's outcome failed: {error}");
            }
        }
    }
}
