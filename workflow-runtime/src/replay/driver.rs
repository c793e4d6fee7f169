//! Polls a run's body and hands it the next outcome when it is idle (see [`replay`](super)).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use super::order::Turn;
use crate::context::{Abort, RunContext};
use crate::error::ParkReason;

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
                    } else if this.run.nothing_to_deliver()
                        && let Some(wait) = this.run.leave_memory()
                    {
                        // Only long durable waits are left: the run leaves memory and replay
                        // brings it back when one is due (or an event arrives).
                        this.run.abort(wait);
                    }
                    break;
                }
                Turn::Waiting { .. } if !this.run.stalled_on_missing() => {
                    yielding = false;
                    break;
                }
                Turn::Diverged { seq, name } | Turn::Waiting { seq, name } => {
                    let message = format!(
                        "non-determinism in run {:?}: the journal's next outcome is step #{seq} (`{name}`), but the workflow body went on without calling it{}; the run is parked until code that takes the journaled path resumes it",
                        this.run.run_id,
                        if this.run.body_changed {
                            " (the workflow body changed since this run started)"
                        } else {
                            ""
                        }
                    );
                    tracing::error!(run_id = %this.run.run_id, seq, step = %name, "non-determinism: run parked");
                    this.run.abort(Abort::Park(ParkReason::SkippedStep {
                        run_id: this.run.run_id.clone(),
                        seq,
                        step: name,
                        body_changed: this.run.body_changed,
                        message,
                    }));
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
