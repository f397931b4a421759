//! The engine's unit of durability on PostgreSQL, as on SQLite (`sqlite/batch.rs`): every write of one actor
//! step goes into one transaction and is also kept as a redo entry, so that a step whose commit fails (the
//! connection lost, the server down) is written again, whole and in order, once the server answers. Until
//! then the engine announces nothing of it.

use std::cell::{RefCell, RefMut};
use std::sync::Arc;

use super::PgStore;
use super::connection::Conn;
use crate::store::{Result, StoreError};

type Redo = Arc<dyn Fn(&mut Conn) -> Result<()> + Send + Sync>;

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
    fn failed(&mut self, error: &StoreError) {
        let reason = error.reason();
        self.live = false;
        self.trouble.get_or_insert_with(|| reason.clone());
        self.failure = Some(reason);
    }

    fn run_after_commit(mut batch: RefMut<'_, Batch>) {
        let after: Vec<_> = batch.after_commit.drain(..).collect();
        drop(batch);
        after.into_iter().for_each(|work| work());
    }
}

impl PgStore {
    /// Opens a batch. PostgreSQL's READ COMMITTED gives each statement the latest committed rows, so a step
    /// never reads a snapshot another writer has moved past.
    pub(super) fn begin_batch(&self) -> Result<()> {
        let mut batch = self.batch.borrow_mut();
        batch.open = true;
        if !batch.redo.is_empty() {
            // Earlier writes still wait to be written again: later ones must not overtake them.
            batch.live = false;
            return Ok(());
        }
        match self.worker.run(Conn::begin) {
            Ok(()) => {
                batch.live = true;
                Ok(())
            }
            Err(error) => {
                batch.failed(&error);
                Err(error)
            }
        }
    }

    pub(super) fn commit_batch(&self) -> Result<()> {
        let mut batch = self.batch.borrow_mut();
        batch.open = false;
        if batch.live {
            batch.live = false;
            let committed = match crate::failpoint::hit("store.commit") {
                Some(crate::failpoint::Action::Error) => {
                    let _ = self.worker.run(|conn| {
                        conn.rollback();
                        Ok(())
                    });
                    Err(StoreError::Unavailable("fail point store.commit".into()))
                }
                _ => self.worker.run(Conn::commit),
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

    pub(super) fn take_trouble(&self) -> Option<String> {
        self.batch.borrow_mut().trouble.take()
    }

    pub(super) fn has_pending(&self) -> bool {
        !self.batch.borrow().redo.is_empty()
    }

    /// Writes again, in one transaction, everything no commit has taken yet.
    pub(super) fn retry_pending(&self) -> Result<()> {
        let mut batch = self.batch.borrow_mut();
        let redo = batch.redo.clone();
        let replayed = self.worker.run(move |conn| {
            conn.rollback();
            if redo.is_empty() {
                return Ok(());
            }
            if let Some(crate::failpoint::Action::Error) = crate::failpoint::hit("store.commit") {
                return Err(StoreError::Unavailable("fail point store.commit".into()));
            }
            conn.begin()?;
            for work in &redo {
                if let Err(error) = work(conn) {
                    conn.rollback();
                    return Err(error);
                }
            }
            conn.commit()
        });
        match replayed {
            Ok(()) => {
                batch.failure = None;
                if batch.redo.is_empty() {
                    return Ok(());
                }
                batch.redo.clear();
                Batch::run_after_commit(batch);
                Ok(())
            }
            Err(error) => {
                batch.failed(&error);
                Err(match error {
                    StoreError::Unavailable(why) => StoreError::Unavailable(why),
                    other => StoreError::Unavailable(other.to_string()),
                })
            }
        }
    }

    /// Runs one write: inside the open batch (and kept for a retry), or on its own when no batch is open.
    pub(super) fn write<T: Send + 'static>(
        &self,
        work: impl Fn(&mut Conn) -> Result<T> + Send + Sync + 'static,
    ) -> Result<T> {
        let mut batch = self.batch.borrow_mut();
        if !batch.open {
            drop(batch);
            return self.worker.run(move |conn| work(conn));
        }
        let work = Arc::new(work);
        let result = if batch.live {
            let live = Arc::clone(&work);
            self.worker.run(move |conn| match conn.broken() {
                // A read failed inside the transaction and PostgreSQL aborted it: this write must not land
                // on its own.
                Some(why) => Err(StoreError::Unavailable(why)),
                None => live(conn),
            })
        } else {
            Err(StoreError::Unavailable(batch.failure.clone().unwrap_or_else(|| "earlier writes wait".into())))
        };
        if let Err(error) = &result
            && batch.live
        {
            batch.failed(error);
        }
        batch.redo.push(Arc::new(move |conn: &mut Conn| work(conn).map(drop)));
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
}
