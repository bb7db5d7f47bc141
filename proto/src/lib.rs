//! The hie gRPC API, generated from the `.proto` files beside this crate. This is the only crate
//! that generates code; every service maps these types to its own domain types at its boundary,
//! so that proto types never reach domain logic.

/// The generated packages, nested as their names are, so that one package's messages can use
/// another's (`hie.emr.v1` uses `hie.population.v1.Identifier`).
pub mod hie {
    pub mod access {
        pub mod v1 {
            #![allow(missing_docs, clippy::all)]
            tonic::include_proto!("hie.access.v1");
        }
    }
    pub mod directory {
        pub mod v1 {
            #![allow(missing_docs, clippy::all)]
            tonic::include_proto!("hie.directory.v1");
        }
    }
    pub mod population {
        pub mod v1 {
            #![allow(missing_docs, clippy::all)]
            tonic::include_proto!("hie.population.v1");
        }
    }
    pub mod records {
        pub mod v1 {
            #![allow(missing_docs, clippy::all)]
            tonic::include_proto!("hie.records.v1");
        }
    }
    pub mod emr {
        pub mod v1 {
            #![allow(missing_docs, clippy::all)]
            tonic::include_proto!("hie.emr.v1");
        }
    }
    pub mod cards {
        pub mod v1 {
            #![allow(missing_docs, clippy::all)]
            tonic::include_proto!("hie.cards.v1");
        }
    }
    pub mod hospital {
        pub mod v1 {
            #![allow(missing_docs, clippy::all)]
            tonic::include_proto!("hie.hospital.v1");
        }
    }
    pub mod events {
        pub mod v1 {
            #![allow(missing_docs, clippy::all)]
            tonic::include_proto!("hie.events.v1");
        }
    }
    pub mod telemedicine {
        pub mod v1 {
            #![allow(missing_docs, clippy::all)]
            tonic::include_proto!("hie.telemedicine.v1");
        }
    }
}

/// `hie.access.v1`: the audit trail as patients and privacy officers see it.
pub use hie::access::v1 as access;
/// `hie.cards.v1`: the four cards and the reception check-in.
pub use hie::cards::v1 as cards;
/// `hie.directory.v1`: organisations and practitioners.
pub use hie::directory::v1 as directory;
/// `hie.emr.v1`: clinical documents, visits and the patient summary.
pub use hie::emr::v1 as emr;
/// `hie.events.v1`: the event log and subscriptions.
pub use hie::events::v1 as events;
/// `hie.hospital.v1`: the gateway each hospital's adapter serves to the exchange.
pub use hie::hospital::v1 as hospital;
/// `hie.population.v1`: the master patient index.
pub use hie::population::v1 as population;
/// `hie.records.v1`: the resident health archive.
pub use hie::records::v1 as records;
/// `hie.telemedicine.v1`: consults and the service-item catalogue.
pub use hie::telemedicine::v1 as telemedicine;

/// The encoded file descriptor set of every hie service, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hie_descriptor.bin"));

/// A UTC instant as a protobuf timestamp.
pub fn timestamp(instant: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: instant.timestamp(),
        nanos: instant.timestamp_subsec_nanos() as i32,
    }
}
