//! The context of a run, reached by the steps of its body through a task-local.
//!
//! The macro-generated code (and the closure API beneath it) never receives a context argument:
//! a step looks up the run it belongs to with [`current_run`]. Outside an engine there is none,
//! and steps run directly, with their retries and timeouts but without a journal.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::budget::{Budget, Spent, Usage};
use crate::error::NonDeterminism;
use crate::event::{Event, Listeners};
use crate::journal::{Replay, ReplayJournal};
use crate::store::Store;

tokio::task_local! {
    static CURRENT_RUN: Arc<RunContext>;
}

/// Why a run stopped before its body returned.
#[derive(Debug, Clone)]
pub(crate) enum Abort {
    /// Parked: resumable once the cause is fixed (non-determinism, undecodable value, storage).
    Park(String),
    /// Failed for good (a step panicked).
    Fail(String),
    /// A budget was exhausted.
    Budget(String),
}

pub(crate) struct RunContext {
    pub(crate) run_id: String,
    pub(crate) store: Arc<dyn Store>,
    listeners: Arc<Listeners>,
    budget: Budget,
    body_changed: bool,
    /// Set when a finished run is replayed to check the current code against its journal:
    /// every step must come from the journal, and nothing is written.
    pub(crate) verify_only: bool,
    state: Mutex<RunState>,
    abort_signal: Notify,
    abort_reason: Mutex<Option<Abort>>,
}

struct RunState {
    next_seq: u64,
    journal: ReplayJournal,
    spent: Spent,
}

impl RunContext {
    pub(crate) fn new(
        run_id: String,
        store: Arc<dyn Store>,
        listeners: Arc<Listeners>,
        budget: Budget,
        body_changed: bool,
        journal: ReplayJournal,
        spent: Spent,
    ) -> Self {
        RunContext {
            run_id,
            store,
            listeners,
            budget,
            body_changed,
            verify_only: false,
            state: Mutex::new(RunState {
                next_seq: 0,
                journal,
                spent,
            }),
            abort_signal: Notify::new(),
            abort_reason: Mutex::new(None),
        }
    }

    fn state(&self) -> MutexGuard<'_, RunState> {
        // The state is only mutated by short, non-panicking sections.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Allocates the next sequence number. Called synchronously where a step is called, so the
    /// numbering follows the order in which the body calls steps, even under `join_all`.
    pub(crate) fn allocate_seq(&self) -> u64 {
        let mut state = self.state();
        let seq = state.next_seq;
        state.next_seq += 1;
        seq
    }

    pub(crate) fn claim(&self, seq: u64, name: &str) -> Result<Replay, NonDeterminism> {
        self.state()
            .journal
            .claim(&self.run_id, seq, name, self.body_changed)
    }

    pub(crate) fn check_budget(&self) -> Result<(), String> {
        self.budget.check_before_step(&self.state().spent)
    }

    pub(crate) fn charge(&self, usage: &Usage) {
        self.state().spent.charge(usage);
    }

    pub(crate) fn emit(&self, event: Event) {
        self.listeners.emit(event);
    }

    /// Stops the run: the driver drops the body at its next poll. The first reason wins.
    pub(crate) fn abort(&self, reason: Abort) {
        let mut slot = self.abort_reason.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
        }
        // notify_one keeps a permit when nobody waits yet, so the signal cannot be lost.
        self.abort_signal.notify_one();
    }

    /// Resolves once [`abort`](Self::abort) was called, with its reason.
    pub(crate) async fn aborted(&self) -> Abort {
        loop {
            self.abort_signal.notified().await;
            if let Some(reason) = self
                .abort_reason
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                return reason;
            }
        }
    }

    /// Runs `body` with this context as the current run.
    pub(crate) async fn scope<F: Future>(self: Arc<Self>, body: F) -> F::Output {
        CURRENT_RUN.scope(self, body).await
    }
}

/// The run whose body is being polled, if any.
pub(crate) fn current_run() -> Option<Arc<RunContext>> {
    CURRENT_RUN.try_with(Arc::clone).ok()
}
