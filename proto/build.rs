//! Compiles `vss/v1/*.proto` with the protoc shipped in `protoc-bin-vendored`,
//! so a fresh machine needs no system protobuf compiler.

use std::{env, error::Error, path::PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let protos = [
        PathBuf::from("vss/v1/vss.proto"),
        PathBuf::from("vss/v1/cluster.proto"),
    ];
    let includes = [PathBuf::from("."), protoc_bin_vendored::include_path()?];
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .file_descriptor_set_path(out_dir.join("vss_descriptor.bin"))
        .compile_with_config(config, &protos, &includes)?;
    println!("cargo:rerun-if-changed=vss");
    println!("cargo:rerun-if-changed=build.rs");
    Ok(())
}
