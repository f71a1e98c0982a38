//! The `vss-operator` binary as users and CI run it. (Also makes
//! `cargo test` build the binary, which the real-API-server suite runs.)

use std::path::Path;
use std::process::Command;

fn operator() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vss-operator"))
}

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

#[test]
fn the_committed_crds_are_what_the_binary_prints() {
    let out = operator().arg("crd").output().expect("vss-operator runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).expect("UTF-8");
    for file in [
        "crds/vsscluster.yaml",
        "charts/vss-operator/crds/vsscluster.yaml",
    ] {
        let committed = std::fs::read_to_string(repo(file)).expect("committed CRD");
        assert!(
            committed == printed,
            "{file} differs from `vss-operator crd`; regenerate it: cargo run -p vss-operator -- crd > {file}"
        );
    }
}

#[test]
fn validate_accepts_the_examples_and_refuses_a_broken_manifest() {
    let examples: Vec<_> = std::fs::read_dir(repo("examples"))
        .expect("examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vsscluster-"))
        })
        .collect();
    assert!(!examples.is_empty());
    let ok = operator()
        .arg("validate")
        .args(&examples)
        .output()
        .expect("runs");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let bad = operator()
        .arg("validate")
        .arg(repo("operator/testdata/invalid/id-100.yaml"))
        .output()
        .expect("runs");
    assert!(!bad.status.success(), "id 100 was accepted");
    assert!(String::from_utf8_lossy(&bad.stdout).contains("FAIL"));
}
