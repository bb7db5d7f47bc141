//! What of one person's records a caller may see. Reading the person (their demographics and
//! identifiers) is one read for the access gate; each sensitive category among the records kept by
//! organisations other than the caller's is another. A psychiatric hospital's record of a patient
//! thus reaches another hospital only where the patient consented to share mental health, and an
//! organisation always sees the records it keeps itself.

use hie_access::domain::consent::DataCategory;
use hie_core::context::RequestContext;
use hie_core::domain::OrganisationCode;

fn is_callers_own(context: &RequestContext, organisation: &OrganisationCode) -> bool {
    context
        .organisation
        .as_ref()
        .is_some_and(|caller| caller == organisation)
}

/// The sensitive categories the caller must be permitted before seeing records kept by these
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

/// Whether a record kept by `organisation`, revealing `category`, is shown to the caller, given
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
    fn a_sensitive_record_shows_only_with_its_category_permitted_or_to_its_keeper() {
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
