//! Storage: the async [`Store`] trait the engine talks to, and its two implementations,
//! [`RedbStore`] (one embedded file, the default) and [`MemoryStore`] (tests, direct calls).
//!
//! The write path takes a batch ([`Store::commit`]) and resolves once the batch is durable.
//! A store is free to merge the batches of many concurrent callers into one transaction (group
//! commit, as [`RedbStore`] does): callers cannot tell, except by the throughput.
//!
//! Implementing [`Store`] outside this crate is supported, and stays so across releases: a
//! method added to the trait comes with a default body, and [`Write`] is `#[non_exhaustive]`,
//! so an implementation must answer a write it does not know with an error rather than a
//! silent success.

mod memory;
mod redb;
pub(crate) mod wire;

use std::future::Future;
use std::pin::Pin;

pub use self::memory::MemoryStore;
pub use self::redb::{RedbReader, RedbStore};
use crate::error::StoreError;
use crate::journal::{InboxEvent, RunRecord, StepRecord};

/// A boxed, sendable future, the return type of the [`Store`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One write of a commit batch.
#[derive(Debug, Clone)]
#[non_exhaustive]
// A run's record is much larger than the other writes; a batch is built once and moved into
// the store, so boxing it would cost an allocation per commit for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Write {
    /// Insert or replace a run's record.
    Run(RunRecord),
    /// Insert a finished step of a run.
    Step {
        /// The run it belongs to.
        run_id: String,
        /// The step.
        step: StepRecord,
    },
    /// Keep an event sent to a run.
    Event(InboxEvent),
    /// Delete a step of a run (a failed step that [`Engine::retry`](crate::Engine::retry)
    /// runs again).
    DeleteStep {
        /// The run.
        run_id: String,
        /// The step's sequence number.
        seq: u64,
    },
    /// Delete an event its run consumed (in the transaction that journals the consumption).
    ConsumeEvent {
        /// The run.
        run_id: String,
        /// The event's arrival number.
        arrival: u64,
    },
}

/// What [`Store::create_run`] found.
#[derive(Debug, Clone)]
pub enum CreateRun {
    /// The run was new and is now persisted.
    Created,
    /// A run with this id already existed; nothing was written.
    Existing(Box<RunRecord>),
}

/// A run whose record could not be read: [`Store::list_runs`] leaves it out, so that damage
/// stays confined to the run it is in, and [`Store::list_damaged_runs`] names it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DamagedRun {
    /// The run's id (the record's key).
    pub run_id: String,
    /// What is wrong with its record.
    pub error: StoreError,
}

/// Where the engine keeps its journal.
///
/// Every method's future resolves only once its effect is durable (for stores that persist).
pub trait Store: Send + Sync + 'static {
    /// Persists `run` unless a run with its id exists, atomically.
    fn create_run(&self, run: RunRecord) -> BoxFuture<'_, Result<CreateRun, StoreError>>;

    /// The run with this id, if any.
    fn load_run(&self, run_id: String) -> BoxFuture<'_, Result<Option<RunRecord>, StoreError>>;

    /// Every run whose record reads, ordered by id. A damaged record is left out (the other
    /// runs go on working); [`Store::list_damaged_runs`] names it.
    fn list_runs(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, StoreError>>;

    /// The runs whose records are damaged, ordered by id. A store that cannot hold damaged
    /// records has none, the default.
    fn list_damaged_runs(&self) -> BoxFuture<'_, Result<Vec<DamagedRun>, StoreError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// The finished steps of a run, ordered by sequence number.
    fn load_steps(&self, run_id: String) -> BoxFuture<'_, Result<Vec<StepRecord>, StoreError>>;

    /// The events sent to a run and not consumed yet, in order of arrival.
    fn load_events(&self, run_id: String) -> BoxFuture<'_, Result<Vec<InboxEvent>, StoreError>>;

    /// Applies `writes` atomically and durably.
    fn commit(&self, writes: Vec<Write>) -> BoxFuture<'_, Result<(), StoreError>>;
}

/// A shared store, so that several engines (one after another, in tests) can use the same one.
impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn create_run(&self, run: RunRecord) -> BoxFuture<'_, Result<CreateRun, StoreError>> {
        (**self).create_run(run)
    }

    fn load_run(&self, run_id: String) -> BoxFuture<'_, Result<Option<RunRecord>, StoreError>> {
        (**self).load_run(run_id)
    }

    fn list_runs(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, StoreError>> {
        (**self).list_runs()
    }

    fn list_damaged_runs(&self) -> BoxFuture<'_, Result<Vec<DamagedRun>, StoreError>> {
        (**self).list_damaged_runs()
    }

    fn load_steps(&self, run_id: String) -> BoxFuture<'_, Result<Vec<StepRecord>, StoreError>> {
        (**self).load_steps(run_id)
    }

    fn load_events(&self, run_id: String) -> BoxFuture<'_, Result<Vec<InboxEvent>, StoreError>> {
        (**self).load_events(run_id)
    }

    fn commit(&self, writes: Vec<Write>) -> BoxFuture<'_, Result<(), StoreError>> {
        (**self).commit(writes)
    }
}
