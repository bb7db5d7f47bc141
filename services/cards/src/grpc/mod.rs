//! The `hie.cards.v1.CardService` gRPC service: maps proto messages to domain types, every
//! malformed field answered as `INVALID_ARGUMENT` naming it (never repeating a card number), and
//! domain results back. No answer carries a card number; cards show their last four characters.

use chrono::NaiveDate;
use hie_core::context::RequestContext;
use hie_core::domain::ResidentId;
use hie_core::id::PersonId;
use hie_core::service::ServiceModule;
use hie_core::{Error, ResultExt};
use hie_emr::grpc::{encounter_to_proto, summary_to_proto};
use hie_proto::cards as proto;
use hie_proto::cards::card_service_server::CardService as CardServiceApi;
use hie_records::grpc::person_selector;
use tonic::{Request, Response, Status};

use crate::domain::service::{ChipAnswer, LinkRequest};
use crate::domain::{
    Card, CardChange, CardId, CardNumber, CardService, CardStatus, CardType, CheckInRequest, Presentation,
};

/// The name `--services` knows the card service by.
pub const SERVICE_NAME: &str = "cards";

/// The card service as the server mounts it.
pub fn module(cards: CardService) -> ServiceModule {
    ServiceModule::new(
        SERVICE_NAME,
        proto::card_service_server::CardServiceServer::new(CardsGrpc { cards }),
    )
}

#[derive(Clone, Debug)]
struct CardsGrpc {
    cards: CardService,
}

pub fn card_type_of(code: i32) -> Option<CardType> {
    Some(match proto::CardType::try_from(code).ok()? {
        proto::CardType::Unspecified => return None,
        proto::CardType::ResidentHealth => CardType::ResidentHealth,
        proto::CardType::SocialSecurity => CardType::SocialSecurity,
        proto::CardType::Bank => CardType::Bank,
        proto::CardType::Citizen => CardType::Citizen,
    })
}

pub fn card_type_to_proto(card_type: CardType) -> proto::CardType {
    match card_type {
        CardType::ResidentHealth => proto::CardType::ResidentHealth,
        CardType::SocialSecurity => proto::CardType::SocialSecurity,
        CardType::Bank => proto::CardType::Bank,
        CardType::Citizen => proto::CardType::Citizen,
    }
}

fn status_to_proto(status: CardStatus) -> proto::CardStatus {
    match status {
        CardStatus::Active => proto::CardStatus::Active,
        CardStatus::Lost => proto::CardStatus::Lost,
        CardStatus::Revoked => proto::CardStatus::Revoked,
        CardStatus::Expired => proto::CardStatus::Expired,
        CardStatus::Replaced => proto::CardStatus::Replaced,
        CardStatus::Unlinked => proto::CardStatus::Unlinked,
    }
}

/// The card a request names, its type and number checked.
pub fn card_number(field: &str, message: Option<proto::CardNumber>) -> Result<CardNumber, Error> {
    let m = message.ok_or_else(|| Error::invalid(field, "is required: a card type and number"))?;
    let card_type = card_type_of(m.r#type).ok_or_else(|| {
        Error::invalid(
            format!("{field}.type"),
            "expected RESIDENT_HEALTH, SOCIAL_SECURITY, BANK or CITIZEN",
        )
    })?;
    CardNumber::parse(card_type, &m.number).field(&format!("{field}.number"))
}

fn presentation(message: Option<proto::CardPresentation>) -> Result<Presentation, Error> {
    let m = message.ok_or_else(|| Error::invalid("card", "is required: the card and its chip's answer"))?;
    let card = card_number("card.card", m.card)?;
    let chip = m.chip.ok_or_else(|| {
        Error::invalid(
            "card.chip",
            "is required: the chip's answer to a challenge from BeginCardAuthentication",
        )
    })?;
    let answer = chip_answer("card.chip", chip)?;
    Ok(Presentation {
        card,
        challenge_id: answer.challenge_id,
        mac: answer.mac,
    })
}

/// A chip's answer, its MAC's length checked.
fn chip_answer(field: &str, chip: proto::ChipResponse) -> Result<ChipAnswer, Error> {
    if chip.mac.is_empty() || chip.mac.len() > 64 {
        return Err(Error::invalid(
            format!("{field}.mac"),
            "expected the MAC the card computed, 1 to 64 bytes",
        ));
    }
    Ok(ChipAnswer {
        challenge_id: chip.challenge_id,
        mac: chip.mac,
    })
}
fn card_id(field: &str, text: &str) -> Result<CardId, Error> {
    CardId::parse(text).field(field)
}

fn optional_date(field: &str, text: &str) -> Result<Option<NaiveDate>, Error> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| Error::invalid(field, "expected a date as YYYY-MM-DD"))
}

pub fn card_to_proto(card: &Card) -> proto::Card {
    proto::Card {
        card_id: card.id.to_string(),
        r#type: card_type_to_proto(card.card_type).into(),
        last_four: card.last_four.clone(),
        // As a reader meets it: an active card past its last day shows as expired.
        status: status_to_proto(card.status_on(hie_core::time::today_in_china())).into(),
        person_id: card.person.to_string(),
        expires_on: card.expires_on.map(|d| d.to_string()).unwrap_or_default(),
        replaces_card_id: card.replaces.as_ref().map(CardId::to_string).unwrap_or_default(),
        replaced_by_card_id: card
            .replaced_by
            .as_ref()
            .map(CardId::to_string)
            .unwrap_or_default(),
        linked_at: Some(hie_proto::timestamp(card.linked_at)),
        status_changed_at: Some(hie_proto::timestamp(card.status_changed_at)),
    }
}

fn change_to_proto(change: &CardChange) -> proto::CardChange {
    proto::CardChange {
        changed_at: Some(hie_proto::timestamp(change.changed_at)),
        change: change.kind.code().to_owned(),
        status: status_to_proto(change.status).into(),
        person_id: change.person.to_string(),
        organisation_code: change
            .organisation
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        user_id: change.user_id.clone(),
        reason: change.reason.clone().unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl CardServiceApi for CardsGrpc {
    #[tracing::instrument(skip_all)]
    async fn link_card(
        &self,
        request: Request<proto::LinkCardRequest>,
    ) -> Result<Response<proto::LinkCardResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let m = request.into_inner();
        let person = Some(m.person_id.trim())
            .filter(|id| !id.is_empty())
            .map(|id| PersonId::parse(id).field("person_id"))
            .transpose()?;
        let link = LinkRequest {
            card: card_number("card", m.card)?,
            holder: ResidentId::parse(&m.holder_identity_number).field("holder_identity_number")?,
            person,
            expires_on: optional_date("expires_on", &m.expires_on)?,
            chip: m.chip.map(|chip| chip_answer("chip", chip)).transpose()?,
        };
        let (card, changed) = self.cards.link(&context, link).await?;
        Ok(Response::new(proto::LinkCardResponse {
            card: Some(card_to_proto(&card)),
            changed,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn unlink_card(
        &self,
        request: Request<proto::UnlinkCardRequest>,
    ) -> Result<Response<proto::UnlinkCardResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let m = request.into_inner();
        let card = self
            .cards
            .unlink(&context, &card_id("card_id", &m.card_id)?, &m.reason)
            .await?;
        Ok(Response::new(proto::UnlinkCardResponse {
            card: Some(card_to_proto(&card)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn report_card_lost(
        &self,
        request: Request<proto::ReportCardLostRequest>,
    ) -> Result<Response<proto::ReportCardLostResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let m = request.into_inner();
        let card = self
            .cards
            .report_lost(&context, &card_id("card_id", &m.card_id)?, &m.reason)
            .await?;
        Ok(Response::new(proto::ReportCardLostResponse {
            card: Some(card_to_proto(&card)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_card(
        &self,
        request: Request<proto::RevokeCardRequest>,
    ) -> Result<Response<proto::RevokeCardResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let m = request.into_inner();
        let card = self
            .cards
            .revoke(&context, &card_id("card_id", &m.card_id)?, &m.reason)
            .await?;
        Ok(Response::new(proto::RevokeCardResponse {
            card: Some(card_to_proto(&card)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn expire_card(
        &self,
        request: Request<proto::ExpireCardRequest>,
    ) -> Result<Response<proto::ExpireCardResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let m = request.into_inner();
        let card = self
            .cards
            .expire(&context, &card_id("card_id", &m.card_id)?)
            .await?;
        Ok(Response::new(proto::ExpireCardResponse {
            card: Some(card_to_proto(&card)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn replace_card(
        &self,
        request: Request<proto::ReplaceCardRequest>,
    ) -> Result<Response<proto::ReplaceCardResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let m = request.into_inner();
        let old = card_id("card_id", &m.card_id)?;
        let new_card = card_number("new_card", m.new_card)?;
        let expires_on = optional_date("expires_on", &m.expires_on)?;
        let (old, new) = self.cards.replace(&context, &old, &new_card, expires_on).await?;
        Ok(Response::new(proto::ReplaceCardResponse {
            old_card: Some(card_to_proto(&old)),
            new_card: Some(card_to_proto(&new)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_cards(
        &self,
        request: Request<proto::ListCardsRequest>,
    ) -> Result<Response<proto::ListCardsResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let m = request.into_inner();
        let (person, cards) = self
            .cards
            .cards_of(&context, &person_selector("person", m.person)?)
            .await?;
        Ok(Response::new(proto::ListCardsResponse {
            person_id: person.to_string(),
            cards: cards.iter().map(card_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_card_history(
        &self,
        request: Request<proto::GetCardHistoryRequest>,
    ) -> Result<Response<proto::GetCardHistoryResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let m = request.into_inner();
        let (card, changes) = self
            .cards
            .history(&context, &card_id("card_id", &m.card_id)?)
            .await?;
        Ok(Response::new(proto::GetCardHistoryResponse {
            card: Some(card_to_proto(&card)),
            changes: changes.iter().map(change_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn begin_card_authentication(
        &self,
        request: Request<proto::BeginCardAuthenticationRequest>,
    ) -> Result<Response<proto::BeginCardAuthenticationResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let card = card_number("card", request.into_inner().card)?;
        let (challenge, algorithm) = self.cards.begin_authentication(&context, &card).await?;
        Ok(Response::new(proto::BeginCardAuthenticationResponse {
            challenge_id: challenge.id,
            challenge: challenge.bytes.to_vec(),
            expires_at: Some(hie_proto::timestamp(challenge.expires_at)),
            algorithm: algorithm.to_owned(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn resolve_card(
        &self,
        request: Request<proto::ResolveCardRequest>,
    ) -> Result<Response<proto::ResolveCardResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let presented = presentation(request.into_inner().card)?;
        let resolved = self.cards.resolve(&context, &presented).await?;
        Ok(Response::new(proto::ResolveCardResponse {
            person_id: resolved.person.to_string(),
            card_id: resolved.card.id.to_string(),
            r#type: card_type_to_proto(resolved.card.card_type).into(),
            last_four: resolved.card.last_four,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn check_in(
        &self,
        request: Request<proto::CheckInRequest>,
    ) -> Result<Response<proto::CheckInResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let m = request.into_inner();
        let check_in = CheckInRequest {
            presentation: presentation(m.card)?,
            organisation: context.submitting_organisation("organisation_code", &m.organisation_code)?,
            department: m.department,
            visit_number: Some(m.visit_number.trim().to_owned()).filter(|n| !n.is_empty()),
            attending_practitioner: m.attending_practitioner,
            emergency: m.emergency,
        };
        let checked_in = self.cards.check_in(&context, check_in).await?;
        Ok(Response::new(proto::CheckInResponse {
            person_id: checked_in.person.to_string(),
            card_id: checked_in.card.id.to_string(),
            encounter: Some(encounter_to_proto(&checked_in.encounter)),
            summary: Some(summary_to_proto(&checked_in.summary)),
        }))
    }
}
