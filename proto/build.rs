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
    envoy_descriptors(&out_dir)?;
    println!("cargo:rerun-if-changed=vss");
    println!("cargo:rerun-if-changed=envoy");
    println!("cargo:rerun-if-changed=build.rs");
    Ok(())
}

/// A descriptor set of Envoy's rate limit service and its imports. No code
/// is generated from it: the types come from the `envoy-types` crate.
fn envoy_descriptors(out_dir: &std::path::Path) -> Result<(), Box<dyn Error>> {
    let status = std::process::Command::new(protoc_bin_vendored::protoc_bin_path()?)
        .arg("-Ienvoy")
        .arg(format!(
            "-I{}",
            protoc_bin_vendored::include_path()?.display()
        ))
        .arg("--include_imports")
        .arg(format!(
            "--descriptor_set_out={}",
            out_dir.join("envoy_rls_descriptor.bin").display()
        ))
        .arg("envoy/service/ratelimit/v3/rls.proto")
        .status()?;
    if !status.success() {
        return Err(
            format!("protoc failed on envoy/service/ratelimit/v3/rls.proto: {status}").into(),
        );
    }
    Ok(())
}
