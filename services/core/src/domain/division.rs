use crate::error::FieldError;

/// The province-level codes of GB/T 2260 (the first two digits of every division code).
pub(crate) const PROVINCE_CODES: [&str; 34] = [
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41", "42",
    "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71", "81", "82",
];

/// A 6-digit administrative division code (GB/T 2260): two digits of province, two of
/// prefecture, two of county. 520000 is Guizhou, 522600 Qiandongnan, 522601 Kaili.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DivisionCode(String);

impl DivisionCode {
    pub fn parse(code: &str) -> Result<DivisionCode, FieldError> {
        let code = code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FieldError(format!(
                "'{}' is not a division code, expected 6 digits",
                code.chars().take(12).collect::<String>()
            )));
        }
        check_province(&code[..2])?;
        if &code[2..4] == "00" && &code[4..] != "00" {
            return Err(FieldError(format!(
                "{code} names a county without a prefecture: the middle two digits are 00 but the last two are not"
            )));
        }
        Ok(DivisionCode(code.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The prefix shared by every division inside this one: trailing "0000" widen a code to its
    /// province, a trailing "00" to its prefecture.
    pub fn region_prefix(&self) -> &str {
        if self.0.ends_with("0000") {
            &self.0[..2]
        } else if self.0.ends_with("00") {
            &self.0[..4]
        } else {
            &self.0
        }
    }
}

pub(crate) fn check_province(two_digits: &str) -> Result<(), FieldError> {
    if PROVINCE_CODES.contains(&two_digits) {
        Ok(())
    } else {
        Err(FieldError(format!(
            "{two_digits} is not a province code of GB/T 2260"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_county_a_prefecture_and_a_province_code_parse() {
        assert_eq!(DivisionCode::parse("522601").unwrap().region_prefix(), "522601");
        assert_eq!(DivisionCode::parse("522600").unwrap().region_prefix(), "5226");
        assert_eq!(DivisionCode::parse("520000").unwrap().region_prefix(), "52");
    }

    #[test]
    fn malformed_division_codes_are_refused() {
        for code in ["52260", "5226011", "52260a", "992601", "000000", "520001", ""] {
            assert!(DivisionCode::parse(code).is_err(), "{code}");
        }
    }
}
