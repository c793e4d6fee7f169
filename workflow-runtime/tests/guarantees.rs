//! The contract of DESIGN.md, exercised through the closure-based API (no macros), in one
//! process. Crashes of a real process are in `crash.rs`; the macro forms in `macros.rs`.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;

use redb::ReadableTable;
use support::{Events, fail, gate, within};
use tokio::sync::Notify;
use workflow_runtime::{
    Backoff, BoxFuture, Budget, Engine, Error, MemoryStore, OpenError, RunStatus, StepContext,
    StepError, StepErrorKind, Usage, Workflow, WorkflowFailure, step,
};

/// Counts executions of each step body, per test.
#[derive(Default)]
struct Executions(Mutex<HashMap<String, usize>>);

impl Executions {
    fn record(&self, name: &str) {
        *self.0.lock().unwrap().entry(name.to_owned()).or_default() += 1;
    }
    fn count(&self, name: &str) -> usize {
        self.0.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

// --- 2. Replay: journaled steps return their outcome without running ------------------------

static REPLAY_EXECUTIONS: std::sync::LazyLock<Executions> =
    std::sync::LazyLock::new(Default::default);
static REPLAY_BLOCK_LAST: AtomicBool = AtomicBool::new(true);
/// Notified when the blocked last step's body has started.
static REPLAY_LAST_STARTED: Notify = Notify::const_new();

struct ThreeSteps;

impl Workflow for ThreeSteps {
    type Input = (String,);
    type Output = Vec<String>;
    const NAME: &'static str = "three_steps";

    fn run((tag,): (String,)) -> BoxFuture<'static, Result<Vec<String>, WorkflowFailure>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for i in 0..3 {
                let name = format!("s{i}");
                let tag = &tag;
                let value = step(name.clone())
                    .run(|| {
                        let name = name.clone();
                        async move {
                            REPLAY_EXECUTIONS.record(&name);
                            if i == 2 && REPLAY_BLOCK_LAST.load(Ordering::SeqCst) {
                                REPLAY_LAST_STARTED.notify_one();
                                std::future::pending::<()>().await;
                            }
                            Ok::<_, io::Error>(format!("{tag}-{i}"))
                        }
                    })
                    .await
                    .map_err(fail)?;
                out.push(value);
            }
            Ok(out)
        })
    }
}

#[tokio::test]
async fn replay_returns_journaled_values_without_running_the_steps_again() {
    let store = Arc::new(MemoryStore::new());
    let first = Engine::with_store(Arc::clone(&store));
    first
        .start::<ThreeSteps>("r1", ("x".into(),))
        .await
        .unwrap();
    within("s2 is running", REPLAY_LAST_STARTED.notified()).await;
    assert_eq!(REPLAY_EXECUTIONS.count("s2"), 1);
    assert_eq!(first.journal("r1").await.unwrap().len(), 2);
    first.shutdown().await;

    REPLAY_BLOCK_LAST.store(false, Ordering::SeqCst);
    let second = Engine::with_store(Arc::clone(&store));
    assert_eq!(
        second.register::<ThreeSteps>().await.unwrap(),
        1,
        "one run to resume"
    );
    let output = second.handle::<ThreeSteps>("r1").result().await.unwrap();
    assert_eq!(output, vec!["x-0", "x-1", "x-2"]);
    assert_eq!(
        REPLAY_EXECUTIONS.count("s0"),
        1,
        "s0 was journaled: it must not run again"
    );
    assert_eq!(
        REPLAY_EXECUTIONS.count("s1"),
        1,
        "s1 was journaled: it must not run again"
    );
    assert_eq!(
        REPLAY_EXECUTIONS.count("s2"),
        2,
        "s2 was interrupted: it runs again"
    );
    let journal = second.journal("r1").await.unwrap();
    assert_eq!(journal.iter().map(|s| s.seq).collect::<Vec<_>>(), [0, 1, 2]);
}

// --- 3. Same idempotency key in every attempt; attempt number and previous error ----------

static KEY_LOG: Mutex<Vec<(String, u32, Option<String>)>> = Mutex::new(Vec::new());

struct FlakyOnce;

impl Workflow for FlakyOnce {
    type Input = ();
    type Output = u32;
    const NAME: &'static str = "flaky_once";

    fn run(_: ()) -> BoxFuture<'static, Result<u32, WorkflowFailure>> {
        Box::pin(async move {
            step("flaky")
                .retries(2)
                .run(|| async {
                    let ctx = StepContext::current().expect("inside a step");
                    KEY_LOG.lock().unwrap().push((
                        ctx.idempotency_key().to_owned(),
                        ctx.attempt(),
                        ctx.previous_error().map(|e| e.message.clone()),
                    ));
                    if ctx.attempt() < 3 {
                        return Err(io::Error::other(format!("boom {}", ctx.attempt())));
                    }
                    Ok(ctx.attempt())
                })
                .await
                .map_err(fail)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn every_attempt_sees_the_same_key_its_number_and_the_previous_error() {
    let engine = Engine::in_memory();
    let run = engine.start::<FlakyOnce>("key-run", ()).await.unwrap();
    assert_eq!(run.result().await.unwrap(), 3);
    let log = KEY_LOG.lock().unwrap().clone();
    assert_eq!(log.len(), 3);
    assert!(
        log.iter().all(|(key, _, _)| key == "key-run/0/flaky"),
        "{log:?}"
    );
    assert_eq!(log.iter().map(|l| l.1).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(log[0].2, None);
    assert_eq!(log[1].2.as_deref(), Some("boom 1"));
    assert_eq!(log[2].2.as_deref(), Some("boom 2"));
    let journal = engine.journal("key-run").await.unwrap();
    assert_eq!(journal[0].attempts, 3);
}

// --- 5. A failure is journaled as a StepError and handed back identically on replay -------

static FAILED_BLOCK: AtomicBool = AtomicBool::new(true);
static FAILED_SEEN: Mutex<Vec<StepError>> = Mutex::new(Vec::new());
/// Notified when the body has received the step's failure.
static FAILED_RECEIVED: Notify = Notify::const_new();

struct FailsThenWaits;

impl Workflow for FailsThenWaits {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "fails_then_waits";

    fn run(_: ()) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let failed: Result<u32, StepError> = step("doomed")
                .retries(1)
                .timeout(Duration::from_secs(5))
                .run(|| async {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    Ok::<u32, io::Error>(1)
                })
                .await;
            let error = failed.expect_err("every attempt times out");
            FAILED_SEEN.lock().unwrap().push(error.clone());
            FAILED_RECEIVED.notify_one();
            gate("after", &FAILED_BLOCK).await.map_err(fail)?;
            Ok(error.message)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_step_failure_is_the_same_step_error_fresh_and_replayed() {
    let store = Arc::new(MemoryStore::new());
    let first = Engine::with_store(Arc::clone(&store));
    first.start::<FailsThenWaits>("f1", ()).await.unwrap();
    within("the body received the failure", FAILED_RECEIVED.notified()).await;
    assert_eq!(FAILED_SEEN.lock().unwrap().len(), 1);
    first.shutdown().await;
    FAILED_BLOCK.store(false, Ordering::SeqCst);
    let second = Engine::with_store(Arc::clone(&store));
    second.register::<FailsThenWaits>().await.unwrap();
    let message = second
        .handle::<FailsThenWaits>("f1")
        .result()
        .await
        .unwrap();
    let seen = FAILED_SEEN.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0], seen[1],
        "replay must hand back the journaled error unchanged"
    );
    assert_eq!(seen[0].kind, StepErrorKind::Timeout);
    assert_eq!(seen[0].attempts, 2);
    assert!(message.contains("timed out"), "{message}");
}

// --- 6. Idempotent start -------------------------------------------------------------------

static COUNTED_RUNS: std::sync::LazyLock<Executions> = std::sync::LazyLock::new(Default::default);

struct Counted;

impl Workflow for Counted {
    type Input = (u32,);
    type Output = u32;
    const NAME: &'static str = "counted";

    fn run((n,): (u32,)) -> BoxFuture<'static, Result<u32, WorkflowFailure>> {
        Box::pin(async move {
            step("count")
                .run(|| async move {
                    let ctx = StepContext::current().expect("inside a step");
                    COUNTED_RUNS.record(ctx.run_id().expect("inside a run"));
                    Ok::<_, io::Error>(n * 2)
                })
                .await
                .map_err(fail)
        })
    }
}

struct OtherWorkflow;

impl Workflow for OtherWorkflow {
    type Input = (u32,);
    type Output = u32;
    const NAME: &'static str = "other";

    fn run((n,): (u32,)) -> BoxFuture<'static, Result<u32, WorkflowFailure>> {
        Box::pin(async move { Ok(n) })
    }
}

#[tokio::test]
async fn starting_an_existing_run_id_returns_the_existing_run() {
    let engine = Engine::in_memory();
    let first = engine.start::<Counted>("same-id", (21,)).await.unwrap();
    assert_eq!(first.result().await.unwrap(), 42);
    let second = engine.start::<Counted>("same-id", (99,)).await.unwrap();
    assert_eq!(
        second.result().await.unwrap(),
        42,
        "the existing run's value, not a new one"
    );
    assert_eq!(COUNTED_RUNS.count("same-id"), 1);
    assert_eq!(engine.runs().await.unwrap().len(), 1);

    let conflict = engine
        .start::<OtherWorkflow>("same-id", (1,))
        .await
        .unwrap_err();
    assert!(
        matches!(&conflict, Error::RunIdConflict { existing, requested, .. } if existing == "counted" && requested == "other"),
        "{conflict:?}"
    );
    assert!(conflict.to_string().contains("same-id"));
}

// --- 7. Budgets ----------------------------------------------------------------------------

static LOOP_BLOCK_AT: AtomicUsize = AtomicUsize::new(usize::MAX);
static LOOP_EXECUTIONS: AtomicUsize = AtomicUsize::new(0);

/// A loop that would run forever: only its budget stops it.
struct Spender;

impl Workflow for Spender {
    type Input = ();
    type Output = ();
    const NAME: &'static str = "spender";

    fn budget() -> Budget {
        Budget::UNLIMITED
            .with_max_cost_usd(0.05)
            .with_max_steps(1000)
    }

    fn run(_: ()) -> BoxFuture<'static, Result<(), WorkflowFailure>> {
        Box::pin(async move {
            for i in 0.. {
                step("spend")
                    .run(|| async move {
                        if i == LOOP_BLOCK_AT.load(Ordering::SeqCst) {
                            std::future::pending::<()>().await;
                        }
                        LOOP_EXECUTIONS.fetch_add(1, Ordering::SeqCst);
                        let ctx = StepContext::current().expect("inside a step");
                        ctx.report_usage(Usage::tokens("m", 100, 10).with_cost_usd(0.011));
                        Ok::<_, io::Error>(i)
                    })
                    .await
                    .map_err(fail)?;
            }
            Ok(())
        })
    }
}

#[tokio::test]
async fn a_budget_survives_a_restart_and_stops_the_run_at_the_same_total() {
    let store = Arc::new(MemoryStore::new());
    // Interrupt the run at its 4th step (3 journaled, 0.033 USD spent).
    LOOP_BLOCK_AT.store(3, Ordering::SeqCst);
    let first = Engine::with_store(Arc::clone(&store));
    let mut events = Events::of(&first);
    first.start::<Spender>("spend-1", ()).await.unwrap();
    events.steps_finished("spend-1", 3).await;
    assert_eq!(first.journal("spend-1").await.unwrap().len(), 3);
    first.shutdown().await;

    LOOP_BLOCK_AT.store(usize::MAX, Ordering::SeqCst);
    let second = Engine::with_store(Arc::clone(&store));
    second.register::<Spender>().await.unwrap();
    let error = second
        .handle::<Spender>("spend-1")
        .result()
        .await
        .unwrap_err();
    let Error::BudgetExceeded { message, .. } = &error else {
        panic!("expected BudgetExceeded, got {error:?}");
    };
    assert!(message.contains("max_cost_usd = 0.0500"), "{message}");
    assert!(
        message.contains("0.0550"),
        "names the amount spent: {message}"
    );
    let journal = second.journal("spend-1").await.unwrap();
    // 5 steps cost 0.055 >= 0.05: the 5th keeps its result, no 6th starts; the crash did not
    // reset the 3 steps spent before it.
    assert_eq!(journal.len(), 5);
    assert_eq!(LOOP_EXECUTIONS.load(Ordering::SeqCst), 5);
    let record = second.run("spend-1").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::BudgetExceeded);
}

struct Looper;

impl Workflow for Looper {
    type Input = ();
    type Output = ();
    const NAME: &'static str = "looper";

    fn budget() -> Budget {
        Budget::UNLIMITED.with_max_steps(7)
    }

    fn run(_: ()) -> BoxFuture<'static, Result<(), WorkflowFailure>> {
        Box::pin(async move {
            loop {
                step("again")
                    .run(|| async { Ok::<_, io::Error>(()) })
                    .await
                    .map_err(fail)?;
            }
        })
    }
}

#[tokio::test]
async fn max_steps_stops_a_workflow_stuck_in_a_loop_and_can_be_overridden_per_run() {
    let engine = Engine::in_memory();
    let error = engine
        .start::<Looper>("loop", ())
        .await
        .unwrap()
        .result()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::BudgetExceeded { message, .. } if message.contains("max_steps = 7")),
        "{error}"
    );
    assert_eq!(engine.journal("loop").await.unwrap().len(), 7);

    let options =
        workflow_runtime::RunOptions::default().budget(Budget::UNLIMITED.with_max_steps(2));
    let error = engine
        .start_with::<Looper>("loop-small", (), options)
        .await
        .unwrap()
        .result()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("max_steps = 2"), "{error}");
    assert_eq!(engine.journal("loop-small").await.unwrap().len(), 2);
}

// --- 8. Panics: the run fails, the engine and other runs go on -----------------------------

struct PanicsInStep;

impl Workflow for PanicsInStep {
    type Input = ();
    type Output = ();
    const NAME: &'static str = "panics_in_step";

    fn run(_: ()) -> BoxFuture<'static, Result<(), WorkflowFailure>> {
        Box::pin(async move {
            let _ = step("explode")
                .run(|| async {
                    if true {
                        panic!("step exploded");
                    }
                    Ok::<(), io::Error>(())
                })
                .await;
            // A body that swallows the error must still not continue past a panicked step.
            step("never")
                .run(|| async { Ok::<_, io::Error>(()) })
                .await
                .map_err(fail)
        })
    }
}

struct PanicsInBody;

impl Workflow for PanicsInBody {
    type Input = ();
    type Output = ();
    const NAME: &'static str = "panics_in_body";

    fn run(_: ()) -> BoxFuture<'static, Result<(), WorkflowFailure>> {
        Box::pin(async move { panic!("body exploded") })
    }
}

#[tokio::test]
async fn a_panic_fails_its_run_and_the_engine_and_other_runs_go_on() {
    let engine = Engine::in_memory();
    let step_panic = engine.start::<PanicsInStep>("p1", ()).await.unwrap();
    let body_panic = engine.start::<PanicsInBody>("p2", ()).await.unwrap();
    let healthy = engine.start::<Counted>("p3", (5,)).await.unwrap();

    let error = step_panic.result().await.unwrap_err();
    assert!(
        matches!(&error, Error::RunFailed { message, .. } if message.contains("step exploded")),
        "{error}"
    );
    let journal = engine.journal("p1").await.unwrap();
    assert_eq!(journal.len(), 1, "the step after the panic never ran");
    assert_eq!(
        journal[0].error.as_ref().unwrap().kind,
        StepErrorKind::Panicked
    );
    assert_eq!(journal[0].attempts, 1, "a panic is not retried");

    let error = body_panic.result().await.unwrap_err();
    assert!(
        matches!(&error, Error::RunFailed { message, .. } if message.contains("body exploded")),
        "{error}"
    );
    assert_eq!(healthy.result().await.unwrap(), 10);
}

// --- 4 and 8. Non-determinism and undecodable values park the run and lose nothing --------

static V1_BLOCK: AtomicBool = AtomicBool::new(true);

/// Version 1: `fetch` returns a string, then `store` runs.
struct DeployedV1;

impl Workflow for DeployedV1 {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "deployed";
    const FINGERPRINT: u64 = 1;

    fn run(_: ()) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let page: String = step("fetch")
                .run(|| async { Ok::<_, io::Error>("page".to_owned()) })
                .await
                .map_err(fail)?;
            gate("store", &V1_BLOCK).await.map_err(fail)?;
            Ok(page)
        })
    }
}

/// Version 2 renamed the first step.
struct DeployedV2Renamed;

impl Workflow for DeployedV2Renamed {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "deployed";
    const FINGERPRINT: u64 = 2;

    fn run(_: ()) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            step("download")
                .run(|| async { Ok::<_, io::Error>("page".to_owned()) })
                .await
                .map_err(fail)
        })
    }
}

/// Version 3 changed the first step's type.
struct DeployedV3Retyped;

impl Workflow for DeployedV3Retyped {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "deployed";
    const FINGERPRINT: u64 = 3;

    fn run(_: ()) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let size: u64 = step("fetch")
                .run(|| async { Ok::<_, io::Error>(4u64) })
                .await
                .map_err(fail)?;
            Ok(size.to_string())
        })
    }
}

#[tokio::test]
async fn changed_code_parks_the_run_with_a_precise_error_and_the_old_code_finishes_it() {
    let store = Arc::new(MemoryStore::new());
    let v1 = Engine::with_store(Arc::clone(&store));
    let mut events = Events::of(&v1);
    v1.start::<DeployedV1>("deploy-1", ()).await.unwrap();
    events.step_finished("deploy-1", "fetch").await;
    assert_eq!(v1.journal("deploy-1").await.unwrap().len(), 1);
    v1.shutdown().await;

    let v2 = Engine::with_store(Arc::clone(&store));
    v2.register::<DeployedV2Renamed>().await.unwrap();
    let error = v2
        .handle::<DeployedV2Renamed>("deploy-1")
        .result()
        .await
        .unwrap_err();
    let Error::RunParked { reason, .. } = &error else {
        panic!("expected a parked run, got {error:?}");
    };
    let reason = reason.to_string();
    for part in ["deploy-1", "#0", "`fetch`", "`download`", "body changed"] {
        assert!(reason.contains(part), "{part:?} missing from: {reason}");
    }
    assert_eq!(
        v2.run("deploy-1").await.unwrap().unwrap().status,
        RunStatus::Parked
    );
    v2.shutdown().await;

    let v3 = Engine::with_store(Arc::clone(&store));
    v3.register::<DeployedV3Retyped>().await.unwrap();
    let error = v3
        .handle::<DeployedV3Retyped>("deploy-1")
        .result()
        .await
        .unwrap_err();
    let Error::RunParked { reason, .. } = &error else {
        panic!("expected a parked run, got {error:?}");
    };
    let reason = reason.to_string();
    for part in ["deploy-1", "step #0 (fetch)", "u64"] {
        assert!(reason.contains(part), "{part:?} missing from: {reason}");
    }
    v3.shutdown().await;

    // Nothing was lost: the original code resumes the parked run and finishes it.
    V1_BLOCK.store(false, Ordering::SeqCst);
    let fixed = Engine::with_store(Arc::clone(&store));
    assert_eq!(fixed.register::<DeployedV1>().await.unwrap(), 1);
    assert_eq!(
        fixed
            .handle::<DeployedV1>("deploy-1")
            .result()
            .await
            .unwrap(),
        "page"
    );
    assert_eq!(fixed.journal("deploy-1").await.unwrap().len(), 2);
}

// --- 4. join_all over steps is deterministic -----------------------------------------------

static FAN_BLOCK: AtomicBool = AtomicBool::new(true);
static FAN_EXECUTIONS: AtomicUsize = AtomicUsize::new(0);

struct FanOut;

impl Workflow for FanOut {
    type Input = (u64,);
    type Output = Vec<(String, u64)>;
    const NAME: &'static str = "fan_out";

    fn run((width,): (u64,)) -> BoxFuture<'static, Result<Self::Output, WorkflowFailure>> {
        Box::pin(async move {
            let calls = (0..width).map(|i| {
                step(format!("branch-{i}")).run(move || async move {
                    FAN_EXECUTIONS.fetch_add(1, Ordering::SeqCst);
                    // Later branches finish first, so completion order differs from call order.
                    tokio::time::sleep(Duration::from_millis(50 * (width - i))).await;
                    if i == 0 && FAN_BLOCK.load(Ordering::SeqCst) {
                        std::future::pending::<()>().await;
                    }
                    let key = StepContext::current()
                        .expect("in a step")
                        .idempotency_key()
                        .to_owned();
                    Ok::<_, io::Error>((key, i * i))
                })
            });
            let results = futures::future::join_all(calls).await;
            results.into_iter().map(|r| r.map_err(fail)).collect()
        })
    }
}

#[tokio::test(start_paused = true)]
async fn join_all_over_steps_replays_to_the_same_result() {
    let store = Arc::new(MemoryStore::new());
    let first = Engine::with_store(Arc::clone(&store));
    let mut events = Events::of(&first);
    first.start::<FanOut>("fan", (5,)).await.unwrap();
    events.steps_finished("fan", 4).await;
    assert_eq!(first.journal("fan").await.unwrap().len(), 4);
    first.shutdown().await;
    FAN_BLOCK.store(false, Ordering::SeqCst);

    let second = Engine::with_store(Arc::clone(&store));
    second.register::<FanOut>().await.unwrap();
    let resumed = second.handle::<FanOut>("fan").result().await.unwrap();
    assert_eq!(
        FAN_EXECUTIONS.load(Ordering::SeqCst),
        6,
        "5 first, then only branch 0 again"
    );

    let fresh = Engine::in_memory()
        .start::<FanOut>("fan", (5,))
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(resumed, fresh);
    let expected: Vec<(String, u64)> = (0..5)
        .map(|i| (format!("fan/{i}/branch-{i}"), i * i))
        .collect();
    assert_eq!(
        resumed, expected,
        "sequence numbers follow call order, not completion order"
    );
}

// --- Direct calls ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn outside_an_engine_a_step_retries_and_times_out_without_a_journal() {
    let attempts = AtomicUsize::new(0);
    let started = tokio::time::Instant::now();
    let result: Result<(), StepError> = step("slow")
        .retries(2)
        .timeout(Duration::from_secs(1))
        .backoff(
            Backoff::DEFAULT
                .with_initial(Duration::from_secs(1))
                .with_factor(2.0)
                .with_max(Duration::from_secs(30))
                .with_jitter(0.0),
        )
        .run(|| async {
            attempts.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<(), io::Error>(())
        })
        .await;
    let error = result.unwrap_err();
    assert_eq!(error.kind, StepErrorKind::Timeout);
    assert_eq!(error.attempts, 3);
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    // Three 1 s attempts and backoff waits of 1 s and 2 s, in virtual time.
    assert_eq!(started.elapsed(), Duration::from_secs(6));
}

// --- 8. Files that are not journals ---------------------------------------------------------

#[tokio::test]
async fn a_file_that_is_not_a_journal_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    let content = "these are my notes, not a database\n".repeat(200);
    std::fs::write(&text, &content).unwrap();
    let error = Engine::open(&text).await.unwrap_err();
    assert!(
        matches!(error, Error::Open(OpenError::NotAJournal { .. })),
        "{error:?}"
    );
    assert!(error.to_string().contains("notes.txt"), "{error}");
    assert_eq!(std::fs::read_to_string(&text).unwrap(), content);

    // Too short even for redb's header: told apart by the I/O error's kind, not its words.
    let short = dir.path().join("short.redb");
    std::fs::write(&short, b"not a db").unwrap();
    let error = Engine::open(&short).await.unwrap_err();
    assert!(
        matches!(error, Error::Open(OpenError::NotAJournal { .. })),
        "{error:?}"
    );

    let foreign = dir.path().join("app.redb");
    {
        let db = redb::Database::create(&foreign).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(redb::TableDefinition::<&str, u64>::new("users"))
            .unwrap()
            .insert("ann", 1)
            .unwrap();
        tx.commit().unwrap();
    }
    let error = Engine::open(&foreign).await.unwrap_err();
    assert!(
        matches!(error, Error::Open(OpenError::NotAJournal { .. })),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("users"),
        "says what it found: {error}"
    );
}

#[tokio::test]
async fn a_journal_of_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.redb");
    drop(Engine::open(&path).await.unwrap());
    {
        let db = redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(redb::TableDefinition::<&str, &str>::new("workflow_meta"))
            .unwrap()
            .insert("format_version", "99")
            .unwrap();
        tx.commit().unwrap();
    }
    let error = Engine::open(&path).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Open(OpenError::NewerFormat {
                found: 99,
                supported: 2,
                ..
            })
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("upgrade"), "{error}");
}

struct CountsThenWaits;

impl Workflow for CountsThenWaits {
    type Input = ();
    type Output = u32;
    const NAME: &'static str = "counts_then_waits";

    fn run(_: ()) -> BoxFuture<'static, Result<u32, WorkflowFailure>> {
        Box::pin(async move {
            let counted = step("count")
                .run(|| async { Ok::<_, io::Error>(4_000_321u32) })
                .await
                .map_err(fail)?;
            let extra: u32 = workflow_runtime::durable::wait_for_event("go")
                .await
                .map_err(fail)?;
            Ok(counted + extra)
        })
    }
}

/// One changed digit inside a journaled value is caught by the record's checksum: the run is
/// parked naming the step, never resumed with a different value, and the record is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_step_record_parks_the_run_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.redb");
    {
        let engine = Engine::builder()
            .park_after(Duration::ZERO)
            .open(&path)
            .await
            .unwrap();
        engine.start::<CountsThenWaits>("c1", ()).await.unwrap();
        let inspector = engine.inspector();
        within("the run waits for its event", async {
            loop {
                let run = inspector.run("c1").await.unwrap();
                if run.is_some_and(|r| r.status == workflow_runtime::RunStatus::Waiting) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        engine.shutdown().await;
    }
    // Change one digit of the journaled value, as a bad sector or a stray write would.
    let steps = redb::TableDefinition::<(&str, u64), &[u8]>::new("workflow_steps");
    let damaged = {
        let db = redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        let damaged = {
            let mut table = tx.open_table(steps).unwrap();
            let mut record = table.get(("c1", 0)).unwrap().unwrap().value().to_vec();
            let at = record
                .windows(7)
                .position(|w| w == b"4000321")
                .expect("the value is in the record");
            record[at] = b'5';
            table.insert(("c1", 0), record.as_slice()).unwrap();
            record
        };
        tx.commit().unwrap();
        damaged
    };
    {
        let engine = Engine::open(&path).await.unwrap();
        engine.register::<CountsThenWaits>().await.unwrap();
        engine.send_event("c1", "go", 1u32).await.unwrap();
        let error = engine
            .handle::<CountsThenWaits>("c1")
            .result()
            .await
            .unwrap_err();
        let Error::RunParked { reason, .. } = &error else {
            panic!("expected a parked run, got {error:?}");
        };
        let reason = reason.to_string();
        assert!(
            reason.contains("corrupted journal record")
                && reason.contains("step #0")
                && reason.contains("checksum"),
            "{reason}"
        );
        engine.shutdown().await;
    }
    let db = redb::Database::create(&path).unwrap();
    let tx = redb::ReadableDatabase::begin_read(&db).unwrap();
    let kept = tx
        .open_table(steps)
        .unwrap()
        .get(("c1", 0))
        .unwrap()
        .unwrap()
        .value()
        .to_vec();
    assert_eq!(
        kept, damaged,
        "the damaged record is kept for a person to look at"
    );
}
