//! Resolving an identifier (the PIX query), the hot read path. Resolves are coalesced into
//! batches (see [`hie_core::batch`]): under load the database round trip, not the index look-up,
//! is the cost of a resolve. One batch is one query (the store finds the identifiers' persons
//! with their consent directives and each keeping organisation's sensitive category joined in)
//! and one pass of the read gate, which decides and audits every read of the batch, so that a
//! guarded resolve costs the database one round trip, as an unguarded one would.

use std::sync::Arc;

use hie_access::domain::consent::DataCategory;
use hie_access::{AccessGate, Kept, PersonRead};
use hie_core::Error;
use hie_core::batch::Batcher;
use hie_core::context::RequestContext;
use hie_core::domain::Identifier;
use hie_core::vocabulary::AuditAction;

use super::{CrossReference, PersonId};
use crate::store::PopulationStore;

/// The most identifiers one query resolves.
pub const MAX_BATCH: usize = 64;
/// How many batch queries may run at once: two, so that one batch is on the wire while the
/// database answers the other, and few enough that requests queue into batches under load.
/// Measured with `hie bench resolve` on PostgreSQL (32 calls in flight): one resolve query per
/// call gave 0.21 of the empty call's throughput; batches with 4 slots 0.25, with 2 slots 0.33.
pub const QUERY_SLOTS: usize = 2;

/// A resolved identifier: its person and every identifier of that person the caller may see.
pub type Resolved = (PersonId, Vec<CrossReference>);

#[derive(Clone, Debug)]
pub struct ResolveBatcher {
    batcher: Batcher<(RequestContext, Identifier), Result<Resolved, Error>>,
}

impl ResolveBatcher {
    pub fn new(store: PopulationStore, access: AccessGate) -> ResolveBatcher {
        let batcher = Batcher::new(
            QUERY_SLOTS,
            MAX_BATCH,
            Arc::new(move |requests: Vec<(RequestContext, Identifier)>| {
                let store = store.clone();
                let access = access.clone();
                Box::pin(async move { resolve_guarded(&store, &access, requests).await })
            }),
        );
        ResolveBatcher { batcher }
    }

    /// The person `identifier` belongs to, if the caller may see it: `NOT_FOUND` when no record
    /// carries it, `PERMISSION_DENIED` (audited) when consent refuses.
    pub async fn resolve(
        &self,
        context: &RequestContext,
        identifier: &Identifier,
    ) -> Result<Resolved, Error> {
        self.batcher.submit((context.clone(), identifier.clone())).await?
    }
}

/// The answer for an identifier no record carries, and for one only hidden records carry.
fn not_found(identifier: &Identifier) -> Error {
    Error::NotFound(format!(
        "no record carries this identifier of {}",
        identifier.system_uri()
    ))
}

async fn resolve_guarded(
    store: &PopulationStore,
    access: &AccessGate,
    requests: Vec<(RequestContext, Identifier)>,
) -> Result<Vec<Result<Resolved, Error>>, Error> {
    let identifiers: Vec<Identifier> = requests
        .iter()
        .map(|(_, identifier)| identifier.clone())
        .collect();
    let found = store.resolve_held(&identifiers, true).await?;
    let mut reads = Vec::new();
    let mut read_of = Vec::with_capacity(found.len());
    for ((context, _), found) in requests.iter().zip(&found) {
        let Some((person, references, directives)) = found else {
            read_of.push(false);
            continue;
        };
        read_of.push(true);
        reads.push(PersonRead {
            context,
            action: AuditAction::ResolveIdentifier,
            person_id: person,
            category: DataCategory::Demographics,
            directives: Some(directives.clone()),
            items: references
                .iter()
                .map(|reference| Kept {
                    item: reference,
                    kept_by: reference.organisation.clone(),
                    sensitive: reference.sensitive_category,
                })
                .collect(),
        });
    }
    let mut seen = access.read(reads).await?.into_iter();
    let mut answers = Vec::with_capacity(found.len());
    for (((_, identifier), found), was_read) in requests.iter().zip(&found).zip(read_of) {
        let (Some((person, _, _)), true) = (found, was_read) else {
            answers.push(Err(not_found(identifier)));
            continue;
        };
        let seen = match seen.next() {
            Some(Ok(seen)) => seen,
            Some(Err(refused)) => {
                answers.push(Err(refused));
                continue;
            }
            None => return Err(Error::Internal("a resolve was left undecided".into())),
        };
        // Asked by an identifier from a hidden record, the link itself is what must not show.
        // It answers as an identifier nobody holds does, so that the refusal itself does not tell
        // that the person is a patient of a sensitive organisation (the audit trail keeps the
        // denied category for the privacy officer).
        if seen.hidden.iter().any(|r| r.identifier == *identifier) {
            answers.push(Err(not_found(identifier)));
            continue;
        }
        answers.push(Ok((person.clone(), seen.visible.into_iter().cloned().collect())));
    }
    Ok(answers)
}
