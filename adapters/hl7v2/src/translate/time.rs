//! HL7 timestamps (DTM/TS): `YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ]`.

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};

/// The instant an HL7 timestamp names, at least to the day; a timestamp without an offset is
/// read at `default_offset`. `Err` says what was expected.
pub fn parse_timestamp(text: &str, default_offset: FixedOffset) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    let (local, offset) = match text.find(['+', '-']) {
        Some(at) => (&text[..at], Some(parse_offset(&text[at..])?)),
        None => (text, None),
    };
    let (digits, fraction) = match local.split_once('.') {
        Some((digits, fraction)) => (digits, Some(fraction)),
        None => (local, None),
    };
    const EXPECTED: &str = "expected a timestamp YYYYMMDD[HHMM[SS]][+ZZZZ]";
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(digits.len(), 8 | 10 | 12 | 14) {
        return Err(EXPECTED.to_owned());
    }
    // Every byte is a digit (checked above), so each part parses.
    let number =
        |range: std::ops::Range<usize>| digits.get(range).map_or(0, |p| p.parse::<u32>().unwrap_or(0));
    let nanos = match fraction {
        Some(f) if !f.is_empty() && f.len() <= 4 && f.bytes().all(|b| b.is_ascii_digit()) => {
            f.parse::<u32>().unwrap_or(0) * 10u32.pow(9 - f.len() as u32)
        }
        Some(_) => return Err(format!("{EXPECTED}: the fraction of a second is 1 to 4 digits")),
        None => 0,
    };
    let naive = NaiveDate::from_ymd_opt(number(0..4) as i32, number(4..6), number(6..8))
        .and_then(|d| d.and_hms_nano_opt(number(8..10), number(10..12), number(12..14), nanos))
        .ok_or_else(|| format!("{EXPECTED}: not a real date and time"))?;
    let offset = offset.unwrap_or(default_offset);
    offset
        .from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| EXPECTED.to_owned())
}

fn parse_offset(text: &str) -> Result<FixedOffset, String> {
    let sign = if text.starts_with('-') { -1 } else { 1 };
    let digits = &text[1..];
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a time zone offset +HHMM or -HHMM".to_owned());
    }
    let hours: i32 = digits[..2].parse().unwrap_or(99);
    let minutes: i32 = digits[2..].parse().unwrap_or(99);
    if hours > 14 || minutes > 59 {
        return Err("expected a time zone offset +HHMM or -HHMM".to_owned());
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
        .ok_or_else(|| "expected a time zone offset +HHMM or -HHMM".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn china() -> FixedOffset {
        FixedOffset::east_opt(8 * 3600).unwrap()
    }

    #[test]
    fn timestamps_with_and_without_an_offset_name_the_right_instant() {
        let t = parse_timestamp("20261204101500", china()).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-04T02:15:00+00:00");
        let t = parse_timestamp("202612041015+0000", china()).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-04T10:15:00+00:00");
        let t = parse_timestamp("20261204", china()).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-03T16:00:00+00:00");
        let t = parse_timestamp("20261204101500.25-0500", china()).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-04T15:15:00.250+00:00");
    }

    #[test]
    fn partial_or_impossible_timestamps_are_refused() {
        for bad in [
            "2026",
            "202612",
            "20261340",
            "20260230",
            "2026120425",
            "abc",
            "20261204+99",
            "20261204+0",
        ] {
            assert!(parse_timestamp(bad, china()).is_err(), "{bad}");
        }
    }
}
