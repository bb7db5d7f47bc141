//! The `hie.telemedicine.v1.Telemedicine` gRPC service: proto ⇄ domain, every malformed field
//! answered as `INVALID_ARGUMENT` naming it.

use chrono::{DateTime, Duration, Utc};
use hie_core::context::RequestContext;
use hie_core::domain::OrganisationCode;
use hie_core::page::{PageSize, PageToken};
use hie_core::service::ServiceModule;
use hie_core::{Error, ResultExt};
use hie_population::grpc::{identifier_to_proto, parse_identifier};
use hie_proto::telemedicine as proto;
use hie_proto::telemedicine::telemedicine_server::{Telemedicine, TelemedicineServer};
use tonic::{Request, Response, Status};

use crate::domain::consults::{ConsultReport, ConsultRequest};
use crate::domain::{Consult, ConsultStatus, ServiceItem, TelemedicineService};

/// The name `--services` knows telemedicine by.
pub const SERVICE_NAME: &str = "telemedicine";

pub fn module(telemedicine: TelemedicineService) -> ServiceModule {
    ServiceModule::new(
        SERVICE_NAME,
        TelemedicineServer::new(TelemedicineGrpc { telemedicine }),
    )
}

#[derive(Clone, Debug)]
struct TelemedicineGrpc {
    telemedicine: TelemedicineService,
}

fn instant(field: &str, timestamp: Option<prost_types::Timestamp>) -> Result<Option<DateTime<Utc>>, Error> {
    timestamp
        .map(|t| {
            DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(u32::MAX))
                .ok_or_else(|| Error::invalid(field, "is not a valid instant"))
        })
        .transpose()
}

fn status_to_proto(status: ConsultStatus) -> proto::ConsultStatus {
    match status {
        ConsultStatus::Requested => proto::ConsultStatus::Requested,
        ConsultStatus::Accepted => proto::ConsultStatus::Accepted,
        ConsultStatus::Declined => proto::ConsultStatus::Declined,
        ConsultStatus::Completed => proto::ConsultStatus::Completed,
        ConsultStatus::Cancelled => proto::ConsultStatus::Cancelled,
    }
}

fn status_of(value: i32) -> Result<Option<ConsultStatus>, Error> {
    match proto::ConsultStatus::try_from(value) {
        Ok(proto::ConsultStatus::Unspecified) => Ok(None),
        Ok(proto::ConsultStatus::Requested) => Ok(Some(ConsultStatus::Requested)),
        Ok(proto::ConsultStatus::Accepted) => Ok(Some(ConsultStatus::Accepted)),
        Ok(proto::ConsultStatus::Declined) => Ok(Some(ConsultStatus::Declined)),
        Ok(proto::ConsultStatus::Completed) => Ok(Some(ConsultStatus::Completed)),
        Ok(proto::ConsultStatus::Cancelled) => Ok(Some(ConsultStatus::Cancelled)),
        Err(_) => Err(Error::invalid(
            "status",
            format!("{value} is not a consult status"),
        )),
    }
}

fn item_to_proto(item: &ServiceItem) -> proto::ServiceItem {
    proto::ServiceItem {
        code: item.code.clone(),
        name: item.name.clone(),
        price_fen: item.price_fen,
        reimbursable: item.reimbursable,
        reimbursable_ratio_permille: i32::try_from(item.reimbursable_ratio_permille).unwrap_or(0),
        active_from: Some(hie_proto::timestamp(item.active_from)),
        active_until: item.active_until.map(hie_proto::timestamp),
    }
}

fn item_of(message: Option<proto::ServiceItem>) -> Result<ServiceItem, Error> {
    let message = message.ok_or_else(|| Error::invalid("item", "is required"))?;
    Ok(ServiceItem {
        code: message.code,
        name: message.name,
        price_fen: message.price_fen,
        reimbursable: message.reimbursable,
        reimbursable_ratio_permille: i64::from(message.reimbursable_ratio_permille),
        active_from: instant("item.active_from", message.active_from)?
            .ok_or_else(|| Error::invalid("item.active_from", "is required"))?,
        active_until: instant("item.active_until", message.active_until)?,
    })
}

pub fn consult_to_proto(consult: &Consult) -> proto::Consult {
    proto::Consult {
        consult_id: consult.id.as_str().to_owned(),
        status: status_to_proto(consult.status) as i32,
        person_id: consult.person_id.as_str().to_owned(),
        patient: Some(identifier_to_proto(&consult.patient)),
        requesting_organisation_code: consult.requesting.as_str().to_owned(),
        consulting_organisation_code: consult.consulting.as_str().to_owned(),
        specialty: consult.specialty.clone(),
        reason: consult.reason.clone(),
        service_item_code: consult.service_item_code.clone(),
        price_fen: consult.price_fen,
        attachment_unique_ids: consult.attachments.clone(),
        consultant: consult.consultant.clone().unwrap_or_default(),
        access_expires_at: consult.access_expires_at.map(hie_proto::timestamp),
        report_unique_id: consult.report_unique_id.clone().unwrap_or_default(),
        steps: consult
            .steps
            .iter()
            .map(|step| proto::ConsultStep {
                step: step.step.code().to_owned(),
                organisation_code: step.organisation.clone(),
                user_id: step.user_id.clone(),
                at: Some(hie_proto::timestamp(step.at)),
                note: step.note.clone(),
            })
            .collect(),
    }
}

fn access_duration(message: Option<prost_types::Duration>) -> Result<Option<Duration>, Error> {
    message
        .map(|d| {
            if d.seconds < 0 || d.nanos < 0 {
                return Err(Error::invalid("access_duration", "must not be negative"));
            }
            Ok(Duration::seconds(d.seconds) + Duration::nanoseconds(i64::from(d.nanos)))
        })
        .transpose()
}

#[tonic::async_trait]
impl Telemedicine for TelemedicineGrpc {
    async fn put_service_item(
        &self,
        request: Request<proto::PutServiceItemRequest>,
    ) -> Result<Response<proto::PutServiceItemResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let item = item_of(request.into_inner().item)?;
        let item = self.telemedicine.put_item(&context, item).await?;
        Ok(Response::new(proto::PutServiceItemResponse {
            item: Some(item_to_proto(&item)),
        }))
    }

    async fn list_service_items(
        &self,
        request: Request<proto::ListServiceItemsRequest>,
    ) -> Result<Response<proto::ListServiceItemsResponse>, Status> {
        RequestContext::of(&request)?;
        let active_at = instant("active_at", request.into_inner().active_at)?;
        let items = self.telemedicine.items(active_at).await?;
        Ok(Response::new(proto::ListServiceItemsResponse {
            items: items.iter().map(item_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn request_consult(
        &self,
        request: Request<proto::RequestConsultRequest>,
    ) -> Result<Response<proto::RequestConsultResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let message = request.into_inner();
        let consult_request = ConsultRequest {
            patient: parse_identifier(message.patient, "patient")?,
            consulting: OrganisationCode::parse(&message.consulting_organisation_code)
                .field("consulting_organisation_code")?,
            specialty: message.specialty,
            reason: message.reason,
            service_item_code: message.service_item_code,
            attachments: message.attachment_unique_ids,
        };
        let consult = self.telemedicine.request(&context, consult_request).await?;
        tracing::info!(consult = consult.id.as_str(), "consult requested");
        Ok(Response::new(proto::RequestConsultResponse {
            consult: Some(consult_to_proto(&consult)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn accept_consult(
        &self,
        request: Request<proto::AcceptConsultRequest>,
    ) -> Result<Response<proto::AcceptConsultResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let message = request.into_inner();
        let consultant = Some(message.consultant).filter(|c| !c.trim().is_empty());
        let access = access_duration(message.access_duration)?;
        let consult = self
            .telemedicine
            .accept(&context, &message.consult_id, consultant, access)
            .await?;
        tracing::info!(consult = consult.id.as_str(), "consult accepted");
        Ok(Response::new(proto::AcceptConsultResponse {
            consult: Some(consult_to_proto(&consult)),
        }))
    }

    async fn decline_consult(
        &self,
        request: Request<proto::DeclineConsultRequest>,
    ) -> Result<Response<proto::DeclineConsultResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let message = request.into_inner();
        let consult = self
            .telemedicine
            .decline(&context, &message.consult_id, &message.reason)
            .await?;
        Ok(Response::new(proto::DeclineConsultResponse {
            consult: Some(consult_to_proto(&consult)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn complete_consult(
        &self,
        request: Request<proto::CompleteConsultRequest>,
    ) -> Result<Response<proto::CompleteConsultResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let message = request.into_inner();
        let report = ConsultReport {
            title: message.title,
            content: message.content,
            mime_type: message.mime_type,
            diagnoses: message.diagnoses,
        };
        let consult = self
            .telemedicine
            .complete(&context, &message.consult_id, report)
            .await?;
        tracing::info!(consult = consult.id.as_str(), "consult completed");
        Ok(Response::new(proto::CompleteConsultResponse {
            consult: Some(consult_to_proto(&consult)),
        }))
    }

    async fn cancel_consult(
        &self,
        request: Request<proto::CancelConsultRequest>,
    ) -> Result<Response<proto::CancelConsultResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let message = request.into_inner();
        let consult = self
            .telemedicine
            .cancel(&context, &message.consult_id, &message.reason)
            .await?;
        Ok(Response::new(proto::CancelConsultResponse {
            consult: Some(consult_to_proto(&consult)),
        }))
    }

    async fn get_consult(
        &self,
        request: Request<proto::GetConsultRequest>,
    ) -> Result<Response<proto::GetConsultResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let consult = self
            .telemedicine
            .consult(&context, &request.into_inner().consult_id)
            .await?;
        Ok(Response::new(proto::GetConsultResponse {
            consult: Some(consult_to_proto(&consult)),
        }))
    }

    async fn list_consults(
        &self,
        request: Request<proto::ListConsultsRequest>,
    ) -> Result<Response<proto::ListConsultsResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let message = request.into_inner();
        let status = status_of(message.status)?;
        let page_size = PageSize::parse_or_default(message.page_size).field("page_size")?;
        let page_token = PageToken::parse(&message.page_token).field("page_token")?;
        let (consults, next) = self
            .telemedicine
            .consults(&context, status, page_size, page_token)
            .await?;
        Ok(Response::new(proto::ListConsultsResponse {
            consults: consults.iter().map(consult_to_proto).collect(),
            next_page_token: next.map(|t| t.encode()).unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_consult_records(
        &self,
        request: Request<proto::GetConsultRecordsRequest>,
    ) -> Result<Response<proto::GetConsultRecordsResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let id = request.into_inner().consult_id;
        let records = self.telemedicine.records(&context, &id).await?;
        Ok(Response::new(proto::GetConsultRecordsResponse {
            person_id: records.summary.person_id.as_str().to_owned(),
            summary: Some(hie_emr::grpc::summary_to_proto(&records.summary)),
            documents: records
                .documents
                .iter()
                .map(hie_emr::grpc::document_to_proto)
                .collect(),
            withheld: records.withheld,
        }))
    }
}
