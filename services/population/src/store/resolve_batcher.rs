//! Resolves coalesced into batched queries (see [`hie_core::batch`]): under load the database
//! round trip, not the index look-up, is the cost of a resolve.

use std::sync::Arc;

use hie_core::Error;
use hie_core::batch::Batcher;
use hie_core::domain::Identifier;

use super::PopulationStore;
use crate::domain::{CrossReference, PersonId};

/// The most identifiers one query resolves.
const MAX_BATCH: usize = 64;
/// How many batch queries may run at once: two, so that one batch is on the wire while the
/// database answers the other, and few enough that requests queue into batches under load.
/// Measured with `hie bench resolve` on PostgreSQL (32 calls in flight): one resolve query per
/// call gave 0.21 of the empty call's throughput; batches with 4 slots 0.25, with 2 slots 0.33.
const QUERY_SLOTS: usize = 2;

type Resolved = Option<(PersonId, Vec<CrossReference>)>;

#[derive(Clone, Debug)]
pub struct ResolveBatcher {
    batcher: Batcher<Identifier, Resolved>,
}

impl ResolveBatcher {
    pub fn new(store: PopulationStore) -> ResolveBatcher {
        let batcher = Batcher::new(
            QUERY_SLOTS,
            MAX_BATCH,
            Arc::new(move |identifiers: Vec<Identifier>| {
                let store = store.clone();
                Box::pin(async move { store.resolve_many(&identifiers).await })
            }),
        );
        ResolveBatcher { batcher }
    }

    pub async fn resolve(&self, identifier: Identifier) -> Result<Resolved, Error> {
        self.batcher.submit(identifier).await
    }
}
