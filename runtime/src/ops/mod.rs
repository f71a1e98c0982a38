//! Running an instance: metrics, fault injection, reloads, telemetry,
//! shutdown and error reports.

pub mod chaos;
pub mod metrics;
pub mod reload;
pub mod report;
pub mod shutdown;
pub mod telemetry;
