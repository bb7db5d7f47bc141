//! Ids the exchange makes: one macro for every id type, so that each is generated and parsed the
//! same way (a UUID version 7, sorting by creation and indexing well; optionally behind a prefix
//! that tells a reader what kind of id it is), and no service keeps a looser parser of its own.

#[doc(hidden)]
pub use uuid::Uuid;

/// Declares an id type: `generate()`, a strict `parse(&str)` (a [`crate::FieldError`] naming
/// what was expected) and `as_str()`. `id_type!(Name, "what")` is a bare UUID;
/// `id_type!(Name, "what", prefix "pr-")` puts the prefix before it.
#[macro_export]
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $crate::id_type!($(#[$doc])* $name, $what, prefix "");
    };
    ($(#[$doc:meta])* $name:ident, $what:literal, prefix $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn generate() -> $name {
                $name(format!("{}{}", $prefix, $crate::id::Uuid::now_v7()))
            }

            pub fn parse(text: &str) -> Result<$name, $crate::FieldError> {
                let text = text.trim();
                match text.strip_prefix($prefix).map($crate::id::Uuid::try_parse) {
                    Some(Ok(id)) => Ok($name(format!("{}{}", $prefix, id))),
                    _ if $prefix.is_empty() => Err($crate::FieldError::new(concat!(
                        "is not a ", $what, " id, expected a UUID"
                    ))),
                    _ => Err($crate::FieldError::new(concat!(
                        "is not a ", $what, " id, expected ", $prefix, " and a UUID"
                    ))),
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// The exchange's id of a person (the enterprise master patient id). It lives here, not in
    /// the patient index, because every registry files its data under it.
    PersonId,
    "person"
);

#[cfg(test)]
mod tests {
    use super::*;

    id_type!(PrefixedId, "prefixed", prefix "px-");

    #[test]
    fn an_id_parses_back_to_itself_and_nothing_loose_parses() {
        let id = PersonId::generate();
        assert_eq!(PersonId::parse(id.as_str()).unwrap(), id);
        assert_eq!(PersonId::parse(&format!(" {id} ")).unwrap(), id);
        let refused = PersonId::parse("12345").unwrap_err();
        assert_eq!(refused.to_string(), "is not a person id, expected a UUID");
    }

    #[test]
    fn a_prefixed_id_needs_its_prefix() {
        let id = PrefixedId::generate();
        assert!(id.as_str().starts_with("px-"));
        assert_eq!(PrefixedId::parse(id.as_str()).unwrap(), id);
        let bare = id.as_str().trim_start_matches("px-");
        assert_eq!(
            PrefixedId::parse(bare).unwrap_err().to_string(),
            "is not a prefixed id, expected px- and a UUID"
        );
    }
}
