//! The built-in `random` slot type: each published message goes to ONE
//! registered client, chosen with the host's randomness. When a delivery
//! fails, the next candidate (chosen at random among the members not yet
//! tried for that message) gets it, while the host's timeout allows.
//! A client that fails `deregTries` deliveries in a row is deregistered.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use vss_slot_sdk::members::Members;
use vss_slot_sdk::{
    Config, Context, Delivery, DeliveryReport, Effect, Recipients, Reply, Request, Response, Slot,
    SlotError,
};

/// Messages whose delivery is still open, for retries; the oldest are
/// forgotten first (the host's timeout has ended them long before).
const MAX_OPEN: usize = 4_096;

#[derive(Debug)]
struct Open {
    payload: Vec<u8>,
    tried: Vec<String>,
}

#[derive(Debug)]
pub struct Random {
    members: Members,
    open: BTreeMap<u64, Open>,
}

impl Random {
    pub fn new(dereg_tries: u64) -> Self {
        Self {
            members: Members::new(dereg_tries),
            open: BTreeMap::new(),
        }
    }

    pub fn members(&self) -> &Members {
        &self.members
    }

    /// A member not in `tried`, picked with `random`.
    fn pick(&self, random: u64, tried: &[String]) -> Option<String> {
        let candidates: Vec<&String> = self.members.ids().filter(|m| !tried.contains(m)).collect();
        if candidates.is_empty() {
            return None;
        }
        let i = (random % candidates.len() as u64) as usize;
        Some(candidates[i].clone())
    }

    fn deliver(&mut self, message_id: u64, random: u64, mut open: Open) -> Vec<Effect> {
        let Some(client) = self.pick(random, &open.tried) else {
            return Vec::new();
        };
        open.tried.push(client.clone());
        let effect = Effect::Deliver(Delivery {
            message_id,
            payload: open.payload.clone(),
            recipients: Recipients::Clients(vec![client]),
        });
        if self.open.len() >= MAX_OPEN {
            self.open.pop_first();
        }
        self.open.insert(message_id, open);
        vec![effect]
    }
}

impl Slot for Random {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Self::new(config.u64_at_least("deregTries", 1, Some(3))?))
    }

    fn handle(&mut self, ctx: &Context, req: Request) -> Result<Reply, SlotError> {
        let effects = match req {
            Request::Publish(p) => {
                let open = Open {
                    payload: p.payload,
                    tried: Vec::new(),
                };
                self.deliver(p.message_id, ctx.random, open)
            }
            Request::Register(client) => {
                self.members.register(client)?;
                Vec::new()
            }
            Request::Deregister(client) => {
                self.members.deregister(&client);
                Vec::new()
            }
            Request::DeliveryReport(DeliveryReport {
                message_id,
                client,
                delivered,
            }) => {
                self.members.record(&client, delivered);
                match self.open.remove(&message_id) {
                    Some(open) if !delivered => self.deliver(message_id, ctx.random, open),
                    _ => Vec::new(),
                }
            }
            other => return Err(SlotError::unsupported("random", &other)),
        };
        Ok(Reply {
            response: Response::Accepted,
            effects,
        })
    }

    fn snapshot(&self) -> Vec<u8> {
        self.members.snapshot()
    }

    fn merge(&mut self, state: &[u8]) -> Result<(), String> {
        self.members.merge_snapshot(state)
    }
}

vss_slot_sdk::export_slot!(Random);

#[cfg(test)]
mod tests {
    use super::*;
    use vss_slot_sdk::Publish;

    fn ctx(random: u64) -> Context {
        Context { now_ms: 0, random }
    }

    fn target(effects: &[Effect]) -> Option<String> {
        match effects.first() {
            Some(Effect::Deliver(Delivery {
                recipients: Recipients::Clients(c),
                ..
            })) => {
                assert_eq!(c.len(), 1, "exactly one recipient");
                Some(c[0].clone())
            }
            _ => None,
        }
    }

    fn with_members(names: &[&str]) -> Random {
        let mut r = Random::new(3);
        for n in names {
            r.handle(&ctx(0), Request::Register((*n).into()))
                .expect("register");
        }
        r
    }

    #[test]
    fn picks_one_member_by_the_host_randomness() {
        let mut r = with_members(&["a", "b", "c"]);
        let p = |id| {
            Request::Publish(Publish {
                message_id: id,
                payload: vec![1],
                publisher: None,
            })
        };
        assert_eq!(
            target(&r.handle(&ctx(0), p(1)).expect("publish").effects).as_deref(),
            Some("a")
        );
        assert_eq!(
            target(&r.handle(&ctx(4), p(2)).expect("publish").effects).as_deref(),
            Some("b")
        );
        assert_eq!(
            target(&r.handle(&ctx(5), p(3)).expect("publish").effects).as_deref(),
            Some("c")
        );
    }

    #[test]
    fn a_failed_delivery_moves_on_to_an_untried_member() {
        let mut r = with_members(&["a", "b"]);
        let p = Request::Publish(Publish {
            message_id: 9,
            payload: vec![1],
            publisher: None,
        });
        let first = target(&r.handle(&ctx(0), p).expect("publish").effects).expect("a target");
        let fail = |c: &str| {
            Request::DeliveryReport(DeliveryReport {
                message_id: 9,
                client: c.into(),
                delivered: false,
            })
        };
        let second =
            target(&r.handle(&ctx(0), fail(&first)).expect("report").effects).expect("retry");
        assert_ne!(first, second);
        assert_eq!(
            target(&r.handle(&ctx(0), fail(&second)).expect("report").effects),
            None,
            "all tried"
        );
    }

    #[test]
    fn no_members_means_no_delivery() {
        let mut r = Random::new(1);
        let p = Request::Publish(Publish {
            message_id: 1,
            payload: vec![],
            publisher: None,
        });
        assert!(r.handle(&ctx(0), p).expect("publish").effects.is_empty());
    }
}
