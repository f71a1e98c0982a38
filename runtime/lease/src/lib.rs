//! Leader election for VSS runtime pods through a `coordination.k8s.io/v1` Lease.
//!
//! Every runtime pod of a cluster campaigns for the same Lease; the one named in
//! `spec.holderIdentity` leads (it decides the routing table, see `DESIGN.md`). This crate
//! only says *who* leads: what the leader does is the runtime's business, and outside
//! Kubernetes the runtime elects over its mesh instead.
//!
//! # Protocol
//!
//! [`LeaseElection::start`] spawns one task that loops:
//!
//! - **No Lease**: create it naming us (`leaseTransitions: 0`).
//! - **Free, lapsed or ours**: replace it with our claim (`renewTime: now`, and on a change
//!   of holder `acquireTime: now` and `leaseTransitions + 1`). A claim has lapsed when
//!   `renewTime + leaseDurationSeconds` is in the past.
//! - **Held by another pod**: wait until its claim would lapse (at most one `duration`),
//!   then read it again.
//!
//! Every write is conditional: creates fail with 409 if the Lease exists, replaces carry the
//! `resourceVersion` that was read and fail with 409 if anyone wrote in between. A 409 means
//! another writer won that race, so nothing is assumed: the task reads the Lease again and
//! decides afresh. A leader that loses a renewal race thus keeps leading only if the Lease
//! still names it; if it names someone else, leadership ends at once.
//!
//! # Timings
//!
//! With the defaults (`duration` 5 s, `grace` 2 s) the leader renews 3 s after each
//! successful write, leaving 2 s to retry failed renewals (every `grace / 4`). If no renewal
//! succeeds, [`LeaseHandle::is_leader`] turns `false` when the claim lapses by the local
//! clock, counted from just before the last successful write, so it never outlives what the
//! Lease says; a request still hanging at that moment is abandoned. Any API call is also
//! abandoned after one `duration` and counts as a failure, so a hung connection cannot stall
//! a candidate either. Another pod takes over within about one `duration` of the last renewal.
//! Lapse is judged by comparing `renewTime` with each pod's own clock: node clocks are
//! assumed to agree to well within `grace`.
//!
//! # Shutdown
//!
//! Cancelling the `stop` token, calling [`LeaseHandle::shutdown`] or dropping the handle
//! stops the task. It first publishes `false`, then clears `holderIdentity` if the Lease
//! still names us (bounded by `grace`), so a successor takes over on its next read instead
//! of waiting for the claim to lapse.
//!
//! # Errors
//!
//! [`LeaseElection::start`] fails on an invalid [`LeaseConfig`] or if the first read of
//! the Lease fails (RBAC, namespace); after that, API errors are logged and retried.

mod config;
mod decision;
mod election;
mod error;

pub use config::LeaseConfig;
pub use election::{LeaseElection, LeaseHandle, current_holder};
pub use error::LeaseError;
