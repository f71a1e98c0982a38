//! `vss-e2e`: end-to-end scenarios for VSS on a real Kubernetes cluster.
//!
//! `e2e/run.sh` creates a kind cluster, loads the images, installs the Helm
//! chart and applies the example VssClusters; `tests/kind.rs` then runs the
//! scenarios against it. Everything talks to the cluster the way a user
//! would: `kubectl` for Kubernetes objects (no second client library that
//! could disagree with it) and [`vss_client::Client`] through
//! `kubectl port-forward` for the VSS API.
//!
//! `tests/real_api_server.rs` runs against a real control plane started on
//! loopback by `e2e/control-plane/up` (no nodes: [`LocalPods`] runs the
//! pods as local processes).
//!
//! Not here: unit tests of the operator's objects (they live next to the
//! operator) and anything that needs no cluster.

pub mod control_plane;
pub mod env;
pub mod kubectl;
pub mod local_pods;
pub mod port_forward;
pub mod process;
pub mod runner;
pub mod scenarios;
pub mod wait;

pub use control_plane::ControlPlane;
pub use env::E2eEnv;
pub use kubectl::Kubectl;
pub use local_pods::LocalPods;
pub use port_forward::PortForward;
pub use process::Process;
