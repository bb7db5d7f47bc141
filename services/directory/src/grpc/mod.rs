//! The `hie.directory.v1.Directory` gRPC service: maps proto messages to domain types, with
//! every malformed field answered as `INVALID_ARGUMENT` naming it, and domain results back.

use hie_access::domain::consent::DataCategory;
use hie_core::context::{Purpose, RequestContext, Role};
use hie_core::domain::{BoundedText, DivisionCode, OrganisationCode};
use hie_core::page::{PageSize, PageToken};
use hie_core::service::ServiceModule;
use hie_core::{Error, ResultExt};
use hie_proto::directory as proto;
use hie_proto::directory::directory_server::Directory;
use tonic::{Request, Response, Status};

use crate::domain::{
    DirectoryService, HospitalGrade, Organisation, OrganisationDraft, OrganisationFilter, OrganisationKind,
    Practitioner, PractitionerDraft, PractitionerId, PractitionerRole,
};

/// The gRPC face of the directory. Every call carries a request context; changes are for
/// administrators only and each one, permitted, refused or failed, is in the audit trail.
#[derive(Clone, Debug)]
pub struct DirectoryGrpc {
    directory: DirectoryService,
}

/// The name `--services` knows the directory by.
pub const SERVICE_NAME: &str = "directory";

/// The directory as the server mounts it (`--services directory`).
pub fn module(directory: DirectoryService) -> ServiceModule {
    ServiceModule::new(
        SERVICE_NAME,
        proto::directory_server::DirectoryServer::new(DirectoryGrpc { directory }),
    )
}

#[tonic::async_trait]
impl Directory for DirectoryGrpc {
    #[tracing::instrument(skip_all)]
    async fn register_organisation(
        &self,
        request: Request<proto::RegisterOrganisationRequest>,
    ) -> Result<Response<proto::RegisterOrganisationResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let draft = organisation_draft(request.into_inner().organisation)?;
        let organisation = self.directory.register_organisation(&context, draft).await?;
        Ok(Response::new(proto::RegisterOrganisationResponse {
            organisation: Some(organisation_to_proto(&organisation)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_organisation(
        &self,
        request: Request<proto::UpdateOrganisationRequest>,
    ) -> Result<Response<proto::UpdateOrganisationResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let draft = organisation_draft(request.into_inner().organisation)?;
        let organisation = self.directory.update_organisation(&context, draft).await?;
        Ok(Response::new(proto::UpdateOrganisationResponse {
            organisation: Some(organisation_to_proto(&organisation)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_organisation(
        &self,
        request: Request<proto::GetOrganisationRequest>,
    ) -> Result<Response<proto::GetOrganisationResponse>, Status> {
        // Reads carry a context too (the directory holds no patient data, so no consent applies).
        RequestContext::of(&request)?;
        let code = OrganisationCode::parse(&request.into_inner().code).field("code")?;
        let organisation = self.directory.get_organisation(&code).await?;
        Ok(Response::new(proto::GetOrganisationResponse {
            organisation: Some(organisation_to_proto(&organisation)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_organisations(
        &self,
        request: Request<proto::ListOrganisationsRequest>,
    ) -> Result<Response<proto::ListOrganisationsResponse>, Status> {
        RequestContext::of(&request)?;
        let request = request.into_inner();
        let kind = match proto::OrganisationKind::try_from(request.kind) {
            Ok(proto::OrganisationKind::Unspecified) => None,
            _ => Some(kind_from_proto(request.kind).field("kind")?),
        };
        let division = match request.division_code.trim() {
            "" => None,
            code => Some(DivisionCode::parse(code).field("division_code")?),
        };
        let filter = OrganisationFilter {
            kind,
            division,
            include_inactive: request.include_inactive,
        };
        let page_size = PageSize::parse(request.page_size).field("page_size")?;
        let page_token = PageToken::parse(&request.page_token).field("page_token")?;
        let (organisations, next) = self
            .directory
            .list_organisations(&filter, page_size, page_token)
            .await?;
        Ok(Response::new(proto::ListOrganisationsResponse {
            organisations: organisations.iter().map(organisation_to_proto).collect(),
            next_page_token: next.map(|t| t.encode()).unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn register_practitioner(
        &self,
        request: Request<proto::RegisterPractitionerRequest>,
    ) -> Result<Response<proto::RegisterPractitionerResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let request = request.into_inner();
        let request_id = parse_request_id(&request.request_id).field("request_id")?;
        let (_, draft) = practitioner_draft(request.practitioner, false)?;
        let practitioner = self
            .directory
            .register_practitioner(&context, &request_id, draft)
            .await?;
        Ok(Response::new(proto::RegisterPractitionerResponse {
            practitioner: Some(practitioner_to_proto(&practitioner)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_practitioner(
        &self,
        request: Request<proto::UpdatePractitionerRequest>,
    ) -> Result<Response<proto::UpdatePractitionerResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let (id, draft) = practitioner_draft(request.into_inner().practitioner, true)?;
        let id = id.ok_or_else(|| Error::invalid("practitioner.id", "must not be empty"))?;
        let practitioner = self.directory.update_practitioner(&context, &id, draft).await?;
        Ok(Response::new(proto::UpdatePractitionerResponse {
            practitioner: Some(practitioner_to_proto(&practitioner)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_practitioner(
        &self,
        request: Request<proto::GetPractitionerRequest>,
    ) -> Result<Response<proto::GetPractitionerResponse>, Status> {
        RequestContext::of(&request)?;
        let id = PractitionerId::parse(&request.into_inner().id).field("id")?;
        let practitioner = self.directory.get_practitioner(&id).await?;
        Ok(Response::new(proto::GetPractitionerResponse {
            practitioner: Some(practitioner_to_proto(&practitioner)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_practitioners(
        &self,
        request: Request<proto::ListPractitionersRequest>,
    ) -> Result<Response<proto::ListPractitionersResponse>, Status> {
        RequestContext::of(&request)?;
        let request = request.into_inner();
        let organisation = match request.organisation_code.trim() {
            "" => None,
            code => Some(OrganisationCode::parse(code).field("organisation_code")?),
        };
        let page_size = PageSize::parse(request.page_size).field("page_size")?;
        let page_token = PageToken::parse(&request.page_token).field("page_token")?;
        let (practitioners, next) = self
            .directory
            .list_practitioners(organisation.as_ref(), page_size, page_token)
            .await?;
        Ok(Response::new(proto::ListPractitionersResponse {
            practitioners: practitioners.iter().map(practitioner_to_proto).collect(),
            next_page_token: next.map(|t| t.encode()).unwrap_or_default(),
        }))
    }
}

fn organisation_draft(message: Option<proto::Organisation>) -> Result<OrganisationDraft, Error> {
    let o = message.ok_or_else(|| Error::invalid("organisation", "is required"))?;
    let grade = match proto::HospitalGrade::try_from(o.hospital_grade) {
        Ok(proto::HospitalGrade::Unspecified) => None,
        _ => Some(grade_from_proto(o.hospital_grade).field("organisation.hospital_grade")?),
    };
    OrganisationDraft::new(
        "organisation",
        OrganisationCode::parse(&o.code).field("organisation.code")?,
        BoundedText::parse_required(&o.name, OrganisationDraft::MAX_NAME_CHARS).field("organisation.name")?,
        kind_from_proto(o.kind).field("organisation.kind")?,
        grade,
        DivisionCode::parse(&o.division_code).field("organisation.division_code")?,
        o.active,
    )?
    .with_sensitive_category(
        "organisation.sensitive_category",
        match o.sensitive_category.trim() {
            "" => None,
            code => Some(DataCategory::from_code(code).ok_or_else(|| {
                Error::invalid(
                    "organisation.sensitive_category",
                    "expected mental_health, hiv_sti, reproductive_health or substance_use",
                )
            })?),
        },
    )?
    .with_entitlements(
        "organisation",
        codes(
            &o.assertable_roles,
            "organisation.assertable_roles",
            Role::from_code,
        )?,
        codes(
            &o.assertable_purposes,
            "organisation.assertable_purposes",
            Purpose::from_code,
        )?,
    )
}

/// A list of role or purpose codes; `None` when empty (the kind's defaults).
fn codes<T>(
    items: &[String],
    field: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<Vec<T>>, Error> {
    if items.is_empty() {
        return Ok(None);
    }
    items
        .iter()
        .enumerate()
        .map(|(i, code)| {
            parse(code.trim())
                .ok_or_else(|| Error::invalid(format!("{field}[{i}]"), "is not a code this exchange knows"))
        })
        .collect::<Result<Vec<T>, Error>>()
        .map(Some)
}

/// Parses a practitioner message; its id is parsed only when `with_id` (updates), and ignored on
/// registration, where the exchange assigns it.
fn practitioner_draft(
    message: Option<proto::Practitioner>,
    with_id: bool,
) -> Result<(Option<PractitionerId>, PractitionerDraft), Error> {
    let p = message.ok_or_else(|| Error::invalid("practitioner", "is required"))?;
    let id = if with_id {
        Some(PractitionerId::parse(&p.id).field("practitioner.id")?)
    } else {
        None
    };
    let draft = PractitionerDraft {
        name: BoundedText::parse_required(&p.name, PractitionerDraft::MAX_NAME_CHARS)
            .field("practitioner.name")?,
        organisation_code: OrganisationCode::parse(&p.organisation_code)
            .field("practitioner.organisation_code")?,
        role: role_from_proto(p.role).field("practitioner.role")?,
        specialty: BoundedText::parse(&p.specialty, PractitionerDraft::MAX_SPECIALTY_CHARS)
            .field("practitioner.specialty")?,
        active: p.active,
    };
    Ok((id, draft))
}

fn parse_request_id(text: &str) -> Result<String, hie_core::FieldError> {
    let text = text.trim();
    if text.is_empty() || text.len() > 64 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(hie_core::FieldError::new(
            "must be 1 to 64 printable ASCII characters, for example a UUID",
        ));
    }
    Ok(text.to_owned())
}

/// Maps a proto enum number to a domain value through a table of pairs, refusing unspecified and
/// unknown numbers with a message that lists what is accepted.
fn enum_from_proto<P: Copy + Into<i32>, D: Copy>(
    value: i32,
    table: &[(P, D)],
    what: &str,
) -> Result<D, hie_core::FieldError> {
    table
        .iter()
        .find(|(p, _)| (*p).into() == value)
        .map(|(_, d)| *d)
        .ok_or_else(|| {
            hie_core::FieldError(if value == 0 {
                format!("a {what} is required")
            } else {
                format!("{value} is not a known {what}")
            })
        })
}

fn enum_to_proto<P: Copy + Into<i32>, D: Copy + PartialEq>(value: D, table: &[(P, D)]) -> i32 {
    table
        .iter()
        .find(|(_, d)| *d == value)
        .map_or(0, |(p, _)| (*p).into())
}

const KINDS: [(proto::OrganisationKind, OrganisationKind); 9] = [
    (proto::OrganisationKind::Hospital, OrganisationKind::Hospital),
    (
        proto::OrganisationKind::TownshipHealthCentre,
        OrganisationKind::TownshipHealthCentre,
    ),
    (
        proto::OrganisationKind::CommunityHealthCentre,
        OrganisationKind::CommunityHealthCentre,
    ),
    (
        proto::OrganisationKind::VillageClinic,
        OrganisationKind::VillageClinic,
    ),
    (
        proto::OrganisationKind::RegionalHealthAuthority,
        OrganisationKind::RegionalHealthAuthority,
    ),
    (
        proto::OrganisationKind::PatientPortal,
        OrganisationKind::PatientPortal,
    ),
    (
        proto::OrganisationKind::PublicHealthAgency,
        OrganisationKind::PublicHealthAgency,
    ),
    (proto::OrganisationKind::Insurer, OrganisationKind::Insurer),
    (
        proto::OrganisationKind::FamilyPlanningAgency,
        OrganisationKind::FamilyPlanningAgency,
    ),
];

const GRADES: [(proto::HospitalGrade, HospitalGrade); 10] = [
    (proto::HospitalGrade::Ungraded, HospitalGrade::Ungraded),
    (proto::HospitalGrade::TertiaryA, HospitalGrade::TertiaryA),
    (proto::HospitalGrade::TertiaryB, HospitalGrade::TertiaryB),
    (proto::HospitalGrade::TertiaryC, HospitalGrade::TertiaryC),
    (proto::HospitalGrade::SecondaryA, HospitalGrade::SecondaryA),
    (proto::HospitalGrade::SecondaryB, HospitalGrade::SecondaryB),
    (proto::HospitalGrade::SecondaryC, HospitalGrade::SecondaryC),
    (proto::HospitalGrade::PrimaryA, HospitalGrade::PrimaryA),
    (proto::HospitalGrade::PrimaryB, HospitalGrade::PrimaryB),
    (proto::HospitalGrade::PrimaryC, HospitalGrade::PrimaryC),
];

const ROLES: [(proto::PractitionerRole, PractitionerRole); 8] = [
    (proto::PractitionerRole::Physician, PractitionerRole::Physician),
    (proto::PractitionerRole::Nurse, PractitionerRole::Nurse),
    (proto::PractitionerRole::Pharmacist, PractitionerRole::Pharmacist),
    (
        proto::PractitionerRole::MedicalTechnician,
        PractitionerRole::MedicalTechnician,
    ),
    (
        proto::PractitionerRole::VillageDoctor,
        PractitionerRole::VillageDoctor,
    ),
    (
        proto::PractitionerRole::PublicHealthOfficer,
        PractitionerRole::PublicHealthOfficer,
    ),
    (
        proto::PractitionerRole::RegistrationClerk,
        PractitionerRole::RegistrationClerk,
    ),
    (
        proto::PractitionerRole::Administrator,
        PractitionerRole::Administrator,
    ),
];

fn kind_from_proto(value: i32) -> Result<OrganisationKind, hie_core::FieldError> {
    enum_from_proto(value, &KINDS, "organisation kind")
}

fn grade_from_proto(value: i32) -> Result<HospitalGrade, hie_core::FieldError> {
    enum_from_proto(value, &GRADES, "hospital grade")
}

fn role_from_proto(value: i32) -> Result<PractitionerRole, hie_core::FieldError> {
    enum_from_proto(value, &ROLES, "practitioner role")
}

pub fn organisation_to_proto(organisation: &Organisation) -> proto::Organisation {
    let d = &organisation.draft;
    proto::Organisation {
        code: d.code.as_str().to_owned(),
        name: d.name.as_str().to_owned(),
        kind: enum_to_proto(d.kind, &KINDS),
        hospital_grade: d.hospital_grade.map_or(0, |g| enum_to_proto(g, &GRADES)),
        division_code: d.division_code.as_str().to_owned(),
        active: d.active,
        create_time: Some(hie_proto::timestamp(organisation.created_at)),
        update_time: Some(hie_proto::timestamp(organisation.updated_at)),
        sensitive_category: d
            .sensitive_category
            .map(|c| c.code().to_owned())
            .unwrap_or_default(),
        assertable_roles: d
            .entitlements
            .roles()
            .iter()
            .map(|r| r.code().to_owned())
            .collect(),
        assertable_purposes: d
            .entitlements
            .purposes()
            .iter()
            .map(|p| p.code().to_owned())
            .collect(),
    }
}

pub fn practitioner_to_proto(practitioner: &Practitioner) -> proto::Practitioner {
    let d = &practitioner.draft;
    proto::Practitioner {
        id: practitioner.id.as_str().to_owned(),
        name: d.name.as_str().to_owned(),
        organisation_code: d.organisation_code.as_str().to_owned(),
        role: enum_to_proto(d.role, &ROLES),
        specialty: d.specialty.as_str().to_owned(),
        active: d.active,
        create_time: Some(hie_proto::timestamp(practitioner.created_at)),
        update_time: Some(hie_proto::timestamp(practitioner.updated_at)),
    }
}

/// Grants to a practitioner are bound to the organisation the directory lists them under.
#[tonic::async_trait]
impl hie_access::grpc::PractitionerDirectory for DirectoryService {
    async fn organisation_of(&self, practitioner_id: &str) -> Result<Option<String>, Error> {
        let Ok(id) = PractitionerId::parse(practitioner_id) else {
            return Ok(None);
        };
        Ok(self
            .get_practitioner(&id)
            .await
            .map(Some)
            .or_else(|e| {
                if matches!(e, Error::NotFound(_)) {
                    Ok(None)
                } else {
                    Err(e)
                }
            })?
            .filter(|p| p.draft.active)
            .map(|p| p.draft.organisation_code.to_string()))
    }
}
