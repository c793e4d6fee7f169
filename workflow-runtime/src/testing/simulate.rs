//! One simulation: a process that runs the workflow until it crashes (or ends), and a second
//! process that resumes the run from what the store holds.
//!
//! A process is a current-thread tokio runtime under virtual time, with the timer but not the
//! IO driver (steps under the check are stubs, and polling the IO driver at every turn of the
//! runtime made each simulation take two thirds longer). It starts an hour ahead of the wall clock
//! ([`HEAD_START`]), so that the process resuming a crashed run can set its clock to the virtual
//! moment of the crash, which is then always ahead of the real time: the resumed process starts
//! the instant the first one died, and durable timers are as due as they were.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::time::Instant;

use super::Latencies;
pub(crate) use super::store::CrashAt;
use super::store::{Commit, CommitLog, CrashStore};
use crate::context::AttemptStart;
use crate::engine::Engine;
use crate::error::{Error, StepErrorKind};
use crate::journal::{RunRecord, StepRecord, StepStatus};
use crate::store::{BoxFuture, MemoryStore, Store, Write};
use crate::workflow::Workflow;

/// How far ahead of the wall clock a first process's virtual clock starts.
const HEAD_START: Duration = Duration::from_secs(3_600);
/// The virtual time a process may take before the simulation gives up on it.
const TIME_LIMIT: Duration = Duration::from_secs(365 * 24 * 3_600);
/// How long the runs left when the checked one ended may take to end too.
const SETTLE_LIMIT: Duration = Duration::from_secs(30 * 24 * 3_600);
/// What the hook makes an attempt wait once the process crashed: it never starts.
const NEVER: Duration = Duration::from_secs(10 * 365 * 24 * 3_600);

/// How a run ended, as the checker compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Its output, as JSON.
    Output(String),
    /// Its error (failed, stopped by a budget, cancelled), in words.
    Error(String),
    /// It did not end: parked, or left unfinished.
    Unfinished(String),
}

/// The workflow under check, its type erased.
#[derive(Clone, Copy)]
pub(crate) struct Subject {
    pub(crate) name: &'static str,
    start: fn(&Engine, &str, &str) -> BoxFuture<'static, Result<(), String>>,
    result: fn(&Engine, &str) -> BoxFuture<'static, Outcome>,
    replay: fn(&Engine, &str) -> BoxFuture<'static, Outcome>,
}

impl Subject {
    pub(crate) fn of<W: Workflow>() -> Subject {
        Subject {
            name: W::NAME,
            start: start::<W>,
            result: result::<W>,
            replay: replay::<W>,
        }
    }
}

fn start<W: Workflow>(
    engine: &Engine,
    run_id: &str,
    input: &str,
) -> BoxFuture<'static, Result<(), String>> {
    let engine = engine.clone();
    let run_id = run_id.to_owned();
    let input = serde_json::from_str::<W::Input>(input)
        .map_err(|e| format!("the input does not decode back: {e}"));
    Box::pin(async move {
        engine
            .start::<W>(run_id, input?)
            .await
            .map(drop)
            .map_err(|e| format!("start failed: {e}"))
    })
}

fn encode<W: Workflow>(output: Result<W::Output, Error>) -> Outcome {
    match output {
        Ok(output) => match serde_json::to_string(&output) {
            Ok(json) => Outcome::Output(json),
            Err(e) => Outcome::Error(format!("the output cannot be encoded: {e}")),
        },
        Err(e @ Error::RunParked { .. }) => Outcome::Unfinished(e.to_string()),
        Err(e) => Outcome::Error(e.to_string()),
    }
}

fn result<W: Workflow>(engine: &Engine, run_id: &str) -> BoxFuture<'static, Outcome> {
    let handle = engine.handle::<W>(run_id);
    Box::pin(async move { encode::<W>(handle.result().await) })
}

fn replay<W: Workflow>(engine: &Engine, run_id: &str) -> BoxFuture<'static, Outcome> {
    let engine = engine.clone();
    let run_id = run_id.to_owned();
    Box::pin(async move { encode::<W>(engine.replay::<W>(&run_id).await) })
}

/// An event the checker sends to the run.
#[derive(Debug, Clone)]
pub(crate) struct ScheduledEvent {
    pub(crate) name: String,
    pub(crate) payload: Box<RawValue>,
    /// After the run's start, in virtual time.
    pub(crate) at: Duration,
}

/// Everything a simulation needs, shared by the threads.
pub(crate) struct Plan {
    pub(crate) subject: Subject,
    pub(crate) run_id: String,
    pub(crate) input: String,
    pub(crate) registrations: Vec<super::Registration>,
    /// Ordered by time.
    pub(crate) events: Vec<ScheduledEvent>,
    pub(crate) lose_commits: Vec<u64>,
    /// What the test configures on every engine (resources, limits), and its step overrides.
    pub(crate) configure: Option<super::Configure>,
    pub(crate) overrides: Vec<(String, super::StepOverride)>,
}

impl Plan {
    /// An engine of a simulated process over `store`, configured as the test asked.
    fn engine(&self, store: impl Store) -> Engine {
        let mut builder = Engine::builder();
        if let Some(configure) = &self.configure {
            builder = configure(builder);
        }
        if !self.overrides.is_empty() {
            // The processes keep their own virtual time: the kit must not move their clocks.
            let kit = super::TestKit::virtual_only();
            for (name, with) in &self.overrides {
                kit.set_override(name.clone(), with.clone());
            }
            builder = builder.shared_resource(Arc::new(kit));
        }
        builder.store(store)
    }
}

/// A step attempt that executed: the hook saw it start.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Execution {
    pub(crate) run_id: String,
    pub(crate) seq: u64,
    pub(crate) name: String,
    pub(crate) attempt: u32,
}

/// A step as the end state shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StepView {
    pub(crate) seq: u64,
    pub(crate) name: String,
    pub(crate) status: StepStatus,
    /// The value as journaled (JSON), or the error's kind and message.
    pub(crate) value: String,
}

impl StepView {
    pub(crate) fn of(step: &StepRecord) -> StepView {
        let value = match (&step.output, &step.error) {
            (_, Some(error)) => format!("{}: {}", kind_name(error.kind), error.message),
            (Some(raw), _) => raw.get().to_owned(),
            (None, None) => String::new(),
        };
        StepView {
            seq: step.seq,
            name: step.name.clone(),
            status: step.status,
            value,
        }
    }
}

fn kind_name(kind: StepErrorKind) -> String {
    format!("{kind:?}").to_lowercase()
}

/// A run as the end state shows it.
#[derive(Debug, Clone)]
pub(crate) struct RunView {
    pub(crate) run_id: String,
    pub(crate) workflow: String,
    pub(crate) status: String,
    pub(crate) output: Option<String>,
    pub(crate) steps: Vec<StepView>,
}

/// How the last process of a simulation ended.
#[derive(Debug, Clone)]
pub(crate) struct Ending {
    pub(crate) outcome: Outcome,
    /// What `Engine::replay` of the finished run returned.
    pub(crate) replay: Outcome,
    /// Every run in the store, by id.
    pub(crate) runs: BTreeMap<String, RunView>,
}

/// What a simulation observed.
#[derive(Debug)]
pub(crate) struct Simulation {
    /// The commits of the first process, the one that crashes (all of them without a crash).
    pub(crate) commits: Vec<Commit>,
    /// Whether the first process reached its crash point.
    pub(crate) crashed: bool,
    /// Step attempts executed by the process that resumed the run.
    pub(crate) resumed_executions: Vec<Execution>,
    /// How the run ended, or why the simulation could not tell.
    pub(crate) ending: Result<Ending, String>,
}

/// How one process ended.
enum ProcessEnd {
    Crashed,
    Finished(Ending),
    Failed(String),
}

/// Runs the workflow in a first process that crashes at `crash` (or runs to its end), then,
/// after a crash, resumes it in a second process.
pub(crate) fn simulate(plan: &Plan, latencies: Latencies, crash: Option<CrashAt>) -> Simulation {
    let memory = Arc::new(MemoryStore::new());
    let log = CommitLog::new(&plan.run_id, crash);
    let first_executions = Arc::new(Mutex::new(Vec::new()));
    let started_at = Arc::new(Mutex::new(None));
    let first = in_process(None, {
        let store = CrashStore::new(Arc::clone(&memory), Arc::clone(&log));
        let (log, executions, started_at) = (
            Arc::clone(&log),
            Arc::clone(&first_executions),
            Arc::clone(&started_at),
        );
        let memory = Arc::clone(&memory);
        move || async move {
            tokio::time::advance(HEAD_START).await;
            let start = Instant::now();
            *started_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(start.into_std());
            let engine = plan.engine(store);
            engine.set_attempt_hook(hook(latencies, Arc::clone(&log), executions));
            let end = tokio::select! {
                biased;
                () = log.crashed() => ProcessEnd::Crashed,
                end = run_to_end(plan, &engine, &memory, start, 0) => end,
            };
            stop(&engine).await;
            end
        }
    });
    let commits = log.commits();
    let mut simulation = Simulation {
        crashed: matches!(first, ProcessEnd::Crashed),
        commits,
        resumed_executions: Vec::new(),
        ending: Err(String::new()),
    };
    simulation.ending = match first {
        ProcessEnd::Finished(ending) => Ok(ending),
        ProcessEnd::Failed(why) => Err(why),
        ProcessEnd::Crashed => {
            let crashed_at = log.crashed_at();
            let start = started_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .unwrap_or_else(std::time::Instant::now);
            // Events whose commit landed were sent: the resumed process sends the others.
            let sent: usize = simulation
                .commits
                .iter()
                .filter(|c| c.applied)
                .map(|c| c.events)
                .sum();
            let resumed_executions = Arc::new(Mutex::new(Vec::new()));
            // What the crash left behind, as a new process finds it.
            let memory = Arc::new(memory.snapshot());
            let lost = lost_records(&simulation.commits, &plan.lose_commits);
            let second = in_process(crashed_at, {
                let log = CommitLog::new(&plan.run_id, None);
                let store = CrashStore::new(Arc::clone(&memory), Arc::clone(&log));
                let executions = Arc::clone(&resumed_executions);
                move || async move {
                    if !lost.is_empty()
                        && let Err(e) = memory.commit(lost).await
                    {
                        return ProcessEnd::Failed(format!("could not lose a commit: {e}"));
                    }
                    let engine = plan.engine(store);
                    engine.set_attempt_hook(hook(latencies, log, executions));
                    let end =
                        run_to_end(plan, &engine, &memory, Instant::from_std(start), sent).await;
                    stop(&engine).await;
                    end
                }
            });
            simulation.resumed_executions = take(&resumed_executions);
            match second {
                ProcessEnd::Finished(ending) => Ok(ending),
                ProcessEnd::Failed(why) => Err(format!("the resumed process {why}")),
                ProcessEnd::Crashed => Err("the resumed process crashed".into()),
            }
        }
    };
    simulation
}

/// The checker's own tests: a store that acknowledged the step records of commits `lost`, and
/// loses them in a crash, as one that acknowledges before its data is durable would. Returns the
/// deletions that the crash makes.
fn lost_records(commits: &[Commit], lost: &[u64]) -> Vec<Write> {
    commits
        .iter()
        .filter(|c| c.acknowledged && lost.contains(&c.number))
        .flat_map(|c| &c.steps)
        .map(|(run_id, step)| Write::DeleteStep {
            run_id: run_id.clone(),
            seq: step.seq,
        })
        .collect()
}

/// Stops the engine's tasks before its runtime is dropped. Nothing changes for the simulation
/// (after a crash the store answers nothing, so no task can write), but a run's task dropped
/// with the runtime would leave the engine in a reference cycle with the run's context, and
/// with them the runtime's drivers and their file descriptors.
async fn stop(engine: &Engine) {
    let _ = tokio::time::timeout(Duration::from_secs(3_600), engine.shutdown()).await;
}

fn take<T>(shared: &Mutex<Vec<T>>) -> Vec<T> {
    std::mem::take(&mut *shared.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Runs `body` in a process of its own: a runtime under virtual time, whose clock starts at
/// `clock` when given, and which is dropped at the end with every task in it.
fn in_process<F, Fut>(clock: Option<std::time::Instant>, body: F) -> ProcessEnd
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ProcessEnd>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return ProcessEnd::Failed(format!("could not build a runtime: {e}")),
    };
    let end = catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(async move {
            if let Some(clock) = clock {
                let now = Instant::now().into_std();
                if clock > now {
                    tokio::time::advance(clock - now).await;
                }
            }
            match tokio::time::timeout(TIME_LIMIT, body()).await {
                Ok(end) => end,
                Err(_) => ProcessEnd::Failed(format!(
                    "did not finish within {} days of virtual time",
                    TIME_LIMIT.as_secs() / 86_400
                )),
            }
        })
    }));
    // The crash: every task of the process dies here, whatever it was doing.
    drop(runtime);
    end.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        ProcessEnd::Failed(format!("panicked: {message}"))
    })
}

/// The attempt hook: notes the attempt and gives it its latency. Once the process crashed, no
/// attempt starts any more.
fn hook(
    latencies: Latencies,
    log: Arc<CommitLog>,
    executions: Arc<Mutex<Vec<Execution>>>,
) -> crate::context::AttemptHook {
    Arc::new(move |attempt: &AttemptStart<'_>| {
        if log.is_crashed() {
            return NEVER;
        }
        executions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Execution {
                run_id: attempt.run_id.to_owned(),
                seq: attempt.seq,
                name: attempt.name.to_owned(),
                attempt: attempt.attempt,
            });
        latencies.latency(attempt.run_id, attempt.seq, attempt.name, attempt.attempt)
    })
}

/// Starts (or resumes) the run, sends its events from the `skip`-th on at their times after
/// `start`, waits for its end, and reads what the store holds.
async fn run_to_end(
    plan: &Plan,
    engine: &Engine,
    memory: &MemoryStore,
    start: Instant,
    skip: usize,
) -> ProcessEnd {
    for register in &plan.registrations {
        if let Err(e) = register(engine).await {
            return ProcessEnd::Failed(format!("could not register a workflow: {e}"));
        }
    }
    if let Err(e) = (plan.subject.start)(engine, &plan.run_id, &plan.input).await {
        return ProcessEnd::Failed(e);
    }
    let events = async {
        for event in plan.events.iter().skip(skip) {
            tokio::time::sleep_until(start + event.at).await;
            // A run that ended refuses events, as it would in production.
            let _ = engine
                .send_event(&plan.run_id, &event.name, &*event.payload)
                .await;
        }
        std::future::pending::<()>().await
    };
    let outcome = tokio::select! {
        biased;
        outcome = (plan.subject.result)(engine, &plan.run_id) => outcome,
        () = events => unreachable!("the event sender never ends"),
    };
    // Child runs that outlive the checked one (started in a branch that a race or a try_join
    // dropped) run to their end too, so that the end state does not depend on when it is read.
    settle(engine).await;
    let runs = match end_state(memory).await {
        Ok(runs) => runs,
        Err(e) => return ProcessEnd::Failed(format!("could not read the store: {e}")),
    };
    let replay = (plan.subject.replay)(engine, &plan.run_id).await;
    ProcessEnd::Finished(Ending {
        outcome,
        replay,
        runs,
    })
}

/// Waits until the engine neither executes nor queues a run, or a month of virtual time passed
/// (a run waiting for an event that never comes).
async fn settle(engine: &Engine) {
    let mut waited = Duration::ZERO;
    let mut wait = Duration::from_millis(1);
    while engine.load() != (0, 0) && waited < SETTLE_LIMIT {
        tokio::time::sleep(wait).await;
        waited += wait;
        wait = (wait * 2).min(Duration::from_secs(86_400));
    }
}

async fn end_state(
    memory: &MemoryStore,
) -> Result<BTreeMap<String, RunView>, crate::error::StoreError> {
    let mut runs = BTreeMap::new();
    for run in memory.list_runs().await? {
        let RunRecord {
            run_id,
            workflow,
            status,
            output,
            error,
            ..
        } = run;
        let steps = memory.load_steps(run_id.clone()).await?;
        let output = match (output, error) {
            (Some(output), _) => Some(output.get().to_owned()),
            (None, Some(error)) => Some(format!("error: {error}")),
            (None, None) => None,
        };
        runs.insert(
            run_id.clone(),
            RunView {
                run_id,
                workflow,
                status: status.to_string(),
                output,
                steps: steps.iter().map(StepView::of).collect(),
            },
        );
    }
    Ok(runs)
}

/// Runs `work` on every item, on as many threads as the machine has cores (and no more than
/// items); the results come back in the items' order.
pub(crate) fn in_parallel<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(work).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(index) else {
                        break;
                    };
                    let result = work(item);
                    results.lock().unwrap_or_else(|p| p.into_inner())[index] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.expect("every item was worked on"))
        .collect()
}
