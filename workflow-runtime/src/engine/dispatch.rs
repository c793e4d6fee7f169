//! The dispatcher: takes due runs from the queue as the limits allow, drives each on a task of
//! its own, and puts a waiting run back in the queue.

use super::*;

pub(super) fn queued(run: &RunRecord) -> Queued {
    let due_us = match run.status {
        // A waiting run with no time is woken by its event (or an engine restart).
        RunStatus::Waiting => run.not_before_us.unwrap_or(u64::MAX),
        _ => run.not_before_us.unwrap_or(0),
    };
    Queued {
        run_id: run.run_id.clone(),
        workflow: run.workflow.clone(),
        version: run.version,
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
pub(super) async fn dispatch(engine: Weak<Inner>, wake: Arc<Notify>) {
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
        let mut table = self.inner.table();
        let (ready, next_due) = table.queue.take_ready(journal::now_us(), limit, |name| {
            workflows.latest(name).map(|w| w.concurrency())
        });
        for (queued, slot) in ready {
            let Some(workflow) = workflows.get(&queued.workflow, queued.version) else {
                // Not registered here (any more): the run stays as journaled, for an engine
                // that has its version.
                table.queue.release(&slot);
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
            table.executing.insert(
                run_id,
                Execution {
                    task,
                    stage: Stage::Launching {
                        cancel_requested: false,
                    },
                    event_arrived: false,
                },
            );
        }
        next_due
    }

    /// Executes (or replays) one run until it ends or waits, and journals how.
    async fn drive(self, run_id: String, workflow: Arc<dyn ErasedWorkflow>, slot: Slot) {
        let fresh = self.inner.table().fresh.remove(&run_id);
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
        let (ending, _context) = execute_in(
            &self,
            &mut run,
            workflow.as_ref(),
            Mode::Execute { is_fresh },
        )
        .await;
        let mut writes = Vec::new();
        if let Ending::Cancelled(running) = &ending {
            // The steps that were executing were dropped: journal them as cancelled.
            for (seq, name, started_at_us) in running.iter().cloned() {
                writes.push(Write::Step {
                    run_id: run_id.clone(),
                    step: cancelled_step(seq, name, started_at_us),
                });
            }
        }
        let stopped_because = match &ending {
            Ending::Parked(reason) => Some(reason.clone()),
            _ => None,
        };
        let (status, output, error) = match ending {
            Ending::Completed(output) => (RunStatus::Completed, Some(output), None),
            Ending::Failed(message) => (RunStatus::Failed, None, Some(message)),
            Ending::Parked(reason) => {
                run.park_reason = Some(reason.clone());
                (RunStatus::Parked, None, Some(reason.to_string()))
            }
            Ending::BudgetExceeded(message, exhausted) => {
                run.budget_exhausted = exhausted;
                (RunStatus::BudgetExceeded, None, Some(message))
            }
            Ending::Cancelled(_) => (RunStatus::Cancelled, None, Some("cancelled".to_owned())),
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
        if status != RunStatus::Parked {
            run.park_reason = None;
        }
        run.status = status;
        run.output = output;
        run.error = error.clone();
        run.updated_at_us = journal::now_us();
        let waiting = (status == RunStatus::Waiting).then(|| run.clone());
        writes.push(Write::Run(run));
        if let Err(e) = self.inner.store.commit(writes).await {
            // The run stays as journaled before and resumes in the next engine, or in this
            // one through `resume` once the journal can be written again. Until then callers
            // of `result()` learn why it stopped, not only that nobody executes it.
            tracing::error!(error = %e, "could not journal how the run ended");
            let reason = stopped_because.unwrap_or_else(|| ParkReason::Storage {
                message: format!(
                    "the run ended ({status}) but its ending could not be journaled: {e}; `Engine::resume` runs it again from its journal"
                ),
            });
            self.inner
                .table()
                .unjournaled
                .insert(run_id.clone(), reason);
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
        // In one critical section: a sender of an event sees the run either executing or queued.
        let ended = {
            let mut table = self.inner.table();
            let entry = table.executing.remove(run_id);
            table.queue.release(slot);
            match waiting {
                Some(mut waiting) => {
                    if entry.is_some_and(|e| e.event_arrived) {
                        // An event arrived while the run executed: replay at once.
                        waiting.not_before_us = Some(journal::now_us());
                    }
                    table.queue.enqueue(queued(&waiting));
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
