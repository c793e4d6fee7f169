//! What the journal holds (runs and their steps) and the replay rule.
//!
//! Invariant: a [`StepRecord`] is written once, when its step has finished (completed, or failed
//! after its retries), in a transaction committed with `Durability::Immediate` before the
//! workflow body sees the outcome. A step that was running when the process died therefore has
//! no record, and runs again on resume under the same idempotency key.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::budget::{Budget, Usage};
use crate::error::{ParkReason, StepError};

/// The lifecycle of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunStatus {
    /// Persisted, not yet picked up by an engine.
    Pending,
    /// Being executed, or interrupted by a crash and waiting to be resumed. A run in a
    /// durable wait (a timer, `wait_for_event`) is still `Running` while it waits in memory:
    /// see [`Waiting`](RunStatus::Waiting) for when it leaves.
    Running,
    /// Finished with a value.
    Completed,
    /// Finished with the workflow's error (or a panic).
    Failed,
    /// Stopped for a person or a fixed binary: non-determinism, a journaled value that no longer
    /// decodes, or a storage failure. Resumable.
    Parked,
    /// Stopped by one of its budgets.
    BudgetExceeded,
    /// Sleeping on a durable timer or waiting for an event, out of memory until it is due.
    ///
    /// A run does not become `Waiting` the moment it waits: it first waits in memory, as
    /// `Running`, for the engine's park threshold (10 s by default, set with
    /// [`EngineBuilder::park_after`](crate::EngineBuilder::park_after)), and only a wait
    /// longer than that takes it out of memory and journals it as `Waiting`. A timer due
    /// sooner never leaves memory. (`testing::TestEngine` parks at once.) A wait never
    /// outlasts the run's `max_duration`: the run ends at that deadline, as
    /// [`BudgetExceeded`](RunStatus::BudgetExceeded).
    Waiting,
    /// Cancelled; never resumes.
    Cancelled,
}

impl RunStatus {
    /// True for statuses a run never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Completed
                | RunStatus::Failed
                | RunStatus::BudgetExceeded
                | RunStatus::Cancelled
        )
    }

    /// The status as the journal spells it: `running`, `budget_exceeded`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Parked => "parked",
            RunStatus::BudgetExceeded => "budget_exceeded",
            RunStatus::Waiting => "waiting",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run as the journal holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunRecord {
    /// The id given at start; unique in the journal.
    pub run_id: String,
    /// The workflow's stable name.
    pub workflow: String,
    /// The compile-time fingerprint of the workflow body the run started with.
    pub fingerprint: u64,
    /// The version of the workflow the run started on, and always continues on
    /// ([`Workflow::VERSION`](crate::Workflow::VERSION)); 1 for runs journaled before versions.
    #[serde(default = "first_version")]
    pub version: u32,
    /// Where the run is in its lifecycle.
    pub status: RunStatus,
    /// The workflow's arguments, as JSON.
    pub input: Box<RawValue>,
    /// The workflow's value, as JSON, once completed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_value"
    )]
    pub output: Option<Box<RawValue>>,
    /// Why the run failed, is parked, or was stopped by a budget.
    pub error: Option<String>,
    /// The limits in force for this run.
    pub budget: Budget,
    /// The fingerprint of the code that parked the run; resuming it on registration is pointless
    /// until the code changes.
    #[serde(default)]
    pub parked_by_fingerprint: Option<u64>,
    /// Which budget stopped the run, when one did (`error` holds it in words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_exhausted: Option<crate::BudgetExhausted>,
    /// Why the run is parked, as a type (`error` holds it in words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub park_reason: Option<ParkReason>,
    /// Runs with a higher priority are taken from the queue first.
    #[serde(default)]
    pub priority: i32,
    /// The run does not start (or, when waiting, resume) before this time, in microseconds
    /// since the Unix epoch.
    #[serde(default)]
    pub not_before_us: Option<u64>,
    /// At most `limit` runs with this key execute at once (one run at a time per user, say).
    #[serde(default)]
    pub concurrency_key: Option<ConcurrencyKey>,
    /// What a waiting run waits for: a timer, or an event.
    #[serde(default)]
    pub waiting_for: Option<String>,
    /// The run that started this one as its child ([`durable::child`](crate::durable::child)),
    /// if one did. A parent only ever adopts a run under its child's id that it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Labels given at start (user, agent, tenant), for the cost ledger and filters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// When each resume with a journal to replay began, in microseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumed_at_us: Vec<u64>,
    /// When the run was created, in microseconds since the Unix epoch.
    pub created_at_us: u64,
    /// When the record last changed, in microseconds since the Unix epoch.
    pub updated_at_us: u64,
}

/// A key shared by runs that must not execute more than `limit` at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConcurrencyKey {
    /// The key, for example a user id.
    pub key: String,
    /// How many runs with this key may execute at once.
    pub limit: u32,
}

/// An event sent to a run, kept until the run consumes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboxEvent {
    /// The run it was sent to.
    pub run_id: String,
    /// Its place in the order of arrival (unique in the journal).
    pub arrival: u64,
    /// Its name, which `wait_for_event` matches.
    pub name: String,
    /// Its payload, as JSON.
    pub payload: Box<RawValue>,
    /// When it was sent, in microseconds since the Unix epoch.
    pub sent_at_us: u64,
}

impl RunRecord {
    /// A pending run of `workflow` with `input`, created now, as `Engine::start` journals it
    /// (for stores and tools that write journals).
    pub fn new(
        run_id: impl Into<String>,
        workflow: impl Into<String>,
        fingerprint: u64,
        input: Box<RawValue>,
    ) -> RunRecord {
        let now = now_us();
        RunRecord {
            run_id: run_id.into(),
            workflow: workflow.into(),
            fingerprint,
            version: 1,
            status: RunStatus::Pending,
            input,
            output: None,
            error: None,
            budget: Budget::UNLIMITED,
            parked_by_fingerprint: None,
            park_reason: None,
            budget_exhausted: None,
            priority: 0,
            not_before_us: None,
            concurrency_key: None,
            waiting_for: None,
            parent: None,
            tags: BTreeMap::new(),
            resumed_at_us: Vec::new(),
            created_at_us: now,
            updated_at_us: now,
        }
    }
}

impl StepRecord {
    /// A step `seq` named `name` that completed now in one attempt with `output`.
    pub fn completed(seq: u64, name: impl Into<String>, output: Box<RawValue>) -> StepRecord {
        let now = now_us();
        StepRecord {
            seq,
            name: name.into(),
            status: StepStatus::Completed,
            attempts: 1,
            started_at_us: now,
            finished_at_us: now,
            output: Some(output),
            error: None,
            usage: Usage::default(),
            attempt_log: Vec::new(),
            delivery: None,
        }
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepStatus {
    /// The step returned a value.
    Completed,
    /// The step failed after its retries.
    Failed,
    /// An at-most-once step was about to be called: the intent is journaled before the call,
    /// so a process that dies before the outcome leaves this record behind.
    Started,
    /// Begun, with no outcome yet: a durable timer that has not fired (its due time is the
    /// output), an event wait's deadline, or a step whose failed attempts spent tokens or money
    /// (kept in `usage`, so that a crash during the retries cannot reset a budget). A resumed
    /// run carries on from it.
    Pending,
    /// A mark in the run's path, not a step: a patch the run took
    /// ([`durable::patched`](crate::durable::patched)), named `patch:ID`. Replay reads it to
    /// take the same branch again.
    Marker,
}

/// A finished step as the journal holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StepRecord {
    /// The sequence number allocated when the step was called.
    pub seq: u64,
    /// The step's name.
    pub name: String,
    /// How it ended.
    pub status: StepStatus,
    /// How many attempts ran in the process that finished it.
    pub attempts: u32,
    /// When its first attempt started, in microseconds since the Unix epoch.
    pub started_at_us: u64,
    /// When it finished, in microseconds since the Unix epoch.
    pub finished_at_us: u64,
    /// Its value, as JSON, when completed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_value"
    )]
    pub output: Option<Box<RawValue>>,
    /// Its error, when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// What its attempts spent, all of them.
    #[serde(default, skip_serializing_if = "Usage::is_zero")]
    pub usage: Usage,
    /// Every attempt, when there was more than one: when each ran, how it failed and how long
    /// the step waited before the next.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempt_log: Vec<AttemptRecord>,
    /// The place of this outcome in the order outcomes reached the workflow body; replay hands
    /// outcomes back in this order. `None` for records that are not outcomes, and for records
    /// journaled before the order was (those replay in order of `seq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<u64>,
}

/// One attempt of a step that needed several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The attempt number, from 1.
    pub attempt: u32,
    /// When it started, in microseconds since the Unix epoch.
    pub started_at_us: u64,
    /// When it ended.
    pub finished_at_us: u64,
    /// How it failed; `None` for the attempt that succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// The wait before the next attempt, in microseconds.
    #[serde(default)]
    pub wait_after_us: u64,
}

/// Reads a journaled value that is present as `Some`, even when it is JSON `null`: the value of
/// a step returning `()` or `None` is `null`, and serde would otherwise read it as no value at
/// all. An absent field is `None` (through `#[serde(default)]`).
fn present_value<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(deserializer).map(Some)
}

/// Encodes a value for the journal, and checks that it decodes back into its type before it
/// is committed. JSON has no NaN or infinity (serde_json writes them as `null`) and its
/// decoder reads at most 128 levels of nesting: such a value would be journaled as completed
/// and then park its run forever as "no longer decodes". The error says which.
pub(crate) fn encode_value<T: Serialize + serde::de::DeserializeOwned>(
    value: &T,
) -> Result<Box<RawValue>, String> {
    let type_name = std::any::type_name::<T>();
    let raw = serde_json::value::to_raw_value(value)
        .map_err(|e| format!("its value of type `{type_name}` cannot be encoded as JSON: {e}"))?;
    if let Err(e) = serde_json::from_str::<T>(raw.get()) {
        let text = raw.get();
        let shown: String = text.chars().take(80).collect();
        let more = if shown.len() < text.len() { "..." } else { "" };
        return Err(format!(
            "its value of type `{type_name}` would not decode from the journal ({e}; as JSON it reads {shown}{more}): JSON holds no NaN or infinity, which are written as null, and reads at most 128 levels of nesting"
        ));
    }
    Ok(raw)
}

fn first_version() -> u32 {
    1
}

/// The idempotency key of a step: the same in every attempt and in every process.
pub fn idempotency_key(run_id: &str, seq: u64, name: &str) -> String {
    format!("{run_id}/{seq}/{name}")
}

/// The engine's clock, in microseconds since the Unix epoch: the wall clock when the process
/// first asked, advanced by tokio's clock since. In production that is the wall clock; under
/// `tokio::time::pause` durable timers and due times follow the paused clock, so tests of hour
/// long sleeps take milliseconds.
pub(crate) fn now_us() -> u64 {
    static ORIGIN: std::sync::OnceLock<(u64, std::time::Instant)> = std::sync::OnceLock::new();
    let (wall_us, instant) = *ORIGIN.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        (wall, std::time::Instant::now())
    });
    let elapsed = tokio::time::Instant::now()
        .into_std()
        .saturating_duration_since(instant);
    wall_us + elapsed.as_micros() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, name: &str) -> StepRecord {
        StepRecord {
            seq,
            name: name.into(),
            status: StepStatus::Completed,
            attempts: 1,
            started_at_us: 0,
            finished_at_us: 0,
            output: Some(RawValue::from_string("1".into()).expect("valid json")),
            error: None,
            usage: Usage::default(),
            attempt_log: Vec::new(),
            delivery: None,
        }
    }

    /// Regression: a step returning `()` journaled its value as `null`, which read back as no
    /// value, so a run resumed from a file was parked at that step.
    #[test]
    fn a_null_value_reads_back_as_a_value() {
        let mut step = record(0, "unit");
        step.output = Some(RawValue::from_string("null".into()).expect("valid json"));
        let bytes = serde_json::to_vec(&step).expect("encode");
        let back: StepRecord = serde_json::from_slice(&bytes).expect("decode");
        assert_eq!(
            back.output.map(|raw| raw.get().to_owned()).as_deref(),
            Some("null")
        );
        let mut failed = record(1, "failed");
        failed.output = None;
        let bytes = serde_json::to_vec(&failed).expect("encode");
        let back: StepRecord = serde_json::from_slice(&bytes).expect("decode");
        assert!(back.output.is_none(), "an absent value stays absent");

        let mut run = RunRecord::new(
            "r",
            "w",
            0,
            RawValue::from_string("[]".into()).expect("json"),
        );
        run.output = Some(RawValue::from_string("null".into()).expect("valid json"));
        let back: RunRecord =
            serde_json::from_slice(&serde_json::to_vec(&run).expect("encode")).expect("decode");
        assert_eq!(
            back.output.map(|raw| raw.get().to_owned()).as_deref(),
            Some("null")
        );
    }
}
