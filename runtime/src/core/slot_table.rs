//! The slot table: one Wasm instance per configured slot.
//!
//! Each slot type is compiled once (built-ins from the embedded modules,
//! custom types from their file, once per path) and every configured slot
//! gets its own instance on its own worker thread ([`crate::core::executor`]), so
//! a slow or failing slot never holds up another, nor the reactor.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use vss_config::{Signal, SlotDef, SlotId, SlotKind, ValidConfig};
use vss_slot_host::{
    Acquire, Acquired, CallError, Context, Custom, DeliveryReport, Effect, LoadError, Reply,
    Request, Response, SlotEngine, SlotError, SlotInstance, SlotModule,
};

use vss_slot_sdk::codec::Wire as _;
use vss_slot_sdk::limiter::{OP_RELEASE, OP_TAKE_ALL, Take};
use vss_wire::partition::{partition_of, partitions_for};

use crate::core::error::RequestError;
use crate::core::executor::{QueueError, QueueLimits, SlotWorker};
use crate::ops::metrics::{Metrics, SlotMetrics, Verb};

/// Longest acquire key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Longest custom operation name, in bytes.
pub const MAX_OP_BYTES: usize = 64;
/// Largest custom payload, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Why the slot table could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SlotLoadError {
    #[error("slot {slot}: cannot read custom module {}: {source}", path.display())]
    ReadModule {
        slot: SlotId,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("slot {slot}: {source}")]
    Load { slot: SlotId, source: LoadError },
    #[error("slot {slot}: cannot start its worker thread: {source}")]
    Thread {
        slot: SlotId,
        source: std::io::Error,
    },
}

/// Why a new configuration was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("config generation {offered} is older than the generation in force ({held})")]
    Stale { offered: u64, held: u64 },
    #[error(
        "config generation {generation} is already in force with a different configuration; send a newer generation"
    )]
    Conflict { generation: u64 },
    #[error(transparent)]
    Load(#[from] SlotLoadError),
    #[error("reload task failed: {0}")]
    Interrupted(String),
}

struct SlotEntry {
    def: SlotDef,
    type_name: String,
    /// One instance on its own thread per partition of the slot's keys
    /// (one for a slot that is not split).
    workers: Vec<SlotWorker>,
    metrics: SlotMetrics,
    errors: AtomicU64,
    signal: Option<SignalSlot>,
}

/// What the host needs to know about a broadcast, multicast or random slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalSlot {
    pub config: Signal,
    /// One taker per message (random).
    pub single_taker: bool,
}

impl SignalSlot {
    /// How long one delivery attempt may wait for its ack. A random slot
    /// may try up to three members within its timeout; the others give
    /// each recipient the whole timeout.
    pub fn attempt_timeout(&self) -> std::time::Duration {
        if self.single_taker {
            self.config.timeout / 3
        } else {
            self.config.timeout
        }
    }
}

/// Status of one slot, for the status API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSummary {
    pub id: u8,
    pub type_name: String,
    pub calls: u64,
    pub errors: u64,
    pub restarts: u64,
}

type Entries = Vec<Option<Arc<SlotEntry>>>;

/// Every configured slot of this instance. The set of slots can be
/// replaced while serving ([`SlotTable::reload`]); a request works on the
/// set it started with.
pub struct SlotTable {
    slots: ArcSwap<Entries>,
    engine: SlotEngine,
    /// Compiled built-in modules, reused across reloads.
    compiled: Arc<Compiled>,
    /// The configuration in force and its generation; the lock also
    /// serialises reloads.
    config: Mutex<(ValidConfig, u64)>,
    generation: AtomicU64,
    queue: QueueLimits,
    metrics: Metrics,
    /// This instance's id, given to the slot types kept on every instance
    /// (their entries are per instance).
    instance: String,
}

impl std::fmt::Debug for SlotTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotTable")
            .field("configured", &self.slots.load().iter().flatten().count())
            .field("generation", &self.generation())
            .finish()
    }
}

impl SlotTable {
    /// Compiles and starts every slot of `config`, as generation 1.
    pub fn load(
        engine: &SlotEngine,
        config: &ValidConfig,
        queue: QueueLimits,
        metrics: Metrics,
        instance: &str,
    ) -> Result<Self, ReloadError> {
        Self::load_sharing(engine, Arc::default(), config, queue, metrics, instance)
    }

    /// [`SlotTable::load`] with the built-in modules `compiled` holds for
    /// `engine`, adding those it compiles: instances of one process (the
    /// in-process cluster of the tests) compile each type once.
    pub fn load_sharing(
        engine: &SlotEngine,
        compiled: Arc<Compiled>,
        config: &ValidConfig,
        queue: QueueLimits,
        metrics: Metrics,
        instance: &str,
    ) -> Result<Self, ReloadError> {
        let table = Self {
            instance: instance.to_string(),
            queue,
            slots: ArcSwap::from_pointee(Vec::new()),
            engine: engine.clone(),
            compiled,
            config: Mutex::new((ValidConfig::default(), 0)),
            generation: AtomicU64::new(0),
            metrics,
        };
        table.reload(config, 1)?;
        Ok(table)
    }

    /// Generation of the configuration in force.
    /// The configuration in force and its generation.
    pub fn config(&self) -> (ValidConfig, u64) {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Applies `config` as `generation` without a restart. Slots whose type
    /// and fields did not change keep their instance and state (a change of
    /// their `rls` rules alone keeps them too); changed
    /// and new slots start fresh; removed slots are dropped. Nothing
    /// changes if any slot fails to load. Returns whether anything changed.
    ///
    /// Compiles modules: call it off the async reactor.
    pub fn reload(&self, config: &ValidConfig, generation: u64) -> Result<bool, ReloadError> {
        let mut current = self.config.lock().unwrap_or_else(|p| p.into_inner());
        let (in_force, held) = &*current;
        if generation < *held {
            return Err(ReloadError::Stale {
                offered: generation,
                held: *held,
            });
        }
        if *in_force == *config && *held != 0 {
            // Same slots under a newer generation (the operator's resource
            // changed elsewhere): nothing to restart, but report it applied.
            current.1 = generation;
            self.set_generation(generation);
            return Ok(false);
        }
        if generation == *held {
            return Err(ReloadError::Conflict { generation });
        }
        let old = self.slots.load_full();
        let mut slots: Entries = (0..vss_config::MAX_SLOTS).map(|_| None).collect();
        let mut moves = Vec::new();
        for def in config.slots() {
            let before = old.get(def.id.index()).and_then(Option::as_ref);
            slots[def.id.index()] = Some(match before {
                Some(entry) if entry.def.kind == def.kind => entry.clone(),
                Some(entry) => {
                    let fresh = Arc::new(self.start(def)?);
                    moves.extend(StateMove::prepare(entry, &fresh, def));
                    fresh
                }
                None => Arc::new(self.start(def)?),
            });
        }
        self.slots.store(Arc::new(slots));
        // Only now, with requests going to the new instances (which wait
        // for it), is the old state taken: behind every request the old
        // instances still had queued, so none of their decisions is lost.
        for m in moves {
            m.finish();
        }
        *current = (config.clone(), generation);
        self.set_generation(generation);
        tracing::info!(generation, slots = config.len(), "configuration applied");
        Ok(true)
    }

    fn set_generation(&self, generation: u64) {
        self.generation.store(generation, Ordering::Relaxed);
        self.metrics
            .cluster
            .config_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    fn start(&self, def: &SlotDef) -> Result<SlotEntry, SlotLoadError> {
        let slot = def.id;
        let (key, type_name) = match &def.kind {
            SlotKind::Custom(c) => (
                ModuleKey::File(c.module.clone()),
                format!("custom:{}", c.module.display()),
            ),
            other => (
                ModuleKey::Builtin(other.type_name()),
                other.type_name().to_string(),
            ),
        };
        // Custom modules are read again on every start: the file at the
        // path may have been replaced along with the config.
        let module = match key {
            ModuleKey::Builtin(name) => match self.compiled.get(name) {
                Some(m) => m,
                None => {
                    let m = compile(&self.engine, &key, slot)?;
                    self.compiled.insert(name, m.clone());
                    m
                }
            },
            ModuleKey::File(_) => compile(&self.engine, &key, slot)?,
        };
        let mut module_config = def.kind.module_config();
        if def.kind.everywhere() {
            module_config.push(("instance".to_string(), self.instance.clone()));
        }
        let partitions = partitions_of(&def.kind);
        if let Some(max_keys) = def.kind.max_keys() {
            // Each partition holds its share: the slot as a whole stays
            // within `maxKeys`.
            let share = (max_keys / u64::from(partitions)).max(1);
            for (name, value) in &mut module_config {
                if name == "maxKeys" {
                    *value = share.to_string();
                }
            }
        }
        let metrics = self.metrics.for_slot(slot.get(), &type_name);
        let mut workers = Vec::with_capacity(usize::from(partitions));
        for _ in 0..partitions {
            let instance = SlotInstance::start(&module, module_config.clone())
                .map_err(|source| SlotLoadError::Load { slot, source })?;
            let worker = SlotWorker::start(slot.get(), instance, self.queue, metrics.clone())
                .map_err(|source| SlotLoadError::Thread { slot, source })?;
            workers.push(worker);
        }
        tracing::info!(%slot, kind = def.kind.type_name(), "slot started");
        Ok(SlotEntry {
            def: def.clone(),
            type_name,
            workers,
            metrics,
            errors: AtomicU64::new(0),
            signal: def.kind.signal().map(|config| SignalSlot {
                config: config.clone(),
                single_taker: matches!(def.kind, SlotKind::Random(_)),
            }),
        })
    }

    /// Ids of the configured slots.
    pub fn configured(&self) -> Vec<u8> {
        self.slots
            .load()
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_some())
            .filter_map(|(i, _)| u8::try_from(i).ok())
            .collect()
    }

    /// Ids of the configured slots kept on every instance.
    pub fn everywhere(&self) -> Vec<u8> {
        self.slots
            .load()
            .iter()
            .enumerate()
            .filter(|(_, e)| e.as_ref().is_some_and(|e| e.def.kind.everywhere()))
            .filter_map(|(i, _)| u8::try_from(i).ok())
            .collect()
    }

    /// Whether requests for `slot` are served where they arrive (see
    /// [`vss_config::SlotKind::served_locally`]).
    pub fn served_locally(&self, slot: u32) -> bool {
        self.entry(slot)
            .is_ok_and(|(_, e)| e.def.kind.served_locally())
    }

    /// Whether `slot` is kept on every instance.
    pub fn is_everywhere(&self, slot: u32) -> bool {
        self.entry(slot).is_ok_and(|(_, e)| e.def.kind.everywhere())
    }

    /// Runs operation `op` of a built-in slot type that speaks through
    /// custom requests, after checking that `slot` has type `type_name`.
    pub async fn op(
        &self,
        slot: u32,
        verb: Verb,
        type_name: &'static str,
        op: &'static str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, RequestError> {
        let (id, entry) = self.entry(slot)?;
        if entry.def.kind.type_name() != type_name {
            let e = RequestError::WrongType {
                slot: id,
                type_name: entry.type_name.clone(),
                verb: verb.name(),
                needs: type_name,
            };
            self.metrics.record_error(id, verb.name(), e.code_name());
            return Err(e);
        }
        let build = || {
            Ok(Request::Custom(Custom {
                op: op.to_string(),
                payload,
            }))
        };
        self.serve(
            slot,
            Keyed::Partition(0),
            verb,
            build,
            |id, _, reply| match reply.response {
                Response::Custom(bytes) => Ok(bytes),
                other => Err(unexpected(id, op, &other)),
            },
        )
        .await
    }

    /// How many partitions `slot`'s keys are split into (1 for a slot that
    /// is not split; None if it is not configured).
    pub fn partitions(&self, slot: u8) -> Option<u16> {
        let slots = self.slots.load();
        let entry = slots.get(usize::from(slot))?.as_ref()?;
        Some(entry.partitions())
    }

    /// The configured slots split into more than one partition, with their
    /// partition counts.
    pub fn partitioned(&self) -> Vec<(u8, u16)> {
        self.slots
            .load()
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((u8::try_from(i).ok()?, e.as_ref()?.partitions())))
            .filter(|(_, n)| *n > 1)
            .collect()
    }

    /// The partition of `slot` that `key` belongs to (0 for a slot that is
    /// not split, or not configured).
    pub fn partition_for(&self, slot: u32, key: &str) -> u16 {
        self.entry(slot)
            .map_or(0, |(_, e)| partition_of(key, e.partitions()))
    }

    /// The partition a custom call on `slot` goes to: a limiter's `take-all`
    /// and `release` name their key in the payload; anything else goes to
    /// partition 0.
    pub fn partition_for_call(&self, slot: u32, op: &str, payload: &[u8]) -> u16 {
        if op != OP_TAKE_ALL && op != OP_RELEASE {
            return 0;
        }
        Take::from_bytes(payload).map_or(0, |take| self.partition_for(slot, &take.key))
    }

    /// A number that changes whenever a partition's instance was called.
    pub fn version(&self, slot: u8, partition: u16) -> Option<u64> {
        let slots = self.slots.load();
        let entry = slots.get(usize::from(slot))?.as_ref()?;
        Some(entry.workers.get(usize::from(partition))?.version())
    }

    /// A partition's state, for its standby, taken in turn with its calls.
    pub async fn snapshot(&self, slot: u8, partition: u16) -> Result<Vec<u8>, RequestError> {
        self.on_partition(slot, partition, |instance, _| instance.snapshot())
            .await
    }

    /// A partition's state and the version it was taken at: the partition
    /// changed since only if its version is above that.
    pub async fn snapshot_versioned(
        &self,
        slot: u8,
        partition: u16,
    ) -> Result<(u64, Vec<u8>), RequestError> {
        let (id, entry) = self.entry(u32::from(slot))?;
        let run = entry
            .worker(id, partition)?
            .run_versioned(|instance, _| instance.snapshot());
        run.await.map_err(|e| RequestError::queue(id, e))
    }

    /// Folds a peer's snapshot into this instance's copy.
    pub async fn merge(
        &self,
        slot: u8,
        partition: u16,
        state: Vec<u8>,
    ) -> Result<(), RequestError> {
        self.on_partition(slot, partition, move |instance, _| instance.merge(&state))
            .await
    }

    /// Makes a snapshot from a partition's owner this instance's copy.
    pub async fn replace(
        &self,
        slot: u8,
        partition: u16,
        state: Vec<u8>,
    ) -> Result<(), RequestError> {
        self.on_partition(slot, partition, move |instance, _| instance.replace(&state))
            .await
    }

    /// Runs `f` on a partition's instance in its turn, alone.
    async fn on_partition<T: Send + 'static>(
        &self,
        slot: u8,
        partition: u16,
        f: impl FnOnce(&mut SlotInstance, Context) -> Result<T, CallError> + Send + 'static,
    ) -> Result<T, RequestError> {
        let (id, entry) = self.entry(u32::from(slot))?;
        let run = entry.worker(id, partition)?.run(f);
        run.await.map_err(|e| RequestError::queue(id, e))
    }

    fn entry(&self, slot: u32) -> Result<(u8, Arc<SlotEntry>), RequestError> {
        let id = SlotId::new(slot).ok_or(RequestError::SlotOutOfRange(slot))?;
        self.slots.load()[id.index()]
            .clone()
            .map(|e| (id.get(), e))
            .ok_or(RequestError::SlotNotConfigured(id.get()))
    }

    /// Takes tokens from a limiter slot.
    pub async fn acquire(
        &self,
        slot: u32,
        key: &str,
        tokens: Option<u32>,
    ) -> Result<Acquired, RequestError> {
        let build = || {
            check_len("key", key.len(), MAX_KEY_BYTES)?;
            Ok(Request::Acquire(Acquire {
                key: (!key.is_empty()).then(|| key.to_string()),
                tokens,
            }))
        };
        self.serve(
            slot,
            Keyed::Key(key),
            Verb::Acquire,
            build,
            |id, metrics, reply| match reply.response {
                Response::Acquired(a) => {
                    metrics.decided(a.granted);
                    Ok(a)
                }
                other => Err(unexpected(id, "acquire", &other)),
            },
        )
        .await
    }

    /// Many acquires on one slot, `(key, tokens)` each, answered in order.
    /// A bad item fails alone; the others still run, in one trip to the
    /// slot's thread.
    pub async fn acquire_many(
        &self,
        slot: u32,
        items: &[(String, Option<u32>)],
    ) -> Vec<Result<Acquired, RequestError>> {
        let (id, entry) = match self.entry(slot) {
            Ok(found) => found,
            Err(e) => {
                self.metrics
                    .record_rejected(Verb::Acquire.name(), e.code_name());
                return items.iter().map(|_| Err(e.clone())).collect();
            }
        };
        entry.metrics.calls[Verb::Acquire as usize].inc_by(items.len() as u64);
        // Each partition's requests go to its thread together, in order;
        // partitions run at once.
        let mut answers: Vec<Option<Result<Acquired, RequestError>>> = Vec::new();
        let mut by_partition: Vec<Vec<Request>> = vec![Vec::new(); entry.workers.len()];
        let mut order = Vec::with_capacity(items.len());
        for (key, tokens) in items {
            match check_len("key", key.len(), MAX_KEY_BYTES) {
                Ok(()) => {
                    let p = usize::from(partition_of(key, entry.partitions()));
                    by_partition[p].push(Request::Acquire(Acquire {
                        key: (!key.is_empty()).then(|| key.clone()),
                        tokens: *tokens,
                    }));
                    order.push(p);
                    answers.push(None);
                }
                Err(e) => answers.push(Some(Err(e))),
            }
        }
        let runs = by_partition
            .into_iter()
            .zip(&entry.workers)
            .map(|(reqs, worker)| async move {
                if reqs.is_empty() {
                    return Vec::new().into_iter();
                }
                let count = reqs.len();
                match worker.handle_all(reqs).await {
                    Ok(replies) => replies.into_iter(),
                    Err(e) => vec![Err(e); count].into_iter(),
                }
            });
        let mut replies: Vec<_> = futures_util::future::join_all(runs).await;
        let mut order = order.into_iter();
        answers
            .into_iter()
            .map(|answer| {
                let mut next = || order.next().and_then(|p| replies.get_mut(p)?.next());
                let result = answer.unwrap_or_else(|| match next() {
                    Some(Ok(reply)) => match reply.response {
                        Response::Acquired(a) => {
                            entry.metrics.decided(a.granted);
                            Ok(a)
                        }
                        other => Err(unexpected(id, "acquire", &other)),
                    },
                    Some(Err(e)) => Err(RequestError::queue(id, e)),
                    None => Err(RequestError::queue(id, QueueError::Stopped)),
                });
                if let Err(e) = &result {
                    entry.errors.fetch_add(1, Ordering::Relaxed);
                    self.metrics
                        .record_error(id, Verb::Acquire.name(), e.code_name());
                }
                result
            })
            .collect()
    }

    /// Calls a custom operation.
    pub async fn call(
        &self,
        slot: u32,
        op: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, RequestError> {
        let partition = Keyed::Partition(self.partition_for_call(slot, op, &payload));
        let build = || {
            check_len("op", op.len(), MAX_OP_BYTES)?;
            check_len("payload", payload.len(), MAX_PAYLOAD_BYTES)?;
            Ok(Request::Custom(Custom {
                op: op.to_string(),
                payload,
            }))
        };
        self.serve(
            slot,
            partition,
            Verb::Call,
            build,
            |id, _, reply| match reply.response {
                Response::Custom(bytes) => Ok(bytes),
                Response::Accepted => Ok(Vec::new()),
                other => Err(unexpected(id, "call", &other)),
            },
        )
        .await
    }

    /// A token bucket's tokens per acquire (the default ask): the slots
    /// whose hot buckets may be leased out. None for any other type.
    pub fn lease_tokens(&self, slot: u32) -> Option<u64> {
        match &self.entry(slot).ok()?.1.def.kind {
            SlotKind::TokenBucket(t) => Some(u64::from(t.tokens_per_req)),
            _ => None,
        }
    }

    /// The signal config of a slot, or why it is not a signal slot.
    pub fn signal(&self, slot: u32) -> Result<(u8, SignalSlot), RequestError> {
        let (id, entry) = self.entry(slot)?;
        match &entry.signal {
            Some(signal) => Ok((id, signal.clone())),
            None => Err(RequestError::NotASignalSlot {
                slot: id,
                type_name: entry.type_name.clone(),
            }),
        }
    }

    /// Sends a typed request to a slot, with accounting under `verb`.
    pub async fn request(
        &self,
        slot: u32,
        verb: Verb,
        req: Request,
    ) -> Result<Reply, RequestError> {
        self.serve(
            slot,
            Keyed::Partition(0),
            verb,
            || Ok(req),
            |_, _, reply| Ok(reply),
        )
        .await
    }

    /// Reports delivery outcomes to a signal slot in one call into the
    /// module; returns the follow-up effects. Internal traffic: not counted
    /// as client calls.
    pub async fn report(
        &self,
        slot: u8,
        reports: Vec<DeliveryReport>,
    ) -> Result<Vec<Effect>, RequestError> {
        let (id, entry) = self.entry(u32::from(slot))?;
        let reqs: Vec<Request> = reports.into_iter().map(Request::DeliveryReport).collect();
        let replies = entry
            .worker(id, 0)?
            .run(move |instance, ctx| instance.handle_batch(ctx, &reqs))
            .await
            .map_err(|e| RequestError::queue(slot, e))?;
        let mut effects = Vec::new();
        for reply in replies {
            match reply {
                Ok(r) => effects.extend(r.effects),
                Err(e) => {
                    tracing::warn!(slot, error = %e.message(), "slot refused a delivery report")
                }
            }
        }
        Ok(effects)
    }

    /// Calls `tick` on every configured slot (every partition), each in
    /// its turn on its own thread; returns the effects of those that asked
    /// for any.
    pub async fn tick_all(&self) -> Vec<(u8, Vec<Effect>)> {
        let slots = self.slots.load_full();
        let ticks = slots.iter().enumerate().flat_map(|(i, entry)| {
            let id = u8::try_from(i).ok();
            entry.iter().flat_map(move |entry| {
                entry.workers.iter().filter_map(move |worker| {
                    let id = id?;
                    Some(async move {
                        let ticked = worker.run(|instance, ctx| instance.tick(ctx)).await;
                        (id, ticked)
                    })
                })
            })
        });
        let mut out = Vec::new();
        for (id, ticked) in futures_util::future::join_all(ticks).await {
            match ticked {
                Ok(effects) if !effects.is_empty() => out.push((id, effects)),
                Ok(_) => {}
                Err(e) => tracing::warn!(slot = id, error = %e, "tick failed"),
            }
        }
        out
    }

    /// Finds the slot, builds the request, runs it in the slot's turn and
    /// does the accounting.
    async fn serve<T>(
        &self,
        slot: u32,
        keyed: Keyed<'_>,
        verb: Verb,
        build: impl FnOnce() -> Result<Request, RequestError>,
        answer: impl FnOnce(u8, &SlotMetrics, Reply) -> Result<T, RequestError>,
    ) -> Result<T, RequestError> {
        let (id, entry) = match self.entry(slot) {
            Ok(found) => found,
            Err(e) => {
                self.metrics.record_rejected(verb.name(), e.code_name());
                return Err(e);
            }
        };
        entry.metrics.calls[verb as usize].inc();
        let result = match build() {
            Ok(req) => match entry.worker_for(id, keyed) {
                Ok(worker) => match worker.handle(req).await {
                    Ok(reply) => answer(id, &entry.metrics, reply),
                    Err(e) => Err(RequestError::queue(id, e)),
                },
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            entry.errors.fetch_add(1, Ordering::Relaxed);
            self.metrics.record_error(id, verb.name(), e.code_name());
        }
        result
    }

    /// A line per configured slot.
    pub fn summaries(&self) -> Vec<SlotSummary> {
        self.slots
            .load()
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|e| (i, e)))
            .map(|(i, e)| SlotSummary {
                id: u8::try_from(i).expect("fewer than 256 slots"),
                type_name: e.type_name.clone(),
                calls: e.metrics.calls.iter().map(|c| c.get()).sum(),
                errors: e.errors.load(Ordering::Relaxed),
                restarts: e.metrics.restarts.get(),
            })
            .collect()
    }
}

/// A changed slot's state on its way from the old instances to the new
/// ones, when the change keeps the state's meaning
/// ([`SlotKind::keeps_state_of`]); otherwise the slot starts fresh, and
/// the log says why.
struct StateMove {
    slot: SlotId,
    old: Arc<SlotEntry>,
    /// Per partition: where the old state goes, and the merge's answer.
    merges: Vec<(std::sync::mpsc::SyncSender<Vec<u8>>, MergeDone)>,
}

type MergeDone = std::pin::Pin<Box<dyn Future<Output = Result<(), QueueError>> + Send>>;

impl StateMove {
    /// Puts a merge of the old state first in each new partition's queue,
    /// before the new instances take any request: it waits for that state,
    /// so the requests queued behind it see the state carried over.
    fn prepare(old: &Arc<SlotEntry>, new: &SlotEntry, def: &SlotDef) -> Option<Self> {
        let slot = def.id;
        let why = match def.kind.keeps_state_of(&old.def.kind) {
            Ok(()) if old.workers.len() == new.workers.len() => {
                let mut merges = Vec::with_capacity(new.workers.len());
                for to in &new.workers {
                    let (give, take) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
                    // A move abandoned (another slot failed to load) drops
                    // the sender: the merge ends without a state.
                    let merge = to.queue_run(move |instance, _| match take.recv() {
                        Ok(state) => instance.merge(&state),
                        Err(_) => Ok(()),
                    });
                    match merge {
                        Ok(done) => merges.push((give, Box::pin(done) as MergeDone)),
                        Err(e) => {
                            tracing::warn!(%slot, error = %e, "slot's state not carried over; it starts fresh");
                            return None;
                        }
                    }
                }
                return Some(Self {
                    slot,
                    old: old.clone(),
                    merges,
                });
            }
            Ok(()) => "its number of partitions changed (maxKeys below 16)".to_string(),
            Err(why) => why,
        };
        tracing::warn!(%slot, kind = def.kind.type_name(), why = %why, "slot changed and starts fresh");
        None
    }

    /// Takes each old partition's state, behind what was queued there,
    /// and hands it to the new one's waiting merge. Runs off the reactor
    /// (reloads compile modules), so it may block on the slot threads.
    fn finish(self) {
        let slot = self.slot;
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(%slot, "slot starts fresh: no runtime to move its state with");
            return;
        };
        for (p, (from, (give, merged))) in self.old.workers.iter().zip(self.merges).enumerate() {
            let moved = match handle.block_on(from.run(|instance, _| instance.snapshot())) {
                Ok(state) => {
                    let _ = give.send(state);
                    handle.block_on(merged)
                }
                Err(e) => {
                    drop(give);
                    Err(e)
                }
            };
            if let Err(e) = moved {
                tracing::warn!(%slot, partition = p, error = %e, "slot's state not carried over; that part starts fresh");
            }
        }
        tracing::info!(%slot, "slot changed and kept its state");
    }
}

/// Which partition's instance serves a request.
#[derive(Debug, Clone, Copy)]
enum Keyed<'a> {
    /// The partition of this key.
    Key(&'a str),
    Partition(u16),
}

impl SlotEntry {
    fn partitions(&self) -> u16 {
        u16::try_from(self.workers.len()).unwrap_or(u16::MAX)
    }

    fn worker(&self, slot: u8, partition: u16) -> Result<&SlotWorker, RequestError> {
        self.workers
            .get(usize::from(partition))
            .ok_or(RequestError::NoPartition {
                slot,
                partition,
                partitions: self.partitions(),
            })
    }

    fn worker_for(&self, slot: u8, keyed: Keyed<'_>) -> Result<&SlotWorker, RequestError> {
        match keyed {
            Keyed::Key(key) => self.worker(slot, partition_of(key, self.partitions())),
            Keyed::Partition(p) => self.worker(slot, p),
        }
    }
}

/// How many partitions a slot of `kind` is split into: limiters by their
/// `maxKeys`, one for every other type.
pub fn partitions_of(kind: &SlotKind) -> u16 {
    partitions_for(kind.max_keys())
}

/// Built-in modules compiled for one engine, by type name.
#[derive(Default)]
pub struct Compiled(Mutex<HashMap<&'static str, SlotModule>>);

impl Compiled {
    fn get(&self, name: &str) -> Option<SlotModule> {
        self.lock().get(name).cloned()
    }

    fn insert(&self, name: &'static str, module: SlotModule) {
        self.lock().insert(name, module);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, SlotModule>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.lock().keys()).finish()
    }
}

#[derive(Debug, Clone)]
enum ModuleKey {
    Builtin(&'static str),
    File(PathBuf),
}

fn compile(
    engine: &SlotEngine,
    key: &ModuleKey,
    slot: SlotId,
) -> Result<SlotModule, SlotLoadError> {
    let loaded = match key {
        ModuleKey::Builtin(name) => {
            let bytes = vss_builtin_slots::by_type(name)
                .expect("config validation admits only built-in types that are embedded");
            engine.compile(name, bytes)
        }
        ModuleKey::File(path) => {
            let bytes = std::fs::read(path).map_err(|source| SlotLoadError::ReadModule {
                slot,
                path: path.clone(),
                source,
            })?;
            engine.compile(&path.display().to_string(), &bytes)
        }
    };
    loaded.map_err(|source| SlotLoadError::Load { slot, source })
}

pub(crate) fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), RequestError> {
    if len > max {
        return Err(RequestError::TooLong { field, len, max });
    }
    Ok(())
}

fn unexpected(slot: u8, verb: &str, response: &Response) -> RequestError {
    RequestError::Call {
        slot,
        source: CallError::Slot(SlotError::Internal(format!(
            "slot module answered `{verb}` with an unexpected response {response:?}"
        ))),
    }
}
