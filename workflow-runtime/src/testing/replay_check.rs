//! [`ReplayCheck`]: today's code against recorded journals, before a deploy.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::engine::Engine;
use crate::error::{Error, ParkReason};
use crate::journal::{RunRecord, RunStatus, StepRecord};
use crate::store::{MemoryStore, RedbReader, Store, Write};
use crate::workflow::{Erased, ErasedWorkflow, Workflow};

/// Replays every run of a journal against the workflows registered here, writing nothing, and
/// reports for each run whether the code still takes its journaled path: the test users of
/// Temporal write by hand, for CI.
///
/// ```
/// use workflow_runtime::testing::ReplayCheck;
/// use workflow_runtime::{BoxFuture, Engine, Workflow, WorkflowFailure, step};
///
/// struct Greet;
/// impl Workflow for Greet {
///     type Input = (String,);
///     type Output = String;
///     const NAME: &'static str = "greet";
///     fn run((name,): (String,)) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
///         Box::pin(async move {
///             let hello = step("hello")
///                 .run(|| async { Ok::<_, std::io::Error>(format!("hello {name}")) })
///                 .await
///                 .map_err(|e| WorkflowFailure::new(e.to_string()))?;
///             Ok(hello)
///         })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?; let path = dir.path().join("prod-copy.redb");
/// # { let engine = Engine::open(&path).await?;
/// #   engine.start::<Greet>("g1", ("ann".into(),)).await?.result().await?; engine.shutdown().await; }
/// // In a test, against a copy of production's journal:
/// let report = ReplayCheck::new().register::<Greet>().check_file(&path).await?;
/// assert!(report.is_compatible(), "{report}");
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct ReplayCheck {
    workflows: Vec<Arc<dyn ErasedWorkflow>>,
}

impl fmt::Debug for ReplayCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .workflows
            .iter()
            .map(|w| format!("{} v{}", w.name(), w.version()))
            .collect();
        f.debug_struct("ReplayCheck")
            .field("workflows", &names)
            .finish()
    }
}

/// What the check found for one run.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Verdict {
    /// Every journaled outcome is asked for in its place (and a finished run computes its
    /// journaled output again).
    Compatible,
    /// The code takes another path than the journal at `seq`.
    Diverged {
        /// The sequence number where the paths part.
        seq: u64,
        /// What the journal holds there.
        journaled: String,
        /// What the code calls there now (`None`: it calls nothing more, or goes on without
        /// the journaled outcome).
        current: Option<String>,
        /// What the change looks like.
        change: Change,
    },
    /// The code takes the journaled path but computes another output.
    DifferentOutput {
        /// Both outputs, in words.
        detail: String,
    },
    /// A journaled value no longer decodes into the current type.
    Undecodable {
        /// Which value, which type, and the decoder's message.
        detail: String,
    },
    /// No workflow registered here runs it: its name or its version is missing.
    NoVersion {
        /// The run's workflow.
        workflow: String,
        /// The run's version.
        version: u32,
    },
    /// Something else stopped the replay (a damaged record, say).
    Error {
        /// What.
        detail: String,
    },
}

/// What a divergence looks like, judged from the journal around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// The code calls the journal's next step where the journal has another: a step was
    /// removed (or moved later: from the journal alone, the first divergence of two swapped
    /// neighbours looks the same).
    Removal,
    /// The code calls a step the journal holds two or more places on: steps were reordered.
    Reordering,
    /// The code calls a step the journal does not hold at all: a step was inserted, or the
    /// journaled one renamed.
    InsertionOrRename,
    /// The code ends (or goes on without the journaled outcome) before the journal does.
    Truncation,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Change::Removal => "a step removed",
            Change::Reordering => "steps reordered",
            Change::InsertionOrRename => "a step inserted or renamed",
            Change::Truncation => "steps removed at the end",
        })
    }
}

/// The check of one run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RunVerdict {
    /// The run.
    pub run_id: String,
    /// Its workflow and version.
    pub workflow: String,
    /// Its version.
    pub version: u32,
    /// Its status in the journal.
    pub status: RunStatus,
    /// What the check found.
    pub verdict: Verdict,
}

/// Every run's verdict, ordered by run id.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ReplayReport {
    /// One per run of the journal.
    pub runs: Vec<RunVerdict>,
}

impl ReplayReport {
    /// True when every run is compatible.
    pub fn is_compatible(&self) -> bool {
        self.runs.iter().all(|r| r.verdict == Verdict::Compatible)
    }

    /// The runs that are not compatible.
    pub fn problems(&self) -> impl Iterator<Item = &RunVerdict> {
        self.runs
            .iter()
            .filter(|r| r.verdict != Verdict::Compatible)
    }
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let problems = self.problems().count();
        writeln!(
            f,
            "replay check: {} runs, {} compatible, {problems} not",
            self.runs.len(),
            self.runs.len() - problems
        )?;
        for run in self.problems() {
            write!(
                f,
                "  {} ({} v{}, {}): ",
                run.run_id, run.workflow, run.version, run.status
            )?;
            match &run.verdict {
                Verdict::Compatible => writeln!(f, "compatible")?,
                Verdict::Diverged {
                    seq,
                    journaled,
                    current,
                    change,
                } => writeln!(
                    f,
                    "diverged at step #{seq}: the journal has `{journaled}`, the code {}; looks like {change}",
                    match current {
                        Some(current) => format!("calls `{current}`"),
                        None => "does not call it".to_owned(),
                    }
                )?,
                Verdict::DifferentOutput { detail } => writeln!(f, "different output: {detail}")?,
                Verdict::Undecodable { detail } => writeln!(f, "undecodable: {detail}")?,
                Verdict::NoVersion { workflow, version } => writeln!(
                    f,
                    "no code to run it: version {version} of `{workflow}` is not registered"
                )?,
                Verdict::Error { detail } => writeln!(f, "error: {detail}")?,
            }
        }
        Ok(())
    }
}

impl ReplayCheck {
    /// A check with no workflow registered yet.
    pub fn new() -> ReplayCheck {
        ReplayCheck::default()
    }

    /// Checks runs of `W` (its name and version) against `W`'s code.
    pub fn register<W: Workflow>(mut self) -> ReplayCheck {
        self.workflows.push(Arc::new(Erased::<W>::new()));
        self
    }

    /// Checks every run of the journal file at `path`, read without a byte of it changing
    /// (a copy of a live journal, or the live one while no engine holds it).
    pub async fn check_file(&self, path: impl AsRef<Path>) -> Result<ReplayReport, Error> {
        let reader = RedbReader::open(path.as_ref())?;
        self.check_store(&reader).await
    }

    /// Checks every run of `store`, writing nothing to it: the runs are copied into memory
    /// and replayed there.
    pub async fn check_store(&self, store: &dyn Store) -> Result<ReplayReport, Error> {
        let copy = MemoryStore::new();
        let mut journals = BTreeMap::new();
        for run in store.list_runs().await? {
            let steps = store.load_steps(run.run_id.clone()).await?;
            let mut writes = vec![Write::Run(run.clone())];
            writes.extend(steps.iter().map(|step| Write::Step {
                run_id: run.run_id.clone(),
                step: step.clone(),
            }));
            copy.commit(writes).await?;
            journals.insert(run.run_id.clone(), (run, steps));
        }
        let engine = Engine::with_store(copy);
        let mut report = ReplayReport::default();
        for (run_id, (run, steps)) in journals {
            let verdict = match self
                .workflows
                .iter()
                .find(|w| w.name() == run.workflow && w.version() == run.version)
            {
                None => Verdict::NoVersion {
                    workflow: run.workflow.clone(),
                    version: run.version,
                },
                Some(workflow) => {
                    let outcome = engine.replay_record(run.clone(), workflow.as_ref()).await;
                    judge(&run, &steps, outcome)
                }
            };
            report.runs.push(RunVerdict {
                run_id,
                workflow: run.workflow,
                version: run.version,
                status: run.status,
                verdict,
            });
        }
        engine.shutdown().await;
        Ok(report)
    }
}

/// The verdict on a replay's outcome.
fn judge(
    run: &RunRecord,
    steps: &[StepRecord],
    outcome: Result<Box<serde_json::value::RawValue>, Error>,
) -> Verdict {
    let error = match outcome {
        Ok(_) => return Verdict::Compatible,
        Err(error) => error,
    };
    match error {
        // A failed run fails again: its journal was followed.
        Error::RunFailed { .. } if run.status == RunStatus::Failed => Verdict::Compatible,
        Error::BudgetExceeded { .. } if run.status == RunStatus::BudgetExceeded => {
            Verdict::Compatible
        }
        Error::ReplayDiverged { detail, .. } => match first_unasked(&detail, steps) {
            Some(step) => Verdict::Diverged {
                seq: step.seq,
                journaled: step.name.clone(),
                current: None,
                change: Change::Truncation,
            },
            None => Verdict::DifferentOutput { detail },
        },
        Error::Decode { .. } => Verdict::Undecodable {
            detail: error.to_string(),
        },
        Error::RunParked { reason, .. } => match reason {
            ParkReason::NonDeterminism(nd) => Verdict::Diverged {
                seq: nd.seq,
                change: change_at(steps, nd.seq, &nd.current),
                journaled: nd.journaled,
                current: Some(nd.current),
            },
            ParkReason::SkippedStep { seq, step, .. } => Verdict::Diverged {
                seq,
                journaled: step,
                current: None,
                change: Change::Truncation,
            },
            ParkReason::Undecodable { message } => Verdict::Undecodable { detail: message },
            // The code asks for what the journal does not hold yet: an unfinished run (or a
            // run that waits) has simply not got there.
            ParkReason::NotJournaled { .. } if !run.status.is_terminal() => Verdict::Compatible,
            ParkReason::NotJournaled { message } => Verdict::Diverged {
                seq: steps.last().map_or(0, |s| s.seq + 1),
                journaled: "(the run's end)".into(),
                current: Some(message),
                change: Change::InsertionOrRename,
            },
            other => Verdict::Error {
                detail: other.to_string(),
            },
        },
        other => Verdict::Error {
            detail: other.to_string(),
        },
    }
}

/// The step a "returned without asking for step #N" divergence names.
fn first_unasked<'a>(detail: &str, steps: &'a [StepRecord]) -> Option<&'a StepRecord> {
    let after = detail.split("step #").nth(1)?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    let seq: u64 = digits.parse().ok()?;
    steps.iter().find(|s| s.seq == seq)
}

/// What a divergence at `seq` looks like: where the name the code calls now sits in the
/// journal.
fn change_at(steps: &[StepRecord], seq: u64, current: &str) -> Change {
    let later: Vec<&StepRecord> = steps
        .iter()
        .filter(|s| s.seq > seq && s.is_step())
        .collect();
    match later.iter().position(|s| s.name == current) {
        Some(0) => Change::Removal,
        Some(_) => Change::Reordering,
        None => Change::InsertionOrRename,
    }
}
