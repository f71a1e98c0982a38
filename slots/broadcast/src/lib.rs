//! The built-in `broadcast` slot type: a published message goes to every
//! other connected client, at least once. The host resolves "every other
//! connected client" and waits for acknowledgements within the slot's
//! `timeout`; this module only decides the recipients.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use vss_slot_sdk::{
    Config, Context, Delivery, Effect, Publish, Recipients, Reply, Request, Response, Slot,
    SlotError,
};

#[derive(Debug, Default)]
pub struct Broadcast;

impl Broadcast {
    /// Who gets a message: everyone connected but its publisher.
    pub fn publish(&self, p: Publish) -> Reply {
        let except = p.publisher.into_iter().collect();
        Reply {
            response: Response::Accepted,
            effects: vec![Effect::Deliver(Delivery {
                message_id: p.message_id,
                payload: p.payload,
                recipients: Recipients::AllExcept(except),
            })],
        }
    }
}

impl Slot for Broadcast {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Broadcast)
    }

    fn handle(&mut self, _ctx: &Context, req: Request) -> Result<Reply, SlotError> {
        match req {
            Request::Publish(p) => Ok(self.publish(p)),
            // Outcomes change nothing: broadcast keeps no per-client state.
            Request::DeliveryReport(_) => Ok(Reply::of(Response::Accepted)),
            Request::Register(_) | Request::Deregister(_) => Err(SlotError::Unsupported(
                "broadcast slots deliver to every connected client; register and deregister apply to multicast and random slots".into(),
            )),
            other => Err(SlotError::unsupported("broadcast", &other)),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }

    fn merge(&mut self, _state: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

vss_slot_sdk::export_slot!(Broadcast);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_to_all_but_the_publisher() {
        let reply = Broadcast.publish(Publish {
            message_id: 7,
            payload: b"hello".to_vec(),
            publisher: Some("me".into()),
        });
        assert_eq!(
            reply.effects,
            vec![Effect::Deliver(Delivery {
                message_id: 7,
                payload: b"hello".to_vec(),
                recipients: Recipients::AllExcept(vec!["me".into()]),
            })]
        );
    }

    #[test]
    fn refuses_registration() {
        let err = Broadcast
            .handle(
                &Context {
                    now_ms: 0,
                    random: 0,
                },
                Request::Register("c".into()),
            )
            .expect_err("unsupported");
        assert!(matches!(err, SlotError::Unsupported(m) if m.contains("multicast and random")));
    }
}
