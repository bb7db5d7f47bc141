//! Paging (AIP-158): a page size with a documented maximum, and opaque page tokens.

use crate::error::FieldError;

/// The largest page any list or search call returns.
pub const MAX_PAGE_SIZE: u32 = 200;

/// The page size of a list whose caller left it unset.
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// A page size between 1 and [`MAX_PAGE_SIZE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u32);

impl PageSize {
    pub fn parse(requested: i32) -> Result<PageSize, FieldError> {
        match u32::try_from(requested) {
            Ok(size) if (1..=MAX_PAGE_SIZE).contains(&size) => Ok(PageSize(size)),
            _ => Err(FieldError(format!(
                "must be between 1 and {MAX_PAGE_SIZE}, got {requested}"
            ))),
        }
    }

    /// A page size where 0 (the field left unset) means the default (AIP-158).
    pub fn parse_or_default(requested: i32) -> Result<PageSize, FieldError> {
        match requested {
            0 => Ok(PageSize(DEFAULT_PAGE_SIZE)),
            requested => Self::parse(requested),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// Where the next page starts: the sort key of the last item returned. It travels as an opaque
/// hex string so that clients do not build tokens of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken(String);

impl PageToken {
    /// The token that resumes after `last_key`.
    pub fn after(last_key: &str) -> PageToken {
        PageToken(last_key.to_owned())
    }

    /// Parses a token from a request; `None` for the first page.
    pub fn parse(token: &str) -> Result<Option<PageToken>, FieldError> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || FieldError::new("is not a token this server issued");
        // Any bytes may arrive: only ASCII hex digits are sliced, so nothing panics on a character
        // boundary.
        if !token.len().is_multiple_of(2)
            || token.len() > 512
            || !token.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(invalid());
        }
        let bytes = (0..token.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&token[i..i + 2], 16).map_err(|_| invalid()))
            .collect::<Result<Vec<u8>, _>>()?;
        let key = String::from_utf8(bytes).map_err(|_| invalid())?;
        key.strip_prefix("v1:")
            .map(|k| Some(PageToken(k.to_owned())))
            .ok_or_else(invalid)
    }

    /// The key the next page starts after.
    pub fn last_key(&self) -> &str {
        &self.0
    }

    /// The token as sent to clients.
    pub fn encode(&self) -> String {
        crate::digest::hex(format!("v1:{}", self.0).as_bytes())
    }
}

/// Given one item more than the page size, drops it and returns the token that resumes after the
/// last item kept; `None` when there is no further page.
pub fn next_page<T>(items: &mut Vec<T>, page_size: PageSize, key: impl Fn(&T) -> &str) -> Option<PageToken> {
    next_page_by(items, page_size, |item| key(item).to_owned())
}

/// [`next_page`] for a sort key made from several fields (a date and an id).
pub fn next_page_by<T>(
    items: &mut Vec<T>,
    page_size: PageSize,
    key: impl Fn(&T) -> String,
) -> Option<PageToken> {
    if items.len() as u32 > page_size.get() {
        items.truncate(page_size.get() as usize);
        items.last().map(|last| PageToken::after(&key(last)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_size_of_zero_or_a_million_is_refused() {
        assert!(PageSize::parse(0).is_err());
        assert!(PageSize::parse(1_000_000).is_err());
        assert!(PageSize::parse(-1).is_err());
        assert_eq!(PageSize::parse(200).unwrap().get(), 200);
    }

    #[test]
    fn a_page_token_round_trips_and_a_forged_one_is_refused() {
        let token = PageToken::after("0190-abc");
        assert_eq!(PageToken::parse(&token.encode()).unwrap(), Some(token));
        assert_eq!(PageToken::parse("").unwrap(), None);
        assert!(PageToken::parse("zz").is_err());
        assert!(PageToken::parse("616263").is_err());
        for hostile in ["aéa", "é", "aé", "日本", "0é0", "\u{1F600}1"] {
            assert!(PageToken::parse(hostile).is_err(), "{hostile}");
        }
    }
}
