//! Messages from the network: every mesh message a peer sends, the control
//! API's push, the client's event-stream messages and batch acquires, and
//! the binary payloads the runtime decodes from slots and peers. Decoding
//! answers an error, never panics; a message that decodes re-encodes to
//! bytes that decode to the same message.
//!
//! Input: one byte picks the message type, the rest is its encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use vss_proto::v1 as pb;
use vss_slot_sdk::codec::Wire;

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    if let Ok(m) = M::decode(bytes) {
        let again = M::decode(m.encode_to_vec().as_slice()).expect("re-encoded message decodes");
        assert_eq!(m, again, "a decoded message re-encodes to itself");
    }
}

fn wire<W: Wire>(bytes: &[u8]) {
    if let Ok(v) = W::from_bytes(bytes) {
        W::from_bytes(&v.to_bytes()).expect("a decoded payload re-encodes to a valid one");
    }
}

fuzz_target!(|data: &[u8]| {
    let [kind, bytes @ ..] = data else {
        return;
    };
    match kind % 19 {
        0 => round_trip::<pb::HeartbeatRequest>(bytes),
        1 => round_trip::<pb::HeartbeatReply>(bytes),
        2 => round_trip::<pb::RoutingTable>(bytes),
        3 => round_trip::<pb::ReplicateRequest>(bytes),
        4 => round_trip::<pb::DeliverRequest>(bytes),
        5 => round_trip::<pb::DeliverReply>(bytes),
        6 => round_trip::<pb::FetchStateReply>(bytes),
        7 => round_trip::<pb::ApplyConfigRequest>(bytes),
        8 => round_trip::<pb::ClientMessage>(bytes),
        9 => round_trip::<pb::AcquireBatchRequest>(bytes),
        10 => round_trip::<pb::Event>(bytes),
        11 => wire::<vss_slot_counter::wire::Change>(bytes),
        12 => wire::<vss_slot_counter::wire::Value>(bytes),
        13 => wire::<vss_slot_sdk::limiter::Take>(bytes),
        14 => wire::<vss_slot_sdk::limiter::Taken>(bytes),
        15 => wire::<vss_slot_register::wire::Set>(bytes),
        16 => wire::<vss_slot_register::wire::Found>(bytes),
        17 => wire::<vss_slot_registry::wire::Announce>(bytes),
        _ => wire::<vss_slot_registry::wire::Services>(bytes),
    }
});
