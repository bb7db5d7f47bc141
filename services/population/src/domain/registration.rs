//! Registration with matching (the PIX feed): a source record is registered or updated, matched
//! against the persons sharing a blocking key, and linked to one of them or to a new person, in
//! one unit of work with its audit event and its link event. Re-matching is this path again.

use std::collections::BTreeMap;

use hie_access::{AuditEvent, Outcome, Subject, UnitOfWork};
use hie_core::context::RequestContext;
use hie_core::domain::{Identifier, IdentifierSystem, OrganisationCode};
use hie_core::vocabulary::AuditAction;
use hie_core::{Error, time};
use serde_json::json;

use super::golden::{MOST_TRUSTED, trust_of};
use super::service::link_event;
use super::{
    MatchDecision, Matcher, PersonId, PopulationService, PossibleMatch, SourceRecordDraft, SourceRecordId,
};
use crate::store::{NewRecordWrite, PersonWrite};

/// What a registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationOutcome {
    CreatedPerson,
    JoinedPerson,
    UpdatedRecord,
}

/// The result of registering a source record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub person_id: PersonId,
    pub source_record_id: SourceRecordId,
    pub outcome: RegistrationOutcome,
    /// How many possible matches with other persons wait for review.
    pub pending_reviews: usize,
}

impl Registration {
    /// Makes this registration what the unit's audit event is about.
    fn is_subject_of(&self, unit: &mut UnitOfWork) {
        unit.concerns(
            Some(&self.person_id),
            Some(self.source_record_id.as_str().to_owned()),
        );
    }

    /// The audit event of one registration of a bulk write.
    fn event(&self, context: &RequestContext) -> AuditEvent {
        registration_subject()
            .person(&self.person_id)
            .resource(self.source_record_id.as_str())
            .event(context, Outcome::Permitted)
    }
}

fn registration_subject() -> Subject {
    Subject::new(AuditAction::RegisterSourceRecord, "source_record")
}

/// What re-matching a batch did, or in a dry run would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RematchReport {
    pub processed: usize,
    /// Records that joined another person (an existing one or a new one).
    pub moved: usize,
    /// Possible matches queued for review (in a dry run: that would be).
    pub pending_reviews: usize,
    /// The last record of the batch, where the next batch starts.
    pub last: Option<SourceRecordId>,
}

/// The lock of one organisation's record, so that two submissions of it are serialised.
fn record_lock_key(draft: &SourceRecordDraft) -> i64 {
    super::linkage::stable_hash(&(
        "record",
        draft.organisation().as_str(),
        draft.local_patient_number().value(),
    )) as i64
}

/// The trust of each organisation whose records a write registers ([`trust_of`]).
type Trusts = BTreeMap<OrganisationCode, u8>;

/// How many times a registration starts again when a concurrent change got in its way.
const REGISTRATION_ATTEMPTS: u32 = 3;

impl PopulationService {
    /// Registers or updates one source record, in one unit of work with its audit event; a
    /// registration that fails leaves an event of its own. A concurrent merge or steward's
    /// decision that changed the persons it matched against makes it start again on what they
    /// left (a few times at most).
    pub async fn register(
        &self,
        context: &RequestContext,
        draft: &SourceRecordDraft,
    ) -> Result<Registration, Error> {
        self.access
            .audit()
            .write_retrying(
                context,
                registration_subject(),
                Ok(()),
                REGISTRATION_ATTEMPTS,
                || {
                    async |unit: &mut UnitOfWork| {
                        let trusts = self.trusts_of([draft.organisation()]).await?;
                        let matcher = self.matcher();
                        self.register_in(unit, matcher.as_ref(), draft, &trusts, None, true)
                            .await
                    }
                },
            )
            .await
    }

    /// Registers many records in one unit of work: all of them or, on the first error, none.
    /// For bulk loads (migrations, the demo, benchmarks), where one transaction per record would
    /// be dominated by commits.
    pub async fn register_batch(
        &self,
        context: &RequestContext,
        drafts: &[SourceRecordDraft],
    ) -> Result<Vec<Registration>, Error> {
        let trusts = self
            .trusts_of(drafts.iter().map(SourceRecordDraft::organisation))
            .await?;
        let matcher = self.matcher();
        self.access
            .audit()
            .write(context, registration_subject(), Ok(()), async |unit| {
                // Every lock of the batch at once, in one sorted order: taken record by record,
                // two batches could each hold a key the other waits for.
                let mut locks: Vec<i64> = drafts
                    .iter()
                    .flat_map(|draft| {
                        matcher
                            .blocking_keys(&matcher.prepare(draft))
                            .into_iter()
                            .map(|k| k.0)
                            .chain([record_lock_key(draft)])
                    })
                    .collect();
                locks.sort_unstable();
                locks.dedup();
                self.store.lock_keys(unit, &locks).await?;
                let mut registrations = Vec::with_capacity(drafts.len());
                for draft in drafts {
                    registrations.push(
                        self.register_in(unit, matcher.as_ref(), draft, &trusts, None, false)
                            .await?,
                    );
                }
                unit.record_each(registrations.iter().map(|r| r.event(context)).collect());
                Ok(registrations)
            })
            .await
    }

    /// Registers one record in the unit of work, with `matcher` (one for the whole registration,
    /// whatever a reload does meanwhile, so that the link event names the model that decided).
    /// `content_time` is when the content was submitted, for re-matching, which must not make
    /// old content look new; `None` is now. A `single` registration is the unit's subject; in a
    /// bulk write the caller records the events.
    async fn register_in(
        &self,
        unit: &mut UnitOfWork,
        matcher: &dyn Matcher,
        draft: &SourceRecordDraft,
        trusts: &Trusts,
        content_time: Option<chrono::DateTime<chrono::Utc>>,
        single: bool,
    ) -> Result<Registration, Error> {
        let profile = matcher.prepare(draft);
        let keys = matcher.blocking_keys(&profile);
        // Lock the record's own key and its blocking keys, so that two registrations of the same
        // new resident cannot both create a person.
        let record_lock = record_lock_key(draft);
        let mut locks: Vec<i64> = keys.iter().map(|k| k.0).chain([record_lock]).collect();
        locks.sort_unstable();
        locks.dedup();
        self.store.lock_keys(unit, &locks).await?;

        let (existing, mut candidates) = self
            .store
            .match_context(
                unit,
                draft.organisation(),
                draft.local_patient_number().value(),
                &keys,
            )
            .await?;
        if let Some(existing) = &existing {
            let rejected = self.store.rejected_persons(unit, &existing.id).await?;
            candidates.retain(|c| !rejected.contains(&c.person_id));
        }
        let decision = matcher.decide(&profile, &candidates);
        let now = time::now();
        let model_version = matcher.model_version();

        let Some(existing) = existing else {
            let (person_id, outcome, review, how) = match decision {
                MatchDecision::Link { best, review } => {
                    let how = matching_account(matcher, Some(&best), true);
                    let person = self.lock_live_person(unit, best.person_id.clone()).await?;
                    (person, RegistrationOutcome::JoinedPerson, review, how)
                }
                MatchDecision::NewPerson { review, closest } => (
                    PersonId::generate(),
                    RegistrationOutcome::CreatedPerson,
                    review,
                    matching_account(matcher, closest.as_ref(), false),
                ),
            };
            let registration = Registration {
                person_id,
                source_record_id: SourceRecordId::generate(),
                outcome,
                pending_reviews: review.len(),
            };
            if single {
                registration.is_subject_of(unit);
            }
            unit.emit(link_event(
                &registration.source_record_id,
                &registration.person_id,
                None,
                Some(draft.organisation()),
                how,
            ));
            // A record outranking every earlier one (a hospital's) wins each field it states, in
            // the same statement; any other joins and the golden record is recomputed.
            let person_write = if outcome == RegistrationOutcome::CreatedPerson {
                PersonWrite::Create
            } else if trusts.get(draft.organisation()).copied().unwrap_or(0) >= MOST_TRUSTED {
                PersonWrite::ApplyNewest
            } else {
                PersonWrite::Leave
            };
            self.store
                .write_new_record(
                    unit,
                    &NewRecordWrite {
                        record: &registration.source_record_id,
                        person: &registration.person_id,
                        person_write,
                        draft,
                        keys: &keys,
                        with_pending: single,
                        now,
                    },
                )
                .await?;
            if person_write == PersonWrite::Leave {
                self.refresh_golden_record(unit, &registration.person_id, now)
                    .await?;
            }
            self.store
                .queue_reviews(unit, &registration.source_record_id, &review, model_version, now)
                .await?;
            return Ok(registration);
        };

        let current = existing.person_id.clone();
        let still_matches_current = |probability: f64| probability >= self.thresholds.review();
        let (person_id, review, how) = match decision {
            // A person linked this record by hand: matching never moves it.
            _ if existing.linked_manually => (current.clone(), Vec::new(), None),
            MatchDecision::Link { best, review } => {
                let current_score = std::iter::once(&best)
                    .chain(&review)
                    .find(|m| m.person_id == current)
                    .map(|m| m.probability);
                let others: Vec<PossibleMatch> =
                    review.into_iter().filter(|m| m.person_id != current).collect();
                if best.person_id == current || current_score.is_some_and(|p| p >= self.thresholds.link()) {
                    (current.clone(), others, None)
                } else {
                    let how = matching_account(matcher, Some(&best), true);
                    (best.person_id, others, Some(how))
                }
            }
            MatchDecision::NewPerson { review, closest } => {
                let has_siblings = candidates.iter().any(|c| c.person_id == current);
                let current_score = review
                    .iter()
                    .find(|m| m.person_id == current)
                    .map(|m| m.probability);
                let others: Vec<PossibleMatch> =
                    review.into_iter().filter(|m| m.person_id != current).collect();
                if has_siblings && !current_score.is_some_and(still_matches_current) {
                    // The record no longer matches the person's other records (its identity
                    // number or demographics changed): it leaves them for a person of its own.
                    let person_id = PersonId::generate();
                    self.store
                        .insert_person(unit, &person_id, draft.demographics(), now)
                        .await?;
                    (
                        person_id,
                        others,
                        Some(matching_account(matcher, closest.as_ref(), false)),
                    )
                } else {
                    (current.clone(), others, None)
                }
            }
        };
        // Take the persons in hand, then make sure nobody moved the record or merged its target
        // since it was read: a steward's link must never be overwritten by matching.
        let locked = self.store.lock_persons(unit, &[&current, &person_id]).await?;
        let target_live = locked
            .iter()
            .any(|(person, state)| *person == person_id && matches!(state, Some(None)));
        let unchanged = self.store.record_link(unit, &existing.id).await?
            == Some((current.clone(), existing.linked_manually));
        if !unchanged || !target_live {
            return Err(Error::Conflict(
                "the record or its person changed while it was being matched; retry".into(),
            ));
        }
        self.store
            .update_source_record(unit, &existing.id, &person_id, draft, content_time.unwrap_or(now))
            .await?;
        self.store
            .replace_identifiers(unit, &existing.id, &person_id, draft)
            .await?;
        self.store.set_match_keys(unit, &existing.id, &keys, true).await?;
        self.store
            .queue_reviews(unit, &existing.id, &review, model_version, now)
            .await?;
        self.refresh_golden_record(unit, &person_id, now).await?;
        if person_id != current {
            self.retire_if_empty(unit, &current, &person_id, now).await?;
        }
        if let Some(how) = how {
            unit.emit(link_event(
                &existing.id,
                &person_id,
                Some(&current),
                Some(draft.organisation()),
                how,
            ));
        }
        let registration = Registration {
            person_id,
            source_record_id: existing.id,
            outcome: RegistrationOutcome::UpdatedRecord,
            pending_reviews: review.len(),
        };
        if single {
            registration.is_subject_of(unit);
        }
        Ok(registration)
    }

    /// The live person a registration may join: `person`, locked, or, when a concurrent merge
    /// emptied it meanwhile, the person it was merged into (locked in turn).
    async fn lock_live_person(&self, unit: &mut UnitOfWork, person: PersonId) -> Result<PersonId, Error> {
        let mut person = person;
        for _ in 0..4 {
            let state = self.store.lock_persons(unit, &[&person]).await?;
            match state.into_iter().next().and_then(|(_, state)| state) {
                Some(None) => return Ok(person),
                Some(Some(into)) => person = into,
                None => break,
            }
        }
        Err(Error::Conflict(
            "the person to join changed meanwhile; retry".into(),
        ))
    }

    /// The trust of each organisation's statements (its kind), which must be registered and
    /// active. Asked before a registration takes any lock: a registration that held its key
    /// locks while it waited for a second pooled connection to ask the directory (on every
    /// expiry of the directory's one-second cache) left the others waiting on its locks with
    /// every connection taken, and under load calls failed after the pool's ten seconds.
    async fn trusts_of<'a>(
        &self,
        organisations: impl IntoIterator<Item = &'a OrganisationCode>,
    ) -> Result<Trusts, Error> {
        let mut trusts = Trusts::new();
        for organisation in organisations {
            if !trusts.contains_key(organisation) {
                let found = self
                    .directory
                    .require_active_organisation("organisation_code", organisation)
                    .await?;
                trusts.insert(organisation.clone(), trust_of(Some(found.draft.kind)));
            }
        }
        Ok(trusts)
    }

    /// Re-runs matching for up to `limit` records after `after` (in id order), as if each were
    /// submitted again with its stored content, in one unit of work; in a dry run it is rolled
    /// back, so nothing changes. Records linked by hand stay.
    pub async fn rematch_batch(
        &self,
        context: &RequestContext,
        after: Option<&SourceRecordId>,
        limit: usize,
        dry_run: bool,
    ) -> Result<RematchReport, Error> {
        let records = self.store.source_records_after(after, limit).await?;
        let mut report = RematchReport {
            last: records.last().map(|r| r.id.clone()),
            ..RematchReport::default()
        };
        let action = if dry_run {
            AuditAction::RematchDryRun
        } else {
            AuditAction::Rematch
        };
        let mut subject = Subject::new(action, "source_record");
        if let Some(last) = &report.last {
            subject = subject.resource(last.as_str());
        }
        let trusts = self.trusts_of(records.iter().map(|r| &r.organisation)).await?;
        let matcher = self.matcher();
        self.access
            .audit()
            .write(context, subject, Ok(()), async |unit| {
                for record in &records {
                    let identifiers: Vec<Identifier> = record
                        .identifiers
                        .iter()
                        .filter(|i| !matches!(i.system(), IdentifierSystem::LocalPatientNumber(_)))
                        .cloned()
                        .collect();
                    let draft = SourceRecordDraft::new(
                        record.organisation.clone(),
                        &record.local_patient_number,
                        record.demographics.clone(),
                        identifiers,
                    )?;
                    let registration = self
                        .register_in(
                            unit,
                            matcher.as_ref(),
                            &draft,
                            &trusts,
                            Some(record.updated_at),
                            false,
                        )
                        .await?;
                    report.processed += 1;
                    if registration.person_id != record.person_id {
                        report.moved += 1;
                    }
                    report.pending_reviews += registration.pending_reviews;
                }
                if dry_run {
                    unit.roll_back_instead();
                }
                Ok(())
            })
            .await?;
        Ok(report)
    }
}

/// How matching decided, for the link event: linked to `best` or, when not linked, the closest
/// candidate, each with every field's agreement and weight, so that anyone can see why two
/// records were or were not linked. `matcher` is the one that decided.
fn matching_account(
    matcher: &dyn Matcher,
    candidate: Option<&PossibleMatch>,
    linked: bool,
) -> serde_json::Value {
    let compared = candidate.map(|m| {
        let explanation = matcher.explain(m.pattern, m.probability);
        json!({
            "person_id": m.person_id.as_str(),
            "source_record_id": m.source_record_id.as_str(),
            "probability": explanation.probability,
            "match_weight": explanation.weight,
            "fields": explanation.fields.iter().map(|f| json!({
                "field": f.field, "agreement": f.agreement, "weight": f.weight,
            })).collect::<Vec<_>>(),
        })
    });
    json!({
        "by": "matching",
        "model_version": matcher.model_version(),
        "new_person": !linked,
        if linked { "linked_to" } else { "closest" }: compared,
    })
}
