//! Tessera's gRPC protocols, generated from the `.proto` files in `proto/`.
//!
//! - [`v1`]: the public generation API, `tessera.v1.Generation`, which clients
//!   call on the coordinator.
//! - [`shard::v1`]: the internal control plane, `tessera.shard.v1.Shard`, which
//!   the coordinator calls on each shard process.
//!
//! Both modules hold the prost messages, a tonic client (`*_client`) and a
//! tonic server (`*_server`). The build compiles the `.proto` files with
//! protox, so no system `protoc` is needed.
//!
//! [`FILE_DESCRIPTOR_SET`] is the encoded descriptor set of both packages, for
//! gRPC server reflection:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let reflection = tonic_reflection::server::Builder::configure()
//!     .register_encoded_file_descriptor_set(tessera_proto::FILE_DESCRIPTOR_SET)
//!     .build_v1()?;
//! # drop(reflection);
//! # Ok(())
//! # }
//! ```

/// The public generation API, package `tessera.v1`.
pub mod v1 {
    #![allow(missing_docs)]
    tonic::include_proto!("tessera.v1");
}

/// The internal shard control plane.
pub mod shard {
    /// The shard API, package `tessera.shard.v1`.
    pub mod v1 {
        #![allow(missing_docs)]
        tonic::include_proto!("tessera.shard.v1");
    }
}

/// The `tessera.v1.Generation` client, re-exported from [`v1`].
pub use v1::generation_client::GenerationClient;
/// The `tessera.v1.Generation` server and the trait a service implements.
pub use v1::generation_server::{Generation, GenerationServer};

/// The `tessera.shard.v1.Shard` client, re-exported from [`shard::v1`].
pub use shard::v1::shard_client::ShardClient;
/// The `tessera.shard.v1.Shard` server and the trait a service implements.
pub use shard::v1::shard_server::{Shard, ShardServer};

/// The encoded `FileDescriptorSet` of `tessera.v1` and `tessera.shard.v1`
/// (with source info, so reflection shows the `.proto` comments).
///
/// Register it with `tonic_reflection::server::Builder::configure()
/// .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tessera_descriptor.bin"));
