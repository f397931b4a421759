//! How a console attached to a shared store keeps up with it: one full read, then every half second only the
//! runs, tasks and attempts stamped since (`Records::changes_since`); a store that stamps nothing (SQLite) is
//! read whole every time, as before.
//!
//! A stamp is taken when a row is written and becomes visible when its transaction commits, so stamps do not
//! become visible in order: a transaction that took stamp 10 may commit after one that took 11 was read, and
//! a reader that only asked for stamps above 11 would never see 10. Each read therefore starts from where the
//! reads of `LOOKBACK` ago ended, not the last one: rows of the last few seconds are read again (applying a
//! row twice changes nothing). That covers any transaction that commits within `LOOKBACK` of taking its stamp,
//! which an engine's batch does by far (no transaction stays open while a task runs). `pg_snapshot_xmin` could
//! tell exactly which stamps are settled, but any open transaction on the whole server holds it back (a
//! `psql` session left in `BEGIN` would freeze every console), so the window is by time; and a full read every
//! `RESYNC` is the backstop for what it cannot cover, and drops runs that retention removed (deletes leave no
//! stamp; the console keeps at most 2,000 runs and lets the oldest fall off).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Snapshot;
use crate::store::Store;

/// How far behind the last read each read starts again.
const LOOKBACK: Duration = Duration::from_secs(3);
/// How often the whole is read again all the same.
const RESYNC: Duration = Duration::from_secs(60);
/// Rows of each kind per query; a read takes several when a burst is larger.
const BATCH: usize = 1000;
/// Queries per read at most: a burst larger still is taken over the next reads.
const QUERIES: usize = 10;

/// What one refresh read.
pub enum Read {
    /// Everything, as the console's first read: replaces the model's lists.
    Whole(Snapshot),
    /// What changed: upserts (`Model::apply_changes`); alerts, pauses and engines whole.
    Changes(Snapshot),
}

/// Where the reads stand.
#[derive(Default)]
pub struct Feed {
    /// `None` until the store said whether it stamps changes.
    follow: Option<Option<Marks>>,
}

impl Feed {
    /// One refresh, on a blocking thread. A store that cannot be asked now is read whole, and asked again
    /// next time.
    pub fn read(&mut self, store: &Store, now: Instant) -> Read {
        if self.follow.is_none() {
            match store.change_mark() {
                Ok(Some(mark)) => self.follow = Some(Some(Marks::new(mark, now))),
                Ok(None) => self.follow = Some(None),
                Err(error) => tracing::debug!("whether the store stamps changes is not known yet: {error}"),
            }
            return Read::Whole(super::read_snapshot(store, false));
        }
        let Some(Some(marks)) = &mut self.follow else { return Read::Whole(super::read_snapshot(store, false)) };
        if marks.resync_due(now) {
            // The mark before the read: what is written while it reads comes again as changes.
            match store.change_mark() {
                Ok(Some(mark)) => *marks = Marks::new(mark, now),
                _ => marks.resync_at = now + LOOKBACK,
            }
            return Read::Whole(super::read_snapshot(store, false));
        }
        let mut after = marks.from(now);
        let mut read = Snapshot::default();
        for _ in 0..QUERIES {
            let changes = match store.changes_since(after, BATCH) {
                Ok(Some(changes)) => changes,
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!("changes not read this time: {error}");
                    break;
                }
            };
            let full = [changes.runs.len(), changes.tasks.len(), changes.attempts.len()].contains(&BATCH);
            read.runs.extend(changes.runs);
            read.tasks.extend(changes.tasks);
            read.attempts.extend(changes.attempts);
            after = changes.through;
            if !full {
                break;
            }
        }
        marks.reached(after, now);
        read.alerts = store.alerts(super::model::ALERTS_SHOWN).unwrap_or_default();
        read.paused = store.paused_workflows().unwrap_or_default();
        read.engines = store.engines().unwrap_or_default();
        Read::Changes(read)
    }
}

/// Where past reads ended, and when: the next read starts from the last end at least `LOOKBACK` old.
struct Marks {
    ends: VecDeque<(Instant, i64)>,
    resync_at: Instant,
}

impl Marks {
    fn new(mark: i64, now: Instant) -> Marks {
        Marks { ends: VecDeque::from([(now, mark)]), resync_at: now + RESYNC }
    }

    fn resync_due(&self, now: Instant) -> bool {
        now >= self.resync_at
    }

    /// The stamp to read after: the newest end reached `LOOKBACK` ago or earlier (the first one while none
    /// is that old). Older ends are no longer needed.
    fn from(&mut self, now: Instant) -> i64 {
        let settled = |at: &Instant| now.saturating_duration_since(*at) >= LOOKBACK;
        while self.ends.len() > 1 && settled(&self.ends[1].0) {
            self.ends.pop_front();
        }
        self.ends[0].1
    }

    fn reached(&mut self, through: i64, now: Instant) {
        // A read that started behind the last end may end before it: ends only move forward.
        let last = self.ends.back().map_or(through, |(_, end)| *end);
        self.ends.push_back((now, through.max(last)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_start_again_from_where_they_stood_a_lookback_ago_and_move_only_forward() {
        let start = Instant::now();
        let after = |seconds: f64| start + Duration::from_secs_f64(seconds);
        let mut marks = Marks::new(10, start);
        assert_eq!(marks.from(after(0.5)), 10);
        marks.reached(20, after(0.5));
        marks.reached(30, after(1.0));
        // Within the lookback of both reads: from the mark taken with the full read.
        assert_eq!(marks.from(after(2.0)), 10);
        assert_eq!(marks.from(after(3.6)), 20, "the read of 0.5 s is 3.1 s old");
        marks.reached(25, after(3.6));
        assert_eq!(marks.from(after(4.1)), 30, "the read of 1.0 s is 3.1 s old");
        assert_eq!(marks.from(after(6.7)), 30, "a read that ended lower did not move the end back");
        assert!(!marks.resync_due(after(59.0)) && marks.resync_due(after(60.0)));
    }
}
