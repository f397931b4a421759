//! How engines sharing one store agree on who does what. With SQLite there is one engine per state folder
//! (the lock file, `lock.rs`, is its lease), so every claim wins; a database shared by engines on several
//! hosts decides it here, with leases that expire unless renewed and terms that fence out a former leader.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Result;

/// An engine as the store knows it, from `join` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EngineId(pub u64);

/// A fencing token: which holding of a lease this is. Every holding after another engine's gets a greater
/// term, so a write carrying an older term is known to come from a leader that has lost the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Term(pub u64);

/// An engine registered in a shared store, as the Engines view and `conveyor engines` show it.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineRecord {
    pub id: EngineId,
    pub host: String,
    pub pid: u32,
    pub routes: Vec<String>,
    pub started_at: DateTime<Utc>,
    /// On the database's clock.
    pub heartbeat_at: DateTime<Utc>,
    /// How long ago the database last heard from it (its clock, so hosts' clocks do not matter).
    pub silent_for: chrono::Duration,
    /// Whether it holds the scheduler's lease.
    pub leads: bool,
}

/// The lease every engine sharing a store competes for: its holder fires schedules and runs the runs.
pub const SCHEDULER_LEASE: &str = "scheduler";

pub trait Coordination {
    /// Whether several engines may share this store (and so must hold the scheduler's lease to act). False
    /// for SQLite, whose state folder's lock already makes its engine the only one.
    fn is_shared(&self) -> bool {
        false
    }

    /// Registers this engine (its host, PID and the routes it can run attempts on) and returns its id.
    /// A multi-engine backend records it with a heartbeat, so others can tell when it is gone and rescue
    /// what it held. Joining again replaces the earlier registration of this store handle.
    fn join(&self, host: &str, pid: u32, routes: &[String]) -> Result<EngineId>;

    /// Says this engine is alive. A multi-engine backend must treat an engine whose heartbeat is older than
    /// its leases' time to live as gone: its leases lapse and its claimed attempts may be rescued.
    fn heartbeat(&self) -> Result<()>;

    /// Takes or renews the lease `name` (e.g. the scheduler's) for `ttl`: `Some(term)` while this engine
    /// holds it, `None` when another does. `None` is a normal outcome, never an error: the caller simply
    /// does not lead. A multi-engine backend must guarantee at most one holder at a time, the same term for
    /// a renewal by the holder, a greater term for any new holding, and that every write a leader makes
    /// under the lease checks its term, so a write from a holder that has lost it fails instead of landing.
    /// SQLite: the state folder's lock is held for the engine's life, so this is always `Some(Term(1))`.
    fn hold_lease(&self, name: &str, ttl: Duration) -> Result<Option<Term>>;

    /// Gives up the lease `name` if this engine holds it, so another can take it without waiting for it to
    /// lapse. Releasing a lease not held is not an error.
    fn release_lease(&self, name: &str) -> Result<()>;

    /// From now on this handle writes for `engine` holding `lease` at `term`: every commit first checks, in
    /// its own transaction and under a lock on the lease's row, that the lease is still that holding, and
    /// fails with `StoreError::Fenced` if not. So a leader that lost its lease (paused past its expiry, cut
    /// off from the database) cannot land a write after another engine has taken over. No-op for SQLite.
    fn fence(&self, _engine: EngineId, _lease: &str, _term: Term) {}

    /// Who holds `lease` now, and at which term (`None`: nobody, or it has lapsed).
    fn lease_holder(&self, _lease: &str) -> Result<Option<(EngineId, Term)>> {
        Ok(None)
    }

    /// Every registered engine, oldest first. Empty for SQLite (its one engine is the state folder's lock).
    fn engines(&self) -> Result<Vec<EngineRecord>> {
        Ok(Vec::new())
    }

    /// Told (`()`) when a command was queued by another shell, and once after each reconnection: a hint
    /// that lets the engine take it at once; the engine keeps polling, as a hint can be lost. `None` where
    /// the store cannot tell (SQLite: the engine polls).
    fn wake_ups(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        None
    }

    /// Removes engines the database has not heard from for `silent_for` (killed, their host gone): the
    /// Engines view keeps a dead one that long, so an operator sees it went. No-op for SQLite.
    fn forget_engines(&self, _silent_for: Duration) -> Result<u64> {
        Ok(0)
    }

    /// Removes this handle's registration (a clean stop): the others need not wait for its heartbeat to go
    /// silent. No-op for SQLite.
    fn leave(&self) -> Result<()> {
        Ok(())
    }
}
