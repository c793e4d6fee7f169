//! The context of a run, reached by the steps of its body through a task-local.
//!
//! The macro-generated code (and the closure API beneath it) never receives a context argument:
//! a step looks up the run it belongs to with [`current_run`]. Outside an engine there is none,
//! and steps run directly, with their retries and timeouts but without a journal.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use crate::budget::{Budget, BudgetExhausted, Pricing, Spent, Usage};
use crate::circuit::Circuits;
use crate::error::ParkReason;
use crate::event::{AlertKind, Event};
use crate::journal::{self, InboxEvent, RunRecord};
use crate::listeners::Listeners;
use crate::ratelimit::RateLimits;
use crate::replay::order::ReplayJournal;
use crate::resource::Resources;
use crate::store::Store;
use crate::workflow::Children;

tokio::task_local! {
    static CURRENT_RUN: Arc<RunContext>;
}

/// What an engine shares with all of its runs.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) listeners: Listeners,
    pub(crate) circuits: Circuits,
    pub(crate) rate_limits: RateLimits,
    pub(crate) pricing: RwLock<Pricing>,
    /// A run that will sleep or wait longer than this leaves memory and is brought back by
    /// replay when it is due.
    pub(crate) park_after: RwLock<Duration>,
    /// Called before every attempt a step executes (not replays); the attempt starts after the
    /// wait it returns. The crash checker of [`testing`](crate::testing) uses it to count
    /// executions and to give steps latencies that change the order they finish in.
    pub(crate) attempt_hook: RwLock<Option<AttemptHook>>,
    /// What steps reach with [`resource`](crate::resource()): set by the builder, never
    /// journaled.
    pub(crate) resources: RwLock<Resources>,
}

/// See [`Shared::attempt_hook`].
pub(crate) type AttemptHook = Arc<dyn Fn(&AttemptStart<'_>) -> Duration + Send + Sync>;

/// An attempt about to execute, as [`Shared::attempt_hook`] sees it.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "testing"), allow(dead_code))]
pub(crate) struct AttemptStart<'a> {
    pub(crate) run_id: &'a str,
    pub(crate) seq: u64,
    pub(crate) name: &'a str,
    pub(crate) attempt: u32,
}

impl Shared {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Shared {
            store,
            listeners: Listeners::default(),
            circuits: Circuits::default(),
            rate_limits: RateLimits::default(),
            pricing: RwLock::new(Pricing::default()),
            park_after: RwLock::new(Duration::from_secs(10)),
            attempt_hook: RwLock::new(None),
            resources: RwLock::new(Resources::default()),
        }
    }

    pub(crate) fn park_after(&self) -> Duration {
        *self.park_after.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The wait before an attempt starts, from the attempt hook (zero without one).
    pub(crate) fn before_attempt(&self, attempt: &AttemptStart<'_>) -> Duration {
        match &*self.attempt_hook.read().unwrap_or_else(|p| p.into_inner()) {
            Some(hook) => hook(attempt),
            None => Duration::ZERO,
        }
    }

    pub(crate) fn price(&self, usage: Usage) -> Usage {
        self.pricing
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .price(usage)
    }
}

/// Why a run stopped before its body returned.
#[derive(Debug, Clone)]
pub(crate) enum Abort {
    /// Parked: resumable once the cause is fixed (non-determinism, undecodable value, storage).
    Park(ParkReason),
    /// Failed for good (a step panicked, or was refused for authentication).
    Fail(String),
    /// A budget was exhausted: in words, and which.
    Budget(String, Option<BudgetExhausted>),
    /// Sleeping or waiting for an event: leave memory until `due_us` (or until an event
    /// arrives, when `None`).
    Wait {
        due_us: Option<u64>,
        waiting_for: String,
    },
    /// Cancelled by [`Engine::cancel`].
    Cancel,
}

/// What a run is started with, besides its journal.
pub(crate) struct RunSetup {
    pub(crate) run_id: String,
    pub(crate) budget: Budget,
    pub(crate) created_at_us: u64,
    pub(crate) body_changed: bool,
    /// Set when a finished run is replayed to check the current code against its journal:
    /// every step must come from the journal, and nothing is written.
    pub(crate) verify_only: bool,
    /// The run's record, when its status must change to `running` with its first commit (it
    /// was pending or waiting): that costs no fsync of its own.
    pub(crate) status_change: Option<RunRecord>,
    /// Where child workflows run.
    pub(crate) children: Option<Arc<dyn Children>>,
}

pub(crate) struct RunContext {
    pub(crate) run_id: String,
    pub(crate) shared: Arc<Shared>,
    pub(crate) verify_only: bool,
    pub(crate) children: Option<Arc<dyn Children>>,
    budget: Budget,
    created_at_us: u64,
    status_change: Mutex<Option<RunRecord>>,
    /// Writes that cost no commit of their own (a patch marker): the run's next commit
    /// carries them.
    riders: Mutex<Vec<crate::store::Write>>,
    inbox: Mutex<Inbox>,
    inbox_signal: Notify,
    running_steps: Mutex<BTreeMap<u64, (String, u64)>>,
    /// Durable timers and event waits long enough to leave memory for: (due time, what).
    long_waits: Mutex<BTreeMap<u64, (Option<u64>, String)>>,
    pub(crate) body_changed: bool,
    in_flight: Option<Semaphore>,
    state: Mutex<RunState>,
    abort_signal: Notify,
    abort_reason: Mutex<Option<Abort>>,
}

#[derive(Default)]
struct Inbox {
    events: VecDeque<InboxEvent>,
    /// Arrival numbers already delivered: an event can reach a starting run both from the
    /// journal and from the sender.
    seen: HashSet<u64>,
}

pub(crate) struct RunState {
    next_seq: u64,
    /// What replay hands back, and the order of delivery (see [`replay`](crate::replay)).
    pub(crate) journal: ReplayJournal,
    /// In a replay that only checks the journal: the calls the journal holds nothing for.
    pub(crate) missing: BTreeMap<u64, String>,
    spent: Spent,
}

impl RunContext {
    pub(crate) fn new(
        setup: RunSetup,
        shared: Arc<Shared>,
        journal: ReplayJournal,
        spent: Spent,
    ) -> Self {
        RunContext {
            run_id: setup.run_id,
            shared,
            verify_only: setup.verify_only,
            children: setup.children,
            status_change: Mutex::new(setup.status_change),
            riders: Mutex::new(Vec::new()),
            inbox: Mutex::new(Inbox::default()),
            inbox_signal: Notify::new(),
            running_steps: Mutex::new(BTreeMap::new()),
            long_waits: Mutex::new(BTreeMap::new()),
            budget: setup.budget,
            created_at_us: setup.created_at_us,
            body_changed: setup.body_changed,
            in_flight: setup
                .budget
                .max_in_flight_steps
                .map(|n| Semaphore::new(n.max(1) as usize)),
            state: Mutex::new(RunState {
                next_seq: 0,
                journal,
                missing: BTreeMap::new(),
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
    /// The sequence number the next call will get.
    pub(crate) fn peek_seq(state: &RunState) -> u64 {
        state.next_seq
    }

    /// Takes the sequence number `peek_seq` returned.
    pub(crate) fn take_seq(state: &mut RunState) {
        state.next_seq += 1;
    }

    pub(crate) fn allocate_seq(&self) -> u64 {
        let mut state = self.state();
        let seq = state.next_seq;
        state.next_seq += 1;
        seq
    }

    /// The run's state, for the replay protocol.
    pub(crate) fn replay_state(&self) -> MutexGuard<'_, RunState> {
        self.state()
    }

    fn spent_now(&self, state: &RunState) -> Spent {
        let mut spent = state.spent.clone();
        let elapsed_us = journal::now_us().saturating_sub(self.created_at_us);
        spent.elapsed = Duration::from_micros(elapsed_us);
        spent
    }

    /// Whether another step may start.
    pub(crate) fn check_budget(&self) -> Result<(), BudgetExhausted> {
        let state = self.state();
        self.budget.check_before_step(&self.spent_now(&state))
    }

    /// When the run's `max_duration` runs out, in microseconds since the Unix epoch: no
    /// durable wait outlasts it.
    pub(crate) fn duration_deadline_us(&self) -> Option<u64> {
        let limit = self.budget.max_duration?;
        Some(
            self.created_at_us
                .saturating_add(u64::try_from(limit.as_micros()).unwrap_or(u64::MAX)),
        )
    }

    /// The budget the run has exhausted (steps aside), if any.
    pub(crate) fn exhausted_budget(&self) -> Option<BudgetExhausted> {
        self.check_budget_for_retry(&Usage::default()).err()
    }

    /// Whether a step that has spent `pending` so far may make another attempt.
    pub(crate) fn check_budget_for_retry(&self, pending: &Usage) -> Result<(), BudgetExhausted> {
        let state = self.state();
        let spent = self.spent_now(&state).with_pending(pending);
        let mut budget = self.budget;
        // The step itself is already counted as started: only money, tokens and time matter.
        budget.max_steps = None;
        budget.check_before_step(&spent)
    }

    pub(crate) fn spent_cost_usd(&self) -> f64 {
        self.state().spent.cost_usd
    }

    pub(crate) fn charge(&self, usage: &Usage) {
        self.state().spent.charge(usage);
    }

    /// Waits for a slot under the run's cap on steps in flight.
    pub(crate) async fn in_flight_slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        match &self.in_flight {
            Some(slots) => slots.acquire().await.ok(),
            None => None,
        }
    }

    /// The run's record with status `running`, once: the first commit of a run that was
    /// pending or waiting carries it.
    pub(crate) fn take_status_change(&self) -> Option<RunRecord> {
        lock(&self.status_change).take()
    }

    /// Queues a write for the run's next commit.
    pub(crate) fn ride_on_next_commit(&self, write: crate::store::Write) {
        lock(&self.riders).push(write);
    }

    /// The writes queued for the next commit.
    pub(crate) fn take_riders(&self) -> Vec<crate::store::Write> {
        std::mem::take(&mut *lock(&self.riders))
    }

    /// Puts back writes whose commit failed, ahead of any queued since.
    pub(crate) fn restore_riders(&self, mut writes: Vec<crate::store::Write>) {
        let mut riders = lock(&self.riders);
        writes.append(&mut riders);
        *riders = writes;
    }

    /// Puts back a status change whose commit failed.
    pub(crate) fn restore_status_change(&self, record: Option<RunRecord>) {
        if record.is_some() {
            *lock(&self.status_change) = record;
        }
    }

    /// Adds an event to the run's inbox (once, whatever the number of deliveries).
    pub(crate) fn deliver(&self, event: InboxEvent) {
        let mut inbox = lock(&self.inbox);
        if inbox.seen.insert(event.arrival) {
            inbox.events.push_back(event);
            drop(inbox);
            self.inbox_signal.notify_waiters();
        }
    }

    /// Takes the oldest event named `name`, if one arrived.
    pub(crate) fn take_event(&self, name: &str) -> Option<InboxEvent> {
        let mut inbox = lock(&self.inbox);
        let index = inbox.events.iter().position(|e| e.name == name)?;
        inbox.events.remove(index)
    }

    /// Puts back an event taken by a wait that will not receive it (a race's loser).
    pub(crate) fn put_back(&self, event: InboxEvent) {
        lock(&self.inbox).events.push_front(event);
        self.inbox_signal.notify_waiters();
    }

    /// Resolves when an event may have arrived.
    pub(crate) fn inbox_changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.inbox_signal.notified()
    }

    /// Notes that step `seq` started executing (not replaying), for cancellation.
    /// Notes that step `seq` is executing (not replaying) until the guard is dropped: for
    /// cancellation, and so that the run does not leave memory under it.
    pub(crate) fn step_running(&self, seq: u64, name: &str, started_at_us: u64) -> RunningStep<'_> {
        lock(&self.running_steps).insert(seq, (name.to_owned(), started_at_us));
        RunningStep { run: self, seq }
    }

    /// Notes that call `seq` waits durably until `due_us` (`None`: an event with no deadline),
    /// long enough for the run to leave memory, until the guard is dropped.
    pub(crate) fn long_wait(&self, seq: u64, due_us: Option<u64>, what: String) -> LongWait<'_> {
        lock(&self.long_waits).insert(seq, (due_us, what));
        LongWait { run: self, seq }
    }

    /// Whether the run should leave memory now, and until when: when its body is idle with
    /// only long durable waits left (no step executing, no outcome about to be delivered).
    /// The driver asks when the body is idle.
    pub(crate) fn leave_memory(&self) -> Option<Abort> {
        if self.verify_only || !lock(&self.running_steps).is_empty() {
            return None;
        }
        let waits = lock(&self.long_waits);
        let (due_us, what) = waits
            .values()
            .min_by_key(|(due, _)| due.unwrap_or(u64::MAX))?
            .clone();
        let in_memory = self.shared.park_after().as_micros() as u64;
        if due_us.is_some_and(|due| due <= journal::now_us().saturating_add(in_memory)) {
            return None;
        }
        Some(Abort::Wait {
            due_us,
            waiting_for: what,
        })
    }

    /// The steps executing now: (seq, name, started at).
    pub(crate) fn running_steps(&self) -> Vec<(u64, String, u64)> {
        lock(&self.running_steps)
            .iter()
            .map(|(seq, (name, at))| (*seq, name.clone(), *at))
            .collect()
    }

    pub(crate) fn emit(&self, make: impl FnOnce() -> Event) {
        self.shared.listeners.emit_with(make);
    }

    pub(crate) fn alert(&self, kind: AlertKind, step: Option<&str>, message: String) {
        self.shared
            .listeners
            .alert(kind, Some(&self.run_id), step, message);
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

/// See [`RunContext::step_running`].
pub(crate) struct RunningStep<'a> {
    run: &'a RunContext,
    seq: u64,
}

impl Drop for RunningStep<'_> {
    fn drop(&mut self) {
        // A step dropped because the run stopped (cancelled, say) stays listed: the engine
        // journals it as cancelled. One dropped by the body (a race's loser) is gone.
        if lock(&self.run.abort_reason).is_none() {
            lock(&self.run.running_steps).remove(&self.seq);
        }
    }
}

/// See [`RunContext::long_wait`].
pub(crate) struct LongWait<'a> {
    run: &'a RunContext,
    seq: u64,
}

impl Drop for LongWait<'_> {
    fn drop(&mut self) {
        lock(&self.run.long_waits).remove(&self.seq);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections here are short and cannot leave their data half-changed.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The run whose body is being polled, if any.
pub(crate) fn current_run() -> Option<Arc<RunContext>> {
    CURRENT_RUN.try_with(Arc::clone).ok()
}
