//! Time as the exchange stores it: UTC instants as microseconds since the Unix epoch, which both
//! SQLite and PostgreSQL hold in a 64-bit integer, and "today" as the calendar date in China.

use chrono::{DateTime, NaiveDate, Utc};

/// Now, truncated to whole microseconds so that a stored and re-read instant compares equal.
pub fn now() -> DateTime<Utc> {
    from_micros(Utc::now().timestamp_micros())
}

pub fn to_micros(instant: DateTime<Utc>) -> i64 {
    instant.timestamp_micros()
}

pub fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// Noon of a calendar date in China, as a UTC instant: where a record keeps a date and not a
/// time, it is ordered with timed records as if it happened at midday.
pub fn noon_in_china(date: NaiveDate) -> DateTime<Utc> {
    // 04:00 UTC is noon at UTC+8.
    date.and_hms_opt(4, 0, 0).unwrap_or_default().and_utc()
}

/// The calendar date in China of an instant.
pub fn date_in_china(instant: DateTime<Utc>) -> NaiveDate {
    (instant + chrono::Duration::hours(8)).date_naive()
}

/// Today's date in China Standard Time (UTC+8, no daylight saving): a birth registered in the
/// morning in Kaili is "today" there while it is still yesterday in UTC.
pub fn today_in_china() -> NaiveDate {
    date_in_china(Utc::now())
}
