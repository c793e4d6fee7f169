//! Events: what happens to runs and steps, delivered to listeners registered with
//! [`Engine::on_event`](crate::Engine::on_event) (and mirrored as tracing events).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::budget::Usage;
use crate::error::StepError;
use crate::journal::{AttemptRecord, RunStatus};
use crate::monitor::{AlertThresholds, Monitor};

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
        /// Which resume this is: 1 for the first.
        resume: usize,
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
        /// Every attempt, when there were several.
        attempt_log: Vec<AttemptRecord>,
        /// When its first attempt started, in microseconds since the Unix epoch.
        started_at_us: u64,
        /// What the run has spent in all, this step included, in US dollars.
        run_cost_usd: f64,
    },
    /// Something a person should look at: see [`AlertKind`]. Also emitted as a tracing event
    /// at warn or error level with the fields `alert`, `run_id`, `step` and `message`.
    Alert {
        /// What happened.
        kind: AlertKind,
        /// The run, if the alert concerns one.
        run_id: Option<String>,
        /// The step, if the alert concerns one.
        step: Option<String>,
        /// A sentence saying what happened.
        message: String,
    },
    /// A run left memory to wait: for a timer or an event. It comes back with
    /// [`Event::RunResumed`] when it is due.
    RunWaiting {
        /// The run.
        run_id: String,
        /// When it is due, in microseconds since the Unix epoch; `None` when only an event
        /// brings it back.
        due_us: Option<u64>,
        /// What it waits for.
        waiting_for: String,
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

/// What an [`Event::Alert`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AlertKind {
    /// A step was refused for authentication or permission (HTTP 401/403); its run stopped.
    AuthFailure,
    /// A step got HTTP 503 on several attempts in a row.
    RepeatedServiceUnavailable,
    /// A circuit opened.
    CircuitOpened,
    /// A run was stopped by its budget.
    BudgetExceeded,
    /// A run's spending crossed [`AlertThresholds::cost_per_run_usd`](crate::AlertThresholds).
    CostPerRun,
    /// All runs' spending in a window crossed its threshold.
    CostPerWindow,
    /// Too many runs failed in a window.
    ErrorRate,
    /// A step was much slower than its recent history.
    SlowStep,
}

impl AlertKind {
    /// The stable name of the alert, as in the tracing field `alert`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::AuthFailure => "auth_failure",
            AlertKind::RepeatedServiceUnavailable => "repeated_503",
            AlertKind::CircuitOpened => "circuit_opened",
            AlertKind::BudgetExceeded => "budget_exceeded",
            AlertKind::CostPerRun => "cost_per_run",
            AlertKind::CostPerWindow => "cost_per_window",
            AlertKind::ErrorRate => "error_rate",
            AlertKind::SlowStep => "slow_step",
        }
    }
}

type Listener = Arc<dyn Fn(&Event) + Send + Sync>;

/// The listeners of one engine, shared with its runs.
#[derive(Default)]
pub(crate) struct Listeners {
    listeners: RwLock<Vec<Listener>>,
    monitor: Mutex<Option<Monitor>>,
    monitoring: AtomicBool,
}

impl Listeners {
    pub(crate) fn set_thresholds(&self, thresholds: AlertThresholds) {
        *self.monitor.lock().unwrap_or_else(|p| p.into_inner()) = Some(Monitor::new(thresholds));
        self.monitoring.store(true, Ordering::SeqCst);
    }

    pub(crate) fn add(&self, listener: Listener) {
        self.listeners
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(listener);
    }

    /// Emits an alert to the listeners and as a tracing event.
    pub(crate) fn alert(
        &self,
        kind: AlertKind,
        run_id: Option<&str>,
        step: Option<&str>,
        message: String,
    ) {
        match kind {
            AlertKind::AuthFailure => tracing::error!(
                alert = kind.as_str(),
                run_id = run_id.unwrap_or(""),
                step = step.unwrap_or(""),
                message = %message,
                "workflow alert"
            ),
            _ => tracing::warn!(
                alert = kind.as_str(),
                run_id = run_id.unwrap_or(""),
                step = step.unwrap_or(""),
                message = %message,
                "workflow alert"
            ),
        }
        self.emit(Event::Alert {
            kind,
            run_id: run_id.map(str::to_owned),
            step: step.map(str::to_owned),
            message,
        });
    }

    pub(crate) fn emit(&self, event: Event) {
        self.emit_with(|| event);
    }

    /// Builds the event only when someone listens: replay emits one per step, and building
    /// it costs allocations.
    pub(crate) fn emit_with(&self, make: impl FnOnce() -> Event) {
        let monitoring = self.monitoring.load(Ordering::Relaxed);
        // A snapshot, taken and released before any listener runs: a listener may register
        // another listener, or emit, without the lock it would otherwise meet held (std's
        // RwLock deadlocks or panics on that). A listener added during a call hears the next
        // event, not this one.
        let listeners: Vec<Listener> = {
            let listeners = self.listeners.read().unwrap_or_else(|p| p.into_inner());
            if listeners.is_empty() && !monitoring {
                return;
            }
            listeners.iter().cloned().collect()
        };
        let event = make();
        for listener in &listeners {
            listener(&event);
        }
        if monitoring && !matches!(event, Event::Alert { .. }) {
            let raised = match self
                .monitor
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
            {
                Some(monitor) => monitor.observe(&event),
                None => Vec::new(),
            };
            // Raised after the locks are released: an alert is an event too.
            for (kind, run_id, step, message) in raised {
                self.alert(kind, run_id.as_deref(), step.as_deref(), message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;

    fn finished(run_id: &str) -> Event {
        Event::RunFinished {
            run_id: run_id.to_owned(),
            status: RunStatus::Completed,
            message: None,
        }
    }

    #[test]
    fn a_listener_that_registers_another_listener_deadlocked_on_the_lock() {
        let listeners = Arc::new(Listeners::default());
        let heard_by_second = Arc::new(AtomicUsize::new(0));
        let registered = Arc::new(AtomicBool::new(false));
        {
            let inner = Arc::clone(&listeners);
            let heard = Arc::clone(&heard_by_second);
            let registered = Arc::clone(&registered);
            listeners.add(Arc::new(move |_event: &Event| {
                if !registered.swap(true, Ordering::SeqCst) {
                    let heard = Arc::clone(&heard);
                    inner.add(Arc::new(move |_: &Event| {
                        heard.fetch_add(1, Ordering::SeqCst);
                    }));
                    // Emitting from a listener is fine too.
                    inner.emit(finished("nested"));
                }
            }));
        }
        // On another thread, so that a deadlock fails the test instead of hanging it.
        let (done, finished_emitting) = mpsc::channel();
        let emitter = Arc::clone(&listeners);
        std::thread::spawn(move || {
            emitter.emit(finished("first"));
            emitter.emit(finished("second"));
            let _ = done.send(());
        });
        finished_emitting
            .recv_timeout(Duration::from_secs(10))
            .expect("emitting must not deadlock when a listener registers a listener");
        // The second listener missed "first" (it was added during it) and heard "nested" and
        // "second".
        assert_eq!(heard_by_second.load(Ordering::SeqCst), 2);
    }
}
