//! The card life cycle: link, unlink, report lost, revoke, expire, replace; a person's cards and
//! a card's history. Each change is one unit of work (the card, its history, its audit event and
//! its outbox event commit together) and is put in this replica's look-up table as it commits.

use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use hie_access::{AccessGate, Subject, UnitOfWork, require_patient_is_one_of};
use hie_core::Error;
use hie_core::context::{RequestContext, Role};
use hie_core::db::Database;
use hie_core::domain::{Identifier, ResidentId};
use hie_core::id::PersonId;
use hie_core::outbox::OutboxEvent;
use hie_core::vocabulary::{AuditAction, EventType};
use hie_emr::EmrService;
use hie_population::PopulationService;
use hie_population::domain::{Lineage, PersonSelector};
use serde_json::json;

use super::challenge::Challenges;
use super::index::{CardIndex, IndexedCard};
use super::keys::{Chips, TokenKeys};
use super::persons::{PersonCache, changes_persons};
use super::{Card, CardChange, CardChangeKind, CardId, CardNumber, CardStatus, Presentation};
use crate::store::CardStore;

/// Who may link a card: the issuers' staff, a reception clerk issuing a card at the desk, and a
/// patient linking their own bank card through a patient portal.
const LINKING_ROLES: [Role; 3] = [Role::Administrator, Role::RegistrationClerk, Role::Patient];
/// Who may report a card lost: staff, and the holder through a patient portal.
const LOSS_REPORTING_ROLES: [Role; 3] = [Role::Administrator, Role::RegistrationClerk, Role::Patient];
/// Who may replace a card: the issuers' staff and a reception clerk issuing the new card.
const REPLACING_ROLES: [Role; 2] = [Role::Administrator, Role::RegistrationClerk];

/// The cards of the exchange.
#[derive(Clone, Debug)]
pub struct CardService {
    pub(super) store: CardStore,
    pub(super) access: AccessGate,
    pub(super) population: PopulationService,
    pub(super) emr: EmrService,
    pub(super) tokens: Arc<TokenKeys>,
    pub(super) chips: Arc<Chips>,
    pub(super) challenges: Arc<Challenges>,
    pub(super) index: Arc<CardIndex>,
    pub(super) persons: Arc<PersonCache>,
}

/// A card to link: the card, the identity number on its application, the person when known.
#[derive(Debug, Clone)]
pub struct LinkRequest {
    pub card: CardNumber,
    pub holder: ResidentId,
    pub person: Option<PersonId>,
    pub expires_on: Option<NaiveDate>,
    /// The chip's answer to a challenge: proof that the caller holds the card (required of a
    /// patient).
    pub chip: Option<ChipAnswer>,
}

/// A chip's answer: the challenge's id and the MAC.
#[derive(Debug, Clone)]
pub struct ChipAnswer {
    pub challenge_id: String,
    pub mac: Vec<u8>,
}

/// A change of a card's status, as each life-cycle call asks for it.
struct Transition {
    action: AuditAction,
    roles: &'static [Role],
    what: &'static str,
    kind: CardChangeKind,
    to: CardStatus,
    from: &'static [CardStatus],
    event: EventType,
}

impl CardService {
    /// The card service; its view of persons hears of every change this process commits.
    pub fn new(
        database: Database,
        access: AccessGate,
        population: PopulationService,
        emr: EmrService,
        tokens: TokenKeys,
        chips: Chips,
    ) -> CardService {
        let persons = Arc::new(PersonCache::default());
        let observed = persons.clone();
        access.audit().on_commit(Arc::new(move |events: &[OutboxEvent]| {
            let named: Vec<PersonId> = events
                .iter()
                .filter(|event| changes_persons(event))
                .flat_map(|event| event.persons_named())
                .collect();
            observed.evict(&named);
        }));
        CardService {
            store: CardStore::new(database),
            access,
            population,
            emr,
            tokens: Arc::new(tokens),
            chips: Arc::new(chips),
            challenges: Arc::new(Challenges::default()),
            index: Arc::new(CardIndex::default()),
            persons,
        }
    }

    /// The same cards under other keys (the settings', once read).
    pub fn with_keys(self, tokens: TokenKeys, chips: Chips) -> CardService {
        CardService {
            tokens: Arc::new(tokens),
            chips: Arc::new(chips),
            ..self
        }
    }

    /// The same cards over another EMR service (the exchange's, once its gateways are set).
    pub fn with_emr(self, emr: EmrService) -> CardService {
        CardService { emr, ..self }
    }

    /// The token a card is stored under now and its key's id: for bulk loads that write card
    /// rows themselves (the benchmark's fill). Tokens are keyed hashes, never numbers.
    pub fn stored_token(&self, card: &CardNumber) -> (String, String) {
        (
            self.tokens.token(card).to_hex(),
            self.tokens.current_id().to_owned(),
        )
    }

    /// The chips of each card type (for the simulator, which plays the issuer's part).
    pub fn chips(&self) -> &Chips {
        &self.chips
    }

    /// Links `request.card` to its holder. The same card linked again to the same person
    /// changes nothing (`false`).
    pub async fn link(&self, context: &RequestContext, request: LinkRequest) -> Result<(Card, bool), Error> {
        if let Some(last_day) = request.expires_on
            && last_day < hie_core::time::today_in_china()
        {
            return Err(Error::invalid(
                "expires_on",
                "is in the past: the card has expired already",
            ));
        }
        // Proof of possession: a patient links only a card they hold (else anyone could claim a
        // number they only know, and the card's holder could not link it any more).
        match &request.chip {
            Some(answer) => {
                let presentation = Presentation {
                    card: request.card.clone(),
                    challenge_id: answer.challenge_id.clone(),
                    mac: answer.mac.clone(),
                };
                self.verify_chip(context, AuditAction::LinkCard, &presentation)
                    .await?;
            }
            None if context.role == Role::Patient => {
                return Err(Error::invalid(
                    "chip",
                    "is required: a patient links a card by having its chip answer a challenge (BeginCardAuthentication)",
                ));
            }
            None => {}
        }
        let subject = Subject::new(AuditAction::LinkCard, "card");
        let permitted = context.role_among(&LINKING_ROLES, "link a card");
        let linked = self
            .access
            .audit()
            .write_retrying(context, subject, permitted, 3, || {
                async |unit: &mut UnitOfWork| {
                    let holder = self.holder(context, &request).await?;
                    require_patient_is_one_of(context, &holder.members)?;
                    unit.concerns(Some(&holder.person), None);
                    let now = Utc::now();
                    let card_type = request.card.card_type();
                    let existing = self
                        .store
                        .card_by_tokens(unit, &self.tokens.candidates(&request.card))
                        .await?;
                    let card = match existing {
                        Some(card)
                            if card.status == CardStatus::Active && holder.members.contains(&card.person) =>
                        {
                            unit.concerns(Some(&holder.person), Some(card.id.to_string()));
                            return Ok((card, false));
                        }
                        Some(card) if card.status == CardStatus::Active => {
                            return Err(Error::precondition(
                                "card",
                                format!(
                                    "this {} is linked to another person; unlink it there first",
                                    card_type.name()
                                ),
                            ));
                        }
                        Some(card) if card.status == CardStatus::Unlinked => Card {
                            person: holder.person.clone(),
                            status: CardStatus::Active,
                            expires_on: request.expires_on,
                            linked_at: now,
                            status_changed_at: now,
                            updated_at: now,
                            ..card
                        },
                        Some(card) => {
                            return Err(Error::precondition(
                                "card",
                                format!(
                                    "this {} is {}; it cannot be linked again",
                                    card_type.name(),
                                    card.status.code()
                                ),
                            ));
                        }
                        None => Card {
                            id: CardId::generate(),
                            card_type,
                            token: self.tokens.token(&request.card),
                            last_four: request.card.last_four().to_owned(),
                            status: CardStatus::Active,
                            person: holder.person.clone(),
                            expires_on: request.expires_on,
                            replaces: None,
                            replaced_by: None,
                            linked_at: now,
                            status_changed_at: now,
                            updated_at: now,
                        },
                    };
                    self.require_none_active(unit, &holder, &card).await?;
                    self.store.write(unit, &card, self.tokens.current_id()).await?;
                    self.record(
                        unit,
                        context,
                        &card,
                        CardChangeKind::Linked,
                        None,
                        EventType::CardLinked,
                    )
                    .await?;
                    Ok((card, true))
                }
            })
            .await?;
        self.index.put(&linked.0.token, &IndexedCard::of(&linked.0));
        Ok(linked)
    }

    /// The person the card application names: the identity number's, which must be the person
    /// named too, when one is.
    async fn holder(&self, context: &RequestContext, request: &LinkRequest) -> Result<Lineage, Error> {
        let by_number = PersonSelector::Identifier(Identifier::resident(&request.holder));
        let holder = self.population.lineage(context, &by_number).await.map_err(|e| match e {
            Error::NotFound(_) => Error::NotFound(
                "holder_identity_number: no person in the registry has this identity number; register the person first"
                    .into(),
            ),
            other => other,
        })?;
        if let Some(person) = &request.person {
            let named = self
                .population
                .lineage(context, &PersonSelector::Id(person.clone()))
                .await?;
            if named.person != holder.person {
                return Err(Error::precondition(
                    "holder_identity_number",
                    format!(
                        "is not the identity number of person {}: a card is linked to the holder its application names",
                        person.as_str()
                    ),
                ));
            }
        }
        Ok(holder)
    }

    /// Refuses a second active card of a type a person holds one of.
    async fn require_none_active(
        &self,
        unit: &mut UnitOfWork,
        holder: &Lineage,
        card: &Card,
    ) -> Result<(), Error> {
        if !card.card_type.one_per_person() {
            return Ok(());
        }
        let active = self
            .store
            .active_of_type(unit, &holder.members, card.card_type)
            .await?;
        match active.into_iter().find(|other| other.id != card.id) {
            Some(other) => Err(Error::precondition(
                "card.type",
                format!(
                    "the person already holds an active {} ({}); replace it or report it lost first",
                    card.card_type.name(),
                    other.described()
                ),
            )),
            None => Ok(()),
        }
    }

    /// Writes a card's history entry and outbox event, and completes the audit subject.
    async fn record(
        &self,
        unit: &mut UnitOfWork,
        context: &RequestContext,
        card: &Card,
        kind: CardChangeKind,
        reason: Option<&str>,
        event: EventType,
    ) -> Result<(), Error> {
        unit.concerns(Some(&card.person), Some(card.id.to_string()));
        self.store
            .record_change(
                unit,
                &CardChange {
                    card: card.id.clone(),
                    changed_at: Utc::now(),
                    kind,
                    status: card.status,
                    person: card.person.clone(),
                    organisation: context.organisation.clone(),
                    user_id: context.user_id.clone(),
                    reason: reason.map(str::to_owned),
                },
            )
            .await?;
        unit.emit(OutboxEvent::new(
            event,
            Some(&card.person),
            context.organisation.as_ref(),
            &json!({
                "card_id": card.id.as_str(),
                "card_type": card.card_type.code(),
                "status": card.status.code(),
                "change": kind.code(),
            }),
        ));
        Ok(())
    }

    /// Takes a card off its person (linked by mistake). Administrators only.
    pub async fn unlink(&self, context: &RequestContext, id: &CardId, reason: &str) -> Result<Card, Error> {
        let transition = Transition {
            action: AuditAction::UnlinkCard,
            roles: &[Role::Administrator],
            what: "unlink a card",
            kind: CardChangeKind::Unlinked,
            to: CardStatus::Unlinked,
            from: &[CardStatus::Active, CardStatus::Lost],
            event: EventType::CardUnlinked,
        };
        self.transition(context, id, Some(required_reason(reason)?), transition)
            .await
    }

    /// The card was lost: it stops working at once.
    pub async fn report_lost(
        &self,
        context: &RequestContext,
        id: &CardId,
        note: &str,
    ) -> Result<Card, Error> {
        let transition = Transition {
            action: AuditAction::ReportCardLost,
            roles: &LOSS_REPORTING_ROLES,
            what: "report a card lost",
            kind: CardChangeKind::Lost,
            to: CardStatus::Lost,
            from: &[CardStatus::Active],
            event: EventType::CardLost,
        };
        let note = Some(note.trim()).filter(|n| !n.is_empty());
        self.transition(context, id, note.map(checked_reason).transpose()?, transition)
            .await
    }

    /// The issuer withdrew the card. Administrators only.
    pub async fn revoke(&self, context: &RequestContext, id: &CardId, reason: &str) -> Result<Card, Error> {
        let transition = Transition {
            action: AuditAction::RevokeCard,
            roles: &[Role::Administrator],
            what: "revoke a card",
            kind: CardChangeKind::Revoked,
            to: CardStatus::Revoked,
            from: &[CardStatus::Active, CardStatus::Lost, CardStatus::Expired],
            event: EventType::CardRevoked,
        };
        self.transition(context, id, Some(required_reason(reason)?), transition)
            .await
    }

    /// The card reached the end of its validity. Administrators only.
    pub async fn expire(&self, context: &RequestContext, id: &CardId) -> Result<Card, Error> {
        let transition = Transition {
            action: AuditAction::ExpireCard,
            roles: &[Role::Administrator],
            what: "expire a card",
            kind: CardChangeKind::Expired,
            to: CardStatus::Expired,
            from: &[CardStatus::Active],
            event: EventType::CardExpired,
        };
        self.transition(context, id, None, transition).await
    }

    /// Moves a card to `transition.to`. A card already there is answered unchanged (a retry).
    async fn transition(
        &self,
        context: &RequestContext,
        id: &CardId,
        reason: Option<String>,
        transition: Transition,
    ) -> Result<Card, Error> {
        let subject = Subject::new(transition.action, "card").resource(id.as_str());
        let permitted = context.role_among(transition.roles, transition.what);
        let card = self
            .access
            .audit()
            .write(context, subject, permitted, async |unit| {
                let card = self.card_for_change(unit, context, id).await?;
                if card.status == transition.to {
                    unit.roll_back_instead();
                    return Ok(card);
                }
                if !transition.from.contains(&card.status) {
                    return Err(Error::precondition(
                        "card_id",
                        format!(
                            "the {} is {}; it cannot be {}",
                            card.described(),
                            card.status.code(),
                            transition.kind.code()
                        ),
                    ));
                }
                let now = Utc::now();
                let card = Card {
                    status: transition.to,
                    status_changed_at: now,
                    updated_at: now,
                    ..card
                };
                self.store.write(unit, &card, self.tokens.current_id()).await?;
                self.record(
                    unit,
                    context,
                    &card,
                    transition.kind,
                    reason.as_deref(),
                    transition.event,
                )
                .await?;
                Ok(card)
            })
            .await?;
        self.index.put(&card.token, &IndexedCard::of(&card));
        Ok(card)
    }

    /// The card `id` for a change by the caller: `NOT_FOUND` when unknown, and, for a patient,
    /// only their own card (any other answers as unknown).
    async fn card_for_change(
        &self,
        unit: &mut UnitOfWork,
        context: &RequestContext,
        id: &CardId,
    ) -> Result<Card, Error> {
        let unknown = || Error::NotFound(format!("card {} does not exist", id.as_str()));
        let card = self.store.card_in(unit, id).await?.ok_or_else(unknown)?;
        unit.concerns(Some(&card.person), Some(card.id.to_string()));
        if context.role == Role::Patient {
            let lineage = self
                .population
                .lineage(context, &PersonSelector::Id(card.person.clone()))
                .await?;
            require_patient_is_one_of(context, &lineage.members).map_err(|_| unknown())?;
        }
        Ok(card)
    }

    /// A new card in place of an active, lost or expired one: it inherits the holder, and the
    /// old card stops working at once.
    pub async fn replace(
        &self,
        context: &RequestContext,
        id: &CardId,
        new_card: &CardNumber,
        expires_on: Option<NaiveDate>,
    ) -> Result<(Card, Card), Error> {
        let subject = Subject::new(AuditAction::ReplaceCard, "card").resource(id.as_str());
        let permitted = context.role_among(&REPLACING_ROLES, "replace a card");
        let (old, new) = self
            .access
            .audit()
            .write_retrying(context, subject, permitted, 3, || {
                async |unit: &mut UnitOfWork| {
                    let old = self.card_for_change(unit, context, id).await?;
                    if new_card.card_type() != old.card_type {
                        return Err(Error::invalid(
                            "new_card.type",
                            format!("must be the replaced card's type, {}", old.card_type.name()),
                        ));
                    }
                    match old.status {
                        CardStatus::Active | CardStatus::Lost | CardStatus::Expired => {}
                        CardStatus::Revoked => {
                            return Err(Error::precondition(
                                "card_id",
                                format!(
                                    "the {} was revoked by its issuer; a revoked card is not replaced",
                                    old.described()
                                ),
                            ));
                        }
                        status => {
                            return Err(Error::precondition(
                                "card_id",
                                format!(
                                    "the {} is {}; it cannot be replaced",
                                    old.described(),
                                    status.code()
                                ),
                            ));
                        }
                    }
                    if self
                        .store
                        .card_by_tokens(unit, &self.tokens.candidates(new_card))
                        .await?
                        .is_some()
                    {
                        return Err(Error::precondition(
                            "new_card",
                            format!(
                                "this {} is known to the exchange already; a replacement is a new card",
                                new_card.card_type().name()
                            ),
                        ));
                    }
                    let now = Utc::now();
                    let new = Card {
                        id: CardId::generate(),
                        card_type: old.card_type,
                        token: self.tokens.token(new_card),
                        last_four: new_card.last_four().to_owned(),
                        status: CardStatus::Active,
                        person: old.person.clone(),
                        expires_on,
                        replaces: Some(old.id.clone()),
                        replaced_by: None,
                        linked_at: now,
                        status_changed_at: now,
                        updated_at: now,
                    };
                    let old = Card {
                        status: CardStatus::Replaced,
                        replaced_by: Some(new.id.clone()),
                        status_changed_at: now,
                        updated_at: now,
                        ..old
                    };
                    // The old card leaves the active set before the new one joins it.
                    self.store.write(unit, &old, self.tokens.current_id()).await?;
                    self.store.write(unit, &new, self.tokens.current_id()).await?;
                    self.record(
                        unit,
                        context,
                        &old,
                        CardChangeKind::Replaced,
                        None,
                        EventType::CardReplaced,
                    )
                    .await?;
                    self.record(
                        unit,
                        context,
                        &new,
                        CardChangeKind::Replacement,
                        None,
                        EventType::CardLinked,
                    )
                    .await?;
                    unit.concerns(Some(&old.person), Some(old.id.to_string()));
                    Ok((old, new))
                }
            })
            .await?;
        self.index.put(&old.token, &IndexedCard::of(&old));
        self.index.put(&new.token, &IndexedCard::of(&new));
        Ok((old, new))
    }
}

fn checked_reason(reason: &str) -> Result<String, Error> {
    let reason = reason.trim();
    if reason.chars().count() > 500 {
        return Err(Error::invalid("reason", "is longer than 500 characters"));
    }
    Ok(reason.to_owned())
}

fn required_reason(reason: &str) -> Result<String, Error> {
    if reason.trim().is_empty() {
        return Err(Error::invalid(
            "reason",
            "is required: say why, for the card's history and the audit trail",
        ));
    }
    checked_reason(reason)
}
