//! Runs looked up by the scheduled instant they were started for (`input.scheduled_at`), whatever started
//! them: a schedule, a catch-up or a backfill. And a read-only look into a store that an engine may hold,
//! for shell completion.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{DATABASE_FILE, SqliteStore};
use crate::store::{Result, StoreError, parse_timestamp, timestamp};

/// A completion must answer at once: a store busy for longer gives no candidates rather than a wait.
const PEEK_BUSY_TIMEOUT_MS: u64 = 100;

impl SqliteStore {
    /// The newest run of `workflow` started for the instant `at`.
    pub(super) fn run_for_instant(&self, workflow: &str, at: DateTime<Utc>) -> Result<Option<String>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT id FROM runs WHERE workflow = ?1 AND json_extract(input, '$.scheduled_at') = ?2
             ORDER BY created_at DESC, id DESC LIMIT 1",
        )?;
        Ok(statement.query_row(params![workflow, timestamp(at)], |row| row.get(0)).optional()?)
    }

    /// Every instant of `workflow` that has a run, with its newest run.
    pub(super) fn runs_by_instant(&self, workflow: &str) -> Result<BTreeMap<DateTime<Utc>, String>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT id, json_extract(input, '$.scheduled_at') FROM runs
             WHERE workflow = ?1 AND json_extract(input, '$.scheduled_at') IS NOT NULL
             ORDER BY created_at, id",
        )?;
        let rows = statement.query_map([workflow], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
        let mut found = BTreeMap::new();
        for row in rows {
            let (id, at) = row?;
            // A hand-made input may carry a `scheduled_at` that is no time: it names no instant.
            if let Ok(at) = parse_timestamp(&at) {
                found.insert(at, id);
            }
        }
        Ok(found)
    }

    /// Opens an existing store for reading only: nothing is created or migrated, and a lock held by an engine
    /// is waited on for a moment at most. `None` when there is no store there yet (or not one with tables:
    /// an engine that has just started may not have made them yet).
    pub fn peek(state_dir: &Path) -> Result<Option<SqliteStore>> {
        let path = state_dir.join(DATABASE_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(&path, flags)?;
        connection.busy_timeout(std::time::Duration::from_millis(PEEK_BUSY_TIMEOUT_MS))?;
        let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if version == 0 {
            return Ok(None);
        }
        let identity = {
            use std::os::unix::fs::MetadataExt;
            let metadata = std::fs::metadata(&path).map_err(StoreError::Io)?;
            (metadata.dev(), metadata.ino())
        };
        Ok(Some(SqliteStore { connection, state_dir: state_dir.to_path_buf(), batch: Default::default(), identity }))
    }
}
