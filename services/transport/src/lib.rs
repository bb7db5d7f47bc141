//! Transport security, shared by the exchange's server and the hospital adapters: the server side
//! of mutual TLS and the authentication of every call (the client certificate's fingerprint must
//! be registered in the directory for an active organisation, and the claims of the request
//! context must be ones that organisation may make: [`authn`]), the client side of mutual TLS an
//! adapter connects with ([`tls`]), and the development PKI of `hie certs` ([`pki`]).
//!
//! It must never trust a header or a request field for who is calling: the organisation of a call
//! comes from its certificate alone.

pub mod authn;
pub mod pki;
pub mod tls;
