//! The event log and its subscriptions (`hie.events.v1.EventService`): the outbox every registry
//! writes in its own transactions becomes an ordered log (each committed event gets a position
//! from one sequencer), and subscriptions deliver what an organisation's kind is entitled to, as
//! the person's consent permits, each delivery audited; optionally relayed to NATS JetStream.
//!
//! It owns the `event_subscriptions` table and the `log_position` column of `outbox_events`,
//! and must never read or write any other service's tables: organisations come from the
//! directory's service, who keeps records of whom from the population registry's, consent from
//! the read gate.

pub mod domain;
pub mod grpc;
pub mod nats;
pub mod store;

pub use domain::EventService;
