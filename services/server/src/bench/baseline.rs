//! The benchmark's baseline: `ResolveIdentifier` answered by the same look-up the registry uses,
//! over plaintext loopback, with no request context, no consent decision and no audit event.
//! It exists only inside `hie bench`, so that the cost of the trust layer is measured against
//! the same call without it in the same run; `hie serve` never serves it, and nothing in the
//! registry can switch the trust layer off.

use std::sync::Arc;

use hie_core::batch::Batcher;
use hie_core::domain::Identifier;
use hie_population::domain::resolve::{MAX_BATCH, QUERY_SLOTS};
use hie_population::domain::{CrossReference, PersonId};
use hie_population::grpc::{cross_reference_to_proto, parse_identifier};
use hie_population::store::PopulationStore;
use hie_proto::population as proto;
use hie_proto::population::population_registry_server::{PopulationRegistry, PopulationRegistryServer};
use tonic::{Request, Response, Status};

pub struct UnguardedResolve {
    resolver: Batcher<Identifier, Option<(PersonId, Vec<CrossReference>)>>,
}

impl UnguardedResolve {
    /// Batched as the registry batches resolves (same batch size and slots), minus the gate.
    pub fn server(database: hie_core::db::Database) -> PopulationRegistryServer<UnguardedResolve> {
        let store = PopulationStore::new(database);
        let resolver = Batcher::new(
            QUERY_SLOTS,
            MAX_BATCH,
            Arc::new(move |identifiers: Vec<Identifier>| {
                let store = store.clone();
                Box::pin(async move {
                    let found = store.resolve_held(&identifiers, false).await?;
                    Ok(found
                        .into_iter()
                        .map(|found| found.map(|(person, references, _)| (person, references)))
                        .collect())
                })
            }),
        );
        PopulationRegistryServer::new(UnguardedResolve { resolver })
    }
}

fn baseline_only() -> Status {
    Status::unimplemented("the benchmark's baseline server answers ResolveIdentifier only")
}

#[tonic::async_trait]
impl PopulationRegistry for UnguardedResolve {
    async fn register_source_record(
        &self,
        _: Request<proto::RegisterSourceRecordRequest>,
    ) -> Result<Response<proto::RegisterSourceRecordResponse>, Status> {
        Err(baseline_only())
    }

    async fn get_person(
        &self,
        _: Request<proto::GetPersonRequest>,
    ) -> Result<Response<proto::GetPersonResponse>, Status> {
        Err(baseline_only())
    }

    async fn search_persons(
        &self,
        _: Request<proto::SearchPersonsRequest>,
    ) -> Result<Response<proto::SearchPersonsResponse>, Status> {
        Err(baseline_only())
    }

    async fn list_match_reviews(
        &self,
        _: Request<proto::ListMatchReviewsRequest>,
    ) -> Result<Response<proto::ListMatchReviewsResponse>, Status> {
        Err(baseline_only())
    }

    async fn decide_match_review(
        &self,
        _: Request<proto::DecideMatchReviewRequest>,
    ) -> Result<Response<proto::DecideMatchReviewResponse>, Status> {
        Err(baseline_only())
    }

    async fn link_source_record(
        &self,
        _: Request<proto::LinkSourceRecordRequest>,
    ) -> Result<Response<proto::LinkSourceRecordResponse>, Status> {
        Err(baseline_only())
    }

    async fn unlink_source_record(
        &self,
        _: Request<proto::UnlinkSourceRecordRequest>,
    ) -> Result<Response<proto::UnlinkSourceRecordResponse>, Status> {
        Err(baseline_only())
    }

    async fn merge_local_patients(
        &self,
        _: Request<proto::MergeLocalPatientsRequest>,
    ) -> Result<Response<proto::MergeLocalPatientsResponse>, Status> {
        Err(baseline_only())
    }

    async fn merge_persons(
        &self,
        _: Request<proto::MergePersonsRequest>,
    ) -> Result<Response<proto::MergePersonsResponse>, Status> {
        Err(baseline_only())
    }

    async fn unmerge_persons(
        &self,
        _: Request<proto::UnmergePersonsRequest>,
    ) -> Result<Response<proto::UnmergePersonsResponse>, Status> {
        Err(baseline_only())
    }

    async fn resolve_identifier(
        &self,
        request: Request<proto::ResolveIdentifierRequest>,
    ) -> Result<Response<proto::ResolveIdentifierResponse>, Status> {
        let identifier = parse_identifier(request.into_inner().identifier, "identifier")?;
        let (person_id, references) = self
            .resolver
            .submit(identifier)
            .await?
            .ok_or_else(|| Status::not_found("no record carries this identifier"))?;
        Ok(Response::new(proto::ResolveIdentifierResponse {
            person_id: person_id.as_str().to_owned(),
            cross_references: references.iter().map(cross_reference_to_proto).collect(),
        }))
    }
}

/// The baseline server, with the health check beside it.
pub struct BaselineServer {
    pub url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl BaselineServer {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

pub async fn serve(database: hie_core::db::Database) -> Result<BaselineServer, String> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| format!("cannot listen on loopback: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let (_, health) = tonic_health::server::health_reporter();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let router = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(UnguardedResolve::server(database));
    let task = tokio::spawn(async move {
        let _ = router
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(BaselineServer {
        url: format!("http://{address}"),
        stop,
        task,
    })
}
