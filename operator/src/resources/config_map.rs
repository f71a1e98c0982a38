use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::{Names, owned_meta};
use crate::crd::VssCluster;

/// Key of the rendered slot config; the runtime reads `/etc/vss/slots.yaml`.
pub const CONFIG_KEY: &str = "slots.yaml";

/// The ConfigMap pods read at start. Running pods get changes through the
/// control API instead, so changing it restarts nothing.
pub fn config_map(cluster: &VssCluster, slots_yaml: &str) -> ConfigMap {
    let names = Names::of(cluster);
    ConfigMap {
        metadata: owned_meta(cluster, &names.config),
        data: Some(BTreeMap::from([(
            CONFIG_KEY.to_string(),
            slots_yaml.to_string(),
        )])),
        ..Default::default()
    }
}
