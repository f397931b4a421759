//! Which instants a backfill covers, and which of them already have a run.

use chrono::{DateTime, Local, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};

use crate::definition::{Trigger, Workflow};
use crate::schedule::{Schedule, Zone};
use crate::store::Store;

/// A range holding more instants than this is refused unless the operator raises the cap (`--max`): a typo
/// in a year should not start ten thousand runs.
pub const DEFAULT_MAX_INSTANTS: usize = 1000;

/// Which end of the range a time given as a date stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// The date's first moment.
    From,
    /// The date's last second: `--to 2026-03-10` includes that day's fires.
    To,
}

/// One instant of the range, as `conveyor next` prints it (in the schedule's zone), and the run it has.
#[derive(Debug, Clone, PartialEq)]
pub struct Instant {
    pub at: DateTime<Utc>,
    pub shown: String,
    pub existing: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub workflow: String,
    pub instants: Vec<Instant>,
    /// How many runs of the workflow may be active at once while backfilling: `--parallel`, at most the
    /// workflow's `max_active_runs`.
    pub limit: usize,
    pub rerun: bool,
}

impl Plan {
    /// The instants of `workflow`'s schedule in `[from, to]`, each with the run it already has (read from
    /// `store`, when there is one).
    pub fn new(
        workflow: &Workflow,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        max: usize,
        parallel: usize,
        rerun: bool,
        store: Option<&Store>,
    ) -> Result<Plan, String> {
        let schedule = schedule_of(workflow)?;
        if from > to {
            return Err(format!(
                "--from ({}) is after --to ({}): give the earlier time first",
                shown(schedule, from),
                shown(schedule, to)
            ));
        }
        if parallel == 0 {
            return Err("--parallel must be at least 1".into());
        }
        let found = instants(schedule, from, to, max);
        if found.len() > max {
            return Err(format!(
                "{} has more than {max} instants from {} to {} (the first {}, the last counted {}): narrow the range, or raise the cap with --max N",
                workflow.id,
                shown(schedule, from),
                shown(schedule, to),
                shown(schedule, found[0]),
                shown(schedule, found[max])
            ));
        }
        let existing = match store {
            Some(store) => {
                store.runs_by_instant(&workflow.id).map_err(|error| format!("cannot read the runs: {error}"))?
            }
            None => Default::default(),
        };
        let instants = found
            .into_iter()
            .map(|at| Instant { at, shown: shown(schedule, at), existing: existing.get(&at).cloned() })
            .collect();
        let limit = parallel.min(workflow.max_active_runs as usize);
        Ok(Plan { workflow: workflow.id.clone(), instants, limit, rerun })
    }

    /// The instants a run is started for: every one with `--rerun`, else those without a run.
    pub fn to_start(&self) -> impl Iterator<Item = &Instant> {
        self.instants.iter().filter(|instant| self.rerun || instant.existing.is_none())
    }
}

pub fn schedule_of(workflow: &Workflow) -> Result<&Schedule, String> {
    match &workflow.trigger {
        Trigger::Schedule(schedule) => Ok(schedule),
        other => Err(format!(
            "workflow `{}` has a {} trigger: only a scheduled workflow has instants to backfill",
            workflow.id,
            other.kind()
        )),
    }
}

/// Up to `max + 1` instants in `[from, to]`, oldest first: one more than allowed is enough to refuse.
fn instants(schedule: &Schedule, from: DateTime<Utc>, to: DateTime<Utc>, max: usize) -> Vec<DateTime<Utc>> {
    // Fires fall on whole seconds; starting a second early lets an instant at `from` itself count.
    let before = from.checked_sub_signed(TimeDelta::seconds(1)).unwrap_or(from);
    schedule
        .fires_after(before)
        .skip_while(|at| *at < from)
        .take_while(|at| *at <= to)
        .take(max.saturating_add(1))
        .collect()
}

/// As `conveyor next` prints an instant: RFC 3339 in the schedule's zone.
fn shown(schedule: &Schedule, at: DateTime<Utc>) -> String {
    schedule.in_zone(at)
}

/// A time from a command line: RFC 3339 (`2026-03-08T02:00:00-05:00`, `…Z`), or a date (`2026-03-08`) read in
/// the schedule's zone, standing for its first moment (`Edge::From`) or its last second (`Edge::To`).
pub fn parse_time(text: &str, zone: Zone, edge: Edge, flag: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let expected =
        "expected RFC 3339 (2026-03-08T02:00:00-05:00, or …Z for UTC) or a date (2026-03-08, in the schedule's zone)";
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| format!("bad {flag} `{text}`: {expected}"))?;
    let day = match edge {
        Edge::From => date,
        Edge::To => date.succ_opt().ok_or_else(|| format!("bad {flag} `{text}`: the date is out of range"))?,
    };
    let start = match zone {
        Zone::Local => start_of_day(&Local, day),
        Zone::Named(tz) => start_of_day(&tz, day),
    }
    .ok_or_else(|| format!("bad {flag} `{text}`: the date is out of range"))?;
    Ok(match edge {
        Edge::From => start,
        Edge::To => start - TimeDelta::seconds(1),
    })
}

/// A day's first moment in a zone: midnight, or the first time after a gap where midnight does not exist.
fn start_of_day<Z: TimeZone>(zone: &Z, day: NaiveDate) -> Option<DateTime<Utc>> {
    let mut local = day.and_time(NaiveTime::MIN);
    // Gaps are at most a few hours; a quarter-hour step finds the first time after one.
    for _ in 0..(4 * 24) {
        if let Some(time) = zone.from_local_datetime(&local).earliest() {
            return Some(time.with_timezone(&Utc));
        }
        local += TimeDelta::minutes(15);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_york() -> Zone {
        Zone::parse("America/New_York").unwrap()
    }

    #[test]
    fn a_date_is_the_whole_day_in_the_schedule_zone() {
        let from = parse_time("2026-03-08", new_york(), Edge::From, "--from").unwrap();
        assert_eq!(from.to_rfc3339(), "2026-03-08T05:00:00+00:00");
        // The day the clocks go forward is 23 hours long: its last second is 03:59:59 UTC the next day.
        let to = parse_time("2026-03-08", new_york(), Edge::To, "--to").unwrap();
        assert_eq!(to.to_rfc3339(), "2026-03-09T03:59:59+00:00");
        let exact = parse_time("2026-03-08T02:30:00Z", new_york(), Edge::To, "--to").unwrap();
        assert_eq!(exact.to_rfc3339(), "2026-03-08T02:30:00+00:00");
    }

    #[test]
    fn a_bad_time_says_what_was_expected() {
        let error = parse_time("yesterday", new_york(), Edge::From, "--from").unwrap_err();
        assert!(error.starts_with("bad --from `yesterday`: expected RFC 3339"), "{error}");
        assert!(parse_time("2026-02-30", new_york(), Edge::From, "--from").is_err());
    }

    #[test]
    fn a_midnight_lost_to_daylight_saving_starts_the_day_after_the_gap() {
        // Santiago moved its clocks from 00:00 to 01:00 on 2026-09-06.
        let zone = Zone::parse("America/Santiago").unwrap();
        let from = parse_time("2026-09-06", zone, Edge::From, "--from").unwrap();
        assert_eq!(from.to_rfc3339(), "2026-09-06T04:00:00+00:00");
    }

    #[test]
    fn the_range_includes_both_ends_and_stops_one_past_the_cap() {
        let schedule = Schedule::parse("0 2 * * *", new_york()).unwrap();
        let from = DateTime::parse_from_rfc3339("2026-03-07T02:00:00-05:00").unwrap().with_timezone(&Utc);
        let to = DateTime::parse_from_rfc3339("2026-03-09T02:00:00-04:00").unwrap().with_timezone(&Utc);
        let found: Vec<String> = instants(&schedule, from, to, 10).into_iter().map(|at| shown(&schedule, at)).collect();
        // 02:00 does not exist on the 8th: the fire is at the first instant after the gap, 03:00 EDT.
        assert_eq!(found, ["2026-03-07T02:00:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00"]);
        assert_eq!(instants(&schedule, from, to, 1).len(), 2);
    }
}
