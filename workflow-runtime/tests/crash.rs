//! Crash tests: a real child process (this test binary, re-executed) runs a workflow on a redb
//! journal and is killed with SIGKILL; a second process resumes the run on the same file.
//!
//! An in-process abort (`Engine::shutdown`, dropping a task) runs destructors and lets queued
//! writes finish, so it cannot show what the contract promises about an abrupt death. Only
//! a killed process can: nothing of it runs after the signal, and whatever was not fsynced is
//! gone.
//!
//! The workflow is written by hand against the closure API (no macros), so these tests pin the
//! runtime's behaviour on their own. Every step body leaves `start`/`end` lines in a side-effect
//! log, which is how the parent sees which process ran which step, under which key.
//!
//! The child role: `child_process_entry` does nothing unless `CRASH_CHILD_DB` is set, which
//! only the parent does, when it re-executes this binary to run just that test.

#![cfg(unix)]

mod support;

use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::{
    ChildProcess, Files, Lcg, LogLine, Protocol, SideEffects, block_on, fail, inspect_journal,
    log_end, log_start, print_flushed, required_env, seed, string_output,
};
use workflow_runtime::BoxFuture;
use workflow_runtime::{
    Engine, Error, OpenError, RunRecord, RunStatus, StepContext, StepErrorKind, StepRecord,
    StepStatus, Workflow, WorkflowFailure, idempotency_key, resource, step,
};

/// Steps per run: enough that a kill at step 3 leaves finished steps on both sides of it.
const STEPS: u32 = 8;
/// Latency of one step in the kill-point tests, where the kill moment is exact anyway.
const STEP_MS: u64 = 2;
/// Latency of one step in the random-kill test: long enough that random moments land inside
/// steps, between them and around commits, short enough to keep the binary fast.
const RANDOM_STEP_MS: u64 = 6;
/// The name of every step of [`Flow`]; part of each idempotency key.
const STEP_NAME: &str = "work";

/// How long a child may take to reach its kill point or its end. Generous because a loaded
/// CI machine can stall a process for seconds; a healthy run takes milliseconds.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

const ENV_DB: &str = "CRASH_CHILD_DB";
const ENV_RUN: &str = "CRASH_CHILD_RUN";
const ENV_LOG: &str = "CRASH_CHILD_LOG";
const ENV_KILL: &str = "CRASH_CHILD_KILL";
const ENV_STEP_MS: &str = "CRASH_CHILD_STEP_MS";
const ENV_AT_MOST_ONCE: &str = "CRASH_CHILD_AT_MOST_ONCE";

/// Markers the child prints, searched for inside its lines (see [`ChildProcess::wait_for`]).
const READY: &str = "CRASH-TEST READY";
const OUTPUT: &str = "CRASH-TEST OUTPUT ";
/// Printed once the journal is open, so that the random-kill test can tell start-up from work.
const OPENED: &str = "CRASH-TEST OPENED";

const CHILD: Protocol = Protocol {
    entry: "child_process_entry",
    output: OUTPUT,
    timeout: CHILD_TIMEOUT,
};

// ---------------------------------------------------------------------------------------------
// The workflow
// ---------------------------------------------------------------------------------------------

/// Where a child stops and waits for its SIGKILL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillPoint {
    /// Inside step k's body, after its `start` line: step k is running, not journaled.
    InStep(u32),
    /// First thing in the workflow body after step k returned: step k is journaled.
    AfterCommit(u32),
    /// While the body awaits something that is not a step, after step k.
    Between(u32),
}

impl KillPoint {
    fn encode(self) -> String {
        match self {
            KillPoint::InStep(k) => format!("in_step:{k}"),
            KillPoint::AfterCommit(k) => format!("after_commit:{k}"),
            KillPoint::Between(k) => format!("between:{k}"),
        }
    }

    fn decode(text: &str) -> Option<KillPoint> {
        let (kind, k) = text.split_once(':')?;
        let k = k.parse().ok()?;
        match kind {
            "in_step" => Some(KillPoint::InStep(k)),
            "after_commit" => Some(KillPoint::AfterCommit(k)),
            "between" => Some(KillPoint::Between(k)),
            _ => None,
        }
    }

    /// How many steps the journal must hold once the child is dead at this point.
    fn journaled_at_kill(self) -> u32 {
        match self {
            KillPoint::InStep(k) => k,
            KillPoint::AfterCommit(k) | KillPoint::Between(k) => k + 1,
        }
    }
}

/// Set only in a child process, which runs one run: a process-wide value is enough, and the
/// parent's in-process runs (which never set it) can never hang. A static, not a resource of
/// the engine: the body reads it between steps too, where resources are refused.
static KILL_POINT: OnceLock<KillPoint> = OnceLock::new();

/// Where the steps of an engine's runs log their side effects: the engine's resource, so that
/// the parent can resume a run in-process (the lock test) and log to that run's file while
/// other tests run in parallel.
struct EffectLog(PathBuf);

/// Opens the journal at `db`, its steps logging to `log`.
async fn open(db: &Path, log: &Path) -> Result<Engine, workflow_runtime::Error> {
    Engine::builder()
        .resource(EffectLog(log.to_owned()))
        .open(db)
        .await
}

/// Whether this process must stop at `point`: then it tells the parent and never goes on.
async fn kill_point_hook(point: KillPoint) {
    if KILL_POINT.get() == Some(&point) {
        print_flushed(READY);
        std::future::pending::<()>().await;
    }
}

/// The value of step `i`: deterministic, so any process computes the same output.
fn part(i: u32) -> String {
    // splitmix64, so that a value handed back to the wrong step cannot go unnoticed.
    let mut z = u64::from(i).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    format!("v{i}:{:016x}", z ^ (z >> 31))
}

async fn step_body(i: u32, step_ms: u64) -> Result<String, std::io::Error> {
    let ctx = StepContext::current().expect("a step body runs inside a step");
    let log = resource::<EffectLog>().ok().map(|log| log.0.clone());
    if let Some(log) = &log {
        log_start(log, &ctx);
    }
    kill_point_hook(KillPoint::InStep(i)).await;
    tokio::time::sleep(Duration::from_millis(step_ms)).await;
    if let Some(log) = &log {
        log_end(log, &ctx);
    }
    Ok(part(i))
}

/// `STEPS` steps in sequence, with a non-step await between them.
struct Flow;

impl Workflow for Flow {
    /// (number of steps, latency of each step in ms, the step that is at-most-once if any).
    /// Journaled, so a resumed run keeps them.
    type Input = (u32, u64, Option<u32>);
    type Output = String;
    const NAME: &'static str = "crash_flow";

    fn run(
        (steps, step_ms, at_most_once): Self::Input,
    ) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let mut parts = Vec::new();
            for i in 0..steps {
                let mut this = step(STEP_NAME);
                if at_most_once == Some(i) {
                    this = this.at_most_once();
                }
                let value = match this.run(|| step_body(i, step_ms)).await {
                    Ok(value) => value,
                    // The workflow decides what an unknown outcome means; this one notes it.
                    Err(e) if e.kind == StepErrorKind::OutcomeUnknown => format!("unknown{i}"),
                    Err(e) => return Err(fail(e)),
                };
                kill_point_hook(KillPoint::AfterCommit(i)).await;
                parts.push(value);
                // Not a step: replay runs it again, which is what a timer or a local
                // computation in a real body does.
                tokio::time::sleep(Duration::from_millis(1)).await;
                kill_point_hook(KillPoint::Between(i)).await;
            }
            Ok(parts.join(","))
        })
    }
}

/// The output of an uninterrupted run, computed without a file or a child process.
fn expected_output(step_ms: u64) -> String {
    block_on(async {
        let engine = Engine::in_memory();
        let run = engine
            .start::<Flow>("expected", (STEPS, step_ms, None))
            .await
            .expect("start the reference run");
        run.result().await.expect("the reference run completes")
    })
}

// ---------------------------------------------------------------------------------------------
// The child role
// ---------------------------------------------------------------------------------------------

/// Runs only when re-executed by a parent with `CRASH_CHILD_DB` set: opens the journal, starts
/// (or resumes) the run, and prints its output.
#[test]
fn child_process_entry() {
    let Ok(db) = std::env::var(ENV_DB) else {
        return;
    };
    let run_id = required_env(ENV_RUN);
    let log = PathBuf::from(required_env(ENV_LOG));
    let step_ms: u64 = required_env(ENV_STEP_MS)
        .parse()
        .expect("step latency in ms");
    let at_most_once: Option<u32> = required_env(ENV_AT_MOST_ONCE).parse().ok();
    if let Some(point) = KillPoint::decode(&required_env(ENV_KILL)) {
        KILL_POINT.set(point).expect("the kill point is set once");
    }
    let output = block_on(async {
        let engine = open(Path::new(&db), &log)
            .await
            .expect("the child opens the journal");
        print_flushed(OPENED);
        let run = engine
            .start::<Flow>(run_id.as_str(), (STEPS, step_ms, at_most_once))
            .await
            .expect("the child starts or resumes the run");
        run.result().await.expect("the run completes")
    });
    CHILD.print_output(&output);
}

// ---------------------------------------------------------------------------------------------
// The parent's handle on a child
// ---------------------------------------------------------------------------------------------

/// Spawns a child that runs (or resumes) `run_id` on the files of `files`, with steps of
/// `step_ms`, step `at_most_once` (if any) at most once, and stops at `kill` (if any).
fn spawn_child(
    files: &Files,
    run_id: &str,
    step_ms: u64,
    at_most_once: Option<u32>,
    kill: Option<KillPoint>,
    label: &str,
) -> ChildProcess {
    let step_ms = step_ms.to_string();
    let at_most_once = at_most_once.map_or_else(String::new, |i| i.to_string());
    let kill = kill.map_or_else(|| "none".to_owned(), KillPoint::encode);
    ChildProcess::spawn(
        CHILD,
        &files.root,
        label,
        &[
            (ENV_DB, files.db.as_os_str()),
            (ENV_RUN, OsStr::new(run_id)),
            (ENV_LOG, files.log.as_os_str()),
            (ENV_STEP_MS, OsStr::new(&step_ms)),
            (ENV_AT_MOST_ONCE, OsStr::new(&at_most_once)),
            (ENV_KILL, OsStr::new(&kill)),
        ],
    )
}

// ---------------------------------------------------------------------------------------------
// What the parent inspects afterwards
// ---------------------------------------------------------------------------------------------

/// The run's record and journal, read by the parent while no child holds the file.
fn inspect(db: &Path, run_id: &str) -> (Option<RunRecord>, Vec<StepRecord>) {
    match inspect_journal(db).remove(run_id) {
        Some((record, steps)) => (Some(record), steps),
        None => (None, Vec::new()),
    }
}

/// Asserts that the journal holds exactly steps `0..count`, one completed record each, with the
/// values an uninterrupted run computes.
fn assert_journal_prefix(steps: &[StepRecord], count: u32, context: &str) {
    let seqs: Vec<u64> = steps.iter().map(|s| s.seq).collect();
    let want: Vec<u64> = (0..u64::from(count)).collect();
    assert_eq!(seqs, want, "journaled steps {context}");
    for record in steps {
        assert_eq!(record.name, STEP_NAME, "step #{} {context}", record.seq);
        assert_eq!(
            record.status,
            StepStatus::Completed,
            "step #{} {context}",
            record.seq
        );
        assert_eq!(
            string_output(record),
            part(record.seq as u32),
            "value of step #{} {context}",
            record.seq
        );
    }
}

/// Asserts the end state every test must reach: completed, with the right output and a full
/// journal.
fn assert_completed(db: &Path, run_id: &str, expected: &str) {
    let (record, steps) = inspect(db, run_id);
    let record = record.expect("the run is in the journal");
    assert_eq!(
        record.status,
        RunStatus::Completed,
        "final status: {record:?}"
    );
    let output: String = serde_json::from_str(
        record
            .output
            .as_ref()
            .expect("a completed run has an output")
            .get(),
    )
    .expect("the output is a JSON string");
    assert_eq!(output, expected, "journaled output");
    assert_journal_prefix(&steps, STEPS, "at the end");
}

fn key(run_id: &str, seq: u32) -> String {
    idempotency_key(run_id, u64::from(seq), STEP_NAME)
}

// ---------------------------------------------------------------------------------------------
// Kill at a chosen point, resume in a second process
// ---------------------------------------------------------------------------------------------

/// Kills a first child at `kill`, resumes the run in a second child, and checks what each
/// process ran (from the side-effect log) and what the journal holds.
fn crash_and_resume(kill: KillPoint) {
    let files = Files::new();
    let run_id = format!("run-{}", kill.encode().replace(':', "-"));
    let expected = expected_output(STEP_MS);

    let mut first = spawn_child(&files, &run_id, STEP_MS, None, Some(kill), "first");
    first.wait_for(READY);
    first.kill_alive();
    let first_pid = first.pid();

    // What the dead process left behind: exactly the steps that had returned to the body.
    let journaled = kill.journaled_at_kill();
    let (record, steps) = inspect(&files.db, &run_id);
    let record = record.expect("the run was journaled at start");
    // The change to `running` rides on the first step's commit: no fsync of its own.
    let unfinished = if journaled == 0 {
        RunStatus::Pending
    } else {
        RunStatus::Running
    };
    assert_eq!(record.status, unfinished, "status after the kill");
    assert_journal_prefix(&steps, journaled, &format!("after a kill at {kill:?}"));

    let mut second = spawn_child(&files, &run_id, STEP_MS, None, None, "second");
    let output: String = second.finish();
    let second_pid = second.pid();
    assert_eq!(output, expected, "the resumed run's output");

    let log = SideEffects::read(&files.log);
    let context = format!("kill at {kill:?}; side-effect log: {}", log.dump());
    assert!(
        log.pids()
            .iter()
            .all(|pid| [first_pid, second_pid].contains(pid)),
        "only the two children run steps; {context}"
    );
    // Journaled steps finished in the first process and are replayed, never run, in the second.
    for seq in 0..journaled {
        let key = key(&run_id, seq);
        assert_eq!(log.starts(&key, first_pid), [1], "step {seq}, {context}");
        assert_eq!(log.ends(&key, first_pid), 1, "step {seq}, {context}");
        assert!(
            log.starts(&key, second_pid).is_empty(),
            "journaled step {seq} ran again in the second process; {context}"
        );
    }
    if let KillPoint::InStep(k) = kill {
        // The interrupted step runs again, under the same key, as attempt 1 of a new process.
        let key = key(&run_id, k);
        assert_eq!(log.starts(&key, first_pid), [1], "step {k}, {context}");
        assert_eq!(log.ends(&key, first_pid), 0, "step {k}, {context}");
        assert_eq!(log.starts(&key, second_pid), [1], "step {k}, {context}");
        assert_eq!(log.ends(&key, second_pid), 1, "step {k}, {context}");
    }
    let first_unstarted = match kill {
        KillPoint::InStep(k) => k + 1,
        _ => journaled,
    };
    for seq in first_unstarted..STEPS {
        let key = key(&run_id, seq);
        assert!(
            log.starts(&key, first_pid).is_empty(),
            "step {seq}, {context}"
        );
        assert_eq!(log.starts(&key, second_pid), [1], "step {seq}, {context}");
    }
    for seq in 0..STEPS {
        assert_eq!(log.all_ends(&key(&run_id, seq)), 1, "step {seq}, {context}");
    }

    assert_completed(&files.db, &run_id, &expected);
}

#[test]
fn sigkill_inside_a_step_reruns_that_step_with_the_same_key() {
    crash_and_resume(KillPoint::InStep(3));
}

#[test]
fn sigkill_inside_the_first_step_reruns_it() {
    crash_and_resume(KillPoint::InStep(0));
}

#[test]
fn sigkill_right_after_a_step_commit_keeps_that_step() {
    crash_and_resume(KillPoint::AfterCommit(3));
}

#[test]
fn sigkill_after_the_last_step_commit_before_the_output_is_journaled() {
    crash_and_resume(KillPoint::AfterCommit(STEPS - 1));
}

#[test]
fn sigkill_between_steps_keeps_the_finished_steps() {
    crash_and_resume(KillPoint::Between(3));
}

#[test]
fn sigkill_inside_an_at_most_once_step_gives_an_unknown_outcome_instead_of_a_second_call() {
    const K: u32 = 3;
    let files = Files::new();
    let run_id = "at-most-once";

    let mut first = spawn_child(
        &files,
        run_id,
        STEP_MS,
        Some(K),
        Some(KillPoint::InStep(K)),
        "first",
    );
    first.wait_for(READY);
    first.kill_alive();
    let first_pid = first.pid();
    // The intent was journaled before the call.
    let (_, steps) = inspect(&files.db, run_id);
    assert_eq!(steps.len() as u32, K + 1);
    assert_eq!(steps[K as usize].status, StepStatus::Started);

    let mut second = spawn_child(&files, run_id, STEP_MS, Some(K), None, "second");
    let output: String = second.finish();
    let second_pid = second.pid();
    let expected: Vec<String> = (0..STEPS)
        .map(|i| {
            if i == K {
                format!("unknown{K}")
            } else {
                part(i)
            }
        })
        .collect();
    assert_eq!(output, expected.join(","));

    let log = SideEffects::read(&files.log);
    let key = key(run_id, K);
    assert_eq!(log.starts(&key, first_pid), [1], "{}", log.dump());
    assert!(
        log.starts(&key, second_pid).is_empty(),
        "an at-most-once step must not be called again after a crash: {}",
        log.dump()
    );
    let (record, steps) = inspect(&files.db, run_id);
    assert_eq!(record.expect("journaled").status, RunStatus::Completed);
    let interrupted = &steps[K as usize];
    assert_eq!(interrupted.status, StepStatus::Failed);
    let error = interrupted
        .error
        .as_ref()
        .expect("the unknown outcome is journaled");
    assert_eq!(error.kind, StepErrorKind::OutcomeUnknown);
    assert!(
        error.message.contains("not called again"),
        "{}",
        error.message
    );
}

// ---------------------------------------------------------------------------------------------
// Kill at random moments
// ---------------------------------------------------------------------------------------------

/// Times an uninterrupted child on a file of its own: how long until its journal is open,
/// and until it exits, in ms.
fn calibrate(expected: &str) -> (u64, u64) {
    let files = Files::new();
    let started = Instant::now();
    let mut child = spawn_child(&files, "calibration", RANDOM_STEP_MS, None, None, "calib");
    child.wait_for(OPENED);
    let startup_ms = started.elapsed().as_millis() as u64;
    let output: String = child.finish();
    let lifetime_ms = (started.elapsed().as_millis() as u64).max(startup_ms);
    assert_eq!(output, expected, "the calibration run's output");
    println!(
        "an uninterrupted child opens its journal after {startup_ms} ms, lives {lifetime_ms} ms"
    );
    (startup_ms, lifetime_ms)
}

#[test]
fn sigkill_at_random_moments_then_the_last_process_finishes_the_run() {
    const MAX_KILLS: usize = 6;
    const TIME_LIMIT: Duration = Duration::from_secs(12);

    let seed = seed();
    let mut rng = Lcg(seed);
    let expected = expected_output(RANDOM_STEP_MS);

    // Kill moments are drawn over the life of a whole uninterrupted child, so that they spread
    // over start-up, the steps and the end whatever this machine's speed.
    let (startup_ms, lifetime_ms) = calibrate(&expected);

    let files = Files::new();
    let run_id = "random";
    // (pid, steps journaled when it died), in kill order.
    let mut killed: Vec<(u32, u32)> = Vec::new();
    let mut journaled = 0;
    let deadline = Instant::now() + TIME_LIMIT;
    for round in 0..MAX_KILLS {
        if Instant::now() > deadline {
            break;
        }
        // A resumed child skips the journaled steps, so its life is shorter: the moments are
        // drawn over what is left of it, or most kills would come too late after a few rounds.
        let steps_ms = (lifetime_ms - startup_ms) * u64::from(STEPS - journaled) / u64::from(STEPS);
        let mut child = spawn_child(
            &files,
            run_id,
            RANDOM_STEP_MS,
            None,
            None,
            &format!("random-{round}"),
        );
        let delay = Duration::from_millis(rng.below(startup_ms + steps_ms + 5));
        std::thread::sleep(delay);
        let status = child.kill();
        if status.success() {
            // It finished before the kill: the last child below replays a completed run.
            println!("round {round}: the child finished within {delay:?}");
            break;
        }
        assert_eq!(
            status.signal(),
            Some(9),
            "round {round}, seed {seed}\n{}",
            child.diagnostics()
        );
        let (_, steps) = inspect(&files.db, run_id);
        let count = steps.len() as u32;
        // A kill can only stop progress, never undo it: the journal is a growing prefix.
        assert!(
            count >= journaled,
            "seed {seed}: the journal shrank from {journaled} to {count}"
        );
        assert_journal_prefix(&steps, count, &format!("after round {round}, seed {seed}"));
        println!("round {round}: killed after {delay:?}, {count} steps journaled");
        journaled = count;
        killed.push((child.pid(), count));
    }

    let mut last = spawn_child(&files, run_id, RANDOM_STEP_MS, None, None, "last");
    let output: String = last.finish();
    assert_eq!(output, expected, "seed {seed}: the final output");
    assert_completed(&files.db, run_id, &expected);

    let log = SideEffects::read(&files.log);
    let context = format!("seed {seed}; side-effect log: {}", log.dump());
    for seq in 0..STEPS {
        let key = key(run_id, seq);
        assert!(
            log.all_ends(&key) >= 1,
            "journaled step {seq} never logged its end; {context}"
        );
    }
    // A step journaled when a process died is replayed by every later process, never run.
    let later_pids: Vec<u32> = killed
        .iter()
        .map(|(pid, _)| *pid)
        .chain([last.pid()])
        .collect();
    for (i, (pid, count)) in killed.iter().enumerate() {
        for seq in 0..*count {
            let key = key(run_id, seq);
            for later in &later_pids[i + 1..] {
                assert!(
                    log.starts(&key, *later).is_empty(),
                    "step {seq}, journaled when {pid} died, ran again in {later}; {context}"
                );
            }
        }
    }
    // Attempts restart at 1 in each process, and no step failed, so no attempt 2 ever ran.
    for line in &log.lines {
        if let LogLine::Start { attempt, .. } = line {
            assert_eq!(*attempt, 1, "{context}");
        }
    }
}

/// Regression: a kill while `Engine::open` created a new journal once left a file without
/// redb's magic number (redb writes it last), which no engine could open again. The journal is
/// now built under a temporary name and linked into place.
#[test]
fn sigkill_while_the_first_open_creates_the_file_leaves_a_journal_that_opens() {
    const ATTEMPTS: usize = 60;
    const TIME_LIMIT: Duration = Duration::from_secs(20);
    let seed = seed();
    let mut rng = Lcg(seed);
    let (startup_ms, _) = calibrate(&expected_output(RANDOM_STEP_MS));
    let deadline = Instant::now() + TIME_LIMIT;
    for attempt in 0..ATTEMPTS {
        if Instant::now() > deadline {
            break;
        }
        let files = Files::new();
        let delay = Duration::from_millis(rng.below(startup_ms + 1));
        let mut child = spawn_child(
            &files,
            "first-open",
            RANDOM_STEP_MS,
            None,
            None,
            "first-open",
        );
        std::thread::sleep(delay);
        child.kill();
        if let Err(e) = block_on(Engine::open(&files.db)) {
            panic!(
                "attempt {attempt}, seed {seed}: after a kill {delay:?} into the first open, \
                 the journal cannot be opened: {e}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A journal held by a live process
// ---------------------------------------------------------------------------------------------

#[test]
fn a_journal_held_by_a_live_child_is_locked_and_resumes_after_the_kill() {
    const K: u32 = 4;
    let files = Files::new();
    let run_id = "locked";
    let expected = expected_output(STEP_MS);

    let mut child = spawn_child(
        &files,
        run_id,
        STEP_MS,
        None,
        Some(KillPoint::InStep(K)),
        "holder",
    );
    child.wait_for(READY);

    match block_on(Engine::open(&files.db)) {
        Err(Error::Open(OpenError::Locked { path })) => {
            assert_eq!(path, files.db);
            let message = Error::Open(OpenError::Locked { path }).to_string();
            assert!(
                message.contains("held by another process"),
                "the message must say why: {message}"
            );
        }
        Err(other) => panic!("expected OpenError::Locked, got {other:?}: {other}"),
        Ok(engine) => panic!("a journal held by a live process was opened: {engine:?}"),
    }

    child.kill_alive();
    let child_pid = child.pid();

    // This process now resumes the run itself, logging to the same file.
    let output = block_on(async {
        let engine = open(&files.db, &files.log)
            .await
            .expect("the journal opens once its holder is dead");
        let run = engine
            .start::<Flow>(run_id, (STEPS, STEP_MS, None))
            .await
            .expect("start returns the existing run");
        run.result().await.expect("the resumed run completes")
    });
    assert_eq!(output, expected, "the output after the resume");
    assert_completed(&files.db, run_id, &expected);

    let me = std::process::id();
    let log = SideEffects::read(&files.log);
    let context = format!("side-effect log: {}", log.dump());
    for seq in 0..K {
        let key = key(run_id, seq);
        assert_eq!(log.ends(&key, child_pid), 1, "step {seq}, {context}");
        assert!(
            log.starts(&key, me).is_empty(),
            "step {seq} was journaled by the killed child but ran again; {context}"
        );
    }
    let key_k = key(run_id, K);
    assert_eq!(log.ends(&key_k, child_pid), 0, "{context}");
    assert_eq!(
        log.starts(&key_k, me),
        [1],
        "step {K} reruns under its key; {context}"
    );
    for seq in 0..STEPS {
        assert_eq!(log.all_ends(&key(run_id, seq)), 1, "step {seq}, {context}");
    }
}
