//! Resolves coalesced into batches (see [`hie_core::batch`]): under load the database round
//! trip, not the index look-up, is the cost of a resolve. One batch runs the whole guarded read:
//! one query finds the identifiers' persons with their consent directives joined in, the access
//! gate decides each read and queues its audit event, so a guarded resolve costs the database one
//! round trip, as an unguarded one would.

use std::sync::Arc;

use hie_access::AccessGate;
use hie_access::domain::consent::{ConsentDirectives, DataCategory};
use hie_access::gate::Read;
use hie_core::Error;
use hie_core::batch::Batcher;
use hie_core::context::RequestContext;
use hie_core::db::HeldConnections;
use hie_core::domain::Identifier;

use super::PopulationStore;
use crate::domain::{CrossReference, PersonId, visibility};

/// The most identifiers one query resolves.
pub const MAX_BATCH: usize = 64;
/// How many batch queries may run at once: two, so that one batch is on the wire while the
/// database answers the other, and few enough that requests queue into batches under load.
/// Measured with `hie bench resolve` on PostgreSQL (32 calls in flight): one resolve query per
/// call gave 0.21 of the empty call's throughput; batches with 4 slots 0.25, with 2 slots 0.33.
pub const QUERY_SLOTS: usize = 2;

/// A resolved identifier: its person and every identifier of that person.
pub type Resolved = (PersonId, Vec<CrossReference>);

#[derive(Clone, Debug)]
pub struct ResolveBatcher {
    batcher: Batcher<(RequestContext, Identifier), Result<Resolved, Error>>,
}

impl ResolveBatcher {
    pub fn new(store: PopulationStore, access: AccessGate) -> ResolveBatcher {
        let connections = Arc::new(HeldConnections::new(store.database().clone(), QUERY_SLOTS));
        let batcher = Batcher::new(
            QUERY_SLOTS,
            MAX_BATCH,
            Arc::new(move |requests: Vec<(RequestContext, Identifier)>| {
                let store = store.clone();
                let access = access.clone();
                let connections = connections.clone();
                Box::pin(async move { resolve_guarded(&store, &connections, &access, requests).await })
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
    connections: &HeldConnections,
    access: &AccessGate,
    requests: Vec<(RequestContext, Identifier)>,
) -> Result<Vec<Result<Resolved, Error>>, Error> {
    const ACTION: &str = "population.resolve";
    let identifiers: Vec<Identifier> = requests
        .iter()
        .map(|(_, identifier)| identifier.clone())
        .collect();
    let found = connections
        .with(async |connection| store.resolve_many(connection, &identifiers, true).await)
        .await?;
    // Per found person: the person's demographics, then each sensitive category among its
    // references; `plans` remembers where each request's reads start and which categories follow.
    let mut reads = Vec::new();
    let mut directives: Vec<ConsentDirectives> = Vec::new();
    let mut plans = Vec::with_capacity(found.len());
    for ((context, _), found) in requests.iter().zip(&found) {
        let Some((person, references, person_directives)) = found else {
            plans.push(None);
            continue;
        };
        let categories = visibility::sensitive_categories(
            context,
            references.iter().map(|r| (&r.organisation, r.sensitive_category)),
        );
        plans.push(Some((reads.len(), categories.clone())));
        for category in std::iter::once(DataCategory::Demographics).chain(categories) {
            reads.push(Read {
                context,
                action: ACTION,
                person_id: person.as_str(),
                category,
            });
            directives.push(person_directives.clone());
        }
    }
    let mut decisions = access.decide_all_given(&reads, &directives).await?;
    drop(reads);
    let mut answers = Vec::with_capacity(found.len());
    for (((context, identifier), found), plan) in requests.iter().zip(found).zip(plans) {
        let (Some((person, references, _)), Some((start, categories))) = (found, plan) else {
            answers.push(Err(not_found(identifier)));
            continue;
        };
        let mut decided = |index: usize| {
            std::mem::replace(
                decisions
                    .get_mut(index)
                    .unwrap_or(&mut Err(Error::Internal("undecided".into()))),
                Ok(()),
            )
        };
        if let Err(denied) = decided(start) {
            answers.push(Err(denied));
            continue;
        }
        let permitted: Vec<DataCategory> = categories
            .iter()
            .enumerate()
            .filter(|(k, _)| decided(start + 1 + k).is_ok())
            .map(|(_, category)| *category)
            .collect();
        let visible = |r: &CrossReference| {
            visibility::is_visible(context, &r.organisation, r.sensitive_category, &permitted)
        };
        // Asked by an identifier from a hidden record, the link itself is what must not show.
        // It answers as an identifier nobody holds does, so that the refusal itself does not tell
        // that the person is a patient of a sensitive organisation (the audit trail keeps the
        // denied category for the privacy officer).
        if references
            .iter()
            .any(|r| r.identifier == *identifier && !visible(r))
        {
            answers.push(Err(not_found(identifier)));
            continue;
        }
        let references = references.into_iter().filter(|r| visible(r)).collect();
        answers.push(Ok((person, references)));
    }
    Ok(answers)
}
