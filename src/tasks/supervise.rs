//! The one place an attempt's timeout and an operator's cancel become a single stop signal: the deadline is
//! kept on the injected clock (a test moves it by hand), whatever the executor's kind, and the endings and
//! log lines for both reasons are written here so that every kind says the same thing.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Attempt, Cancel, Ending, Execution, Executor, LogSink};
use crate::clock::{SharedClock, Sleep};

/// Why an attempt is to stop before it ended by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The attempt's timeout (this long) has passed on the engine's clock.
    TimedOut(Duration),
    /// An operator cancelled it, or the engine is shutting down.
    Cancelled,
}

/// What the attempt was waiting on when its time ran out: it names the failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// A process of its own, which ran too long.
    Process,
    /// A server's answer, which did not come.
    Answer,
}

impl StopReason {
    /// Says in the attempt's log what stopped it and what the executor does about it, in the same words for
    /// every kind: "timed out after 5s: stopping its process group", "cancelled: the request is abandoned".
    pub fn announce(&self, log: &LogSink, then: &str) {
        let what = match self {
            StopReason::TimedOut(timeout) => format!("timed out after {}", humantime::format_duration(*timeout)),
            StopReason::Cancelled => "cancelled".to_string(),
        };
        log.engine_line(&format!("{what}: {then}"));
    }

    /// How the attempt ends: a timeout is a failure (its retries apply), a cancel is not.
    pub fn ending(&self, waited: Waited) -> Ending {
        match self {
            StopReason::TimedOut(timeout) => Ending::failed(timed_out(*timeout, waited)),
            StopReason::Cancelled => Ending::Cancelled,
        }
    }
}

/// The error of an attempt whose time ran out. An answer that never came keeps its own words ("no answer
/// within 5s") whether the engine's clock or the request's transport timeout noticed first.
pub fn timed_out(timeout: Duration, waited: Waited) -> String {
    let timeout = humantime::format_duration(timeout);
    match waited {
        Waited::Process => format!("timed out after {timeout}"),
        Waited::Answer => format!("no answer within {timeout}"),
    }
}

/// The attempt's stop signal: its timeout on the engine's clock, merged with the operator's cancel.
pub struct Stop {
    cancel: Cancel,
    timeout: Option<Duration>,
    clock: SharedClock,
    /// Set once the deadline runs (see `start`). Behind a mutex only so that an `Attempt` stays `Sync` (an
    /// executor may hold `&Attempt` across an await); it is reached through `&mut self`, never locked.
    timer: Option<Mutex<Sleep>>,
    /// Kept once heard, so asking again answers at once (a finished timer must not be polled again).
    heard: Option<StopReason>,
}

impl Stop {
    /// A stop signal whose deadline does not run yet: an attempt waiting for a place under its concurrency
    /// bounds is not using its time.
    pub fn new(cancel: Cancel, timeout: Option<Duration>, clock: SharedClock) -> Stop {
        Stop { cancel, timeout, clock, timer: None, heard: None }
    }

    /// The operator's cancel alone, for what waits before the attempt runs.
    pub fn cancel(&self) -> Cancel {
        self.cancel.clone()
    }

    /// The attempt's timeout, if it has one.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Hands the deadline to whoever keeps it instead (the engine that runs an offered attempt, from when
    /// its process starts): from now on only a cancel stops this one. Returns the timeout handed over.
    pub fn hand_over_timeout(&mut self) -> Option<Duration> {
        self.timer = None;
        self.timeout.take()
    }

    fn deadline_from(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.timeout.map(|timeout| crate::clock::later(now, timeout))
    }

    /// Starts the deadline now (a second call changes nothing).
    pub fn start(&mut self) {
        if self.timer.is_none()
            && let Some(deadline) = self.deadline_from(self.clock.now())
        {
            self.timer = Some(Mutex::new(self.clock.sleep_until(deadline)));
        }
    }

    /// Whether the attempt was cancelled, without waiting.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves once the attempt is to stop, and says why; a cancel wins over a timeout that falls at the
    /// same moment. Cancel-safe: a `select!` may drop it and ask again. Starts the deadline if no one did.
    pub async fn requested(&mut self) -> StopReason {
        if let Some(reason) = self.heard {
            return reason;
        }
        self.start();
        let timer = self.timer.as_mut().map(|timer| timer.get_mut().unwrap_or_else(PoisonError::into_inner));
        let reason = match (timer, self.timeout) {
            (Some(timer), Some(timeout)) => tokio::select! {
                biased;
                _ = self.cancel.cancelled() => StopReason::Cancelled,
                _ = timer => StopReason::TimedOut(timeout),
            },
            _ => {
                self.cancel.cancelled().await;
                StopReason::Cancelled
            }
        };
        self.heard = Some(reason);
        reason
    }
}

/// Runs an attempt on its executor with the deadline started now: the executor's default timeout stands in
/// when the attempt has none, so a request that the transport would give up on is also given up on the clock.
pub fn execute(executor: &dyn Executor, mut attempt: Attempt) -> Execution {
    if attempt.stop.timeout.is_none() {
        attempt.stop.timeout = executor.default_timeout();
    }
    attempt.stop.start();
    executor.execute(attempt)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;

    fn signal(timeout: Option<Duration>) -> (super::super::CancelHandle, Stop, ManualClock) {
        let clock = ManualClock::new(Utc::now());
        let (handle, cancel) = super::super::cancel_pair();
        (handle, Stop::new(cancel, timeout, Arc::new(clock.clone())), clock)
    }

    #[tokio::test]
    async fn the_deadline_falls_when_the_clock_is_moved_past_it_and_not_before() {
        let (_handle, mut stop, clock) = signal(Some(Duration::from_secs(5)));
        stop.start();
        clock.advance(Duration::from_secs(4));
        assert!(tokio::time::timeout(Duration::from_millis(50), stop.requested()).await.is_err());
        clock.advance(Duration::from_secs(1));
        assert_eq!(stop.requested().await, StopReason::TimedOut(Duration::from_secs(5)));
        assert_eq!(stop.requested().await, StopReason::TimedOut(Duration::from_secs(5)), "asked again, same answer");
    }

    #[tokio::test]
    async fn the_deadline_counts_from_the_start_not_from_when_the_signal_was_made() {
        let (_handle, mut stop, clock) = signal(Some(Duration::from_secs(5)));
        clock.advance(Duration::from_secs(60));
        stop.start();
        assert!(tokio::time::timeout(Duration::from_millis(50), stop.requested()).await.is_err());
    }

    #[tokio::test]
    async fn a_cancel_stops_at_once_and_wins_over_a_deadline_passed_at_the_same_time() {
        let (handle, mut stop, clock) = signal(Some(Duration::from_secs(5)));
        stop.start();
        clock.advance(Duration::from_secs(10));
        handle.cancel();
        assert_eq!(stop.requested().await, StopReason::Cancelled);
        let (handle, mut stop, _clock) = signal(None);
        handle.cancel();
        assert_eq!(stop.requested().await, StopReason::Cancelled);
    }

    #[test]
    fn endings_name_the_reason_the_same_way_for_every_kind() {
        let timed_out = StopReason::TimedOut(Duration::from_millis(700));
        assert_eq!(timed_out.ending(Waited::Process), Ending::failed("timed out after 700ms"));
        assert_eq!(timed_out.ending(Waited::Answer), Ending::failed("no answer within 700ms"));
        assert_eq!(StopReason::Cancelled.ending(Waited::Answer), Ending::Cancelled);
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = lines.clone();
        let log = LogSink::detached(Arc::new(move |_, text: &str, _| seen.lock().unwrap().push(text.to_string())));
        timed_out.announce(&log, "the request is abandoned");
        StopReason::Cancelled.announce(&log, "stopping its process group");
        assert_eq!(
            *lines.lock().unwrap(),
            vec![
                "[conveyor] timed out after 700ms: the request is abandoned",
                "[conveyor] cancelled: stopping its process group"
            ]
        );
    }
}
