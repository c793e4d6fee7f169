//! The replay rule, in one place: how a run's body receives the outcomes of its steps, timers,
//! event waits and journaled values, live and on replay.
//!
//! # The rule
//!
//! Every outcome the body receives (a step's value or error, a timer firing, an event or its
//! timeout, a journaled `now`, `random` or `uuid`) is journaled with its *delivery position*,
//! in the transaction that journals the outcome. Outcomes reach the body one at a time in the
//! order of their positions, and after each one the body runs until it is idle (a poll of the
//! body that woke nothing, and a round trip through the runtime's deferred wakes that woke it
//! no more) before the next one is handed over. Live, an outcome takes the next
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
//! - On replay, the body took another path when it goes on without asking for the journal's
//!   next outcome: when it is held up by live work behind that outcome, or returns without
//!   asking for it. The run is parked, naming that step. (A body idle for something outside
//!   the journal, a tokio timer in a hand-written body, is waited for.)
//! - Outcomes produced live during a replay (a step that was running at the crash) take
//!   positions after every journaled one.
//! - Records journaled before this rule existed have no position: they are handed back in order
//!   of sequence number, before any positioned one (the rule older journals were written under).
//! - Records that are not outcomes (a timer's due time, an at-most-once step's intent, the
//!   spending of failed attempts) have no position and are never delivered.
//!
//! The parts: [`order`] keeps the journal and the order of delivery (pure data), this module
//! the protocol each call follows (claim, hand back or record, commit, park), and [`driver`]
//! polls the body and hands outcomes over when it is idle.

mod driver;
pub(crate) mod order;

use std::sync::Arc;
use std::task::Poll;

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

pub(crate) use self::driver::drive;
use self::order::{Position, Slot, Turn, is_outcome, position_of};
use crate::context::{Abort, RunContext};
use crate::error::{Error, NonDeterminism, ParkReason, StepError};
use crate::event::Event;
use crate::journal::{StepRecord, StepStatus};
use crate::store::Write;

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

    /// Resolves when the outcome is first in line and the body idle, so that what it commits
    /// is handed over before anything else happens.
    async fn first_in_line(&self) {
        std::future::poll_fn(|cx| {
            let mut state = self.run.replay_state();
            match state.journal.deliveries.pending.get_mut(&self.position) {
                Some(Slot::Deferred(waker)) => {
                    if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        *waker = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
                _ => Poll::Ready(()),
            }
        })
        .await
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
        let Some(record) = journal.records.get(&seq) else {
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
        let Some(record) = journal.records.remove(&seq) else {
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
        self.reserve_as(Slot::Committing)
    }

    fn reserve_as(self: &Arc<Self>, slot: Slot) -> Ticket {
        let mut state = self.replay_state();
        let deliveries = &mut state.journal.deliveries;
        let position = (1, deliveries.next_live);
        deliveries.next_live += 1;
        deliveries.pending.insert(position, slot);
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
    fn stalled_replay(&self) -> Option<ParkReason> {
        if !self.verify_only {
            return None;
        }
        let state = self.replay_state();
        if !state.journal.deliveries.pending.is_empty() {
            return None;
        }
        let message = match state.missing.iter().next() {
            Some((seq, name)) => format!(
                "replaying run {:?}: the workflow waits for step #{seq} ({name}), which its journal does not hold",
                self.run_id
            ),
            None => format!(
                "replaying run {:?}: the workflow waits for more than its journal holds",
                self.run_id
            ),
        };
        Some(ParkReason::NotJournaled { message })
    }

    /// Whether no outcome is being committed or waits for its turn.
    pub(crate) fn nothing_to_deliver(&self) -> bool {
        self.replay_state().journal.deliveries.pending.is_empty()
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
    hand_over(run, &record).await
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
    commit_and_hand_over(run, &ticket, record, extra).await
}

/// [`record_outcome`] for an outcome that consumes something (an event): it takes its place
/// in line now, but commits only when it is first in line and the body idle, so that the
/// body receives it right after; a future dropped before that (a race's loser) commits
/// nothing and calls `undo`, which gives back what it took.
pub(crate) async fn record_outcome_when_first<T: DeserializeOwned>(
    run: &Arc<RunContext>,
    record: &mut StepRecord,
    extra: Vec<Write>,
    undo: impl FnOnce(),
) -> Result<T, StepError> {
    struct Undo<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Undo<F> {
        fn drop(&mut self) {
            if let Some(undo) = self.0.take() {
                undo();
            }
        }
    }
    let ticket = run.reserve_as(Slot::Deferred(None));
    record.delivery = ticket.journaled();
    let mut undo = Undo(Some(undo));
    ticket.first_in_line().await;
    // Committing now: what was taken is the body's from here on.
    undo.0 = None;
    commit_and_hand_over(run, &ticket, record, extra).await
}

/// Commits a new outcome at its ticket's position, and hands it to the body at its turn.
async fn commit_and_hand_over<T: DeserializeOwned>(
    run: &Arc<RunContext>,
    ticket: &Ticket,
    record: &StepRecord,
    extra: Vec<Write>,
) -> Result<T, StepError> {
    if let Err(reason) = commit_with(run, record, extra).await {
        return park(run, Abort::Park(reason)).await;
    }
    ticket.durable();
    finished(run, record);
    ticket.turn().await;
    hand_over(run, record).await
}

/// The body's value of a journaled outcome, decoded from its bytes; a value that no longer
/// decodes parks the run.
async fn hand_over<T: DeserializeOwned>(
    run: &RunContext,
    record: &StepRecord,
) -> Result<T, StepError> {
    match hand_back(run, record) {
        Ok(outcome) => outcome,
        Err(error) => park(run, Abort::Park(ParkReason::from_error(&error))).await,
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

/// [`durable::patched`](crate::durable::patched): whether the run takes the patched path.
///
/// The answer is journaled as a marker at the next sequence number, so every replay answers
/// the same: a run whose journal holds the marker there took the patch; a run whose journal
/// goes on with anything else there passed this point before the patch existed and keeps the
/// old path; a run with nothing journaled from there on is live and takes the patch, and the
/// marker rides on its next commit (no fsync of its own: a marker nothing follows need not
/// survive a crash, as the run then reaches this point live again).
pub(crate) fn patched(run: &RunContext, id: &str) -> bool {
    let marker = patch_marker(id);
    let mut state = run.replay_state();
    let seq = RunContext::peek_seq(&state);
    match state.journal.records.get(&seq) {
        Some(record) if record.name == marker => {
            state.journal.records.remove(&seq);
            RunContext::take_seq(&mut state);
            true
        }
        // The journal goes on without the marker: the run passed here before the patch.
        Some(_) => false,
        None if state.journal.records.range(seq..).next().is_some() => false,
        None => {
            RunContext::take_seq(&mut state);
            drop(state);
            if !run.verify_only {
                let mut record = StepRecord::completed(seq, marker, RawValue::NULL.to_owned());
                record.status = StepStatus::Marker;
                record.output = None;
                run.ride_on_next_commit(Write::Step {
                    run_id: run.run_id.clone(),
                    step: record,
                });
            }
            true
        }
    }
}

/// [`durable::deprecated_patch`](crate::durable::deprecated_patch): consumes the patch's
/// marker where a run journaled one, and journals nothing new.
pub(crate) fn deprecated_patch(run: &RunContext, id: &str) {
    let marker = patch_marker(id);
    let mut state = run.replay_state();
    let seq = RunContext::peek_seq(&state);
    if state
        .journal
        .records
        .get(&seq)
        .is_some_and(|r| r.name == marker)
    {
        state.journal.records.remove(&seq);
        RunContext::take_seq(&mut state);
    }
}

fn patch_marker(id: &str) -> String {
    format!("patch:{id}")
}

/// Commits `record`; on failure returns why the run must be parked.
pub(crate) async fn commit(run: &RunContext, record: &StepRecord) -> Result<(), ParkReason> {
    commit_with(run, record, Vec::new()).await
}

/// Commits `record` with `extra` writes in the same transaction, and the run's change to
/// `running` if it has not been journaled yet.
pub(crate) async fn commit_with(
    run: &RunContext,
    record: &StepRecord,
    extra: Vec<Write>,
) -> Result<(), ParkReason> {
    let mut writes = vec![Write::Step {
        run_id: run.run_id.clone(),
        step: record.clone(),
    }];
    writes.extend(extra);
    let riders = run.take_riders();
    writes.extend(riders.iter().cloned());
    let status_change = run.take_status_change();
    if let Some(running) = &status_change {
        writes.push(Write::Run(running.clone()));
    }
    let committed = run.shared.store.commit(writes).await;
    if committed.is_err() {
        run.restore_status_change(status_change);
        run.restore_riders(riders);
    }
    committed.map_err(|e| {
        tracing::error!(run_id = %run.run_id, seq = record.seq, step = %record.name, error = %e, "journal write failed: run parked");
        ParkReason::Storage {
            message: format!(
                "the outcome of step #{} ({}) could not be journaled: {e}",
                record.seq, record.name
            ),
        }
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
fn hand_back<T: DeserializeOwned>(
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
