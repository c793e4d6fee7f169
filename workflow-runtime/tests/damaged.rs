//! Damaged input gets an error, never a panic, a hang, a write or silently different data
//! (Guarantee 8): damaged files, damaged run records, files of other programs, paths in
//! missing directories.

mod support;

use std::io;
use std::path::Path;
use std::time::Duration;

use redb::ReadableTable;

use support::{fail, within};
use workflow_runtime::store::RedbReader;
use workflow_runtime::{
    BoxFuture, Engine, Error, Inspector, OpenError, StoreError, Workflow, WorkflowFailure, step,
};

struct TwoSteps;

impl Workflow for TwoSteps {
    type Input = (u32,);
    type Output = u32;
    const NAME: &'static str = "two_steps";

    fn run((n,): (u32,)) -> BoxFuture<'static, Result<u32, WorkflowFailure>> {
        Box::pin(async move {
            let a = step("first")
                .run(|| async move { Ok::<_, io::Error>(n + 1) })
                .await
                .map_err(fail)?;
            let b = step("second")
                .run(|| async move { Ok::<_, io::Error>(a * 10) })
                .await
                .map_err(fail)?;
            Ok(b)
        })
    }
}

async fn journal_with_runs(path: &Path, runs: u32) {
    let engine = Engine::open(path).await.unwrap();
    for n in 0..runs {
        let run = engine
            .start::<TwoSteps>(format!("run-{n}"), (n,))
            .await
            .unwrap();
        assert_eq!(run.result().await.unwrap(), (n + 1) * 10);
    }
    engine.shutdown().await;
}

const RUNS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("workflow_runs");

/// One damaged run record stays the problem of that run: the other runs list and read, new
/// runs of its workflow start (registration lists every run), and the damaged one is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_run_record_is_confined_to_its_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    journal_with_runs(&path, 3).await;
    {
        let db = redb::Database::open(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut runs = tx.open_table(RUNS).unwrap();
            let mut record = runs.get("run-1").unwrap().unwrap().value().to_vec();
            let last = record.len() - 2;
            record[last] ^= 0x04;
            runs.insert("run-1", record.as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }

    let engine = Engine::open(&path).await.unwrap();
    engine.register::<TwoSteps>().await.unwrap();
    let listed: Vec<String> = engine
        .runs()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(listed, ["run-0", "run-2"]);
    let damaged = engine.inspector().damaged_runs().await.unwrap();
    assert_eq!(damaged.len(), 1);
    assert_eq!(damaged[0].run_id, "run-1");
    assert!(
        matches!(damaged[0].error, StoreError::CorruptRecord { .. }),
        "{:?}",
        damaged[0].error
    );

    let fresh = engine.start::<TwoSteps>("run-3", (3,)).await.unwrap();
    assert_eq!(fresh.result().await.unwrap(), 40);
    let error = engine
        .start::<TwoSteps>("run-1", (1,))
        .await
        .expect_err("a damaged record is never overwritten");
    assert!(error.to_string().contains(r#"run "run-1""#), "{error}");
    let error = engine.run("run-1").await.unwrap_err();
    assert!(error.to_string().contains("checksum"), "{error}");
    engine.shutdown().await;
}

/// Overwriting any part of a journal file (redb's own pages included, where redb panicked
/// with an index out of range) gives each read an answer or an error: no panic reaches the
/// caller, nothing hangs, and dropping the engine afterwards does not take the process down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_file_is_an_error_wherever_it_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let pristine = dir.path().join("pristine.redb");
    journal_with_runs(&pristine, 4).await;
    let bytes = std::fs::read(&pristine).unwrap();
    let mut outcomes = std::collections::BTreeMap::<&str, usize>::new();
    // Every 512 bytes: redb's header, its allocator state, the tables' pages, the records.
    for (case, offset) in (0..bytes.len()).step_by(512).enumerate() {
        let path = dir.path().join(format!("damaged-{case}.redb"));
        let mut damaged = bytes.clone();
        let end = (offset + 48).min(damaged.len());
        for (i, byte) in damaged[offset..end].iter_mut().enumerate() {
            *byte = byte.wrapping_mul(31).wrapping_add(i as u8) ^ 0xA5;
        }
        std::fs::write(&path, &damaged).unwrap();

        let outcome = within(
            "a damaged file is answered",
            read_everything(path.clone(), true),
        )
        .await;
        *outcomes.entry(outcome).or_default() += 1;
        let outcome = within("a damaged file is answered", read_everything(path, false)).await;
        *outcomes.entry(outcome).or_default() += 1;
    }
    eprintln!(
        "outcomes over {} damaged files: {outcomes:?}",
        bytes.len() / 512
    );
    assert!(
        outcomes.keys().any(|k| *k != "read"),
        "some damage is detected: {outcomes:?}"
    );
}

/// Opens `path` (with an engine, or read-only) and reads every run and step.
async fn read_everything(path: std::path::PathBuf, with_engine: bool) -> &'static str {
    let inspector = if with_engine {
        match Engine::builder()
            .park_after(Duration::ZERO)
            .open(&path)
            .await
        {
            Ok(engine) => {
                // Resuming damaged runs must not take the engine down either.
                let _ = engine.register::<TwoSteps>().await;
                engine.inspector()
            }
            Err(error @ Error::Open(_)) => {
                assert!(!error.to_string().contains("panicked"), "{error}");
                return "refused at open";
            }
            Err(other) => panic!("opening a damaged file: {other}"),
        }
    } else {
        match RedbReader::open(&path) {
            Ok(reader) => Inspector::new(reader),
            Err(_) => return "refused at open",
        }
    };
    let mut outcome = "read";
    match inspector.runs().await {
        Ok(runs) => {
            for run in runs {
                if let Err(error) = inspector.journal(&run.run_id).await {
                    says_what_is_damaged(&error);
                    outcome = "a run's steps are an error";
                }
            }
        }
        Err(error) => {
            says_what_is_damaged(&error);
            outcome = "listing is an error";
        }
    }
    if !inspector
        .damaged_runs()
        .await
        .unwrap_or_default()
        .is_empty()
    {
        outcome = "damaged runs named";
    }
    outcome
}

/// An error of a damaged file says so, in words: not a panic's message relayed from a task.
fn says_what_is_damaged(error: &Error) {
    let message = error.to_string();
    assert!(!message.contains("task"), "{message}");
    assert!(
        message.contains("damaged") || message.contains("corrupted"),
        "{message}"
    );
}

/// A redb file of another program is refused without a byte of it changing (redb's writable
/// open rewrote its header before the journal's checks ran).
#[tokio::test]
async fn another_program_s_file_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("users.redb");
    {
        let db = redb::Database::create(&foreign).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(redb::TableDefinition::<&str, u64>::new("users"))
            .unwrap()
            .insert("ann", 1)
            .unwrap();
        tx.commit().unwrap();
    }
    let before = std::fs::read(&foreign).unwrap();
    let error = Engine::open(&foreign).await.unwrap_err();
    assert!(
        matches!(error, Error::Open(OpenError::NotAJournal { .. })),
        "{error:?}"
    );
    assert!(
        std::fs::read(&foreign).unwrap() == before,
        "the refused file is unchanged"
    );
}

/// A journal path in a directory that does not exist is reported under the path the user
/// gave, not under the hidden temporary name the journal is built under.
#[tokio::test]
async fn a_path_in_a_missing_directory_names_the_path_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("agent.redb");
    let error = Engine::open(&path).await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains("missing/agent.redb"), "{message}");
    assert!(!message.contains("creating"), "{message}");
    assert!(message.contains("does not exist"), "{message}");
}

struct Scores;

impl Workflow for Scores {
    type Input = (f64,);
    type Output = String;
    const NAME: &'static str = "scores";

    fn run((weight,): (f64,)) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let nan = step("score")
                .run(|| async { Ok::<f64, io::Error>(f64::NAN) })
                .await;
            let deep = step("nest")
                .run(|| async {
                    let mut value = serde_json::Value::Null;
                    for _ in 0..200 {
                        value = serde_json::Value::Array(vec![value]);
                    }
                    Ok::<_, io::Error>(value)
                })
                .await;
            let fine = step("fine")
                .run(move || async move { Ok::<f64, io::Error>(weight * 2.0) })
                .await
                .map_err(fail)?;
            Ok(format!(
                "{}\n{}\n{fine}",
                nan.expect_err("NaN is refused"),
                deep.expect_err("201 levels are refused")
            ))
        })
    }
}

/// A value JSON cannot give back (NaN, infinity, nesting past the decoder's 128 levels) fails
/// its step, or is refused as an input, with an error that says why: it was journaled as
/// completed and the run then parked forever with "no longer decodes".
#[tokio::test]
async fn a_value_the_journal_cannot_give_back_fails_its_step_before_it_is_committed() {
    let engine = Engine::in_memory();
    let run = engine.start::<Scores>("s1", (1.5,)).await.unwrap();
    let report = run.result().await.unwrap();
    let lines: Vec<&str> = report.lines().collect();
    assert!(
        lines[0].contains("step `score`") && lines[0].contains("NaN"),
        "{report}"
    );
    assert!(
        lines[1].contains("step `nest`") && lines[1].contains("nesting"),
        "{report}"
    );
    assert_eq!(lines[2], "3");
    // What the body received is what the journal holds, so replay agrees.
    assert_eq!(engine.replay::<Scores>("s1").await.unwrap(), report);

    let refused = engine
        .start::<Scores>("s2", (f64::INFINITY,))
        .await
        .expect_err("an input that does not round-trip is refused");
    assert!(refused.to_string().contains("infinity"), "{refused}");
    assert!(
        engine.run("s2").await.unwrap().is_none(),
        "nothing journaled"
    );
}

struct Doubler;

impl Workflow for Doubler {
    type Input = (u32,);
    type Output = u32;
    const NAME: &'static str = "doubler";

    fn run((n,): (u32,)) -> BoxFuture<'static, Result<u32, WorkflowFailure>> {
        Box::pin(async move { Ok(n * 2) })
    }
}

struct Parent;

impl Workflow for Parent {
    type Input = (u32,);
    type Output = String;
    const NAME: &'static str = "parent";

    fn run((n,): (u32,)) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            match workflow_runtime::durable::child::<Doubler>((n,)).await {
                Ok(value) => Ok(format!("child said {value}")),
                Err(error) => Ok(format!("child failed: {error}")),
            }
        })
    }
}

/// A child's run id is derived from its parent's (`{parent}/{seq}/child`). A run started
/// earlier under that id by anyone else was adopted as the child and its value returned; now
/// the parent's step fails naming the run, and the genuine child still works.
#[tokio::test]
async fn a_run_started_under_a_child_s_id_is_not_adopted_as_the_child() {
    let engine = Engine::in_memory();
    let forged = engine
        .start::<Doubler>("p1/0/child", (1_000,))
        .await
        .unwrap();
    assert_eq!(forged.result().await.unwrap(), 2_000);

    let parent = engine.start::<Parent>("p1", (21,)).await.unwrap();
    let said = parent.result().await.unwrap();
    assert!(
        said.starts_with("child failed") && said.contains("not started by run \"p1\""),
        "{said}"
    );

    let genuine = engine.start::<Parent>("p2", (21,)).await.unwrap();
    assert_eq!(genuine.result().await.unwrap(), "child said 42");
    let child = engine
        .run("p2/0/child")
        .await
        .unwrap()
        .expect("the child run");
    assert_eq!(child.parent.as_deref(), Some("p2"));
}
