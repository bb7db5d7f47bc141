//! Parse-don't-validate types for the values every service checks. Once a value is in one of
//! these types it is valid; each is built only through its `parse`.

mod birth_date;
mod division;
mod ethnicity;
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
pub use identifier::{Identifier, IdentifierSystem};
pub use name::PersonName;
pub use organisation_code::OrganisationCode;
pub use phone::Phone;
pub use resident_id::ResidentId;
pub use sex::Sex;
pub use text::{BoundedText, fold_full_width};
