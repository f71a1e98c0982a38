//! Printing results as text or as one JSON object per line.

use serde_json::json;
use vss_client::{Delivery, Grant, Published, StatusReply};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn grant(format: Format, slot: u32, g: &Grant) {
    match format {
        Format::Json => println!(
            "{}",
            json!({"slot": slot, "granted": g.granted, "remaining": g.remaining, "resetMs": g.reset_ms})
        ),
        Format::Text => println!(
            "granted {} (remaining {}, reset in {} ms)",
            g.granted, g.remaining, g.reset_ms
        ),
    }
}

pub fn call(format: Format, slot: u32, op: &str, payload: &[u8]) {
    let text = std::str::from_utf8(payload).ok();
    match (format, text) {
        (Format::Json, Some(t)) => println!("{}", json!({"slot": slot, "op": op, "payload": t})),
        (Format::Json, None) => println!(
            "{}",
            json!({"slot": slot, "op": op, "payloadHex": hex(payload)})
        ),
        (Format::Text, Some(t)) => println!("{t}"),
        (Format::Text, None) => println!("{}", hex(payload)),
    }
}

/// The cluster as its instances report it: one JSON document, or a text
/// summary followed by a block per instance. The routing shown is the
/// newest table any instance holds.
pub fn cluster_status(format: Format, answers: &[(String, Result<StatusReply, String>)]) {
    let newest = answers
        .iter()
        .filter_map(|(_, a)| a.as_ref().ok()?.routing.as_ref())
        .max_by_key(|t| (t.epoch, t.leader.clone()));
    match format {
        Format::Json => {
            let instances: Vec<_> = answers
                .iter()
                .map(|(endpoint, answer)| match answer {
                    Ok(s) => instance_json(endpoint, s),
                    Err(e) => json!({"endpoint": endpoint, "up": false, "error": e}),
                })
                .collect();
            let routing: Vec<_> = newest
                .map(|t| {
                    t.routes
                        .iter()
                        .map(|r| json!({"slot": r.slot, "owner": r.owner, "standby": none_if_empty(&r.standby)}))
                        .collect()
                })
                .unwrap_or_default();
            println!(
                "{}",
                json!({
                    "leader": newest.map(|t| t.leader.as_str()),
                    "fallbackLeader": newest.and_then(|t| none_if_empty(&t.fallback_leader)),
                    "epoch": newest.map_or(0, |t| t.epoch),
                    "instances": instances,
                    "routing": routing,
                })
            );
        }
        Format::Text => {
            match newest {
                Some(t) => println!(
                    "leader {} (fallback {}), routing epoch {}",
                    t.leader,
                    none_if_empty(&t.fallback_leader).unwrap_or("none"),
                    t.epoch
                ),
                None => println!("no routing table yet"),
            }
            if let Some(t) = newest {
                for r in &t.routes {
                    println!(
                        "  slot {:>2}  owner {:<12} standby {}",
                        r.slot,
                        r.owner,
                        none_if_empty(&r.standby).unwrap_or("-")
                    );
                }
            }
            for (endpoint, answer) in answers {
                match answer {
                    Ok(s) => instance_text(endpoint, s),
                    Err(e) => println!("{endpoint}: DOWN ({e})"),
                }
            }
        }
    }
}

fn none_if_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn instance_json(endpoint: &str, s: &StatusReply) -> serde_json::Value {
    let slots: Vec<_> = s
        .slots
        .iter()
        .map(|x| json!({"id": x.id, "type": x.r#type, "calls": x.calls, "errors": x.errors, "restarts": x.restarts}))
        .collect();
    let peers: Vec<_> = s
        .peers
        .iter()
        .map(|p| json!({"id": p.id, "address": p.address, "healthy": p.healthy, "rttUs": p.rtt_us, "epoch": p.epoch, "configGeneration": p.config_generation}))
        .collect();
    json!({
        "endpoint": endpoint,
        "up": true,
        "instance": s.instance,
        "version": s.version,
        "configGeneration": s.config_generation,
        "epoch": s.routing.as_ref().map_or(0, |t| t.epoch),
        "leader": s.routing.as_ref().map(|t| t.leader.as_str()),
        "peers": peers,
        "slots": slots,
    })
}

fn instance_text(endpoint: &str, s: &StatusReply) {
    println!(
        "{endpoint}: instance {} (v{}), config generation {}, epoch {}",
        s.instance,
        s.version,
        s.config_generation,
        s.routing.as_ref().map_or(0, |t| t.epoch)
    );
    for p in &s.peers {
        let rtt = if p.healthy {
            format!("rtt {} us", p.rtt_us)
        } else {
            "DOWN".to_string()
        };
        println!("  peer {:<12} {:<24} {rtt}", p.id, p.address);
    }
    for x in &s.slots {
        println!(
            "  slot {:>2}  {:<14} calls {:>8}  errors {:>6}  restarts {}",
            x.id, x.r#type, x.calls, x.errors, x.restarts
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn published(format: Format, slot: u32, p: &Published) {
    match format {
        Format::Json => println!(
            "{}",
            json!({"slot": slot, "messageId": p.message_id, "delivered": p.delivered, "failed": p.failed, "takenBy": p.taken_by})
        ),
        Format::Text => {
            print!(
                "message {} delivered to {}, failed {}",
                p.message_id, p.delivered, p.failed
            );
            match &p.taken_by {
                Some(c) => println!(", taken by {c}"),
                None => println!(),
            }
        }
    }
}

pub fn event(format: Format, e: &Delivery) {
    let text = String::from_utf8_lossy(&e.payload);
    match format {
        Format::Json => println!(
            "{}",
            json!({"slot": e.slot, "messageId": e.message_id, "payload": text, "publisher": e.publisher})
        ),
        Format::Text => println!(
            "slot {} message {} from {:?}: {text}",
            e.slot, e.message_id, e.publisher
        ),
    }
}

pub fn membership(format: Format, what: &str, slot: u32, client_id: &str) {
    match format {
        Format::Json => println!(
            "{}",
            json!({"slot": slot, "clientId": client_id, "status": what})
        ),
        Format::Text => println!("{what} {client_id} on slot {slot}"),
    }
}
