//! The engine's unit of durability: every write of one actor step goes into one transaction, and is also
//! kept as a redo entry, so that a step whose commit fails (disk full, the database locked by another
//! process) can be written again, whole and in order, once the store accepts writes. Until then the engine
//! announces nothing of it.

use std::cell::RefCell;

use rusqlite::Connection;

use super::SqliteStore;
use crate::store::{Result, StoreError};

type Redo = Box<dyn Fn(&Connection) -> rusqlite::Result<()> + Send>;

#[derive(Default)]
pub(super) struct Batch {
    /// Between `begin_batch` and `commit_batch`.
    open: bool,
    /// Writes run in a live transaction; false once one has failed (the rest only go to `redo`, so nothing
    /// of a failed step is committed piecemeal).
    live: bool,
    /// Every write since the last successful commit, in order.
    redo: Vec<Redo>,
    /// What must wait for the commit (removing a pruned run's files).
    after_commit: Vec<Box<dyn FnOnce() + Send>>,
    failure: Option<String>,
    /// The first failure since `take_trouble` last looked, even if a retry then succeeded.
    trouble: Option<String>,
}

pub(super) type SharedBatch = RefCell<Batch>;

impl Batch {
    /// A write or commit failed: nothing more of this batch runs live, and the reason is kept for the write
    /// errors that follow and for `take_trouble`.
    fn failed(&mut self, error: &StoreError) {
        let reason = error.reason();
        self.live = false;
        self.trouble.get_or_insert_with(|| reason.clone());
        self.failure = Some(reason);
    }

    /// The work that waited for the commit, run once the batch is released.
    fn run_after_commit(mut batch: std::cell::RefMut<'_, Batch>) {
        let after: Vec<_> = batch.after_commit.drain(..).collect();
        drop(batch);
        after.into_iter().for_each(|work| work());
    }
}

impl SqliteStore {
    /// Opens a batch: what is written until `commit_batch` becomes durable at once, in one commit. The
    /// write lock is taken now (`BEGIN IMMEDIATE`), so a step never reads a snapshot that another writer
    /// has moved past before it writes.
    pub(super) fn begin_batch(&self) -> Result<()> {
        let mut batch = self.batch.borrow_mut();
        batch.open = true;
        if !batch.redo.is_empty() {
            // Earlier writes still wait to be written again: later ones must not overtake them.
            batch.live = false;
            return Ok(());
        }
        match self.connection.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => {
                batch.live = true;
                Ok(())
            }
            Err(error) => {
                let error = StoreError::from(error);
                batch.failed(&error);
                Err(error)
            }
        }
    }

    /// Commits the batch. On failure the batch's writes are kept: `retry_pending` writes them again.
    pub(super) fn commit_batch(&self) -> Result<()> {
        let mut batch = self.batch.borrow_mut();
        batch.open = false;
        self.check_identity()?;
        if batch.live {
            batch.live = false;
            let committed = match crate::failpoint::hit("store.commit") {
                Some(crate::failpoint::Action::Error) => Err(StoreError::Unavailable("fail point store.commit".into())),
                _ => self.connection.execute_batch("COMMIT").map_err(StoreError::from),
            };
            match committed {
                Ok(()) => {
                    batch.redo.clear();
                    Batch::run_after_commit(batch);
                    return Ok(());
                }
                Err(error) => batch.failed(&error),
            }
        }
        drop(batch);
        self.retry_pending()
    }

    /// The first failure since the last call, if any: a step that had to wait for the store, even if its
    /// writes went through in the end.
    pub(super) fn take_trouble(&self) -> Option<String> {
        self.batch.borrow_mut().trouble.take()
    }

    /// Whether writes of earlier steps still wait to be committed.
    pub(super) fn has_pending(&self) -> bool {
        !self.batch.borrow().redo.is_empty()
    }

    /// Writes again, in one transaction, everything no commit has taken yet.
    pub(super) fn retry_pending(&self) -> Result<()> {
        let mut batch = self.batch.borrow_mut();
        if !self.connection.is_autocommit() {
            let _ = self.connection.execute_batch("ROLLBACK");
        }
        if batch.redo.is_empty() {
            batch.failure = None;
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
                batch.redo.clear();
                batch.failure = None;
                Batch::run_after_commit(batch);
                Ok(())
            }
            Err(error) => {
                if !self.connection.is_autocommit() {
                    let _ = self.connection.execute_batch("ROLLBACK");
                }
                batch.failed(&error);
                Err(match error {
                    StoreError::Replaced(path) => StoreError::Replaced(path),
                    StoreError::Unavailable(why) => StoreError::Unavailable(why),
                    other => StoreError::Unavailable(other.to_string()),
                })
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
        let result = if batch.live {
            work(&self.connection).map_err(StoreError::from)
        } else {
            Err(StoreError::Unavailable(batch.failure.clone().unwrap_or_else(|| "earlier writes wait".into())))
        };
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
        let mut batch = self.batch.borrow_mut();
        if batch.open || !batch.redo.is_empty() {
            batch.after_commit.push(Box::new(work));
        } else {
            drop(batch);
            work();
        }
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
