//! `Command::Backfill`: one past instant of a schedule gets the run its schedule would have started, stored
//! as a scheduled run is (the instant in the input's `scheduled_at`, a fire record) but with trigger `backfill`.
//! The client that asks walks the range and keeps within its parallelism; the engine checks each instant.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use super::Actor;
use crate::definition::Trigger;
use crate::engine::command::{CommandResult, Declined, Reply};
use crate::store::{FireRecord, timestamp};

impl Actor {
    pub(super) fn backfill(&mut self, id: &str, scheduled: DateTime<Utc>, rerun: bool) -> CommandResult {
        let workflow = self.workflows.get(id).cloned().ok_or_else(|| format!("no workflow `{id}`"))?;
        let Trigger::Schedule(schedule) = &workflow.trigger else {
            return Err(format!(
                "workflow `{id}` has a {} trigger: only a schedule can be backfilled",
                workflow.trigger.kind()
            ));
        };
        let at = timestamp(scheduled);
        // Only the schedule's own instants: a run stored for any other time would never match a later check.
        let before = scheduled.checked_sub_signed(TimeDelta::seconds(1)).unwrap_or(scheduled);
        if schedule.next_after(before) != Some(scheduled) {
            return Err(format!(
                "{at} is not an instant of {id}'s schedule (`{}` in {}): `conveyor next {id} --from TIME` lists them",
                schedule.expression(),
                schedule.zone()
            ));
        }
        if !rerun {
            let existing = self.store.run_for_instant(id, scheduled).map_err(|error| error.to_string())?;
            if let Some(run) = existing {
                let message = format!("{id} at {at} already has run {run}: skipped (rerun to start another)");
                return Ok(Reply::declined(message, Declined::AlreadyRun, Some(&run)));
            }
        }
        let active = self.active_runs(id).len();
        if active >= workflow.max_active_runs as usize {
            let message = format!("{id} has {active} runs active, its max_active_runs: {at} waits for one to end");
            return Ok(Reply::declined(message, Declined::AtCapacity, None));
        }
        let input = json!({"scheduled_at": at});
        let reply = self.trigger(id, Some(input), &BTreeMap::new(), "backfill")?;
        let fire = FireRecord {
            workflow: id.to_string(),
            scheduled_at: scheduled,
            fired_at: self.now(),
            outcome: "backfill".to_string(),
            run_id: reply.run.clone(),
            queued: false,
        };
        if let Err(error) = self.store.record_fire(&fire, self.registry.retention.fires) {
            tracing::error!("recording a backfilled fire of {id} failed: {error}");
        }
        self.publish(crate::engine::Event::Fire(fire));
        let run = reply.run.clone().unwrap_or_default();
        Ok(Reply::for_run(format!("started run {run} of {id} for {at} (backfill)"), &run))
    }

    /// The instant a run was started for, as its input says (`CONVEYOR_SCHEDULED_AT` for its tasks).
    pub(super) fn scheduled_at(&self, run: &str) -> Option<String> {
        let input = &self.runs.get(run)?.record.input;
        input.get("scheduled_at").and_then(serde_json::Value::as_str).map(str::to_string)
    }
}
