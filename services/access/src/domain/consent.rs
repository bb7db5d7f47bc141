//! Consent (IHE BPPC-like): each person's directives, the region's policy, and the one decision
//! point every read of a person's data goes through. `decide` is a pure function of the request
//! context, the data category, the directives, the policy and the time.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use hie_core::context::{Purpose, RequestContext};
use hie_core::domain::Icd10Code;

/// What kind of data a read touches. The sensitive ones are shared only with the person's explicit
/// consent for that category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DataCategory {
    Demographics,
    General,
    MentalHealth,
    HivSti,
    ReproductiveHealth,
    SubstanceUse,
}

impl DataCategory {
    pub const SENSITIVE: [DataCategory; 4] = [
        DataCategory::MentalHealth,
        DataCategory::HivSti,
        DataCategory::ReproductiveHealth,
        DataCategory::SubstanceUse,
    ];

    pub fn is_sensitive(self) -> bool {
        Self::SENSITIVE.contains(&self)
    }

    /// The sensitive category with this code; `None` for any other code, sensitive or not.
    pub fn sensitive_from_code(code: &str) -> Option<DataCategory> {
        Self::from_code(code).filter(|c| c.is_sensitive())
    }

    pub fn code(self) -> &'static str {
        match self {
            DataCategory::Demographics => "demographics",
            DataCategory::General => "general",
            DataCategory::MentalHealth => "mental_health",
            DataCategory::HivSti => "hiv_sti",
            DataCategory::ReproductiveHealth => "reproductive_health",
            DataCategory::SubstanceUse => "substance_use",
        }
    }

    /// The sensitive category a diagnosis reveals, if any: mental and behavioural disorders
    /// (F00–F99, with F10–F19 as substance use), HIV (B20–B24, Z21) and sexually transmitted
    /// infections (A50–A64), and pregnancy ended by abortion or contraceptive management
    /// (O00–O08, Z30). A record that carries such a code is shared only as that category is.
    pub fn revealed_by(diagnosis: &Icd10Code) -> Option<DataCategory> {
        let within = |from, to| diagnosis.in_range(from, to);
        if within("F10", "F19") {
            Some(DataCategory::SubstanceUse)
        } else if within("F00", "F99") {
            Some(DataCategory::MentalHealth)
        } else if within("B20", "B24") || within("Z21", "Z21") || within("A50", "A64") {
            Some(DataCategory::HivSti)
        } else if within("O00", "O08") || within("Z30", "Z30") {
            Some(DataCategory::ReproductiveHealth)
        } else {
            None
        }
    }

    pub fn from_code(code: &str) -> Option<DataCategory> {
        [
            DataCategory::Demographics,
            DataCategory::General,
            DataCategory::MentalHealth,
            DataCategory::HivSti,
            DataCategory::ReproductiveHealth,
            DataCategory::SubstanceUse,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }
}

/// A time-limited grant of access to an organisation or a practitioner (for example for a
/// telemedicine consult). It does not open the sensitive categories. A grant to a practitioner
/// carries the organisation the directory lists them under, and holds only for calls from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub organisation: Option<String>,
    pub practitioner: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// One person's directives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsentDirectives {
    /// The person's own choice: share (`Some(true)`), withhold (`Some(false)`), or the region's
    /// default (`None`).
    pub sharing: Option<bool>,
    pub allowed_organisations: BTreeSet<String>,
    pub denied_organisations: BTreeSet<String>,
    pub consented_categories: BTreeSet<DataCategory>,
    pub grants: Vec<Grant>,
}

impl ConsentDirectives {
    /// What two persons' directives become when they turn out to be one person (a merge): the
    /// most restrictive of each, so that no opt-out, denied organisation or withheld category is
    /// dropped. Withholding beats the region's default, which beats sharing; allowed
    /// organisations, consented categories and grants are those both agreed to; denied
    /// organisations those either denied.
    pub fn most_restrictive(&self, other: &ConsentDirectives) -> ConsentDirectives {
        let rank = |sharing: Option<bool>| match sharing {
            Some(false) => 0,
            None => 1,
            Some(true) => 2,
        };
        let sharing = if rank(self.sharing) <= rank(other.sharing) {
            self.sharing
        } else {
            other.sharing
        };
        let grants = self
            .grants
            .iter()
            .filter_map(|grant| {
                other
                    .grants
                    .iter()
                    .find(|g| g.organisation == grant.organisation && g.practitioner == grant.practitioner)
                    .map(|g| Grant {
                        expires_at: grant.expires_at.min(g.expires_at),
                        ..grant.clone()
                    })
            })
            .collect();
        ConsentDirectives {
            sharing,
            allowed_organisations: self
                .allowed_organisations
                .intersection(&other.allowed_organisations)
                .cloned()
                .collect(),
            denied_organisations: self
                .denied_organisations
                .union(&other.denied_organisations)
                .cloned()
                .collect(),
            consented_categories: self
                .consented_categories
                .intersection(&other.consented_categories)
                .copied()
                .collect(),
            grants,
        }
    }
}

/// The region's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsentPolicy {
    /// Opt-out regions share unless the person withheld; opt-in regions only when they agreed.
    pub opt_in: bool,
    /// Whether emergency access (break-the-glass) overrides a refusal.
    pub emergency_override: bool,
}

impl Default for ConsentPolicy {
    fn default() -> Self {
        ConsentPolicy {
            opt_in: false,
            emergency_override: true,
        }
    }
}

/// What the decision point decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Permitted; `emergency` when only the emergency override permitted it, or when the
    /// purpose was emergency at all (always flagged).
    Permit {
        emergency: bool,
    },
    Deny(String),
}

/// The one decision point.
pub fn decide(
    context: &RequestContext,
    category: DataCategory,
    directives: &ConsentDirectives,
    policy: &ConsentPolicy,
    now: DateTime<Utc>,
) -> Decision {
    let emergency = context.purpose == Purpose::Emergency;
    match refusal(context, category, directives, policy, now) {
        None => Decision::Permit { emergency },
        Some(_) if emergency && policy.emergency_override => Decision::Permit { emergency: true },
        Some(reason) => Decision::Deny(reason),
    }
}

/// Why the data may not be shared with this caller, if it may not, emergency or not: where
/// [`decide`] permits an emergency read that this refuses, the glass was broken.
pub fn refusal(
    context: &RequestContext,
    category: DataCategory,
    directives: &ConsentDirectives,
    policy: &ConsentPolicy,
    now: DateTime<Utc>,
) -> Option<String> {
    let organisation = context.organisation.as_ref().map(|o| o.to_string());
    if let Some(organisation) = &organisation
        && directives.denied_organisations.contains(organisation)
    {
        return Some(format!(
            "the patient withheld consent from organisation {organisation}"
        ));
    }
    if category.is_sensitive() && !directives.consented_categories.contains(&category) {
        return Some(format!(
            "{} data is shared only with the patient's explicit consent",
            category.code()
        ));
    }
    let allowed = organisation
        .as_ref()
        .is_some_and(|o| directives.allowed_organisations.contains(o));
    // A grant names the organisation it holds for; one to a practitioner also the user, who is
    // believed only as far as that organisation vouches for them.
    let granted = directives.grants.iter().any(|grant| {
        grant.expires_at > now
            && grant.organisation.is_some()
            && grant.organisation == organisation
            && grant
                .practitioner
                .as_deref()
                .is_none_or(|practitioner| practitioner == context.user_id)
    });
    if allowed || granted {
        return None;
    }
    let shares = directives.sharing.unwrap_or(!policy.opt_in);
    if !shares {
        return Some(if directives.sharing.is_some() {
            "the patient opted out of sharing".to_owned()
        } else {
            "the patient has not opted in to sharing".to_owned()
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use hie_core::context::Role;
    use hie_core::domain::OrganisationCode;

    use super::*;

    fn context(organisation: &str, purpose: Purpose) -> RequestContext {
        RequestContext {
            organisation: Some(OrganisationCode::parse(organisation).unwrap()),
            user_id: "dr-wu".into(),
            role: Role::Clinician,
            purpose,
            reason: (purpose == Purpose::Emergency).then(|| "unconscious on arrival".into()),
            request_id: "r".into(),
            patient: None,
        }
    }

    fn now() -> DateTime<Utc> {
        hie_core::time::from_micros(1_800_000_000_000_000)
    }

    fn opted_out_of(organisation: &str) -> ConsentDirectives {
        ConsentDirectives {
            denied_organisations: [organisation.to_owned()].into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_opt_out_region_shares_by_default_and_an_opt_in_region_does_not() {
        let treatment = context("QDN-H01", Purpose::Treatment);
        let none = ConsentDirectives::default();
        assert_eq!(
            decide(
                &treatment,
                DataCategory::General,
                &none,
                &ConsentPolicy::default(),
                now()
            ),
            Decision::Permit { emergency: false }
        );
        let opt_in = ConsentPolicy {
            opt_in: true,
            emergency_override: true,
        };
        assert!(matches!(
            decide(&treatment, DataCategory::General, &none, &opt_in, now()),
            Decision::Deny(_)
        ));
        let agreed = ConsentDirectives {
            sharing: Some(true),
            ..Default::default()
        };
        assert_eq!(
            decide(&treatment, DataCategory::General, &agreed, &opt_in, now()),
            Decision::Permit { emergency: false }
        );
    }

    #[test]
    fn a_denied_organisation_is_refused_with_the_reason_and_others_are_not() {
        let directives = opted_out_of("QDN-H02");
        let refused = decide(
            &context("QDN-H02", Purpose::Treatment),
            DataCategory::General,
            &directives,
            &ConsentPolicy::default(),
            now(),
        );
        assert_eq!(
            refused,
            Decision::Deny("the patient withheld consent from organisation QDN-H02".into())
        );
        let other = decide(
            &context("QDN-H01", Purpose::Treatment),
            DataCategory::General,
            &directives,
            &ConsentPolicy::default(),
            now(),
        );
        assert_eq!(other, Decision::Permit { emergency: false });
    }

    #[test]
    fn emergency_access_overrides_a_refusal_where_policy_allows_and_is_flagged() {
        let directives = opted_out_of("QDN-H02");
        let emergency = context("QDN-H02", Purpose::Emergency);
        assert_eq!(
            decide(
                &emergency,
                DataCategory::General,
                &directives,
                &ConsentPolicy::default(),
                now()
            ),
            Decision::Permit { emergency: true }
        );
        let strict = ConsentPolicy {
            opt_in: false,
            emergency_override: false,
        };
        assert!(matches!(
            decide(&emergency, DataCategory::General, &directives, &strict, now()),
            Decision::Deny(_)
        ));
    }

    #[test]
    fn a_sensitive_category_needs_its_own_consent() {
        let treatment = context("QDN-H01", Purpose::Treatment);
        let none = ConsentDirectives::default();
        assert!(matches!(
            decide(
                &treatment,
                DataCategory::MentalHealth,
                &none,
                &ConsentPolicy::default(),
                now()
            ),
            Decision::Deny(_)
        ));
        let consented = ConsentDirectives {
            consented_categories: [DataCategory::MentalHealth].into(),
            ..Default::default()
        };
        assert_eq!(
            decide(
                &treatment,
                DataCategory::MentalHealth,
                &consented,
                &ConsentPolicy::default(),
                now()
            ),
            Decision::Permit { emergency: false }
        );
        assert!(matches!(
            decide(
                &treatment,
                DataCategory::HivSti,
                &consented,
                &ConsentPolicy::default(),
                now()
            ),
            Decision::Deny(_)
        ));
    }

    #[test]
    fn a_grant_to_a_practitioner_holds_only_for_calls_from_their_organisation() {
        let opt_in = ConsentPolicy {
            opt_in: true,
            emergency_override: true,
        };
        let directives = ConsentDirectives {
            grants: vec![Grant {
                organisation: Some("QDN-H01".into()),
                practitioner: Some("dr-wu".into()),
                expires_at: now() + Duration::hours(1),
            }],
            ..Default::default()
        };
        let at_h01 = context("QDN-H01", Purpose::Treatment);
        assert_eq!(
            decide(&at_h01, DataCategory::General, &directives, &opt_in, now()),
            Decision::Permit { emergency: false }
        );
        let posing_at_h02 = context("QDN-H02", Purpose::Treatment);
        assert!(matches!(
            decide(&posing_at_h02, DataCategory::General, &directives, &opt_in, now()),
            Decision::Deny(_)
        ));
        let other_user_at_h01 = RequestContext {
            user_id: "clerk-7".into(),
            ..at_h01
        };
        assert!(matches!(
            decide(
                &other_user_at_h01,
                DataCategory::General,
                &directives,
                &opt_in,
                now()
            ),
            Decision::Deny(_)
        ));
        let unbound = ConsentDirectives {
            grants: vec![Grant {
                organisation: None,
                practitioner: Some("dr-wu".into()),
                expires_at: now() + Duration::hours(1),
            }],
            ..Default::default()
        };
        assert!(matches!(
            decide(
                &context("QDN-H02", Purpose::Treatment),
                DataCategory::General,
                &unbound,
                &opt_in,
                now()
            ),
            Decision::Deny(_)
        ));
    }

    #[test]
    fn merged_directives_keep_every_restriction_of_either() {
        let opted_out = ConsentDirectives {
            sharing: Some(false),
            denied_organisations: ["QDN-H02".to_owned()].into(),
            consented_categories: [DataCategory::MentalHealth].into(),
            ..Default::default()
        };
        let sharing = ConsentDirectives {
            sharing: Some(true),
            allowed_organisations: ["QDN-H03".to_owned()].into(),
            consented_categories: [DataCategory::MentalHealth, DataCategory::HivSti].into(),
            ..Default::default()
        };
        let merged = opted_out.most_restrictive(&sharing);
        assert_eq!(merged, sharing.most_restrictive(&opted_out), "either order");
        assert_eq!(merged.sharing, Some(false));
        assert_eq!(merged.denied_organisations, opted_out.denied_organisations);
        assert!(merged.allowed_organisations.is_empty());
        assert_eq!(merged.consented_categories, [DataCategory::MentalHealth].into());
        assert_eq!(
            ConsentDirectives::default().most_restrictive(&sharing).sharing,
            None,
            "the region's default is more restrictive than sharing"
        );
    }

    #[test]
    fn a_grant_opens_access_until_it_expires() {
        let opt_in = ConsentPolicy {
            opt_in: true,
            emergency_override: true,
        };
        let grant = |expires_at| ConsentDirectives {
            grants: vec![Grant {
                organisation: Some("QDN-H01".into()),
                practitioner: None,
                expires_at,
            }],
            ..Default::default()
        };
        let treatment = context("QDN-H01", Purpose::Treatment);
        assert_eq!(
            decide(
                &treatment,
                DataCategory::General,
                &grant(now() + Duration::hours(1)),
                &opt_in,
                now()
            ),
            Decision::Permit { emergency: false }
        );
        assert!(matches!(
            decide(
                &treatment,
                DataCategory::General,
                &grant(now() - Duration::hours(1)),
                &opt_in,
                now()
            ),
            Decision::Deny(_)
        ));
        assert!(matches!(
            decide(
                &treatment,
                DataCategory::MentalHealth,
                &grant(now() + Duration::hours(1)),
                &opt_in,
                now()
            ),
            Decision::Deny(_)
        ));
    }
}
