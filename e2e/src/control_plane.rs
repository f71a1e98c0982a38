//! A real Kubernetes control plane for tests: `e2e/control-plane/up`
//! starts etcd, kube-apiserver and kube-controller-manager on 127.0.0.1,
//! and dropping the handle runs `down`, which stops them by PID.

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use anyhow::{Context as _, Result, bail};

use crate::Kubectl;

/// Set to run the real-API-server suite; without it the suite only says
/// what it did not run. `.ci/run` sets it after building the binaries.
pub const ENABLE_VAR: &str = "VSS_E2E_CONTROL_PLANE";

/// The harness scripts, in the repository.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("control-plane")
}

/// A running control plane; stopped when dropped.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    kubeconfig: PathBuf,
    bin: PathBuf,
    api: String,
    /// Whether dropping this handle stops the control plane.
    owned: bool,
}

impl ControlPlane {
    /// Runs `e2e/control-plane/up DIR` (which builds the binaries when they
    /// are not cached) and reads what it wrote.
    pub async fn up(dir: &Path) -> Result<Self> {
        let script = scripts_dir().join("up");
        let out = tokio::process::Command::new(&script)
            .arg(dir)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "{} {} failed ({}):\n{}",
                script.display(),
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let mut cp = Self::attach(dir)?;
        cp.owned = true;
        Ok(cp)
    }

    /// A handle on a control plane `up` started in `dir`, which dropping it
    /// leaves running.
    pub fn attach(dir: &Path) -> Result<Self> {
        let env = std::fs::read_to_string(dir.join("env"))
            .with_context(|| format!("reading {}/env", dir.display()))?;
        let value = |key: &str| -> Result<String> {
            env.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
                .with_context(|| format!("{}/env has no {key}", dir.display()))
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            kubeconfig: PathBuf::from(value("KUBECONFIG")?),
            bin: PathBuf::from(value("VSS_CONTROL_PLANE_BIN")?),
            api: value("VSS_CONTROL_PLANE_API")?,
            owned: false,
        })
    }

    /// Cluster-admin kubeconfig (a client certificate in system:masters).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:PORT`.
    pub fn api_url(&self) -> &str {
        &self.api
    }

    /// The folder holding the certificates, logs and kubeconfigs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `kubectl` of the control plane's own version, as cluster-admin.
    pub fn kubectl(&self, namespace: &str) -> Kubectl {
        Kubectl::with_program(self.bin.join("kubectl"), &self.kubeconfig, namespace)
    }

    /// A kubeconfig that authenticates as ServiceAccount `namespace/name`
    /// with a token from the TokenRequest API, as a pod's projected token
    /// would: what the operator or a runtime pod may do is exactly what RBAC
    /// grants that account.
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> Result<PathBuf> {
        let token = self
            .kubectl(namespace)
            .run(&["create", "token", name, "--duration", "2h"])
            .await
            .with_context(|| format!("token for serviceaccount {namespace}/{name}"))?;
        let path = self.dir.join(format!("sa-{namespace}-{name}.kubeconfig"));
        let ca = self.dir.join("pki/ca.crt");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: vss-test\n  cluster:\n    server: {api}\n    certificate-authority: {ca}\n\
             users:\n- name: {name}\n  user:\n    token: {token}\n\
             contexts:\n- name: vss-test\n  context: {{cluster: vss-test, user: {name}, namespace: {namespace}}}\n\
             current-context: vss-test\n",
            api = self.api,
            ca = ca.display(),
            token = token.trim(),
        );
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// The last lines of each component's log, for failure reports.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for name in ["kube-apiserver", "kube-controller-manager", "etcd"] {
            let path = self.dir.join("logs").join(format!("{name}.log"));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(lines).collect();
            out.push_str(&format!("--- {}\n", path.display()));
            for line in tail.into_iter().rev() {
                // Controller errors dump whole Go structs; the head says enough.
                out.extend(line.chars().take(400));
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let script = scripts_dir().join("down");
        if let Err(e) = StdCommand::new(&script).arg(&self.dir).status() {
            eprintln!("{} {}: {e}", script.display(), self.dir.display());
        }
    }
}
