//! Compiles the `.proto` files under `proto/` without a system `protoc`.
//!
//! protox parses them into a `FileDescriptorSet`; tonic-prost-build turns that
//! set into prost messages and tonic clients and servers; and the encoded set
//! is written to `$OUT_DIR/tessera_descriptor.bin` so that the crate can hand it
//! to gRPC server reflection.

use std::error::Error;
use std::path::PathBuf;

use prost::Message;

/// The folder every import is resolved against.
const INCLUDE_DIR: &str = "proto";

/// The files to compile, relative to [`INCLUDE_DIR`].
const PROTO_FILES: &[&str] = &[
    "tessera/v1/generation.proto",
    "tessera/shard/v1/shard.proto",
];

/// The file name of the encoded descriptor set inside `OUT_DIR`.
const DESCRIPTOR_FILE: &str = "tessera_descriptor.bin";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={INCLUDE_DIR}");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    // Source info is kept so that generated code and reflection carry the
    // comments written in the .proto files.
    let fds = protox::Compiler::new([INCLUDE_DIR])?
        .include_source_info(true)
        .include_imports(true)
        .open_files(PROTO_FILES)?
        .file_descriptor_set();

    std::fs::write(out_dir.join(DESCRIPTOR_FILE), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(&out_dir)
        .compile_fds(fds)?;
    Ok(())
}
