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
    /// Process attempts go to the engines as offers, at this term.
    pub offers: crate::work::Offers,
    /// The worker this engine started for itself (`EngineConfig::own_worker`), stopped with it.
    pub _worker: Option<crate::work::Worker>,
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
/// to open. The store's commits are fenced by the term from then on; work earlier leaders offered is
/// withdrawn or stopped, as their runs are recovered under this term. `capacity`: the attempts a worker of
/// its own (`EngineConfig::own_worker`) runs at once.
pub(crate) fn take_lead(
    config: &EngineConfig,
    store: &Store,
    capacity: usize,
) -> Result<Option<Leadership>, EngineError> {
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
    let offered = crate::store::work::open_queue(&config.store, &config.state_dir)?
        .ok_or_else(|| StoreError::Database("the store is shared, yet it has no work queue".into()))?;
    let stopping = offered.take_over(term)?;
    if stopping > 0 {
        tracing::warn!("asked {stopping} attempt(s) offered by an earlier leader to stop: their runs are recovered");
    }
    let silent = crate::store::work::silent_after(membership.lease_ttl());
    let offers = crate::work::Offers::start(offered, membership.engine(), term, silent);
    let worker = if config.own_worker {
        let routes = vec![crate::work::ALL_ROUTES.to_string()];
        let setup = crate::work::WorkerSetup::here(
            membership.engine(),
            routes,
            capacity,
            &config.workflows_dir,
            &config.state_dir,
        );
        Some(crate::work::Worker::serve(&config.store, setup)?)
    } else {
        None
    };
    Ok(Some(Leadership { membership, term, offers, _worker: worker }))
}
