//! The embedded store: SQLite in WAL mode, one file under the state folder, one engine at a time (the state
//! folder's lock). Everything SQLite-shaped lives here: the connection, its pragmas, the schema and the SQL.

mod batch;
mod gauges;
mod instants;
mod records;
mod schema;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::Connection;

use super::{Coordination, EngineId, LocalLogs, LogReader, Result, StoreError, Term, create_state_dir};

pub const DATABASE_FILE: &str = "conveyor.db";

/// Lets `?` turn SQLite's errors into the store's own inside this module. A trait impl cannot be private, so
/// dependents can see it, but no variant carries SQLite's type: code outside the store matches on what
/// happened, never on how SQLite said it.
impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        StoreError::Database(error.to_string())
    }
}

pub struct SqliteStore {
    connection: Connection,
    state_dir: PathBuf,
    batch: batch::SharedBatch,
    /// Device and inode of the database file as opened.
    identity: (u64, u64),
}

impl SqliteStore {
    /// Opens (creating and migrating as needed) the store in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<SqliteStore> {
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
        Ok(SqliteStore { connection, state_dir: state_dir.to_path_buf(), batch: Default::default(), identity })
    }

    pub(super) fn state_id(&self) -> Result<String> {
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
    pub(super) fn integrity_check(&self) -> Result<String> {
        Ok(self.connection.query_row("PRAGMA integrity_check", [], |row| row.get(0))?)
    }

    pub(super) fn logs(&self) -> Arc<dyn LogReader> {
        Arc::new(LocalLogs)
    }
}

/// One engine per state folder, kept out by the folder's lock (`StateLock`), which the engine takes before
/// it opens the store: that lock is the lease, so every claim here wins.
impl Coordination for SqliteStore {
    fn join(&self, _host: &str, _pid: u32, _routes: &[String]) -> Result<EngineId> {
        Ok(EngineId(1))
    }

    fn heartbeat(&self) -> Result<()> {
        Ok(())
    }

    fn hold_lease(&self, _name: &str, _ttl: std::time::Duration) -> Result<Option<Term>> {
        Ok(Some(Term(1)))
    }

    fn release_lease(&self, _name: &str) -> Result<()> {
        Ok(())
    }
}

fn restrict_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

#[cfg(test)]
mod tests;
