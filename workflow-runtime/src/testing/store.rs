//! The crashing store: a [`MemoryStore`] whose writes are numbered, and which dies at one of
//! them.
//!
//! Invariant: once the crash happened, no call reaches the memory store again. Every later call,
//! reads included, stays pending forever, like a call into a process that no longer exists; the
//! simulation then drops the runtime and with it every task.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::Variant;
use crate::error::StoreError;
use crate::journal::{InboxEvent, RunRecord, StepRecord};
use crate::store::{BoxFuture, CreateRun, MemoryStore, Store, Write};

/// Where the first process dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CrashAt {
    /// The commit, numbered from 1.
    pub(crate) commit: u64,
    pub(crate) variant: Variant,
}

/// One write the store received.
#[derive(Debug, Clone)]
pub(crate) struct Commit {
    /// From 1, in the order the store received them.
    pub(crate) number: u64,
    /// What it writes, in words: "step #4 summarize".
    pub(crate) wrote: String,
    /// Whether it reached the memory store.
    pub(crate) applied: bool,
    /// Whether the caller was told it is durable.
    pub(crate) acknowledged: bool,
    /// The step records it writes, with their run.
    pub(crate) steps: Vec<(String, StepRecord)>,
    /// How many events it sends to the checked run.
    pub(crate) events: usize,
}

/// What the crashing store saw, shared with the simulation that watches it.
pub(crate) struct CommitLog {
    main_run: String,
    crash: Option<CrashAt>,
    crashed: AtomicBool,
    signal: Notify,
    state: Mutex<LogState>,
}

#[derive(Default)]
struct LogState {
    commits: Vec<Commit>,
    crashed_at: Option<std::time::Instant>,
}

/// What to do with a write.
enum Fate {
    Apply,
    ApplyThenCrash,
    Crash,
}

impl CommitLog {
    pub(crate) fn new(main_run: &str, crash: Option<CrashAt>) -> Arc<CommitLog> {
        Arc::new(CommitLog {
            main_run: main_run.to_owned(),
            crash,
            crashed: AtomicBool::new(false),
            signal: Notify::new(),
            state: Mutex::new(LogState::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn is_crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// Resolves once the process crashed.
    pub(crate) async fn crashed(&self) {
        loop {
            let notified = self.signal.notified();
            if self.is_crashed() {
                return;
            }
            notified.await;
        }
    }

    /// The virtual moment of the crash.
    pub(crate) fn crashed_at(&self) -> Option<std::time::Instant> {
        self.state().crashed_at
    }

    pub(crate) fn commits(&self) -> Vec<Commit> {
        self.state().commits.clone()
    }

    /// Numbers a write and decides its fate.
    fn admit(&self, wrote: String, steps: Vec<(String, StepRecord)>, events: usize) -> Fate {
        let mut state = self.state();
        let number = state.commits.len() as u64 + 1;
        let fate = match self.crash {
            Some(crash) if crash.commit == number => match crash.variant {
                Variant::AfterCommit => Fate::ApplyThenCrash,
                Variant::CommitLost => Fate::Crash,
            },
            _ => Fate::Apply,
        };
        state.commits.push(Commit {
            number,
            wrote,
            applied: matches!(fate, Fate::Apply | Fate::ApplyThenCrash),
            acknowledged: matches!(fate, Fate::Apply),
            steps,
            events,
        });
        if matches!(fate, Fate::ApplyThenCrash | Fate::Crash) {
            state.crashed_at = Some(tokio::time::Instant::now().into_std());
        }
        fate
    }

    fn crash(&self) {
        self.crashed.store(true, Ordering::SeqCst);
        self.signal.notify_waiters();
    }

    fn describe_run(&self, run_id: &str) -> String {
        if run_id == self.main_run {
            String::new()
        } else {
            format!(" of run `{run_id}`")
        }
    }

    /// "step #4 summarize", "run completed", "event `approval` sent", ...
    fn describe(&self, writes: &[Write]) -> String {
        let mut parts = Vec::new();
        let mut has_step = false;
        for write in writes {
            if let Write::Step { run_id, step } = write {
                has_step = true;
                let failed = match step.status {
                    crate::journal::StepStatus::Completed => String::new(),
                    status => format!(" ({})", format!("{status:?}").to_lowercase()),
                };
                parts.push(format!(
                    "step #{} {}{failed}{}",
                    step.seq,
                    step.name,
                    self.describe_run(run_id)
                ));
            }
        }
        for write in writes {
            if let Write::Event(event) = write {
                parts.push(format!(
                    "event `{}` sent{}",
                    event.name,
                    self.describe_run(&event.run_id)
                ));
            } else if let Write::DeleteStep { run_id, seq } = write {
                parts.push(format!("step #{seq} deleted{}", self.describe_run(run_id)));
            } else if let Write::Run(run) = write
                && !has_step
            {
                let run_id = &run.run_id;
                parts.push(if run_id == &self.main_run {
                    format!("run {}", run.status)
                } else {
                    format!("run `{run_id}` {}", run.status)
                });
            }
        }
        if parts.is_empty() {
            parts.push(format!("{} other write(s)", writes.len()));
        }
        parts.join(", ")
    }
}

/// A store over a [`MemoryStore`] that numbers its writes and crashes at one of them.
pub(crate) struct CrashStore {
    memory: Arc<MemoryStore>,
    log: Arc<CommitLog>,
}

impl CrashStore {
    pub(crate) fn new(memory: Arc<MemoryStore>, log: Arc<CommitLog>) -> CrashStore {
        CrashStore { memory, log }
    }

    /// Pending forever once crashed.
    async fn alive(&self) {
        if self.log.is_crashed() {
            std::future::pending::<()>().await;
        }
    }
}

impl Store for CrashStore {
    fn create_run(&self, run: RunRecord) -> BoxFuture<'_, Result<CreateRun, StoreError>> {
        Box::pin(async move {
            self.alive().await;
            if let Some(existing) = self.memory.load_run(run.run_id.clone()).await? {
                return Ok(CreateRun::Existing(Box::new(existing)));
            }
            let wrote = if run.run_id == self.log.main_run {
                "run created".to_owned()
            } else {
                format!("run `{}` created", run.run_id)
            };
            match self.log.admit(wrote, Vec::new(), 0) {
                Fate::Apply => self.memory.create_run(run).await,
                Fate::ApplyThenCrash => {
                    let _ = self.memory.create_run(run).await;
                    self.log.crash();
                    std::future::pending().await
                }
                Fate::Crash => {
                    self.log.crash();
                    std::future::pending().await
                }
            }
        })
    }

    fn load_run(&self, run_id: String) -> BoxFuture<'_, Result<Option<RunRecord>, StoreError>> {
        Box::pin(async move {
            self.alive().await;
            self.memory.load_run(run_id).await
        })
    }

    fn list_runs(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, StoreError>> {
        Box::pin(async move {
            self.alive().await;
            self.memory.list_runs().await
        })
    }

    fn load_steps(&self, run_id: String) -> BoxFuture<'_, Result<Vec<StepRecord>, StoreError>> {
        Box::pin(async move {
            self.alive().await;
            self.memory.load_steps(run_id).await
        })
    }

    fn load_events(&self, run_id: String) -> BoxFuture<'_, Result<Vec<InboxEvent>, StoreError>> {
        Box::pin(async move {
            self.alive().await;
            self.memory.load_events(run_id).await
        })
    }

    fn commit(&self, writes: Vec<Write>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.alive().await;
            let wrote = self.log.describe(&writes);
            let mut steps = Vec::new();
            let mut events = 0;
            for write in &writes {
                if let Write::Step { run_id, step } = write {
                    steps.push((run_id.clone(), step.clone()));
                } else if let Write::Event(event) = write
                    && event.run_id == self.log.main_run
                {
                    events += 1;
                }
            }
            match self.log.admit(wrote, steps, events) {
                Fate::Apply => self.memory.commit(writes).await,
                Fate::ApplyThenCrash => {
                    let _ = self.memory.commit(writes).await;
                    self.log.crash();
                    std::future::pending().await
                }
                Fate::Crash => {
                    self.log.crash();
                    std::future::pending().await
                }
            }
        })
    }
}
