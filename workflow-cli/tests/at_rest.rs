//! `wf` on a journal at rest: no engine holds the file, so `wf` opens it itself.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Order, Refund, Reply, order_journal, table_row, unknown_reply_outcome, wf};
use workflow_runtime::BoxFuture;
use workflow_runtime::{
    Backoff, Engine, RunStatus, StepContext, StepFailure, StepStatus, Workflow, WorkflowFailure,
    durable, step,
};

fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_lists_every_run_newest_first_and_filters_by_status_workflow_and_tag() {
    let dir = tempfile::tempdir().unwrap();
    let path = order_journal(dir.path()).await;
    let db = arg(&path);
    // Reading a journal at rest changes none of its bytes.
    let before = std::fs::read(&path).unwrap();

    let table = wf(&["runs", db]).ok();
    assert!(
        std::fs::read(&path).unwrap() == before,
        "wf runs changed the file"
    );
    let header = table.lines().next().unwrap();
    for column in [
        "RUN", "WORKFLOW", "STATUS", "STEPS", "RETRIES", "COST", "AGE",
    ] {
        assert!(header.contains(column), "missing column {column}:\n{table}");
    }
    assert_eq!(
        table.lines().count(),
        4,
        "a header and three runs:\n{table}"
    );
    let ok = table_row(&table, "order-ok");
    assert_eq!(
        ok[1..6],
        ["order", "completed", "2", "2", "$0.005000"],
        "{table}"
    );
    let bad = table_row(&table, "refund-bad");
    assert_eq!(
        bad[1..6],
        ["refund", "failed", "1", "0", "$0.000500"],
        "{table}"
    );
    let later = table_row(&table, "order-later");
    assert_eq!(
        later[1..6],
        ["order", "pending", "0", "0", "$0.000000"],
        "{table}"
    );
    // Newest first: order-later was started last.
    assert!(table.find("order-later").unwrap() < table.find("order-ok").unwrap());

    let failed = wf(&["runs", db, "--status", "failed"]).ok();
    assert!(
        failed.contains("refund-bad") && !failed.contains("order-ok"),
        "{failed}"
    );
    let orders = wf(&["runs", db, "--workflow", "order"]).ok();
    assert!(orders.contains("order-ok") && orders.contains("order-later"));
    assert!(!orders.contains("refund-bad"), "{orders}");
    let alice = wf(&["runs", db, "--tag", "user=alice", "--tag", "team=web"]).ok();
    assert!(
        alice.contains("order-ok") && alice.lines().count() == 2,
        "{alice}"
    );
    let nobody = wf(&["runs", db, "--tag", "user=zoe"]).ok();
    assert!(nobody.contains("no runs"), "{nobody}");

    let json: serde_json::Value =
        serde_json::from_str(&wf(&["runs", db, "--status", "completed", "--json"]).ok())
            .expect("runs --json prints JSON");
    let runs = json.as_array().expect("an array of run records");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["run_id"], "order-ok");
    assert_eq!(runs[0]["tags"]["user"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_prints_the_journal_as_a_table_with_input_output_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let db = order_journal(dir.path()).await;
    let db = arg(&db);

    let text = wf(&["show", db, "order-ok"]).ok();
    assert!(text.contains("workflow  order"), "{text}");
    assert!(text.contains("status    completed"), "{text}");
    assert!(text.contains("tags      team=web, user=alice"), "{text}");
    assert!(
        text.contains("2 steps, 2 retries, 600 tokens (500 in, 100 out), $0.005000"),
        "{text}"
    );
    let header = text
        .lines()
        .find(|l| l.starts_with("SEQ"))
        .expect("a step table");
    for column in [
        "STEP", "STATUS", "ATTEMPTS", "ERRORS", "LATENCY", "TOKENS", "COST", "ERROR",
    ] {
        assert!(header.contains(column), "missing column {column}:\n{text}");
    }
    let charge = table_row(&text, "0");
    assert_eq!(charge[1..5], ["charge", "completed", "3", "2"], "{text}");
    assert_eq!(charge[6..8], ["360", "$0.003000"], "{text}");
    assert_eq!(
        charge[8], "attempt 2 transient: card network busy",
        "{text}"
    );
    assert!(text.contains("--history lists every attempt's"), "{text}");
    let ship = table_row(&text, "1");
    assert_eq!(ship[1..5], ["ship", "completed", "1", "0"], "{text}");
    assert!(
        text.contains("input\n  [\n    \"widget\",\n    2\n  ]\n"),
        "{text}"
    );
    assert!(
        text.contains("output\n  shipped widget (receipt 4242)\n"),
        "{text}"
    );

    let failed = wf(&["show", db, "refund-bad"]).ok();
    assert!(failed.contains("error     "), "{failed}");
    let validate = table_row(&failed, "0");
    assert_eq!(validate[1..3], ["validate", "failed"], "{failed}");
    assert_eq!(validate[4], "1", "one error: {failed}");
    assert!(
        validate[8].starts_with("terminal: refund window closed"),
        "{failed}"
    );

    let history = wf(&["show", db, "order-ok", "--history"]).ok();
    let events = history
        .split("\nhistory\n")
        .nth(1)
        .expect("a history section");
    assert_eq!(events.matches("step_retried").count(), 2, "{history}");
    assert!(
        events.contains("run_started") && events.contains("run_ended"),
        "{history}"
    );
    assert!(
        events.contains("#0 charge: attempt 1 failed; retrying in 40.0ms: card network busy"),
        "{history}"
    );
    assert!(
        events.contains("#0 charge: attempt 2 failed; retrying in 40.0ms: card network busy"),
        "{history}"
    );
    assert!(
        events.contains("#0 charge completed after 3 attempts"),
        "{history}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&wf(&["show", db, "order-ok", "--json", "--history"]).ok())
            .expect("show --json prints JSON");
    assert_eq!(json["run"]["status"], "completed");
    assert_eq!(json["steps"][0]["attempts"], 3);
    assert_eq!(
        json["steps"][0]["attempt_log"].as_array().map(Vec::len),
        Some(3)
    );
    assert!(json["history"].as_array().is_some_and(|h| h.len() >= 6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_groups_runs_by_workflow_or_tag_since_a_duration() {
    let dir = tempfile::tempdir().unwrap();
    let db = order_journal(dir.path()).await;
    let db = arg(&db);

    let by_workflow = wf(&["cost", db]).ok();
    let order = table_row(&by_workflow, "order");
    // runs, failed, error rate, steps, retries, tokens in, tokens out, cost
    assert_eq!(
        order[1..],
        ["2", "0", "0%", "2", "2", "500", "100", "$0.005000"],
        "{by_workflow}"
    );
    let refund = table_row(&by_workflow, "refund");
    assert_eq!(
        refund[1..],
        ["1", "1", "100%", "1", "0", "50", "10", "$0.000500"],
        "{by_workflow}"
    );
    let total = table_row(&by_workflow, "total");
    assert_eq!(
        total[1..],
        ["3", "1", "3", "2", "550", "110", "$0.005500"],
        "{by_workflow}"
    );

    let by_user = wf(&["cost", db, "--by", "tag:user", "--since", "1h"]).ok();
    assert!(
        by_user.lines().next().unwrap().starts_with("TAG USER"),
        "{by_user}"
    );
    assert_eq!(table_row(&by_user, "alice")[8], "$0.005000");
    assert_eq!(table_row(&by_user, "bob")[8], "$0.000500");
    assert_eq!(table_row(&by_user, "carol")[8], "$0.000000");
    let by_team = wf(&["cost", db, "--by", "tag:team"]).ok();
    assert_eq!(
        table_row(&by_team, "-")[1],
        "2",
        "runs without the tag: {by_team}"
    );

    // Runs created within the last microsecond: none.
    let none = wf(&["cost", db, "--since", "1us"]).ok();
    assert!(none.contains("no runs created in the last 1us"), "{none}");

    let json: serde_json::Value =
        serde_json::from_str(&wf(&["cost", db, "--by", "tag:user", "--json"]).ok())
            .expect("cost --json prints JSON");
    let rows = json.as_array().expect("ledger rows");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["key"], "alice");
    assert_eq!(rows[0]["retries"], 2);

    let bad = wf(&["cost", db, "--since", "yesterday"]).expect_code(2);
    assert!(bad.stderr.contains("--since"), "{}", bad.stderr);
}

/// Runs `first`, then `second` (named after the file `rename` when it exists), then waits on a
/// step that never finishes by itself.
struct Shifty;

impl Workflow for Shifty {
    type Input = (PathBuf,);
    type Output = ();
    const NAME: &'static str = "shifty";

    fn run((rename,): (PathBuf,)) -> BoxFuture<'static, Result<(), WorkflowFailure>> {
        Box::pin(async move {
            let name = if rename.exists() {
                "first-renamed"
            } else {
                "first"
            };
            step(name)
                .run(|| async { Ok::<_, std::io::Error>(1) })
                .await
                .map_err(|e| WorkflowFailure::new(e.to_string()))?;
            step("wait")
                .run(|| async {
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    Ok::<_, std::io::Error>(())
                })
                .await
                .map_err(|e| WorkflowFailure::new(e.to_string()))?;
            Ok(())
        })
    }
}

async fn wait_for_status(engine: &Engine, run_id: &str, status: RunStatus) {
    for _ in 0..1000 {
        if engine
            .run(run_id)
            .await
            .unwrap()
            .is_some_and(|r| r.status == status)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let now = engine.run(run_id).await.unwrap().map(|r| r.status);
    panic!("run {run_id} is {now:?} after 10 s, expected {status}");
}

/// Adds run `shifty-1`, parked by non-determinism: its first step was renamed between a crash
/// and the resume.
async fn park_a_run(db: &Path, rename: PathBuf) {
    let engine = Engine::open(db).await.unwrap();
    engine
        .start::<Shifty>("shifty-1", (rename.clone(),))
        .await
        .unwrap();
    for _ in 0..1000 {
        if engine.journal("shifty-1").await.unwrap().len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(engine.journal("shifty-1").await.unwrap().len(), 1);
    engine.shutdown().await; // as a crash would: the run stays running
    drop(engine);
    std::fs::write(&rename, "").unwrap();
    let engine = Engine::open(db).await.unwrap();
    engine.register::<Shifty>().await.unwrap();
    wait_for_status(&engine, "shifty-1", RunStatus::Parked).await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_retry_and_resume_change_the_journal_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = order_journal(dir.path()).await;
    park_a_run(&db_path, dir.path().join("renamed")).await;
    let db = arg(&db_path);

    // Retry: the failed step leaves the journal and the run is pending again.
    let retried = wf(&["retry", db, "refund-bad"]).ok();
    assert!(
        retried.contains("from its failed step #0 `validate`"),
        "{retried}"
    );
    assert!(retried.contains("workflow `refund`"), "{retried}");
    let pending = wf(&["runs", db, "--status", "pending"]).ok();
    assert!(pending.contains("refund-bad"), "{pending}");
    let refused = wf(&["retry", db, "order-ok"]).expect_code(3);
    assert!(
        refused.stderr.contains("was not retried: it is completed"),
        "{}",
        refused.stderr
    );

    // Cancel a pending run, then again: the second changes nothing.
    let cancelled = wf(&["cancel", db, "order-later"]).ok();
    assert!(
        cancelled.contains("run order-later cancelled (it was pending)"),
        "{cancelled}"
    );
    let again = wf(&["cancel", db, "order-later"]).expect_code(3);
    assert!(
        again.stderr.contains("already ended (cancelled)"),
        "{}",
        again.stderr
    );

    // Resume the parked run.
    let parked = wf(&["runs", db, "--status", "parked"]).ok();
    assert!(parked.contains("shifty-1"), "{parked}");
    let resumed = wf(&["resume", db, "shifty-1"]).ok();
    assert!(
        resumed.contains("resumed: journaled as pending"),
        "{resumed}"
    );
    let completed = wf(&["resume", db, "order-ok"]).expect_code(3);
    assert!(
        completed.stderr.contains("it ended (completed)"),
        "{}",
        completed.stderr
    );

    // The runs go on in the next engine that registers their workflows: the refund passes its
    // gate now, and runs `validate` again.
    std::fs::write(dir.path().join("refund.gate"), "").unwrap();
    let engine = Engine::open(&db_path).await.unwrap();
    assert_eq!(
        engine.run("order-later").await.unwrap().unwrap().status,
        RunStatus::Cancelled
    );
    assert_eq!(
        engine.run("shifty-1").await.unwrap().unwrap().status,
        RunStatus::Pending
    );
    engine.register::<Order>().await.unwrap();
    let refund = engine.handle::<Refund>("refund-bad");
    engine.register::<Refund>().await.unwrap();
    let value = tokio::time::timeout(Duration::from_secs(30), refund.result())
        .await
        .expect("the retried run ends within 30 s")
        .expect("the retried run completes");
    assert_eq!(value, "refunded gadget");
    let journal = engine.journal("refund-bad").await.unwrap();
    assert_eq!(journal.len(), 1);
    assert_eq!(journal[0].status, StepStatus::Completed);
    assert_eq!(
        engine.run("order-later").await.unwrap().unwrap().status,
        RunStatus::Cancelled
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_journal_unknown_run_and_bad_input_exit_non_zero_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.redb");
    let out = wf(&["runs", arg(&missing)]).expect_code(1);
    assert!(
        out.stderr.starts_with("wf: no journal at "),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
    assert!(!missing.exists(), "wf must not create a journal");
    let out = wf(&["cancel", arg(&missing), "r"]).expect_code(1);
    assert!(out.stderr.contains("no journal at"), "{}", out.stderr);

    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "not a journal at all, just some text that is long enough",
    )
    .unwrap();
    let out = wf(&["show", arg(&text), "r"]).expect_code(1);
    assert!(
        out.stderr.contains("not a workflow journal"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&text).unwrap(),
        "not a journal at all, just some text that is long enough"
    );

    let db = order_journal(dir.path()).await;
    let db = arg(&db);
    for command in ["show", "cancel", "retry", "resume"] {
        let out = wf(&[command, db, "no-such-run"]).expect_code(1);
        assert!(
            out.stderr.contains("no run \"no-such-run\" in "),
            "{command}: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{command}: {}", out.stdout);
    }
    let out = wf(&["runs", db, "--status", "done"]).expect_code(2);
    assert!(
        out.stderr.contains("budget_exceeded"),
        "the valid statuses: {}",
        out.stderr
    );
    let out = wf(&["cost", db, "--by", "user"]).expect_code(2);
    assert!(out.stderr.contains("tag:KEY"), "{}", out.stderr);
}

/// Waits for an approval (with a deadline), sleeps, reads the time, and runs two steps around
/// that: four records of durable primitives beside two steps.
struct Approval;

impl Workflow for Approval {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "approval";

    fn run((): ()) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            step("draft")
                .run(|| async { Ok::<_, std::io::Error>(()) })
                .await?;
            let approved: Option<bool> =
                durable::wait_for_event_timeout("approval", Duration::from_millis(20)).await?;
            durable::sleep(Duration::from_millis(10)).await;
            let _ = durable::now().await;
            step("send")
                .run(|| async { Ok::<_, std::io::Error>(()) })
                .await?;
            Ok(format!("approved: {approved:?}"))
        })
    }
}

/// Attempts 1 and 2 fail and are retried at once (no wait between attempts); attempt 3 fails
/// for good.
struct Stubborn;

impl Workflow for Stubborn {
    type Input = ();
    type Output = ();
    const NAME: &'static str = "stubborn";

    fn run((): ()) -> BoxFuture<'static, Result<(), WorkflowFailure>> {
        Box::pin(async move {
            step("call")
                .retries(2)
                .backoff(
                    Backoff::DEFAULT
                        .with_initial(Duration::ZERO)
                        .with_jitter(0.0),
                )
                .run(|| async {
                    let attempt = StepContext::current().map_or(1, |c| c.attempt());
                    Err::<(), _>(StepFailure::transient(std::io::Error::other(format!(
                        "refused on attempt {attempt}"
                    ))))
                })
                .await?;
            Ok(())
        })
    }
}

/// Regression: `wf runs` and `wf show` counted the journal's records of an event wait, its
/// deadline, a timer and the time as steps (6 steps for a run of 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_counts_steps_not_the_records_of_timers_and_event_waits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    let engine = Engine::open(&path).await.unwrap();
    let run = engine.start::<Approval>("approval-1", ()).await.unwrap();
    let value = tokio::time::timeout(Duration::from_secs(30), run.result())
        .await
        .expect("the run ends within 30 s")
        .expect("the run completes");
    assert_eq!(value, "approved: None");
    assert_eq!(engine.journal("approval-1").await.unwrap().len(), 6);
    engine.shutdown().await;
    drop((run, engine));
    let db = arg(&path);

    let table = wf(&["runs", db]).ok();
    let row = table_row(&table, "approval-1");
    assert_eq!(row[1..5], ["approval", "completed", "2", "0"], "{table}");
    let shown = wf(&["show", db, "approval-1"]).ok();
    assert!(shown.contains("spent     2 steps, 0 retries"), "{shown}");
    // SEQ STEP STATUS ATTEMPTS ERRORS LATENCY TOKENS COST: a wait is no step.
    let wait = table_row(&shown, "2");
    assert_eq!(
        wait[1..5],
        ["event:approval", "durable", "-", "-"],
        "{shown}"
    );
    let history = wf(&["show", db, "approval-1", "--history"]).ok();
    assert!(
        history.contains("#2 event:approval: journaled (a durable wait or value, not a step)"),
        "{history}"
    );
    let cost = wf(&["cost", db]).ok();
    assert_eq!(table_row(&cost, "approval")[4], "2", "{cost}");
}

/// Regression: `wf show` gave one error per step (the last retry's) and `--history` left out
/// the attempts retried without a wait; a retry read like the step's failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_counts_every_attempts_error_and_history_lists_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    let engine = Engine::open(&path).await.unwrap();
    let run = engine.start::<Stubborn>("stubborn-1", ()).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(30), run.result())
        .await
        .expect("the run ends within 30 s");
    assert!(ended.is_err(), "{ended:?}");
    engine.shutdown().await;
    drop((run, engine));
    let db = arg(&path);

    let text = wf(&["show", db, "stubborn-1"]).ok();
    let call = table_row(&text, "0");
    // SEQ STEP STATUS ATTEMPTS ERRORS ... ERROR
    assert_eq!(call[1..5], ["call", "failed", "3", "3"], "{text}");
    assert_eq!(call[8], "transient: refused on attempt 3", "{text}");

    let history = wf(&["show", db, "stubborn-1", "--history"]).ok();
    for attempt in [1, 2] {
        let line = format!(
            "#0 call: attempt {attempt} failed; retrying at once: refused on attempt {attempt}"
        );
        assert!(history.contains(&line), "missing {line:?}:\n{history}");
    }
    assert!(
        history.contains("#0 call failed after 3 attempts: refused on attempt 3"),
        "{history}"
    );
}

/// Regression: `wf retry` of a run that failed at an at-most-once step whose outcome is unknown
/// made the call again without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_of_an_unknown_at_most_once_outcome_says_why_and_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    let gate = dir.path().join("gate");
    unknown_reply_outcome(&path, &gate).await;
    let db = arg(&path);

    let refused = wf(&["retry", db, "reply-1"]).expect_code(1);
    assert!(
        refused.stderr.contains(
            "run reply-1 was not retried: it stopped at step `send_reply` (#0), which is at-most-once"
        ) && refused.stderr.contains("--force"),
        "{}",
        refused.stderr
    );
    assert!(
        wf(&["runs", db, "--status", "failed"])
            .ok()
            .contains("reply-1"),
        "a refused retry changes nothing"
    );
    let forced = wf(&["retry", db, "reply-1", "--force"]).ok();
    assert!(
        forced.contains("run reply-1 queued again from its failed step #0 `send_reply`"),
        "{forced}"
    );

    // The call is made again.
    std::fs::write(&gate, "").unwrap();
    let engine = Engine::open(&path).await.unwrap();
    let reply = engine.handle::<Reply>("reply-1");
    engine.register::<Reply>().await.unwrap();
    let value = tokio::time::timeout(Duration::from_secs(30), reply.result())
        .await
        .expect("the forced retry ends within 30 s");
    assert_eq!(value.expect("the forced retry completes"), "sent");
    drop(reply);
    engine.shutdown().await;
}

/// Sleeps an hour, durably.
struct Nap;

impl Workflow for Nap {
    type Input = ();
    type Output = ();
    const NAME: &'static str = "nap";

    fn run((): ()) -> BoxFuture<'static, Result<(), WorkflowFailure>> {
        Box::pin(async move {
            durable::sleep(Duration::from_secs(3_600)).await;
            Ok(())
        })
    }
}

/// `wf show` of a run out of memory on a timer says when it is due, as a time to read (the
/// journal words it in seconds since the Unix epoch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_says_when_a_waiting_run_is_due() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    let engine = Engine::builder()
        .park_after(Duration::from_millis(1))
        .open(&path)
        .await
        .unwrap();
    engine.start::<Nap>("nap-1", ()).await.unwrap();
    for _ in 0..1000 {
        let run = engine.run("nap-1").await.unwrap().unwrap();
        if run.status == RunStatus::Waiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    engine.shutdown().await;
    drop(engine);

    let shown = wf(&["show", arg(&path), "nap-1"]).ok();
    assert!(shown.contains("status    waiting"), "{shown}");
    let waiting = shown
        .lines()
        .find(|line| line.starts_with("waiting"))
        .unwrap_or_else(|| panic!("no waiting line in {shown}"));
    assert!(
        waiting.starts_with("waiting   a timer, due 20") && waiting.contains("(in 59m"),
        "{waiting}"
    );
}

/// A damaged run record is listed as damaged, with what is wrong, and the other runs still
/// list; a journal damaged anywhere gives an answer or an error, never a panic's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_run_is_listed_as_damaged_and_a_damaged_file_never_prints_a_panic() {
    use redb::ReadableTable;
    let dir = tempfile::tempdir().unwrap();
    let path = order_journal(dir.path()).await;
    let pristine = std::fs::read(&path).unwrap();
    let runs = redb::TableDefinition::<&str, &[u8]>::new("workflow_runs");
    {
        let db = redb::Database::open(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut table = tx.open_table(runs).unwrap();
            let mut record = table.get("refund-bad").unwrap().unwrap().value().to_vec();
            let at = record.len() - 2;
            record[at] ^= 0x10;
            table.insert("refund-bad", record.as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }
    let table = wf(&["runs", arg(&path)]).ok();
    assert_eq!(table_row(&table, "refund-bad")[2], "damaged", "{table}");
    assert_eq!(table_row(&table, "order-ok")[2], "completed", "{table}");
    assert!(
        table.contains("damaged: refund-bad: corrupted journal record")
            && table.contains("checksum"),
        "{table}"
    );

    // Garbage over each 4 KiB page in turn, redb's own structures included.
    for (case, offset) in (0..pristine.len()).step_by(4096).enumerate() {
        let damaged = dir.path().join(format!("damaged-{case}.redb"));
        let mut bytes = pristine.clone();
        let end = (offset + 64).min(bytes.len());
        bytes[offset..end].iter_mut().for_each(|b| *b ^= 0x5A);
        std::fs::write(&damaged, &bytes).unwrap();
        for command in ["runs", "cost"] {
            let outcome = wf(&[command, arg(&damaged)]);
            assert!(
                !outcome.stderr.contains("panicked") && !outcome.stderr.contains("RUST_BACKTRACE"),
                "wf {command} on a file damaged at {offset}:\n{}",
                outcome.stderr
            );
        }
    }
}

struct GreetV1;

impl Workflow for GreetV1 {
    type Input = (bool,);
    type Output = String;
    const NAME: &'static str = "greet";

    fn run((wait,): (bool,)) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            if wait {
                durable::wait_for_event::<bool>("go")
                    .await
                    .map_err(|e| WorkflowFailure::new(e.to_string()))?;
            }
            Ok("hello".to_owned())
        })
    }
}

struct GreetV2;

impl Workflow for GreetV2 {
    type Input = (bool,);
    type Output = String;
    const NAME: &'static str = "greet";
    const VERSION: u32 = 2;

    fn run(_: (bool,)) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async { Ok("hello, again".to_owned()) })
    }
}

/// `wf versions` counts each version's runs by where they stand, and names the versions that
/// still have unfinished runs (they cannot leave the binary yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_counts_each_versions_runs_and_names_those_still_needed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("versions.redb");
    {
        let engine = Engine::builder()
            .park_after(Duration::ZERO)
            .open(&path)
            .await
            .unwrap();
        engine.register::<GreetV1>().await.unwrap();
        engine
            .start::<GreetV1>("done", (false,))
            .await
            .unwrap()
            .result()
            .await
            .unwrap();
        engine.start::<GreetV1>("waits", (true,)).await.unwrap();
        wait_for_status(&engine, "waits", RunStatus::Waiting).await;
        engine.register::<GreetV2>().await.unwrap();
        let fresh = engine.start::<GreetV2>("fresh", (false,)).await.unwrap();
        assert_eq!(fresh.result().await.unwrap(), "hello, again");
        engine.shutdown().await;
    }
    let table = wf(&["versions", arg(&path)]).ok();
    let rows: Vec<Vec<String>> = table
        .lines()
        .filter(|line| line.starts_with("greet ") && !line.contains("unfinished"))
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert_eq!(rows[0][..6], ["greet", "1", "0", "1", "0", "1"], "{table}");
    assert_eq!(rows[1][..6], ["greet", "2", "0", "0", "0", "1"], "{table}");
    assert!(
        table.contains(
            "greet version 1: 1 unfinished run, which only a binary with this version carries on"
        ),
        "{table}"
    );
    assert!(!table.contains("greet version 2:"), "{table}");
}
