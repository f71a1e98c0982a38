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

pub fn status(format: Format, endpoint: &str, s: &StatusReply) {
    match format {
        Format::Json => {
            let slots: Vec<_> = s
                .slots
                .iter()
                .map(|x| json!({"id": x.id, "type": x.r#type, "calls": x.calls, "errors": x.errors, "restarts": x.restarts}))
                .collect();
            println!(
                "{}",
                json!({
                    "endpoint": endpoint,
                    "instance": s.instance,
                    "version": s.version,
                    "configGeneration": s.config_generation,
                    "slots": slots,
                })
            );
        }
        Format::Text => {
            println!(
                "{endpoint}: instance {} (v{}), config generation {}",
                s.instance, s.version, s.config_generation
            );
            for x in &s.slots {
                println!(
                    "  slot {:>2}  {:<14} calls {:>8}  errors {:>6}  restarts {}",
                    x.id, x.r#type, x.calls, x.errors, x.restarts
                );
            }
        }
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
