use super::*;
use crate::fixtures::{cluster, custom_slot};

const IMAGE: &str = "ghcr.io/vss-dev/vss-runtime:test";

#[test]
fn every_object_is_owned_and_labelled() {
    let c = cluster();
    let metas = [
        config_map(&c, "slots: []").metadata,
        headless_service(&c).metadata,
        client_service(&c).metadata,
        stateful_set(&c, IMAGE).metadata,
        pod_disruption_budget(&c).metadata,
        network_policy(&c, None).metadata,
        service_account(&c).metadata,
        role(&c).metadata,
        role_binding(&c).metadata,
        leader_lease(&c).metadata,
    ];
    for meta in metas {
        let name = meta.name.clone().unwrap_or_default();
        assert_eq!(meta.namespace.as_deref(), Some("testns"), "{name}");
        let owners = meta.owner_references.expect("owner refs");
        assert_eq!(owners.len(), 1, "{name}");
        assert_eq!(owners[0].kind, "VssCluster");
        assert_eq!(owners[0].name, "demo");
        assert_eq!(owners[0].uid, "uid-demo");
        assert_eq!(owners[0].controller, Some(true));
        let labels = meta.labels.expect("labels");
        assert_eq!(labels["app.kubernetes.io/instance"], "demo", "{name}");
        assert_eq!(
            labels["app.kubernetes.io/managed-by"], "vss-operator",
            "{name}"
        );
    }
}

#[test]
fn names_follow_the_cluster() {
    let names = Names::of(&cluster());
    assert_eq!(names.base, "demo");
    assert_eq!(names.headless, "demo-peers");
    assert_eq!(names.config, "demo-config");
    assert_eq!(names.lease, "demo-leader");
}

#[test]
fn pods_are_called_at_their_ip() {
    assert_eq!(super::pod_address("10.1.2.3"), "10.1.2.3:7702");
    assert_eq!(super::pod_address("fd00::1"), "[fd00::1]:7702");
}

#[test]
fn pods_run_the_runtime_per_the_contract() {
    let sts = stateful_set(&cluster(), IMAGE);
    let spec = sts.spec.expect("spec");
    let template = serde_json::to_string(&spec.template).expect("json");
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("demo-peers"));
    // A template change (image, resources) replaces one pod at a time.
    let strategy = spec.update_strategy.clone().expect("update strategy");
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let rolling = strategy.rolling_update.expect("rolling update");
    assert_eq!(rolling.max_unavailable, None, "the default of 1 pod");
    assert_eq!(rolling.partition, Some(0));
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some("demo"));
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some(IMAGE));
    assert_eq!(
        c.command.as_deref(),
        Some(&["/vss-runtime".to_string()][..])
    );
    assert_eq!(
        c.args.clone().unwrap_or_default().join(" "),
        "--config /etc/vss/slots.yaml --listen 0.0.0.0:7700 --mesh-listen 0.0.0.0:7702 \
         --http-listen 0.0.0.0:7701 \
         --module-root /etc/vss-modules --in-cluster --replicas 3 --headless-service demo-peers \
         --handover-seconds 10 --drain-seconds 10"
    );
    assert_eq!(
        pod.termination_grace_period_seconds,
        Some(30),
        "the hand-over and the drain fit in the grace period"
    );
    let env: Vec<String> = c
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(env, ["POD_NAME", "POD_NAMESPACE", "VSS_LOG_FORMAT"]);
    let live = c
        .liveness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("liveness");
    assert_eq!(live.path.as_deref(), Some("/healthz"));
    let ready = c
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .expect("readiness");
    assert_eq!(ready.path.as_deref(), Some("/readyz"));
    assert!(
        c.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .is_some()
    );
    let anti = pod
        .affinity
        .and_then(|a| a.pod_anti_affinity)
        .and_then(|a| a.preferred_during_scheduling_ignored_during_execution)
        .expect("default anti-affinity");
    assert_eq!(
        anti[0].pod_affinity_term.topology_key,
        "kubernetes.io/hostname"
    );
    // The slot config is not in the template: changing it must not roll pods.
    assert!(!template.contains("bucketSize"));
}

#[test]
fn overrides_replace_the_defaults() {
    let mut c = cluster();
    c.spec.image = Some("registry.local/vss:dev".into());
    c.spec.scheduling = Some(crate::crd::Scheduling {
        affinity: Some(Default::default()),
        node_selector: [("pool".to_string(), "vss".to_string())].into(),
        ..Default::default()
    });
    let pod = stateful_set(&c, IMAGE)
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod");
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("registry.local/vss:dev")
    );
    assert_eq!(pod.affinity, Some(Default::default()));
    assert_eq!(pod.node_selector.expect("selector")["pool"], "vss");
}

#[test]
fn custom_modules_are_mounted_where_the_config_says() {
    let mut c = cluster();
    c.spec
        .slots
        .push(custom_slot(9, "my.modules", "fixed_window.wasm"));
    c.spec
        .slots
        .push(custom_slot(10, "my.modules", "fixed_window.wasm"));
    c.spec.slots.push(custom_slot(11, "a-first", "other.wasm"));
    let yaml = crate::slots::render(&c.spec).expect("valid");
    assert!(
        yaml.contains("module: my.modules/fixed_window.wasm"),
        "{yaml}"
    );
    let pod = stateful_set(&c, IMAGE)
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod");
    let volumes = pod.volumes.expect("volumes");
    let module = volumes
        .iter()
        .find(|v| v.name == "module-1")
        .expect("module volume");
    let source = module.config_map.as_ref().expect("configmap volume");
    assert_eq!(source.name, "my.modules");
    assert_eq!(
        source.items.as_ref().map(Vec::len),
        Some(1),
        "one item per distinct key"
    );
    let mounts = pod.containers[0].volume_mounts.clone().expect("mounts");
    let mount = |name: &str| {
        mounts
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.mount_path.clone())
    };
    // Volumes are numbered in ConfigMap name order, mounts match them.
    assert_eq!(
        mount("module-0").as_deref(),
        Some("/etc/vss-modules/a-first")
    );
    assert_eq!(
        mount("module-1").as_deref(),
        Some("/etc/vss-modules/my.modules")
    );
}

#[test]
fn headless_service_publishes_unready_pods() {
    let svc = headless_service(&cluster()).spec.expect("spec");
    assert_eq!(svc.cluster_ip.as_deref(), Some("None"));
    assert_eq!(svc.publish_not_ready_addresses, Some(true));
}

#[test]
fn pods_may_manage_their_lease_and_nothing_else() {
    let rules = role(&cluster()).rules.expect("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(
        rules[0].resources.as_deref(),
        Some(&["leases".to_string()][..])
    );
    assert!(rules[0].verbs.contains(&"create".to_string()));
    let binding = role_binding(&cluster());
    assert_eq!(binding.role_ref.name, "demo");
    assert_eq!(binding.subjects.expect("subjects")[0].name, "demo");
}

#[test]
fn the_mesh_port_admits_only_the_clusters_pods_and_the_operator() {
    let operator = OperatorPods {
        namespace: "vss-system".into(),
        labels: [(
            "app.kubernetes.io/name".to_string(),
            "vss-operator".to_string(),
        )]
        .into(),
    };
    let policy = network_policy(&cluster(), Some(&operator));
    assert_eq!(policy.metadata.name.as_deref(), Some("demo"));
    let spec = serde_json::to_value(policy.spec.expect("spec")).expect("json");
    assert_eq!(
        spec["podSelector"]["matchLabels"],
        serde_json::json!({"app.kubernetes.io/name": "vss", "app.kubernetes.io/instance": "demo"})
    );
    assert_eq!(spec["policyTypes"], serde_json::json!(["Ingress"]));
    let rules = spec["ingress"].as_array().expect("rules");
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0]["ports"][0]["port"], 7700);
    assert_eq!(rules[0]["ports"][1]["port"], 7701);
    assert!(rules[0].get("from").is_none(), "clients come from anywhere");
    assert_eq!(
        rules[1]["ports"],
        serde_json::json!([{"port": 7702, "protocol": "TCP"}])
    );
    assert_eq!(
        rules[1]["from"],
        serde_json::json!([
            {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "vss", "app.kubernetes.io/instance": "demo"}}},
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "vss-system"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "vss-operator"}}
            }
        ])
    );
    let alone = serde_json::to_value(network_policy(&cluster(), None).spec).expect("json");
    assert_eq!(
        alone["ingress"][1]["from"].as_array().map(Vec::len),
        Some(1),
        "the cluster's own pods only"
    );
}

#[test]
fn client_auth_mounts_its_secrets_and_passes_the_flags() {
    let mut c = cluster();
    c.spec.client_auth = Some(crate::crd::ClientAuth {
        tokens_secret: Some("vss-tokens".into()),
        tls_secret: Some("vss-client-tls".into()),
        require_client_certificates: true,
    });
    let pod = stateful_set(&c, IMAGE)
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod spec");
    let args = pod.containers[0].args.clone().unwrap_or_default().join(" ");
    assert!(
        args.ends_with(
            "--client-tokens /var/run/vss/client-tokens/tokens.yaml \
             --client-tls-cert /var/run/vss/client-tls/tls.crt \
             --client-tls-key /var/run/vss/client-tls/tls.key \
             --client-tls-ca /var/run/vss/client-tls/ca.crt"
        ),
        "{args}"
    );
    let secrets: Vec<(String, String)> = pod
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| Some((v.name, v.secret?.secret_name?)))
        .filter(|(name, _)| name.starts_with("client-"))
        .collect();
    assert_eq!(
        secrets,
        [
            ("client-tokens".to_string(), "vss-tokens".to_string()),
            ("client-tls".to_string(), "vss-client-tls".to_string()),
        ]
    );
    let mounts: Vec<String> = pod.containers[0]
        .volume_mounts
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.name.starts_with("client-"))
        .map(|m| format!("{} {}", m.name, m.mount_path))
        .collect();
    assert_eq!(
        mounts,
        [
            "client-tokens /var/run/vss/client-tokens",
            "client-tls /var/run/vss/client-tls"
        ]
    );

    // Without clientAuth the client port asks for nothing.
    let plain = stateful_set(&cluster(), IMAGE)
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod spec");
    let args = plain.containers[0]
        .args
        .clone()
        .unwrap_or_default()
        .join(" ");
    assert!(!args.contains("--client-"), "{args}");
}
