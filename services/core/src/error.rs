//! The one error type of every service, and the one place that chooses gRPC status codes.

use std::sync::Arc;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// What went wrong in a call. Expected outcomes (bad input, missing things, refusals) are split
/// from unexpected ones (`Internal`), whose cause is logged but never sent to the caller.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// A field of the request is malformed; names the field and says what was expected.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The thing to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is well-formed but the system is not in a state to accept it (for example a
    /// record from an inactive organisation). `field` names the request field it concerns.
    #[error("{field}: {reason}")]
    FailedPrecondition { field: String, reason: String },
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The caller did not prove who it is (no, an unknown or a revoked client certificate).
    #[error("{0}")]
    Unauthenticated(String),
    /// A concurrent change got in the way (a serialisation failure or deadlock); the call may
    /// be retried.
    #[error("{0}")]
    Conflict(String),
    /// A dependency (the database) is not reachable right now.
    #[error("{0}")]
    Unavailable(String),
    /// Anything unexpected: what failed, and its cause. Logged, never returned to the caller.
    #[error("internal error: {0}")]
    Internal(#[source] Internal),
}

/// An unexpected failure: what was being done, and the error that stopped it, kept as the
/// source (for the operator's log, with its own chain of causes), never shown to a caller.
#[derive(Debug, Clone)]
pub struct Internal {
    what: String,
    cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Internal {
    /// What was being done.
    pub fn what(&self) -> &str {
        &self.what
    }
}

impl std::fmt::Display for Internal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.cause {
            Some(cause) => write!(f, "{}: {cause}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

impl std::error::Error for Internal {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|cause| cause as &(dyn std::error::Error + 'static))
    }
}

/// Two internal errors are alike when they say the same (for tests; causes have no equality).
impl PartialEq for Internal {
    fn eq(&self, other: &Internal) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Internal {}

impl From<String> for Internal {
    fn from(what: String) -> Internal {
        Internal { what, cause: None }
    }
}

impl From<&str> for Internal {
    fn from(what: &str) -> Internal {
        Internal::from(what.to_owned())
    }
}

impl Error {
    /// An invalid-argument error for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// An unexpected failure of `what`, keeping `cause` as its source.
    pub fn internal(what: impl Into<String>, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Internal(Internal {
            what: what.into(),
            cause: Some(Arc::new(cause)),
        })
    }

    /// A failed-precondition error for `field`.
    pub fn precondition(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::FailedPrecondition {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Why a single value failed to parse; the caller adds the field name (see [`ResultExt`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FieldError(pub String);

impl FieldError {
    pub fn new(reason: impl Into<String>) -> Self {
        FieldError(reason.into())
    }
}

/// Attaches a field name to a [`FieldError`], turning it into an [`Error::InvalidArgument`].
pub trait ResultExt<T> {
    fn field(self, name: &str) -> Result<T, Error>;
}

impl<T> ResultExt<T> for Result<T, FieldError> {
    fn field(self, name: &str) -> Result<T, Error> {
        self.map_err(|e| Error::invalid(name, e.0))
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        match error {
            Error::InvalidArgument { field, reason } => {
                let message = format!("{field}: {reason}");
                let details = ErrorDetails::with_bad_request_violation(field, reason);
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::FailedPrecondition { field, reason } => {
                let message = format!("{field}: {reason}");
                let details = ErrorDetails::with_precondition_failure_violation("STATE", field, reason);
                Status::with_error_details(Code::FailedPrecondition, message, details)
            }
            Error::NotFound(message) => Status::not_found(message),
            Error::AlreadyExists(message) => Status::already_exists(message),
            Error::PermissionDenied(message) => Status::permission_denied(message),
            Error::Unauthenticated(message) => Status::unauthenticated(message),
            Error::Conflict(message) => Status::aborted(message),
            Error::Unavailable(message) => Status::unavailable(message),
            Error::Internal(internal) => {
                // The cause may name tables or values; it goes to the operator's log only, with
                // every error in its chain.
                let mut chain = internal.to_string();
                let mut source = std::error::Error::source(&internal).and_then(std::error::Error::source);
                while let Some(cause) = source {
                    chain.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                tracing::error!(cause = %chain, "internal error");
                Status::internal("internal error; the exchange's log has the cause")
            }
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Error {
        use sqlx::error::ErrorKind;
        match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Error::Unavailable("the database is not reachable; retry later".into())
            }
            sqlx::Error::Database(db) => match db.kind() {
                ErrorKind::UniqueViolation => {
                    Error::AlreadyExists("a record with the same key exists already".into())
                }
                ErrorKind::ForeignKeyViolation => {
                    Error::precondition("", "a referenced record does not exist")
                }
                _ if is_busy(db.as_ref()) => Error::Unavailable("the database is busy; retry".into()),
                _ if is_serialisation_failure(db.as_ref()) => {
                    Error::Conflict("a concurrent change got in the way; retry".into())
                }
                _ if is_timeout(db.as_ref()) => {
                    Error::Unavailable("the database did not answer in time; retry".into())
                }
                _ => Error::internal("a database statement failed", error),
            },
            _ => Error::internal("a database call failed", error),
        }
    }
}

/// SQLite answers `SQLITE_BUSY` (5, and its extended codes 261, 517, 773) or `SQLITE_LOCKED`
/// (6, 262) when another connection holds the database past the busy timeout: unavailable for
/// now, not broken.
fn is_busy(db: &dyn sqlx::error::DatabaseError) -> bool {
    matches!(
        db.code().as_deref(),
        Some("5" | "6" | "261" | "262" | "517" | "773")
    )
}

/// PostgreSQL answers 40001/40P01 on serialisation failure or deadlock: the call may be retried.
fn is_serialisation_failure(db: &dyn sqlx::error::DatabaseError) -> bool {
    matches!(db.code().as_deref(), Some("40001" | "40P01"))
}

/// PostgreSQL's `statement_timeout` (57014, query cancelled) and `lock_timeout` (55P03, lock not
/// available) bound how long a call may hold a connection; either means "retry later".
fn is_timeout(db: &dyn sqlx::error::DatabaseError) -> bool {
    matches!(db.code().as_deref(), Some("57014" | "55P03"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_argument_names_the_field_in_the_message_and_the_details() {
        let status = Status::from(Error::invalid("demographics.name", "must not be empty"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "demographics.name: must not be empty");
        let details = status.get_error_details();
        let violation = &details.bad_request().unwrap().field_violations[0];
        assert_eq!(violation.field, "demographics.name");
    }

    #[test]
    fn an_internal_error_hides_its_cause_from_the_caller() {
        let status = Status::from(Error::Internal("table persons: secret".into()));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
        let cause = std::io::Error::other("disk full at /var/lib/hie");
        let error = Error::internal("writing the anchor", cause);
        assert!(std::error::Error::source(&error).is_some_and(|s| s.to_string().contains("disk full")));
        assert!(!Status::from(error).message().contains("disk"));
    }
}
