//! The `hie.events.v1.EventService` gRPC service: proto ⇄ domain, and each Subscribe call as a
//! delivery loop feeding the response stream.

use std::pin::Pin;

use hie_core::context::RequestContext;
use hie_core::service::ServiceModule;
use hie_core::{Error, time};
use hie_proto::events as proto;
use hie_proto::events::event_service_server::{EventService as EventServiceApi, EventServiceServer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::domain::{Channel, Delivered, EventFilter, EventService, LoggedEvent, Subscription};

/// The name `--services` knows the events service by.
pub const SERVICE_NAME: &str = "events";

/// How many deliveries wait in a stream for a slow subscriber before the loop waits too.
const STREAM_BUFFER: usize = 256;

pub fn module(events: EventService) -> ServiceModule {
    ServiceModule::new(SERVICE_NAME, EventServiceServer::new(EventsGrpc { events }))
}

#[derive(Clone, Debug)]
struct EventsGrpc {
    events: EventService,
}

fn filter_of(message: Option<proto::EventFilter>) -> EventFilter {
    let message = message.unwrap_or_default();
    EventFilter {
        event_types: message.event_types,
        class_codes: message.class_codes,
        icd10_prefixes: message.icd10_prefixes,
        organisations: message.organisations,
        divisions: message.divisions,
    }
}

fn channel_of(value: i32) -> Result<Channel, Error> {
    match proto::DeliveryChannel::try_from(value) {
        Ok(proto::DeliveryChannel::Unspecified | proto::DeliveryChannel::Stream) => Ok(Channel::Stream),
        Ok(proto::DeliveryChannel::Nats) => Ok(Channel::Nats),
        Err(_) => Err(Error::invalid(
            "channel",
            format!("{value} is not a delivery channel"),
        )),
    }
}

pub fn subscription_to_proto(subscription: &Subscription) -> proto::Subscription {
    let stored = &subscription.stored;
    proto::Subscription {
        subscription_id: stored.id.clone(),
        organisation_code: stored.organisation.clone(),
        filter: Some(proto::EventFilter {
            event_types: subscription.filter.event_types.clone(),
            class_codes: subscription.filter.class_codes.clone(),
            icd10_prefixes: subscription.filter.icd10_prefixes.clone(),
            organisations: subscription.filter.organisations.clone(),
            divisions: subscription.filter.divisions.clone(),
        }),
        channel: match stored.channel {
            Channel::Stream => proto::DeliveryChannel::Stream,
            Channel::Nats => proto::DeliveryChannel::Nats,
        } as i32,
        nats_subject: if stored.channel == Channel::Nats {
            subscription.nats_subject()
        } else {
            String::new()
        },
        acknowledged_cursor: subscription.cursor(stored.acknowledged_position),
        created_at: Some(hie_proto::timestamp(time::from_micros(stored.created_at))),
        created_by: stored.created_by.clone(),
        cancelled_at: stored
            .cancelled_at
            .map(|at| hie_proto::timestamp(time::from_micros(at))),
    }
}

pub fn event_to_proto(cursor: String, event: &LoggedEvent) -> proto::Event {
    proto::Event {
        cursor,
        position: event.position,
        event_id: event.id.clone(),
        event_type: event.topic.clone(),
        schema_version: event.schema_version,
        person_id: event
            .person_id
            .as_ref()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        organisation_code: event
            .organisation
            .as_ref()
            .map(|o| o.as_str().to_owned())
            .unwrap_or_default(),
        occurred_at: Some(hie_proto::timestamp(time::from_micros(event.created_at))),
        payload_json: event.payload.clone(),
    }
}

fn delivery_to_proto(delivered: Delivered) -> proto::SubscribeResponse {
    use proto::subscribe_response::Delivery;
    proto::SubscribeResponse {
        delivery: Some(match delivered {
            Delivered::Event { cursor, event } => Delivery::Event(event_to_proto(cursor, &event)),
            Delivered::Heartbeat { cursor, .. } => Delivery::Heartbeat(proto::Heartbeat { cursor }),
        }),
    }
}

type DeliveryStream = Pin<Box<dyn Stream<Item = Result<proto::SubscribeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl EventServiceApi for EventsGrpc {
    #[tracing::instrument(skip_all)]
    async fn create_subscription(
        &self,
        request: Request<proto::CreateSubscriptionRequest>,
    ) -> Result<Response<proto::CreateSubscriptionResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let message = request.into_inner();
        let channel = channel_of(message.channel)?;
        let subscription = self
            .events
            .create(&context, filter_of(message.filter), channel)
            .await?;
        tracing::info!(
            subscription = subscription.id(),
            channel = channel.code(),
            "subscription created"
        );
        Ok(Response::new(proto::CreateSubscriptionResponse {
            subscription: Some(subscription_to_proto(&subscription)),
        }))
    }

    async fn get_subscription(
        &self,
        request: Request<proto::GetSubscriptionRequest>,
    ) -> Result<Response<proto::GetSubscriptionResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let subscription = self
            .events
            .subscription(&context, &request.into_inner().subscription_id)
            .await?;
        Ok(Response::new(proto::GetSubscriptionResponse {
            subscription: Some(subscription_to_proto(&subscription)),
        }))
    }

    async fn list_subscriptions(
        &self,
        request: Request<proto::ListSubscriptionsRequest>,
    ) -> Result<Response<proto::ListSubscriptionsResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let subscriptions = self
            .events
            .list(&context, request.into_inner().include_cancelled)
            .await?;
        Ok(Response::new(proto::ListSubscriptionsResponse {
            subscriptions: subscriptions.iter().map(subscription_to_proto).collect(),
        }))
    }

    async fn cancel_subscription(
        &self,
        request: Request<proto::CancelSubscriptionRequest>,
    ) -> Result<Response<proto::CancelSubscriptionResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let subscription = self
            .events
            .cancel(&context, &request.into_inner().subscription_id)
            .await?;
        Ok(Response::new(proto::CancelSubscriptionResponse {
            subscription: Some(subscription_to_proto(&subscription)),
        }))
    }

    type SubscribeStream = DeliveryStream;

    #[tracing::instrument(skip_all)]
    async fn subscribe(
        &self,
        request: Request<proto::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let context = RequestContext::of(&request)?;
        let message = request.into_inner();
        let cursor = Some(message.cursor.as_str()).filter(|c| !c.trim().is_empty());
        let (subscription, after) = self
            .events
            .open(&context, &message.subscription_id, cursor)
            .await?;
        tracing::info!(subscription = subscription.id(), after, "subscriber connected");
        let (sink, deliveries) = mpsc::channel(STREAM_BUFFER);
        let events = self.events.clone();
        tokio::spawn(async move { events.deliver(context, subscription, after, sink).await });
        let stream = ReceiverStream::new(deliveries)
            .map(|delivered| delivered.map(delivery_to_proto).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn acknowledge(
        &self,
        request: Request<proto::AcknowledgeRequest>,
    ) -> Result<Response<proto::AcknowledgeResponse>, Status> {
        let context = RequestContext::of(&request)?;
        let message = request.into_inner();
        let subscription = self
            .events
            .acknowledge(&context, &message.subscription_id, &message.cursor)
            .await?;
        Ok(Response::new(proto::AcknowledgeResponse {
            subscription: Some(subscription_to_proto(&subscription)),
        }))
    }
}
