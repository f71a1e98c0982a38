//! Printing results as text or as one JSON object per line.
//!
//! Every function returns the write error instead of panicking as
//! `println!` does: a reader that goes away (`vss status | head -1`) is
//! not a failure, and `main` ends the command quietly on a broken pipe.

use std::io::Write as _;

use serde_json::json;
use vss_client::{
    AnnounceReply, CounterValue, Delivery, GetReply, Grant, ListKeysReply, Published, Service,
    ServiceChange, StatusReply, Tick, Version, WithdrawReply, WriteReply,
};

/// `println!` that hands a write error to the caller.
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}

/// `print!` that hands a write error to the caller.
macro_rules! say_part {
    ($($arg:tt)*) => {
        write!(std::io::stdout().lock(), $($arg)*)?
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

pub fn grant(format: Format, slot: u32, g: &Grant) -> std::io::Result<()> {
    match format {
        Format::Json => say!(
            "{}",
            json!({"slot": slot, "granted": g.granted, "remaining": g.remaining, "resetMs": g.reset_ms})
        ),
        Format::Text => say!(
            "granted {} (remaining {}, reset in {} ms)",
            g.granted,
            g.remaining,
            g.reset_ms
        ),
    }
    Ok(())
}

pub fn call(format: Format, slot: u32, op: &str, payload: &[u8]) -> std::io::Result<()> {
    let text = std::str::from_utf8(payload).ok();
    match (format, text) {
        (Format::Json, Some(t)) => say!("{}", json!({"slot": slot, "op": op, "payload": t})),
        (Format::Json, None) => say!(
            "{}",
            json!({"slot": slot, "op": op, "payloadHex": hex(payload)})
        ),
        (Format::Text, Some(t)) => say!("{t}"),
        (Format::Text, None) => say!("{}", hex(payload)),
    }
    Ok(())
}

/// The cluster as its instances report it: one JSON document, or a text
/// summary followed by a block per instance. The routing shown is the
/// newest table any instance holds.
pub fn cluster_status(
    format: Format,
    answers: &[(String, Result<StatusReply, String>)],
) -> std::io::Result<()> {
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
                        .map(|r| {
                            let partitions: Vec<_> = r
                                .partitions
                                .iter()
                                .map(|p| json!({"owner": p.owner, "standby": none_if_empty(&p.standby)}))
                                .collect();
                            json!({"slot": r.slot, "owner": r.owner, "standby": none_if_empty(&r.standby), "partitions": partitions})
                        })
                        .collect()
                })
                .unwrap_or_default();
            say!(
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
                Some(t) => say!(
                    "leader {} (fallback {}), routing epoch {}",
                    t.leader,
                    none_if_empty(&t.fallback_leader).unwrap_or("none"),
                    t.epoch
                ),
                None => say!("no routing table yet"),
            }
            if let Some(t) = newest {
                for r in &t.routes {
                    if r.partitions.is_empty() {
                        say!(
                            "  slot {:>2}  owner {:<12} standby {}",
                            r.slot,
                            r.owner,
                            none_if_empty(&r.standby).unwrap_or("-")
                        );
                    } else {
                        say!(
                            "  slot {:>2}  {} partitions, owned by {}",
                            r.slot,
                            r.partitions.len(),
                            partition_owners(r)
                        );
                    }
                }
            }
            for (endpoint, answer) in answers {
                match answer {
                    Ok(s) => instance_text(endpoint, s)?,
                    Err(e) => say!("{endpoint}: DOWN ({e})"),
                }
            }
        }
    }
    Ok(())
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

fn instance_text(endpoint: &str, s: &StatusReply) -> std::io::Result<()> {
    say!(
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
        say!("  peer {:<12} {:<24} {rtt}", p.id, p.address);
    }
    for x in &s.slots {
        say!(
            "  slot {:>2}  {:<14} calls {:>8}  errors {:>6}  restarts {}",
            x.id,
            x.r#type,
            x.calls,
            x.errors,
            x.restarts
        );
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn published(format: Format, slot: u32, p: &Published) -> std::io::Result<()> {
    match format {
        Format::Json => say!(
            "{}",
            json!({"slot": slot, "messageId": p.message_id, "delivered": p.delivered, "failed": p.failed, "takenBy": p.taken_by})
        ),
        Format::Text => {
            say_part!(
                "message {} delivered to {}, failed {}",
                p.message_id,
                p.delivered,
                p.failed
            );
            match &p.taken_by {
                Some(c) => say!(", taken by {c}"),
                None => say!(),
            }
        }
    }
    Ok(())
}

pub fn event(format: Format, e: &Delivery) -> std::io::Result<()> {
    let text = String::from_utf8_lossy(&e.payload);
    match format {
        Format::Json => say!(
            "{}",
            json!({"slot": e.slot, "messageId": e.message_id, "payload": text, "publisher": e.publisher})
        ),
        Format::Text => say!(
            "slot {} message {} from {:?}: {text}",
            e.slot,
            e.message_id,
            e.publisher
        ),
    }
    Ok(())
}

pub fn membership(format: Format, what: &str, slot: u32, client_id: &str) -> std::io::Result<()> {
    match format {
        Format::Json => say!(
            "{}",
            json!({"slot": slot, "clientId": client_id, "status": what})
        ),
        Format::Text => say!("{what} {client_id} on slot {slot}"),
    }
    Ok(())
}

pub fn counter(format: Format, slot: u32, v: &CounterValue) -> std::io::Result<()> {
    match format {
        Format::Json => say!(
            "{}",
            json!({"slot": slot, "value": v.value, "increments": v.increments, "decrements": v.decrements, "applied": v.applied, "replicas": v.replicas})
        ),
        Format::Text => say!(
            "{} (increments {}, decrements {})",
            v.value,
            v.increments,
            v.decrements
        ),
    }
    Ok(())
}

fn version_json(v: Option<&Version>) -> serde_json::Value {
    v.map_or(
        serde_json::Value::Null,
        |v| json!({"hlc": v.hlc, "instance": v.instance}),
    )
}

fn version_text(v: Option<&Version>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{}@{}", v.hlc, v.instance))
}

/// Bytes as text when they are UTF-8; the JSON form names hex otherwise.
fn bytes_json(bytes: &[u8]) -> (&'static str, serde_json::Value) {
    match std::str::from_utf8(bytes) {
        Ok(t) => ("value", json!(t)),
        Err(_) => ("valueHex", json!(hex(bytes))),
    }
}

pub fn written(
    format: Format,
    slot: u32,
    key: &str,
    what: &str,
    w: &WriteReply,
) -> std::io::Result<()> {
    match format {
        Format::Json => say!(
            "{}",
            json!({"slot": slot, "key": key, "status": what, "existed": w.existed, "version": version_json(w.version.as_ref()), "replicas": w.replicas})
        ),
        Format::Text => say!(
            "{what} {key} (version {}, on {} peers)",
            version_text(w.version.as_ref()),
            w.replicas
        ),
    }
    Ok(())
}

pub fn got(format: Format, slot: u32, key: &str, g: &GetReply) -> std::io::Result<()> {
    match format {
        Format::Json => {
            let mut doc = json!({"slot": slot, "key": key, "found": g.found, "deleted": g.deleted, "version": version_json(g.version.as_ref())});
            if g.found {
                let (name, value) = bytes_json(&g.value);
                doc[name] = value;
            }
            say!("{doc}");
        }
        Format::Text if g.found => match std::str::from_utf8(&g.value) {
            Ok(t) => say!("{t}"),
            Err(_) => say!("{}", hex(&g.value)),
        },
        Format::Text if g.deleted => say!(
            "{key}: deleted (version {})",
            version_text(g.version.as_ref())
        ),
        Format::Text => say!("{key}: not found"),
    }
    Ok(())
}

pub fn keys(format: Format, slot: u32, listed: &ListKeysReply) -> std::io::Result<()> {
    match format {
        Format::Json => {
            let entries: Vec<_> = listed
                .entries
                .iter()
                .map(|e| {
                    let mut doc =
                        json!({"key": e.key, "version": version_json(e.version.as_ref())});
                    let (name, value) = bytes_json(&e.value);
                    doc[name] = value;
                    doc
                })
                .collect();
            say!(
                "{}",
                json!({"slot": slot, "entries": entries, "truncated": listed.truncated})
            );
        }
        Format::Text => {
            for e in &listed.entries {
                say!("{} = {}", e.key, String::from_utf8_lossy(&e.value));
            }
            if listed.truncated {
                say!("(more keys match; narrow the prefix)");
            }
        }
    }
    Ok(())
}

fn service_json(s: &Service) -> serde_json::Value {
    json!({"app": s.app, "address": s.address, "updatedMs": s.updated_ms, "expiresMs": s.expires_ms})
}

pub fn services(format: Format, slot: u32, services: &[Service]) -> std::io::Result<()> {
    match format {
        Format::Json => {
            let list: Vec<_> = services.iter().map(service_json).collect();
            say!("{}", json!({"slot": slot, "services": list}));
        }
        Format::Text => {
            for s in services {
                say!(
                    "{:<24} {:<24} updated {} expires {}",
                    s.app,
                    s.address,
                    s.updated_ms,
                    s.expires_ms
                );
            }
        }
    }
    Ok(())
}

pub fn announced(
    format: Format,
    slot: u32,
    app: &str,
    address: &str,
    a: &AnnounceReply,
) -> std::io::Result<()> {
    match format {
        Format::Json => say!(
            "{}",
            json!({"slot": slot, "app": app, "address": address, "added": a.added, "expiresMs": a.expires_ms, "replicas": a.replicas})
        ),
        Format::Text => say!(
            "{} {app} {address}, expires at {} (on {} peers)",
            if a.added { "announced" } else { "renewed" },
            a.expires_ms,
            a.replicas
        ),
    }
    Ok(())
}

pub fn withdrawn(
    format: Format,
    slot: u32,
    app: &str,
    address: &str,
    w: &WithdrawReply,
) -> std::io::Result<()> {
    match format {
        Format::Json => say!(
            "{}",
            json!({"slot": slot, "app": app, "address": address, "removed": w.removed, "replicas": w.replicas})
        ),
        Format::Text if w.removed => say!("withdrew {app} {address}"),
        Format::Text => say!("{app} {address} was not announced"),
    }
    Ok(())
}

pub fn service_change(format: Format, slot: u32, c: &ServiceChange) -> std::io::Result<()> {
    let kind = match c.kind() {
        vss_client::ServiceChangeKind::Added => "added",
        vss_client::ServiceChangeKind::Renewed => "renewed",
        vss_client::ServiceChangeKind::Expired => "expired",
        vss_client::ServiceChangeKind::Unspecified => "unknown",
    };
    let Some(s) = &c.service else {
        return Ok(());
    };
    match format {
        Format::Json => say!(
            "{}",
            json!({"slot": slot, "change": kind, "service": service_json(s)})
        ),
        Format::Text => say!("{kind:<8} {} {}", s.app, s.address),
    }
    Ok(())
}

pub fn tick(format: Format, t: &Tick) -> std::io::Result<()> {
    match format {
        Format::Json => say!(
            "{}",
            json!({"slot": t.slot, "number": t.number, "dueMs": t.due_ms, "sentMs": t.sent_ms, "instance": t.instance})
        ),
        Format::Text => say!(
            "tick {} (due {}, from {} +{} ms)",
            t.number,
            t.due_ms,
            t.instance,
            t.sent_ms.saturating_sub(t.due_ms)
        ),
    }
    Ok(())
}

/// How many partitions of a split slot each instance owns: `vss-1 8,
/// vss-2 8`.
pub fn partition_owners(route: &vss_client::SlotRoute) -> String {
    let mut owned: std::collections::BTreeMap<&str, usize> = Default::default();
    for p in &route.partitions {
        *owned.entry(p.owner.as_str()).or_default() += 1;
    }
    owned
        .into_iter()
        .map(|(owner, n)| format!("{owner} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
