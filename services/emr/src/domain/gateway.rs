//! How the registry reaches a hospital that keeps its own documents: through the hospital's
//! gateway (`hie.hospital.v1.HospitalGateway`, served by its adapter). The domain sees only this
//! trait; the gRPC client that implements it lives in `grpc`, and tests put a double in its place.

use std::future::Future;
use std::pin::Pin;

use hie_core::Error;
use hie_core::context::RequestContext;
use hie_core::domain::OrganisationCode;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The hospitals' gateways.
pub trait HospitalGateways: Send + Sync + std::fmt::Debug {
    /// The content of document `unique_id` as `hospital` returns it, fetched for the caller of
    /// `context`. `UNAVAILABLE` when the hospital cannot be reached, `NOT_FOUND` when it does not
    /// have the document. The registry checks what comes back; an implementation does not.
    fn retrieve<'a>(
        &'a self,
        hospital: &'a OrganisationCode,
        unique_id: &'a str,
        context: &'a RequestContext,
    ) -> BoxFuture<'a, Result<Vec<u8>, Error>>;
}

/// The answer for a hospital whose gateway the exchange does not know.
pub fn not_configured(hospital: &OrganisationCode) -> Error {
    Error::Unavailable(format!(
        "no gateway is configured for hospital {hospital} (settings: hospital_gateways)"
    ))
}

/// No hospital gateway configured: documents kept at a hospital cannot be retrieved.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoGateways;

impl HospitalGateways for NoGateways {
    fn retrieve<'a>(
        &'a self,
        hospital: &'a OrganisationCode,
        _unique_id: &'a str,
        _context: &'a RequestContext,
    ) -> BoxFuture<'a, Result<Vec<u8>, Error>> {
        Box::pin(async move { Err(not_configured(hospital)) })
    }
}
