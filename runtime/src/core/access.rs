//! Client tokens: who may call the client port, and what each caller may
//! do on which slots.
//!
//! With `--client-tokens FILE`, every call on the client port (the RLS
//! endpoint included) carries `authorization: Bearer <token>`, and the
//! token's entry in the file grants permissions on a set of slots:
//!
//! ```yaml
//! tokens:
//!   - name: checkout            # in logs and errors; never the token
//!     token: 3f9c0e1d6b2a47c8a1e5 # at least 16 bytes; from a Secret
//!     permissions: [acquire]    # acquire, publish, subscribe, admin
//!     slots: [0, 1, 20-29]      # or "*" (the default): every slot
//! ```
//!
//! A call without a token, or with one the file does not hold, is refused
//! `UNAUTHENTICATED`; a token without the permission on the slot,
//! `PERMISSION_DENIED` naming the token, the permission and the slot.
//! The file is re-read every [`crate::ops::reload::RELOAD_POLL`]; a removed token stops
//! working from the next call. A changed file that does not parse is
//! logged and the tokens in force stay.
//!
//! Tokens are kept and looked up by their SHA-256, so a lookup's timing
//! says nothing about how much of a guess was right. A connection keeps
//! the grant its token last resolved to ([`GrantCache`]), so that its next
//! calls skip the digest: the same token compared in constant time, and
//! the same version of the file, or the token is looked up again.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tokio_util::sync::CancellationToken;
use vss_config::MAX_SLOTS;

use crate::core::error::RequestError;
use crate::core::hub::MAX_CLIENT_ID_BYTES;
use crate::ops::metrics::{AccessMetrics, RefusedLabels};

/// Shortest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_BYTES: usize = 16;

/// What a call asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Acquire (unary and batched), Call, Increment, Decrement, and
    /// Envoy's ShouldRateLimit.
    Acquire,
    /// Publish, Set, Delete, Announce, Withdraw.
    Publish,
    /// Event streams, Register, Deregister, WatchTicks, WatchServices,
    /// and reads: Get, ListKeys, ReadCounter, ListServices.
    Subscribe,
    /// Status.
    Admin,
}

impl Permission {
    const ALL: [Permission; 4] = [
        Permission::Acquire,
        Permission::Publish,
        Permission::Subscribe,
        Permission::Admin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Permission::Acquire => "acquire",
            Permission::Publish => "publish",
            Permission::Subscribe => "subscribe",
            Permission::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// The slots a token's permissions apply to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slots {
    All,
    Some(BTreeSet<u32>),
}

impl Slots {
    fn contains(&self, slot: u32) -> bool {
        match self {
            Slots::All => true,
            Slots::Some(set) => set.contains(&slot),
        }
    }
}

impl fmt::Display for Slots {
    /// `every slot`, or runs like `0, 1, 20-29`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = match self {
            Slots::All => return f.write_str("every slot"),
            Slots::Some(set) if set.is_empty() => return f.write_str("no slot"),
            Slots::Some(set) => set,
        };
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for &s in set {
            match runs.last_mut() {
                Some((_, end)) if *end + 1 == s => *end = s,
                _ => runs.push((s, s)),
            }
        }
        let runs: Vec<String> = runs
            .into_iter()
            .map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        write!(f, "slots {}", runs.join(", "))
    }
}

/// One token's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub name: String,
    permissions: u8,
    pub slots: Slots,
    /// The client ids an event stream of this token may open under; none
    /// means any.
    clients: Option<Vec<ClientId>>,
}

/// One entry of a token's `clients`: an id, or every id with a prefix
/// (`checkout-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum ClientId {
    Exact(String),
    Prefix(String),
}

impl ClientId {
    fn matches(&self, id: &str) -> bool {
        match self {
            ClientId::Exact(e) => e == id,
            ClientId::Prefix(p) => id.starts_with(p.as_str()),
        }
    }
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientId::Exact(e) => write!(f, "{e}"),
            ClientId::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

impl Grant {
    pub fn allows(&self, permission: Permission, slot: u32) -> bool {
        self.permissions & permission.bit() != 0 && self.slots.contains(slot)
    }

    fn has(&self, permission: Permission) -> bool {
        self.permissions & permission.bit() != 0
    }

    fn permission_names(&self) -> String {
        let names: Vec<&str> = Permission::ALL
            .iter()
            .filter(|p| self.has(**p))
            .map(|p| p.name())
            .collect();
        names.join(", ")
    }

    /// The slots an event stream of this token may take broadcasts of, as
    /// the Hello's slot filter: empty is every slot.
    pub fn stream_slots(&self, asked: Vec<u32>) -> Result<Vec<u32>, RequestError> {
        if !self.has(Permission::Subscribe) {
            return Err(self.denied(Permission::Subscribe, None));
        }
        if let Some(slot) = asked.iter().find(|s| !self.slots.contains(**s)) {
            return Err(self.denied(Permission::Subscribe, Some(*slot)));
        }
        match (&self.slots, asked.is_empty()) {
            (Slots::Some(set), true) if set.is_empty() => {
                Err(self.denied(Permission::Subscribe, None))
            }
            (Slots::Some(set), true) => Ok(set.iter().copied().collect()),
            _ => Ok(asked),
        }
    }

    /// Whether an event stream of this token may open under client `id`:
    /// a token limited to some clients cannot take over another client's
    /// stream by naming it.
    pub fn stream_client(&self, id: &str) -> Result<(), RequestError> {
        match &self.clients {
            Some(allowed) if !allowed.iter().any(|c| c.matches(id)) => {
                let names: Vec<String> = allowed.iter().map(ToString::to_string).collect();
                Err(RequestError::PermissionDenied(format!(
                    "token {:?} may not subscribe as client {id:?}: it allows clients {}",
                    self.name,
                    names.join(", ")
                )))
            }
            _ => Ok(()),
        }
    }

    fn denied(&self, permission: Permission, slot: Option<u32>) -> RequestError {
        let on = slot.map(|s| format!(" on slot {s}")).unwrap_or_default();
        let grants = match self.permission_names() {
            names if names.is_empty() => "it grants nothing".to_string(),
            names => format!("it grants {names} on {}", self.slots),
        };
        RequestError::PermissionDenied(format!(
            "token {:?} may not {}{on}: {grants}",
            self.name,
            permission.name()
        ))
    }
}

/// Why a token file cannot be used; each names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("cannot read --client-tokens {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--client-tokens {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tokens: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    token: String,
    permissions: Vec<String>,
    #[serde(default)]
    slots: Option<SlotsField>,
    #[serde(default)]
    clients: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SlotsField {
    Star(String),
    List(Vec<SlotItem>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SlotItem {
    One(u32),
    Range(String),
}

type Digest = [u8; 32];

fn digest(token: &str) -> Digest {
    Sha256::digest(token.as_bytes()).into()
}

/// The tokens of one version of the file.
#[derive(Debug, Default)]
struct Tokens {
    /// Counts the versions loaded: a grant cached under another is stale.
    generation: u64,
    by_digest: HashMap<Digest, Arc<Grant>>,
}

/// The grant a connection's token last resolved to.
#[derive(Default)]
pub struct GrantCache(ArcSwapOption<Cached>);

struct Cached {
    generation: u64,
    token: Box<[u8]>,
    grant: Arc<Grant>,
}

impl GrantCache {
    fn get(&self, generation: u64, token: &str) -> Option<Arc<Grant>> {
        let cached = self.0.load();
        let cached = Option::as_ref(&cached)?;
        let same =
            cached.generation == generation && bool::from(cached.token.ct_eq(token.as_bytes()));
        same.then(|| cached.grant.clone())
    }

    fn put(&self, generation: u64, token: &str, grant: Arc<Grant>) {
        self.0.store(Some(Arc::new(Cached {
            generation,
            token: token.as_bytes().into(),
            grant,
        })));
    }
}

impl fmt::Debug for GrantCache {
    /// Never the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cached = self.0.load();
        f.debug_struct("GrantCache")
            .field("grant", &Option::as_ref(&cached).map(|c| &c.grant.name))
            .finish()
    }
}

fn slot_in_range(field: &str, slot: u32) -> Result<u32, String> {
    if (slot as usize) < MAX_SLOTS {
        Ok(slot)
    } else {
        Err(format!(
            "{field}: slot {slot} is out of range (0-{})",
            MAX_SLOTS - 1
        ))
    }
}

fn parse_slots(field: &str, value: Option<SlotsField>) -> Result<Slots, String> {
    let items = match value {
        None => return Ok(Slots::All),
        Some(SlotsField::Star(s)) if s == "*" => return Ok(Slots::All),
        Some(SlotsField::Star(s)) => {
            return Err(format!(
                "{field}: {s:?} is neither \"*\" nor a list of slots"
            ));
        }
        Some(SlotsField::List(items)) => items,
    };
    let mut set = BTreeSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("{field}[{i}]");
        match item {
            SlotItem::One(s) => {
                set.insert(slot_in_range(&at, s)?);
            }
            SlotItem::Range(r) => {
                let bad = || format!("{at}: {r:?} is neither a slot nor a range like 20-29");
                let (a, b) = r.split_once('-').ok_or_else(bad)?;
                let a: u32 = a.trim().parse().map_err(|_| bad())?;
                let b: u32 = b.trim().parse().map_err(|_| bad())?;
                if a > b {
                    return Err(format!("{at}: the range {r:?} runs backwards"));
                }
                slot_in_range(&at, b)?;
                set.extend(a..=b);
            }
        }
    }
    Ok(Slots::Some(set))
}

fn parse_clients(field: &str, value: Option<Vec<String>>) -> Result<Option<Vec<ClientId>>, String> {
    let Some(items) = value else {
        return Ok(None);
    };
    if items.is_empty() {
        return Err(format!(
            "{field}: empty (leave it out to allow every client id)"
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("{field}[{i}]");
            let (id, prefix) = match item.strip_suffix('*') {
                Some(p) => (p.to_string(), true),
                None => (item.clone(), false),
            };
            if id.contains('*') {
                return Err(format!("{at}: {item:?} has a `*` before its end"));
            }
            if (id.is_empty() && !prefix) || id.len() > MAX_CLIENT_ID_BYTES {
                return Err(format!(
                    "{at}: {} bytes; a client id is 1-{MAX_CLIENT_ID_BYTES} bytes",
                    id.len()
                ));
            }
            Ok(if prefix {
                ClientId::Prefix(id)
            } else {
                ClientId::Exact(id)
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn parse(yaml: &[u8]) -> Result<Tokens, String> {
    let file: File = serde_norway::from_slice(yaml).map_err(|e| e.to_string())?;
    let mut tokens = Tokens::default();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut at_digest: HashMap<Digest, usize> = HashMap::new();
    for (i, e) in file.tokens.into_iter().enumerate() {
        let field = |f: &str| format!("tokens[{i}].{f}");
        if e.name.is_empty() {
            return Err(format!("{}: empty", field("name")));
        }
        if let Some(first) = names.insert(e.name.clone(), i) {
            return Err(format!(
                "{}: {:?} is also tokens[{first}]'s name",
                field("name"),
                e.name
            ));
        }
        if e.token.len() < MIN_TOKEN_BYTES {
            return Err(format!(
                "{}: {} bytes, at least {MIN_TOKEN_BYTES} needed",
                field("token"),
                e.token.len()
            ));
        }
        let d = digest(&e.token);
        if let Some(first) = at_digest.insert(d, i) {
            return Err(format!(
                "{}: the same token as tokens[{first}]",
                field("token")
            ));
        }
        let mut permissions = 0;
        for (j, p) in e.permissions.iter().enumerate() {
            let Some(known) = Permission::ALL.iter().find(|k| k.name() == p) else {
                return Err(format!(
                    "{}: {p:?} is not a permission (acquire, publish, subscribe, admin)",
                    field(&format!("permissions[{j}]"))
                ));
            };
            permissions |= known.bit();
        }
        let slots = parse_slots(&field("slots"), e.slots)?;
        let clients = parse_clients(&field("clients"), e.clients)?;
        tokens.by_digest.insert(
            d,
            Arc::new(Grant {
                name: e.name,
                permissions,
                slots,
                clients,
            }),
        );
    }
    Ok(tokens)
}

/// The tokens in force and the file they come from.
#[derive(Debug)]
pub struct Access {
    path: PathBuf,
    tokens: ArcSwap<Tokens>,
    /// The last generation given to a version of the file.
    generations: AtomicU64,
    loaded: Mutex<Vec<u8>>,
    metrics: AccessMetrics,
}

impl Access {
    /// Reads and checks the token file.
    pub async fn load(path: PathBuf, metrics: AccessMetrics) -> Result<Self, AccessError> {
        let bytes = read(&path).await?;
        let tokens = parse(&bytes).map_err(|message| AccessError::Invalid {
            path: path.clone(),
            message,
        })?;
        Ok(Self {
            path,
            tokens: ArcSwap::from_pointee(tokens),
            generations: AtomicU64::new(0),
            loaded: Mutex::new(bytes),
            metrics,
        })
    }

    /// The caller's grant, from the value of its `authorization` header
    /// (`Bearer <token>`); `cache` is its connection's, if it has one.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        cache: Option<&GrantCache>,
        permission: Permission,
    ) -> Result<Arc<Grant>, RequestError> {
        let refuse = |reason, message: &str| {
            self.metrics
                .refused
                .get_or_create(&RefusedLabels {
                    reason,
                    permission: permission.name(),
                })
                .inc();
            RequestError::Unauthenticated(message.to_string())
        };
        let Some(value) = authorization else {
            return Err(refuse(
                "unauthenticated",
                "no token: this port takes `authorization: Bearer <token>` on every call (vss --token; vss-client's Client::with_token)",
            ));
        };
        let Some(token) = bearer(value) else {
            return Err(refuse(
                "unauthenticated",
                "`authorization` is not `Bearer <token>`",
            ));
        };
        let tokens = self.tokens.load();
        if let Some(grant) = cache.and_then(|c| c.get(tokens.generation, token)) {
            return Ok(grant);
        }
        match tokens.by_digest.get(&digest(token)) {
            Some(grant) => {
                if let Some(cache) = cache {
                    cache.put(tokens.generation, token, grant.clone());
                }
                Ok(grant.clone())
            }
            None => Err(refuse(
                "unauthenticated",
                "unknown token: not in this instance's --client-tokens file (revoked, or never issued)",
            )),
        }
    }

    /// Whether an authenticated caller may do `permission` on `slot`.
    pub fn allow(
        &self,
        grant: &Grant,
        permission: Permission,
        slot: u32,
    ) -> Result<(), RequestError> {
        if grant.allows(permission, slot) {
            return Ok(());
        }
        self.refused(permission);
        Err(grant.denied(permission, Some(slot)))
    }

    /// Whether an authenticated caller has `permission` on any slot
    /// (Status is not about a slot).
    pub fn allow_any(&self, grant: &Grant, permission: Permission) -> Result<(), RequestError> {
        if grant.has(permission) {
            return Ok(());
        }
        self.refused(permission);
        Err(grant.denied(permission, None))
    }

    pub fn refused(&self, permission: Permission) {
        self.metrics
            .refused
            .get_or_create(&RefusedLabels {
                reason: "permission_denied",
                permission: permission.name(),
            })
            .inc();
    }

    /// Re-reads the file; if it changed and parses, swaps it in.
    /// Ok(true): swapped.
    pub async fn reload(&self) -> Result<bool, AccessError> {
        let bytes = read(&self.path).await?;
        if *self.lock() == bytes {
            return Ok(false);
        }
        let mut tokens = parse(&bytes).map_err(|message| AccessError::Invalid {
            path: self.path.clone(),
            message,
        })?;
        tokens.generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        self.tokens.store(Arc::new(tokens));
        *self.lock() = bytes;
        Ok(true)
    }

    /// Reloads on every change of the file until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        crate::ops::reload::watch(
            crate::ops::reload::RELOAD_POLL,
            stop,
            || self.reload(),
            || {
                self.metrics.reloads.inc();
                tracing::info!(file = %self.path.display(), "client tokens reloaded");
            },
            |e| {
                self.metrics.reload_failures.inc();
                tracing::warn!(error = %e, "client token file changed but does not load; keeping the tokens in force");
            },
        )
        .await;
    }

    /// Tokens from `yaml`, as if read from a file named `tokens.yaml`.
    #[cfg(test)]
    pub fn from_yaml(yaml: &str, metrics: AccessMetrics) -> Self {
        Self {
            path: "tokens.yaml".into(),
            tokens: ArcSwap::from_pointee(parse(yaml.as_bytes()).expect("test tokens parse")),
            generations: AtomicU64::new(0),
            loaded: Mutex::default(),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The token of an `authorization` header value, `Bearer <token>`: printable
/// ASCII, as HTTP header text is.
fn bearer(value: &[u8]) -> Option<&str> {
    if !value.iter().all(|b| (32..127).contains(b) || *b == b'\t') {
        return None;
    }
    std::str::from_utf8(value)
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

async fn read(path: &Path) -> Result<Vec<u8>, AccessError> {
    tokio::fs::read(path)
        .await
        .map_err(|source| AccessError::Read {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::error::Code;

    pub(crate) const FILE: &str = "tokens:
  - name: checkout
    token: checkout-0123456789
    permissions: [acquire]
    slots: [0, 1, 20-22]
  - name: ops
    token: ops-0123456789abcdef
    permissions: [admin, subscribe]
";

    fn grant(tokens: &Tokens, token: &str) -> Arc<Grant> {
        tokens.by_digest[&digest(token)].clone()
    }

    #[test]
    fn a_grant_holds_its_permissions_on_its_slots_only() {
        let tokens = parse(FILE.as_bytes()).expect("parses");
        let checkout = grant(&tokens, "checkout-0123456789");
        assert!(checkout.allows(Permission::Acquire, 21));
        assert!(!checkout.allows(Permission::Acquire, 23));
        assert!(!checkout.allows(Permission::Publish, 0));
        let ops = grant(&tokens, "ops-0123456789abcdef");
        assert!(ops.allows(Permission::Subscribe, 99));
        assert!(!ops.allows(Permission::Acquire, 0));
    }

    #[test]
    fn a_refusal_names_the_token_the_permission_and_the_slot() {
        let tokens = parse(FILE.as_bytes()).expect("parses");
        let status = grant(&tokens, "checkout-0123456789").denied(Permission::Publish, Some(10));
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(
            status.to_string(),
            "token \"checkout\" may not publish on slot 10: it grants acquire on slots 0-1, 20-22"
        );
    }

    #[test]
    fn an_event_stream_takes_the_slots_the_token_may_subscribe_to() {
        let tokens = parse(
            b"tokens:
  - name: s
    token: s-0123456789abcdef
    permissions: [subscribe]
    slots: [10, 11]
",
        )
        .expect("parses");
        let s = grant(&tokens, "s-0123456789abcdef");
        assert_eq!(s.stream_slots(vec![]).expect("allowed"), vec![10, 11]);
        assert_eq!(s.stream_slots(vec![11]).expect("allowed"), vec![11]);
        let e = s.stream_slots(vec![12]).expect_err("not its slot");
        assert!(e.to_string().contains("on slot 12"), "{e}");
        let checkout = grant(
            &parse(FILE.as_bytes()).expect("parses"),
            "checkout-0123456789",
        );
        assert_eq!(
            checkout
                .stream_slots(vec![])
                .expect_err("no subscribe")
                .code(),
            Code::PermissionDenied
        );
    }

    #[test]
    fn bad_files_name_the_field_and_the_limit() {
        let cases = [
            (
                "tokens:\n  - {name: a, token: short, permissions: [acquire]}\n",
                "tokens[0].token: 5 bytes, at least 16 needed",
            ),
            (
                "tokens:\n  - {name: a, token: aaaaaaaaaaaaaaaa, permissions: [pubish]}\n",
                "tokens[0].permissions[0]: \"pubish\" is not a permission (acquire, publish, subscribe, admin)",
            ),
            (
                "tokens:\n  - {name: a, token: aaaaaaaaaaaaaaaa, permissions: [], slots: [100]}\n",
                "tokens[0].slots[0]: slot 100 is out of range (0-99)",
            ),
            (
                "tokens:\n  - {name: a, token: aaaaaaaaaaaaaaaa, permissions: [], slots: [9-3]}\n",
                "tokens[0].slots[0]: the range \"9-3\" runs backwards",
            ),
            (
                "tokens:\n  - {name: a, token: aaaaaaaaaaaaaaaa, permissions: []}\n  - {name: b, token: aaaaaaaaaaaaaaaa, permissions: []}\n",
                "tokens[1].token: the same token as tokens[0]",
            ),
            (
                "tokens:\n  - {name: a, token: aaaaaaaaaaaaaaaa, permissions: []}\n  - {name: a, token: bbbbbbbbbbbbbbbb, permissions: []}\n",
                "tokens[1].name: \"a\" is also tokens[0]'s name",
            ),
        ];
        for (yaml, expected) in cases {
            assert_eq!(parse(yaml.as_bytes()).err().as_deref(), Some(expected));
        }
    }

    #[test]
    fn a_token_limited_to_some_clients_streams_only_under_their_ids() {
        let tokens = parse(
            b"tokens:
  - name: checkout
    token: s-0123456789abcdef
    permissions: [subscribe]
    clients: [checkout-*, audit]
",
        )
        .expect("parses");
        let s = grant(&tokens, "s-0123456789abcdef");
        assert!(s.stream_client("checkout-7").is_ok());
        assert!(s.stream_client("audit").is_ok());
        let e = s.stream_client("audit-2").expect_err("not its client");
        assert_eq!(e.code(), Code::PermissionDenied);
        assert_eq!(
            e.to_string(),
            "token \"checkout\" may not subscribe as client \"audit-2\": it allows clients checkout-*, audit"
        );
        let any = grant(
            &parse(FILE.as_bytes()).expect("parses"),
            "ops-0123456789abcdef",
        );
        assert!(any.stream_client("whoever").is_ok(), "no clients: any id");
        for (clients, expected) in [
            (
                "[]",
                "tokens[0].clients: empty (leave it out to allow every client id)",
            ),
            (
                "[a*b]",
                "tokens[0].clients[0]: \"a*b\" has a `*` before its end",
            ),
            (
                "[\"\"]",
                "tokens[0].clients[0]: 0 bytes; a client id is 1-128 bytes",
            ),
        ] {
            let yaml = format!(
                "tokens:\n  - {{name: a, token: aaaaaaaaaaaaaaaa, permissions: [subscribe], clients: {clients}}}\n"
            );
            assert_eq!(
                parse(yaml.as_bytes()).err().as_deref(),
                Some(expected),
                "{clients}"
            );
        }
    }
}
