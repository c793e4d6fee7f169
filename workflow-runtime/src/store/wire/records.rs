//! The records' fields as the journal spells them: private types, frozen with the format.
//!
//! Their serde layout is exactly the layout version 1 journals were written in (then the
//! public records were serialized as they were), so version-1 records decode through these
//! types, and version 2 keeps the same names inside its envelope. Renaming a field of a public
//! record therefore changes nothing on disk; changing one here changes the format, and needs a
//! new format version and a golden file.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::budget::{Budget, BudgetExhausted, Usage};
use crate::error::{NonDeterminism, ParkReason, StepError, StepErrorKind};
use crate::journal::{
    AttemptRecord, ConcurrencyKey, InboxEvent, RunRecord, RunStatus, StepRecord, StepStatus,
};

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum WireRunStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Parked,
    BudgetExceeded,
    Waiting,
    Cancelled,
}

#[derive(Serialize, Deserialize)]
pub(super) struct WireRun {
    run_id: String,
    workflow: String,
    fingerprint: u64,
    /// Absent in records journaled before versions: those runs are of version 1.
    #[serde(default = "first_version", skip_serializing_if = "is_first_version")]
    version: u32,
    status: WireRunStatus,
    input: Box<RawValue>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_value"
    )]
    output: Option<Box<RawValue>>,
    error: Option<String>,
    budget: WireBudget,
    #[serde(default)]
    parked_by_fingerprint: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    budget_exhausted: Option<WireBudgetExhausted>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    park_reason: Option<WireParkReason>,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    not_before_us: Option<u64>,
    #[serde(default)]
    concurrency_key: Option<WireConcurrencyKey>,
    #[serde(default)]
    waiting_for: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    resumed_at_us: Vec<u64>,
    created_at_us: u64,
    updated_at_us: u64,
}

#[derive(Serialize, Deserialize)]
pub(super) struct WireBudget {
    max_steps: Option<u64>,
    max_cost_usd: Option<f64>,
    max_tokens: Option<u64>,
    #[serde(default)]
    max_duration: Option<Duration>,
    #[serde(default)]
    max_in_flight_steps: Option<u32>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "budget", rename_all = "snake_case")]
pub(super) enum WireBudgetExhausted {
    Steps { limit: u64, spent: u64 },
    CostUsd { limit: f64, spent: f64 },
    Tokens { limit: u64, spent: u64 },
    Duration { limit: Duration, spent: Duration },
}

#[derive(Serialize, Deserialize)]
pub(super) struct WireNonDeterminism {
    run_id: String,
    seq: u64,
    journaled: String,
    current: String,
    body_changed: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum WireParkReason {
    NonDeterminism(WireNonDeterminism),
    SkippedStep {
        run_id: String,
        seq: u64,
        step: String,
        body_changed: bool,
        message: String,
    },
    Undecodable {
        message: String,
    },
    Storage {
        message: String,
    },
    NotJournaled {
        message: String,
    },
    NotExecuting {
        message: String,
    },
    Other {
        message: String,
    },
}

#[derive(Serialize, Deserialize)]
pub(super) struct WireConcurrencyKey {
    key: String,
    limit: u32,
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum WireStepStatus {
    Completed,
    Failed,
    Started,
    Pending,
    Marker,
}

/// A step as version 1 wrote it, whole, in JSON.
#[derive(Serialize, Deserialize)]
pub(super) struct WireStepV1 {
    pub(super) seq: u64,
    name: String,
    status: WireStepStatus,
    attempts: u32,
    started_at_us: u64,
    finished_at_us: u64,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_value"
    )]
    output: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<WireStepError>,
    #[serde(default, skip_serializing_if = "WireUsage::is_zero")]
    usage: WireUsage,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    attempt_log: Vec<WireAttempt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delivery: Option<u64>,
}

/// The rarely present fields of a version-2 step, JSON inside its binary envelope.
#[derive(Serialize, Deserialize, Default)]
pub(super) struct WireStepExtras {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<WireStepError>,
    #[serde(default, skip_serializing_if = "WireUsage::is_zero")]
    pub(super) usage: WireUsage,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) attempt_log: Vec<WireAttempt>,
}

impl WireStepExtras {
    pub(super) fn is_empty(&self) -> bool {
        self.error.is_none() && self.usage.is_zero() && self.attempt_log.is_empty()
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct WireStepError {
    step: String,
    /// The kind's snake_case name; a name this build does not know reads as `Unknown`.
    kind: String,
    message: String,
    attempts: u32,
}

#[derive(Serialize, Deserialize, Default)]
pub(super) struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cost_usd: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<String>,
}

impl WireUsage {
    fn is_zero(&self) -> bool {
        self.input_tokens == 0
            && self.output_tokens == 0
            && self.cost_usd == 0.0
            && self.model.is_none()
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct WireAttempt {
    attempt: u32,
    started_at_us: u64,
    finished_at_us: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<WireStepError>,
    #[serde(default)]
    wait_after_us: u64,
}

#[derive(Serialize, Deserialize)]
pub(super) struct WireEvent {
    run_id: String,
    arrival: u64,
    name: String,
    payload: Box<RawValue>,
    sent_at_us: u64,
}

fn first_version() -> u32 {
    1
}

fn is_first_version(version: &u32) -> bool {
    *version == 1
}

/// Reads a journaled value that is present as `Some`, even when it is JSON `null` (the value
/// of a step returning `()`); an absent field is `None`.
fn present_value<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(deserializer).map(Some)
}

// Conversions between the public views and the wire types. Each public enum is matched
// exhaustively here, so a variant added to it does not compile until the format says how it
// is written.

impl From<RunStatus> for WireRunStatus {
    fn from(status: RunStatus) -> Self {
        match status {
            RunStatus::Pending => WireRunStatus::Pending,
            RunStatus::Running => WireRunStatus::Running,
            RunStatus::Completed => WireRunStatus::Completed,
            RunStatus::Failed => WireRunStatus::Failed,
            RunStatus::Parked => WireRunStatus::Parked,
            RunStatus::BudgetExceeded => WireRunStatus::BudgetExceeded,
            RunStatus::Waiting => WireRunStatus::Waiting,
            RunStatus::Cancelled => WireRunStatus::Cancelled,
        }
    }
}

impl From<WireRunStatus> for RunStatus {
    fn from(status: WireRunStatus) -> Self {
        match status {
            WireRunStatus::Pending => RunStatus::Pending,
            WireRunStatus::Running => RunStatus::Running,
            WireRunStatus::Completed => RunStatus::Completed,
            WireRunStatus::Failed => RunStatus::Failed,
            WireRunStatus::Parked => RunStatus::Parked,
            WireRunStatus::BudgetExceeded => RunStatus::BudgetExceeded,
            WireRunStatus::Waiting => RunStatus::Waiting,
            WireRunStatus::Cancelled => RunStatus::Cancelled,
        }
    }
}

impl From<&RunRecord> for WireRun {
    fn from(run: &RunRecord) -> Self {
        WireRun {
            run_id: run.run_id.clone(),
            workflow: run.workflow.clone(),
            fingerprint: run.fingerprint,
            version: run.version,
            status: run.status.into(),
            input: run.input.clone(),
            output: run.output.clone(),
            error: run.error.clone(),
            budget: (&run.budget).into(),
            parked_by_fingerprint: run.parked_by_fingerprint,
            budget_exhausted: run.budget_exhausted.as_ref().map(Into::into),
            park_reason: run.park_reason.as_ref().map(Into::into),
            priority: run.priority,
            not_before_us: run.not_before_us,
            concurrency_key: run.concurrency_key.as_ref().map(|k| WireConcurrencyKey {
                key: k.key.clone(),
                limit: k.limit,
            }),
            waiting_for: run.waiting_for.clone(),
            parent: run.parent.clone(),
            tags: run.tags.clone(),
            resumed_at_us: run.resumed_at_us.clone(),
            created_at_us: run.created_at_us,
            updated_at_us: run.updated_at_us,
        }
    }
}

impl From<WireRun> for RunRecord {
    fn from(run: WireRun) -> Self {
        let mut record = RunRecord::new(run.run_id, run.workflow, run.fingerprint, run.input);
        record.version = run.version;
        record.status = run.status.into();
        record.output = run.output;
        record.error = run.error;
        record.budget = run.budget.into();
        record.parked_by_fingerprint = run.parked_by_fingerprint;
        record.budget_exhausted = run.budget_exhausted.map(Into::into);
        record.park_reason = run.park_reason.map(Into::into);
        record.priority = run.priority;
        record.not_before_us = run.not_before_us;
        record.concurrency_key = run.concurrency_key.map(|k| ConcurrencyKey {
            key: k.key,
            limit: k.limit,
        });
        record.waiting_for = run.waiting_for;
        record.parent = run.parent;
        record.tags = run.tags;
        record.resumed_at_us = run.resumed_at_us;
        record.created_at_us = run.created_at_us;
        record.updated_at_us = run.updated_at_us;
        record
    }
}

impl From<&Budget> for WireBudget {
    fn from(budget: &Budget) -> Self {
        WireBudget {
            max_steps: budget.max_steps,
            max_cost_usd: budget.max_cost_usd,
            max_tokens: budget.max_tokens,
            max_duration: budget.max_duration,
            max_in_flight_steps: budget.max_in_flight_steps,
        }
    }
}

impl From<WireBudget> for Budget {
    fn from(budget: WireBudget) -> Self {
        let mut out = Budget::UNLIMITED;
        out.max_steps = budget.max_steps;
        out.max_cost_usd = budget.max_cost_usd;
        out.max_tokens = budget.max_tokens;
        out.max_duration = budget.max_duration;
        out.max_in_flight_steps = budget.max_in_flight_steps;
        out
    }
}

impl From<&BudgetExhausted> for WireBudgetExhausted {
    fn from(exhausted: &BudgetExhausted) -> Self {
        match *exhausted {
            BudgetExhausted::Steps { limit, spent } => WireBudgetExhausted::Steps { limit, spent },
            BudgetExhausted::CostUsd { limit, spent } => {
                WireBudgetExhausted::CostUsd { limit, spent }
            }
            BudgetExhausted::Tokens { limit, spent } => {
                WireBudgetExhausted::Tokens { limit, spent }
            }
            BudgetExhausted::Duration { limit, spent } => {
                WireBudgetExhausted::Duration { limit, spent }
            }
        }
    }
}

impl From<WireBudgetExhausted> for BudgetExhausted {
    fn from(exhausted: WireBudgetExhausted) -> Self {
        match exhausted {
            WireBudgetExhausted::Steps { limit, spent } => BudgetExhausted::Steps { limit, spent },
            WireBudgetExhausted::CostUsd { limit, spent } => {
                BudgetExhausted::CostUsd { limit, spent }
            }
            WireBudgetExhausted::Tokens { limit, spent } => {
                BudgetExhausted::Tokens { limit, spent }
            }
            WireBudgetExhausted::Duration { limit, spent } => {
                BudgetExhausted::Duration { limit, spent }
            }
        }
    }
}

impl From<&ParkReason> for WireParkReason {
    fn from(reason: &ParkReason) -> Self {
        match reason {
            ParkReason::NonDeterminism(nd) => WireParkReason::NonDeterminism(WireNonDeterminism {
                run_id: nd.run_id.clone(),
                seq: nd.seq,
                journaled: nd.journaled.clone(),
                current: nd.current.clone(),
                body_changed: nd.body_changed,
            }),
            ParkReason::SkippedStep {
                run_id,
                seq,
                step,
                body_changed,
                message,
            } => WireParkReason::SkippedStep {
                run_id: run_id.clone(),
                seq: *seq,
                step: step.clone(),
                body_changed: *body_changed,
                message: message.clone(),
            },
            ParkReason::Undecodable { message } => WireParkReason::Undecodable {
                message: message.clone(),
            },
            ParkReason::Storage { message } => WireParkReason::Storage {
                message: message.clone(),
            },
            ParkReason::NotJournaled { message } => WireParkReason::NotJournaled {
                message: message.clone(),
            },
            ParkReason::NotExecuting { message } => WireParkReason::NotExecuting {
                message: message.clone(),
            },
            ParkReason::Other { message } => WireParkReason::Other {
                message: message.clone(),
            },
        }
    }
}

impl From<WireParkReason> for ParkReason {
    fn from(reason: WireParkReason) -> Self {
        match reason {
            WireParkReason::NonDeterminism(nd) => {
                ParkReason::NonDeterminism(Box::new(NonDeterminism {
                    run_id: nd.run_id,
                    seq: nd.seq,
                    journaled: nd.journaled,
                    current: nd.current,
                    body_changed: nd.body_changed,
                }))
            }
            WireParkReason::SkippedStep {
                run_id,
                seq,
                step,
                body_changed,
                message,
            } => ParkReason::SkippedStep {
                run_id,
                seq,
                step,
                body_changed,
                message,
            },
            WireParkReason::Undecodable { message } => ParkReason::Undecodable { message },
            WireParkReason::Storage { message } => ParkReason::Storage { message },
            WireParkReason::NotJournaled { message } => ParkReason::NotJournaled { message },
            WireParkReason::NotExecuting { message } => ParkReason::NotExecuting { message },
            WireParkReason::Other { message } => ParkReason::Other { message },
        }
    }
}

impl From<StepStatus> for WireStepStatus {
    fn from(status: StepStatus) -> Self {
        match status {
            StepStatus::Completed => WireStepStatus::Completed,
            StepStatus::Failed => WireStepStatus::Failed,
            StepStatus::Started => WireStepStatus::Started,
            StepStatus::Pending => WireStepStatus::Pending,
            StepStatus::Marker => WireStepStatus::Marker,
        }
    }
}

impl From<WireStepStatus> for StepStatus {
    fn from(status: WireStepStatus) -> Self {
        match status {
            WireStepStatus::Completed => StepStatus::Completed,
            WireStepStatus::Failed => StepStatus::Failed,
            WireStepStatus::Started => StepStatus::Started,
            WireStepStatus::Pending => StepStatus::Pending,
            WireStepStatus::Marker => StepStatus::Marker,
        }
    }
}

impl WireStepStatus {
    /// The status's byte in a version-2 step.
    pub(super) fn to_byte(self) -> u8 {
        match self {
            WireStepStatus::Completed => 0,
            WireStepStatus::Failed => 1,
            WireStepStatus::Started => 2,
            WireStepStatus::Pending => 3,
            WireStepStatus::Marker => 4,
        }
    }

    pub(super) fn from_byte(byte: u8) -> Option<WireStepStatus> {
        Some(match byte {
            0 => WireStepStatus::Completed,
            1 => WireStepStatus::Failed,
            2 => WireStepStatus::Started,
            3 => WireStepStatus::Pending,
            4 => WireStepStatus::Marker,
            _ => return None,
        })
    }
}

const STEP_ERROR_KINDS: [(StepErrorKind, &str); 14] = [
    (StepErrorKind::Transient, "transient"),
    (StepErrorKind::Timeout, "timeout"),
    (StepErrorKind::RateLimited, "rate_limited"),
    (StepErrorKind::Server, "server"),
    (StepErrorKind::Schema, "schema"),
    (StepErrorKind::Client, "client"),
    (StepErrorKind::Auth, "auth"),
    (StepErrorKind::Terminal, "terminal"),
    (StepErrorKind::Panicked, "panicked"),
    (StepErrorKind::CircuitOpen, "circuit_open"),
    (StepErrorKind::OutcomeUnknown, "outcome_unknown"),
    (StepErrorKind::BudgetExceeded, "budget_exceeded"),
    (StepErrorKind::Cancelled, "cancelled"),
    (StepErrorKind::Unknown, "unknown"),
];

fn kind_name(kind: StepErrorKind) -> &'static str {
    // Exhaustive, so that a new kind cannot be journaled before it has a name here.
    match kind {
        StepErrorKind::Transient
        | StepErrorKind::Timeout
        | StepErrorKind::RateLimited
        | StepErrorKind::Server
        | StepErrorKind::Schema
        | StepErrorKind::Client
        | StepErrorKind::Auth
        | StepErrorKind::Terminal
        | StepErrorKind::Panicked
        | StepErrorKind::CircuitOpen
        | StepErrorKind::OutcomeUnknown
        | StepErrorKind::BudgetExceeded
        | StepErrorKind::Cancelled
        | StepErrorKind::Unknown => STEP_ERROR_KINDS
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or("unknown", |(_, name)| name),
    }
}

impl From<&StepError> for WireStepError {
    fn from(error: &StepError) -> Self {
        WireStepError {
            step: error.step.clone(),
            kind: kind_name(error.kind).to_owned(),
            message: error.message.clone(),
            attempts: error.attempts,
        }
    }
}

impl From<WireStepError> for StepError {
    fn from(error: WireStepError) -> Self {
        let kind = STEP_ERROR_KINDS
            .iter()
            .find(|(_, name)| *name == error.kind)
            .map_or(StepErrorKind::Unknown, |(kind, _)| *kind);
        StepError {
            step: error.step,
            kind,
            message: error.message,
            attempts: error.attempts,
        }
    }
}

impl From<&Usage> for WireUsage {
    fn from(usage: &Usage) -> Self {
        WireUsage {
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cost_usd: usage.cost_usd,
            model: usage.model.clone(),
        }
    }
}

impl From<WireUsage> for Usage {
    fn from(usage: WireUsage) -> Self {
        Usage {
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cost_usd: usage.cost_usd,
            model: usage.model,
        }
    }
}

impl From<&AttemptRecord> for WireAttempt {
    fn from(attempt: &AttemptRecord) -> Self {
        WireAttempt {
            attempt: attempt.attempt,
            started_at_us: attempt.started_at_us,
            finished_at_us: attempt.finished_at_us,
            error: attempt.error.as_ref().map(Into::into),
            wait_after_us: attempt.wait_after_us,
        }
    }
}

impl From<WireAttempt> for AttemptRecord {
    fn from(attempt: WireAttempt) -> Self {
        AttemptRecord {
            attempt: attempt.attempt,
            started_at_us: attempt.started_at_us,
            finished_at_us: attempt.finished_at_us,
            error: attempt.error.map(Into::into),
            wait_after_us: attempt.wait_after_us,
        }
    }
}

impl WireStepExtras {
    pub(super) fn of(step: &StepRecord) -> WireStepExtras {
        WireStepExtras {
            error: step.error.as_ref().map(Into::into),
            usage: (&step.usage).into(),
            attempt_log: step.attempt_log.iter().map(Into::into).collect(),
        }
    }
}

/// The fixed fields of a version-2 step, which its binary header holds.
pub(super) struct StepHeader {
    pub(super) status: WireStepStatus,
    pub(super) name: String,
    pub(super) attempts: u32,
    pub(super) started_at_us: u64,
    pub(super) finished_at_us: u64,
    pub(super) delivery: Option<u64>,
}

/// A step from its parts (version 2).
pub(super) fn step_from_parts(
    seq: u64,
    header: StepHeader,
    output: Option<Box<RawValue>>,
    extras: WireStepExtras,
) -> StepRecord {
    let mut step = StepRecord::completed(seq, header.name, RawValue::NULL.to_owned());
    step.status = header.status.into();
    step.attempts = header.attempts;
    step.started_at_us = header.started_at_us;
    step.finished_at_us = header.finished_at_us;
    step.output = output;
    step.error = extras.error.map(Into::into);
    step.usage = extras.usage.into();
    step.attempt_log = extras.attempt_log.into_iter().map(Into::into).collect();
    step.delivery = header.delivery;
    step
}

impl From<WireStepV1> for StepRecord {
    fn from(step: WireStepV1) -> Self {
        step_from_parts(
            step.seq,
            StepHeader {
                status: step.status,
                name: step.name,
                attempts: step.attempts,
                started_at_us: step.started_at_us,
                finished_at_us: step.finished_at_us,
                delivery: step.delivery,
            },
            step.output,
            WireStepExtras {
                error: step.error,
                usage: step.usage,
                attempt_log: step.attempt_log,
            },
        )
    }
}

impl From<&InboxEvent> for WireEvent {
    fn from(event: &InboxEvent) -> Self {
        WireEvent {
            run_id: event.run_id.clone(),
            arrival: event.arrival,
            name: event.name.clone(),
            payload: event.payload.clone(),
            sent_at_us: event.sent_at_us,
        }
    }
}

impl From<WireEvent> for InboxEvent {
    fn from(event: WireEvent) -> Self {
        InboxEvent {
            run_id: event.run_id,
            arrival: event.arrival,
            name: event.name,
            payload: event.payload,
            sent_at_us: event.sent_at_us,
        }
    }
}

impl WireRun {
    pub(super) fn run_id(&self) -> &str {
        &self.run_id
    }
}

impl WireEvent {
    pub(super) fn key(&self) -> (&str, u64) {
        (&self.run_id, self.arrival)
    }
}
