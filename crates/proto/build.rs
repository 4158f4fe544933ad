//! Compiles `proto/plexspaces/v1/*.proto` with protox (pure Rust, no system protoc).
//!
//! Messages are always generated (prost). With the `grpc` feature, tonic clients and servers
//! are generated too, and the encoded file descriptor set is written for gRPC reflection.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The manifest dir of this build, read at run time: a build script binary reused from
    // another checkout (a copied target dir) must still read this checkout's protos.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let dir = root.join("plexspaces/v1");
    // Watch the directory too, so a newly added .proto triggers a rebuild.
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "proto") {
            println!("cargo:rerun-if-changed={}", path.display());
            files.push(path);
        }
    }
    files.sort();
    let descriptors = protox::compile(&files, [&root])?;
    let grpc = std::env::var_os("CARGO_FEATURE_GRPC").is_some();
    if grpc {
        let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
        std::fs::write(
            out.join("plexspaces_descriptor.bin"),
            descriptors.encode_to_vec(),
        )?;
    }
    let mut config = prost_build::Config::new();
    config.bytes(["."]);
    tonic_prost_build::configure()
        .build_server(grpc)
        .build_client(grpc)
        .build_transport(grpc)
        .compile_fds_with_config(descriptors, config)?;
    Ok(())
}
