use std::collections::BTreeSet;
use std::sync::Arc;

use hie_access::domain::consent::DataCategory;
use hie_access::gate::Read;
use hie_access::{AccessGate, AuditEvent, Outcome};
use hie_core::context::RequestContext;
use hie_core::db::Database;
use hie_core::domain::{Identifier, IdentifierSystem, OrganisationCode};
use hie_core::page::{PageSize, PageToken, next_page};
use hie_core::{Error, time};
use hie_directory::DirectoryService;
use sqlx::AnyConnection;

use serde_json::json;

use super::golden::{MOST_TRUSTED, Statement, golden_record, trust_of};

use super::{
    CrossReference, MatchDecision, MatchThresholds, Matcher, Person, PersonId, PossibleMatch, SearchCriteria,
    SourceRecord, SourceRecordDraft, SourceRecordId, visibility,
};
use crate::store::{NewRecordWrite, PersonWrite, PopulationStore, ResolveBatcher};

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

/// The payload of a record's link event (`previous`: the person it left).
fn link_payload(
    record: &SourceRecordId,
    person: &PersonId,
    previous: Option<&PersonId>,
    how: serde_json::Value,
) -> serde_json::Value {
    json!({
        "source_record_id": record.as_str(),
        "person_id": person.as_str(),
        "previous_person_id": previous.map(PersonId::as_str),
        "how": how,
    })
}

/// Writes the outbox event of a record joining a person (`previous`: the one it left).
pub(crate) async fn link_event(
    conn: &mut AnyConnection,
    record: &SourceRecordId,
    person: &PersonId,
    previous: Option<&PersonId>,
    how: serde_json::Value,
) -> Result<(), Error> {
    let payload = link_payload(record, person, previous, how);
    hie_core::outbox::append(conn, "population.record.linked", &payload).await
}

/// The registry's operations: registration with matching (PIX feed), resolve (PIX query),
/// search (PDQ) and reads.
#[derive(Clone, Debug)]
pub struct PopulationService {
    pub(super) store: PopulationStore,
    resolver: ResolveBatcher,
    directory: DirectoryService,
    pub(super) access: AccessGate,
    /// The matcher in use; replaced when a newer model is trained ([`Self::reload_matcher`]).
    matcher: Arc<std::sync::RwLock<Arc<dyn Matcher>>>,
    thresholds: MatchThresholds,
}

/// How many times a registration starts again when a concurrent change got in its way.
const REGISTRATION_ATTEMPTS: u32 = 3;

impl PopulationService {
    pub fn new(
        database: Database,
        directory: DirectoryService,
        access: AccessGate,
        matcher: Arc<dyn Matcher>,
        thresholds: MatchThresholds,
    ) -> PopulationService {
        let store = PopulationStore::new(database);
        PopulationService {
            resolver: ResolveBatcher::new(store.clone(), access.clone()),
            store,
            directory,
            access,
            matcher: Arc::new(std::sync::RwLock::new(matcher)),
            thresholds,
        }
    }

    /// Registers or updates one source record, in one transaction.
    /// The audit event of a registration is written in the same transaction; a registration
    /// that fails leaves an event of its own.
    pub async fn register(
        &self,
        context: &RequestContext,
        draft: &SourceRecordDraft,
    ) -> Result<Registration, Error> {
        let registered = async {
            self.directory
                .require_active_organisation("organisation_code", draft.organisation())
                .await?;
            // A concurrent merge or steward's decision that changed the persons this registration
            // matched against makes it start again on what they left (a few times at most).
            let mut attempts = 0;
            loop {
                attempts += 1;
                let mut transaction = self.store.begin_write().await?;
                let registration = match self
                    .register_in(&mut transaction, draft, None, Some(context))
                    .await
                {
                    Err(Error::Conflict(_)) if attempts < REGISTRATION_ATTEMPTS => continue,
                    other => other?,
                };
                if registration.outcome == RegistrationOutcome::UpdatedRecord {
                    hie_access::store::stage_in(
                        &mut transaction,
                        &[registered_event(context, &registration)],
                    )
                    .await?;
                }
                transaction.commit().await?;
                self.access.audit().chain_staged_soon();
                break Ok(registration);
            }
        }
        .await;
        if let Err(error) = &registered {
            let event = AuditEvent::new(
                context,
                "population.register",
                None,
                "source_record",
                None,
                outcome_of(error),
            );
            self.access.audit().record(event).await?;
        }
        registered
    }

    /// Registers many records in one transaction: all of them or, on the first error, none. For
    /// bulk loads (migrations, the demo, benchmarks), where one transaction per record would be
    /// dominated by commits.
    pub async fn register_batch(
        &self,
        context: &RequestContext,
        drafts: &[SourceRecordDraft],
    ) -> Result<Vec<Registration>, Error> {
        let organisations: BTreeSet<&OrganisationCode> =
            drafts.iter().map(SourceRecordDraft::organisation).collect();
        for organisation in organisations {
            self.directory
                .require_active_organisation("organisation_code", organisation)
                .await?;
        }
        let mut transaction = self.store.begin_write().await?;
        // Every lock of the batch at once, in one sorted order: taken record by record, two
        // batches could each hold a key the other waits for.
        let mut locks: Vec<i64> = drafts
            .iter()
            .flat_map(|draft| {
                self.matcher()
                    .blocking_keys(&self.matcher().prepare(draft))
                    .into_iter()
                    .map(|k| k.0)
                    .chain([record_lock_key(draft)])
            })
            .collect();
        locks.sort_unstable();
        locks.dedup();
        self.store.lock_keys(&mut transaction, &locks).await?;
        let mut registrations = Vec::with_capacity(drafts.len());
        for draft in drafts {
            registrations.push(self.register_in(&mut transaction, draft, None, None).await?);
        }
        let events: Vec<AuditEvent> = registrations
            .iter()
            .map(|r| registered_event(context, r))
            .collect();
        hie_access::store::stage_in(&mut transaction, &events).await?;
        transaction.commit().await?;
        self.access.audit().chain_staged_soon();
        Ok(registrations)
    }

    /// Registers one record inside the caller's transaction. `content_time` is when the content
    /// was submitted, for re-matching, which must not make old content look new; `None` is now.
    async fn register_in(
        &self,
        conn: &mut AnyConnection,
        draft: &SourceRecordDraft,
        content_time: Option<chrono::DateTime<chrono::Utc>>,
        stage_for: Option<&RequestContext>,
    ) -> Result<Registration, Error> {
        // One matcher for the whole registration, whatever a reload does meanwhile.
        let matcher = self.matcher();
        let profile = matcher.prepare(draft);
        let keys = matcher.blocking_keys(&profile);
        // Lock the record's own key and its blocking keys, so that two registrations of the same
        // new resident cannot both create a person.
        let record_lock = record_lock_key(draft);
        let mut locks: Vec<i64> = keys.iter().map(|k| k.0).chain([record_lock]).collect();
        locks.sort_unstable();
        locks.dedup();
        self.store.lock_keys(conn, &locks).await?;

        let (existing, mut candidates) = self
            .store
            .match_context(
                conn,
                draft.organisation(),
                draft.local_patient_number().value(),
                &keys,
            )
            .await?;
        if let Some(existing) = &existing {
            let rejected = self.store.rejected_persons(conn, &existing.id).await?;
            candidates.retain(|c| !rejected.contains(&c.person_id));
        }
        let decision = matcher.decide(&profile, &candidates);
        let now = time::now();
        let model_version = matcher.model_version();

        let Some(existing) = existing else {
            let (person_id, outcome, review, how) = match decision {
                MatchDecision::Link { best, review } => {
                    let how = self.matching_account(Some(&best), true);
                    let person = self.lock_live_person(conn, best.person_id.clone()).await?;
                    (person, RegistrationOutcome::JoinedPerson, review, how)
                }
                MatchDecision::NewPerson { review, closest } => (
                    PersonId::generate(),
                    RegistrationOutcome::CreatedPerson,
                    review,
                    self.matching_account(closest.as_ref(), false),
                ),
            };
            let registration = Registration {
                person_id,
                source_record_id: SourceRecordId::generate(),
                outcome,
                pending_reviews: review.len(),
            };
            let audit = match stage_for {
                Some(context) => Some(hie_access::store::staged_row(&[registered_event(
                    context,
                    &registration,
                )])?),
                None => None,
            };
            let link_event = hie_core::outbox::OutboxRow::new(
                "population.record.linked",
                &link_payload(&registration.source_record_id, &registration.person_id, None, how),
            );
            // A record outranking every earlier one (a hospital's) wins each field it states, in
            // the same statement; any other joins and the golden record is recomputed.
            let person_write = if outcome == RegistrationOutcome::CreatedPerson {
                PersonWrite::Create
            } else if self.trust_of(draft.organisation()).await? >= MOST_TRUSTED {
                PersonWrite::ApplyNewest
            } else {
                PersonWrite::Leave
            };
            self.store
                .write_new_record(
                    conn,
                    &NewRecordWrite {
                        record: &registration.source_record_id,
                        person: &registration.person_id,
                        person_write,
                        draft,
                        keys: &keys,
                        link_event,
                        audit,
                        now,
                    },
                )
                .await?;
            if person_write == PersonWrite::Leave {
                self.store
                    .refresh_golden_record(conn, &registration.person_id, now)
                    .await?;
            }
            self.store
                .queue_reviews(conn, &registration.source_record_id, &review, model_version, now)
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
                    let how = self.matching_account(Some(&best), true);
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
                        .insert_person(conn, &person_id, draft.demographics(), now)
                        .await?;
                    (
                        person_id,
                        others,
                        Some(self.matching_account(closest.as_ref(), false)),
                    )
                } else {
                    (current.clone(), others, None)
                }
            }
        };
        // Take the persons in hand, then make sure nobody moved the record or merged its target
        // since it was read: a steward's link must never be overwritten by matching.
        let locked = self.store.lock_persons(conn, &[&current, &person_id]).await?;
        let target_live = locked
            .iter()
            .any(|(person, state)| *person == person_id && matches!(state, Some(None)));
        let unchanged = self.store.record_link(conn, &existing.id).await?
            == Some((current.clone(), existing.linked_manually));
        if !unchanged || !target_live {
            return Err(Error::Conflict(
                "the record or its person changed while it was being matched; retry".into(),
            ));
        }
        self.store
            .update_source_record(conn, &existing.id, &person_id, draft, content_time.unwrap_or(now))
            .await?;
        self.store
            .replace_identifiers(conn, &existing.id, &person_id, draft)
            .await?;
        self.store.set_match_keys(conn, &existing.id, &keys, true).await?;
        self.store
            .queue_reviews(conn, &existing.id, &review, model_version, now)
            .await?;
        self.store.refresh_golden_record(conn, &person_id, now).await?;
        if person_id != current {
            self.store
                .retire_if_empty(conn, &current, &person_id, now)
                .await?;
        }
        if let Some(how) = how {
            link_event(conn, &existing.id, &person_id, Some(&current), how).await?;
        }
        Ok(Registration {
            person_id,
            source_record_id: existing.id,
            outcome: RegistrationOutcome::UpdatedRecord,
            pending_reviews: review.len(),
        })
    }

    /// The live person a registration may join: `person`, locked, or, when a concurrent merge
    /// emptied it meanwhile, the person it was merged into (locked in turn).
    async fn lock_live_person(&self, conn: &mut AnyConnection, person: PersonId) -> Result<PersonId, Error> {
        let mut person = person;
        for _ in 0..4 {
            let state = self.store.lock_persons(conn, &[&person]).await?;
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

    /// The trust of an organisation's statements (its kind, from the directory, cached there).
    async fn trust_of(&self, organisation: &OrganisationCode) -> Result<u8, Error> {
        let found = self
            .directory
            .require_active_organisation("organisation_code", organisation)
            .await?;
        Ok(trust_of(Some(found.draft.kind)))
    }

    /// How matching decided, for the link event: linked to `best` or, when not linked, the
    /// closest candidate, each with every field's agreement and weight, so that anyone can see
    /// why two records were or were not linked.
    fn matching_account(&self, candidate: Option<&PossibleMatch>, linked: bool) -> serde_json::Value {
        let compared = candidate.map(|m| {
            let explanation = self.matcher().explain(m.pattern);
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
            "model_version": self.matcher().model_version(),
            "new_person": !linked,
            if linked { "linked_to" } else { "closest" }: compared,
        })
    }

    /// Re-runs matching for up to `limit` records after `after` (in id order), as if each were
    /// submitted again with its stored content, in one transaction; in a dry run the
    /// transaction is rolled back, so nothing changes. Records linked by hand stay.
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
        let mut transaction = self.store.begin_write().await?;
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
                .register_in(&mut transaction, &draft, Some(record.updated_at), None)
                .await?;
            report.processed += 1;
            if registration.person_id != record.person_id {
                report.moved += 1;
            }
            report.pending_reviews += registration.pending_reviews;
        }
        let event = AuditEvent::new(
            context,
            if dry_run {
                "population.rematch.dry_run"
            } else {
                "population.rematch"
            },
            None,
            "source_record",
            report.last.as_ref().map(|r| r.as_str().to_owned()),
            Outcome::Permitted,
        );
        if dry_run {
            transaction.rollback().await?;
            self.access.audit().record(event).await?;
        } else {
            hie_access::store::stage_in(&mut transaction, &[event]).await?;
            transaction.commit().await?;
            self.access.audit().chain_staged_soon();
        }
        Ok(report)
    }

    /// Trains a matching model on every source record in the registry and stores it as the next
    /// version, with its audit event (a data steward's or operator's act: role administrator);
    /// returns the version and the model. Running servers take it up with
    /// [`Self::reload_matcher`].
    pub async fn train_model(
        &self,
        context: &RequestContext,
        progress: &dyn super::linkage::run::Progress,
    ) -> Result<(i64, super::linkage::model::LinkageModel, usize), Error> {
        if let Err(reason) = super::decisions::stewards_only_to(context, "train the matching model") {
            // Refused before the minutes of training, and recorded as refused.
            let action = "population.model.train";
            return Err(self
                .access
                .audit()
                .refuse(context, action, ("match_model", None), reason)
                .await);
        }
        let (model, trained_on, candidate_pairs) = self.train_unsaved(progress).await?;
        let json = model.to_json();
        let version = self
            .access
            .audit()
            .audited_write(
                context,
                "population.model.train",
                ("match_model", None),
                Ok(()),
                async |conn| self.store.save_model(conn, &json, trained_on).await,
            )
            .await?;
        Ok((version, model, candidate_pairs))
    }

    /// Trains a model on every source record without storing it.
    async fn train_unsaved(
        &self,
        progress: &dyn super::linkage::run::Progress,
    ) -> Result<(super::linkage::model::LinkageModel, u64, usize), Error> {
        let mut fields = Vec::new();
        let mut after: Option<SourceRecordId> = None;
        loop {
            let batch = self.store.source_records_after(after.as_ref(), 10_000).await?;
            let Some(last) = batch.last() else { break };
            after = Some(last.id.clone());
            fields.extend(
                batch
                    .iter()
                    .map(|r| super::person_fields(&r.demographics, &r.identifiers)),
            );
        }
        if fields.len() < 2 {
            return Err(Error::precondition(
                "source_records",
                format!(
                    "the registry holds {} records; training needs at least 2",
                    fields.len()
                ),
            ));
        }
        let (profiles, _) = super::linkage::prepare_all(&fields);
        let options = super::linkage::run::RunOptions {
            rules: self.matcher().blocking_rules(),
            model: None,
            // Nothing is linked here: the run is for its model.
            threshold: f64::INFINITY,
            left_len: None,
        };
        let run = super::linkage::run::run(&profiles, &options, progress);
        Ok((run.model, profiles.len() as u64, run.candidate_pairs))
    }

    /// The matcher in use.
    pub fn matcher(&self) -> Arc<dyn Matcher> {
        self.matcher
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Takes up the newest model `hie population train` stored, if it is newer than the one in
    /// use (same thresholds and blocking rules); returns its version when it did. Servers call
    /// this periodically, so that a model trained by another process is used without a restart.
    pub async fn reload_matcher(&self) -> Result<Option<i64>, Error> {
        let current = self.matcher();
        let Some((version, json)) = self.store.latest_model().await? else {
            return Ok(None);
        };
        if version <= current.model_version() {
            return Ok(None);
        }
        let matcher =
            crate::stored_matcher(version, &json, self.thresholds)?.with_rules(current.blocking_rules());
        *self
            .matcher
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(matcher);
        Ok(Some(version))
    }

    /// The store, for operator jobs' checkpoints.
    pub fn store(&self) -> &PopulationStore {
        &self.store
    }

    /// The person with the source records linked to it.
    pub async fn person(
        &self,
        context: &RequestContext,
        id: &PersonId,
    ) -> Result<(Person, Vec<SourceRecord>), Error> {
        let person = self
            .store
            .persons(std::slice::from_ref(id))
            .await?
            .pop()
            .ok_or_else(|| Error::NotFound(format!("person {} does not exist", id.as_str())))?;
        if let Some(into) = self.store.merged_into(id).await? {
            return Err(Error::NotFound(format!(
                "person {} was merged into {}",
                id.as_str(),
                into.as_str()
            )));
        }
        let records = self.store.source_records_of(id).await?;
        self.as_seen_by(context, "population.get_person", person, records)
            .await
    }

    /// The person as the caller may see them: the records kept by sensitive organisations that
    /// the caller may not see left out (each sensitive category one audited read), and the
    /// identifiers and golden record computed from the rest. `PERMISSION_DENIED` when the caller
    /// may not read the person at all.
    async fn as_seen_by(
        &self,
        context: &RequestContext,
        action: &str,
        person: Person,
        records: Vec<SourceRecord>,
    ) -> Result<(Person, Vec<SourceRecord>), Error> {
        // Records are in organisation order: one directory look-up per organisation.
        let mut kept_by: Vec<(OrganisationCode, Option<DataCategory>, u8)> =
            Vec::with_capacity(records.len());
        for record in &records {
            let (category, trust) = match kept_by.last() {
                Some((organisation, category, trust)) if *organisation == record.organisation => {
                    (*category, *trust)
                }
                _ => {
                    let draft = self.directory.get_organisation(&record.organisation).await?.draft;
                    (draft.sensitive_category, trust_of(Some(draft.kind)))
                }
            };
            kept_by.push((record.organisation.clone(), category, trust));
        }
        let categories = visibility::sensitive_categories(
            context,
            kept_by.iter().map(|(code, category, _)| (code, *category)),
        );
        let reads: Vec<Read> = std::iter::once(DataCategory::Demographics)
            .chain(categories.iter().copied())
            .map(|category| Read {
                context,
                action,
                person_id: person.id.as_str(),
                category,
            })
            .collect();
        let mut decisions = self.access.decide_all(&reads).await?.into_iter();
        decisions
            .next()
            .unwrap_or_else(|| Err(Error::Internal("a read went undecided".into())))?;
        let permitted: Vec<DataCategory> = categories
            .iter()
            .zip(decisions)
            .filter(|(_, decision)| decision.is_ok())
            .map(|(category, _)| *category)
            .collect();
        let (records, trusts): (Vec<SourceRecord>, Vec<u8>) = records
            .into_iter()
            .zip(kept_by)
            .filter(|(record, (_, category, _))| {
                visibility::is_visible(context, &record.organisation, *category, &permitted)
            })
            .map(|(record, (_, _, trust))| (record, trust))
            .unzip();
        // The person's identifiers are those of the records the caller sees.
        let mut identifiers: Vec<Identifier> = records
            .iter()
            .flat_map(|r| r.identifiers.iter().cloned())
            .collect();
        identifiers.sort_by_key(|i| (i.system_uri(), i.value().to_owned()));
        identifiers.dedup();
        // The golden record the caller sees: from the records they may see.
        let statements: Vec<Statement<'_>> = records
            .iter()
            .zip(&trusts)
            .map(|(r, trust)| Statement {
                record: &r.id,
                demographics: &r.demographics,
                updated_at: r.updated_at,
                trust: *trust,
            })
            .collect();
        let (demographics, demographics_sources) =
            golden_record(&statements).unwrap_or_else(|| (person.demographics.clone(), Vec::new()));
        let person = Person {
            identifiers,
            demographics,
            demographics_sources,
            ..person
        };
        Ok((person, records))
    }

    /// PIX query: the person an identifier belongs to, and every identifier of that person.
    pub async fn resolve(
        &self,
        context: &RequestContext,
        identifier: &Identifier,
    ) -> Result<(PersonId, Vec<CrossReference>), Error> {
        self.resolver.resolve(context, identifier).await
    }

    /// PDQ: persons matching every criterion, in id order.
    pub async fn search(
        &self,
        context: &RequestContext,
        criteria: &SearchCriteria,
        page_size: PageSize,
        page_token: Option<PageToken>,
    ) -> Result<(Vec<Person>, Option<PageToken>), Error> {
        if criteria.is_empty() {
            return Err(Error::invalid(
                "request",
                "give at least one criterion: name, birth date, sex, division or identifier",
            ));
        }
        if let (Some(from), Some(to)) = (criteria.born_from, criteria.born_to)
            && from > to
        {
            return Err(Error::invalid(
                "birth_date_to",
                format!("{} is before birth_date_from", to.to_iso()),
            ));
        }
        let after = page_token.as_ref().map_or("", PageToken::last_key);
        let mut persons = self.store.search(criteria, after, page_size.get() + 1).await?;
        let next = next_page(&mut persons, page_size, |p| p.id.as_str());
        // Each person found sees the search in their access log; those who withheld consent
        // from the caller are left out of the page (and their log says so).
        let ids: Vec<String> = persons.iter().map(|p| p.id.as_str().to_owned()).collect();
        let visible = self
            .access
            .filter(context, "population.search", &ids, DataCategory::Demographics)
            .await?;
        let mut visible = visible.into_iter();
        persons.retain(|_| visible.next().unwrap_or(false));
        // A search finds people; it never shows that someone is a patient of an organisation
        // whose records reveal a sensitive category (GetPerson does, with consent).
        let mut sensitive: BTreeSet<OrganisationCode> = BTreeSet::new();
        let mut checked: BTreeSet<OrganisationCode> = BTreeSet::new();
        for person in &persons {
            for identifier in &person.identifiers {
                if let IdentifierSystem::LocalPatientNumber(organisation) = identifier.system()
                    && checked.insert(organisation.clone())
                    && self
                        .directory
                        .get_organisation(organisation)
                        .await?
                        .draft
                        .sensitive_category
                        .is_some()
                    && context.organisation.as_ref() != Some(organisation)
                {
                    sensitive.insert(organisation.clone());
                }
            }
        }
        // A person with records at such organisations is shown as the caller may see them: the
        // demographics from the visible records only, and found only if a visible record (and
        // a visible identifier) meets the criteria, so that neither the answer nor its absence
        // tells what a hidden record says.
        let mut shown = Vec::with_capacity(persons.len());
        for person in persons {
            let keeps_hidden = person.identifiers.iter().any(|identifier| {
                matches!(identifier.system(), IdentifierSystem::LocalPatientNumber(o) if sensitive.contains(o))
            });
            if !keeps_hidden {
                shown.push(person);
                continue;
            }
            let records = self.store.source_records_of(&person.id).await?;
            let Ok((person, records)) = self
                .as_seen_by(context, "population.search", person, records)
                .await
            else {
                continue;
            };
            if criteria.met_by(&records, &person.identifiers) {
                shown.push(person);
            }
        }
        Ok((shown, next))
    }
}

fn registered_event(context: &RequestContext, registration: &Registration) -> AuditEvent {
    AuditEvent::new(
        context,
        "population.register",
        Some(registration.person_id.as_str().to_owned()),
        "source_record",
        Some(registration.source_record_id.as_str().to_owned()),
        Outcome::Permitted,
    )
}

/// How a failed call is recorded: a refusal as denied, anything else as failed.
fn outcome_of(error: &Error) -> Outcome {
    Outcome::of_error(error)
}
