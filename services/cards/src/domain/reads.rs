//! Reading cards: a person's cards and a card's history, and what every card read shares: the
//! role check whose refusal is recorded, and the read gate's decision on the person's identity
//! data.

use hie_access::domain::consent::DataCategory;
use hie_access::{PersonRead, Subject, require_patient_is_one_of};
use hie_core::Error;
use hie_core::context::{RequestContext, Role};
use hie_core::id::PersonId;
use hie_core::vocabulary::AuditAction;
use hie_population::domain::{Lineage, PersonSelector};

use super::{Card, CardChange, CardId, CardService};

/// Who may see a person's cards.
const LISTING_ROLES: [Role; 5] = [
    Role::Administrator,
    Role::RegistrationClerk,
    Role::Nurse,
    Role::Clinician,
    Role::Patient,
];

impl CardService {
    /// Every card of the person (of each person merged into them too), the newest link first.
    pub async fn cards_of(
        &self,
        context: &RequestContext,
        person: &PersonSelector,
    ) -> Result<(PersonId, Vec<Card>), Error> {
        self.require_role(
            context,
            &LISTING_ROLES,
            "list a person's cards",
            AuditAction::ListCards,
        )
        .await?;
        let lineage = self.population.lineage(context, person).await?;
        require_patient_is_one_of(context, &lineage.members)?;
        self.read_demographics(context, AuditAction::ListCards, &lineage)
            .await?;
        let cards = self.store.cards_of(&lineage.members).await?;
        Ok((lineage.person, cards))
    }

    /// A card and its history, oldest first.
    pub async fn history(
        &self,
        context: &RequestContext,
        id: &CardId,
    ) -> Result<(Card, Vec<CardChange>), Error> {
        self.require_role(
            context,
            &LISTING_ROLES,
            "read a card's history",
            AuditAction::GetCardHistory,
        )
        .await?;
        let unknown = || Error::NotFound(format!("card {} does not exist", id.as_str()));
        let card = self.store.card(id).await?.ok_or_else(unknown)?;
        let lineage = self
            .population
            .lineage(context, &PersonSelector::Id(card.person.clone()))
            .await?;
        require_patient_is_one_of(context, &lineage.members).map_err(|_| unknown())?;
        self.read_demographics(context, AuditAction::GetCardHistory, &lineage)
            .await?;
        let changes = self.store.changes_of(id).await?;
        Ok((card, changes))
    }

    /// Refuses, and records the refusal of, a caller whose role is not among `roles`.
    pub(super) async fn require_role(
        &self,
        context: &RequestContext,
        roles: &[Role],
        what: &str,
        action: AuditAction,
    ) -> Result<(), Error> {
        match context.role_among(roles, what) {
            Ok(()) => Ok(()),
            Err(reason) => Err(self
                .access
                .audit()
                .refuse(context, &Subject::new(action, "card"), reason)
                .await),
        }
    }

    /// The read gate's decision on the person's identity data (cards are that), audited.
    pub(super) async fn read_demographics(
        &self,
        context: &RequestContext,
        action: AuditAction,
        lineage: &Lineage,
    ) -> Result<(), Error> {
        self.access
            .read_one::<()>(PersonRead {
                context,
                action,
                person_id: &lineage.person,
                category: DataCategory::Demographics,
                directives: Some(lineage.directives.clone()),
                items: Vec::new(),
            })
            .await
            .map(|_| ())
    }
}
