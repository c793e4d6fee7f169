//! The journal of one run as replay consumes it, and the order in which its outcomes reach the
//! body: pure data, with no notion of a run or an engine (see [`replay`](super) for the rule).

use std::collections::BTreeMap;
use std::task::Waker;

use crate::journal::{StepRecord, StepStatus};

/// Where an outcome stands in the order of delivery: records journaled before positions existed
/// come first, by sequence number; then positioned ones.
pub(super) type Position = (u8, u64);

pub(super) fn position_of(record: &StepRecord) -> Position {
    match record.delivery {
        Some(position) => (1, position),
        None => (0, record.seq),
    }
}

/// Whether a record holds an outcome the body receives.
pub(super) fn is_outcome(record: &StepRecord) -> bool {
    matches!(record.status, StepStatus::Completed | StepStatus::Failed)
}

/// The journal of one run, loaded once per resume and consumed as the body replays, and the
/// order in which its outcomes are delivered.
#[derive(Default)]
pub(crate) struct ReplayJournal {
    /// By sequence number; a record leaves when it is claimed. A map, not a vector indexed by
    /// sequence number: a sequence number comes from disk, and a damaged or forged one (say
    /// 2^60) must not size an allocation.
    pub(super) records: BTreeMap<u64, StepRecord>,
    pub(super) deliveries: Deliveries,
}

impl ReplayJournal {
    pub(crate) fn new(steps: Vec<StepRecord>) -> Self {
        let mut deliveries = Deliveries::default();
        for step in steps.iter().filter(|s| is_outcome(s)) {
            let position = position_of(step);
            deliveries.next_live = deliveries.next_live.max(position.1.saturating_add(1));
            deliveries.pending.insert(
                position,
                Slot::Unclaimed {
                    seq: step.seq,
                    name: step.name.clone(),
                },
            );
        }
        // The store hands steps back ordered by seq, which collect builds in one pass.
        let records = steps.into_iter().map(|s| (s.seq, s)).collect();
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
pub(super) struct Deliveries {
    pub(super) pending: BTreeMap<Position, Slot>,
    /// The position the next live outcome takes.
    pub(super) next_live: u64,
}

pub(super) enum Slot {
    /// Journaled, and its step has not been called (yet).
    Unclaimed { seq: u64, name: String },
    /// Live: its commit is in flight.
    Committing,
    /// Live: waits to be first in line before it commits (an event, whose consumption must be
    /// journaled only when the body is sure to receive it); the waker of its future.
    Deferred(Option<Waker>),
    /// Durable, waiting for its turn; the waker of the future that waits for it.
    Ready(Option<Waker>),
    /// Its future was dropped before its turn: skipped.
    Abandoned,
}

/// What the driver found when the body went idle.
pub(super) enum Turn {
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
    pub(super) fn next_turn(&mut self) -> Turn {
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
                Slot::Deferred(waker) => {
                    // First in line, with the body idle: it may commit now.
                    let waker = waker.take();
                    *entry.get_mut() = Slot::Committing;
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                    return Turn::Delivered;
                }
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
                            .all(|slot| !matches!(slot, Slot::Committing | Slot::Deferred(_)));
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
