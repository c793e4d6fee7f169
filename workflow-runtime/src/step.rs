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

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::budget::Usage;
use crate::circuit::Circuits;
use crate::context::{Abort, AttemptStart, RunContext, Shared, current_run};
use crate::error::{ParkReason, StepError, StepErrorKind};
use crate::event::{AlertKind, Event};
use crate::guard::{AttemptError, CatchUnwind, panic_message};
use crate::journal::{self, AttemptRecord, StepRecord, StepStatus};
use crate::ratelimit::Admission;
use crate::replay::{self, Claim, park};
use crate::resource::ResourceError;
use crate::retry::{Backoff, Decision, ErrorClass, RetryPolicy, StepFailure};

tokio::task_local! {
    static CURRENT_STEP: StepContext;
}

/// The circuits of steps that run outside an engine.
static DIRECT_CIRCUITS: LazyLock<Circuits> = LazyLock::new(Circuits::default);

/// Starts building a step named `name`. The name is journaled with the step's outcome and
/// checked on replay, so keep it stable.
pub fn step(name: impl Into<Cow<'static, str>>) -> Step {
    Step {
        name: name.into(),
        policy: RetryPolicy::default(),
        circuit: None,
        rate: None,
        at_most_once: false,
    }
}

/// A step being configured; [`run`](Step::run) executes it.
#[derive(Debug, Clone)]
#[must_use = "a step does nothing until `.run(...)` is called and awaited"]
pub struct Step {
    name: Cow<'static, str>,
    policy: RetryPolicy,
    circuit: Option<String>,
    rate: Option<String>,
    at_most_once: bool,
}

impl Step {
    /// Retries after the first attempt, for every retryable class (by default each class has
    /// its own: see [`retry`](crate::retry)).
    pub fn retries(mut self, retries: u32) -> Self {
        self.policy.retries = Some(retries);
        self
    }

    /// The limit of each attempt (default none). An attempt past it is dropped and counts as a
    /// failed attempt of class [`ErrorClass::Timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.policy.timeout = Some(timeout);
        self
    }

    /// The waits between attempts (default [`Backoff::DEFAULT`]).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.policy.backoff = Some(backoff);
        self
    }

    /// Never retries, whatever the error's class.
    pub fn non_retryable(mut self) -> Self {
        self.policy.non_retryable = true;
        self
    }

    /// Calls go through the circuit breaker named `name`, shared by every run of the engine
    /// (configure it with [`EngineBuilder::circuit`](crate::EngineBuilder::circuit)).
    pub fn circuit(mut self, name: impl Into<String>) -> Self {
        self.circuit = Some(name.into());
        self
    }

    /// Each attempt draws from the rate-limit bucket `name` of the engine
    /// ([`EngineBuilder::rate_limit`](crate::EngineBuilder::rate_limit)): it waits for capacity
    /// before it starts, is charged the tokens it reported, and a 429 it gets closes the bucket
    /// for the Retry-After period.
    pub fn rate(mut self, name: impl Into<String>) -> Self {
        self.rate = Some(name.into());
        self
    }

    /// Calls the body at most once, even across crashes: the intent is journaled before the
    /// call, and a run resumed after a crash during the call gets a
    /// [`StepErrorKind::OutcomeUnknown`] error instead of a second call. Retries still happen
    /// within one process, so combine it with `retries(0)` when a retry is as unsafe.
    pub fn at_most_once(mut self) -> Self {
        self.at_most_once = true;
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
    ///
    /// The error's class decides the retries: return a [`StepFailure`] (or an error whose
    /// chain holds one of the types listed in [`retry`](crate::retry)) to choose it. `#[step]`
    /// also uses a [`Classify`](crate::Classify) implementation of the error type.
    pub fn run<F, Fut, T, E>(self, attempt: F) -> impl Future<Output = Result<T, StepError>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: Serialize + DeserializeOwned,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // A step called inside another step's attempt has no place in the body's order: its
        // outcome would be journaled whenever the outer attempt happens to call it.
        let outer = StepContext::current();
        let run = current_run().map(|run| match &outer {
            Some(_) => (run, None),
            None => {
                let seq = run.allocate_seq();
                (run, Some(seq))
            }
        });
        async move {
            match run {
                Some((run, Some(seq))) => self.run_journaled(&run, seq, attempt).await,
                Some((run, None)) => {
                    let outer = outer.map(|o| format!("`{}` (#{})", o.name(), o.seq()));
                    let message = format!(
                        "step `{}` was called inside an attempt of step {}: a step cannot start other steps. Call `{}` from the workflow body, or call the function without its #[step] inside the outer step",
                        self.name,
                        outer.unwrap_or_default(),
                        self.name
                    );
                    tracing::error!(run_id = %run.run_id, step = %self.name, "{message}");
                    park(&run, Abort::Fail(message)).await
                }
                None => {
                    let target = Target {
                        run: None,
                        seq: 0,
                        key: direct_key(&self.name),
                        carried: None,
                    };
                    self.attempts(&target, attempt).await.outcome
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
        let name = &*self.name;
        // What earlier processes journaled of this step without finishing it.
        let mut carried: Option<StepRecord> = None;
        match run.claim(seq, name) {
            Err(mismatch) => {
                tracing::error!(run_id = %run.run_id, seq, journaled = %mismatch.journaled, current = %mismatch.current, "non-determinism: run parked");
                return park(
                    run,
                    Abort::Park(ParkReason::NonDeterminism(Box::new(mismatch))),
                )
                .await;
            }
            Ok(Claim::Outcome(journaled)) => return replay::replay_outcome(run, journaled).await,
            Ok(Claim::Unfinished(record)) if record.status == StepStatus::Started => {
                return resolve_unknown_outcome(run, record).await;
            }
            Ok(Claim::Unfinished(record)) => carried = Some(record),
            Ok(Claim::Execute) => {}
        }
        if let Err(exhausted) = run.check_budget() {
            let message = exhausted.to_string();
            run.alert(AlertKind::BudgetExceeded, Some(name), message.clone());
            return park(run, Abort::Budget(message, Some(exhausted))).await;
        }
        if run.verify_only {
            return replay::not_journaled(run, seq, name).await;
        }
        let _slot = run.in_flight_slot().await;

        let started_at_us = journal::now_us();
        let mut record = StepRecord {
            seq,
            name: name.to_string(),
            status: StepStatus::Started,
            attempts: 1,
            started_at_us,
            finished_at_us: started_at_us,
            output: None,
            error: None,
            usage: Usage::default(),
            attempt_log: Vec::new(),
            delivery: None,
        };
        if self.at_most_once
            && let Err(reason) = replay::commit(run, &record).await
        {
            return park(run, Abort::Park(reason)).await;
        }

        let running = run.step_running(seq, name, started_at_us);
        let target = Target {
            run: Some(Arc::clone(run)),
            seq,
            key: journal::idempotency_key(&run.run_id, seq, name),
            carried: carried
                .as_ref()
                .map(|r| (r.usage.clone(), r.attempt_log.clone())),
        };
        // A test engine plays the step's overrides, or watches its body.
        #[cfg(feature = "testing")]
        let attempt = {
            let kit = crate::testing::kit_of(run);
            let mut attempt = attempt;
            move || crate::testing::watched_attempt(kit.as_ref(), &mut attempt)
        };
        let Attempts {
            outcome,
            attempts,
            usage,
            log,
        } = self.attempts(&target, attempt).await;
        record.attempts = attempts;
        record.finished_at_us = journal::now_us();
        // What this process spent; the record keeps what earlier ones spent too.
        let spent_here = usage.clone();
        match carried {
            Some(carried) => {
                record.started_at_us = carried.started_at_us;
                record.usage = carried.usage;
                record.usage.add(&usage);
                record.attempt_log = carried.attempt_log;
                if log.is_empty() {
                    // One attempt here: the log of a single attempt is left out, but with the
                    // earlier processes' attempts this step had several.
                    record.attempt_log.push(AttemptRecord {
                        attempt: attempts,
                        started_at_us,
                        finished_at_us: record.finished_at_us,
                        error: outcome.as_ref().err().cloned(),
                        wait_after_us: 0,
                    });
                }
                record.attempt_log.extend(log);
            }
            None => {
                record.usage = usage;
                record.attempt_log = log;
            }
        }
        match outcome {
            Ok(value) => match journal::encode_value(&value) {
                Ok(raw) => {
                    record.status = StepStatus::Completed;
                    record.output = Some(raw);
                }
                Err(message) => {
                    record.status = StepStatus::Failed;
                    record.error = Some(StepError {
                        step: name.to_string(),
                        kind: StepErrorKind::Terminal,
                        message,
                        attempts,
                    });
                }
            },
            Err(error) => {
                record.status = StepStatus::Failed;
                record.error = Some(error);
            }
        }
        drop(running);
        run.charge(&spent_here);
        // Some failures end the run even if the body would carry on.
        if let Some(error) = &record.error {
            let abort = match error.kind {
                StepErrorKind::Panicked => Some(Abort::Fail(error.to_string())),
                StepErrorKind::Auth => {
                    let message = format!("{error}; the run stops until its credentials are fixed");
                    run.alert(AlertKind::AuthFailure, Some(name), message.clone());
                    Some(Abort::Fail(message))
                }
                StepErrorKind::BudgetExceeded => {
                    run.alert(AlertKind::BudgetExceeded, Some(name), error.message.clone());
                    Some(Abort::Budget(error.message.clone(), run.exhausted_budget()))
                }
                _ => None,
            };
            if let Some(abort) = abort {
                replay::record_final(run, &mut record).await;
                return park(run, abort).await;
            }
        }
        replay::record_outcome(run, &mut record, Vec::new()).await
    }

    /// Runs attempts until one succeeds or the policy gives up.
    async fn attempts<F, Fut, T, E>(&self, target: &Target, mut attempt: F) -> Attempts<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let shared = target.run.as_ref().map(|run| &run.shared);
        let circuits = shared.map_or(&*DIRECT_CIRCUITS, |shared| &shared.circuits);
        let usage = Arc::new(Mutex::new(Usage::default()));
        let mut previous_error: Option<StepError> = None;
        let mut consecutive_503 = 0;
        let mut failures_by_kind: HashMap<StepErrorKind, u32> = HashMap::new();
        let mut log: Vec<AttemptRecord> = Vec::new();
        let mut attempt_started_us = journal::now_us();
        let mut journaled_usage = Usage::default();
        let mut number = 1;
        let outcome = loop {
            let permit = match &self.circuit {
                Some(circuit) => match circuits.admit(circuit) {
                    Ok(permit) => Some(permit),
                    Err(open) => {
                        break Err(self.error(
                            StepErrorKind::CircuitOpen,
                            open.to_string(),
                            number,
                        ));
                    }
                },
                None => None,
            };
            let rate_limits = shared.map(|shared| &shared.rate_limits);
            if let (Some(bucket), Some(limits)) = (&self.rate, rate_limits)
                && let Admission::Refused(refused) = limits.acquire(bucket).await
            {
                break Err(self.error(StepErrorKind::Terminal, refused.to_string(), number));
            }
            if let (Some(run), Some(shared)) = (&target.run, shared) {
                let wait = shared.before_attempt(&AttemptStart {
                    run_id: &run.run_id,
                    seq: target.seq,
                    name: &self.name,
                    attempt: number,
                });
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            attempt_started_us = journal::now_us();
            let tokens_before = usage
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .total_tokens();
            let context = StepContext {
                inner: Arc::new(StepInner {
                    run_id: target.run.as_ref().map(|run| run.run_id.clone()),
                    seq: target.seq,
                    name: self.name.to_string(),
                    key: target.key.clone(),
                    attempt: number,
                    previous_error: previous_error.clone(),
                    usage: Arc::clone(&usage),
                    shared: shared.cloned(),
                }),
            };
            let span =
                tracing::info_span!("step", name = %self.name, seq = target.seq, attempt = number);
            // The closure itself runs in the step's scope too, so code that builds the
            // attempt's future can read the context.
            let built = catch_unwind(AssertUnwindSafe(|| {
                CURRENT_STEP.sync_scope(context.clone(), &mut attempt)
            }));
            let future = match built {
                Ok(future) => future,
                Err(payload) => {
                    let message = panic_message(payload);
                    break Err(self.error(StepErrorKind::Panicked, message, number));
                }
            };
            let guarded = CURRENT_STEP
                .scope(context, CatchUnwind(future))
                .instrument(span);
            let result = match self.policy.timeout {
                Some(limit) => match tokio::time::timeout(limit, guarded).await {
                    Ok(result) => result,
                    Err(_) => Err(AttemptError::Timeout(limit)),
                },
                None => guarded.await,
            };
            if let (Some(bucket), Some(limits)) = (&self.rate, rate_limits) {
                let usage = usage.lock().unwrap_or_else(|p| p.into_inner());
                let used = usage.total_tokens().saturating_sub(tokens_before);
                limits.charge_tokens(bucket, used);
            }
            let (class, message) = match result {
                Ok(Ok(value)) => {
                    if let (Some(circuit), Some(permit)) = (&self.circuit, permit) {
                        circuits.record(circuit, permit, true);
                    }
                    break Ok(value);
                }
                Ok(Err(error)) => {
                    let failure = StepFailure::from_error(error);
                    (failure.class(), failure.message())
                }
                Err(AttemptError::Panic(message)) => {
                    // A panic is a bug, not a transient condition: retrying would repeat it.
                    break Err(self.error(StepErrorKind::Panicked, message, number));
                }
                Err(AttemptError::Timeout(limit)) => (
                    ErrorClass::Timeout,
                    format!("attempt timed out after {limit:?}"),
                ),
            };
            if let (Some(circuit), Some(permit)) = (&self.circuit, permit)
                && circuits.record(circuit, permit, !class.counts_against_circuit())
            {
                self.circuit_opened(target, circuit);
            }
            if let (
                Some(bucket),
                Some(limits),
                ErrorClass::RateLimited {
                    retry_after: Some(wait),
                },
            ) = (&self.rate, rate_limits, class)
            {
                limits.back_off(bucket, wait);
            }
            consecutive_503 = match class {
                ErrorClass::Server { status: 503 } => consecutive_503 + 1,
                _ => 0,
            };
            let error = self.error(class.kind(), message, number);
            let seed = jitter_seed(&target.key, number);
            // Each class has its own allowance: a timeout followed by a schema mismatch still
            // leaves the schema mismatch its one retry.
            let same_class = failures_by_kind.entry(class.kind()).or_insert(0);
            *same_class += 1;
            let delay = match self.policy.decide(class, *same_class, seed) {
                Decision::RetryAfter(delay) => delay,
                Decision::GiveUp => {
                    if matches!(class, ErrorClass::RateLimited { .. })
                        && let Some(circuit) = &self.circuit
                        && circuits.trip(circuit)
                    {
                        self.circuit_opened(target, circuit);
                    }
                    if consecutive_503 >= 2 {
                        let message = format!(
                            "step `{}` got HTTP 503 on {consecutive_503} attempts in a row: {}",
                            self.name, error.message
                        );
                        alert(
                            target,
                            AlertKind::RepeatedServiceUnavailable,
                            &self.name,
                            message,
                        );
                    }
                    break Err(error);
                }
            };
            if let Some(run) = &target.run {
                let spent = usage.lock().unwrap_or_else(|p| p.into_inner()).clone();
                if let Err(exhausted) = run.check_budget_for_retry(&spent) {
                    let message = exhausted.to_string();
                    let message = format!("{message} (while retrying after: {})", error.message);
                    break Err(self.error(StepErrorKind::BudgetExceeded, message, number));
                }
            }
            tracing::warn!(step = %self.name, seq = target.seq, attempt = number, error = %error.message, delay_ms = delay.as_millis() as u64, "step attempt failed; retrying");
            if let Some(run) = &target.run {
                run.emit(|| Event::StepRetrying {
                    run_id: run.run_id.clone(),
                    seq: target.seq,
                    name: self.name.to_string(),
                    attempt: number,
                    error: error.clone(),
                    delay,
                });
            }
            log.push(AttemptRecord {
                attempt: number,
                started_at_us: attempt_started_us,
                finished_at_us: journal::now_us(),
                error: Some(error.clone()),
                wait_after_us: delay.as_micros() as u64,
            });
            if let Some(run) = &target.run {
                // Journal what the failed attempts spent before waiting: a crash during the
                // retries must not give the run its money back.
                let spent = usage.lock().unwrap_or_else(|p| p.into_inner()).clone();
                if spent != journaled_usage {
                    let pending = target.pending_record(&self.name, number, &spent, &log);
                    if let Err(reason) = replay::commit(run, &pending).await {
                        return park(run, Abort::Park(reason)).await;
                    }
                    journaled_usage = spent;
                }
            }
            previous_error = Some(error);
            tokio::time::sleep(delay).await;
            number += 1;
        };
        if !log.is_empty() {
            // The last attempt too, so that the log shows every attempt of the step.
            log.push(AttemptRecord {
                attempt: number,
                started_at_us: attempt_started_us,
                finished_at_us: journal::now_us(),
                error: outcome.as_ref().err().cloned(),
                wait_after_us: 0,
            });
        }
        let usage = usage.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Attempts {
            outcome,
            attempts: number,
            usage,
            log,
        }
    }

    fn error(&self, kind: StepErrorKind, message: String, attempts: u32) -> StepError {
        StepError {
            step: self.name.to_string(),
            kind,
            message,
            attempts,
        }
    }

    fn circuit_opened(&self, target: &Target, circuit: &str) {
        let message = format!(
            "circuit `{circuit}` opened after failures of step `{}`; calls through it fail fast until a probe succeeds",
            self.name
        );
        alert(target, AlertKind::CircuitOpened, &self.name, message);
    }
}

fn alert(target: &Target, kind: AlertKind, step: &str, message: String) {
    match &target.run {
        Some(run) => run.alert(kind, Some(step), message),
        None => tracing::warn!(alert = kind.as_str(), step, message = %message, "workflow alert"),
    }
}

/// The seed of an attempt's backoff jitter: reproducible, yet different between steps, so that
/// runs failing together do not retry together.
fn jitter_seed(key: &str, attempt: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes().chain(attempt.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

struct Target {
    run: Option<Arc<RunContext>>,
    seq: u64,
    key: String,
    /// What earlier processes' attempts of this step spent and logged, when they journaled it.
    carried: Option<(Usage, Vec<AttemptRecord>)>,
}

impl Target {
    /// The record of a step whose attempts so far failed, with what they (and the attempts of
    /// earlier processes) spent.
    fn pending_record(
        &self,
        name: &str,
        attempts: u32,
        spent: &Usage,
        log: &[AttemptRecord],
    ) -> StepRecord {
        let (mut usage, mut attempt_log) = self.carried.clone().unwrap_or_default();
        usage.add(spent);
        attempt_log.extend_from_slice(log);
        let now = journal::now_us();
        StepRecord {
            seq: self.seq,
            name: name.to_owned(),
            status: StepStatus::Pending,
            attempts,
            started_at_us: attempt_log.first().map_or(now, |a| a.started_at_us),
            finished_at_us: now,
            output: None,
            error: None,
            usage,
            attempt_log,
            delivery: None,
        }
    }
}

struct Attempts<T> {
    outcome: Result<T, StepError>,
    attempts: u32,
    usage: Usage,
    log: Vec<AttemptRecord>,
}

/// An at-most-once step whose intent is journaled but whose outcome is not: the process died
/// during the call. Journal that the outcome is unknown, and tell the body.
async fn resolve_unknown_outcome<T: DeserializeOwned>(
    run: &Arc<RunContext>,
    mut record: StepRecord,
) -> Result<T, StepError> {
    let error = StepError {
        step: record.name.clone(),
        kind: StepErrorKind::OutcomeUnknown,
        message: format!(
            "step `{}` is at-most-once and was interrupted during its call by the end of a process; whether it took effect is unknown, so it is not called again",
            record.name
        ),
        attempts: record.attempts,
    };
    record.status = StepStatus::Failed;
    record.error = Some(error.clone());
    record.finished_at_us = journal::now_us();
    if run.verify_only {
        return Err(error);
    }
    replay::record_outcome(run, &mut record, Vec::new()).await
}

fn direct_key(name: &str) -> String {
    static DIRECT_CALLS: AtomicU64 = AtomicU64::new(0);
    let n = DIRECT_CALLS.fetch_add(1, Ordering::Relaxed);
    format!("direct-{}-{n}/{name}", std::process::id())
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
#[derive(Clone)]
pub struct StepContext {
    inner: Arc<StepInner>,
}

struct StepInner {
    run_id: Option<String>,
    seq: u64,
    name: String,
    key: String,
    attempt: u32,
    previous_error: Option<StepError>,
    usage: Arc<Mutex<Usage>>,
    shared: Option<Arc<Shared>>,
}

impl std::fmt::Debug for StepContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepContext")
            .field("key", &self.inner.key)
            .field("attempt", &self.inner.attempt)
            .finish_non_exhaustive()
    }
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

    /// The resource of type `T` registered on the step's engine
    /// ([`EngineBuilder::resource`](crate::EngineBuilder::resource)); see
    /// [`resource`](crate::resource()). Nothing it holds is journaled.
    ///
    /// # Errors
    ///
    /// [`ResourceError::NoEngine`] outside an engine, [`ResourceError::Missing`] when the
    /// engine has no `T`.
    pub fn resource<T: Send + Sync + 'static>(&self) -> Result<Arc<T>, ResourceError> {
        let type_name = std::any::type_name::<T>();
        let shared = self
            .inner
            .shared
            .as_ref()
            .ok_or(ResourceError::NoEngine { type_name })?;
        let resources = shared.resources.read().unwrap_or_else(|p| p.into_inner());
        resources
            .get::<T>()
            .ok_or(ResourceError::Missing { type_name })
    }

    /// Adds to what the step spent. Every attempt's usage counts, and the total is journaled
    /// with the step and charged to the run's budget. Tokens of a model priced on the engine
    /// ([`EngineBuilder::price`](crate::EngineBuilder::price)) are turned into US dollars when the
    /// usage carries no cost of its own.
    pub fn report_usage(&self, usage: Usage) {
        let usage = match &self.inner.shared {
            Some(shared) => shared.price(usage),
            None => usage,
        };
        self.inner
            .usage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(&usage);
    }
}

/// The resource of type `T` registered on the engine of the step that runs
/// ([`EngineBuilder::resource`](crate::EngineBuilder::resource)). Call it inside a step's
/// attempt: a `#[step] async fn`, a `#[step]` call's expression, or the closure given to
/// [`Step::run`](crate::Step::run). Shorthand for
/// [`StepContext::resource`] on the current step's context.
///
/// A workflow function cannot take `self`, so what its steps need (an HTTP client, an API
/// key, a database pool) would otherwise live in a static, which a test cannot swap. Register
/// it on the engine instead, one value per type, and read it from inside a step:
///
/// ```
/// use std::sync::Arc;
/// use workflow_runtime::{Engine, StepError, resource, step, workflow};
///
/// /// The client a step calls: a real one in production, a fake one in tests.
/// struct Greeter {
///     greeting: String,
/// }
///
/// #[step]
/// async fn greet(name: String) -> Result<String, workflow_runtime::ResourceError> {
///     let greeter: Arc<Greeter> = resource()?;
///     Ok(format!("{}, {name}", greeter.greeting))
/// }
///
/// #[workflow]
/// async fn welcome(name: String) -> Result<String, StepError> {
///     greet(name).await
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), workflow_runtime::Error> {
/// let engine = Engine::builder()
///     .resource(Greeter { greeting: "Hello".into() })
///     .in_memory();
/// let run = engine.start::<welcome>("w-1", ("Ada".to_owned(),)).await?;
/// assert_eq!(run.result().await?, "Hello, Ada");
/// # Ok(()) }
/// ```
///
/// # What is journaled
///
/// Nothing a resource holds. The journal holds the steps' values, not the resources they were
/// computed with: a run resumed on an engine with another client replays its finished steps
/// as they were and calls the new client only for the steps still to run.
///
/// # Only inside a step
///
/// [`resource`] answers only inside a step's attempt. In the workflow body (outside steps) it
/// returns [`ResourceError::OutsideStep`]: the body is re-executed on every replay, and what it
/// computed from a resource would not be journaled, so a replay with another resource (or the
/// same one in another state) could take another path. Read the resource in a step and let the
/// step's journaled value carry what the body needs.
///
/// # Errors
///
/// [`ResourceError::OutsideStep`] in a workflow body, outside steps (and in a task a step
/// spawned, which does not inherit the step's context); [`ResourceError::NoEngine`] in a step
/// called outside an engine; [`ResourceError::Missing`] when the engine has no `T`. Its
/// [`Classify`](crate::Classify) class is [`ErrorClass::Terminal`], so a `#[step]` that returns it does not
/// retry: another attempt would not find the resource either.
pub fn resource<T: Send + Sync + 'static>() -> Result<Arc<T>, ResourceError> {
    match StepContext::current() {
        Some(context) => context.resource::<T>(),
        None => Err(ResourceError::OutsideStep {
            type_name: std::any::type_name::<T>(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::resource;
    use crate::resource::ResourceError;
    use crate::store::BoxFuture;
    use crate::{Engine, RateLimit, StepErrorKind, Workflow, WorkflowFailure, step};

    struct Limited;

    impl Workflow for Limited {
        type Input = ();
        type Output = String;
        const NAME: &'static str = "limited";

        fn run(_: ()) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
            Box::pin(async {
                let outcome = step("call")
                    .rate("closed")
                    .run(|| async { Ok::<_, std::io::Error>("called".to_owned()) })
                    .await;
                Ok(match outcome {
                    Ok(value) => value,
                    Err(e) if e.kind == StepErrorKind::Terminal => {
                        format!("refused: {}", e.message)
                    }
                    Err(e) => format!("other: {e}"),
                })
            })
        }
    }

    /// Regression: a bucket of 0 requests per minute made the step sleep forever.
    #[tokio::test(start_paused = true)]
    async fn a_step_on_a_bucket_of_zero_fails_at_once_naming_the_bucket() {
        let engine = Engine::builder()
            .rate_limit("closed", RateLimit::requests_per_minute(0))
            .in_memory();
        let run = engine.start::<Limited>("l", ()).await.unwrap();
        let output = tokio::time::timeout(std::time::Duration::from_secs(3600), run.result())
            .await
            .expect("the step is refused, not put to sleep")
            .unwrap();
        assert!(
            output.starts_with("refused: ") && output.contains("closed"),
            "{output}"
        );
    }

    /// Reads the engine's `String` in its body and in a step: (body's, step's).
    struct Greeting;

    impl Workflow for Greeting {
        type Input = ();
        type Output = (String, String);
        const NAME: &'static str = "greeting";

        fn run(_: ()) -> BoxFuture<'static, Result<(String, String), WorkflowFailure>> {
            Box::pin(async {
                let in_body = match resource::<String>() {
                    Ok(value) => format!("read {value}"),
                    Err(error) => error.to_string(),
                };
                let in_step = step("greet")
                    .run(|| async { resource::<String>().map(|s| (*s).clone()) })
                    .await
                    .map_err(|e| WorkflowFailure::new(e.to_string()))?;
                Ok((in_body, in_step))
            })
        }
    }

    #[tokio::test]
    async fn a_step_reads_its_own_engines_resource_and_the_body_is_refused() {
        for greeting in ["hello", "bonjour"] {
            let engine = Engine::builder().resource(greeting.to_owned()).in_memory();
            let run = engine.start::<Greeting>("g", ()).await.unwrap();
            let (in_body, in_step) = run.result().await.unwrap();
            assert_eq!(in_step, greeting);
            assert!(
                in_body
                    .starts_with("resource `alloc::string::String` was asked for outside a step"),
                "{in_body}"
            );
        }
    }

    #[tokio::test]
    async fn a_step_called_outside_an_engine_is_told_to_use_one() {
        let error = step("greet")
            .non_retryable()
            .run(|| async { resource::<String>().map(|s| (*s).clone()) })
            .await
            .unwrap_err();
        assert!(error.message.contains("outside an engine"), "{error}");
        assert_eq!(
            resource::<String>().err(),
            Some(ResourceError::OutsideStep {
                type_name: "alloc::string::String"
            })
        );
    }
}
