//! The demo's cards: every resident of the clinical sample (`demo_records::sample`) holds a
//! resident health card, a social-security card, a citizen service card and a bank card, one in
//! ten a second bank card. Numbers follow from the resident's place in the sample, so that the
//! README's check-in commands name cards that exist in every demo. The benchmark issues cards
//! with the same numbering.

use hie_cards::domain::number::with_luhn_digit;
use hie_cards::domain::service::LinkRequest;
use hie_cards::domain::{CardNumber, CardType};
use hie_core::context::RequestContext;

use crate::Exchange;
use crate::demo::SyntheticPrefecture;

/// The cards of the `n`th cardholder (from 0) living in `county` (a division code): type and
/// number, valid for each type's format.
pub fn cards_of(n: usize, county: &str) -> Vec<(CardType, String)> {
    let n = n + 1;
    let mut cards = vec![
        (
            CardType::ResidentHealth,
            with_luhn_digit(&format!("{county}{n:09}")),
        ),
        (CardType::SocialSecurity, format!("G{:08}", n % 100_000_000)),
        (
            CardType::Citizen,
            with_luhn_digit(&format!("5226{:07}", n % 10_000_000)),
        ),
        (CardType::Bank, with_luhn_digit(&format!("622202{n:012}"))),
    ];
    if n % 10 == 1 {
        cards.push((CardType::Bank, with_luhn_digit(&format!("621700{n:09}"))));
    }
    cards
}

/// Issues the sample's cards; how many were linked.
pub async fn load(exchange: &Exchange, prefecture: &SyntheticPrefecture) -> Result<usize, String> {
    let context = RequestContext::bulk_load("hie-demo", "synthetic cards issued to the demo's residents");
    let mut linked = 0;
    for (n, (township, _)) in crate::demo_records::sample(prefecture).into_iter().enumerate() {
        let Some(holder) = township.resident_id() else {
            continue;
        };
        let county = township
            .demographics()
            .division
            .as_ref()
            .map_or("522601", |d| d.as_str());
        for (card_type, number) in cards_of(n, county) {
            let card = CardNumber::parse(card_type, &number)
                .map_err(|e| format!("a demo {} number is malformed: {e}", card_type.name()))?;
            let request = LinkRequest {
                card,
                holder: holder.clone(),
                person: None,
                expires_on: None,
                // The issuer's staff, card in hand.
                chip: None,
            };
            exchange
                .cards
                .link(&context, request)
                .await
                .map_err(|e| format!("issuing a demo card: {e}"))?;
            linked += 1;
        }
    }
    Ok(linked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_demo_card_number_is_valid_for_its_type() {
        for n in [0, 9, 10, 299, 999_999, 2_999_999] {
            for (card_type, number) in cards_of(n, "522634") {
                CardNumber::parse(card_type, &number).unwrap_or_else(|e| panic!("{card_type:?} {n}: {e}"));
            }
        }
        assert_eq!(cards_of(0, "522601").len(), 5);
        assert_eq!(cards_of(1, "522601").len(), 4);
    }
}
