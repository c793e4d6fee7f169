//! Retries by error class, circuit breaking, alerts and budgets, under tokio's paused clock so
//! that minutes of backoff take milliseconds.

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

mod support;

use support::{alerts, fail};
use tokio::time::Instant;
use workflow_runtime::{
    AlertKind, BoxFuture, Budget, CircuitConfig, Classify, Engine, Error, ErrorClass, HttpError,
    RunStatus, StepContext, StepError, StepErrorKind, StepFailure, Usage, Workflow,
    WorkflowFailure, step,
};

/// Runs a step outside an engine whose attempts fail with `fail(attempt)` until `succeed_at`.
async fn direct<E>(
    configure: impl FnOnce(workflow_runtime::Step) -> workflow_runtime::Step,
    mut fail: impl FnMut(u32) -> Option<E>,
) -> (Result<u32, StepError>, Vec<Duration>)
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let starts = Mutex::new(Vec::new());
    let origin = Instant::now();
    let result = configure(step("probe"))
        .run(|| {
            starts.lock().unwrap().push(origin.elapsed());
            let attempt = StepContext::current().expect("in a step").attempt();
            let outcome = match fail(attempt) {
                Some(error) => Err(error),
                None => Ok(attempt),
            };
            async move { outcome }
        })
        .await;
    let starts = starts.into_inner().unwrap();
    let waits = starts.windows(2).map(|w| w[1] - w[0]).collect();
    (result, waits)
}

fn near(actual: Duration, expected_secs: f64, spread: f64) -> bool {
    let a = actual.as_secs_f64();
    a >= expected_secs * (1.0 - spread) - 1e-9 && a <= expected_secs * (1.0 + spread) + 1e-9
}

#[tokio::test(start_paused = true)]
async fn a_transient_error_is_retried_three_times_with_growing_jittered_waits() {
    let (result, waits) = direct(|s| s, |_| Some(io::Error::other("connection reset"))).await;
    let error = result.unwrap_err();
    assert_eq!(error.kind, StepErrorKind::Transient);
    assert_eq!(error.attempts, 4);
    assert_eq!(waits.len(), 3);
    for (wait, expected) in waits.iter().zip([1.0, 5.0, 25.0]) {
        assert!(near(*wait, expected, 0.1), "{waits:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_is_retried_like_a_network_error() {
    let attempts = AtomicU32::new(0);
    let result: Result<(), StepError> = step("slow")
        .timeout(Duration::from_secs(2))
        .run(|| async {
            attempts.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<(), io::Error>(())
        })
        .await;
    let error = result.unwrap_err();
    assert_eq!((error.kind, error.attempts), (StepErrorKind::Timeout, 4));
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn a_429_waits_exactly_as_long_as_retry_after_says() {
    let (result, waits) = direct(
        |s| s,
        |attempt| (attempt < 3).then(|| HttpError::new(429, Some("7"), "slow down")),
    )
    .await;
    assert_eq!(result.unwrap(), 3);
    assert_eq!(waits, [Duration::from_secs(7), Duration::from_secs(7)]);
}

#[tokio::test(start_paused = true)]
async fn a_429_without_retry_after_backs_off_and_gives_up_after_five_attempts() {
    let (result, waits) = direct(|s| s, |_| Some(HttpError::new(429, None, "slow down"))).await;
    let error = result.unwrap_err();
    assert_eq!(
        (error.kind, error.attempts),
        (StepErrorKind::RateLimited, 5)
    );
    assert!(
        near(waits[0], 1.0, 0.1) && near(waits[1], 5.0, 0.1),
        "{waits:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_error_is_never_retried_and_an_override_cannot_change_that() {
    let (result, waits) = direct(
        |s| s.retries(5),
        |_| Some(HttpError::new(404, None, "no such model")),
    )
    .await;
    let error = result.unwrap_err();
    assert_eq!((error.kind, error.attempts), (StepErrorKind::Client, 1));
    assert!(waits.is_empty());
    assert!(error.message.contains("HTTP 404"), "{}", error.message);
}

#[tokio::test(start_paused = true)]
async fn a_schema_mismatch_is_retried_once_with_the_error_readable_by_the_step() {
    let seen = Mutex::new(Vec::new());
    let result: Result<u32, StepError> = step("extract")
        .run(|| async {
            let ctx = StepContext::current().expect("in a step");
            seen.lock()
                .unwrap()
                .push(ctx.previous_error().map(|e| e.message.clone()));
            // The model keeps answering prose where JSON was asked for.
            serde_json::from_str::<u32>("Sure! Here is the number: 4")
        })
        .await;
    let error = result.unwrap_err();
    assert_eq!((error.kind, error.attempts), (StepErrorKind::Schema, 2));
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen[0], None);
    assert!(
        seen[1]
            .as_deref()
            .is_some_and(|m| m.contains("expected value")),
        "{seen:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn non_retryable_steps_and_terminal_failures_stop_at_once() {
    let (result, _) = direct(|s| s.non_retryable(), |_| Some(io::Error::other("flaky"))).await;
    assert_eq!(result.unwrap_err().attempts, 1);
    let (result, _) = direct(
        |s| s,
        |_| Some(StepFailure::terminal("invalid card number")),
    )
    .await;
    let error = result.unwrap_err();
    assert_eq!((error.kind, error.attempts), (StepErrorKind::Terminal, 1));
}

#[derive(Debug)]
enum PaymentError {
    Declined,
    GatewayDown,
}

impl std::fmt::Display for PaymentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for PaymentError {}

impl Classify for PaymentError {
    fn class(&self) -> ErrorClass {
        match self {
            PaymentError::Declined => ErrorClass::Terminal,
            PaymentError::GatewayDown => ErrorClass::Transient,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn user_errors_classify_themselves_and_anyhow_keeps_the_class_of_its_cause() {
    let (result, _) = direct(
        |s| s,
        |_| Some(StepFailure::classified(PaymentError::Declined)),
    )
    .await;
    assert_eq!(result.unwrap_err().attempts, 1, "declined is terminal");
    let (result, _) = direct(
        |s| s,
        |a| (a < 2).then(|| StepFailure::classified(PaymentError::GatewayDown)),
    )
    .await;
    assert_eq!(result.unwrap(), 2, "gateway down is transient");

    let (result, _) = direct(
        |s| s,
        |_| {
            Some(
                anyhow::Error::new(HttpError::new(403, None, "key revoked"))
                    .context("calling the model"),
            )
        },
    )
    .await;
    let error = result.unwrap_err();
    assert_eq!(
        (error.kind, error.attempts),
        (StepErrorKind::Auth, 1),
        "{error}"
    );

    // A plain std error is transient by default.
    let (result, _) = direct(|s| s.retries(1), |_| Some(std::fmt::Error)).await;
    assert_eq!(result.unwrap_err().kind, StepErrorKind::Transient);
}

// --- Engine-level behaviour: alerts, circuits, auth, budgets --------------------------------

/// One step whose behaviour the input names.
struct Scenario;

static STARTED: AtomicU32 = AtomicU32::new(0);

async fn behave(name: &str) -> Result<String, StepFailure> {
    let ctx = StepContext::current().expect("in a step");
    STARTED.fetch_add(1, Ordering::SeqCst);
    match name {
        "unavailable" => Err(StepFailure::from_error(HttpError::new(
            503,
            None,
            "overloaded",
        ))),
        "unauthorized" => Err(StepFailure::from_error(HttpError::new(
            401, None, "bad key",
        ))),
        "expensive-flaky" => {
            ctx.report_usage(Usage::tokens("big-model", 10_000, 0));
            Err(StepFailure::transient("timeout upstream"))
        }
        _ => Ok(format!("ok {}", ctx.attempt())),
    }
}

impl Workflow for Scenario {
    type Input = (String, Option<String>);
    type Output = String;
    const NAME: &'static str = "scenario";

    fn run((name, circuit): Self::Input) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let mut s = step(name.clone());
            if let Some(circuit) = circuit {
                s = s.circuit(circuit);
            }
            let first = s.run(|| behave(&name)).await;
            // The body carries on whatever happened, so that what stops a run is the engine.
            let after = step("after").run(|| async { Ok::<_, io::Error>(()) }).await;
            Ok(format!("{first:?} / {after:?}"))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn repeated_503s_raise_an_alert_through_the_engine_hook() {
    let engine = Engine::in_memory();
    let seen = alerts(&engine);
    let run = engine
        .start::<Scenario>("r503", ("unavailable".into(), None))
        .await
        .unwrap();
    let output = run.result().await.unwrap();
    assert!(
        output.contains("Server") && output.contains("attempts: 4"),
        "{output}"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, AlertKind::RepeatedServiceUnavailable);
    assert!(seen[0].1.contains("503 on 4 attempts"), "{}", seen[0].1);
}

#[tokio::test(start_paused = true)]
async fn an_auth_failure_is_not_retried_alerts_and_stops_the_run() {
    let engine = Engine::in_memory();
    let seen = alerts(&engine);
    let run = engine
        .start::<Scenario>("r401", ("unauthorized".into(), None))
        .await
        .unwrap();
    let error = run.result().await.unwrap_err();
    assert!(
        matches!(&error, Error::RunFailed { message, .. } if message.contains("HTTP 401")),
        "{error}"
    );
    let journal = engine.journal("r401").await.unwrap();
    assert_eq!(journal.len(), 1, "the body's next step never ran");
    assert_eq!(journal[0].attempts, 1);
    assert_eq!(seen.lock().unwrap()[0].0, AlertKind::AuthFailure);
}

#[tokio::test(start_paused = true)]
async fn a_circuit_shared_by_runs_opens_fails_fast_probes_and_closes() {
    let engine = Engine::builder()
        .circuit("llm", CircuitConfig::new(5, Duration::from_secs(60)))
        .in_memory();
    let seen = alerts(&engine);
    // Two runs with 4 attempts each: the 5th consecutive failure opens the circuit, so the
    // second run fails fast on its 2nd attempt.
    let first = engine
        .start::<Scenario>("c1", ("unavailable".into(), Some("llm".into())))
        .await
        .unwrap();
    first.result().await.unwrap();
    let before = STARTED.load(Ordering::SeqCst);
    let second = engine
        .start::<Scenario>("c2", ("unavailable".into(), Some("llm".into())))
        .await
        .unwrap();
    let output = second.result().await.unwrap();
    assert!(output.contains("CircuitOpen"), "{output}");
    assert!(
        output.contains("circuit `llm` is open after 5 consecutive failures"),
        "{output}"
    );
    assert_eq!(
        STARTED.load(Ordering::SeqCst) - before,
        1,
        "one call, then it failed fast"
    );
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|(kind, _)| *kind == AlertKind::CircuitOpened)
    );

    // While open, a healthy call through the circuit still fails fast...
    let third = engine
        .start::<Scenario>("c3", ("healthy".into(), Some("llm".into())))
        .await
        .unwrap();
    assert!(third.result().await.unwrap().contains("CircuitOpen"));
    // ...after the cool-down, one probe goes through, succeeds, and closes the circuit.
    tokio::time::advance(Duration::from_secs(61)).await;
    for id in ["c4", "c5"] {
        let run = engine
            .start::<Scenario>(id, ("healthy".into(), Some("llm".into())))
            .await
            .unwrap();
        assert!(run.result().await.unwrap().starts_with("Ok(\"ok 1\")"));
    }
}

#[tokio::test(start_paused = true)]
async fn retries_are_charged_to_the_cost_budget_and_priced_from_the_engine_table() {
    let engine = Engine::builder().price("big-model", 3.0, 15.0).in_memory();
    // Each attempt reports 10,000 input tokens: 0.03 USD. 0.07 USD allows 3 attempts.
    let options =
        workflow_runtime::RunOptions::default().budget(Budget::UNLIMITED.with_max_cost_usd(0.07));
    let run = engine
        .start_with::<Scenario>("costly", ("expensive-flaky".into(), None), options)
        .await
        .unwrap();
    let error = run.result().await.unwrap_err();
    let Error::BudgetExceeded { message, .. } = &error else {
        panic!("expected BudgetExceeded, got {error:?}");
    };
    assert!(
        message.contains("max_cost_usd = 0.0700") && message.contains("0.0900"),
        "{message}"
    );
    let journal = engine.journal("costly").await.unwrap();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].attempts, 3);
    assert!(
        (journal[0].usage.cost_usd - 0.09).abs() < 1e-9,
        "{:?}",
        journal[0].usage
    );
    assert_eq!(
        engine.run("costly").await.unwrap().unwrap().status,
        RunStatus::BudgetExceeded
    );
}

struct Wide;

static IN_FLIGHT: AtomicU32 = AtomicU32::new(0);
static MOST_IN_FLIGHT: AtomicU32 = AtomicU32::new(0);

impl Workflow for Wide {
    type Input = ();
    type Output = usize;
    const NAME: &'static str = "wide";

    fn budget() -> Budget {
        Budget::UNLIMITED.with_max_in_flight_steps(2)
    }

    fn run(_: ()) -> BoxFuture<'static, Result<usize, WorkflowFailure>> {
        Box::pin(async move {
            let calls = (0..6).map(|i| {
                step(format!("branch-{i}")).run(|| async {
                    let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
                    MOST_IN_FLIGHT.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, io::Error>(())
                })
            });
            let done = futures::future::join_all(calls).await;
            Ok(done.into_iter().filter(Result::is_ok).count())
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_fan_out_cap_bounds_the_steps_in_flight() {
    let engine = Engine::in_memory();
    let started = Instant::now();
    let done = engine
        .start::<Wide>("wide", ())
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    assert_eq!(done, 6);
    assert_eq!(MOST_IN_FLIGHT.load(Ordering::SeqCst), 2);
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(3),
        "6 one-second steps, 2 at a time"
    );
}

struct Slow;

impl Workflow for Slow {
    type Input = ();
    type Output = ();
    const NAME: &'static str = "slow";

    fn budget() -> Budget {
        Budget::UNLIMITED.with_max_duration(Duration::from_millis(300))
    }

    fn run(_: ()) -> BoxFuture<'static, Result<(), WorkflowFailure>> {
        Box::pin(async move {
            loop {
                step("tick")
                    .run(|| async {
                        // The duration budget is measured on the journal's clock (wall-clock
                        // time, so that it survives a crash), which follows tokio's: paused
                        // here, so each step takes exactly 50 ms.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, io::Error>(())
                    })
                    .await
                    .map_err(fail)?;
            }
        })
    }
}

#[tokio::test(start_paused = true)]
async fn max_duration_stops_a_run_that_takes_too_long() {
    let engine = Engine::in_memory();
    let error = engine
        .start::<Slow>("slow", ())
        .await
        .unwrap()
        .result()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::BudgetExceeded { message, .. } if message.contains("max_duration = 300ms")),
        "{error}"
    );
    // Checked against the journal's clock: every step started within the 300 ms, and the run
    // ended after them. Under the paused clock the count is exact too: steps start at 0, 50,
    // ..., 250 ms, and the check before a 7th, at 300 ms, refuses it.
    let run = engine.run("slow").await.unwrap().unwrap();
    let steps = engine.journal("slow").await.unwrap();
    assert_eq!(steps.len(), 6, "the run worked until its budget ran out");
    let limit_us = 300_000;
    for step in &steps {
        let started = step.started_at_us - run.created_at_us;
        // A step's start is noted a few microseconds after its budget check: 1 ms of slack.
        assert!(
            started < limit_us + 1_000,
            "step #{} started {started} us in",
            step.seq
        );
    }
    let ended = run.updated_at_us - run.created_at_us;
    assert!(
        ended >= limit_us,
        "the run ended {ended} us in, before its budget ran out"
    );
}

#[tokio::test(start_paused = true)]
async fn each_class_keeps_its_own_allowance_of_retries() {
    // A timeout, then a schema mismatch: the mismatch still gets its one retry.
    let (result, _) = direct(
        |s| s,
        |attempt| match attempt {
            1 => Some(StepFailure::new(ErrorClass::Timeout, "slow")),
            2 => Some(StepFailure::new(
                ErrorClass::Schema,
                "prose instead of JSON",
            )),
            _ => None,
        },
    )
    .await;
    assert_eq!(result.unwrap(), 3);
    // Two schema mismatches exhaust it.
    let (result, _) = direct(
        |s| s,
        |attempt| (attempt <= 2).then(|| StepFailure::new(ErrorClass::Schema, "prose")),
    )
    .await;
    assert_eq!(result.unwrap_err().attempts, 2);
}

/// Waits an hour for an approval (or sleeps an hour, when `sleeps`), under a 30-minute budget.
struct Approval;

impl Workflow for Approval {
    type Input = (bool,);
    type Output = String;
    const NAME: &'static str = "approval";

    fn budget() -> Budget {
        Budget::UNLIMITED.with_max_duration(Duration::from_secs(30 * 60))
    }

    fn run((sleeps,): (bool,)) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            if sleeps {
                workflow_runtime::durable::sleep(Duration::from_secs(3_600)).await;
                return Ok("slept".into());
            }
            let approved: Option<bool> = workflow_runtime::durable::wait_for_event_timeout(
                "approval",
                Duration::from_secs(3_600),
            )
            .await?;
            Ok(format!("approved: {approved:?}"))
        })
    }
}

/// Regression: a 3,600 s approval wait under a 30 min `max_duration` ended the run at 3,603 s
/// (at the first step after the wait); it ends at its deadline now, out of budget, whether it
/// waits for an event or sleeps.
#[tokio::test(start_paused = true)]
async fn a_durable_wait_longer_than_max_duration_ends_the_run_at_its_deadline() {
    for (run_id, sleeps) in [("event", false), ("sleep", true)] {
        let engine = Engine::in_memory();
        let error = engine
            .start::<Approval>(run_id, (sleeps,))
            .await
            .unwrap()
            .result()
            .await
            .unwrap_err();
        assert!(
            matches!(&error, Error::BudgetExceeded { message, exhausted: Some(_), .. } if message.contains("max_duration = 1800s")),
            "{run_id}: {error}"
        );
        let run = engine.run(run_id).await.unwrap().unwrap();
        assert_eq!(run.status, RunStatus::BudgetExceeded, "{run_id}");
        let ended_s = (run.updated_at_us - run.created_at_us) as f64 / 1e6;
        assert!(
            (1_800.0..1_801.0).contains(&ended_s),
            "{run_id}: the run ended {ended_s} s in, not at its 1,800 s deadline"
        );
    }
}

/// One step that takes a minute.
struct Minute;

impl Workflow for Minute {
    type Input = ();
    type Output = ();
    const NAME: &'static str = "minute";

    fn run(_: ()) -> BoxFuture<'static, Result<(), WorkflowFailure>> {
        Box::pin(async move {
            step("wait")
                .run(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok::<_, io::Error>(())
                })
                .await
                .map_err(fail)?;
            Ok(())
        })
    }
}

/// Regression: a call racing shutdown got the storage's internals ("journal storage failed:
/// journal read task failed: task 21 was cancelled") or a park reason; it gets
/// `Error::ShuttingDown`, and so does a call made after shutdown.
#[tokio::test(start_paused = true)]
async fn a_call_racing_shutdown_gets_shutting_down() {
    let engine = Engine::in_memory();
    let run = engine.start::<Minute>("minute", ()).await.unwrap();
    let waiting = tokio::spawn(async move { run.result().await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    engine.shutdown().await;
    let raced = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the wait for the result ends with the engine")
        .unwrap();
    assert!(matches!(raced, Err(Error::ShuttingDown)), "{raced:?}");
    let after = engine.start::<Minute>("later", ()).await;
    assert!(matches!(after, Err(Error::ShuttingDown)), "{after:?}");
    let after = engine.send_event("minute", "nudge", ()).await;
    assert!(matches!(after, Err(Error::ShuttingDown)), "{after:?}");
    // The store's own word for it, when a read is cancelled with the runtime.
    assert!(matches!(
        Error::from(workflow_runtime::StoreError::Closed),
        Error::ShuttingDown
    ));
}

/// Two steps around an hour's durable sleep (and a journaled time), under `max_steps = 2`.
struct TwoStepsAndASleep;

impl Workflow for TwoStepsAndASleep {
    type Input = ();
    type Output = u32;
    const NAME: &'static str = "two_steps_and_a_sleep";

    fn budget() -> Budget {
        Budget::UNLIMITED.with_max_steps(2)
    }

    fn run(_: ()) -> BoxFuture<'static, Result<u32, WorkflowFailure>> {
        Box::pin(async move {
            let one = step("one")
                .run(|| async { Ok::<_, io::Error>(1) })
                .await
                .map_err(fail)?;
            let _ = workflow_runtime::durable::now().await;
            // Long enough to leave memory: the run comes back by replaying its journal.
            workflow_runtime::durable::sleep(Duration::from_secs(3_600)).await;
            let two = step("two")
                .run(|| async { Ok::<_, io::Error>(2) })
                .await
                .map_err(fail)?;
            Ok(one + two)
        })
    }
}

/// Regression: a run resumed from its journal counted the records of its timer and its
/// journaled time as steps, so `max_steps = 2` stopped a run of two steps after a long sleep.
#[tokio::test(start_paused = true)]
async fn max_steps_counts_steps_not_timers_when_a_run_is_replayed() {
    let engine = Engine::in_memory();
    let value = engine
        .start::<TwoStepsAndASleep>("sleeper", ())
        .await
        .unwrap()
        .result()
        .await;
    assert_eq!(value.unwrap(), 3);
    let run = engine.run("sleeper").await.unwrap().unwrap();
    assert!(
        !run.resumed_at_us.is_empty(),
        "the run left memory during its sleep and was replayed"
    );
}
