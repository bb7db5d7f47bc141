//! The service-item catalogue: the regional health authority keeps the price list; everyone
//! reads it.

use chrono::{DateTime, Utc};
use hie_access::Subject;
use hie_core::Error;
use hie_core::context::RequestContext;
use hie_core::vocabulary::AuditAction;

use super::{ServiceItem, TelemedicineService};

impl ServiceItem {
    /// Checks every field, naming the first bad one (`item.price_fen`).
    pub fn checked(self) -> Result<ServiceItem, Error> {
        let code = self.code.trim().to_owned();
        if code.is_empty()
            || code.len() > 32
            || !code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err(Error::invalid(
                "item.code",
                "must be 1 to 32 letters, digits, '.', '-' or '_'",
            ));
        }
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(Error::invalid("item.name", "must be 1 to 100 characters"));
        }
        if self.price_fen < 0 {
            return Err(Error::invalid("item.price_fen", "must not be negative"));
        }
        if !(0..=1000).contains(&self.reimbursable_ratio_permille) {
            return Err(Error::invalid(
                "item.reimbursable_ratio_permille",
                "must be 0 to 1000",
            ));
        }
        if !self.reimbursable && self.reimbursable_ratio_permille != 0 {
            return Err(Error::invalid(
                "item.reimbursable_ratio_permille",
                "must be 0 for an item insurance does not reimburse",
            ));
        }
        if let Some(until) = self.active_until
            && until <= self.active_from
        {
            return Err(Error::invalid("item.active_until", "must be after active_from"));
        }
        Ok(ServiceItem { code, name, ..self })
    }
}

impl TelemedicineService {
    /// Adds or changes an item: the regional health authority's administrators only.
    pub async fn put_item(&self, context: &RequestContext, item: ServiceItem) -> Result<ServiceItem, Error> {
        let item = item.checked()?;
        let subject = Subject::new(AuditAction::PutServiceItem, "service_item").resource(item.code.clone());
        let permitted = context.administrators_only("change the service-item catalogue");
        self.access
            .audit()
            .write(context, subject, permitted, async |unit| {
                self.store.put_item(unit, &item, &context.user_id).await
            })
            .await?;
        Ok(item)
    }

    /// The catalogue by code; only what is active at `active_at` when given.
    pub async fn items(&self, active_at: Option<DateTime<Utc>>) -> Result<Vec<ServiceItem>, Error> {
        let items = self.store.items().await?;
        Ok(items
            .into_iter()
            .filter(|item| active_at.is_none_or(|at| item.is_active_at(at)))
            .collect())
    }
}
