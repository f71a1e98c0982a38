//! The VSS runtime: one instance of a VSS cluster.
//!
//! It loads a slot configuration, runs every configured slot as a Wasm
//! instance ([`slots::SlotTable`]), serves the client gRPC API
//! ([`grpc::VssService`], with server reflection v1 and v1alpha) and an HTTP side port for
//! probes and Prometheus ([`http`]).
//!
//! [`Runtime::bind`] binds both ports (port 0 works, for tests) and loads the
//! slots; [`Runtime::serve`] runs until the given shutdown future completes,
//! then stops accepting, drains in-flight requests and returns.
//!
//! An `Acquire`, end to end: [`grpc::VssService`] asks the
//! [`cluster::Cluster`] where the slot is served and forwards it to the
//! owner if that is another instance; here, [`slots::SlotTable::acquire`]
//! checks the request and hands it to the slot's [`executor::SlotWorker`],
//! whose thread owns the slot's `vss_slot_host::SlotInstance` and calls
//! the module's WIT `handle` (or `handle-batch`, with the requests that
//! queued up meanwhile); the reactor only awaits the answer.
//!
//! `serve` runs, each until shutdown: the gRPC server (client, mesh and
//! control services), the HTTP server, the tick loop ([`signals::Signals::tick`]),
//! the cluster's heartbeat, decision and replication loops
//! ([`cluster::Cluster::run`]), the config-file watcher if asked, the
//! certificate watchers of the ports that run TLS ([`tls`]), the client
//! token watcher if tokens are asked ([`access`]), and the chaos restart
//! timer if on. The client port's connections are counted and budgeted
//! ([`connections`]); each port's checks on a call run before its services
//! ([`admission`]). Slot threads end when their slot is dropped.

mod core;
mod edge;
mod ops;
mod server;

pub use crate::core::cluster::{Members, MembersError};
pub use crate::core::executor::QueueLimits;
pub use crate::core::hub::{DEFAULT_MAX_CLIENTS, HubLimits};
pub use crate::edge::connections::{
    ClientLimits, DEFAULT_CALLS_PER_SECOND, DEFAULT_MAX_CONNECTIONS,
};
pub use crate::edge::tls::{ClientTlsFiles, TlsFiles};
pub use crate::ops::chaos::{ChaosError, ChaosOptions, RESTART_EXIT_CODE};
pub use crate::ops::{report, shutdown, telemetry};
pub use crate::server::{
    CONFIG_POLL, DEFAULT_CLIENT_MAX_STREAMS, Runtime, RuntimeError, RuntimeOptions, TICK_PERIOD,
    WasmLimits,
};
