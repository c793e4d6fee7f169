//! Crash tests of fan-outs whose branches run several steps each: a real child process (this
//! test binary, re-executed) runs the workflow on a redb journal and is killed with SIGKILL; a
//! second process resumes the run on the same file.
//!
//! The bug these pin: sequence numbers are handed out in call order. Live, a branch calls its
//! second step when its first one finishes, so the branches' second steps are numbered in the
//! order the first steps finished. On replay every journaled outcome is ready at once, so the
//! branches called their second steps in branch order, took each other's numbers and, the step
//! names being alike, each other's values (`pipeline`); where the names differ (`triage`), the
//! swap was caught as non-determinism and a deterministic run was parked for good. The journal
//! now records the order in which outcomes reached the body, and replay hands them back in that
//! order.
//!
//! Unlike tests/crash.rs, these workflows are written with the macros, as a user writes them:
//! `#[step]`s inside `async move` branches joined with `try_join_all`.
//!
//! Kill points freeze the whole child: the hook prints a marker and parks the only thread of
//! the child's runtime, so no other branch moves on between the marker and the SIGKILL (a
//! commit already handed to the blocking pool may still land, as it would in a real crash;
//! the checks read the journal the dead child left instead of predicting it).
//!
//! The child role: `fan_out_child_entry` does nothing unless `FANOUT_CHILD_DB` is set, which
//! only the parent does, when it re-executes this binary to run just that test.

#![cfg(unix)]

mod support;

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::{try_join, try_join_all};
use support::{
    ChildProcess, Files, Protocol, SideEffects, block_on, inspect_journal, log_end, log_start,
    print_flushed, required_env,
};
use workflow_runtime::{
    Engine, RunRecord, RunStatus, StepContext, StepError, StepRecord, Workflow, idempotency_key,
    resource, workflow,
};

/// How long the parent waits for any one marker or exit. A healthy child takes well under a
/// second; the bound is there so that a child stuck by a regression fails the test instead
/// of hanging it.
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

const ENV_DB: &str = "FANOUT_CHILD_DB";
const ENV_FLOW: &str = "FANOUT_CHILD_FLOW";
const ENV_RUN: &str = "FANOUT_CHILD_RUN";
const ENV_LOG: &str = "FANOUT_CHILD_LOG";
const ENV_PROMPTS: &str = "FANOUT_CHILD_PROMPTS";
const ENV_KILL: &str = "FANOUT_CHILD_KILL";

const READY: &str = "FAN-OUT READY";
const OUTPUT: &str = "FAN-OUT OUTPUT ";

const CHILD: Protocol = Protocol {
    entry: "fan_out_child_entry",
    output: OUTPUT,
    timeout: CHILD_TIMEOUT,
};

// ---------------------------------------------------------------------------------------------
// The workflows
// ---------------------------------------------------------------------------------------------

/// Two tickets, two steps per branch, then one step over all branches. Ticket 1's first step
/// is slow and ticket 2's fast, so live, ticket 2 calls its second step first.
#[workflow]
async fn pipeline(ids: Vec<u64>) -> anyhow::Result<Vec<String>> {
    let branches = ids.iter().map(|id| async move {
        #[step]
        let summary = llm(format!("summarize ticket-{id}")).await?;
        kill_point(&format!("after:{summary}"));
        #[step]
        let draft = llm(format!("draft reply from {summary}")).await?;
        kill_point(&format!("after:{draft}"));
        Ok::<_, StepError>(format!("ticket-{id}: {draft}"))
    });
    let drafts = try_join_all(branches).await?;
    kill_point("joined");
    #[step]
    let sent = post_replies(&drafts).await?;
    Ok(sent)
}

/// Three tickets; each branch classifies its ticket, then fans out again (the customer and the
/// knowledge base at once), then drafts; the latencies interleave the branches' steps. With
/// `yields`, a branch also awaits something that is not a step between its first two steps.
#[workflow]
async fn triage(ids: Vec<u64>, yields: bool) -> anyhow::Result<Vec<String>> {
    let branches = ids.iter().map(|id| async move {
        #[step]
        let category = classify(*id).await?;
        kill_point(&format!("after:{category}"));
        if yields {
            pause().await;
            kill_point(&format!("between:ticket-{id}"));
        }
        let customer = async {
            #[step]
            let customer = lookup_customer(*id).await?;
            kill_point(&format!("after:{customer}"));
            Ok::<_, StepError>(customer)
        };
        let articles = async {
            #[step]
            let articles = search_kb(&category).await?;
            kill_point(&format!("after:{articles}"));
            Ok::<_, StepError>(articles)
        };
        let (customer, articles) = try_join(customer, articles).await?;
        #[step]
        let draft = draft_reply(*id, &customer, &articles).await?;
        kill_point(&format!("after:{draft}"));
        Ok::<_, StepError>(format!("ticket-{id}: {draft}"))
    });
    let drafts = try_join_all(branches).await?;
    kill_point("joined");
    #[step]
    let sent = post_replies(&drafts).await?;
    Ok(sent)
}

/// The simulated model's latency for `prompt`: decided by its first word and the first ticket
/// it names, so that branches finish out of order at every level.
fn latency(prompt: &str) -> Duration {
    let stage = prompt.split(' ').next().unwrap_or_default();
    let ticket: u64 = prompt
        .split("ticket-")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0);
    let ms = match (stage, ticket) {
        ("summarize", 1) => 150,
        ("classify", 1) => 90,
        ("classify", 3) => 50,
        ("look", 2) => 60,
        ("look", 3) => 25,
        ("search", 1) => 45,
        ("search", 3) => 70,
        ("draft", 2) => 35,
        _ => 10,
    };
    Duration::from_millis(ms)
}

/// A model that answers `answer(<prompt>)`, so that a value handed to the wrong branch shows
/// in the output. Logs its start and end in the side-effect log and its prompt in the prompt
/// log; stops at the kill point `in:<prompt>`.
async fn llm(prompt: String) -> Result<String, std::io::Error> {
    let ctx = StepContext::current();
    let logs = resource::<Logs>().ok();
    if let (Some(ctx), Some(logs)) = (&ctx, &logs) {
        log_start(&logs.effects, ctx);
        log_prompt(&logs.prompts, ctx, &prompt);
    }
    kill_point(&format!("in:{prompt}"));
    tokio::time::sleep(latency(&prompt)).await;
    if let (Some(ctx), Some(logs)) = (&ctx, &logs) {
        log_end(&logs.effects, ctx);
    }
    Ok(format!("answer({prompt})"))
}

async fn classify(id: u64) -> Result<String, std::io::Error> {
    llm(format!("classify ticket-{id}")).await
}

async fn lookup_customer(id: u64) -> Result<String, std::io::Error> {
    llm(format!("look up the customer of ticket-{id}")).await
}

async fn search_kb(category: &str) -> Result<String, std::io::Error> {
    llm(format!("search the knowledge base for {category}")).await
}

async fn draft_reply(id: u64, customer: &str, articles: &str) -> Result<String, std::io::Error> {
    llm(format!(
        "draft a reply to ticket-{id} for {customer} citing {articles}"
    ))
    .await
}

/// The final step: posts every draft and returns them as posted. Stops at `in:post_replies`.
async fn post_replies(drafts: &[String]) -> Result<Vec<String>, std::io::Error> {
    let ctx = StepContext::current();
    let logs = resource::<Logs>().ok();
    if let (Some(ctx), Some(logs)) = (&ctx, &logs) {
        log_start(&logs.effects, ctx);
        log_prompt(&logs.prompts, ctx, &format!("post {}", drafts.join(" | ")));
    }
    kill_point("in:post_replies");
    tokio::time::sleep(Duration::from_millis(10)).await;
    if let (Some(ctx), Some(logs)) = (&ctx, &logs) {
        log_end(&logs.effects, ctx);
    }
    Ok(drafts.to_vec())
}

/// An await that is not a step and is not idle: it wakes itself at once, as a local
/// computation that yields to the runtime does. Replay runs it again.
async fn pause() {
    tokio::task::yield_now().await;
}

// ---------------------------------------------------------------------------------------------
// Kill points and logs
// ---------------------------------------------------------------------------------------------

/// Set only in a first child: where it stops for its SIGKILL. A static, not a resource of the
/// engine: the process-wide freeze is the harness's, whoever reaches the point.
static KILL_POINT: OnceLock<String> = OnceLock::new();

/// Whether this process must stop at `label`: then it tells the parent and freezes the thread
/// of its runtime, so that nothing else in the process moves on until the kill.
fn kill_point(label: &str) {
    if KILL_POINT.get().is_some_and(|point| point == label) {
        print_flushed(READY);
        loop {
            std::thread::park();
        }
    }
}

/// Where the steps of an engine's runs log: the engine's resource, so that the parent's
/// in-process replays log under their own run's files while other tests run in parallel.
#[derive(Debug, Clone)]
struct Logs {
    /// The harness's side-effect log: which process started and ended which step.
    effects: PathBuf,
    /// Which process ran which step key with which prompt.
    prompts: PathBuf,
}

/// Opens the journal at `db`, its steps logging to `logs`.
async fn open(db: &Path, logs: Logs) -> Engine {
    Engine::builder()
        .resource(logs)
        .open(db)
        .await
        .expect("open the journal")
}

fn log_prompt(path: &Path, ctx: &StepContext, prompt: &str) {
    // One write per line on an O_APPEND file, like the side-effect log.
    let line = format!(
        "{}\t{}\t{prompt}\n",
        ctx.idempotency_key(),
        std::process::id()
    );
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(line.as_bytes()))
        .expect("append to the prompt log");
}

/// The prompt log: (key, pid, prompt) per step attempt, in order.
fn read_prompts(path: &Path) -> Vec<(String, u32, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(
            |line| match line.splitn(3, '\t').collect::<Vec<_>>().as_slice() {
                [key, pid, prompt] => (
                    (*key).to_owned(),
                    pid.parse().expect("a pid"),
                    (*prompt).to_owned(),
                ),
                _ => panic!("malformed prompt log line {line:?}"),
            },
        )
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The child role
// ---------------------------------------------------------------------------------------------

/// Which workflow a test runs, with which input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// [`pipeline`] over tickets 1 and 2.
    Pipeline,
    /// [`triage`] over tickets 1, 2 and 3.
    Triage,
    /// [`triage`] over tickets 1, 2 and 3, yielding between each branch's first two steps.
    TriageYielding,
}

impl Flow {
    fn name(self) -> &'static str {
        match self {
            Flow::Pipeline => "pipeline",
            Flow::Triage => "triage",
            Flow::TriageYielding => "triage-yielding",
        }
    }

    fn from_name(name: &str) -> Flow {
        [Flow::Pipeline, Flow::Triage, Flow::TriageYielding]
            .into_iter()
            .find(|flow| flow.name() == name)
            .unwrap_or_else(|| panic!("unknown flow {name:?}"))
    }

    /// Starts (or resumes) `run_id` on `engine` and waits for its end.
    async fn run(self, engine: &Engine, run_id: &str) -> Result<Vec<String>, String> {
        async fn run<W: Workflow<Output = Vec<String>>>(
            engine: &Engine,
            run_id: &str,
            input: W::Input,
        ) -> Result<Vec<String>, workflow_runtime::Error> {
            engine.start::<W>(run_id, input).await?.result().await
        }
        match self {
            Flow::Pipeline => run::<pipeline>(engine, run_id, (vec![1, 2],)).await,
            Flow::Triage => run::<triage>(engine, run_id, (vec![1, 2, 3], false)).await,
            Flow::TriageYielding => run::<triage>(engine, run_id, (vec![1, 2, 3], true)).await,
        }
        .map_err(|e| e.to_string())
    }

    /// Replays the finished run `run_id` against its journal.
    async fn replay(self, engine: &Engine, run_id: &str) -> Result<Vec<String>, String> {
        match self {
            Flow::Pipeline => engine.replay::<pipeline>(run_id).await,
            Flow::Triage | Flow::TriageYielding => engine.replay::<triage>(run_id).await,
        }
        .map_err(|e| e.to_string())
    }
}

/// Runs only when re-executed by a parent with `FANOUT_CHILD_DB` set: opens the journal, starts
/// (or resumes) the run, and prints how it ended, its error included: a run parked for
/// non-determinism is a result the parent reports, not a hang.
#[test]
fn fan_out_child_entry() {
    let Ok(db) = std::env::var(ENV_DB) else {
        return;
    };
    let flow = Flow::from_name(&required_env(ENV_FLOW));
    let run_id = required_env(ENV_RUN);
    let logs = Logs {
        effects: required_env(ENV_LOG).into(),
        prompts: required_env(ENV_PROMPTS).into(),
    };
    let kill = required_env(ENV_KILL);
    if !kill.is_empty() {
        KILL_POINT.set(kill).expect("the kill point is set once");
    }
    let outcome = block_on(async {
        let engine = open(Path::new(&db), logs).await;
        flow.run(&engine, &run_id).await
    });
    CHILD.print_output(&outcome);
}

fn spawn_child(
    files: &Files,
    flow: Flow,
    run_id: &str,
    kill: Option<&str>,
    label: &str,
) -> ChildProcess {
    let prompts = prompts_path(files);
    ChildProcess::spawn(
        CHILD,
        &files.root,
        label,
        &[
            (ENV_DB, files.db.as_os_str()),
            (ENV_FLOW, OsStr::new(flow.name())),
            (ENV_RUN, OsStr::new(run_id)),
            (ENV_LOG, files.log.as_os_str()),
            (ENV_PROMPTS, prompts.as_os_str()),
            (ENV_KILL, OsStr::new(kill.unwrap_or_default())),
        ],
    )
}

fn prompts_path(files: &Files) -> PathBuf {
    files.root.join("prompts.log")
}

// ---------------------------------------------------------------------------------------------
// The parent's side
// ---------------------------------------------------------------------------------------------

/// An uninterrupted run of a flow, in memory: its output, and the value of each of its steps
/// in the order they were numbered.
struct Reference {
    output: Vec<String>,
    journal: Vec<StepRecord>,
}

fn reference(flow: Flow) -> &'static Reference {
    static PIPELINE: OnceLock<Reference> = OnceLock::new();
    static TRIAGE: OnceLock<Reference> = OnceLock::new();
    static TRIAGE_YIELDING: OnceLock<Reference> = OnceLock::new();
    let cell = match flow {
        Flow::Pipeline => &PIPELINE,
        Flow::Triage => &TRIAGE,
        Flow::TriageYielding => &TRIAGE_YIELDING,
    };
    cell.get_or_init(|| {
        block_on(async {
            let engine = Engine::in_memory();
            let output = flow
                .run(&engine, "reference")
                .await
                .expect("the reference run completes");
            let journal = engine
                .journal("reference")
                .await
                .expect("the reference journal");
            Reference { output, journal }
        })
    })
}

/// The values of the branch steps of an uninterrupted run (every step but the final one): the
/// labels of the kill points right after each of them.
fn branch_step_values(flow: Flow) -> Vec<String> {
    let journal = &reference(flow).journal;
    journal[..journal.len() - 1]
        .iter()
        .map(|record| value(record).as_str().expect("a string").to_owned())
        .collect()
}

fn value(record: &StepRecord) -> serde_json::Value {
    let raw = record
        .output
        .as_ref()
        .unwrap_or_else(|| panic!("step #{} ({}) has no value", record.seq, record.name));
    serde_json::from_str(raw.get()).expect("a journaled value is JSON")
}

fn inspect(db: &Path, run_id: &str) -> (RunRecord, Vec<StepRecord>) {
    inspect_journal(db)
        .remove(run_id)
        .unwrap_or_else(|| panic!("run {run_id} is not in the journal"))
}

fn key(run_id: &str, record: &StepRecord) -> String {
    idempotency_key(run_id, record.seq, &record.name)
}

fn show(steps: &[StepRecord]) -> String {
    steps
        .iter()
        .map(|s| {
            let value = s.output.as_ref().map_or("-", |raw| raw.get());
            format!("  #{} {} {:?} {value}", s.seq, s.name, s.status)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Kills a first child at `kill`, resumes the run in a second child, replays the finished run
/// in this process, and checks the output, the journal and who ran what.
fn crash_and_resume(flow: Flow, kill: &str) {
    let expected = &reference(flow).output;
    let files = Files::new();
    // Unique in this process: the parent's replays find their logs by run id.
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let run_id = format!("{}-{}", flow.name(), RUNS.fetch_add(1, Ordering::SeqCst));
    let logs = Logs {
        effects: files.log.clone(),
        prompts: prompts_path(&files),
    };

    let mut first = spawn_child(&files, flow, &run_id, Some(kill), "first");
    first.wait_for(READY);
    first.kill_alive();
    let first_pid = first.pid();

    let (record, at_kill) = inspect(&files.db, &run_id);
    let context = format!(
        "{} killed at {kill:?}\njournal at the kill:\n{}",
        flow.name(),
        show(&at_kill)
    );
    assert_eq!(record.status, RunStatus::Running, "{context}");
    if let Some(step_value) = kill.strip_prefix("after:") {
        let value = serde_json::Value::from(step_value);
        assert!(
            at_kill
                .iter()
                .any(|s| s.output.is_some() && self::value(s) == value),
            "the step that returned {step_value:?} is journaled before the kill; {context}"
        );
    }

    let mut second = spawn_child(&files, flow, &run_id, None, "second");
    let outcome: Result<Vec<String>, String> = second.finish();
    let second_pid = second.pid();
    let (record, at_end) = inspect(&files.db, &run_id);
    let context = format!("{context}\njournal at the end:\n{}", show(&at_end));

    // 1. Each branch gets its own values: the output is the uninterrupted one.
    assert_eq!(
        outcome.as_ref(),
        Ok(expected),
        "the resumed run's output; {context}"
    );
    assert_eq!(record.status, RunStatus::Completed, "{context}");

    // 2. What was journaled before the kill is still there, unchanged.
    for before in &at_kill {
        let after = at_end.iter().find(|s| s.seq == before.seq);
        let after = after.unwrap_or_else(|| panic!("step #{} is gone; {context}", before.seq));
        assert_eq!(
            (
                &after.name,
                after.status,
                after.output.as_ref().map(|v| v.get())
            ),
            (
                &before.name,
                before.status,
                before.output.as_ref().map(|v| v.get())
            ),
            "step #{} changed; {context}",
            before.seq
        );
    }

    // 3. No step journaled before the kill ran again, in the second process or in the replay.
    let replayed = block_on(async {
        let engine = open(&files.db, logs.clone()).await;
        flow.replay(&engine, &run_id).await
    });
    let me = std::process::id();
    let log = SideEffects::read(&files.log);
    let context = format!("{context}\nside-effect log:\n{}", log.dump());
    for before in &at_kill {
        let key = key(&run_id, before);
        for pid in [second_pid, me] {
            assert!(
                log.starts(&key, pid).is_empty(),
                "{key}, journaled before the kill, ran again in pid {pid}; {context}"
            );
        }
    }
    assert!(
        log.pids()
            .iter()
            .all(|pid| [first_pid, second_pid].contains(pid)),
        "only the two children run steps; {context}"
    );

    // 4. A step that runs again (it was in flight at the kill) runs under its key with its own
    //    input, and every journaled value is the answer to the prompt run under its key.
    let prompts = read_prompts(&logs.prompts);
    for step in &at_end {
        let key = key(&run_id, step);
        let asked: Vec<&(String, u32, String)> =
            prompts.iter().filter(|(k, _, _)| *k == key).collect();
        assert!(!asked.is_empty(), "{key} never ran; {context}");
        for (_, pid, prompt) in &asked {
            assert_eq!(
                prompt, &asked[0].2,
                "{key} ran in pid {pid} with another input than in pid {}; {context}",
                asked[0].1
            );
        }
        if step.name != "post_replies" {
            assert_eq!(
                value(step),
                serde_json::Value::from(format!("answer({})", asked[0].2)),
                "{key}; {context}"
            );
        }
    }
    if let Some(prompt) = kill.strip_prefix("in:").filter(|p| *p != "post_replies") {
        // The interrupted step was started by the first process, and is journaled once, with
        // the answer to its own prompt.
        let (key, _, _) = prompts
            .iter()
            .find(|(_, pid, p)| *pid == first_pid && p == prompt)
            .unwrap_or_else(|| panic!("the first child never started {prompt:?}; {context}"));
        assert!(
            !at_kill.iter().any(|s| &self::key(&run_id, s) == key),
            "{key} was journaled before the kill; {context}"
        );
        assert_eq!(log.starts(key, second_pid), [1], "{key} reruns; {context}");
    }

    // 5. Replaying the finished run gives the same output.
    assert_eq!(
        replayed.as_ref(),
        Ok(expected),
        "Engine::replay of the finished run; {context}"
    );
}

/// Runs [`crash_and_resume`] at every point of `kills`, and reports every point that failed.
fn crash_and_resume_at_each(flow: Flow, kills: &[String]) {
    let mut failures = Vec::new();
    for kill in kills {
        let result = std::panic::catch_unwind(|| crash_and_resume(flow, kill));
        if let Err(panic) = result {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push((kill.clone(), message));
        }
    }
    if let Some((_, first)) = failures.first() {
        let points: Vec<&str> = failures.iter().map(|(kill, _)| kill.as_str()).collect();
        panic!(
            "{} of {} kill points failed: {points:#?}\nthe first failure:\n{first}",
            failures.len(),
            kills.len()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// The premise of the tests below, without a crash: an uninterrupted run gives each branch its
/// own values, and its latencies do invert the order of the steps between branches.
#[test]
fn an_uninterrupted_fan_out_gives_each_branch_its_own_values_in_its_inverted_order() {
    let pipeline = reference(Flow::Pipeline);
    assert_eq!(
        pipeline.output,
        [
            "ticket-1: answer(draft reply from answer(summarize ticket-1))",
            "ticket-2: answer(draft reply from answer(summarize ticket-2))",
        ]
    );
    let order: Vec<String> = pipeline
        .journal
        .iter()
        .map(|s| value(s).to_string())
        .collect();
    let position = |text: &str| order.iter().position(|v| v.contains(text));
    assert!(
        position("draft reply from answer(summarize ticket-2)")
            < position("draft reply from answer(summarize ticket-1)"),
        "live, ticket 2 calls its second step first: {order:#?}"
    );

    let triage = reference(Flow::Triage);
    for (id, line) in (1..=3).zip(&triage.output) {
        assert!(line.starts_with(&format!(
            "ticket-{id}: answer(draft a reply to ticket-{id} "
        )));
        let others = [1, 2, 3].into_iter().filter(|other| *other != id);
        for other in others {
            assert!(!line.contains(&format!("ticket-{other}")), "{line}");
        }
    }
    let names: Vec<&str> = triage.journal.iter().map(|s| s.name.as_str()).collect();
    let values: Vec<String> = triage
        .journal
        .iter()
        .map(|s| value(s).to_string())
        .collect();
    // Second-level steps are numbered out of branch order: ticket 2's come before ticket 1's.
    let first_of = |id: u64| {
        values
            .iter()
            .position(|v| v.contains(&format!("customer of ticket-{id}")))
    };
    assert!(
        first_of(2) < first_of(3) && first_of(3) < first_of(1),
        "{names:?}\n{values:#?}"
    );
}

#[test]
fn sigkill_after_the_fast_branchs_first_step_commit_resumes_the_fan_out() {
    crash_and_resume(Flow::Pipeline, "after:answer(summarize ticket-2)");
}

#[test]
fn sigkill_after_the_fast_branchs_second_step_commit_resumes_the_fan_out() {
    crash_and_resume(
        Flow::Pipeline,
        "after:answer(draft reply from answer(summarize ticket-2))",
    );
}

#[test]
fn sigkill_after_the_slow_branchs_first_step_commit_keeps_it_from_taking_the_fast_branchs_draft() {
    crash_and_resume(Flow::Pipeline, "after:answer(summarize ticket-1)");
}

#[test]
fn sigkill_after_the_last_branch_step_commit_keeps_each_branch_its_own_values() {
    crash_and_resume(
        Flow::Pipeline,
        "after:answer(draft reply from answer(summarize ticket-1))",
    );
}

#[test]
fn sigkill_inside_the_slow_branchs_second_step_reruns_it_under_its_key_with_its_own_input() {
    crash_and_resume(
        Flow::Pipeline,
        "in:draft reply from answer(summarize ticket-1)",
    );
}

#[test]
fn sigkill_between_the_fan_out_and_the_final_step_keeps_each_branch_its_own_values() {
    crash_and_resume(Flow::Pipeline, "joined");
}

#[test]
fn sigkill_during_the_final_step_of_a_fan_out_keeps_each_branch_its_own_values() {
    crash_and_resume(Flow::Pipeline, "in:post_replies");
}

#[test]
fn sigkill_after_any_step_commit_of_a_nested_fan_out_resumes_every_branch_with_its_own_values() {
    let kills: Vec<String> = branch_step_values(Flow::Triage)
        .into_iter()
        .map(|value| format!("after:{value}"))
        .collect();
    assert_eq!(kills.len(), 12, "3 tickets x 4 steps: {kills:#?}");
    crash_and_resume_at_each(Flow::Triage, &kills);
}

#[test]
fn sigkill_inside_a_nested_fan_outs_last_branch_step_reruns_it_with_its_own_input() {
    let draft = branch_step_values(Flow::Triage)
        .into_iter()
        .rfind(|value| value.starts_with("answer(draft a reply to ticket-1 "))
        .expect("ticket 1's draft");
    let prompt = &draft["answer(".len()..draft.len() - 1];
    crash_and_resume(Flow::Triage, &format!("in:{prompt}"));
}

#[test]
fn sigkill_during_the_final_step_of_a_nested_fan_out_keeps_each_branch_its_own_values() {
    crash_and_resume(Flow::Triage, "in:post_replies");
}

#[test]
fn sigkill_between_two_steps_of_a_branch_that_yields_keeps_each_branch_its_own_values() {
    assert_eq!(
        reference(Flow::TriageYielding).output,
        reference(Flow::Triage).output
    );
    // Ticket 2's classification is the first step to finish; ticket 1's the last.
    let kills = ["between:ticket-2".to_owned(), "between:ticket-1".to_owned()];
    crash_and_resume_at_each(Flow::TriageYielding, &kills);
}

#[test]
fn sigkill_during_the_final_step_of_a_fan_out_whose_branches_yield_keeps_each_branch_its_own_values()
 {
    crash_and_resume(Flow::TriageYielding, "in:post_replies");
}
