//! Checked configuration: what the runtime actually runs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ConfigError;
use crate::rls::{self, RlsRule};
use crate::spec::{SlotSpec, SlotsConfig};

/// A cluster has exactly this many slots, ids `0..MAX_SLOTS`.
pub const MAX_SLOTS: usize = 100;
/// Default bound on distinct keys per limiter slot.
pub const DEFAULT_MAX_KEYS: u64 = 10_000;
/// Upper bound on `maxKeys`: keys live in the slot's Wasm memory, capped at
/// 64 MiB by default; 100000 keys of up to 256 bytes fit.
pub const MAX_MAX_KEYS: u64 = 100_000;

/// A slot id known to be in `0..100`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotId(u8);

impl SlotId {
    /// Checks a wire or file value.
    pub fn new(id: impl TryInto<u8>) -> Option<Self> {
        let id: u8 = id.try_into().ok()?;
        (usize::from(id) < MAX_SLOTS).then_some(Self(id))
    }

    pub fn get(self) -> u8 {
        self.0
    }

    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for SlotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Refill / leak period of a limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Second,
    Minute,
    Hour,
}

impl Period {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "second" => Some(Self::Second),
            "minute" => Some(Self::Minute),
            "hour" => Some(Self::Hour),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Second => "second",
            Self::Minute => "minute",
            Self::Hour => "hour",
        }
    }

    pub fn millis(self) -> u64 {
        match self {
            Self::Second => 1_000,
            Self::Minute => 60_000,
            Self::Hour => 3_600_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    pub bucket_size: u64,
    pub period: Period,
    pub refresh_rate: u64,
    pub tokens_per_req: u32,
    pub max_keys: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakyBucket {
    pub bucket_size: u64,
    pub period: Period,
    pub refresh_rate: u64,
    pub max_keys: u64,
}

/// Config of the signal types (`broadcast`, `multicast`, `random`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    /// How long a publish waits for acknowledgements.
    pub timeout: Duration,
    /// Consecutive failed deliveries that deregister a client (multicast,
    /// random; unused by broadcast).
    pub dereg_tries: u64,
}

/// Default publish timeout of signal slots.
pub const DEFAULT_SIGNAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest publish timeout accepted.
pub const MAX_SIGNAL_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `deregTries`.
pub const DEFAULT_DEREG_TRIES: u64 = 3;

/// A PN-counter on every instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub grow_only: bool,
}

/// A last-writer-wins map on every instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    pub max_keys: u64,
    pub max_key_bytes: u64,
    pub max_value_bytes: u64,
    pub tombstone_ttl: Duration,
}

/// Register defaults and bounds.
pub const DEFAULT_MAX_KEY_BYTES: u64 = 256;
pub const MAX_MAX_KEY_BYTES: u64 = 1024;
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 1024;
pub const MAX_MAX_VALUE_BYTES: u64 = 65_536;
pub const DEFAULT_TOMBSTONE_TTL: Duration = Duration::from_secs(60);
pub const MIN_TOMBSTONE_TTL: Duration = Duration::from_secs(1);

/// Service discovery entries with TTLs on every instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    pub max_entries: u64,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
}

/// Registry defaults and bounds.
pub const DEFAULT_REGISTRY_TTL: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(3600);
/// Longest `maxTtl`: a day.
pub const MAX_MAX_TTL: Duration = Duration::from_secs(86_400);

/// Numbered ticks from the wall clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    pub interval: Duration,
}

/// Tick interval bounds.
pub const MIN_TICK_INTERVAL: Duration = Duration::from_millis(10);
pub const MAX_TICK_INTERVAL: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomSlot {
    /// Resolved path of the `.wasm` component.
    pub module: PathBuf,
    pub config: BTreeMap<String, String>,
}

/// A slot's type with its checked fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotKind {
    TokenBucket(TokenBucket),
    LeakyBucket(LeakyBucket),
    Broadcast(Signal),
    Multicast(Signal),
    Random(Signal),
    Counter(Counter),
    Register(Register),
    Registry(Registry),
    Tick(Tick),
    Custom(CustomSlot),
}

impl SlotKind {
    /// The `type` name as written in config.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::TokenBucket(_) => "token-bucket",
            Self::LeakyBucket(_) => "leaky-bucket",
            Self::Broadcast(_) => "broadcast",
            Self::Multicast(_) => "multicast",
            Self::Random(_) => "random",
            Self::Counter(_) => "counter",
            Self::Register(_) => "register",
            Self::Registry(_) => "registry",
            Self::Tick(_) => "tick",
            Self::Custom(_) => "custom",
        }
    }

    /// Whether every instance holds the slot's whole state and serves it
    /// itself (counter, register, registry), exchanging state with its
    /// peers, instead of one owner serving and one standby replicating.
    pub fn everywhere(&self) -> bool {
        matches!(
            self,
            Self::Counter(_) | Self::Register(_) | Self::Registry(_)
        )
    }

    /// Whether requests are served by the instance they reach, never
    /// forwarded to an owner: the replicated types, and ticks, which every
    /// instance derives from its clock.
    pub fn served_locally(&self) -> bool {
        self.everywhere() || matches!(self, Self::Tick(_))
    }

    /// Whether a slot changed from `old` to this keeps its state, and if
    /// not, why it starts fresh. A change that keeps the meaning of the
    /// state keeps it: a rate, a burst, a timeout, a TTL, a bound raised.
    /// Another type, a limiter's period, a bound lowered (the state held
    /// may not fit), a tick's interval (its numbers would mean other times)
    /// or any change of a custom slot (its state's meaning is its module's)
    /// starts fresh.
    pub fn keeps_state_of(&self, old: &SlotKind) -> Result<(), String> {
        let lowered = |what: &str, from: u64, to: u64| {
            if to < from {
                Err(format!(
                    "`{what}` was lowered from {from} to {to}: the state held may not fit"
                ))
            } else {
                Ok(())
            }
        };
        match (old, self) {
            (Self::TokenBucket(a), Self::TokenBucket(b)) => {
                same_period(a.period, b.period)?;
                lowered("maxKeys", a.max_keys, b.max_keys)
            }
            (Self::LeakyBucket(a), Self::LeakyBucket(b)) => {
                same_period(a.period, b.period)?;
                lowered("maxKeys", a.max_keys, b.max_keys)
            }
            (Self::Broadcast(_), Self::Broadcast(_))
            | (Self::Multicast(_), Self::Multicast(_))
            | (Self::Random(_), Self::Random(_)) => Ok(()),
            (Self::Counter(_), Self::Counter(_)) => Ok(()),
            (Self::Register(a), Self::Register(b)) => {
                lowered("maxKeys", a.max_keys, b.max_keys)?;
                lowered("maxKeyBytes", a.max_key_bytes, b.max_key_bytes)?;
                lowered("maxValueBytes", a.max_value_bytes, b.max_value_bytes)
            }
            (Self::Registry(a), Self::Registry(b)) => {
                lowered("maxEntries", a.max_entries, b.max_entries)
            }
            (Self::Tick(a), Self::Tick(b)) if a.interval != b.interval => Err(format!(
                "`interval` changed from {} ms to {} ms: tick numbers would mean other times",
                a.interval.as_millis(),
                b.interval.as_millis()
            )),
            (Self::Tick(_), Self::Tick(_)) => Ok(()),
            (Self::Custom(a), Self::Custom(b)) if a == b => Ok(()),
            (Self::Custom(_), Self::Custom(_)) => Err(
                "a custom slot's state means what its module says: any change starts it fresh"
                    .into(),
            ),
            (a, b) => Err(format!(
                "its type changed from {} to {}",
                a.type_name(),
                b.type_name()
            )),
        }
    }

    /// A limiter's bound on its keys: the types whose keys are split into
    /// partitions across the cluster.
    pub fn max_keys(&self) -> Option<u64> {
        match self {
            Self::TokenBucket(t) => Some(t.max_keys),
            Self::LeakyBucket(l) => Some(l.max_keys),
            _ => None,
        }
    }

    /// The flat name/value pairs passed to the slot module's `init`.
    pub fn module_config(&self) -> Vec<(String, String)> {
        let pair = |k: &str, v: String| (k.to_string(), v);
        match self {
            Self::TokenBucket(t) => vec![
                pair("bucketSize", t.bucket_size.to_string()),
                pair("period", t.period.as_str().to_string()),
                pair("refreshRate", t.refresh_rate.to_string()),
                pair("tokensPerReq", t.tokens_per_req.to_string()),
                pair("maxKeys", t.max_keys.to_string()),
            ],
            Self::LeakyBucket(l) => vec![
                pair("bucketSize", l.bucket_size.to_string()),
                pair("period", l.period.as_str().to_string()),
                pair("refreshRate", l.refresh_rate.to_string()),
                pair("maxKeys", l.max_keys.to_string()),
            ],
            Self::Broadcast(_) => Vec::new(),
            Self::Multicast(sig) | Self::Random(sig) => {
                vec![pair("deregTries", sig.dereg_tries.to_string())]
            }
            Self::Counter(c) => vec![pair("growOnly", c.grow_only.to_string())],
            Self::Register(r) => vec![
                pair("maxKeys", r.max_keys.to_string()),
                pair("maxKeyBytes", r.max_key_bytes.to_string()),
                pair("maxValueBytes", r.max_value_bytes.to_string()),
                pair("tombstoneTtlMs", millis(r.tombstone_ttl)),
            ],
            Self::Registry(r) => vec![
                pair("maxEntries", r.max_entries.to_string()),
                pair("defaultTtlMs", millis(r.default_ttl)),
                pair("maxTtlMs", millis(r.max_ttl)),
            ],
            Self::Tick(t) => vec![pair("intervalMs", millis(t.interval))],
            Self::Custom(c) => c
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// The signal config of a broadcast, multicast or random slot.
    pub fn signal(&self) -> Option<&Signal> {
        match self {
            Self::Broadcast(s) | Self::Multicast(s) | Self::Random(s) => Some(s),
            _ => None,
        }
    }
}

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotDef {
    pub id: SlotId,
    pub kind: SlotKind,
    /// Envoy rate limit rules (limiters only). Not part of the slot's
    /// state: changing them keeps the slot's buckets.
    pub rls: Vec<RlsRule>,
}

/// A configuration that passed every check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidConfig {
    slots: BTreeMap<SlotId, SlotDef>,
}

impl ValidConfig {
    pub fn slots(&self) -> impl Iterator<Item = &SlotDef> {
        self.slots.values()
    }

    pub fn slot(&self, id: SlotId) -> Option<&SlotDef> {
        self.slots.get(&id)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// One problem in a config, naming the slot (when there is one) and field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldError {
    /// The slot's id as written (may itself be out of range).
    pub slot: Option<i64>,
    pub field: String,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.slot {
            Some(id) => write!(f, "slot {id}: field `{}`: {}", self.field, self.reason),
            None => write!(f, "field `{}`: {}", self.field, self.reason),
        }
    }
}

impl std::error::Error for FieldError {}

struct Checker<'a> {
    spec: &'a SlotSpec,
    errors: &'a mut Vec<FieldError>,
}

impl Checker<'_> {
    fn fail(&mut self, field: &str, reason: impl Into<String>) {
        self.errors.push(FieldError {
            slot: Some(self.spec.id),
            field: field.to_string(),
            reason: reason.into(),
        });
    }

    fn required(&mut self, field: &str, value: Option<u64>, min: u64, max: u64) -> u64 {
        match value {
            None => {
                let ty = self.spec.slot_type.clone();
                self.fail(field, format!("is required for type {ty}"));
                min
            }
            Some(v) => self.ranged(field, v, min, max),
        }
    }

    fn optional(
        &mut self,
        field: &str,
        value: Option<u64>,
        default: u64,
        min: u64,
        max: u64,
    ) -> u64 {
        value.map_or(default, |v| self.ranged(field, v, min, max))
    }

    fn ranged(&mut self, field: &str, v: u64, min: u64, max: u64) -> u64 {
        if v < min || v > max {
            self.fail(field, format!("must be between {min} and {max}, got {v}"));
        }
        v
    }

    fn period(&mut self) -> Period {
        match self.spec.period.as_deref() {
            None => {
                let ty = self.spec.slot_type.clone();
                self.fail(
                    "period",
                    format!("is required for type {ty} (second, minute or hour)"),
                );
                Period::Second
            }
            Some(p) => Period::parse(p).unwrap_or_else(|| {
                self.fail(
                    "period",
                    format!("must be second, minute or hour, got `{p}`"),
                );
                Period::Second
            }),
        }
    }

    fn timeout(&mut self) -> Duration {
        let Some(raw) = self.spec.timeout.as_deref() else {
            return DEFAULT_SIGNAL_TIMEOUT;
        };
        match parse_duration(raw) {
            Some(d) if !d.is_zero() && d <= MAX_SIGNAL_TIMEOUT => d,
            Some(_) => {
                self.fail(
                    "timeout",
                    format!("must be more than 0 and at most 60s, got `{raw}`"),
                );
                DEFAULT_SIGNAL_TIMEOUT
            }
            None => {
                self.fail(
                    "timeout",
                    format!("must be a duration like `500ms` or `2s`, got `{raw}`"),
                );
                DEFAULT_SIGNAL_TIMEOUT
            }
        }
    }

    /// An optional duration field within `min..=max`.
    fn duration(
        &mut self,
        field: &str,
        raw: Option<&str>,
        default: Option<Duration>,
        min: Duration,
        max: Duration,
    ) -> Duration {
        let Some(raw) = raw else {
            return default.unwrap_or_else(|| {
                let ty = self.spec.slot_type.clone();
                self.fail(field, format!("is required for type {ty} (e.g. `1s`)"));
                min
            });
        };
        match parse_duration(raw) {
            Some(d) if d >= min && d <= max => d,
            Some(_) => {
                self.fail(
                    field,
                    format!(
                        "must be between {} and {}, got `{raw}`",
                        show(min),
                        show(max)
                    ),
                );
                min
            }
            None => {
                self.fail(
                    field,
                    format!("must be a duration like `500ms`, `2s`, `5m` or `1h`, got `{raw}`"),
                );
                min
            }
        }
    }

    fn not_for_type(&mut self, field: &str, present: bool) {
        if present {
            let ty = self.spec.slot_type.clone();
            self.fail(field, format!("does not apply to type {ty}"));
        }
    }
}

/// Upper bound on `bucketSize` and `refreshRate`: 2^53 - 1, the largest
/// integer a JSON double holds exactly. The VssCluster CRD states it as its
/// `maximum`, which the API server reads as a double and converts to int64:
/// i64::MAX there rounds up to 2^63 and wraps, refusing every value.
pub const MAX_COUNT: u64 = (1 << 53) - 1;

impl SlotsConfig {
    /// Validates, resolving relative custom module paths against the
    /// current directory.
    pub fn validate(&self) -> Result<ValidConfig, ConfigError> {
        self.validate_with_base(Path::new("."))
    }

    /// Validates, resolving relative custom module paths against `base`.
    pub fn validate_with_base(&self, base: &Path) -> Result<ValidConfig, ConfigError> {
        let mut errors = Vec::new();
        if self.slots.len() > MAX_SLOTS {
            errors.push(FieldError {
                slot: None,
                field: "slots".into(),
                reason: format!(
                    "{} slots configured, at most {MAX_SLOTS} allowed",
                    self.slots.len()
                ),
            });
        }
        let mut slots = BTreeMap::new();
        // Every id as written, valid entry or not: a duplicate is reported
        // even when its first occurrence has problems of its own, so one
        // run shows everything to fix.
        let mut seen = BTreeMap::<i64, usize>::new();
        for spec in &self.slots {
            let before = errors.len();
            let id = SlotId::new(spec.id);
            if id.is_none() {
                errors.push(FieldError {
                    slot: Some(spec.id),
                    field: "id".into(),
                    reason: format!("must be between 0 and {}", MAX_SLOTS - 1),
                });
            }
            let uses = seen.entry(spec.id).or_default();
            *uses += 1;
            if *uses == 2 {
                errors.push(FieldError {
                    slot: Some(spec.id),
                    field: "id".into(),
                    reason: "is used by more than one slot (ids must be unique)".into(),
                });
            }
            let kind = check_slot(spec, base, &mut errors);
            let limiter = matches!(
                kind,
                Some(SlotKind::TokenBucket(_) | SlotKind::LeakyBucket(_))
            );
            let rls = rls::check_rules(spec, limiter, &mut errors);
            if let (Some(id), Some(kind), true) = (id, kind, errors.len() == before) {
                slots.insert(id, SlotDef { id, kind, rls });
            }
        }
        rls::check_unique(
            slots
                .values()
                .flat_map(|d| d.rls.iter().enumerate().map(move |(i, r)| (d.id, i, r))),
            &mut errors,
        );
        if errors.is_empty() {
            Ok(ValidConfig { slots })
        } else {
            Err(ConfigError::Invalid(distinct(errors)))
        }
    }
}

/// `errors` without repeats, in the order first reported: two entries with
/// the same id and the same mistake say the same thing, which reads once.
fn distinct(mut errors: Vec<FieldError>) -> Vec<FieldError> {
    let mut reported = std::collections::HashSet::new();
    errors.retain(|e| reported.insert(e.clone()));
    errors
}

fn check_slot(spec: &SlotSpec, base: &Path, errors: &mut Vec<FieldError>) -> Option<SlotKind> {
    let mut c = Checker { spec, errors };
    let limiter_fields_absent = |c: &mut Checker| {
        c.not_for_type("bucketSize", spec.bucket_size.is_some());
        c.not_for_type("period", spec.period.is_some());
        c.not_for_type("refreshRate", spec.refresh_rate.is_some());
        c.not_for_type("tokensPerReq", spec.tokens_per_req.is_some());
        c.not_for_type("maxKeys", spec.max_keys.is_some());
    };
    let signal_fields_absent = |c: &mut Checker| {
        c.not_for_type("timeout", spec.timeout.is_some());
        c.not_for_type("deregTries", spec.dereg_tries.is_some());
    };
    // Fields of the types absorbed from the sibling systems; each type
    // lets its own through.
    let sibling_fields_absent = |c: &mut Checker, own: &[&str]| {
        for (field, present) in [
            ("growOnly", spec.grow_only.is_some()),
            ("maxKeyBytes", spec.max_key_bytes.is_some()),
            ("maxValueBytes", spec.max_value_bytes.is_some()),
            ("tombstoneTtl", spec.tombstone_ttl.is_some()),
            ("maxEntries", spec.max_entries.is_some()),
            ("defaultTtl", spec.default_ttl.is_some()),
            ("maxTtl", spec.max_ttl.is_some()),
            ("interval", spec.interval.is_some()),
        ] {
            if !own.contains(&field) {
                c.not_for_type(field, present);
            }
        }
    };
    if !matches!(
        spec.slot_type.as_str(),
        "counter" | "register" | "registry" | "tick"
    ) {
        sibling_fields_absent(&mut c, &[]);
    }
    match spec.slot_type.as_str() {
        "broadcast" | "multicast" | "random" => {
            limiter_fields_absent(&mut c);
            c.not_for_type("custom", spec.custom.is_some());
            if spec.slot_type == "broadcast" {
                c.not_for_type("deregTries", spec.dereg_tries.is_some());
            }
            let signal = Signal {
                timeout: c.timeout(),
                dereg_tries: c.optional(
                    "deregTries",
                    spec.dereg_tries,
                    DEFAULT_DEREG_TRIES,
                    1,
                    1_000,
                ),
            };
            Some(match spec.slot_type.as_str() {
                "broadcast" => SlotKind::Broadcast(signal),
                "multicast" => SlotKind::Multicast(signal),
                _ => SlotKind::Random(signal),
            })
        }
        "token-bucket" => {
            signal_fields_absent(&mut c);
            c.not_for_type("custom", spec.custom.is_some());
            Some(SlotKind::TokenBucket(TokenBucket {
                bucket_size: c.required("bucketSize", spec.bucket_size, 1, MAX_COUNT),
                period: c.period(),
                refresh_rate: c.optional("refreshRate", spec.refresh_rate, 1, 1, MAX_COUNT),
                tokens_per_req: c.optional(
                    "tokensPerReq",
                    spec.tokens_per_req,
                    1,
                    1,
                    u32::MAX.into(),
                ) as u32,
                max_keys: c.optional("maxKeys", spec.max_keys, DEFAULT_MAX_KEYS, 1, MAX_MAX_KEYS),
            }))
        }
        "leaky-bucket" => {
            signal_fields_absent(&mut c);
            c.not_for_type("custom", spec.custom.is_some());
            c.not_for_type("tokensPerReq", spec.tokens_per_req.is_some());
            Some(SlotKind::LeakyBucket(LeakyBucket {
                bucket_size: c.required("bucketSize", spec.bucket_size, 1, MAX_COUNT),
                period: c.period(),
                refresh_rate: c.optional("refreshRate", spec.refresh_rate, 1, 1, MAX_COUNT),
                max_keys: c.optional("maxKeys", spec.max_keys, DEFAULT_MAX_KEYS, 1, MAX_MAX_KEYS),
            }))
        }
        "counter" => {
            limiter_fields_absent(&mut c);
            signal_fields_absent(&mut c);
            sibling_fields_absent(&mut c, &["growOnly"]);
            c.not_for_type("custom", spec.custom.is_some());
            Some(SlotKind::Counter(Counter {
                grow_only: spec.grow_only.unwrap_or(false),
            }))
        }
        "register" => {
            signal_fields_absent(&mut c);
            c.not_for_type("bucketSize", spec.bucket_size.is_some());
            c.not_for_type("period", spec.period.is_some());
            c.not_for_type("refreshRate", spec.refresh_rate.is_some());
            c.not_for_type("tokensPerReq", spec.tokens_per_req.is_some());
            sibling_fields_absent(&mut c, &["maxKeyBytes", "maxValueBytes", "tombstoneTtl"]);
            c.not_for_type("custom", spec.custom.is_some());
            Some(SlotKind::Register(Register {
                max_keys: c.optional("maxKeys", spec.max_keys, DEFAULT_MAX_KEYS, 1, MAX_MAX_KEYS),
                max_key_bytes: c.optional(
                    "maxKeyBytes",
                    spec.max_key_bytes,
                    DEFAULT_MAX_KEY_BYTES,
                    1,
                    MAX_MAX_KEY_BYTES,
                ),
                max_value_bytes: c.optional(
                    "maxValueBytes",
                    spec.max_value_bytes,
                    DEFAULT_MAX_VALUE_BYTES,
                    1,
                    MAX_MAX_VALUE_BYTES,
                ),
                tombstone_ttl: c.duration(
                    "tombstoneTtl",
                    spec.tombstone_ttl.as_deref(),
                    Some(DEFAULT_TOMBSTONE_TTL),
                    MIN_TOMBSTONE_TTL,
                    MAX_MAX_TTL,
                ),
            }))
        }
        "registry" => {
            limiter_fields_absent(&mut c);
            signal_fields_absent(&mut c);
            sibling_fields_absent(&mut c, &["maxEntries", "defaultTtl", "maxTtl"]);
            c.not_for_type("custom", spec.custom.is_some());
            let max_ttl = c.duration(
                "maxTtl",
                spec.max_ttl.as_deref(),
                Some(DEFAULT_MAX_TTL),
                Duration::from_millis(1),
                MAX_MAX_TTL,
            );
            let default_ttl = c.duration(
                "defaultTtl",
                spec.default_ttl.as_deref(),
                Some(DEFAULT_REGISTRY_TTL.min(max_ttl)),
                Duration::from_millis(1),
                MAX_MAX_TTL,
            );
            if default_ttl > max_ttl {
                c.fail(
                    "defaultTtl",
                    format!(
                        "must be at most maxTtl ({}), got {}",
                        show(max_ttl),
                        show(default_ttl)
                    ),
                );
            }
            Some(SlotKind::Registry(Registry {
                max_entries: c.optional(
                    "maxEntries",
                    spec.max_entries,
                    DEFAULT_MAX_KEYS,
                    1,
                    MAX_MAX_KEYS,
                ),
                default_ttl,
                max_ttl,
            }))
        }
        "tick" => {
            limiter_fields_absent(&mut c);
            signal_fields_absent(&mut c);
            sibling_fields_absent(&mut c, &["interval"]);
            c.not_for_type("custom", spec.custom.is_some());
            Some(SlotKind::Tick(Tick {
                interval: c.duration(
                    "interval",
                    spec.interval.as_deref(),
                    None,
                    MIN_TICK_INTERVAL,
                    MAX_TICK_INTERVAL,
                ),
            }))
        }
        "custom" => {
            limiter_fields_absent(&mut c);
            signal_fields_absent(&mut c);
            let Some(custom) = &spec.custom else {
                c.fail(
                    "custom",
                    "is required for type custom ({module: <path to .wasm>, config: {...}})",
                );
                return None;
            };
            if custom.module.trim().is_empty() {
                c.fail("custom.module", "must name a .wasm file");
            }
            if let Some(k) = custom.config.keys().find(|k| k.is_empty()) {
                c.fail("custom.config", format!("has an empty field name `{k}`"));
            }
            Some(SlotKind::Custom(CustomSlot {
                module: base.join(&custom.module),
                config: custom
                    .config
                    .iter()
                    .map(|(k, v)| (k.clone(), v.0.clone()))
                    .collect(),
            }))
        }
        other => {
            c.fail(
                "type",
                format!(
                    "unknown slot type `{other}` (known: token-bucket, leaky-bucket, broadcast, multicast, random, counter, register, registry, tick, custom)"
                ),
            );
            None
        }
    }
}

/// A duration as config writes it: `250ms`, `2s`, `5m`, `1h`.
fn show(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        _ => format!("{ms}ms"),
    }
}

/// Parses `250ms`, `2s`, `1m`, `1h` (a whole number and a unit).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3_600).map(Duration::from_secs),
        _ => None,
    }
}

impl SlotsConfig {
    /// Validates a configuration that arrived over the network (the
    /// operator's push): like [`SlotsConfig::validate_with_base`], and every
    /// custom module must name a file inside `root` by a relative path
    /// without `..`, so a pushed config cannot make the runtime open any
    /// other file the process can read. A symbolic link inside `root` that
    /// points out of it is refused too.
    pub fn validate_confined(&self, root: &Path) -> Result<ValidConfig, ConfigError> {
        let mut errors = Vec::new();
        let canonical_root = root.canonicalize().ok();
        for spec in &self.slots {
            let Some(custom) = &spec.custom else { continue };
            let module = Path::new(&custom.module);
            let plain = module.components().all(|c| {
                matches!(
                    c,
                    std::path::Component::Normal(_) | std::path::Component::CurDir
                )
            });
            let escapes = || {
                let (Some(root), Ok(real)) = (&canonical_root, root.join(module).canonicalize())
                else {
                    return false;
                };
                !real.starts_with(root)
            };
            if !plain || escapes() {
                errors.push(FieldError {
                    slot: Some(spec.id),
                    field: "custom.module".into(),
                    reason: format!(
                        "must be a path inside the module folder {} (relative, without `..`), got `{}`",
                        root.display(),
                        custom.module
                    ),
                });
            }
        }
        match self.validate_with_base(root) {
            Err(ConfigError::Invalid(mut more)) => {
                errors.append(&mut more);
                Err(ConfigError::Invalid(errors))
            }
            Ok(_) if !errors.is_empty() => Err(ConfigError::Invalid(errors)),
            other => other,
        }
    }
}

fn same_period(from: Period, to: Period) -> Result<(), String> {
    if from == to {
        Ok(())
    } else {
        Err(format!(
            "`period` changed from {} to {}: tokens are counted per period",
            from.as_str(),
            to.as_str()
        ))
    }
}
