use chrono::NaiveDate;

use super::{BirthDate, DivisionCode, Sex, division::check_province};
use crate::error::FieldError;

/// The 18-character resident identity number of GB 11643 (居民身份证号码): a 6-digit division
/// code where the number was issued, the birth date as YYYYMMDD, a 3-digit sequence number whose
/// last digit is odd for men and even for women, and an ISO 7064 MOD 11-2 check character
/// (0–9 or X).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ResidentId(String);

/// The weights of ISO 7064 MOD 11-2 for the 17 leading digits.
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// The check character for each remainder of the weighted sum modulo 11.
const CHECK_CHARACTERS: &[u8; 11] = b"10X98765432";

impl ResidentId {
    /// Parses a number, judging its birth date against today's date in China.
    pub fn parse(text: &str) -> Result<ResidentId, FieldError> {
        Self::parse_on(text, crate::time::today_in_china())
    }

    /// Parses a number, judging its birth date against `today`.
    pub fn parse_on(text: &str, today: NaiveDate) -> Result<ResidentId, FieldError> {
        let id = text.trim().to_ascii_uppercase();
        let bytes = id.as_bytes();
        if bytes.len() != 18 {
            return Err(FieldError(format!(
                "has {} characters, expected 18",
                id.chars().count()
            )));
        }
        if !bytes[..17].iter().all(u8::is_ascii_digit) {
            return Err(FieldError::new("the first 17 characters must be digits"));
        }
        if !(bytes[17].is_ascii_digit() || bytes[17] == b'X') {
            return Err(FieldError::new("the last character must be a digit or X"));
        }
        let expected = Self::check_character(&bytes[..17]);
        if bytes[17] != expected {
            return Err(FieldError(format!(
                "check character is {}, expected {}",
                bytes[17] as char, expected as char
            )));
        }
        check_province(&id[..2]).or_else(|_| {
            // 83 is the prefix of residence permits for residents from Taiwan (GB 11643 usage).
            if &id[..2] == "83" {
                Ok(())
            } else {
                Err(FieldError(format!(
                    "division prefix {} is not a province of GB/T 2260",
                    &id[..2]
                )))
            }
        })?;
        let birth = NaiveDate::parse_from_str(&id[6..14], "%Y%m%d").map_err(|_| {
            FieldError(format!(
                "embedded birth date {} is not a real calendar date",
                &id[6..14]
            ))
        })?;
        BirthDate::from_date(birth, today).map_err(|e| FieldError(format!("embedded birth date {}", e.0)))?;
        Ok(ResidentId(id))
    }

    /// Wraps a number that an earlier `parse` accepted.
    pub(crate) fn from_checked(id: String) -> ResidentId {
        ResidentId(id)
    }

    /// The ISO 7064 MOD 11-2 check character of 17 digits.
    pub fn check_character(first_17_digits: &[u8]) -> u8 {
        let sum: u32 = first_17_digits
            .iter()
            .zip(WEIGHTS)
            .map(|(d, w)| u32::from(d - b'0') * w)
            .sum();
        CHECK_CHARACTERS[(sum % 11) as usize]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The birth date embedded in the number.
    pub fn birth_date(&self) -> NaiveDate {
        NaiveDate::parse_from_str(&self.0[6..14], "%Y%m%d").unwrap_or_default()
    }

    /// The sex the sequence number encodes: odd for male, even for female.
    pub fn sex(&self) -> Sex {
        if (self.0.as_bytes()[16] - b'0') % 2 == 1 {
            Sex::Male
        } else {
            Sex::Female
        }
    }

    /// The division code where the number was first issued, if it is a valid division code.
    pub fn issuing_division(&self) -> Option<DivisionCode> {
        DivisionCode::parse(&self.0[..6]).ok()
    }

    /// Checks the number against separately stated demographics: the birth date must agree, and
    /// the sex must agree when it is stated as male or female.
    pub fn check_agrees_with(
        &self,
        birth_date: Option<BirthDate>,
        sex: Option<Sex>,
    ) -> Result<(), FieldError> {
        if let Some(stated) = birth_date
            && stated.date() != self.birth_date()
        {
            return Err(FieldError(format!(
                "embeds the birth date {}, but the stated birth date is {}",
                self.birth_date(),
                stated.date()
            )));
        }
        if let Some(stated) = sex.filter(|s| s.is_known())
            && stated != self.sex()
        {
            return Err(FieldError(format!(
                "its sex digit says {}, but the stated sex is {}",
                sex_word(self.sex()),
                sex_word(stated)
            )));
        }
        Ok(())
    }
}

fn sex_word(sex: Sex) -> &'static str {
    match sex {
        Sex::Male => "male",
        Sex::Female => "female",
        Sex::Unknown | Sex::NotStated => "unknown",
    }
}

/// Never prints the number itself: identity numbers must not reach logs.
impl std::fmt::Debug for ResidentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ResidentId(…{})", &self.0[14..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 28).unwrap()
    }

    /// Appends the check character to 17 digits.
    fn with_check(first_17: &str) -> String {
        format!(
            "{first_17}{}",
            ResidentId::check_character(first_17.as_bytes()) as char
        )
    }

    #[test]
    fn a_well_known_valid_number_parses() {
        // The specimen number of GB 11643's own example.
        let id = ResidentId::parse_on("11010519491231002X", today()).unwrap();
        assert_eq!(id.birth_date(), NaiveDate::from_ymd_opt(1949, 12, 31).unwrap());
        assert_eq!(id.sex(), Sex::Female);
    }

    #[test]
    fn a_lower_case_x_is_read_as_upper_case() {
        assert_eq!(
            ResidentId::parse_on("11010519491231002x", today())
                .unwrap()
                .as_str(),
            "11010519491231002X"
        );
    }

    #[test]
    fn a_resident_id_with_a_wrong_check_character_is_rejected() {
        let error = ResidentId::parse_on("110105194912310021", today()).unwrap_err();
        assert_eq!(error.0, "check character is 1, expected X");
    }

    #[test]
    fn a_number_whose_check_character_is_x_parses_only_with_x() {
        let id = with_check("52260119850314121");
        assert!(ResidentId::parse_on(&id, today()).is_ok());
    }

    #[test]
    fn a_birth_date_in_the_future_or_on_the_31st_of_february_is_rejected() {
        let future = with_check("52260120300101123");
        assert!(
            ResidentId::parse_on(&future, today())
                .unwrap_err()
                .0
                .contains("in the future")
        );
        let impossible = with_check("52260119850231123");
        assert!(
            ResidentId::parse_on(&impossible, today())
                .unwrap_err()
                .0
                .contains("not a real calendar date")
        );
    }

    #[test]
    fn an_unknown_province_prefix_is_rejected() {
        let id = with_check("99260119850314123");
        assert!(
            ResidentId::parse_on(&id, today())
                .unwrap_err()
                .0
                .contains("province")
        );
    }

    #[test]
    fn wrong_lengths_and_letters_are_rejected() {
        for text in [
            "",
            "5226011985031412",
            "5226011985031412345",
            "5226011985O314123X",
        ] {
            assert!(ResidentId::parse_on(text, today()).is_err(), "{text}");
        }
    }

    #[test]
    fn the_sex_digit_must_agree_with_the_stated_sex() {
        let male = ResidentId::parse_on(&with_check("52260119850314123"), today()).unwrap();
        assert_eq!(male.sex(), Sex::Male);
        assert!(male.check_agrees_with(None, Some(Sex::Male)).is_ok());
        assert!(male.check_agrees_with(None, Some(Sex::NotStated)).is_ok());
        let error = male.check_agrees_with(None, Some(Sex::Female)).unwrap_err();
        assert_eq!(error.0, "its sex digit says male, but the stated sex is female");
    }

    #[test]
    fn the_embedded_birth_date_must_agree_with_the_stated_one() {
        let id = ResidentId::parse_on(&with_check("52260119850314123"), today()).unwrap();
        let stated = BirthDate::parse_on("1985-03-15", today()).unwrap();
        assert!(id.check_agrees_with(Some(stated), None).is_err());
        let stated = BirthDate::parse_on("1985-03-14", today()).unwrap();
        assert!(id.check_agrees_with(Some(stated), None).is_ok());
    }

    #[test]
    fn debug_output_hides_the_number() {
        let id = ResidentId::parse_on("11010519491231002X", today()).unwrap();
        assert!(!format!("{id:?}").contains("110105"));
    }
}
