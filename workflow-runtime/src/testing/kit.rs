//! What a test engine adds to the steps of its runs: overrides by step name, a log of the
//! attempts that ran, and a clock that flows at real speed while a step's own body waits on
//! something outside the runtime's timers.
//!
//! The kit is registered on the engine as a resource of a private type. An engine without one
//! pays one failed map lookup per step, and only in a build with feature `testing`: without
//! it, none of this is compiled.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tokio::sync::watch;

use crate::budget::Usage;
use crate::context::RunContext;
use crate::error::StepErrorKind;
use crate::retry::{ErrorClass, StepFailure};
use crate::step::StepContext;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a step's attempts do in a test, instead of (or around) running the step's body:
/// return a value, fail with an error class on chosen attempts, take a while of virtual time,
/// report what they spent. Set on a [`TestEngine`](super::TestEngine) with
/// [`override_step`](super::TestEngine::override_step), by step name.
///
/// ```
/// use std::time::Duration;
/// use workflow_runtime::ErrorClass;
/// use workflow_runtime::testing::StepOverride;
///
/// // The model answers "billing", after a 429 on the first attempt; each attempt takes 2 s.
/// let classify = StepOverride::returning("billing")
///     .failing_on(1, ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(5)) })
///     .taking(Duration::from_secs(2));
/// # drop(classify);
/// ```
#[derive(Clone, Default)]
pub struct StepOverride {
    /// `None`: the step's own body runs.
    value: Option<Result<Box<RawValue>, String>>,
    faults: BTreeMap<u32, ErrorClass>,
    fail_always: Option<ErrorClass>,
    latency: Duration,
    latency_on: BTreeMap<u32, Duration>,
    usage: Option<Usage>,
}

impl fmt::Debug for StepOverride {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepOverride")
            .field(
                "value",
                &self.value.as_ref().map(|v| v.as_ref().map(|raw| raw.get())),
            )
            .field("faults", &self.faults)
            .field("fail_always", &self.fail_always)
            .field("latency", &self.latency)
            .field("latency_on", &self.latency_on)
            .finish_non_exhaustive()
    }
}

impl StepOverride {
    /// Attempts return `value` (decoded into the step's value type) without running the
    /// step's body: a mock.
    pub fn returning(value: impl Serialize) -> StepOverride {
        let value = serde_json::value::to_raw_value(&value)
            .map_err(|e| format!("the override's value cannot be encoded as JSON: {e}"));
        StepOverride {
            value: Some(value),
            ..StepOverride::default()
        }
    }

    /// Attempts run the step's own body, with the faults and latencies set on this override
    /// around it: a fault injected into a real call.
    pub fn running_body() -> StepOverride {
        StepOverride::default()
    }

    /// Attempt `attempt` (from 1, counted in this process, as
    /// [`StepContext::attempt`]) fails with an error of class `class` instead of running. The
    /// step's retry policy decides what comes next, as for a real failure: a
    /// [`ErrorClass::RateLimited`] with a `retry_after` waits that long, and closes the step's
    /// rate-limit bucket for as long.
    pub fn failing_on(mut self, attempt: u32, class: ErrorClass) -> StepOverride {
        self.faults.insert(attempt, class);
        self
    }

    /// Every attempt fails with an error of class `class`.
    pub fn failing_always(mut self, class: ErrorClass) -> StepOverride {
        self.fail_always = Some(class);
        self
    }

    /// Every attempt takes `latency` of virtual time before its outcome (a step's timeout
    /// shorter than that fires).
    pub fn taking(mut self, latency: Duration) -> StepOverride {
        self.latency = latency;
        self
    }

    /// Attempt `attempt` takes `latency` of virtual time instead (a first attempt that hangs
    /// past the step's timeout, say).
    pub fn taking_on(mut self, attempt: u32, latency: Duration) -> StepOverride {
        self.latency_on.insert(attempt, latency);
        self
    }

    /// Every attempt reports `usage` as it starts, as a model call would with
    /// [`StepContext::report_usage`]: what drives a cost or token budget in a test.
    pub fn reporting(mut self, usage: Usage) -> StepOverride {
        self.usage = Some(usage);
        self
    }

    fn fault(&self, attempt: u32) -> Option<ErrorClass> {
        self.faults.get(&attempt).copied().or(self.fail_always)
    }

    fn latency(&self, attempt: u32) -> Duration {
        self.latency_on
            .get(&attempt)
            .copied()
            .unwrap_or(self.latency)
    }
}

/// The error of an attempt that an override failed.
#[derive(Debug)]
struct InjectedFault {
    step: String,
    attempt: u32,
    class: ErrorClass,
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "injected by the test: attempt {} of `{}` fails ({:?})",
            self.attempt, self.step, self.class
        )
    }
}

impl std::error::Error for InjectedFault {}

/// How an attempt ended, as the kit's log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    Ok,
    Failed(StepErrorKind),
    /// Dropped before it ended: its timeout, or its run stopped.
    Dropped,
}

/// One attempt that ran (or was played by an override).
#[derive(Debug, Clone)]
pub(crate) struct AttemptRan {
    pub(crate) run_id: String,
    pub(crate) name: String,
    pub(crate) attempt: u32,
    pub(crate) ended: Ended,
}

impl AttemptRan {
    /// `classify#1 rate_limited`: the step, the attempt, and `ok`, the error kind or `dropped`.
    pub(crate) fn line(&self) -> String {
        let ended = match self.ended {
            Ended::Ok => "ok".to_owned(),
            Ended::Failed(kind) => serde_json::to_value(kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("{kind:?}")),
            Ended::Dropped => "dropped".to_owned(),
        };
        format!("{}#{} {ended}", self.name, self.attempt)
    }
}

/// The test engine's additions to its steps. See the [module docs](self).
pub(crate) struct TestKit {
    overrides: Mutex<BTreeMap<String, StepOverride>>,
    log: Mutex<Vec<AttemptRan>>,
    /// Absent under the crash checker, whose processes keep their own virtual time.
    clock: Option<RealTime>,
}

impl TestKit {
    /// A kit whose clock flows at real speed while a step's body waits on the world.
    pub(crate) fn with_real_time() -> TestKit {
        TestKit {
            overrides: Mutex::default(),
            log: Mutex::default(),
            clock: Some(RealTime::start()),
        }
    }

    /// A kit of overrides only, on a clock that only skips.
    pub(crate) fn virtual_only() -> TestKit {
        TestKit {
            overrides: Mutex::default(),
            log: Mutex::default(),
            clock: None,
        }
    }

    pub(crate) fn set_override(&self, name: String, with: StepOverride) {
        lock(&self.overrides).insert(name, with);
    }

    pub(crate) fn clear_override(&self, name: &str) {
        lock(&self.overrides).remove(name);
    }

    /// The attempts of run `run_id` that ran, in the order they started.
    pub(crate) fn attempts(&self, run_id: &str) -> Vec<AttemptRan> {
        lock(&self.log)
            .iter()
            .filter(|a| a.run_id == run_id)
            .cloned()
            .collect()
    }

    fn started(&self, context: &StepContext) -> usize {
        let mut log = lock(&self.log);
        log.push(AttemptRan {
            run_id: context.run_id().unwrap_or_default().to_owned(),
            name: context.name().to_owned(),
            attempt: context.attempt(),
            ended: Ended::Dropped,
        });
        log.len() - 1
    }

    fn ended(&self, entry: usize, ended: Ended) {
        if let Some(attempt) = lock(&self.log).get_mut(entry) {
            attempt.ended = ended;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is one push or lookup: nothing is left half-changed.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The engine's kit, if it has one: the `kit` argument of [`watched_attempt`].
pub(crate) fn kit_of(run: &RunContext) -> Option<Arc<TestKit>> {
    run.shared
        .resources
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get::<TestKit>()
}

/// One attempt of a step, as the engine's kit plays it: the step's override, or its body
/// watched (its end logged, the clock flowing while it waits on the world). Without a kit, the
/// body as it is. Called in the attempt's step scope, where the step's context is.
pub(crate) fn watched_attempt<F, Fut, T, E>(
    kit: Option<&Arc<TestKit>>,
    attempt: &mut F,
) -> impl Future<Output = Result<T, BoxError>> + use<F, Fut, T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    T: DeserializeOwned,
    E: Into<BoxError>,
{
    let watched = match (kit, StepContext::current()) {
        (Some(kit), Some(context)) => {
            let plan = lock(&kit.overrides).get(context.name()).cloned();
            let entry = kit.started(&context);
            // A mocked or failed attempt never calls the body: no side effect happens.
            let played = plan
                .as_ref()
                .is_some_and(|p| p.value.is_some() || p.fault(context.attempt()).is_some());
            let body = (!played).then(&mut *attempt);
            Watched::Kit {
                log: LogEntry {
                    kit: Arc::clone(kit),
                    entry,
                    ended: Ended::Dropped,
                },
                context,
                plan,
                body,
            }
        }
        _ => Watched::Plain(attempt()),
    };
    async move {
        match watched {
            Watched::Plain(body) => body.await.map_err(Into::into),
            Watched::Kit {
                mut log,
                context,
                plan,
                body,
            } => {
                let result = play(&log.kit, &context, plan, body).await;
                log.ended = match &result {
                    Ok(_) => Ended::Ok,
                    Err(error) => Ended::Failed(class_of(error).kind()),
                };
                result
            }
        }
    }
}

enum Watched<Fut> {
    Plain(Fut),
    Kit {
        log: LogEntry,
        context: StepContext,
        plan: Option<StepOverride>,
        body: Option<Fut>,
    },
}

/// An attempt's line in the kit's log; an attempt dropped before it ended stays `dropped`.
struct LogEntry {
    kit: Arc<TestKit>,
    entry: usize,
    ended: Ended,
}

impl Drop for LogEntry {
    fn drop(&mut self) {
        self.kit.ended(self.entry, self.ended);
    }
}

fn class_of(error: &BoxError) -> ErrorClass {
    match error.downcast_ref::<StepFailure>() {
        Some(failure) => failure.class(),
        None => ErrorClass::Transient,
    }
}

async fn play<Fut, T, E>(
    kit: &TestKit,
    context: &StepContext,
    plan: Option<StepOverride>,
    body: Option<Fut>,
) -> Result<T, BoxError>
where
    Fut: Future<Output = Result<T, E>>,
    T: DeserializeOwned,
    E: Into<BoxError>,
{
    let attempt = context.attempt();
    if let Some(usage) = plan.as_ref().and_then(|p| p.usage.clone()) {
        context.report_usage(usage);
    }
    let latency = plan.as_ref().map_or(Duration::ZERO, |p| p.latency(attempt));
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(class) = plan.as_ref().and_then(|p| p.fault(attempt)) {
        let fault = InjectedFault {
            step: context.name().to_owned(),
            attempt,
            class,
        };
        return Err(Box::new(StepFailure::new(class, fault)));
    }
    if let Some(value) = plan.and_then(|p| p.value) {
        let decoded = value.and_then(|raw| {
            serde_json::from_str::<T>(raw.get()).map_err(|e| {
                format!(
                    "the override of step `{}` returns {}, which does not decode into `{}`: {e}",
                    context.name(),
                    raw.get(),
                    std::any::type_name::<T>()
                )
            })
        });
        return decoded.map_err(|message| Box::new(StepFailure::terminal(message)) as BoxError);
    }
    let Some(body) = body else {
        let message = format!(
            "step `{}`: its override neither returns nor fails",
            context.name()
        );
        return Err(Box::new(StepFailure::terminal(message)));
    };
    let mut body = std::pin::pin!(body);
    // A body that ends at its first poll never waited on the world: the clock need not flow.
    let first = std::future::poll_fn(|cx| Poll::Ready(body.as_mut().poll(cx))).await;
    let outcome = match first {
        Poll::Ready(outcome) => outcome,
        Poll::Pending => {
            let _flowing = kit.clock.as_ref().map(RealTime::flowing);
            body.await
        }
    };
    // Classified here, as the engine will, so that the log shows the class the policy sees.
    outcome.map_err(|e| Box::new(StepFailure::from_error(e)) as BoxError)
}

/// How often the clock catches up with the wall clock while a step's body waits.
const TICK: Duration = Duration::from_millis(1);

/// A paused tokio clock skips to the next timer as soon as every task waits, even on a
/// socket: a step's 10 s timeout would fire while its loopback request is in flight. While a
/// body waits, this keeps a blocking task in flight, which stops the skipping (tokio's rule for
/// `spawn_blocking` under a paused clock), and advances the clock by the real time that passed:
/// time flows at real speed then, and skips again once no body waits.
struct RealTime {
    waiting_bodies: Arc<watch::Sender<usize>>,
}

impl RealTime {
    /// Starts the task that moves the clock; it ends when the kit is dropped.
    fn start() -> RealTime {
        let (sender, mut waiting) = watch::channel(0_usize);
        tokio::spawn(async move {
            loop {
                let any = waiting.wait_for(|bodies| *bodies > 0).await.is_ok();
                if !any {
                    break;
                }
                let started = std::time::Instant::now();
                let slept = tokio::task::spawn_blocking(|| std::thread::sleep(TICK)).await;
                if slept.is_err() {
                    break;
                }
                tokio::time::advance(started.elapsed()).await;
            }
        });
        RealTime {
            waiting_bodies: Arc::new(sender),
        }
    }

    /// Keeps the clock flowing until the guard is dropped.
    fn flowing(&self) -> Flowing {
        self.waiting_bodies.send_modify(|bodies| *bodies += 1);
        Flowing(Arc::clone(&self.waiting_bodies))
    }
}

struct Flowing(Arc<watch::Sender<usize>>);

impl Drop for Flowing {
    fn drop(&mut self) {
        self.0
            .send_modify(|bodies| *bodies = bodies.saturating_sub(1));
    }
}
