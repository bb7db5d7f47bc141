//! The relay to NATS JetStream (`hie serve --events-nats nats://…`), for deployments where many
//! consumers share a subscription's events: each subscription whose channel is NATS is delivered
//! by the same loop as a gRPC stream (entitlement, filter, consent, audit), published on its
//! subject (`hie.events.<organisation>.<subscription>`) with the event's id and position as the
//! message id (JetStream drops a duplicate within its window), and acknowledged in the exchange
//! once JetStream has stored it. A restart resumes after the acknowledged position: at least once.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream;
use hie_core::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::domain::{Delivered, EventService, Subscription};

/// The JetStream stream the relay publishes into, created when missing.
pub const STREAM_NAME: &str = "HIE_EVENTS";
const SUBJECTS: &str = "hie.events.>";
/// How often the relay looks for new or cancelled NATS subscriptions.
const RESCAN: Duration = Duration::from_secs(1);
/// How many published events may await JetStream's acknowledgement at once per subscription.
const IN_FLIGHT: usize = 256;

/// Connects to NATS, makes sure the stream exists, and relays every NATS subscription until the
/// returned task is aborted.
pub async fn start(events: EventService, url: &str) -> Result<JoinHandle<()>, Error> {
    let client = async_nats::connect(url)
        .await
        .map_err(|e| Error::Unavailable(format!("cannot connect to NATS at {url}: {e}")))?;
    let jetstream = jetstream::new(client);
    jetstream
        .get_or_create_stream(jetstream::stream::Config {
            name: STREAM_NAME.to_owned(),
            subjects: vec![SUBJECTS.to_owned()],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|e| Error::Unavailable(format!("cannot create the JetStream stream {STREAM_NAME}: {e}")))?;
    tracing::info!(
        url,
        stream = STREAM_NAME,
        "relaying event subscriptions to NATS JetStream"
    );
    Ok(tokio::spawn(relay_all(events, jetstream)))
}

async fn relay_all(events: EventService, jetstream: jetstream::Context) {
    let mut running: HashMap<String, JoinHandle<()>> = HashMap::new();
    loop {
        match events.nats_subscriptions().await {
            Ok(subscriptions) => {
                let active: Vec<String> = subscriptions.iter().map(|(s, _)| s.id().to_owned()).collect();
                running.retain(|id, task| {
                    let keep = active.contains(id) && !task.is_finished();
                    if !keep {
                        task.abort();
                    }
                    keep
                });
                for (subscription, entitlement) in subscriptions {
                    if running.contains_key(subscription.id()) {
                        continue;
                    }
                    let id = subscription.id().to_owned();
                    let task = tokio::spawn(relay_one(
                        events.clone(),
                        jetstream.clone(),
                        subscription,
                        entitlement,
                    ));
                    running.insert(id, task);
                }
            }
            Err(error) => tracing::warn!(%error, "cannot list the NATS subscriptions; retrying"),
        }
        tokio::time::sleep(RESCAN).await;
    }
}

async fn relay_one(
    events: EventService,
    jetstream: jetstream::Context,
    subscription: Subscription,
    entitlement: crate::domain::Entitlement,
) {
    let context = subscription.creators_context();
    let subject = subscription.nats_subject();
    let (sink, mut deliveries) = mpsc::channel(IN_FLIGHT);
    let after = subscription.stored.acknowledged_position;
    let delivering = tokio::spawn({
        let events = events.clone();
        let subscription = subscription.clone();
        async move {
            events
                .deliver(context, subscription, entitlement, after, sink)
                .await
        }
    });
    let context = subscription.creators_context();
    let mut pending = std::collections::VecDeque::new();
    let mut acknowledged = after;
    loop {
        // Take what is ready, publish it, then wait for JetStream's acknowledgements in order.
        let Some(first) = deliveries.recv().await else {
            break;
        };
        let mut batch = vec![first];
        while batch.len() < IN_FLIGHT {
            match deliveries.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut newest = acknowledged;
        for delivered in batch {
            match delivered {
                Ok(Delivered::Event { cursor, event }) => {
                    let body = serde_json::json!({
                        "cursor": cursor,
                        "position": event.position,
                        "event_id": event.id,
                        "event_type": event.topic,
                        "schema_version": event.schema_version,
                        "person_id": event.person_id.as_ref().map(|p| p.as_str()),
                        "organisation_code": event.organisation.as_ref().map(|o| o.as_str()),
                        "occurred_at_micros": event.created_at,
                        "payload": serde_json::from_str::<serde_json::Value>(&event.payload).unwrap_or_default(),
                    });
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(
                        "Nats-Msg-Id",
                        format!("{}:{}", subscription.id(), event.position).as_str(),
                    );
                    match jetstream
                        .publish_with_headers(subject.clone(), headers, body.to_string().into())
                        .await
                    {
                        Ok(ack) => pending.push_back((event.position, ack)),
                        Err(error) => {
                            tracing::warn!(%error, subscription = subscription.id(), "publishing to NATS failed; resuming");
                            delivering.abort();
                            return;
                        }
                    }
                }
                Ok(Delivered::Heartbeat { position, .. }) => newest = newest.max(position),
                Err(error) => {
                    tracing::warn!(%error, subscription = subscription.id(), "the NATS relay of a subscription stopped");
                    return;
                }
            }
        }
        while let Some((position, ack)) = pending.pop_front() {
            if let Err(error) = ack.await {
                tracing::warn!(%error, subscription = subscription.id(), "JetStream did not store an event; resuming");
                delivering.abort();
                return;
            }
            newest = newest.max(position);
        }
        if newest > acknowledged {
            match events.acknowledge_position(&context, &subscription, newest).await {
                Ok(()) => acknowledged = newest,
                Err(error) => {
                    tracing::warn!(%error, subscription = subscription.id(), "cannot record the NATS relay's position")
                }
            }
        }
    }
}
