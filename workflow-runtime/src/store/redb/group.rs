//! Group commit over one redb database.
//!
//! Callers queue their batches; a commit session on tokio's blocking pool takes every batch
//! waiting, applies them in one transaction committed with `Durability::Immediate` (one
//! fdatasync with redb's default one-phase commit), answers each caller, and goes on until the
//! queue is empty. Batches queued while a transaction is written go into the next one, so
//! concurrent runs share one fsync.
//!
//! One case commits on the caller's own thread instead: a lone sequential run (nothing queued
//! or being written, and the last transaction held one batch). A hand-off to the pool and back
//! would put two thread wake-ups on each of its steps' latency.
//!
//! Why not let the first caller lead for everyone, as this module did before: a leader blocks
//! its whole task until the queue is empty, so the other futures of that task (200 `start`s
//! joined in one task, parallel steps of one run) cannot even queue their batches, and each
//! commits alone; and every lead costs a `block_in_place`, which hands the worker's core to
//! another thread. Measured on W1b (200 runs x 10 steps, 2 cores), that way more than half of
//! the transactions held one batch and took 30-46% of the disk's time, creations were
//! committed one by one, and the disk flushed 0.03 to 0.2 times per step; with sessions off
//! the workers, 0.012 to 0.02 times (80 to 90 batches per transaction).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redb::Database;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::oneshot;

use super::{EncodedWrite, NewRun, write_batch};
use crate::error::StoreError;
use crate::store::CreateRun;

/// The most batches one transaction takes, so one commit's latency stays bounded under load.
const MAX_BATCHES_PER_TRANSACTION: usize = 4096;
/// How long dropping the store waits for the commit session to let go of the database, before
/// giving up on releasing the file lock at once (a commit stuck on a dead disk).
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The database and its commit queue.
pub(super) struct Writer {
    pub(super) db: Database,
    queue: Mutex<Queue>,
    /// Counts the commit sessions still holding this writer, apart from the writer itself: a
    /// session lets go of it only after its last answer, so `wait_idle` waits for the count.
    holders: Arc<Holders>,
}

/// The batches waiting for a transaction, and who writes them; one lock covers both, so that
/// no batch is queued after a session decided to end without another being started for it.
#[derive(Default)]
struct Queue {
    ops: Vec<Op>,
    /// A transaction is being written, by the session or by a lone caller in place.
    committing: bool,
    /// How many batches the last transaction held.
    last_transaction: usize,
    /// The active commit session, by number; it takes the queue until it finds it empty.
    session: Option<u64>,
    /// The number of the last session started.
    sessions_started: u64,
}

/// One caller's request, with the channel its answer goes back on.
pub(super) enum Op {
    /// Create a run unless one with its id exists.
    Create(Box<NewRun>, oneshot::Sender<Result<CreateRun, StoreError>>),
    /// Apply a batch of writes.
    Commit(Vec<EncodedWrite>, oneshot::Sender<Result<(), StoreError>>),
}

/// How many commit sessions hold the writer, and the signal that one let go of it.
#[derive(Default)]
struct Holders {
    count: Mutex<usize>,
    released: Condvar,
}

impl Holders {
    fn lock(&self) -> MutexGuard<'_, usize> {
        self.count.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Writer {
    pub(super) fn new(db: Database) -> Writer {
        Writer {
            db,
            queue: Mutex::new(Queue::default()),
            holders: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue is consistent between statements: a panic elsewhere leaves it usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `op` and has it committed: on this thread if it is alone, else by a commit
    /// session. The answer comes back on the op's channel once its transaction is durable (or
    /// failed).
    pub(super) fn submit(self: &Arc<Self>, op: Op) {
        let mut queue = self.lock();
        // A creation never counts as alone: `start`s come in bursts from one task, and a task
        // committing in place holds back the rest of its burst.
        let alone = queue.ops.is_empty()
            && !queue.committing
            && queue.session.is_none()
            && queue.last_transaction <= 1
            && matches!(op, Op::Commit(..))
            && matches!(
                Handle::try_current().map(|h| h.runtime_flavor()),
                Ok(RuntimeFlavor::MultiThread)
            );
        queue.ops.push(op);
        if alone {
            queue.committing = true;
            queue.last_transaction = 1;
            let batch = std::mem::take(&mut queue.ops);
            drop(queue);
            let writing = Writing(self);
            // The fsync blocks this thread: block_in_place lets the runtime move the worker's
            // other tasks to another thread meanwhile.
            tokio::task::block_in_place(|| apply(&self.db, batch));
            drop(writing);
        } else if !queue.committing && queue.session.is_none() {
            self.start_session(queue);
        }
        // Else the session, or the caller writing in place, takes the queue when done.
    }

    /// Starts a commit session on tokio's blocking pool, or on this thread outside a runtime.
    fn start_session(self: &Arc<Self>, mut queue: MutexGuard<'_, Queue>) {
        queue.sessions_started += 1;
        let number = queue.sessions_started;
        queue.session = Some(number);
        drop(queue);
        *self.holders.lock() += 1;
        let session = Session {
            writer: Some(Arc::clone(self)),
            number,
        };
        match Handle::try_current() {
            // Dropped unrun if the runtime is shutting down: `Session`'s drop then ends it.
            Ok(runtime) => drop(runtime.spawn_blocking(move || session.run())),
            Err(_) => session.run(),
        }
    }

    /// Waits (bounded) until no commit session or caller writes to the database or holds it,
    /// so that dropping the store releases the file lock at once.
    pub(super) fn wait_idle(&self) {
        let deadline = Instant::now() + IDLE_TIMEOUT;
        loop {
            let busy = {
                let queue = self.lock();
                queue.committing || queue.session.is_some()
            };
            let mut holders = self.holders.lock();
            if !busy && *holders == 0 {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            // Woken when a session lets go of the writer; a short wait covers the rest.
            holders = self
                .holders
                .released
                .wait_timeout(holders, left.min(Duration::from_millis(1)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
            drop(holders);
        }
    }
}

/// A transaction being written: dropped (also by a panic), it lets the next one start, and
/// hands what was queued meanwhile to a session, since a caller writing in place must not
/// hold its task back for others' batches.
struct Writing<'a>(&'a Arc<Writer>);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        let mut queue = self.0.lock();
        queue.committing = false;
        if !queue.ops.is_empty() && queue.session.is_none() {
            self.0.start_session(queue);
        }
    }
}

/// A commit session: takes the queue, transaction after transaction, until it is empty.
struct Session {
    writer: Option<Arc<Writer>>,
    number: u64,
}

impl Session {
    fn run(self) {
        let Some(writer) = &self.writer else { return };
        loop {
            let batch = {
                let mut queue = writer.lock();
                let take = queue.ops.len().min(MAX_BATCHES_PER_TRANSACTION);
                if take == 0 || queue.committing {
                    // Ended in the same critical section that found nothing to do, so a batch
                    // queued after this starts another session.
                    queue.session = None;
                    return;
                }
                queue.committing = true;
                queue.last_transaction = take;
                queue.ops.drain(..take).collect::<Vec<Op>>()
            };
            let writing = Writing(writer);
            apply(&writer.db, batch);
            // Its drop starts no session while this one is active: the loop takes the queue.
            drop(writing);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let Some(writer) = self.writer.take() else {
            return;
        };
        {
            // Not yet ended if it never ran (its runtime shut down first) or panicked.
            let mut queue = writer.lock();
            if queue.session == Some(self.number) {
                queue.session = None;
                // After a panic, the batches queued behind the lost one still get a session;
                // a session that never ran leaves them to the next caller, since its runtime
                // would drop the next one unrun too.
                if std::thread::panicking() && !queue.ops.is_empty() && !queue.committing {
                    writer.start_session(queue);
                }
            }
        }
        let holders = Arc::clone(&writer.holders);
        drop(writer);
        *holders.lock() -= 1;
        holders.released.notify_all();
    }
}

/// Writes `batch` in one transaction and answers each of its callers.
fn apply(db: &Database, batch: Vec<Op>) {
    if batch.is_empty() {
        return;
    }
    match write_batch(db, &batch) {
        Ok(created) => {
            let mut created = created.into_iter();
            for op in batch {
                match op {
                    Op::Create(_, reply) => {
                        let outcome = created.next().unwrap_or(Ok(CreateRun::Created));
                        let _ = reply.send(outcome);
                    }
                    Op::Commit(_, reply) => {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
        }
        Err(error) => {
            for op in batch {
                match op {
                    Op::Create(_, reply) => {
                        let _ = reply.send(Err(error.clone()));
                    }
                    Op::Commit(_, reply) => {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        }
    }
}
