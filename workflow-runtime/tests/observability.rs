//! History, cost ledger, alert thresholds, retry of failed runs, and the admin endpoint.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;

use support::{alerts, fail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use workflow_runtime::admin::AdminInfo;
use workflow_runtime::{
    AlertKind, AlertThresholds, Backoff, BoxFuture, Engine, ErrorRateThreshold, HistoryKind,
    LedgerGroup, MemoryStore, RunOptions, RunStatus, StepContext, StepFailure, Usage, Workflow,
    WorkflowFailure, step,
};

const QUICK: Backoff = Backoff::DEFAULT
    .with_initial(Duration::from_millis(1))
    .with_factor(2.0)
    .with_max(Duration::from_millis(10))
    .with_jitter(0.0);

/// The run of each failed attempt of `think`.
static FLAKES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn flakes_of(run_id: &str) -> usize {
    FLAKES
        .lock()
        .unwrap()
        .iter()
        .filter(|r| *r == run_id)
        .count()
}
static BREAK_LAST: AtomicBool = AtomicBool::new(true);

/// Two steps: the first fails twice before it succeeds and reports usage; the second fails
/// for good when `n` is 0, and while `BREAK_LAST` is set when `n` is 100.
struct Agent;

impl Workflow for Agent {
    type Input = (u32,);
    type Output = String;
    const NAME: &'static str = "agent";

    fn run((n,): (u32,)) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let a = step("think")
                .backoff(QUICK)
                .run(|| async move {
                    let ctx = StepContext::current().expect("in a step");
                    ctx.report_usage(Usage::tokens("m", 100, 10).with_cost_usd(0.01));
                    if ctx.attempt() < 3 {
                        FLAKES
                            .lock()
                            .unwrap()
                            .push(ctx.run_id().unwrap_or_default().to_owned());
                        return Err(StepFailure::transient(format!("flake {}", ctx.attempt())));
                    }
                    Ok(n * 2)
                })
                .await
                .map_err(fail)?;
            let b = step("act")
                .run(|| async move {
                    if n == 0 || (n == 100 && BREAK_LAST.load(Ordering::SeqCst)) {
                        return Err(StepFailure::terminal("the tool is broken"));
                    }
                    Ok(a + 1)
                })
                .await
                .map_err(fail)?;
            Ok(format!("{a}/{b}"))
        })
    }
}

#[tokio::test]
async fn history_shows_retries_with_their_errors_and_waits_and_the_ledger_sums_by_tag() {
    let engine = Engine::in_memory();
    for (id, n, user) in [("h1", 1, "ann"), ("h2", 2, "ann"), ("h3", 0, "bob")] {
        let options = RunOptions::default().tag("user", user);
        let run = engine.start_with::<Agent>(id, (n,), options).await.unwrap();
        let _ = run.result().await;
    }
    let page = engine.history("h1", 0, 100).await.unwrap();
    let kinds: Vec<&HistoryKind> = page.events.iter().map(|e| &e.kind).collect();
    assert!(matches!(kinds[0], HistoryKind::RunStarted { workflow } if workflow == "agent"));
    let retries: Vec<_> = kinds
        .iter()
        .filter_map(|k| match k {
            HistoryKind::StepRetried {
                attempt,
                error,
                wait_us,
                ..
            } => Some((*attempt, error.message.clone(), *wait_us)),
            _ => None,
        })
        .collect();
    assert_eq!(
        retries,
        [
            (1, "flake 1".to_owned(), 1_000),
            (2, "flake 2".to_owned(), 2_000)
        ]
    );
    assert!(kinds.iter().any(
        |k| matches!(k, HistoryKind::StepCompleted { name, attempts: 3, .. } if name == "think")
    ));
    assert!(matches!(
        kinds.last(),
        Some(HistoryKind::RunEnded {
            status: RunStatus::Completed,
            ..
        })
    ));
    assert!(page.next.is_none());
    // Paginated: two at a time.
    let first = engine.history("h1", 0, 2).await.unwrap();
    assert_eq!(first.events.len(), 2);
    assert_eq!(first.next, Some(2));
    let second = engine.history("h1", 2, 2).await.unwrap();
    assert_eq!(second.events[0], page.events[2]);

    let failed = engine.history("h3", 0, 100).await.unwrap();
    assert!(
        failed
            .events
            .iter()
            .any(|e| matches!(&e.kind, HistoryKind::StepFailed { name, .. } if name == "act"))
    );

    let rows = engine
        .ledger(LedgerGroup::Tag("user".into()), None)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let ann = rows.iter().find(|r| r.key == "ann").unwrap();
    assert_eq!(
        (ann.runs, ann.failed_runs, ann.steps, ann.retries),
        (2, 0, 4, 4)
    );
    assert!(
        (ann.cost_usd - 0.06).abs() < 1e-9,
        "3 attempts x 0.01 per run: {}",
        ann.cost_usd
    );
    assert_eq!(ann.input_tokens, 600);
    let bob = rows.iter().find(|r| r.key == "bob").unwrap();
    assert_eq!((bob.runs, bob.failed_runs), (1, 1));
    assert!((bob.error_rate - 1.0).abs() < 1e-9);
    let by_workflow = engine.ledger(LedgerGroup::Workflow, None).await.unwrap();
    assert_eq!(by_workflow.len(), 1);
    assert_eq!(by_workflow[0].runs, 3);
}

#[tokio::test]
async fn retry_runs_a_failed_run_again_from_its_failed_step() {
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::with_store(Arc::clone(&store));
    let run = engine.start::<Agent>("broken", (100,)).await.unwrap();
    assert!(run.result().await.is_err());
    assert_eq!(flakes_of("broken"), 2);
    // The tool is fixed; retry replays `think` and runs `act` again.
    BREAK_LAST.store(false, Ordering::SeqCst);
    assert!(engine.retry("broken").await.unwrap());
    assert_eq!(run.result().await.unwrap(), "200/201");
    assert_eq!(flakes_of("broken"), 2, "think was replayed, not rerun");
    assert!(
        !engine.retry("broken").await.unwrap(),
        "a completed run is not retried"
    );
}

struct Pricey;

impl Workflow for Pricey {
    type Input = (bool,);
    type Output = ();
    const NAME: &'static str = "pricey";

    fn run((fails,): (bool,)) -> BoxFuture<'static, Result<(), WorkflowFailure>> {
        Box::pin(async move {
            for _ in 0..3 {
                step("spend")
                    .run(|| async {
                        let ctx = StepContext::current().expect("in a step");
                        ctx.report_usage(Usage::default().with_cost_usd(0.5));
                        Ok::<_, io::Error>(())
                    })
                    .await
                    .map_err(fail)?;
            }
            if fails {
                return Err(WorkflowFailure::new("gave up"));
            }
            Ok(())
        })
    }
}

#[tokio::test]
async fn thresholds_on_cost_and_error_rate_raise_alerts_once() {
    let engine = Engine::builder()
        .alert_thresholds(
            AlertThresholds::NONE
                .with_cost_per_run_usd(1.0)
                .with_cost_per_window(2.5, Duration::from_secs(3600))
                .with_error_rate(ErrorRateThreshold::new(0.5, Duration::from_secs(3600), 2)),
        )
        .in_memory();
    let seen = alerts(&engine);
    for (id, fails) in [("p1", false), ("p2", true)] {
        let _ = engine
            .start::<Pricey>(id, (fails,))
            .await
            .unwrap()
            .result()
            .await;
    }
    let seen = seen.lock().unwrap().clone();
    let count = |kind| seen.iter().filter(|(k, _)| *k == kind).count();
    assert_eq!(
        count(AlertKind::CostPerRun),
        2,
        "each run crossed $1 once: {seen:?}"
    );
    assert_eq!(
        count(AlertKind::CostPerWindow),
        1,
        "$3 in the window, alerted once: {seen:?}"
    );
    assert_eq!(
        count(AlertKind::ErrorRate),
        1,
        "1 of 2 runs failed: {seen:?}"
    );
    let (_, message) = seen
        .iter()
        .find(|(k, _)| *k == AlertKind::CostPerRun)
        .unwrap();
    assert!(
        message.contains("p1") && message.contains("$1.0000"),
        "{message}"
    );
}

static SLOW: AtomicBool = AtomicBool::new(false);

struct Timed;

impl Workflow for Timed {
    type Input = ();
    type Output = ();
    const NAME: &'static str = "timed";

    fn run(_: ()) -> BoxFuture<'static, Result<(), WorkflowFailure>> {
        Box::pin(async move {
            step("call")
                .run(|| async {
                    let ms = if SLOW.load(Ordering::SeqCst) { 500 } else { 10 };
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok::<_, io::Error>(())
                })
                .await
                .map_err(fail)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_step_much_slower_than_its_recent_p95_raises_an_alert() {
    let engine = Engine::builder()
        .alert_thresholds(AlertThresholds::NONE.with_slow_step_factor(3.0))
        .in_memory();
    let seen = alerts(&engine);
    for i in 0..25 {
        engine
            .start::<Timed>(format!("t{i}"), ())
            .await
            .unwrap()
            .result()
            .await
            .unwrap();
    }
    assert!(seen.lock().unwrap().is_empty());
    SLOW.store(true, Ordering::SeqCst);
    engine
        .start::<Timed>("slow", ())
        .await
        .unwrap()
        .result()
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].0, AlertKind::SlowStep);
    assert!(
        seen[0].1.contains("`call`") && seen[0].1.contains("timed"),
        "{}",
        seen[0].1
    );
}

// --- The admin endpoint -------------------------------------------------------------------------

struct Held;

impl Workflow for Held {
    type Input = ();
    type Output = ();
    const NAME: &'static str = "held";

    fn run(_: ()) -> BoxFuture<'static, Result<(), WorkflowFailure>> {
        Box::pin(async move {
            // Runs until the test cancels the run.
            step("hold")
                .run(|| async {
                    std::future::pending::<()>().await;
                    Ok::<_, io::Error>(())
                })
                .await
                .map_err(fail)
        })
    }
}

async fn http(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .expect("the endpoint answers")
        .unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_refuses_reads_and_commands_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("admin.redb");
    let engine = Engine::open(&db).await.unwrap();
    let admin = engine
        .serve_admin("127.0.0.1:0".parse().unwrap(), AdminInfo::path_for(&db))
        .await
        .unwrap();
    let info = AdminInfo::read(AdminInfo::path_for(&db)).unwrap();
    assert_eq!(&info, admin.info());
    assert!(info.addr.ip().is_loopback());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(AdminInfo::path_for(&db))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the token is readable by its owner only"
        );
    }
    engine.start::<Held>("held/1", ()).await.unwrap();

    // Reads show every run's inputs and outputs: they need the token too.
    let auth = format!("authorization: Bearer {}", info.token);
    let (status, body) = http(
        info.addr,
        &format!("GET /runs HTTP/1.1\r\nhost: x\r\n{auth}\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("\"held/1\""), "{body}");
    let (status, _) = http(
        info.addr,
        &format!("GET /runs/held%2F1 HTTP/1.1\r\n{auth}\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = http(
        info.addr,
        &format!("GET /runs/nope HTTP/1.1\r\n{auth}\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 404);

    let refused = [
        "GET /runs HTTP/1.1\r\n\r\n".to_owned(),
        "GET /runs/held%2F1 HTTP/1.1\r\nauthorization: Bearer wrong\r\n\r\n".to_owned(),
        "POST /runs/held%2F1/cancel HTTP/1.1\r\n\r\n".to_owned(),
        "POST /runs/held%2F1/cancel HTTP/1.1\r\nauthorization: Bearer wrong\r\n\r\n".to_owned(),
    ];
    for request in &refused {
        let (status, body) = http(info.addr, request).await;
        assert_eq!(status, 401, "{request:?}: {body}");
    }
    let status_now = engine.run("held/1").await.unwrap().unwrap().status;
    assert!(
        !status_now.is_terminal(),
        "a refused command changes nothing: {status_now}"
    );

    let allowed = format!(
        "POST /runs/held%2F1/cancel HTTP/1.1\r\nauthorization: Bearer {}\r\n\r\n",
        info.token
    );
    let (status, body) = http(info.addr, &allowed).await;
    assert_eq!((status, body.as_str()), (200, r#"{"changed":true}"#));
    assert_eq!(
        engine.run("held/1").await.unwrap().unwrap().status,
        RunStatus::Cancelled
    );

    let info_file = AdminInfo::path_for(&db);
    drop(admin);
    assert!(!info_file.exists(), "the info file goes with the endpoint");
}

/// The messages of the tracing events emitted while it is the default subscriber.
#[derive(Default)]
struct Messages(Mutex<Vec<String>>);

impl tracing::Subscriber for Messages {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Line<'a>(&'a mut String);
        impl tracing::field::Visit for Line<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={value:?}", field.name()));
            }
        }
        let mut line = String::new();
        event.record(&mut Line(&mut line));
        self.0.lock().unwrap().push(line);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Waits a minute for an approval.
struct Approval;

impl Workflow for Approval {
    type Input = ();
    type Output = Option<bool>;
    const NAME: &'static str = "approval";

    fn run(_: ()) -> BoxFuture<'static, Result<Option<bool>, WorkflowFailure>> {
        Box::pin(async move {
            let approved = workflow_runtime::durable::wait_for_event_timeout(
                "approval",
                Duration::from_secs(60),
            )
            .await?;
            Ok(approved)
        })
    }
}

/// Regression: a durable wait said nothing while it waited; only its leaving memory, 10 s
/// later, was an event. It says at once what it waits for and for how long at most.
#[tokio::test(start_paused = true)]
async fn a_durable_wait_says_so_when_it_begins() {
    let messages = Arc::new(Messages::default());
    let _default = tracing::subscriber::set_default(Arc::clone(&messages));
    let engine = Engine::in_memory();
    let run = engine.start::<Approval>("approval-1", ()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let said = messages.0.lock().unwrap().clone();
    let line = said
        .iter()
        .find(|line| line.contains("run waits durably"))
        .unwrap_or_else(|| panic!("no line about the wait in {said:#?}"));
    for part in [
        "run_id=approval-1",
        "waiting_for=\"event `approval`\"",
        "at_most=60s",
        "leaves_memory_after=10s",
    ] {
        assert!(line.contains(part), "{part} is not in {line}");
    }
    engine
        .send_event("approval-1", "approval", true)
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), Some(true));
}
