//! Steps: the closure-based API beneath `#[step]`, and the context a step body can read.
//!
//! ```
//! # async fn fetch(url: &str) -> Result<String, std::io::Error> { Ok(url.to_owned()) }
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::time::Duration;
//! use workflow_runtime::step;
//!
//! let url = String::from("https://example.com");
//! // Outside an engine the step simply runs, with its retries and timeout; inside a workflow
//! // run it is journaled and replayed.
//! let page = step("fetch")
//!     .retries(2)
//!     .timeout(Duration::from_secs(10))
//!     .run(|| fetch(&url))
//!     .await;
//! assert_eq!(page.unwrap(), "https://example.com");
//! # }
//! ```

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tracing::Instrument;

use crate::budget::Usage;
use crate::context::{Abort, RunContext, current_run};
use crate::error::{Error, StepError, StepErrorKind};
use crate::event::Event;
use crate::journal::{self, Replay, StepRecord, StepStatus};
use crate::retry::{Backoff, RetryPolicy};
use crate::store::Write;

tokio::task_local! {
    static CURRENT_STEP: StepContext;
}

/// Starts building a step named `name`. The name is journaled with the step's outcome and
/// checked on replay, so keep it stable.
pub fn step(name: impl Into<String>) -> Step {
    Step {
        name: name.into(),
        policy: RetryPolicy::DEFAULT,
    }
}

/// A step being configured; [`run`](Step::run) executes it.
#[derive(Debug, Clone)]
#[must_use = "a step does nothing until `.run(...)` is called and awaited"]
pub struct Step {
    name: String,
    policy: RetryPolicy,
}

impl Step {
    /// Retries after the first attempt (default 3).
    pub fn retries(mut self, retries: u32) -> Self {
        self.policy.retries = retries;
        self
    }

    /// The limit of each attempt (default none). An attempt past it is dropped and counts as a
    /// failed attempt of kind [`StepErrorKind::Timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.policy.timeout = Some(timeout);
        self
    }

    /// The waits between attempts (default [`Backoff::DEFAULT`]).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.policy.backoff = backoff;
        self
    }

    /// Runs the step: `attempt` builds the future of one attempt and is called again for each
    /// retry, so it must not move what it captures (clone inside it, or borrow).
    ///
    /// Inside a workflow run, the step's sequence number is allocated now, when `run` is
    /// called. If the journal holds this step's outcome, it is returned without calling
    /// `attempt`. Otherwise the attempts run, and the final outcome is committed durably before
    /// this future resolves; the value returned is decoded from the journaled bytes, exactly as
    /// a replay will return it.
    ///
    /// Outside a workflow run, the attempts run with their retries and timeouts and nothing is
    /// journaled.
    pub fn run<F, Fut, T, E>(self, attempt: F) -> impl Future<Output = Result<T, StepError>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: Serialize + DeserializeOwned,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let run = current_run().map(|run| {
            let seq = run.allocate_seq();
            (run, seq)
        });
        async move {
            match run {
                Some((run, seq)) => self.run_journaled(&run, seq, attempt).await,
                None => {
                    let key = direct_key(&self.name);
                    let target = Target {
                        run: None,
                        seq: 0,
                        key,
                    };
                    let (outcome, _, _) = self.attempts(&target, attempt).await;
                    outcome.map_err(|failure| failure.error)
                }
            }
        }
    }

    async fn run_journaled<F, Fut, T, E>(
        self,
        run: &Arc<RunContext>,
        seq: u64,
        attempt: F,
    ) -> Result<T, StepError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: Serialize + DeserializeOwned,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let name = self.name.clone();
        match run.claim(seq, &name) {
            Err(mismatch) => {
                tracing::error!(run_id = %run.run_id, seq, journaled = %mismatch.journaled, current = %mismatch.current, "non-determinism: run parked");
                return park(run, Abort::Park(mismatch.to_string())).await;
            }
            Ok(Replay::Journaled(record)) => {
                tracing::debug!(run_id = %run.run_id, seq, step = %name, "step replayed");
                run.emit(Event::StepReplayed {
                    run_id: run.run_id.clone(),
                    seq,
                    name: name.clone(),
                });
                return match hand_back(run, &record) {
                    Ok(outcome) => outcome,
                    Err(error) => park(run, Abort::Park(error.to_string())).await,
                };
            }
            Ok(Replay::Execute) => {}
        }
        if let Err(message) = run.check_budget() {
            tracing::warn!(run_id = %run.run_id, seq, step = %name, %message, "budget exceeded");
            return park(run, Abort::Budget(message)).await;
        }
        if run.verify_only {
            let reason = format!(
                "replaying run {:?}: the workflow calls step #{seq} ({name}), which its journal does not hold",
                run.run_id
            );
            return park(run, Abort::Park(reason)).await;
        }

        let target = Target {
            run: Some(Arc::clone(run)),
            seq,
            key: journal::idempotency_key(&run.run_id, seq, &name),
        };
        let started_at_us = journal::now_us();
        let (outcome, attempts, usage) = self.attempts(&target, attempt).await;
        let mut record = StepRecord {
            seq,
            name: name.clone(),
            status: StepStatus::Completed,
            attempts,
            started_at_us,
            finished_at_us: journal::now_us(),
            output: None,
            error: None,
            usage,
        };
        let mut panicked = None;
        match outcome {
            Ok(value) => match serde_json::value::to_raw_value(&value) {
                Ok(raw) => record.output = Some(raw),
                Err(e) => {
                    record.status = StepStatus::Failed;
                    record.error = Some(StepError {
                        step: name.clone(),
                        kind: StepErrorKind::Failed,
                        message: format!(
                            "its value of type `{}` cannot be encoded as JSON: {e}",
                            std::any::type_name::<T>()
                        ),
                        attempts,
                    });
                }
            },
            Err(failure) => {
                if failure.error.kind == StepErrorKind::Panicked {
                    panicked = Some(failure.error.to_string());
                }
                record.status = StepStatus::Failed;
                record.error = Some(failure.error);
            }
        }

        let write = Write::Step {
            run_id: run.run_id.clone(),
            step: record.clone(),
        };
        if let Err(e) = run.store.commit(vec![write]).await {
            tracing::error!(run_id = %run.run_id, seq, step = %name, error = %e, "journal write failed: run parked");
            return park(
                run,
                Abort::Park(format!(
                    "the outcome of step #{seq} ({name}) could not be journaled: {e}"
                )),
            )
            .await;
        }
        run.charge(&record.usage);
        match record.status {
            StepStatus::Completed => {
                tracing::info!(run_id = %run.run_id, seq, step = %name, attempts, "step completed")
            }
            _ => tracing::warn!(run_id = %run.run_id, seq, step = %name, attempts, "step failed"),
        }
        run.emit(Event::StepFinished {
            run_id: run.run_id.clone(),
            seq,
            name: name.clone(),
            attempts,
            latency: Duration::from_micros(
                record.finished_at_us.saturating_sub(record.started_at_us),
            ),
            usage: record.usage.clone(),
            error: record.error.clone(),
        });
        if let Some(message) = panicked {
            return park(run, Abort::Fail(message)).await;
        }
        match hand_back(run, &record) {
            Ok(outcome) => outcome,
            Err(error) => park(run, Abort::Park(error.to_string())).await,
        }
    }

    /// Runs up to `retries + 1` attempts; returns the outcome, the number of attempts made and
    /// the usage all of them reported.
    async fn attempts<F, Fut, T, E>(
        &self,
        target: &Target,
        mut attempt: F,
    ) -> (Result<T, Failure>, u32, Usage)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let usage = Arc::new(Mutex::new(Usage::default()));
        let mut previous_error: Option<StepError> = None;
        let mut number = 1;
        let outcome = loop {
            let context = StepContext {
                inner: Arc::new(StepInner {
                    run_id: target.run.as_ref().map(|run| run.run_id.clone()),
                    seq: target.seq,
                    name: self.name.clone(),
                    key: target.key.clone(),
                    attempt: number,
                    previous_error: previous_error.clone(),
                    usage: Arc::clone(&usage),
                }),
            };
            let span =
                tracing::info_span!("step", name = %self.name, seq = target.seq, attempt = number);
            let guarded = CURRENT_STEP
                .scope(context, CatchUnwind(attempt()))
                .instrument(span);
            let result = match self.policy.timeout {
                Some(limit) => match tokio::time::timeout(limit, guarded).await {
                    Ok(result) => result,
                    Err(_) => Err(AttemptError::Timeout(limit)),
                },
                None => guarded.await,
            };
            let (kind, message) = match result {
                Ok(Ok(value)) => break Ok(value),
                Ok(Err(error)) => (StepErrorKind::Failed, error_chain(error.into())),
                Err(AttemptError::Panic(message)) => (StepErrorKind::Panicked, message),
                Err(AttemptError::Timeout(limit)) => (
                    StepErrorKind::Timeout,
                    format!("attempt timed out after {limit:?}"),
                ),
            };
            let error = StepError {
                step: self.name.clone(),
                kind,
                message,
                attempts: number,
            };
            // A panic is a bug, not a transient condition: retrying would repeat it.
            if kind == StepErrorKind::Panicked || number > self.policy.retries {
                break Err(Failure { error });
            }
            let delay = self.policy.backoff.delay_after(number);
            tracing::warn!(step = %self.name, seq = target.seq, attempt = number, error = %error.message, delay_ms = delay.as_millis() as u64, "step attempt failed; retrying");
            if let Some(run) = &target.run {
                run.emit(Event::StepRetrying {
                    run_id: run.run_id.clone(),
                    seq: target.seq,
                    name: self.name.clone(),
                    attempt: number,
                    error: error.clone(),
                    delay,
                });
            }
            previous_error = Some(error);
            tokio::time::sleep(delay).await;
            number += 1;
        };
        let usage = usage.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (outcome, number, usage)
    }
}

struct Target {
    run: Option<Arc<RunContext>>,
    seq: u64,
    key: String,
}

struct Failure {
    error: StepError,
}

/// Decodes a journaled step outcome into what the body receives.
fn hand_back<T: DeserializeOwned>(
    run: &RunContext,
    record: &StepRecord,
) -> Result<Result<T, StepError>, Error> {
    match (&record.status, &record.output, &record.error) {
        (StepStatus::Completed, Some(raw), _) => decode_value(run, record, raw).map(Ok),
        (_, _, Some(error)) => Ok(Err(error.clone())),
        _ => Err(Error::Decode {
            run_id: run.run_id.clone(),
            what: format!("step #{} ({})", record.seq, record.name),
            type_name: std::any::type_name::<T>(),
            detail: "the record holds neither a value nor an error".into(),
        }),
    }
}

fn decode_value<T: DeserializeOwned>(
    run: &RunContext,
    record: &StepRecord,
    raw: &RawValue,
) -> Result<T, Error> {
    serde_json::from_str(raw.get()).map_err(|e| Error::Decode {
        run_id: run.run_id.clone(),
        what: format!("value of step #{} ({})", record.seq, record.name),
        type_name: std::any::type_name::<T>(),
        detail: e.to_string(),
    })
}

/// Stops the run and never resolves: the driver drops the body, so nothing after the step runs.
async fn park<T>(run: &RunContext, reason: Abort) -> T {
    run.abort(reason);
    std::future::pending().await
}

fn error_chain(error: Box<dyn std::error::Error + Send + Sync>) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

fn direct_key(name: &str) -> String {
    static DIRECT_CALLS: AtomicU64 = AtomicU64::new(0);
    let n = DIRECT_CALLS.fetch_add(1, Ordering::Relaxed);
    format!("direct-{}-{n}/{name}", std::process::id())
}

enum AttemptError {
    Panic(String),
    Timeout(Duration),
}

/// Polls a future, turning a panic inside it into an error.
struct CatchUnwind<F>(F);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, AttemptError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of the only field; it is never moved out.
        let inner = unsafe { self.map_unchecked_mut(|s| &mut s.0) };
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(AttemptError::Panic(panic_message(payload)))),
        }
    }
}

pub(crate) fn catch_unwind_future<F: Future>(
    future: F,
) -> impl Future<Output = Result<F::Output, String>> {
    let guarded = CatchUnwind(future);
    async move {
        guarded.await.map_err(|e| match e {
            AttemptError::Panic(message) => message,
            AttemptError::Timeout(limit) => format!("timed out after {limit:?}"),
        })
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_owned()
    }
}

/// What a step body can read about the step it runs in: its idempotency key, its attempt
/// number and the previous attempt's error; and where it reports what it spent.
///
/// ```
/// use workflow_runtime::{StepContext, Usage, step};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let answer = step("ask")
///     .run(|| async {
///         let ctx = StepContext::current().expect("inside a step");
///         // Send ctx.idempotency_key() with the request so that a retry is not billed twice.
///         ctx.report_usage(Usage::tokens("model-x", 120, 40).with_cost_usd(0.001));
///         Ok::<_, std::io::Error>(format!("attempt {}", ctx.attempt()))
///     })
///     .await;
/// assert_eq!(answer.unwrap(), "attempt 1");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct StepContext {
    inner: Arc<StepInner>,
}

#[derive(Debug)]
struct StepInner {
    run_id: Option<String>,
    seq: u64,
    name: String,
    key: String,
    attempt: u32,
    previous_error: Option<StepError>,
    usage: Arc<Mutex<Usage>>,
}

impl StepContext {
    /// The context of the step whose body is running, if any.
    pub fn current() -> Option<StepContext> {
        CURRENT_STEP.try_with(Clone::clone).ok()
    }

    /// The step's idempotency key: `run_id/seq/name`, the same in every attempt and in every
    /// process. Pass it to the services the step calls so that a repeated call has no repeated
    /// effect. Outside an engine it is unique per call.
    pub fn idempotency_key(&self) -> &str {
        &self.inner.key
    }

    /// The attempt number, from 1. It restarts at 1 in a new process.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// The error of the previous attempt, for retries that feed it back (to a model, say).
    pub fn previous_error(&self) -> Option<&StepError> {
        self.inner.previous_error.as_ref()
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The step's sequence number in its run (0 outside an engine).
    pub fn seq(&self) -> u64 {
        self.inner.seq
    }

    /// The run the step belongs to; `None` outside an engine.
    pub fn run_id(&self) -> Option<&str> {
        self.inner.run_id.as_deref()
    }

    /// Adds to what the step spent. Every attempt's usage counts, and the total is journaled
    /// with the step and charged to the run's budget.
    pub fn report_usage(&self, usage: Usage) {
        self.inner
            .usage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(&usage);
    }
}
