//! The four card types and the number format each one checks. A [`CardNumber`] exists only
//! while a request is handled: it is never stored, logged or shown whole (its `Debug` masks it).

use hie_core::FieldError;
use hie_core::domain::DivisionCode;

/// The cards a resident may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CardType {
    /// 居民健康卡, issued by the health commission.
    ResidentHealth,
    /// 社会保障卡, issued by the human resources and social security bureau.
    SocialSecurity,
    /// A bank IC card (银行卡) with the health-card application; a person may hold several.
    Bank,
    /// 市民卡, the citizen service card.
    Citizen,
}

impl CardType {
    pub const ALL: [CardType; 4] = [
        CardType::ResidentHealth,
        CardType::SocialSecurity,
        CardType::Bank,
        CardType::Citizen,
    ];

    /// The code stored and shown.
    pub fn code(self) -> &'static str {
        match self {
            CardType::ResidentHealth => "resident_health",
            CardType::SocialSecurity => "social_security",
            CardType::Bank => "bank",
            CardType::Citizen => "citizen",
        }
    }

    pub fn from_code(code: &str) -> Option<CardType> {
        CardType::ALL.into_iter().find(|t| t.code() == code)
    }

    /// What a person reads: "resident health card".
    pub fn name(self) -> &'static str {
        match self {
            CardType::ResidentHealth => "resident health card",
            CardType::SocialSecurity => "social-security card",
            CardType::Bank => "bank card",
            CardType::Citizen => "citizen service card",
        }
    }

    /// Whether a person may hold one active card of this type only (every type but bank cards).
    pub fn one_per_person(self) -> bool {
        self != CardType::Bank
    }
}

/// A card's type and number, checked against the type's format. Spaces and hyphens, as printed
/// on cards and typed by clerks, are dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct CardNumber {
    card_type: CardType,
    number: String,
}

impl std::fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CardNumber({}, …{})", self.card_type.code(), self.last_four())
    }
}

impl CardNumber {
    pub fn parse(card_type: CardType, text: &str) -> Result<CardNumber, FieldError> {
        let number: String = text
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '\u{3000}'))
            .collect();
        if number.is_empty() {
            return Err(FieldError::new("is required"));
        }
        let digits = |from: usize| number.bytes().skip(from).all(|b| b.is_ascii_digit());
        // The reason never repeats the number: errors reach logs and audit events.
        match card_type {
            CardType::ResidentHealth => {
                if number.len() != 16 || !digits(0) {
                    return Err(FieldError::new(
                        "is not a resident health card number, expected 16 digits",
                    ));
                }
                DivisionCode::parse(&number[..6]).map_err(|_| {
                    FieldError::new(
                        "is not a resident health card number: its first 6 digits are not a division code",
                    )
                })?;
                luhn(&number, "resident health card number")?;
            }
            CardType::SocialSecurity => {
                let first = number.as_bytes()[0];
                if number.len() != 9 || !first.is_ascii_uppercase() || !digits(1) {
                    return Err(FieldError::new(
                        "is not a social-security card number, expected an upper-case letter and 8 digits",
                    ));
                }
            }
            CardType::Bank => {
                if !(16..=19).contains(&number.len()) || !digits(0) {
                    return Err(FieldError::new(
                        "is not a bank card number, expected 16 to 19 digits",
                    ));
                }
                if number.bytes().all(|b| b == b'0') {
                    return Err(FieldError::new("is not a bank card number: all digits are 0"));
                }
                luhn(&number, "bank card number")?;
            }
            CardType::Citizen => {
                if number.len() != 12 || !digits(0) {
                    return Err(FieldError::new(
                        "is not a citizen service card number, expected 12 digits",
                    ));
                }
                luhn(&number, "citizen service card number")?;
            }
        }
        Ok(CardNumber { card_type, number })
    }

    pub fn card_type(&self) -> CardType {
        self.card_type
    }

    /// The last four characters, kept for display.
    pub fn last_four(&self) -> &str {
        &self.number[self.number.len().saturating_sub(4)..]
    }

    /// The number itself: for the keyed hash and the chip's key only.
    pub(crate) fn digits(&self) -> &str {
        &self.number
    }
}

/// The Luhn (mod 10) check of ISO/IEC 7812, on a string of ASCII digits.
fn luhn(number: &str, what: &str) -> Result<(), FieldError> {
    let sum: u32 = number
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    if sum.is_multiple_of(10) {
        Ok(())
    } else {
        Err(FieldError::new(format!(
            "is not a valid {what}: the check digit (Luhn) does not match; check for a mistyped digit"
        )))
    }
}

/// `prefix` followed by the one digit that makes it pass the Luhn check: for the demo and the tests.
pub fn with_luhn_digit(prefix: &str) -> String {
    (0..10)
        .map(|d| format!("{prefix}{d}"))
        .find(|candidate| luhn(candidate, "").is_ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_type_checks_its_own_format() {
        // The test PAN every payment network publishes.
        let visa = CardNumber::parse(CardType::Bank, "4111 1111-1111 1111").unwrap();
        assert_eq!(visa.last_four(), "1111");
        assert!(CardNumber::parse(CardType::Bank, "4111111111111112").is_err());
        assert!(CardNumber::parse(CardType::Bank, &with_luhn_digit("622202123456789012")).is_ok());
        assert!(CardNumber::parse(CardType::Bank, &with_luhn_digit("622202123456789")).is_ok());
        let short = CardNumber::parse(CardType::Bank, &with_luhn_digit("62220212345678")).unwrap_err();
        assert!(short.0.contains("16 to 19 digits"), "{short}");
        let good = with_luhn_digit("622202123456789");
        let mut bad = good.clone().into_bytes();
        let last = bad.len() - 1;
        bad[last] = if bad[last] == b'9' { b'0' } else { bad[last] + 1 };
        let bad = String::from_utf8(bad).unwrap();
        let refused = CardNumber::parse(CardType::Bank, &bad).unwrap_err();
        assert!(
            refused.0.contains("Luhn") && !refused.0.contains(&bad),
            "{refused}"
        );
        assert!(CardNumber::parse(CardType::Bank, "0000000000000000").is_err());

        assert!(CardNumber::parse(CardType::ResidentHealth, &with_luhn_digit("522601000000123")).is_ok());
        assert!(CardNumber::parse(CardType::ResidentHealth, &with_luhn_digit("992601000000123")).is_err());
        assert!(CardNumber::parse(CardType::ResidentHealth, "52260100000012").is_err());

        assert!(CardNumber::parse(CardType::SocialSecurity, "A12345678").is_ok());
        assert!(CardNumber::parse(CardType::SocialSecurity, "a12345678").is_err());
        assert!(CardNumber::parse(CardType::SocialSecurity, "A1234567").is_err());
        assert!(CardNumber::parse(CardType::SocialSecurity, "AB2345678").is_err());

        assert!(CardNumber::parse(CardType::Citizen, &with_luhn_digit("52260112345")).is_ok());
        assert!(CardNumber::parse(CardType::Citizen, "5226011234").is_err());
        assert!(CardNumber::parse(CardType::Citizen, "   ").is_err());
    }

    #[test]
    fn the_number_never_shows_whole() {
        let card = CardNumber::parse(CardType::Bank, &with_luhn_digit("622202123456789")).unwrap();
        let shown = format!("{card:?}");
        assert!(
            !shown.contains(card.digits()) && shown.contains(card.last_four()),
            "{shown}"
        );
        assert_eq!(
            CardNumber::parse(CardType::Bank, &format!(" {} ", card.digits())).unwrap(),
            card
        );
    }
}
