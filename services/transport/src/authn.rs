//! Authentication of every call on a mutual-TLS listener: the client certificate's SHA-256
//! fingerprint must be registered in the directory for an active organisation, not revoked, and
//! its `urn:hie:org:<CODE>` name must agree with that organisation. Anything else is answered
//! `UNAUTHENTICATED` before any service sees the request. The organisation then travels in the
//! request's extensions as [`CallerOrganisation`]; headers cannot claim another one.
//!
//! A certificate that passed is not looked up again for [`RECHECK_AFTER`]: checking it took two
//! queries, which made every call over mutual TLS cost six empty calls. A revocation or an
//! organisation update made through this process's directory ends the reuse at once; one made by
//! another process (`hie certs revoke`, another replica) takes effect within [`RECHECK_AFTER`].

use std::task::{Context, Poll};
use std::time::Duration;

use hie_access::AuditTrail;
use hie_access::domain::{AuditEvent, Outcome};
use hie_core::Error;
use hie_core::cache::RecentCache;
use hie_core::context::{self, CallerOrganisation, CheckedContext, RequestContext};
use hie_directory::DirectoryService;
use tonic::Status;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::pki;

/// How long a certificate that passed is trusted without looking it up again.
pub const RECHECK_AFTER: Duration = Duration::from_secs(1);
/// Bounds the memory of the reuse: past this many certificates it starts afresh.
const MOST_REMEMBERED: usize = 10_000;

/// Certificates (DER) that passed recently, with the organisation each belongs to.
type Passed = RecentCache<Vec<u8>, CallerOrganisation>;

/// Wraps every service of a server in [`Authenticate`].
#[derive(Clone, Debug)]
pub struct AuthenticateLayer {
    directory: DirectoryService,
    audit: AuditTrail,
    required: bool,
    passed: Passed,
}

impl AuthenticateLayer {
    /// `required` is false only for a plaintext development server on loopback, where there is
    /// no certificate to check and calls carry no caller organisation.
    pub fn new(directory: DirectoryService, audit: AuditTrail, required: bool) -> AuthenticateLayer {
        AuthenticateLayer {
            directory,
            audit,
            required,
            passed: RecentCache::new(RECHECK_AFTER, MOST_REMEMBERED),
        }
    }
}

impl<S> tower_layer::Layer<S> for AuthenticateLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Authenticate<S> {
        Authenticate {
            inner,
            directory: self.directory.clone(),
            audit: self.audit.clone(),
            required: self.required,
            passed: self.passed.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Authenticate<S> {
    inner: S,
    directory: DirectoryService,
    audit: AuditTrail,
    required: bool,
    passed: Passed,
}

impl<S, B> Service<http::Request<B>> for Authenticate<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call; a fresh clone waits for the next.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        if !self.required {
            return Box::pin(inner.call(request));
        }
        let directory = self.directory.clone();
        let audit = self.audit.clone();
        let passed = self.passed.clone();
        Box::pin(async move {
            let certificates = request
                .extensions()
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.peer_certs());
            let certificate = certificates
                .as_ref()
                .and_then(|certs| certs.first())
                .map(|c| c.as_ref());
            // Read before the look-up: a change during it leaves the result un-reusable.
            let trust_changes = directory.trust_changes();
            let recently_passed = certificate.and_then(|der| passed.get(der, trust_changes));
            let checked = match recently_passed {
                Some(caller) => Ok(caller),
                None => authenticate(&directory, certificate).await.inspect(|caller| {
                    if let Some(der) = certificate {
                        passed.remember(der.to_vec(), trust_changes, caller.clone());
                    }
                }),
            };
            let caller = match checked {
                Ok(caller) => caller,
                Err(error) => return Ok(Status::from(error).into_http()),
            };
            let metadata = tonic::metadata::MetadataMap::from_headers(request.headers().clone());
            let path = request.uri().path().to_owned();
            match check_claims(&audit, &caller, metadata, &path).await {
                Ok(Some(checked)) => {
                    request.extensions_mut().insert(checked);
                }
                Ok(None) => {}
                Err(status) => return Ok(status.into_http()),
            }
            request.extensions_mut().insert(caller);
            inner.call(request).await
        })
    }
}

/// Refuses, and records in the audit trail, a call whose request context claims a role or purpose
/// its organisation may not assert; returns the checked context otherwise, for the handler to use
/// as it is. Calls without a context (health, reflection) and contexts that do not parse pass on:
/// the handler answers those with `INVALID_ARGUMENT` naming the header.
async fn check_claims(
    audit: &AuditTrail,
    caller: &CallerOrganisation,
    metadata: tonic::metadata::MetadataMap,
    path: &str,
) -> Result<Option<CheckedContext>, Status> {
    let reason = match RequestContext::of_caller(&metadata, Some(caller)) {
        Ok(context) => return Ok(Some(CheckedContext(context))),
        Err(Error::PermissionDenied(reason)) => reason,
        Err(_) => return Ok(None),
    };
    let claimed = |key: &str| {
        metadata
            .get(key)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(64).collect::<String>())
            .unwrap_or_default()
    };
    let event = AuditEvent {
        occurred_at: hie_core::time::now(),
        request_id: claimed(context::REQUEST_ID_HEADER),
        organisation: Some(caller.code.to_string()),
        user_id: claimed(context::USER_HEADER),
        role: claimed(context::ROLE_HEADER),
        purpose: claimed(context::PURPOSE_HEADER),
        reason: None,
        action: hie_core::vocabulary::AuditAction::ContextClaim.code().to_owned(),
        person_id: None,
        resource_type: "grpc_method".to_owned(),
        resource_id: Some(path.chars().take(200).collect()),
        outcome: Outcome::Denied(reason.clone()),
        emergency: false,
    };
    audit
        .record(event)
        .await
        .map_err(|_| Status::unavailable("cannot record the refusal in the audit trail right now"))?;
    Err(Error::PermissionDenied(reason).into())
}

/// Decides who presented `certificate` (DER), or why nobody may.
pub async fn authenticate(
    directory: &DirectoryService,
    certificate: Option<&[u8]>,
) -> Result<CallerOrganisation, Error> {
    let Some(der) = certificate else {
        return Err(Error::Unauthenticated("a client certificate is required".into()));
    };
    let fingerprint = pki::fingerprint(der);
    let registration = directory
        .certificate(&fingerprint)
        .await
        .map_err(|_| Error::Unavailable("cannot check the client certificate right now".into()))?
        .ok_or_else(|| {
            Error::Unauthenticated(format!("client certificate {fingerprint} is not registered"))
        })?;
    if registration.revoked {
        return Err(Error::Unauthenticated(format!(
            "client certificate {fingerprint} was revoked"
        )));
    }
    let named = pki::organisation_in_certificate(der);
    if named.as_deref() != Some(registration.organisation.as_str()) {
        return Err(Error::Unauthenticated(
            "the client certificate's urn:hie:org name does not match the organisation it is registered for"
                .into(),
        ));
    }
    match directory.get_organisation(&registration.organisation).await {
        Ok(organisation) if organisation.is_active() => Ok(CallerOrganisation {
            code: registration.organisation,
            entitlements: organisation.draft.entitlements,
        }),
        Ok(_) => Err(Error::Unauthenticated(format!(
            "organisation {} is inactive",
            registration.organisation
        ))),
        Err(_) => Err(Error::Unauthenticated(format!(
            "organisation {} is not registered",
            registration.organisation
        ))),
    }
}
