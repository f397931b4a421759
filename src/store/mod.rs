//! Everything an operator needs after a restart: runs, tasks, attempts, logs, pauses, alerts, the audit
//! trail and commands from other shells. SQLite in WAL mode under the state folder; a change is committed
//! before the engine announces it.

mod batch;
mod gauges;
mod instants;
mod lock;
mod records;
mod schema;

use std::fs::{self, DirBuilder};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::Connection;

pub use gauges::Gauges;
pub use lock::{LOCK_FILE, StateLock};
pub use records::*;

pub const DATABASE_FILE: &str = "conveyor.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed a statement (busy, disk full, a constraint, a broken file): what it
    /// said, in its words. Which database is an implementation detail of this module.
    #[error("store: {0}")]
    Database(String),
    #[error("state folder: {0}")]
    Io(#[from] std::io::Error),
    #[error("another engine (PID {pid}) holds the state folder {}: stop it, or point --state elsewhere", state_dir.display())]
    Locked { state_dir: PathBuf, pid: String },
    #[error("the store holds a value it cannot read: {0}")]
    Corrupt(String),
    /// A write could not be committed; the engine holds it and tries again.
    #[error("the store does not accept writes: {0}")]
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

/// Lets `?` turn SQLite's errors into the store's own inside this module. A trait impl cannot be private, so
/// dependents can see it, but no variant carries SQLite's type: code outside the store matches on what
/// happened, never on how SQLite said it.
impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        StoreError::Database(error.to_string())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub struct Store {
    connection: Connection,
    state_dir: PathBuf,
    batch: batch::SharedBatch,
    /// Device and inode of the database file as opened.
    identity: (u64, u64),
}

impl Store {
    /// Opens (creating and migrating as needed) the store in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Store> {
        create_state_dir(state_dir)?;
        let path = state_dir.join(DATABASE_FILE);
        let connection = Connection::open(&path)?;
        restrict_file(&path)?;
        // WAL keeps readers (a console, `conveyor history`) off the writer's back; NORMAL sync in WAL mode
        // never loses a committed transaction when the process crashes, only on power loss.
        connection.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
        )?;
        // The write-ahead log stays between processes: closing neither checkpoints nor deletes it, so a
        // `conveyor run` does not pay for creating, syncing and removing it; the next opener reads it as is, and
        // SQLite's automatic checkpoint keeps it from growing (docs/benchmarks.md).
        connection.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        schema::migrate(&connection)?;
        let identity = {
            use std::os::unix::fs::MetadataExt;
            let metadata = fs::metadata(&path)?;
            (metadata.dev(), metadata.ino())
        };
        Ok(Store { connection, state_dir: state_dir.to_path_buf(), batch: Default::default(), identity })
    }

    /// A random id of this state folder, made once: task processes carry it (`CONVEYOR_STATE_ID`) so that an
    /// engine can tell the processes of its folder from any other.
    pub fn state_id(&self) -> Result<String> {
        use rusqlite::OptionalExtension;
        let found: Option<String> = self
            .connection
            .query_row("SELECT value FROM meta WHERE key = 'state_id'", [], |row| row.get(0))
            .optional()?;
        if let Some(id) = found {
            return Ok(id);
        }
        let id = format!("{:016x}", rand::random::<u64>());
        self.connection.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('state_id', ?1)", [&id])?;
        Ok(self.connection.query_row("SELECT value FROM meta WHERE key = 'state_id'", [], |row| row.get(0))?)
    }

    /// SQLite's own check of the file: `ok`, or what is wrong.
    pub fn integrity_check(&self) -> Result<String> {
        Ok(self.connection.query_row("PRAGMA integrity_check", [], |row| row.get(0))?)
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// `STATE/logs/RUN/TASK.ATTEMPT.log`
    pub fn log_path(&self, run_id: &str, task: &str, attempt: u32) -> PathBuf {
        self.state_dir.join("logs").join(run_id).join(format!("{task}.{attempt}.log"))
    }

    /// A scratch folder for one run's files (task outputs before they are read).
    pub fn work_dir(&self, run_id: &str) -> PathBuf {
        self.state_dir.join("work").join(run_id)
    }
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

fn restrict_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

pub fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn parse_timestamp(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|error| StoreError::Corrupt(format!("timestamp `{text}`: {error}")))
}

#[cfg(test)]
mod tests;
