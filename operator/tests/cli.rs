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

/// Runs the binary as on a developer machine that sets RUST_BACKTRACE,
/// and checks that it failed with exit code 1 and one line on stderr
/// (`error: ...`), no backtrace and no `Caused by:` list.
fn fails_with_one_line(cmd: &mut Command) -> String {
    let out = cmd
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .output()
        .expect("vss-operator runs");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{cmd:?}: {stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.ends_with('\n') && stderr.lines().count() == 1,
        "{cmd:?}: not one line: {stderr}"
    );
    stderr
}

#[test]
fn validate_of_an_invalid_file_exits_1_with_one_line_and_no_backtrace() {
    let file = repo("operator/testdata/invalid/id-100.yaml");
    let mut cmd = operator();
    cmd.arg("validate").arg(&file);
    let stderr = fails_with_one_line(&mut cmd);
    assert!(stderr.contains("1 of 1 file(s) invalid"), "{stderr}");
    // The problems themselves are on stdout, naming the field.
    let out = operator()
        .arg("validate")
        .arg(&file)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("spec.slots[0].id"), "{stdout}");
}

#[test]
fn validate_of_a_missing_file_names_it_on_one_line() {
    let stderr = fails_with_one_line(
        operator()
            .arg("validate")
            .arg("/nonexistent/vsscluster.yaml"),
    );
    assert!(
        stderr.contains("reading /nonexistent/vsscluster.yaml: "),
        "{stderr}"
    );
}

#[test]
fn run_with_unreadable_mesh_certificates_fails_on_one_line() {
    let stderr = fails_with_one_line(
        operator()
            .args(["run", "--http-listen", "127.0.0.1:0"])
            .args(["--mesh-tls-cert", "/nonexistent/tls.crt"])
            .args(["--mesh-tls-key", "/nonexistent/tls.key"])
            .args(["--mesh-tls-ca", "/nonexistent/ca.crt"])
            .env("KUBECONFIG", "/nonexistent/kubeconfig"),
    );
    assert!(
        stderr.contains("--mesh-tls-cert /nonexistent/tls.crt"),
        "{stderr}"
    );
}

/// A full disk stands in for a closed stdout (`vss-operator crd | head`):
/// the write fails, and the binary says so instead of panicking. (A
/// read-only descriptor would not do: Rust's stdout treats EBADF as
/// success.)
#[cfg(target_os = "linux")]
#[test]
fn crd_to_a_full_stdout_fails_on_one_line_instead_of_panicking() {
    let stdout = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("opens /dev/full");
    let stderr = fails_with_one_line(operator().arg("crd").stdout(stdout));
    assert!(stderr.contains("writing the CRD to stdout"), "{stderr}");
}
