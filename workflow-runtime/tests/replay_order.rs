//! The replay-order rule (guarantee 4): outcomes reach the body in the order the journal
//! records, so a resumed fan-out takes exactly its original path. In one process, with the
//! crash played by `Engine::shutdown`; real SIGKILLs are in `crash_fanout.rs`, every commit
//! point of generated shapes in the runtime's `crash_check.rs`.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::Events;
use workflow_runtime::{
    Engine, Error, Event, MemoryStore, RunStatus, StepContext, StepError, StepStatus, Usage,
    durable, workflow,
};

static POST_BLOCKED: AtomicBool = AtomicBool::new(false);
static EXECUTED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A model call: the answer names the prompt, after a latency that inverts the finishing
/// order of the branches (ticket-1 is slow, ticket-2 fast).
async fn llm(prompt: String) -> Result<String, std::io::Error> {
    EXECUTED.lock().unwrap().push(prompt.clone());
    let ms = if prompt.contains("ticket-1") { 40 } else { 5 };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(format!("answer({prompt})"))
}

async fn post_replies(drafts: &[String]) -> Result<Vec<String>, std::io::Error> {
    if POST_BLOCKED.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    Ok(drafts.to_vec())
}

#[workflow]
async fn pipeline(ids: Vec<u64>) -> Result<Vec<String>, StepError> {
    let branches = ids.iter().map(|id| async move {
        #[step]
        let summary = llm(format!("summarize ticket-{id}")).await?;
        #[step]
        let draft = llm(format!("draft reply from {summary}")).await?;
        Ok::<_, StepError>(format!("ticket-{id}: {draft}"))
    });
    let drafts = futures::future::try_join_all(branches).await?;
    #[step]
    let sent = post_replies(&drafts).await?;
    Ok(sent)
}

fn uninterrupted_output() -> Vec<String> {
    (1..=2)
        .map(|id| format!("ticket-{id}: answer(draft reply from answer(summarize ticket-{id}))"))
        .collect()
}

/// The bug that opened issue 9: the resumed run finished with one ticket's summary in the
/// other's reply, and `Engine::replay` said nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_resumed_during_its_last_step_keeps_each_branch_its_own_values() {
    let store = Arc::new(MemoryStore::new());
    POST_BLOCKED.store(true, Ordering::SeqCst);
    let first = Engine::with_store(Arc::clone(&store));
    let mut events = Events::of(&first);
    first
        .start::<pipeline>("tickets", (vec![1, 2],))
        .await
        .unwrap();
    // Wait until the four branch steps are journaled: the run is inside post_replies.
    events.steps_finished("tickets", 4).await;
    assert_eq!(first.journal("tickets").await.unwrap().len(), 4);
    first.shutdown().await;
    drop(first);

    let journal = Engine::with_store(Arc::clone(&store))
        .journal("tickets")
        .await
        .unwrap();
    // Live, ticket-2's second step was called before ticket-1's: it has the lower number.
    let names: Vec<String> = journal
        .iter()
        .map(|s| s.output.as_ref().unwrap().get().to_owned())
        .collect();
    assert!(
        names[2].contains("ticket-2") && names[3].contains("ticket-1"),
        "the branches finished in the inverted order: {names:?}"
    );

    POST_BLOCKED.store(false, Ordering::SeqCst);
    EXECUTED.lock().unwrap().clear();
    let second = Engine::with_store(Arc::clone(&store));
    let run = second
        .start::<pipeline>("tickets", (vec![1, 2],))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), uninterrupted_output());
    assert!(
        EXECUTED.lock().unwrap().is_empty(),
        "no journaled step runs again: {:?}",
        EXECUTED.lock().unwrap()
    );
    let after = second.journal("tickets").await.unwrap();
    for (before, now) in journal.iter().zip(&after) {
        assert_eq!(
            (
                before.seq,
                &before.name,
                before.output.as_ref().map(|o| o.get())
            ),
            (now.seq, &now.name, now.output.as_ref().map(|o| o.get())),
            "a journaled step changed on resume"
        );
    }
    assert_eq!(
        second.replay::<pipeline>("tickets").await.unwrap(),
        uninterrupted_output()
    );
}

async fn value<T>(value: T) -> Result<T, std::io::Error> {
    Ok(value)
}

static BODY_SUFFIX: Mutex<&str> = Mutex::new("");

#[workflow]
async fn suffixed(word: String) -> Result<String, StepError> {
    #[step]
    let upper = value(word.to_uppercase()).await?;
    // Reads state that is not journaled: a bug `Engine::replay` must catch.
    let suffix = *BODY_SUFFIX.lock().unwrap();
    Ok(format!("{upper}{suffix}"))
}

#[tokio::test]
async fn engine_replay_reports_an_output_that_differs_from_the_journaled_one() {
    let engine = Engine::in_memory();
    let run = engine
        .start::<suffixed>("s", ("abc".into(),))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), "ABC");
    assert_eq!(engine.replay::<suffixed>("s").await.unwrap(), "ABC");
    *BODY_SUFFIX.lock().unwrap() = "!";
    let error = engine.replay::<suffixed>("s").await.unwrap_err();
    assert!(
        matches!(&error, Error::ReplayDiverged { run_id, .. } if run_id == "s"),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("\"ABC!\"") && text.contains("\"ABC\""),
        "names both outputs: {text}"
    );
    *BODY_SUFFIX.lock().unwrap() = "";
}

static SKIP_SECOND: AtomicBool = AtomicBool::new(false);

#[workflow]
async fn two_steps() -> Result<u32, StepError> {
    #[step]
    let a = value(1u32).await?;
    if SKIP_SECOND.load(Ordering::SeqCst) {
        return Ok(a);
    }
    #[step]
    let b = value(2u32).await?;
    Ok(a + b)
}

#[tokio::test]
async fn engine_replay_names_the_journaled_step_a_changed_body_no_longer_calls() {
    let engine = Engine::in_memory();
    let run = engine.start::<two_steps>("t", ()).await.unwrap();
    assert_eq!(run.result().await.unwrap(), 3);
    SKIP_SECOND.store(true, Ordering::SeqCst);
    let error = engine.replay::<two_steps>("t").await.unwrap_err();
    SKIP_SECOND.store(false, Ordering::SeqCst);
    let text = error.to_string();
    assert!(
        matches!(error, Error::ReplayDiverged { .. }) && text.contains("#1"),
        "{text}"
    );
}

async fn calls_a_step() -> Result<String, std::io::Error> {
    // A step started inside another step's attempt.
    workflow_runtime::step("inner")
        .run(|| async { Ok::<_, std::io::Error>("x".to_owned()) })
        .await
        .map_err(std::io::Error::other)
}

#[workflow]
async fn nested() -> Result<String, StepError> {
    #[step]
    let outer = calls_a_step().await?;
    Ok(outer)
}

#[tokio::test]
async fn a_step_started_inside_another_step_fails_the_run_naming_both() {
    let engine = Engine::in_memory();
    let run = engine.start::<nested>("n", ()).await.unwrap();
    let error = run.result().await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, Error::RunFailed { .. }), "{error:?}");
    assert!(
        text.contains("`inner`") && text.contains("step `") && text.contains("#0"),
        "names the inner step and the outer one: {text}"
    );
    // Nothing was journaled for the inner step.
    let journal = engine.journal("n").await.unwrap();
    assert!(journal.iter().all(|s| s.name != "inner"), "{journal:?}");
}

static ATTEMPTS: AtomicU32 = AtomicU32::new(0);

async fn costly() -> Result<String, std::io::Error> {
    ATTEMPTS.fetch_add(1, Ordering::SeqCst);
    let ctx = StepContext::current().expect("in a step");
    ctx.report_usage(Usage::tokens("m", 100, 100).with_cost_usd(0.6));
    Err(std::io::Error::other("overloaded"))
}

/// Each attempt costs $0.60 and fails; the budget is $1.00. The first process makes one
/// attempt and dies in the backoff; the second must count that attempt's $0.60, so it makes
/// one attempt more and stops, instead of two.
#[workflow(max_cost_usd = 1.0)]
async fn expensive() -> Result<String, StepError> {
    #[step(
        retries = 5,
        backoff(initial = "10s", factor = 1.0, max = "10s", jitter = 0.0)
    )]
    let answer = costly().await?;
    Ok(answer)
}

#[tokio::test(start_paused = true)]
async fn the_spend_of_failed_attempts_survives_a_crash_during_the_retries() {
    let store = Arc::new(MemoryStore::new());
    let first = Engine::with_store(Arc::clone(&store));
    let mut events = Events::of(&first);
    first.start::<expensive>("e", ()).await.unwrap();
    events
        .wait_for("the first attempt failed", |event| {
            matches!(event, Event::StepRetrying { run_id, attempt: 1, .. } if run_id == "e")
        })
        .await;
    // The attempt's spend is journaled after that event, before the 10 s backoff: a second of
    // virtual time passes only once the run is idle in its backoff.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ATTEMPTS.load(Ordering::SeqCst), 1);
    assert!(
        first
            .journal("e")
            .await
            .unwrap()
            .iter()
            .any(|s| s.status == StepStatus::Pending),
        "the failed attempt's spend is journaled before the backoff"
    );
    first.shutdown().await;
    drop(first);
    let journal = Engine::with_store(Arc::clone(&store))
        .journal("e")
        .await
        .unwrap();
    assert_eq!(journal.len(), 1);
    assert!(
        (journal[0].usage.cost_usd - 0.6).abs() < 1e-9,
        "{journal:?}"
    );

    let second = Engine::with_store(Arc::clone(&store));
    let run = second.start::<expensive>("e", ()).await.unwrap();
    let error = run.result().await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::BudgetExceeded {
                exhausted: Some(workflow_runtime::BudgetExhausted::CostUsd { limit, spent }),
                ..
            } if limit == 1.0 && spent > 1.0
        ),
        "which budget, as a type: {error:?}"
    );
    assert_eq!(
        ATTEMPTS.load(Ordering::SeqCst),
        2,
        "the second process counted the first one's attempt"
    );
    let record = second.run("e").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::BudgetExceeded);
    let step = &second.journal("e").await.unwrap()[0];
    assert!((step.usage.cost_usd - 1.2).abs() < 1e-9, "{step:?}");
    assert_eq!(
        step.attempt_log.len(),
        2,
        "both processes' attempts are logged"
    );
}

static RACE_STEP_MS: AtomicUsize = AtomicUsize::new(5);

async fn quick_check() -> Result<String, std::io::Error> {
    tokio::time::sleep(Duration::from_millis(
        RACE_STEP_MS.load(Ordering::SeqCst) as u64
    ))
    .await;
    Ok("checked".into())
}

#[workflow]
async fn step_or_timeout() -> Result<String, StepError> {
    let first = durable::race(
        async {
            #[step]
            let checked = quick_check().await?;
            Ok::<_, StepError>(checked)
        },
        durable::sleep(Duration::from_millis(20)),
    )
    .await;
    let label = match first {
        durable::Either::First(checked) => checked?,
        durable::Either::Second(()) => "timed out".to_owned(),
    };
    #[step]
    let after = value(format!("{label}, then done")).await?;
    Ok(after)
}

/// A race decided live is decided the same way on replay, whichever branch is faster then.
#[tokio::test(start_paused = true)]
async fn a_race_replays_to_the_branch_that_won_live() {
    let engine = Engine::in_memory();
    RACE_STEP_MS.store(50, Ordering::SeqCst);
    let run = engine.start::<step_or_timeout>("r", ()).await.unwrap();
    assert_eq!(run.result().await.unwrap(), "timed out, then done");
    // Now the step would win the race at once; the journal says the timer did.
    RACE_STEP_MS.store(0, Ordering::SeqCst);
    assert_eq!(
        engine.replay::<step_or_timeout>("r").await.unwrap(),
        "timed out, then done"
    );
}

static NAP_BLOCKED: AtomicBool = AtomicBool::new(true);

async fn first_thing() -> Result<u32, std::io::Error> {
    if NAP_BLOCKED.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    Ok(1)
}

/// A step, then an hour's durable sleep (the run leaves memory), then the end.
#[workflow]
async fn napper() -> Result<u32, StepError> {
    #[step]
    let first = first_thing().await?;
    durable::sleep(Duration::from_secs(3600)).await;
    Ok(first)
}

/// A store whose `create_run` answers late, with the record as it was when asked: what a
/// slower store (a file, a database) does while the run goes on executing.
struct SlowCreate(Arc<MemoryStore>);

impl workflow_runtime::store::Store for SlowCreate {
    fn create_run(
        &self,
        run: workflow_runtime::RunRecord,
    ) -> workflow_runtime::BoxFuture<
        '_,
        Result<workflow_runtime::store::CreateRun, workflow_runtime::StoreError>,
    > {
        let answer = self.0.create_run(run);
        Box::pin(async move {
            let answer = answer.await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            answer
        })
    }
    fn load_run(
        &self,
        run_id: String,
    ) -> workflow_runtime::BoxFuture<
        '_,
        Result<Option<workflow_runtime::RunRecord>, workflow_runtime::StoreError>,
    > {
        self.0.load_run(run_id)
    }
    fn list_runs(
        &self,
    ) -> workflow_runtime::BoxFuture<
        '_,
        Result<Vec<workflow_runtime::RunRecord>, workflow_runtime::StoreError>,
    > {
        self.0.list_runs()
    }
    fn load_steps(
        &self,
        run_id: String,
    ) -> workflow_runtime::BoxFuture<
        '_,
        Result<Vec<workflow_runtime::StepRecord>, workflow_runtime::StoreError>,
    > {
        self.0.load_steps(run_id)
    }
    fn load_events(
        &self,
        run_id: String,
    ) -> workflow_runtime::BoxFuture<
        '_,
        Result<Vec<workflow_runtime::InboxEvent>, workflow_runtime::StoreError>,
    > {
        self.0.load_events(run_id)
    }
    fn commit(
        &self,
        writes: Vec<workflow_runtime::store::Write>,
    ) -> workflow_runtime::BoxFuture<'_, Result<(), workflow_runtime::StoreError>> {
        self.0.commit(writes)
    }
}

/// Regression: `start` of a run that `register` had just resumed read the run as running,
/// after the run had left memory to sleep, and queued it due now: a second resume an hour early.
#[tokio::test(start_paused = true)]
async fn start_of_a_run_that_register_resumed_does_not_resume_it_again() {
    let store = Arc::new(MemoryStore::new());
    let first = Engine::with_store(Arc::clone(&store));
    let mut events = Events::of(&first);
    first.start::<napper>("nap", ()).await.unwrap();
    events
        .wait_for(
            "the run starts",
            |event| matches!(event, Event::RunStarted { run_id, .. } if run_id == "nap"),
        )
        .await;
    first.shutdown().await;
    drop(first);
    NAP_BLOCKED.store(false, Ordering::SeqCst);

    let second = Engine::with_store(SlowCreate(Arc::clone(&store)));
    let executions = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&executions);
    second.on_event(move |event| {
        if let Event::RunStarted { run_id, .. } | Event::RunResumed { run_id, .. } = event
            && run_id == "nap"
        {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    assert_eq!(second.register::<napper>().await.unwrap(), 1);
    // While `start` waits for the store, the resumed run executes its step and leaves memory.
    second.start::<napper>("nap", ()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(
        executions.load(Ordering::SeqCst),
        1,
        "resumed once, and asleep until its hour is up"
    );
    let record = second.run("nap").await.unwrap().unwrap();
    assert_eq!(record.status, RunStatus::Waiting);
}

/// Races a journaled `now` (ready at once) against the event `note`, which is waiting in the
/// inbox: both are ready at the same poll, and `now` is first in line. Then waits for `note`.
#[workflow]
async fn note_after_a_race() -> Result<String, StepError> {
    let first = durable::race(durable::now(), durable::wait_for_event::<String>("note")).await;
    let winner = match first {
        durable::Either::First(_) => "now",
        durable::Either::Second(_) => "note",
    };
    let note: Option<String> =
        durable::wait_for_event_timeout("note", Duration::from_secs(5)).await?;
    Ok(format!("{winner} won; then {note:?}"))
}

/// Regression: a wait that lost a race had consumed its event already, so the event was gone
/// for the wait after the race.
#[tokio::test(start_paused = true)]
async fn an_event_taken_by_a_race_s_losing_wait_is_still_there_for_the_next_wait() {
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::with_store(Arc::clone(&store));
    // The run waits for an hour before it starts: the event is in its inbox by then.
    let options = workflow_runtime::RunOptions::default().delay(Duration::from_secs(3600));
    let run = engine
        .start_with::<note_after_a_race>("race-note", (), options)
        .await
        .unwrap();
    engine
        .send_event("race-note", "note", "hello")
        .await
        .unwrap();
    let output = run.result().await.unwrap();
    assert_eq!(output, "now won; then Some(\"hello\")");
    assert_eq!(
        engine
            .replay::<note_after_a_race>("race-note")
            .await
            .unwrap(),
        output
    );
}
