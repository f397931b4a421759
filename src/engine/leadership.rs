//! What an engine on a shared database holds while it runs: the lead, at one term. Taken when the engine
//! opens (an engine that cannot take it does not open: another leads, hand the work to it); given up,
//! with everything the engine was running, as soon as the engine cannot be sure it still holds it.

use std::sync::Arc;
use std::time::Instant;

use super::membership::{Membership, Standing};
use super::{EngineConfig, EngineError};
use crate::store::{SCHEDULER_LEASE, Store, StoreError, Term};

pub(crate) struct Leadership {
    pub membership: Arc<Membership>,
    pub term: Term,
}

/// What the engine may do now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Act,
    /// Whether it still leads is not known (a renewal is late, the database does not answer): it starts
    /// nothing and writes nothing until it is.
    Wait,
    /// Another engine leads, or may have meanwhile: everything this engine holds in memory may be stale.
    StepDown(String),
}

impl Leadership {
    pub fn verdict(&self) -> Verdict {
        match self.membership.standing() {
            Standing::Leading { term, until } if term == self.term => {
                if Instant::now() < until {
                    Verdict::Act
                } else {
                    Verdict::Wait
                }
            }
            Standing::Leading { term, .. } => Verdict::StepDown(format!(
                "the lease lapsed and was taken again at term {} (this engine held term {}): another engine may have led meanwhile",
                term.0, self.term.0
            )),
            standby @ Standing::Standby { .. } => {
                Verdict::StepDown(format!("it lost the lease it held at term {} ({standby})", self.term.0))
            }
            Standing::Unreachable { .. } => Verdict::Wait,
        }
    }
}

/// On a store several engines share: joins (unless the caller already has), and takes the lead or refuses
/// to open. The store's commits are fenced by the term from then on.
pub(crate) fn take_lead(config: &EngineConfig, store: &Store) -> Result<Option<Leadership>, EngineError> {
    if !store.is_shared() {
        return Ok(None);
    }
    let membership = match &config.membership {
        Some(membership) => Arc::clone(membership),
        None => match Membership::join(&config.state_dir, &config.store)? {
            Some(membership) => Arc::new(membership),
            None => {
                return Err(StoreError::Database("the store is shared, yet joining it found it is not".into()).into());
            }
        },
    };
    let Some(term) = membership.leading_now() else {
        return Err(EngineError::Standby(membership.standing().to_string()));
    };
    store.fence(membership.engine(), SCHEDULER_LEASE, term);
    Ok(Some(Leadership { membership, term }))
}
