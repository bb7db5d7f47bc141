//! The hie gRPC API, generated from the `.proto` files beside this crate. This is the only crate
//! that generates code; every service maps these types to its own domain types at its boundary,
//! so that proto types never reach domain logic.

/// `hie.access.v1`: the audit trail as patients and privacy officers see it.
pub mod access {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("hie.access.v1");
}

/// `hie.directory.v1`: organisations and practitioners.
pub mod directory {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("hie.directory.v1");
}

/// `hie.population.v1`: the master patient index.
pub mod population {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("hie.population.v1");
}

/// The encoded file descriptor set of every hie service, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hie_descriptor.bin"));

/// A UTC instant as a protobuf timestamp.
pub fn timestamp(instant: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: instant.timestamp(),
        nanos: instant.timestamp_subsec_nanos() as i32,
    }
}
