//! Reading runs: records, journals, history and the cost ledger. [`Inspector`] reads a store
//! without an engine (nothing is registered, nothing resumes, nothing is written), so that
//! tools such as `wf` can read a journal at rest; the engine's read methods go through it.

use std::sync::Arc;
use std::time::SystemTime;

use super::Engine;
use crate::error::Error;
use crate::history::{HistoryPage, LedgerGroup, LedgerRow, history_of, ledger_of};
use crate::journal::{RunRecord, StepRecord};
use crate::store::Store;

/// Reads the runs of a store, without executing, resuming or writing anything.
///
/// ```
/// use workflow_runtime::{Engine, Inspector, MemoryStore};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), workflow_runtime::Error> {
/// let inspector = Inspector::new(MemoryStore::new());
/// assert!(inspector.runs().await?.is_empty());
/// // An engine's own reads go through its inspector.
/// let engine = Engine::in_memory();
/// assert!(engine.inspector().runs().await?.is_empty());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Inspector {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Inspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inspector").finish_non_exhaustive()
    }
}

impl Inspector {
    /// An inspector of `store`.
    pub fn new(store: impl Store) -> Inspector {
        Inspector {
            store: Arc::new(store),
        }
    }

    /// Every run in the journal, ordered by id.
    pub async fn runs(&self) -> Result<Vec<RunRecord>, Error> {
        Ok(self.store.list_runs().await?)
    }

    /// The record of run `run_id`, if it exists.
    pub async fn run(&self, run_id: &str) -> Result<Option<RunRecord>, Error> {
        Ok(self.store.load_run(run_id.to_owned()).await?)
    }

    /// The runs whose records are damaged (a changed byte, a record of another key), ordered
    /// by id. [`runs`](Inspector::runs) leaves them out, and the rest of the journal keeps
    /// working; each is named here with what is wrong with it.
    pub async fn damaged_runs(&self) -> Result<Vec<crate::store::DamagedRun>, Error> {
        Ok(self.store.list_damaged_runs().await?)
    }

    /// The journal of run `run_id`: its steps, ordered by sequence number.
    pub async fn journal(&self, run_id: &str) -> Result<Vec<StepRecord>, Error> {
        Ok(self.store.load_steps(run_id.to_owned()).await?)
    }

    /// A page of run `run_id`'s history: the `limit` events after the first `after`, oldest
    /// first. Pass the page's `next` as `after` for the next page.
    pub async fn history(
        &self,
        run_id: &str,
        after: usize,
        limit: usize,
    ) -> Result<HistoryPage, Error> {
        let run = self.run(run_id).await?.ok_or_else(|| Error::RunNotFound {
            run_id: run_id.to_owned(),
        })?;
        let steps = self.journal(run_id).await?;
        let events = history_of(&run, &steps);
        let end = after.saturating_add(limit).min(events.len());
        let next = (end < events.len()).then_some(end);
        let page = events
            .into_iter()
            .skip(after)
            .take(end.saturating_sub(after));
        Ok(HistoryPage {
            events: page.collect(),
            next,
        })
    }

    /// What runs cost, grouped by workflow or by a tag's value: runs, failed runs, steps,
    /// retries, tokens, dollars and error rate, for runs created at or after `since`.
    pub async fn ledger(
        &self,
        group: LedgerGroup,
        since: Option<SystemTime>,
    ) -> Result<Vec<LedgerRow>, Error> {
        let mut runs = Vec::new();
        for run in self.runs().await? {
            let steps = self.journal(&run.run_id).await?;
            runs.push((run, steps));
        }
        Ok(ledger_of(&runs, &group, since))
    }
}

impl Engine {
    /// Reads this engine's journal (the methods below are shorthands for it).
    pub fn inspector(&self) -> Inspector {
        Inspector {
            store: Arc::clone(&self.inner.store),
        }
    }

    /// Every run in the journal, ordered by id.
    pub async fn runs(&self) -> Result<Vec<RunRecord>, Error> {
        self.inspector().runs().await
    }

    /// The record of run `run_id`, if it exists.
    pub async fn run(&self, run_id: &str) -> Result<Option<RunRecord>, Error> {
        self.inspector().run(run_id).await
    }

    /// The journal of run `run_id`: its steps, ordered by sequence number.
    pub async fn journal(&self, run_id: &str) -> Result<Vec<StepRecord>, Error> {
        self.inspector().journal(run_id).await
    }

    /// A page of run `run_id`'s history (see [`Inspector::history`]).
    pub async fn history(
        &self,
        run_id: &str,
        after: usize,
        limit: usize,
    ) -> Result<HistoryPage, Error> {
        self.inspector().history(run_id, after, limit).await
    }

    /// What runs cost, grouped (see [`Inspector::ledger`]).
    pub async fn ledger(
        &self,
        group: LedgerGroup,
        since: Option<SystemTime>,
    ) -> Result<Vec<LedgerRow>, Error> {
        self.inspector().ledger(group, since).await
    }
}
