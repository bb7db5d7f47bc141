//! Who is calling and why. The organisation is taken from the client certificate of the
//! mutual-TLS connection (never from a header); the server's authentication layer puts it in the
//! request's extensions. The calling system asserts, in metadata, the user, the role and the
//! purpose of use; the organisation vouches for them.

use tonic::metadata::MetadataMap;

use crate::domain::{BoundedText, OrganisationCode};
use crate::{Error, ResultExt};

/// The organisation that authenticated the connection a request came over, and what the
/// directory lets it assert. Absent when the server runs in plaintext development mode on
/// loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerOrganisation {
    pub code: OrganisationCode,
    pub entitlements: Entitlements,
}

/// The roles and purposes of use an organisation's systems may assert in the request context.
/// The directory keeps them per organisation (defaults and ceilings by kind); a context claiming
/// anything else is refused, so that a hospital's certificate cannot act as the health
/// authority's administrator, a patient, or an insurer breaking the glass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entitlements {
    roles: u32,
    purposes: u32,
}

impl Entitlements {
    pub fn new(roles: &[Role], purposes: &[Purpose]) -> Entitlements {
        Entitlements {
            roles: roles.iter().fold(0, |bits, r| bits | r.bit()),
            purposes: purposes.iter().fold(0, |bits, p| bits | p.bit()),
        }
    }

    pub fn roles(&self) -> Vec<Role> {
        Role::ALL
            .iter()
            .copied()
            .filter(|r| self.allows_role(*r))
            .collect()
    }

    pub fn purposes(&self) -> Vec<Purpose> {
        Purpose::ALL
            .iter()
            .copied()
            .filter(|p| self.allows_purpose(*p))
            .collect()
    }

    /// The role codes, joined by `separator`.
    pub fn role_codes(&self, separator: &str) -> String {
        list(&self.roles(), |r| r.code()).replace(", ", separator)
    }

    /// The purpose codes, joined by `separator`.
    pub fn purpose_codes(&self, separator: &str) -> String {
        list(&self.purposes(), |p| p.code()).replace(", ", separator)
    }

    pub fn allows_role(&self, role: Role) -> bool {
        self.roles & role.bit() != 0
    }

    pub fn allows_purpose(&self, purpose: Purpose) -> bool {
        self.purposes & purpose.bit() != 0
    }

    /// Whether every role and purpose of `self` is also in `ceiling`.
    pub fn within(&self, ceiling: &Entitlements) -> bool {
        self.roles & !ceiling.roles == 0 && self.purposes & !ceiling.purposes == 0
    }

    /// Why `organisation` may not assert this role and purpose, if it may not. Names only what
    /// the caller itself claimed.
    pub fn refusal(&self, organisation: &OrganisationCode, role: Role, purpose: Purpose) -> Option<String> {
        if !self.allows_role(role) {
            return Some(format!(
                "organisation {organisation} may not assert role {}; the directory lets it assert {}",
                role.code(),
                self.role_codes(", ")
            ));
        }
        if !self.allows_purpose(purpose) {
            return Some(format!(
                "organisation {organisation} may not assert purpose {}; the directory lets it assert {}",
                purpose.code(),
                self.purpose_codes(", ")
            ));
        }
        None
    }
}

/// A request context the server's authentication layer already parsed and checked against the
/// caller's entitlements, handed to the handler in the request's extensions so that it is read
/// once per call (and carries one request id).
#[derive(Debug, Clone)]
pub struct CheckedContext(pub RequestContext);

/// The metadata keys of the request context.
pub const USER_HEADER: &str = "x-hie-user";
pub const ROLE_HEADER: &str = "x-hie-role";
pub const PURPOSE_HEADER: &str = "x-hie-purpose";
pub const REASON_HEADER: &str = "x-hie-reason";
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The person a patient-portal call acts for (role `patient` only).
pub const PATIENT_HEADER: &str = "x-hie-patient";

/// Declares an enum with the text codes it travels as in metadata and is stored as.
macro_rules! coded {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $code:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code),+ }
            }

            pub fn from_code(code: &str) -> Option<$name> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }

            /// This value's bit in a set of them.
            fn bit(self) -> u32 {
                1 << (self as u32)
            }
        }
    };
}

coded!(
    /// What the user is, as the calling system asserts it.
    Role {
        Clinician => "clinician",
        Nurse => "nurse",
        RegistrationClerk => "registration_clerk",
        PublicHealthOfficer => "public_health_officer",
        Insurer => "insurer",
        Patient => "patient",
        Administrator => "administrator",
    }
);

coded!(
    /// Why the data is asked for (purpose of use).
    Purpose {
        Treatment => "treatment",
        Emergency => "emergency",
        Payment => "payment",
        PublicHealth => "public_health",
        Research => "research",
        PatientRequest => "patient_request",
        Operations => "operations",
    }
);

impl Role {
    /// The roles that treat patients, and so may break the glass.
    pub fn is_clinical(self) -> bool {
        matches!(self, Role::Clinician | Role::Nurse)
    }
}

/// Who asks, for whom, and why: everything the consent decision and the audit trail need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub organisation: Option<OrganisationCode>,
    pub user_id: String,
    pub role: Role,
    pub purpose: Purpose,
    /// Free text; required for emergency access (break-the-glass).
    pub reason: Option<String>,
    pub request_id: String,
    /// The person a patient-portal call acts for: set exactly when the role is `patient`.
    pub patient: Option<String>,
}

impl RequestContext {
    /// Whether the caller may do `what`, which is for the region's administrators (data
    /// stewards, privacy officers) alone: the refusal's reason otherwise. The one role check
    /// every service uses for its administrative writes.
    pub fn administrators_only(&self, what: &str) -> Result<(), String> {
        match self.role {
            Role::Administrator => Ok(()),
            role => Err(format!(
                "role {} may not {what}; only an administrator may",
                role.code()
            )),
        }
    }

    /// Whether the caller's role is one of `roles`, the roles whose systems may do `what`: the
    /// refusal's reason otherwise. The role check of every service's writes beyond the
    /// administrators' own.
    pub fn role_among(&self, roles: &[Role], what: &str) -> Result<(), String> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(format!("role {} may not {what}", self.role.code()))
        }
    }

    /// The context of a bulk load run by an operator (the demo, benchmarks, migrations): no
    /// organisation, an administrator, and the reason in the audit trail.
    pub fn bulk_load(user_id: &str, reason: &str) -> RequestContext {
        RequestContext {
            organisation: None,
            user_id: user_id.to_owned(),
            role: Role::Administrator,
            purpose: Purpose::Treatment,
            reason: Some(reason.to_owned()),
            request_id: uuid::Uuid::now_v7().to_string(),
            patient: None,
        }
    }

    /// The context of a gRPC request: its metadata, and the organisation its connection
    /// authenticated as, which must be entitled to the role and purpose claimed
    /// (`PERMISSION_DENIED` otherwise; the server's authentication layer has already refused
    /// and audited such a call, so this is the second line).
    pub fn of<T>(request: &tonic::Request<T>) -> Result<RequestContext, Error> {
        Self::of_caller(
            request.metadata(),
            request.extensions().get::<CallerOrganisation>(),
        )
    }

    /// The context from metadata and the caller the connection authenticated as, with the
    /// caller's entitlements enforced.
    pub fn of_caller(
        metadata: &MetadataMap,
        caller: Option<&CallerOrganisation>,
    ) -> Result<RequestContext, Error> {
        let context = Self::from_metadata(metadata, caller.map(|c| c.code.clone()))?;
        if let Some(caller) = caller
            && let Some(refusal) = caller
                .entitlements
                .refusal(&caller.code, context.role, context.purpose)
        {
            return Err(Error::PermissionDenied(refusal));
        }
        Ok(context)
    }

    /// The organisation a submission is made for, from the request field `field`: over mutual
    /// TLS the certificate's organisation (the field may be left empty, and naming another is
    /// refused), without TLS (development on loopback, bulk loads) the field, which is then
    /// required. An organisation submits only its own data: the certificate, not the request,
    /// says who it is.
    pub fn submitting_organisation(&self, field: &str, claimed: &str) -> Result<OrganisationCode, Error> {
        match &self.organisation {
            Some(caller) if claimed.trim().is_empty() => Ok(caller.clone()),
            Some(caller) => {
                let claimed = OrganisationCode::parse(claimed).field(field)?;
                if &claimed == caller {
                    Ok(claimed)
                } else {
                    Err(Error::PermissionDenied(format!(
                        "{field}: {claimed} is not the calling organisation {caller}"
                    )))
                }
            }
            None => OrganisationCode::parse(claimed).field(field),
        }
    }

    /// Refuses a patient-side call for any person but the one a patient acts for.
    pub fn require_acting_for(&self, person_id: &str) -> Result<(), Error> {
        match (&self.patient, self.role) {
            (Some(patient), Role::Patient) if patient == person_id => Ok(()),
            (_, Role::Patient) => Err(Error::PermissionDenied(format!(
                "a patient may act only for themselves ({PATIENT_HEADER})"
            ))),
            _ => Ok(()),
        }
    }

    /// Reads the context from a request's metadata; the organisation comes from the connection.
    pub fn from_metadata(
        metadata: &MetadataMap,
        organisation: Option<OrganisationCode>,
    ) -> Result<RequestContext, Error> {
        let text = |key: &str| -> Result<Option<String>, Error> {
            match metadata.get(key) {
                None => Ok(None),
                Some(value) => value
                    .to_str()
                    .map(|v| Some(v.trim().to_owned()).filter(|v| !v.is_empty()))
                    .map_err(|_| Error::invalid(key, "must be visible ASCII; percent-encode other text")),
            }
        };
        let required = |key: &str| text(key)?.ok_or_else(|| Error::invalid(key, "metadata is required"));
        let user_id = BoundedText::parse_required(&required(USER_HEADER)?, 64)
            .map_err(|e| Error::invalid(USER_HEADER, e.0))?
            .into_string();
        let role_code = required(ROLE_HEADER)?;
        let role = Role::from_code(&role_code).ok_or_else(|| {
            Error::invalid(
                ROLE_HEADER,
                format!(
                    "'{}' is not a role, expected one of {}",
                    clip(&role_code),
                    list(Role::ALL, |r| r.code())
                ),
            )
        })?;
        let purpose_code = required(PURPOSE_HEADER)?;
        let purpose = Purpose::from_code(&purpose_code).ok_or_else(|| {
            Error::invalid(
                PURPOSE_HEADER,
                format!(
                    "'{}' is not a purpose of use, expected one of {}",
                    clip(&purpose_code),
                    list(Purpose::ALL, |p| p.code())
                ),
            )
        })?;
        let reason = match text(REASON_HEADER)? {
            Some(reason) => Some(
                BoundedText::parse_required(&percent_decode(&reason), 500)
                    .map_err(|e| Error::invalid(REASON_HEADER, e.0))?
                    .into_string(),
            ),
            None => None,
        };
        if purpose == Purpose::Emergency && reason.is_none() {
            return Err(Error::invalid(REASON_HEADER, "emergency access needs a reason"));
        }
        if purpose == Purpose::Emergency && !role.is_clinical() {
            return Err(Error::PermissionDenied(format!(
                "emergency access (break-the-glass) is for clinical roles (clinician, nurse), not role {}",
                role.code()
            )));
        }
        let patient = match (text(PATIENT_HEADER)?, role) {
            (Some(person), Role::Patient) => {
                if person.len() > 64 || !person.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    return Err(Error::invalid(PATIENT_HEADER, "is not a person id"));
                }
                Some(person)
            }
            (None, Role::Patient) => {
                return Err(Error::invalid(
                    PATIENT_HEADER,
                    "metadata is required with role patient: the person the call acts for",
                ));
            }
            (Some(_), _) => {
                return Err(Error::invalid(PATIENT_HEADER, "is for role patient only"));
            }
            (None, _) => None,
        };
        let request_id = match text(REQUEST_ID_HEADER)? {
            Some(id) if id.len() <= 64 => id,
            Some(_) => return Err(Error::invalid(REQUEST_ID_HEADER, "at most 64 characters")),
            None => uuid::Uuid::now_v7().to_string(),
        };
        Ok(RequestContext {
            organisation,
            user_id,
            role,
            purpose,
            reason,
            request_id,
            patient,
        })
    }
}

fn clip(text: &str) -> String {
    text.chars().take(32).collect()
}

fn list<T: Copy>(items: &[T], code: impl Fn(T) -> &'static str) -> String {
    items.iter().map(|&i| code(i)).collect::<Vec<_>>().join(", ")
}

/// Metadata values are ASCII; a reason in Chinese travels percent-encoded (UTF-8).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(pairs: &[(&'static str, &str)]) -> MetadataMap {
        let mut map = MetadataMap::new();
        for (key, value) in pairs {
            map.insert(*key, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn a_complete_context_parses() {
        let context = RequestContext::from_metadata(
            &metadata(&[
                (USER_HEADER, "dr-wu"),
                (ROLE_HEADER, "clinician"),
                (PURPOSE_HEADER, "treatment"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(context.role, Role::Clinician);
        assert_eq!(context.purpose, Purpose::Treatment);
        assert!(!context.request_id.is_empty());
    }

    #[test]
    fn a_missing_or_unknown_value_names_its_header() {
        let missing =
            RequestContext::from_metadata(&metadata(&[(ROLE_HEADER, "clinician")]), None).unwrap_err();
        assert!(matches!(missing, Error::InvalidArgument { ref field, .. } if field == USER_HEADER));
        let unknown = RequestContext::from_metadata(
            &metadata(&[
                (USER_HEADER, "u"),
                (ROLE_HEADER, "surgeon"),
                (PURPOSE_HEADER, "treatment"),
            ]),
            None,
        )
        .unwrap_err();
        assert!(matches!(unknown, Error::InvalidArgument { ref field, .. } if field == ROLE_HEADER));
    }

    #[test]
    fn emergency_access_needs_a_reason_which_may_be_percent_encoded() {
        let base = [
            (USER_HEADER, "u"),
            (ROLE_HEADER, "clinician"),
            (PURPOSE_HEADER, "emergency"),
        ];
        assert!(RequestContext::from_metadata(&metadata(&base), None).is_err());
        let mut with_reason = base.to_vec();
        with_reason.push((REASON_HEADER, "%E6%98%8F%E8%BF%B7"));
        let context = RequestContext::from_metadata(&metadata(&with_reason), None).unwrap();
        assert_eq!(context.reason.as_deref(), Some("昏迷"));
    }

    fn caller(roles: &[Role], purposes: &[Purpose]) -> CallerOrganisation {
        CallerOrganisation {
            code: OrganisationCode::parse("QDN-H01").unwrap(),
            entitlements: Entitlements::new(roles, purposes),
        }
    }

    #[test]
    fn a_role_or_purpose_the_organisation_may_not_assert_is_refused() {
        let hospital = caller(&[Role::Clinician], &[Purpose::Treatment]);
        let as_administrator = metadata(&[
            (USER_HEADER, "u"),
            (ROLE_HEADER, "administrator"),
            (PURPOSE_HEADER, "treatment"),
        ]);
        let refused = RequestContext::of_caller(&as_administrator, Some(&hospital)).unwrap_err();
        assert!(matches!(refused, Error::PermissionDenied(ref m) if m.contains("role administrator")));
        let for_payment = metadata(&[
            (USER_HEADER, "u"),
            (ROLE_HEADER, "clinician"),
            (PURPOSE_HEADER, "payment"),
        ]);
        assert!(matches!(
            RequestContext::of_caller(&for_payment, Some(&hospital)),
            Err(Error::PermissionDenied(_))
        ));
        let treating = metadata(&[
            (USER_HEADER, "u"),
            (ROLE_HEADER, "clinician"),
            (PURPOSE_HEADER, "treatment"),
        ]);
        assert!(RequestContext::of_caller(&treating, Some(&hospital)).is_ok());
    }

    #[test]
    fn only_clinical_roles_break_the_glass() {
        let insurer = metadata(&[
            (USER_HEADER, "u"),
            (ROLE_HEADER, "insurer"),
            (PURPOSE_HEADER, "emergency"),
            (REASON_HEADER, "claim"),
        ]);
        assert!(matches!(
            RequestContext::from_metadata(&insurer, None),
            Err(Error::PermissionDenied(_))
        ));
    }

    #[test]
    fn a_patient_names_the_person_and_acts_only_for_them() {
        let without = metadata(&[
            (USER_HEADER, "resident-1"),
            (ROLE_HEADER, "patient"),
            (PURPOSE_HEADER, "patient_request"),
        ]);
        let missing = RequestContext::from_metadata(&without, None).unwrap_err();
        assert!(matches!(missing, Error::InvalidArgument { ref field, .. } if field == PATIENT_HEADER));
        let mut with = without.clone();
        with.insert(PATIENT_HEADER, "pn-1".parse().unwrap());
        let context = RequestContext::from_metadata(&with, None).unwrap();
        assert!(context.require_acting_for("pn-1").is_ok());
        assert!(matches!(
            context.require_acting_for("pn-2"),
            Err(Error::PermissionDenied(_))
        ));
        let mut clinician = metadata(&[
            (USER_HEADER, "u"),
            (ROLE_HEADER, "clinician"),
            (PURPOSE_HEADER, "treatment"),
        ]);
        clinician.insert(PATIENT_HEADER, "pn-1".parse().unwrap());
        assert!(RequestContext::from_metadata(&clinician, None).is_err());
    }
}
