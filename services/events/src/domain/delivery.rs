//! Delivery: a subscription's events after a position, as they are committed, each within the
//! subscriber's entitlement and filter, decided by the read gate (the person's consent; a
//! sensitive category only where consented) and audited (`events.deliver`), in log order. The
//! loop is the same for a gRPC stream and for the NATS relay; it stops when its receiver goes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hie_access::domain::consent::DataCategory;
use hie_access::{Kept, PersonRead};
use hie_core::Error;
use hie_core::context::RequestContext;
use hie_core::domain::{Icd10Code, OrganisationCode};
use hie_core::vocabulary::AuditAction;
use tokio::sync::{mpsc, watch};

use super::EventService;
use super::log::LoggedEvent;
use super::subscriptions::Subscription;

/// A heartbeat is sent after this long without a delivery…
const HEARTBEAT_IDLE: Duration = Duration::from_secs(5);
/// …or after this long when events were read and none matched.
const HEARTBEAT_SKIPPING: Duration = Duration::from_secs(1);
/// The most events read per step.
const STEP: usize = 500;

/// The receiving end of a delivery loop, as the loop sends to it.
struct Outlet<'a> {
    sink: &'a mpsc::Sender<Result<Delivered, Error>>,
}

impl Outlet<'_> {
    /// Sends, waiting for room unless the server stops meanwhile; false when the receiver is
    /// gone or the server is stopping.
    async fn send(&self, item: Result<Delivered, Error>, closing: &mut watch::Receiver<bool>) -> bool {
        tokio::select! {
            sent = self.sink.send(item) => sent.is_ok(),
            _ = closing.wait_for(|closing| *closing) => false,
        }
    }
}

/// What a delivery loop hands its receiver.
#[derive(Debug, Clone)]
pub enum Delivered {
    Event {
        cursor: String,
        event: Arc<LoggedEvent>,
    },
    /// Nothing more matched up to this cursor (at this position).
    Heartbeat {
        cursor: String,
        position: i64,
    },
}

impl EventService {
    /// The subscription a stream opens, and the position it starts after: the cursor's, or the
    /// acknowledged one. FAILED_PRECONDITION for a cancelled subscription.
    pub async fn open(
        &self,
        context: &RequestContext,
        id: &str,
        cursor: Option<&str>,
    ) -> Result<(Subscription, i64), Error> {
        let subscription = self.subscription(context, id).await?;
        if subscription.is_cancelled() {
            return Err(Error::precondition(
                "subscription_id",
                "the subscription is cancelled",
            ));
        }
        let after = match cursor.map(str::trim).filter(|c| !c.is_empty()) {
            Some(cursor) => {
                let head = self.log.current_head().await?;
                subscription.position_of("cursor", cursor, head)?
            }
            None => subscription.stored.acknowledged_position,
        };
        Ok((subscription, after))
    }

    /// Delivers the subscription's events after `after` to `sink` until the sink is dropped, the
    /// subscription is cancelled (an error is sent) or the log cannot be read (the error is sent).
    pub async fn deliver(
        &self,
        context: RequestContext,
        subscription: Subscription,
        mut after: i64,
        sink: mpsc::Sender<Result<Delivered, Error>>,
    ) {
        let mut head = self.log.watch_head();
        let mut closing = self.closing.subscribe();
        let mut last_sent = Instant::now();
        let outlet = Outlet { sink: &sink };
        loop {
            if *closing.borrow() {
                let stopping = Error::Unavailable("the exchange is stopping; resume from your cursor".into());
                let _ = sink.try_send(Err(stopping));
                return;
            }
            if self.is_cancelled(&subscription).await {
                let cancelled = Error::precondition("subscription_id", "the subscription was cancelled");
                outlet.send(Err(cancelled), &mut closing).await;
                return;
            }
            let batch = match self.log.after(after, STEP).await {
                Ok(batch) => batch,
                Err(error) => {
                    outlet.send(Err(error), &mut closing).await;
                    return;
                }
            };
            let Some(last) = batch.last().map(|e| e.position) else {
                let idle = tokio::time::sleep_until((last_sent + HEARTBEAT_IDLE).into());
                tokio::select! {
                    changed = head.changed() => if changed.is_err() { return },
                    _ = closing.changed() => {}
                    _ = idle => {
                        self.notice_cancellation(&subscription).await;
                        let heartbeat = Delivered::Heartbeat { cursor: subscription.cursor(after), position: after };
                        if !outlet.send(Ok(heartbeat), &mut closing).await {
                            return;
                        }
                        last_sent = Instant::now();
                    }
                    _ = sink.closed() => return,
                }
                continue;
            };
            let permitted = match self.permitted(&context, &subscription, batch).await {
                Ok(permitted) => permitted,
                Err(error) => {
                    outlet.send(Err(error), &mut closing).await;
                    return;
                }
            };
            let delivered_any = !permitted.is_empty();
            for event in permitted {
                let cursor = subscription.cursor(event.position);
                if !outlet
                    .send(Ok(Delivered::Event { cursor, event }), &mut closing)
                    .await
                {
                    return;
                }
            }
            after = last;
            if delivered_any {
                last_sent = Instant::now();
            } else if last_sent.elapsed() >= HEARTBEAT_SKIPPING {
                let heartbeat = Delivered::Heartbeat {
                    cursor: subscription.cursor(after),
                    position: after,
                };
                if !outlet.send(Ok(heartbeat), &mut closing).await {
                    return;
                }
                last_sent = Instant::now();
            }
        }
    }

    /// Whether the subscription was cancelled: by this process (at once), or by another replica
    /// (seen when the stream is idle and reads its row again).
    async fn is_cancelled(&self, subscription: &Subscription) -> bool {
        self.cancelled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(subscription.id())
    }

    /// Reads the subscription's row again: another replica may have cancelled it.
    async fn notice_cancellation(&self, subscription: &Subscription) {
        if let Ok(Some(stored)) = self.store.subscription(subscription.id()).await
            && stored.cancelled_at.is_some()
        {
            self.cancelled
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(stored.id);
        }
    }

    /// The events of `batch` the subscriber receives: its filter, its entitlement, then the read
    /// gate, one read per event about a person (decided and audited together).
    pub(crate) async fn permitted(
        &self,
        context: &RequestContext,
        subscription: &Subscription,
        batch: Vec<Arc<LoggedEvent>>,
    ) -> Result<Vec<Arc<LoggedEvent>>, Error> {
        let subscriber = subscription.organisation.as_ref();
        let entitlement = subscription.entitlement;
        let mut candidates = Vec::new();
        for event in batch {
            let division = match (&event.organisation, subscription.checked.names_divisions()) {
                (Some(organisation), true) => self
                    .directory
                    .organisation_seen_recently(organisation)
                    .await?
                    .map(|o| o.draft.division_code.as_str().to_owned()),
                _ => None,
            };
            if !subscription.checked.matches(&event, division.as_deref()) {
                continue;
            }
            let keeps_record = match (subscriber, &event.person_id, entitlement.asks_whose_patient()) {
                (Some(subscriber), Some(person), true) => {
                    self.registry
                        .keeps_a_record_of(subscriber.as_str(), person)
                        .await?
                }
                _ => false,
            };
            if entitlement.permits(&event, subscriber, keeps_record) {
                candidates.push(event);
            }
        }
        self.consented(context, candidates).await
    }

    /// The events the read gate lets the subscriber see: an event about a person is one read of
    /// that person's data, revealing the sensitive categories of its diagnoses and of the
    /// organisation where it happened. Events about no person carry no one's data.
    async fn consented(
        &self,
        context: &RequestContext,
        events: Vec<Arc<LoggedEvent>>,
    ) -> Result<Vec<Arc<LoggedEvent>>, Error> {
        let organisations: Vec<&OrganisationCode> =
            events.iter().filter_map(|e| e.organisation.as_ref()).collect();
        let keepers = self.directory.sensitive_categories(&organisations).await?;
        let mut reads = Vec::new();
        let mut about_persons = Vec::new();
        let mut answers: Vec<Option<bool>> = vec![None; events.len()];
        for (i, event) in events.iter().enumerate() {
            let Some(person) = &event.person_id else {
                answers[i] = Some(true);
                continue;
            };
            let mut items = Vec::new();
            if let Some(organisation) = &event.organisation {
                let mut categories: Vec<Option<DataCategory>> = revealed_by(event);
                categories.push(keepers.get(organisation).copied().flatten());
                categories.retain(Option::is_some);
                if categories.is_empty() {
                    categories.push(None);
                }
                items.extend(categories.into_iter().map(|sensitive| Kept {
                    item: i,
                    kept_by: organisation.clone(),
                    sensitive,
                }));
            }
            about_persons.push((i, items.len()));
            reads.push(PersonRead {
                context,
                action: AuditAction::DeliverEvent,
                person_id: person,
                category: DataCategory::General,
                directives: None,
                items,
            });
        }
        let decided = self.access.read(reads).await?;
        for ((i, items), decision) in about_persons.into_iter().zip(decided) {
            answers[i] = Some(match decision {
                Ok(seen) => seen.hidden.is_empty() && seen.visible.len() == items,
                Err(Error::PermissionDenied(_)) => false,
                Err(error) => return Err(error),
            });
        }
        Ok(events
            .into_iter()
            .zip(answers)
            .filter_map(|(event, permitted)| permitted.unwrap_or(false).then_some(event))
            .collect())
    }
}

/// The sensitive categories an event's diagnoses reveal (a mental-health follow-up entry reveals
/// mental health by its type).
fn revealed_by(event: &LoggedEvent) -> Vec<Option<DataCategory>> {
    let mut categories: Vec<Option<DataCategory>> = event
        .facts
        .codes
        .iter()
        .filter_map(|code| Icd10Code::parse(code).ok())
        .map(|code| DataCategory::revealed_by(&code))
        .collect();
    if event.facts.entry_type.as_deref() == Some("mental_illness_follow_up") {
        categories.push(Some(DataCategory::MentalHealth));
    }
    categories.sort_unstable();
    categories.dedup();
    categories
}
