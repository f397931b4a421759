//! How engines sharing one store agree on who does what. With SQLite there is one engine per state folder
//! (the lock file, `lock.rs`, is its lease), so every claim wins; a database shared by engines on several
//! hosts decides it here, with leases that expire unless renewed and terms that fence out a former leader.

use std::time::Duration;

use super::Result;

/// An engine as the store knows it, from `join` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EngineId(pub u64);

/// A fencing token: which holding of a lease this is. Every holding after another engine's gets a greater
/// term, so a write carrying an older term is known to come from a leader that has lost the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Term(pub u64);

pub trait Coordination {
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
}
