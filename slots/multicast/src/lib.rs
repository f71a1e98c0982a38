//! The built-in `multicast` slot type: a published message goes to the
//! registered clients only. A client that fails `deregTries` deliveries in a
//! row is deregistered.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use vss_slot_sdk::members::Members;
use vss_slot_sdk::{
    Config, Context, Delivery, DeliveryReport, Effect, Publish, Recipients, Reply, Request,
    Response, Slot, SlotError,
};

#[derive(Debug)]
pub struct Multicast {
    members: Members,
}

impl Multicast {
    pub fn new(dereg_tries: u64) -> Self {
        Self {
            members: Members::new(dereg_tries),
        }
    }

    pub fn members(&self) -> &Members {
        &self.members
    }

    fn publish(&self, p: Publish) -> Reply {
        if self.members.is_empty() {
            return Reply::of(Response::Accepted);
        }
        Reply {
            response: Response::Accepted,
            effects: vec![Effect::Deliver(Delivery {
                message_id: p.message_id,
                payload: p.payload,
                recipients: Recipients::Clients(self.members.ids().cloned().collect()),
            })],
        }
    }
}

impl Slot for Multicast {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Self::new(config.u64_at_least("deregTries", 1, Some(3))?))
    }

    fn handle(&mut self, _ctx: &Context, req: Request) -> Result<Reply, SlotError> {
        match req {
            Request::Publish(p) => Ok(self.publish(p)),
            Request::Register(client) => {
                self.members.register(client)?;
                Ok(Reply::of(Response::Accepted))
            }
            Request::Deregister(client) => {
                self.members.deregister(&client);
                Ok(Reply::of(Response::Accepted))
            }
            Request::DeliveryReport(DeliveryReport {
                client, delivered, ..
            }) => {
                self.members.record(&client, delivered);
                Ok(Reply::of(Response::Accepted))
            }
            other => Err(SlotError::unsupported("multicast", &other)),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        self.members.snapshot()
    }

    fn merge(&mut self, state: &[u8]) -> Result<(), String> {
        self.members.merge_snapshot(state)
    }
}

vss_slot_sdk::export_slot!(Multicast);

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Context = Context {
        now_ms: 0,
        random: 0,
    };

    fn publish(m: &mut Multicast) -> Vec<Effect> {
        let p = Publish {
            message_id: 1,
            payload: b"m".to_vec(),
            publisher: None,
        };
        m.handle(&NOW, Request::Publish(p))
            .expect("publish")
            .effects
    }

    #[test]
    fn delivers_to_registered_clients_only() {
        let mut m = Multicast::new(3);
        assert!(publish(&mut m).is_empty(), "no members, no deliveries");
        m.handle(&NOW, Request::Register("a".into()))
            .expect("register");
        m.handle(&NOW, Request::Register("b".into()))
            .expect("register");
        m.handle(&NOW, Request::Deregister("a".into()))
            .expect("deregister");
        let Effect::Deliver(d) = &publish(&mut m)[0];
        assert_eq!(d.recipients, Recipients::Clients(vec!["b".into()]));
    }

    #[test]
    fn failed_deliveries_deregister_after_dereg_tries() {
        let mut m = Multicast::new(2);
        m.handle(&NOW, Request::Register("a".into()))
            .expect("register");
        for _ in 0..2 {
            let report = DeliveryReport {
                message_id: 1,
                client: "a".into(),
                delivered: false,
            };
            m.handle(&NOW, Request::DeliveryReport(report))
                .expect("report");
        }
        assert!(m.members().is_empty());
    }
}
