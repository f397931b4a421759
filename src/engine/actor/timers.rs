//! The actor's timers, run and trigger alike, in one queue keyed by instant and then by a sequence number:
//! timers due at the same instant go off in the order they were set, whichever part of the engine set them.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Actor;
use crate::state::RunState;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Timer {
    /// A task's retry wait is over (or a paused run's wait passed): look for work.
    Wake {
        run: String,
    },
    RunTimeout {
        run: String,
        after: Duration,
    },
    /// A workflow's scheduled instant (the timer itself may be later, by the workflow's jitter).
    Fire {
        workflow: String,
        scheduled: DateTime<Utc>,
    },
    /// Time to check whether an arrived file has stopped changing.
    Settle {
        workflow: String,
        path: PathBuf,
    },
    /// Time to trim what the store would otherwise keep forever (alerts, audit, processed files).
    Housekeeping,
    /// A gate's `approval_timeout` is over: `on_timeout` decides what is still held.
    GateTimeout {
        run: String,
        task: String,
    },
}

/// How often the store is trimmed.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(3600);
pub(super) const FIRST_HOUSEKEEPING: Duration = Duration::from_secs(60);

impl Actor {
    pub(super) fn fire_timers(&mut self) {
        let now = self.now();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            match entry.remove() {
                Timer::Wake { run } => self.advance(&run),
                Timer::RunTimeout { run, after } => {
                    let reason = format!("the run exceeded its timeout of {}", humantime::format_duration(after));
                    self.stop_run(&run, RunState::Failed, reason);
                }
                Timer::Fire { workflow, scheduled } => self.fire(&workflow, scheduled, false),
                Timer::Settle { workflow, path } => self.settle_file(&workflow, &path),
                Timer::Housekeeping => {
                    let retention = self.registry.retention;
                    match self.store.trim(
                        retention.alerts,
                        retention.audit,
                        chrono::Duration::from_std(retention.processed_files).unwrap_or(chrono::Duration::MAX),
                        now,
                    ) {
                        Ok(0) => {}
                        Ok(removed) => {
                            tracing::info!("trimmed {removed} old alert, audit and processed-file record(s)")
                        }
                        Err(error) => tracing::debug!("trimming the store failed: {error}"),
                    }
                    self.add_timer(crate::clock::later(now, HOUSEKEEPING_EVERY), Timer::Housekeeping);
                }
                Timer::GateTimeout { run, task } => self.gate_expired(&run, &task),
            }
        }
    }

    pub(super) fn add_timer(&mut self, at: DateTime<Utc>, timer: Timer) {
        self.timer_seq += 1;
        self.timers.insert((at, self.timer_seq), timer);
    }
}
