//! The engine: starts runs, drives each as a tokio task, and resumes unfinished runs.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::budget::{Budget, Spent};
use crate::circuit::CircuitConfig;
use crate::context::{Abort, RunContext, RunSetup, Shared};
use crate::error::Error;
use crate::event::Event;
use crate::journal::{self, ReplayJournal, RunRecord, RunStatus, StepRecord};
use crate::step::catch_unwind_future;
use crate::store::{CreateRun, MemoryStore, RedbStore, Store, Write};
use crate::workflow::{Erased, ErasedWorkflow, Workflow};

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
    workflows: Mutex<HashMap<&'static str, Arc<dyn ErasedWorkflow>>>,
    active: Mutex<HashMap<String, ActiveRun>>,
}

struct ActiveRun {
    finished: watch::Receiver<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("active_runs", &lock(&self.inner.active).len())
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
}

impl RunOptions {
    /// This run's budget instead of the workflow's.
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }
}

impl Engine {
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
            }),
        }
    }

    /// Calls `listener` with every [`Event`] of every run this engine executes, on the task of
    /// the run, as it happens. Keep it quick; send to a channel for anything slow.
    pub fn on_event(&self, listener: impl Fn(&Event) + Send + Sync + 'static) {
        self.inner.shared.listeners.add(Arc::new(listener));
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

    /// Makes workflow `W` known to the engine and resumes its unfinished runs: those that were
    /// running when a previous process stopped, and parked runs whose code has changed since
    /// they were parked. Returns how many runs it resumed.
    ///
    /// Registering the same workflow again only looks for runs to resume. Two different types
    /// under one name are an error.
    pub async fn register<W: Workflow>(&self) -> Result<usize, Error> {
        let workflow = self.add_workflow::<W>()?;
        let runs = self.inner.store.list_runs().await?;
        let mut resumed = 0;
        for run in runs {
            if run.workflow != W::NAME {
                continue;
            }
            let resumable = match run.status {
                RunStatus::Pending | RunStatus::Running => true,
                RunStatus::Parked => run.parked_by_fingerprint != Some(W::FINGERPRINT),
                _ => false,
            };
            if resumable && self.launch(run, Arc::clone(&workflow)) {
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    fn add_workflow<W: Workflow>(&self) -> Result<Arc<dyn ErasedWorkflow>, Error> {
        let mut workflows = lock(&self.inner.workflows);
        if let Some(existing) = workflows.get(W::NAME) {
            if existing.type_id() != std::any::TypeId::of::<W>() {
                return Err(Error::DuplicateWorkflowName {
                    name: W::NAME.to_owned(),
                });
            }
            return Ok(Arc::clone(existing));
        }
        let workflow: Arc<dyn ErasedWorkflow> = Arc::new(Erased::<W>::new());
        workflows.insert(W::NAME, Arc::clone(&workflow));
        Ok(workflow)
    }

    fn is_registered<W: Workflow>(&self) -> bool {
        lock(&self.inner.workflows).contains_key(W::NAME)
    }

    /// Starts a run of `W` under `run_id` with `input` (the workflow's arguments as a tuple),
    /// and returns its handle once the run is journaled.
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

    /// [`start`](Engine::start) with options for this run.
    pub async fn start_with<W: Workflow>(
        &self,
        run_id: impl Into<String>,
        input: W::Input,
        options: RunOptions,
    ) -> Result<RunHandle<W>, Error> {
        let run_id = run_id.into();
        if !self.is_registered::<W>() {
            self.register::<W>().await?;
        }
        let workflow = self.add_workflow::<W>()?;
        let input = serde_json::value::to_raw_value(&input).map_err(|e| Error::Encode {
            what: format!("the input of run {run_id:?}"),
            detail: e.to_string(),
        })?;
        let now = journal::now_us();
        let record = RunRecord {
            run_id: run_id.clone(),
            workflow: W::NAME.to_owned(),
            fingerprint: W::FINGERPRINT,
            status: RunStatus::Running,
            input,
            output: None,
            error: None,
            budget: options.budget.unwrap_or_else(W::budget),
            parked_by_fingerprint: None,
            created_at_us: now,
            updated_at_us: now,
        };
        match self.inner.store.create_run(record.clone()).await? {
            CreateRun::Created => {
                tracing::info!(workflow = W::NAME, run_id = %run_id, "run started");
                self.launch(record, workflow);
            }
            CreateRun::Existing(existing) => {
                if existing.workflow != W::NAME {
                    return Err(Error::RunIdConflict {
                        run_id,
                        existing: existing.workflow,
                        requested: W::NAME.to_owned(),
                    });
                }
                if matches!(existing.status, RunStatus::Pending | RunStatus::Running) {
                    self.launch(existing, workflow);
                }
            }
        }
        Ok(self.handle(run_id))
    }

    /// The handle of run `run_id` of workflow `W`, whether or not it exists.
    pub fn handle<W: Workflow>(&self, run_id: impl Into<String>) -> RunHandle<W> {
        RunHandle {
            engine: self.clone(),
            run_id: run_id.into(),
            workflow: PhantomData,
        }
    }

    /// Resumes a parked run (after its code was fixed, say). Its workflow must be registered.
    /// A run that is already executing, or finished, is left as it is.
    pub async fn resume(&self, run_id: &str) -> Result<(), Error> {
        let run = self
            .inner
            .store
            .load_run(run_id.to_owned())
            .await?
            .ok_or_else(|| Error::RunNotFound {
                run_id: run_id.to_owned(),
            })?;
        let workflow = lock(&self.inner.workflows)
            .get(run.workflow.as_str())
            .cloned()
            .ok_or_else(|| Error::WorkflowNotRegistered {
                run_id: run_id.to_owned(),
                workflow: run.workflow.clone(),
            })?;
        if !run.status.is_terminal() {
            self.launch(run, workflow);
        }
        Ok(())
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
        let run = self.run(run_id).await?.ok_or_else(|| Error::RunNotFound {
            run_id: run_id.to_owned(),
        })?;
        if run.workflow != W::NAME {
            return Err(Error::RunIdConflict {
                run_id: run_id.to_owned(),
                existing: run.workflow,
                requested: W::NAME.to_owned(),
            });
        }
        let workflow = Erased::<W>::new();
        let run_id = run_id.to_owned();
        match execute_with(&self.inner, &run, &workflow, true).await {
            Ending::Completed(raw) => serde_json::from_str(raw.get()).map_err(|e| Error::Decode {
                run_id,
                what: "output".into(),
                type_name: std::any::type_name::<W::Output>(),
                detail: e.to_string(),
            }),
            Ending::Failed(message) => Err(Error::RunFailed { run_id, message }),
            Ending::Parked(reason) => Err(Error::RunParked { run_id, reason }),
            Ending::BudgetExceeded(message) => Err(Error::BudgetExceeded { run_id, message }),
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

    /// Stops every run this engine is executing, as a crash would (their journals stay as they
    /// are, and they resume in the next engine), and waits until they have stopped.
    pub async fn shutdown(&self) {
        let tasks: Vec<JoinHandle<()>> = lock(&self.inner.active)
            .drain()
            .filter_map(|(_, run)| run.task)
            .collect();
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Waits until run `run_id` is not executing in this engine.
    async fn wait_until_idle(&self, run_id: &str) {
        let finished = lock(&self.inner.active)
            .get(run_id)
            .map(|run| run.finished.clone());
        if let Some(mut finished) = finished {
            // An error means the driver is gone, which also means the run is idle.
            let _ = finished.wait_for(|done| *done).await;
        }
    }

    /// Spawns the task that drives `run`, unless it is executing already. Returns whether it
    /// spawned one.
    fn launch(&self, run: RunRecord, workflow: Arc<dyn ErasedWorkflow>) -> bool {
        let mut active = lock(&self.inner.active);
        if active.contains_key(&run.run_id) {
            return false;
        }
        let (done, finished) = watch::channel(false);
        let run_id = run.run_id.clone();
        let span =
            tracing::info_span!("workflow_run", workflow = workflow.name(), run_id = %run_id);
        let engine = self.clone();
        let task_run_id = run_id.clone();
        active.insert(
            run_id.clone(),
            ActiveRun {
                finished,
                task: None,
            },
        );
        let task = tokio::spawn(
            async move {
                drive(&engine.inner, run, workflow).await;
                lock(&engine.inner.active).remove(&task_run_id);
                let _ = done.send(true);
            }
            .instrument(span),
        );
        if let Some(slot) = active.get_mut(&run_id) {
            slot.task = Some(task);
        }
        true
    }
}

/// Executes (or replays) one run to its end and journals how it ended.
async fn drive(engine: &Inner, mut run: RunRecord, workflow: Arc<dyn ErasedWorkflow>) {
    let ending = execute(engine, &run, workflow.as_ref()).await;
    let (status, output, error) = match ending {
        Ending::Completed(output) => (RunStatus::Completed, Some(output), None),
        Ending::Failed(message) => (RunStatus::Failed, None, Some(message)),
        Ending::Parked(reason) => (RunStatus::Parked, None, Some(reason)),
        Ending::BudgetExceeded(message) => (RunStatus::BudgetExceeded, None, Some(message)),
    };
    match status {
        RunStatus::Completed => tracing::info!("run completed"),
        RunStatus::Parked => tracing::error!(reason = error.as_deref().unwrap_or(""), "run parked"),
        _ => tracing::warn!(status = %status, error = error.as_deref().unwrap_or(""), "run ended"),
    }
    run.parked_by_fingerprint = (status == RunStatus::Parked).then(|| workflow.fingerprint());
    run.status = status;
    run.output = output;
    run.error = error.clone();
    run.updated_at_us = journal::now_us();
    let run_id = run.run_id.clone();
    if let Err(e) = engine.store.commit(vec![Write::Run(run)]).await {
        // The run stays `running` in the journal and resumes in the next engine.
        tracing::error!(error = %e, "could not journal how the run ended");
    }
    engine.shared.listeners.emit(Event::RunFinished {
        run_id,
        status,
        message: error,
    });
}

enum Ending {
    Completed(Box<serde_json::value::RawValue>),
    Failed(String),
    Parked(String),
    BudgetExceeded(String),
}

async fn execute(engine: &Inner, run: &RunRecord, workflow: &dyn ErasedWorkflow) -> Ending {
    execute_with(engine, run, workflow, false).await
}

async fn execute_with(
    engine: &Inner,
    run: &RunRecord,
    workflow: &dyn ErasedWorkflow,
    verify_only: bool,
) -> Ending {
    let store = &engine.store;
    // The journal is read once per resume; replay then costs O(steps).
    let steps = match store.load_steps(run.run_id.clone()).await {
        Ok(steps) => steps,
        Err(e) => return Ending::Parked(format!("its journal cannot be read: {e}")),
    };
    let replaying = steps.len();
    let mut spent = Spent::default();
    for step in &steps {
        spent.charge(&step.usage);
    }
    let body_changed = run.fingerprint != workflow.fingerprint();
    if body_changed && replaying > 0 {
        tracing::warn!(
            journaled = run.fingerprint,
            current = workflow.fingerprint(),
            "resuming under a changed workflow body; steps are checked by name on replay"
        );
    }
    if replaying > 0 || verify_only {
        tracing::info!(journaled_steps = replaying, "run resumed");
        engine.shared.listeners.emit(Event::RunResumed {
            run_id: run.run_id.clone(),
            workflow: run.workflow.clone(),
            journaled_steps: replaying,
        });
    } else {
        engine.shared.listeners.emit(Event::RunStarted {
            run_id: run.run_id.clone(),
            workflow: run.workflow.clone(),
        });
    }
    let setup = RunSetup {
        run_id: run.run_id.clone(),
        budget: run.budget,
        created_at_us: run.created_at_us,
        body_changed,
        verify_only,
    };
    let context = Arc::new(RunContext::new(
        setup,
        Arc::clone(&engine.shared),
        ReplayJournal::new(steps),
        spent,
    ));
    let body = match workflow.start(&run.run_id, &run.input) {
        Ok(body) => body,
        Err(e) => return Ending::Parked(e.to_string()),
    };
    let body = catch_unwind_future(Arc::clone(&context).scope(body));
    tokio::select! {
        biased;
        abort = context.aborted() => match abort {
            Abort::Park(reason) => Ending::Parked(reason),
            Abort::Fail(message) => Ending::Failed(message),
            Abort::Budget(message) => Ending::BudgetExceeded(message),
        },
        outcome = body => match outcome {
            Ok(Ok(output)) => Ending::Completed(output),
            Ok(Err(failure)) => Ending::Failed(failure.message),
            Err(panic) => Ending::Failed(format!("the workflow body {panic}")),
        },
    }
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
        self.engine
            .run(&self.run_id)
            .await?
            .ok_or_else(|| Error::RunNotFound {
                run_id: self.run_id.clone(),
            })
    }

    /// Waits until the run stops executing in this engine, then returns its value, decoded
    /// from the journal; or why it has none.
    pub async fn result(&self) -> Result<W::Output, Error> {
        self.engine.wait_until_idle(&self.run_id).await;
        let record = self.record().await?;
        let run_id = self.run_id.clone();
        match record.status {
            RunStatus::Completed => {
                let raw = record.output.ok_or_else(|| Error::Decode {
                    run_id: run_id.clone(),
                    what: "output".into(),
                    type_name: std::any::type_name::<W::Output>(),
                    detail: "the completed run has no journaled output".into(),
                })?;
                serde_json::from_str(raw.get()).map_err(|e| Error::Decode {
                    run_id,
                    what: "output".into(),
                    type_name: std::any::type_name::<W::Output>(),
                    detail: e.to_string(),
                })
            }
            RunStatus::Failed => Err(Error::RunFailed {
                run_id,
                message: record.error.unwrap_or_default(),
            }),
            RunStatus::BudgetExceeded => Err(Error::BudgetExceeded {
                run_id,
                message: record.error.unwrap_or_default(),
            }),
            RunStatus::Parked => Err(Error::RunParked {
                run_id,
                reason: record.error.unwrap_or_default(),
            }),
            RunStatus::Pending | RunStatus::Running => Err(Error::RunParked {
                run_id,
                reason: "it is unfinished and not executing in this engine (the engine was shut down, or its workflow is not registered)".into(),
            }),
        }
    }
}
