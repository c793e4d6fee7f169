//! OpenTelemetry traces of runs and step attempts (feature `otel`).
//!
//! An [`Exporter`] is an [`Engine::on_event`] listener: it turns the [`Event`]s of the engines
//! it is attached to into spans. The runtime itself is not instrumented, so an engine without an
//! exporter pays nothing. Each execution of a run (its start, then each resume) becomes a trace
//! of its own: a run span, and a child span for every attempt of every step the execution ran.
//!
//! ```
//! use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
//! use workflow_runtime::otel::Exporter;
//! use workflow_runtime::{BoxFuture, Engine, StepContext, Usage, Workflow, WorkflowFailure, step};
//!
//! /// One model call, written by hand (`#[workflow]` generates the same).
//! struct Summarize;
//!
//! impl Workflow for Summarize {
//!     type Input = (String,);
//!     type Output = String;
//!     const NAME: &'static str = "summarize";
//!
//!     fn run((text,): (String,)) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
//!         Box::pin(async move {
//!             step("llm")
//!                 .run(|| async {
//!                     let ctx = StepContext::current().expect("inside a step");
//!                     ctx.report_usage(Usage::tokens("model-x", 1200, 80));
//!                     Ok::<_, std::io::Error>(format!("a summary of {} bytes", text.len()))
//!                 })
//!                 .await
//!                 .map_err(|e| WorkflowFailure::new(e.to_string()))
//!         })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // In production, `with_batch_exporter(otlp)`: see "Exporting over OTLP" below.
//! let finished = InMemorySpanExporter::default();
//! let exporter = Exporter::new(SdkTracerProvider::builder().with_simple_exporter(finished.clone()));
//! let engine = Engine::in_memory();
//! exporter.attach(&engine);
//!
//! engine.start::<Summarize>("doc-1", ("text".to_owned(),)).await?.result().await?;
//!
//! let spans = finished.get_finished_spans()?;
//! let names: Vec<&str> = spans.iter().map(|span| span.name.as_ref()).collect();
//! assert_eq!(names, ["step llm", "workflow summarize"]);
//! let (attempt, run) = (&spans[0], &spans[1]);
//! assert_eq!(attempt.parent_span_id, run.span_context.span_id());
//! assert!(attempt.attributes.iter().any(|kv| kv.key.as_str() == "gen_ai.usage.input_tokens"
//!     && kv.value == opentelemetry::Value::I64(1200)));
//! # Ok(()) }
//! ```
//!
//! # Spans
//!
//! **Run span** `workflow {name}`, the root of its execution's trace. It opens at
//! [`Event::RunStarted`] or [`Event::RunResumed`] and closes at [`Event::RunFinished`] (see
//! below for executions that end without one). Attributes:
//!
//! - `workflow.name`, `workflow.run_id`, and `workflow.execution`: 0 for the first execution,
//!   `n` for the `n`-th resume;
//! - `workflow.steps.journaled`, on resumes: how many finished steps the journal held;
//! - when it ends, `workflow.steps.replayed`: how many steps (and durable values: timers,
//!   `now`, `uuid`) came from the journal instead of running; and `workflow.run.status`: the
//!   [`RunStatus`] the execution ended with (`completed`, `failed`, `parked`,
//!   `budget_exceeded`, `cancelled`), or `suspended` (below). A failed, parked or
//!   budget-stopped run has status error, with the run's message as description;
//! - an event `workflow.alert` per [`Event::Alert`] about the run, with `workflow.alert.kind`,
//!   `workflow.alert.message` and, if any, `workflow.step.name`.
//!
//! **Attempt span** `step {name}`, a child of the run span, for every attempt of a step that
//! ran in this execution, from the attempt's start to its end as the step's attempt log has
//! them. A replayed step makes none: it is only counted on the run span. Attributes:
//!
//! - `workflow.run_id`, `workflow.step.name`, `workflow.step.seq`, `workflow.step.attempt`
//!   (from 1) and `workflow.step.idempotency_key` (`{run_id}/{seq}/{name}`, as
//!   [`idempotency_key`] makes it);
//! - a failed attempt has status error, with the step error's message as description, and
//!   `error.type`: the error's kind in snake case (`transient`, `timeout`, ...);
//! - the last attempt of a step that reported usage
//!   ([`StepContext::report_usage`](crate::StepContext::report_usage)) has the OpenTelemetry
//!   GenAI attributes `gen_ai.request.model` and `gen_ai.response.model` (the model reported),
//!   `gen_ai.usage.input_tokens` and `gen_ai.usage.output_tokens`, and `workflow.cost_usd`
//!   when the usage has a cost. The runtime sums usage per step, so these are the totals of
//!   all the step's attempts, failed ones included.
//!
//! Times are the engine's clock: the wall clock, advanced by tokio's clock (so a test under
//! `tokio::time::pause` gets the durations of its virtual waits). Attempt spans never start
//! before their run span, nor end before they start.
//!
//! # One trace per execution, linked
//!
//! A run can last days, sleeping and waiting for events out of memory: one trace per run would
//! stay open for as long, and grow without end. So each execution is a trace of its own, and
//! each resume links to the one before. The links need no storage: the trace id and the run
//! span's id of execution `n` of a run are a hash of the run id and `n`
//! ([`execution_span_context`]), so execution `n` knows the ids of execution `n - 1` without
//! having seen it, in another process or days earlier. The run span of execution `n >= 1` has
//! a link to the run span of execution `n - 1` (link attribute `workflow.link` =
//! `previous_execution`) and, from `n = 2`, one to execution 0 (`first_execution`). The hash
//! never changes between versions of this crate; a test pins its values.
//!
//! The SDK takes span ids only from its tracer provider's id generator, so [`Exporter::new`]
//! builds the provider itself, with a generator of its own: it gives run spans their derived
//! ids and every other span (yours too, if the provider is shared) random ones. A generator set
//! on the builder passed in is replaced.
//!
//! # Executions that end without `RunFinished`
//!
//! A run that leaves memory to wait for a timer or an event ends its run span at
//! [`Event::RunWaiting`], with `workflow.run.status` = `waiting`. A run whose engine is shut
//! down stops executing without an event: its run span ends, with `workflow.run.status` =
//! `suspended`, at the execution's last event (its last step's end), as soon as one of these
//! happens:
//!
//! - the next execution of the run starts in an engine the exporter is attached to (a waiting
//!   run coming back);
//! - [`Exporter::shutdown`] is called;
//! - the exporter and every engine it is attached to are dropped.
//!
//! Until then, the span of a waiting run stays open in memory; if the process dies meanwhile,
//! that execution's run span is lost (its attempt spans were exported when they ended).
//!
//! # Exporting over OTLP
//!
//! This crate brings no OTLP client, so that the application picks its transport. With
//! `opentelemetry-otlp` 0.33 (its default features: HTTP with protobuf over a blocking reqwest
//! client) and a collector listening on the default HTTP port:
//!
//! ```ignore
//! use opentelemetry_otlp::{SpanExporter, WithExportConfig};
//! use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
//!
//! let otlp = SpanExporter::builder()
//!     .with_http()
//!     .with_endpoint("http://localhost:4318/v1/traces")
//!     .build()?;
//! let exporter = workflow_runtime::otel::Exporter::new(
//!     SdkTracerProvider::builder()
//!         .with_resource(Resource::builder().with_service_name("research-agent").build())
//!         // The batch processor exports from a thread of its own: never block the runtime.
//!         .with_batch_exporter(otlp),
//! );
//! exporter.attach(&engine);
//! // Share the provider with the rest of the application, if it traces too:
//! opentelemetry::global::set_tracer_provider(exporter.provider().clone());
//! // ...
//! engine.shutdown().await;
//! exporter.shutdown()?; // ends the open run spans, and flushes
//! ```
//!
//! # Limits
//!
//! - [`Engine::replay`] (checking new code against a finished run) emits
//!   [`Event::RunResumed`] with the number of the run's last execution, replays, and emits no
//!   [`Event::RunFinished`]: an exporter attached to the engine then opens a run span with the
//!   ids of that execution, which ends as `suspended`. Do not attach an exporter to an engine
//!   used for such checks.
//! - An execution that journals no step is not counted as a resume, so the next execution gets
//!   the same number, and the same ids: its spans join the trace of the one before, whose run
//!   span id they repeat. Only executions that committed nothing do this (one interrupted
//!   before its first step finished, or a resumed one before its next).
//! - Usage is known per step, not per attempt (above).
//!
//! [`Engine::replay`]: crate::Engine::replay
//! [`RunStatus`]: crate::RunStatus

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    Link, Span as _, SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _,
    TraceFlags, TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, SdkTracer, SdkTracerProvider, TracerProviderBuilder,
};

use crate::budget::Usage;
use crate::engine::Engine;
use crate::error::StepError;
use crate::event::Event;
use crate::journal::{self, RunStatus, idempotency_key};

/// The instrumentation scope of the spans.
const SCOPE: &str = "workflow-runtime";

/// Turns the events of engines into OpenTelemetry spans: see the [module docs](self).
///
/// Cloning an exporter is cheap; the clones share everything.
#[derive(Clone)]
pub struct Exporter {
    provider: SdkTracerProvider,
    spans: Arc<Spans>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("open_executions", &self.spans.lock().len())
            .finish_non_exhaustive()
    }
}

impl Exporter {
    /// An exporter whose spans go where `builder`'s processors send them (an OTLP exporter
    /// behind a batch processor, say). It builds the tracer provider, replacing the builder's
    /// id generator (see [One trace per execution](self#one-trace-per-execution-linked)).
    pub fn new(builder: TracerProviderBuilder) -> Exporter {
        let provider = builder.with_id_generator(ExecutionIds::default()).build();
        let scope = InstrumentationScope::builder(SCOPE)
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let tracer = provider.tracer_with_scope(scope);
        Exporter {
            provider,
            spans: Arc::new(Spans {
                tracer,
                open: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Traces the runs `engine` executes from now on. Attach an exporter once per engine; one
    /// exporter may serve several engines.
    pub fn attach(&self, engine: &Engine) {
        let spans = Arc::clone(&self.spans);
        engine.on_event(move |event| spans.observe(event));
    }

    /// The tracer provider the exporter built, to share with the rest of the application or to
    /// flush.
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// Ends the run spans of the executions still open as `suspended`, then shuts the provider
    /// down, which exports what its processors hold. Call it after
    /// [`Engine::shutdown`](crate::Engine::shutdown), before the process exits. Spans of later
    /// events are dropped.
    pub fn shutdown(&self) -> OTelSdkResult {
        self.spans.suspend_all();
        self.provider.shutdown()
    }
}

/// The span context of the run span of execution `execution` of run `run_id`: 0 for the first
/// execution ([`Event::RunStarted`]), `n` for the `n`-th resume ([`Event::RunResumed`] with
/// `resume: n`). Its trace id is the trace id of that execution. Marked sampled and remote, as a
/// link to it wants.
///
/// The same in every process and every version of this crate, and computable elsewhere: `h` is
/// the 128-bit FNV-1a hash of the run id's UTF-8 bytes, a `0xff` byte (never in UTF-8, so that
/// no other run id and number give the same bytes) and the number as 8 little-endian bytes;
/// `hi` and `lo` are its high and low 64 bits, each passed through MurmurHash3's `fmix64`. The
/// trace id is `hi` then `lo`; the span id is `fmix64(hi ^ lo.rotate_left(32))`. (A zero, which
/// OpenTelemetry reserves for "invalid", would become 1.)
pub fn execution_span_context(run_id: &str, execution: usize) -> SpanContext {
    let (trace_id, span_id) = execution_ids(run_id, execution as u64);
    SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    )
}

/// The ids of an execution's run span, as [`execution_span_context`] states them. The mixing
/// makes neighbouring run ids and numbers differ in every bit: samplers read the trace id's
/// low half.
fn execution_ids(run_id: &str, execution: u64) -> (TraceId, SpanId) {
    const FNV_OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const FNV_PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut hash = FNV_OFFSET;
    for byte in run_id.bytes().chain([0xff]).chain(execution.to_le_bytes()) {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    let high = fmix64((hash >> 64) as u64);
    let low = fmix64(hash as u64);
    let trace_id = (u128::from(high) << 64) | u128::from(low);
    let span_id = fmix64(high ^ low.rotate_left(32));
    (TraceId::from(trace_id.max(1)), SpanId::from(span_id.max(1)))
}

/// MurmurHash3's 64-bit finalizer.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

thread_local! {
    /// The ids the next span built on this thread takes: set while a run span is built.
    static NEXT_TRACE_ID: Cell<Option<TraceId>> = const { Cell::new(None) };
    static NEXT_SPAN_ID: Cell<Option<SpanId>> = const { Cell::new(None) };
}

/// Sets the ids of the next span built on this thread, until dropped.
struct NextIds;

impl NextIds {
    fn set(context: &SpanContext) -> NextIds {
        NEXT_TRACE_ID.set(Some(context.trace_id()));
        NEXT_SPAN_ID.set(Some(context.span_id()));
        NextIds
    }
}

impl Drop for NextIds {
    fn drop(&mut self) {
        NEXT_TRACE_ID.set(None);
        NEXT_SPAN_ID.set(None);
    }
}

/// The provider's id generator: the ids [`NextIds`] set, random ones otherwise.
#[derive(Debug, Default)]
struct ExecutionIds(RandomIdGenerator);

impl IdGenerator for ExecutionIds {
    fn new_trace_id(&self) -> TraceId {
        let next = NEXT_TRACE_ID.try_with(Cell::take).ok().flatten();
        next.unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        let next = NEXT_SPAN_ID.try_with(Cell::take).ok().flatten();
        next.unwrap_or_else(|| self.0.new_span_id())
    }
}

/// What the listeners of an exporter share: the tracer and the open executions.
struct Spans {
    tracer: SdkTracer,
    /// The executing runs, by run id: one execution per run at a time.
    open: Mutex<HashMap<String, Execution>>,
}

/// An execution whose run span is open.
struct Execution {
    /// Holds the run span; the parent of the attempt spans.
    cx: Context,
    /// When the run span started, in microseconds since the Unix epoch.
    started_us: u64,
    /// When the execution was last heard of: where its run span ends if it ends unannounced.
    last_seen_us: u64,
    /// Steps handed back from the journal.
    replayed: u64,
}

impl Execution {
    fn end(self, status: &'static str, error: Option<String>, at_us: u64) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("workflow.run.status", status));
        span.set_attribute(KeyValue::new("workflow.steps.replayed", int(self.replayed)));
        if let Some(error) = error {
            span.set_status(Status::error(error));
        }
        span.end_with_timestamp(time(at_us.max(self.started_us)));
    }

    /// Ends an execution that stopped without `RunFinished`: it left memory to wait, or its
    /// engine stopped.
    fn suspend(self) {
        let at_us = self.last_seen_us;
        self.end("suspended", None, at_us);
    }
}

impl Spans {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Execution>> {
        // Every critical section is a map operation that cannot leave it half-changed.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn observe(&self, event: &Event) {
        match event {
            Event::RunStarted {
                run_id, workflow, ..
            } => self.open(run_id, workflow, 0, None),
            Event::RunResumed {
                run_id,
                workflow,
                journaled_steps,
                resume,
                ..
            } => self.open(run_id, workflow, *resume, Some(*journaled_steps)),
            Event::StepReplayed { run_id, .. } => {
                if let Some(execution) = self.lock().get_mut(run_id) {
                    execution.replayed += 1;
                }
            }
            Event::StepFinished { .. } => self.step_finished(event),
            Event::Alert {
                kind,
                run_id: Some(run_id),
                step,
                message,
                ..
            } => {
                let Some(cx) = self.lock().get(run_id).map(|e| e.cx.clone()) else {
                    return;
                };
                let mut attributes = vec![
                    KeyValue::new("workflow.alert.kind", kind.as_str()),
                    KeyValue::new("workflow.alert.message", message.clone()),
                ];
                if let Some(step) = step {
                    attributes.push(KeyValue::new("workflow.step.name", step.clone()));
                }
                cx.span().add_event_with_timestamp(
                    "workflow.alert",
                    time(journal::now_us()),
                    attributes,
                );
            }
            Event::RunFinished {
                run_id,
                status,
                message,
                ..
            } => self.finish(run_id, *status, message.as_deref()),
            Event::RunWaiting { run_id, .. } => {
                let execution = self.lock().remove(run_id);
                if let Some(execution) = execution {
                    execution.end("waiting", None, journal::now_us());
                }
            }
            _ => {}
        }
    }

    /// Opens the run span of execution `execution` of `run_id`.
    fn open(&self, run_id: &str, workflow: &str, execution: usize, journaled: Option<usize>) {
        let now_us = journal::now_us();
        // A run executes once at a time: an execution still open left memory to wait (or its
        // engine stopped), and this is the next one.
        let previous = self.lock().remove(run_id);
        if let Some(previous) = previous {
            previous.suspend();
        }
        let mut attributes = vec![
            KeyValue::new("workflow.name", workflow.to_owned()),
            KeyValue::new("workflow.run_id", run_id.to_owned()),
            KeyValue::new("workflow.execution", int(execution)),
        ];
        if let Some(journaled) = journaled {
            attributes.push(KeyValue::new("workflow.steps.journaled", int(journaled)));
        }
        let mut links = Vec::new();
        if execution > 0 {
            links.push(Link::new(
                execution_span_context(run_id, execution - 1),
                vec![KeyValue::new("workflow.link", "previous_execution")],
                0,
            ));
        }
        if execution > 1 {
            links.push(Link::new(
                execution_span_context(run_id, 0),
                vec![KeyValue::new("workflow.link", "first_execution")],
                0,
            ));
        }
        let builder = SpanBuilder::from_name(format!("workflow {workflow}"))
            .with_kind(SpanKind::Internal)
            .with_start_time(time(now_us))
            .with_attributes(attributes)
            .with_links(links);
        let span = {
            let _ids = NextIds::set(&execution_span_context(run_id, execution));
            // A root: the execution's trace starts here, whatever context the caller is in.
            self.tracer.build_with_context(builder, &Context::new())
        };
        let execution = Execution {
            cx: Context::new().with_span(span),
            started_us: now_us,
            last_seen_us: now_us,
            replayed: 0,
        };
        let replaced = self.lock().insert(run_id.to_owned(), execution);
        if let Some(replaced) = replaced {
            replaced.suspend();
        }
    }

    /// Exports a span per attempt of the step that finished.
    fn step_finished(&self, event: &Event) {
        let Event::StepFinished {
            run_id,
            seq,
            name,
            attempts,
            latency,
            usage,
            error,
            attempt_log,
            started_at_us,
            ..
        } = event
        else {
            return;
        };
        let Some((cx, run_started_us)) = self
            .lock()
            .get(run_id)
            .map(|e| (e.cx.clone(), e.started_us))
        else {
            // Not traced: the exporter was attached during the execution.
            return;
        };
        // (attempt, started, finished, error): the attempt log holds every attempt when there
        // were several; otherwise the step's own times are its single attempt's.
        let tried: Vec<(u32, u64, u64, Option<&StepError>)> = if attempt_log.is_empty() {
            let finished_us = started_at_us.saturating_add(int_u64(latency.as_micros()));
            vec![(
                (*attempts).max(1),
                *started_at_us,
                finished_us,
                error.as_ref(),
            )]
        } else {
            attempt_log
                .iter()
                .map(|a| {
                    (
                        a.attempt,
                        a.started_at_us,
                        a.finished_at_us,
                        a.error.as_ref(),
                    )
                })
                .collect()
        };
        let key = idempotency_key(run_id, *seq, name);
        let last = tried.len() - 1;
        let mut last_end_us = run_started_us;
        for (index, (attempt, started_us, finished_us, error)) in tried.into_iter().enumerate() {
            let started_us = started_us.max(run_started_us);
            let finished_us = finished_us.max(started_us);
            let mut attributes = vec![
                KeyValue::new("workflow.run_id", run_id.clone()),
                KeyValue::new("workflow.step.name", name.clone()),
                KeyValue::new("workflow.step.seq", int(*seq)),
                KeyValue::new("workflow.step.attempt", i64::from(attempt)),
                KeyValue::new("workflow.step.idempotency_key", key.clone()),
            ];
            if let Some(error) = error {
                attributes.push(KeyValue::new("error.type", kind_name(error)));
            }
            if index == last {
                usage_attributes(usage, &mut attributes);
            }
            let builder = SpanBuilder::from_name(format!("step {name}"))
                .with_kind(SpanKind::Internal)
                .with_start_time(time(started_us))
                .with_attributes(attributes);
            let mut span = self.tracer.build_with_context(builder, &cx);
            if let Some(error) = error {
                span.set_status(Status::error(error.message.clone()));
            }
            span.end_with_timestamp(time(finished_us));
            last_end_us = last_end_us.max(finished_us);
        }
        if let Some(execution) = self.lock().get_mut(run_id) {
            execution.last_seen_us = execution
                .last_seen_us
                .max(last_end_us)
                .max(journal::now_us());
        }
    }

    /// Ends the run span of a run that finished executing.
    fn finish(&self, run_id: &str, status: RunStatus, message: Option<&str>) {
        let Some(execution) = self.lock().remove(run_id) else {
            // Not executing here: a queued run was cancelled, say.
            return;
        };
        let error = matches!(
            status,
            RunStatus::Failed | RunStatus::Parked | RunStatus::BudgetExceeded
        )
        .then(|| message.unwrap_or(status.as_str()).to_owned());
        let at_us = journal::now_us().max(execution.last_seen_us);
        execution.end(status.as_str(), error, at_us);
    }

    fn suspend_all(&self) {
        let open: Vec<Execution> = self.lock().drain().map(|(_, e)| e).collect();
        open.into_iter().for_each(Execution::suspend);
    }
}

impl Drop for Spans {
    fn drop(&mut self) {
        self.suspend_all();
    }
}

/// The GenAI attributes of a step's usage, and its cost.
fn usage_attributes(usage: &Usage, attributes: &mut Vec<KeyValue>) {
    if let Some(model) = &usage.model {
        attributes.push(KeyValue::new("gen_ai.request.model", model.clone()));
        attributes.push(KeyValue::new("gen_ai.response.model", model.clone()));
    }
    if usage.model.is_some() || usage.input_tokens > 0 || usage.output_tokens > 0 {
        attributes.push(KeyValue::new(
            "gen_ai.usage.input_tokens",
            int(usage.input_tokens),
        ));
        attributes.push(KeyValue::new(
            "gen_ai.usage.output_tokens",
            int(usage.output_tokens),
        ));
    }
    if usage.cost_usd != 0.0 {
        attributes.push(KeyValue::new("workflow.cost_usd", usage.cost_usd));
    }
}

/// The error's kind as the journal spells it: `transient`, `timeout`, ...
fn kind_name(error: &StepError) -> String {
    match serde_json::to_value(error.kind) {
        Ok(serde_json::Value::String(name)) => name,
        _ => "unknown".to_owned(),
    }
}

/// A count as an OpenTelemetry integer.
fn int<T: TryInto<i64>>(n: T) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

fn int_u64(n: u128) -> u64 {
    n.try_into().unwrap_or(u64::MAX)
}

/// A time of the engine's clock, in microseconds since the Unix epoch.
fn time(us: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exporter_is_send_sync_static() {
        fn assert_send_sync_static<T: Send + Sync + 'static>() {}
        assert_send_sync_static::<Exporter>();
    }

    /// Golden values: the ids of an execution are how a later process (or a tool) finds the
    /// trace of the one before. Changing the hash breaks the links of every run in flight.
    #[test]
    fn execution_ids_never_change() {
        // Computed apart from this code, from the algorithm as `execution_span_context` states it.
        let golden = [
            (
                "run-1",
                0,
                "3dc0a71a429cc85bba8f8415d94b58c5",
                "eff5bde80de6ff81",
            ),
            (
                "run-1",
                1,
                "699a3c06a6e1eb0ba14e9ef305ee0b48",
                "f5df8da5bc759e73",
            ),
            (
                "",
                0,
                "bdcadcf6707f716e5fd2b0f996018802",
                "379c4bdabdc21e3d",
            ),
            (
                "order/42",
                7,
                "a6453e2de641302182898f68cde104b5",
                "067590e14a9411cd",
            ),
        ];
        for (run_id, execution, trace_id, span_id) in golden {
            let context = execution_span_context(run_id, execution);
            assert_eq!(
                (
                    context.trace_id().to_string(),
                    context.span_id().to_string()
                ),
                (trace_id.to_owned(), span_id.to_owned()),
                "ids of execution {execution} of {run_id:?}"
            );
        }
    }

    #[test]
    fn execution_ids_differ_between_runs_and_executions() {
        let mut seen = std::collections::HashSet::new();
        for run_id in ["a", "b", "a/1", "a\u{0}", "run-1", "run-2", ""] {
            for execution in 0..50 {
                let context = execution_span_context(run_id, execution);
                assert!(context.is_valid());
                assert!(seen.insert(context.trace_id()), "{run_id:?} {execution}");
            }
        }
    }

    #[test]
    fn the_generator_hands_out_set_ids_once_then_random_ones() {
        let ids = ExecutionIds::default();
        let context = execution_span_context("r", 3);
        {
            let _next = NextIds::set(&context);
            assert_eq!(ids.new_span_id(), context.span_id());
            assert_eq!(ids.new_trace_id(), context.trace_id());
            assert_ne!(ids.new_span_id(), context.span_id());
        }
        let _next = NextIds::set(&context);
        drop(_next);
        assert_ne!(ids.new_trace_id(), context.trace_id());
    }
}
