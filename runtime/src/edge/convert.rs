//! Every conversion between the wire's messages (`vss.v1`) and the core's
//! types, in one place: the services and the gRPC peer link only call
//! these.

use std::collections::HashSet;
use std::time::Duration;

use tonic::{Code, Status};
use vss_proto::v1 as pb;
use vss_proto::v1::acquire_outcome::Outcome;
use vss_proto::v1::deliver_request::Recipients as WireRecipients;
use vss_slot_counter::wire as counter;
use vss_slot_host::Acquired;
use vss_slot_register::wire as register;
use vss_slot_registry::wire as registry;

use crate::core::calls::{
    AcquireCall, CustomCall, Delivery, MembershipCall, PublishCall, PublishOutcome, Targets,
};
use crate::core::cluster::link::{FetchedState, Heartbeat, HeartbeatReply, Replicate, SlotState};
use crate::core::cluster::routing::OfferedRoute;
use crate::core::cluster::{RoutingError, RoutingTable};
use crate::core::data::{ServiceChange, Tick};
use crate::core::error::RequestError;
use crate::core::node::NodeStatus;
use crate::edge::status::{core_code, grpc_code};

/// A routing table on the wire.
pub trait TableWire: Sized {
    fn to_proto(&self) -> pb::RoutingTable;
    /// Checks a table from a peer against the cluster's members.
    fn from_proto(table: pb::RoutingTable, known: &HashSet<String>) -> Result<Self, RoutingError>;
}

impl TableWire for RoutingTable {
    fn to_proto(&self) -> pb::RoutingTable {
        pb::RoutingTable {
            epoch: self.epoch,
            leader: self.leader.clone(),
            fallback_leader: self.fallback_leader.clone().unwrap_or_default(),
            members: self.members.iter().cloned().collect(),
            routes: self
                .routes
                .iter()
                .map(|(slot, r)| pb::SlotRoute {
                    slot: u32::from(*slot),
                    owner: r.owner.clone(),
                    standby: r.standby.clone().unwrap_or_default(),
                    partitions: self
                        .partitions
                        .get(slot)
                        .into_iter()
                        .flatten()
                        .map(|p| pb::PartitionRoute {
                            owner: p.owner.clone(),
                            standby: p.standby.clone().unwrap_or_default(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn from_proto(table: pb::RoutingTable, known: &HashSet<String>) -> Result<Self, RoutingError> {
        RoutingTable::offered(
            table.epoch,
            table.leader,
            table.fallback_leader,
            table.members,
            table.routes.into_iter().map(|r| OfferedRoute {
                slot: r.slot,
                owner: r.owner,
                standby: r.standby,
                partitions: r
                    .partitions
                    .into_iter()
                    .map(|p| (p.owner, p.standby))
                    .collect(),
            }),
            known,
        )
    }
}

pub fn acquire_call(r: pb::AcquireRequest) -> AcquireCall {
    AcquireCall {
        slot: r.slot,
        key: r.key,
        tokens: r.tokens,
    }
}

pub fn acquire_request(c: AcquireCall) -> pb::AcquireRequest {
    pb::AcquireRequest {
        slot: c.slot,
        key: c.key,
        tokens: c.tokens,
    }
}

pub fn acquire_reply(a: Acquired) -> pb::AcquireReply {
    pb::AcquireReply {
        granted: a.granted,
        remaining: a.remaining,
        reset_ms: a.reset_ms,
    }
}

pub fn acquired(r: pb::AcquireReply) -> Acquired {
    Acquired {
        granted: r.granted,
        remaining: r.remaining,
        reset_ms: r.reset_ms,
    }
}

/// One acquire's answer in a batch.
pub fn acquire_outcome(answer: Result<Acquired, RequestError>) -> pb::AcquireOutcome {
    pb::AcquireOutcome {
        outcome: Some(match answer {
            Ok(a) => Outcome::Reply(acquire_reply(a)),
            Err(e) => Outcome::Failure(pb::AcquireFailure {
                code: grpc_code(e.code()) as i32,
                message: e.to_string(),
            }),
        }),
    }
}

/// One acquire's answer in a peer's batch, as the peer gave it.
pub fn outcome_of(outcome: Option<Outcome>) -> Result<Acquired, RequestError> {
    match outcome {
        Some(Outcome::Reply(reply)) => Ok(acquired(reply)),
        Some(Outcome::Failure(f)) => Err(remote(Code::from(f.code), f.message)),
        None => Err(remote(
            Code::Internal,
            "the instance answered an acquire with nothing".into(),
        )),
    }
}

/// A refusal as another instance gave it.
pub fn remote(code: Code, message: String) -> RequestError {
    RequestError::Remote {
        code: core_code(code),
        message,
    }
}

pub fn custom_call(r: pb::CallRequest) -> CustomCall {
    CustomCall {
        slot: r.slot,
        op: r.op,
        payload: r.payload,
    }
}

pub fn call_request(c: CustomCall) -> pb::CallRequest {
    pb::CallRequest {
        slot: c.slot,
        op: c.op,
        payload: c.payload,
    }
}

pub fn publish_call(r: pb::PublishRequest) -> PublishCall {
    PublishCall {
        slot: r.slot,
        message: r.message,
        publisher: r.client_id,
        message_id: r.message_id,
    }
}

pub fn publish_request(c: PublishCall) -> pb::PublishRequest {
    pb::PublishRequest {
        slot: c.slot,
        message: c.message,
        client_id: c.publisher,
        message_id: c.message_id,
    }
}

pub fn publish_reply(o: PublishOutcome) -> pb::PublishReply {
    pb::PublishReply {
        message_id: o.message_id,
        delivered: o.delivered,
        failed: o.failed,
        taken_by: o.taken_by.unwrap_or_default(),
    }
}

pub fn publish_outcome(r: pb::PublishReply) -> PublishOutcome {
    PublishOutcome {
        message_id: r.message_id,
        delivered: r.delivered,
        failed: r.failed,
        taken_by: (!r.taken_by.is_empty()).then_some(r.taken_by),
    }
}

pub fn membership_call(r: pb::MembershipRequest, join: bool) -> MembershipCall {
    MembershipCall {
        slot: r.slot,
        client: r.client_id,
        join,
    }
}

pub fn membership_request(c: MembershipCall) -> pb::MembershipRequest {
    pb::MembershipRequest {
        slot: c.slot,
        client_id: c.client,
    }
}

pub fn heartbeat(r: pb::HeartbeatRequest) -> Heartbeat {
    Heartbeat {
        from: r.from,
        epoch: r.epoch,
    }
}

pub fn heartbeat_request(b: Heartbeat) -> pb::HeartbeatRequest {
    pb::HeartbeatRequest {
        from: b.from,
        epoch: b.epoch,
    }
}

pub fn heartbeat_reply(r: HeartbeatReply) -> pb::HeartbeatReply {
    pb::HeartbeatReply {
        from: r.from,
        epoch: r.epoch,
        leader: r.leader,
        config_generation: r.config_generation,
        hears: r.hears,
        held: r
            .held
            .into_iter()
            .map(|(slot, partition)| pb::SlotPart {
                slot: u32::from(slot),
                partition: u32::from(partition),
            })
            .collect(),
        leaving: r.leaving,
    }
}

pub fn heartbeat_answer(r: pb::HeartbeatReply) -> HeartbeatReply {
    HeartbeatReply {
        from: r.from,
        epoch: r.epoch,
        leader: r.leader,
        config_generation: r.config_generation,
        hears: r.hears,
        held: r
            .held
            .into_iter()
            .filter_map(|p| Some((u8::try_from(p.slot).ok()?, u16::try_from(p.partition).ok()?)))
            .collect(),
        leaving: r.leaving,
    }
}

fn slot_states(states: Vec<pb::SlotState>) -> Vec<SlotState> {
    states
        .into_iter()
        .map(|s| SlotState {
            slot: s.slot,
            partition: u16::try_from(s.partition).unwrap_or(u16::MAX),
            state: s.state,
        })
        .collect()
}

fn wire_states(states: Vec<SlotState>) -> Vec<pb::SlotState> {
    states
        .into_iter()
        .map(|s| pb::SlotState {
            slot: s.slot,
            partition: u32::from(s.partition),
            state: s.state,
        })
        .collect()
}

pub fn replicate(r: pb::ReplicateRequest) -> Replicate {
    Replicate {
        from: r.from,
        epoch: r.epoch,
        slots: slot_states(r.slots),
    }
}

pub fn replicate_request(r: Replicate) -> pb::ReplicateRequest {
    pb::ReplicateRequest {
        from: r.from,
        epoch: r.epoch,
        slots: wire_states(r.slots),
    }
}

pub fn fetch_state_reply(f: FetchedState) -> pb::FetchStateReply {
    pb::FetchStateReply {
        slots: wire_states(f.slots),
        synced: f.synced,
    }
}

pub fn fetched_state(r: pb::FetchStateReply) -> FetchedState {
    FetchedState {
        slots: slot_states(r.slots),
        synced: r.synced,
    }
}

/// A delivery a peer asks for; a request without recipients is refused.
pub fn delivery(r: pb::DeliverRequest) -> Result<Delivery, Status> {
    let targets = match r.recipients {
        Some(WireRecipients::AllExcept(list)) => Targets::AllExcept(list.ids),
        Some(WireRecipients::Clients(list)) => Targets::Clients(list.ids),
        None => return Err(Status::invalid_argument("deliver: recipients is required")),
    };
    Ok(Delivery {
        slot: r.slot,
        message_id: r.message_id,
        payload: r.payload,
        publisher: r.publisher,
        targets,
        timeout: Duration::from_millis(u64::from(r.timeout_ms)),
    })
}

pub fn deliver_request(d: Delivery) -> pb::DeliverRequest {
    let recipients = match d.targets {
        Targets::AllExcept(ids) => WireRecipients::AllExcept(pb::ClientList { ids }),
        Targets::Clients(ids) => WireRecipients::Clients(pb::ClientList { ids }),
    };
    pb::DeliverRequest {
        slot: d.slot,
        message_id: d.message_id,
        payload: d.payload,
        publisher: d.publisher,
        timeout_ms: u32::try_from(d.timeout.as_millis()).unwrap_or(u32::MAX),
        recipients: Some(recipients),
    }
}

pub fn delivery_outcomes(outcomes: Vec<(String, bool)>) -> pb::DeliverReply {
    pb::DeliverReply {
        outcomes: outcomes
            .into_iter()
            .map(|(client, delivered)| pb::DeliveryOutcome { client, delivered })
            .collect(),
    }
}

pub fn delivered(r: pb::DeliverReply) -> Vec<(String, bool)> {
    r.outcomes
        .into_iter()
        .map(|o| (o.client, o.delivered))
        .collect()
}

pub fn counter_value(v: counter::Value, replicas: u32) -> pb::CounterValue {
    pb::CounterValue {
        value: v.value,
        increments: v.increments,
        decrements: v.decrements,
        applied: v.applied,
        replicas,
    }
}

pub fn version(v: &register::Version) -> pb::Version {
    pb::Version {
        hlc: v.hlc,
        instance: v.instance.clone(),
    }
}

pub fn register_version(v: pb::Version) -> register::Version {
    register::Version {
        hlc: v.hlc,
        instance: v.instance,
    }
}

pub fn written(w: &register::Written, replicas: u32) -> pb::WriteReply {
    pb::WriteReply {
        version: Some(version(&w.version)),
        existed: w.existed,
        replicas,
    }
}

pub fn get_reply(found: register::Found) -> pb::GetReply {
    match found {
        register::Found::Live(e) => pb::GetReply {
            found: true,
            value: e.value,
            version: Some(version(&e.version)),
            deleted: false,
        },
        register::Found::Deleted(v) => pb::GetReply {
            found: false,
            value: Vec::new(),
            version: Some(version(&v)),
            deleted: true,
        },
        register::Found::Absent => pb::GetReply::default(),
    }
}

pub fn list_keys_reply(listed: register::Listed) -> pb::ListKeysReply {
    pb::ListKeysReply {
        entries: listed
            .entries
            .into_iter()
            .map(|e| pb::KeyValue {
                version: Some(version(&e.version)),
                key: e.key,
                value: e.value,
            })
            .collect(),
        truncated: listed.truncated,
    }
}

pub fn service(s: &registry::Service) -> pb::Service {
    pb::Service {
        app: s.app.clone(),
        address: s.address.clone(),
        updated_ms: s.updated_ms,
        expires_ms: s.expires_ms,
    }
}

pub fn service_change(c: ServiceChange) -> pb::ServiceChange {
    pb::ServiceChange {
        kind: c.kind as i32,
        service: Some(service(&c.service)),
    }
}

pub fn tick(t: Tick) -> pb::Tick {
    pb::Tick {
        slot: t.slot,
        number: t.number,
        due_ms: t.due_ms,
        sent_ms: t.sent_ms,
        instance: t.instance,
    }
}

pub fn status_reply(s: NodeStatus) -> pb::StatusReply {
    pb::StatusReply {
        instance: s.instance,
        version: env!("CARGO_PKG_VERSION").to_string(),
        config_generation: s.config_generation,
        slots: s
            .slots
            .into_iter()
            .map(|s| pb::SlotStatus {
                id: u32::from(s.id),
                r#type: s.type_name,
                calls: s.calls,
                errors: s.errors,
                restarts: s.restarts,
                delivered: s.delivered,
                failed_deliveries: s.failed_deliveries,
            })
            .collect(),
        routing: s.routing.map(|t| t.to_proto()),
        peers: s
            .peers
            .into_iter()
            .map(|p| pb::PeerStatus {
                id: p.id,
                address: p.address,
                healthy: p.healthy,
                rtt_us: p
                    .rtt
                    .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
                epoch: p.epoch,
                config_generation: p.config_generation,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn table(prev: Option<&RoutingTable>, leader: &str, healthy: &[&str]) -> RoutingTable {
        RoutingTable::compute(
            prev,
            leader,
            &set(healthy),
            [0, 1, 2, 3, 10, 11],
            |_, _| true,
            1,
        )
    }

    #[test]
    fn partitions_round_trip_and_are_checked() {
        let known: HashSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut t = table(None, "a", &["a", "b", "c"]);
        t.assign_partitions(None, &[(1, 16)], |_, _, _| true);
        let wire = t.to_proto();
        let one = wire.routes.iter().find(|r| r.slot == 1).expect("slot 1");
        assert_eq!(one.partitions.len(), 16);
        assert_eq!(RoutingTable::from_proto(wire.clone(), &known), Ok(t));
        let mut stranger = wire.clone();
        if let Some(r) = stranger.routes.iter_mut().find(|r| r.slot == 1) {
            r.partitions[5].owner = "mallory".into();
        }
        assert!(matches!(
            RoutingTable::from_proto(stranger, &known),
            Err(RoutingError::UnknownInstance { role: "owner", .. })
        ));
        let mut too_many = wire;
        if let Some(r) = too_many.routes.iter_mut().find(|r| r.slot == 1) {
            let first = r.partitions[0].clone();
            r.partitions.extend(std::iter::repeat_n(first, 1));
        }
        assert!(matches!(
            RoutingTable::from_proto(too_many, &known),
            Err(RoutingError::TooManyPartitions {
                slot: 1,
                offered: 17,
                max: 16
            })
        ));
    }

    #[test]
    fn proto_round_trip_and_refusals() {
        let known: HashSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let t = table(None, "a", &["a", "b", "c"]);
        assert_eq!(
            RoutingTable::from_proto(t.to_proto(), &known),
            Ok(t.clone())
        );

        let mut p = t.to_proto();
        p.leader = "mallory".into();
        assert!(matches!(
            RoutingTable::from_proto(p, &known),
            Err(RoutingError::UnknownInstance { role: "leader", .. })
        ));
        let mut p = t.to_proto();
        p.routes[0].slot = 100;
        assert_eq!(
            RoutingTable::from_proto(p, &known),
            Err(RoutingError::SlotOutOfRange(100))
        );
        let mut p = t.to_proto();
        p.routes[1].slot = p.routes[0].slot;
        assert!(matches!(
            RoutingTable::from_proto(p, &known),
            Err(RoutingError::DuplicateSlot(_))
        ));
        let mut p = t.to_proto();
        p.epoch = 0;
        assert_eq!(
            RoutingTable::from_proto(p, &known),
            Err(RoutingError::ZeroEpoch)
        );
        let mut p = t.to_proto();
        p.routes[0].standby = p.routes[0].owner.clone();
        assert!(matches!(
            RoutingTable::from_proto(p, &known),
            Err(RoutingError::OwnerIsStandby(..))
        ));
    }
}
