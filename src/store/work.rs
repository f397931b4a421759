//! Attempts offered to every engine sharing a store, rather than run by the one that leads. The leader offers
//! an attempt as a row; any engine serving its route claims it with one statement; the claim stands while
//! the claimer's heartbeat does, and only the claimer can finish it. A claim that no longer stands (the
//! leader cancelled it, or gave it up as lost with a silent engine) is known by its finishing statement
//! updating no row: the result is discarded.
//!
//! Only PostgreSQL has it: with SQLite one engine runs everything itself.

use std::time::Duration;

use serde_json::Value;

use super::{EngineId, Result, StoreLocation, Term};

/// A work row's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkId(pub i64);

/// What the leader offers: one attempt, and everything a worker on another host needs to run it (`spec`).
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub run_id: String,
    pub task: String,
    pub attempt: u32,
    pub route: String,
    pub spec: Value,
}

/// An offer as a worker claimed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub id: WorkId,
    pub offer: Offer,
}

/// Which engine holds a claim, and (once it started) the attempt's process there.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    pub engine: EngineId,
    pub host: String,
    pub pid: Option<u32>,
    pub pid_start: Option<u64>,
}

/// How a claimed attempt ended, as its offerer learns it.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// Its worker finished it: the ending as that worker wrote it.
    Done(Value),
    /// Given up: its worker went silent, or stopped (`Some(why)`, as the worker said).
    Lost(Option<String>),
}

/// A line an attempt printed on a worker, on its way to the offerer's log.
#[derive(Debug, Clone, PartialEq)]
pub struct ShippedLine {
    pub work: WorkId,
    /// Its number among the attempt's lines, from 0.
    pub seq: i64,
    pub stream: i16,
    pub text: String,
}

/// Lines a worker ships at once, numbered from `first`: one row, so the same shipment sent again (its answer
/// lost with a connection) is the same row, not a second copy.
#[derive(Debug, Clone, PartialEq)]
pub struct Shipment {
    pub work: WorkId,
    pub first: i64,
    /// (stream, text) each.
    pub lines: Vec<(i16, String)>,
}

/// What one look at the offerer's outstanding work found, in the order to apply it: holders first, then
/// lines, then endings (an attempt's last lines always come before its ending).
#[derive(Debug, Default)]
pub struct Look {
    pub holders: Vec<(WorkId, Holder)>,
    pub lines: Vec<ShippedLine>,
    pub settled: Vec<(WorkId, Settled, Option<Holder>)>,
}

/// A claim a worker still holds, and whether its offerer asked for it to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub id: WorkId,
    pub cancel: bool,
}

/// Opens the work queue of a shared store (its own connection); `None` for a store one engine uses alone.
pub fn open_queue(location: &StoreLocation, state_dir: &std::path::Path) -> Result<Option<WorkQueue>> {
    match location {
        StoreLocation::StateFolder => Ok(None),
        StoreLocation::Postgres(url) => super::postgres::work::connect(url.secret_text(), state_dir).map(Some),
    }
}

pub use super::postgres::work::{ENDINGS_CHANNEL, Finish, OFFERS_CHANNEL, WorkQueue};

/// How long a claim stands after its engine's last heartbeat: two lives of the scheduler's lease.
pub fn silent_after(lease_ttl: Duration) -> Duration {
    lease_ttl * 2
}

/// Why an offer could not be made: the term it was made at is no longer the lease's.
pub fn fenced(term: Term) -> String {
    format!("not offered: this engine no longer leads at term {}", term.0)
}
