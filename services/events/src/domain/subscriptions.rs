//! Subscriptions: who asked for what, where delivery has got to, and the cursors subscribers
//! hold. A cursor names its subscription and a log position (`sub-…@1234`), so that a cursor
//! handed to the wrong subscription, or one from the future, is refused instead of skipping
//! events.

use hie_access::Subject;
use hie_core::context::{Purpose, RequestContext, Role};
use hie_core::domain::OrganisationCode;
use hie_core::vocabulary::AuditAction;
use hie_core::{Error, time};

use super::EventService;
use super::filter::{CheckedFilter, Entitlement, EventFilter};

hie_core::id_type!(
    /// A subscription's id.
    SubscriptionId,
    "subscription",
    prefix "sub-"
);

/// How a subscription's events leave the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Stream,
    Nats,
}

impl Channel {
    pub fn code(self) -> &'static str {
        match self {
            Channel::Stream => "stream",
            Channel::Nats => "nats",
        }
    }

    pub fn parse(code: &str) -> Option<Channel> {
        match code {
            "stream" => Some(Channel::Stream),
            "nats" => Some(Channel::Nats),
            _ => None,
        }
    }
}

/// A subscription's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    pub id: String,
    /// Empty for an operator's subscription on a plaintext loopback exchange.
    pub organisation: String,
    pub filter_json: String,
    pub channel: Channel,
    pub start_position: i64,
    pub acknowledged_position: i64,
    pub created_at: i64,
    pub created_by: String,
    pub role: String,
    pub purpose: String,
    pub cancelled_at: Option<i64>,
}

/// A subscription as the service works with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub stored: StoredSubscription,
    pub filter: EventFilter,
    pub checked: CheckedFilter,
    pub organisation: Option<OrganisationCode>,
    /// What its organisation's kind is entitled to, as the directory says now.
    pub entitlement: Entitlement,
}

impl Subscription {
    pub fn id(&self) -> &str {
        &self.stored.id
    }

    pub fn cursor(&self, position: i64) -> String {
        format!("{}@{position}", self.stored.id)
    }

    pub fn is_cancelled(&self) -> bool {
        self.stored.cancelled_at.is_some()
    }

    /// The JetStream subject a NATS subscription is published on.
    pub fn nats_subject(&self) -> String {
        let organisation = self.organisation.as_ref().map_or("operator", |o| o.as_str());
        format!("hie.events.{organisation}.{}", self.stored.id)
    }

    /// The context deliveries over NATS are decided and audited in: the creator's, as the
    /// organisation vouched for it when the subscription was made.
    pub fn creators_context(&self) -> RequestContext {
        RequestContext {
            organisation: self.organisation.clone(),
            user_id: self.stored.created_by.clone(),
            role: Role::from_code(&self.stored.role).unwrap_or(Role::PublicHealthOfficer),
            purpose: Purpose::from_code(&self.stored.purpose).unwrap_or(Purpose::PublicHealth),
            reason: None,
            request_id: uuid::Uuid::now_v7().to_string(),
            patient: None,
        }
    }

    /// The position a cursor names, refused when it is malformed, of another subscription,
    /// before this subscription began or beyond the log's head.
    pub fn position_of(&self, field: &str, cursor: &str, head: i64) -> Result<i64, Error> {
        let (id, position) = cursor
            .trim()
            .rsplit_once('@')
            .ok_or_else(|| Error::invalid(field, "is not a cursor this service gave out"))?;
        let position: i64 = position
            .parse()
            .map_err(|_| Error::invalid(field, "is not a cursor this service gave out"))?;
        if id != self.stored.id {
            return Err(Error::invalid(field, "is a cursor of another subscription"));
        }
        if position < self.stored.start_position {
            return Err(Error::invalid(field, "is older than the subscription"));
        }
        if position > head {
            return Err(Error::invalid(
                field,
                "is from the future: the log has not reached it",
            ));
        }
        Ok(position)
    }
}

impl EventService {
    /// What the caller's organisation is entitled to: by its kind; an operator on a plaintext
    /// loopback exchange (no organisation) only as an administrator.
    pub async fn entitlement_of(&self, context: &RequestContext) -> Result<Entitlement, Error> {
        match &context.organisation {
            None if context.role == Role::Administrator => Ok(Entitlement::Everything),
            None => Err(Error::PermissionDenied(
                "a subscription belongs to an organisation: call over mutual TLS".into(),
            )),
            Some(code) => {
                let organisation = self
                    .directory
                    .require_active_organisation("organisation", code)
                    .await?;
                Ok(Entitlement::of_kind(organisation.draft.kind))
            }
        }
    }

    fn subscription_of(
        &self,
        stored: StoredSubscription,
        entitlement: Entitlement,
    ) -> Result<Subscription, Error> {
        let filter: EventFilter = serde_json::from_str(&stored.filter_json)
            .map_err(|e| Error::internal("a stored subscription filter is unreadable", e))?;
        let checked = filter.check(entitlement)?;
        let organisation = (!stored.organisation.is_empty())
            .then(|| OrganisationCode::parse(&stored.organisation))
            .transpose()
            .map_err(|_| Error::Internal("a stored subscription has an unreadable organisation".into()))?;
        Ok(Subscription {
            stored,
            filter,
            checked,
            organisation,
            entitlement,
        })
    }

    pub async fn create(
        &self,
        context: &RequestContext,
        filter: EventFilter,
        channel: Channel,
    ) -> Result<Subscription, Error> {
        let subject = Subject::new(AuditAction::CreateSubscription, "event_subscription");
        let audit = self.access.audit();
        // A refusal is recorded: an organisation probing for what it may not hear is worth seeing.
        let entitlement = match self.entitlement_of(context).await {
            Ok(Entitlement::Nothing) => {
                let reason = "the calling organisation's kind receives no events".to_owned();
                return Err(audit.refuse(context, &subject, reason).await);
            }
            Ok(entitlement) => entitlement,
            Err(Error::PermissionDenied(reason)) => {
                return Err(audit.refuse(context, &subject, reason).await);
            }
            Err(error) => return Err(error),
        };
        let checked = match filter.check(entitlement) {
            Ok(checked) => checked,
            Err(Error::PermissionDenied(reason)) => {
                return Err(audit.refuse(context, &subject, reason).await);
            }
            Err(error) => return Err(error),
        };
        if channel == Channel::Nats && !self.nats_enabled {
            return Err(Error::precondition(
                "channel",
                "this exchange runs without a NATS relay (--events-nats)",
            ));
        }
        let head = self.log.current_head().await?;
        let stored = StoredSubscription {
            id: SubscriptionId::generate().as_str().to_owned(),
            organisation: context
                .organisation
                .as_ref()
                .map(|o| o.as_str().to_owned())
                .unwrap_or_default(),
            filter_json: serde_json::to_string(&filter)
                .map_err(|e| Error::internal("encoding a filter", e))?,
            channel,
            start_position: head,
            acknowledged_position: head,
            created_at: time::to_micros(time::now()),
            created_by: context.user_id.clone(),
            role: context.role.code().to_owned(),
            purpose: context.purpose.code().to_owned(),
            cancelled_at: None,
        };
        let subject = subject.resource(stored.id.clone());
        audit
            .write(context, subject, Ok(()), async |unit| {
                self.store.insert_subscription(unit, &stored).await
            })
            .await?;
        Ok(Subscription {
            organisation: context.organisation.clone(),
            stored,
            filter,
            checked,
            entitlement,
        })
    }

    /// One of the caller's subscriptions; another organisation's answers as one that does not exist.
    pub async fn subscription(&self, context: &RequestContext, id: &str) -> Result<Subscription, Error> {
        let not_found = || Error::NotFound(format!("subscription {} does not exist", clip(id)));
        let stored = self.store.subscription(id.trim()).await?.ok_or_else(not_found)?;
        let callers = context
            .organisation
            .as_ref()
            .map(|o| o.as_str())
            .unwrap_or_default();
        if stored.organisation != callers {
            return Err(not_found());
        }
        let entitlement = self.entitlement_of(context).await?;
        self.subscription_of(stored, entitlement)
    }

    pub async fn list(
        &self,
        context: &RequestContext,
        include_cancelled: bool,
    ) -> Result<Vec<Subscription>, Error> {
        let entitlement = self.entitlement_of(context).await?;
        let callers = context
            .organisation
            .as_ref()
            .map(|o| o.as_str())
            .unwrap_or_default();
        self.store
            .subscriptions_of(Some(callers))
            .await?
            .into_iter()
            .filter(|s| include_cancelled || s.cancelled_at.is_none())
            .map(|s| self.subscription_of(s, entitlement))
            .collect()
    }

    /// Every active subscription delivered over NATS, with its organisation's entitlement.
    pub async fn nats_subscriptions(&self) -> Result<Vec<Subscription>, Error> {
        let mut found = Vec::new();
        for stored in self.store.subscriptions_of(None).await? {
            if stored.channel != Channel::Nats {
                continue;
            }
            let entitlement = match OrganisationCode::parse(&stored.organisation) {
                Ok(code) => match self.directory.organisation_seen_recently(&code).await? {
                    Some(organisation) if organisation.is_active() => {
                        Entitlement::of_kind(organisation.draft.kind)
                    }
                    _ => continue,
                },
                Err(_) => Entitlement::Everything,
            };
            found.push(self.subscription_of(stored, entitlement)?);
        }
        Ok(found)
    }

    pub async fn cancel(&self, context: &RequestContext, id: &str) -> Result<Subscription, Error> {
        let mut subscription = self.subscription(context, id).await?;
        let subject = Subject::new(AuditAction::CancelSubscription, "event_subscription")
            .resource(subscription.id().to_owned());
        if subscription.is_cancelled() {
            return Err(Error::precondition(
                "subscription_id",
                "the subscription is cancelled already",
            ));
        }
        self.access
            .audit()
            .write(context, subject, Ok(()), async |unit| {
                self.store.cancel(unit, subscription.id()).await
            })
            .await?;
        self.cancelled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(subscription.id().to_owned());
        subscription.stored.cancelled_at = Some(time::to_micros(time::now()));
        Ok(subscription)
    }

    /// Records that everything up to `cursor` was processed; never moves back.
    pub async fn acknowledge(
        &self,
        context: &RequestContext,
        id: &str,
        cursor: &str,
    ) -> Result<Subscription, Error> {
        let mut subscription = self.subscription(context, id).await?;
        let head = self.log.current_head().await?;
        let position = subscription.position_of("cursor", cursor, head)?;
        self.acknowledge_position(context, &subscription, position)
            .await?;
        subscription.stored.acknowledged_position = subscription.stored.acknowledged_position.max(position);
        Ok(subscription)
    }

    pub(crate) async fn acknowledge_position(
        &self,
        context: &RequestContext,
        subscription: &Subscription,
        position: i64,
    ) -> Result<(), Error> {
        let subject = Subject::new(AuditAction::AcknowledgeEvents, "event_subscription")
            .resource(subscription.id().to_owned());
        self.access
            .audit()
            .write(context, subject, Ok(()), async |unit| {
                self.store.acknowledge(unit, subscription.id(), position).await
            })
            .await
    }
}

fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(id: &str, start: i64) -> Subscription {
        let filter = EventFilter::default();
        Subscription {
            stored: StoredSubscription {
                id: id.into(),
                organisation: "QDN-CDC".into(),
                filter_json: "{}".into(),
                channel: Channel::Stream,
                start_position: start,
                acknowledged_position: start,
                created_at: 0,
                created_by: "officer".into(),
                role: "public_health_officer".into(),
                purpose: "public_health".into(),
                cancelled_at: None,
            },
            checked: filter.check(Entitlement::NotifiableDiseases).unwrap(),
            filter,
            organisation: OrganisationCode::parse("QDN-CDC").ok(),
            entitlement: Entitlement::NotifiableDiseases,
        }
    }

    #[test]
    fn a_cursor_names_its_subscription_and_a_position_the_log_has_reached() {
        let mine = subscription("sub-a", 10);
        assert_eq!(mine.position_of("cursor", &mine.cursor(15), 20).unwrap(), 15);
        assert_eq!(mine.position_of("cursor", " sub-a@20 ", 20).unwrap(), 20);
        let refused = |cursor: &str| mine.position_of("cursor", cursor, 20).unwrap_err().to_string();
        assert!(refused("sub-b@15").contains("another subscription"));
        assert!(refused("sub-a@21").contains("future"));
        assert!(refused("sub-a@9").contains("older than the subscription"));
        for malformed in ["", "sub-a", "sub-a@", "sub-a@x", "@", "sub-a@1.5"] {
            assert!(refused(malformed).contains("not a cursor"), "{malformed}");
        }
        assert_eq!(mine.nats_subject(), "hie.events.QDN-CDC.sub-a");
    }
}
