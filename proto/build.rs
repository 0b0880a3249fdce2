//! Compiles `proto/exposure/v1/*.proto` with a vendored protoc, so no system protoc is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY of intent: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe_set_protoc(&protoc);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // GetBatch chunks are slices of one shared copy of the file (server/src/batch_cache.rs).
        .bytes(".exposure.v1.GetBatchChunk.data")
        .file_descriptor_set_path(out_dir.join("exposure_descriptor.bin"))
        .compile_protos(&["proto/exposure/v1/exposure.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}

#[allow(unsafe_code)]
fn unsafe_set_protoc(protoc: &std::path::Path) {
    // Edition 2024 marks set_var unsafe; the build script runs before any other thread exists.
    unsafe { std::env::set_var("PROTOC", protoc) };
}
