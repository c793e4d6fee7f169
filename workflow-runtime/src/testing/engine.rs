//! The test engine: an engine on an in-memory store, under virtual time, with step overrides
//! and assertions on what happened.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::kit::{StepOverride, TestKit};
use crate::engine::{Engine, EngineBuilder};
use crate::error::Error;
use crate::event::Event;
use crate::journal::{RunRecord, RunStatus, StepRecord, StepStatus};

/// How long [`TestEngine::settled`] waits, in virtual time, for a run to stop executing.
const SETTLE_LIMIT: Duration = Duration::from_secs(365 * 24 * 3_600);

/// An [`Engine`] for tests: an in-memory journal, virtual time, step overrides by name, events
/// sent at a virtual time, and what happened in a form a test compares in one line. It derefs
/// to its [`Engine`]: `start`, `send_event`, `journal`, `history` are the engine's. See the
/// [guide](super#testing-workflows).
///
/// **Time.** Built inside `#[tokio::test]` (the current-thread runtime), it pauses tokio's
/// clock if the test did not (`start_paused = true`). Time then skips to the next timer
/// whenever every task waits on one: durable timers, event deadlines, backoffs between
/// retries, the latencies of [`StepOverride::taking`]. While a step's own body waits on
/// anything else (a loopback socket, a channel) the clock flows at real speed instead, so that
/// the step's timeout measures the body's real wait and does not fire the instant the runtime
/// is idle. A body that only sleeps on tokio's clock therefore takes that long for real: give
/// a step latency with [`StepOverride::taking`] instead.
///
/// **Waits.** A run that waits for a timer or an event leaves memory at once (`waiting`),
/// not after the 10 s an engine keeps it by default, unless the builder given to
/// [`with`](Self::with) sets [`park_after`](EngineBuilder::park_after).
pub struct TestEngine {
    engine: Engine,
    kit: Arc<TestKit>,
    origin: Instant,
    /// Bumped when a run leaves execution: what [`settled`](Self::settled) waits on.
    left_execution: Arc<watch::Sender<u64>>,
}

impl fmt::Debug for TestEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestEngine")
            .field("engine", &self.engine)
            .field("elapsed", &self.elapsed())
            .finish_non_exhaustive()
    }
}

impl Deref for TestEngine {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        &self.engine
    }
}

impl TestEngine {
    /// A test engine with the engine's defaults. See [`with`](Self::with).
    ///
    /// # Panics
    ///
    /// Outside a current-thread tokio runtime (`#[tokio::test]`, not `flavor = "multi_thread"`):
    /// virtual time exists only there.
    #[track_caller]
    // No `Default`: building one pauses the clock of the runtime it is in, which a `default()`
    // called in passing should not do.
    #[allow(clippy::new_without_default)]
    pub fn new() -> TestEngine {
        TestEngine::with(Engine::builder())
    }

    /// A test engine configured by `builder`: its resources (fakes of the real clients), rate
    /// limits, circuits, prices and listeners. Its journal is in memory.
    ///
    /// # Panics
    ///
    /// Outside a current-thread tokio runtime, as [`new`](Self::new).
    #[track_caller]
    pub fn with(builder: EngineBuilder) -> TestEngine {
        pause_clock();
        let kit = Arc::new(TestKit::with_real_time());
        let (sender, _) = watch::channel(0_u64);
        let left_execution = Arc::new(sender);
        let bump = Arc::clone(&left_execution);
        let engine = builder
            .park_after_unless_set(Duration::ZERO)
            .shared_resource(Arc::clone(&kit))
            .on_event(move |event| {
                if matches!(event, Event::RunWaiting { .. } | Event::RunFinished { .. }) {
                    bump.send_modify(|n| *n += 1);
                }
            })
            .in_memory();
        TestEngine {
            engine,
            kit,
            origin: Instant::now(),
            left_execution,
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// From now on, attempts of the steps named `name` (in every run) do what `with` says
    /// instead of (or around) running their body. Replaces an earlier override of `name`.
    pub fn override_step(&self, name: impl Into<String>, with: StepOverride) -> &Self {
        self.kit.set_override(name.into(), with);
        self
    }

    /// Steps named `name` run their own body again.
    pub fn clear_override(&self, name: &str) -> &Self {
        self.kit.clear_override(name);
        self
    }

    /// The virtual time since the test engine was built.
    pub fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Sends the event `name` with `payload` to run `run_id` when [`elapsed`](Self::elapsed)
    /// reaches `at` (at once if it has), as [`Engine::send_event`] would: a person's approval
    /// an hour into the run. The handle tells whether the sending succeeded.
    pub fn send_event_at(
        &self,
        at: Duration,
        run_id: impl Into<String>,
        name: impl Into<String>,
        payload: impl Serialize,
    ) -> JoinHandle<Result<(), Error>> {
        let engine = self.engine.clone();
        let (run_id, name) = (run_id.into(), name.into());
        let payload = serde_json::value::to_raw_value(&payload);
        let when = self.origin + at;
        tokio::spawn(async move {
            let payload = payload.map_err(|e| Error::Encode {
                what: format!("the payload of event `{name}`"),
                detail: e.to_string(),
            })?;
            tokio::time::sleep_until(when).await;
            engine.send_event(&run_id, &name, payload).await
        })
    }

    /// Waits until run `run_id` stops executing: it waits for a timer or an event (status
    /// `waiting`), is parked, or ended. Returns its record then, or after a year of virtual
    /// time if it never stops.
    ///
    /// # Errors
    ///
    /// [`Error::RunNotFound`], or the store's error.
    pub async fn settled(&self, run_id: &str) -> Result<RunRecord, Error> {
        let mut left = self.left_execution.subscribe();
        let wait = async {
            loop {
                let record = self.existing(run_id).await?;
                if !matches!(record.status, RunStatus::Pending | RunStatus::Running) {
                    return Ok(record);
                }
                if left.changed().await.is_err() {
                    return Ok(record);
                }
            }
        };
        match tokio::time::timeout(SETTLE_LIMIT, wait).await {
            Ok(result) => result,
            Err(_) => self.existing(run_id).await,
        }
    }

    /// The attempts of run `run_id`'s steps that ran (or that an override played), in the
    /// order they started: `"classify#1 rate_limited"`, `"classify#2 ok"`, `"lookup#1
    /// dropped"` (dropped before it ended: its timeout fired, or the run stopped). The error
    /// kinds are [`StepErrorKind`](crate::StepErrorKind)'s, in snake case. Replayed steps are
    /// not listed: they did not run.
    pub fn attempts(&self, run_id: &str) -> Vec<String> {
        self.kit
            .attempts(run_id)
            .iter()
            .map(|attempt| attempt.line())
            .collect()
    }

    /// Run `run_id`'s journal, a line per record in the order of sequence numbers:
    /// `"classify completed after 2 attempts"`, `"event:approval completed"`, `"reply failed
    /// (outcome_unknown)"`.
    ///
    /// # Errors
    ///
    /// The store's error.
    pub async fn steps(&self, run_id: &str) -> Result<Vec<String>, Error> {
        let journal = self.engine.journal(run_id).await?;
        Ok(journal.iter().map(step_line).collect())
    }

    /// Run `run_id`'s history ([`Engine::history`]), a line per event, each its
    /// [`HistoryKind`](crate::HistoryKind)'s words: `"#2 classify: attempt 1 rate limited;
    /// retrying in 5.0s: …"`.
    ///
    /// # Errors
    ///
    /// [`Error::RunNotFound`], or the store's error.
    pub async fn history_lines(&self, run_id: &str) -> Result<Vec<String>, Error> {
        let page = self.engine.history(run_id, 0, usize::MAX).await?;
        Ok(page.events.iter().map(|e| e.kind.to_string()).collect())
    }

    /// What run `run_id` spent, summed from its journal (so a replayed or resumed run reports
    /// the same): steps, retries, dollars and tokens.
    ///
    /// # Errors
    ///
    /// The store's error.
    pub async fn spent(&self, run_id: &str) -> Result<Totals, Error> {
        Ok(Totals::of(&self.engine.journal(run_id).await?))
    }

    async fn existing(&self, run_id: &str) -> Result<RunRecord, Error> {
        self.engine
            .run(run_id)
            .await?
            .ok_or_else(|| Error::RunNotFound {
                run_id: run_id.to_owned(),
            })
    }
}

/// A journal record in words: name, status, attempts when several, the error's kind.
fn step_line(step: &StepRecord) -> String {
    let status = match step.status {
        StepStatus::Completed => "completed",
        StepStatus::Failed => "failed",
        StepStatus::Pending => "pending",
        StepStatus::Started => "started",
        StepStatus::Marker => "marker",
    };
    let mut line = format!("{} {status}", step.name);
    let attempts = step.attempts.max(step.attempt_log.len() as u32);
    if attempts > 1 {
        line.push_str(&format!(" after {attempts} attempts"));
    }
    if let Some(error) = &step.error {
        let kind = serde_json::to_value(error.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        line.push_str(&format!(" ({kind})"));
    }
    line
}

/// What a run spent, summed from its journal: [`TestEngine::spent`].
///
/// Its `Display` is one line to compare: `"4 steps, 1 retry, $0.0300, 1200 tokens in, 300
/// out"`.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Totals {
    /// Steps journaled (not timers, event waits and the like: see
    /// [`StepRecord::is_step`]).
    pub steps: u64,
    /// Attempts after the first, summed over the steps.
    pub retries: u64,
    /// US dollars.
    pub cost_usd: f64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
}

impl Totals {
    /// The totals of a run's journal ([`Engine::journal`]).
    pub fn of(journal: &[StepRecord]) -> Totals {
        let mut totals = Totals::default();
        for step in journal.iter().filter(|s| s.is_step()) {
            totals.steps += 1;
            // A resumed step's record counts this process's attempts; its log, every one.
            let attempts = u64::from(step.attempts).max(step.attempt_log.len() as u64);
            totals.retries += attempts.saturating_sub(1);
            totals.cost_usd += step.usage.cost_usd;
            totals.input_tokens += step.usage.input_tokens;
            totals.output_tokens += step.usage.output_tokens;
        }
        totals
    }
}

impl fmt::Display for Totals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        write!(
            f,
            "{} step{}, {} retr{}, ${:.4}, {} tokens in, {} out",
            self.steps,
            plural(self.steps),
            self.retries,
            if self.retries == 1 { "y" } else { "ies" },
            self.cost_usd,
            self.input_tokens,
            self.output_tokens
        )
    }
}

/// Pauses tokio's clock unless the test did (`start_paused = true`, or `time::pause()`).
#[track_caller]
fn pause_clock() {
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(RuntimeFlavor::CurrentThread) => {}
        Ok(_) => panic!(
            "a TestEngine needs tokio's current-thread runtime, where time can be virtual: use #[tokio::test], without flavor = \"multi_thread\""
        ),
        Err(_) => panic!(
            "a TestEngine must be built inside a tokio runtime: in an `async fn` under #[tokio::test]"
        ),
    }
    // A paused clock stands still between two reads; a running one does not, across a spin of
    // a few microseconds of real time. tokio offers no other way to ask.
    let before = Instant::now();
    let spin = std::time::Instant::now();
    while spin.elapsed() < Duration::from_micros(50) {
        std::hint::spin_loop();
    }
    if Instant::now() != before {
        tokio::time::pause();
    }
}
