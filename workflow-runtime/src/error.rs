//! Errors: one enum per operation that can fail in its own ways, and the umbrella [`Error`].
//!
//! Step failures are different: they are data, journaled and handed to the workflow body, so
//! they live in [`StepError`], which is serializable.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Why an engine could not open its journal file.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// Another process (or another engine in this one) holds the file. redb takes an exclusive
    /// lock, so only one engine at a time may use a journal.
    Locked {
        /// The journal file.
        path: PathBuf,
    },
    /// The file exists but is not a workflow journal: not a redb file at all, or a redb file
    /// written by something else. Nothing was written to it.
    NotAJournal {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        detail: String,
    },
    /// The journal was written by a newer version of this library.
    NewerFormat {
        /// The journal file.
        path: PathBuf,
        /// The format version found in the file.
        found: u32,
        /// The newest format version this build understands.
        supported: u32,
    },
    /// The storage layer failed.
    Storage {
        /// The journal file.
        path: PathBuf,
        /// The underlying error.
        detail: String,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Locked { path } => write!(
                f,
                "journal {} is held by another process (redb allows one engine per file); stop the other engine or open another file",
                path.display()
            ),
            OpenError::NotAJournal { path, detail } => write!(
                f,
                "{} is not a workflow journal ({detail}); nothing was written to it",
                path.display()
            ),
            OpenError::NewerFormat {
                path,
                found,
                supported,
            } => write!(
                f,
                "journal {} has format version {found}, newer than the {supported} this build supports; upgrade workflow-runtime",
                path.display()
            ),
            OpenError::Storage { path, detail } => {
                write!(f, "cannot open journal {}: {detail}", path.display())
            }
        }
    }
}

impl std::error::Error for OpenError {}

/// A failure of the storage layer while reading or writing the journal.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StoreError {
    /// The underlying storage failed (I/O, disk full, a closed database).
    Backend(String),
    /// A journal record could not be decoded: the file was damaged or edited.
    CorruptRecord {
        /// Which record, for example `run "r1" step 3`.
        record: String,
        /// What was wrong with it.
        detail: String,
    },
    /// The store was closed.
    Closed,
    /// The store was opened for reading only.
    ReadOnly,
    /// The journal file is damaged where the storage engine keeps its own structures: it is
    /// not a readable journal. Records elsewhere may still read.
    Damaged {
        /// What failed.
        detail: String,
    },
    /// The disk is full (or the file reached its size limit): nothing of the failed commit
    /// was written. Commits succeed again once there is space.
    DiskFull {
        /// The operating system's message.
        detail: String,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Backend(detail) => write!(f, "journal storage failed: {detail}"),
            StoreError::CorruptRecord { record, detail } => {
                write!(f, "corrupted journal record ({record}): {detail}")
            }
            StoreError::Closed => f.write_str("the journal store is closed"),
            StoreError::ReadOnly => f.write_str("the journal was opened for reading only"),
            StoreError::Damaged { detail } => {
                write!(
                    f,
                    "the journal file is damaged, not a readable journal: {detail}"
                )
            }
            StoreError::DiskFull { detail } => write!(
                f,
                "the journal could not be written, the disk is full: {detail}; nothing of this commit was written, and commits succeed again once there is space"
            ),
        }
    }
}

impl std::error::Error for StoreError {}

/// A resumed run took a different path than the journal recorded.
///
/// The run is parked, not failed: a binary whose workflow takes the journaled path again can
/// resume it with [`Engine::resume`](crate::Engine::resume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonDeterminism {
    /// The run.
    pub run_id: String,
    /// The sequence number at which the paths diverged.
    pub seq: u64,
    /// The step name in the journal.
    pub journaled: String,
    /// The step name the current code asked for at that sequence number.
    pub current: String,
    /// True when the workflow body's compile-time fingerprint differs from the one the run
    /// started with: the code changed since.
    pub body_changed: bool,
}

impl fmt::Display for NonDeterminism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "non-determinism in run {:?} at step #{}: the journal has step `{}` but the workflow now calls `{}`",
            self.run_id, self.seq, self.journaled, self.current
        )?;
        if self.body_changed {
            f.write_str(" (the workflow body changed since this run started)")?;
        }
        f.write_str("; the run is parked until code that takes the journaled path resumes it")
    }
}

impl std::error::Error for NonDeterminism {}

/// Why the admin endpoint could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum AdminError {
    /// The address is not a loopback one, and the endpoint was not told it may listen there.
    NotLoopback {
        /// The address asked for.
        addr: std::net::SocketAddr,
    },
    /// Binding the address, or writing the info file, failed.
    Io {
        /// What was being done.
        what: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The operating system's random source gave no token.
    Random {
        /// Its message.
        detail: String,
    },
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::NotLoopback { addr } => write!(
                f,
                "admin endpoint: refusing to listen on {addr}, which is not a loopback address: \
                 the endpoint serves every run's inputs and outputs over plain HTTP. Listen on \
                 127.0.0.1, or opt in with `serve_admin_with(addr, info_file, \
                 AdminOptions::new().allow_non_loopback(true))` behind TLS or a tunnel"
            ),
            AdminError::Io { what, source } => write!(f, "admin endpoint: {what}: {source}"),
            AdminError::Random { detail } => write!(
                f,
                "admin endpoint: the operating system's random source failed: {detail}"
            ),
        }
    }
}

impl std::error::Error for AdminError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AdminError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why a run is parked: resumable once the cause is fixed, its journal intact. Journaled
/// with the run, so that [`Error::RunParked`] carries it in every process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ParkReason {
    /// The resumed body called another step than the journal holds at a sequence number.
    NonDeterminism(Box<NonDeterminism>),
    /// The resumed body went on (or returned) without asking for an outcome the journal holds.
    SkippedStep {
        /// The run.
        run_id: String,
        /// The sequence number of the journaled step.
        seq: u64,
        /// Its name.
        step: String,
        /// Whether the body's fingerprint changed since the run started.
        body_changed: bool,
        /// What happened, in words.
        message: String,
    },
    /// A journaled value (an input, a step's value) no longer decodes into the current type.
    Undecodable {
        /// What, which type, and the decoder's message.
        message: String,
    },
    /// The journal could not be read or written.
    Storage {
        /// The store's message.
        message: String,
    },
    /// A replay that only checks the journal ([`Engine::replay`](crate::Engine::replay)) met
    /// a call the journal does not hold.
    NotJournaled {
        /// Which call.
        message: String,
    },
    /// The run is unfinished, but this engine neither executes nor queues it: the engine was
    /// shut down, or the run's workflow is not registered here.
    NotExecuting {
        /// What the engine knows.
        message: String,
    },
    /// Anything else (a record journaled before reasons had types), in words.
    Other {
        /// The reason.
        message: String,
    },
}

impl ParkReason {
    /// A reason from a decoding error (or any other error of the engine).
    pub(crate) fn from_error(error: &Error) -> ParkReason {
        if let Error::RunParked { reason, .. } = error {
            return reason.clone();
        }
        match error {
            Error::Decode { .. } => ParkReason::Undecodable {
                message: error.to_string(),
            },
            Error::Store(_) => ParkReason::Storage {
                message: error.to_string(),
            },
            _ => ParkReason::Other {
                message: error.to_string(),
            },
        }
    }
}

impl Error {
    /// A parked run's error, its words taken from its typed reason.
    pub(crate) fn parked(run_id: impl Into<String>, reason: ParkReason) -> Error {
        Error::RunParked {
            run_id: run_id.into(),
            reason,
        }
    }
}

impl fmt::Display for ParkReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParkReason::NonDeterminism(e) => e.fmt(f),
            ParkReason::SkippedStep { message, .. }
            | ParkReason::Undecodable { message }
            | ParkReason::Storage { message }
            | ParkReason::NotJournaled { message }
            | ParkReason::NotExecuting { message }
            | ParkReason::Other { message } => f.write_str(message),
        }
    }
}

impl std::error::Error for ParkReason {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ParkReason::NonDeterminism(e) => Some(e),
            _ => None,
        }
    }
}

/// The umbrella error of the engine's operations.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The journal file could not be opened.
    Open(OpenError),
    /// Reading or writing the journal failed.
    Store(StoreError),
    /// `start` was called with a run id that belongs to a run of another workflow.
    RunIdConflict {
        /// The run id.
        run_id: String,
        /// The workflow the existing run belongs to.
        existing: String,
        /// The workflow that was asked for.
        requested: String,
    },
    /// Two versions of one workflow name take different inputs or return different outputs:
    /// a run started on one could not be handed to the other, nor its value read.
    VersionTypesDiffer {
        /// The workflow's name.
        workflow: String,
        /// The version being registered.
        version: u32,
        /// A registered version with other types.
        other: u32,
    },
    /// [`Engine::migrate`](crate::Engine::migrate) refused: the run's journal does not replay
    /// on the target version (or the run cannot move now). The run is left as it was.
    MigrationRefused {
        /// The run.
        run_id: String,
        /// The version it was to move to.
        version: u32,
        /// Why, with what diverged.
        detail: String,
    },
    /// A child workflow's run id is taken by a run its parent did not start: the parent does
    /// not adopt it (its value is not the child's).
    NotAChild {
        /// The child's run id, `{parent}/{seq}/child`.
        run_id: String,
        /// The parent run.
        parent: String,
    },
    /// Two different workflow types were registered under the same journal name.
    DuplicateWorkflowName {
        /// The name both use.
        name: String,
    },
    /// No run has this id.
    RunNotFound {
        /// The run id.
        run_id: String,
    },
    /// The run belongs to a workflow this engine has not been told about.
    WorkflowNotRegistered {
        /// The run.
        run_id: String,
        /// The journaled workflow name.
        workflow: String,
    },
    /// A journaled value no longer decodes into the type the current code expects. The run is
    /// parked and its journal kept.
    Decode {
        /// The run.
        run_id: String,
        /// What was decoded: `input`, `output`, or `step #3 (search)`.
        what: String,
        /// The Rust type it was decoded into.
        type_name: &'static str,
        /// The decoder's message.
        detail: String,
    },
    /// A value could not be encoded for the journal.
    Encode {
        /// What was encoded.
        what: String,
        /// The encoder's message.
        detail: String,
    },
    /// The run ended in failure; the message is the workflow's error or panic.
    RunFailed {
        /// The run.
        run_id: String,
        /// Why it failed.
        message: String,
    },
    /// The run is parked: non-determinism, a value that no longer decodes, or a storage
    /// failure. Its journal is intact; fix the cause and resume it.
    RunParked {
        /// The run.
        run_id: String,
        /// Why it is parked (also the error's `source()`).
        reason: ParkReason,
    },
    /// The run has finished (or was cancelled), so it cannot take this.
    RunFinished {
        /// The run.
        run_id: String,
        /// How it finished.
        status: crate::RunStatus,
    },
    /// [`Engine::replay`](crate::Engine::replay) computed another path or another output than
    /// the journal recorded.
    ReplayDiverged {
        /// The run.
        run_id: String,
        /// Where the paths part (the first step), or how the outputs differ.
        detail: String,
    },
    /// The admin endpoint could not start.
    Admin(AdminError),
    /// The run was stopped by one of its budgets.
    BudgetExceeded {
        /// The run.
        run_id: String,
        /// Which budget, its limit and the amount spent, in words.
        message: String,
        /// Which budget, its limit and the amount spent (`None` for runs journaled before it
        /// was kept).
        exhausted: Option<crate::BudgetExhausted>,
    },
    /// [`Engine::retry`](crate::Engine::retry) refused: the run failed at an at-most-once
    /// step whose process ended during its call, so whether the call took effect is unknown,
    /// and a retry calls it again. Check what it did, then
    /// [`Engine::force_retry`](crate::Engine::force_retry) if calling it again is right.
    OutcomeUnknown {
        /// The run.
        run_id: String,
        /// The step's sequence number.
        seq: u64,
        /// The step's name.
        step: String,
    },
    /// The engine is shutting down (or has shut down): the call was not carried out.
    ShuttingDown,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Open(e) => e.fmt(f),
            Error::Store(e) => e.fmt(f),
            Error::RunIdConflict {
                run_id,
                existing,
                requested,
            } => write!(
                f,
                "run id {run_id:?} already belongs to a run of workflow `{existing}`, not `{requested}`"
            ),
            Error::VersionTypesDiffer {
                workflow,
                version,
                other,
            } => write!(
                f,
                "version {version} of workflow `{workflow}` takes or returns other types than version {other}: every version of a name takes the same input and returns the same output"
            ),
            Error::MigrationRefused {
                run_id,
                version,
                detail,
            } => write!(
                f,
                "run {run_id:?} cannot move to version {version}: {detail}; it is left as it was"
            ),
            Error::NotAChild { run_id, parent } => write!(
                f,
                "run {run_id:?} exists but was not started by run {parent:?} as its child: the parent does not adopt it; remove or rename that run"
            ),
            Error::DuplicateWorkflowName { name } => write!(
                f,
                "two different workflows are registered under the name `{name}`; give one of them #[workflow(name = \"...\")]"
            ),
            Error::RunNotFound { run_id } => write!(f, "no run with id {run_id:?}"),
            Error::WorkflowNotRegistered { run_id, workflow } => write!(
                f,
                "run {run_id:?} belongs to workflow `{workflow}`, which this engine does not know; register it first"
            ),
            Error::Decode {
                run_id,
                what,
                type_name,
                detail,
            } => write!(
                f,
                "run {run_id:?}: the journaled {what} no longer decodes into `{type_name}`: {detail}; the run is parked and its journal kept"
            ),
            Error::Encode { what, detail } => {
                write!(f, "cannot encode {what} for the journal: {detail}")
            }
            Error::RunFailed { run_id, message } => write!(f, "run {run_id:?} failed: {message}"),
            Error::RunParked { run_id, reason, .. } => {
                write!(f, "run {run_id:?} is parked: {reason}")
            }
            Error::BudgetExceeded {
                run_id, message, ..
            } => {
                write!(f, "run {run_id:?} stopped: {message}")
            }
            Error::RunFinished { run_id, status } => {
                write!(f, "run {run_id:?} has finished ({status})")
            }
            Error::Admin(e) => e.fmt(f),
            Error::OutcomeUnknown { run_id, seq, step } => write!(
                f,
                "run {run_id:?} was not retried: it stopped at step `{step}` (#{seq}), which is at-most-once, and its process ended during the call, so whether the call took effect is unknown; a retry calls it again. Check what it did, then force the retry (`Engine::force_retry`, `wf retry --force`) if calling it again is right"
            ),
            Error::ShuttingDown => {
                f.write_str("the engine is shutting down; the call was not carried out")
            }
            Error::ReplayDiverged { run_id, detail } => {
                write!(
                    f,
                    "replaying run {run_id:?} diverged from its journal: {detail}"
                )
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Open(e) => Some(e),
            Error::Store(e) => Some(e),
            Error::RunParked { reason, .. } => Some(reason),
            Error::Admin(e) => Some(e),
            _ => None,
        }
    }
}

impl From<OpenError> for Error {
    fn from(e: OpenError) -> Self {
        Error::Open(e)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            // The store closes when its engine shuts down (its reads are cancelled with the
            // runtime): a call racing that is told so, not shown the storage's internals.
            StoreError::Closed => Error::ShuttingDown,
            e => Error::Store(e),
        }
    }
}

/// What kind of failure ended a step: the [`ErrorClass`](crate::ErrorClass) of its last
/// attempt's error, or what stopped it otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepErrorKind {
    /// A transient error that outlasted its retries.
    Transient,
    /// The last attempt ran past the step's timeout (or the service timed out).
    Timeout,
    /// Rate limited on every attempt.
    RateLimited,
    /// The service failed (HTTP 5xx) on every attempt.
    Server,
    /// The model's output did not match the schema.
    Schema,
    /// The request was rejected (HTTP 4xx); not retried.
    Client,
    /// Authentication or permission failure; not retried, and the run stops.
    Auth,
    /// Marked non-retryable.
    Terminal,
    /// The step's body panicked. Panics are bugs, so they are not retried, and the run fails.
    Panicked,
    /// The step's circuit was open, so the step failed fast without calling anything.
    CircuitOpen,
    /// An at-most-once step was started by a process that died before its outcome was
    /// journaled: whether it took effect is unknown, and it is not called again.
    OutcomeUnknown,
    /// The run's budget ran out while the step was retrying.
    BudgetExceeded,
    /// The run was cancelled while the step was executing.
    Cancelled,
    /// A kind written by a newer version of this library.
    #[serde(other)]
    Unknown,
}

impl fmt::Display for StepErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StepErrorKind::Transient => "failed",
            StepErrorKind::Timeout => "timed out",
            StepErrorKind::RateLimited => "was rate limited",
            StepErrorKind::Server => "hit server errors",
            StepErrorKind::Schema => "got output that does not match the schema",
            StepErrorKind::Client => "was rejected",
            StepErrorKind::Auth => "was refused (authentication)",
            StepErrorKind::Terminal => "failed (not retryable)",
            StepErrorKind::Panicked => "panicked",
            StepErrorKind::CircuitOpen => "failed fast (circuit open)",
            StepErrorKind::OutcomeUnknown => "has an unknown outcome",
            StepErrorKind::BudgetExceeded => "ran out of budget",
            StepErrorKind::Cancelled => "was cancelled",
            StepErrorKind::Unknown => "failed (unknown kind)",
        })
    }
}

/// The final failure of a step, after its retries: journaled, and handed to the workflow body
/// in the same form whether the step ran now or is replayed from the journal.
///
/// It implements [`std::error::Error`], so `?` turns it into `anyhow::Error` or a boxed error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepError {
    /// The step's name.
    pub step: String,
    /// What kind of failure it was.
    pub kind: StepErrorKind,
    /// The error's message (its `Display`, with its chain of causes).
    pub message: String,
    /// How many attempts were made.
    pub attempts: u32,
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.attempts == 1 { "" } else { "s" };
        write!(
            f,
            "step `{}` {} after {} attempt{plural}: {}",
            self.step, self.kind, self.attempts, self.message
        )
    }
}

impl std::error::Error for StepError {}

/// How a workflow body ended when it did not return a value: its error's message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowFailure {
    /// The error's `Display` (with `{:#}`, so anyhow errors include their causes).
    pub message: String,
}

impl WorkflowFailure {
    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> Self {
        WorkflowFailure {
            message: message.into(),
        }
    }
}

impl fmt::Display for WorkflowFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WorkflowFailure {}

/// A step's final failure ends the body with it, so that a hand-written workflow writes
/// `step("fetch").run(|| fetch(url)).await?` without a `map_err`.
impl From<StepError> for WorkflowFailure {
    fn from(error: StepError) -> Self {
        WorkflowFailure::new(error.to_string())
    }
}
