//! Who is calling. The organisation is taken from the client certificate of the mutual-TLS
//! connection (never from a header); the server's authentication layer puts it in the request's
//! extensions, where every service reads it.

use crate::domain::OrganisationCode;

/// The organisation that authenticated the connection a request came over. Absent when the
/// server runs in plaintext development mode on loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerOrganisation(pub OrganisationCode);
