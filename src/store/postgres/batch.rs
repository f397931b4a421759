//! The engine's unit of durability on PostgreSQL, as on SQLite (`sqlite/batch.rs`): every write of one actor
//! step goes into one transaction and is also kept as a redo entry, so that a step whose commit fails (the
//! connection lost, the server down) is written again, whole and in order, once the server answers. Until
//! then the engine announces nothing of it.

use std::cell::RefCell;
use std::sync::Arc;

use super::PgStore;
use super::connection::Conn;
use crate::store::batch::Batch;
use crate::store::{Result, StoreError};

type Redo = Arc<dyn Fn(&mut Conn) -> Result<()> + Send + Sync>;

pub(super) type SharedBatch = RefCell<Batch<Redo>>;

/// The lease holding a leader's commits check (`Coordination::fence`).
#[derive(Clone)]
pub(super) struct Fence {
    pub engine: i64,
    pub lease: String,
    pub term: i64,
}

impl Fence {
    /// Inside the transaction about to commit: the lease is still this holding, and stays so until the commit
    /// (`FOR SHARE` makes a takeover wait for it), so the commit lands before any new term or not at all.
    fn check(&self, conn: &mut Conn) -> Result<()> {
        let held = conn.query_opt(
            "SELECT term FROM leases WHERE name = $1 AND holder = $2 AND term = $3 FOR SHARE",
            &[&self.lease, &self.engine, &self.term],
        )?;
        if held.is_some() {
            return Ok(());
        }
        let now = conn.query_opt("SELECT holder, term FROM leases WHERE name = $1", &[&self.lease])?;
        let now = match now {
            Some(row) => {
                let holder: Option<i64> = super::rows::get(&row, "holder")?;
                let term: i64 = super::rows::get(&row, "term")?;
                match holder {
                    Some(holder) => format!("engine {holder} holds the {} lease at term {term}", self.lease),
                    None => format!("the {} lease was released (term {term})", self.lease),
                }
            }
            None => format!("the {} lease is gone", self.lease),
        };
        conn.rollback();
        Err(StoreError::Fenced(format!(
            "its writes at term {} are refused: {now}; they are discarded and another engine carries on",
            self.term
        )))
    }
}

impl PgStore {
    /// Opens a batch. PostgreSQL's READ COMMITTED gives each statement the latest committed rows, so a step
    /// never reads a snapshot another writer has moved past.
    pub(super) fn begin_batch(&self) -> Result<()> {
        Batch::begin(&self.batch, || self.worker.run(Conn::begin))
    }

    /// Commits the batch. On failure the batch's writes are kept: `retry_pending` (which rolls back what is
    /// left of the transaction first) writes them again.
    pub(super) fn commit_batch(&self) -> Result<()> {
        let fence = self.fence.borrow().clone();
        let commit = || {
            self.worker.run(move |conn| {
                if let Some(fence) = &fence {
                    fence.check(conn)?;
                }
                conn.commit()
            })
        };
        if Batch::commit(&self.batch, commit) { Ok(()) } else { self.retry_pending() }
    }

    pub(super) fn take_trouble(&self) -> Option<String> {
        self.batch.borrow_mut().take_trouble()
    }

    pub(super) fn has_pending(&self) -> bool {
        self.batch.borrow().has_pending()
    }

    /// Writes again, in one transaction, everything no commit has taken yet.
    pub(super) fn retry_pending(&self) -> Result<()> {
        let mut batch = self.batch.borrow_mut();
        let redo = batch.redo.clone();
        let fence = self.fence.borrow().clone();
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
            if let Some(fence) = &fence {
                fence.check(conn)?;
            }
            conn.commit()
        });
        match replayed {
            Ok(()) => {
                if batch.redo.is_empty() {
                    batch.settled();
                    return Ok(());
                }
                Batch::committed(batch);
                Ok(())
            }
            Err(error) => {
                batch.failed(&error);
                Err(crate::store::batch::unavailable(error))
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
            Err(batch.refusal())
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
        Batch::after_commit(&self.batch, work);
    }
}
