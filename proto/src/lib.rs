//! Generated types, clients and servers of the `exposure.v1` gRPC API (DESIGN.md section 7),
//! and the encoded file descriptor set that the server publishes through reflection.

#![allow(missing_docs, clippy::all)]

/// The `exposure.v1` package.
pub mod v1 {
    tonic::include_proto!("exposure.v1");
}

pub mod status;

/// Encoded `FileDescriptorSet` of the API, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("exposure_descriptor");
