//! Events: what happens to runs and steps, delivered to listeners registered with
//! [`Engine::on_event`](crate::Engine::on_event) (and mirrored as tracing events).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::budget::Usage;
use crate::error::StepError;
use crate::journal::RunStatus;

/// Something that happened to a run or one of its steps.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A new run was journaled and began executing.
    RunStarted {
        /// The run.
        run_id: String,
        /// Its workflow's name.
        workflow: String,
    },
    /// An unfinished run began executing again, replaying its journal.
    RunResumed {
        /// The run.
        run_id: String,
        /// Its workflow's name.
        workflow: String,
        /// How many finished steps its journal holds.
        journaled_steps: usize,
    },
    /// A step's outcome came from the journal; its body did not run.
    StepReplayed {
        /// The run.
        run_id: String,
        /// The step's sequence number.
        seq: u64,
        /// The step's name.
        name: String,
    },
    /// An attempt failed and the step will run again after `delay`.
    StepRetrying {
        /// The run.
        run_id: String,
        /// The step's sequence number.
        seq: u64,
        /// The step's name.
        name: String,
        /// The attempt that failed, from 1.
        attempt: u32,
        /// Its error.
        error: StepError,
        /// The wait before the next attempt.
        delay: Duration,
    },
    /// A step ran and its outcome was journaled.
    StepFinished {
        /// The run.
        run_id: String,
        /// The step's sequence number.
        seq: u64,
        /// The step's name.
        name: String,
        /// Attempts made.
        attempts: u32,
        /// From the start of its first attempt to its end.
        latency: Duration,
        /// What its attempts spent.
        usage: Usage,
        /// Its error, if it failed.
        error: Option<StepError>,
    },
    /// A run stopped executing in this engine, with this status.
    RunFinished {
        /// The run.
        run_id: String,
        /// How it ended.
        status: RunStatus,
        /// Its error, park reason or budget message, if any.
        message: Option<String>,
    },
}

type Listener = Arc<dyn Fn(&Event) + Send + Sync>;

/// The listeners of one engine, shared with its runs.
#[derive(Default)]
pub(crate) struct Listeners {
    listeners: RwLock<Vec<Listener>>,
}

impl Listeners {
    pub(crate) fn add(&self, listener: Listener) {
        self.listeners
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(listener);
    }

    pub(crate) fn emit(&self, event: Event) {
        let listeners = self.listeners.read().unwrap_or_else(|p| p.into_inner());
        for listener in listeners.iter() {
            listener(&event);
        }
    }
}
