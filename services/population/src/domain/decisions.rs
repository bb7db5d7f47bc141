//! A person's decisions about links: the review queue, manual link and unlink, merge and unmerge.
//! They are for the region's data stewards (role administrator). Each records who, why and when,
//! writes its audit event and its outbox event in its own transaction, and marks the records it
//! moves as linked by hand, so that automatic matching never undoes it.

use chrono::{DateTime, Utc};
use hie_access::ConsentStore;
use hie_access::{Outcome, Subject, UnitOfWork};
use hie_core::context::RequestContext;
use hie_core::outbox::OutboxEvent;
use hie_core::page::{PageSize, PageToken, next_page};
use hie_core::vocabulary::{AuditAction, EventType};
use hie_core::{Error, time};
use serde_json::json;

use super::matching::Explanation;
use super::service::link_event;
use super::{PersonId, PopulationService, SourceRecordId};
use crate::store::ReviewRow;

/// The longest reason accepted, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// Where a review stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewStatus {
    Pending,
    Linked,
    Rejected,
}

impl ReviewStatus {
    pub fn code(self) -> &'static str {
        match self {
            ReviewStatus::Pending => "pending",
            ReviewStatus::Linked => "linked",
            ReviewStatus::Rejected => "rejected",
        }
    }

    fn parse(code: &str) -> Result<ReviewStatus, Error> {
        match code {
            "pending" => Ok(ReviewStatus::Pending),
            "linked" => Ok(ReviewStatus::Linked),
            "rejected" => Ok(ReviewStatus::Rejected),
            _ => Err(Error::Internal("a stored review status does not parse".into())),
        }
    }
}

/// A possible match, with why it scored as it did.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub id: ReviewId,
    pub source_record_id: SourceRecordId,
    pub candidate_person_id: PersonId,
    pub candidate_record_id: SourceRecordId,
    pub probability: f64,
    pub explanation: Explanation,
    pub model_version: i64,
    pub status: ReviewStatus,
    pub created_at: DateTime<Utc>,
}

/// A steward's verdict on a review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewDecision {
    Link,
    Reject,
}

hie_core::id_type!(
    /// The id of a possible match waiting for a steward's decision.
    ReviewId,
    "review"
);

hie_core::id_type!(
    /// The id of a merge, by which a steward undoes it.
    MergeId,
    "merge"
);

/// What a merge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    pub id: MergeId,
    pub moved: Vec<SourceRecordId>,
}

/// A merge as recorded, so that an unmerge can give back exactly what it took: the records it
/// moved, each with whether a person had linked it by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeRecord {
    pub id: MergeId,
    pub from: PersonId,
    pub into: PersonId,
    pub moved: Vec<(SourceRecordId, bool)>,
    pub merged_at: DateTime<Utc>,
    pub merged_by: String,
    pub reason: String,
    pub unmerged_at: Option<DateTime<Utc>>,
}

/// What stewards' decisions are, for a refusal's reason.
const DECIDE_LINKS: &str = "decide links";

/// A decision's reason: required, and short enough to store.
pub fn reason(text: &str) -> Result<String, Error> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::invalid("reason", "must say why the decision was made"));
    }
    let n = text.chars().count();
    if n > MAX_REASON_CHARS {
        return Err(Error::invalid(
            "reason",
            format!("is {n} characters long, at most {MAX_REASON_CHARS} are allowed"),
        ));
    }
    Ok(text.to_owned())
}

fn stored<T>(parsed: Result<T, hie_core::FieldError>) -> Result<T, Error> {
    parsed.map_err(|_| Error::Internal("a stored id does not parse".into()))
}

impl PopulationService {
    fn review_of(&self, row: ReviewRow) -> Result<Review, Error> {
        let pattern = u32::try_from(row.pattern)
            .map_err(|_| Error::Internal("a stored match pattern is out of range".into()))?;
        Ok(Review {
            id: stored(ReviewId::parse(&row.id))?,
            source_record_id: stored(SourceRecordId::parse(&row.source_record_id))?,
            candidate_person_id: stored(PersonId::parse(&row.candidate_person_id))?,
            candidate_record_id: stored(SourceRecordId::parse(&row.candidate_record_id))?,
            probability: row.probability,
            explanation: self.matcher().explain(pattern, row.probability),
            model_version: row.model_version,
            status: ReviewStatus::parse(&row.status)?,
            created_at: time::from_micros(row.created_at),
        })
    }

    /// Runs a steward's change as one unit of work with its audit event (role administrator
    /// only); a refused or failed change leaves an event of its own.
    async fn steward_change<T>(
        &self,
        context: &RequestContext,
        subject: Subject,
        change: impl AsyncFnOnce(&mut UnitOfWork) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.access
            .audit()
            .write(
                context,
                subject,
                context.administrators_only(DECIDE_LINKS),
                change,
            )
            .await
    }

    /// Pending reviews, oldest first.
    pub async fn pending_reviews(
        &self,
        context: &RequestContext,
        page_size: PageSize,
        page_token: Option<PageToken>,
    ) -> Result<(Vec<Review>, Option<PageToken>), Error> {
        let subject = Subject::new(AuditAction::ListMatchReviews, "match_review");
        if let Err(reason) = context.administrators_only(DECIDE_LINKS) {
            return Err(self.access.audit().refuse(context, &subject, reason).await);
        }
        let rows = self
            .store
            .pending_reviews(
                page_token.as_ref().map(PageToken::last_key),
                page_size.get() as usize + 1,
            )
            .await?;
        let mut reviews = rows
            .into_iter()
            .map(|r| self.review_of(r))
            .collect::<Result<Vec<_>, _>>()?;
        let next = next_page(&mut reviews, page_size, |r| r.id.as_str());
        self.access
            .audit()
            .record(subject.event(context, Outcome::Permitted))
            .await?;
        Ok((reviews, next))
    }

    /// Links or rejects a pending review. Returns the review as decided and the record's person.
    pub async fn decide_review(
        &self,
        context: &RequestContext,
        review_id: &ReviewId,
        decision: ReviewDecision,
        why: &str,
    ) -> Result<(Review, PersonId), Error> {
        let why = reason(why)?;
        let action = match decision {
            ReviewDecision::Link => AuditAction::LinkByReview,
            ReviewDecision::Reject => AuditAction::RejectReview,
        };
        let subject = Subject::new(action, "match_review").resource(review_id.as_str());
        self.steward_change(context, subject, async |unit| {
            let row = self
                .store
                .review(unit, review_id.as_str())
                .await?
                .ok_or_else(|| Error::NotFound(format!("review {review_id} does not exist")))?;
            if row.status != "pending" {
                return Err(Error::precondition(
                    "review_id",
                    format!(
                        "was already decided ({}) by {} at {}",
                        row.status,
                        row.decided_by.as_deref().unwrap_or("?"),
                        row.decided_at.map(|t| time::from_micros(t).to_rfc3339()).unwrap_or_default()
                    ),
                ));
            }
            let mut review = self.review_of(row)?;
            let now = time::now();
            let person = match decision {
                ReviewDecision::Link => {
                    let (current, _) = self.record_link(unit, &review.source_record_id).await?;
                    self.require_live_person(unit, &review.candidate_person_id, "review_id").await?;
                    self.move_record_by_hand(
                        unit,
                        &review.source_record_id,
                        &current,
                        &review.candidate_person_id,
                        json!({"by": "review", "review_id": review.id.as_str(), "user": context.user_id, "reason": why}),
                        now,
                    )
                    .await?;
                    review.status = ReviewStatus::Linked;
                    review.candidate_person_id.clone()
                }
                ReviewDecision::Reject => {
                    review.status = ReviewStatus::Rejected;
                    self.record_link(unit, &review.source_record_id).await?.0
                }
            };
            let decided = self.store.decide_review(unit, review_id.as_str(), review.status.code(), &context.user_id, &why, now).await?;
            if !decided {
                return Err(Error::precondition("review_id", "was decided by someone else meanwhile"));
            }
            unit.concerns(Some(&person), None);
            Ok((review, person))
        })
        .await
    }

    /// Links a record to a person by hand; returns the person it left.
    pub async fn link_record(
        &self,
        context: &RequestContext,
        record: &SourceRecordId,
        person: &PersonId,
        why: &str,
    ) -> Result<PersonId, Error> {
        let why = reason(why)?;
        self.steward_change(
            context,
            Subject::new(AuditAction::LinkSourceRecord, "source_record").resource(record.as_str()),
            async |unit| {
                let current = self.record_link_locked(unit, record, Some(person)).await?;
                if &current == person {
                    return Err(Error::precondition(
                        "person_id",
                        "the record is already linked to this person",
                    ));
                }
                self.require_live_person(unit, person, "person_id").await?;
                let how = json!({"by": "manual link", "user": context.user_id, "reason": why});
                let emptied = self.store.record_links_of(unit, &current).await?.len() < 2;
                self.move_record_by_hand(unit, record, &current, person, how, time::now())
                    .await?;
                if emptied {
                    // The person it left is now merged into the one it joined: like a merge,
                    // their directives combine.
                    self.combine_consent(unit, &current, person, &context.user_id)
                        .await?;
                }
                unit.concerns(Some(person), None);
                Ok(current)
            },
        )
        .await
    }

    /// Takes a record from its person to a new person of its own; returns the new person.
    pub async fn unlink_record(
        &self,
        context: &RequestContext,
        record: &SourceRecordId,
        why: &str,
    ) -> Result<PersonId, Error> {
        let why = reason(why)?;
        self.steward_change(
            context,
            Subject::new(AuditAction::UnlinkSourceRecord, "source_record").resource(record.as_str()),
            async |unit| {
                let current = self.record_link_locked(unit, record, None).await?;
                if self.store.record_links_of(unit, &current).await?.len() < 2 {
                    return Err(Error::precondition(
                        "source_record_id",
                        "is the only record of its person: there is nothing to unlink it from",
                    ));
                }
                let now = time::now();
                let person = PersonId::generate();
                let demographics = self
                    .store
                    .source_record_demographics(unit, record)
                    .await?
                    .ok_or_else(|| Error::Internal("a record vanished inside its transaction".into()))?;
                self.store
                    .insert_person(unit, &person, &demographics, now)
                    .await?;
                // The record's patient said what they said: the new person starts with the same
                // directives.
                let consent = self.access.consent();
                if let Some(directives) = consent.directives_in(unit, &current).await? {
                    consent
                        .set_in(unit, &person, &directives, &context.user_id)
                        .await?;
                }
                let how = json!({"by": "manual unlink", "user": context.user_id, "reason": why});
                self.move_record_by_hand(unit, record, &current, &person, how, now)
                    .await?;
                unit.concerns(Some(&person), None);
                Ok(person)
            },
        )
        .await
    }

    /// Merges `from` into `into`: every record of `from` moves; `from` stays, empty, as merged.
    pub async fn merge_persons(
        &self,
        context: &RequestContext,
        from: &PersonId,
        into: &PersonId,
        why: &str,
    ) -> Result<Merge, Error> {
        if from == into {
            return Err(Error::invalid(
                "into_person_id",
                "is the person being merged: a person cannot be merged into itself",
            ));
        }
        let why = reason(why)?;
        self.steward_change(
            context,
            Subject::new(AuditAction::MergePersons, "person").resource(from.as_str()),
            async |unit| {
                // Both persons in hand first: a concurrent registration, or the opposite merge,
                // waits, and what follows reads them as they are.
                self.store.lock_persons(unit, &[from, into]).await?;
                self.require_live_person(unit, from, "from_person_id").await?;
                self.require_live_person(unit, into, "into_person_id").await?;
                let now = time::now();
                let records = self.store.record_links_of(unit, from).await?;
                for (record, _) in &records {
                    self.store.move_record(unit, record, into, true).await?;
                }
                self.store.set_merged_into(unit, from, Some(into), now).await?;
                let merge = MergeRecord {
                    id: MergeId::generate(),
                    from: from.clone(),
                    into: into.clone(),
                    moved: records.clone(),
                    merged_at: now,
                    merged_by: context.user_id.clone(),
                    reason: why.clone(),
                    unmerged_at: None,
                };
                self.store.insert_merge(unit, &merge).await?;
                if let Some(consent) = self.combine_consent(unit, from, into, &context.user_id).await? {
                    self.store.set_merge_consent(unit, merge.id.as_str(), &consent).await?;
                }
                self.refresh_golden_record(unit, into, now).await?;
                let payload = json!({
                    "merge_id": merge.id.as_str(), "from_person_id": from.as_str(), "into_person_id": into.as_str(),
                    "source_record_ids": records.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(),
                    "user": context.user_id, "reason": why,
                });
                unit.emit(OutboxEvent::new(EventType::PersonMerged, Some(into), None, &payload));
                unit.concerns(Some(into), None);
                let moved = records.into_iter().map(|(r, _)| r).collect();
                Ok(Merge { id: merge.id, moved })
            },
        )
        .await
    }

    /// Undoes a merge: the records it moved go back to the merged person with the flags they
    /// had, wherever they are now; returns them.
    pub async fn unmerge_persons(
        &self,
        context: &RequestContext,
        merge_id: &MergeId,
        why: &str,
    ) -> Result<Vec<SourceRecordId>, Error> {
        let why = reason(why)?;
        self.steward_change(
            context,
            Subject::new(AuditAction::UnmergePersons, "person_merge").resource(merge_id.as_str()),
            async |unit| {
                let merge = self
                    .store
                    .merge(unit, merge_id.as_str())
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("merge {merge_id} does not exist")))?;
                if let Some(at) = merge.unmerged_at {
                    return Err(Error::precondition(
                        "merge_id",
                        format!("was already undone at {}", at.to_rfc3339()),
                    ));
                }
                let (from, into) = (merge.from, merge.into);
                self.store.lock_persons(unit, &[&from, &into]).await?;
                let now = time::now();
                let mut restored = Vec::with_capacity(merge.moved.len());
                let mut left = vec![into.clone()];
                for (record, manual) in merge.moved {
                    if let Some((now_with, _)) = self.store.record_link(unit, &record).await?
                        && !left.contains(&now_with)
                    {
                        left.push(now_with);
                    }
                    self.store.move_record(unit, &record, &from, manual).await?;
                    restored.push(record);
                }
                self.store.set_merged_into(unit, &from, None, now).await?;
                self.restore_consent(unit, merge_id.as_str(), &into, &context.user_id)
                    .await?;
                if !self
                    .store
                    .mark_unmerged(unit, merge_id.as_str(), &context.user_id, &why, now)
                    .await?
                {
                    return Err(Error::precondition(
                        "merge_id",
                        "was undone by someone else meanwhile",
                    ));
                }
                self.refresh_golden_record(unit, &from, now).await?;
                for person in &left {
                    self.refresh_golden_record(unit, person, now).await?;
                }
                let payload = json!({
                    "merge_id": merge_id.as_str(), "from_person_id": from.as_str(), "into_person_id": into.as_str(),
                    "source_record_ids": restored.iter().map(SourceRecordId::as_str).collect::<Vec<_>>(),
                    "user": context.user_id, "reason": why,
                });
                unit.emit(OutboxEvent::new(EventType::PersonUnmerged, Some(&from), None, &payload));
                unit.concerns(Some(&from), None);
                Ok(restored)
            },
        )
        .await
    }

    /// Gives `into` the most restrictive combination of both persons' consent directives (when
    /// either set any); returns what to keep beside the merge for an unmerge.
    pub(super) async fn combine_consent(
        &self,
        unit: &mut UnitOfWork,
        from: &PersonId,
        into: &PersonId,
        user: &str,
    ) -> Result<Option<String>, Error> {
        let consent = self.access.consent();
        let from_directives = consent.directives_in(unit, from).await?;
        let before = consent.directives_in(unit, into).await?;
        if from_directives.is_none() && before.is_none() {
            return Ok(None);
        }
        let after = from_directives
            .unwrap_or_default()
            .most_restrictive(&before.clone().unwrap_or_default());
        consent.set_in(unit, into, &after, user).await?;
        Ok(Some(
            json!({
                "before": before.as_ref().map(ConsentStore::to_json),
                "after": ConsentStore::to_json(&after),
            })
            .to_string(),
        ))
    }

    /// On unmerge: the surviving person gets back the directives it had before the merge, unless
    /// they were changed since (then the newer choice stands). The merged person's own were never
    /// touched.
    async fn restore_consent(
        &self,
        unit: &mut UnitOfWork,
        merge_id: &str,
        into: &PersonId,
        user: &str,
    ) -> Result<(), Error> {
        let Some(kept) = self.store.merge_consent(unit, merge_id).await? else {
            return Ok(());
        };
        let kept: serde_json::Value = serde_json::from_str(&kept)
            .map_err(|_| Error::Internal("a stored merge does not parse".into()))?;
        let consent = self.access.consent();
        let after = ConsentStore::from_json(kept["after"].as_str().unwrap_or("{}"))?;
        if consent.directives_in(unit, into).await? != Some(after) {
            return Ok(());
        }
        let before = match kept["before"].as_str() {
            Some(json) => ConsentStore::from_json(json)?,
            None => Default::default(),
        };
        consent.set_in(unit, into, &before, user).await
    }

    /// The person a record is linked to, with that person (and `to`, when given) locked; a record
    /// moved by someone else in between is a conflict to retry.
    pub(super) async fn record_link_locked(
        &self,
        unit: &mut UnitOfWork,
        record: &SourceRecordId,
        to: Option<&PersonId>,
    ) -> Result<PersonId, Error> {
        let (current, _) = self.record_link(unit, record).await?;
        let mut persons = vec![&current];
        persons.extend(to);
        self.store.lock_persons(unit, &persons).await?;
        if self.record_link(unit, record).await?.0 != current {
            return Err(Error::Conflict(
                "the record was moved by someone else meanwhile; retry".into(),
            ));
        }
        Ok(current)
    }

    async fn record_link(
        &self,
        unit: &mut UnitOfWork,
        record: &SourceRecordId,
    ) -> Result<(PersonId, bool), Error> {
        self.store
            .record_link(unit, record)
            .await?
            .ok_or_else(|| Error::NotFound(format!("source record {} does not exist", record.as_str())))
    }

    async fn require_live_person(
        &self,
        unit: &mut UnitOfWork,
        person: &PersonId,
        field: &str,
    ) -> Result<(), Error> {
        match self.store.person_state(unit, person).await? {
            None => Err(Error::NotFound(format!(
                "person {} does not exist",
                person.as_str()
            ))),
            Some(Some(into)) => Err(Error::precondition(
                field,
                format!("person {} was merged into {}", person.as_str(), into.as_str()),
            )),
            Some(None) => Ok(()),
        }
    }

    pub(super) async fn move_record_by_hand(
        &self,
        unit: &mut UnitOfWork,
        record: &SourceRecordId,
        from: &PersonId,
        to: &PersonId,
        how: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        self.store.move_record(unit, record, to, true).await?;
        self.refresh_golden_record(unit, to, now).await?;
        self.retire_if_empty(unit, from, to, now).await?;
        unit.emit(link_event(record, to, Some(from), None, how));
        Ok(())
    }
}
