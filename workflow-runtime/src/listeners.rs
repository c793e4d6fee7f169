//! The listeners of an engine: where events go, and the monitor that raises alerts from them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::event::{AlertKind, Event};
use crate::monitor::{AlertThresholds, Monitor};

pub(crate) type Listener = Arc<dyn Fn(&Event) + Send + Sync>;

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
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::journal::RunStatus;

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
