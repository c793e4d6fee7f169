//! What happened to a run, step by step, and what runs cost: views derived from the journal.
//!
//! Nothing here is written separately: the history is read off the run and step records
//! (attempt logs, resume times, statuses), so keeping it costs no write of its own.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::budget::Usage;
use crate::error::{StepError, StepErrorKind};
use crate::journal::{RunRecord, RunStatus, StepRecord, StepStatus};

/// One event of a run's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// When it happened, in microseconds since the Unix epoch.
    pub at_us: u64,
    /// What happened.
    pub kind: HistoryKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum HistoryKind {
    /// The run was journaled.
    RunStarted {
        /// Its workflow.
        workflow: String,
    },
    /// A process resumed the run, replaying its journal.
    RunResumed,
    /// A step was replayed from the journal by the resume before it.
    StepReplayed {
        /// Its sequence number.
        seq: u64,
        /// Its name.
        name: String,
    },
    /// A step began executing.
    StepStarted {
        /// Its sequence number.
        seq: u64,
        /// Its name.
        name: String,
    },
    /// An attempt failed and another followed (after `wait_us`): not the step's outcome,
    /// which [`StepCompleted`](HistoryKind::StepCompleted) or
    /// [`StepFailed`](HistoryKind::StepFailed) reports.
    StepRetried {
        /// Its sequence number.
        seq: u64,
        /// Its name.
        name: String,
        /// The attempt that failed.
        attempt: u32,
        /// Its error.
        error: StepError,
        /// The wait before the next attempt, in microseconds.
        wait_us: u64,
    },
    /// A step finished with a value.
    StepCompleted {
        /// Its sequence number.
        seq: u64,
        /// Its name.
        name: String,
        /// Attempts made.
        attempts: u32,
        /// What it spent.
        usage: Usage,
    },
    /// A step failed after its retries.
    StepFailed {
        /// Its sequence number.
        seq: u64,
        /// Its name.
        name: String,
        /// Its error.
        error: StepError,
    },
    /// The run ended, or is parked or waiting: its status and message.
    RunEnded {
        /// The status.
        status: RunStatus,
        /// The error, park reason or budget message.
        message: Option<String>,
    },
}

impl fmt::Display for HistoryKind {
    /// The event in words, as `wf show --history` prints it: `#2 classify: attempt 1 rate
    /// limited; retrying in 1.0s: HTTP 429`. A failed attempt that was retried reads as an
    /// attempt, never as the step's outcome.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryKind::RunStarted { workflow } => write!(f, "workflow {workflow}"),
            HistoryKind::RunResumed => {
                f.write_str("a process resumed the run, replaying its journal")
            }
            HistoryKind::StepReplayed { seq, name } | HistoryKind::StepStarted { seq, name } => {
                write!(f, "#{seq} {name}")
            }
            HistoryKind::StepRetried {
                seq,
                name,
                attempt,
                error,
                wait_us,
            } => {
                let next = match Duration::from_micros(*wait_us) {
                    Duration::ZERO => "retrying at once".to_owned(),
                    wait => format!("retrying in {wait:.1?}"),
                };
                write!(
                    f,
                    "#{seq} {name}: attempt {attempt} {}; {next}: {}",
                    attempt_verb(error.kind),
                    error.message
                )
            }
            // What a durable primitive journaled (a timer that fired, an event received, the
            // time): no attempts, tokens or cost to speak of.
            HistoryKind::StepCompleted { seq, name, .. } if !is_step_name(name) => {
                write!(
                    f,
                    "#{seq} {name}: journaled (a durable wait or value, not a step)"
                )
            }
            HistoryKind::StepCompleted {
                seq,
                name,
                attempts,
                usage,
            } => write!(
                f,
                "#{seq} {name} completed after {attempts} attempt{}, {} tokens, ${:.6}",
                if *attempts == 1 { "" } else { "s" },
                usage.total_tokens(),
                usage.cost_usd
            ),
            HistoryKind::StepFailed { seq, name, error } => write!(
                f,
                "#{seq} {name} {} after {} attempt{}: {}",
                error.kind,
                error.attempts,
                if error.attempts == 1 { "" } else { "s" },
                error.message
            ),
            HistoryKind::RunEnded {
                status,
                message: Some(message),
            } => write!(f, "{status}: {message}"),
            HistoryKind::RunEnded {
                status,
                message: None,
            } => write!(f, "{status}"),
        }
    }
}

/// What one failed attempt did, in the words of an attempt rather than of a final failure
/// ([`StepErrorKind`]'s `Display` says "was rate limited", of a step that gave up).
fn attempt_verb(kind: StepErrorKind) -> &'static str {
    match kind {
        StepErrorKind::Transient => "failed",
        StepErrorKind::Timeout => "timed out",
        StepErrorKind::RateLimited => "rate limited",
        StepErrorKind::Server => "hit a server error",
        StepErrorKind::Schema => "returned output that does not match the schema",
        StepErrorKind::Client => "was rejected",
        StepErrorKind::Auth => "was refused (authentication)",
        StepErrorKind::Panicked => "panicked",
        StepErrorKind::CircuitOpen => "failed fast (circuit open)",
        _ => "failed",
    }
}

impl StepRecord {
    /// Whether this record is a step's: a call the body made through `#[step]` or
    /// [`step`](crate::step()), which counts against `max_steps`. The journal also holds, as
    /// records of their own, what the durable primitives journal: a timer (`sleep`,
    /// `sleep_until`), an event wait (`event:NAME`) and its deadline (`deadline:NAME`), the
    /// time, a random number and a uuid (`now`, `random`, `uuid`). Those are not steps, and
    /// the inspector and the cost ledger do not count them as such.
    pub fn is_step(&self) -> bool {
        self.status != crate::journal::StepStatus::Marker && is_step_name(&self.name)
    }
}

/// Whether a record named `name` is a step's, by the names the durable primitives journal
/// under (see [`StepRecord::is_step`]).
fn is_step_name(name: &str) -> bool {
    !(matches!(name, "sleep" | "sleep_until" | "now" | "random" | "uuid")
        || name.starts_with("deadline:")
        || name.starts_with("event:"))
}

/// A page of a run's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// The events, oldest first.
    pub events: Vec<HistoryEvent>,
    /// The `after` of the next page, when there is one.
    pub next: Option<usize>,
}

/// The whole history of `run`, oldest first.
pub(crate) fn history_of(run: &RunRecord, steps: &[StepRecord]) -> Vec<HistoryEvent> {
    let mut events = vec![HistoryEvent {
        at_us: run.created_at_us,
        kind: HistoryKind::RunStarted {
            workflow: run.workflow.clone(),
        },
    }];
    for &resumed in &run.resumed_at_us {
        events.push(HistoryEvent {
            at_us: resumed,
            kind: HistoryKind::RunResumed,
        });
        for step in steps.iter().filter(|s| s.finished_at_us <= resumed) {
            events.push(HistoryEvent {
                at_us: resumed,
                kind: HistoryKind::StepReplayed {
                    seq: step.seq,
                    name: step.name.clone(),
                },
            });
        }
    }
    for step in steps {
        events.push(HistoryEvent {
            at_us: step.started_at_us,
            kind: HistoryKind::StepStarted {
                seq: step.seq,
                name: step.name.clone(),
            },
        });
        // Every failed attempt but a failed step's last, whose error is the step's own.
        let last_attempt = step.attempt_log.iter().map(|a| a.attempt).max();
        for attempt in &step.attempt_log {
            let is_final =
                step.status == StepStatus::Failed && Some(attempt.attempt) == last_attempt;
            if let Some(error) = attempt.error.as_ref().filter(|_| !is_final) {
                events.push(HistoryEvent {
                    at_us: attempt.finished_at_us,
                    kind: HistoryKind::StepRetried {
                        seq: step.seq,
                        name: step.name.clone(),
                        attempt: attempt.attempt,
                        error: error.clone(),
                        wait_us: attempt.wait_after_us,
                    },
                });
            }
        }
        let kind = match (&step.status, &step.error) {
            (StepStatus::Failed, Some(error)) => HistoryKind::StepFailed {
                seq: step.seq,
                name: step.name.clone(),
                error: error.clone(),
            },
            (StepStatus::Completed, _) => HistoryKind::StepCompleted {
                seq: step.seq,
                name: step.name.clone(),
                attempts: step.attempts,
                usage: step.usage.clone(),
            },
            // An at-most-once step whose call is in flight (or was, in a dead process).
            _ => continue,
        };
        events.push(HistoryEvent {
            at_us: step.finished_at_us,
            kind,
        });
    }
    if !matches!(run.status, RunStatus::Pending | RunStatus::Running) {
        events.push(HistoryEvent {
            at_us: run.updated_at_us,
            kind: HistoryKind::RunEnded {
                status: run.status,
                message: run.error.clone().or_else(|| run.waiting_for.clone()),
            },
        });
    }
    // Stable: events at the same instant keep the order above.
    events.sort_by_key(|e| e.at_us);
    events
}

/// How the cost ledger groups runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LedgerGroup {
    /// By workflow name.
    Workflow,
    /// By the value of this tag (runs without it are grouped under `-`).
    Tag(String),
}

/// What the runs of one group spent.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LedgerRow {
    /// The workflow name or tag value.
    pub key: String,
    /// Runs.
    pub runs: u64,
    /// Runs that ended in failure (failed, or stopped by a budget).
    pub failed_runs: u64,
    /// Steps executed.
    pub steps: u64,
    /// Attempts beyond the first, over all steps.
    pub retries: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost in US dollars.
    pub cost_usd: f64,
    /// Failed runs over finished runs, from 0 to 1.
    pub error_rate: f64,
}

/// Sums `runs` (with their steps) by `group`, for runs created at or after `since`.
pub(crate) fn ledger_of(
    runs: &[(RunRecord, Vec<StepRecord>)],
    group: &LedgerGroup,
    since: Option<SystemTime>,
) -> Vec<LedgerRow> {
    let since_us = since
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_micros() as u64);
    let mut rows: BTreeMap<String, (LedgerRow, u64)> = BTreeMap::new();
    for (run, steps) in runs.iter().filter(|(r, _)| r.created_at_us >= since_us) {
        let key = match group {
            LedgerGroup::Workflow => run.workflow.clone(),
            LedgerGroup::Tag(tag) => run.tags.get(tag).cloned().unwrap_or_else(|| "-".into()),
        };
        let (row, finished) = rows.entry(key.clone()).or_insert_with(|| {
            (
                LedgerRow {
                    key,
                    ..LedgerRow::default()
                },
                0,
            )
        });
        row.runs += 1;
        if run.status.is_terminal() {
            *finished += 1;
        }
        if matches!(run.status, RunStatus::Failed | RunStatus::BudgetExceeded) {
            row.failed_runs += 1;
        }
        for step in steps {
            row.steps += u64::from(step.is_step());
            row.retries += u64::from(step.attempts.saturating_sub(1));
            row.input_tokens += step.usage.input_tokens;
            row.output_tokens += step.usage.output_tokens;
            row.cost_usd += step.usage.cost_usd;
        }
    }
    rows.into_values()
        .map(|(mut row, finished)| {
            row.error_rate = if finished == 0 {
                0.0
            } else {
                row.failed_runs as f64 / finished as f64
            };
            row
        })
        .collect()
}
