//! `hie bench events`: commit-to-subscriber latency of the event log on PostgreSQL. Writers
//! commit units of work at a steady rate (default 1,000 a second), each one event with its
//! staged audit event in one transaction (the commit path of every registry write; the registry
//! work before it is not what is measured here); subscribers receive every event, each delivery
//! decided by the read gate (consent) and audited, as production delivers them. The latency runs
//! from the writer's commit returning to the subscriber's receipt. Two phases: `subscribers`
//! gRPC streams over loopback, then the same number of subscriptions relayed to NATS JetStream
//! and read by JetStream consumers. Beside the empty gRPC call measured in the same run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::StreamExt;
use hie_access::Subject;
use hie_core::domain::OrganisationCode;
use hie_core::id::PersonId;
use hie_core::outbox::OutboxEvent;
use hie_core::vocabulary::{AuditAction, EventType};
use hie_proto::events as proto;
use hie_proto::events::event_service_client::EventServiceClient;
use serde::Serialize;
use tonic::transport::Channel;

use super::{
    CallFigures, PostgresServer, bench_context, connect, health_call, loopback, measure, on_scratch_postgres,
    ratio, scratch_settings,
};
use crate::Exchange;
use crate::demo::SyntheticPrefecture;

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Print the results as one line of JSON (the default indents them).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub postgres: PostgresServer,
    /// Events committed per second.
    #[arg(long, default_value_t = 1_000)]
    pub events_per_second: u32,
    /// Subscribers, each receiving every event.
    #[arg(long, default_value_t = 10)]
    pub subscribers: usize,
    /// How long each phase writes, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// The NATS server (JetStream) of the relay phase; the phase is skipped, saying why, when it
    /// cannot be reached.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
}

/// Latency of one phase.
#[derive(Debug, Serialize)]
struct DeliveryFigures {
    events_committed: usize,
    committed_per_second: f64,
    deliveries_expected: usize,
    deliveries_received: usize,
    /// Received more than once (at-least-once delivery allows it).
    duplicates: usize,
    p50_milliseconds: f64,
    p99_milliseconds: f64,
    max_milliseconds: f64,
    /// Commit latency of the writes themselves (the unit of work's transaction).
    commit_p50_milliseconds: f64,
    commit_p99_milliseconds: f64,
}

#[derive(Debug, Serialize)]
struct EventsFigures {
    benchmark: &'static str,
    backend: &'static str,
    cores: usize,
    events_per_second: u32,
    subscribers: usize,
    seconds_per_phase: u64,
    empty_call: CallFigures,
    grpc_streams: DeliveryFigures,
    /// p99 of the streams against the empty call's p99: how many empty calls' worth.
    grpc_p99_to_empty_call_p99: f64,
    nats_relay: Option<DeliveryFigures>,
    nats_skipped_because: Option<String>,
}

pub async fn run_events(args: EventsArgs) -> Result<(), String> {
    if args.events_per_second == 0 || args.subscribers == 0 || args.seconds == 0 {
        return Err("--events-per-second, --subscribers and --seconds must be at least 1".into());
    }
    on_scratch_postgres(&args.postgres.url, args.json, async |url| {
        events_on(&url, &args).await
    })
    .await
}

/// When each event was committed, and when each subscriber received it.
#[derive(Default)]
struct Timings {
    committed: Mutex<HashMap<String, Instant>>,
    commit_latencies: Mutex<Vec<Duration>>,
    received: Mutex<Vec<(String, Instant)>>,
}

async fn events_on(url: &str, args: &EventsArgs) -> Result<EventsFigures, String> {
    let (mut settings, _keys) = scratch_settings(url)?;
    let nats = match async_nats::connect(args.nats_url.as_str()).await {
        Ok(_) => Ok(args.nats_url.clone()),
        Err(error) => Err(format!("NATS at {} is unreachable: {error}", args.nats_url)),
    };
    if let Ok(url) = &nats {
        settings.events.nats_url = Some(url.clone());
    }
    let exchange = Exchange::open(&settings).await.map_err(|e| e.to_string())?;
    let prefecture = SyntheticPrefecture::generate(1, 2026);
    let hospital = prefecture
        .organisations
        .first()
        .map(|o| o.code.clone())
        .ok_or("the prefecture has no organisation")?;
    for organisation in prefecture.organisations {
        exchange
            .directory
            .register_organisation(&bench_context(), organisation)
            .await
            .map_err(|e| e.to_string())?;
    }
    let server = exchange.start(loopback()).await.map_err(|e| e.to_string())?;
    let address = format!("http://{}", server.address());
    let channels = connect(&address, 2, None).await?;
    let exchange = server.exchange().clone();

    eprintln!("hie bench: the empty call");
    let empty_call = measure(
        &channels,
        16,
        Duration::from_secs(args.seconds.min(5)),
        health_call,
    )
    .await;

    eprintln!(
        "hie bench: {} events a second for {} s to {} gRPC streams",
        args.events_per_second, args.seconds, args.subscribers
    );
    let timings = Arc::new(Timings::default());
    let mut client = EventServiceClient::new(channels[0].clone());
    let mut streams = Vec::new();
    let mut subscriptions = Vec::new();
    for i in 0..args.subscribers {
        let id = create(&mut client, proto::DeliveryChannel::Stream).await?;
        let stream = EventServiceClient::new(channels[i % channels.len()].clone())
            .subscribe(operator(proto::SubscribeRequest {
                subscription_id: id.clone(),
                cursor: String::new(),
            }))
            .await
            .map_err(|s| s.message().to_owned())?
            .into_inner();
        subscriptions.push(id);
        let timings = timings.clone();
        streams.push(tokio::spawn(async move {
            let mut stream = stream;
            while let Ok(Some(message)) = stream.message().await {
                if let Some(proto::subscribe_response::Delivery::Event(event)) = message.delivery {
                    let now = Instant::now();
                    timings
                        .received
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((event.event_id, now));
                }
            }
        }));
    }
    let grpc_streams = phase(&exchange, &hospital, args, &timings).await?;
    for stream in streams {
        stream.abort();
    }
    for id in subscriptions {
        client
            .cancel_subscription(operator(proto::CancelSubscriptionRequest { subscription_id: id }))
            .await
            .map_err(|s| s.message().to_owned())?;
    }

    let (nats_relay, nats_skipped_because) = match nats {
        Err(reason) => (None, Some(reason)),
        Ok(url) => {
            eprintln!(
                "hie bench: {} events a second for {} s relayed to {} NATS subscriptions",
                args.events_per_second, args.seconds, args.subscribers
            );
            let timings = Arc::new(Timings::default());
            let nats = async_nats::connect(url.as_str())
                .await
                .map_err(|e| e.to_string())?;
            let jetstream = async_nats::jetstream::new(nats);
            let mut consumers = Vec::new();
            for _ in 0..args.subscribers {
                let created = client
                    .create_subscription(operator(proto::CreateSubscriptionRequest {
                        filter: Some(filter()),
                        channel: proto::DeliveryChannel::Nats as i32,
                    }))
                    .await
                    .map_err(|s| s.message().to_owned())?
                    .into_inner()
                    .subscription
                    .ok_or("no subscription")?;
                let stream = jetstream
                    .get_stream(hie_events::nats::STREAM_NAME)
                    .await
                    .map_err(|e| e.to_string())?;
                let consumer = stream
                    .create_consumer(async_nats::jetstream::consumer::pull::Config {
                        filter_subject: created.nats_subject.clone(),
                        ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                // Pull requests of 10,000: the default 200 is drained in 0.2 s at this rate, and
                // a consumer then waits for its next pull (the latency it adds is the consumer's,
                // not the exchange's).
                let mut messages = consumer
                    .stream()
                    .max_messages_per_batch(10_000)
                    .messages()
                    .await
                    .map_err(|e| e.to_string())?;
                let timings = timings.clone();
                consumers.push(tokio::spawn(async move {
                    while let Some(Ok(message)) = messages.next().await {
                        let now = Instant::now();
                        if let Ok(body) = serde_json::from_slice::<serde_json::Value>(&message.payload)
                            && let Some(id) = body["event_id"].as_str()
                        {
                            timings
                                .received
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push((id.to_owned(), now));
                        }
                    }
                }));
            }
            // The relay picks new NATS subscriptions up within a second.
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            let figures = phase(&exchange, &hospital, args, &timings).await?;
            for consumer in consumers {
                consumer.abort();
            }
            (Some(figures), None)
        }
    };
    server.stop().await.map_err(|e| e.to_string())?;
    Ok(EventsFigures {
        benchmark: "events",
        backend: "postgres",
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        events_per_second: args.events_per_second,
        subscribers: args.subscribers,
        seconds_per_phase: args.seconds,
        grpc_p99_to_empty_call_p99: ratio(
            grpc_streams.p99_milliseconds * 1000.0,
            empty_call.p99_microseconds as f64,
        ),
        empty_call,
        grpc_streams,
        nats_relay,
        nats_skipped_because,
    })
}

/// The subscriptions' filter: the visits the writers announce.
fn filter() -> proto::EventFilter {
    proto::EventFilter {
        event_types: vec![EventType::EncounterRegistered.code().to_owned()],
        ..Default::default()
    }
}

async fn create(
    client: &mut EventServiceClient<Channel>,
    channel: proto::DeliveryChannel,
) -> Result<String, String> {
    client
        .create_subscription(operator(proto::CreateSubscriptionRequest {
            filter: Some(filter()),
            channel: channel as i32,
        }))
        .await
        .map_err(|s| s.message().to_owned())?
        .into_inner()
        .subscription
        .map(|s| s.subscription_id)
        .ok_or_else(|| "no subscription".to_owned())
}

/// The regional operator's context (a plaintext loopback exchange has no certificates).
fn operator<T>(message: T) -> tonic::Request<T> {
    super::with_context(message, "bench-operator", "administrator", "operations")
}

/// Writes events at the steady rate for the phase's seconds, waits for the deliveries (at most
/// 30 s more), and works out the latencies.
async fn phase(
    exchange: &Exchange,
    hospital: &OrganisationCode,
    args: &EventsArgs,
    timings: &Arc<Timings>,
) -> Result<DeliveryFigures, String> {
    let persons: Arc<Vec<PersonId>> = Arc::new((0..1_000).map(|_| PersonId::generate()).collect());
    let total = (u64::from(args.events_per_second) * args.seconds) as usize;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.events_per_second)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(256));
    let started = Instant::now();
    let mut writes = Vec::with_capacity(total);
    for n in 0..total {
        ticks.tick().await;
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let exchange = exchange.clone();
        let hospital = hospital.clone();
        let persons = persons.clone();
        let timings = timings.clone();
        writes.push(tokio::spawn(async move {
            let _permit = permit;
            let person = persons[n % persons.len()].clone();
            let event = OutboxEvent::new(
                EventType::EncounterRegistered,
                Some(&person),
                Some(&hospital),
                &serde_json::json!({
                    "encounter_id": format!("bench-{n}"),
                    "visit_number": format!("V-{n}"),
                    "kind": "outpatient",
                    "department": "感染科",
                    "diagnoses": ["J10.1"],
                }),
            );
            let id = event.id.clone();
            let subject = Subject::new(AuditAction::RegisterEncounter, "encounter")
                .resource(format!("bench-{n}"))
                .person(&person);
            let began = Instant::now();
            let written = exchange
                .access
                .audit()
                .write(&bench_context(), subject, Ok(()), async |unit| {
                    unit.emit(event);
                    Ok(())
                })
                .await;
            let committed = Instant::now();
            if written.is_ok() {
                timings
                    .committed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, committed);
                timings
                    .commit_latencies
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(committed - began);
            }
            written.map_err(|e| e.to_string())
        }));
    }
    let mut failed = 0;
    for write in writes {
        if !matches!(write.await, Ok(Ok(()))) {
            failed += 1;
        }
    }
    let writing = started.elapsed();
    let committed = total - failed;
    let expected = committed * args.subscribers;
    let deadline = Instant::now() + Duration::from_secs(30);
    while timings.received.lock().unwrap_or_else(|p| p.into_inner()).len() < expected
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let committed_at = timings.committed.lock().unwrap_or_else(|p| p.into_inner());
    let received = timings.received.lock().unwrap_or_else(|p| p.into_inner());
    let mut latencies: Vec<f64> = Vec::with_capacity(received.len());
    let mut per_event: HashMap<&str, usize> = HashMap::new();
    for (id, at) in received.iter() {
        if let Some(commit) = committed_at.get(id) {
            // A delivery seen before its writer's commit returned counts as zero.
            latencies.push(at.saturating_duration_since(*commit).as_secs_f64() * 1000.0);
        }
        *per_event.entry(id.as_str()).or_default() += 1;
    }
    // Each subscriber receives each event once; more is a redelivery.
    let duplicates = per_event
        .values()
        .map(|n| n.saturating_sub(args.subscribers))
        .sum::<usize>();
    latencies.sort_by(f64::total_cmp);
    let mut commits: Vec<f64> = timings
        .commit_latencies
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    commits.sort_by(f64::total_cmp);
    Ok(DeliveryFigures {
        events_committed: committed,
        committed_per_second: committed as f64 / writing.as_secs_f64(),
        deliveries_expected: expected,
        deliveries_received: received.len(),
        duplicates,
        p50_milliseconds: percentile(&latencies, 0.50),
        p99_milliseconds: percentile(&latencies, 0.99),
        max_milliseconds: percentile(&latencies, 1.0),
        commit_p50_milliseconds: percentile(&commits, 0.50),
        commit_p99_milliseconds: percentile(&commits, 0.99),
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    (sorted.get(index).copied().unwrap_or(0.0) * 1000.0).round() / 1000.0
}
