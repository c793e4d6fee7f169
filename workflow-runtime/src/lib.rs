//! Durable execution for async Rust.
//!
//! Mark an `async fn` with `#[workflow]` and the awaited calls inside it with `#[step]`. Each
//! step's outcome is committed to an embedded [redb](https://docs.rs/redb) file before the
//! workflow moves on. When the process dies, an engine opened on the same file resumes the
//! run: finished steps hand back their journaled values without running again, and the step
//! that was interrupted runs again under the same idempotency key.
//!
//! ```
//! use workflow_runtime::{Engine, StepContext, step, workflow};
//!
//! async fn plan_questions(goal: &str) -> Result<Vec<String>, std::io::Error> {
//!     Ok(vec![format!("what is {goal}?"), format!("why {goal}?")])
//! }
//!
//! #[step(retries = 3, timeout = "60s")]
//! async fn research(question: &str) -> Result<String, std::io::Error> {
//!     let key = StepContext::current().map(|c| c.idempotency_key().to_owned());
//!     Ok(format!("answer to {question} (request {})", key.unwrap_or_default()))
//! }
//!
//! #[workflow(max_steps = 50)]
//! async fn research_agent(goal: String) -> Result<String, workflow_runtime::StepError> {
//!     #[step]
//!     let plan = plan_questions(&goal).await?;
//!     let mut findings = Vec::new();
//!     for question in &plan {
//!         findings.push(research(question).await?);
//!     }
//!     Ok(findings.join("\n"))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), workflow_runtime::Error> {
//! let dir = std::env::temp_dir().join(format!("wf-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let engine = Engine::open(dir.join("agent.redb")).await?;
//! let run = engine.start::<research_agent>("goal-42", ("rust".to_owned(),)).await?;
//! let report = run.result().await?;
//! assert!(report.contains("answer to what is rust?"));
//! assert!(report.contains("goal-42/1/research"));
//! // Starting the same run id again returns the finished run: nothing runs twice.
//! let again = engine.start::<research_agent>("goal-42", ("rust".to_owned(),)).await?;
//! assert_eq!(again.result().await?, report);
//! assert_eq!(engine.journal("goal-42").await?.len(), 3);
//! # drop(engine); std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```
//!
//! # What the macros do
//!
//! `#[workflow]` keeps the function callable with its own signature and adds a companion type
//! with the same name, implementing [`Workflow`], which the engine's methods take as a type
//! parameter: `engine.start::<research_agent>(run_id, (goal,))`. `#[step]` on a statement or
//! an `async fn` becomes a call of the closure-based [`step()`] API, which can also be used
//! directly, without the macros.
//!
//! Called directly, outside an engine, a workflow function runs its steps with their retries
//! and timeouts but journals nothing: handy in unit tests.
//!
//! # Where things are
//!
//! - [`Engine`]: starting, resuming, cancelling and inspecting runs; the durable queue and its
//!   limits ([`RunOptions`]), events ([`Engine::send_event`]), history, cost ledger, alerts;
//!   configured with [`Engine::builder`]. [`Inspector`] reads a journal without an engine.
//! - [`store`]: the storage trait, the redb file ([`RedbStore`], and
//!   [`RedbReader`](store::RedbReader) to read one without writing), [`MemoryStore`].
//! - [`step()`] and [`StepContext`]: steps and what a step body can read.
//! - [`resource()`]: the clients, pools and configuration steps use, registered on the engine
//!   with [`EngineBuilder::resource`] (a test engine registers fakes), never journaled.
//! - [`durable`]: timers, event waits, journaled time and randomness, child workflows.
//! - [`retry`]: error classes and the retry policy; [`CircuitConfig`], [`RateLimit`] and
//!   [`Budget`] for the rest of the failure semantics.
//! - `testing` (cargo feature `testing`): the guide *Testing workflows*, one runnable test of
//!   each kind; `testing::TestEngine` (virtual time, fakes as resources, step overrides, events
//!   at a virtual time, what happened in one line) and `testing::CrashCheck`, which crashes a
//!   workflow after every commit point and checks that it resumes to the same end.
#![cfg_attr(
    feature = "testing",
    doc = "  Start with the guide: [Testing workflows](testing#testing-workflows)."
)]
//! - [`admin`]: the endpoint through which the `wf` inspector reaches a running engine.
//! - [`misuse`]: every misuse of the macros and what the compiler says.
//! - `otel` (cargo feature `otel`): OpenTelemetry spans for runs and step attempts.
//!
//! # Guarantees
//!
//! 1. A step's outcome is committed with `Durability::Immediate` before the body sees it.
//! 2. Resuming re-executes the body; journaled steps return their outcome without running. The
//!    journal is read once per resume.
//! 3. A step interrupted by a crash runs again (at least once), with the same
//!    [idempotency key](StepContext::idempotency_key).
//! 4. A resumed run takes exactly the original path, concurrent branches included. Every
//!    outcome the body receives (a step's value or error, a timer firing, an event, a journaled
//!    [`durable::now`]) is journaled with its place in the order of delivery; outcomes reach the
//!    body one at a time in that order, and the body runs until it is idle before the next one
//!    is handed over, live and on replay alike. A step's identity is its sequence number and
//!    name; a mismatch on replay parks the run with a [`NonDeterminism`] error, and so does a
//!    body that goes on without asking for the journal's next outcome. Use
//!    [`durable::race`] instead of `tokio::select!`, whose random choice would break this.
//!    [`Engine::replay`] checks new code against a finished run, output included.
//! 5. The body receives the same types fresh and replayed: values decoded from the journaled
//!    bytes, failures as a [`StepError`].
//! 6. Starting an existing run id returns the existing run.
//! 7. Budgets are summed from the journal, so a crash never resets them: what a failed attempt
//!    spent is journaled before the step retries.
//! 8. Bad input (a foreign file, a locked file, an undecodable value, a panic) gives a clear
//!    error and loses nothing journaled. Every record carries a checksum checked on read, so a
//!    changed byte is a [`StoreError::CorruptRecord`] naming run and step, never other data; a
//!    damaged run record stays the problem of its run ([`Inspector::damaged_runs`]); a full
//!    disk is named to every caller ([`StoreError::DiskFull`]) and the engine carries on once
//!    there is space; a value JSON cannot give back (NaN, infinity) fails its step before it
//!    is journaled.
#![warn(missing_docs, unreachable_pub)]

pub mod admin;
mod budget;
mod circuit;
mod context;
pub mod durable;
mod engine;
mod error;
mod event;
mod guard;
mod history;
mod journal;
mod listeners;
mod monitor;
#[cfg(feature = "otel")]
pub mod otel;
mod ratelimit;
mod replay;
mod resource;
pub mod retry;
mod scheduler;
mod step;
pub mod store;
pub mod testing;
mod workflow;

pub use budget::{Budget, BudgetExhausted, Pricing, Usage};
pub use circuit::CircuitConfig;
pub use engine::{Engine, EngineBuilder, Inspector, RunHandle, RunOptions};
pub use error::{
    AdminError, Error, NonDeterminism, OpenError, ParkReason, StepError, StepErrorKind, StoreError,
    WorkflowFailure,
};
pub use event::{AlertKind, Event};
pub use history::{HistoryEvent, HistoryKind, HistoryPage, LedgerGroup, LedgerRow};
pub use journal::{
    AttemptRecord, ConcurrencyKey, InboxEvent, RunRecord, RunStatus, StepRecord, StepStatus,
    idempotency_key,
};
pub use monitor::{AlertThresholds, ErrorRateThreshold};
pub use ratelimit::RateLimit;
pub use resource::ResourceError;
pub use retry::{
    Backoff, Classify, ErrorClass, HttpError, RetryPolicy, StepFailure, classify_http,
    parse_retry_after,
};
pub use step::{Step, StepContext, resource, step};
pub use store::{BoxFuture, MemoryStore, RedbStore};
pub use workflow::Workflow;
pub use workflow_macros::{step, workflow};

/// Misuse and what the compiler says.
pub mod misuse {
    #![doc = include_str!("misuse.md")]
}

#[doc(hidden)]
pub use __private::{
    NotASpawn, NotATokioTimeout, NotATokioTimer, OwnedStepValue, Spawned, StepErrorValue,
    StepValue, TokioTimeout, TokioTimer, WorkflowArgument, WorkflowOutput,
};

/// What macro-generated code uses. Not public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    use std::error::Error;
    use std::fmt::Display;
    use std::marker::PhantomData;

    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use crate::error::WorkflowFailure;
    pub use crate::step::step;
    pub use crate::store::BoxFuture;

    /// The return type of a workflow: a `Result` whose error becomes the run's failure.
    #[diagnostic::on_unimplemented(
        message = "a #[workflow] function must return `Result<T, E>`, not `{Self}`",
        label = "the run's value is the `Ok` value, its failure the `Err` value",
        note = "E only needs to implement Display (anyhow::Error, Box<dyn Error>, String, ...)"
    )]
    pub trait WorkflowResult {
        /// The run's value.
        type Ok;
        /// Splits the body's result into the run's value or failure.
        fn into_outcome(self) -> Result<Self::Ok, WorkflowFailure>;
    }

    impl<T, E: Display> WorkflowResult for Result<T, E> {
        type Ok = T;
        fn into_outcome(self) -> Result<T, WorkflowFailure> {
            // `{:#}` prints anyhow's chain of causes; other types ignore the flag.
            self.map_err(|e| WorkflowFailure::new(format!("{e:#}")))
        }
    }

    /// The return type of a `#[step]` function.
    #[diagnostic::on_unimplemented(
        message = "a #[step] function must return `Result<T, E>`, not `{Self}`",
        label = "steps return Result so that their failures can be retried and journaled"
    )]
    pub trait StepResult {
        /// The step's value.
        type Ok;
    }

    impl<T, E> StepResult for Result<T, E> {
        type Ok = T;
    }

    /// A step's value, which is journaled when the step completes and decoded from the journal
    /// on replay. The macros run steps through [`StepValue::run`] rather than
    /// [`Step::run`](crate::Step::run): the only bound a step's value meets at the call site is
    /// then this trait, and an unserializable value is reported in these words instead of as
    /// two unmet serde bounds.
    #[diagnostic::on_unimplemented(
        message = "the value of a step must be serializable, and `{Self}` is not",
        label = "this step's value is journaled: it must implement `Serialize` and `Deserialize`",
        note = "a step's value is written to the journal when the step completes and read back when the run is replayed; derive both with `#[derive(serde::Serialize, serde::Deserialize)]`"
    )]
    pub trait StepValue: Serialize + DeserializeOwned {
        /// [`Step::run`](crate::Step::run), with `Self` as the step's value.
        fn run<F, Fut, E>(
            step: crate::Step,
            attempt: F,
        ) -> impl Future<Output = Result<Self, crate::StepError>>
        where
            F: FnMut() -> Fut,
            Fut: Future<Output = Result<Self, E>>,
            E: Into<Box<dyn Error + Send + Sync>>,
        {
            step.run(attempt)
        }
    }

    // Not recommended: an unmet bound is reported as `StepValue`, with its message, rather than
    // as the serde trait this impl needs.
    #[diagnostic::do_not_recommend]
    impl<T: Serialize + DeserializeOwned> StepValue for T {}

    /// An argument of a workflow: the arguments are journaled together as the run's input.
    ///
    /// `#[workflow]` writes each argument's type in `Workflow::Input` as
    /// `<T as WorkflowArgument>::Journaled` (which is `T`) and implements `Workflow` only where
    /// `T: WorkflowArgument`. Inside that impl the projection's own bounds prove the bounds of
    /// `Workflow::Input`, so an argument that is not serializable does not fail them in serde's
    /// words; a call of [`WorkflowArgument::journaled`] at the argument's type reports it once,
    /// in these.
    #[diagnostic::on_unimplemented(
        message = "the arguments of a workflow must be serializable, and `{Self}` is not",
        label = "a workflow's arguments are journaled as its input: they must implement `Serialize`, `Deserialize` and `Send`, and own their data",
        note = "the input is written to the journal when the run starts and read back when it resumes; derive the serde traits with `#[derive(serde::Serialize, serde::Deserialize)]`"
    )]
    pub trait WorkflowArgument: Sized {
        /// `Self`.
        type Journaled: Serialize + DeserializeOwned + Send + 'static;
        /// The argument from its journaled form: the identity.
        fn from_journaled(value: Self::Journaled) -> Self;
        /// Nothing: calling it requires the bound.
        fn journaled() {}
    }

    #[diagnostic::do_not_recommend]
    impl<T: Serialize + DeserializeOwned + Send + 'static> WorkflowArgument for T {
        type Journaled = T;
        fn from_journaled(value: T) -> T {
            value
        }
    }

    /// The `Ok` value of a workflow, journaled as the run's output. `#[workflow]` writes
    /// `Workflow::Output` as `<T as WorkflowOutput>::Journaled`, as it does the arguments (see
    /// [`WorkflowArgument`]).
    #[diagnostic::on_unimplemented(
        message = "the value a workflow returns must be serializable, and `{Self}` is not",
        label = "a workflow's `Ok` value is journaled as its output: it must implement `Serialize`, `Deserialize` and `Send`, and own its data",
        note = "the output is written to the journal when the run completes and read back by whoever asks for it; derive the serde traits with `#[derive(serde::Serialize, serde::Deserialize)]`"
    )]
    pub trait WorkflowOutput: Sized {
        /// `Self`.
        type Journaled: Serialize + DeserializeOwned + Send + 'static;
        /// The value in its journaled form: the identity.
        fn into_journaled(self) -> Self::Journaled;
        /// Nothing: calling it requires the bound.
        fn journaled() {}
    }

    #[diagnostic::do_not_recommend]
    impl<T: Serialize + DeserializeOwned + Send + 'static> WorkflowOutput for T {
        type Journaled = T;
        fn into_journaled(self) -> T {
            self
        }
    }

    /// The error of a step's attempt, which becomes a [`StepFailure`](crate::StepFailure)
    /// through `Box<dyn Error + Send + Sync>`.
    #[diagnostic::on_unimplemented(
        message = "the error of a step must be an error type, and `{Self}` is not",
        label = "a step's error must convert into `Box<dyn std::error::Error + Send + Sync>`",
        note = "a step's error becomes its failure, boxed: the called function can return `anyhow::Error`, a `String`, a `StepFailure`, or a type that implements `std::error::Error + Send + Sync + 'static`"
    )]
    // No supertrait: rustc would report an unmet `Into` (with a note naming this trait) rather
    // than this trait's message.
    pub trait StepErrorValue: Sized {
        /// The error, boxed.
        fn into_boxed(self) -> Box<dyn Error + Send + Sync>;

        /// The error with its class, by `kind` (see [`ClassifyKind`]).
        fn into_failure<K: ErrorKind<Self>>(kind: K, error: Self) -> crate::StepFailure {
            kind.failure(error)
        }
    }

    #[diagnostic::do_not_recommend]
    impl<E: Into<Box<dyn Error + Send + Sync>>> StepErrorValue for E {
        fn into_boxed(self) -> Box<dyn Error + Send + Sync> {
            self.into()
        }
    }

    /// Picks how the `#[step]` macro classifies a step's error, by autoref specialization at
    /// the call site, where the error type is concrete: `(&error).__workflow_error_kind()`
    /// resolves to [`ViaClassify`] when the type implements [`Classify`](crate::Classify), and
    /// to [`ViaChain`] otherwise. The macro then calls [`StepErrorValue::into_failure`].
    pub trait ClassifyKind {
        /// The classifier for errors that implement `Classify`.
        fn __workflow_error_kind(&self) -> ViaClassify {
            ViaClassify
        }
    }

    impl<E: crate::Classify> ClassifyKind for E {}

    /// The fallback of [`ClassifyKind`].
    pub trait ChainKind {
        /// The classifier for any other error.
        fn __workflow_error_kind(&self) -> ViaChain {
            ViaChain
        }
    }

    impl<E> ChainKind for &E {}

    /// How an error of type `E` gets its class. `ViaChain` applies to every `E`, so that an
    /// error type that does not convert into `Box<dyn Error>` is reported once, as an unmet
    /// [`StepErrorValue`].
    pub trait ErrorKind<E> {
        /// The error with its class.
        fn failure(self, error: E) -> crate::StepFailure
        where
            E: StepErrorValue;
    }

    /// Classifies with the error's own `Classify` implementation.
    pub struct ViaClassify;

    impl<E: crate::Classify> ErrorKind<E> for ViaClassify {
        fn failure(self, error: E) -> crate::StepFailure
        where
            E: StepErrorValue,
        {
            crate::StepFailure::new(error.class(), error.into_boxed())
        }
    }

    /// Classifies by the error's chain of causes.
    pub struct ViaChain;

    impl<E> ErrorKind<E> for ViaChain {
        fn failure(self, error: E) -> crate::StepFailure
        where
            E: StepErrorValue,
        {
            crate::StepFailure::from_error(error.into_boxed())
        }
    }

    /// The future of a step's attempt, as the `#[step]` macro probes its value's type at the
    /// call, where it is concrete: `(&&Probe::of(&attempt)).__workflow_step_value()` resolves
    /// to [`BorrowedValue`] when the value is a reference, and to [`AnyValue`] otherwise.
    pub struct Probe<F>(PhantomData<F>);

    impl<F> Probe<F> {
        /// The probe of `attempt`'s type.
        pub fn of(_attempt: &F) -> Self {
            Probe(PhantomData)
        }
    }

    /// What [`AnyValue`] finds: a value that is not a reference.
    pub struct Owned;

    /// A step's value as the journal needs it: owning its data. A reference (`&'static str`)
    /// meets the serde bounds of [`StepValue`] up to lifetimes, and rustc would only say, from
    /// its borrow checker, that "implementation of `Deserialize` is not general enough"; the
    /// macro checks this trait first, at the user's call, and the borrow checker does not run
    /// on a body with type errors.
    #[diagnostic::on_unimplemented(
        message = "the value of a step is journaled, so it must be owned, and `{Self}` borrows",
        label = "this step's value is a reference",
        note = "a step's value is written to the journal when the step completes and decoded from it when the run is replayed, into a value that owns its data: return `String` rather than `&str`, `Vec<T>` rather than `&[T]`, `T` rather than `&T`"
    )]
    pub trait OwnedStepValue {
        /// Nothing: calling it requires the bound.
        fn must_be_owned(_value: PhantomData<Self>) {}
    }

    #[diagnostic::do_not_recommend]
    impl OwnedStepValue for Owned {}

    /// The probe of a step whose value is a reference (see [`Probe`]).
    pub trait BorrowedValue<V: ?Sized> {
        /// The value's type.
        fn __workflow_step_value(&self) -> PhantomData<V> {
            PhantomData
        }
    }

    impl<'a, U: ?Sized, E, F> BorrowedValue<&'a U> for &Probe<F> where
        F: Future<Output = Result<&'a U, E>>
    {
    }

    /// The fallback of [`BorrowedValue`].
    pub trait AnyValue {
        /// [`Owned`].
        fn __workflow_step_value(&self) -> PhantomData<Owned> {
            PhantomData
        }
    }

    impl<F> AnyValue for Probe<F> {}

    /// The value of a call in a workflow body that `#[workflow]` cannot judge by its name: a
    /// bare `sleep(d)` is `durable::sleep` or, after `use tokio::time::sleep`, tokio's. The
    /// macro probes its type where it is concrete, by autoref specialization:
    /// `(&Call(&value)).__workflow_call_kind()` resolves to [`TimerKind`], [`TimeoutKind`] or
    /// [`SpawnKind`] for tokio's (and std's) types, to [`AnyKind`] otherwise; then each of
    /// [`NotATokioTimer`], [`NotATokioTimeout`] and [`NotASpawn`] is required of the kind
    /// found, and the one that fails says why in its words.
    pub struct Call<'a, T>(pub &'a T);

    /// What [`AnyKind`] finds.
    pub struct Deterministic;
    /// What [`TimerKind`] finds.
    pub struct TokioTimer;
    /// What [`TimeoutKind`] finds.
    pub struct TokioTimeout;
    /// What [`SpawnKind`] finds.
    pub struct Spawned;

    /// The probe of a tokio timer.
    pub trait TimerKind {
        /// [`TokioTimer`].
        fn __workflow_call_kind(&self) -> PhantomData<TokioTimer> {
            PhantomData
        }
    }

    impl TimerKind for Call<'_, tokio::time::Sleep> {}
    impl TimerKind for Call<'_, tokio::time::Interval> {}

    /// The probe of tokio's timeout.
    pub trait TimeoutKind {
        /// [`TokioTimeout`].
        fn __workflow_call_kind(&self) -> PhantomData<TokioTimeout> {
            PhantomData
        }
    }

    impl<F> TimeoutKind for Call<'_, tokio::time::Timeout<F>> {}

    /// The probe of a spawned task or thread.
    pub trait SpawnKind {
        /// [`Spawned`].
        fn __workflow_call_kind(&self) -> PhantomData<Spawned> {
            PhantomData
        }
    }

    impl<T> SpawnKind for Call<'_, tokio::task::JoinHandle<T>> {}
    impl<T> SpawnKind for Call<'_, std::thread::JoinHandle<T>> {}

    /// The fallback of the probes of [`Call`].
    pub trait AnyKind {
        /// [`Deterministic`].
        fn __workflow_call_kind(&self) -> PhantomData<Deterministic> {
            PhantomData
        }
    }

    impl<T> AnyKind for &Call<'_, T> {}

    /// A call in a workflow body that is not tokio's timer.
    #[diagnostic::on_unimplemented(
        message = "this call is tokio's timer, which starts over on every replay and is lost in a crash; use `durable::sleep(duration).await`, whose wake-up time is journaled",
        label = "a `tokio::time` timer, named through a `use`",
        note = "#[workflow] judges calls by their names, and this name does not say whose it is; its type does. If replaying it is harmless, mark the statement `#[allow_nondeterministic]`"
    )]
    pub trait NotATokioTimer {
        /// Nothing: calling it requires the bound.
        fn check(_kind: PhantomData<Self>) {}
    }

    /// A call in a workflow body that is not tokio's timeout.
    #[diagnostic::on_unimplemented(
        message = "this call is tokio's timeout, which races the clock and can end another way when the workflow is replayed; give the step a timeout instead, like `#[step(timeout = \"60s\")]`",
        label = "`tokio::time::timeout`, named through a `use`",
        note = "#[workflow] judges calls by their names, and this name does not say whose it is; its type does. If replaying it is harmless, mark the statement `#[allow_nondeterministic]`"
    )]
    pub trait NotATokioTimeout {
        /// Nothing: calling it requires the bound.
        fn check(_kind: PhantomData<Self>) {}
    }

    /// A call in a workflow body that does not spawn a task or a thread.
    #[diagnostic::on_unimplemented(
        message = "this call spawns a task, which runs outside the workflow's task, where steps are not journaled and nothing is replayed; start a child workflow with `durable::child::<W>(input).await`, or await steps together with `join_all`",
        label = "a spawned task or thread, named through a `use`",
        note = "#[workflow] judges calls by their names, and this name does not say whose it is; its type does. If replaying it is harmless, mark the statement `#[allow_nondeterministic]`"
    )]
    pub trait NotASpawn {
        /// Nothing: calling it requires the bound.
        fn check(_kind: PhantomData<Self>) {}
    }

    #[diagnostic::do_not_recommend]
    impl NotATokioTimer for Deterministic {}
    #[diagnostic::do_not_recommend]
    impl NotATokioTimer for TokioTimeout {}
    #[diagnostic::do_not_recommend]
    impl NotATokioTimer for Spawned {}
    #[diagnostic::do_not_recommend]
    impl NotATokioTimeout for Deterministic {}
    #[diagnostic::do_not_recommend]
    impl NotATokioTimeout for TokioTimer {}
    #[diagnostic::do_not_recommend]
    impl NotATokioTimeout for Spawned {}
    #[diagnostic::do_not_recommend]
    impl NotASpawn for Deterministic {}
    #[diagnostic::do_not_recommend]
    impl NotASpawn for TokioTimer {}
    #[diagnostic::do_not_recommend]
    impl NotASpawn for TokioTimeout {}

    /// Maps the error of a step's attempt with `classify`, which the macro writes at the call
    /// site so that the concrete error type picks its classifier.
    pub async fn classified<Fut, T, E, C>(
        attempt: Fut,
        classify: C,
    ) -> Result<T, crate::StepFailure>
    where
        Fut: Future<Output = Result<T, E>>,
        C: FnOnce(E) -> crate::StepFailure,
    {
        attempt.await.map_err(classify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_static<T: Send + Sync + 'static>() {}

    #[test]
    fn public_types_are_send_sync_static() {
        assert_send_sync_static::<Engine>();
        assert_send_sync_static::<RunHandle<DummyWorkflow>>();
        assert_send_sync_static::<Error>();
        assert_send_sync_static::<StepError>();
        assert_send_sync_static::<StepContext>();
        assert_send_sync_static::<RedbStore>();
        assert_send_sync_static::<MemoryStore>();
        assert_send_sync_static::<RunRecord>();
        assert_send_sync_static::<StepRecord>();
        assert_send_sync_static::<Step>();
    }

    struct DummyWorkflow;
    impl Workflow for DummyWorkflow {
        type Input = ();
        type Output = ();
        const NAME: &'static str = "dummy";
        fn run(_: ()) -> BoxFuture<'static, Result<(), WorkflowFailure>> {
            Box::pin(async { Ok(()) })
        }
    }
}
