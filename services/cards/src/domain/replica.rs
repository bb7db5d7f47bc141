//! What each replica keeps in memory so that a card at a reader costs no database round trip:
//! the card table (`index.rs`) and the view of persons (`persons.rs`), loaded at start and kept
//! current, and the sweeping of expired challenges.

use std::sync::Arc;

use chrono::Utc;
use hie_core::Error;
use hie_core::context::RequestContext;
use hie_core::id::PersonId;
use hie_population::domain::PersonSelector;
use tokio::sync::Notify;

use super::CardService;
use super::index::{IndexedCard, REFRESH_EVERY};
use super::persons::{CHANGES_OF_PERSONS, changes_persons};

impl CardService {
    /// Loads this replica's look-up table and keeps it and the person view current until the
    /// task is dropped. The table: the first pass reads every card, page by page (look-ups go to
    /// the database meanwhile); then, every [`REFRESH_EVERY`], the cards changed since five
    /// seconds before the previous pass began (a write stamps its row a moment before it commits;
    /// putting a card twice is harmless, and an older copy never replaces a newer one). The person view: this
    /// process's committed changes mark their persons unknown as they commit (see
    /// [`CardService::new`]); other replicas' are read from the outbox with each refresh.
    /// Expired challenges are swept on the way. On PostgreSQL a refresh also runs as soon as
    /// another replica commits a change every replica must hear of (a card stopped, a consent
    /// or lineage changed: `EventType::concerns_replicas`), which it notifies as it commits.
    pub async fn keep_index_current(self) {
        let wake = Arc::new(Notify::new());
        tokio::join!(self.listen(wake.clone()), self.refresh(wake));
    }

    /// Wakes the refresh at each change another replica notifies (PostgreSQL); on SQLite, which
    /// one process holds, there is nothing to hear.
    async fn listen(&self, wake: Arc<Notify>) {
        loop {
            match self.store.listen_for_changes().await {
                Ok(None) => return,
                Ok(Some(mut listener)) => {
                    while listener.next().await.is_ok() {
                        wake.notify_one();
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for other replicas' changes; polling meanwhile")
                }
            }
            // Whatever was notified while the connection was down is found by the poll.
            wake.notify_one();
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }

    async fn refresh(&self, wake: Arc<Notify>) {
        const PAGE: i64 = 20_000;
        // How long a write may take between stamping its rows and committing them (and how far
        // replicas' clocks may differ): a pass reads again what changed that long before the
        // previous pass began, so that nothing committed late is missed, and nothing older is
        // read twice (a bulk load of millions is read once, not at every pass).
        const OVERLAP_MICROS: i64 = 5_000_000;
        let now = || hie_core::time::to_micros(Utc::now());
        let (mut since, mut after) = (i64::MIN, String::new());
        let mut pass_began = now();
        let mut events_since = now() - OVERLAP_MICROS;
        // Events already applied, by id, while they are inside the overlap: each evicts once.
        let mut applied: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
        loop {
            match self.store.changed_since(since, &after, PAGE).await {
                Ok(page) => {
                    for (card, _) in &page {
                        self.index.put(&card.token, &IndexedCard::of(card));
                    }
                    if let Some((card, updated_at)) = page.last()
                        && page.len() as i64 == PAGE
                    {
                        (since, after) = (*updated_at, card.id.to_string());
                        continue;
                    }
                    if !self.index.is_loaded() {
                        self.index.mark_loaded();
                        tracing::info!(cards = self.index.len(), "the card look-up table is loaded");
                    }
                    (since, after) = (pass_began - OVERLAP_MICROS, String::new());
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read the cards changed lately; trying again");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            }
            let events_read = now();
            match self.store.events_since(&CHANGES_OF_PERSONS, events_since).await {
                Ok(events) => {
                    let named: Vec<PersonId> = events
                        .iter()
                        .filter(|event| applied.insert(event.id.clone(), event.created_at).is_none())
                        .filter(|event| changes_persons(event))
                        .flat_map(|event| event.persons_named())
                        .collect();
                    self.persons.evict(&named);
                    events_since = events_read - OVERLAP_MICROS;
                    applied.retain(|_, created_at| *created_at >= events_since);
                }
                Err(error) => {
                    // Unsure what changed meanwhile: nothing known is trusted.
                    self.persons.clear();
                    tracing::warn!(%error, "cannot read the persons changed lately; the view of persons starts afresh");
                }
            }
            if !self.persons.is_complete()
                && let Err(error) = self.load_persons().await
            {
                tracing::warn!(%error, "cannot load the persons not standing alone; trying again");
            }
            self.sweep_challenges();
            // Notifications that came while refreshing are coalesced into one more refresh.
            tokio::select! {
                () = tokio::time::sleep(REFRESH_EVERY) => {}
                () = wake.notified() => {}
            }
            pass_began = now();
        }
    }

    /// Loads the persons who do not stand alone (merged, merged into, with consent of their
    /// own) into the person view, and marks it complete: from then on anyone else is answered
    /// as standing alone without the database.
    async fn load_persons(&self) -> Result<(), Error> {
        let context = RequestContext::bulk_load("hie-cards", "the card service's view of persons");
        // A person changed during the load is either not kept (the change ran during its
        // look-up) or marked unknown by the change (it ran after): read again when asked.
        let persons = self.population.persons_not_standing_alone().await?;
        for person in &persons {
            let generation = self.persons.generation();
            let lineage = self
                .population
                .lineage(&context, &PersonSelector::Id(person.clone()))
                .await?;
            self.persons.keep(person.clone(), lineage, generation);
        }
        self.persons.mark_complete();
        tracing::info!(
            persons = persons.len(),
            "the card service's view of persons is loaded"
        );
        Ok(())
    }

    /// How many cards this replica's look-up table holds, once loaded.
    pub fn indexed_cards(&self) -> Option<usize> {
        self.index.is_loaded().then(|| self.index.len())
    }
}
