//! What both backends keep about the engine's unit of durability (each runs its own transactions): the
//! writes no commit has taken yet, to be written again whole and in order; the work that waits for their
//! commit; and why the last attempt failed.

use std::cell::{RefCell, RefMut};

use super::StoreError;

pub(super) struct Batch<Redo> {
    /// Between `begin_batch` and `commit_batch`.
    pub open: bool,
    /// Writes run in a live transaction; false once one has failed (the rest only go to `redo`, so nothing
    /// of a failed step is committed piecemeal).
    pub live: bool,
    /// Every write since the last successful commit, in order.
    pub redo: Vec<Redo>,
    /// What must wait for the commit (removing a pruned run's files).
    after_commit: Vec<Box<dyn FnOnce() + Send>>,
    failure: Option<String>,
    /// The first failure since `take_trouble` last looked, even if a retry then succeeded.
    trouble: Option<String>,
}

impl<Redo> Default for Batch<Redo> {
    fn default() -> Self {
        Batch { open: false, live: false, redo: Vec::new(), after_commit: Vec::new(), failure: None, trouble: None }
    }
}

impl<Redo> Batch<Redo> {
    /// Opens the batch and begins its transaction with `begin`. While earlier writes wait to be written again,
    /// later ones must not overtake them: no transaction begins, they only join the redo list.
    pub fn begin(cell: &RefCell<Self>, begin: impl FnOnce() -> Result<(), StoreError>) -> Result<(), StoreError> {
        let mut batch = cell.borrow_mut();
        batch.open = true;
        if !batch.redo.is_empty() {
            batch.live = false;
            return Ok(());
        }
        match begin() {
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

    /// Closes the batch, committing its live transaction with `commit` (the fail point `store.commit` stands
    /// in for a commit that fails). True when that took every write; false when they wait, and the backend
    /// writes them again (`retry_pending`).
    pub fn commit(cell: &RefCell<Self>, commit: impl FnOnce() -> Result<(), StoreError>) -> bool {
        let mut batch = cell.borrow_mut();
        batch.open = false;
        if !batch.live {
            return false;
        }
        batch.live = false;
        let committed = match crate::failpoint::hit("store.commit") {
            Some(crate::failpoint::Action::Error) => Err(StoreError::Unavailable("fail point store.commit".into())),
            _ => commit(),
        };
        match committed {
            Ok(()) => {
                Batch::committed(batch);
                true
            }
            Err(error) => {
                batch.failed(&error);
                false
            }
        }
    }

    /// A write or commit failed: nothing more of this batch runs live, and the reason is kept for the write
    /// errors that follow and for `take_trouble`.
    pub fn failed(&mut self, error: &StoreError) {
        let reason = error.reason();
        self.live = false;
        self.trouble.get_or_insert_with(|| reason.clone());
        self.failure = Some(reason);
    }

    /// What a write gets while the batch is not live.
    pub fn refusal(&self) -> StoreError {
        StoreError::Unavailable(self.failure.clone().unwrap_or_else(|| "earlier writes wait".into()))
    }

    /// Nothing waits any more (a retry found nothing to write).
    pub fn settled(&mut self) {
        self.failure = None;
    }

    /// Everything written is committed: the redo list goes, and the work that waited for it runs, once the
    /// batch is released (that work may use the store).
    pub fn committed(mut batch: RefMut<'_, Self>) {
        batch.redo.clear();
        batch.failure = None;
        let after: Vec<_> = batch.after_commit.drain(..).collect();
        drop(batch);
        after.into_iter().for_each(|work| work());
    }

    pub fn take_trouble(&mut self) -> Option<String> {
        self.trouble.take()
    }

    pub fn has_pending(&self) -> bool {
        !self.redo.is_empty()
    }

    /// Runs `work` once the batch's writes are committed (now, when nothing is open or waiting).
    pub fn after_commit(cell: &RefCell<Self>, work: impl FnOnce() + Send + 'static) {
        let mut batch = cell.borrow_mut();
        if batch.open || !batch.redo.is_empty() {
            batch.after_commit.push(Box::new(work));
        } else {
            drop(batch);
            work();
        }
    }
}

/// A failed retry, as the engine sees it: the store does not accept writes (a replaced file stays itself, as
/// the engine stops on it).
pub(super) fn unavailable(error: StoreError) -> StoreError {
    match error {
        StoreError::Replaced(path) => StoreError::Replaced(path),
        StoreError::Fenced(why) => StoreError::Fenced(why),
        StoreError::Unavailable(why) => StoreError::Unavailable(why),
        other => StoreError::Unavailable(other.to_string()),
    }
}
