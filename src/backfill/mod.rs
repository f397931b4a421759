//! Backfill: one run per past instant of a workflow's schedule, as the schedule would have started it.
//!
//! The instants are computed here, by the schedule's own rules (`conveyor next` prints the same ones); the
//! engine is sent one `Command::Backfill` per instant and checks each (an instant of the schedule, not run
//! yet, room under `max_active_runs`). Walking the range here rather than in the engine keeps the engine's
//! part one small command, lets Ctrl-C stop the walk without any state left behind in the engine, and works
//! the same against an embedded engine, a daemon (through the store) and from the console.

mod drive;
mod plan;

pub use drive::{Drive, Outcome, Sender, Step, Tally, drive};
pub use plan::{DEFAULT_MAX_INSTANTS, Edge, Instant, Plan, parse_time, schedule_of};
