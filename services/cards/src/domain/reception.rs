//! The reception desk: a challenge for the card in the reader, then resolve (card → person) or
//! check-in (card → person → visit registered → summary). A card is trusted only after its chip
//! answered the challenge, so a number alone finds nobody and a caller without the card cannot
//! probe which numbers exist; the look-up itself goes to this replica's table, not the database.

use chrono::Utc;
use hie_access::Subject;
use hie_access::domain::Outcome;
use hie_core::Error;
use hie_core::context::{RequestContext, Role};
use hie_core::domain::OrganisationCode;
use hie_core::id::PersonId;
use hie_core::vocabulary::AuditAction;
use hie_emr::domain::encounters::Encounter;
use hie_emr::domain::{EncounterDraft, EncounterKind, PatientSummary, Whose};
use hie_population::domain::{Lineage, PersonSelector};

use super::challenge::Challenge;
use super::index::IndexedCard;
use super::{CardNumber, CardService, CardStatus};

/// Who reads cards at a desk: reception clerks, nurses at triage, clinicians.
const READER_ROLES: [Role; 3] = [Role::RegistrationClerk, Role::Nurse, Role::Clinician];

/// Who may ask a card for proof: the readers, and those who link cards (a patient proves they
/// hold the card they link).
const CHALLENGING_ROLES: [Role; 5] = [
    Role::RegistrationClerk,
    Role::Nurse,
    Role::Clinician,
    Role::Administrator,
    Role::Patient,
];

/// A card in the reader with its chip's answer.
#[derive(Debug, Clone)]
pub struct Presentation {
    pub card: CardNumber,
    pub challenge_id: String,
    pub mac: Vec<u8>,
}

/// The person a card belongs to (the survivor of any merges).
#[derive(Debug, Clone)]
pub struct ResolvedCard {
    pub person: PersonId,
    pub card: IndexedCard,
}

/// A check-in at the calling organisation.
#[derive(Debug, Clone)]
pub struct CheckInRequest {
    pub presentation: Presentation,
    pub organisation: OrganisationCode,
    pub department: String,
    /// The HIS's visit number; one is made when absent.
    pub visit_number: Option<String>,
    pub attending_practitioner: String,
    pub emergency: bool,
}

/// What the desk gets back.
#[derive(Debug, Clone)]
pub struct CheckedIn {
    pub person: PersonId,
    pub card: IndexedCard,
    pub encounter: Encounter,
    pub summary: PatientSummary,
}

impl CardService {
    /// A one-time challenge for `card`, and the MAC algorithm its chip answers with. Only the
    /// roles that read or link cards may ask (challenges are a bounded resource of the replica).
    pub async fn begin_authentication(
        &self,
        context: &RequestContext,
        card: &CardNumber,
    ) -> Result<(Challenge, &'static str), Error> {
        self.require_role(
            context,
            &CHALLENGING_ROLES,
            "ask a card for proof",
            AuditAction::ResolveCard,
        )
        .await?;
        let chip = self.chips.of(card.card_type()).ok_or_else(|| {
            Error::precondition(
                "card.type",
                format!(
                    "no chip authenticator is configured for the {}",
                    card.card_type().name()
                ),
            )
        })?;
        let challenge = self.challenges.issue(self.tokens.token(card), Utc::now())?;
        Ok((challenge, chip.algorithm()))
    }

    /// Checks that the presented card's chip answered its challenge: the challenge is taken
    /// (one use), then the answer verified. A wrong answer is refused and recorded, the same way
    /// for every number.
    pub(super) async fn verify_chip(
        &self,
        context: &RequestContext,
        action: AuditAction,
        presentation: &Presentation,
    ) -> Result<(), Error> {
        let card_number = &presentation.card;
        let challenge = self.challenges.take(
            &presentation.challenge_id,
            self.tokens.token(card_number),
            Utc::now(),
        )?;
        let genuine = self
            .chips
            .of(card_number.card_type())
            .is_some_and(|chip| chip.verify(card_number, &challenge, &presentation.mac));
        if genuine {
            return Ok(());
        }
        let reason = "card.chip.mac: the answer does not verify; read the card again".to_owned();
        Err(self
            .access
            .audit()
            .refuse(context, &Subject::new(action, "card"), reason)
            .await)
    }

    /// Forgets expired challenges; run now and then.
    pub fn sweep_challenges(&self) {
        self.challenges.sweep(Utc::now());
    }

    /// The person the presented card belongs to.
    pub async fn resolve(
        &self,
        context: &RequestContext,
        presentation: &Presentation,
    ) -> Result<ResolvedCard, Error> {
        let card = self
            .authenticated_card(context, AuditAction::ResolveCard, presentation)
            .await?;
        let lineage = self.lineage_of(context, &card.person).await?;
        self.read_demographics(context, AuditAction::ResolveCard, &lineage)
            .await?;
        Ok(ResolvedCard {
            person: lineage.person,
            card,
        })
    }

    /// The person a card was linked to as they stand now, from the replica's cache when it
    /// holds them (see `persons.rs`), else from the registry (and then kept).
    async fn lineage_of(&self, context: &RequestContext, person: &PersonId) -> Result<Lineage, Error> {
        if let Some(lineage) = self.persons.get(person) {
            return Ok(lineage);
        }
        let generation = self.persons.generation();
        let lineage = self
            .population
            .lineage(context, &PersonSelector::Id(person.clone()))
            .await?;
        self.persons.keep(person.clone(), lineage.clone(), generation);
        Ok(lineage)
    }

    /// Reception: the card's person, the visit registered at the calling organisation (an
    /// encounter, with its event) and the summary consent permits that organisation.
    pub async fn check_in(
        &self,
        context: &RequestContext,
        request: CheckInRequest,
    ) -> Result<CheckedIn, Error> {
        let visit_number = match &request.visit_number {
            Some(number) => number.clone(),
            None => format!("CHK-{}", uuid::Uuid::now_v7().simple()),
        };
        let kind = if request.emergency {
            EncounterKind::Emergency
        } else {
            EncounterKind::Outpatient
        };
        let draft = EncounterDraft::new(
            request.organisation.clone(),
            &visit_number,
            kind,
            &request.department,
            &request.attending_practitioner,
            Vec::new(),
            Utc::now(),
            None,
        )
        .map_err(|error| match error {
            // The visit's fields are this request's own.
            Error::InvalidArgument { field, reason } => Error::InvalidArgument {
                field: field.trim_start_matches("encounter.").to_owned(),
                reason,
            },
            other => other,
        })?;
        let card = self
            .authenticated_card(context, AuditAction::CheckIn, &request.presentation)
            .await?;
        // The person as this replica's view has them: no look-up in the registry.
        let lineage = self.lineage_of(context, &card.person).await?;
        // Consent first: a caller refused the person's data is refused before anything is
        // written, as a resolve would be.
        self.read_demographics(context, AuditAction::CheckIn, &lineage)
            .await?;
        let (encounter, _) = self
            .emr
            .register_encounter_for(context, Whose::Resolved(&lineage), draft)
            .await?;
        let summary = self.emr.summary_of(context, &lineage).await?;
        self.access
            .audit()
            .record_behind(vec![
                Subject::new(AuditAction::CheckIn, "card")
                    .resource(card.id.as_str())
                    .person(&summary.person_id)
                    .event(context, Outcome::Permitted),
            ])
            .await?;
        Ok(CheckedIn {
            person: summary.person_id.clone(),
            card,
            encounter,
            summary,
        })
    }

    /// The presented card once its chip answered and it was found active. A caller without the
    /// card is refused the same way whatever the number; one with it learns that the card is
    /// unknown (`NOT_FOUND`) or stopped (`FAILED_PRECONDITION`, and the use of a stopped card is
    /// audited).
    async fn authenticated_card(
        &self,
        context: &RequestContext,
        action: AuditAction,
        presentation: &Presentation,
    ) -> Result<IndexedCard, Error> {
        self.require_role(context, &READER_ROLES, "read a card at a desk", action)
            .await?;
        self.verify_chip(context, action, presentation).await?;
        let card_number = &presentation.card;
        let candidates = self.tokens.candidates(card_number);
        let found = if self.index.is_loaded() {
            self.index.get(&candidates)
        } else {
            self.store
                .find_by_tokens(&candidates)
                .await?
                .map(|card| IndexedCard::of(&card))
        };
        let Some(card) = found.filter(|card| card.status != CardStatus::Unlinked) else {
            return Err(Error::NotFound(format!(
                "card: no person holds this {} at the exchange",
                card_number.card_type().name()
            )));
        };
        let status = card.status_on(hie_core::time::today_in_china());
        if status == CardStatus::Active {
            return Ok(card);
        }
        let reason = match status {
            CardStatus::Lost => "was reported lost; it no longer works (the holder may have a replacement)",
            CardStatus::Revoked => "was revoked by its issuer; it no longer works",
            CardStatus::Replaced => "was replaced by a new card; only the new card works",
            _ => "has expired; it no longer works",
        };
        let message = format!("this {} …{} {reason}", card.card_type.name(), card.last_four);
        let stopped = Subject::new(AuditAction::LostCardUsed, "card")
            .resource(card.id.as_str())
            .person(&card.person);
        self.access
            .audit()
            .record_behind(vec![stopped.event(context, Outcome::Denied(message.clone()))])
            .await?;
        Err(Error::precondition("card", message))
    }
}
