//! The VSS runtime: one instance of a VSS cluster.
//!
//! It loads a slot configuration, runs every configured slot as a Wasm
//! instance, serves the client gRPC API (with Envoy's rate limit service
//! and server reflection) on one port, the mesh and control APIs on
//! another, and probes and Prometheus metrics on an HTTP side port.
//!
//! [`Runtime::bind`] binds the ports (port 0 works, for tests) and loads
//! the slots; [`Runtime::serve`] runs until the given shutdown future
//! completes, then stops accepting, drains in-flight requests and returns.
//!
//! Inside, three layers (`docs/architecture.md` walks through them): `core`
//! is the domain — the node, with every operation a client or a peer asks
//! for, the slot table and its threads, signals, data slots, access
//! policy, and the cluster (election, routing, replication) over one
//! peer-link trait — and names no transport; `edge` is gRPC, TLS,
//! connection limits, admission, probes and Envoy's service, converting
//! in one place and calling the node; `ops` is metrics, fault injection,
//! file reloads, telemetry and shutdown. Only what the binaries and tests
//! use is public.

mod core;
mod edge;
mod ops;
mod server;

pub use crate::core::cluster::{Members, MembersError};
pub use crate::core::executor::QueueLimits;
pub use crate::core::hub::{DEFAULT_MAX_CLIENTS, HubLimits};
pub use crate::core::node::TICK_PERIOD;
pub use crate::edge::connections::{
    ClientLimits, DEFAULT_CALLS_PER_SECOND, DEFAULT_MAX_CONNECTIONS,
};
pub use crate::edge::tls::{ClientTlsFiles, TlsFiles};
pub use crate::ops::chaos::{ChaosError, ChaosOptions, RESTART_EXIT_CODE};
pub use crate::ops::{report, shutdown, telemetry};
pub use crate::server::{
    CONFIG_POLL, DEFAULT_CLIENT_MAX_STREAMS, DEFAULT_HANDOVER, Runtime, RuntimeError,
    RuntimeOptions, WasmLimits,
};
