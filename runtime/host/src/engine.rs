//! The shared wasmtime engine, its epoch ticker, and compiled slot modules.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, Linker};

use crate::LoadError;
use crate::bindings::v0_1_0::SlotPre;
use crate::instance::State;

/// Bounds every slot instance runs within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLimits {
    /// Longest a single call into a module may run.
    pub call_deadline: Duration,
    /// Most linear memory one instance may use, in bytes.
    pub memory_bytes: usize,
    /// Granularity of the deadline: the epoch advances this often.
    pub epoch_tick: Duration,
}

impl Default for HostLimits {
    fn default() -> Self {
        Self {
            call_deadline: Duration::from_millis(100),
            memory_bytes: 64 << 20,
            epoch_tick: Duration::from_millis(5),
        }
    }
}

impl HostLimits {
    /// Epoch ticks a call may last (at least 1).
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let tick = self.epoch_tick.as_nanos().max(1);
        u64::try_from(self.call_deadline.as_nanos().div_ceil(tick))
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// The wasmtime engine for slot modules, with the thread that advances its
/// epoch. Cheap to clone; the ticker stops when the last clone is dropped.
#[derive(Clone)]
pub struct SlotEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: wasmtime::Engine,
    linker: Linker<State>,
    limits: HostLimits,
    ticker: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for SlotEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotEngine")
            .field("limits", &self.inner.limits)
            .finish()
    }
}

impl SlotEngine {
    pub fn new(limits: HostLimits) -> Result<Self, wasmtime::Error> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let engine = wasmtime::Engine::new(&config)?;
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let weak = engine.weak();
            let stop = stop.clone();
            let tick = limits.epoch_tick;
            std::thread::Builder::new()
                .name("vss-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        match weak.upgrade() {
                            Some(e) => e.increment_epoch(),
                            None => break,
                        }
                    }
                })
                .map_err(wasmtime::Error::from)?
        };
        let linker = Linker::new(&engine);
        Ok(Self {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                limits,
                ticker: Some(ticker),
                stop,
            }),
        })
    }

    pub fn limits(&self) -> HostLimits {
        self.inner.limits
    }

    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        &self.inner.engine
    }

    /// Compiles a slot component. `name` (a type name or a file path) is
    /// used in every error about this module.
    pub fn compile(&self, name: &str, bytes: &[u8]) -> Result<SlotModule, LoadError> {
        // wasmtime's parse error quotes the first bytes of a file that is no
        // Wasm at all; whoever names a module must not learn what another
        // file holds, so such a file gets no detail.
        if !bytes.starts_with(b"\0asm") {
            return Err(LoadError::Invalid {
                name: name.to_string(),
                reason: "not a WebAssembly file (no `\\0asm` header)".into(),
            });
        }
        let component =
            Component::new(&self.inner.engine, bytes).map_err(|e| LoadError::Invalid {
                name: name.to_string(),
                reason: format!("{e:#}"),
            })?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .and_then(SlotPre::new)
            .map_err(|e| LoadError::WrongWorld {
                name: name.to_string(),
                reason: format!("{e:#}"),
            })?;
        Ok(SlotModule {
            name: name.into(),
            pre,
            engine: self.clone(),
        })
    }
}

/// A compiled slot type, ready to instantiate any number of times.
#[derive(Clone)]
pub struct SlotModule {
    pub(crate) name: Arc<str>,
    pub(crate) pre: SlotPre<State>,
    pub(crate) engine: SlotEngine,
}

impl std::fmt::Debug for SlotModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotModule")
            .field("name", &self.name)
            .finish()
    }
}

impl SlotModule {
    pub fn name(&self) -> &str {
        &self.name
    }
}
