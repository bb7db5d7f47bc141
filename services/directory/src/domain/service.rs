use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hie_core::db::Database;
use hie_core::domain::OrganisationCode;
use hie_core::page::{PageSize, PageToken, next_page};
use hie_core::{Error, time};
use sqlx::AnyConnection;

use super::{
    Organisation, OrganisationDraft, OrganisationFilter, Practitioner, PractitionerDraft, PractitionerId,
};
use crate::store::{CertificateRegistration, DirectoryStore};

/// The directory's operations, on top of its store.
#[derive(Clone, Debug)]
pub struct DirectoryService {
    store: DirectoryStore,
    /// Counts the changes made through this service that can take trust away (a certificate
    /// revoked, an organisation updated), so that caches of who may connect know to re-check.
    trust_changes: Arc<AtomicU64>,
    /// Active organisations seen recently, with when and at which trust-change count: every
    /// registration names its organisation, and looking it up each time cost a round trip.
    active: Arc<std::sync::Mutex<std::collections::HashMap<OrganisationCode, SeenActive>>>,
}

/// An organisation found active: when, and at which count of trust changes.
type SeenActive = (std::time::Instant, u64, Organisation);

/// How long an organisation found active is taken as active without looking again. A change
/// through this service ends it at once; one by another process (another replica, the CLI)
/// within this time, as for certificates.
pub const ACTIVE_RECHECK_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

impl DirectoryService {
    pub fn new(database: Database) -> DirectoryService {
        DirectoryService {
            store: DirectoryStore::new(database),
            trust_changes: Arc::default(),
            active: Arc::default(),
        }
    }

    /// Changes every time this service revokes a certificate or updates an organisation.
    pub fn trust_changes(&self) -> u64 {
        self.trust_changes.load(Ordering::Acquire)
    }

    /// Tells the caches of who may connect to look again: call after committing a change made
    /// with an `_in` method that can take trust away (an organisation updated, a certificate
    /// revoked). The methods without `_in` call it themselves.
    pub fn trust_changed(&self) {
        self.trust_changes.fetch_add(1, Ordering::AcqRel);
    }

    /// Runs one change on a connection of its own, outside any caller's transaction: for
    /// operators' tools and tests, where no audit event goes with it.
    async fn on_own_connection<T>(
        &self,
        change: impl AsyncFnOnce(&mut AnyConnection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut connection = self.store.database().pool().acquire().await?;
        change(&mut connection).await
    }

    pub async fn register_organisation(&self, draft: OrganisationDraft) -> Result<Organisation, Error> {
        self.on_own_connection(async |conn| self.register_organisation_in(conn, draft).await)
            .await
    }

    /// Registers an organisation inside the caller's transaction (with its audit event).
    pub async fn register_organisation_in(
        &self,
        conn: &mut AnyConnection,
        draft: OrganisationDraft,
    ) -> Result<Organisation, Error> {
        let now = time::now();
        let organisation = Organisation {
            draft,
            created_at: now,
            updated_at: now,
        };
        self.store.insert_organisation(conn, &organisation).await?;
        tracing::info!(organisation = %organisation.code(), "organisation registered");
        Ok(organisation)
    }

    pub async fn update_organisation(&self, draft: OrganisationDraft) -> Result<Organisation, Error> {
        let updated = self
            .on_own_connection(async |conn| self.update_organisation_in(conn, draft).await)
            .await?;
        self.trust_changed();
        Ok(updated)
    }

    /// Updates an organisation inside the caller's transaction; call [`Self::trust_changed`]
    /// after the commit.
    pub async fn update_organisation_in(
        &self,
        conn: &mut AnyConnection,
        draft: OrganisationDraft,
    ) -> Result<Organisation, Error> {
        let existing = self.get_organisation(&draft.code).await?;
        let organisation = Organisation {
            draft,
            created_at: existing.created_at,
            updated_at: time::now(),
        };
        self.store.update_organisation(conn, &organisation).await?;
        tracing::info!(organisation = %organisation.code(), active = organisation.is_active(), "organisation updated");
        Ok(organisation)
    }

    pub async fn get_organisation(&self, code: &OrganisationCode) -> Result<Organisation, Error> {
        self.store
            .organisation(code)
            .await?
            .ok_or_else(|| Error::NotFound(format!("organisation {code} is not registered")))
    }

    /// The organisation named by the request field `field`, which must be registered and active to
    /// submit or read data.
    pub async fn require_active_organisation(
        &self,
        field: &str,
        code: &OrganisationCode,
    ) -> Result<Organisation, Error> {
        let changes = self.trust_changes();
        if let Ok(active) = self.active.lock()
            && let Some((seen, seen_changes, organisation)) = active.get(code)
            && *seen_changes == changes
            && seen.elapsed() < ACTIVE_RECHECK_AFTER
        {
            return Ok(organisation.clone());
        }
        let found = self.store.organisation(code).await?;
        if let Some(organisation) = found.as_ref().filter(|o| o.is_active())
            && let Ok(mut active) = self.active.lock()
        {
            active.insert(
                code.clone(),
                (std::time::Instant::now(), changes, organisation.clone()),
            );
        }
        match found {
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
        request_id: &str,
        draft: PractitionerDraft,
    ) -> Result<Practitioner, Error> {
        self.on_own_connection(async |conn| self.register_practitioner_in(conn, request_id, draft).await)
            .await
    }

    /// [`Self::register_practitioner`] inside the caller's transaction.
    pub async fn register_practitioner_in(
        &self,
        conn: &mut AnyConnection,
        request_id: &str,
        draft: PractitionerDraft,
    ) -> Result<Practitioner, Error> {
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
            .insert_practitioner(conn, request_id, &practitioner)
            .await?;
        if stored.id == practitioner.id {
            tracing::info!(practitioner = stored.id.as_str(), "practitioner registered");
        }
        Ok(stored)
    }

    pub async fn update_practitioner(
        &self,
        id: &PractitionerId,
        draft: PractitionerDraft,
    ) -> Result<Practitioner, Error> {
        self.on_own_connection(async |conn| self.update_practitioner_in(conn, id, draft).await)
            .await
    }

    /// [`Self::update_practitioner`] inside the caller's transaction.
    pub async fn update_practitioner_in(
        &self,
        conn: &mut AnyConnection,
        id: &PractitionerId,
        draft: PractitionerDraft,
    ) -> Result<Practitioner, Error> {
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
        self.store.update_practitioner(conn, &practitioner).await?;
        Ok(practitioner)
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

    /// Registers a client certificate, by fingerprint, as one the organisation may connect with.
    pub async fn register_certificate(
        &self,
        organisation: &OrganisationCode,
        fingerprint: &str,
    ) -> Result<(), Error> {
        self.on_own_connection(async |conn| {
            self.register_certificate_in(conn, organisation, fingerprint)
                .await
        })
        .await
    }

    /// [`Self::register_certificate`] inside the caller's transaction.
    pub async fn register_certificate_in(
        &self,
        conn: &mut AnyConnection,
        organisation: &OrganisationCode,
        fingerprint: &str,
    ) -> Result<(), Error> {
        self.get_organisation(organisation).await?;
        self.store
            .insert_certificate(conn, fingerprint, organisation)
            .await?;
        tracing::info!(%organisation, fingerprint, "client certificate registered");
        Ok(())
    }

    /// Revokes a client certificate: connections presenting it are refused from now on.
    pub async fn revoke_certificate(&self, fingerprint: &str) -> Result<(), Error> {
        self.on_own_connection(async |conn| self.revoke_certificate_in(conn, fingerprint).await)
            .await?;
        self.trust_changed();
        Ok(())
    }

    /// Revokes a client certificate inside the caller's transaction; call
    /// [`Self::trust_changed`] after the commit.
    pub async fn revoke_certificate_in(
        &self,
        conn: &mut AnyConnection,
        fingerprint: &str,
    ) -> Result<(), Error> {
        if !self.store.revoke_certificate(conn, fingerprint).await? {
            return Err(Error::NotFound(format!(
                "no unrevoked certificate has the fingerprint {fingerprint}"
            )));
        }
        tracing::warn!(fingerprint, "client certificate revoked");
        Ok(())
    }

    /// The organisation a client certificate belongs to, if registered.
    pub async fn certificate(&self, fingerprint: &str) -> Result<Option<CertificateRegistration>, Error> {
        self.store.certificate(fingerprint).await
    }
}
