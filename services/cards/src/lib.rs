//! The card-integration service: the resident health card, the social-security card, bank IC
//! cards and the citizen service card, linked to the persons they belong to; their life cycle;
//! chip authentication; and the reception check-in (card → person → visit → summary).
//!
//! It owns the `cards` and `card_changes` tables and never reads another service's tables:
//! persons come from the population registry's service, visits and summaries from the EMR
//! registry's. No card number is kept: a keyed hash finds a card, its last four characters show it.

pub mod domain;
pub mod grpc;
pub mod store;

pub use domain::CardService;
