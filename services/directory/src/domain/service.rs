use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hie_access::domain::consent::DataCategory;
use hie_access::{AuditTrail, Subject, UnitOfWork};
use hie_core::cache::RecentCache;
use hie_core::context::RequestContext;
use hie_core::db::Database;
use hie_core::domain::OrganisationCode;
use hie_core::page::{PageSize, PageToken, next_page};
use hie_core::vocabulary::AuditAction;
use hie_core::{Error, time};

use super::{
    Organisation, OrganisationDraft, OrganisationFilter, Practitioner, PractitionerDraft, PractitionerId,
};
use crate::store::{CertificateRegistration, DirectoryStore};

/// What the directory's writes are, for a refusal's reason.
const CHANGE: &str = "change the directory";

/// The directory's operations, on top of its store. Every change is an administrator's, and is
/// audited through the unit of work.
#[derive(Clone, Debug)]
pub struct DirectoryService {
    store: DirectoryStore,
    audit: AuditTrail,
    /// Counts the changes made through this service that can take trust away (a certificate
    /// revoked, an organisation updated), so that caches of who may connect know to re-check.
    trust_changes: Arc<AtomicU64>,
    /// Active organisations seen recently: every registration names its organisation, and
    /// looking it up each time cost a round trip.
    active: RecentCache<OrganisationCode, Organisation>,
}

/// How long an organisation found active is taken as active without looking again. A change
/// through this service ends it at once; one by another process (another replica, the CLI)
/// within this time, as for certificates.
pub const ACTIVE_RECHECK_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

impl DirectoryService {
    pub fn new(database: Database, audit: AuditTrail) -> DirectoryService {
        DirectoryService {
            store: DirectoryStore::new(database),
            audit,
            trust_changes: Arc::default(),
            active: RecentCache::new(ACTIVE_RECHECK_AFTER, 10_000),
        }
    }

    /// Changes every time this service revokes a certificate or updates an organisation.
    pub fn trust_changes(&self) -> u64 {
        self.trust_changes.load(Ordering::Acquire)
    }

    /// Runs one change of the directory as an audited unit of work: administrators only.
    async fn change<T>(
        &self,
        context: &RequestContext,
        subject: Subject,
        work: impl AsyncFnOnce(&mut UnitOfWork) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.audit
            .write(context, subject, context.administrators_only(CHANGE), work)
            .await
    }

    /// Tells the caches of who may connect to look again, after a change that can take trust
    /// away (an organisation updated, a certificate revoked).
    fn trust_changed(&self) {
        self.trust_changes.fetch_add(1, Ordering::AcqRel);
    }

    /// Registers an organisation (administrators only; audited).
    pub async fn register_organisation(
        &self,
        context: &RequestContext,
        draft: OrganisationDraft,
    ) -> Result<Organisation, Error> {
        let subject =
            Subject::new(AuditAction::RegisterOrganisation, "organisation").resource(draft.code.as_str());
        let now = time::now();
        let organisation = Organisation {
            draft,
            created_at: now,
            updated_at: now,
        };
        self.change(context, subject, async |unit| {
            self.store.insert_organisation(unit, &organisation).await
        })
        .await?;
        tracing::info!(organisation = %organisation.code(), "organisation registered");
        Ok(organisation)
    }

    /// Updates an organisation (administrators only; audited). Connections of the organisation
    /// are checked again from the next call.
    pub async fn update_organisation(
        &self,
        context: &RequestContext,
        draft: OrganisationDraft,
    ) -> Result<Organisation, Error> {
        let subject =
            Subject::new(AuditAction::UpdateOrganisation, "organisation").resource(draft.code.as_str());
        let organisation = self
            .change(context, subject, async |unit| {
                let existing = self.get_organisation(&draft.code).await?;
                let organisation = Organisation {
                    draft,
                    created_at: existing.created_at,
                    updated_at: time::now(),
                };
                self.store.update_organisation(unit, &organisation).await?;
                Ok(organisation)
            })
            .await?;
        self.trust_changed();
        tracing::info!(organisation = %organisation.code(), active = organisation.is_active(), "organisation updated");
        Ok(organisation)
    }

    pub async fn get_organisation(&self, code: &OrganisationCode) -> Result<Organisation, Error> {
        self.store
            .organisation(code)
            .await?
            .ok_or_else(|| Error::NotFound(format!("organisation {code} is not registered")))
    }

    /// The sensitive category each of these organisations' records reveal (a psychiatric
    /// hospital's: mental health), for the read gate's "kept by" rule. An organisation the
    /// directory does not know reveals none.
    pub async fn sensitive_categories(
        &self,
        organisations: &[&OrganisationCode],
    ) -> Result<std::collections::BTreeMap<OrganisationCode, Option<DataCategory>>, Error> {
        let mut categories = std::collections::BTreeMap::new();
        for organisation in organisations {
            if categories.contains_key(*organisation) {
                continue;
            }
            let found = self.organisation_seen_recently(organisation).await?;
            categories.insert(
                (*organisation).clone(),
                found.and_then(|o| o.draft.sensitive_category),
            );
        }
        Ok(categories)
    }

    /// The organisation, from the cache of active organisations seen recently when it is there
    /// (reads of a person's records name the same few organisations again and again), else
    /// from the store; `None` when the directory does not know it.
    pub async fn organisation_seen_recently(
        &self,
        code: &OrganisationCode,
    ) -> Result<Option<Organisation>, Error> {
        let changes = self.trust_changes();
        if let Some(known) = self.active.get(code, changes) {
            return Ok(Some(known));
        }
        let found = self.store.organisation(code).await?;
        if let Some(active) = found.as_ref().filter(|o| o.is_active()) {
            self.active.remember(code.clone(), changes, active.clone());
        }
        Ok(found)
    }

    /// The organisation named by the request field `field`, which must be registered and active to
    /// submit or read data.
    pub async fn require_active_organisation(
        &self,
        field: &str,
        code: &OrganisationCode,
    ) -> Result<Organisation, Error> {
        match self.organisation_seen_recently(code).await? {
            None => Err(Error::precondition(
                field,
                format!("organisation {code} is not registered in the directory"),
            )),
            Some(organisation) if !organisation.is_active() => Err(Error::precondition(
                field,
                format!("organisation {code} is inactive"),
            )),
            Some(organisation) => Ok(organisation),
        }
    }

    pub async fn list_organisations(
        &self,
        filter: &OrganisationFilter,
        page_size: PageSize,
        page_token: Option<PageToken>,
    ) -> Result<(Vec<Organisation>, Option<PageToken>), Error> {
        let after = page_token.as_ref().map_or("", PageToken::last_key);
        let mut page = self
            .store
            .organisations(filter, after, page_size.get() + 1)
            .await?;
        let next = next_page(&mut page, page_size, |o| o.code().as_str());
        Ok((page, next))
    }

    /// Registers a practitioner once per `request_id`: a retry returns the first registration.
    pub async fn register_practitioner(
        &self,
        context: &RequestContext,
        request_id: &str,
        draft: PractitionerDraft,
    ) -> Result<Practitioner, Error> {
        let subject = Subject::new(AuditAction::RegisterPractitioner, "practitioner");
        let stored = self
            .change(context, subject, async |unit| {
                self.require_active_organisation("practitioner.organisation_code", &draft.organisation_code)
                    .await?;
                let now = time::now();
                let practitioner = Practitioner {
                    id: PractitionerId::generate(),
                    draft,
                    created_at: now,
                    updated_at: now,
                };
                let stored = self
                    .store
                    .insert_practitioner(unit, request_id, &practitioner)
                    .await?;
                unit.concerns(None, Some(stored.id.as_str().to_owned()));
                if stored.id == practitioner.id {
                    tracing::info!(practitioner = stored.id.as_str(), "practitioner registered");
                }
                Ok(stored)
            })
            .await?;
        Ok(stored)
    }

    /// Updates a practitioner (administrators only; audited).
    pub async fn update_practitioner(
        &self,
        context: &RequestContext,
        id: &PractitionerId,
        draft: PractitionerDraft,
    ) -> Result<Practitioner, Error> {
        let subject = Subject::new(AuditAction::UpdatePractitioner, "practitioner").resource(id.as_str());
        self.change(context, subject, async |unit| {
            let existing = self.get_practitioner(id).await?;
            if existing.draft.organisation_code != draft.organisation_code {
                self.require_active_organisation("practitioner.organisation_code", &draft.organisation_code)
                    .await?;
            }
            let practitioner = Practitioner {
                id: id.clone(),
                draft,
                created_at: existing.created_at,
                updated_at: time::now(),
            };
            self.store.update_practitioner(unit, &practitioner).await?;
            Ok(practitioner)
        })
        .await
    }

    pub async fn get_practitioner(&self, id: &PractitionerId) -> Result<Practitioner, Error> {
        self.store
            .practitioner(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("practitioner {} is not registered", id.as_str())))
    }

    pub async fn list_practitioners(
        &self,
        organisation: Option<&OrganisationCode>,
        page_size: PageSize,
        page_token: Option<PageToken>,
    ) -> Result<(Vec<Practitioner>, Option<PageToken>), Error> {
        let after = page_token.as_ref().map_or("", PageToken::last_key);
        let mut page = self
            .store
            .practitioners(organisation, after, page_size.get() + 1)
            .await?;
        let next = next_page(&mut page, page_size, |p| p.id.as_str());
        Ok((page, next))
    }

    /// Registers a client certificate, by fingerprint, as one the organisation may connect with
    /// (administrators only; audited).
    pub async fn register_certificate(
        &self,
        context: &RequestContext,
        organisation: &OrganisationCode,
        fingerprint: &str,
    ) -> Result<(), Error> {
        let subject = Subject::new(AuditAction::IssueCertificate, "certificate").resource(fingerprint);
        self.change(context, subject, async |unit| {
            self.get_organisation(organisation).await?;
            self.store
                .insert_certificate(unit, fingerprint, organisation)
                .await
        })
        .await?;
        tracing::info!(%organisation, fingerprint, "client certificate registered");
        Ok(())
    }

    /// Revokes a client certificate (administrators only; audited): connections presenting it
    /// are refused from the next call.
    pub async fn revoke_certificate(&self, context: &RequestContext, fingerprint: &str) -> Result<(), Error> {
        let subject = Subject::new(AuditAction::RevokeCertificate, "certificate").resource(fingerprint);
        self.change(context, subject, async |unit| {
            if self.store.revoke_certificate(unit, fingerprint).await? {
                Ok(())
            } else {
                Err(Error::NotFound(format!(
                    "no unrevoked certificate has the fingerprint {fingerprint}"
                )))
            }
        })
        .await?;
        self.trust_changed();
        tracing::warn!(fingerprint, "client certificate revoked");
        Ok(())
    }

    /// The organisation a client certificate belongs to, if registered.
    pub async fn certificate(&self, fingerprint: &str) -> Result<Option<CertificateRegistration>, Error> {
        self.store.certificate(fingerprint).await
    }
}
