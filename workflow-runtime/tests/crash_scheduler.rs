//! Crash tests of the engine's scheduling side: group commit, cancellation, child workflows,
//! durable timers and budgets, each across the SIGKILL of a real child process.
//!
//! As in `tests/crash.rs`, a child is this test binary re-executed to run only
//! `child_process_entry`, which does nothing unless `SCHED_CRASH_ROLE` is set. The child plays
//! one role (run 50 workflows, cancel a run, ...), prints markers on stdout, and the parent kills
//! it with SIGKILL, then reads what the dead process left in the journal, in-process or through a
//! second child. Step bodies append `start`/`end` lines to a side-effect log, which tells which
//! process ran which step under which idempotency key.
//!
//! The workflows implement [`Workflow`] by hand over the closure API, without the macros.

#![cfg(unix)]

mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::{
    ChildProcess, Files, Lcg, Protocol, SideEffects, block_on, block_until_killed, fail,
    inspect_journal, log_end, log_start, print_flushed, required_env, seed, string_output,
    until_killed,
};
use workflow_runtime::{
    BoxFuture, Budget, Engine, Error, RunStatus, StepContext, StepErrorKind, StepRecord,
    StepStatus, Usage, Workflow, WorkflowFailure, durable, idempotency_key, resource, step,
};

/// How long the parent waits for any one marker or exit. Generous, for a loaded machine; a
/// healthy child takes milliseconds (the sleep test: about two seconds).
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

const ENV_ROLE: &str = "SCHED_CRASH_ROLE";
const ENV_DB: &str = "SCHED_CRASH_DB";
const ENV_LOG: &str = "SCHED_CRASH_LOG";
/// What the role needs besides the files (a mode, a duration).
const ENV_ARG: &str = "SCHED_CRASH_ARG";

/// Markers the child prints, searched for inside its lines (see [`ChildProcess::wait_for`]).
const SEEN: &str = "SEEN ";
const MISMATCH: &str = "MISMATCH ";
const STARTED: &str = "STARTED";
const BLOCKED: &str = "BLOCKED";
const CANCEL_RETURNED: &str = "CANCEL-RETURNED ";
const CANCELLED: &str = "CANCELLED";
const QUEUED: &str = "QUEUED ";
const SLEEPING: &str = "SLEEPING";
const OUTPUT: &str = "OUTPUT ";
const RESULT: &str = "RESULT ";

const CHILD: Protocol = Protocol {
    entry: "child_process_entry",
    output: OUTPUT,
    timeout: CHILD_TIMEOUT,
};

// ---------------------------------------------------------------------------------------------
// The side-effect log
// ---------------------------------------------------------------------------------------------

/// What a child process's steps are told: where they log their effects (`SCHED_CRASH_LOG`),
/// and which steps block in this process. The engine's resource, so each process (and each
/// engine) has its own; the parent's engines have none and never run step bodies.
#[derive(Debug, Clone, Default)]
struct Harness {
    log: PathBuf,
    /// [`Kid`]'s second step blocks (the first process of the child-workflow test).
    kid_blocks: bool,
    /// Step [`SPEND_BLOCK_SEQ`] of [`Spender`] blocks (the first process of the budget test).
    spender_blocks: bool,
}

impl Harness {
    fn of_step() -> Option<Arc<Harness>> {
        resource::<Harness>().ok()
    }
}

/// Opens the journal at `db` with `harness` for the steps.
async fn open(db: &Path, harness: &Harness) -> Engine {
    Engine::builder()
        .resource(harness.clone())
        .open(db)
        .await
        .expect("the child opens the journal")
}

/// Logs that the current step's body starts; returns its context.
fn effect_start() -> StepContext {
    let ctx = StepContext::current().expect("a step body runs inside a step");
    if let Some(harness) = Harness::of_step() {
        log_start(&harness.log, &ctx);
    }
    ctx
}

/// Logs that the step's body ends (its effect took place).
fn effect_end(ctx: &StepContext) {
    if let Some(harness) = Harness::of_step() {
        log_end(&harness.log, ctx);
    }
}

/// A step named `name` whose effect completes at once and which returns `value`: the start and
/// end in the side-effect log show which process ran it.
async fn quick_step(name: &'static str, value: String) -> Result<String, WorkflowFailure> {
    step(name)
        .run(|| async {
            let ctx = effect_start();
            effect_end(&ctx);
            Ok::<_, std::io::Error>(value.clone())
        })
        .await
        .map_err(fail)
}

// ---------------------------------------------------------------------------------------------
// The workflows
// ---------------------------------------------------------------------------------------------

/// The name of every step of [`Group`].
const GROUP_STEP: &str = "work";

/// The value of step `seq` of run `run_id` of [`Group`]: distinct for every step of every run,
/// so a value handed to the wrong step or run cannot go unnoticed.
fn group_value(run_id: &str, seq: u64) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in run_id.bytes().chain(seq.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{run_id}#{seq}:{hash:016x}")
}

/// `steps` steps in sequence; after each one returns, the body prints `SEEN <run id> <seq>`.
struct Group;

impl Workflow for Group {
    /// (steps, base latency of a step in ms).
    type Input = (u64, u64);
    type Output = u64;
    const NAME: &'static str = "sched_group";

    fn run((steps, step_ms): (u64, u64)) -> BoxFuture<'static, Result<u64, WorkflowFailure>> {
        Box::pin(async move {
            let run_id = durable::run_id().expect("inside a run");
            for seq in 0..steps {
                let value = step(GROUP_STEP)
                    .run(|| async move {
                        let ctx = StepContext::current().expect("inside a step");
                        let run_id = ctx.run_id().expect("inside a run").to_owned();
                        // Latencies of 1 to 3 times the base, so that runs drift apart and
                        // commits mix steps of different numbers.
                        let spread = group_value(&run_id, ctx.seq()).len() as u64 % 3;
                        tokio::time::sleep(Duration::from_millis(step_ms * (1 + spread))).await;
                        Ok::<_, std::io::Error>(group_value(&run_id, ctx.seq()))
                    })
                    .await
                    .map_err(fail)?;
                if value != group_value(&run_id, seq) {
                    print_flushed(&format!("{MISMATCH}{run_id} {seq} {value}"));
                    return Err(fail(format!("step {seq} handed back {value:?}")));
                }
                // The step's value is visible to the body: say so, before anything else.
                print_flushed(&format!("{SEEN}{run_id} {seq}"));
            }
            Ok(steps)
        })
    }
}

/// A quick first step, then a second step that blocks forever (in every process).
struct Blocker;

impl Workflow for Blocker {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "sched_blocker";

    fn run(_: ()) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let first = quick_step("first", "first".to_owned()).await?;
            step("block")
                .run(|| async {
                    let ctx = effect_start();
                    print_flushed(BLOCKED);
                    std::future::pending::<()>().await;
                    effect_end(&ctx);
                    Ok::<_, std::io::Error>(())
                })
                .await
                .map_err(fail)?;
            Ok(first)
        })
    }
}

/// A step, a child workflow, a step.
struct Parent;

impl Workflow for Parent {
    type Input = (u32,);
    type Output = String;
    const NAME: &'static str = "sched_parent";

    fn run((n,): (u32,)) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let prepared = quick_step("prepare", format!("p{n}")).await?;
            let kid = durable::child::<Kid>((n * 10,)).await.map_err(fail)?;
            quick_step("finish", format!("{prepared}+{kid}")).await
        })
    }
}

/// The child workflow of [`Parent`]: two steps, the second of which blocks in the first process.
struct Kid;

impl Workflow for Kid {
    type Input = (u32,);
    type Output = String;
    const NAME: &'static str = "sched_kid";

    fn run((m,): (u32,)) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let a = quick_step("kid-a", format!("a{m}")).await?;
            let b = step("kid-block")
                .run(|| async move {
                    let ctx = effect_start();
                    if Harness::of_step().is_some_and(|h| h.kid_blocks) {
                        print_flushed(BLOCKED);
                        std::future::pending::<()>().await;
                    }
                    effect_end(&ctx);
                    Ok::<_, std::io::Error>(format!("b{m}"))
                })
                .await
                .map_err(fail)?;
            Ok(format!("{a}{b}"))
        })
    }
}

/// A step, a durable sleep, a step.
struct Sleeper;

impl Workflow for Sleeper {
    /// The sleep in ms.
    type Input = (u64,);
    type Output = String;
    const NAME: &'static str = "sched_sleeper";

    fn run((ms,): (u64,)) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let before = quick_step("before", "before".to_owned()).await?;
            print_flushed(SLEEPING);
            durable::sleep(Duration::from_millis(ms)).await;
            let after = quick_step("after", "after".to_owned()).await?;
            Ok(format!("{before},{after}"))
        })
    }
}

/// The name of every step of [`Spender`].
const SPEND_STEP: &str = "spend";
/// What each step of [`Spender`] reports it spent.
const SPEND_STEP_USD: f64 = 0.011;
/// The step of [`Spender`] that blocks in the first process: the 4th, with 0.033 USD journaled.
const SPEND_BLOCK_SEQ: u64 = 3;

/// Spends 0.011 USD a step without end, under a cap of 0.05 USD: only the budget stops the run.
struct Spender;

impl Workflow for Spender {
    type Input = ();
    type Output = ();
    const NAME: &'static str = "sched_spender";

    fn budget() -> Budget {
        Budget::UNLIMITED.with_max_cost_usd(0.05)
    }

    fn run(_: ()) -> BoxFuture<'static, Result<(), WorkflowFailure>> {
        Box::pin(async move {
            loop {
                step(SPEND_STEP)
                    .run(|| async {
                        let ctx = effect_start();
                        // Reported before the block: the killed attempt's spend exists only in
                        // the dead process's memory, and must not count.
                        ctx.report_usage(Usage::default().with_cost_usd(SPEND_STEP_USD));
                        if ctx.seq() == SPEND_BLOCK_SEQ
                            && Harness::of_step().is_some_and(|h| h.spender_blocks)
                        {
                            print_flushed(BLOCKED);
                            std::future::pending::<()>().await;
                        }
                        effect_end(&ctx);
                        // `()` on purpose: its value is journaled as JSON `null`, which once
                        // read back as no value and parked the resumed run (regression).
                        Ok::<_, std::io::Error>(())
                    })
                    .await
                    .map_err(fail)?;
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The child roles
// ---------------------------------------------------------------------------------------------

const GROUP_RUNS: usize = 50;
const GROUP_STEPS: u64 = 20;
const GROUP_STEP_MS: u64 = 2;

const BLOCKER_RUN: &str = "blocker";
const FAMILY_RUN: &str = "family";
const FAMILY_INPUT: u32 = 3;
const SLEEP_RUN: &str = "nap";
const SLEEP_MS: u64 = 2_000;
const SPEND_RUN: &str = "spender";

fn group_run_id(i: usize) -> String {
    format!("g{i:02}")
}

/// Runs only when re-executed by a parent with `SCHED_CRASH_ROLE` set.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(ENV_ROLE) else {
        return;
    };
    let db = PathBuf::from(required_env(ENV_DB));
    let harness = Harness {
        log: PathBuf::from(required_env(ENV_LOG)),
        ..Harness::default()
    };
    let arg = required_env(ENV_ARG);
    match role.as_str() {
        "group" => child_group(&db, &harness),
        "cancel" => child_cancel(&db, &harness, &arg),
        "cancel-check" => child_cancel_check(&db, &harness, &arg),
        "family" => child_family(&db, harness, &arg),
        "sleep" => child_sleep(&db, &harness),
        "spend" => child_spend(&db, harness, &arg),
        other => panic!("unknown child role {other:?}"),
    }
}

/// Starts `GROUP_RUNS` runs of [`Group`] at once on one journal and waits for them.
fn child_group(db: &Path, harness: &Harness) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let engine = open(db, harness).await;
        let mut starts = tokio::task::JoinSet::new();
        for i in 0..GROUP_RUNS {
            let engine = engine.clone();
            starts.spawn(async move {
                engine
                    .start::<Group>(group_run_id(i), (GROUP_STEPS, GROUP_STEP_MS))
                    .await
                    .expect("start a run")
            });
        }
        let handles = starts.join_all().await;
        print_flushed(STARTED);
        for handle in handles {
            handle.result().await.expect("the run completes");
        }
        CHILD.print_output(&"done");
    });
}

/// Starts [`Blocker`], waits for a line on stdin, cancels the run, and then waits to be killed.
/// `arg` is `settle` (print `CANCELLED` once the run's end is reported) or `at-return` (print it
/// as soon as `cancel` returns, then stall the runtime so the kill lands at that very moment).
fn child_cancel(db: &Path, harness: &Harness, mode: &str) {
    block_on(async {
        let engine = open(db, harness).await;
        let run = engine
            .start::<Blocker>(BLOCKER_RUN, ())
            .await
            .expect("start the run");
        // The parent writes a line once it has seen BLOCKED; EOF means it is gone.
        let line = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|_| line)
        })
        .await
        .expect("the stdin reader")
        .expect("read stdin");
        assert_eq!(line.trim(), "cancel", "the parent's order");
        let cancelled = engine.cancel(BLOCKER_RUN).await.expect("cancel the run");
        print_flushed(&format!("{CANCEL_RETURNED}{cancelled}"));
        match mode {
            "at-return" => {
                print_flushed(CANCELLED);
                // Nothing of this process runs after `cancel` returned: the engine's tasks
                // share this thread, which this blocks. A SIGKILL can always land exactly here.
                block_until_killed();
            }
            "settle" => {
                let error = run
                    .result()
                    .await
                    .expect_err("a cancelled run has no value");
                print_flushed(&format!("{CANCELLED} {error}"));
                until_killed().await;
            }
            other => panic!("unknown cancel mode {other:?}"),
        }
    });
}

/// A new process on the journal of a cancelled run: registers [`Blocker`], reports how many
/// runs that resumed and the run's result, and gives a resumed run `arg` ms to show itself.
fn child_cancel_check(db: &Path, harness: &Harness, wait_ms: &str) {
    let wait_ms: u64 = wait_ms.parse().expect("a wait in ms");
    block_on(async {
        let engine = open(db, harness).await;
        let queued = engine.register::<Blocker>().await.expect("register");
        print_flushed(&format!("{QUEUED}{queued}"));
        // A resumed run never ends (its step blocks): give it `wait_ms` to show itself.
        let wait = Duration::from_millis(wait_ms);
        let run = engine.handle::<Blocker>(BLOCKER_RUN);
        match tokio::time::timeout(wait, run.result()).await {
            Ok(result) => print_flushed(&format!("{RESULT}{result:?}")),
            Err(_) => print_flushed(&format!("{RESULT}still running after {wait:?}")),
        }
    });
}

/// `block`: starts [`Parent`] and waits (its child blocks). `finish`: registers both workflows
/// and waits for the parent's result, which it prints.
fn child_family(db: &Path, harness: Harness, mode: &str) {
    let harness = Harness {
        kid_blocks: mode == "block",
        ..harness
    };
    let harness = &harness;
    let output = block_on(async {
        let engine = open(db, harness).await;
        match mode {
            "block" => {
                let run = engine
                    .start::<Parent>(FAMILY_RUN, (FAMILY_INPUT,))
                    .await
                    .expect("start the parent");
                run.result().await.expect("the parent completes")
            }
            "finish" => {
                let queued = engine.register::<Parent>().await.expect("register parent")
                    + engine.register::<Kid>().await.expect("register kid");
                print_flushed(&format!("{QUEUED}{queued}"));
                let run = engine.handle::<Parent>(FAMILY_RUN);
                run.result().await.expect("the resumed parent completes")
            }
            other => panic!("unknown family mode {other:?}"),
        }
    });
    CHILD.print_output(&output);
}

/// Starts (or resumes) [`Sleeper`] and prints its output.
fn child_sleep(db: &Path, harness: &Harness) {
    let output = block_on(async {
        let engine = open(db, harness).await;
        let run = engine
            .start::<Sleeper>(SLEEP_RUN, (SLEEP_MS,))
            .await
            .expect("start or resume the run");
        run.result().await.expect("the run completes")
    });
    CHILD.print_output(&output);
}

/// `block`: starts [`Spender`], whose step [`SPEND_BLOCK_SEQ`] blocks, and waits to be killed.
/// `finish`: resumes the run and prints why it stopped.
fn child_spend(db: &Path, harness: Harness, mode: &str) {
    let harness = Harness {
        spender_blocks: mode == "block",
        ..harness
    };
    let harness = &harness;
    let message = block_on(async {
        let engine = open(db, harness).await;
        let run = engine
            .start::<Spender>(SPEND_RUN, ())
            .await
            .expect("start or resume the run");
        if mode == "block" {
            // The run goes on until its step blocks; this process until the parent kills it.
            until_killed().await;
        }
        match run.result().await {
            Err(Error::BudgetExceeded { message, .. }) => message,
            other => panic!("the run must be stopped by its budget, not end with {other:?}"),
        }
    });
    CHILD.print_output(&message);
}

// ---------------------------------------------------------------------------------------------
// The parent's handle on a child
// ---------------------------------------------------------------------------------------------

/// Spawns a child that plays `role` on the files of `files`, with `arg` for what the role
/// needs besides them.
fn spawn_child(files: &Files, role: &str, arg: &str, label: &str) -> ChildProcess {
    ChildProcess::spawn(
        CHILD,
        &files.root,
        label,
        &[
            (ENV_ROLE, OsStr::new(role)),
            (ENV_DB, files.db.as_os_str()),
            (ENV_LOG, files.log.as_os_str()),
            (ENV_ARG, OsStr::new(arg)),
        ],
    )
}

fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

// ---------------------------------------------------------------------------------------------
// 1. Group commit: durable before visible
// ---------------------------------------------------------------------------------------------

/// 50 runs of 20 steps share one journal, so their commits share transactions. After each step
/// returns, the body prints `SEEN <run> <seq>`; the child is killed at a random line. Every
/// step the dead process reported as seen must be in the journal with its value: no outcome was
/// handed to a body before the transaction holding it was durable.
#[test]
fn sigkill_during_group_commit_loses_no_step_a_body_has_seen() {
    const ATTEMPTS: usize = 3;
    let seed = seed();
    let mut rng = Lcg(seed);
    let total = GROUP_RUNS * GROUP_STEPS as usize;
    for attempt in 0..ATTEMPTS {
        let files = Files::new();
        // At least a few hundred lines, and early enough that the child is still busy.
        let kill_after = 300 + rng.below(total as u64 * 2 / 5) as usize;
        let mut child = spawn_child(&files, "group", "", &format!("group-{attempt}"));
        let deadline = Instant::now() + CHILD_TIMEOUT;
        let mut lines = Vec::new();
        let mut seen_count = 0;
        while seen_count < kill_after {
            let Some(line) = child.next_line(deadline) else {
                child.wait_exit();
                panic!(
                    "seed {seed}: the child ended early\n{}",
                    child.diagnostics()
                );
            };
            seen_count += usize::from(line.contains(SEEN));
            lines.push(line);
        }
        let status = child.kill();
        // What the child wrote before it died is still in the pipe.
        lines.extend(child.drain());
        if status.success() {
            println!("attempt {attempt}: the child finished before the kill; again");
            continue;
        }
        assert_eq!(status.signal(), Some(9), "{}", child.diagnostics());

        let mut seen: Vec<(String, u64)> = Vec::new();
        let mut started = false;
        for line in &lines {
            assert!(
                !line.contains(MISMATCH),
                "seed {seed}: a body got a wrong value: {line}"
            );
            started |= line.contains(STARTED);
            if let Some(at) = line.find(SEEN) {
                let rest = &line[at + SEEN.len()..];
                let (run, seq) = rest
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("malformed line {line:?}"));
                let seq = seq
                    .parse()
                    .unwrap_or_else(|_| panic!("malformed line {line:?}"));
                seen.push((run.to_owned(), seq));
            }
        }
        assert!(seen.len() >= kill_after, "seed {seed}");
        assert!(
            seen.len() < total,
            "seed {seed}: killed after the last step; the kill came too late to test anything"
        );

        // Concurrency: lines of many runs come close together (each run prints one line per
        // step, one step at a time, so a window of 100 lines with many runs in it means many
        // runs had steps in flight at once).
        let most_runs_in_a_window = seen
            .windows(100)
            .map(|w| w.iter().map(|(run, _)| run).collect::<HashSet<_>>().len())
            .max()
            .unwrap_or(0);
        assert!(
            most_runs_in_a_window >= 25,
            "seed {seed}: at most {most_runs_in_a_window} runs in any 100 consecutive lines"
        );

        let journal = inspect_journal(&files.db);
        let context = format!("seed {seed}, killed after {} SEEN lines", seen.len());
        for (run, seq) in &seen {
            let (_, steps) = journal.get(run).unwrap_or_else(|| {
                panic!("{context}: run {run} printed SEEN but is not in the journal")
            });
            let record = steps.iter().find(|s| s.seq == *seq).unwrap_or_else(|| {
                panic!(
                    "{context}: step {seq} of {run} was seen by the body but is not in the \
                     journal: its outcome was visible before it was durable"
                )
            });
            assert_eq!(record.name, GROUP_STEP, "{context}: {run} #{seq}");
            assert_eq!(
                record.status,
                StepStatus::Completed,
                "{context}: {run} #{seq}"
            );
            assert_eq!(
                string_output(record),
                group_value(run, *seq),
                "{context}: {run} #{seq}"
            );
        }
        // Each run's journal is a prefix of its steps, and at most one step ahead of what its
        // body saw (that step was committed, and the kill came before its SEEN line).
        let mut last_seen: BTreeMap<&str, u64> = BTreeMap::new();
        for (run, seq) in &seen {
            let last = last_seen.entry(run.as_str()).or_insert(0);
            *last = (*last).max(seq + 1);
        }
        for (run, (record, steps)) in &journal {
            assert_eq!(record.workflow, Group::NAME, "{context}");
            let seqs: Vec<u64> = steps.iter().map(|s| s.seq).collect();
            let prefix: Vec<u64> = (0..steps.len() as u64).collect();
            assert_eq!(seqs, prefix, "{context}: the journal of {run}");
            let saw = last_seen.get(run.as_str()).copied().unwrap_or(0);
            let journaled = steps.len() as u64;
            assert!(
                journaled == saw || journaled == saw + 1,
                "{context}: {run} journaled {journaled} steps, its body saw {saw}"
            );
        }
        if started {
            assert_eq!(
                journal.len(),
                GROUP_RUNS,
                "{context}: every started run is journaled"
            );
        }
        let runs_seen = last_seen.len();
        println!(
            "attempt {attempt}: killed after {} SEEN lines from {runs_seen} runs; all {} checked \
             against the journal ({} steps journaled)",
            seen.len(),
            seen.len(),
            journal.values().map(|(_, s)| s.len()).sum::<usize>()
        );
        return;
    }
    panic!("seed {seed}: the child finished before every one of {ATTEMPTS} kills");
}

// ---------------------------------------------------------------------------------------------
// 2. Cancellation across a crash
// ---------------------------------------------------------------------------------------------

/// A child starts [`Blocker`], whose second step blocks; on the parent's order it cancels the
/// run, and the parent kills it once it printed `CANCELLED` (when that is depends on `mode`).
/// A new process then finds the run cancelled and resumes nothing.
fn cancel_then_sigkill(mode: &str) {
    let files = Files::new();
    let mut first = spawn_child(&files, "cancel", mode, "cancel");
    first.wait_for(BLOCKED);
    first.send_line("cancel");
    let returned = first.wait_for(CANCEL_RETURNED);
    assert_eq!(returned, "true", "cancel of a running run returns true");
    first.wait_for(CANCELLED);
    first.kill_alive();
    let first_pid = first.pid();

    let mut check = spawn_child(&files, "cancel-check", "300", "check");
    let queued: usize = check.wait_for(QUEUED).parse().expect("a count");
    let result = check.wait_for(RESULT);
    let status = check.wait_exit();
    assert!(status.success(), "{}", check.diagnostics());
    let check_pid = check.pid();

    let journal = inspect_journal(&files.db);
    let (record, steps) = &journal[BLOCKER_RUN];
    let log = SideEffects::read(&files.log);
    let journaled: Vec<String> = steps
        .iter()
        .map(|s| {
            let kind = s.error.as_ref().map(|e| format!(" ({:?})", e.kind));
            format!(
                "#{} {} {:?}{}",
                s.seq,
                s.name,
                s.status,
                kind.unwrap_or_default()
            )
        })
        .collect();
    let context = format!(
        "mode {mode}: after the kill the run is {}, with steps {journaled:?}; a new process \
         (pid {check_pid}) registered the workflow, which queued {queued} run(s), and it \
         reported {result:?}\nside-effect log:\n{}",
        record.status,
        log.dump()
    );
    assert_eq!(
        record.status,
        RunStatus::Cancelled,
        "the cancellation survives the kill; {context}"
    );
    assert_eq!(queued, 0, "register resumes nothing; {context}");
    assert!(
        result.contains("RunFinished") && result.contains("Cancelled"),
        "the new process reports the run cancelled: {result}; {context}"
    );
    assert_eq!(journal.len(), 1, "{context}");
    assert_eq!(steps.len(), 2, "{context}");
    assert_eq!(
        (steps[0].name.as_str(), steps[0].status),
        ("first", StepStatus::Completed),
        "{context}"
    );
    assert_eq!(
        (steps[1].name.as_str(), steps[1].status),
        ("block", StepStatus::Failed),
        "{context}"
    );
    let error = steps[1].error.as_ref().expect("the blocked step's error");
    assert_eq!(error.kind, StepErrorKind::Cancelled, "{context}");

    let key = |seq, name| idempotency_key(BLOCKER_RUN, seq, name);
    assert_eq!(log.starts(&key(0, "first"), first_pid), [1], "{context}");
    assert_eq!(log.starts(&key(1, "block"), first_pid), [1], "{context}");
    assert_eq!(log.ends(&key(1, "block"), first_pid), 0, "{context}");
    assert_eq!(
        log.pids(),
        BTreeSet::from([first_pid]),
        "no step ran in the new process (pid {check_pid}); {context}"
    );
}

/// The run's end was reported (`result` returned cancelled) before the kill.
#[test]
fn a_cancelled_run_stays_cancelled_after_a_sigkill() {
    cancel_then_sigkill("settle");
}

/// Regression: `Engine::cancel` on an executing run returned as soon as it had signalled the
/// run's task, before the task journaled `cancelled`; a process that died in between lost the
/// cancellation and the next engine ran the blocked step again. The child stalls its only
/// runtime thread right after `cancel` returns, which pins the kill to that moment.
#[test]
fn sigkill_right_after_cancel_returns_keeps_the_run_cancelled() {
    cancel_then_sigkill("at-return");
}

// ---------------------------------------------------------------------------------------------
// 3. Child workflows across a crash
// ---------------------------------------------------------------------------------------------

#[test]
fn a_child_workflow_killed_mid_step_resumes_once_under_its_id() {
    let files = Files::new();
    let child_id = format!("{FAMILY_RUN}/1/child");
    let expected = format!("p{FAMILY_INPUT}+a{0}b{0}", FAMILY_INPUT * 10);

    let mut first = spawn_child(&files, "family", "block", "family-first");
    first.wait_for(BLOCKED);
    first.kill_alive();
    let first_pid = first.pid();

    let at_kill = inspect_journal(&files.db);
    let ids: Vec<&str> = at_kill.keys().map(String::as_str).collect();
    assert_eq!(ids, [FAMILY_RUN, child_id.as_str()], "runs after the kill");
    let (parent, parent_steps) = &at_kill[FAMILY_RUN];
    let (kid, kid_steps) = &at_kill[&child_id];
    assert_eq!(parent.status, RunStatus::Running);
    assert_eq!(kid.status, RunStatus::Running);
    assert_eq!(kid.workflow, Kid::NAME);
    let names = |steps: &[StepRecord]| -> Vec<String> {
        steps
            .iter()
            .map(|s| format!("{}:{}", s.seq, s.name))
            .collect()
    };
    assert_eq!(names(parent_steps), ["0:prepare"]);
    assert_eq!(names(kid_steps), ["0:kid-a"]);
    let kid_created = kid.created_at_us;

    let mut second = spawn_child(&files, "family", "finish", "family-second");
    let queued: usize = second.wait_for(QUEUED).parse().expect("a count");
    let output: String = second.finish();
    let second_pid = second.pid();
    assert_eq!(output, expected, "the parent's result");
    // Both runs are queued, by `register` or, for the child, by the resumed parent's `start`
    // if it got there first; either way `register` found at least the parent.
    assert!(
        (1..=2).contains(&queued),
        "register queued {queued} runs; {}",
        second.diagnostics()
    );

    let end = inspect_journal(&files.db);
    let ids: Vec<&str> = end.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        [FAMILY_RUN, child_id.as_str()],
        "the child run exists exactly once, under `{{parent}}/{{seq}}/child`"
    );
    let (parent, parent_steps) = &end[FAMILY_RUN];
    let (kid, kid_steps) = &end[&child_id];
    assert_eq!(parent.status, RunStatus::Completed);
    assert_eq!(kid.status, RunStatus::Completed);
    assert_eq!(
        kid.created_at_us, kid_created,
        "the child run is the one the first process created"
    );
    assert_eq!(
        names(parent_steps),
        ["0:prepare", "1:child:sched_kid", "2:finish"]
    );
    assert_eq!(
        string_output(&parent_steps[1]),
        format!("a{0}b{0}", FAMILY_INPUT * 10)
    );
    assert_eq!(names(kid_steps), ["0:kid-a", "1:kid-block"]);

    let log = SideEffects::read(&files.log);
    let context = format!("side-effect log:\n{}", log.dump());
    let prepare = idempotency_key(FAMILY_RUN, 0, "prepare");
    let finish = idempotency_key(FAMILY_RUN, 2, "finish");
    let kid_a = idempotency_key(&child_id, 0, "kid-a");
    let kid_block = idempotency_key(&child_id, 1, "kid-block");
    assert_eq!(kid_block, format!("{FAMILY_RUN}/1/child/1/kid-block"));
    // Journaled steps ran once, in the first process.
    assert_eq!(log.starts(&prepare, first_pid), [1], "{context}");
    assert_eq!(log.all_starts(&prepare), 1, "{context}");
    // The child was not started a second time: its first step ran once, in the first process.
    assert_eq!(log.starts(&kid_a, first_pid), [1], "{context}");
    assert_eq!(log.all_starts(&kid_a), 1, "{context}");
    // The interrupted step ran again in the second process, under the same key.
    assert_eq!(log.starts(&kid_block, first_pid), [1], "{context}");
    assert_eq!(log.ends(&kid_block, first_pid), 0, "{context}");
    assert_eq!(log.starts(&kid_block, second_pid), [1], "{context}");
    assert_eq!(log.ends(&kid_block, second_pid), 1, "{context}");
    assert_eq!(log.starts(&finish, second_pid), [1], "{context}");
    assert_eq!(log.all_starts(&finish), 1, "{context}");
}

// ---------------------------------------------------------------------------------------------
// 4. A durable sleep across a crash
// ---------------------------------------------------------------------------------------------

#[test]
fn a_durable_sleep_killed_midway_resumes_for_the_remaining_time_only() {
    const KILL_INTO_SLEEP: Duration = Duration::from_millis(500);
    const RESTART_GAP: Duration = Duration::from_millis(500);
    let files = Files::new();
    let sleep = Duration::from_millis(SLEEP_MS);

    let mut first = spawn_child(&files, "sleep", "", "sleep-first");
    first.wait_for(SLEEPING);
    std::thread::sleep(KILL_INTO_SLEEP);
    first.kill_alive();
    let killed_at_us = wall_us();
    let first_pid = first.pid();

    let at_kill = inspect_journal(&files.db);
    let (record, steps) = &at_kill[SLEEP_RUN];
    assert_eq!(record.status, RunStatus::Running, "{record:?}");
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["before", "sleep"],
        "the wake-up time is journaled before the sleep"
    );
    let due_us: u64 = serde_json::from_str(steps[1].output.as_ref().expect("the due time").get())
        .expect("the due time is a number");
    // The run's start, as journaled: process start-up is not part of the run's time.
    let started_us = record.created_at_us;
    assert!(
        killed_at_us < due_us,
        "the kill must land during the sleep: {} ms after the wake-up time",
        (killed_at_us - due_us) / 1000
    );

    std::thread::sleep(RESTART_GAP);
    let restarted = Instant::now();
    let remaining = Duration::from_micros(due_us.saturating_sub(wall_us()));
    let mut second = spawn_child(&files, "sleep", "", "sleep-second");
    let output: String = second.finish();
    let second_pid = second.pid();
    let resumed_for = restarted.elapsed();
    let total = Duration::from_micros(wall_us().saturating_sub(started_us));
    assert_eq!(output, "before,after");
    println!(
        "sleep of {sleep:?}: killed {} ms into it, restarted with {remaining:?} left, the \
         resumed process took {resumed_for:?}, {total:?} from the run's start to its result",
        (killed_at_us.saturating_sub(due_us - SLEEP_MS * 1000)) / 1000
    );
    assert!(
        total >= sleep,
        "the run slept less than {sleep:?}: {total:?}"
    );

    let end = inspect_journal(&files.db);
    let (record, steps) = &end[SLEEP_RUN];
    assert_eq!(record.status, RunStatus::Completed);
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["before", "sleep", "after"]);
    assert!(
        steps[2].started_at_us >= due_us,
        "the step after the sleep started {} us before the journaled wake-up time",
        due_us - steps[2].started_at_us
    );
    // Measured on the journal's clock, so that a slow start of the second process (a loaded
    // machine) does not count: a sleep restarted in full in that process would have woken at
    // least a second after the journaled wake-up time.
    let late_us = steps[2].started_at_us - due_us;
    assert!(
        late_us < 900_000,
        "the step after the sleep started {late_us} us after the journaled wake-up time \
         (the resumed process took {resumed_for:?} with {remaining:?} left): the sleep restarted"
    );

    let log = SideEffects::read(&files.log);
    let context = format!("side-effect log:\n{}", log.dump());
    let before = idempotency_key(SLEEP_RUN, 0, "before");
    let after = idempotency_key(SLEEP_RUN, 2, "after");
    assert_eq!(log.starts(&before, first_pid), [1], "{context}");
    assert_eq!(
        log.all_starts(&before),
        1,
        "the first step is not re-run; {context}"
    );
    assert_eq!(log.starts(&after, second_pid), [1], "{context}");
    assert_eq!(log.all_starts(&after), 1, "{context}");
}

// ---------------------------------------------------------------------------------------------
// 5. A budget across a crash
// ---------------------------------------------------------------------------------------------

/// [`Spender`]'s steps cost 0.011 USD under a 0.05 USD cap: four leave 0.044 spent, so a fifth
/// starts, and its 0.055 stops the run before a sixth. The first process is killed inside step 3,
/// whose reported usage was never journaled; the resumed run must sum the 3 journaled steps, run
/// step 3 once more and stop after step 4: the same total as a run never killed.
#[test]
fn a_budget_survives_a_sigkill_and_stops_the_run_at_the_same_total() {
    let files = Files::new();
    let mut first = spawn_child(&files, "spend", "block", "spend-first");
    first.wait_for(BLOCKED);
    first.kill_alive();
    let first_pid = first.pid();

    let seqs = |steps: &[StepRecord]| -> Vec<u64> { steps.iter().map(|s| s.seq).collect() };
    let at_kill = inspect_journal(&files.db);
    let (record, steps) = &at_kill[SPEND_RUN];
    assert_eq!(record.status, RunStatus::Running);
    assert_eq!(
        seqs(steps),
        [0, 1, 2],
        "the step in flight at the kill is not journaled"
    );

    let mut second = spawn_child(&files, "spend", "finish", "spend-second");
    let message: String = second.finish();
    let second_pid = second.pid();
    assert!(
        message.contains("max_cost_usd = 0.0500") && message.contains("spent 0.0550 USD"),
        "{message}"
    );

    let end = inspect_journal(&files.db);
    let (record, steps) = &end[SPEND_RUN];
    assert_eq!(record.status, RunStatus::BudgetExceeded);
    assert_eq!(record.error.as_deref(), Some(message.as_str()));
    // 3 steps of the first process and 2 of the second; the cap refused a 6th.
    assert_eq!(seqs(steps), [0, 1, 2, 3, 4]);
    for step in steps {
        assert_eq!(step.status, StepStatus::Completed, "#{}", step.seq);
        let value = step.output.as_ref().map(|v| v.get().to_owned());
        assert_eq!(value.as_deref(), Some("null"), "#{}", step.seq);
        assert_eq!(step.usage.cost_usd, SPEND_STEP_USD, "#{}", step.seq);
    }

    let log = SideEffects::read(&files.log);
    let context = format!("side-effect log:\n{}", log.dump());
    let key = |seq| idempotency_key(SPEND_RUN, seq, SPEND_STEP);
    // Journaled steps ran once, in the first process.
    for seq in 0..SPEND_BLOCK_SEQ {
        assert_eq!(log.starts(&key(seq), first_pid), [1], "{context}");
        assert_eq!(log.all_starts(&key(seq)), 1, "{context}");
    }
    // The interrupted step ran again in the second process, under the same key.
    let blocked = key(SPEND_BLOCK_SEQ);
    assert_eq!(log.starts(&blocked, first_pid), [1], "{context}");
    assert_eq!(log.ends(&blocked, first_pid), 0, "{context}");
    assert_eq!(log.starts(&blocked, second_pid), [1], "{context}");
    assert_eq!(log.ends(&blocked, second_pid), 1, "{context}");
    assert_eq!(log.starts(&key(4), second_pid), [1], "{context}");
    assert_eq!(log.all_starts(&key(4)), 1, "{context}");
    assert_eq!(log.all_starts(&key(5)), 0, "no 6th step started; {context}");
}
