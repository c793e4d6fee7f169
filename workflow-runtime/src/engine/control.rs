//! Control of runs from outside them: resume, cancel, retry, and events sent to them.

use super::*;

impl Engine {
    /// Resumes a parked run (after its code was fixed, say): it is journaled as pending and
    /// queued, and starts as soon as its workflow is registered (here, or in the next engine
    /// that opens the journal). A run that is executing, queued or finished is left as it is.
    /// Returns whether the run was queued.
    pub async fn resume(&self, run_id: &str) -> Result<bool, Error> {
        self.refuse_when_shut_down()?;
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

    /// Moves an unfinished run that is not executing (parked, waiting, or waiting for a
    /// version no engine here has) onto version `version` of its workflow, registered in this
    /// engine, when its whole journal replays on that version; it then continues on it. A
    /// journal that does not replay there is refused with what diverged
    /// ([`Error::MigrationRefused`]), and the run is left as it was.
    pub async fn migrate(&self, run_id: &str, version: u32) -> Result<(), Error> {
        self.refuse_when_shut_down()?;
        let mut run = self.existing(run_id).await?;
        let refused = |detail: String| Error::MigrationRefused {
            run_id: run_id.to_owned(),
            version,
            detail,
        };
        if run.status.is_terminal() {
            return Err(Error::RunFinished {
                run_id: run_id.to_owned(),
                status: run.status,
            });
        }
        if self.inner.table().executing.contains_key(run_id) {
            return Err(refused(
                "it is executing; migrate it while it waits or is parked".into(),
            ));
        }
        let Some(target) = lock(&self.inner.workflows).get(&run.workflow, version) else {
            return Err(refused(format!(
                "version {version} of `{}` is not registered in this engine",
                run.workflow
            )));
        };
        journal_replays_on(self, run.clone(), target.as_ref())
            .await
            .map_err(refused)?;
        run.version = version;
        run.fingerprint = target.fingerprint();
        if run.status == RunStatus::Parked {
            run.status = RunStatus::Pending;
            run.parked_by_fingerprint = None;
            run.park_reason = None;
            run.error = None;
        }
        run.updated_at_us = journal::now_us();
        self.inner
            .store
            .commit(vec![Write::Run(run.clone())])
            .await?;
        // Queued under its old version: queue it again under the new one.
        self.inner.table().queue.remove(run_id);
        self.enqueue(&run);
        self.kick();
        Ok(())
    }

    /// Starts run `new_run_id` as a fork of run `run_id`: it keeps the journaled outcomes of
    /// steps before sequence number `from_step` and runs the rest on version `version` of the
    /// workflow (registered here), from the same input and budget. The kept prefix must replay
    /// on that version (else [`Error::MigrationRefused`] says what diverged, and nothing is
    /// written). The fork's steps have its own idempotency keys (they derive from its run id),
    /// so services see the re-run steps as new calls. The original run is left as it is.
    pub async fn fork(
        &self,
        run_id: &str,
        from_step: u64,
        version: u32,
        new_run_id: &str,
    ) -> Result<(), Error> {
        self.refuse_when_shut_down()?;
        let original = self.existing(run_id).await?;
        let refused = |detail: String| Error::MigrationRefused {
            run_id: run_id.to_owned(),
            version,
            detail,
        };
        let Some(target) = lock(&self.inner.workflows).get(&original.workflow, version) else {
            return Err(refused(format!(
                "version {version} of `{}` is not registered in this engine",
                original.workflow
            )));
        };
        let prefix: Vec<Write> = self
            .journal(run_id)
            .await?
            .into_iter()
            .filter(|step| step.seq < from_step)
            .map(|step| Write::Step {
                run_id: new_run_id.to_owned(),
                step,
            })
            .collect();
        let mut fork = RunRecord::new(
            new_run_id,
            original.workflow.clone(),
            target.fingerprint(),
            original.input.clone(),
        );
        fork.version = version;
        fork.budget = original.budget;
        fork.priority = original.priority;
        fork.concurrency_key = original.concurrency_key.clone();
        fork.tags = original.tags.clone();
        // The kept prefix must replay on the target: checked on a copy in memory first.
        let check = Engine::with_store(crate::store::MemoryStore::new());
        let mut writes = vec![Write::Run(fork.clone())];
        writes.extend(prefix.iter().cloned());
        check.inner.store.commit(writes).await?;
        let replayed = journal_replays_on(&check, fork.clone(), target.as_ref()).await;
        check.shutdown().await;
        replayed.map_err(refused)?;
        match self.inner.store.create_run(fork.clone()).await? {
            crate::store::CreateRun::Created => {}
            crate::store::CreateRun::Existing(_) => {
                return Err(refused(format!("run {new_run_id:?} exists already")));
            }
        }
        // A crash between the two commits leaves a fork with a shorter prefix: it re-runs
        // those steps, as a crash during any step would.
        if !prefix.is_empty() {
            self.inner.store.commit(prefix).await?;
        }
        self.enqueue(&fork);
        self.kick();
        Ok(())
    }

    /// Cancels a run: it ends at once with status `cancelled`, the steps it was executing are
    /// dropped and journaled as cancelled, and it never resumes. Returns false when the run had
    /// already finished.
    pub async fn cancel(&self, run_id: &str) -> Result<bool, Error> {
        let executing = {
            let mut table = self.inner.table();
            match table.executing.get_mut(run_id) {
                Some(run) => {
                    match &mut run.stage {
                        Stage::Running(context) => context.abort(Abort::Cancel),
                        Stage::Launching { cancel_requested } => *cancel_requested = true,
                    }
                    true
                }
                None => {
                    table.queue.remove(run_id);
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
                if !self.inner.table().executing.contains_key(run_id) {
                    break;
                }
                left.await;
            }
            self.inner.table().queue.remove(run_id);
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
        self.refuse_when_shut_down()?;
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
        let mut table = self.inner.table();
        match table.executing.get_mut(run_id) {
            Some(run) => {
                run.event_arrived = true;
                if let Stage::Running(context) = &run.stage {
                    context.deliver(event);
                }
            }
            None => {
                if !table.queue.wake(run_id, journal::now_us()) {
                    // Neither executing nor queued (its workflow is not registered yet): wake
                    // it when it is queued, or it would wait for an event it already has.
                    table.unclaimed_events.insert(run_id.to_owned());
                }
                // Not launched yet: its first execution must read its events, not skip them
                // as a fresh run's.
                table.fresh.remove(run_id);
            }
        }
        drop(table);
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

    /// Runs a failed run again from its failed step: the step is taken out of the journal,
    /// the run is journaled as pending and queued (it starts once its workflow is registered,
    /// here or in the next engine), and it replays the steps before and executes that one anew.
    /// Runs that did not fail (or were stopped by a budget) are left as they are; returns
    /// whether the run was queued.
    ///
    /// A run that failed at an at-most-once step whose outcome is unknown (its process ended
    /// during the call) is refused with [`Error::OutcomeUnknown`]: a retry would make the call
    /// again, which is what at-most-once was asked to prevent. Once you know the call did not
    /// take effect, [`force_retry`](Engine::force_retry) makes it again.
    pub async fn retry(&self, run_id: &str) -> Result<bool, Error> {
        self.retry_from_failed_step(run_id, false, None).await
    }

    /// [`retry`](Engine::retry) with another budget: a run stopped by its budget is given
    /// more and continues where it stopped (a plain retry would stop it again at once). What
    /// it spent so far still counts against the new budget.
    pub async fn retry_with(&self, run_id: &str, budget: crate::Budget) -> Result<bool, Error> {
        self.retry_from_failed_step(run_id, false, Some(budget))
            .await
    }

    /// [`retry`](Engine::retry), calling again an at-most-once step whose outcome is unknown:
    /// for when you checked that its call did not take effect (or that a second is harmless).
    pub async fn force_retry(&self, run_id: &str) -> Result<bool, Error> {
        self.retry_from_failed_step(run_id, true, None).await
    }

    async fn retry_from_failed_step(
        &self,
        run_id: &str,
        repeat_unknown_outcome: bool,
        budget: Option<crate::Budget>,
    ) -> Result<bool, Error> {
        self.refuse_when_shut_down()?;
        let mut run = self.existing(run_id).await?;
        if !matches!(run.status, RunStatus::Failed | RunStatus::BudgetExceeded) {
            return Ok(false);
        }
        let mut writes = Vec::new();
        if let Some(last) = self.journal(run_id).await?.last()
            && last.status == StepStatus::Failed
        {
            let unknown = last
                .error
                .as_ref()
                .is_some_and(|e| e.kind == crate::StepErrorKind::OutcomeUnknown);
            if unknown && !repeat_unknown_outcome {
                return Err(Error::OutcomeUnknown {
                    run_id: run_id.to_owned(),
                    seq: last.seq,
                    step: last.name.clone(),
                });
            }
            writes.push(Write::DeleteStep {
                run_id: run_id.to_owned(),
                seq: last.seq,
            });
        }
        run.status = RunStatus::Pending;
        run.error = None;
        run.output = None;
        if let Some(budget) = budget {
            run.budget = budget;
            run.budget_exhausted = None;
        }
        run.updated_at_us = journal::now_us();
        writes.push(Write::Run(run.clone()));
        self.inner.store.commit(writes).await?;
        self.enqueue(&run);
        self.kick();
        Ok(true)
    }
}

/// Whether `run`'s whole journal, in `engine`'s store, replays on `target`, writing nothing:
/// every journaled outcome is asked for in its place, and the body may then ask for what comes
/// next. Otherwise, what diverged.
async fn journal_replays_on(
    engine: &Engine,
    run: RunRecord,
    target: &dyn ErasedWorkflow,
) -> Result<(), String> {
    match engine.replay_record(run, target).await {
        Ok(_)
        | Err(Error::RunParked {
            reason: ParkReason::NotJournaled { .. },
            ..
        }) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}
