//! Compiles proto/ into tonic services and prost messages, then pbjson serde impls for the HTTP gateway.
//! protoc comes from protoc-bin-vendored: building cairn needs nothing but cargo.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "../../proto/kv.proto",
    "../../proto/auth.proto",
    "../../proto/rpc.proto",
    "../../proto/v3lock.proto",
    "../../proto/v3election.proto",
    "../../proto/cairn/cairn.proto",
];

/// Packages that get serde impls: every one the gateway may carry as JSON.
const JSON_PACKAGES: &[&str] =
    &[".etcdserverpb", ".mvccpb", ".authpb", ".v3lockpb", ".v3electionpb", ".cairnpb"];

/// A raft entry's payload: `bytes::Bytes` rather than `Vec<u8>`.
const RAFT_ENTRY_DATA: &str = ".cairnpb.Entry.data";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = out_dir.join("descriptors.bin");

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // The gateway decoder finds a message's schema by its proto name (`prost::Name`).
    config.enable_type_names();
    // Raft entries are shared, not copied, between the raft log, the WAL and the peer transport.
    config.bytes([RAFT_ENTRY_DATA]);
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptors)
        // Services whose issue has not landed answer Unimplemented, never a fake success.
        .generate_default_stubs(true)
        .compile_with_config(config, PROTOS, &["../../proto"])?;

    // etcd's gateway (grpc-gateway with OrigName) writes proto field names: {"header":{"cluster_id":"1"}}.
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptors)?)?
        .preserve_proto_field_names()
        // jsonpb as etcd's gateway runs it (AllowUnknownFields) skips fields it does not know.
        .ignore_unknown_fields()
        .build(JSON_PACKAGES)?;

    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
