//! Vixie cron's semantics, checked on fixed instants (no sleeping): weekday numbering, day-of-month OR
//! day-of-week, seconds, macros, and what daylight-saving changes do to fixed-time and interval jobs.

use chrono::{DateTime, Utc};

use super::{Schedule, Zone};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

/// The next `count` fires after `from`, written in the schedule's zone.
fn fires(expression: &str, zone: &str, from: &str, count: usize) -> Vec<String> {
    let zone = Zone::parse(zone).unwrap();
    let schedule = Schedule::parse(expression, zone).unwrap();
    let Zone::Named(tz) = zone else { unreachable!() };
    schedule.upcoming(at(from), count).iter().map(|time| time.with_timezone(&tz).to_rfc3339()).collect()
}

#[test]
fn weekdays_count_from_sunday_as_zero_or_seven() {
    // 2026-11-25 is a Wednesday.
    assert_eq!(fires("0 9 * * 0", "UTC", "2026-11-25T00:00:00Z", 1), ["2026-11-29T09:00:00+00:00"]);
    assert_eq!(fires("0 9 * * 7", "UTC", "2026-11-25T00:00:00Z", 1), ["2026-11-29T09:00:00+00:00"]);
    assert_eq!(fires("0 9 * * 1", "UTC", "2026-11-25T00:00:00Z", 1), ["2026-11-30T09:00:00+00:00"]);
    assert_eq!(fires("0 9 * * MON-FRI", "UTC", "2026-11-27T10:00:00Z", 1), ["2026-11-30T09:00:00+00:00"]);
}

#[test]
fn a_restricted_day_of_month_and_day_of_week_are_ored() {
    // The 1st of the month, or any Friday: Dec 2026 starts on a Tuesday.
    assert_eq!(
        fires("0 0 1 * 5", "UTC", "2026-11-28T00:00:00Z", 3),
        ["2026-12-01T00:00:00+00:00", "2026-12-04T00:00:00+00:00", "2026-12-11T00:00:00+00:00"]
    );
}

#[test]
fn six_fields_start_with_seconds() {
    assert_eq!(
        fires("30 */20 * * * *", "UTC", "2026-01-01T00:00:00Z", 3),
        ["2026-01-01T00:00:30+00:00", "2026-01-01T00:20:30+00:00", "2026-01-01T00:40:30+00:00"]
    );
}

#[test]
fn every_macro_fires_where_cron_says() {
    let from = "2026-11-25T10:20:00Z";
    assert_eq!(fires("@hourly", "UTC", from, 1), ["2026-11-25T11:00:00+00:00"]);
    assert_eq!(fires("@daily", "UTC", from, 1), ["2026-11-26T00:00:00+00:00"]);
    assert_eq!(fires("@midnight", "UTC", from, 1), ["2026-11-26T00:00:00+00:00"]);
    assert_eq!(fires("@weekly", "UTC", from, 1), ["2026-11-29T00:00:00+00:00"]);
    assert_eq!(fires("@monthly", "UTC", from, 1), ["2026-12-01T00:00:00+00:00"]);
    assert_eq!(fires("@yearly", "UTC", from, 1), ["2027-01-01T00:00:00+00:00"]);
    assert_eq!(fires("@annually", "UTC", from, 1), ["2027-01-01T00:00:00+00:00"]);
}

#[test]
fn new_york_spring_forward_runs_a_skipped_time_once_at_the_end_of_the_gap() {
    // 2026-03-08: 02:00 EST becomes 03:00 EDT.
    assert_eq!(
        fires("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", 3),
        ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00", "2026-03-10T02:30:00-04:00"]
    );
    assert_eq!(
        fires("*/15 * * * *", "America/New_York", "2026-03-08T06:40:00Z", 3),
        ["2026-03-08T01:45:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:15:00-04:00"],
        "every 15 minutes of real time"
    );
}

#[test]
fn new_york_fall_back_runs_a_repeated_time_once_and_intervals_on_real_time() {
    // 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:00–02:00 happens twice.
    assert_eq!(
        fires("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 2),
        ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
    );
    assert_eq!(
        fires("30 1 * * *", "America/New_York", "2026-11-01T05:40:00Z", 1),
        ["2026-11-02T01:30:00-05:00"],
        "not again in the repeated hour"
    );
    assert_eq!(
        fires("*/15 * * * *", "America/New_York", "2026-11-01T05:50:00Z", 5),
        [
            "2026-11-01T01:00:00-05:00",
            "2026-11-01T01:15:00-05:00",
            "2026-11-01T01:30:00-05:00",
            "2026-11-01T01:45:00-05:00",
            "2026-11-01T02:00:00-05:00"
        ]
    );
    let both_hours = fires("*/15 * * * *", "America/New_York", "2026-11-01T04:50:00Z", 8);
    assert_eq!(both_hours.len(), 8);
    assert_eq!(both_hours[0], "2026-11-01T01:00:00-04:00");
    assert_eq!(both_hours[4], "2026-11-01T01:00:00-05:00");
}

#[test]
fn berlin_changes_at_two_and_three() {
    // 2026-03-29: 02:00 CET becomes 03:00 CEST. 2026-10-25: 03:00 CEST becomes 02:00 CET.
    assert_eq!(
        fires("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", 2),
        ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
    );
    assert_eq!(
        fires("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
        ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
    );
    assert_eq!(
        fires("*/15 * * * *", "Europe/Berlin", "2026-03-29T00:40:00Z", 2),
        ["2026-03-29T01:45:00+01:00", "2026-03-29T03:00:00+02:00"]
    );
    let repeated = fires("*/15 * * * *", "Europe/Berlin", "2026-10-24T23:50:00Z", 5);
    assert_eq!(repeated[0], "2026-10-25T02:00:00+02:00");
    assert_eq!(repeated[4], "2026-10-25T02:00:00+01:00");
}

#[test]
fn lord_howe_shifts_by_half_an_hour() {
    // 2026-10-04: 02:00 +10:30 becomes 02:30 +11:00. 2026-04-05: 02:00 +11:00 becomes 01:30 +10:30.
    assert_eq!(
        fires("15 2 * * *", "Australia/Lord_Howe", "2026-10-03T00:00:00Z", 2),
        ["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"]
    );
    assert_eq!(
        fires("45 1 * * *", "Australia/Lord_Howe", "2026-04-04T00:00:00Z", 2),
        ["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"]
    );
    let repeated = fires("*/15 * * * *", "Australia/Lord_Howe", "2026-04-04T14:20:00Z", 4);
    assert_eq!(
        repeated,
        [
            "2026-04-05T01:30:00+11:00",
            "2026-04-05T01:45:00+11:00",
            "2026-04-05T01:30:00+10:30",
            "2026-04-05T01:45:00+10:30"
        ]
    );
}
