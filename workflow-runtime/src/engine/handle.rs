//! Run handles: waiting for a run's end and value.

use super::*;

/// A wait for the end of a run. The last one dropped takes the run's entry out of the table of
/// endings, so that waiting on runs that already ended leaves nothing behind.
pub(super) struct EndSubscription {
    pub(super) inner: Arc<Inner>,
    pub(super) run_id: String,
    pub(super) receiver: Option<watch::Receiver<bool>>,
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

/// A run of workflow `W`: wait for its result, or look at its status.
pub struct RunHandle<W> {
    pub(super) engine: Engine,
    pub(super) run_id: String,
    pub(super) workflow: PhantomData<fn() -> W>,
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
                        exhausted: record.budget_exhausted,
                    });
                }
                RunStatus::Parked if !known => {
                    let cause = record.park_reason.unwrap_or_else(|| ParkReason::Other {
                        message: record.error.unwrap_or_default(),
                    });
                    return Err(Error::parked(run_id, cause));
                }
                RunStatus::Cancelled => {
                    return Err(Error::RunFinished {
                        run_id,
                        status: RunStatus::Cancelled,
                    });
                }
                _ if !known && self.inner.closed.load(Ordering::SeqCst) => {
                    return Err(Error::ShuttingDown);
                }
                _ if !known => {
                    if let Some(reason) = self.inner.table().unjournaled.get(&run_id).cloned() {
                        return Err(Error::parked(run_id, reason));
                    }
                    let versions = lock(&self.inner.workflows).versions(&record.workflow);
                    if !versions.is_empty() && !versions.contains(&record.version) {
                        let message = format!(
                            "it waits for version {} of workflow `{}`, which this engine does not have (it has {}): it continues where a binary with that version runs",
                            record.version,
                            record.workflow,
                            versions
                                .iter()
                                .map(|v| format!("version {v}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                        return Err(Error::parked(run_id, ParkReason::NotExecuting { message }));
                    }
                    let message = "it is unfinished and neither executing nor queued in this engine (the engine was shut down, or its workflow is not registered)".to_owned();
                    return Err(Error::parked(run_id, ParkReason::NotExecuting { message }));
                }
                _ => {}
            }
            // Subscribed before reading the record, so an end in between is not missed.
            if ended.ended().await.is_err() {
                if self.inner.closed.load(Ordering::SeqCst) {
                    return Err(Error::ShuttingDown);
                }
                let message = "the engine stopped".to_owned();
                return Err(Error::parked(run_id, ParkReason::NotExecuting { message }));
            }
            ended = self.inner.subscribe_end(&run_id);
        }
    }
}

/// The engine as a run's context holds it, for child workflows: weakly, since the engine's run
/// table holds the context (a strong engine would keep both alive when a runtime is dropped
/// with runs executing).
pub(super) struct WeakEngine(pub(super) std::sync::Weak<Inner>);

impl Children for WeakEngine {
    fn run_child(
        &self,
        workflow: Arc<dyn ErasedWorkflow>,
        parent: String,
        run_id: String,
        input: Box<RawValue>,
    ) -> BoxFuture<'static, Result<Box<RawValue>, Error>> {
        match self.0.upgrade() {
            Some(inner) => Engine { inner }.run_child(workflow, parent, run_id, input),
            None => Box::pin(async move {
                let message = "the engine that runs the parent has stopped".to_owned();
                Err(Error::parked(run_id, ParkReason::NotExecuting { message }))
            }),
        }
    }
}

impl Children for Engine {
    fn run_child(
        &self,
        workflow: Arc<dyn ErasedWorkflow>,
        parent: String,
        run_id: String,
        input: Box<RawValue>,
    ) -> BoxFuture<'static, Result<Box<RawValue>, Error>> {
        let engine = self.clone();
        Box::pin(async move {
            let options = RunOptions {
                parent: Some(parent),
                ..RunOptions::default()
            };
            engine
                .start_erased(workflow, &run_id, input, options)
                .await?;
            engine.result_raw(&run_id).await
        })
    }
}
