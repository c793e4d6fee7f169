use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{BoxFuture, CreateRun, Store, Write};
use crate::error::StoreError;
use crate::journal::{InboxEvent, RunRecord, StepRecord};

/// A store in memory: for tests, and for engines whose runs need not outlive the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default, Clone)]
struct State {
    runs: BTreeMap<String, RunRecord>,
    steps: BTreeMap<(String, u64), StepRecord>,
    events: BTreeMap<(String, u64), InboxEvent>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of everything the store holds now: a new store that a test resumes from, as a
    /// process would from what a crash left on disk.
    pub fn snapshot(&self) -> MemoryStore {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        MemoryStore {
            state: Mutex::new(state),
        }
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> Result<T, StoreError> {
        // A panic while holding the lock cannot leave a half-applied batch behind (each batch is
        // applied by infallible inserts), so a poisoned lock is still consistent.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&mut state))
    }
}

impl Store for MemoryStore {
    fn create_run(&self, run: RunRecord) -> BoxFuture<'_, Result<CreateRun, StoreError>> {
        let result = self.with_state(|s| match s.runs.get(&run.run_id) {
            Some(existing) => CreateRun::Existing(Box::new(existing.clone())),
            None => {
                s.runs.insert(run.run_id.clone(), run);
                CreateRun::Created
            }
        });
        Box::pin(async move { result })
    }

    fn load_run(&self, run_id: String) -> BoxFuture<'_, Result<Option<RunRecord>, StoreError>> {
        let result = self.with_state(|s| s.runs.get(&run_id).cloned());
        Box::pin(async move { result })
    }

    fn list_runs(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, StoreError>> {
        let result = self.with_state(|s| s.runs.values().cloned().collect());
        Box::pin(async move { result })
    }

    fn load_steps(&self, run_id: String) -> BoxFuture<'_, Result<Vec<StepRecord>, StoreError>> {
        let result = self.with_state(|s| {
            s.steps
                .range((run_id.clone(), 0)..=(run_id, u64::MAX))
                .map(|(_, step)| step.clone())
                .collect()
        });
        Box::pin(async move { result })
    }

    fn load_events(&self, run_id: String) -> BoxFuture<'_, Result<Vec<InboxEvent>, StoreError>> {
        let result = self.with_state(|s| {
            s.events
                .range((run_id.clone(), 0)..=(run_id, u64::MAX))
                .map(|(_, event)| event.clone())
                .collect()
        });
        Box::pin(async move { result })
    }

    fn commit(&self, writes: Vec<Write>) -> BoxFuture<'_, Result<(), StoreError>> {
        let result = self.with_state(|s| {
            for write in writes {
                match write {
                    Write::Run(run) => {
                        s.runs.insert(run.run_id.clone(), run);
                    }
                    Write::Step { run_id, step } => {
                        s.steps.insert((run_id, step.seq), step);
                    }
                    Write::Event(event) => {
                        s.events
                            .insert((event.run_id.clone(), event.arrival), event);
                    }
                    Write::DeleteStep { run_id, seq } => {
                        s.steps.remove(&(run_id, seq));
                    }
                    Write::ConsumeEvent { run_id, arrival } => {
                        s.events.remove(&(run_id, arrival));
                    }
                }
            }
        });
        Box::pin(async move { result })
    }
}
