//! Stands in for the kubelet on a control plane without nodes: each Pod of
//! a VssCluster becomes a local `vss-runtime` process, started with the
//! container's own args and env from the Pod the StatefulSet controller
//! made, its ConfigMap and Secret volumes written out as files (once, at
//! start: later updates of the objects do not reach a running process,
//! unlike a kubelet's), `$(VAR)` in its args expanded from its env as the
//! kubelet does, bound to a loopback
//! address of its own (127.0.0.N), and reported back through the
//! `pods/status` subresource (phase, `podIP`, Ready), as a kubelet would.
//!
//! What differs from a node, and why: the container's `0.0.0.0` listen
//! addresses become the pod's loopback address; paths under a volume's
//! mount point are placed under a folder of the pod's; the runtime is
//! given `--peers` with the other pods' loopback addresses, since there is
//! no cluster DNS for the headless Service; the API credentials are a
//! kubeconfig with a token of the pod's ServiceAccount instead of the
//! projected token volume.
//!
//! A pod being deleted is stopped as the kubelet stops it: SIGTERM, then
//! SIGKILL once the pod's `deletionGracePeriodSeconds` (its
//! `terminationGracePeriodSeconds`) have passed, and only then is the
//! deletion confirmed, so the StatefulSet controller makes the pod again
//! (a rolling update: highest ordinal first, the next once this one is
//! Ready) only after the process is gone. The wait does not hold up the
//! other pods: each [`LocalPods::sync`] looks at a terminating process
//! once and moves on. No pod is bound to a node here, and the API server
//! deletes an unbound pod at once (grace 0); so the stand-in puts its
//! finalizer [`FINALIZER`] on each pod it runs, which keeps the deleted pod
//! (with its `deletionTimestamp`) until the process is gone, and waits the
//! pod's `terminationGracePeriodSeconds` when the deletion carries no grace.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::kubectl::{name_of, str_at};
use crate::{ControlPlane, Kubectl, Process};

/// gRPC port of the runtime in a pod, for clients.
pub const GRPC_PORT: u16 = 7700;
/// gRPC port of the runtime in a pod, for peers and the operator.
pub const MESH_PORT: u16 = 7702;
/// HTTP (probes) port of the runtime in a pod.
pub const HTTP_PORT: u16 = 7701;

/// One pod's stand-in process.
#[derive(Debug)]
struct LocalPod {
    uid: String,
    ip: Ipv4Addr,
    process: Process,
    /// Last readiness reported to the API server.
    ready: Option<bool>,
    restarts: u32,
    /// When the process was found dead; it is started again after
    /// [`RESTART_BACKOFF`].
    died: Option<std::time::Instant>,
    /// Once its pod is being deleted: when it was sent SIGTERM, and the
    /// grace it has before SIGKILL.
    terminating: Option<(std::time::Instant, Duration)>,
}

impl LocalPod {
    /// Told to stop, still running, and within its grace.
    fn still_stopping(&mut self) -> bool {
        self.terminating
            .is_some_and(|(since, grace)| since.elapsed() < grace)
            && self.process.is_running()
    }
}

/// Held on each pod the stand-in runs, until its process is gone.
pub const FINALIZER: &str = "vss.dev/local-pod";

/// The kubelet's first crash back-off: long enough that a killed Lease
/// holder does not come back and renew its own claim before it lapses.
pub const RESTART_BACKOFF: Duration = Duration::from_secs(10);

/// The pods of one label selector in one namespace, run locally.
#[derive(Debug)]
pub struct LocalPods {
    kubectl: Kubectl,
    selector: String,
    runtime: PathBuf,
    root: PathBuf,
    /// Pod `<set>-<n>` gets 127.0.<subnet>.<10+n>.
    subnet: u8,
    pods: BTreeMap<String, LocalPod>,
}

impl LocalPods {
    pub fn new(kubectl: Kubectl, selector: &str, runtime: &Path, root: &Path, subnet: u8) -> Self {
        Self {
            kubectl,
            selector: selector.to_string(),
            runtime: runtime.to_path_buf(),
            root: root.to_path_buf(),
            subnet,
            pods: BTreeMap::new(),
        }
    }

    /// The loopback address pod `name` runs at.
    pub fn ip_of(&self, name: &str) -> Result<Ipv4Addr> {
        let ordinal = ordinal(name)?;
        let last = u8::try_from(10 + ordinal)
            .ok()
            .with_context(|| format!("pod {name}: ordinal too large for a stand-in address"))?;
        Ok(Ipv4Addr::new(127, 0, self.subnet, last))
    }

    /// gRPC endpoints (`host:port`) of the pods running now.
    pub fn endpoints(&self) -> Vec<(String, String)> {
        self.pods
            .iter()
            .map(|(name, p)| (name.clone(), format!("{}:{GRPC_PORT}", p.ip)))
            .collect()
    }

    /// PID of a pod's process.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.pods.get(name).and_then(|p| p.process.pid())
    }

    /// How often a pod's process was started again after it died.
    pub fn restarts(&self, name: &str) -> u32 {
        self.pods.get(name).map_or(0, |p| p.restarts)
    }

    /// SIGKILLs a pod's process, as a crash or the OOM killer would; the
    /// next [`sync`](Self::sync) restarts it, as the kubelet restarts a
    /// container.
    pub async fn kill(&mut self, name: &str) -> Result<()> {
        let pod = self
            .pods
            .get_mut(name)
            .with_context(|| format!("no local process for pod {name}"))?;
        pod.process.kill().await;
        Ok(())
    }

    /// Log tails of every pod's process.
    pub fn log_tails(&self, lines: usize) -> String {
        self.pods
            .values()
            .map(|p| p.process.log_tail(lines))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// One round of what a kubelet does: start processes for new pods,
    /// restart dead ones, report status, and finish deleting pods that are
    /// being deleted.
    pub async fn sync(&mut self, cp: &ControlPlane) -> Result<()> {
        let pods = self.kubectl.list("pods", Some(&self.selector)).await?;
        let mut seen = Vec::new();
        for pod in &pods {
            let name = name_of(pod).to_string();
            let uid = str_at(pod, "/metadata/uid").to_string();
            if pod.pointer("/metadata/deletionTimestamp").is_some() {
                if !self.terminate(&name, &uid, pod).await? {
                    continue;
                }
                // The kubelet confirms a graceful deletion once the
                // containers are gone.
                release(&self.kubectl, &name, pod).await?;
                self.kubectl
                    .run(&[
                        "delete",
                        "pod",
                        &name,
                        "--grace-period=0",
                        "--force",
                        "--ignore-not-found",
                        "--wait=false",
                    ])
                    .await?;
                continue;
            }
            seen.push(name.clone());
            let held = pod
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| f.iter().any(|v| v.as_str() == Some(FINALIZER)));
            if !held {
                let patch =
                    json!([{"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}]);
                let patch = if pod.pointer("/metadata/finalizers").is_some() {
                    patch
                } else {
                    json!([{"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}])
                };
                self.kubectl
                    .run(&[
                        "patch",
                        "pod",
                        &name,
                        "--type=json",
                        "-p",
                        &patch.to_string(),
                    ])
                    .await?;
            }
            if let Some(old) = self.pods.get_mut(&name).filter(|p| p.uid != uid) {
                // Same name, new pod: the old one's process goes, once it
                // has had its grace if it was told to stop.
                if old.still_stopping() {
                    continue;
                }
                if let Some(mut old) = self.pods.remove(&name) {
                    old.process.kill().await;
                }
            }
            let restart = match self.pods.get_mut(&name) {
                None => true,
                Some(local) => {
                    if local.process.is_running() {
                        false
                    } else {
                        let died = *local.died.get_or_insert_with(std::time::Instant::now);
                        if died.elapsed() >= RESTART_BACKOFF {
                            local.restarts += 1;
                            true
                        } else {
                            false
                        }
                    }
                }
            };
            if restart {
                let restarts = self.pods.get(&name).map_or(0, |p| p.restarts);
                match self.start(cp, pod).await {
                    Ok((ip, process)) => {
                        self.pods.insert(
                            name.clone(),
                            LocalPod {
                                uid,
                                ip,
                                process,
                                ready: None,
                                restarts,
                                died: None,
                                terminating: None,
                            },
                        );
                    }
                    // A ConfigMap or ServiceAccount the pod needs may not
                    // exist yet; the kubelet retries too.
                    Err(e) => {
                        say(&format!("pod {name} not started yet: {e:#}"));
                        continue;
                    }
                }
            }
            let Some(local) = self.pods.get_mut(&name) else {
                continue;
            };
            let ready = local.process.is_running() && probe_ready(local.ip).await;
            if local.ready != Some(ready) {
                report_status(&self.kubectl, &name, local.ip, ready, local.restarts).await?;
                local.ready = Some(ready);
            }
        }
        let gone: Vec<String> = self
            .pods
            .keys()
            .filter(|n| !seen.contains(n))
            .cloned()
            .collect();
        for name in gone {
            // A pod may be gone before its process (the pod garbage
            // collector force-deletes unbound terminating pods): the
            // process still gets its grace.
            if self
                .pods
                .get_mut(&name)
                .is_some_and(LocalPod::still_stopping)
            {
                continue;
            }
            if let Some(mut local) = self.pods.remove(&name) {
                local.process.kill().await;
            }
        }
        Ok(())
    }

    /// One look at a pod being deleted, as the kubelet stops its
    /// container: SIGTERM the first time, SIGKILL once its grace is over.
    /// True once no process of the pod runs (the deletion may then be
    /// confirmed); until then its readiness is still probed and reported.
    async fn terminate(&mut self, name: &str, uid: &str, pod: &Value) -> Result<bool> {
        let Some(local) = self.pods.get_mut(name) else {
            return Ok(true);
        };
        if local.uid != uid {
            // A process of an older pod of the same name.
            local.process.kill().await;
            self.pods.remove(name);
            return Ok(true);
        }
        let (since, grace) = match local.terminating {
            Some(t) => t,
            None => {
                // An unbound pod is deleted with no grace: the pod's own
                // terminationGracePeriodSeconds then, as on a node.
                let grace = pod
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_u64)
                    .filter(|g| *g > 0)
                    .or_else(|| {
                        pod.pointer("/spec/terminationGracePeriodSeconds")
                            .and_then(Value::as_u64)
                    })
                    .unwrap_or(30);
                let t = (std::time::Instant::now(), Duration::from_secs(grace));
                local.process.terminate().await;
                say(&format!(
                    "pod {name} is being deleted: SIGTERM (grace {grace} s)"
                ));
                local.terminating = Some(t);
                t
            }
        };
        if !local.process.is_running() {
            say(&format!(
                "pod {name} exited {:.1?} after SIGTERM",
                since.elapsed()
            ));
        } else if since.elapsed() >= grace {
            local.process.kill().await;
            say(&format!(
                "pod {name} SIGKILLed after its grace of {grace:?}"
            ));
        } else {
            let ready = probe_ready(local.ip).await;
            if local.ready != Some(ready) {
                report_status(&self.kubectl, name, local.ip, ready, local.restarts).await?;
                local.ready = Some(ready);
            }
            return Ok(false);
        }
        self.pods.remove(name);
        Ok(true)
    }

    /// Stops every process.
    pub async fn stop_all(&mut self) {
        for (_, mut local) in std::mem::take(&mut self.pods) {
            local.process.stop(Duration::from_secs(5)).await;
        }
    }

    async fn start(&self, cp: &ControlPlane, pod: &Value) -> Result<(Ipv4Addr, Process)> {
        let name = name_of(pod);
        let ip = self.ip_of(name)?;
        let fs = self.root.join(name);
        let container = pod
            .pointer("/spec/containers/0")
            .context("pod has no container")?;
        let mounts = self.write_volumes(pod, container, &fs).await?;
        let namespace = str_at(pod, "/metadata/namespace");
        let mut env: Vec<(String, String)> = Vec::new();
        for var in array(container, "env") {
            let key = str_at(var, "/name");
            let value = match var
                .pointer("/valueFrom/fieldRef/fieldPath")
                .and_then(Value::as_str)
            {
                Some("metadata.name") => name.to_string(),
                Some("metadata.namespace") => namespace.to_string(),
                Some(other) => {
                    bail!("env {key}: fieldRef {other} is not supported by the stand-in")
                }
                None => str_at(var, "/value").to_string(),
            };
            env.push((key.to_string(), value));
        }

        let mut args: Vec<String> = container
            .get("args")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        for arg in &mut args {
            *arg = expand(arg, &env);
            if let Some(port) = arg.strip_prefix("0.0.0.0:") {
                *arg = format!("{ip}:{port}");
            } else if mounts.iter().any(|m| arg.starts_with(m.as_str())) {
                *arg = fs.join(arg.trim_start_matches('/')).display().to_string();
            }
        }
        let replicas: u32 = args
            .iter()
            .position(|a| a == "--replicas")
            .and_then(|i| args.get(i + 1))
            .and_then(|n| n.parse().ok())
            .context("the container's args have no --replicas")?;
        let (set, _) = name.rsplit_once('-').context("pod name has no ordinal")?;
        let peers = (0..replicas)
            .map(|i| {
                let peer = format!("{set}-{i}");
                Ok(format!("{peer}={}:{MESH_PORT}", self.ip_of(&peer)?))
            })
            .collect::<Result<Vec<_>>>()?
            .join(",");
        args.extend(["--peers".to_string(), peers]);

        let account = str_at(pod, "/spec/serviceAccountName");
        let account = if account.is_empty() {
            "default"
        } else {
            account
        };
        let kubeconfig = cp.service_account_kubeconfig(namespace, account).await?;
        let mut cmd = tokio::process::Command::new(&self.runtime);
        cmd.args(&args).env_clear().env("KUBECONFIG", &kubeconfig);
        if let Ok(path) = std::env::var("PATH") {
            cmd.env("PATH", path);
        }
        for (key, value) in &env {
            cmd.env(key, value);
        }
        let process = Process::spawn(name, cmd, &self.root.join("logs"))?;
        Ok((ip, process))
    }

    /// Writes each ConfigMap volume the container mounts under `fs`, as the
    /// kubelet projects it; returns the mount paths.
    async fn write_volumes(
        &self,
        pod: &Value,
        container: &Value,
        fs: &Path,
    ) -> Result<Vec<String>> {
        let volumes = pod
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut mounts = Vec::new();
        for mount in array(container, "volumeMounts") {
            let volume_name = str_at(mount, "/name");
            let mount_path = str_at(mount, "/mountPath");
            let Some(volume) = volumes.iter().find(|v| str_at(v, "/name") == volume_name) else {
                bail!("volumeMount {volume_name} names no volume");
            };
            let (source, cm_name, cm, base64_data) = if let Some(source) = volume.get("configMap") {
                let cm_name = str_at(source, "/name");
                let cm = self.kubectl.get("configmap", cm_name).await?;
                (source, cm_name, cm, "binaryData")
            } else if let Some(source) = volume.get("secret") {
                // A Secret's `data` is base64, as a ConfigMap's
                // `binaryData`.
                let name = str_at(source, "/secretName");
                let secret = self.kubectl.get("secret", name).await?;
                (source, name, secret, "data")
            } else {
                // The projected service-account token: the stand-in gives
                // a kubeconfig instead.
                continue;
            };
            let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            if base64_data != "data" {
                for (key, value) in cm
                    .get("data")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    files.insert(
                        key.clone(),
                        value.as_str().unwrap_or("").as_bytes().to_vec(),
                    );
                }
            }
            for (key, value) in cm
                .get(base64_data)
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(value.as_str().unwrap_or(""))
                    .with_context(|| format!("{cm_name}: {base64_data} {key} is not base64"))?;
                files.insert(key.clone(), bytes);
            }
            let items: Vec<(String, String)> = match source.get("items").and_then(Value::as_array) {
                Some(items) => items
                    .iter()
                    .map(|i| {
                        (
                            str_at(i, "/key").to_string(),
                            str_at(i, "/path").to_string(),
                        )
                    })
                    .collect(),
                None => files.keys().map(|k| (k.clone(), k.clone())).collect(),
            };
            let dir = fs.join(mount_path.trim_start_matches('/'));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for (key, path) in items {
                let bytes = files
                    .get(&key)
                    .with_context(|| format!("{cm_name} has no key {key}"))?;
                let target = dir.join(&path);
                std::fs::write(&target, bytes)
                    .with_context(|| format!("writing {}", target.display()))?;
            }
            mounts.push(mount_path.to_string());
        }
        Ok(mounts)
    }
}

/// Takes the stand-in's finalizer off a pod being deleted.
async fn release(kubectl: &Kubectl, name: &str, pod: &Value) -> Result<()> {
    let Some(at) = pod
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .and_then(|f| f.iter().position(|v| v.as_str() == Some(FINALIZER)))
    else {
        return Ok(());
    };
    let patch = json!([
        {"op": "test", "path": format!("/metadata/finalizers/{at}"), "value": FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{at}")},
    ]);
    kubectl
        .run(&[
            "patch",
            "pod",
            name,
            "--type=json",
            "-p",
            &patch.to_string(),
        ])
        .await
        .with_context(|| format!("releasing pod {name}"))?;
    Ok(())
}

/// `$(VAR)` replaced by `VAR`'s value from `env`, as the kubelet expands a
/// container's args; an unknown variable stays as written, `$$` is `$`.
fn expand(arg: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((var, tail)) = after
            .strip_prefix('(')
            .and_then(|inner| inner.split_once(')'))
            && let Some((_, value)) = env.iter().find(|(k, _)| k == var)
        {
            out.push_str(value);
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn ordinal(name: &str) -> Result<u32> {
    name.rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .with_context(|| format!("pod {name} is not <statefulset>-<ordinal>"))
}

/// The items of the array at `key`, none if absent.
fn array<'a>(obj: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    obj.get(key).and_then(Value::as_array).into_iter().flatten()
}

fn say(line: &str) {
    println!("  local-pods: {line}");
}

/// `GET /readyz` on the pod's HTTP port answers 200.
async fn probe_ready(ip: Ipv4Addr) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect((ip, HTTP_PORT)).await.ok()?;
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 200"))
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// What a kubelet writes: Running at `ip`, Ready or not.
async fn report_status(
    kubectl: &Kubectl,
    name: &str,
    ip: Ipv4Addr,
    ready: bool,
    restarts: u32,
) -> Result<()> {
    let now = chrono_now();
    let flag = if ready { "True" } else { "False" };
    let status = json!({
        "status": {
            "phase": "Running",
            "podIP": ip.to_string(),
            "podIPs": [{"ip": ip.to_string()}],
            "hostIP": "127.0.0.1",
            "startTime": now,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
                {"type": "Ready", "status": flag, "lastTransitionTime": now},
            ],
            "containerStatuses": [{
                "name": "vss",
                "image": "vss-runtime:local",
                "imageID": "",
                "ready": ready,
                "started": true,
                "restartCount": restarts,
                "state": {"running": {"startedAt": now}},
            }],
        }
    });
    kubectl
        .run(&[
            "patch",
            "pod",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ])
        .await
        .with_context(|| format!("reporting the status of pod {name}"))?;
    Ok(())
}

/// Now in RFC 3339 (UTC, seconds), without a date library.
fn chrono_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_789), (2026, 12, 2));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn args_expand_env_as_the_kubelet_does() {
        let env = vec![("POD_NAME".to_string(), "demo-1".to_string())];
        assert_eq!(
            expand("/var/run/vss/mesh-tls/$(POD_NAME).crt", &env),
            "/var/run/vss/mesh-tls/demo-1.crt"
        );
        assert_eq!(
            expand("$(UNSET) $$(POD_NAME) $", &env),
            "$(UNSET) $(POD_NAME) $"
        );
    }

    #[test]
    fn ordinals_come_from_the_name() {
        assert_eq!(ordinal("demo-2").ok(), Some(2));
        assert!(ordinal("demo").is_err());
    }
}
