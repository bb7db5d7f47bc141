//! The `hie.population.v1.PopulationRegistry` gRPC service: maps proto messages to domain types,
//! answering every malformed field as `INVALID_ARGUMENT` naming it, and domain results back.

use hie_core::context::{RequestContext, Role};
use hie_core::domain::{
    BirthDate, BoundedText, DivisionCode, Ethnicity, Identifier, OrganisationCode, PersonName, Phone, Sex,
};
use hie_core::page::{PageSize, PageToken};
use hie_core::{Error, ResultExt};
use hie_proto::population as proto;
use hie_proto::population::population_registry_server::PopulationRegistry;
use tonic::{Request, Response, Status};

use crate::domain::decisions::{Review, ReviewDecision};
use crate::domain::name_search::NameSearch;
use crate::domain::{
    CrossReference, Demographics, NameQuery, Person, PersonId, PopulationService, RegistrationOutcome,
    SearchCriteria, SourceRecord, SourceRecordDraft, SourceRecordId,
};

/// The request context of a registry call. A patient (through a patient portal) has only their own
/// consent and access log: the registry's calls read or change other persons' data.
fn context_of<T>(request: &Request<T>) -> Result<RequestContext, Error> {
    let context = RequestContext::of(request)?;
    if context.role == Role::Patient {
        return Err(Error::PermissionDenied(
            "role patient may read only the patient's own consent and access log".into(),
        ));
    }
    Ok(context)
}

/// The gRPC face of the population registry.
#[derive(Clone, Debug)]
pub struct PopulationGrpc {
    population: PopulationService,
}

/// The name `--services` knows the registry by.
pub const SERVICE_NAME: &str = "population";

/// The registry as the server mounts it (`--services population`).
pub fn module(population: PopulationService) -> hie_core::service::ServiceModule {
    hie_core::service::ServiceModule::new(
        SERVICE_NAME,
        proto::population_registry_server::PopulationRegistryServer::new(PopulationGrpc { population }),
    )
}

#[tonic::async_trait]
impl PopulationRegistry for PopulationGrpc {
    #[tracing::instrument(skip_all)]
    async fn list_match_reviews(
        &self,
        request: Request<proto::ListMatchReviewsRequest>,
    ) -> Result<Response<proto::ListMatchReviewsResponse>, Status> {
        let context = context_of(&request)?;
        let request = request.into_inner();
        let page_size = PageSize::parse(request.page_size).field("page_size")?;
        let page_token = PageToken::parse(&request.page_token).field("page_token")?;
        let (reviews, next) = self
            .population
            .pending_reviews(&context, page_size, page_token)
            .await?;
        Ok(Response::new(proto::ListMatchReviewsResponse {
            reviews: reviews.iter().map(review_to_proto).collect(),
            next_page_token: next.map(|t| t.encode()).unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn decide_match_review(
        &self,
        request: Request<proto::DecideMatchReviewRequest>,
    ) -> Result<Response<proto::DecideMatchReviewResponse>, Status> {
        let context = context_of(&request)?;
        let request = request.into_inner();
        let decision = match proto::ReviewDecision::try_from(request.decision) {
            Ok(proto::ReviewDecision::Link) => ReviewDecision::Link,
            Ok(proto::ReviewDecision::Reject) => ReviewDecision::Reject,
            _ => {
                return Err(Error::invalid(
                    "decision",
                    format!(
                        "{} is not a decision, expected REVIEW_DECISION_LINK or REVIEW_DECISION_REJECT",
                        request.decision
                    ),
                )
                .into());
            }
        };
        // The reason before the id, as the domain asks for it first.
        crate::domain::decisions::reason(&request.reason)?;
        let review_id = crate::domain::decisions::ReviewId::parse(&request.review_id).field("review_id")?;
        let (review, person) = self
            .population
            .decide_review(&context, &review_id, decision, &request.reason)
            .await?;
        Ok(Response::new(proto::DecideMatchReviewResponse {
            review: Some(review_to_proto(&review)),
            person_id: person.as_str().to_owned(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn link_source_record(
        &self,
        request: Request<proto::LinkSourceRecordRequest>,
    ) -> Result<Response<proto::LinkSourceRecordResponse>, Status> {
        let context = context_of(&request)?;
        let request = request.into_inner();
        let record = SourceRecordId::parse(&request.source_record_id).field("source_record_id")?;
        let person = PersonId::parse(&request.person_id).field("person_id")?;
        let previous = self
            .population
            .link_record(&context, &record, &person, &request.reason)
            .await?;
        Ok(Response::new(proto::LinkSourceRecordResponse {
            previous_person_id: previous.as_str().to_owned(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn merge_local_patients(
        &self,
        request: Request<proto::MergeLocalPatientsRequest>,
    ) -> Result<Response<proto::MergeLocalPatientsResponse>, Status> {
        let context = context_of(&request)?;
        let request = request.into_inner();
        let organisation =
            context.submitting_organisation("organisation_code", &request.organisation_code)?;
        let merge = self
            .population
            .merge_local_patients(
                &context,
                &organisation,
                &request.prior_local_patient_number,
                &request.surviving_local_patient_number,
            )
            .await?;
        tracing::info!(changed = merge.changed, "local patient numbers merged");
        Ok(Response::new(proto::MergeLocalPatientsResponse {
            person_id: merge.person_id.as_str().to_owned(),
            retired_source_record_id: merge.retired_source_record_id.as_str().to_owned(),
            changed: merge.changed,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn unlink_source_record(
        &self,
        request: Request<proto::UnlinkSourceRecordRequest>,
    ) -> Result<Response<proto::UnlinkSourceRecordResponse>, Status> {
        let context = context_of(&request)?;
        let request = request.into_inner();
        let record = SourceRecordId::parse(&request.source_record_id).field("source_record_id")?;
        let person = self
            .population
            .unlink_record(&context, &record, &request.reason)
            .await?;
        Ok(Response::new(proto::UnlinkSourceRecordResponse {
            person_id: person.as_str().to_owned(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn merge_persons(
        &self,
        request: Request<proto::MergePersonsRequest>,
    ) -> Result<Response<proto::MergePersonsResponse>, Status> {
        let context = context_of(&request)?;
        let request = request.into_inner();
        let from = PersonId::parse(&request.from_person_id).field("from_person_id")?;
        let into = PersonId::parse(&request.into_person_id).field("into_person_id")?;
        let merge = self
            .population
            .merge_persons(&context, &from, &into, &request.reason)
            .await?;
        Ok(Response::new(proto::MergePersonsResponse {
            merge_id: merge.id.as_str().to_owned(),
            moved_source_record_ids: merge.moved.iter().map(|r| r.as_str().to_owned()).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn unmerge_persons(
        &self,
        request: Request<proto::UnmergePersonsRequest>,
    ) -> Result<Response<proto::UnmergePersonsResponse>, Status> {
        let context = context_of(&request)?;
        let request = request.into_inner();
        let merge_id = crate::domain::decisions::MergeId::parse(&request.merge_id).field("merge_id")?;
        let restored = self
            .population
            .unmerge_persons(&context, &merge_id, &request.reason)
            .await?;
        Ok(Response::new(proto::UnmergePersonsResponse {
            restored_source_record_ids: restored.iter().map(|r| r.as_str().to_owned()).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn register_source_record(
        &self,
        request: Request<proto::RegisterSourceRecordRequest>,
    ) -> Result<Response<proto::RegisterSourceRecordResponse>, Status> {
        let context = context_of(&request)?;
        let mut message = request.into_inner();
        message.organisation_code = context
            .submitting_organisation("organisation_code", &message.organisation_code)?
            .to_string();
        let draft = source_record_draft(message)?;
        let registration = self.population.register(&context, &draft).await?;
        let outcome = match registration.outcome {
            RegistrationOutcome::CreatedPerson => proto::RegistrationOutcome::CreatedPerson,
            RegistrationOutcome::JoinedPerson => proto::RegistrationOutcome::JoinedPerson,
            RegistrationOutcome::UpdatedRecord => proto::RegistrationOutcome::UpdatedRecord,
        };
        tracing::info!(organisation = %draft.organisation(), outcome = ?registration.outcome, "source record registered");
        Ok(Response::new(proto::RegisterSourceRecordResponse {
            person_id: registration.person_id.as_str().to_owned(),
            source_record_id: registration.source_record_id.as_str().to_owned(),
            outcome: outcome.into(),
            pending_reviews: u32::try_from(registration.pending_reviews).unwrap_or(u32::MAX),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_person(
        &self,
        request: Request<proto::GetPersonRequest>,
    ) -> Result<Response<proto::GetPersonResponse>, Status> {
        let context = context_of(&request)?;
        let id = PersonId::parse(&request.into_inner().person_id).field("person_id")?;
        let (person, records) = self.population.person(&context, &id).await?;
        Ok(Response::new(proto::GetPersonResponse {
            person: Some(person_to_proto(&person)),
            source_records: records.iter().map(source_record_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn resolve_identifier(
        &self,
        request: Request<proto::ResolveIdentifierRequest>,
    ) -> Result<Response<proto::ResolveIdentifierResponse>, Status> {
        let context = context_of(&request)?;
        let identifier = parse_identifier(request.into_inner().identifier, "identifier")?;
        let (person_id, references) = self.population.resolve(&context, &identifier).await?;
        Ok(Response::new(proto::ResolveIdentifierResponse {
            person_id: person_id.as_str().to_owned(),
            cross_references: references.iter().map(cross_reference_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn search_persons(
        &self,
        request: Request<proto::SearchPersonsRequest>,
    ) -> Result<Response<proto::SearchPersonsResponse>, Status> {
        let context = context_of(&request)?;
        let request = request.into_inner();
        let criteria = search_criteria(&request)?;
        let page_size = PageSize::parse(request.page_size).field("page_size")?;
        let page_token = PageToken::parse(&request.page_token).field("page_token")?;
        let (persons, next) = self
            .population
            .search(&context, &criteria, page_size, page_token)
            .await?;
        Ok(Response::new(proto::SearchPersonsResponse {
            persons: persons.iter().map(|f| person_to_proto(&f.person)).collect(),
            next_page_token: next.map(|t| t.encode()).unwrap_or_default(),
            matches: persons
                .iter()
                .map(|f| proto::SearchMatch {
                    person_id: f.person.id.as_str().to_owned(),
                    score: f.score,
                    matched_by: f.matched_by.to_owned(),
                })
                .collect(),
        }))
    }
}

/// Parses a registration request into a checked draft.
pub fn source_record_draft(request: proto::RegisterSourceRecordRequest) -> Result<SourceRecordDraft, Error> {
    let organisation = OrganisationCode::parse(&request.organisation_code).field("organisation_code")?;
    let demographics = parse_demographics(request.demographics)?;
    let identifiers = request
        .identifiers
        .into_iter()
        .enumerate()
        .map(|(i, id)| parse_identifier(Some(id), &format!("identifiers[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    SourceRecordDraft::new(
        organisation,
        &request.local_patient_number,
        demographics,
        identifiers,
    )
}

pub fn parse_identifier(message: Option<proto::Identifier>, field: &str) -> Result<Identifier, Error> {
    let message = message.ok_or_else(|| Error::invalid(field, "is required"))?;
    Identifier::parse(&message.system, &message.value).map_err(|e| e.at(field))
}

/// Parses an optional text field: empty means absent.
fn optional<T>(
    text: &str,
    field: &str,
    parse: impl FnOnce(&str) -> Result<T, hie_core::FieldError>,
) -> Result<Option<T>, Error> {
    match text.trim() {
        "" => Ok(None),
        text => parse(text).field(field).map(Some),
    }
}

fn parse_demographics(message: Option<proto::Demographics>) -> Result<Demographics, Error> {
    let d = message.ok_or_else(|| Error::invalid("demographics", "is required"))?;
    let address = d.address.unwrap_or_default();
    Ok(Demographics {
        name: PersonName::parse(&d.name).field("demographics.name")?,
        sex: optional(&d.sex, "demographics.sex", Sex::parse)?,
        birth_date: optional(&d.birth_date, "demographics.birth_date", BirthDate::parse)?,
        ethnicity: optional(&d.ethnicity, "demographics.ethnicity", Ethnicity::parse)?,
        phone: optional(&d.phone, "demographics.phone", Phone::parse)?,
        division: optional(
            &address.division_code,
            "demographics.address.division_code",
            DivisionCode::parse,
        )?,
        address_line: BoundedText::parse(&address.line, Demographics::MAX_ADDRESS_LINE_CHARS)
            .field("demographics.address.line")?,
    })
}

fn search_criteria(request: &proto::SearchPersonsRequest) -> Result<SearchCriteria, Error> {
    let name = match request.name.trim() {
        "" => None,
        text => match text.strip_suffix('*').or_else(|| text.strip_suffix('＊')) {
            Some(prefix) => Some(NameQuery::Prefix(PersonName::parse(prefix).field("name")?)),
            // Folded as a registered name is (full-width letters, runs of spaces) first.
            None => {
                let name = PersonName::parse(text).field("name")?;
                let search =
                    NameSearch::parse(name.as_str()).map_err(|reason| Error::invalid("name", reason))?;
                Some(NameQuery::Sounds(search))
            }
        },
    };
    let exact = optional(&request.birth_date, "birth_date", BirthDate::parse)?;
    let from = optional(&request.birth_date_from, "birth_date_from", BirthDate::parse)?;
    let to = optional(&request.birth_date_to, "birth_date_to", BirthDate::parse)?;
    let (born_from, born_to) = match (exact, from, to) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(Error::invalid(
                "birth_date",
                "give either birth_date or a range, not both",
            ));
        }
        (Some(date), None, None) => (Some(date), Some(date)),
        (None, from, to) => (from, to),
    };
    let identifier = match &request.identifier {
        Some(id) if !(id.system.is_empty() && id.value.is_empty()) => {
            Some(parse_identifier(Some(id.clone()), "identifier")?)
        }
        _ => None,
    };
    Ok(SearchCriteria {
        name,
        born_from,
        born_to,
        sex: optional(&request.sex, "sex", Sex::parse)?,
        division: optional(&request.division_code, "division_code", DivisionCode::parse)?,
        identifier,
    })
}

pub fn identifier_to_proto(identifier: &Identifier) -> proto::Identifier {
    proto::Identifier {
        system: identifier.system_uri(),
        value: identifier.value().to_owned(),
    }
}

/// Demographics as the API carries them.
pub fn demographics_to_proto(d: &Demographics) -> proto::Demographics {
    proto::Demographics {
        name: d.name.as_str().to_owned(),
        sex: d.sex.map(|s| s.code().to_owned()).unwrap_or_default(),
        birth_date: d.birth_date.map(BirthDate::to_iso).unwrap_or_default(),
        ethnicity: d.ethnicity.map(|e| e.code().to_owned()).unwrap_or_default(),
        phone: d
            .phone
            .as_ref()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        address: Some(proto::Address {
            division_code: d
                .division
                .as_ref()
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
            line: d.address_line.as_str().to_owned(),
        }),
    }
}

fn person_to_proto(person: &Person) -> proto::Person {
    proto::Person {
        id: person.id.as_str().to_owned(),
        demographics: Some(demographics_to_proto(&person.demographics)),
        identifiers: person.identifiers.iter().map(identifier_to_proto).collect(),
        create_time: Some(hie_proto::timestamp(person.created_at)),
        update_time: Some(hie_proto::timestamp(person.updated_at)),
        demographics_sources: person
            .demographics_sources
            .iter()
            .map(|s| proto::FieldSource {
                field: s.field.to_owned(),
                source_record_id: s.source_record_id.as_str().to_owned(),
            })
            .collect(),
    }
}

fn review_to_proto(review: &Review) -> proto::MatchReview {
    proto::MatchReview {
        id: review.id.as_str().to_owned(),
        source_record_id: review.source_record_id.as_str().to_owned(),
        candidate_person_id: review.candidate_person_id.as_str().to_owned(),
        candidate_record_id: review.candidate_record_id.as_str().to_owned(),
        probability: review.probability,
        match_weight: review.explanation.weight,
        fields: review
            .explanation
            .fields
            .iter()
            .map(|f| proto::FieldWeight {
                field: f.field.to_owned(),
                agreement: f.agreement.unwrap_or_default().to_owned(),
                weight: f.weight,
            })
            .collect(),
        model_version: review.model_version,
        status: review.status.code().to_owned(),
        create_time: Some(hie_proto::timestamp(review.created_at)),
    }
}

fn source_record_to_proto(record: &SourceRecord) -> proto::SourceRecord {
    proto::SourceRecord {
        id: record.id.as_str().to_owned(),
        organisation_code: record.organisation.as_str().to_owned(),
        local_patient_number: record.local_patient_number.clone(),
        person_id: record.person_id.as_str().to_owned(),
        demographics: Some(demographics_to_proto(&record.demographics)),
        identifiers: record.identifiers.iter().map(identifier_to_proto).collect(),
        create_time: Some(hie_proto::timestamp(record.created_at)),
        update_time: Some(hie_proto::timestamp(record.updated_at)),
    }
}

pub fn cross_reference_to_proto(reference: &CrossReference) -> proto::CrossReference {
    proto::CrossReference {
        identifier: Some(identifier_to_proto(&reference.identifier)),
        organisation_code: reference.organisation.as_str().to_owned(),
        source_record_id: reference.source_record_id.as_str().to_owned(),
    }
}

/// What the access service needs to know of a person: who keeps records of them (a registration
/// clerk acts only for patients of their organisation) and whether they exist or were merged.
#[tonic::async_trait]
impl hie_access::grpc::PersonRegistry for PopulationService {
    async fn keeps_a_record_of(&self, organisation: &str, person_id: &PersonId) -> Result<bool, Error> {
        self.store()
            .keeps_a_record(organisation, person_id.as_str())
            .await
    }

    async fn person_state(&self, person_id: &PersonId) -> Result<Option<Option<String>>, Error> {
        let state = self.store().person_state_now(person_id).await?;
        Ok(state.map(|into| into.map(|p| p.as_str().to_owned())))
    }
}
