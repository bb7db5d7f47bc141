//! Parse-don't-validate types for the values every service checks. Once a value is in one of
//! these types it is valid; each is built only through its `parse`.

mod birth_date;
mod division;
mod ethnicity;
mod icd10;
mod identifier;
mod name;
mod organisation_code;
mod phone;
mod resident_id;
mod sex;
mod text;

pub use birth_date::BirthDate;
pub use division::DivisionCode;
pub use ethnicity::Ethnicity;
pub use icd10::Icd10Code;
pub use identifier::{Identifier, IdentifierSystem};
pub use name::PersonName;
pub use organisation_code::OrganisationCode;
pub use phone::Phone;
pub use resident_id::ResidentId;
pub use sex::Sex;
pub use text::{BoundedText, fold_full_width};

#[cfg(test)]
mod hostile_input {
    //! Every parser a request reaches answers an error for any bytes, and never panics (a panic
    //! in a handler resets the client's stream). Multi-byte characters at every position, control
    //! characters, lengths at and past the limits.
    use super::*;
    use crate::page::PageToken;

    fn hostile() -> Vec<String> {
        let mut inputs: Vec<String> = [
            "",
            " ",
            "\0",
            "é",
            "aé",
            "aéa",
            "日本語",
            "\u{1F600}",
            "\u{202E}abc",
            "%",
            "%E6",
            "\\",
            "'; --",
            "52260119850314002",
            "5226011985031400é",
            "522601198503140é2X",
            "52260é",
            "5226é1",
            "urn:hie:org:é:patient",
            "urn:hie:org::patient",
            "urn:hie:org:QDN-H01:",
            "1990-02-3é",
            "19é0-01-01",
            "9999-99-99",
            "138855é0000",
            "+86é",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for length in [1, 2, 5, 6, 7, 17, 18, 19, 64, 65, 200, 201, 513, 10_000] {
            inputs.push("é".repeat(length));
            inputs.push("9".repeat(length));
            inputs.push(format!("{}é", "1".repeat(length)));
        }
        inputs
    }

    #[test]
    fn no_parser_panics_on_any_input() {
        for input in hostile() {
            let _ = ResidentId::parse(&input);
            let _ = DivisionCode::parse(&input);
            let _ = Phone::parse(&input);
            let _ = PersonName::parse(&input);
            let _ = OrganisationCode::parse(&input);
            let _ = BirthDate::parse(&input);
            let _ = Sex::parse(&input);
            let _ = Ethnicity::parse(&input);
            let _ = Icd10Code::parse(&input);
            let _ = BoundedText::parse(&input, 10);
            let _ = BoundedText::parse_required(&input, 10);
            let _ = IdentifierSystem::parse(&input);
            let _ = Identifier::parse(&input, &input);
            let _ = Identifier::parse("urn:hie:id:resident", &input);
            let _ = Identifier::parse("urn:hie:org:QDN-H01:patient", &input);
            let _ = PageToken::parse(&input);
        }
    }
}
