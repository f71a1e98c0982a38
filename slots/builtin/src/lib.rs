//! The built-in VSS slot types as Wasm component bytes, compiled from
//! `slots/` by this crate's build script and embedded in the binary.
//!
//! This crate knows nothing about running them; `vss-slot-host` does.

/// The `token-bucket` slot type.
pub const TOKEN_BUCKET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/vss_slot_token_bucket.wasm"));
/// The `leaky-bucket` slot type.
pub const LEAKY_BUCKET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/vss_slot_leaky_bucket.wasm"));

/// The `broadcast` slot type.
pub const BROADCAST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vss_slot_broadcast.wasm"));
/// The `multicast` slot type.
pub const MULTICAST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vss_slot_multicast.wasm"));
/// The `random` slot type.
pub const RANDOM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vss_slot_random.wasm"));
/// The `counter` slot type.
pub const COUNTER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vss_slot_counter.wasm"));
/// The `register` slot type.
pub const REGISTER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vss_slot_register.wasm"));
/// The `registry` slot type.
pub const REGISTRY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vss_slot_registry.wasm"));
/// The `tick` slot type.
pub const TICK: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vss_slot_tick.wasm"));

/// The component of a built-in slot type, by its config `type` name.
pub fn by_type(type_name: &str) -> Option<&'static [u8]> {
    match type_name {
        "token-bucket" => Some(TOKEN_BUCKET),
        "leaky-bucket" => Some(LEAKY_BUCKET),
        "broadcast" => Some(BROADCAST),
        "multicast" => Some(MULTICAST),
        "random" => Some(RANDOM),
        "counter" => Some(COUNTER),
        "register" => Some(REGISTER),
        "registry" => Some(REGISTRY),
        "tick" => Some(TICK),
        _ => None,
    }
}

/// Modules for tests and examples, not slot types users configure by name.
#[cfg(feature = "test-modules")]
pub mod testing {
    /// `slots/examples/fixed-window`: the example custom slot type.
    pub const FIXED_WINDOW: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/vss_slot_fixed_window.wasm"));
    /// `slots/testing/misbehave`: traps, loops or allocates without end on request.
    pub const MISBEHAVE: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/vss_slot_misbehave.wasm"));
}
