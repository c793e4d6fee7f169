//! Alert thresholds: cost per run and per time window, error rate, and step latency against
//! the workflow's recent history. The monitor watches the engine's events; what crosses a
//! threshold becomes an [`Event::Alert`](crate::Event::Alert) and a tracing event, like the
//! alerts of the retry policy.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use crate::event::{AlertKind, Event};
use crate::journal::{self, RunStatus};

/// When the engine raises alerts of its own. Unset thresholds do not apply.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct AlertThresholds {
    /// A run whose spending reaches this many dollars (once per run).
    pub cost_per_run_usd: Option<f64>,
    /// All runs together spending this many dollars within the window (once per window).
    pub cost_per_window: Option<(f64, Duration)>,
    /// The share of runs ending in failure within the window, from 0 to 1, once at least
    /// `min_runs` ended in it.
    pub error_rate: Option<ErrorRateThreshold>,
    /// A step slower than this factor times the 95th percentile of the last 100 runs of the
    /// same step of the same workflow (once 20 are known).
    pub slow_step_factor: Option<f64>,
}

/// The error-rate threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ErrorRateThreshold {
    /// Failed runs over ended runs, from 0 to 1.
    pub rate: f64,
    /// The window the rate is computed over.
    pub window: Duration,
    /// How many runs must have ended in the window before the rate means anything.
    pub min_runs: u32,
}

impl AlertThresholds {
    /// No alerts (the default); add thresholds with the `with_` methods.
    pub const NONE: AlertThresholds = AlertThresholds {
        cost_per_run_usd: None,
        cost_per_window: None,
        error_rate: None,
        slow_step_factor: None,
    };

    /// Alert once when a run's spending reaches `usd` dollars.
    pub const fn with_cost_per_run_usd(mut self, usd: f64) -> AlertThresholds {
        self.cost_per_run_usd = Some(usd);
        self
    }

    /// Alert once per window when all runs together spend `usd` dollars within `window`.
    pub const fn with_cost_per_window(mut self, usd: f64, window: Duration) -> AlertThresholds {
        self.cost_per_window = Some((usd, window));
        self
    }

    /// Alert when the share of failed runs crosses `threshold`.
    pub const fn with_error_rate(mut self, threshold: ErrorRateThreshold) -> AlertThresholds {
        self.error_rate = Some(threshold);
        self
    }

    /// Alert when a step is `factor` times slower than its recent 95th percentile.
    pub const fn with_slow_step_factor(mut self, factor: f64) -> AlertThresholds {
        self.slow_step_factor = Some(factor);
        self
    }
}

impl ErrorRateThreshold {
    /// Failed runs over ended runs reaching `rate` (0 to 1) within `window`, once `min_runs`
    /// ended in it.
    pub const fn new(rate: f64, window: Duration, min_runs: u32) -> ErrorRateThreshold {
        ErrorRateThreshold {
            rate,
            window,
            min_runs,
        }
    }
}

/// The latencies kept per step for the percentile.
const LATENCY_HISTORY: usize = 100;
/// The latencies needed before a step can be called slow.
const LATENCY_MIN_SAMPLES: usize = 20;

/// An alert the monitor raises: kind, run, step, message.
pub(crate) type Raised = (AlertKind, Option<String>, Option<String>, String);

#[derive(Debug, Default)]
pub(crate) struct Monitor {
    thresholds: AlertThresholds,
    workflow_of_run: HashMap<String, String>,
    runs_over_cost: HashSet<String>,
    spending: VecDeque<(u64, f64)>,
    cost_window_alerted_at: Option<u64>,
    endings: VecDeque<(u64, bool)>,
    error_rate_alerted_at: Option<u64>,
    latencies: HashMap<(String, String), VecDeque<u64>>,
}

impl Monitor {
    pub(crate) fn new(thresholds: AlertThresholds) -> Self {
        Monitor {
            thresholds,
            ..Monitor::default()
        }
    }

    /// Looks at one event; returns the alerts it raises.
    pub(crate) fn observe(&mut self, event: &Event) -> Vec<Raised> {
        let now = journal::now_us();
        let mut raised = Vec::new();
        match event {
            Event::RunStarted { run_id, workflow }
            | Event::RunResumed {
                run_id, workflow, ..
            } => {
                self.workflow_of_run
                    .insert(run_id.clone(), workflow.clone());
            }
            Event::StepFinished {
                run_id,
                name,
                latency,
                usage,
                run_cost_usd,
                ..
            } => {
                if let Some(limit) = self.thresholds.cost_per_run_usd
                    && *run_cost_usd >= limit
                    && self.runs_over_cost.insert(run_id.clone())
                {
                    raised.push((
                        AlertKind::CostPerRun,
                        Some(run_id.clone()),
                        Some(name.clone()),
                        format!("run {run_id:?} has spent ${run_cost_usd:.4}, over the alert threshold of ${limit:.4}"),
                    ));
                }
                if let Some((limit, window)) = self.thresholds.cost_per_window {
                    let window_us = window.as_micros() as u64;
                    self.spending.push_back((now, usage.cost_usd));
                    while self
                        .spending
                        .front()
                        .is_some_and(|(at, _)| now.saturating_sub(*at) > window_us)
                    {
                        self.spending.pop_front();
                    }
                    let total: f64 = self.spending.iter().map(|(_, c)| c).sum();
                    let quiet = self
                        .cost_window_alerted_at
                        .is_none_or(|at| now.saturating_sub(at) > window_us);
                    if total >= limit && quiet {
                        self.cost_window_alerted_at = Some(now);
                        raised.push((
                            AlertKind::CostPerWindow,
                            None,
                            None,
                            format!("runs spent ${total:.4} within {window:?}, over the alert threshold of ${limit:.4}"),
                        ));
                    }
                }
                if let Some(factor) = self.thresholds.slow_step_factor {
                    let workflow = self
                        .workflow_of_run
                        .get(run_id)
                        .cloned()
                        .unwrap_or_default();
                    let history = self
                        .latencies
                        .entry((workflow.clone(), name.clone()))
                        .or_default();
                    let latency_us = latency.as_micros() as u64;
                    if history.len() >= LATENCY_MIN_SAMPLES {
                        let mut sorted: Vec<u64> = history.iter().copied().collect();
                        sorted.sort_unstable();
                        let p95 = sorted[(sorted.len() * 95 / 100).min(sorted.len() - 1)];
                        if latency_us as f64 > factor * p95 as f64 {
                            raised.push((
                                AlertKind::SlowStep,
                                Some(run_id.clone()),
                                Some(name.clone()),
                                format!(
                                    "step `{name}` of workflow `{workflow}` took {latency:?}, over {factor} x its recent p95 of {:?}",
                                    Duration::from_micros(p95)
                                ),
                            ));
                        }
                    }
                    history.push_back(latency_us);
                    if history.len() > LATENCY_HISTORY {
                        history.pop_front();
                    }
                }
            }
            Event::RunFinished { run_id, status, .. } => {
                self.workflow_of_run.remove(run_id);
                self.runs_over_cost.remove(run_id);
                if let Some(threshold) = self.thresholds.error_rate {
                    let window_us = threshold.window.as_micros() as u64;
                    let failed = matches!(status, RunStatus::Failed | RunStatus::BudgetExceeded);
                    self.endings.push_back((now, failed));
                    while self
                        .endings
                        .front()
                        .is_some_and(|(at, _)| now.saturating_sub(*at) > window_us)
                    {
                        self.endings.pop_front();
                    }
                    let ended = self.endings.len();
                    let failures = self.endings.iter().filter(|(_, f)| *f).count();
                    let rate = failures as f64 / ended.max(1) as f64;
                    let quiet = self
                        .error_rate_alerted_at
                        .is_none_or(|at| now.saturating_sub(at) > window_us);
                    if ended >= threshold.min_runs as usize && rate >= threshold.rate && quiet {
                        self.error_rate_alerted_at = Some(now);
                        raised.push((
                            AlertKind::ErrorRate,
                            None,
                            None,
                            format!(
                                "{failures} of the last {ended} runs failed within {:?} ({:.0}%), over the alert threshold of {:.0}%",
                                threshold.window,
                                rate * 100.0,
                                threshold.rate * 100.0
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }
        raised
    }
}
