//! The EMR registry's service: what documents, visits and the summary share (the stores, the
//! services it asks, the gateways to hospitals) and the read gate over a person's clinical items.

use std::sync::Arc;

use hie_access::{AccessGate, Seen};
use hie_core::Error;
use hie_core::context::RequestContext;
use hie_core::db::Database;
use hie_core::vocabulary::AuditAction;
use hie_directory::DirectoryService;
use hie_population::PopulationService;
use hie_population::domain::Lineage;
use hie_records::RecordsService;
use hie_records::domain::read_items;

use super::HospitalGateways;
use crate::store::EmrStore;

/// The clinical documents, visits and summaries of the exchange.
#[derive(Clone, Debug)]
pub struct EmrService {
    pub(super) store: EmrStore,
    pub(super) access: AccessGate,
    pub(super) population: PopulationService,
    pub(super) directory: DirectoryService,
    pub(super) records: RecordsService,
    pub(super) gateways: Arc<dyn HospitalGateways>,
    /// The largest content the exchange keeps itself.
    pub(super) max_content_bytes: usize,
}

pub(super) use hie_records::domain::Item;

impl EmrService {
    pub fn new(
        database: Database,
        access: AccessGate,
        population: PopulationService,
        directory: DirectoryService,
        records: RecordsService,
        gateways: Arc<dyn HospitalGateways>,
        max_content_bytes: usize,
    ) -> EmrService {
        EmrService {
            store: EmrStore::new(database),
            access,
            population,
            directory,
            records,
            gateways,
            max_content_bytes,
        }
    }

    /// The read gate over one person's items (the registries' one rule, [`read_items`]).
    pub(super) async fn gate<T>(
        &self,
        context: &RequestContext,
        action: AuditAction,
        lineage: &Lineage,
        items: Vec<Item<T>>,
    ) -> Result<Seen<T>, Error> {
        read_items(&self.access, &self.directory, context, action, lineage, items).await
    }
}
