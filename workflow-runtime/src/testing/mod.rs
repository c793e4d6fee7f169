//! Testing workflows: a test engine with virtual time, step overrides, events at a virtual time,
//! assertions in one line, and a crash checker that crashes a workflow after every commit point.
//!
//! Cargo feature `testing` (it needs tokio's virtual time, `tokio/test-util`): add
//! `workflow-runtime = { version = "…", features = ["testing"] }` to your dev-dependencies.
//!
//! # Testing workflows
//!
//! Each kind of test below is complete and runs as it is (`cargo test` runs these very examples).
//! Write yours under `#[tokio::test]`; they use `#[tokio::main(flavor = "current_thread")]` here
//! only because a doc example needs a `main`.
//!
//! ## Call the workflow directly
//!
//! A workflow function stays callable with its own signature. Called outside an engine, its steps
//! run with their retries and timeouts and nothing is journaled: the quickest test of a body's
//! logic. A step that reads a [`resource`](crate::resource()) or a body that waits for an event
//! needs an engine: use the test engine below (the error says so).
//!
//! ```
//! use workflow_runtime::{StepError, step, workflow};
//!
//! #[step(retries = 2)]
//! async fn double(n: u32) -> Result<u32, std::io::Error> {
//!     Ok(n * 2)
//! }
//!
//! #[workflow]
//! async fn twice(n: u32) -> Result<u32, StepError> {
//!     let once = double(n).await?;
//!     double(once).await
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! assert_eq!(twice(3).await.unwrap(), 12);
//! # }
//! ```
//!
//! ## The test engine, fakes and virtual time
//!
//! [`TestEngine`] is an engine on an in-memory journal under tokio's virtual time. Give it the
//! builder of your engine, with fakes where the real clients were: steps reach them with
//! [`resource`](crate::resource()), so swapping needs no static. A durable timer of a day takes
//! no real time; [`TestEngine::elapsed`] says how much virtual time passed.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use workflow_runtime::testing::TestEngine;
//! use workflow_runtime::{Engine, StepFailure, durable, resource, step, workflow};
//!
//! /// The client the steps call; a test registers one that answers from memory.
//! struct Weather {
//!     forecast: String,
//! }
//!
//! #[step]
//! async fn forecast() -> Result<String, StepFailure> {
//!     let weather: Arc<Weather> = resource()?;
//!     Ok(weather.forecast.clone())
//! }
//!
//! #[workflow]
//! async fn tomorrow() -> Result<String, workflow_runtime::StepError> {
//!     durable::sleep(Duration::from_secs(24 * 3_600)).await;
//!     forecast().await
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let test = TestEngine::with(Engine::builder().resource(Weather { forecast: "sun".into() }));
//! let run = test.start::<tomorrow>("t", ()).await.unwrap();
//! assert_eq!(run.result().await.unwrap(), "sun");
//! assert!(test.elapsed() >= Duration::from_secs(24 * 3_600));
//! # }
//! ```
//!
//! Time skips only when every task waits on a timer. While a step's own body waits on anything
//! else (a loopback server, a channel), the clock flows at real speed, so the step's timeout
//! measures the real wait: a test with real I/O does not time out in the blink of a skip.
//!
//! ## Faults, mocks and latencies: step overrides
//!
//! [`TestEngine::override_step`] makes the attempts of the steps of one name do what a
//! [`StepOverride`] says: return a value without calling anything, fail with an
//! [`ErrorClass`](crate::ErrorClass) on chosen attempts, take a while of virtual time, report what
//! they spent. The retry policy, rate limits, circuits and budgets see them as real attempts;
//! [`TestEngine::attempts`] lists what ran, one line each.
//!
//! ```
//! use std::time::Duration;
//! use workflow_runtime::testing::{StepOverride, TestEngine};
//! use workflow_runtime::{ErrorClass, StepError, step, workflow};
//!
//! #[step(timeout = "10s")]
//! async fn ask_model(question: String) -> Result<String, std::io::Error> {
//!     unreachable!("the test mocks the model: {question}")
//! }
//!
//! #[workflow]
//! async fn answer(question: String) -> Result<String, StepError> {
//!     ask_model(question).await
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let test = TestEngine::new();
//! let rate_limited = ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(30)) };
//! test.override_step(
//!     "ask_model",
//!     StepOverride::returning("42")
//!         .failing_on(1, rate_limited)
//!         // The second attempt hangs past the step's 10 s timeout.
//!         .taking_on(2, Duration::from_secs(60)),
//! );
//! let run = test.start::<answer>("q", ("meaning?".to_owned(),)).await.unwrap();
//! assert_eq!(run.result().await.unwrap(), "42");
//! assert_eq!(test.attempts("q"), ["ask_model#1 rate_limited", "ask_model#2 dropped", "ask_model#3 ok"]);
//! assert_eq!(test.steps("q").await.unwrap(), ["ask_model completed after 3 attempts"]);
//! # }
//! ```
//!
//! [`StepOverride::running_body`] keeps the step's own body and adds the faults and latencies
//! around it: a 429 injected before a call to a fake server.
//!
//! ## Events and approvals
//!
//! [`TestEngine::send_event_at`] sends an event at a virtual time. A run that waits for a timer
//! or an event leaves memory at once on a test engine (status `waiting`), rather than after the
//! 10 s an engine keeps it by default; [`TestEngine::settled`] waits until the run stops
//! executing and returns its record.
//!
//! ```
//! use std::time::Duration;
//! use workflow_runtime::testing::TestEngine;
//! use workflow_runtime::{RunStatus, StepError, durable, workflow};
//!
//! #[workflow]
//! async fn purchase(amount: u64) -> Result<String, StepError> {
//!     let day = Duration::from_secs(24 * 3_600);
//!     let approved: Option<bool> = durable::wait_for_event_timeout("approval", day).await?;
//!     Ok(match approved {
//!         Some(true) => format!("bought for {amount}"),
//!         _ => "not bought".to_owned(),
//!     })
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let test = TestEngine::new();
//! let run = test.start::<purchase>("p", (120,)).await.unwrap();
//! assert_eq!(test.settled("p").await.unwrap().status, RunStatus::Waiting);
//! test.send_event_at(Duration::from_secs(3_600), "p", "approval", true);
//! assert_eq!(run.result().await.unwrap(), "bought for 120");
//! assert!(test.elapsed() >= Duration::from_secs(3_600));
//! # }
//! ```
//!
//! ## Budgets and what a run spent
//!
//! An override that reports a cost drives a budget without a model. [`TestEngine::spent`] sums
//! the journal: steps, retries, dollars, tokens, in one line to compare.
//!
//! ```
//! use workflow_runtime::testing::{StepOverride, TestEngine};
//! use workflow_runtime::{Error, ErrorClass, RunStatus, StepError, Usage, step, workflow};
//!
//! #[step]
//! async fn call_model() -> Result<String, std::io::Error> {
//!     unreachable!("mocked")
//! }
//!
//! #[workflow(max_cost_usd = 0.05)]
//! async fn agent() -> Result<String, StepError> {
//!     call_model().await
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let test = TestEngine::new();
//! test.override_step(
//!     "call_model",
//!     StepOverride::returning("never")
//!         .failing_always(ErrorClass::Server { status: 503 })
//!         .reporting(Usage::tokens("model", 1_000, 200).with_cost_usd(0.02)),
//! );
//! let run = test.start::<agent>("a", ()).await.unwrap();
//! assert!(matches!(run.result().await, Err(Error::BudgetExceeded { .. })));
//! assert_eq!(test.settled("a").await.unwrap().status, RunStatus::BudgetExceeded);
//! assert_eq!(
//!     test.spent("a").await.unwrap().to_string(),
//!     "1 step, 2 retries, $0.0600, 3000 tokens in, 600 out"
//! );
//! # }
//! ```
//!
//! [`TestEngine::history_lines`] gives the run's history in words, a line per event, and the
//! engine's own [`journal`](crate::Engine::journal) and [`history`](crate::Engine::history) are
//! there too ([`TestEngine`] derefs to its [`Engine`]).
//!
//! ## A crash at every commit point
//!
//! [`CrashCheck`] runs a workflow once, then again crashed after each commit (and during it), and
//! checks that each resumed run ends as the uninterrupted one did; with
//! [`with_step_latencies`](CrashCheck::with_step_latencies) or
//! [`with_seeds`](CrashCheck::with_seeds), in several orders of its concurrent steps.
//! [`with_engine`](CrashCheck::with_engine) registers the fakes, and
//! [`override_step`](CrashCheck::override_step) mocks the steps that would need a socket.
//!
//! ```
//! use workflow_runtime::{StepError, step, testing, workflow};
//!
//! #[step]
//! async fn fetch(item: u32) -> Result<u32, std::io::Error> {
//!     Ok(item * 10)
//! }
//!
//! #[step]
//! async fn summarize(value: u32) -> Result<String, std::io::Error> {
//!     Ok(format!("summary of {value}"))
//! }
//!
//! /// A fan-out: two branches at once, two steps each.
//! #[workflow]
//! async fn pipeline(items: Vec<u32>) -> Result<Vec<String>, StepError> {
//!     let branch = |item: u32| async move { summarize(fetch(item).await?).await };
//!     let (first, second) = tokio::join!(branch(items[0]), branch(items[1]));
//!     Ok(vec![first?, second?])
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let report = testing::CrashCheck::new::<pipeline>((vec![1, 2],))
//!     // Seeded step latencies: each seed is another order in which the steps finish.
//!     .with_step_latencies(testing::Latencies::seeded(7))
//!     .run()
//!     .await;
//! // A crash after every commit point, and between a side effect and its commit; each run
//! // resumed must end as the uninterrupted one did.
//! report.assert_ok();
//! assert!(report.crash_points() > 4);
//! # }
//! ```
//!
//! A whole agent under all of these, from a loopback HTTP server to a crash at every commit, is
//! the ticket-triage example's test: `tests/ticket_triage.rs` in the repository.
//!
//! # The crash checker
//!
//! ## How a crash is simulated
//!
//! [`CrashCheck::run`] runs the workflow once, uninterrupted, on an in-memory store, and numbers
//! the store's writes (the run's creation, each step's outcome, a timer, an event sent, a change
//! of the run's status): these are the commit points. Then, for every commit point `n`, two
//! simulations:
//!
//! - [`Variant::AfterCommit`]: commit `n` lands and the process dies at once.
//! - [`Variant::CommitLost`]: the process dies during commit `n`, which is lost; when `n` is a
//!   step's outcome, the step's side effect has happened but its outcome is not journaled.
//!
//! A process is a tokio runtime of its own, on a thread of its own, under virtual time (sleeps,
//! backoffs and durable timers take no real time). It dies when its runtime is dropped: every
//! task is gone, as after a SIGKILL, and nothing it writes afterwards lands. A new runtime with
//! a new [`Engine`] then starts the same run id again, which resumes it from what the store
//! holds, at the virtual moment of the crash, and runs it to its end (and the child runs left
//! unfinished to theirs). Simulations run on as many threads as the machine has cores: a
//! workflow of 20 steps, its 22 commit points and 45 simulations take some 15 ms in a release
//! build.
//!
//! ## What is checked
//!
//! After each resumed run:
//!
//! 1. it ends with the same output (or error) as the uninterrupted run;
//! 2. every step outcome committed before the crash is unchanged at the end: sequence number,
//!    name, status and value;
//! 3. the journal holds the same steps as the uninterrupted run's, compared by name, status
//!    and value as a multiset: after the crash the steps may finish in another order, so their
//!    sequence numbers may differ. Records that hold a time or randomness (`sleep`, `deadline:…`,
//!    `now`, `random`, `uuid`) are compared by name only. Child runs are compared the same way;
//! 4. no step whose outcome was committed before the crash executed again after the resume;
//! 5. [`Engine::replay`] of the finished run returns the same output;
//! 6. before the crash, the run made the same commits as the uninterrupted run (otherwise it is
//!    not deterministic even without a crash).
//!
//! One divergence is by design: a crash during the call of an
//! [`at_most_once`](crate::Step::at_most_once) step (its intent journaled, its outcome not)
//! ends the resumed step with [`StepErrorKind::OutcomeUnknown`](crate::StepErrorKind), and the
//! run otherwise than the uninterrupted one. The checker accepts that, and checks instead that
//! the step was not called again.
//!
//! The uninterrupted run must itself replay to its output. A failure names the latency seed, the
//! crash point (the commit's number and what it wrote: "after commit 7: step #4 summarize"), the
//! variant, and the first difference found.
//!
//! ## What the checker needs of a workflow
//!
//! Steps must be deterministic under the check, given their inputs and attempt number (stub the
//! model and the network): values are compared across simulations. The simulated processes have
//! tokio's timer, not its IO driver: a step that opens a socket fails. An output built from
//! [`durable::now`](crate::durable::now), [`random`](crate::durable::random) or
//! [`uuid`](crate::durable::uuid) differs from one simulation to the next, so keep them out of
//! what the workflow returns. A race between a step and a timer whose winner depends on how long
//! a crash delays the step is reported: it is a real dependence on crash timing. Each process
//! is bounded by a year of virtual time.
//!
//! Events sent with [`CrashCheck::with_event`] go to the checked run (not to its children), at
//! a virtual time after its start; an event whose sending the crash interrupted is sent again
//! by the resumed process, as a caller retrying would.

#![cfg(feature = "testing")]

mod compare;
mod engine;
#[cfg(test)]
mod engine_tests;
mod kit;
mod replay_check;
mod simulate;
mod store;
#[cfg(test)]
mod tests;

pub use self::engine::{TestEngine, Totals};
pub use self::kit::StepOverride;
pub(crate) use self::kit::{TestKit, kit_of, watched_attempt};
pub use self::replay_check::{Change, ReplayCheck, ReplayReport, RunVerdict, Verdict};

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::engine::{Engine, EngineBuilder};
use crate::error::Error;
use crate::store::BoxFuture;
use crate::workflow::Workflow;

use self::compare::Reference;
use self::simulate::{CrashAt, Plan, ScheduledEvent, Subject};

/// The run id under which the checked workflow runs in every simulation.
const RUN_ID: &str = "crash-check";

/// Crashes a workflow at every commit point and checks that each resumed run ends as the
/// uninterrupted one does. See the [module docs](self).
#[must_use = "a crash check does nothing until `.run().await`"]
pub struct CrashCheck {
    subject: Subject,
    input: Result<String, String>,
    latencies: Vec<Latencies>,
    registrations: Vec<Registration>,
    events: Vec<Result<ScheduledEvent, String>>,
    /// Commits whose step records a crash loses, though the store acknowledged them (the
    /// checker's own tests).
    lose_commits: Vec<u64>,
    configure: Option<Configure>,
    overrides: Vec<(String, StepOverride)>,
}

type Registration = fn(&Engine) -> BoxFuture<'static, Result<usize, Error>>;

/// See [`CrashCheck::with_engine`].
pub(crate) type Configure = Arc<dyn Fn(EngineBuilder) -> EngineBuilder + Send + Sync>;

impl fmt::Debug for CrashCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrashCheck")
            .field("workflow", &self.subject.name)
            .field("latencies", &self.latencies)
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

impl CrashCheck {
    /// A check of workflow `W` started with `input` (its arguments, as a tuple) under the run id
    /// `crash-check`, without step latencies: concurrent steps finish in the order they were
    /// called until [`with_step_latencies`](Self::with_step_latencies) or
    /// [`with_seeds`](Self::with_seeds) says otherwise.
    pub fn new<W: Workflow>(input: W::Input) -> CrashCheck {
        CrashCheck {
            subject: Subject::of::<W>(),
            input: serde_json::to_string(&input)
                .map_err(|e| format!("the input cannot be encoded as JSON: {e}")),
            latencies: vec![Latencies::none()],
            registrations: Vec::new(),
            events: Vec::new(),
            lose_commits: Vec::new(),
            configure: None,
            overrides: Vec::new(),
        }
    }

    /// Configures the engine of every simulated process with `configure`: the resources its
    /// steps read (fakes, which must give the same answers in every process), rate limits,
    /// prices. A new process gets a new engine, as after a restart, so what `configure`
    /// registers is built again for each.
    ///
    /// ```
    /// # use workflow_runtime::{Engine, testing::CrashCheck};
    /// # struct FakeModel;
    /// # fn check(check: CrashCheck) -> CrashCheck {
    /// check.with_engine(|builder| builder.resource(FakeModel))
    /// # }
    /// ```
    pub fn with_engine(
        mut self,
        configure: impl Fn(EngineBuilder) -> EngineBuilder + Send + Sync + 'static,
    ) -> Self {
        self.configure = Some(Arc::new(configure));
        self
    }

    /// Steps named `name` do what `with` says in every process, as on a
    /// [`TestEngine`]: a mocked model, a fault on the first attempt. The override must be
    /// deterministic (it is: it depends on the attempt number only).
    pub fn override_step(mut self, name: impl Into<String>, with: StepOverride) -> Self {
        self.overrides.push((name.into(), with));
        self
    }

    /// Gives every step attempt the latency `latencies` draws for it, which decides the order in
    /// which concurrent steps finish. Replaces the latencies set before.
    pub fn with_step_latencies(mut self, latencies: Latencies) -> Self {
        self.latencies = vec![latencies];
        self
    }

    /// Runs the whole check once per seed, each with [`Latencies::seeded`] (up to the bound of
    /// the latencies set before, 50 ms by default): more completion orders explored. Replaces
    /// the latencies set before.
    pub fn with_seeds(mut self, seeds: Range<u64>) -> Self {
        let max = self
            .latencies
            .first()
            .filter(|l| l.seed.is_some())
            .map_or(Latencies::DEFAULT_MAX, |l| l.max);
        self.latencies = seeds.map(|s| Latencies::seeded(s).up_to(max)).collect();
        self
    }

    /// Makes workflow `C` known to every engine of the check, as an application registers its
    /// workflows when it starts: a resumed process then resumes the unfinished runs of `C` too,
    /// even one that no parent asks for again (a child whose branch a race dropped).
    /// [`durable::child`](crate::durable::child) registers its child only when its step runs.
    pub fn register<C: Workflow>(mut self) -> Self {
        self.registrations.push(register::<C>);
        self
    }

    /// Sends the event `name` with `payload` to the checked run `at` (virtual time) after it
    /// started, as [`Engine::send_event`] would. Events are sent in the order of their times.
    pub fn with_event(
        mut self,
        name: impl Into<String>,
        payload: impl Serialize,
        at: Duration,
    ) -> Self {
        let name = name.into();
        let event = serde_json::value::to_raw_value(&payload)
            .map(|payload| ScheduledEvent {
                name: name.clone(),
                payload,
                at,
            })
            .map_err(|e| format!("the payload of event `{name}` cannot be encoded as JSON: {e}"));
        self.events.push(event);
        self
    }

    /// The store acknowledges commit `number` but loses its step records in a crash after it: a
    /// broken store, which the checker must catch.
    #[cfg(test)]
    pub(crate) fn losing_commit(mut self, number: u64) -> Self {
        self.lose_commits.push(number);
        self
    }

    /// Runs the uninterrupted run and every crash simulation, on as many threads as the machine
    /// has cores, and reports what diverged.
    ///
    /// # Panics
    ///
    /// When the thread running the simulations cannot be spawned.
    pub async fn run(self) -> Report {
        let (send, receive) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("crash-check".into())
            .spawn(move || {
                let _ = send.send(self.run_blocking());
            })
            .expect("spawn the crash checker's thread");
        match receive.await {
            Ok(report) => report,
            Err(_) => panic!("the crash checker's thread panicked"),
        }
    }

    fn run_blocking(self) -> Report {
        let mut report = Report {
            workflow: self.subject.name,
            crash_points: 0,
            simulations: 0,
            seeds: self.latencies.len(),
            unknown_outcomes: 0,
            failures: Vec::new(),
        };
        let setup = self.input.clone().and_then(|input| {
            let mut events = self.events.iter().cloned().collect::<Result<Vec<_>, _>>()?;
            events.sort_by_key(|e| e.at);
            Ok((input, events))
        });
        let (input, events) = match setup {
            Ok(setup) => setup,
            Err(problem) => {
                report.failures.push(Failure {
                    latencies: Latencies::none(),
                    crash_point: None,
                    problems: vec![problem],
                });
                return report;
            }
        };
        let plan = Arc::new(Plan {
            subject: self.subject,
            run_id: RUN_ID.to_owned(),
            input,
            registrations: self.registrations,
            events,
            lose_commits: self.lose_commits,
            configure: self.configure,
            overrides: self.overrides,
        });

        // The uninterrupted runs, one per seed.
        let references: Vec<Reference> = simulate::in_parallel(&self.latencies, |latencies| {
            Reference::record(&plan, *latencies)
        });
        report.simulations += references.len();

        // Every crash point of every seed, in both variants.
        let mut jobs = Vec::new();
        let mut failures: Vec<(usize, Failure)> = Vec::new();
        for (index, reference) in references.iter().enumerate() {
            let (problems, usable) = reference.check();
            if !problems.is_empty() {
                let failure = Failure {
                    latencies: reference.latencies,
                    crash_point: None,
                    problems,
                };
                failures.push((index, failure));
            }
            if !usable {
                continue;
            }
            report.crash_points += reference.commits.len();
            for commit in &reference.commits {
                for variant in [Variant::AfterCommit, Variant::CommitLost] {
                    jobs.push((index, reference, commit.number, variant));
                }
            }
        }
        report.simulations += jobs.len();
        let outcomes = simulate::in_parallel(&jobs, |(_, reference, commit, variant)| {
            let crash = CrashAt {
                commit: *commit,
                variant: *variant,
            };
            let simulation = simulate::simulate(&plan, reference.latencies, Some(crash));
            let unknown = compare::unknown_outcome_of(&simulation);
            (reference.compare(&simulation, crash), unknown)
        });
        for ((index, reference, commit, variant), (problems, unknown)) in jobs.iter().zip(outcomes)
        {
            report.unknown_outcomes += usize::from(unknown);
            if problems.is_empty() {
                continue;
            }
            let wrote = reference.commits[(*commit - 1) as usize].wrote.clone();
            let failure = Failure {
                latencies: reference.latencies,
                crash_point: Some(CrashPoint {
                    commit: *commit,
                    variant: *variant,
                    wrote,
                }),
                problems,
            };
            failures.push((*index, failure));
        }
        // By seed; within a seed, the uninterrupted run's failure first.
        failures.sort_by_key(|(index, _)| *index);
        report.failures = failures.into_iter().map(|(_, failure)| failure).collect();
        report
    }
}

fn register<C: Workflow>(engine: &Engine) -> BoxFuture<'static, Result<usize, Error>> {
    let engine = engine.clone();
    Box::pin(async move { engine.register::<C>().await })
}

/// The latency each step attempt waits before it starts, drawn from a seed: different seeds,
/// different orders in which concurrent steps finish. Each latency is a whole number of
/// milliseconds between zero and the bound (50 ms unless [`up_to`](Self::up_to) says
/// otherwise), a hash of the seed, the run id, the step's sequence number and name, and the
/// attempt number: the same attempt waits the same in every simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latencies {
    seed: Option<u64>,
    max: Duration,
}

impl Latencies {
    const DEFAULT_MAX: Duration = Duration::from_millis(50);

    /// No latencies: every attempt starts at once.
    pub fn none() -> Latencies {
        Latencies {
            seed: None,
            max: Duration::ZERO,
        }
    }

    /// Latencies drawn from `seed`, up to 50 ms.
    pub fn seeded(seed: u64) -> Latencies {
        Latencies {
            seed: Some(seed),
            max: Self::DEFAULT_MAX,
        }
    }

    /// The same latencies, bounded by `max` instead (rounded down to milliseconds).
    pub fn up_to(mut self, max: Duration) -> Latencies {
        self.max = max;
        self
    }

    /// The seed; `None` without latencies.
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// The latency of attempt `attempt` (from 1) of step `seq` named `name` in run `run_id`.
    pub fn latency(&self, run_id: &str, seq: u64, name: &str, attempt: u32) -> Duration {
        let Some(seed) = self.seed else {
            return Duration::ZERO;
        };
        let max_ms = self.max.as_millis() as u64;
        if max_ms == 0 {
            return Duration::ZERO;
        }
        let mut hash = mix(seed ^ 0x9e37_79b9_7f4a_7c15);
        for byte in run_id.bytes().chain([0xff]).chain(name.bytes()) {
            hash = mix(hash ^ u64::from(byte));
        }
        hash = mix(hash ^ seq);
        hash = mix(hash ^ u64::from(attempt));
        Duration::from_millis(hash % (max_ms + 1))
    }
}

/// SplitMix64's finaliser.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// How the simulated process dies at a commit point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Variant {
    /// The commit lands, then the process dies before anyone sees it landed.
    AfterCommit,
    /// The process dies during the commit, which is lost. For a step's outcome: the step's side
    /// effect happened, its outcome is not journaled.
    CommitLost,
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Variant::AfterCommit => "the commit lands, then the process dies",
            Variant::CommitLost => "the process dies during the commit, which is lost",
        })
    }
}

/// Where a simulation crashed: a commit, numbered from 1 in the order the store received them,
/// and the variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashPoint {
    commit: u64,
    variant: Variant,
    wrote: String,
}

impl CrashPoint {
    /// The commit's number, from 1 (the run's creation), in the uninterrupted run's order.
    pub fn commit(&self) -> u64 {
        self.commit
    }

    /// How the process died there.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// What the commit writes: "step #4 summarize", "run created", "run completed", ...
    pub fn wrote(&self) -> &str {
        &self.wrote
    }
}

/// "after commit 7: step #4 summarize", or "during commit 7 (lost, side effect done): step #4
/// summarize".
impl fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.variant {
            Variant::AfterCommit => write!(f, "after commit {}: {}", self.commit, self.wrote),
            Variant::CommitLost => write!(
                f,
                "during commit {} (lost, side effect done): {}",
                self.commit, self.wrote
            ),
        }
    }
}

/// One simulation that diverged (or an uninterrupted run that could not be checked).
#[derive(Debug, Clone)]
pub struct Failure {
    latencies: Latencies,
    crash_point: Option<CrashPoint>,
    problems: Vec<String>,
}

impl Failure {
    /// The latency seed; `None` without latencies.
    pub fn seed(&self) -> Option<u64> {
        self.latencies.seed
    }

    /// The latencies of the simulation.
    pub fn latencies(&self) -> Latencies {
        self.latencies
    }

    /// Where the process crashed; `None` when the uninterrupted run itself failed the check.
    pub fn crash_point(&self) -> Option<&CrashPoint> {
        self.crash_point.as_ref()
    }

    /// What diverged, the first difference first.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.latencies.seed {
            Some(seed) => write!(f, "seed {seed}")?,
            None => write!(f, "no latencies")?,
        }
        match &self.crash_point {
            Some(point) => write!(f, ", {point}")?,
            None => write!(f, ", uninterrupted run")?,
        }
        for problem in &self.problems {
            write!(f, "\n    {problem}")?;
        }
        Ok(())
    }
}

/// What a [`CrashCheck`] found. Its `Display` lists the failures, each with what is needed to
/// reproduce it.
#[derive(Debug, Clone)]
pub struct Report {
    workflow: &'static str,
    crash_points: usize,
    simulations: usize,
    seeds: usize,
    unknown_outcomes: usize,
    failures: Vec<Failure>,
}

impl Report {
    /// Crash points checked: commit points of the uninterrupted runs, summed over the seeds.
    /// Each is checked in both [`Variant`]s.
    pub fn crash_points(&self) -> usize {
        self.crash_points
    }

    /// Simulations run: the uninterrupted runs and the crashed-and-resumed ones.
    pub fn simulations(&self) -> usize {
        self.simulations
    }

    /// Simulations in which the crash came during the call of an
    /// [`at_most_once`](crate::Step::at_most_once) step and the resumed run, rightly, ended the
    /// step with an unknown outcome instead of calling it again (see [What is
    /// checked](self#what-is-checked)). Zero when the workflow has no such step, or when no
    /// crash landed in one's call.
    pub fn unknown_outcomes(&self) -> usize {
        self.unknown_outcomes
    }

    /// The simulations that diverged, in the order of seeds, commits and variants.
    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }

    /// Whether every simulation ended as the uninterrupted run did.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// Panics with the report unless every simulation ended as the uninterrupted run did.
    #[track_caller]
    pub fn assert_ok(&self) {
        if !self.is_ok() {
            panic!("{self}");
        }
    }
}

/// How many failures `Display` lists in full.
const LISTED: usize = 5;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "crash check of `{}`: {} crash points, {} simulations, {} seed{}",
            self.workflow,
            self.crash_points,
            self.simulations,
            self.seeds,
            if self.seeds == 1 { "" } else { "s" },
        )?;
        if self.failures.is_empty() {
            write!(f, ": all resumed runs ended as the uninterrupted ones")?;
            if self.unknown_outcomes > 0 {
                write!(
                    f,
                    " (or, {} of them, with an at-most-once step's outcome unknown, as promised)",
                    self.unknown_outcomes
                )?;
            }
            return Ok(());
        }
        write!(f, ": {} diverged", self.failures.len())?;
        for failure in self.failures.iter().take(LISTED) {
            write!(f, "\n  - {failure}")?;
        }
        if self.failures.len() > LISTED {
            write!(f, "\n  ... and {} more", self.failures.len() - LISTED)?;
        }
        let latencies = self.failures[0].latencies;
        if let Some(seed) = latencies.seed {
            write!(
                f,
                "\n  reproduce the first with .with_step_latencies(Latencies::seeded({seed})"
            )?;
            if latencies.max != Latencies::DEFAULT_MAX {
                write!(
                    f,
                    ".up_to(Duration::from_millis({}))",
                    latencies.max.as_millis()
                )?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}
