//! The EMR registry: clinical documents from hospitals (an XDS.b-style registry, with content kept
//! here or at the hospital and retrieved through its gateway, hash-checked), the visits hospitals
//! and clinics register, and the patient summary assembled from this registry and the resident
//! health archive.
//!
//! It owns the `documents`, `document_*` and `encounters` tables and must never read or write any
//! other service's tables: persons come from the population registry's service, organisations from
//! the directory's, archive entries from the archive's.

pub mod domain;
pub mod grpc;
pub mod store;

pub use domain::EmrService;
