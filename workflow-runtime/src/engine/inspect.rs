//! Reading runs: records, journals, history and the cost ledger.

use super::*;

impl Engine {
    /// Every run in the journal, ordered by id.
    pub async fn runs(&self) -> Result<Vec<RunRecord>, Error> {
        Ok(self.inner.store.list_runs().await?)
    }

    /// The record of run `run_id`, if it exists.
    pub async fn run(&self, run_id: &str) -> Result<Option<RunRecord>, Error> {
        Ok(self.inner.store.load_run(run_id.to_owned()).await?)
    }

    /// The journal of run `run_id`: its finished steps, ordered by sequence number.
    pub async fn journal(&self, run_id: &str) -> Result<Vec<StepRecord>, Error> {
        Ok(self.inner.store.load_steps(run_id.to_owned()).await?)
    }

    /// A page of run `run_id`'s history: the `limit` events after the first `after`, oldest
    /// first. Pass the page's `next` as `after` for the next page.
    pub async fn history(
        &self,
        run_id: &str,
        after: usize,
        limit: usize,
    ) -> Result<HistoryPage, Error> {
        let run = self.existing(run_id).await?;
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
