//! `kubectl`, run as a child process against the cluster under test, and
//! small readers of the JSON it prints.
//!
//! Shelling out keeps the e2e crate free of a Kubernetes client library and
//! checks the objects exactly as a user's `kubectl` sees them.

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;
use tokio::process::Command;

/// `kubectl --kubeconfig <file> -n <namespace> ...`.
#[derive(Debug, Clone)]
pub struct Kubectl {
    program: PathBuf,
    kubeconfig: PathBuf,
    namespace: String,
}

impl Kubectl {
    /// The `kubectl` on PATH.
    pub fn new(kubeconfig: impl Into<PathBuf>, namespace: impl Into<String>) -> Self {
        Self::with_program("kubectl", kubeconfig, namespace)
    }

    /// A given `kubectl` binary (one built for the API server's version).
    pub fn with_program(
        program: impl Into<PathBuf>,
        kubeconfig: impl Into<PathBuf>,
        namespace: impl Into<String>,
    ) -> Self {
        Self {
            program: program.into(),
            kubeconfig: kubeconfig.into(),
            namespace: namespace.into(),
        }
    }

    /// The same cluster, another namespace.
    pub fn in_namespace(&self, namespace: &str) -> Self {
        Self::with_program(self.program.clone(), self.kubeconfig.clone(), namespace)
    }

    /// The same cluster and namespace as another user.
    pub fn as_user(&self, kubeconfig: impl Into<PathBuf>) -> Self {
        Self::with_program(self.program.clone(), kubeconfig, self.namespace.clone())
    }

    pub fn kubeconfig(&self) -> &std::path::Path {
        &self.kubeconfig
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A `kubectl` command with the kubeconfig and namespace set; the caller
    /// adds the verb.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--namespace")
            .arg(&self.namespace)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `kubectl <args>` and returns its stdout; a non-zero exit is an
    /// error carrying stderr.
    pub async fn run(&self, args: &[&str]) -> Result<String> {
        let out = self
            .command()
            .args(args)
            .output()
            .await
            .context("running kubectl (is it installed and on PATH?)")?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8(out.stdout).context("kubectl printed non-UTF-8 output")
    }

    /// Runs `kubectl <args>` with `stdin` fed in; the outcome as it is,
    /// for callers that expect a refusal.
    pub async fn output(&self, args: &[&str], stdin: Option<&str>) -> Result<std::process::Output> {
        use tokio::io::AsyncWriteExt as _;
        let mut child = self
            .command()
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running kubectl (is it installed and on PATH?)")?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .await
                .context("writing kubectl's stdin")?;
        }
        child
            .wait_with_output()
            .await
            .context("waiting for kubectl")
    }

    /// `kubectl apply -f -` of `yaml`; its stdout.
    pub async fn apply_yaml(&self, yaml: &str) -> Result<String> {
        let out = self.output(&["apply", "-f", "-"], Some(yaml)).await?;
        if !out.status.success() {
            bail!(
                "kubectl apply failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `kubectl apply -f <path>`; its stdout.
    pub async fn apply_file(&self, path: &std::path::Path) -> Result<String> {
        self.run(&["apply", "-f", &path.display().to_string()])
            .await
    }

    /// `kubectl get <kind> <name> -o json`.
    pub async fn get(&self, kind: &str, name: &str) -> Result<Value> {
        self.get_opt(kind, name)
            .await?
            .with_context(|| format!("{kind}/{name} not found in {}", self.namespace))
    }

    /// Like [`Kubectl::get`], None if the object does not exist.
    pub async fn get_opt(&self, kind: &str, name: &str) -> Result<Option<Value>> {
        let out = self
            .run(&["get", kind, name, "--ignore-not-found", "-o", "json"])
            .await?;
        if out.trim().is_empty() {
            return Ok(None);
        }
        let value = serde_json::from_str(&out)
            .with_context(|| format!("parsing kubectl get {kind}/{name}"))?;
        Ok(Some(value))
    }

    /// Objects of `kind` in the namespace, optionally by label selector.
    pub async fn list(&self, kind: &str, selector: Option<&str>) -> Result<Vec<Value>> {
        let mut args = vec!["get", kind, "-o", "json"];
        if let Some(selector) = selector {
            args.extend(["-l", selector]);
        }
        let out = self.run(&args).await?;
        let list: Value =
            serde_json::from_str(&out).with_context(|| format!("parsing kubectl get {kind}"))?;
        Ok(items(&list).to_vec())
    }
}

/// `.items` of a list, empty if absent.
pub fn items(list: &Value) -> &[Value] {
    list.get("items")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// `.metadata.name`, "" if absent.
pub fn name_of(obj: &Value) -> &str {
    str_at(obj, "/metadata/name")
}

/// The string at a JSON pointer, "" if absent.
pub fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The integer at a JSON pointer, if there is one.
pub fn int_at(obj: &Value, pointer: &str) -> Option<i64> {
    obj.pointer(pointer).and_then(Value::as_i64)
}

/// The `status` ("True", "False", "Unknown") of condition `type_`.
pub fn condition_status<'a>(obj: &'a Value, type_: &str) -> Option<&'a str> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))?
        .get("status")?
        .as_str()
}

/// A pod that is running, not being deleted, and passes its readiness probe.
pub fn pod_is_ready(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_none()
        && str_at(pod, "/status/phase") == "Running"
        && condition_status(pod, "Ready") == Some("True")
}

/// Total container restarts of a pod.
pub fn restart_count(pod: &Value) -> i64 {
    pod.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |statuses| {
            statuses
                .iter()
                .filter_map(|s| s.get("restartCount").and_then(Value::as_i64))
                .sum()
        })
}

/// Whether an ownerReference of `obj` names the object with `uid`.
pub fn is_owned_by(obj: &Value, uid: &str) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
        })
}

/// The holder of a coordination.k8s.io Lease; None when vacant.
pub fn lease_holder(lease: &Value) -> Option<&str> {
    lease
        .pointer("/spec/holderIdentity")
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_running_pod_with_ready_true_is_ready() {
        let pod = json!({"metadata": {"name": "vss-0"}, "status": {"phase": "Running",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]}});
        assert!(pod_is_ready(&pod));
    }

    #[test]
    fn a_terminating_or_unready_pod_is_not_ready() {
        let terminating = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        assert!(!pod_is_ready(&terminating));
        let unready = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}});
        assert!(!pod_is_ready(&unready));
        assert!(!pod_is_ready(&json!({})));
    }

    #[test]
    fn restarts_add_up_over_containers() {
        let pod =
            json!({"status": {"containerStatuses": [{"restartCount": 2}, {"restartCount": 1}]}});
        assert_eq!(restart_count(&pod), 3);
        assert_eq!(restart_count(&json!({})), 0);
    }

    #[test]
    fn ownership_is_by_uid() {
        let cm = json!({"metadata": {"ownerReferences": [{"kind": "VssCluster", "uid": "abc"}]}});
        assert!(is_owned_by(&cm, "abc"));
        assert!(!is_owned_by(&cm, "abd"));
        assert!(!is_owned_by(&json!({"metadata": {}}), "abc"));
    }

    #[test]
    fn a_lease_with_an_empty_holder_is_vacant() {
        assert_eq!(
            lease_holder(&json!({"spec": {"holderIdentity": "vss-1"}})),
            Some("vss-1")
        );
        assert_eq!(lease_holder(&json!({"spec": {"holderIdentity": ""}})), None);
        assert_eq!(lease_holder(&json!({"spec": {}})), None);
    }

    #[test]
    fn list_items_and_fields_default_to_empty() {
        let list = json!({"items": [{"metadata": {"name": "a"}}]});
        assert_eq!(items(&list).len(), 1);
        assert_eq!(name_of(&items(&list)[0]), "a");
        assert!(items(&json!({})).is_empty());
        assert_eq!(
            int_at(&json!({"spec": {"instances": 3}}), "/spec/instances"),
            Some(3)
        );
        assert_eq!(condition_status(&json!({}), "Ready"), None);
    }
}
