//! Documents: register a submission set (XDS.b Register, all or nothing), find (the stored
//! query) and retrieve (from the exchange or the hospital, checked against the registered hash).

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use hie_access::{Outcome, Subject, UnitOfWork, require_patient_is_one_of};
use hie_core::context::{RequestContext, Role};
use hie_core::domain::{Icd10Code, Identifier, OrganisationCode};
use hie_core::id::PersonId;
use hie_core::outbox::OutboxEvent;
use hie_core::page::{PageSize, PageToken, next_page_by};
use hie_core::vocabulary::{AuditAction, EventType};
use hie_core::{Error, time};
use hie_population::domain::{Lineage, PersonSelector};
use serde_json::json;

use super::service::Item;
use super::{
    AssociationKind, AvailabilityStatus, Confidentiality, Document, DocumentId, EmrService,
    MAX_DOCUMENTS_PER_SET, SubmissionSet,
};
use crate::store::document_page_key;
use hie_core::digest::sha256_hex;

/// What a registration did.
#[derive(Debug, Clone)]
pub struct Registered {
    pub documents: Vec<Document>,
    pub deprecated: Vec<String>,
    /// False when the same submission set was registered before.
    pub changed: bool,
}

/// The stored query's filters.
#[derive(Debug, Clone)]
pub struct DocumentQuery {
    pub person: PersonSelector,
    /// Approved only when empty.
    pub statuses: Vec<AvailabilityStatus>,
    pub class_codes: Vec<String>,
    pub type_codes: Vec<String>,
    pub creation_from: Option<DateTime<Utc>>,
    pub creation_to: Option<DateTime<Utc>>,
    pub service_from: Option<DateTime<Utc>>,
    pub service_to: Option<DateTime<Utc>>,
    pub author_institutions: Vec<OrganisationCode>,
    pub event_codes: Vec<Icd10Code>,
    pub confidentiality: Vec<Confidentiality>,
    pub page_size: PageSize,
    pub page_token: Option<PageToken>,
}

/// A retrieved document.
#[derive(Debug, Clone)]
pub struct Retrieved {
    pub document: Document,
    pub content: Vec<u8>,
    /// `None` when the exchange kept the content.
    pub retrieved_from: Option<OrganisationCode>,
}

/// The roles whose systems register documents.
const REGISTERING_ROLES: [Role; 3] = [Role::Clinician, Role::Nurse, Role::Administrator];

impl EmrService {
    /// Checks a submission set that needs nothing but itself: sizes, hashes, ids and
    /// associations within the set.
    fn check_set(&self, set: &SubmissionSet) -> Result<(), Error> {
        let id = &set.unique_id;
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid(
                "submission_set_unique_id",
                "expected 1 to 128 printable ASCII characters",
            ));
        }
        if set.documents.is_empty() || set.documents.len() > MAX_DOCUMENTS_PER_SET {
            return Err(Error::invalid(
                "documents",
                format!(
                    "has {} documents, expected 1 to {MAX_DOCUMENTS_PER_SET}",
                    set.documents.len()
                ),
            ));
        }
        let mut ids = BTreeSet::new();
        for (i, submission) in set.documents.iter().enumerate() {
            let field = format!("documents[{i}]");
            let metadata = &submission.metadata;
            metadata.check(&format!("{field}.entry"))?;
            if !ids.insert(metadata.unique_id.as_str()) {
                return Err(Error::invalid(
                    format!("{field}.entry.unique_id"),
                    "appears twice in the submission set",
                ));
            }
            match (&submission.content, &metadata.repository) {
                (Some(content), None) => {
                    if content.len() > self.max_content_bytes {
                        return Err(Error::invalid(
                            format!("{field}.content"),
                            format!(
                                "is {} bytes, more than the {} bytes the exchange keeps; keep it at the hospital \
                                 (repository_organisation_code) instead",
                                content.len(),
                                self.max_content_bytes
                            ),
                        ));
                    }
                    if i64::try_from(content.len()).ok() != Some(metadata.size) {
                        return Err(Error::invalid(
                            format!("{field}.entry.size"),
                            format!("is {}, the content is {} bytes", metadata.size, content.len()),
                        ));
                    }
                    let hash = sha256_hex(content);
                    if hash != metadata.hash {
                        return Err(Error::invalid(
                            format!("{field}.entry.hash"),
                            format!("does not match the content, whose SHA-256 is {hash}"),
                        ));
                    }
                }
                (None, Some(repository)) if *repository != set.source_organisation => {
                    return Err(Error::invalid(
                        format!("{field}.entry.repository_organisation_code"),
                        format!(
                            "is {repository}: an organisation registers only documents it keeps itself ({})",
                            set.source_organisation
                        ),
                    ));
                }
                (None, Some(_)) => {}
                (Some(_), Some(_)) => {
                    return Err(Error::invalid(
                        format!("{field}.content"),
                        "give the content or a repository_organisation_code, not both",
                    ));
                }
                (None, None) => {
                    return Err(Error::invalid(
                        format!("{field}.content"),
                        "is required unless the entry names the hospital keeping it (repository_organisation_code)",
                    ));
                }
            }
        }
        let mut replaced = BTreeSet::new();
        for (i, association) in set.associations.iter().enumerate() {
            let field = format!("associations[{i}]");
            if !ids.contains(association.source_unique_id.as_str()) {
                return Err(Error::invalid(
                    format!("{field}.source_unique_id"),
                    "is not a document of this submission set",
                ));
            }
            if ids.contains(association.target_unique_id.as_str()) {
                return Err(Error::invalid(
                    format!("{field}.target_unique_id"),
                    "is a document of this submission set; the target must be registered already",
                ));
            }
            if association.kind == AssociationKind::Replace
                && !replaced.insert(association.target_unique_id.as_str())
            {
                return Err(Error::invalid(
                    format!("{field}.target_unique_id"),
                    "is replaced twice in this submission set",
                ));
            }
        }
        Ok(())
    }

    /// Registers a submission set: every document and association, or (on any error) nothing.
    pub async fn register_set(
        &self,
        context: &RequestContext,
        set: SubmissionSet,
    ) -> Result<Registered, Error> {
        self.check_set(&set)?;
        self.directory
            .require_active_organisation("source_organisation_code", &set.source_organisation)
            .await?;
        let mut organisations: BTreeSet<(&str, &OrganisationCode)> = BTreeSet::new();
        for submission in &set.documents {
            organisations.insert(("author.institution", &submission.metadata.author.institution));
            if let Some(repository) = &submission.metadata.repository {
                organisations.insert(("repository_organisation_code", repository));
            }
        }
        for (field, organisation) in organisations {
            self.directory
                .require_active_organisation(&format!("documents.entry.{field}"), organisation)
                .await?;
        }
        let subject =
            Subject::new(AuditAction::RegisterDocumentSet, "submission_set").resource(set.unique_id.clone());
        // The role is checked before any patient is looked up, as for archive entries.
        let permitted = context.role_among(&REGISTERING_ROLES, "register documents");
        self.access
            .audit()
            .write_retrying(context, subject, permitted, 3, || {
                async |unit: &mut UnitOfWork| {
                    // Before any store write, so the unit's transaction has not begun.
                    let persons = self.source_patients(context, &set).await?;
                    let first = set
                        .documents
                        .first()
                        .and_then(|d| persons.get(&d.metadata.source_patient));
                    unit.concerns(first, None);
                    self.register_in(unit, context, &set, &persons).await
                }
            })
            .await
    }

    /// The person of each source patient of a set: each resolved once, all at once (the
    /// registry batches concurrent resolves into one query). An unknown one is `NOT_FOUND`,
    /// naming the first document that names it.
    async fn source_patients(
        &self,
        context: &RequestContext,
        set: &SubmissionSet,
    ) -> Result<HashMap<Identifier, PersonId>, Error> {
        let mut patients: Vec<&Identifier> =
            set.documents.iter().map(|d| &d.metadata.source_patient).collect();
        patients.sort_by_key(|p| (p.system_uri(), p.value().to_owned()));
        patients.dedup();
        let selectors: Vec<PersonSelector> = patients
            .iter()
            .map(|patient| PersonSelector::Identifier((*patient).clone()))
            .collect();
        let resolved = futures_util::future::join_all(
            selectors
                .iter()
                .map(|selector| self.population.lineage(context, selector)),
        )
        .await;
        let mut persons: HashMap<Identifier, PersonId> = HashMap::with_capacity(patients.len());
        for (patient, lineage) in patients.into_iter().zip(resolved) {
            let lineage = lineage.map_err(|error| match error {
                // Which document's patient is unknown, so that the hospital can find it.
                Error::NotFound(reason) => {
                    let i = set
                        .documents
                        .iter()
                        .position(|d| &d.metadata.source_patient == patient)
                        .unwrap_or_default();
                    Error::NotFound(format!("documents[{i}].entry.source_patient_id: {reason}"))
                }
                other => other,
            })?;
            persons.insert(patient.clone(), lineage.person);
        }
        Ok(persons)
    }

    async fn register_in(
        &self,
        unit: &mut UnitOfWork,
        context: &RequestContext,
        set: &SubmissionSet,
        persons: &HashMap<Identifier, PersonId>,
    ) -> Result<Registered, Error> {
        if let Some(previous) = self.store.documents_of_set(unit, &set.unique_id).await? {
            // The same set again (a retry) changes nothing; another set under its id is refused.
            let same = previous.len() == set.documents.len()
                && previous
                    .iter()
                    .zip(&set.documents)
                    .all(|(registered, submitted)| {
                        registered.metadata.unique_id == submitted.metadata.unique_id
                            && registered.metadata.hash == submitted.metadata.hash
                    });
            if !same {
                return Err(Error::AlreadyExists(format!(
                    "submission set {} is registered already, with other documents",
                    set.unique_id
                )));
            }
            return Ok(Registered {
                documents: previous,
                deprecated: Vec::new(),
                changed: false,
            });
        }
        let now = time::now();
        let unique_ids: Vec<&str> = set
            .documents
            .iter()
            .map(|d| d.metadata.unique_id.as_str())
            .collect();
        let registered = self.store.documents_by_unique_ids(unit, &unique_ids).await?;
        if let Some(existing) = registered.first() {
            let i = unique_ids
                .iter()
                .position(|id| *id == existing.metadata.unique_id)
                .unwrap_or_default();
            let what = if existing.metadata.hash == set.documents[i].metadata.hash {
                "with the same content"
            } else {
                "with different content"
            };
            return Err(Error::AlreadyExists(format!(
                "documents[{i}].entry.unique_id: document {} is registered already, {what}",
                existing.metadata.unique_id
            )));
        }
        let mut documents = Vec::with_capacity(set.documents.len());
        for submission in &set.documents {
            let metadata = &submission.metadata;
            let person = persons
                .get(&metadata.source_patient)
                .cloned()
                .ok_or_else(|| Error::Internal("a source patient was not resolved".into()))?;
            documents.push(Document {
                id: DocumentId::generate(),
                person_id: person,
                source_organisation: set.source_organisation.clone(),
                metadata: metadata.clone(),
                status: AvailabilityStatus::Approved,
                registered_at: now,
            });
        }
        let mut deprecated = Vec::new();
        let mut associations = Vec::with_capacity(set.associations.len());
        for (i, association) in set.associations.iter().enumerate() {
            let field = format!("associations[{i}].target_unique_id");
            let target = self
                .store
                .document_by_unique_id(Some(unit), &association.target_unique_id)
                .await?
                .ok_or_else(|| {
                    Error::precondition(
                        &field,
                        format!("document {} is not registered", association.target_unique_id),
                    )
                })?;
            let source = documents
                .iter()
                .find(|d| d.metadata.unique_id == association.source_unique_id)
                .ok_or_else(|| Error::Internal("an association's source left the set".into()))?;
            let same_person = self
                .population
                .lineage(context, &PersonSelector::Id(target.person_id.clone()))
                .await?
                .person
                == source.person_id;
            if !same_person {
                return Err(Error::precondition(
                    &field,
                    "the target document is another person's",
                ));
            }
            if target.status == AvailabilityStatus::Deprecated {
                return Err(Error::precondition(
                    &field,
                    format!("document {} is deprecated already", association.target_unique_id),
                ));
            }
            if association.kind == AssociationKind::Replace {
                self.store.deprecate(unit, &target.id, now).await?;
                deprecated.push(target.metadata.unique_id.clone());
                unit.emit(OutboxEvent::new(
                    EventType::DocumentReplaced,
                    Some(&source.person_id),
                    Some(&set.source_organisation),
                    &json!({
                        "document_id": source.id.as_str(),
                        "unique_id": source.metadata.unique_id,
                        "replaced_document_id": target.id.as_str(),
                        "replaced_unique_id": target.metadata.unique_id,
                    }),
                ));
            }
            associations.push((association.kind, source.id.clone(), target.id.clone()));
        }
        self.store
            .insert_set(
                unit,
                &set.unique_id,
                &set.source_organisation,
                now,
                &context.user_id,
            )
            .await?;
        let contents: Vec<Option<&[u8]>> = set.documents.iter().map(|s| s.content.as_deref()).collect();
        self.store
            .insert_documents(unit, &set.unique_id, &documents, &contents)
            .await?;
        for document in &documents {
            unit.emit(OutboxEvent::new(
                EventType::DocumentRegistered,
                Some(&document.person_id),
                Some(&set.source_organisation),
                &json!({
                    "document_id": document.id.as_str(),
                    "unique_id": document.metadata.unique_id,
                    "class_code": document.metadata.class_code.code,
                    "type_code": document.metadata.type_code.code,
                    "event_codes": document.metadata.event_codes.iter().map(Icd10Code::as_str).collect::<Vec<_>>(),
                    "confidentiality": document.metadata.confidentiality.code(),
                }),
            ));
        }
        for (kind, source, target) in &associations {
            self.store
                .insert_association(unit, *kind, source, target, &set.unique_id, now)
                .await?;
        }
        unit.concerns(documents.first().map(|d| &d.person_id), None);
        Ok(Registered {
            documents,
            deprecated,
            changed: true,
        })
    }

    /// The person a registered document is filed under, `None` when no document has that unique
    /// id: for a service that checks a reference to a document (a consult's attachments) before
    /// anyone reads it. Not a read of the document.
    pub async fn person_of_document(&self, unique_id: &str) -> Result<Option<PersonId>, Error> {
        Ok(self
            .store
            .document_by_unique_id(None, unique_id)
            .await?
            .map(|document| document.person_id))
    }

    /// The stored query: the person's documents as the caller may see them, newest first; with
    /// the surviving person, the next page and whether consent withheld any.
    pub async fn find_documents(
        &self,
        context: &RequestContext,
        query: &DocumentQuery,
    ) -> Result<(PersonId, Vec<Document>, Option<PageToken>, bool), Error> {
        for (from, to, field) in [
            (query.creation_from, query.creation_to, "creation_to"),
            (query.service_from, query.service_to, "service_to"),
        ] {
            if let (Some(from), Some(to)) = (from, to)
                && to < from
            {
                return Err(Error::invalid(field, "is before the period's start"));
            }
        }
        let lineage = self.population.lineage(context, &query.person).await?;
        require_patient_is_one_of(context, &lineage.members)?;
        let size = query.page_size.get() as usize;
        let mut documents = self
            .store
            .find(
                &lineage.members,
                query,
                query.page_token.as_ref().map(PageToken::last_key),
                size + 1,
            )
            .await?;
        let next = next_page_by(&mut documents, query.page_size, document_page_key);
        let items = documents.into_iter().map(document_item).collect();
        let seen = self
            .gate(context, AuditAction::FindDocuments, &lineage, items)
            .await?;
        let withheld = !seen.hidden.is_empty();
        Ok((lineage.person, seen.visible, next, withheld))
    }

    /// Retrieves a document's content, from the exchange or from the hospital keeping it, checked
    /// against the registered hash and size. A document the caller may not see answers as one
    /// that does not exist; a mismatch is refused and audited.
    pub async fn retrieve(&self, context: &RequestContext, unique_id: &str) -> Result<Retrieved, Error> {
        let not_found = || Error::NotFound(format!("document {unique_id} is not registered"));
        let document = self
            .store
            .document_by_unique_id(None, unique_id)
            .await?
            .ok_or_else(not_found)?;
        let lineage: Lineage = self
            .population
            .lineage(context, &PersonSelector::Id(document.person_id.clone()))
            .await?;
        require_patient_is_one_of(context, &lineage.members)?;
        let seen = self
            .gate(
                context,
                AuditAction::RetrieveDocument,
                &lineage,
                vec![document_item(document)],
            )
            .await?;
        let document = seen.visible.into_iter().next().ok_or_else(not_found)?;
        let (content, from) = match &document.metadata.repository {
            None => (
                self.store.content(&document.id).await?.ok_or_else(|| {
                    Error::Internal("a document kept by the exchange has no content".into())
                })?,
                None,
            ),
            Some(hospital) => {
                let content = self.gateways.retrieve(hospital, unique_id, context).await?;
                (content, Some(hospital.clone()))
            }
        };
        let size_matches = i64::try_from(content.len()).ok() == Some(document.metadata.size);
        if !size_matches || sha256_hex(&content) != document.metadata.hash {
            let error = Error::precondition(
                "unique_id",
                format!(
                    "the content {} returned does not match the registered hash and size; it was not returned",
                    from.as_ref()
                        .map_or("the exchange".to_owned(), |h| format!("hospital {h}"))
                ),
            );
            let subject = Subject::new(AuditAction::RetrieveDocument, "document")
                .resource(document.id.as_str())
                .person(&lineage.person);
            self.access
                .audit()
                .record(subject.event(context, Outcome::of_error(&error)))
                .await?;
            tracing::warn!(document = %document.id.as_str(), hospital = ?from.as_ref().map(OrganisationCode::as_str), "retrieved content does not match its registered hash");
            return Err(error);
        }
        Ok(Retrieved {
            document,
            content,
            retrieved_from: from,
        })
    }
}

/// A document, kept by the organisation that registered it.
pub(super) fn document_item(document: Document) -> Item<Document> {
    Item {
        kept_by: document.kept_by().clone(),
        reveals: document.metadata.category(),
        item: document,
    }
}
