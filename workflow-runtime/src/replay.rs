//! The replay rule, in one place: how a run's body receives the outcomes of its steps, timers,
//! event waits and journaled values, live and on replay.
//!
//! # The rule
//!
//! Every outcome the body receives (a step's value or error, a timer firing, an event or its
//! timeout, a journaled `now`, `random` or `uuid`) is journaled with its *delivery position*,
//! in the transaction that journals the outcome. Outcomes reach the body one at a time in the
//! order of their positions, and after each one the body runs until it is idle (a poll of the
//! body that woke nothing) before the next one is handed over. Live, an outcome takes the next
//! position when it is committed; on replay, journaled outcomes are handed back in the order of
//! their positions, the same way.
//!
//! Why this makes replay exact: a body that is deterministic given its outcomes calls the same
//! steps (and so allocates the same sequence numbers) between two deliveries, because what it
//! does between them depends only on the outcomes delivered so far, in their order. Without
//! the rule, every journaled outcome of a fan-out is ready at once on replay, concurrent
//! branches are polled in another order than they finished in live, and they take each other's
//! sequence numbers (and, when the steps share a name, each other's values, silently).
//!
//! Consequences, each relied on below:
//! - An outcome journaled but never delivered (its future was dropped first, as the loser of a
//!   [`race`](crate::durable::race)) is skipped at its turn, live and on replay alike.
//! - On replay, if the body goes idle while the next journaled outcome has not been asked for,
//!   the body took another path: the run is parked, naming that step.
//! - Outcomes produced live during a replay (a step that was running at the crash) take
//!   positions after every journaled one.
//! - Records journaled before this rule existed have no position: they are handed back in order
//!   of sequence number, before any positioned one (the rule older journals were written under).
//! - Records that are not outcomes (a timer's due time, an at-most-once step's intent, the
//!   spending of failed attempts) have no position and are never delivered.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::context::{Abort, RunContext};
use crate::error::{Error, NonDeterminism, StepError};
use crate::event::Event;
use crate::journal::{StepRecord, StepStatus};
use crate::store::Write;

/// Where an outcome stands in the order of delivery: records journaled before positions existed
/// come first, by sequence number; then positioned ones.
type Position = (u8, u64);

fn position_of(record: &StepRecord) -> Position {
    match record.delivery {
        Some(position) => (1, position),
        None => (0, record.seq),
    }
}

/// Whether a record holds an outcome the body receives.
fn is_outcome(record: &StepRecord) -> bool {
    matches!(record.status, StepStatus::Completed | StepStatus::Failed)
}

/// The journal of one run, loaded once per resume and consumed as the body replays, and the
/// order in which its outcomes are delivered.
#[derive(Default)]
pub(crate) struct ReplayJournal {
    /// Indexed by sequence number; `None` where nothing is journaled (or it was claimed).
    records: Vec<Option<StepRecord>>,
    deliveries: Deliveries,
}

/// What the journal holds for a step called with a sequence number and a name.
pub(crate) enum Claim {
    /// Its outcome: hand it back with [`replay_outcome`] when its turn comes.
    Outcome(Journaled),
    /// A record without an outcome: a timer's due time, an at-most-once step's intent, or what
    /// failed attempts spent. The caller carries on from it.
    Unfinished(StepRecord),
    /// Nothing: execute.
    Execute,
}

/// A journaled outcome waiting for its turn.
pub(crate) struct Journaled {
    pub(crate) record: StepRecord,
    ticket: Ticket,
}

impl ReplayJournal {
    pub(crate) fn new(steps: Vec<StepRecord>) -> Self {
        let mut deliveries = Deliveries::default();
        for step in steps.iter().filter(|s| is_outcome(s)) {
            let position = position_of(step);
            deliveries.next_live = deliveries.next_live.max(position.1 + 1);
            deliveries.pending.insert(
                position,
                Slot::Unclaimed {
                    seq: step.seq,
                    name: step.name.clone(),
                },
            );
        }
        // The store hands steps back ordered by seq; without gaps (the usual case) each one is
        // already at its index and the vector is reused as it is.
        let dense = steps.iter().enumerate().all(|(i, s)| s.seq == i as u64);
        let records = if dense {
            steps.into_iter().map(Some).collect()
        } else {
            let len = steps.iter().map(|s| s.seq + 1).max().unwrap_or(0) as usize;
            let mut records: Vec<Option<StepRecord>> = (0..len).map(|_| None).collect();
            for step in steps {
                let seq = step.seq as usize;
                records[seq] = Some(step);
            }
            records
        };
        ReplayJournal {
            records,
            deliveries,
        }
    }

    /// Whether a journaled outcome was never asked for (replay of a finished run must use all).
    pub(crate) fn first_unclaimed(&self) -> Option<(u64, String)> {
        self.deliveries
            .pending
            .values()
            .find_map(|slot| match slot {
                Slot::Unclaimed { seq, name } => Some((*seq, name.clone())),
                _ => None,
            })
    }
}

/// The delivery positions not yet handed over, live and journaled.
#[derive(Default)]
struct Deliveries {
    pending: BTreeMap<Position, Slot>,
    /// The position the next live outcome takes.
    next_live: u64,
}

enum Slot {
    /// Journaled, and its step has not been called (yet).
    Unclaimed { seq: u64, name: String },
    /// Live: its commit is in flight.
    Committing,
    /// Durable, waiting for its turn; the waker of the future that waits for it.
    Ready(Option<Waker>),
    /// Its future was dropped before its turn: skipped.
    Abandoned,
}

/// What the driver found when the body went idle.
enum Turn {
    /// An outcome was handed over: poll the body again.
    Delivered,
    /// Nothing can be handed over now.
    Idle,
    /// The journal's next outcome was never asked for, and the body is held up by live work
    /// behind it: the body took another path.
    Diverged { seq: u64, name: String },
    /// The journal's next outcome has not been asked for yet.
    Waiting { seq: u64, name: String },
}

impl Deliveries {
    fn next_turn(&mut self) -> Turn {
        while let Some(mut entry) = self.pending.first_entry() {
            match entry.get_mut() {
                Slot::Abandoned => {
                    entry.remove();
                }
                Slot::Ready(waker) => {
                    let waker = waker.take();
                    entry.remove();
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                    return Turn::Delivered;
                }
                Slot::Committing => return Turn::Idle,
                Slot::Unclaimed { seq, name } => {
                    let (seq, name) = (*seq, name.clone());
                    // The body went idle without asking for the journal's next outcome. A
                    // body that awaits something outside the journal (a tokio timer in a
                    // hand-written body) asks for it later: wait. But once the body is held up
                    // by live work behind it, it took another path.
                    let live_waiting = self
                        .pending
                        .iter()
                        .any(|((kind, _), slot)| *kind == 1 && matches!(slot, Slot::Ready(_)))
                        && self
                            .pending
                            .values()
                            .all(|slot| !matches!(slot, Slot::Committing));
                    return match live_waiting {
                        true => Turn::Diverged { seq, name },
                        false => Turn::Waiting { seq, name },
                    };
                }
            }
        }
        Turn::Idle
    }
}

/// A place in the order of delivery, held by the future that waits for it. Dropped before its
/// turn (the future was cancelled), the place is skipped.
pub(crate) struct Ticket {
    run: Arc<RunContext>,
    position: Position,
}

impl Ticket {
    /// The position to journal with the outcome.
    fn journaled(&self) -> Option<u64> {
        (self.position.0 == 1).then_some(self.position.1)
    }

    /// The outcome is durable: it may be handed over at its turn.
    fn durable(&self) {
        let mut state = self.run.replay_state();
        if let Some(slot) = state.journal.deliveries.pending.get_mut(&self.position) {
            *slot = Slot::Ready(None);
        }
    }

    /// Resolves at the outcome's turn.
    async fn turn(&self) {
        std::future::poll_fn(|cx| {
            let mut state = self.run.replay_state();
            match state.journal.deliveries.pending.get_mut(&self.position) {
                None => Poll::Ready(()),
                Some(Slot::Ready(waker)) => {
                    if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        *waker = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
                // Not durable yet, or (never) abandoned while waited for.
                Some(_) => Poll::Pending,
            }
        })
        .await
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = self.run.replay_state();
        if let Some(slot) = state.journal.deliveries.pending.get_mut(&self.position) {
            *slot = Slot::Abandoned;
        }
    }
}

impl RunContext {
    /// Applies the replay rule to the step called with `seq` and `name`.
    pub(crate) fn claim(self: &Arc<Self>, seq: u64, name: &str) -> Result<Claim, NonDeterminism> {
        let mut state = self.replay_state();
        let journal = &mut state.journal;
        let Some(slot) = journal.records.get_mut(seq as usize) else {
            return Ok(Claim::Execute);
        };
        let Some(record) = slot.as_ref() else {
            return Ok(Claim::Execute);
        };
        if record.name != name {
            return Err(NonDeterminism {
                run_id: self.run_id.clone(),
                seq,
                journaled: record.name.clone(),
                current: name.to_owned(),
                body_changed: self.body_changed,
            });
        }
        let Some(record) = slot.take() else {
            return Ok(Claim::Execute);
        };
        if !is_outcome(&record) {
            return Ok(Claim::Unfinished(record));
        }
        let position = position_of(&record);
        if let Some(slot) = journal.deliveries.pending.get_mut(&position) {
            *slot = Slot::Ready(None);
        }
        drop(state);
        Ok(Claim::Outcome(Journaled {
            record,
            ticket: Ticket {
                run: Arc::clone(self),
                position,
            },
        }))
    }

    /// Takes the next live position, for an outcome about to be committed.
    fn reserve(self: &Arc<Self>) -> Ticket {
        let mut state = self.replay_state();
        let deliveries = &mut state.journal.deliveries;
        let position = (1, deliveries.next_live);
        deliveries.next_live += 1;
        deliveries.pending.insert(position, Slot::Committing);
        drop(state);
        Ticket {
            run: Arc::clone(self),
            position,
        }
    }

    fn next_turn(&self) -> Turn {
        self.replay_state().journal.deliveries.next_turn()
    }

    /// In a replay that only checks the journal: why the body can go no further, if it is idle
    /// with every journaled outcome handed over.
    fn stalled_replay(&self) -> Option<String> {
        if !self.verify_only {
            return None;
        }
        let state = self.replay_state();
        if !state.journal.deliveries.pending.is_empty() {
            return None;
        }
        Some(match state.missing.iter().next() {
            Some((seq, name)) => format!(
                "replaying run {:?}: the workflow waits for step #{seq} ({name}), which its journal does not hold",
                self.run_id
            ),
            None => format!(
                "replaying run {:?}: the workflow waits for more than its journal holds",
                self.run_id
            ),
        })
    }

    /// In a replay that only checks the journal: whether the body waits for a call the journal
    /// does not hold.
    fn stalled_on_missing(&self) -> bool {
        self.verify_only && !self.replay_state().missing.is_empty()
    }

    /// The journaled outcome the body never asked for, if any (a replayed, finished run must
    /// have asked for every one).
    pub(crate) fn first_unclaimed(&self) -> Option<(u64, String)> {
        self.replay_state().journal.first_unclaimed()
    }
}

/// What the body asks for, in a replay that only checks the code against the journal
/// ([`Engine::replay`](crate::Engine::replay)), and the journal does not hold: never resolves.
/// A loser of a race may legitimately be such a call (it was dropped live before it finished);
/// if the body can go no further without it, the driver parks the run naming it.
pub(crate) async fn not_journaled<T>(run: &RunContext, seq: u64, name: &str) -> T {
    struct Missing<'a>(&'a RunContext, u64);
    impl Drop for Missing<'_> {
        fn drop(&mut self) {
            self.0.replay_state().missing.remove(&self.1);
        }
    }
    run.replay_state().missing.insert(seq, name.to_owned());
    let _missing = Missing(run, seq);
    std::future::pending().await
}

/// Hands a journaled outcome back to the body at its turn.
pub(crate) async fn replay_outcome<T: DeserializeOwned>(
    run: &RunContext,
    journaled: Journaled,
) -> Result<T, StepError> {
    journaled.ticket.turn().await;
    let record = journaled.record;
    tracing::debug!(run_id = %run.run_id, seq = record.seq, step = %record.name, "step replayed");
    run.emit(|| Event::StepReplayed {
        run_id: run.run_id.clone(),
        seq: record.seq,
        name: record.name.clone(),
    });
    match hand_back(run, &record) {
        Ok(outcome) => outcome,
        Err(error) => park(run, Abort::Park(error.to_string())).await,
    }
}

/// Journals a new outcome (with `extra` writes in the same transaction) at the next position,
/// and hands it to the body, decoded from the journaled bytes as a replay will, at its turn.
pub(crate) async fn record_outcome<T: DeserializeOwned>(
    run: &Arc<RunContext>,
    record: &mut StepRecord,
    extra: Vec<Write>,
) -> Result<T, StepError> {
    let ticket = run.reserve();
    record.delivery = ticket.journaled();
    if let Err(reason) = commit_with(run, record, extra).await {
        return park(run, Abort::Park(reason)).await;
    }
    ticket.durable();
    finished(run, record);
    ticket.turn().await;
    match hand_back(run, record) {
        Ok(outcome) => outcome,
        Err(error) => park(run, Abort::Park(error.to_string())).await,
    }
}

/// Journals an outcome that ends the run (a panic, a refused credential, an exhausted budget)
/// at the next position; the body never receives it.
pub(crate) async fn record_final(run: &Arc<RunContext>, record: &mut StepRecord) {
    let ticket = run.reserve();
    record.delivery = ticket.journaled();
    if let Err(reason) = commit(run, record).await {
        return park(run, Abort::Park(reason)).await;
    }
    finished(run, record);
}

/// Commits `record`; on failure returns why the run must be parked.
pub(crate) async fn commit(run: &RunContext, record: &StepRecord) -> Result<(), String> {
    commit_with(run, record, Vec::new()).await
}

/// Commits `record` with `extra` writes in the same transaction, and the run's change to
/// `running` if it has not been journaled yet.
pub(crate) async fn commit_with(
    run: &RunContext,
    record: &StepRecord,
    extra: Vec<Write>,
) -> Result<(), String> {
    let mut writes = vec![Write::Step {
        run_id: run.run_id.clone(),
        step: record.clone(),
    }];
    writes.extend(extra);
    let status_change = run.take_status_change();
    if let Some(running) = &status_change {
        writes.push(Write::Run(running.clone()));
    }
    let committed = run.shared.store.commit(writes).await;
    if committed.is_err() {
        run.restore_status_change(status_change);
    }
    committed.map_err(|e| {
        tracing::error!(run_id = %run.run_id, seq = record.seq, step = %record.name, error = %e, "journal write failed: run parked");
        format!(
            "the outcome of step #{} ({}) could not be journaled: {e}",
            record.seq, record.name
        )
    })
}

/// Reports a step that finished executing (not replaying).
pub(crate) fn finished(run: &RunContext, record: &StepRecord) {
    match record.status {
        StepStatus::Completed => {
            tracing::info!(run_id = %run.run_id, seq = record.seq, step = %record.name, attempts = record.attempts, "step completed")
        }
        _ => {
            tracing::warn!(run_id = %run.run_id, seq = record.seq, step = %record.name, attempts = record.attempts, "step failed")
        }
    }
    run.emit(|| Event::StepFinished {
        run_id: run.run_id.clone(),
        seq: record.seq,
        name: record.name.clone(),
        attempts: record.attempts,
        latency: std::time::Duration::from_micros(
            record.finished_at_us.saturating_sub(record.started_at_us),
        ),
        usage: record.usage.clone(),
        error: record.error.clone(),
        attempt_log: record.attempt_log.clone(),
        started_at_us: record.started_at_us,
        run_cost_usd: run.spent_cost_usd(),
    });
}

/// Decodes a journaled step outcome into what the body receives.
pub(crate) fn hand_back<T: DeserializeOwned>(
    run: &RunContext,
    record: &StepRecord,
) -> Result<Result<T, StepError>, Error> {
    match (&record.status, &record.output, &record.error) {
        (StepStatus::Completed, Some(raw), _) => decode_value(run, record, raw).map(Ok),
        (_, _, Some(error)) => Ok(Err(error.clone())),
        _ => Err(Error::Decode {
            run_id: run.run_id.clone(),
            what: format!("step #{} ({})", record.seq, record.name),
            type_name: std::any::type_name::<T>(),
            detail: "the record holds neither a value nor an error".into(),
        }),
    }
}

/// Decodes the value of a journaled record (an outcome, or a timer's due time).
pub(crate) fn decode_value<T: DeserializeOwned>(
    run: &RunContext,
    record: &StepRecord,
    raw: &RawValue,
) -> Result<T, Error> {
    serde_json::from_str(raw.get()).map_err(|e| Error::Decode {
        run_id: run.run_id.clone(),
        what: format!("value of step #{} ({})", record.seq, record.name),
        type_name: std::any::type_name::<T>(),
        detail: e.to_string(),
    })
}

/// Stops the run and never resolves: the driver drops the body, so nothing after the step runs.
pub(crate) async fn park<T>(run: &RunContext, reason: Abort) -> T {
    run.abort(reason);
    std::future::pending().await
}

/// Polls a run's body under the rule: the next outcome is handed over only when the body is
/// idle, that is when a poll of it returned `Pending` and a round trip through the runtime
/// (its deferred wakes included: `tokio::task::yield_now` wakes only after the poll) woke it
/// no more.
pub(crate) fn drive<F: Future>(run: Arc<RunContext>, body: F) -> impl Future<Output = F::Output> {
    let signal = Arc::new(BodySignal::default());
    Driver {
        body: Box::pin(body),
        run,
        settled: Arc::new(Settled {
            fired: AtomicBool::new(false),
            body: Arc::clone(&signal),
        }),
        signal,
        dirty: true,
        settling: false,
    }
}

struct Driver<F> {
    body: Pin<Box<F>>,
    run: Arc<RunContext>,
    signal: Arc<BodySignal>,
    settled: Arc<Settled>,
    /// The body must be polled: it was woken, or has just been handed an outcome.
    dirty: bool,
    /// A round trip through the runtime was started after the body's last poll.
    settling: bool,
}

/// The waker the body is polled with: it notes that the body was woken, and wakes the task
/// only when the driver is not polling anyway.
#[derive(Default)]
struct BodySignal {
    woken: AtomicBool,
    polling: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl BodySignal {
    fn wake_task(&self) {
        if let Some(task) = &*self.task.lock().unwrap_or_else(|p| p.into_inner()) {
            task.wake_by_ref();
        }
    }
}

impl Wake for BodySignal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if !self.polling.load(Ordering::SeqCst) {
            self.wake_task();
        }
    }
}

/// Woken by the runtime after the wakes it deferred during the body's poll (they are woken in
/// order), so that the body, once this fired without it being woken, is idle.
struct Settled {
    fired: AtomicBool,
    body: Arc<BodySignal>,
}

impl Wake for Settled {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::SeqCst);
        if !self.body.polling.load(Ordering::SeqCst) {
            self.body.wake_task();
        }
    }
}

/// How many polls of the body one poll of the driver makes at most before it yields to the
/// runtime, so that a long replay does not starve other runs.
const POLLS_PER_TURN: usize = 256;

impl<F: Future> Future for Driver<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        {
            let mut task = this.signal.task.lock().unwrap_or_else(|p| p.into_inner());
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        let waker = Waker::from(Arc::clone(&this.signal));
        let mut body_cx = Context::from_waker(&waker);
        this.signal.polling.store(true, Ordering::SeqCst);
        let mut yielding = true;
        let mut awaiting_settle = false;
        for _ in 0..POLLS_PER_TURN {
            if this.signal.woken.swap(false, Ordering::SeqCst) {
                this.dirty = true;
            }
            if this.dirty {
                this.dirty = false;
                this.settling = false;
                if let Poll::Ready(output) = this.body.as_mut().poll(&mut body_cx) {
                    this.signal.polling.store(false, Ordering::SeqCst);
                    return Poll::Ready(output);
                }
                continue;
            }
            // The body's last poll woke nothing during it; wait for the runtime's deferred wakes.
            if !this.settling {
                this.settling = true;
                this.settled.fired.store(false, Ordering::SeqCst);
                let settle_waker = Waker::from(Arc::clone(&this.settled));
                let mut settle_cx = Context::from_waker(&settle_waker);
                let _ = std::pin::pin!(tokio::task::yield_now()).poll(&mut settle_cx);
            }
            if !this.settled.fired.load(Ordering::SeqCst) {
                yielding = false;
                awaiting_settle = true;
                break;
            }
            match this.run.next_turn() {
                Turn::Delivered => {
                    this.dirty = true;
                    continue;
                }
                Turn::Idle => {
                    yielding = false;
                    if let Some(reason) = this.run.stalled_replay() {
                        this.run.abort(Abort::Park(reason));
                    }
                    break;
                }
                Turn::Waiting { .. } if !this.run.stalled_on_missing() => {
                    yielding = false;
                    break;
                }
                Turn::Diverged { seq, name } | Turn::Waiting { seq, name } => {
                    let reason = format!(
                        "non-determinism in run {:?}: the journal's next outcome is step #{seq} (`{name}`), but the workflow body went on without calling it{}; the run is parked until code that takes the journaled path resumes it",
                        this.run.run_id,
                        if this.run.body_changed {
                            " (the workflow body changed since this run started)"
                        } else {
                            ""
                        }
                    );
                    tracing::error!(run_id = %this.run.run_id, seq, step = %name, "non-determinism: run parked");
                    this.run.abort(Abort::Park(reason));
                    yielding = false;
                    break;
                }
            }
        }
        this.signal.polling.store(false, Ordering::SeqCst);
        // A wake that came while the driver was polling did not reach the task: pass it on. Out
        // of polls for this turn, come back after the runtime's other tasks.
        if yielding
            || this.signal.woken.load(Ordering::SeqCst)
            || (awaiting_settle && this.settled.fired.load(Ordering::SeqCst))
        {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}
