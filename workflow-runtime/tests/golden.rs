//! Backward compatibility: a journal of every released format (1 and 2) is checked in, and
//! this build must open each and read every record the same way. A change to the records that
//! an older journal would not survive fails here; bump `FORMAT_VERSION` and keep a reader for
//! the old format instead of regenerating a file.
//!
//! Write the golden file of the current format, once, when a new format is released:
//! `UPDATE_GOLDEN=2 cargo test -p workflow-runtime --test golden` (never an older one).

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::fail;
use workflow_runtime::{
    Backoff, BoxFuture, Engine, RunOptions, RunStatus, StepContext, StepErrorKind, StepFailure,
    StepStatus, Usage, Workflow, WorkflowFailure, step,
};

fn golden_path(version: u32) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/journal-v{version}.redb"))
}

const META: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("workflow_meta");
const STEPS: redb::TableDefinition<(&str, u64), &[u8]> =
    redb::TableDefinition::new("workflow_steps");

fn meta(path: &std::path::Path, key: &str) -> Option<String> {
    let db = redb::ReadOnlyDatabase::open(path).unwrap();
    let tx = redb::ReadableDatabase::begin_read(&db).unwrap();
    let table = tx.open_table(META).unwrap();
    table.get(key).unwrap().map(|v| v.value().to_owned())
}

struct Golden;

impl Workflow for Golden {
    type Input = (String,);
    type Output = String;
    const NAME: &'static str = "golden";

    fn run((topic,): (String,)) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let plan = step("plan")
                .backoff(
                    Backoff::DEFAULT
                        .with_initial(Duration::from_millis(1))
                        .with_factor(1.0)
                        .with_max(Duration::from_millis(1))
                        .with_jitter(0.0),
                )
                .run(|| async {
                    let ctx = StepContext::current().expect("in a step");
                    ctx.report_usage(Usage::tokens("model-a", 120, 30).with_cost_usd(0.0008));
                    if ctx.attempt() == 1 {
                        return Err(StepFailure::transient("overloaded"));
                    }
                    Ok(vec![format!("what is {topic}?")])
                })
                .await
                .map_err(fail)?;
            let refused = step("publish")
                .run(|| async { Err::<(), _>(StepFailure::terminal("no permission")) })
                .await;
            Ok(format!(
                "{} question(s); publish: {}",
                plan.len(),
                refused.is_err()
            ))
        })
    }
}

async fn write_golden(version: u32) {
    let path = golden_path(version);
    let _ = std::fs::remove_file(&path);
    let engine = Engine::open(&path)
        .await
        .expect("create the golden journal");
    let options = RunOptions::default().tag("user", "ann").priority(3);
    let run = engine
        .start_with::<Golden>("golden-1", ("journals".into(),), options)
        .await
        .expect("start");
    run.result().await.expect("the golden run completes");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_journal_still_opens_and_reads_the_same() {
    // Work on a copy: a test must never touch the golden file.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("journal.redb");
    std::fs::copy(golden_path(1), &copy).expect("the golden journal is checked in");
    let engine = Engine::open(&copy)
        .await
        .expect("a version 1 journal opens");
    reads_the_golden_run(&engine).await;

    // Opening upgraded the file to version 2; its old records stay as written, and new
    // records are written (and read) in version 2 beside them.
    let run = engine
        .start::<Golden>("after-upgrade", ("upgrades".into(),))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), "1 question(s); publish: true");
    assert_eq!(engine.journal("after-upgrade").await.unwrap().len(), 2);
    engine.shutdown().await;
    drop((run, engine));
    assert_eq!(meta(&copy, "format_version").as_deref(), Some("2"));
    assert_eq!(meta(&copy, "record_formats").as_deref(), Some("1,2"));
    let engine = Engine::open(&copy).await.unwrap();
    reads_the_golden_run(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_journal_opens_and_reads_the_same() {
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("2") {
        write_golden(2).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("journal.redb");
    std::fs::copy(golden_path(2), &copy).expect("the golden journal is checked in");
    let engine = Engine::open(&copy)
        .await
        .expect("a version 2 journal opens");
    reads_the_golden_run(&engine).await;
    drop(engine);
    assert_eq!(meta(&copy, "record_formats").as_deref(), Some("2"));
}

/// Reading a version-1 journal with `RedbReader` (what `wf` does) changes no byte of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_version_1_journal_does_not_upgrade_it() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("journal.redb");
    std::fs::copy(golden_path(1), &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let inspector =
        workflow_runtime::Inspector::new(workflow_runtime::store::RedbReader::open(&copy).unwrap());
    assert_eq!(inspector.journal("golden-1").await.unwrap().len(), 2);
    drop(inspector);
    assert!(
        std::fs::read(&copy).unwrap() == before,
        "the file is unchanged"
    );
}

/// A sequence number from disk never sizes an allocation: a (version 1, so unchecksummed)
/// step record under sequence number 2^60 made replay allocate 2^60 slots and abort the
/// process. Now the replay check names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_sequence_number_in_the_journal_is_an_error_not_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("journal.redb");
    std::fs::copy(golden_path(1), &copy).unwrap();
    let huge = 1u64 << 60;
    {
        let db = redb::Database::open(&copy).unwrap();
        let tx = db.begin_write().unwrap();
        let record = format!(
            r#"{{"seq":{huge},"name":"plan","status":"completed","attempts":1,"started_at_us":0,"finished_at_us":0,"output":1,"delivery":{}}}"#,
            u64::MAX
        );
        tx.open_table(STEPS)
            .unwrap()
            .insert(("golden-1", huge), record.as_bytes())
            .unwrap();
        tx.commit().unwrap();
    }
    let engine = Engine::open(&copy).await.unwrap();
    let error = engine.replay::<Golden>("golden-1").await.unwrap_err();
    assert!(error.to_string().contains(&huge.to_string()), "{error}");
}

async fn reads_the_golden_run(engine: &Engine) {
    let run = engine
        .run("golden-1")
        .await
        .unwrap()
        .expect("the run is there");
    assert_eq!(run.workflow, "golden");
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.input.get(), r#"["journals"]"#);
    assert_eq!(
        run.output.as_ref().unwrap().get(),
        r#""1 question(s); publish: true""#
    );
    assert_eq!(run.tags.get("user").map(String::as_str), Some("ann"));
    assert_eq!(run.priority, 3);

    let steps = engine.journal("golden-1").await.unwrap();
    assert_eq!(steps.len(), 2);
    let plan = &steps[0];
    assert_eq!(
        (plan.seq, plan.name.as_str(), plan.status, plan.attempts),
        (0, "plan", StepStatus::Completed, 2)
    );
    assert_eq!(
        plan.output.as_ref().unwrap().get(),
        r#"["what is journals?"]"#
    );
    assert_eq!(plan.usage.input_tokens, 240);
    assert_eq!(plan.usage.model.as_deref(), Some("model-a"));
    assert_eq!(plan.attempt_log.len(), 2);
    assert_eq!(
        plan.attempt_log[0].error.as_ref().unwrap().message,
        "overloaded"
    );
    let publish = &steps[1];
    assert_eq!(publish.status, StepStatus::Failed);
    let error = publish.error.as_ref().unwrap();
    assert_eq!(
        (error.kind, error.message.as_str(), error.attempts),
        (StepErrorKind::Terminal, "no permission", 1)
    );

    // And the run replays against today's code.
    assert_eq!(
        engine.replay::<Golden>("golden-1").await.unwrap(),
        "1 question(s); publish: true"
    );
}
