//! Circuit breakers: one per named resource (`#[step(circuit = "llm")]`), shared by every run of
//! an engine.
//!
//! Closed: calls go through; each failure that says the resource is unhealthy (transient,
//! timeout, rate limited, server error) counts, a success resets the count. After
//! `failure_threshold` consecutive failures the circuit opens: calls fail fast, without reaching
//! the resource, until `cool_down` has passed. Then one call goes through as a probe; its
//! success closes the circuit, its failure opens it for another cool-down.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// The thresholds of a circuit.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct CircuitConfig {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long the circuit stays open before it lets a probe through.
    pub cool_down: Duration,
}

impl CircuitConfig {
    /// 5 consecutive failures open the circuit for 30 s.
    pub const DEFAULT: CircuitConfig = CircuitConfig {
        failure_threshold: 5,
        cool_down: Duration::from_secs(30),
    };

    /// Opens after `failure_threshold` consecutive failures, for `cool_down`.
    pub const fn new(failure_threshold: u32, cool_down: Duration) -> CircuitConfig {
        CircuitConfig {
            failure_threshold,
            cool_down,
        }
    }
}

impl Default for CircuitConfig {
    fn default() -> Self {
        CircuitConfig::DEFAULT
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CircuitOpen {
    pub(crate) circuit: String,
    pub(crate) failures: u32,
    pub(crate) retry_in: Option<Duration>,
}

impl std::fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "circuit `{}` is open after {} consecutive failures; ",
            self.circuit, self.failures
        )?;
        match self.retry_in {
            Some(wait) => write!(f, "the next probe may go through in {wait:.1?}"),
            None => f.write_str("a probe call is in flight"),
        }
    }
}

/// A call let through a circuit; report how it went with [`Circuits::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    Closed,
    Probe,
}

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
}

/// The circuits of one engine.
#[derive(Debug, Default)]
pub(crate) struct Circuits {
    configs: Mutex<HashMap<String, CircuitConfig>>,
    states: Mutex<HashMap<String, State>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Circuits {
    pub(crate) fn configure(&self, name: &str, config: CircuitConfig) {
        lock(&self.configs).insert(name.to_owned(), config);
    }

    fn config(&self, name: &str) -> CircuitConfig {
        lock(&self.configs).get(name).copied().unwrap_or_default()
    }

    /// Lets a call through, or refuses it while the circuit is open.
    pub(crate) fn admit(&self, name: &str) -> Result<Permit, CircuitOpen> {
        let config = self.config(name);
        let mut states = lock(&self.states);
        let state = states.entry(name.to_owned()).or_default();
        let Some(opened_at) = state.opened_at else {
            return Ok(Permit::Closed);
        };
        let open_for = opened_at.elapsed();
        if open_for < config.cool_down {
            return Err(CircuitOpen {
                circuit: name.to_owned(),
                failures: state.consecutive_failures,
                retry_in: Some(config.cool_down - open_for),
            });
        }
        if state.probe_in_flight {
            return Err(CircuitOpen {
                circuit: name.to_owned(),
                failures: state.consecutive_failures,
                retry_in: None,
            });
        }
        state.probe_in_flight = true;
        Ok(Permit::Probe)
    }

    /// Records how a call let through went; returns true when this opened the circuit.
    pub(crate) fn record(&self, name: &str, permit: Permit, healthy: bool) -> bool {
        let config = self.config(name);
        let mut states = lock(&self.states);
        let state = states.entry(name.to_owned()).or_default();
        if permit == Permit::Probe {
            state.probe_in_flight = false;
        }
        if healthy {
            *state = State::default();
            return false;
        }
        state.consecutive_failures += 1;
        let was_open = state.opened_at.is_some();
        if permit == Permit::Probe || state.consecutive_failures >= config.failure_threshold {
            state.opened_at = Some(Instant::now());
            return !was_open || permit == Permit::Probe;
        }
        false
    }

    /// Opens the circuit at once (a rate-limited step that used up its attempts does this).
    pub(crate) fn trip(&self, name: &str) -> bool {
        let mut states = lock(&self.states);
        let state = states.entry(name.to_owned()).or_default();
        let was_open = state.opened_at.is_some();
        state.opened_at = Some(Instant::now());
        !was_open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_probes_after_the_cool_down_and_closes_on_success() {
        let circuits = Circuits::default();
        circuits.configure(
            "llm",
            CircuitConfig {
                failure_threshold: 3,
                cool_down: Duration::from_secs(10),
            },
        );
        for i in 0..3 {
            let permit = circuits.admit("llm").expect("closed");
            assert_eq!(
                circuits.record("llm", permit, false),
                i == 2,
                "opens on the 3rd"
            );
        }
        let refused = circuits.admit("llm").unwrap_err();
        assert_eq!(refused.failures, 3);
        assert!(
            refused
                .to_string()
                .contains("circuit `llm` is open after 3")
        );

        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = circuits.admit("llm").expect("a probe after the cool-down");
        assert_eq!(probe, Permit::Probe);
        assert!(circuits.admit("llm").is_err(), "one probe at a time");
        assert!(
            circuits.record("llm", probe, false),
            "a failed probe reopens"
        );
        assert!(circuits.admit("llm").is_err());

        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = circuits.admit("llm").expect("another probe");
        circuits.record("llm", probe, true);
        assert_eq!(
            circuits.admit("llm"),
            Ok(Permit::Closed),
            "a good probe closes it"
        );
        assert_eq!(
            circuits.admit("other"),
            Ok(Permit::Closed),
            "circuits are per name"
        );
    }
}
