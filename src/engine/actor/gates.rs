//! Governance gates: an operator's (or an expired `approval_timeout`'s) answer for some or all of the items
//! a layer holds. The gate keeps waiting while any item is held; the run carries on once none is.
//!
//! A gate's deadline lives in its task's output (`governance.expires_at`), which is stored: an engine that
//! starts again sets the same timer from it.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Actor, Timer};
use crate::engine::command::{CommandResult, Reply};
use crate::state::{RunState, TaskState};
use crate::store::{parse_timestamp, timestamp};
use crate::tasks::Answer;

/// Who decides the items still held when a gate's `approval_timeout` expires, in the output and the audit.
pub const TIMEOUT_WHO: &str = "timeout";

/// Marks when a gate started to wait and, when its layer has an `approval_timeout`, when it expires.
pub(super) fn stamp(output: &mut Value, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let record = output.get_mut("governance")?;
    record["waiting_since"] = json!(timestamp(now));
    let limit = record.get("approval_timeout").and_then(Value::as_str)?;
    let limit = humantime::parse_duration(limit).ok()?;
    let at = crate::clock::later(now, limit);
    record["expires_at"] = json!(timestamp(at));
    Some(at)
}

/// When a waiting gate's output says it expires.
pub(super) fn expiry(output: Option<&Value>) -> Option<DateTime<Utc>> {
    let text = output?.pointer("/governance/expires_at")?.as_str()?;
    parse_timestamp(text).ok()
}

impl Actor {
    /// An answer at a gate. An empty `task` names the run's one waiting gate.
    pub(super) fn answer_gate(&mut self, id: &str, task: &str, answer: Answer) -> CommandResult {
        let id = self.load_run(id)?;
        let task = if task.is_empty() { self.the_waiting_gate(&id)? } else { task.to_string() };
        let now = self.now();
        let (_, run) = self.loaded_run(&id)?;
        let index = super::operations::task_index(run, &id, &task)?;
        let slot = run.slot_mut(index);
        if slot.state() != TaskState::WaitingApproval {
            let state = slot.state();
            return Err(format!("task {task} of run {id} is not waiting for approval (it is {state})"));
        }
        let held = slot.record.output.clone().unwrap_or(Value::Null);
        let decided = crate::tasks::decide_approval(&held, answer)?;
        slot.record.output = Some(decided.output);
        let answered = decided.still_held == 0;
        if answered {
            slot.record.state = TaskState::Succeeded;
            slot.record.finished_at = Some(now);
        }
        let record = slot.record.clone();
        if answered && run.record.state == RunState::WaitingApproval {
            run.record.state = RunState::Running;
        }
        let run_record = run.record.clone();
        self.save_task(&record);
        self.save_run(&run_record);
        if decided.still_held == 0 {
            self.timers.retain(
                |_, timer| !matches!(timer, Timer::GateTimeout { run, task: name } if *run == id && *name == task),
            );
            self.advance(&id);
        }
        let verb = if answer.approve { "approved" } else { "rejected" };
        let count = decided.decided.len();
        let mut message = format!("{verb} {count} item(s) ({}) at task {task} of run {id}", decided.decided.join(", "));
        if decided.still_held > 0 {
            message.push_str(&format!("; {} still held", decided.still_held));
        }
        Ok(Reply::for_run(message, &id))
    }

    /// An answer that left out its task, with the task named when one gate waits in the run: the audit trail
    /// says which gate was answered. `None` when there is nothing to fill in (or the answer will be refused).
    pub(super) fn gate_named(&mut self, command: &crate::engine::Command) -> Option<crate::engine::Command> {
        use crate::engine::Command;
        let (Command::Approve { run, task, .. } | Command::Reject { run, task, .. }) = command else { return None };
        if !task.is_empty() {
            return None;
        }
        let id = self.load_run(run).ok()?;
        let name = self.the_waiting_gate(&id).ok()?;
        let mut named = command.clone();
        if let Command::Approve { task, .. } | Command::Reject { task, .. } = &mut named {
            *task = name;
        }
        Some(named)
    }

    fn the_waiting_gate(&self, id: &str) -> Result<String, String> {
        let run = &self.runs[id];
        let waiting: Vec<&str> = run
            .slots()
            .iter()
            .filter(|slot| slot.state() == TaskState::WaitingApproval)
            .map(|slot| slot.record.name.as_str())
            .collect();
        match waiting.as_slice() {
            [one] => Ok(one.to_string()),
            [] => Err(format!("no task of run {id} is waiting for approval")),
            several => Err(format!("{} gates wait in run {id}: name one ({})", several.len(), several.join(", "))),
        }
    }

    /// A gate's `approval_timeout` expired: what is still held is decided as its layer's `on_timeout` says,
    /// with an alert and an audit entry by `timeout`.
    pub(super) fn gate_expired(&mut self, run: &str, task: &str) {
        let now = self.now();
        let Some(current) = self.runs.get(run) else { return };
        let Some(slot) = current.index_of(task).map(|index| &current.slots()[index]) else { return };
        // A timer outlives its gate when the gate was answered, or set again by an engine that restarted.
        let Some(output) = slot.record.output.as_ref().filter(|_| slot.state() == TaskState::WaitingApproval) else {
            return;
        };
        if expiry(Some(output)).is_none_or(|at| at > now) {
            return;
        }
        let limit = output.pointer("/governance/approval_timeout").and_then(Value::as_str).unwrap_or("?").to_string();
        let approve = output.pointer("/governance/on_timeout").and_then(Value::as_str) == Some("approve");
        let workflow = current.record.workflow.clone();
        let comment = format!("approval_timeout of {limit} expired");
        let answer = Answer { approve, who: TIMEOUT_WHO, items: &[], comment: Some(&comment) };
        let result = self.answer_gate(run, task, answer);
        let (ok, outcome) = match &result {
            Ok(reply) => (true, reply.message.clone()),
            Err(error) => (false, error.clone()),
        };
        let mut command = crate::engine::Command::answer_all(approve, run, task);
        if let crate::engine::Command::Approve { comment: slot, .. }
        | crate::engine::Command::Reject { comment: slot, .. } = &mut command
        {
            *slot = Some(comment);
        }
        let text = command.to_json();
        if let Err(error) = self.store.audit(now, TIMEOUT_WHO, "engine", &text, ok, &outcome) {
            tracing::error!("writing the audit trail failed: {error}");
        }
        self.publish(crate::engine::Event::Command {
            who: TIMEOUT_WHO.into(),
            via: "engine".into(),
            command: text,
            ok,
            outcome: outcome.clone(),
        });
        self.alert(
            "warning",
            Some(&workflow),
            Some(run),
            Some(task),
            format!("the gate's {limit} approval timeout expired: {outcome}"),
        );
    }

    /// Timers for the gates of a run just made active whose deadline is stored with them.
    pub(super) fn gate_timers(&mut self, id: &str) {
        let Some(run) = self.runs.get(id) else { return };
        let due: Vec<(DateTime<Utc>, String)> = run
            .slots()
            .iter()
            .filter(|slot| slot.state() == TaskState::WaitingApproval)
            .filter_map(|slot| Some((expiry(slot.record.output.as_ref())?, slot.record.name.clone())))
            .collect();
        for (at, task) in due {
            self.add_timer(at, Timer::GateTimeout { run: id.to_string(), task });
        }
    }
}
