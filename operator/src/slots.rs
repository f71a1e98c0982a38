//! From the CRD's slots to the runtime's config file.
//!
//! The runtime reads `vss_config::SlotsConfig`; the CRD differs only in how a
//! custom module is named (a ConfigMap key instead of a path). Rendering
//! replaces that reference with the path where the pod template mounts the
//! key, then runs the runtime's own validation so a spec the runtime would
//! refuse never reaches a pod.

use std::collections::BTreeSet;

use vss_config::{ConfigError, CustomSpec, SlotSpec, SlotsConfig};

use vss_wire::partition::partitions_for;

use crate::crd::{ConfigMapKey, VssClusterSpec, VssSlot};

/// Folder under which custom module ConfigMaps are mounted, one subfolder
/// per ConfigMap. Kept outside `/etc/vss` because that folder is itself a
/// read-only ConfigMap volume and container runtimes cannot create mount
/// points inside it.
pub const MODULES_DIR: &str = "/etc/vss-modules";

/// Where a module ConfigMap key appears inside the pod, relative to
/// [`MODULES_DIR`]: the runtime resolves it against its `--module-root`,
/// in the mounted file and in pushed configs alike.
pub fn module_path(key: &ConfigMapKey) -> String {
    format!("{}/{}", key.name, key.key)
}

/// The ConfigMaps that hold custom modules, each once.
pub fn module_config_maps(spec: &VssClusterSpec) -> BTreeSet<&str> {
    spec.slots
        .iter()
        .filter_map(|s| s.custom.as_ref())
        .map(|c| c.config_map_key_ref.name.as_str())
        .collect()
}

/// The runtime config for a spec (not yet validated).
pub fn runtime_config(spec: &VssClusterSpec) -> SlotsConfig {
    SlotsConfig {
        slots: spec.slots.iter().map(slot_spec).collect(),
    }
}

fn slot_spec(slot: &VssSlot) -> SlotSpec {
    SlotSpec {
        id: slot.id,
        slot_type: slot.slot_type.clone(),
        bucket_size: slot.bucket_size,
        period: slot.period.clone(),
        refresh_rate: slot.refresh_rate,
        tokens_per_req: slot.tokens_per_req,
        max_keys: slot.max_keys,
        timeout: slot.timeout.clone(),
        dereg_tries: slot.dereg_tries,
        grow_only: slot.grow_only,
        max_key_bytes: slot.max_key_bytes,
        max_value_bytes: slot.max_value_bytes,
        tombstone_ttl: slot.tombstone_ttl.clone(),
        max_entries: slot.max_entries,
        default_ttl: slot.default_ttl.clone(),
        max_ttl: slot.max_ttl.clone(),
        interval: slot.interval.clone(),
        custom: slot.custom.as_ref().map(|c| CustomSpec {
            module: module_path(&c.config_map_key_ref),
            config: c.config.clone(),
        }),
        rls: slot.rls.clone(),
    }
}

/// Why a spec cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    #[error("spec.instances: must be between 1 and 15, got {0}")]
    Instances(i32),
    #[error("cannot encode the slot config as YAML: {0}")]
    Encode(#[from] serde_norway::Error),
}

/// Validates a spec with the runtime's rules and renders `slots.yaml`.
pub fn render(spec: &VssClusterSpec) -> Result<String, RenderError> {
    if !(1..=15).contains(&spec.instances) {
        return Err(RenderError::Instances(spec.instances));
    }
    let config = runtime_config(spec);
    config.validate()?;
    Ok(serde_norway::to_string(&config)?)
}

/// The slots that a change from the `before` slots.yaml to `after` starts
/// fresh on every instance, each with why: the runtime keeps the state of
/// a changed slot only when the change keeps the state's meaning
/// ([`vss_config::SlotKind::keeps_state_of`]) and the slot's keys stay in
/// as many partitions. A `before` that does not validate tells nothing.
pub fn started_fresh(before: &str, after: &str) -> Vec<(u8, String)> {
    let parse = |yaml: &str| SlotsConfig::from_yaml(yaml).ok()?.validate().ok();
    let (Some(before), Some(after)) = (parse(before), parse(after)) else {
        return Vec::new();
    };
    after
        .slots()
        .filter_map(|def| {
            let old = before.slot(def.id)?;
            if old.kind == def.kind {
                return None;
            }
            let partitions = |kind: &vss_config::SlotKind| partitions_for(kind.max_keys());
            let why = match def.kind.keeps_state_of(&old.kind) {
                Err(why) => why,
                Ok(()) if partitions(&old.kind) != partitions(&def.kind) => format!(
                    "its keys move from {} to {} partitions",
                    partitions(&old.kind),
                    partitions(&def.kind)
                ),
                Ok(()) => return None,
            };
            Some((def.id.get(), why))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::CustomModule;

    fn limiter(id: i64) -> VssSlot {
        VssSlot {
            id,
            slot_type: "token-bucket".into(),
            bucket_size: Some(200),
            period: Some("second".into()),
            refresh_rate: Some(100),
            ..Default::default()
        }
    }

    fn spec(slots: Vec<VssSlot>) -> VssClusterSpec {
        VssClusterSpec {
            instances: 3,
            slots,
            image: None,
            image_pull_policy: None,
            image_pull_secrets: vec![],
            resources: None,
            scheduling: None,
            chaos: None,
            mesh_tls: None,
            client_auth: None,
        }
    }

    #[test]
    fn renders_a_file_the_runtime_loads_back() {
        let yaml = render(&spec(vec![limiter(0)])).expect("valid");
        let back = SlotsConfig::from_yaml(&yaml).expect("parses");
        let valid = back.validate().expect("validates");
        assert_eq!(valid.len(), 1);
        assert!(yaml.contains("bucketSize: 200"), "{yaml}");
    }

    #[test]
    fn custom_module_becomes_the_mounted_path() {
        let slot = VssSlot {
            id: 9,
            slot_type: "custom".into(),
            custom: Some(CustomModule {
                config_map_key_ref: ConfigMapKey {
                    name: "modules".into(),
                    key: "fixed_window.wasm".into(),
                },
                config: Default::default(),
            }),
            ..Default::default()
        };
        let config = runtime_config(&spec(vec![slot]));
        let custom = config.slots[0].custom.as_ref().expect("custom");
        assert_eq!(custom.module, "modules/fixed_window.wasm");
    }

    #[test]
    fn errors_name_slot_and_field() {
        let mut missing = limiter(7);
        missing.bucket_size = None;
        let mut duplicate = limiter(0);
        duplicate.refresh_rate = Some(1);
        let err = render(&spec(vec![limiter(0), duplicate, missing, limiter(100)]))
            .expect_err("invalid")
            .to_string();
        assert!(
            err.contains("slot 7: field `bucketSize`: is required"),
            "{err}"
        );
        assert!(
            err.contains("slot 0: field `id`: is used by more than one slot"),
            "{err}"
        );
        assert!(
            err.contains("slot 100: field `id`: must be between 0 and 99"),
            "{err}"
        );
    }

    #[test]
    fn refuses_more_than_100_slots() {
        let slots = (0..101).map(|i| limiter(i % 100)).collect();
        let err = render(&spec(slots)).expect_err("invalid").to_string();
        assert!(
            err.contains("field `slots`: 101 slots configured, at most 100"),
            "{err}"
        );
    }

    #[test]
    fn refuses_zero_instances() {
        let mut s = spec(vec![]);
        s.instances = 0;
        let err = render(&s).expect_err("invalid").to_string();
        assert!(err.contains("spec.instances"), "{err}");
    }

    /// Every field the runtime's SlotSpec accepts is a field of the CRD slot,
    /// so vss-config gaining a field fails here until the CRD follows.
    #[test]
    fn crd_slot_has_every_runtime_slot_field() {
        let runtime = schemars::schema_for!(SlotSpec);
        let crd = schemars::schema_for!(VssSlot);
        let props = |s: &schemars::Schema| -> BTreeSet<String> {
            s.get("properties")
                .and_then(|p| p.as_object())
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default()
        };
        assert!(!props(&runtime).is_empty());
        assert_eq!(props(&runtime), props(&crd));
    }

    #[test]
    fn names_the_slots_a_change_starts_fresh_and_why() {
        let mut original = spec(vec![limiter(0), limiter(1), limiter(2), limiter(3)]);
        original.slots[2].max_keys = Some(4);
        let before = render(&original).expect("valid");
        let mut edited = original.clone();
        edited.slots[0].refresh_rate = Some(50);
        edited.slots[1].period = Some("minute".into());
        edited.slots[2].max_keys = Some(8);
        edited.slots[3].slot_type = "leaky-bucket".into();
        edited.slots[3].refresh_rate = None;
        let after = render(&edited).expect("valid");
        let fresh = started_fresh(&before, &after);
        let ids: Vec<u8> = fresh.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [1, 2, 3], "{fresh:?}");
        assert!(
            fresh[0]
                .1
                .contains("`period` changed from second to minute"),
            "{fresh:?}"
        );
        assert!(fresh[1].1.contains("partitions"), "{fresh:?}");
        assert!(fresh[2].1.contains("type changed"), "{fresh:?}");
        assert!(started_fresh("not: [yaml", &after).is_empty());
        assert!(started_fresh(&after, &after).is_empty());
    }
}
