//! Events: what happens to runs and steps, delivered to listeners registered with
//! [`Engine::on_event`](crate::Engine::on_event) (and mirrored as tracing events).

use std::time::Duration;

use crate::budget::Usage;
use crate::error::StepError;
use crate::journal::{AttemptRecord, RunStatus};

/// Something that happened to a run or one of its steps.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A new run was journaled and began executing.
    RunStarted {
        /// The run.
        run_id: String,
        /// Its workflow's name.
        workflow: String,
    },
    /// An unfinished run began executing again, replaying its journal.
    RunResumed {
        /// The run.
        run_id: String,
        /// Its workflow's name.
        workflow: String,
        /// How many finished steps its journal holds.
        journaled_steps: usize,
        /// Which resume this is: 1 for the first.
        resume: usize,
    },
    /// A step's outcome came from the journal; its body did not run.
    StepReplayed {
        /// The run.
        run_id: String,
        /// The step's sequence number.
        seq: u64,
        /// The step's name.
        name: String,
    },
    /// An attempt failed and the step will run again after `delay`.
    StepRetrying {
        /// The run.
        run_id: String,
        /// The step's sequence number.
        seq: u64,
        /// The step's name.
        name: String,
        /// The attempt that failed, from 1.
        attempt: u32,
        /// Its error.
        error: StepError,
        /// The wait before the next attempt.
        delay: Duration,
    },
    /// A step ran and its outcome was journaled.
    StepFinished {
        /// The run.
        run_id: String,
        /// The step's sequence number.
        seq: u64,
        /// The step's name.
        name: String,
        /// Attempts made.
        attempts: u32,
        /// From the start of its first attempt to its end.
        latency: Duration,
        /// What its attempts spent.
        usage: Usage,
        /// Its error, if it failed.
        error: Option<StepError>,
        /// Every attempt, when there were several.
        attempt_log: Vec<AttemptRecord>,
        /// When its first attempt started, in microseconds since the Unix epoch.
        started_at_us: u64,
        /// What the run has spent in all, this step included, in US dollars.
        run_cost_usd: f64,
    },
    /// Something a person should look at: see [`AlertKind`]. Also emitted as a tracing event
    /// at warn or error level with the fields `alert`, `run_id`, `step` and `message`.
    Alert {
        /// What happened.
        kind: AlertKind,
        /// The run, if the alert concerns one.
        run_id: Option<String>,
        /// The step, if the alert concerns one.
        step: Option<String>,
        /// A sentence saying what happened.
        message: String,
    },
    /// A run left memory to wait: for a timer or an event. It comes back with
    /// [`Event::RunResumed`] when it is due.
    RunWaiting {
        /// The run.
        run_id: String,
        /// When it is due, in microseconds since the Unix epoch; `None` when only an event
        /// brings it back.
        due_us: Option<u64>,
        /// What it waits for.
        waiting_for: String,
    },
    /// A run stopped executing in this engine, with this status.
    RunFinished {
        /// The run.
        run_id: String,
        /// How it ended.
        status: RunStatus,
        /// Its error, park reason or budget message, if any.
        message: Option<String>,
    },
}

/// What an [`Event::Alert`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AlertKind {
    /// A step was refused for authentication or permission (HTTP 401/403); its run stopped.
    AuthFailure,
    /// A step got HTTP 503 on several attempts in a row.
    RepeatedServiceUnavailable,
    /// A circuit opened.
    CircuitOpened,
    /// A run was stopped by its budget.
    BudgetExceeded,
    /// A run's spending crossed [`AlertThresholds::cost_per_run_usd`](crate::AlertThresholds).
    CostPerRun,
    /// All runs' spending in a window crossed its threshold.
    CostPerWindow,
    /// Too many runs failed in a window.
    ErrorRate,
    /// A step was much slower than its recent history.
    SlowStep,
}

impl AlertKind {
    /// The stable name of the alert, as in the tracing field `alert`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::AuthFailure => "auth_failure",
            AlertKind::RepeatedServiceUnavailable => "repeated_503",
            AlertKind::CircuitOpened => "circuit_opened",
            AlertKind::BudgetExceeded => "budget_exceeded",
            AlertKind::CostPerRun => "cost_per_run",
            AlertKind::CostPerWindow => "cost_per_window",
            AlertKind::ErrorRate => "error_rate",
            AlertKind::SlowStep => "slow_step",
        }
    }
}
