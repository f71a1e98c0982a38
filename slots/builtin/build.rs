//! Compiles the slot crates under `slots/` to Wasm components with a nested
//! `cargo build --target wasm32-wasip2`, so the runtime embeds them with no
//! manual step. The nested cargo uses its own target folder (sharing the
//! outer one deadlocks on cargo's lock) and a clean environment (the outer
//! build's flags and wrappers are for the host, not for wasm).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
/// (package, file stem) of every guest built here.
const GUESTS: &[(&str, &str)] = &[
    ("vss-slot-token-bucket", "vss_slot_token_bucket"),
    ("vss-slot-leaky-bucket", "vss_slot_leaky_bucket"),
    ("vss-slot-broadcast", "vss_slot_broadcast"),
    ("vss-slot-multicast", "vss_slot_multicast"),
    ("vss-slot-random", "vss_slot_random"),
    ("vss-slot-counter", "vss_slot_counter"),
    ("vss-slot-register", "vss_slot_register"),
    ("vss-slot-registry", "vss_slot_registry"),
    ("vss-slot-tick", "vss_slot_tick"),
    ("vss-slot-fixed-window", "vss_slot_fixed_window"),
    ("vss-slot-misbehave", "vss_slot_misbehave"),
];
const WATCHED: &[&str] = &[
    "slots/sdk",
    "slots/token-bucket",
    "slots/leaky-bucket",
    "slots/broadcast",
    "slots/multicast",
    "slots/random",
    "slots/counter",
    "slots/register",
    "slots/registry",
    "slots/tick",
    "slots/examples/fixed-window",
    "slots/testing/misbehave",
    "Cargo.lock",
    "Cargo.toml",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("slots/builtin sits two levels below the workspace root")
        .to_path_buf();
    for path in WATCHED {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    require_wasm_target();

    let target_dir = root.join("target").join("guests");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--profile",
            "wasm",
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(&target_dir);
    for (package, _) in GUESTS {
        cmd.args(["-p", package]);
    }
    if env::var_os("CARGO_NET_OFFLINE").is_some() {
        cmd.arg("--offline");
    }
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_RUSTC_WRAPPER",
        "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MANIFEST_PATH",
        "CLIPPY_ARGS",
        "CLIPPY_CONF_DIR",
    ] {
        cmd.env_remove(var);
    }
    let output = cmd.output().unwrap_or_else(|e| {
        panic!("vss-builtin-slots: could not run cargo to build the slot modules: {e}")
    });
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        for line in stderr.lines() {
            println!("cargo:warning={line}");
        }
        panic!(
            "vss-builtin-slots: building the slot modules for {TARGET} failed (see the warnings above)"
        );
    }

    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    let built = target_dir.join(TARGET).join("wasm");
    for (_, stem) in GUESTS {
        let from = built.join(format!("{stem}.wasm"));
        let to = out_dir.join(format!("{stem}.wasm"));
        std::fs::copy(&from, &to).unwrap_or_else(|e| {
            panic!(
                "vss-builtin-slots: cannot copy {} to {}: {e}",
                from.display(),
                to.display()
            )
        });
    }
}

/// With RUSTUP_AUTO_INSTALL=0 a missing target is not installed on demand;
/// say exactly what to run instead of failing deep inside the nested build.
fn require_wasm_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(sysroot) = sysroot
        && !sysroot.join("lib/rustlib").join(TARGET).exists()
    {
        panic!(
            "vss-builtin-slots: the Rust target {TARGET} is not installed. \
             Run `rustup target add {TARGET}` in the repository and build again."
        );
    }
}
