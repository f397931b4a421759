//! An engine among others sharing one database: it registers, says it is alive, and competes for the
//! scheduler's lease, on a thread and a store handle of its own, so a slow database never stalls the engine's
//! loop and a busy loop never lets the lease lapse. The engine reads the outcome (`Standing`) and acts only
//! while it leads; the database's fence on every commit (`Coordination::fence`) catches what a paused leader
//! would still try.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::store::{EngineId, SCHEDULER_LEASE, Store, StoreError, StoreLocation, Term};

/// How long a lease lives and how often it is renewed (heartbeats go with renewals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub ttl: Duration,
    pub renew: Duration,
}

impl Default for Timing {
    /// A lease of 15 s renewed every 5 s: two renewals may fail before it lapses.
    fn default() -> Timing {
        Timing { ttl: Duration::from_secs(15), renew: Duration::from_secs(5) }
    }
}

/// How long an engine the database no longer hears from stays in the list (and the Engines view).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// The environment variable that overrides the timing: `TTL_MS,RENEW_MS` (tests take over in seconds).
pub const TIMING_VARIABLE: &str = "CONVEYOR_CLUSTER_TIMING";

impl Timing {
    pub fn from_env() -> Result<Timing, String> {
        match std::env::var(TIMING_VARIABLE) {
            Ok(text) => Timing::parse(&text),
            Err(_) => Ok(Timing::default()),
        }
    }

    fn parse(text: &str) -> Result<Timing, String> {
        let numbers: Vec<Option<u64>> = text.split(',').map(|part| part.trim().parse().ok()).collect();
        match numbers.as_slice() {
            [Some(ttl), Some(renew)] if *renew > 0 && renew < ttl => {
                Ok(Timing { ttl: Duration::from_millis(*ttl), renew: Duration::from_millis(*renew) })
            }
            _ => Err(format!(
                "{TIMING_VARIABLE}=`{text}`: expected `TTL_MS,RENEW_MS` with 0 < RENEW_MS < TTL_MS, e.g. `15000,5000`"
            )),
        }
    }

    /// Until when a lease renewed at `asked` may be acted on: short of its expiry, so a leader stops acting
    /// before any other engine may take over, whatever the database's round trip took.
    fn acting_until(&self, asked: Instant) -> Instant {
        asked + self.ttl * 4 / 5
    }
}

/// What this engine is among those sharing the database, as last learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// It holds the scheduler's lease at `term`, and may act on it until `until` unless renewed.
    Leading { term: Term, until: Instant },
    /// Another engine leads (`None`: nobody does yet, and this one may not take over yet).
    Standby { leader: Option<EngineId> },
    /// The database did not answer the last renewal: this engine does not know whether it still leads.
    Unreachable { why: String },
}

impl std::fmt::Display for Standing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Standing::Leading { term, .. } => write!(f, "leads at term {}", term.0),
            Standing::Standby { leader: Some(EngineId(leader)) } => write!(f, "standby: engine {leader} leads"),
            Standing::Standby { leader: None } => write!(f, "standby: waiting to take the lease"),
            Standing::Unreachable { why, .. } => write!(f, "the database does not answer: {why}"),
        }
    }
}

/// This process's registration in a shared store. Dropping it gives up the lease and leaves.
pub struct Membership {
    engine: EngineId,
    timing: Timing,
    standing: watch::Receiver<Standing>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Membership {
    /// Registers this process with the database at `location` and makes its first bid for the lease before
    /// returning, so the caller knows at once whether it leads. `None` for a store only one engine uses.
    pub fn join(state_dir: &std::path::Path, location: &StoreLocation) -> Result<Option<Membership>, StoreError> {
        Membership::join_serving(state_dir, location, &[crate::work::ALL_ROUTES.to_string()])
    }

    /// `join`, saying which routes this engine's worker serves (as the Engines view shows them).
    pub fn join_serving(
        state_dir: &std::path::Path,
        location: &StoreLocation,
        routes: &[String],
    ) -> Result<Option<Membership>, StoreError> {
        let timing = Timing::from_env().map_err(StoreError::Database)?;
        Membership::joined(state_dir, location, timing, routes)
    }

    /// `join` with the lease's timing given rather than read from `CONVEYOR_CLUSTER_TIMING`.
    pub fn join_with(
        state_dir: &std::path::Path,
        location: &StoreLocation,
        timing: Timing,
    ) -> Result<Option<Membership>, StoreError> {
        Membership::joined(state_dir, location, timing, &[crate::work::ALL_ROUTES.to_string()])
    }

    fn joined(
        state_dir: &std::path::Path,
        location: &StoreLocation,
        timing: Timing,
        routes: &[String],
    ) -> Result<Option<Membership>, StoreError> {
        let store = crate::store::open(state_dir, location)?;
        if !store.is_shared() {
            return Ok(None);
        }
        let host = hostname();
        let engine = store.join(&host, std::process::id(), routes)?;
        let mut bidder = Bidder { store, timing, unanswered: false, hold_off_until: None, led: false };
        let first = bidder.bid(None);
        let (publish, standing) = watch::channel(first);
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("conveyor-membership".into())
            .spawn(move || bidder.keep_bidding(publish, stopping))
            .map_err(StoreError::Io)?;
        tracing::info!("joined the engines sharing the store as engine {} on {host}", engine.0);
        Ok(Some(Membership { engine, timing, standing, stop, thread: Some(thread) }))
    }

    pub fn engine(&self) -> EngineId {
        self.engine
    }

    /// How long the scheduler's lease lives unless renewed.
    pub fn lease_ttl(&self) -> Duration {
        self.timing.ttl
    }

    pub fn standing(&self) -> Standing {
        self.standing.borrow().clone()
    }

    /// A receiver that wakes on every change of standing.
    pub fn watch(&self) -> watch::Receiver<Standing> {
        self.standing.clone()
    }

    /// The term this engine leads at now, if it does.
    pub fn leading(&self) -> Option<Term> {
        match &*self.standing.borrow() {
            Standing::Leading { term, until } if Instant::now() < *until => Some(*term),
            _ => None,
        }
    }

    /// The term this engine leads at, waiting (blocking, at most one renewal and a little) when it holds the
    /// lease but its last renewal is too old to act on, as after a stall of this process: the next renewal
    /// tells. `None` at once when another engine leads.
    pub fn leading_now(&self) -> Option<Term> {
        let deadline = Instant::now() + self.timing.renew * 2 + Duration::from_secs(1);
        loop {
            if let Some(term) = self.leading() {
                return Some(term);
            }
            if !matches!(self.standing(), Standing::Leading { .. }) || Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until this engine leads; returns the term.
    pub async fn wait_to_lead(&self) -> Term {
        let mut standing = self.standing.clone();
        loop {
            if let Some(term) = self.leading() {
                return term;
            }
            if standing.changed().await.is_err() {
                // The bidding thread is gone (it only ends when dropped): nothing will change any more.
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The bidding thread's side: its own store handle (a connection of its own) and what it remembers between
/// bids.
struct Bidder {
    store: Store,
    timing: Timing,
    /// The database did not answer the last round.
    unanswered: bool,
    /// After an outage a standby lets one lease's life pass before bidding, so the engine that led before it
    /// gets its lease back and its running work is not taken over as if it had died.
    hold_off_until: Option<Instant>,
    /// Whether this engine led when it last heard from the database: such an engine bids at once.
    led: bool,
}

impl Bidder {
    fn keep_bidding(mut self, publish: watch::Sender<Standing>, stop: Arc<(Mutex<bool>, Condvar)>) {
        let (stopped, wake) = &*stop;
        let mut asked = Instant::now();
        loop {
            let next = asked + self.timing.renew;
            {
                let mut is_stopped = stopped.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                while !*is_stopped && Instant::now() < next {
                    let left = next.saturating_duration_since(Instant::now());
                    is_stopped = wake.wait_timeout(is_stopped, left).unwrap_or_else(|p| p.into_inner()).0;
                }
                if *is_stopped {
                    break;
                }
            }
            asked = Instant::now();
            let before = publish.borrow().clone();
            let now = self.bid(Some(&before));
            if now != before {
                describe_change(&before, &now);
                publish.send_replace(now);
            }
        }
        if let Err(error) = self.store.leave() {
            tracing::warn!(
                "leaving the engines sharing the store failed (the others notice when its heartbeat stops): {error}"
            );
        }
    }

    /// One round: a heartbeat and a bid for the lease. `before` is the standing the last round gave.
    fn bid(&mut self, before: Option<&Standing>) -> Standing {
        let asked = Instant::now();
        let outcome = self.store.heartbeat().and_then(|()| {
            if std::mem::take(&mut self.unanswered) && !self.led {
                // Back after an outage: the engine that led before it bids first.
                self.hold_off_until = Some(asked + self.timing.ttl);
            }
            if !self.led && self.hold_off_until.is_some_and(|until| asked < until) {
                return self.store.lease_holder(SCHEDULER_LEASE).map(|holder| Err(holder.map(|(engine, _)| engine)));
            }
            match self.store.hold_lease(SCHEDULER_LEASE, self.timing.ttl)? {
                Some(term) => {
                    // The leader tidies the list; a failure here costs nothing but a longer list.
                    if let Err(error) = self.store.forget_engines(FORGET_AFTER) {
                        tracing::debug!("forgetting engines gone for long failed: {error}");
                    }
                    Ok(Ok(term))
                }
                None => self.store.lease_holder(SCHEDULER_LEASE).map(|holder| Err(holder.map(|(engine, _)| engine))),
            }
        });
        match outcome {
            Ok(won) => {
                self.led = won.is_ok();
                match won {
                    Ok(term) => Standing::Leading { term, until: self.timing.acting_until(asked) },
                    Err(leader) => Standing::Standby { leader },
                }
            }
            Err(error) => {
                self.unanswered = true;
                match before {
                    // Still within what the last renewal allows: nothing changes yet.
                    Some(leading @ Standing::Leading { until, .. }) if Instant::now() < *until => leading.clone(),
                    _ => Standing::Unreachable { why: error.to_string() },
                }
            }
        }
    }
}

fn describe_change(before: &Standing, now: &Standing) {
    match (before, now) {
        // A renewal: nothing to say.
        (Standing::Leading { term: was, .. }, Standing::Leading { term, .. }) if was == term => {}
        (Standing::Unreachable { .. }, Standing::Unreachable { .. }) => {}
        (_, Standing::Leading { term, .. }) => tracing::info!("this engine leads the cluster now (term {})", term.0),
        (Standing::Leading { term, .. }, unsure @ Standing::Unreachable { .. }) => tracing::warn!(
            "this engine cannot tell whether it still leads (it holds term {}): {unsure}; it acts again once the lease is renewed",
            term.0
        ),
        (Standing::Leading { term, .. }, other) => {
            tracing::warn!("this engine no longer leads (it held term {}): {other}", term.0)
        }
        (_, other) => tracing::info!("{other}"),
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_reads_ttl_and_renewal_and_refuses_nonsense() {
        assert_eq!(
            Timing::parse("3000,500"),
            Ok(Timing { ttl: Duration::from_secs(3), renew: Duration::from_millis(500) })
        );
        for bad in ["", "3000", "500,3000", "3000,0", "a,b", "3000,500,1"] {
            let error = Timing::parse(bad).unwrap_err();
            assert!(error.contains("TTL_MS,RENEW_MS"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_leader_acts_for_less_than_its_lease() {
        let timing = Timing::default();
        let asked = Instant::now();
        assert!(timing.acting_until(asked) < asked + timing.ttl);
        assert!(timing.acting_until(asked) > asked + timing.renew);
    }
}
