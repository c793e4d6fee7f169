//! The engine as a scheduler: the durable queue and its limits, durable timers, external
//! events, cancellation, child workflows and journaled time and randomness. Timers run under
//! tokio's paused clock, so hour-long sleeps take milliseconds.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;

use support::{Events, fail, gate, within};
use tokio::sync::Notify;
use tokio::time::Instant;
use workflow_runtime::{
    BoxFuture, Engine, Error, MemoryStore, RunOptions, RunStatus, StepErrorKind, StepStatus,
    Workflow, WorkflowFailure, durable, step,
};

// --- Durable timers ---------------------------------------------------------------------------

static NAPS: AtomicU32 = AtomicU32::new(0);

struct Napper;

impl Workflow for Napper {
    type Input = (u64,);
    type Output = u32;
    const NAME: &'static str = "napper";

    fn run((secs,): (u64,)) -> BoxFuture<'static, Result<u32, WorkflowFailure>> {
        Box::pin(async move {
            step("before")
                .run(|| async { Ok::<_, io::Error>(NAPS.fetch_add(1, Ordering::SeqCst)) })
                .await
                .map_err(fail)?;
            durable::sleep(Duration::from_secs(secs)).await;
            step("after")
                .run(|| async { Ok::<_, io::Error>(NAPS.fetch_add(1, Ordering::SeqCst)) })
                .await
                .map_err(fail)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_long_sleep_leaves_memory_and_wakes_when_due() {
    let engine = Engine::in_memory();
    let mut events = Events::of(&engine);
    let started = Instant::now();
    let run = engine.start::<Napper>("nap", (3600,)).await.unwrap();
    events.run_waiting("nap").await;
    assert_eq!(
        engine.run("nap").await.unwrap().unwrap().status,
        RunStatus::Waiting
    );
    assert_eq!(
        engine.load(),
        (1, 0),
        "queued for its wake-up, nothing executing"
    );
    let record = engine.run("nap").await.unwrap().unwrap();
    assert!(record.waiting_for.unwrap().starts_with("timer until"));
    run.result().await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(3600));
    assert!(started.elapsed() < Duration::from_secs(3700));
    let journal = engine.journal("nap").await.unwrap();
    let names: Vec<_> = journal.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["before", "sleep", "after"]);
}

#[tokio::test(start_paused = true)]
async fn a_resumed_run_sleeps_only_what_remains() {
    let store = Arc::new(MemoryStore::new());
    let first = Engine::with_store(Arc::clone(&store));
    let mut events = Events::of(&first);
    first.start::<Napper>("nap-crash", (3600,)).await.unwrap();
    // An hour is past the engine's threshold: the run journals its timer and leaves memory.
    events.run_waiting("nap-crash").await;
    assert_eq!(first.journal("nap-crash").await.unwrap().len(), 2);
    tokio::time::advance(Duration::from_secs(3000)).await;
    first.shutdown().await;

    let second = Engine::with_store(Arc::clone(&store));
    let resumed_at = Instant::now();
    second.register::<Napper>().await.unwrap();
    second.handle::<Napper>("nap-crash").result().await.unwrap();
    let slept = resumed_at.elapsed();
    assert!(
        slept >= Duration::from_secs(590) && slept <= Duration::from_secs(610),
        "about 600 s were left, slept {slept:?}"
    );
}

// --- External events --------------------------------------------------------------------------

struct Approval;

impl Workflow for Approval {
    type Input = (u64,);
    type Output = String;
    const NAME: &'static str = "approval";

    fn run((timeout_secs,): (u64,)) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let first: String = durable::wait_for_event("note").await.map_err(fail)?;
            let decision: Option<bool> =
                durable::wait_for_event_timeout("decision", Duration::from_secs(timeout_secs))
                    .await
                    .map_err(fail)?;
            Ok(format!("{first}: {decision:?}"))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn events_sent_before_and_after_the_wait_are_delivered_once_in_order() {
    let engine = Engine::builder()
        .park_after(Duration::from_secs(3600))
        .in_memory();
    let run = engine.start::<Approval>("ev", (600,)).await.unwrap();
    // Sent before the run waits for it: kept until it does.
    engine.send_event("ev", "note", "hello").await.unwrap();
    engine
        .send_event("ev", "note", "ignored second note")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    engine.send_event("ev", "decision", true).await.unwrap();
    assert_eq!(run.result().await.unwrap(), "hello: Some(true)");
}

#[tokio::test(start_paused = true)]
async fn an_event_wait_times_out_durably() {
    let engine = Engine::in_memory();
    let run = engine
        .start::<Approval>("ev-timeout", (600,))
        .await
        .unwrap();
    engine
        .send_event("ev-timeout", "note", "waiting")
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(run.result().await.unwrap(), "waiting: None");
    assert!(started.elapsed() >= Duration::from_secs(600));
}

#[tokio::test(start_paused = true)]
async fn an_event_wakes_a_run_waiting_out_of_memory_in_another_engine() {
    let store = Arc::new(MemoryStore::new());
    let first = Engine::builder()
        .park_after(Duration::from_secs(1))
        .store(Arc::clone(&store));
    let mut events = Events::of(&first);
    first
        .start::<Approval>("ev-restart", (86_400,))
        .await
        .unwrap();
    events.run_waiting("ev-restart").await;
    assert_eq!(
        first.run("ev-restart").await.unwrap().unwrap().status,
        RunStatus::Waiting
    );
    first.shutdown().await;

    let second = Engine::with_store(Arc::clone(&store));
    second.register::<Approval>().await.unwrap();
    second
        .send_event("ev-restart", "note", "after restart")
        .await
        .unwrap();
    second
        .send_event("ev-restart", "decision", false)
        .await
        .unwrap();
    let output = second
        .handle::<Approval>("ev-restart")
        .result()
        .await
        .unwrap();
    assert_eq!(output, "after restart: Some(false)");
    let error = second
        .send_event("ev-restart", "note", "late")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::RunFinished { .. }), "{error}");
}

/// Regression: an event sent before the run's workflow was registered in this engine (the run
/// neither executing nor queued) left the run waiting for an event it already had.
#[tokio::test(start_paused = true)]
async fn an_event_sent_before_the_workflow_is_registered_still_wakes_the_run() {
    let store = Arc::new(MemoryStore::new());
    let first = Engine::builder()
        .park_after(Duration::from_secs(1))
        .store(Arc::clone(&store));
    let mut events = Events::of(&first);
    first
        .start::<Approval>("ev-early", (86_400,))
        .await
        .unwrap();
    events.run_waiting("ev-early").await;
    assert_eq!(
        first.run("ev-early").await.unwrap().unwrap().status,
        RunStatus::Waiting
    );
    first.shutdown().await;

    let second = Engine::with_store(Arc::clone(&store));
    second
        .send_event("ev-early", "note", "sent first")
        .await
        .unwrap();
    second
        .send_event("ev-early", "decision", true)
        .await
        .unwrap();
    second.register::<Approval>().await.unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(3600),
        second.handle::<Approval>("ev-early").result(),
    )
    .await
    .expect("the run received the events sent before registration");
    assert_eq!(output.unwrap(), "sent first: Some(true)");
}

// --- Cancellation -------------------------------------------------------------------------------

static SLOW_STEPS: AtomicU32 = AtomicU32::new(0);
/// Notified when the slow step's body has started.
static SLOW_STARTED: Notify = Notify::const_new();

struct Stuck;

impl Workflow for Stuck {
    type Input = ();
    type Output = ();
    const NAME: &'static str = "stuck";

    fn run(_: ()) -> BoxFuture<'static, Result<(), WorkflowFailure>> {
        Box::pin(async move {
            step("quick")
                .run(|| async { Ok::<_, io::Error>(()) })
                .await
                .map_err(fail)?;
            step("forever")
                .run(|| async {
                    SLOW_STEPS.fetch_add(1, Ordering::SeqCst);
                    SLOW_STARTED.notify_one();
                    tokio::time::sleep(Duration::from_secs(1_000_000)).await;
                    Ok::<_, io::Error>(())
                })
                .await
                .map_err(fail)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn cancel_ends_the_run_journals_the_running_step_and_it_never_resumes() {
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::with_store(Arc::clone(&store));
    let run = engine.start::<Stuck>("stuck", ()).await.unwrap();
    within("the slow step runs", SLOW_STARTED.notified()).await;
    assert_eq!(SLOW_STEPS.load(Ordering::SeqCst), 1);
    assert!(engine.cancel("stuck").await.unwrap());
    let error = run.result().await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::RunFinished {
                status: RunStatus::Cancelled,
                ..
            }
        ),
        "{error}"
    );
    let journal = engine.journal("stuck").await.unwrap();
    assert_eq!(journal.len(), 2);
    assert_eq!(journal[1].status, StepStatus::Failed);
    assert_eq!(
        journal[1].error.as_ref().unwrap().kind,
        StepErrorKind::Cancelled
    );
    assert!(!engine.cancel("stuck").await.unwrap(), "already finished");

    let again = Engine::with_store(Arc::clone(&store));
    assert_eq!(
        again.register::<Stuck>().await.unwrap(),
        0,
        "a cancelled run never resumes"
    );

    // A queued run that has not started is cancelled without running.
    let delayed = engine
        .start_with::<Stuck>(
            "later",
            (),
            RunOptions::default().delay(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert!(engine.cancel("later").await.unwrap());
    assert!(delayed.result().await.is_err());
    assert!(engine.journal("later").await.unwrap().is_empty());
}

// --- Child workflows ----------------------------------------------------------------------------

static CHILD_RUNS: AtomicU32 = AtomicU32::new(0);
static PARENT_BLOCK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

struct Child;

impl Workflow for Child {
    type Input = (u32,);
    type Output = u32;
    const NAME: &'static str = "child";

    fn run((n,): (u32,)) -> BoxFuture<'static, Result<u32, WorkflowFailure>> {
        Box::pin(async move {
            step("square")
                .run(|| async move {
                    CHILD_RUNS.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, io::Error>(n * n)
                })
                .await
                .map_err(fail)
        })
    }
}

struct Parent;

impl Workflow for Parent {
    type Input = ();
    type Output = u32;
    const NAME: &'static str = "parent";

    fn run(_: ()) -> BoxFuture<'static, Result<u32, WorkflowFailure>> {
        Box::pin(async move {
            let a = durable::child::<Child>((3,)).await.map_err(fail)?;
            gate("gate", &PARENT_BLOCK).await.map_err(fail)?;
            let b = durable::child::<Child>((4,)).await.map_err(fail)?;
            Ok(a + b)
        })
    }
}

#[tokio::test]
async fn a_child_workflow_is_started_once_and_replayed_after_a_restart() {
    let store = Arc::new(MemoryStore::new());
    let first = Engine::with_store(Arc::clone(&store));
    let mut events = Events::of(&first);
    first.register::<Child>().await.unwrap();
    first.start::<Parent>("family", ()).await.unwrap();
    events.step_finished("family", "child:child").await;
    assert_eq!(first.journal("family").await.unwrap().len(), 1);
    first.shutdown().await;
    PARENT_BLOCK.store(false, Ordering::SeqCst);

    let second = Engine::with_store(Arc::clone(&store));
    second.register::<Child>().await.unwrap();
    second.register::<Parent>().await.unwrap();
    assert_eq!(
        second.handle::<Parent>("family").result().await.unwrap(),
        25
    );
    assert_eq!(CHILD_RUNS.load(Ordering::SeqCst), 2, "each child ran once");
    let child = second.run("family/0/child").await.unwrap().unwrap();
    assert_eq!(child.status, RunStatus::Completed);
    assert_eq!(child.workflow, "child");
}

// --- The queue ----------------------------------------------------------------------------------

static RUNNING: AtomicU32 = AtomicU32::new(0);
static MOST_RUNNING: AtomicU32 = AtomicU32::new(0);
static ORDER: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Limited;

impl Workflow for Limited {
    type Input = (String,);
    type Output = ();
    const NAME: &'static str = "limited";

    fn concurrency() -> Option<u32> {
        Some(2)
    }

    fn run((tag,): (String,)) -> BoxFuture<'static, Result<(), WorkflowFailure>> {
        Box::pin(async move {
            step("work")
                .run(|| async {
                    ORDER.lock().unwrap().push(tag.clone());
                    let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
                    MOST_RUNNING.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    RUNNING.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, io::Error>(())
                })
                .await
                .map_err(fail)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn the_queue_respects_limits_priorities_keys_and_delays() {
    let engine = Engine::in_memory();
    let started = Instant::now();
    let mut handles = Vec::new();
    // Six runs, at most 2 at a time (the workflow's limit): 3 s in all.
    for i in 0..6 {
        handles.push(
            engine
                .start::<Limited>(format!("l{i}"), (format!("l{i}"),))
                .await
                .unwrap(),
        );
    }
    for handle in handles.drain(..) {
        handle.result().await.unwrap();
    }
    assert_eq!(MOST_RUNNING.load(Ordering::SeqCst), 2);
    assert_eq!(started.elapsed(), Duration::from_secs(3));

    // One run at a time per user, and a priority that jumps the queue.
    ORDER.lock().unwrap().clear();
    let engine = Engine::builder().max_concurrent_runs(1).in_memory();
    for (id, priority, user) in [
        ("a", 0, "ann"),
        ("b", 0, "bob"),
        ("c", 9, "cid"),
        ("d", 0, "ann"),
    ] {
        let options = RunOptions::default()
            .priority(priority)
            .concurrency_key(user, 1);
        handles.push(
            engine
                .start_with::<Limited>(id, (id.to_owned(),), options)
                .await
                .unwrap(),
        );
    }
    for handle in handles.drain(..) {
        handle.result().await.unwrap();
    }
    let order = ORDER.lock().unwrap().clone();
    assert_eq!(order.len(), 4);
    assert_eq!(order.last().map(String::as_str), Some("d"), "{order:?}");
    assert!(
        order.iter().position(|t| t == "c") < order.iter().position(|t| t == "b"),
        "{order:?}"
    );

    // A delayed start waits for its time.
    let start = Instant::now();
    engine
        .start_with::<Limited>(
            "late",
            ("late".into(),),
            RunOptions::default().delay(Duration::from_secs(90)),
        )
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(91),
        "{:?}",
        start.elapsed()
    );
}

// --- Journaled time and randomness -------------------------------------------------------------

static DICE_BLOCK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

struct Dice;

impl Workflow for Dice {
    type Input = ();
    type Output = (u64, String, u64);
    const NAME: &'static str = "dice";

    fn run(_: ()) -> BoxFuture<'static, Result<Self::Output, WorkflowFailure>> {
        Box::pin(async move {
            let roll = durable::random().await;
            let id = durable::uuid().await;
            let at = durable::now().await;
            gate("gate", &DICE_BLOCK).await.map_err(fail)?;
            let micros = at
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros() as u64;
            Ok((roll, id, micros))
        })
    }
}

#[tokio::test]
async fn time_and_randomness_are_journaled_and_replayed() {
    let store = Arc::new(MemoryStore::new());
    let first = Engine::with_store(Arc::clone(&store));
    let mut events = Events::of(&first);
    first.start::<Dice>("dice", ()).await.unwrap();
    events.steps_finished("dice", 3).await;
    let journal = first.journal("dice").await.unwrap();
    assert_eq!(journal.len(), 3);
    first.shutdown().await;
    DICE_BLOCK.store(false, Ordering::SeqCst);
    let second = Engine::with_store(Arc::clone(&store));
    second.register::<Dice>().await.unwrap();
    let (roll, id, at) = second.handle::<Dice>("dice").result().await.unwrap();
    assert_eq!(journal[0].output.as_ref().unwrap().get(), roll.to_string());
    assert_eq!(journal[1].output.as_ref().unwrap().get(), format!("{id:?}"));
    assert_eq!(journal[2].output.as_ref().unwrap().get(), at.to_string());
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4", "a version 4 UUID: {id}");
}

// --- Rate limits ----------------------------------------------------------------------------------

struct Chatty;

impl Workflow for Chatty {
    type Input = (u32,);
    type Output = ();
    const NAME: &'static str = "chatty";

    fn run((calls,): (u32,)) -> BoxFuture<'static, Result<(), WorkflowFailure>> {
        Box::pin(async move {
            for _ in 0..calls {
                step("call")
                    .rate("llm")
                    .run(|| async { Ok::<_, io::Error>(()) })
                    .await
                    .map_err(fail)?;
            }
            Ok(())
        })
    }
}

#[tokio::test(start_paused = true)]
async fn steps_of_all_runs_wait_for_their_rate_limit_instead_of_failing() {
    let engine = Engine::builder()
        .rate_limit("llm", workflow_runtime::RateLimit::requests_per_minute(60))
        .in_memory();
    let started = Instant::now();
    let a = engine.start::<Chatty>("chat-a", (40,)).await.unwrap();
    let b = engine.start::<Chatty>("chat-b", (40,)).await.unwrap();
    a.result().await.unwrap();
    b.result().await.unwrap();
    // 80 calls: 60 from the full bucket, then one per second.
    let elapsed = started.elapsed().as_secs();
    assert!((20..=21).contains(&elapsed), "{elapsed} s");
    assert_eq!(engine.journal("chat-a").await.unwrap().len(), 40);
}

/// Regression: a fresh run skips reading its (empty) journal and events; an event sent while
/// the run was still queued must make its first execution read them.
#[tokio::test(start_paused = true)]
async fn events_sent_before_a_queued_run_first_executes_are_delivered() {
    let engine = Engine::in_memory();
    let options = RunOptions::default().delay(Duration::from_secs(30));
    let run = engine
        .start_with::<Approval>("ev-queued", (600,), options)
        .await
        .unwrap();
    engine
        .send_event("ev-queued", "note", "early")
        .await
        .unwrap();
    engine
        .send_event("ev-queued", "decision", true)
        .await
        .unwrap();
    // Bounded (in virtual time): a lost event would leave the run waiting for ever.
    let output = tokio::time::timeout(Duration::from_secs(3600), run.result())
        .await
        .expect("the queued run saw the events sent before it started");
    assert_eq!(output.unwrap(), "early: Some(true)");
}
