//! Configuration of an engine before it opens its journal.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::Engine;
use crate::circuit::CircuitConfig;
use crate::error::Error;
use crate::event::Event;
use crate::monitor::AlertThresholds;
use crate::ratelimit::RateLimit;
use crate::resource::Resources;
use crate::store::{MemoryStore, Store};

use crate::listeners::Listener;

/// Builds an [`Engine`]: its limits, circuits, prices, rate limits and listeners, set before it
/// opens its journal (and so before it resumes any run).
///
/// ```
/// use std::time::Duration;
/// use workflow_runtime::{CircuitConfig, Engine, RateLimit};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), workflow_runtime::Error> {
/// let engine = Engine::builder()
///     .max_concurrent_runs(500)
///     .park_after(Duration::from_secs(30))
///     .price("claude-sonnet", 3.0, 15.0)
///     .rate_limit("anthropic", RateLimit::requests_per_minute(50))
///     .circuit("search", CircuitConfig::DEFAULT)
///     .on_event(|event| tracing::debug!(?event))
///     .in_memory();
/// # drop(engine);
/// # Ok(()) }
/// ```
#[must_use = "an engine builder does nothing until `open`, `in_memory` or `store` is called"]
#[derive(Default)]
pub struct EngineBuilder {
    max_concurrent_runs: Option<usize>,
    park_after: Option<Duration>,
    circuits: Vec<(String, CircuitConfig)>,
    prices: Vec<(String, f64, f64)>,
    rate_limits: Vec<(String, RateLimit)>,
    alert_thresholds: Option<AlertThresholds>,
    listeners: Vec<Listener>,
    resources: Resources,
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("max_concurrent_runs", &self.max_concurrent_runs)
            .field("park_after", &self.park_after)
            .field("listeners", &self.listeners.len())
            .field("resources", &self.resources.len())
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// The most runs that execute at once (default 10,000); the others wait in the queue.
    pub fn max_concurrent_runs(mut self, runs: usize) -> Self {
        self.max_concurrent_runs = Some(runs);
        self
    }

    /// A run that will sleep or wait for an event longer than this leaves memory and is
    /// brought back by replay when it is due (default 10 s).
    pub fn park_after(mut self, threshold: Duration) -> Self {
        self.park_after = Some(threshold);
        self
    }

    /// The thresholds of the circuit breaker `name` (default [`CircuitConfig::DEFAULT`]).
    pub fn circuit(mut self, name: impl Into<String>, config: CircuitConfig) -> Self {
        self.circuits.push((name.into(), config));
        self
    }

    /// A model's price in US dollars per million input and output tokens.
    pub fn price(
        mut self,
        model: impl Into<String>,
        input_usd_per_million: f64,
        output_usd_per_million: f64,
    ) -> Self {
        self.prices
            .push((model.into(), input_usd_per_million, output_usd_per_million));
        self
    }

    /// The capacity of the rate-limit bucket `name`, which steps draw from with
    /// `#[step(rate = "name")]`.
    pub fn rate_limit(mut self, name: impl Into<String>, limit: RateLimit) -> Self {
        self.rate_limits.push((name.into(), limit));
        self
    }

    /// The alert thresholds: cost per run and per window, error rate, slow steps.
    pub fn alert_thresholds(mut self, thresholds: AlertThresholds) -> Self {
        self.alert_thresholds = Some(thresholds);
        self
    }

    /// Registers `value` as the engine's resource of type `T`, which its steps read with
    /// [`resource`](crate::resource()) (or [`StepContext::resource`](crate::StepContext::resource)):
    /// an HTTP client, a database pool, an API key, configuration. One value per type: a second
    /// `T` replaces the first. A test engine registers a fake of the same type.
    ///
    /// Nothing a resource holds is journaled. A value shared with code outside the engine can
    /// be registered as an `Arc` of its own: `resource::<Arc<T>>()` then hands back that `Arc`.
    pub fn resource<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.resources.insert(Arc::new(value));
        self
    }

    /// Calls `listener` with every [`Event`] of every run, from the first resumed one on.
    pub fn on_event(mut self, listener: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// The test engine's threshold: `threshold` unless [`park_after`](Self::park_after) set
    /// one.
    #[cfg(feature = "testing")]
    pub(crate) fn park_after_unless_set(mut self, threshold: Duration) -> Self {
        self.park_after.get_or_insert(threshold);
        self
    }

    /// A resource already shared: the test kit of [`testing`](crate::testing), kept with the
    /// resources so that a step finds it where it finds them (the builder need not know its
    /// type).
    #[cfg(feature = "testing")]
    pub(crate) fn shared_resource<T: Send + Sync + 'static>(mut self, value: Arc<T>) -> Self {
        self.resources.insert(value);
        self
    }

    /// Opens (or creates) the journal file at `path`.
    pub async fn open(self, path: impl AsRef<Path>) -> Result<Engine, Error> {
        let engine = Engine::open(path).await?;
        Ok(self.apply(engine))
    }

    /// An engine whose journal lives in memory, for tests.
    pub fn in_memory(self) -> Engine {
        self.store(MemoryStore::new())
    }

    /// An engine over any [`Store`].
    pub fn store(self, store: impl Store) -> Engine {
        self.apply(Engine::with_store(store))
    }

    fn apply(self, engine: Engine) -> Engine {
        if let Some(runs) = self.max_concurrent_runs {
            engine.set_max_concurrent_runs(runs);
        }
        if let Some(threshold) = self.park_after {
            engine.set_park_after(threshold);
        }
        for (name, config) in self.circuits {
            engine.configure_circuit(&name, config);
        }
        for (model, input, output) in self.prices {
            engine.set_price(&model, input, output);
        }
        for (name, limit) in self.rate_limits {
            engine.set_rate_limit(&name, limit);
        }
        if let Some(thresholds) = self.alert_thresholds {
            engine.set_alert_thresholds(thresholds);
        }
        *engine
            .inner
            .shared
            .resources
            .write()
            .unwrap_or_else(|p| p.into_inner()) = self.resources;
        for listener in self.listeners {
            engine.inner.shared.listeners.add(listener);
        }
        engine
    }
}
