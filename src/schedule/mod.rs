//! Cron schedules in a time zone, with Vixie cron's semantics (through `croner`).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Local, NaiveDate, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// Where a schedule's wall-clock times are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The machine's own zone, as the operating system reports it.
    Local,
    Named(Tz),
}

impl Zone {
    pub fn parse(name: &str) -> Result<Zone, String> {
        Tz::from_str(name).map(Zone::Named).map_err(|_| {
            format!("unknown time zone `{name}`: expected an IANA zone name such as `America/New_York`, `Europe/Berlin` or `UTC`")
        })
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Local => f.write_str("local"),
            Zone::Named(tz) => f.write_str(tz.name()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Schedule {
    expression: String,
    zone: Zone,
    cron: Cron,
}

impl Schedule {
    /// Accepts 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or a macro
    /// (`@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`, `@annually`, `@midnight`).
    pub fn parse(expression: &str, zone: Zone) -> Result<Schedule, String> {
        let trimmed = expression.trim();
        let fields = trimmed.split_whitespace().count();
        let expected = "expected 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or a macro such as @daily";
        if trimmed.starts_with('@') {
            if !MACROS.contains(&trimmed.to_ascii_lowercase().as_str()) {
                return Err(format!(
                    "bad cron expression `{expression}`: unknown macro; expected one of {}",
                    MACROS.join(", ")
                ));
            }
        } else if !(5..=6).contains(&fields) {
            return Err(format!("bad cron expression `{expression}`: it has {fields} field(s); {expected}"));
        }
        let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
        // croner knows the other macros; `@midnight` is Vixie's name for `@daily`.
        let pattern = if trimmed.eq_ignore_ascii_case("@midnight") { "@daily" } else { trimmed };
        let cron = parser.parse(pattern).map_err(|error| {
            format!("bad cron expression `{expression}`: {}; {expected}", describe_cron_error(&error))
        })?;
        Ok(Schedule { expression: trimmed.to_string(), zone, cron })
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn zone(&self) -> Zone {
        self.zone
    }

    /// An instant as the schedule's zone reads it, in RFC 3339 (how `conveyor next` prints its fires).
    pub fn in_zone(&self, time: DateTime<Utc>) -> String {
        match self.zone {
            Zone::Local => time.with_timezone(&Local).to_rfc3339(),
            Zone::Named(tz) => time.with_timezone(&tz).to_rfc3339(),
        }
    }

    /// The first fire time strictly after `after`; `None` once there is none (croner looks up to the year 5000).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if after >= SEARCH_UNTIL {
            return None;
        }
        // No fire lies before the window, so starting at its edge finds the same one.
        let after = after.max(SEARCH_FROM);
        match self.zone {
            Zone::Local => self.next_in(&Local, after),
            Zone::Named(tz) => self.next_in(&tz, after),
        }
    }

    /// The last fire time strictly before `before`; `None` if there is none (croner looks back to the year 1).
    pub fn previous_before(&self, before: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if before <= SEARCH_FROM {
            return None;
        }
        // No fire lies beyond the window, so starting at its edge finds the same one.
        let before = before.min(SEARCH_UNTIL);
        match self.zone {
            Zone::Local => self
                .cron
                .find_previous_occurrence(&before.with_timezone(&Local), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            Zone::Named(tz) => self
                .cron
                .find_previous_occurrence(&before.with_timezone(&tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }
    }

    /// Fires in `(since, until]`, oldest first: at most the newest `limit`, and how many there were in all
    /// (counted up to `limit + 1`, enough to know some were left out).
    pub fn missed(&self, since: DateTime<Utc>, until: DateTime<Utc>, limit: usize) -> (Vec<DateTime<Utc>>, usize) {
        let mut newest_first = Vec::new();
        // croner works in whole seconds: start a second late and drop what lies after `until`.
        let mut cursor = until.checked_add_signed(TimeDelta::seconds(1)).unwrap_or(DateTime::<Utc>::MAX_UTC);
        while newest_first.len() <= limit {
            match self.previous_before(cursor) {
                Some(fire) if fire > until => cursor = fire,
                Some(fire) if fire > since => {
                    newest_first.push(fire);
                    cursor = fire;
                }
                _ => break,
            }
        }
        let total = newest_first.len();
        newest_first.truncate(limit);
        newest_first.reverse();
        (newest_first, total)
    }

    /// The next `count` fire times after `after`, in order.
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        self.fires_after(after).take(count).collect()
    }

    /// Every fire time after `after`, in order, computed as they are asked for: a caller's count never
    /// decides how much is allocated up front.
    pub fn fires_after(&self, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        std::iter::successors(self.next_after(after), |&fire| self.next_after(fire))
    }

    fn next_in<Z: TimeZone>(&self, zone: &Z, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(zone);
        self.cron.find_next_occurrence(&local, false).ok().map(|next| next.with_timezone(&Utc))
    }
}

/// The instants handed to croner, which finds fires only in the years 1 to 5000. Outside them a zone's wall
/// clock can leave chrono's range, which panics; these edges keep a day's margin for any offset.
const SEARCH_FROM: DateTime<Utc> = utc_midnight(0, 1, 1);
const SEARCH_UNTIL: DateTime<Utc> = utc_midnight(9999, 12, 31);

const fn utc_midnight(year: i32, month: u32, day: u32) -> DateTime<Utc> {
    let date = NaiveDate::from_ymd_opt(year, month, day).expect("a calendar date");
    date.and_hms_opt(0, 0, 0).expect("midnight").and_utc()
}

const MACROS: [&str; 7] = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];

fn describe_cron_error(error: &croner::errors::CronError) -> String {
    use croner::errors::CronError;
    match error {
        CronError::InvalidPattern(message)
        | CronError::IllegalCharacters(message)
        | CronError::ComponentError(message) => message.trim_end_matches('.').to_string(),
        other => other.to_string().trim_end_matches('.').to_string(),
    }
}

#[cfg(test)]
mod cron_semantics;

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn seed_schedule_fires_at_two_in_its_zone() {
        let schedule = Schedule::parse("0 2 * * *", Zone::parse("America/New_York").unwrap()).unwrap();
        let next = schedule.next_after(utc("2026-11-25T12:00:00Z")).unwrap();
        assert_eq!(next, utc("2026-11-26T07:00:00Z"));
    }

    #[test]
    fn six_fields_carry_seconds() {
        let schedule = Schedule::parse("*/10 * * * * *", Zone::Named(Tz::UTC)).unwrap();
        let times = schedule.upcoming(utc("2026-01-01T00:00:00Z"), 2);
        assert_eq!(times, vec![utc("2026-01-01T00:00:10Z"), utc("2026-01-01T00:00:20Z")]);
    }

    #[test]
    fn monday_is_one_and_sunday_is_zero_or_seven() {
        // 2026-11-25 is a Wednesday.
        let from = utc("2026-11-25T12:00:00Z");
        let monday = Schedule::parse("0 2 * * 1", Zone::Named(Tz::UTC)).unwrap();
        assert_eq!(monday.next_after(from).unwrap(), utc("2026-11-30T02:00:00Z"));
        for sunday in ["0 2 * * 0", "0 2 * * 7"] {
            let schedule = Schedule::parse(sunday, Zone::Named(Tz::UTC)).unwrap();
            assert_eq!(schedule.next_after(from).unwrap(), utc("2026-11-29T02:00:00Z"), "{sunday}");
        }
    }

    #[test]
    fn refuses_wrong_field_counts_and_unknown_macros() {
        let zone = Zone::Named(Tz::UTC);
        assert_eq!(
            Schedule::parse("0 2 * *", zone).unwrap_err(),
            "bad cron expression `0 2 * *`: it has 4 field(s); expected 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or a macro such as @daily"
        );
        assert!(Schedule::parse("0 0 2 * * * 2030", zone).unwrap_err().contains("it has 7 field(s)"));
        assert!(
            Schedule::parse("@fortnightly", zone)
                .unwrap_err()
                .starts_with("bad cron expression `@fortnightly`: unknown macro")
        );
        assert!(Schedule::parse("61 2 * * *", zone).unwrap_err().starts_with("bad cron expression `61 2 * * *`: "));
    }

    #[test]
    fn missed_fires_are_the_newest_within_the_gap_oldest_first() {
        let hourly = Schedule::parse("0 * * * *", Zone::Named(Tz::UTC)).unwrap();
        let since = utc("2026-01-01T00:00:00Z");
        assert_eq!(hourly.missed(since, since, 100), (vec![], 0));
        let (one, total) = hourly.missed(since, utc("2026-01-01T01:30:00Z"), 100);
        assert_eq!((one, total), (vec![utc("2026-01-01T01:00:00Z")], 1));
        let (many, total) = hourly.missed(since, utc("2026-01-07T06:00:00Z"), 100);
        assert_eq!((many.len(), total), (100, 101), "150 missed: the newest 100, and a sign there were more");
        assert_eq!(many[0], utc("2026-01-03T03:00:00Z"));
        assert_eq!(many[99], utc("2026-01-07T06:00:00Z"));
    }

    /// A positive, a negative and a far (+14:00) offset, UTC and the machine's own: at the ends of chrono's
    /// range the wall clock of each would overflow.
    fn zones() -> Vec<Zone> {
        let named = ["UTC", "Asia/Tokyo", "America/New_York", "Pacific/Kiritimati"];
        named.into_iter().map(|name| Zone::parse(name).unwrap()).chain([Zone::Local]).collect()
    }

    #[test]
    fn the_ends_of_time_give_no_fire_rather_than_a_panic_in_any_zone() {
        let (min, max) = (DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
        for zone in zones() {
            let daily = Schedule::parse("0 2 * * *", zone).unwrap();
            assert_eq!(daily.next_after(max), None, "{zone}");
            assert_eq!(daily.previous_before(min), None, "{zone}");
            assert!(daily.upcoming(max, usize::MAX).is_empty(), "{zone}");
            assert_eq!(daily.missed(max, max, 10), (vec![], 0), "{zone}");
            assert_eq!(daily.missed(min, min, 10), (vec![], 0), "{zone}");
            let first = daily.next_after(min).unwrap();
            assert_eq!(daily.previous_before(first), None, "{zone}: the first fire croner finds, in the year 1");
            let last = daily.previous_before(max).unwrap();
            assert_eq!(daily.next_after(last), None, "{zone}: the last fire croner finds, in the year 5000");
            assert_eq!(daily.missed(last, max, 10), (vec![], 0), "{zone}");
        }
    }

    #[test]
    fn the_last_fires_before_the_end_of_time_are_missed_fires_like_any_other() {
        let daily = Schedule::parse("0 2 * * *", Zone::Named(Tz::UTC)).unwrap();
        let (two, total) = daily.missed(utc("5000-12-29T00:00:00Z"), DateTime::<Utc>::MAX_UTC, 2);
        assert_eq!((two, total), (vec![utc("5000-12-30T02:00:00Z"), utc("5000-12-31T02:00:00Z")], 3));
        assert_eq!(daily.previous_before(utc("9999-12-31T23:59:59Z")), Some(utc("5000-12-31T02:00:00Z")));
    }

    #[test]
    fn a_huge_count_stops_at_the_last_fire_without_allocating_for_it() {
        let yearly = Schedule::parse("@yearly", Zone::Named(Tz::UTC)).unwrap();
        let fires = yearly.upcoming(utc("4997-06-01T00:00:00Z"), usize::MAX);
        assert_eq!(fires, vec![utc("4998-01-01T00:00:00Z"), utc("4999-01-01T00:00:00Z"), utc("5000-01-01T00:00:00Z")]);
        let every_second = Schedule::parse("* * * * * *", Zone::Named(Tz::UTC)).unwrap();
        let from = utc("2026-01-01T00:00:00Z");
        assert_eq!(every_second.fires_after(from).take(2).collect::<Vec<_>>(), every_second.upcoming(from, 2));
    }

    #[test]
    fn unknown_zone_is_named_in_the_error() {
        assert_eq!(
            Zone::parse("Mars/Olympus").unwrap_err(),
            "unknown time zone `Mars/Olympus`: expected an IANA zone name such as `America/New_York`, `Europe/Berlin` or `UTC`"
        );
    }
}
