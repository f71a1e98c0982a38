//! A slot module that misbehaves on request, for the host's isolation tests.
//!
//! Custom operations: `trap` (panics, which traps), `loop` (never returns),
//! `alloc` (allocates until memory runs out), `count` (returns how many times
//! it was called since init, as 8 little-endian bytes) and `echo`.
//! Config `failInit: true` makes `init` fail; `tickMessage: TEXT` makes every
//! `tick` broadcast TEXT.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use vss_slot_sdk::{
    Config, Context, Custom, Delivery, Effect, Recipients, Reply, Request, Response, Slot,
    SlotError,
};

#[derive(Debug)]
pub struct Misbehave {
    calls: u64,
    tick_message: Option<String>,
}

impl Slot for Misbehave {
    fn init(config: &Config) -> Result<Self, String> {
        if config.get("failInit") == Some("true") {
            return Err("field `failInit`: asked to fail".into());
        }
        Ok(Self {
            calls: 0,
            tick_message: config.get("tickMessage").map(String::from),
        })
    }

    fn handle(&mut self, _ctx: &Context, req: Request) -> Result<Reply, SlotError> {
        self.calls += 1;
        let Request::Custom(Custom { op, payload }) = req else {
            return Err(SlotError::unsupported("misbehave", &req));
        };
        let out = match op.as_str() {
            "trap" => panic!("asked to trap"),
            "loop" => {
                let mut i: u64 = 0;
                loop {
                    i = core::hint::black_box(i.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(core::hint::black_box(alloc::vec![1u8; 1 << 20]));
                }
            }
            "count" => self.calls.to_le_bytes().to_vec(),
            "echo" => payload,
            other => {
                return Err(SlotError::InvalidArgument(alloc::format!(
                    "unknown op `{other}`"
                )));
            }
        };
        Ok(Reply::of(Response::Custom(out)))
    }

    fn tick(&mut self, ctx: &Context) -> Vec<Effect> {
        self.tick_message
            .as_ref()
            .map(|m| {
                alloc::vec![Effect::Deliver(Delivery {
                    message_id: ctx.now_ms,
                    payload: m.as_bytes().to_vec(),
                    recipients: Recipients::AllExcept(Vec::new()),
                })]
            })
            .unwrap_or_default()
    }

    fn snapshot(&self) -> Vec<u8> {
        self.calls.to_le_bytes().to_vec()
    }

    fn merge(&mut self, _state: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

vss_slot_sdk::export_slot!(Misbehave);
