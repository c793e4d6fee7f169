//! Tests of the test engine: its clock, its overrides and its assertions.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::{StepOverride, TestEngine};
use crate::retry::ErrorClass;
use crate::store::BoxFuture;
use crate::{Budget, EngineBuilder, RunStatus, StepError, Usage, Workflow, WorkflowFailure};
use crate::{durable, resource, step};

/// Where the loopback server of [`Fetch`] listens: a resource, as a client's base URL would be.
struct Server(std::net::SocketAddr);

/// One step that reads a line from a loopback server, with a 10 s timeout.
struct Fetch;

impl Workflow for Fetch {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "fetch";

    fn run(_: ()) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async {
            step("fetch")
                .timeout(Duration::from_secs(10))
                .retries(0)
                .run(|| async {
                    let server = resource::<Server>()?;
                    let mut stream = TcpStream::connect(server.0).await?;
                    let mut answer = String::new();
                    stream.read_to_string(&mut answer).await?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(answer)
                })
                .await
                .map_err(|e| WorkflowFailure::new(e.to_string()))
        })
    }
}

/// Regression: under a paused clock, a step waiting on a loopback socket let tokio skip to its
/// 10 s timeout at once, so the step timed out though the server answered within milliseconds.
#[tokio::test(start_paused = true)]
async fn a_step_waiting_on_a_loopback_socket_is_not_timed_out_by_skipped_time() {
    // A server outside the runtime, as a real one is: a thread of its own, answering after
    // 30 ms of real time.
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let address = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_millis(30));
        std::io::Write::write_all(&mut socket, b"pong").unwrap();
    });
    let test = TestEngine::with(EngineBuilder::default().resource(Server(address)));
    let run = test.start::<Fetch>("f", ()).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(60), run.result()).await;
    assert_eq!(answer.unwrap().unwrap(), "pong");
    assert_eq!(test.attempts("f"), ["fetch#1 ok"]);
    assert!(
        test.elapsed() < Duration::from_secs(10),
        "{:?}",
        test.elapsed()
    );
    server.join().unwrap();
}

/// A call with retries: a sleep, then the model.
struct Agent;

impl Workflow for Agent {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "agent";

    fn run(_: ()) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async {
            durable::sleep(Duration::from_secs(3_600)).await;
            let answer = step("model")
                .timeout(Duration::from_secs(10))
                .run(|| async { Ok::<_, std::io::Error>("real".to_owned()) })
                .await
                .map_err(|e| WorkflowFailure::new(e.to_string()))?;
            let approved: bool = durable::wait_for_event("approval")
                .await
                .map_err(|e: StepError| WorkflowFailure::new(e.to_string()))?;
            Ok(format!("{answer} {approved}"))
        })
    }
}

#[tokio::test]
async fn overrides_drive_the_retry_policy_and_time_skips_over_durable_waits() {
    let test = TestEngine::new();
    test.override_step(
        "model",
        StepOverride::returning("mocked")
            .failing_on(
                1,
                ErrorClass::RateLimited {
                    retry_after: Some(Duration::from_secs(20)),
                },
            )
            .taking_on(2, Duration::from_secs(30))
            .taking(Duration::from_secs(1)),
    );
    let run = test.start::<Agent>("a", ()).await.unwrap();
    // The run leaves memory at once for its hour of sleep: no 10 s in memory first.
    let record = test.settled("a").await.unwrap();
    assert_eq!(record.status, RunStatus::Waiting, "{record:?}");
    assert_eq!(test.elapsed(), Duration::ZERO);
    let at = Duration::from_secs(7_200);
    let sent = test.send_event_at(at, "a", "approval", true);
    assert_eq!(run.result().await.unwrap(), "mocked true");
    sent.await.unwrap().unwrap();
    assert_eq!(
        test.attempts("a"),
        ["model#1 rate_limited", "model#2 dropped", "model#3 ok"]
    );
    assert_eq!(
        test.steps("a").await.unwrap(),
        [
            "sleep completed",
            "model completed after 3 attempts",
            "event:approval completed"
        ]
    );
    assert_eq!(
        test.spent("a").await.unwrap().to_string(),
        "1 step, 2 retries, $0.0000, 0 tokens in, 0 out"
    );
    // The hour's sleep, 20 s of Retry-After, a 10 s timeout and 1 s: before the approval.
    assert!(
        test.elapsed() - at < Duration::from_secs(1),
        "{:?}",
        test.elapsed()
    );
}

#[tokio::test]
async fn a_reported_cost_stops_the_run_at_its_budget() {
    let test = TestEngine::new();
    test.override_step(
        "model",
        StepOverride::returning("mocked")
            .failing_always(ErrorClass::Server { status: 503 })
            .reporting(Usage::tokens("m", 1_000, 100).with_cost_usd(0.4)),
    );
    let options = crate::RunOptions::default().budget(Budget::default().with_max_cost_usd(1.0));
    let run = test.start_with::<Agent>("b", (), options).await.unwrap();
    let error = run.result().await.unwrap_err();
    assert!(error.to_string().contains("cost"), "{error}");
    let record = test.settled("b").await.unwrap();
    assert_eq!(record.status, RunStatus::BudgetExceeded);
    assert_eq!(
        test.attempts("b"),
        ["model#1 server", "model#2 server", "model#3 server"]
    );
}

#[tokio::test]
async fn a_direct_call_that_waits_for_an_event_points_to_the_test_engine() {
    let error = durable::wait_for_event::<bool>("approval")
        .await
        .unwrap_err();
    assert!(error.message.contains("TestEngine"), "{}", error.message);
}

#[test]
fn the_test_kits_types_are_send_sync_static() {
    fn assert_send_sync_static<T: Send + Sync + 'static>() {}
    assert_send_sync_static::<TestEngine>();
    assert_send_sync_static::<StepOverride>();
    assert_send_sync_static::<super::Totals>();
    assert_send_sync_static::<crate::ResourceError>();
}

/// One call through the circuit `search`, with its default retries.
struct Search;

impl Workflow for Search {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "search";

    fn run(_: ()) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async {
            let outcome = step("search")
                .circuit("search")
                .run(|| async { Ok::<_, std::io::Error>("found".to_owned()) })
                .await;
            Ok(match outcome {
                Ok(value) => value,
                Err(error) => format!("{:?}", error.kind),
            })
        })
    }
}

#[tokio::test]
async fn a_fault_on_every_attempt_opens_the_circuit_for_the_next_runs() {
    let config = crate::CircuitConfig::new(3, Duration::from_secs(60));
    let test = TestEngine::with(EngineBuilder::default().circuit("search", config));
    test.override_step(
        "search",
        StepOverride::running_body().failing_always(ErrorClass::Server { status: 503 }),
    );
    let first = test.start::<Search>("s1", ()).await.unwrap();
    // Three failures in a row open it: the fourth attempt is refused, and so is the next run's.
    assert_eq!(first.result().await.unwrap(), "CircuitOpen");
    assert_eq!(
        test.attempts("s1"),
        ["search#1 server", "search#2 server", "search#3 server"]
    );
    let second = test.start::<Search>("s2", ()).await.unwrap();
    assert_eq!(second.result().await.unwrap(), "CircuitOpen");
    assert_eq!(test.attempts("s2"), Vec::<String>::new());
    // Once the fault is gone and the cool-down over, a probe closes it again.
    test.clear_override("search");
    tokio::time::sleep(Duration::from_secs(61)).await;
    let third = test.start::<Search>("s3", ()).await.unwrap();
    assert_eq!(third.result().await.unwrap(), "found");
    assert_eq!(test.attempts("s3"), ["search#1 ok"]);
}
