//! Compiles the proto2 messages of Google/Apple export files (`proto/proto/gaen/export.proto`,
//! DESIGN §11) with prost and a vendored protoc, so the matcher gets the types without tonic.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    unsafe_set_protoc(&protoc);
    let proto_root = Path::new("../proto/proto");
    prost_build::Config::new()
        .compile_protos(&[proto_root.join("gaen/export.proto")], &[proto_root])?;
    println!("cargo:rerun-if-changed=../proto/proto/gaen");
    Ok(())
}

#[allow(unsafe_code)]
fn unsafe_set_protoc(protoc: &Path) {
    // Edition 2024 marks set_var unsafe; the build script runs before any other thread exists.
    unsafe { std::env::set_var("PROTOC", protoc) };
}
