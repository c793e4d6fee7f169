//! Leader/follower group commit over one redb database.
//!
//! A caller queues its batch; if no commit is in progress it becomes the leader: it takes every
//! batch waiting in the queue, applies them in one transaction committed with
//! `Durability::Immediate`, answers each caller, and goes on until the queue is empty. Callers
//! that arrive meanwhile wait for a leader to answer them. Concurrent runs thus share one fsync,
//! and a lone sequential run commits on its own thread, with no hand-off to another thread on
//! its latency path.

use std::sync::{Arc, Mutex};

use redb::Database;
use tokio::sync::oneshot;

use super::{EncodedWrite, NewRun, write_batch};
use crate::error::StoreError;
use crate::store::CreateRun;

/// The most batches one transaction takes, so one commit's latency stays bounded under load.
const MAX_BATCHES_PER_TRANSACTION: usize = 4096;

/// The database and its commit queue, shared with a leader that commits from the blocking pool.
pub(super) struct Writer {
    pub(super) db: Database,
    group: Mutex<Group>,
}

#[derive(Default)]
struct Group {
    queue: Vec<Op>,
    leading: bool,
}

/// One caller's request, with the channel its answer goes back on.
pub(super) enum Op {
    /// Create a run unless one with its id exists.
    Create(Box<NewRun>, oneshot::Sender<Result<CreateRun, StoreError>>),
    /// Apply a batch of writes.
    Commit(Vec<EncodedWrite>, oneshot::Sender<Result<(), StoreError>>),
}

impl Writer {
    pub(super) fn new(db: Database) -> Writer {
        Writer {
            db,
            group: Mutex::new(Group::default()),
        }
    }

    /// Queues `op`, and commits the queue if no other caller is committing it.
    pub(super) fn submit(self: &Arc<Self>, op: Op) {
        let lead = {
            let mut group = self.group.lock().unwrap_or_else(|p| p.into_inner());
            group.queue.push(op);
            !std::mem::replace(&mut group.leading, true)
        };
        if !lead {
            return;
        }
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            // The fsync blocks this thread; block_in_place lets the runtime move the other
            // tasks off it, without handing this commit to another thread.
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                tokio::task::block_in_place(|| self.lead());
            }
            // A current-thread runtime cannot block in place: lead from the blocking pool. The
            // leader owns what it needs, so a caller that goes away cannot strand the queue.
            Ok(_) => {
                let writer = Arc::clone(self);
                tokio::task::spawn_blocking(move || writer.lead());
            }
            Err(_) => self.lead(),
        }
    }

    /// Waits (bounded) until no leader holds the database, so that dropping the store releases
    /// the file lock at once: a leader in the blocking pool may still hold the database for a
    /// moment after the last commit was answered.
    pub(super) fn wait_idle(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while self.group.lock().is_ok_and(|g| g.leading) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }

    fn take_batch(&self) -> Vec<Op> {
        let mut group = self.group.lock().unwrap_or_else(|p| p.into_inner());
        let take = group.queue.len().min(MAX_BATCHES_PER_TRANSACTION);
        let batch: Vec<Op> = group.queue.drain(..take).collect();
        if batch.is_empty() {
            group.leading = false;
        }
        batch
    }

    /// Commits what is queued, transaction after transaction, until the queue is empty.
    fn lead(&self) {
        loop {
            let batch = self.take_batch();
            if batch.is_empty() {
                return;
            }
            apply(&self.db, batch);
        }
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
