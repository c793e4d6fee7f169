//! Versions of a workflow side by side: a run is pinned to the version it started on, new runs
//! start on the latest, and a run whose version a binary lacks waits, visibly.

mod support;

use std::io;
use std::sync::Arc;

use support::fail;
use workflow_runtime::store::MemoryStore;
use workflow_runtime::{BoxFuture, Engine, Error, Workflow, WorkflowFailure, durable, step};

async fn approved() -> Result<bool, WorkflowFailure> {
    durable::wait_for_event::<bool>("approve")
        .await
        .map_err(fail)
}

/// Version 1: reserve, wait for approval, charge.
struct PurchaseV1;

impl Workflow for PurchaseV1 {
    type Input = (u32,);
    type Output = String;
    const NAME: &'static str = "purchase";

    fn run((amount,): (u32,)) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            step("reserve")
                .run(|| async { Ok::<_, io::Error>(()) })
                .await
                .map_err(fail)?;
            let ok = approved().await?;
            let charged = step("charge")
                .run(move || async move { Ok::<_, io::Error>(amount) })
                .await
                .map_err(fail)?;
            Ok(format!("v1: charged {charged} (approved {ok})"))
        })
    }
}

/// Version 2 adds a fraud check before the approval: a change that would park a run of
/// version 1 if it were resumed on this code.
struct PurchaseV2;

impl Workflow for PurchaseV2 {
    type Input = (u32,);
    type Output = String;
    const NAME: &'static str = "purchase";
    const VERSION: u32 = 2;

    fn run((amount,): (u32,)) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            step("reserve")
                .run(|| async { Ok::<_, io::Error>(()) })
                .await
                .map_err(fail)?;
            let risk = step("fraud_check")
                .run(|| async { Ok::<_, io::Error>("low".to_owned()) })
                .await
                .map_err(fail)?;
            let ok = approved().await?;
            let charged = step("charge")
                .run(move || async move { Ok::<_, io::Error>(amount) })
                .await
                .map_err(fail)?;
            Ok(format!(
                "v2: charged {charged} (risk {risk}, approved {ok})"
            ))
        })
    }
}

/// A third version that returns another type: not allowed beside the others.
struct PurchaseV3Retyped;

impl Workflow for PurchaseV3Retyped {
    type Input = (u32,);
    type Output = u32;
    const NAME: &'static str = "purchase";
    const VERSION: u32 = 3;

    fn run((amount,): (u32,)) -> BoxFuture<'static, Result<u32, WorkflowFailure>> {
        Box::pin(async move { Ok(amount) })
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_continues_on_its_version_while_new_runs_start_on_the_latest() {
    let store = Arc::new(MemoryStore::new());
    // Yesterday's binary: version 1 only. A purchase waits for its approval.
    let old = Engine::with_store(Arc::clone(&store));
    old.register::<PurchaseV1>().await.unwrap();
    old.start::<PurchaseV1>("in-flight", (30,)).await.unwrap();
    while old
        .run("in-flight")
        .await
        .unwrap()
        .unwrap()
        .waiting_for
        .is_none()
    {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    old.shutdown().await;

    // Today's binary has both versions.
    let new = Engine::with_store(Arc::clone(&store));
    new.register::<PurchaseV1>().await.unwrap();
    new.register::<PurchaseV2>().await.unwrap();
    let fresh = new.start::<PurchaseV1>("fresh", (50,)).await.unwrap();
    assert_eq!(new.run("fresh").await.unwrap().unwrap().version, 2);
    assert_eq!(new.run("in-flight").await.unwrap().unwrap().version, 1);
    new.send_event("in-flight", "approve", true).await.unwrap();
    new.send_event("fresh", "approve", true).await.unwrap();
    let in_flight = new.handle::<PurchaseV1>("in-flight");
    assert_eq!(
        in_flight.result().await.unwrap(),
        "v1: charged 30 (approved true)"
    );
    assert_eq!(
        fresh.result().await.unwrap(),
        "v2: charged 50 (risk low, approved true)"
    );
    let names: Vec<String> = new
        .journal("fresh")
        .await
        .unwrap()
        .into_iter()
        .filter(|s| !s.name.starts_with("event:"))
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["reserve", "fraud_check", "charge"]);
}

#[tokio::test(start_paused = true)]
async fn a_run_whose_version_is_gone_waits_and_says_for_what() {
    let store = Arc::new(MemoryStore::new());
    let old = Engine::with_store(Arc::clone(&store));
    old.start::<PurchaseV1>("old", (30,)).await.unwrap();
    while old.run("old").await.unwrap().unwrap().waiting_for.is_none() {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    old.shutdown().await;

    let new = Engine::with_store(Arc::clone(&store));
    new.register::<PurchaseV2>().await.unwrap();
    new.send_event("old", "approve", true).await.unwrap();
    let error = new
        .handle::<PurchaseV2>("old")
        .result()
        .await
        .expect_err("version 1 is not here");
    let message = error.to_string();
    assert!(
        message.contains("waits for version 1 of workflow `purchase`")
            && message.contains("it has version 2"),
        "{message}"
    );
    // Nothing was executed on the wrong version, and the run is still unfinished.
    let run = new.run("old").await.unwrap().unwrap();
    assert!(!run.status.is_terminal(), "{:?}", run.status);
    let names: Vec<String> = new
        .journal("old")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["reserve"]);

    // A binary that has version 1 again finishes it.
    new.shutdown().await;
    let restored = Engine::with_store(Arc::clone(&store));
    restored.register::<PurchaseV1>().await.unwrap();
    assert_eq!(
        restored.handle::<PurchaseV1>("old").result().await.unwrap(),
        "v1: charged 30 (approved true)"
    );
}

#[tokio::test]
async fn versions_of_a_name_must_share_their_types() {
    let engine = Engine::in_memory();
    engine.register::<PurchaseV1>().await.unwrap();
    let error = engine.register::<PurchaseV3Retyped>().await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::VersionTypesDiffer {
                version: 3,
                other: 1,
                ..
            }
        ),
        "{error:?}"
    );
}
