//! The engine: a durable queue of runs, each driven as a tokio task, and the resumption of
//! unfinished runs.
//!
//! `start` journals a run as `pending` and queues it; a dispatcher task takes queued runs in
//! order under the concurrency limits (see [`scheduler`](crate::scheduler)) and drives each one:
//! it loads the run's journal once, re-executes the body (journaled steps replay, the rest
//! run), and journals how the run ended. A run that sleeps or waits for an event longer than
//! a threshold leaves memory (`waiting`) and is queued again for when it is due.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::budget::{Budget, Spent};
use crate::circuit::CircuitConfig;
use crate::context::{Abort, RunContext, RunSetup, Shared};
use crate::error::{Error, StepError, StepErrorKind};
use crate::event::Event;
use crate::guard::catch_unwind_future;
use crate::history::{HistoryPage, LedgerGroup, LedgerRow, history_of, ledger_of};
use crate::journal::{
    self, ConcurrencyKey, InboxEvent, RunRecord, RunStatus, StepRecord, StepStatus,
};
use crate::replay::{self, order::ReplayJournal};
use crate::scheduler::{Queued, Scheduler, Slot};
use crate::store::{BoxFuture, CreateRun, MemoryStore, RedbStore, Store, Write};
use crate::workflow::{Children, Erased, ErasedWorkflow, Workflow};

mod builder;

pub use self::builder::EngineBuilder;

/// Runs workflows durably over a [`Store`].
///
/// Cloning an engine is cheap; the clones share everything.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    store: Arc<dyn Store>,
    workflows: Mutex<HashMap<String, Arc<dyn ErasedWorkflow>>>,
    /// Lock order: `active`, then `scheduler`.
    active: Mutex<HashMap<String, ActiveRun>>,
    scheduler: Mutex<Scheduler>,
    /// Records of runs just started, so that their first execution need not read them back.
    fresh: Mutex<HashMap<String, RunRecord>>,
    /// Wakes the dispatcher: a run was queued, or a slot was freed.
    dispatch: Arc<Notify>,
    dispatcher_started: AtomicBool,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    /// Counts the run tasks alive, so that `shutdown` can wait until none holds the engine.
    live_tasks: Arc<LiveTasks>,
    closed: AtomicBool,
    max_concurrent_runs: AtomicUsize,
    /// Runs sent an event while neither executing nor queued here.
    unclaimed_events: Mutex<std::collections::HashSet<String>>,
    /// Senders that wake `RunHandle::result` callers when their run ends; an entry lives while
    /// someone waits.
    endings: Mutex<HashMap<String, watch::Sender<bool>>>,
    /// Wakes those who wait for a run to leave execution (`cancel`).
    left_execution: Notify,
    last_arrival: AtomicU64,
}

#[derive(Default)]
struct LiveTasks {
    count: AtomicUsize,
    none_left: Notify,
}

/// Held by a run's task; dropped after everything else the task holds, the engine included.
struct LiveTask(Arc<LiveTasks>);

impl LiveTask {
    fn new(tasks: &Arc<LiveTasks>) -> Self {
        tasks.count.fetch_add(1, Ordering::SeqCst);
        LiveTask(Arc::clone(tasks))
    }
}

impl Drop for LiveTask {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.none_left.notify_waiters();
        }
    }
}

/// A run taken from the queue and executing.
struct ActiveRun {
    task: JoinHandle<()>,
    context: Option<Arc<RunContext>>,
    cancel_requested: bool,
    /// An event arrived while the run was executing: if it goes on to wait, it is due at once.
    event_arrived: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The dispatcher holds only a weak reference: wake it so that it sees the engine gone.
        self.closed.store(true, Ordering::SeqCst);
        self.dispatch.notify_one();
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("active_runs", &lock(&self.inner.active).len())
            .field("queued_runs", &lock(&self.inner.scheduler).queued_len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a short map operation that cannot leave it half-changed.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Options of one run, given at start.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RunOptions {
    /// Replaces the workflow's budget for this run (a per-user cap, say).
    pub budget: Option<Budget>,
    /// Runs with a higher priority leave the queue first (default 0).
    pub priority: i32,
    /// The run does not start before this time.
    pub not_before: Option<SystemTime>,
    /// At most `limit` runs with this key execute at once.
    pub concurrency_key: Option<ConcurrencyKey>,
    /// Labels (user, agent, tenant) for the cost ledger and filters.
    pub tags: std::collections::BTreeMap<String, String>,
}

impl RunOptions {
    /// This run's budget instead of the workflow's.
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The run's priority: higher leaves the queue first.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// The run does not start before `time`.
    pub fn not_before(mut self, time: SystemTime) -> Self {
        self.not_before = Some(time);
        self
    }

    /// The run does not start before `delay` has passed.
    ///
    /// A delay past the latest time the journal holds (microseconds since the Unix epoch in a
    /// `u64`, some 584,000 years) saturates at that time: `Duration::MAX` means "not before the
    /// end of time", never a panic.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use workflow_runtime::RunOptions;
    ///
    /// // Regression: run_options_delay_of_duration_max_overflowed_adding_to_now.
    /// let options = RunOptions::default().delay(Duration::MAX);
    /// let ten_thousand_years = Duration::from_secs(10_000 * 365 * 24 * 3600);
    /// assert!(options.not_before.unwrap() > SystemTime::now() + ten_thousand_years);
    /// ```
    pub fn delay(self, delay: Duration) -> Self {
        let delay_us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        let at = journal::now_us().saturating_add(delay_us);
        let time = SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_micros(at))
            // Windows' SystemTime stops in year 60,056: 2^40 s is year 36,812 everywhere.
            .unwrap_or_else(|| SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 40));
        self.not_before(time)
    }

    /// Adds the label `key` = `value` (user, agent, tenant) to the run.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// At most `limit` runs with `key` execute at once (one run at a time per user: `limit` 1).
    pub fn concurrency_key(mut self, key: impl Into<String>, limit: u32) -> Self {
        self.concurrency_key = Some(ConcurrencyKey {
            key: key.into(),
            limit: limit.max(1),
        });
        self
    }
}

fn micros(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Engine {
    /// Configures an engine before it opens its journal: limits, circuits, prices, rate limits
    /// and listeners (see [`EngineBuilder`]).
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// Opens (or creates) the journal file at `path`: the embedded default.
    ///
    /// Runs found unfinished in it resume as soon as their workflow is made known with
    /// [`register`](Engine::register) or [`start`](Engine::start).
    pub async fn open(path: impl AsRef<Path>) -> Result<Engine, Error> {
        let path = path.as_ref().to_path_buf();
        let store = tokio::task::spawn_blocking(move || RedbStore::open(path))
            .await
            .map_err(|e| {
                Error::Store(crate::StoreError::Backend(format!(
                    "the task opening the journal failed: {e}"
                )))
            })??;
        Ok(Engine::with_store(store))
    }

    /// An engine whose journal lives in memory, for tests.
    pub fn in_memory() -> Engine {
        Engine::with_store(MemoryStore::new())
    }

    /// An engine over any [`Store`].
    pub fn with_store(store: impl Store) -> Engine {
        let store: Arc<dyn Store> = Arc::new(store);
        Engine {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared::new(Arc::clone(&store))),
                store,
                workflows: Mutex::new(HashMap::new()),
                active: Mutex::new(HashMap::new()),
                scheduler: Mutex::new(Scheduler::default()),
                fresh: Mutex::new(HashMap::new()),
                dispatch: Arc::new(Notify::new()),
                dispatcher_started: AtomicBool::new(false),
                dispatcher: Mutex::new(None),
                live_tasks: Arc::new(LiveTasks::default()),
                closed: AtomicBool::new(false),
                max_concurrent_runs: AtomicUsize::new(10_000),
                unclaimed_events: Mutex::new(std::collections::HashSet::new()),
                endings: Mutex::new(HashMap::new()),
                left_execution: Notify::new(),
                last_arrival: AtomicU64::new(0),
            }),
        }
    }

    /// Calls `listener` with every [`Event`] of every run this engine executes, on the task of
    /// the run, as it happens. Keep it quick; send to a channel for anything slow.
    pub fn on_event(&self, listener: impl Fn(&Event) + Send + Sync + 'static) {
        self.inner.shared.listeners.add(Arc::new(listener));
    }

    /// Sets the engine's alert thresholds: cost per run and per window, error rate, slow steps.
    /// Crossing one calls the listeners with an [`Event::Alert`].
    pub fn set_alert_thresholds(&self, thresholds: crate::AlertThresholds) {
        self.inner.shared.listeners.set_thresholds(thresholds);
    }

    /// Sets the thresholds of the circuit breaker `name` (default
    /// [`CircuitConfig::DEFAULT`]), which steps use with `#[step(circuit = "name")]`.
    pub fn configure_circuit(&self, name: &str, config: CircuitConfig) {
        self.inner.shared.circuits.configure(name, config);
    }

    /// Sets a model's price in US dollars per million input and output tokens, so that steps
    /// reporting tokens ([`StepContext::report_usage`](crate::StepContext::report_usage)) are
    /// charged in US dollars too.
    pub fn set_price(&self, model: &str, input_usd_per_million: f64, output_usd_per_million: f64) {
        self.inner
            .shared
            .pricing
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .set(model, input_usd_per_million, output_usd_per_million);
    }

    /// Sets the capacity of the rate-limit bucket `name`, which steps draw from with
    /// `#[step(rate = "name")]`: they wait for capacity instead of failing. Use one bucket per
    /// provider, model and tenant as your quotas require (`"anthropic/claude/acme"`).
    pub fn set_rate_limit(&self, name: &str, limit: crate::RateLimit) {
        self.inner.shared.rate_limits.configure(name, limit);
    }

    /// The most runs that execute at once in this engine (default 10,000); the others wait in
    /// the queue.
    pub fn set_max_concurrent_runs(&self, runs: usize) {
        self.inner
            .max_concurrent_runs
            .store(runs.max(1), Ordering::SeqCst);
        self.inner.dispatch.notify_one();
    }

    /// A run that will sleep or wait for an event longer than this leaves memory and is brought
    /// back by replay when it is due (default 10 s).
    pub fn set_park_after(&self, threshold: Duration) {
        *self
            .inner
            .shared
            .park_after
            .write()
            .unwrap_or_else(|p| p.into_inner()) = threshold;
    }

    /// Calls `hook` before every attempt a step of this engine executes; the attempt starts
    /// after the wait it returns. For the crash checker of [`testing`](crate::testing).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn set_attempt_hook(&self, hook: crate::context::AttemptHook) {
        *self
            .inner
            .shared
            .attempt_hook
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    /// Makes workflow `W` known to the engine and queues its unfinished runs: those that were
    /// pending, running or waiting when a previous process stopped, and parked runs whose code
    /// has changed since they were parked. Returns how many runs it queued.
    ///
    /// Registering the same workflow again only looks for runs to resume. Two different types
    /// under one name are an error.
    pub async fn register<W: Workflow>(&self) -> Result<usize, Error> {
        self.register_erased(Arc::new(Erased::<W>::new())).await
    }

    async fn register_erased(&self, workflow: Arc<dyn ErasedWorkflow>) -> Result<usize, Error> {
        let workflow = self.add_workflow(workflow)?;
        let runs = self.inner.store.list_runs().await?;
        let mut queued = 0;
        for run in runs {
            if run.workflow != workflow.name() {
                continue;
            }
            let resumable = match run.status {
                RunStatus::Pending | RunStatus::Running | RunStatus::Waiting => true,
                RunStatus::Parked => run.parked_by_fingerprint != Some(workflow.fingerprint()),
                _ => false,
            };
            if resumable && self.enqueue(&run) {
                queued += 1;
            }
        }
        self.kick();
        Ok(queued)
    }

    fn add_workflow(
        &self,
        workflow: Arc<dyn ErasedWorkflow>,
    ) -> Result<Arc<dyn ErasedWorkflow>, Error> {
        let mut workflows = lock(&self.inner.workflows);
        if let Some(existing) = workflows.get(workflow.name()) {
            if existing.type_id() != workflow.type_id() {
                return Err(Error::DuplicateWorkflowName {
                    name: workflow.name().to_owned(),
                });
            }
            return Ok(Arc::clone(existing));
        }
        workflows.insert(workflow.name().to_owned(), Arc::clone(&workflow));
        Ok(workflow)
    }

    /// Whether this workflow itself (not just another one with its name) is registered.
    fn is_registered(&self, workflow: &dyn ErasedWorkflow) -> bool {
        lock(&self.inner.workflows)
            .get(workflow.name())
            .is_some_and(|existing| existing.type_id() == workflow.type_id())
    }

    /// Starts a run of `W` under `run_id` with `input` (the workflow's arguments as a tuple),
    /// and returns its handle once the run is journaled as pending; the engine's queue starts
    /// it as soon as the concurrency limits allow.
    ///
    /// Idempotent: if a run with this id exists, its handle is returned and nothing new starts
    /// (the input given now is ignored). A run id that belongs to another workflow is an error.
    pub async fn start<W: Workflow>(
        &self,
        run_id: impl Into<String>,
        input: W::Input,
    ) -> Result<RunHandle<W>, Error> {
        self.start_with::<W>(run_id, input, RunOptions::default())
            .await
    }

    /// [`start`](Engine::start) with options for this run: its budget, priority, earliest
    /// start and concurrency key.
    pub async fn start_with<W: Workflow>(
        &self,
        run_id: impl Into<String>,
        input: W::Input,
        options: RunOptions,
    ) -> Result<RunHandle<W>, Error> {
        let run_id = run_id.into();
        let input = serde_json::value::to_raw_value(&input).map_err(|e| Error::Encode {
            what: format!("the input of run {run_id:?}"),
            detail: e.to_string(),
        })?;
        self.start_erased(Arc::new(Erased::<W>::new()), &run_id, input, options)
            .await?;
        Ok(self.handle(run_id))
    }

    /// Starts run `run_id` of `workflow` with its input as JSON, unless it exists.
    async fn start_erased(
        &self,
        workflow: Arc<dyn ErasedWorkflow>,
        run_id: &str,
        input: Box<RawValue>,
        options: RunOptions,
    ) -> Result<(), Error> {
        if !self.is_registered(workflow.as_ref()) {
            self.register_erased(Arc::clone(&workflow)).await?;
        }
        let name = workflow.name();
        let now = journal::now_us();
        let record = RunRecord {
            run_id: run_id.to_owned(),
            workflow: name.to_owned(),
            fingerprint: workflow.fingerprint(),
            status: RunStatus::Pending,
            input,
            output: None,
            error: None,
            budget: options.budget.unwrap_or_else(|| workflow.budget()),
            parked_by_fingerprint: None,
            priority: options.priority,
            not_before_us: options.not_before.map(micros),
            concurrency_key: options.concurrency_key,
            waiting_for: None,
            tags: options.tags,
            resumed_at_us: Vec::new(),
            created_at_us: now,
            updated_at_us: now,
        };
        match self.inner.store.create_run(record.clone()).await? {
            CreateRun::Created => {
                tracing::info!(workflow = name, run_id = %run_id, "run queued");
                lock(&self.inner.fresh).insert(run_id.to_owned(), record.clone());
                self.enqueue(&record);
                self.kick();
            }
            CreateRun::Existing(existing) => {
                if existing.workflow != name {
                    return Err(Error::RunIdConflict {
                        run_id: run_id.to_owned(),
                        existing: existing.workflow,
                        requested: name.to_owned(),
                    });
                }
                // A run this engine executes or has queued (`register` resumed it) is left as
                // it is: queuing it again would make it due now and resume it a second time.
                if matches!(
                    existing.status,
                    RunStatus::Pending | RunStatus::Running | RunStatus::Waiting
                ) && !self.knows(run_id)
                {
                    self.enqueue(&existing);
                    self.kick();
                }
            }
        }
        Ok(())
    }

    /// The handle of run `run_id` of workflow `W`, whether or not it exists.
    pub fn handle<W: Workflow>(&self, run_id: impl Into<String>) -> RunHandle<W> {
        RunHandle {
            engine: self.clone(),
            run_id: run_id.into(),
            workflow: PhantomData,
        }
    }

    /// Resumes a parked run (after its code was fixed, say): it is journaled as pending and
    /// queued, and starts as soon as its workflow is registered (here, or in the next engine
    /// that opens the journal). A run that is executing, queued or finished is left as it is.
    /// Returns whether the run was queued.
    pub async fn resume(&self, run_id: &str) -> Result<bool, Error> {
        let mut run = self.existing(run_id).await?;
        if run.status.is_terminal() || self.knows(run_id) {
            return Ok(false);
        }
        if run.status == RunStatus::Parked {
            run.status = RunStatus::Pending;
            run.parked_by_fingerprint = None;
            run.error = None;
            run.updated_at_us = journal::now_us();
            self.inner
                .store
                .commit(vec![Write::Run(run.clone())])
                .await?;
        }
        self.enqueue(&run);
        self.kick();
        Ok(true)
    }

    /// Cancels a run: it ends at once with status `cancelled`, the steps it was executing are
    /// dropped and journaled as cancelled, and it never resumes. Returns false when the run had
    /// already finished.
    pub async fn cancel(&self, run_id: &str) -> Result<bool, Error> {
        let executing = {
            let mut active = lock(&self.inner.active);
            match active.get_mut(run_id) {
                Some(run) => {
                    match &run.context {
                        Some(context) => context.abort(Abort::Cancel),
                        None => run.cancel_requested = true,
                    }
                    true
                }
                None => {
                    lock(&self.inner.scheduler).remove(run_id);
                    false
                }
            }
        };
        if executing {
            // The run's own task journals the cancellation (with the steps it dropped). Return
            // only once that is durable, so that a crash after `cancel` cannot undo it. The run
            // may also have parked itself to wait just before: then it is queued, not ended.
            loop {
                let left = self.inner.left_execution.notified();
                tokio::pin!(left);
                left.as_mut().enable();
                if !lock(&self.inner.active).contains_key(run_id) {
                    break;
                }
                left.await;
            }
            lock(&self.inner.scheduler).remove(run_id);
        }
        let mut run = self.existing(run_id).await?;
        if run.status.is_terminal() {
            // Cancelled by its own task just now, or finished before.
            return Ok(executing && run.status == RunStatus::Cancelled);
        }
        run.status = RunStatus::Cancelled;
        run.error = Some("cancelled".into());
        run.updated_at_us = journal::now_us();
        self.inner.store.commit(vec![Write::Run(run)]).await?;
        self.inner.signal_end(run_id);
        self.inner.shared.listeners.emit(Event::RunFinished {
            run_id: run_id.to_owned(),
            status: RunStatus::Cancelled,
            message: Some("cancelled".into()),
        });
        Ok(true)
    }

    /// Sends the event `name` with `payload` to run `run_id`. It is journaled before this
    /// returns, and kept until the run consumes it with
    /// [`wait_for_event`](crate::durable::wait_for_event): an event sent before the run waits is
    /// delivered when it does. A waiting run out of memory is brought back.
    pub async fn send_event(
        &self,
        run_id: &str,
        name: &str,
        payload: impl Serialize,
    ) -> Result<(), Error> {
        let run = self.existing(run_id).await?;
        if run.status.is_terminal() {
            return Err(Error::RunFinished {
                run_id: run_id.to_owned(),
                status: run.status,
            });
        }
        let payload = serde_json::value::to_raw_value(&payload).map_err(|e| Error::Encode {
            what: format!("the payload of event `{name}`"),
            detail: e.to_string(),
        })?;
        let event = InboxEvent {
            run_id: run_id.to_owned(),
            arrival: self.next_arrival(),
            name: name.to_owned(),
            payload,
            sent_at_us: journal::now_us(),
        };
        self.inner
            .store
            .commit(vec![Write::Event(event.clone())])
            .await?;
        let mut active = lock(&self.inner.active);
        match active.get_mut(run_id) {
            Some(run) => {
                run.event_arrived = true;
                if let Some(context) = &run.context {
                    context.deliver(event);
                }
            }
            None => {
                if !lock(&self.inner.scheduler).wake(run_id, journal::now_us()) {
                    // Neither executing nor queued (its workflow is not registered yet): wake
                    // it when it is queued, or it would wait for an event it already has.
                    lock(&self.inner.unclaimed_events).insert(run_id.to_owned());
                }
                // Not launched yet: its first execution must read its events, not skip them
                // as a fresh run's.
                lock(&self.inner.fresh).remove(run_id);
            }
        }
        drop(active);
        self.kick();
        Ok(())
    }

    fn next_arrival(&self) -> u64 {
        // Unique and increasing within the process, and after every earlier process's (which
        // used the clock too).
        let now = journal::now_us();
        let mut last = self.inner.last_arrival.load(Ordering::SeqCst);
        loop {
            let next = now.max(last + 1);
            match self.inner.last_arrival.compare_exchange(
                last,
                next,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return next,
                Err(actual) => last = actual,
            }
        }
    }

    async fn existing(&self, run_id: &str) -> Result<RunRecord, Error> {
        self.inner
            .store
            .load_run(run_id.to_owned())
            .await?
            .ok_or_else(|| Error::RunNotFound {
                run_id: run_id.to_owned(),
            })
    }

    /// Replays a finished run of `W` against its journal, without executing or writing
    /// anything: every step must come from the journal. Returns the value the current code
    /// computes from the journaled steps, which a deterministic workflow makes equal to the
    /// journaled output.
    ///
    /// Use it to check that new code still replays old runs before deploying it (a step the
    /// journal does not hold, or a renamed one, is an [`Error::RunParked`] naming it; the run
    /// itself is left untouched).
    pub async fn replay<W: Workflow>(&self, run_id: &str) -> Result<W::Output, Error> {
        let mut run = self.existing(run_id).await?;
        if run.workflow != W::NAME {
            return Err(Error::RunIdConflict {
                run_id: run_id.to_owned(),
                existing: run.workflow,
                requested: W::NAME.to_owned(),
            });
        }
        let workflow = Erased::<W>::new();
        let run_id = run_id.to_owned();
        let (ending, context) = execute_in(self, &mut run, &workflow, Mode::VerifyOnly).await;
        match ending {
            Ending::Completed(raw) => {
                if let Some((seq, name)) = context.and_then(|c| c.first_unclaimed()) {
                    let detail = format!(
                        "the body returned without asking for step #{seq} (`{name}`) of the journal: the paths part there"
                    );
                    return Err(Error::ReplayDiverged { run_id, detail });
                }
                if let Some(journaled) = &run.output
                    && !same_json(journaled.get(), raw.get())
                {
                    let detail = format!(
                        "every journaled step was handed back in its place, but the body computed the output {} where the journal holds {}: the difference comes from the body's own code between steps",
                        raw.get(),
                        journaled.get()
                    );
                    return Err(Error::ReplayDiverged { run_id, detail });
                }
                serde_json::from_str(raw.get()).map_err(|e| Error::Decode {
                    run_id,
                    what: "output".into(),
                    type_name: std::any::type_name::<W::Output>(),
                    detail: e.to_string(),
                })
            }
            Ending::Failed(message) => Err(Error::RunFailed { run_id, message }),
            Ending::Parked(reason)
            | Ending::Wait {
                waiting_for: reason,
                ..
            } => Err(Error::RunParked { run_id, reason }),
            Ending::BudgetExceeded(message) => Err(Error::BudgetExceeded { run_id, message }),
            Ending::Cancelled => Err(Error::RunFinished {
                run_id,
                status: RunStatus::Cancelled,
            }),
        }
    }

    /// Every run in the journal, ordered by id.
    pub async fn runs(&self) -> Result<Vec<RunRecord>, Error> {
        Ok(self.inner.store.list_runs().await?)
    }

    /// The record of run `run_id`, if it exists.
    pub async fn run(&self, run_id: &str) -> Result<Option<RunRecord>, Error> {
        Ok(self.inner.store.load_run(run_id.to_owned()).await?)
    }

    /// The journal of run `run_id`: its finished steps, ordered by sequence number.
    pub async fn journal(&self, run_id: &str) -> Result<Vec<StepRecord>, Error> {
        Ok(self.inner.store.load_steps(run_id.to_owned()).await?)
    }

    /// A page of run `run_id`'s history: the `limit` events after the first `after`, oldest
    /// first. Pass the page's `next` as `after` for the next page.
    pub async fn history(
        &self,
        run_id: &str,
        after: usize,
        limit: usize,
    ) -> Result<HistoryPage, Error> {
        let run = self.existing(run_id).await?;
        let steps = self.journal(run_id).await?;
        let events = history_of(&run, &steps);
        let end = after.saturating_add(limit).min(events.len());
        let next = (end < events.len()).then_some(end);
        let page = events
            .into_iter()
            .skip(after)
            .take(end.saturating_sub(after));
        Ok(HistoryPage {
            events: page.collect(),
            next,
        })
    }

    /// What runs cost, grouped by workflow or by a tag's value: runs, failed runs, steps,
    /// retries, tokens, dollars and error rate, for runs created at or after `since`.
    pub async fn ledger(
        &self,
        group: LedgerGroup,
        since: Option<SystemTime>,
    ) -> Result<Vec<LedgerRow>, Error> {
        let mut runs = Vec::new();
        for run in self.runs().await? {
            let steps = self.journal(&run.run_id).await?;
            runs.push((run, steps));
        }
        Ok(ledger_of(&runs, &group, since))
    }

    /// Runs a failed run again from its failed step: the step is taken out of the journal,
    /// the run is journaled as pending and queued (it starts once its workflow is registered,
    /// here or in the next engine), and it replays the steps before and executes that one anew.
    /// Runs that did not fail (or were stopped by a budget) are left as they are; returns
    /// whether the run was queued.
    pub async fn retry(&self, run_id: &str) -> Result<bool, Error> {
        let mut run = self.existing(run_id).await?;
        if !matches!(run.status, RunStatus::Failed | RunStatus::BudgetExceeded) {
            return Ok(false);
        }
        let mut writes = Vec::new();
        if let Some(last) = self.journal(run_id).await?.last()
            && last.status == StepStatus::Failed
        {
            writes.push(Write::DeleteStep {
                run_id: run_id.to_owned(),
                seq: last.seq,
            });
        }
        run.status = RunStatus::Pending;
        run.error = None;
        run.output = None;
        run.updated_at_us = journal::now_us();
        writes.push(Write::Run(run.clone()));
        self.inner.store.commit(writes).await?;
        self.enqueue(&run);
        self.kick();
        Ok(true)
    }

    /// How many runs wait in the queue (pending, or waiting for a timer or an event), and how
    /// many execute.
    pub fn load(&self) -> (usize, usize) {
        let active = lock(&self.inner.active).len();
        let queued = lock(&self.inner.scheduler).queued_len();
        (queued, active)
    }

    /// Stops every run this engine is executing, as a crash would (their journals stay as they
    /// are, and they resume in the next engine), stops taking runs from the queue, and waits
    /// until the runs and the queue have stopped. Once the last clone of the engine is dropped
    /// after this, the journal file is closed and can be opened again in this process.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.dispatch.notify_one();
        let tasks: Vec<JoinHandle<()>> = lock(&self.inner.active)
            .drain()
            .map(|(_, run)| run.task)
            .collect();
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        let dispatcher = lock(&self.inner.dispatcher).take();
        if let Some(dispatcher) = dispatcher {
            let _ = dispatcher.await;
        }
        // Tasks that had just ended may still be dropping their clone of the engine.
        let live = &self.inner.live_tasks;
        loop {
            let none_left = live.none_left.notified();
            tokio::pin!(none_left);
            none_left.as_mut().enable();
            if live.count.load(Ordering::SeqCst) == 0 {
                break;
            }
            none_left.await;
        }
    }

    /// Whether this engine executes the run or has it queued.
    fn knows(&self, run_id: &str) -> bool {
        let active = lock(&self.inner.active);
        active.contains_key(run_id) || lock(&self.inner.scheduler).is_queued(run_id)
    }

    /// Queues `run` unless it executes already. Returns whether it was queued.
    fn enqueue(&self, run: &RunRecord) -> bool {
        let active = lock(&self.inner.active);
        if active.contains_key(&run.run_id) {
            return false;
        }
        let mut entry = queued(run);
        if lock(&self.inner.unclaimed_events).remove(&run.run_id) {
            // An event came for it before it was queued here: due now, to receive it.
            entry.due_us = 0;
        }
        lock(&self.inner.scheduler).enqueue(entry);
        true
    }

    /// Wakes the dispatcher, starting it on first use (it needs a tokio runtime, which
    /// `with_store` does not).
    fn kick(&self) {
        if !self.inner.dispatcher_started.swap(true, Ordering::SeqCst) {
            let inner = Arc::downgrade(&self.inner);
            let wake = Arc::clone(&self.inner.dispatch);
            *lock(&self.inner.dispatcher) = Some(tokio::spawn(dispatch(inner, wake)));
        }
        self.inner.dispatch.notify_one();
    }
}

/// Whether two JSON texts hold the same value (the order of an object's keys aside).
fn same_json(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn queued(run: &RunRecord) -> Queued {
    let due_us = match run.status {
        // A waiting run with no time is woken by its event (or an engine restart).
        RunStatus::Waiting => run.not_before_us.unwrap_or(u64::MAX),
        _ => run.not_before_us.unwrap_or(0),
    };
    Queued {
        run_id: run.run_id.clone(),
        workflow: run.workflow.clone(),
        priority: run.priority,
        due_us,
        key: run
            .concurrency_key
            .as_ref()
            .map(|k| (k.key.clone(), k.limit)),
    }
}

/// The dispatcher: takes due runs from the queue as slots allow, and sleeps until the next one
/// is due or something changes.
async fn dispatch(engine: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let next_due = {
            let Some(inner) = engine.upgrade() else {
                return;
            };
            if inner.closed.load(Ordering::SeqCst) {
                return;
            }
            Engine { inner }.launch_ready()
        };
        match next_due {
            Some(due) => {
                let wait = Duration::from_micros(due.saturating_sub(journal::now_us()));
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            None => notified.await,
        }
    }
}

impl Engine {
    /// Launches every queued run that is due and fits the limits; returns when the next
    /// queued run is due.
    fn launch_ready(&self) -> Option<u64> {
        let limit = self.inner.max_concurrent_runs.load(Ordering::SeqCst);
        let workflows = lock(&self.inner.workflows).clone();
        let mut active = lock(&self.inner.active);
        let (ready, next_due) =
            lock(&self.inner.scheduler).take_ready(journal::now_us(), limit, |name| {
                workflows.get(name).map(|w| w.concurrency())
            });
        for (queued, slot) in ready {
            let Some(workflow) = workflows.get(&queued.workflow).cloned() else {
                continue;
            };
            let run_id = queued.run_id;
            let span =
                tracing::info_span!("workflow_run", workflow = workflow.name(), run_id = %run_id);
            let engine = self.clone();
            let task_run_id = run_id.clone();
            let alive = LiveTask::new(&self.inner.live_tasks);
            let task = tokio::spawn(
                async move {
                    let _alive = alive;
                    engine.drive(task_run_id, workflow, slot).await;
                }
                .instrument(span),
            );
            active.insert(
                run_id,
                ActiveRun {
                    task,
                    context: None,
                    cancel_requested: false,
                    event_arrived: false,
                },
            );
        }
        next_due
    }

    /// Executes (or replays) one run until it ends or waits, and journals how.
    async fn drive(self, run_id: String, workflow: Arc<dyn ErasedWorkflow>, slot: Slot) {
        let fresh = lock(&self.inner.fresh).remove(&run_id);
        let is_fresh = fresh.is_some();
        let record = match fresh {
            Some(record) => Ok(Some(record)),
            None => self.inner.store.load_run(run_id.clone()).await,
        };
        let mut run = match record {
            Ok(Some(run)) if !run.status.is_terminal() => run,
            Ok(_) => return self.release(&run_id, &slot, None),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the run's record; it stays queued for the next engine");
                return self.release(&run_id, &slot, None);
            }
        };
        let (ending, context) = execute_in(
            &self,
            &mut run,
            workflow.as_ref(),
            Mode::Execute { is_fresh },
        )
        .await;
        let mut writes = Vec::new();
        if let (Ending::Cancelled, Some(context)) = (&ending, &context) {
            // The steps that were executing were dropped: journal them as cancelled.
            for (seq, name, started_at_us) in context.running_steps() {
                writes.push(Write::Step {
                    run_id: run_id.clone(),
                    step: cancelled_step(seq, name, started_at_us),
                });
            }
        }
        let (status, output, error) = match ending {
            Ending::Completed(output) => (RunStatus::Completed, Some(output), None),
            Ending::Failed(message) => (RunStatus::Failed, None, Some(message)),
            Ending::Parked(reason) => (RunStatus::Parked, None, Some(reason)),
            Ending::BudgetExceeded(message) => (RunStatus::BudgetExceeded, None, Some(message)),
            Ending::Cancelled => (RunStatus::Cancelled, None, Some("cancelled".to_owned())),
            Ending::Wait {
                due_us,
                waiting_for,
            } => {
                run.not_before_us = due_us;
                run.waiting_for = Some(waiting_for);
                (RunStatus::Waiting, None, None)
            }
        };
        match status {
            RunStatus::Completed => tracing::info!("run completed"),
            RunStatus::Waiting => tracing::debug!(
                waiting_for = run.waiting_for.as_deref().unwrap_or(""),
                "run waiting out of memory"
            ),
            RunStatus::Parked => {
                tracing::error!(reason = error.as_deref().unwrap_or(""), "run parked")
            }
            _ => {
                tracing::warn!(status = %status, error = error.as_deref().unwrap_or(""), "run ended")
            }
        }
        if status != RunStatus::Waiting {
            run.waiting_for = None;
            run.not_before_us = None;
        }
        run.parked_by_fingerprint = (status == RunStatus::Parked).then(|| workflow.fingerprint());
        run.status = status;
        run.output = output;
        run.error = error.clone();
        run.updated_at_us = journal::now_us();
        let waiting = (status == RunStatus::Waiting).then(|| run.clone());
        writes.push(Write::Run(run));
        if let Err(e) = self.inner.store.commit(writes).await {
            // The run stays as journaled before and resumes in the next engine.
            tracing::error!(error = %e, "could not journal how the run ended");
        }
        match &waiting {
            Some(waiting) => self.inner.shared.listeners.emit(Event::RunWaiting {
                run_id: run_id.clone(),
                due_us: waiting.not_before_us,
                waiting_for: waiting.waiting_for.clone().unwrap_or_default(),
            }),
            None => self.inner.shared.listeners.emit(Event::RunFinished {
                run_id: run_id.clone(),
                status,
                message: error,
            }),
        }
        self.release(&run_id, &slot, waiting);
    }

    /// Frees the run's slots; a waiting run goes back in the queue.
    fn release(&self, run_id: &str, slot: &Slot, waiting: Option<RunRecord>) {
        // Both locks at once: a sender of an event sees the run either executing or queued.
        let ended = {
            let mut active = lock(&self.inner.active);
            let entry = active.remove(run_id);
            let mut scheduler = lock(&self.inner.scheduler);
            scheduler.release(slot);
            match waiting {
                Some(mut waiting) => {
                    if entry.is_some_and(|e| e.event_arrived) {
                        // An event arrived while the run executed: replay at once.
                        waiting.not_before_us = Some(journal::now_us());
                    }
                    scheduler.enqueue(queued(&waiting));
                    false
                }
                None => true,
            }
        };
        if ended {
            self.inner.signal_end(run_id);
        }
        self.inner.left_execution.notify_waiters();
        self.inner.dispatch.notify_one();
    }
}

impl Inner {
    /// Wakes the `result` callers of a run that ended (or is parked).
    fn signal_end(&self, run_id: &str) {
        if let Some(sender) = lock(&self.endings).remove(run_id) {
            let _ = sender.send(true);
        }
    }

    fn subscribe_end(self: &Arc<Self>, run_id: &str) -> EndSubscription {
        let receiver = lock(&self.endings)
            .entry(run_id.to_owned())
            .or_insert_with(|| watch::channel(false).0)
            .subscribe();
        EndSubscription {
            inner: Arc::clone(self),
            run_id: run_id.to_owned(),
            receiver: Some(receiver),
        }
    }

    /// Makes `context` the executing run's, for events and cancellation; returns whether an
    /// event was sent to the run before.
    fn attach(&self, run_id: &str, context: &Arc<RunContext>) -> bool {
        let mut active = lock(&self.active);
        let Some(run) = active.get_mut(run_id) else {
            return false;
        };
        run.context = Some(Arc::clone(context));
        if run.cancel_requested {
            context.abort(Abort::Cancel);
        }
        run.event_arrived
    }
}

/// A wait for the end of a run. The last one dropped takes the run's entry out of the table of
/// endings, so that waiting on runs that already ended leaves nothing behind.
struct EndSubscription {
    inner: Arc<Inner>,
    run_id: String,
    receiver: Option<watch::Receiver<bool>>,
}

impl EndSubscription {
    /// Resolves when the run ends, or with an error when nobody can tell any more.
    async fn ended(&mut self) -> Result<(), ()> {
        match &mut self.receiver {
            Some(receiver) => receiver
                .wait_for(|done| *done)
                .await
                .map(|_| ())
                .map_err(|_| ()),
            None => Err(()),
        }
    }
}

impl Drop for EndSubscription {
    fn drop(&mut self) {
        drop(self.receiver.take());
        let mut endings = lock(&self.inner.endings);
        if endings
            .get(&self.run_id)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            endings.remove(&self.run_id);
        }
    }
}

fn cancelled_step(seq: u64, name: String, started_at_us: u64) -> StepRecord {
    StepRecord {
        seq,
        error: Some(StepError {
            step: name.clone(),
            kind: StepErrorKind::Cancelled,
            message: "the run was cancelled while this step was executing".into(),
            attempts: 1,
        }),
        name,
        status: StepStatus::Failed,
        attempts: 1,
        started_at_us,
        finished_at_us: journal::now_us(),
        output: None,
        usage: Default::default(),
        attempt_log: Vec::new(),
        delivery: None,
    }
}

enum Ending {
    Completed(Box<serde_json::value::RawValue>),
    Failed(String),
    Parked(String),
    BudgetExceeded(String),
    Cancelled,
    Wait {
        due_us: Option<u64>,
        waiting_for: String,
    },
}

/// How a run's body is executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// For real. A fresh run (started by this engine, never executed) has an empty journal
    /// and, unless one was sent since, no events: neither is read.
    Execute { is_fresh: bool },
    /// Against the journal only, writing nothing (`Engine::replay`).
    VerifyOnly,
}

/// Executes the run's body; notes a resume in `run`.
async fn execute_in(
    engine: &Engine,
    run: &mut RunRecord,
    workflow: &dyn ErasedWorkflow,
    mode: Mode,
) -> (Ending, Option<Arc<RunContext>>) {
    let inner = &engine.inner;
    let store = &inner.store;
    let verify_only = mode == Mode::VerifyOnly;
    let is_fresh = mode == Mode::Execute { is_fresh: true };
    // The journal is read once per resume; replay then costs O(steps).
    let steps = if is_fresh {
        Vec::new()
    } else {
        match store.load_steps(run.run_id.clone()).await {
            Ok(steps) => steps,
            Err(e) => {
                return (
                    Ending::Parked(format!("its journal cannot be read: {e}")),
                    None,
                );
            }
        }
    };
    let replaying = steps.len();
    let mut spent = Spent::default();
    for step in &steps {
        match step.status {
            // What failed attempts spent counts; the step itself counts once it finishes.
            StepStatus::Pending => spent.charge_usage(&step.usage),
            _ => spent.charge(&step.usage),
        }
    }
    let body_changed = run.fingerprint != workflow.fingerprint();
    if body_changed && replaying > 0 {
        tracing::warn!(
            journaled = run.fingerprint,
            current = workflow.fingerprint(),
            "resuming under a changed workflow body; steps are checked by name on replay"
        );
    }
    let resuming = replaying > 0 && !verify_only;
    if resuming {
        run.resumed_at_us.push(journal::now_us());
    }
    if replaying > 0 || verify_only {
        tracing::info!(journaled_steps = replaying, "run resumed");
        inner.shared.listeners.emit(Event::RunResumed {
            run_id: run.run_id.clone(),
            workflow: run.workflow.clone(),
            journaled_steps: replaying,
            resume: run.resumed_at_us.len(),
        });
    } else {
        inner.shared.listeners.emit(Event::RunStarted {
            run_id: run.run_id.clone(),
            workflow: run.workflow.clone(),
        });
    }
    // The change to `running` (and the note of this resume) rides on the run's next commit.
    let status_change =
        (!verify_only && (run.status != RunStatus::Running || resuming)).then(|| {
            let mut running = run.clone();
            running.status = RunStatus::Running;
            running.waiting_for = None;
            // A run woken early (by its event) is due now: a crash must not make the next
            // engine wait for the old deadline before resuming it.
            running.not_before_us = None;
            running.error = None;
            running.parked_by_fingerprint = None;
            running.updated_at_us = journal::now_us();
            running
        });
    let setup = RunSetup {
        run_id: run.run_id.clone(),
        budget: run.budget,
        created_at_us: run.created_at_us,
        body_changed,
        verify_only,
        status_change,
        children: Some(Arc::new(engine.clone())),
    };
    let context = Arc::new(RunContext::new(
        setup,
        Arc::clone(&inner.shared),
        ReplayJournal::new(steps),
        spent,
    ));
    if !verify_only {
        let event_arrived = inner.attach(&run.run_id, &context);
        // After `attach`, so that an event sent meanwhile is either in the journal or delivered.
        if !is_fresh || event_arrived {
            match store.load_events(run.run_id.clone()).await {
                Ok(events) => events.into_iter().for_each(|e| context.deliver(e)),
                Err(e) => {
                    let reason = format!("its events cannot be read: {e}");
                    return (Ending::Parked(reason), Some(context));
                }
            }
        }
    }
    let body = match workflow.start(&run.run_id, &run.input) {
        Ok(body) => body,
        Err(e) => return (Ending::Parked(e.to_string()), Some(context)),
    };
    let body = catch_unwind_future(replay::drive(
        Arc::clone(&context),
        Arc::clone(&context).scope(body),
    ));
    let ending = tokio::select! {
        biased;
        abort = context.aborted() => match abort {
            Abort::Park(reason) => Ending::Parked(reason),
            Abort::Fail(message) => Ending::Failed(message),
            Abort::Budget(message) => Ending::BudgetExceeded(message),
            Abort::Cancel => Ending::Cancelled,
            Abort::Wait { due_us, waiting_for } => Ending::Wait { due_us, waiting_for },
        },
        outcome = body => match context.first_unclaimed().filter(|_| !verify_only) {
            // The body returned without asking for an outcome the journal holds: it took
            // another path than the run did, and its ending is not the run's.
            Some((seq, name)) => Ending::Parked(format!(
                "non-determinism in run {:?}: the workflow body returned without calling step #{seq} (`{name}`), which the journal holds{}; the run is parked until code that takes the journaled path resumes it",
                run.run_id,
                if body_changed { " (the workflow body changed since this run started)" } else { "" }
            )),
            None => match outcome {
                Ok(Ok(output)) => Ending::Completed(output),
                Ok(Err(failure)) => Ending::Failed(failure.message),
                Err(panic) => Ending::Failed(format!("the workflow body {panic}")),
            },
        },
    };
    (ending, Some(context))
}

/// A run of workflow `W`: wait for its result, or look at its status.
pub struct RunHandle<W> {
    engine: Engine,
    run_id: String,
    workflow: PhantomData<fn() -> W>,
}

impl<W> Clone for RunHandle<W> {
    fn clone(&self) -> Self {
        RunHandle {
            engine: self.engine.clone(),
            run_id: self.run_id.clone(),
            workflow: PhantomData,
        }
    }
}

impl<W> std::fmt::Debug for RunHandle<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHandle")
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

impl<W: Workflow> RunHandle<W> {
    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The run's record as journaled now.
    pub async fn record(&self) -> Result<RunRecord, Error> {
        self.engine.existing(&self.run_id).await
    }

    /// Waits until the run ends (or is parked), then returns its value, decoded from the
    /// journal; or why it has none. A run that sleeps or waits for an event is waited for.
    pub async fn result(&self) -> Result<W::Output, Error> {
        let raw = self.engine.result_raw(&self.run_id).await?;
        serde_json::from_str(raw.get()).map_err(|e| Error::Decode {
            run_id: self.run_id.clone(),
            what: "output".into(),
            type_name: std::any::type_name::<W::Output>(),
            detail: e.to_string(),
        })
    }
}

impl Engine {
    /// Waits until run `run_id` ends (or is parked), then returns its output as JSON.
    async fn result_raw(&self, run_id: &str) -> Result<Box<RawValue>, Error> {
        let mut ended = self.inner.subscribe_end(run_id);
        loop {
            // Asked before the record is read: a run stops being known only after its ending
            // is journaled, so "unknown" and an unfinished record really mean nobody runs it.
            let known = self.knows(run_id);
            let record = self.existing(run_id).await?;
            let run_id = run_id.to_owned();
            match record.status {
                RunStatus::Completed => {
                    return record.output.ok_or_else(|| Error::Decode {
                        run_id: run_id.clone(),
                        what: "output".into(),
                        type_name: "the run's output",
                        detail: "the completed run has no journaled output".into(),
                    });
                }
                RunStatus::Failed => {
                    return Err(Error::RunFailed {
                        run_id,
                        message: record.error.unwrap_or_default(),
                    });
                }
                RunStatus::BudgetExceeded => {
                    return Err(Error::BudgetExceeded {
                        run_id,
                        message: record.error.unwrap_or_default(),
                    });
                }
                RunStatus::Parked if !known => {
                    return Err(Error::RunParked {
                        run_id,
                        reason: record.error.unwrap_or_default(),
                    });
                }
                RunStatus::Cancelled => {
                    return Err(Error::RunFinished {
                        run_id,
                        status: RunStatus::Cancelled,
                    });
                }
                _ if !known => {
                    return Err(Error::RunParked {
                        run_id,
                        reason: "it is unfinished and neither executing nor queued in this engine (the engine was shut down, or its workflow is not registered)".into(),
                    });
                }
                _ => {}
            }
            // Subscribed before reading the record, so an end in between is not missed.
            if ended.ended().await.is_err() {
                return Err(Error::RunParked {
                    run_id,
                    reason: "the engine stopped".into(),
                });
            }
            ended = self.inner.subscribe_end(&run_id);
        }
    }
}

impl Children for Engine {
    fn run_child(
        &self,
        workflow: Arc<dyn ErasedWorkflow>,
        run_id: String,
        input: Box<RawValue>,
    ) -> BoxFuture<'static, Result<Box<RawValue>, Error>> {
        let engine = self.clone();
        Box::pin(async move {
            engine
                .start_erased(workflow, &run_id, input, RunOptions::default())
                .await?;
            engine.result_raw(&run_id).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{WorkflowFailure, step};

    struct Quick;

    impl Workflow for Quick {
        type Input = ();
        type Output = u32;
        const NAME: &'static str = "quick";

        fn run(_: ()) -> BoxFuture<'static, Result<u32, WorkflowFailure>> {
            Box::pin(async {
                let value = step("one")
                    .run(|| async { Ok::<_, std::io::Error>(1u32) })
                    .await?;
                Ok(value)
            })
        }
    }

    /// Regression: every `result()` left an entry in the table of endings, even for runs that
    /// had long ended, so a service polling results grew without bound.
    #[tokio::test]
    async fn waiting_for_results_leaves_no_entries_behind() {
        let engine = Engine::in_memory();
        for i in 0..20 {
            let run = engine.start::<Quick>(format!("r{i}"), ()).await.unwrap();
            assert_eq!(run.result().await.unwrap(), 1);
            // Asking again, after the end, subscribes anew.
            assert_eq!(run.result().await.unwrap(), 1);
        }
        assert!(lock(&engine.inner.endings).is_empty());
    }
}
