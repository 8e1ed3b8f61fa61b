//! One sandboxed instance per pipeline entry, created from a pre-linked
//! `InstancePre` and reused for every call. A call runs under the entry's time
//! limit; a trap poisons the instance, which is rebuilt (and re-initialised)
//! before its next call, so one bad batch never takes the stage down for good.

use super::bindings::evaluator::{Evaluator, EvaluatorPre};
use super::bindings::exporter::{Exporter, ExporterPre};
use super::bindings::router::{Router, RouterPre};
use super::bindings::types::{
    Alert, Batch as WitBatch, ExporterManifest, Manifest, Notification, Part,
};
use super::bindings::{Processor, ProcessorPre};
use super::breaker::{Breaker, BreakerEvent};
use super::runtime::{Checks, HostState, Runtime, deadline_ticks, new_store};
use crate::config::PluginSpec;
use std::fmt;
use std::time::{Duration, Instant};
use wasmtime::{Engine, Store};

/// Time allowed for instantiation (start functions), separate from the
/// per-call limit: interpreters' start-up may take longer than a batch.
const INSTANTIATE_TIMEOUT_MS: u64 = 10_000;

/// Why a plugin call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginError {
    /// The call ran past its time limit and was interrupted.
    Timeout {
        /// The limit.
        limit_ms: u64,
    },
    /// The call used up its fuel (`limits.fuel` instructions, roughly).
    Fuel {
        /// The limit.
        limit: u64,
    },
    /// The plugin tried to grow its memory past the limit.
    MemoryLimit {
        /// The limit.
        limit_mb: u64,
    },
    /// The plugin trapped (a Rust panic, an `unreachable`, ...).
    Trap {
        /// wasmtime's description.
        message: String,
        /// The tail of what the plugin wrote to stderr (e.g. a panic message).
        stderr: String,
    },
    /// The plugin returned an error.
    Returned(String),
    /// The plugin's answer broke the contract (bad row or slot index, ...).
    Contract(String),
    /// Not called: the crash-loop breaker disabled the plugin.
    Disabled {
        /// Seconds until the next try.
        next_try_secs: u64,
    },
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginError::Timeout { limit_ms } => write!(f, "timed out (limit {limit_ms} ms)"),
            PluginError::Fuel { limit } => write!(f, "ran out of fuel (limit {limit})"),
            PluginError::MemoryLimit { limit_mb } => {
                write!(f, "exceeded its memory limit ({limit_mb} MiB)")
            }
            PluginError::Trap { message, stderr } if stderr.is_empty() => {
                write!(f, "trapped: {message}")
            }
            PluginError::Trap { message, stderr } => {
                write!(f, "trapped: {message}; stderr: {stderr}")
            }
            PluginError::Returned(m) => write!(f, "returned an error: {m}"),
            PluginError::Contract(m) => write!(f, "broke the plugin contract: {m}"),
            PluginError::Disabled { next_try_secs } => write!(
                f,
                "disabled by the crash-loop breaker (next try in {next_try_secs} s)"
            ),
        }
    }
}

impl PluginError {
    /// A short label for metrics: timeout, memory, trap, error, contract.
    pub fn label(&self) -> &'static str {
        match self {
            PluginError::Timeout { .. } => "timeout",
            PluginError::Fuel { .. } => "fuel",
            PluginError::MemoryLimit { .. } => "memory",
            PluginError::Trap { .. } => "trap",
            PluginError::Returned(_) => "error",
            PluginError::Contract(_) => "contract",
            PluginError::Disabled { .. } => "disabled",
        }
    }
}

/// What each world's generated bindings have in common.
pub trait World: Sized {
    /// Pre-linked form, checked against the world's exports.
    type Pre: Clone;
    /// What `init` returns.
    type Manifest;
    /// Checks the component exports this world.
    fn pre(ip: wasmtime::component::InstancePre<HostState>) -> wasmtime::Result<Self::Pre>;
    /// Instantiates into a store.
    fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self>;
    /// Calls the world's `init`.
    fn init(
        &self,
        store: &mut Store<HostState>,
        config: &str,
    ) -> wasmtime::Result<Result<Self::Manifest, String>>;
}

impl World for Processor {
    type Pre = ProcessorPre<HostState>;
    type Manifest = Manifest;
    fn pre(ip: wasmtime::component::InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
        ProcessorPre::new(ip)
    }
    fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self> {
        pre.instantiate(store)
    }
    fn init(
        &self,
        store: &mut Store<HostState>,
        config: &str,
    ) -> wasmtime::Result<Result<Manifest, String>> {
        self.call_init(store, config)
    }
}

impl World for Evaluator {
    type Pre = EvaluatorPre<HostState>;
    type Manifest = Manifest;
    fn pre(ip: wasmtime::component::InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
        EvaluatorPre::new(ip)
    }
    fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self> {
        pre.instantiate(store)
    }
    fn init(
        &self,
        store: &mut Store<HostState>,
        config: &str,
    ) -> wasmtime::Result<Result<Manifest, String>> {
        self.call_init(store, config)
    }
}

impl World for Router {
    type Pre = RouterPre<HostState>;
    type Manifest = ();
    fn pre(ip: wasmtime::component::InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
        RouterPre::new(ip)
    }
    fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self> {
        pre.instantiate(store)
    }
    fn init(
        &self,
        store: &mut Store<HostState>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        self.call_init(store, config)
    }
}

impl World for Exporter {
    type Pre = ExporterPre<HostState>;
    type Manifest = ExporterManifest;
    fn pre(ip: wasmtime::component::InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
        ExporterPre::new(ip)
    }
    fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self> {
        pre.instantiate(store)
    }
    fn init(
        &self,
        store: &mut Store<HostState>,
        config: &str,
    ) -> wasmtime::Result<Result<ExporterManifest, String>> {
        self.call_init(store, config)
    }
}

/// A live, sandboxed plugin instance of world `W`.
pub struct Sandbox<W: World> {
    engine: Engine,
    pre: W::Pre,
    store: Store<HostState>,
    world: W,
    spec: PluginSpec,
    /// Hash of the component's bytes: equal means the same code.
    code_hash: u64,
    /// Disables the plugin when it keeps failing.
    breaker: Breaker,
    poisoned: bool,
    /// How many times the instance was rebuilt after a trap.
    pub restarts: u64,
}

/// The time to rebuild an instance after a trap, measured by
/// [`Sandbox::time_rebuilds`].
#[derive(Debug, Clone, Copy)]
pub struct RebuildCost {
    /// A new store and instance (start functions run), dropped again.
    pub instantiate: Duration,
    /// A new store and instance and `init`: what the next call waits for.
    pub rebuild: Duration,
}

impl<W: World> Sandbox<W> {
    /// Compiles (or reuses) the component, links, instantiates and calls
    /// `init`. Errors are messages for the operator.
    pub fn new(rt: &Runtime, spec: &PluginSpec) -> Result<(Self, W::Manifest), String> {
        let checks = Checks::of(&spec.limits);
        let (component, code_hash) = rt
            .component(&spec.source, checks)
            .map_err(|e| format!("{e:#}"))?;
        let ty = component.component_type();
        let engine = rt.engine(checks).map_err(|e| format!("{e:#}"))?;
        let names: Vec<&str> = (ty.imports(engine).map(|(n, _)| n))
            .chain(ty.exports(engine).map(|(n, _)| n))
            .collect();
        if let Some(version) = super::bindings::other_wit_version(names) {
            return Err(format!(
                "was built against plume:pipeline@{version}, and this plume implements \
                 plume:pipeline@{}: rebuild it against this release's wit/ (Rust: its plume-sdk)",
                super::bindings::WIT_VERSION
            ));
        }
        let linker = rt.linker(checks).map_err(|e| format!("{e:#}"))?;
        let ip = linker.instantiate_pre(&component).map_err(|e| {
            format!("cannot link: {e:#} (plugins may import only WASI 0.2 and plume:pipeline/host)")
        })?;
        let pre = W::pre(ip).map_err(|e| {
            format!(
                "is not {} plugin (world `{}` of plume:pipeline): {e:#}",
                spec.kind.with_article(),
                spec.kind
            )
        })?;
        let mut store = new_store(engine, spec).map_err(|e| format!("{e:#}"))?;
        store.set_epoch_deadline(deadline_ticks(INSTANTIATE_TIMEOUT_MS));
        let world =
            W::instantiate(&pre, &mut store).map_err(|e| format!("cannot instantiate: {e:#}"))?;
        let mut sandbox = Sandbox {
            engine: engine.clone(),
            pre,
            store,
            world,
            spec: spec.clone(),
            code_hash,
            breaker: Breaker::new(spec.breaker.clone()),
            poisoned: false,
            restarts: 0,
        };
        let config = spec.config_json.clone();
        let manifest = sandbox
            .call(|w, s| w.init(s, &config))
            .map_err(|e| format!("init failed: {e}"))?;
        Ok((sandbox, manifest))
    }

    /// The entry this instance serves.
    pub fn spec(&self) -> &PluginSpec {
        &self.spec
    }

    /// True when `other` runs the same code under the same name: state one
    /// hands over (snapshot) the other can take (restore).
    pub fn same_plugin(&self, other: &Sandbox<W>) -> bool {
        self.spec.name == other.spec.name
            && self.spec.source == other.spec.source
            && self.code_hash == other.code_hash
    }

    /// Rebuilds the instance now if a trap poisoned it; true when it did.
    /// Lets a caller restore state before the next real call.
    pub fn revive_if_poisoned(&mut self) -> Result<bool, PluginError> {
        if !self.poisoned {
            return Ok(false);
        }
        self.revive()?;
        Ok(true)
    }

    /// A new store and a new instance of the same code, not yet initialised.
    fn fresh_instance(&self) -> Result<(Store<HostState>, W), PluginError> {
        let mut store = new_store(&self.engine, &self.spec).map_err(|e| PluginError::Trap {
            message: format!("{e:#}"),
            stderr: String::new(),
        })?;
        store.set_epoch_deadline(deadline_ticks(INSTANTIATE_TIMEOUT_MS));
        let world = W::instantiate(&self.pre, &mut store).map_err(|e| PluginError::Trap {
            message: format!("re-instantiation failed: {e:#}"),
            stderr: String::new(),
        })?;
        Ok((store, world))
    }

    /// Rebuilds a poisoned instance: a new store, a new instance, `init` again.
    fn revive(&mut self) -> Result<(), PluginError> {
        let (store, world) = self.fresh_instance()?;
        self.store = store;
        self.world = world;
        self.poisoned = false;
        self.restarts += 1;
        let config = self.spec.config_json.clone();
        self.call_unguarded(|w, s| w.init(s, &config)).map(|_| ())
    }

    /// What a trap costs before the next call (`plume bench`), over `n`
    /// tries of each: a store and an instance made and dropped, and the whole
    /// rebuild (`init` again). This instance is rebuilt `n` times.
    pub fn time_rebuilds(&mut self, n: u32) -> Result<RebuildCost, PluginError> {
        let n = n.max(1);
        let started = Instant::now();
        for _ in 0..n {
            drop(self.fresh_instance()?);
        }
        let instantiate = started.elapsed() / n;
        let started = Instant::now();
        for _ in 0..n {
            self.revive()?;
        }
        Ok(RebuildCost {
            instantiate,
            rebuild: started.elapsed() / n,
        })
    }

    /// Calls into the plugin under its time limit. Traps and limit breaches
    /// poison the instance; the plugin's own `Err` does not.
    pub fn call<T>(
        &mut self,
        f: impl FnOnce(&W, &mut Store<HostState>) -> wasmtime::Result<Result<T, String>>,
    ) -> Result<T, PluginError> {
        let now = Instant::now();
        if let Err(left) = self.breaker.allow(now) {
            return Err(PluginError::Disabled {
                next_try_secs: left.as_secs() + 1,
            });
        }
        let result = self.call_unguarded(f);
        match &result {
            Err(PluginError::Returned(_)) | Ok(_) => self.breaker.success(),
            Err(_) => self.breaker.failure(now),
        }
        result
    }

    fn call_unguarded<T>(
        &mut self,
        f: impl FnOnce(&W, &mut Store<HostState>) -> wasmtime::Result<Result<T, String>>,
    ) -> Result<T, PluginError> {
        if self.poisoned {
            self.revive()?;
        }
        self.store
            .set_epoch_deadline(deadline_ticks(self.spec.limits.timeout_ms));
        if let Some(fuel) = self.spec.limits.fuel
            && let Err(e) = self.store.set_fuel(fuel)
        {
            return Err(PluginError::Trap {
                message: format!("cannot set fuel: {e}"),
                stderr: String::new(),
            });
        }
        match f(&self.world, &mut self.store) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(message)) => Err(PluginError::Returned(message)),
            Err(e) => {
                self.poisoned = true;
                Err(self.classify(e))
            }
        }
    }

    /// Bytes of linear memory the current instance has grown to.
    pub fn memory_bytes(&self) -> u64 {
        self.store.data().memory_bytes() as u64
    }

    /// True while the crash-loop breaker keeps the plugin disabled.
    pub fn disabled(&self) -> bool {
        self.breaker.is_open()
    }

    /// How many times the breaker disabled the plugin.
    pub fn breaker_trips(&self) -> u64 {
        self.breaker.trips
    }

    /// The breaker's state changes since the last call.
    pub fn breaker_events(&mut self) -> Vec<BreakerEvent> {
        self.breaker.take_events()
    }

    fn classify(&self, e: wasmtime::Error) -> PluginError {
        match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => {
                return PluginError::Timeout {
                    limit_ms: self.spec.limits.timeout_ms,
                };
            }
            Some(wasmtime::Trap::OutOfFuel) => {
                return PluginError::Fuel {
                    limit: self.spec.limits.fuel.unwrap_or(0),
                };
            }
            _ => {}
        }
        let message = format!("{e:#}");
        if message.contains("forcing trap when growing memory") {
            return PluginError::MemoryLimit {
                limit_mb: self.spec.limits.memory_mb,
            };
        }
        let captured = self.store.data().stderr.contents();
        let text = String::from_utf8_lossy(&captured);
        let tail: String = text
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join(" | ");
        PluginError::Trap {
            message: first_line(&message),
            stderr: tail,
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

/// Processor calls.
impl Sandbox<Processor> {
    /// Runs `process` on a projected batch.
    pub fn process(
        &mut self,
        batch: &WitBatch,
    ) -> Result<super::bindings::types::BatchResult, PluginError> {
        self.call(|w, s| w.call_process(s, batch))
    }
    /// The stage's report (JSON object text).
    pub fn report(&mut self) -> Result<String, PluginError> {
        self.call(|w, s| w.call_report(s).map(Ok))
    }
}

/// Evaluator calls.
impl Sandbox<Evaluator> {
    /// Observes a projected batch.
    pub fn observe(&mut self, batch: &WitBatch) -> Result<(), PluginError> {
        self.call(|w, s| w.call_observe(s, batch))
    }
    /// Advances event time.
    pub fn tick(&mut self, now: u64) -> Result<Vec<Alert>, PluginError> {
        self.call(|w, s| w.call_tick(s, now))
    }
    /// The evaluator's report (JSON object text).
    pub fn report(&mut self) -> Result<String, PluginError> {
        self.call(|w, s| w.call_report(s).map(Ok))
    }
    /// The evaluator's state, for the host to keep.
    pub fn snapshot(&mut self) -> Result<Vec<u8>, PluginError> {
        self.call(|w, s| w.call_snapshot(s).map(Ok))
    }
    /// Hands a snapshot back to a fresh instance.
    pub fn restore(&mut self, state: &[u8]) -> Result<(), PluginError> {
        self.call(|w, s| w.call_restore(s, state))
    }
}

/// Router calls.
impl Sandbox<Router> {
    /// Routes alerts.
    pub fn route(&mut self, alerts: &[Alert], now: u64) -> Result<Vec<Notification>, PluginError> {
        self.call(|w, s| w.call_route(s, alerts, now))
    }
    /// The router's report.
    pub fn report(&mut self) -> Result<String, PluginError> {
        self.call(|w, s| w.call_report(s).map(Ok))
    }
}

/// Exporter calls.
impl Sandbox<Exporter> {
    /// The payload for a batch.
    pub fn export_spans(&mut self, batch: &WitBatch) -> Result<Vec<Part>, PluginError> {
        self.call(|w, s| w.call_export_spans(s, batch))
    }
    /// The payload for notifications.
    pub fn export_alerts(
        &mut self,
        notifications: &[Notification],
    ) -> Result<Vec<Part>, PluginError> {
        self.call(|w, s| w.call_export_alerts(s, notifications))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_rebuilds_leave_a_working_instance() {
        let rt = Runtime::new().unwrap();
        let pipeline =
            crate::config::parse("<default>", crate::config::DEFAULT_PIPELINE, |_| None).unwrap();
        let (mut sandbox, _) = Sandbox::<Processor>::new(&rt, &pipeline.stages[0]).unwrap();
        let cost = sandbox.time_rebuilds(3).unwrap();
        assert_eq!(sandbox.restarts, 3, "rebuilt once per try");
        assert!(cost.rebuild > Duration::ZERO && cost.instantiate > Duration::ZERO);
        let report: serde_json::Value = serde_json::from_str(&sandbox.report().unwrap()).unwrap();
        assert!(report.is_object(), "{report}");
    }
}
