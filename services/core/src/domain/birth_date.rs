use chrono::{Datelike, NaiveDate};

use crate::error::FieldError;

/// A birth date: a real calendar date, not in the future and not before 1880.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BirthDate(NaiveDate);

impl BirthDate {
    /// Parses `YYYY-MM-DD`, judged against today's date in China.
    pub fn parse(text: &str) -> Result<BirthDate, FieldError> {
        Self::parse_on(text, crate::time::today_in_china())
    }

    /// Parses `YYYY-MM-DD`, judged against `today`.
    pub fn parse_on(text: &str, today: NaiveDate) -> Result<BirthDate, FieldError> {
        let text = text.trim();
        let well_formed = text.len() == 10
            && text.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        if !well_formed {
            return Err(FieldError(format!(
                "'{}' is not a date, expected YYYY-MM-DD",
                text.chars().take(16).collect::<String>()
            )));
        }
        let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|_| FieldError(format!("{text} is not a real calendar date")))?;
        Self::from_date(date, today)
    }

    /// Checks a date that is already a calendar date (for example from a resident identity number).
    pub fn from_date(date: NaiveDate, today: NaiveDate) -> Result<BirthDate, FieldError> {
        if date > today {
            return Err(FieldError(format!("{date} is in the future")));
        }
        if date.year() < 1880 {
            return Err(FieldError(format!("{date} is before 1880")));
        }
        Ok(BirthDate(date))
    }

    pub fn date(self) -> NaiveDate {
        self.0
    }

    /// `YYYY-MM-DD`, which also sorts as text in date order.
    pub fn to_iso(self) -> String {
        self.0.format("%Y-%m-%d").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 28).unwrap()
    }

    #[test]
    fn a_real_past_date_parses() {
        assert_eq!(
            BirthDate::parse_on("1985-02-28", today()).unwrap().to_iso(),
            "1985-02-28"
        );
        assert!(BirthDate::parse_on("2026-11-28", today()).is_ok());
    }

    #[test]
    fn the_31st_of_february_and_future_dates_are_refused() {
        assert!(BirthDate::parse_on("1985-02-31", today()).is_err());
        assert!(BirthDate::parse_on("2026-11-29", today()).is_err());
        assert!(BirthDate::parse_on("1870-01-01", today()).is_err());
    }

    #[test]
    fn other_date_formats_are_refused() {
        for text in ["19850228", "1985/02/28", "85-02-28", "1985-2-28", ""] {
            assert!(BirthDate::parse_on(text, today()).is_err(), "{text}");
        }
    }
}
