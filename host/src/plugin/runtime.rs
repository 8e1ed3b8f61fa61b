//! The wasmtime engine shared by all plugins: compilation, the linker (WASI
//! with no capabilities plus plume's `host` interface), and the epoch ticker
//! that enforces time limits.

use super::bindings::host_api;
use crate::config::{Limits, PluginSource, PluginSpec};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Cache, CacheConfig, Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How often the epoch advances; time limits are rounded up to this.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of a plugin's stderr kept to explain a trap (a Rust panic message).
const STDERR_CAPTURE: usize = 16 * 1024;

/// Per-store state: WASI context, resource table, limits, and the stage name
/// for log lines.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Metered,
    /// Stage name, prefixed to the plugin's log lines.
    pub stage: Arc<str>,
    /// The plugin's captured stderr.
    pub stderr: MemoryOutputPipe,
    /// Instances of this entry sharing the spans (see `PluginSpec`).
    instances: u32,
}

impl HostState {
    /// Bytes of linear memory the plugin has grown to (all its memories).
    pub fn memory_bytes(&self) -> usize {
        self.limits.memory_bytes
    }
}

/// wasmtime's limits, also counting the linear memory granted: a
/// WebAssembly memory never shrinks, so this is the plugin's high-water mark.
struct Metered {
    limits: StoreLimits,
    memory_bytes: usize,
}

impl wasmtime::ResourceLimiter for Metered {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let granted = self.limits.memory_growing(current, desired, maximum)?;
        if granted {
            self.memory_bytes += desired.saturating_sub(current);
        }
        Ok(granted)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
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

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl host_api::Host for HostState {
    fn log(&mut self, level: host_api::Level, message: String) {
        let stage = &*self.stage;
        match level {
            host_api::Level::Trace => tracing::trace!(stage, "{message}"),
            host_api::Level::Debug => tracing::debug!(stage, "{message}"),
            host_api::Level::Info => tracing::info!(stage, "{message}"),
            host_api::Level::Warn => tracing::warn!(stage, "{message}"),
            host_api::Level::Error => tracing::error!(stage, "{message}"),
        }
    }

    fn format_time(&mut self, unix_nanos: u64) -> String {
        crate::span::format_unix_nanos(unix_nanos)
    }

    fn instances(&mut self) -> u32 {
        self.instances
    }
}

/// A frozen clock: plugins get no time source unless granted one, so their
/// output depends only on the spans (event time), as replays require.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Where compiled plugins are cached: `$PLUME_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/plume`, else `$HOME/.cache/plume`; `PLUME_CACHE_DIR=off`
/// (or no home) turns the cache off.
pub fn compile_cache_dir() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    match std::env::var_os("PLUME_CACHE_DIR") {
        Some(d) if d == "off" || d.is_empty() => None,
        Some(d) => std::path::absolute(PathBuf::from(d)).ok(),
        None => std::env::var_os("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("plume")),
    }
}

/// The checks compiled into a plugin's code, from its limits. Each costs
/// every call, so a plugin without the limit does not pay for it: fuel
/// checks for `limits.fuel`; epoch checks (at every function entry and loop
/// iteration: ~20% of the builtin plugins' instructions, 3-6% of the seven
/// stages' throughput, BENCHMARKS.md) for a time limit, unless
/// `timeout_ms = 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Checks {
    /// Counts fuel (`limits.fuel`).
    pub fuel: bool,
    /// Can be interrupted at a deadline (`limits.timeout_ms` > 0).
    pub deadline: bool,
}

impl Checks {
    /// What the defaults need: a deadline, no fuel.
    pub const DEFAULT: Checks = Checks {
        fuel: false,
        deadline: true,
    };

    /// The checks `limits` need.
    pub fn of(limits: &Limits) -> Checks {
        Checks {
            fuel: limits.fuel.is_some(),
            deadline: limits.timeout_ms > 0,
        }
    }

    fn index(self) -> usize {
        usize::from(self.fuel) * 2 + usize::from(self.deadline)
    }
}

/// A wasmtime engine with its linker, one per set of [`Checks`].
struct Flavor {
    engine: Engine,
    linker: Linker<HostState>,
}

type CompileKey = (PluginSource, u64, Checks);
type CompileSlot = Arc<Mutex<Option<Component>>>;

/// The engines, linkers and compiled-component cache.
pub struct Runtime {
    /// By [`Checks::index`], made on first use (most pipelines need one);
    /// an engine that could not be made keeps its error.
    flavors: [OnceLock<Result<Flavor, String>>; 4],
    /// Compiled components by source, content hash and checks: a plugin file
    /// replaced on disk is compiled again (on reload), an unchanged one is not.
    /// One slot per key, so that threads building engines at once (shards)
    /// wait for one compilation instead of each making its own: each copy
    /// would hold its own code, and loading one from the disk cache briefly
    /// takes a buffer of the whole artifact (~7 MiB more RSS per shard).
    compiled: Mutex<HashMap<CompileKey, CompileSlot>>,
}

impl Runtime {
    /// Creates the default engine and starts its epoch ticker; the others
    /// are made when a plugin's limits first need them.
    pub fn new() -> Result<Self> {
        let rt = Runtime {
            flavors: Default::default(),
            compiled: Mutex::new(HashMap::new()),
        };
        rt.flavor(Checks::DEFAULT)?;
        Ok(rt)
    }

    fn flavor(&self, checks: Checks) -> Result<&Flavor> {
        self.flavors[checks.index()]
            .get_or_init(|| flavor(checks).map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("cannot make the wasmtime engine: {e}"))
    }

    /// The engine for plugins with these checks.
    pub fn engine(&self, checks: Checks) -> Result<&Engine> {
        Ok(&self.flavor(checks)?.engine)
    }

    /// The linker with WASI and plume's host interface.
    pub fn linker(&self, checks: Checks) -> Result<&Linker<HostState>> {
        Ok(&self.flavor(checks)?.linker)
    }

    /// Compiles a plugin, once per source, content and flavor for the life
    /// of the runtime. Also returns the content's hash, which tells a reload
    /// whether the code changed.
    pub fn component(&self, source: &PluginSource, checks: Checks) -> Result<(Component, u64)> {
        let bytes: std::borrow::Cow<'static, [u8]> = match source {
            PluginSource::Builtin(name) => super::builtins::lookup(name)
                .with_context(|| format!("unknown builtin:{name}"))?
                .bytes
                .into(),
            PluginSource::Path(path) => std::fs::read(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .into(),
        };
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::hash::DefaultHasher::new();
            bytes.hash(&mut h);
            h.finish()
        };
        let slot = {
            let mut cache = self
                .compiled
                .lock()
                .map_err(|_| anyhow::anyhow!("compile cache poisoned"))?;
            // A replaced file's old compilation is not needed again.
            cache.retain(|(s, h, _), _| s != source || *h == hash);
            cache
                .entry((source.clone(), hash, checks))
                .or_default()
                .clone()
        };
        // A compilation that panicked leaves the slot empty, not broken.
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = slot.as_ref() {
            return Ok((c.clone(), hash));
        }
        // A failure leaves the slot empty: the next caller tries again.
        let component = Component::new(self.engine(checks)?, &bytes).map_err(|e| match source {
            PluginSource::Path(path) => {
                anyhow::anyhow!("{} is not a valid component: {e}", path.display())
            }
            PluginSource::Builtin(_) => anyhow::Error::from(e),
        })?;
        *slot = Some(component.clone());
        Ok((component, hash))
    }
}

/// An engine with these checks, its linker, and (for deadlines) its epoch
/// ticker.
fn flavor(checks: Checks) -> Result<Flavor> {
    let mut config = Config::new();
    config.epoch_interruption(checks.deadline);
    config.consume_fuel(checks.fuel);
    // Component-model async is unused; turning it off makes calls cheaper.
    config.concurrency_support(false);
    if let Some(dir) = compile_cache_dir() {
        // Compiled code on disk (wasmtime's own cache): a Python or JS
        // plugin takes seconds to compile, milliseconds to load. Entries
        // are keyed by the component's bytes, wasmtime's version and the
        // compiler settings (fuel included), so a changed plugin or engine
        // never reuses stale code; an entry that fails to decompress or load
        // is compiled again. The folder must be trusted like the binary.
        let mut cache = CacheConfig::new();
        cache.with_directory(&dir);
        match Cache::new(cache) {
            Ok(c) => {
                config.cache(Some(c));
            }
            Err(e) => tracing::warn!("compiled-code cache at {} disabled: {e}", dir.display()),
        }
    }
    // `PLUME_PERFMAP=1` writes /tmp/perf-PID.map so `perf report` names the
    // plugins' compiled functions (profiling only).
    if std::env::var_os("PLUME_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    let engine = Engine::new(&config)?;
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    host_api::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
    if !checks.deadline {
        return Ok(Flavor { engine, linker });
    }
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("plume-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
    Ok(Flavor { engine, linker })
}

/// A fresh sandboxed store: no files (beyond read-only `grants`), network,
/// environment, arguments or clock; stdout discarded; stderr captured; memory
/// limited; calls interruptible by epoch.
pub fn new_store(engine: &Engine, spec: &PluginSpec) -> Result<Store<HostState>> {
    let (limits, grants) = (&spec.limits, &spec.grants);
    {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE);
        let mut builder = WasiCtx::builder();
        builder
            .stderr(stderr.clone())
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock);
        for dir in &grants.read {
            builder
                .preopened_dir(dir, dir, wasmtime_wasi::FsPerms::ReadOnly)
                .map_err(|e| anyhow::anyhow!("cannot grant read access to {dir}: {e}"))?;
        }
        for dir in &grants.write {
            builder
                .preopened_dir(dir, dir, wasmtime_wasi::FsPerms::ReadWrite)
                .map_err(|e| anyhow::anyhow!("cannot grant write access to {dir}: {e}"))?;
        }
        for name in &grants.env {
            if let Ok(value) = std::env::var(name) {
                builder.env(name, value);
            }
        }
        let wasi = builder.build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limits: Metered {
                limits: StoreLimitsBuilder::new()
                    .memory_size(limits.memory_mb as usize * 1024 * 1024)
                    .trap_on_grow_failure(true)
                    // Interpreters built with componentize-py or componentize-js
                    // are several core instances (libc, the interpreter, adapters).
                    .instances(64)
                    .build(),
                memory_bytes: 0,
            },
            stage: Arc::from(spec.name.as_str()),
            stderr,
            instances: spec.instances.max(1),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        if limits.fuel.is_some() {
            // Instantiation (an interpreter's start-up) is bounded by time
            // only; each call then gets `limits.fuel`.
            store.set_fuel(u64::MAX)?;
        }
        Ok(store)
    }
}

/// Epoch ticks for a time limit.
pub fn deadline_ticks(timeout_ms: u64) -> u64 {
    let tick = EPOCH_TICK.as_millis() as u64;
    // One more tick than the limit, so a call always gets at least its limit.
    timeout_ms.div_ceil(tick) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plugin file replaced on disk is compiled again; an unchanged one is
    /// served from the cache (what a reload relies on).
    #[test]
    fn a_replaced_plugin_file_is_compiled_again() {
        let rt = Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wasm");
        let bytes = |name: &str| super::super::builtins::lookup(name).unwrap().bytes;
        std::fs::write(&path, bytes("attributes")).unwrap();
        let source = PluginSource::Path(path.clone());
        let (_, first) = rt.component(&source, Checks::DEFAULT).unwrap();
        let (_, again) = rt.component(&source, Checks::DEFAULT).unwrap();
        assert_eq!(first, again);
        std::fs::write(&path, bytes("bench-probe")).unwrap();
        let (_, swapped) = rt.component(&source, Checks::DEFAULT).unwrap();
        assert_ne!(first, swapped);
        assert_eq!(
            rt.compiled.lock().unwrap().len(),
            1,
            "the old compilation is dropped"
        );
    }

    /// A plugin without a time limit runs on an engine compiled without the
    /// epoch checks, and its compilation is kept apart from the default's.
    #[test]
    fn no_time_limit_gets_an_engine_without_epoch_checks() {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let limits = |timeout_ms| Limits {
            timeout_ms,
            ..Limits::default()
        };
        assert_eq!(Checks::of(&limits(100)), Checks::DEFAULT);
        let none = Checks::of(&limits(0));
        assert_eq!(
            none,
            Checks {
                fuel: false,
                deadline: false
            }
        );
        let rt = Runtime::new().unwrap();
        // The settings that compiled code depends on (epochs among them).
        let settings = |checks| {
            let mut h = DefaultHasher::new();
            rt.engine(checks)
                .unwrap()
                .precompile_compatibility_hash()
                .hash(&mut h);
            h.finish()
        };
        assert_ne!(settings(Checks::DEFAULT), settings(none));
        let source = PluginSource::Builtin("attributes".into());
        let (a, _) = rt.component(&source, Checks::DEFAULT).unwrap();
        let (b, _) = rt.component(&source, none).unwrap();
        assert_ne!(a.image_range(), b.image_range(), "two compilations");
    }

    /// Engines built at once on several threads (shards) share one
    /// compilation of each plugin.
    #[test]
    fn threads_asking_at_once_share_one_compilation() {
        let rt = Runtime::new().unwrap();
        let source = PluginSource::Builtin("attributes".into());
        let start = std::sync::Barrier::new(3);
        let images: Vec<usize> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..3)
                .map(|_| {
                    scope.spawn(|| {
                        start.wait();
                        let (c, _) = rt.component(&source, Checks::DEFAULT).unwrap();
                        c.image_range().start as usize
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert!(
            images.iter().all(|&i| i == images[0]),
            "one compiled image, not one per thread: {images:?}"
        );
    }
}
