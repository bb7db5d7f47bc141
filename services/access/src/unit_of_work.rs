//! The unit of work: the one way any service writes. The domain asks the audit trail for one
//! ([`AuditTrail::write`]), writes through its stores (which take the unit, never a connection
//! from the domain), names what the write concerned and the events it announces; the trail
//! commits the change, its audit event and its outbox events in one transaction. A refusal, or a
//! write that failed and was rolled back, is recorded by the same call, so that no service keeps
//! a transaction, a staging step or a failure-audit wrapper of its own.

use hie_core::Error;
use hie_core::context::RequestContext;
use hie_core::db::Database;
use hie_core::id::PersonId;
use hie_core::outbox::OutboxEvent;
use hie_core::vocabulary::AuditAction;
use sqlx::{Any, AnyConnection, Transaction};

use crate::domain::{AuditEvent, Outcome};
use crate::store::{AuditTrail, stage_in, staged_row};

/// What a write is about, as its audit event records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub action: AuditAction,
    pub resource_type: &'static str,
    pub resource_id: Option<String>,
    pub person_id: Option<PersonId>,
}

impl Subject {
    pub fn new(action: AuditAction, resource_type: &'static str) -> Subject {
        Subject {
            action,
            resource_type,
            resource_id: None,
            person_id: None,
        }
    }

    /// The resource's own id.
    pub fn resource(mut self, id: impl Into<String>) -> Subject {
        self.resource_id = Some(id.into());
        self
    }

    /// The person whose data the write concerns.
    pub fn person(mut self, person: &PersonId) -> Subject {
        self.person_id = Some(person.clone());
        self
    }

    /// The audit event of this subject for `context`, ended as `outcome`.
    pub fn event(&self, context: &RequestContext, outcome: Outcome) -> AuditEvent {
        AuditEvent::new(
            context,
            self.action,
            self.person_id.as_ref(),
            self.resource_type,
            self.resource_id.clone(),
            outcome,
        )
    }
}

/// What a unit hands a store that writes everything in one statement
/// ([`UnitOfWork::take_pending`]).
#[derive(Debug, Default)]
pub struct Pending {
    /// The staged audit row: its id and the events as JSON.
    pub audit: Option<(String, String)>,
    pub outbox: Vec<OutboxEvent>,
}

/// One write in progress: its transaction, what it concerns, and what it announces. The
/// transaction begins when a store first writes (or at the commit), so that what the domain
/// checks before writing (the directory, caches) holds no write lock and no second connection.
pub struct UnitOfWork {
    database: Database,
    transaction: Option<Transaction<'static, Any>>,
    context: RequestContext,
    subject: Subject,
    /// Bulk writes record an event per item instead of one for the whole write.
    each: Option<Vec<AuditEvent>>,
    outbox: Vec<OutboxEvent>,
    /// Events a store wrote in a statement of its own: announced in this process at the commit
    /// like the rest.
    written_by_store: Vec<OutboxEvent>,
    /// A store wrote the audit event and the outbox events in a statement of its own.
    pending_taken: bool,
    roll_back: bool,
}

impl std::fmt::Debug for UnitOfWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnitOfWork")
            .field("subject", &self.subject)
            .field("outbox", &self.outbox.len())
            .finish_non_exhaustive()
    }
}

impl UnitOfWork {
    /// The transaction's connection, for stores; the transaction begins at the first call.
    /// Domain code never calls this: it hands the unit to a store.
    pub async fn connection(&mut self) -> Result<&mut AnyConnection, Error> {
        let transaction = match &mut self.transaction {
            Some(transaction) => transaction,
            empty => empty.insert(self.database.begin_write().await?),
        };
        Ok(transaction)
    }

    /// Names what the write turned out to concern (known only once it ran: the person a
    /// registration joined, the id of what it created).
    pub fn concerns(&mut self, person: Option<&PersonId>, resource_id: Option<String>) {
        if person.is_some() {
            self.subject.person_id = person.cloned();
        }
        if resource_id.is_some() {
            self.subject.resource_id = resource_id;
        }
    }

    /// The organisation the write is made for (the caller's), if any.
    pub fn organisation(&self) -> Option<&hie_core::domain::OrganisationCode> {
        self.context.organisation.as_ref()
    }

    /// Records `events` (one per item of a bulk write) instead of the write's one event.
    pub fn record_each(&mut self, events: Vec<AuditEvent>) {
        self.each = Some(events);
    }

    /// Announces an event, written in this transaction.
    pub fn emit(&mut self, event: OutboxEvent) {
        self.outbox.push(event);
    }

    /// Rolls the work back instead of committing it (a dry run). Its audit event is still
    /// recorded, on its own.
    pub fn roll_back_instead(&mut self) {
        self.roll_back = true;
    }

    /// For a store that writes everything of a write in one statement (one round trip): the
    /// staged audit row (id, events) and the outbox events so far, which the commit then leaves
    /// out. Call once the write's subject is final; events emitted later are still written.
    pub fn take_pending(&mut self) -> Result<Pending, Error> {
        let events = self.take_audit_events();
        self.pending_taken = true;
        let audit = if events.is_empty() {
            None
        } else {
            Some(staged_row(&events)?)
        };
        let outbox = std::mem::take(&mut self.outbox);
        self.written_by_store.extend(outbox.iter().cloned());
        Ok(Pending { audit, outbox })
    }

    /// The write's audit events: one per item of a bulk write, or the subject's one.
    fn take_audit_events(&mut self) -> Vec<AuditEvent> {
        match self.each.take() {
            Some(events) => events,
            None => vec![self.subject.event(&self.context, Outcome::Permitted)],
        }
    }
}

impl AuditTrail {
    /// Runs one write as a unit of work: refused (and recorded) unless `permitted`; otherwise
    /// `work` runs in a write transaction that commits with its audit event and outbox events,
    /// or not at all. A failed write is rolled back and recorded as failed, with the message the
    /// caller sees.
    pub async fn write<T>(
        &self,
        context: &RequestContext,
        subject: Subject,
        permitted: Result<(), String>,
        work: impl AsyncFnOnce(&mut UnitOfWork) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if let Err(reason) = permitted {
            return Err(self.refuse(context, &subject, reason).await);
        }
        let (written, subject) = self.run_unit(context, subject, work).await;
        self.recorded(context, &subject, written).await
    }

    /// [`AuditTrail::write`] for a write that a concurrent change may get in the way of
    /// (`CONFLICT`): refused (and recorded) unless `permitted`; otherwise it starts again on a
    /// fresh transaction, up to `attempts` times in all, with the work `attempt` makes for each
    /// try.
    pub async fn write_retrying<T, W>(
        &self,
        context: &RequestContext,
        subject: Subject,
        permitted: Result<(), String>,
        attempts: u32,
        attempt: impl Fn() -> W,
    ) -> Result<T, Error>
    where
        W: AsyncFnOnce(&mut UnitOfWork) -> Result<T, Error>,
    {
        if let Err(reason) = permitted {
            return Err(self.refuse(context, &subject, reason).await);
        }
        let mut tried = 1;
        loop {
            let (written, subject_as_left) = self.run_unit(context, subject.clone(), attempt()).await;
            match written {
                Err(Error::Conflict(_)) if tried < attempts => tried += 1,
                written => return self.recorded(context, &subject_as_left, written).await,
            }
        }
    }

    /// Opens a unit, runs `work` in it and commits; the subject as the work left it.
    async fn run_unit<T>(
        &self,
        context: &RequestContext,
        subject: Subject,
        work: impl AsyncFnOnce(&mut UnitOfWork) -> Result<T, Error>,
    ) -> (Result<T, Error>, Subject) {
        let mut unit = UnitOfWork {
            database: self.database().clone(),
            transaction: None,
            context: context.clone(),
            subject,
            each: None,
            outbox: Vec::new(),
            written_by_store: Vec::new(),
            pending_taken: false,
            roll_back: false,
        };
        match work(&mut unit).await {
            Ok(written) => {
                let subject = unit.subject.clone();
                (self.commit(unit).await.map(|()| written), subject)
            }
            // Dropping the unit's transaction uncommitted rolls it back.
            Err(error) => (Err(error), unit.subject),
        }
    }

    async fn commit(&self, mut unit: UnitOfWork) -> Result<(), Error> {
        if unit.roll_back {
            if let Some(transaction) = unit.transaction.take() {
                transaction.rollback().await?;
            }
            self.record_all(unit.take_audit_events()).await?;
            return Ok(());
        }
        let outbox = std::mem::take(&mut unit.outbox);
        // A store that wrote the events in its own statement took them already: none are built
        // again on that (hot) path.
        let events = (!unit.pending_taken).then(|| unit.take_audit_events());
        let connection = unit.connection().await?;
        if let Some(events) = &events {
            stage_in(connection, events).await?;
        }
        OutboxEvent::insert_all(connection, &outbox).await?;
        if let Some(transaction) = unit.transaction.take() {
            transaction.commit().await?;
        }
        self.chain_staged_soon();
        let mut committed = std::mem::take(&mut unit.written_by_store);
        committed.extend(outbox);
        self.announce(&committed);
        Ok(())
    }

    /// The answer of a write, after recording its failure when it failed.
    async fn recorded<T>(
        &self,
        context: &RequestContext,
        subject: &Subject,
        written: Result<T, Error>,
    ) -> Result<T, Error> {
        if let Err(error) = &written {
            self.record(subject.event(context, Outcome::of_error(error)))
                .await?;
        }
        written
    }
}
