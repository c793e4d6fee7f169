//! The engine: a durable queue of runs, each driven as a tokio task, and the resumption of
//! unfinished runs.
//!
//! `start` journals a run as `pending` and queues it; a dispatcher task takes queued runs in
//! order under the concurrency limits (see [`scheduler`](crate::scheduler)) and drives each one:
//! it loads the run's journal once, re-executes the body (journaled steps replay, the rest
//! run), and journals how the run ended. A run that sleeps or waits for an event longer than
//! a threshold leaves memory (`waiting`) and is queued again for when it is due.
//!
//! Here: the engine, its configuration and the run table (every run queued or executing, under
//! one lock). Beside it: [`builder`] (configuration before the journal opens), [`control`]
//! (resume, cancel, retry, events), [`dispatch`] (the queue's task and each run's), [`execute`]
//! (one execution of a body, and `Engine::replay`), [`handle`] (waiting for a run's end) and
//! [`inspect`] (reading runs, with or without an engine).

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

use crate::budget::{Budget, BudgetExhausted, Spent};
use crate::circuit::CircuitConfig;
use crate::context::{Abort, RunContext, RunSetup, Shared};
use crate::error::{Error, ParkReason, StepError, StepErrorKind};
use crate::event::Event;
use crate::guard::catch_unwind_future;
use crate::journal::{
    self, ConcurrencyKey, InboxEvent, RunRecord, RunStatus, StepRecord, StepStatus,
};
use crate::replay::{self, order::ReplayJournal};
use crate::scheduler::{Queued, Scheduler, Slot};
use crate::store::{BoxFuture, CreateRun, MemoryStore, RedbStore, Store, Write};
use crate::workflow::{Children, Erased, ErasedWorkflow, Workflow};

mod builder;
mod control;
mod dispatch;
mod execute;
mod handle;
mod inspect;

pub use self::builder::EngineBuilder;
use self::dispatch::{dispatch, queued};
use self::execute::{Ending, Mode, cancelled_step, execute_in};
pub use self::handle::RunHandle;
use self::handle::{EndSubscription, WeakEngine};
pub use self::inspect::Inspector;

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
    workflows: Mutex<Registry>,
    /// Every run this engine has queued or executes.
    table: Mutex<RunTable>,
    /// Wakes the dispatcher: a run was queued, or a slot was freed.
    dispatch: Arc<Notify>,
    dispatcher_started: AtomicBool,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    /// Counts the run tasks alive, so that `shutdown` can wait until none holds the engine.
    live_tasks: Arc<LiveTasks>,
    closed: AtomicBool,
    max_concurrent_runs: AtomicUsize,
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

/// The workflows an engine runs: by name, then by version.
#[derive(Default, Clone)]
pub(crate) struct Registry {
    by_name: HashMap<String, std::collections::BTreeMap<u32, Arc<dyn ErasedWorkflow>>>,
}

impl Registry {
    /// Version `version` of workflow `name`.
    pub(crate) fn get(&self, name: &str, version: u32) -> Option<Arc<dyn ErasedWorkflow>> {
        self.by_name.get(name)?.get(&version).cloned()
    }

    /// The latest version of workflow `name`.
    pub(crate) fn latest(&self, name: &str) -> Option<Arc<dyn ErasedWorkflow>> {
        self.by_name.get(name)?.values().next_back().cloned()
    }

    /// The versions of workflow `name` registered here.
    pub(crate) fn versions(&self, name: &str) -> Vec<u32> {
        self.by_name
            .get(name)
            .map(|versions| versions.keys().copied().collect())
            .unwrap_or_default()
    }

    fn add(&mut self, workflow: Arc<dyn ErasedWorkflow>) -> Result<Arc<dyn ErasedWorkflow>, Error> {
        let versions = self.by_name.entry(workflow.name().to_owned()).or_default();
        if let Some(existing) = versions.get(&workflow.version()) {
            if existing.type_id() != workflow.type_id() {
                return Err(Error::DuplicateWorkflowName {
                    name: workflow.name().to_owned(),
                });
            }
            return Ok(Arc::clone(existing));
        }
        if let Some(other) = versions.values().next()
            && other.io_types() != workflow.io_types()
        {
            return Err(Error::VersionTypesDiffer {
                workflow: workflow.name().to_owned(),
                version: workflow.version(),
                other: other.version(),
            });
        }
        versions.insert(workflow.version(), Arc::clone(&workflow));
        Ok(workflow)
    }
}

/// Every run an engine has queued or executes, under one lock: a sender of an event, a
/// canceller and the dispatcher each see a run either queued or executing, never in between.
#[derive(Default)]
struct RunTable {
    /// Runs waiting for their turn or their time.
    queue: Scheduler,
    /// Runs taken from the queue, by id.
    executing: HashMap<String, Execution>,
    /// Records of runs just started, so that their first execution need not read them back.
    fresh: HashMap<String, RunRecord>,
    /// Runs sent an event while neither executing nor queued here.
    unclaimed_events: std::collections::HashSet<String>,
    /// Runs whose ending could not be journaled (a full disk): why they stopped, for
    /// `result()`, which would otherwise read an unfinished record nobody executes.
    unjournaled: HashMap<String, ParkReason>,
}

/// A run taken from the queue.
struct Execution {
    task: JoinHandle<()>,
    stage: Stage,
    /// An event arrived while the run was executing: if it goes on to wait, it is due at once.
    event_arrived: bool,
}

/// Where a run taken from the queue is.
enum Stage {
    /// Its task starts; a cancellation waits for its context.
    Launching { cancel_requested: bool },
    /// Its body runs with this context.
    Running(Arc<RunContext>),
}

impl RunTable {
    /// Whether the run executes or is queued.
    fn knows(&self, run_id: &str) -> bool {
        self.executing.contains_key(run_id) || self.queue.is_queued(run_id)
    }
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
        let (queued, active) = self.load();
        f.debug_struct("Engine")
            .field("active_runs", &active)
            .field("queued_runs", &queued)
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
    pub(crate) budget: Option<Budget>,
    /// Runs with a higher priority leave the queue first (default 0).
    pub(crate) priority: i32,
    /// The run does not start before this time.
    pub(crate) not_before: Option<SystemTime>,
    /// At most `limit` runs with this key execute at once.
    pub(crate) concurrency_key: Option<ConcurrencyKey>,
    /// Labels (user, agent, tenant) for the cost ledger and filters.
    pub(crate) tags: std::collections::BTreeMap<String, String>,
    /// The run starting this one as its child.
    pub(crate) parent: Option<String>,
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
    /// use std::time::Duration;
    /// use workflow_runtime::RunOptions;
    ///
    /// let options = RunOptions::default().delay(Duration::from_secs(600));
    /// let never = RunOptions::default().delay(Duration::MAX); // saturates, never panics
    /// # drop((options, never));
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
                workflows: Mutex::new(Registry::default()),
                table: Mutex::new(RunTable::default()),
                dispatch: Arc::new(Notify::new()),
                dispatcher_started: AtomicBool::new(false),
                dispatcher: Mutex::new(None),
                live_tasks: Arc::new(LiveTasks::default()),
                closed: AtomicBool::new(false),
                max_concurrent_runs: AtomicUsize::new(10_000),
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
    pub(crate) fn set_alert_thresholds(&self, thresholds: crate::AlertThresholds) {
        self.inner.shared.listeners.set_thresholds(thresholds);
    }

    /// Sets the thresholds of the circuit breaker `name` (default
    /// [`CircuitConfig::DEFAULT`]), which steps use with `#[step(circuit = "name")]`.
    pub(crate) fn configure_circuit(&self, name: &str, config: CircuitConfig) {
        self.inner.shared.circuits.configure(name, config);
    }

    /// Sets a model's price in US dollars per million input and output tokens, so that steps
    /// reporting tokens ([`StepContext::report_usage`](crate::StepContext::report_usage)) are
    /// charged in US dollars too.
    pub(crate) fn set_price(
        &self,
        model: &str,
        input_usd_per_million: f64,
        output_usd_per_million: f64,
    ) {
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
    pub(crate) fn set_rate_limit(&self, name: &str, limit: crate::RateLimit) {
        self.inner.shared.rate_limits.configure(name, limit);
    }

    /// The most runs that execute at once in this engine (default 10,000); the others wait in
    /// the queue.
    pub(crate) fn set_max_concurrent_runs(&self, runs: usize) {
        self.inner
            .max_concurrent_runs
            .store(runs.max(1), Ordering::SeqCst);
        self.inner.dispatch.notify_one();
    }

    /// A run that will sleep or wait for an event longer than this leaves memory and is brought
    /// back by replay when it is due (default 10 s).
    pub(crate) fn set_park_after(&self, threshold: Duration) {
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
        for mut run in runs {
            // Each version resumes its own runs: a run continues on the version it started on.
            if run.workflow != workflow.name() || run.version != workflow.version() {
                continue;
            }
            // A run waiting for an event that was sent while no engine here ran it (by another
            // process, or by an engine without its version) is due now, not at its deadline.
            if run.status == RunStatus::Waiting
                && run.not_before_us.is_none()
                && !self
                    .inner
                    .store
                    .load_events(run.run_id.clone())
                    .await?
                    .is_empty()
            {
                run.not_before_us = Some(journal::now_us());
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
        lock(&self.inner.workflows).add(workflow)
    }

    /// Whether this workflow itself (not just another one with its name) is registered.
    fn is_registered(&self, workflow: &dyn ErasedWorkflow) -> bool {
        lock(&self.inner.workflows)
            .get(workflow.name(), workflow.version())
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
        let input = crate::journal::encode_value(&input).map_err(|detail| Error::Encode {
            what: format!("the input of run {run_id:?}"),
            detail,
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
        self.refuse_when_shut_down()?;
        if !self.is_registered(workflow.as_ref()) {
            self.register_erased(Arc::clone(&workflow)).await?;
        }
        // New runs start on the latest version of the name registered here.
        let workflow = lock(&self.inner.workflows)
            .latest(workflow.name())
            .unwrap_or(workflow);
        let name = workflow.name();
        let now = journal::now_us();
        let record = RunRecord {
            run_id: run_id.to_owned(),
            workflow: name.to_owned(),
            fingerprint: workflow.fingerprint(),
            version: workflow.version(),
            status: RunStatus::Pending,
            input,
            output: None,
            error: None,
            budget: options.budget.unwrap_or_else(|| workflow.budget()),
            parked_by_fingerprint: None,
            park_reason: None,
            budget_exhausted: None,
            priority: options.priority,
            not_before_us: options.not_before.map(micros),
            concurrency_key: options.concurrency_key,
            waiting_for: None,
            parent: options.parent.clone(),
            tags: options.tags,
            resumed_at_us: Vec::new(),
            created_at_us: now,
            updated_at_us: now,
        };
        match self.inner.store.create_run(record.clone()).await? {
            CreateRun::Created => {
                tracing::info!(workflow = name, run_id = %run_id, "run queued");
                self.inner
                    .table()
                    .fresh
                    .insert(run_id.to_owned(), record.clone());
                self.enqueue(&record);
                self.kick();
            }
            CreateRun::Existing(existing) => {
                // A child's id is derived from its parent's; a run that someone else started
                // under that id earlier is not the child, and its value is not the child's.
                if let Some(parent) = &options.parent
                    && existing.parent.as_ref() != Some(parent)
                {
                    return Err(Error::NotAChild {
                        run_id: run_id.to_owned(),
                        parent: parent.clone(),
                    });
                }
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

    async fn existing(&self, run_id: &str) -> Result<RunRecord, Error> {
        self.inner
            .store
            .load_run(run_id.to_owned())
            .await?
            .ok_or_else(|| Error::RunNotFound {
                run_id: run_id.to_owned(),
            })
    }

    /// How many runs wait in the queue (pending, or waiting for a timer or an event), and how
    /// many execute.
    pub fn load(&self) -> (usize, usize) {
        let table = self.inner.table();
        let (active, queued) = (table.executing.len(), table.queue.queued_len());
        (queued, active)
    }

    /// Stops every run this engine is executing, as a crash would (their journals stay as they
    /// are, and they resume in the next engine), stops taking runs from the queue, and waits
    /// until the runs and the queue have stopped. Once the last clone of the engine is dropped
    /// after this, the journal file is closed and can be opened again in this process.
    ///
    /// A call racing it, or made after it (`start`, `send_event`, `retry`, `resume`, a
    /// [`RunHandle::result`] of a run it stopped), returns [`Error::ShuttingDown`].
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.dispatch.notify_one();
        let tasks: Vec<JoinHandle<()>> = self
            .inner
            .table()
            .executing
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
        // Whoever waits for the end of a run that stopped here is told the engine shut down,
        // rather than waiting for an end that no task will signal.
        let endings: Vec<_> = lock(&self.inner.endings).drain().collect();
        for (_, sender) in endings {
            let _ = sender.send(true);
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

    /// [`Error::ShuttingDown`] once [`shutdown`](Engine::shutdown) began: a run started or
    /// queued then would never execute.
    fn refuse_when_shut_down(&self) -> Result<(), Error> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        Ok(())
    }

    /// Whether this engine executes the run or has it queued.
    fn knows(&self, run_id: &str) -> bool {
        self.inner.table().knows(run_id)
    }

    /// Queues `run` unless it executes already. Returns whether it was queued.
    fn enqueue(&self, run: &RunRecord) -> bool {
        let mut table = self.inner.table();
        if table.executing.contains_key(&run.run_id) {
            return false;
        }
        table.unjournaled.remove(&run.run_id);
        let mut entry = queued(run);
        if table.unclaimed_events.remove(&run.run_id) {
            // An event came for it before it was queued here: due now, to receive it.
            entry.due_us = 0;
        }
        table.queue.enqueue(entry);
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

impl Inner {
    fn table(&self) -> MutexGuard<'_, RunTable> {
        lock(&self.table)
    }

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
        let mut table = self.table();
        let Some(run) = table.executing.get_mut(run_id) else {
            return false;
        };
        if let Stage::Launching {
            cancel_requested: true,
        } = run.stage
        {
            context.abort(Abort::Cancel);
        }
        run.stage = Stage::Running(Arc::clone(context));
        run.event_arrived
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

    static BLOCK_FIRST: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

    /// Calls step `a`, or (`Renamed`) step `b`, under one workflow name.
    struct Original;
    struct Renamed;

    fn one_step(name: &'static str) -> BoxFuture<'static, Result<u32, WorkflowFailure>> {
        Box::pin(async move {
            let value = step(name)
                .run(|| async {
                    if BLOCK_FIRST.load(Ordering::SeqCst) {
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, std::io::Error>(1u32)
                })
                .await?;
            Ok(value)
        })
    }

    impl Workflow for Original {
        type Input = ();
        type Output = u32;
        const NAME: &'static str = "typed";
        fn run(_: ()) -> BoxFuture<'static, Result<u32, WorkflowFailure>> {
            Box::pin(async {
                let first = step("a")
                    .run(|| async { Ok::<_, std::io::Error>(1u32) })
                    .await?;
                Ok(first + one_step("c").await?)
            })
        }
    }

    impl Workflow for Renamed {
        type Input = ();
        type Output = u32;
        const NAME: &'static str = "typed";
        fn run(_: ()) -> BoxFuture<'static, Result<u32, WorkflowFailure>> {
            one_step("b")
        }
    }

    /// A parked run's reason reaches the caller as a type, in this engine and in the next one
    /// (it is journaled with the run), with the mismatch as the error's source.
    #[tokio::test]
    async fn a_parked_run_says_why_as_a_type_in_every_engine() {
        let store = Arc::new(MemoryStore::new());
        let first = Engine::with_store(Arc::clone(&store));
        first.start::<Original>("t", ()).await.unwrap();
        let mut journaled = false;
        for _ in 0..1000 {
            if first.journal("t").await.unwrap().len() == 1 {
                journaled = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(journaled, "step a is journaled");
        first.shutdown().await;
        BLOCK_FIRST.store(false, Ordering::SeqCst);

        let second = Engine::with_store(Arc::clone(&store));
        second.register::<Renamed>().await.unwrap();
        let error = second.handle::<Renamed>("t").result().await.unwrap_err();
        let Error::RunParked {
            reason: ParkReason::NonDeterminism(mismatch),
            ..
        } = &error
        else {
            panic!("a typed reason, got {error:?}");
        };
        assert_eq!((mismatch.seq, mismatch.journaled.as_str()), (0, "a"));
        assert_eq!(mismatch.current, "b");
        assert!(std::error::Error::source(&error).is_some());
        second.shutdown().await;

        let third = Engine::with_store(Arc::clone(&store));
        let error = third.handle::<Renamed>("t").result().await.unwrap_err();
        assert!(
            matches!(
                &error,
                Error::RunParked {
                    reason: ParkReason::NonDeterminism(m),
                    ..
                } if m.current == "b"
            ),
            "read back from the journal: {error:?}"
        );
    }

    /// Regression: `RunOptions::delay(Duration::MAX)` overflowed adding to now.
    #[test]
    fn run_options_delay_of_duration_max_saturates() {
        let options = RunOptions::default().delay(Duration::MAX);
        let ten_thousand_years = Duration::from_secs(10_000 * 365 * 24 * 3600);
        assert!(options.not_before.unwrap() > SystemTime::now() + ten_thousand_years);
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
