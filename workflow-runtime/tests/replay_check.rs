//! `testing::ReplayCheck`: today's code against a recorded journal of many runs, of mixed
//! versions and states; exactly the runs a change breaks are reported, where and how.

mod support;

use std::io;
use std::sync::Arc;

use support::fail;
use workflow_runtime::store::MemoryStore;
use workflow_runtime::testing::{Change, ReplayCheck, Verdict};
use workflow_runtime::{BoxFuture, Engine, Workflow, WorkflowFailure, durable, step};

async fn named(name: &'static str) -> Result<String, WorkflowFailure> {
    step(name)
        .run(move || async move { Ok::<_, io::Error>(name.to_owned()) })
        .await
        .map_err(fail)
}

/// Declares a workflow `order` of `version` whose body calls `steps` in order, waiting for
/// the event `go` before the last one when its input says so.
macro_rules! order {
    ($type:ident, $version:expr, [$($step:literal),*]) => {
        struct $type;
        impl Workflow for $type {
            type Input = (bool,);
            type Output = String;
            const NAME: &'static str = "order";
            const VERSION: u32 = $version;
            fn run((wait,): (bool,)) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
                Box::pin(async move {
                    let names: &[&'static str] = &[$($step),*];
                    let mut path = Vec::new();
                    for (i, name) in names.iter().enumerate() {
                        if wait && i == names.len() - 1 {
                            durable::wait_for_event::<bool>("go").await.map_err(fail)?;
                        }
                        path.push(named(name).await?);
                    }
                    Ok(path.join(" "))
                })
            }
        }
    };
}

order!(OrderV1, 1, ["reserve", "pay", "ship"]);
order!(OrderV2, 2, ["reserve", "pay_v2", "ship"]);
// Today's edits of version 1.
order!(OrderV1Inserted, 1, ["reserve", "fraud", "pay", "ship"]);
order!(OrderV1Removed, 1, ["reserve", "ship"]);
order!(OrderV1Reordered, 1, ["ship", "reserve", "pay"]);

/// 100 runs: 50 of version 1 completed, 30 of version 1 waiting before `ship`, 20 of version
/// 2 completed.
async fn recorded_journal() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    let v1 = Engine::builder()
        .park_after(std::time::Duration::ZERO)
        .store(Arc::clone(&store));
    for n in 0..80 {
        let wait = n >= 50;
        let run = v1
            .start::<OrderV1>(format!("v1-{n:02}"), (wait,))
            .await
            .unwrap();
        if !wait {
            run.result().await.unwrap();
        }
    }
    for n in 50..80 {
        let id = format!("v1-{n:02}");
        for _ in 0..1_000 {
            if v1.run(&id).await.unwrap().unwrap().waiting_for.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    v1.shutdown().await;
    let v2 = Engine::with_store(Arc::clone(&store));
    v2.register::<OrderV1>().await.unwrap();
    v2.register::<OrderV2>().await.unwrap();
    for n in 0..20 {
        let run = v2
            .start::<OrderV2>(format!("v2-{n:02}"), (false,))
            .await
            .unwrap();
        assert_eq!(run.result().await.unwrap(), "reserve pay_v2 ship");
    }
    v2.shutdown().await;
    store
}

#[tokio::test(start_paused = true)]
async fn a_replay_check_reports_exactly_the_runs_a_change_breaks() {
    let store = recorded_journal().await;

    let unchanged = ReplayCheck::new()
        .register::<OrderV1>()
        .register::<OrderV2>()
        .check_store(&*store)
        .await
        .unwrap();
    assert_eq!(unchanged.runs.len(), 100);
    assert!(unchanged.is_compatible(), "{unchanged}");

    // A step inserted into version 1: its 80 runs diverge at #1, version 2 is untouched.
    let inserted = ReplayCheck::new()
        .register::<OrderV1Inserted>()
        .register::<OrderV2>()
        .check_store(&*store)
        .await
        .unwrap();
    let broken: Vec<&str> = inserted.problems().map(|r| r.run_id.as_str()).collect();
    assert_eq!(broken.len(), 80, "{inserted}");
    assert!(broken.iter().all(|id| id.starts_with("v1-")));
    for run in inserted.problems() {
        assert_eq!(
            run.verdict,
            Verdict::Diverged {
                seq: 1,
                journaled: "pay".into(),
                current: Some("fraud".into()),
                change: Change::InsertionOrRename,
            },
            "{}",
            run.run_id
        );
    }

    // A step removed: the completed runs see it as a removal, as do the waiting ones.
    let removed = ReplayCheck::new()
        .register::<OrderV1Removed>()
        .register::<OrderV2>()
        .check_store(&*store)
        .await
        .unwrap();
    let completed = removed
        .problems()
        .find(|r| r.run_id == "v1-00")
        .expect("a completed v1 run is reported");
    assert_eq!(
        completed.verdict,
        Verdict::Diverged {
            seq: 1,
            journaled: "pay".into(),
            current: Some("ship".into()),
            change: Change::Removal,
        }
    );
    assert_eq!(removed.problems().count(), 80, "{removed}");

    // Reordered steps: the code calls first what the journal holds two places on.
    let reordered = ReplayCheck::new()
        .register::<OrderV1Reordered>()
        .register::<OrderV2>()
        .check_store(&*store)
        .await
        .unwrap();
    let run = reordered.problems().find(|r| r.run_id == "v1-00").unwrap();
    assert!(
        matches!(
            run.verdict,
            Verdict::Diverged {
                seq: 0,
                change: Change::Reordering,
                ..
            }
        ),
        "{reordered}"
    );

    // Version 2 is not in this binary: its runs are reported, not failed.
    let without_v2 = ReplayCheck::new()
        .register::<OrderV1>()
        .check_store(&*store)
        .await
        .unwrap();
    let missing: Vec<&Verdict> = without_v2.problems().map(|r| &r.verdict).collect();
    assert_eq!(missing.len(), 20);
    assert!(
        missing
            .iter()
            .all(|v| matches!(v, Verdict::NoVersion { version: 2, .. }))
    );
    assert!(
        without_v2
            .to_string()
            .contains("version 2 of `order` is not registered")
    );
}
