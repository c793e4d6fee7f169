//! The feature `otel`: spans of runs and step attempts, exported to the SDK's in-memory
//! exporter. Run with `cargo test -p workflow-runtime --features otel --test otel`.
#![cfg(feature = "otel")]

use std::io::{Error as IoError, ErrorKind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::Value;
use opentelemetry::trace::{SpanContext, SpanId, Status};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData, SpanExporter};
use tokio::sync::Notify;
use workflow_runtime::otel::{Exporter, execution_span_context};
use workflow_runtime::{
    BoxFuture, Engine, MemoryStore, StepContext, StepError, Usage, Workflow, WorkflowFailure,
    durable, step,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn failure(error: StepError) -> WorkflowFailure {
    WorkflowFailure::new(error.to_string())
}

/// The in-memory exporter, minus the reset of its spans when its provider shuts down, so that
/// the spans of a "process" that shut down can be read after it.
#[derive(Debug, Clone)]
struct KeptOnShutdown(InMemorySpanExporter);

impl SpanExporter for KeptOnShutdown {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.export(batch).await
    }
}

fn exporter(spans: &InMemorySpanExporter) -> Exporter {
    let kept = KeptOnShutdown(spans.clone());
    Exporter::new(SdkTracerProvider::builder().with_simple_exporter(kept))
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn int(span: &SpanData, key: &str) -> Option<i64> {
    match attribute(span, key) {
        Some(Value::I64(n)) => Some(*n),
        _ => None,
    }
}

fn string(span: &SpanData, key: &str) -> Option<String> {
    match attribute(span, key) {
        Some(Value::String(s)) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// The spans named `name`.
fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// The run span of execution `execution` of `run_id`, found by its derived ids.
fn run_span<'a>(spans: &'a [SpanData], run_id: &str, execution: usize) -> &'a SpanData {
    let ids: SpanContext = execution_span_context(run_id, execution);
    let found: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_context.span_id() == ids.span_id())
        .collect();
    assert_eq!(found.len(), 1, "run span of execution {execution}");
    let span = found[0];
    assert_eq!(span.span_context.trace_id(), ids.trace_id());
    assert_eq!(span.parent_span_id, SpanId::INVALID, "a run span is a root");
    span
}

fn assert_child_of(child: &SpanData, parent: &SpanData) {
    assert_eq!(
        child.span_context.trace_id(),
        parent.span_context.trace_id()
    );
    assert_eq!(child.parent_span_id, parent.span_context.span_id());
    assert!(!child.parent_span_is_remote);
    assert!(child.start_time >= parent.start_time, "{}", child.name);
    assert!(child.end_time <= parent.end_time, "{}", child.name);
    assert!(child.start_time <= child.end_time, "{}", child.name);
}

/// `plan`, then `call`, whose first attempt fails; both report 10 + 5 tokens of model `m`.
struct TwoSteps;

impl Workflow for TwoSteps {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "two_steps";

    fn run((): ()) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async {
            let plan = step("plan")
                .run(|| async {
                    let ctx = StepContext::current().expect("inside a step");
                    ctx.report_usage(Usage::tokens("m", 10, 5));
                    Ok::<_, IoError>("plan".to_owned())
                })
                .await
                .map_err(failure)?;
            let plan = &plan;
            step("call")
                .retries(1)
                .run(|| async move {
                    let ctx = StepContext::current().expect("inside a step");
                    if ctx.attempt() == 1 {
                        return Err(IoError::new(
                            ErrorKind::ConnectionReset,
                            "connection reset by the model's server",
                        ));
                    }
                    ctx.report_usage(Usage::tokens("m", 10, 5));
                    Ok(format!("{plan}: answered"))
                })
                .await
                .map_err(failure)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_is_one_span_with_a_child_per_attempt_and_genai_usage() -> TestResult {
    let finished = InMemorySpanExporter::default();
    let exporter = exporter(&finished);
    // 10 input tokens at $1,000 per million, 5 output tokens at $2,000: $0.02 per call.
    let engine = Engine::builder().price("m", 1_000.0, 2_000.0).in_memory();
    exporter.attach(&engine);

    let run = engine.start::<TwoSteps>("run-1", ()).await?;
    assert_eq!(run.result().await?, "plan: answered");

    let spans = finished.get_finished_spans()?;
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let runs = named(&spans, "workflow two_steps");
    assert_eq!(runs.len(), 1);
    let run = run_span(&spans, "run-1", 0);
    assert_eq!(string(run, "workflow.name").as_deref(), Some("two_steps"));
    assert_eq!(string(run, "workflow.run_id").as_deref(), Some("run-1"));
    assert_eq!(int(run, "workflow.execution"), Some(0));
    assert_eq!(
        string(run, "workflow.run.status").as_deref(),
        Some("completed")
    );
    assert_eq!(int(run, "workflow.steps.replayed"), Some(0));
    assert_eq!(run.status, Status::Unset);
    assert!(
        run.links.links.is_empty(),
        "a first execution links nowhere"
    );

    let plan = named(&spans, "step plan");
    let call = named(&spans, "step call");
    assert_eq!((plan.len(), call.len()), (1, 2));
    let (plan, failed, retried) = (plan[0], call[0], call[1]);
    for attempt in [plan, failed, retried] {
        assert_child_of(attempt, run);
        assert_eq!(string(attempt, "workflow.run_id").as_deref(), Some("run-1"));
    }

    assert_eq!(string(plan, "workflow.step.name").as_deref(), Some("plan"));
    assert_eq!(int(plan, "workflow.step.seq"), Some(0));
    assert_eq!(int(plan, "workflow.step.attempt"), Some(1));
    assert_eq!(
        string(plan, "workflow.step.idempotency_key").as_deref(),
        Some("run-1/0/plan")
    );
    assert_eq!(plan.status, Status::Unset);

    assert_eq!(int(failed, "workflow.step.attempt"), Some(1));
    assert_eq!(int(retried, "workflow.step.attempt"), Some(2));
    for attempt in [failed, retried] {
        assert_eq!(int(attempt, "workflow.step.seq"), Some(1));
        assert_eq!(
            string(attempt, "workflow.step.idempotency_key").as_deref(),
            Some("run-1/1/call")
        );
    }
    match &failed.status {
        Status::Error { description } => {
            assert!(description.contains("connection reset"), "{description}")
        }
        other => panic!("the failed attempt has status {other:?}"),
    }
    assert_eq!(string(failed, "error.type").as_deref(), Some("transient"));
    assert_eq!(retried.status, Status::Unset);
    assert_eq!(attribute(retried, "error.type"), None);
    // The default backoff waited about a second (of tokio's paused clock) between attempts.
    let wait = retried.start_time.duration_since(failed.end_time)?;
    assert!(wait >= Duration::from_millis(800), "{wait:?}");

    for attempt in [plan, retried] {
        assert_eq!(
            string(attempt, "gen_ai.request.model").as_deref(),
            Some("m")
        );
        assert_eq!(
            string(attempt, "gen_ai.response.model").as_deref(),
            Some("m")
        );
        assert_eq!(int(attempt, "gen_ai.usage.input_tokens"), Some(10));
        assert_eq!(int(attempt, "gen_ai.usage.output_tokens"), Some(5));
        match attribute(attempt, "workflow.cost_usd") {
            Some(Value::F64(cost)) => assert!((cost - 0.02).abs() < 1e-9, "{cost}"),
            other => panic!("workflow.cost_usd is {other:?}"),
        }
    }
    for key in [
        "gen_ai.request.model",
        "gen_ai.usage.input_tokens",
        "workflow.cost_usd",
    ] {
        assert_eq!(attribute(failed, key), None, "{key} on the failed attempt");
    }
    Ok(())
}

/// Set when `second` may return; until then it never does.
static SECOND_MAY_FINISH: AtomicBool = AtomicBool::new(false);
static SECOND_STARTED: Notify = Notify::const_new();

/// `first`, then `second`, which blocks until [`SECOND_MAY_FINISH`].
struct Interrupted;

impl Workflow for Interrupted {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "interrupted";

    fn run((): ()) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async {
            let first = step("first")
                .run(|| async { Ok::<_, IoError>("first".to_owned()) })
                .await
                .map_err(failure)?;
            let second = step("second")
                .run(|| async {
                    SECOND_STARTED.notify_one();
                    if !SECOND_MAY_FINISH.load(Ordering::SeqCst) {
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, IoError>("second".to_owned())
                })
                .await
                .map_err(failure)?;
            Ok(format!("{first} {second}"))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_resumed_run_is_a_new_trace_linked_to_the_interrupted_one() -> TestResult {
    let store = Arc::new(MemoryStore::new());
    let finished = InMemorySpanExporter::default();

    // The first process: `first` is journaled, `second` is executing when the engine stops.
    let first_exporter = exporter(&finished);
    let engine = Engine::with_store(Arc::clone(&store));
    first_exporter.attach(&engine);
    engine.start::<Interrupted>("run-2", ()).await?;
    SECOND_STARTED.notified().await;
    engine.shutdown().await;
    drop(engine);
    first_exporter.shutdown()?;

    // The second process, on the same journal.
    SECOND_MAY_FINISH.store(true, Ordering::SeqCst);
    let second_exporter = exporter(&finished);
    let engine = Engine::with_store(Arc::clone(&store));
    second_exporter.attach(&engine);
    assert_eq!(engine.register::<Interrupted>().await?, 1);
    let output = engine.handle::<Interrupted>("run-2").result().await?;
    assert_eq!(output, "first second");

    let spans = finished.get_finished_spans()?;
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let interrupted = run_span(&spans, "run-2", 0);
    let resumed = run_span(&spans, "run-2", 1);
    assert_ne!(
        interrupted.span_context.trace_id(),
        resumed.span_context.trace_id(),
        "each execution is a trace of its own"
    );

    // The interrupted execution ended, unannounced, when its exporter shut down.
    assert_eq!(int(interrupted, "workflow.execution"), Some(0));
    assert_eq!(
        string(interrupted, "workflow.run.status").as_deref(),
        Some("suspended")
    );
    assert_eq!(interrupted.status, Status::Unset);

    // The resumed execution links to the run span of the interrupted one.
    let links = &resumed.links.links;
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(
        links[0].span_context.trace_id(),
        interrupted.span_context.trace_id()
    );
    assert_eq!(
        links[0].span_context.span_id(),
        interrupted.span_context.span_id()
    );
    assert_eq!(
        links[0]
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "workflow.link")
            .map(|kv| kv.value.as_str().into_owned())
            .as_deref(),
        Some("previous_execution")
    );
    assert_eq!(int(resumed, "workflow.execution"), Some(1));
    assert_eq!(int(resumed, "workflow.steps.journaled"), Some(1));
    assert_eq!(int(resumed, "workflow.steps.replayed"), Some(1));
    assert_eq!(
        string(resumed, "workflow.run.status").as_deref(),
        Some("completed")
    );

    // `first` ran once, in the first execution; the journal handed it to the second, which
    // made no span for it. `second` has a span only where it finished.
    let first = named(&spans, "step first");
    let second = named(&spans, "step second");
    assert_eq!((first.len(), second.len()), (1, 1));
    assert_child_of(first[0], interrupted);
    assert_child_of(second[0], resumed);
    assert_eq!(
        string(second[0], "workflow.step.idempotency_key").as_deref(),
        Some("run-2/1/second")
    );
    Ok(())
}

/// `before`, an hour's durable sleep (out of memory), then `after`.
struct Napper;

impl Workflow for Napper {
    type Input = ();
    type Output = ();
    const NAME: &'static str = "napper";

    fn run((): ()) -> BoxFuture<'static, Result<(), WorkflowFailure>> {
        Box::pin(async {
            step("before")
                .run(|| async { Ok::<_, IoError>(()) })
                .await
                .map_err(failure)?;
            durable::sleep(Duration::from_secs(3600)).await;
            step("after")
                .run(|| async { Ok::<_, IoError>(()) })
                .await
                .map_err(failure)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_that_waits_out_of_memory_ends_its_span_when_it_leaves_memory() -> TestResult {
    let finished = InMemorySpanExporter::default();
    let exporter = exporter(&finished);
    let engine = Engine::in_memory();
    exporter.attach(&engine);

    engine.start::<Napper>("run-3", ()).await?.result().await?;

    let spans = finished.get_finished_spans()?;
    let asleep = run_span(&spans, "run-3", 0);
    let awake = run_span(&spans, "run-3", 1);
    assert_eq!(
        string(asleep, "workflow.run.status").as_deref(),
        Some("waiting")
    );
    assert_eq!(
        string(awake, "workflow.run.status").as_deref(),
        Some("completed")
    );
    // The first execution ended when it left memory, not when the run came back an hour later.
    let away = awake.start_time.duration_since(asleep.end_time)?;
    assert!(away >= Duration::from_secs(3590), "{away:?}");
    assert_eq!(
        awake.links.links[0].span_context.span_id(),
        asleep.span_context.span_id()
    );
    // `before` came from the journal the second time; the timer's due time did too, but its
    // firing is journaled when the run comes back (an outcome of its own, in its turn).
    assert_eq!(int(awake, "workflow.steps.replayed"), Some(1));
    assert_child_of(named(&spans, "step before")[0], asleep);
    assert_child_of(named(&spans, "step after")[0], awake);
    assert_eq!(named(&spans, "step before").len(), 1);
    Ok(())
}
