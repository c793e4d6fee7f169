//! Executing a run's body once: load its journal, replay and execute, and say how it ended;
//! and [`Engine::replay`], the same against the journal only.

use super::*;

impl Engine {
    /// Replays a finished run of `W` against its journal, without executing or writing
    /// anything: every step must come from the journal. Returns the value the current code
    /// computes from the journaled steps, which a deterministic workflow makes equal to the
    /// journaled output.
    ///
    /// Use it to check that new code still replays old runs before deploying it (a step the
    /// journal does not hold, or a renamed one, is an [`Error::RunParked`] naming it; the run
    /// itself is left untouched).
    pub async fn replay<W: Workflow>(&self, run_id: &str) -> Result<W::Output, Error> {
        let run = self.existing(run_id).await?;
        if run.workflow != W::NAME {
            return Err(Error::RunIdConflict {
                run_id: run_id.to_owned(),
                existing: run.workflow,
                requested: W::NAME.to_owned(),
            });
        }
        let raw = self.replay_record(run, &Erased::<W>::new()).await?;
        serde_json::from_str(raw.get()).map_err(|e| Error::Decode {
            run_id: run_id.to_owned(),
            what: "output".into(),
            type_name: std::any::type_name::<W::Output>(),
            detail: e.to_string(),
        })
    }

    /// [`replay`](Engine::replay) of `run` on `workflow`, whatever its type: the output as
    /// JSON.
    pub(crate) async fn replay_record(
        &self,
        mut run: RunRecord,
        workflow: &dyn ErasedWorkflow,
    ) -> Result<Box<serde_json::value::RawValue>, Error> {
        let run_id = run.run_id.clone();
        let (ending, context) = execute_in(self, &mut run, workflow, Mode::VerifyOnly).await;
        // A body that stops at a call the journal does not hold (a wait, or a step past the
        // journal's end) while journaled outcomes were never asked for has left the journaled
        // path before it stopped.
        let unclaimed = context.as_ref().and_then(|c| c.first_unclaimed());
        let not_journaled = matches!(
            &ending,
            Ending::Wait { .. } | Ending::Parked(ParkReason::NotJournaled { .. })
        );
        if not_journaled && let Some((seq, name)) = &unclaimed {
            let detail = format!(
                "the body went on to a call the journal does not hold without asking for step #{seq} (`{name}`) of the journal: the paths part there"
            );
            return Err(Error::ReplayDiverged { run_id, detail });
        }
        match ending {
            Ending::Completed(raw) => {
                if let Some((seq, name)) = unclaimed {
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
                Ok(raw)
            }
            Ending::Failed(message) => Err(Error::RunFailed { run_id, message }),
            Ending::Parked(reason) => Err(Error::parked(run_id, reason)),
            Ending::Wait {
                waiting_for: message,
                ..
            } => Err(Error::parked(run_id, ParkReason::NotJournaled { message })),
            Ending::BudgetExceeded(message, exhausted) => Err(Error::BudgetExceeded {
                run_id,
                message,
                exhausted,
            }),
            Ending::Cancelled(_) => Err(Error::RunFinished {
                run_id,
                status: RunStatus::Cancelled,
            }),
        }
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

pub(super) fn cancelled_step(seq: u64, name: String, started_at_us: u64) -> StepRecord {
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

pub(super) enum Ending {
    Completed(Box<serde_json::value::RawValue>),
    Failed(String),
    Parked(ParkReason),
    BudgetExceeded(String, Option<BudgetExhausted>),
    /// Cancelled while executing these steps: (seq, name, started at).
    Cancelled(Vec<(u64, String, u64)>),
    Wait {
        due_us: Option<u64>,
        waiting_for: String,
    },
}

/// How a run's body is executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// For real. A fresh run (started by this engine, never executed) has an empty journal
    /// and, unless one was sent since, no events: neither is read.
    Execute { is_fresh: bool },
    /// Against the journal only, writing nothing (`Engine::replay`).
    VerifyOnly,
}

/// Executes the run's body; notes a resume in `run`.
pub(super) async fn execute_in(
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
                    Ending::Parked(ParkReason::Storage {
                        message: format!("its journal cannot be read: {e}"),
                    }),
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
            // A timer's, an event wait's or a journaled time's record is no step: live, it
            // was not counted either.
            _ if !step.is_step() => spent.charge_usage(&step.usage),
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
        children: Some(Arc::new(WeakEngine(Arc::downgrade(&engine.inner)))),
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
                    let message = format!("its events cannot be read: {e}");
                    return (
                        Ending::Parked(ParkReason::Storage { message }),
                        Some(context),
                    );
                }
            }
        }
    }
    let body = match workflow.start(&run.run_id, &run.input) {
        Ok(body) => body,
        Err(e) => return (Ending::Parked(ParkReason::from_error(&e)), Some(context)),
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
            Abort::Budget(message, exhausted) => Ending::BudgetExceeded(message, exhausted),
            Abort::Cancel => Ending::Cancelled(context.running_steps()),
            Abort::Wait { due_us, waiting_for } => Ending::Wait { due_us, waiting_for },
        },
        outcome = body => match context.first_unclaimed().filter(|_| !verify_only) {
            // The body returned without asking for an outcome the journal holds: it took
            // another path than the run did, and its ending is not the run's.
            Some((seq, name)) => Ending::Parked(ParkReason::SkippedStep {
                message: format!(
                    "non-determinism in run {:?}: the workflow body returned without calling step #{seq} (`{name}`), which the journal holds{}; the run is parked until code that takes the journaled path resumes it",
                    run.run_id,
                    if body_changed { " (the workflow body changed since this run started)" } else { "" }
                ),
                run_id: run.run_id.clone(),
                seq,
                step: name,
                body_changed,
            }),
            None => match outcome {
                Ok(Ok(output)) => Ending::Completed(output),
                Ok(Err(failure)) => Ending::Failed(failure.message),
                Err(panic) => Ending::Failed(format!("the workflow body {panic}")),
            },
        },
    };
    (ending, Some(context))
}
