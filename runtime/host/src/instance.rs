//! One running slot: a store, an instance, and the config to rebuild them.

use wasmtime::{ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap};

use crate::bindings::v0_1_0::Slot;
use crate::engine::SlotModule;
use crate::{CallError, Context, Effect, LoadError, Reply, Request, SlotError};

/// Per-store data: the memory cap, and whether it was hit, so a trap that
/// follows a refused allocation can be reported as what it is.
pub(crate) struct State {
    limits: StoreLimits,
    memory_refused: bool,
}

impl ResourceLimiter for State {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        self.memory_refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

struct Live {
    store: Store<State>,
    slot: Slot,
}

/// A slot module instance with its own store. Not thread-safe by design:
/// calls into one slot are serialized by the caller.
pub struct SlotInstance {
    module: SlotModule,
    config: Vec<(String, String)>,
    live: Result<Live, String>,
    restarts: u64,
}

impl std::fmt::Debug for SlotInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotInstance")
            .field("module", &self.module.name())
            .field("live", &self.live.is_ok())
            .field("restarts", &self.restarts)
            .finish()
    }
}

impl SlotInstance {
    /// Instantiates `module` and calls its `init` with `config`.
    pub fn start(module: &SlotModule, config: Vec<(String, String)>) -> Result<Self, LoadError> {
        let live = Self::boot(module, &config)?;
        Ok(Self {
            module: module.clone(),
            config,
            live: Ok(live),
            restarts: 0,
        })
    }

    #[allow(clippy::ptr_arg)] // the generated binding takes the WIT list as &Vec
    fn boot(module: &SlotModule, config: &Vec<(String, String)>) -> Result<Live, LoadError> {
        let limits = module.engine.limits();
        let state = State {
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .build(),
            memory_refused: false,
        };
        let mut store = Store::new(module.engine.engine(), state);
        store.limiter(|s| s);
        let ticks = limits.deadline_ticks();
        let trapped = |e: wasmtime::Error| LoadError::Trapped {
            name: module.name().to_string(),
            reason: format!("{e:#}"),
        };
        store.set_epoch_deadline(ticks);
        let slot = module.pre.instantiate(&mut store).map_err(trapped)?;
        store.set_epoch_deadline(ticks);
        slot.call_init(&mut store, config)
            .map_err(trapped)?
            .map_err(|reason| LoadError::Init {
                name: module.name().to_string(),
                reason,
            })?;
        // The first call into a fresh instance is the slow one; pay it now
        // rather than on a client's request.
        store.set_epoch_deadline(ticks);
        slot.call_snapshot(&mut store).map_err(trapped)?;
        Ok(Live { store, slot })
    }

    /// Times the instance was rebuilt after a failed call.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    pub fn module_name(&self) -> &str {
        self.module.name()
    }

    /// Runs `f` against the live instance. On a trap the instance (whose
    /// store wasmtime has poisoned) is rebuilt from config, losing its state.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&Slot, &mut Store<State>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        if self.live.is_err() {
            self.rebuild();
        }
        let live = match &mut self.live {
            Ok(live) => live,
            Err(why) => return Err(CallError::Unavailable(why.clone())),
        };
        let limits = self.module.engine.limits();
        live.store.set_epoch_deadline(limits.deadline_ticks());
        match f(&live.slot, &mut live.store) {
            Ok(r) => Ok(r),
            Err(e) => {
                let err = classify(&e, live.store.data(), &limits);
                tracing::warn!(module = %self.module.name(), error = %err, "slot call failed; rebuilding the instance");
                self.rebuild();
                Err(err)
            }
        }
    }

    fn rebuild(&mut self) {
        self.restarts += 1;
        self.live = Self::boot(&self.module, &self.config).map_err(|e| {
            tracing::error!(module = %self.module.name(), error = %e, "slot instance could not be rebuilt");
            e.to_string()
        });
    }

    pub fn handle(&mut self, ctx: Context, req: &Request) -> Result<Reply, CallError> {
        self.call(|slot, store| slot.call_handle(store, ctx, req))?
            .map_err(CallError::Slot)
    }

    /// Several requests in one call into the module, answered in order.
    pub fn handle_batch(
        &mut self,
        ctx: Context,
        reqs: &[Request],
    ) -> Result<Vec<Result<Reply, SlotError>>, CallError> {
        self.call(|slot, store| slot.call_handle_batch(store, ctx, reqs))
    }

    pub fn tick(&mut self, ctx: Context) -> Result<Vec<Effect>, CallError> {
        self.call(|slot, store| slot.call_tick(store, ctx))
    }

    pub fn snapshot(&mut self) -> Result<Vec<u8>, CallError> {
        self.call(|slot, store| slot.call_snapshot(store))
    }

    pub fn merge(&mut self, state: &[u8]) -> Result<(), CallError> {
        self.call(|slot, store| slot.call_merge(store, state))?
            .map_err(|m| CallError::Slot(SlotError::InvalidArgument(m)))
    }

    /// Makes `state` this instance's whole state: a fresh instance takes it,
    /// and replaces this one only once it has. Merging would keep whatever
    /// this copy holds that the owner has since undone (tokens handed back,
    /// entries deleted).
    pub fn replace(&mut self, state: &[u8]) -> Result<(), CallError> {
        let mut fresh = Self::start(&self.module, self.config.clone())
            .map_err(|e| CallError::Unavailable(e.to_string()))?;
        fresh.merge(state)?;
        fresh.restarts = self.restarts;
        *self = fresh;
        Ok(())
    }
}

fn classify(e: &wasmtime::Error, state: &State, limits: &crate::HostLimits) -> CallError {
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Timeout(limits.call_deadline),
        _ if state.memory_refused => CallError::MemoryLimit(limits.memory_bytes),
        Some(Trap::UnreachableCodeReached) => {
            CallError::Trap("wasm `unreachable` executed (the module panicked or aborted)".into())
        }
        Some(trap) => CallError::Trap(trap.to_string()),
        None => CallError::Trap(format!("{e:#}")),
    }
}
