//! `vss slot new`: a slot crate that builds and tests as it is. The SDK and
//! the slot world's WIT are written into it from this binary, so writing a
//! slot type needs no VSS checkout.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The new crate's own files; `__CRATE_NAME__`, `__LIB_NAME__` and
/// `__TYPE_NAME__` are replaced.
const TEMPLATE: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../templates/slot/Cargo.toml")),
    ("README.md", include_str!("../templates/slot/README.md")),
    ("slots.yaml", include_str!("../templates/slot/slots.yaml")),
    (".gitignore", include_str!("../templates/slot/gitignore")),
    ("src/lib.rs", include_str!("../templates/slot/lib.rs")),
];

/// `slots/sdk`, file by file, as the crate depends on it.
const SDK: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../../slots/sdk/Cargo.toml")),
    ("src/lib.rs", include_str!("../../../slots/sdk/src/lib.rs")),
    (
        "src/codec.rs",
        include_str!("../../../slots/sdk/src/codec.rs"),
    ),
    (
        "src/config.rs",
        include_str!("../../../slots/sdk/src/config.rs"),
    ),
    (
        "src/guest_runtime.rs",
        include_str!("../../../slots/sdk/src/guest_runtime.rs"),
    ),
    (
        "src/keyed.rs",
        include_str!("../../../slots/sdk/src/keyed.rs"),
    ),
    (
        "src/limiter.rs",
        include_str!("../../../slots/sdk/src/limiter.rs"),
    ),
    ("src/lww.rs", include_str!("../../../slots/sdk/src/lww.rs")),
    (
        "src/members.rs",
        include_str!("../../../slots/sdk/src/members.rs"),
    ),
    (
        "wit/v0.1.0/slot.wit",
        include_str!("../../../slots/sdk/wit/v0.1.0/slot.wit"),
    ),
];

/// Where the SDK goes inside the new crate.
const SDK_DIR: &str = "vss-slot-sdk";

/// Longest crate name taken.
const MAX_NAME: usize = 64;

/// Names the template's `src/lib.rs` already uses: a slot type named like
/// one of them would not compile.
const TAKEN_TYPE_NAMES: &[&str] = &[
    "BTreeMap",
    "Config",
    "Context",
    "Custom",
    "DecodeError",
    "Reader",
    "Reply",
    "Request",
    "Response",
    "Slot",
    "SlotError",
    "String",
    "Vec",
    "Writer",
];

/// Rust keywords and the crates every guest links: cargo refuses them, or
/// the generated code would not compile.
const RESERVED: &[&str] = &[
    "alloc",
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "core",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "vss-slot-sdk",
    "vss_slot_sdk",
];

/// What `vss slot new` made.
#[derive(Debug)]
pub struct NewSlot {
    pub dir: PathBuf,
    pub type_name: String,
}

/// Writes the crate `name` into `parent/name`, which must not exist yet.
pub fn new_slot(name: &str, parent: &Path) -> anyhow::Result<NewSlot> {
    let type_name = check_name(name)?;
    let dir = parent.join(name);
    if dir.exists() {
        bail!(
            "{} already exists; remove it or choose another name",
            dir.display()
        );
    }
    // Written into a temporary folder beside it, then renamed: an error
    // halfway leaves nothing behind.
    let staging = tempfile::Builder::new()
        .prefix(".vss-slot-new-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a folder in {}", parent.display()))?;
    let lib_name = name.replace('-', "_");
    let files = TEMPLATE
        .iter()
        .map(|(path, text)| {
            let text = text
                .replace("__CRATE_NAME__", name)
                .replace("__LIB_NAME__", &lib_name)
                .replace("__TYPE_NAME__", &type_name);
            (PathBuf::from(path), text)
        })
        .chain(
            SDK.iter()
                .map(|(path, text)| (Path::new(SDK_DIR).join(path), (*text).to_string())),
        );
    for (path, text) in files {
        let to = staging.path().join(&path);
        if let Some(folder) = to.parent() {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("cannot create {}", folder.display()))?;
        }
        std::fs::write(&to, text).with_context(|| format!("cannot write {}", to.display()))?;
    }
    std::fs::rename(staging.path(), &dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    // Renamed away: nothing left for the guard to delete.
    let _ = staging.keep();
    Ok(NewSlot { dir, type_name })
}

/// Checks a crate name; returns the slot type's Rust name (`hit-counter`:
/// `HitCounter`).
fn check_name(name: &str) -> anyhow::Result<String> {
    let starts_with_letter = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    let allowed = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if name.is_empty() || name.len() > MAX_NAME || !starts_with_letter || !allowed {
        bail!(
            "slot name {name:?}: use 1-{MAX_NAME} ASCII letters, digits, `-` or `_`, starting with a letter (e.g. hit-counter)"
        );
    }
    if RESERVED.contains(&name) {
        bail!(
            "slot name {name:?} is reserved (a Rust keyword or a crate every slot links); choose another"
        );
    }
    let type_name: String = name
        .split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    if TAKEN_TYPE_NAMES.contains(&type_name.as_str()) {
        bail!(
            "slot name {name:?} would name the slot type `{type_name}`, which the SDK already uses; choose another"
        );
    }
    Ok(type_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_type_names_and_bad_ones_are_refused_by_rule() {
        assert_eq!(
            check_name("hit-counter").ok().as_deref(),
            Some("HitCounter")
        );
        assert_eq!(check_name("geo_fence2").ok().as_deref(), Some("GeoFence2"));
        for (bad, says) in [
            ("", "1-64 ASCII letters"),
            ("9lives", "starting with a letter"),
            ("a b", "ASCII letters"),
            ("fn", "reserved"),
            ("vss-slot-sdk", "reserved"),
            ("config", "`Config`, which the SDK already uses"),
        ] {
            let error = check_name(bad).expect_err(bad).to_string();
            assert!(error.contains(says), "{bad:?}: {error}");
        }
        assert!(check_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn every_file_of_the_sdk_is_carried() {
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../slots/sdk");
        let mut on_disk = Vec::new();
        let mut folders = vec![sdk.clone()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).expect("read the SDK's folder") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    folders.push(path);
                } else {
                    let relative = path.strip_prefix(&sdk).expect("inside the SDK");
                    on_disk.push(relative.to_string_lossy().into_owned());
                }
            }
        }
        on_disk.sort();
        let mut carried: Vec<_> = SDK.iter().map(|(path, _)| path.to_string()).collect();
        carried.sort();
        assert_eq!(carried, on_disk, "add new SDK files to scaffold::SDK");
    }

    #[test]
    fn a_new_slot_is_written_whole_and_never_over_an_existing_folder() {
        let parent = tempfile::tempdir().expect("temp dir");
        let made = new_slot("hit-counter", parent.path()).expect("new slot");
        assert_eq!(made.type_name, "HitCounter");
        let lib = std::fs::read_to_string(made.dir.join("src/lib.rs")).expect("lib.rs");
        assert!(lib.contains("pub struct HitCounter"));
        assert!(!lib.contains("__"), "every placeholder replaced");
        let config = std::fs::read_to_string(made.dir.join("slots.yaml")).expect("slots.yaml");
        assert!(config.contains("module: target/wasm32-wasip2/release/hit_counter.wasm"));
        assert!(made.dir.join("vss-slot-sdk/wit/v0.1.0/slot.wit").is_file());

        let again = new_slot("hit-counter", parent.path()).expect_err("exists");
        assert!(again.to_string().contains("already exists"), "{again}");
        let entries = std::fs::read_dir(parent.path()).expect("read").count();
        assert_eq!(entries, 1, "no staging folder left behind");
    }
}
