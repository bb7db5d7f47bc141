//! Who is calling and why. The organisation is taken from the client certificate of the
//! mutual-TLS connection (never from a header); the server's authentication layer puts it in the
//! request's extensions. The calling system asserts, in metadata, the user, the role and the
//! purpose of use; the organisation vouches for them.

use tonic::metadata::MetadataMap;

use crate::Error;
use crate::domain::{BoundedText, OrganisationCode};

/// The organisation that authenticated the connection a request came over. Absent when the
/// server runs in plaintext development mode on loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerOrganisation(pub OrganisationCode);

/// The metadata keys of the request context.
pub const USER_HEADER: &str = "x-hie-user";
pub const ROLE_HEADER: &str = "x-hie-role";
pub const PURPOSE_HEADER: &str = "x-hie-purpose";
pub const REASON_HEADER: &str = "x-hie-reason";
pub const REQUEST_ID_HEADER: &str = "x-request-id";

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
    }
);

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
}

impl RequestContext {
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
        }
    }

    /// The context of a gRPC request: its metadata, and the organisation its connection
    /// authenticated as.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<RequestContext, Error> {
        let organisation = request
            .extensions()
            .get::<CallerOrganisation>()
            .map(|c| c.0.clone());
        Self::from_metadata(request.metadata(), organisation)
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
}
