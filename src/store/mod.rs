//! Everything an operator needs after a restart: runs, tasks, attempts, logs, pauses, alerts, the audit
//! trail and commands from other shells; a change is committed before the engine announces it. `Store` is
//! the face the engine, console and CLI use; behind it a `Backend` keeps the records (SQLite in WAL mode
//! under the state folder, `sqlite/`) and says how engines sharing it agree (`Coordination`).

mod backend;
mod batch;
// The integration tests run the suite against PostgreSQL, so it is public to them (feature `store-contract`).
#[cfg(any(test, feature = "store-contract"))]
#[doc(hidden)]
pub mod contract;
mod coordination;
mod location;
mod lock;
mod logs;
mod open;
mod postgres;
mod records;
mod sqlite;
pub mod work;

use std::fs::{self, DirBuilder};
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

pub use backend::{Backend, Records};
pub use coordination::{Coordination, EngineId, EngineRecord, SCHEDULER_LEASE, Term};
pub use location::{DatabaseUrl, StoreLocation};
pub use lock::{LOCK_FILE, StateLock};
pub use logs::{LocalLogs, LogReader};
pub use open::{open, peek};
pub use records::*;
pub use sqlite::DATABASE_FILE;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed a statement (busy, disk full, a constraint, a broken file): what it
    /// said, in its words. Which database is an implementation detail of this module.
    #[error("store: {0}")]
    Database(String),
    /// A write of a leader that no longer holds its lease: another engine leads now, so this one must stop
    /// acting (and must not try the write again).
    #[error("this engine no longer leads: {0}")]
    Fenced(String),
    #[error("state folder: {0}")]
    Io(#[from] std::io::Error),
    #[error("another engine (PID {pid}) holds the state folder {}: stop it, or point --state elsewhere", state_dir.display())]
    Locked { state_dir: PathBuf, pid: String },
    #[error("the store holds a value it cannot read: {0}")]
    Corrupt(String),
    /// A write could not be committed; the engine holds it and tries again.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("the state folder {} is open to other users (mode {mode:o}) and cannot be made private: use a folder of your own (--state)", .dir.display())]
    Insecure { dir: PathBuf, mode: u32 },
    #[error("{} was deleted or replaced while the engine had it open: stopping rather than writing where nobody reads (start the engine again to use the file that is there now)", .0.display())]
    Replaced(PathBuf),
}

impl StoreError {
    /// Why, without the "does not accept writes" a held write's error already says.
    pub fn reason(&self) -> String {
        match self {
            StoreError::Unavailable(why) => why.clone(),
            other => other.to_string(),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The store as its callers see it: every `Records` and `Coordination` operation is called on it directly
/// (`store.runs(..)`), whichever backend is behind it.
pub struct Store(Box<dyn Backend>);

impl Store {
    /// Opens (creating and migrating as needed) the SQLite store in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Store> {
        Ok(Store(Box::new(sqlite::SqliteStore::open(state_dir)?)))
    }

    /// Opens an existing store for reading only: nothing is created or migrated, and a lock held by an engine
    /// is waited on for a moment at most. `None` when there is no store there yet (or not one with tables:
    /// an engine that has just started may not have made them yet).
    pub fn peek(state_dir: &Path) -> Result<Option<Store>> {
        Ok(sqlite::SqliteStore::peek(state_dir)?.map(|store| Store(Box::new(store))))
    }

    /// Connects to the PostgreSQL store at `address` (a `postgres://` URL or a `key=value` conninfo),
    /// migrating its schema as needed; `state_dir` keeps this host's logs and work files. No error or log
    /// line names the password.
    pub fn connect(address: &str, state_dir: &Path) -> Result<Store> {
        Ok(Store(Box::new(postgres::PgStore::connect(address, state_dir)?)))
    }

    /// A store kept by another backend.
    pub fn with_backend(backend: Box<dyn Backend>) -> Store {
        Store(backend)
    }

    /// `STATE/logs/RUN/TASK.ATTEMPT.log`
    pub fn log_path(&self, run_id: &str, task: &str, attempt: u32) -> PathBuf {
        log_path_in(self.state_dir(), run_id, task, attempt)
    }

    /// A scratch folder for one run's files (task outputs before they are read).
    pub fn work_dir(&self, run_id: &str) -> PathBuf {
        self.state_dir().join("work").join(run_id)
    }
}

impl Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &(dyn Backend + 'static) {
        &*self.0
    }
}

impl DerefMut for Store {
    fn deref_mut(&mut self) -> &mut (dyn Backend + 'static) {
        &mut *self.0
    }
}

/// Where an attempt's log is kept under the state folder `state_dir`: `STATE/logs/RUN/TASK.ATTEMPT.log`.
pub fn log_path_in(state_dir: &Path, run_id: &str, task: &str, attempt: u32) -> PathBuf {
    state_dir.join("logs").join(run_id).join(format!("{task}.{attempt}.log"))
}

fn remove_run_files(state_dir: &Path, run_id: &str) {
    for dir in [state_dir.join("logs").join(run_id), state_dir.join("work").join(run_id)] {
        if dir.exists()
            && let Err(error) = fs::remove_dir_all(&dir)
        {
            tracing::warn!("could not remove {}: {error}", dir.display());
        }
    }
}

/// The state folder, created private; one that exists with looser permissions is made private (0700) if it is
/// ours and not a shared folder (sticky, like `/tmp`), refused otherwise.
pub fn create_state_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    create_private_dir(dir)?;
    let metadata = fs::metadata(dir)?;
    let mode = metadata.mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    // SAFETY: geteuid only reads this process's effective user id.
    let ours = metadata.uid() == unsafe { libc::geteuid() };
    if !ours || mode & 0o1000 != 0 {
        return Err(StoreError::Insecure { dir: dir.to_path_buf(), mode });
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    tracing::warn!("the state folder {} was open to other users (mode {mode:o}): made private (700)", dir.display());
    Ok(())
}

pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

pub fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn parse_timestamp(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|error| StoreError::Corrupt(format!("timestamp `{text}`: {error}")))
}
