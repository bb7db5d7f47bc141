//! The one read gate: every read of a person's data, in any service, asks
//! [`AccessGate::read`] with who asks (the context), what for (the action, audited), whose data
//! and of which category, and the things to show, each with the organisation keeping it and the
//! sensitive category its keeping reveals (a psychiatric hospital's record reveals mental
//! health). Reading the person's data is one decision of the gate; each sensitive category among
//! things kept by organisations other than the caller's is another. The answer is refused as a
//! whole when the first is, and otherwise shows what the caller may see: an organisation always
//! sees what it keeps itself, and another's sensitive things only with that category permitted.
//! Every decision is audited before the answer goes out.

use hie_core::Error;
use hie_core::context::RequestContext;
use hie_core::domain::OrganisationCode;
use hie_core::id::PersonId;
use hie_core::vocabulary::AuditAction;

use crate::domain::consent::{ConsentDirectives, DataCategory};
use crate::gate::{AccessGate, Read};

/// One thing of a person's data, with who keeps it and what its keeping reveals.
#[derive(Debug, Clone)]
pub struct Kept<T> {
    pub item: T,
    pub kept_by: OrganisationCode,
    /// The sensitive category the keeping organisation's records reveal, if any.
    pub sensitive: Option<DataCategory>,
}

/// One read of one person's data.
#[derive(Debug)]
pub struct PersonRead<'a, T> {
    pub context: &'a RequestContext,
    pub action: AuditAction,
    pub person_id: &'a PersonId,
    /// The category of the data read (demographics, for the patient index).
    pub category: DataCategory,
    /// The person's directives when the caller's own query joined them in (one round trip on a
    /// hot path); `None` has the gate look them up.
    pub directives: Option<ConsentDirectives>,
    pub items: Vec<Kept<T>>,
}

/// What the gate let the caller see of one read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen<T> {
    pub visible: Vec<T>,
    /// What was withheld. For the caller's own bookkeeping only (a look-up by a withheld
    /// thing's own number must answer as one for nothing): never to be told to the caller.
    pub hidden: Vec<T>,
}

fn is_callers_own(context: &RequestContext, organisation: &OrganisationCode) -> bool {
    context
        .organisation
        .as_ref()
        .is_some_and(|caller| caller == organisation)
}

/// The sensitive categories the caller must be permitted before seeing things kept by these
/// organisations (with each one's sensitive category), in order, without repeats.
pub fn sensitive_categories<'a>(
    context: &RequestContext,
    kept_by: impl IntoIterator<Item = (&'a OrganisationCode, Option<DataCategory>)>,
) -> Vec<DataCategory> {
    let mut categories: Vec<DataCategory> = kept_by
        .into_iter()
        .filter(|(organisation, _)| !is_callers_own(context, organisation))
        .filter_map(|(_, category)| category)
        .collect();
    categories.sort_unstable();
    categories.dedup();
    categories
}

/// Whether a thing kept by `organisation`, revealing `category`, is shown to the caller, given
/// the sensitive categories the caller was permitted.
pub fn is_visible(
    context: &RequestContext,
    organisation: &OrganisationCode,
    category: Option<DataCategory>,
    permitted: &[DataCategory],
) -> bool {
    match category {
        None => true,
        Some(category) => is_callers_own(context, organisation) || permitted.contains(&category),
    }
}

impl AccessGate {
    /// The one read gate. Decides every read (the person's data as a whole, then each sensitive
    /// category among what others keep), audits each decision, and answers per read: what the
    /// caller may see, or `PERMISSION_DENIED` with the reason when the person's data is refused.
    /// The outer error is a failure of the whole (the database), when nothing may be answered.
    pub async fn read<T>(&self, reads: Vec<PersonRead<'_, T>>) -> Result<Vec<Result<Seen<T>, Error>>, Error> {
        // Directives the caller did not bring are looked up together, in one query.
        let missing: Vec<&str> = reads
            .iter()
            .filter(|read| read.directives.is_none())
            .map(|read| read.person_id.as_str())
            .collect();
        let mut looked_up = if missing.is_empty() {
            Vec::new()
        } else {
            self.consent().directives_of(&missing).await?
        }
        .into_iter();
        let mut decisions = Vec::new();
        let mut directives = Vec::new();
        let mut plans = Vec::with_capacity(reads.len());
        for read in &reads {
            let person_directives = match &read.directives {
                Some(given) => given.clone(),
                None => looked_up
                    .next()
                    .ok_or_else(|| Error::Internal("directives were not found for every read".into()))?,
            };
            let categories = sensitive_categories(
                read.context,
                read.items.iter().map(|kept| (&kept.kept_by, kept.sensitive)),
            );
            for category in std::iter::once(read.category).chain(categories.iter().copied()) {
                decisions.push(Read {
                    context: read.context,
                    action: read.action,
                    person_id: read.person_id,
                    category,
                });
                directives.push(person_directives.clone());
            }
            plans.push(categories);
        }
        let mut decided = self.decide_all_given(&decisions, &directives).await?.into_iter();
        drop(decisions);
        let mut answers = Vec::with_capacity(reads.len());
        for (read, categories) in reads.into_iter().zip(plans) {
            let person = decided
                .next()
                .ok_or_else(|| Error::Internal("a read was left undecided".into()))?;
            let mut permitted = Vec::with_capacity(categories.len());
            for category in categories {
                let decision = decided
                    .next()
                    .ok_or_else(|| Error::Internal("a read was left undecided".into()))?;
                if decision.is_ok() {
                    permitted.push(category);
                }
            }
            if let Err(refused) = person {
                answers.push(Err(refused));
                continue;
            }
            let (visible, hidden): (Vec<Kept<T>>, Vec<Kept<T>>) = read
                .items
                .into_iter()
                .partition(|kept| is_visible(read.context, &kept.kept_by, kept.sensitive, &permitted));
            answers.push(Ok(Seen {
                visible: visible.into_iter().map(|kept| kept.item).collect(),
                hidden: hidden.into_iter().map(|kept| kept.item).collect(),
            }));
        }
        Ok(answers)
    }
}

impl AccessGate {
    /// [`AccessGate::read`] of one read: what the caller may see, or `PERMISSION_DENIED`.
    pub async fn read_one<T>(&self, read: PersonRead<'_, T>) -> Result<Seen<T>, Error> {
        self.read(vec![read])
            .await?
            .pop()
            .unwrap_or_else(|| Err(Error::Internal("a read went undecided".into())))
    }
}

/// Refuses a patient-portal call about anyone but the person it acts for, who may be any person
/// of `lineage` (the survivor of a merge, or one merged into it). Other roles pass; the read
/// gate decides for them.
pub fn require_patient_is_one_of(context: &RequestContext, lineage: &[PersonId]) -> Result<(), Error> {
    match lineage
        .iter()
        .find(|person| context.require_acting_for(person.as_str()).is_ok())
    {
        Some(_) => Ok(()),
        None => context.require_acting_for(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> OrganisationCode {
        OrganisationCode::parse(text).unwrap()
    }

    fn calling_from(organisation: &str) -> RequestContext {
        let mut context = RequestContext::bulk_load("test", "test");
        context.organisation = Some(code(organisation));
        context
    }

    #[test]
    fn the_caller_needs_each_sensitive_category_of_other_organisations_once() {
        let context = calling_from("QDN-H01");
        let (h01, h02, psychiatric, clinic) =
            (code("QDN-H01"), code("QDN-H02"), code("QDN-JSB"), code("QDN-HIV"));
        let kept_by = [
            (&h02, None),
            (&psychiatric, Some(DataCategory::MentalHealth)),
            (&clinic, Some(DataCategory::HivSti)),
            (&psychiatric, Some(DataCategory::MentalHealth)),
            (&h01, Some(DataCategory::SubstanceUse)),
        ];
        assert_eq!(
            sensitive_categories(&context, kept_by),
            [DataCategory::MentalHealth, DataCategory::HivSti]
        );
    }

    #[test]
    fn a_sensitive_thing_shows_only_with_its_category_permitted_or_to_its_keeper() {
        let context = calling_from("QDN-H01");
        let psychiatric = code("QDN-JSB");
        let mental = Some(DataCategory::MentalHealth);
        assert!(is_visible(&context, &code("QDN-H02"), None, &[]));
        assert!(!is_visible(&context, &psychiatric, mental, &[]));
        assert!(!is_visible(
            &context,
            &psychiatric,
            mental,
            &[DataCategory::HivSti]
        ));
        assert!(is_visible(
            &context,
            &psychiatric,
            mental,
            &[DataCategory::MentalHealth]
        ));
        assert!(is_visible(&calling_from("QDN-JSB"), &psychiatric, mental, &[]));
    }
}
