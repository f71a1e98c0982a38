//! `kubectl port-forward` to one pod, so the test process reaches a pod's
//! gRPC port on 127.0.0.1 like a user on their laptop would.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Child;
use tokio::task::JoinHandle;

use crate::Kubectl;

/// How long kubectl may take to open the local port.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `kubectl port-forward pod/<pod> :<port>`; stopped on drop.
#[derive(Debug)]
pub struct PortForward {
    pub pod: String,
    /// `127.0.0.1:<local port>`.
    pub endpoint: String,
    child: Child,
    /// Drains kubectl's stdout ("Handling connection for ..." per
    /// connection): an undrained pipe would fill and stall kubectl.
    drain: JoinHandle<()>,
}

impl PortForward {
    /// Forwards a free local port to `remote_port` of `pod` and waits until
    /// kubectl says it listens.
    pub async fn start(kubectl: &Kubectl, pod: &str, remote_port: u16) -> Result<Self> {
        let mut child = kubectl
            .command()
            .args([
                "port-forward",
                "--address",
                "127.0.0.1",
                &format!("pod/{pod}"),
                &format!(":{remote_port}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting kubectl port-forward")?;
        let stdout = child
            .stdout
            .take()
            .context("kubectl port-forward has no stdout pipe")?;
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(port) = parse_forwarding_line(&line) {
                    return Ok(port);
                }
            }
            bail!("kubectl port-forward to {pod} exited before forwarding")
        })
        .await
        .with_context(|| {
            format!("kubectl port-forward to {pod} did not start in {START_TIMEOUT:?}")
        })??;
        let drain = tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            pod: pod.to_string(),
            endpoint: format!("127.0.0.1:{port}"),
            child,
            drain,
        })
    }

    /// False once kubectl has exited (it does when the pod goes away).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        // kill_on_drop on the Command reaps the child; this ends it now.
        let _ = self.child.start_kill();
        self.drain.abort();
    }
}

/// The local port in kubectl's "Forwarding from 127.0.0.1:43125 -> 7700".
/// kubectl also prints an IPv6 line when it binds [::1]; `--address
/// 127.0.0.1` avoids that, and the IPv4 line is the one used.
fn parse_forwarding_line(line: &str) -> Option<u16> {
    let rest = line.trim().strip_prefix("Forwarding from 127.0.0.1:")?;
    let (port, _) = rest.split_once(" -> ")?;
    port.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_local_port_from_kubectl_output() {
        assert_eq!(
            parse_forwarding_line("Forwarding from 127.0.0.1:43125 -> 7700"),
            Some(43125)
        );
    }

    #[test]
    fn ignores_other_lines() {
        assert_eq!(
            parse_forwarding_line("Forwarding from [::1]:43125 -> 7700"),
            None
        );
        assert_eq!(parse_forwarding_line("Handling connection for 7700"), None);
        assert_eq!(
            parse_forwarding_line("Forwarding from 127.0.0.1:x -> 7700"),
            None
        );
    }
}
