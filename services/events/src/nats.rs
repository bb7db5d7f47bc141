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
                let active: Vec<String> = subscriptions.iter().map(|s| s.id().to_owned()).collect();
                running.retain(|id, task| {
                    let keep = active.contains(id) && !task.is_finished();
                    if !keep {
                        task.abort();
                    }
                    keep
                });
                for subscription in subscriptions {
                    if running.contains_key(subscription.id()) {
                        continue;
                    }
                    let id = subscription.id().to_owned();
                    let task = tokio::spawn(relay_one(events.clone(), jetstream.clone(), subscription));
                    running.insert(id, task);
                }
            }
            Err(error) => tracing::warn!(%error, "cannot list the NATS subscriptions; retrying"),
        }
        tokio::time::sleep(RESCAN).await;
    }
}

/// What the publisher hands the acknowledger, in log order.
enum Published {
    /// Published; stored once JetStream acknowledges.
    Event(i64, async_nats::jetstream::context::PublishAckFuture),
    /// Read past without a match: nothing to store.
    Skipped(i64),
}

/// How often the relay records its position in the exchange (an audited write): a restart
/// publishes again at most this much, which JetStream's duplicate window then drops.
const RECORD_POSITION_EVERY: Duration = Duration::from_millis(250);

/// Relays one subscription: the delivery loop feeds the publisher, which publishes without
/// waiting; the acknowledger awaits JetStream's acknowledgements in order and records the
/// position reached. Any failure ends the relay; the next rescan starts it again from the
/// recorded position.
async fn relay_one(events: EventService, jetstream: jetstream::Context, subscription: Subscription) {
    let subject = subscription.nats_subject();
    let (sink, mut deliveries) = mpsc::channel(IN_FLIGHT);
    let after = subscription.stored.acknowledged_position;
    let delivering = tokio::spawn({
        let events = events.clone();
        let subscription = subscription.clone();
        let context = subscription.creators_context();
        async move { events.deliver(context, subscription, after, sink).await }
    });
    let (published, mut to_acknowledge) = mpsc::channel::<Published>(IN_FLIGHT);
    let publisher = async {
        while let Some(delivered) = deliveries.recv().await {
            let next = match delivered {
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
                        Ok(ack) => Published::Event(event.position, ack),
                        Err(error) => {
                            tracing::warn!(%error, subscription = subscription.id(), "publishing to NATS failed; resuming");
                            return;
                        }
                    }
                }
                Ok(Delivered::Heartbeat { position, .. }) => Published::Skipped(position),
                // The server is stopping: the relay resumes after its recorded position.
                Err(Error::Unavailable(_)) => return,
                Err(error) => {
                    tracing::warn!(%error, subscription = subscription.id(), "the NATS relay of a subscription stopped; restarting it");
                    return;
                }
            };
            if published.send(next).await.is_err() {
                return;
            }
        }
    };
    let acknowledger = async {
        let context = subscription.creators_context();
        let mut recorded = after;
        let mut reached = after;
        let mut last_recorded = tokio::time::Instant::now();
        loop {
            let next = tokio::time::timeout(RECORD_POSITION_EVERY, to_acknowledge.recv()).await;
            match next {
                Ok(Some(Published::Event(position, ack))) => match ack.await {
                    Ok(_) => reached = reached.max(position),
                    Err(error) => {
                        tracing::warn!(%error, subscription = subscription.id(), "JetStream did not store an event; resuming");
                        return;
                    }
                },
                Ok(Some(Published::Skipped(position))) => reached = reached.max(position),
                Ok(None) => return,
                Err(_) => {}
            }
            if reached > recorded && last_recorded.elapsed() >= RECORD_POSITION_EVERY {
                match events
                    .acknowledge_position(&context, &subscription, reached)
                    .await
                {
                    Ok(()) => recorded = reached,
                    Err(error) => {
                        tracing::warn!(%error, subscription = subscription.id(), "cannot record the NATS relay's position")
                    }
                }
                last_recorded = tokio::time::Instant::now();
            }
        }
    };
    tokio::join!(publisher, acknowledger);
    delivering.abort();
}
