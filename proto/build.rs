//! Compiles `proto/` with protox (pure Rust), so a fresh machine needs no system `protoc`.

use prost::Message;

const PROTOS: &[&str] = &[
    "hie/access/v1/access.proto",
    "hie/directory/v1/directory.proto",
    "hie/population/v1/population.proto",
    "hie/records/v1/records.proto",
    "hie/emr/v1/emr.proto",
    "hie/cards/v1/cards.proto",
    "hie/hospital/v1/hospital.proto",
    "hie/events/v1/events.proto",
    "hie/telemedicine/v1/telemedicine.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = protox::compile(PROTOS, ["."])?;
    // The encoded descriptor set feeds server reflection, so grpcurl needs no .proto files.
    std::fs::write(out_dir.join("hie_descriptor.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
