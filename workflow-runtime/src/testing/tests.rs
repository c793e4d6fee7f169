//! The checker's own tests, where they need its insides: a broken store must be caught.

use super::{CrashCheck, Latencies, Variant};
use crate::error::WorkflowFailure;
use crate::step;
use crate::store::BoxFuture;
use crate::workflow::Workflow;

/// Three steps in a row.
struct Three;

impl Workflow for Three {
    type Input = ();
    type Output = u32;
    const NAME: &'static str = "three";

    fn run((): ()) -> BoxFuture<'static, Result<u32, WorkflowFailure>> {
        Box::pin(async move {
            let mut total = 0;
            for i in 0..3 {
                total += step(format!("step-{i}"))
                    .run(|| async move { Ok::<_, std::io::Error>(i + 1) })
                    .await
                    .map_err(|e| WorkflowFailure::new(e.to_string()))?;
            }
            Ok(total)
        })
    }
}

#[tokio::test]
async fn a_healthy_store_passes() {
    let report = CrashCheck::new::<Three>(())
        .with_step_latencies(Latencies::seeded(1))
        .run()
        .await;
    report.assert_ok();
    assert_eq!(report.crash_points(), 5);
}

/// The store says commit 2 (step #0's outcome) is durable, and loses it in a crash: a resumed
/// run executes the step again, which the checker must report.
#[tokio::test]
async fn a_store_that_loses_a_commit_is_caught() {
    let report = CrashCheck::new::<Three>(())
        .with_step_latencies(Latencies::seeded(1))
        .losing_commit(2)
        .run()
        .await;
    assert!(
        !report.is_ok(),
        "a store that loses a commit passed: {report}"
    );
    let after_step_1 = report
        .failures()
        .iter()
        .find(|f| {
            f.crash_point()
                .is_some_and(|p| p.commit() == 3 && p.variant() == Variant::AfterCommit)
        })
        .unwrap_or_else(|| panic!("the crash after commit 3 was not reported: {report}"));
    let problems = after_step_1.problems().join("\n");
    assert!(
        problems.contains("step #0 step-0 executed again after the resume"),
        "{problems}"
    );
    assert!(
        problems.contains(
            "step #0 step-0 was committed before the crash as = 1, and is gone at the end"
        ) || problems.contains("executed again"),
        "{problems}"
    );
}
