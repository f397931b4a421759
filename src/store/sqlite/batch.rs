//! The engine's unit of durability: every write of one actor step goes into one transaction, and is also
//! kept as a redo entry, so that a step whose commit fails (disk full, the database locked by another
//! process) can be written again, whole and in order, once the store accepts writes. Until then the engine
//! announces nothing of it.

use std::cell::RefCell;

use rusqlite::Connection;

use super::SqliteStore;
use crate::store::batch::Batch;
use crate::store::{Result, StoreError};

type Redo = Box<dyn Fn(&Connection) -> rusqlite::Result<()> + Send>;

pub(super) type SharedBatch = RefCell<Batch<Redo>>;

impl SqliteStore {
    /// Opens a batch: what is written until `commit_batch` becomes durable at once, in one commit. The
    /// write lock is taken now (`BEGIN IMMEDIATE`), so a step never reads a snapshot that another writer
    /// has moved past before it writes.
    pub(super) fn begin_batch(&self) -> Result<()> {
        Batch::begin(&self.batch, || Ok(self.connection.execute_batch("BEGIN IMMEDIATE")?))
    }

    /// Commits the batch. On failure the batch's writes are kept: `retry_pending` writes them again (and
    /// says why, a database file replaced under the store included).
    pub(super) fn commit_batch(&self) -> Result<()> {
        let committed = Batch::commit(&self.batch, || {
            self.check_identity()?;
            Ok(self.connection.execute_batch("COMMIT")?)
        });
        if committed { Ok(()) } else { self.retry_pending() }
    }

    /// The first failure since the last call, if any: a step that had to wait for the store, even if its
    /// writes went through in the end.
    pub(super) fn take_trouble(&self) -> Option<String> {
        self.batch.borrow_mut().take_trouble()
    }

    /// Whether writes of earlier steps still wait to be committed.
    pub(super) fn has_pending(&self) -> bool {
        self.batch.borrow().has_pending()
    }

    /// Writes again, in one transaction, everything no commit has taken yet.
    pub(super) fn retry_pending(&self) -> Result<()> {
        let mut batch = self.batch.borrow_mut();
        if !self.connection.is_autocommit() {
            let _ = self.connection.execute_batch("ROLLBACK");
        }
        if batch.redo.is_empty() {
            batch.settled();
            return Ok(());
        }
        let replayed = (|| -> Result<()> {
            if let Some(crate::failpoint::Action::Error) = crate::failpoint::hit("store.commit") {
                return Err(StoreError::Unavailable("fail point store.commit".into()));
            }
            self.check_identity()?;
            self.connection.execute_batch("BEGIN IMMEDIATE")?;
            for work in &batch.redo {
                work(&self.connection)?;
            }
            self.connection.execute_batch("COMMIT")?;
            Ok(())
        })();
        match replayed {
            Ok(()) => {
                Batch::committed(batch);
                Ok(())
            }
            Err(error) => {
                if !self.connection.is_autocommit() {
                    let _ = self.connection.execute_batch("ROLLBACK");
                }
                batch.failed(&error);
                Err(crate::store::batch::unavailable(error))
            }
        }
    }

    /// Runs one write: inside the open batch (and kept for a retry), or on its own when no batch is open
    /// (the CLI, tests).
    pub(super) fn write<T>(&self, work: impl Fn(&Connection) -> rusqlite::Result<T> + Send + 'static) -> Result<T> {
        let mut batch = self.batch.borrow_mut();
        if !batch.open {
            drop(batch);
            return Ok(work(&self.connection)?);
        }
        let result = if batch.live { work(&self.connection).map_err(StoreError::from) } else { Err(batch.refusal()) };
        if let Err(error) = &result
            && batch.live
        {
            batch.failed(error);
        }
        batch.redo.push(Box::new(move |connection| work(connection).map(drop)));
        result
    }

    /// Runs `work` once the batch's writes are committed (now, outside a batch).
    pub(super) fn after_commit(&self, work: impl FnOnce() + Send + 'static) {
        Batch::after_commit(&self.batch, work);
    }

    /// The database file is still the one this store opened: deleted or replaced under a running engine,
    /// writes would go into a file nobody reads.
    fn check_identity(&self) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let path = self.state_dir.join(super::DATABASE_FILE);
        match std::fs::metadata(&path) {
            Ok(metadata) if (metadata.dev(), metadata.ino()) == self.identity => Ok(()),
            _ => Err(StoreError::Replaced(path)),
        }
    }
}
