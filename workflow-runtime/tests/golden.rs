//! Backward compatibility: a journal written by format version 1 is checked in, and this
//! build must open it and read every record the same way. A change to the records that an
//! older journal would not survive fails here; bump `FORMAT_VERSION` and keep a reader for the
//! old format instead of regenerating the file.
//!
//! Regenerate only for a new golden file of a new format: `UPDATE_GOLDEN=1 cargo test --test golden`.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::fail;
use workflow_runtime::{
    Backoff, BoxFuture, Engine, RunOptions, RunStatus, StepContext, StepErrorKind, StepFailure,
    StepStatus, Usage, Workflow, WorkflowFailure, step,
};

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/journal-v1.redb")
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

async fn write_golden() {
    let path = golden_path();
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
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        write_golden().await;
    }
    // Work on a copy: opening may upgrade nothing, but a test must never touch the golden file.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("journal.redb");
    std::fs::copy(golden_path(), &copy).expect("the golden journal is checked in");
    let engine = Engine::open(&copy)
        .await
        .expect("a version 1 journal opens");

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
