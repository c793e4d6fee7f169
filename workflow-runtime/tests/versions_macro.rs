//! Versions side by side written with `#[workflow(name = "...", version = N)]`, and a patch in
//! a macro-written body: what `versions.rs` checks on hand-written `Workflow` impls, through
//! the macro's expansion (`const VERSION`, the patch checks letting a valid patch through).

use std::sync::Arc;
use std::time::Duration;

use workflow_runtime::{Engine, MemoryStore, StepError, Workflow, durable, workflow};

async fn reserve(amount: u32) -> Result<u32, std::io::Error> {
    Ok(amount)
}

async fn fraud_check(amount: u32) -> Result<String, std::io::Error> {
    Ok(if amount > 100 { "high" } else { "low" }.to_owned())
}

async fn charge(amount: u32) -> Result<u32, std::io::Error> {
    Ok(amount)
}

/// Version 1: reserve, wait for approval, charge. No `version`: it is version 1.
#[workflow(name = "purchase")]
async fn purchase_v1(amount: u32) -> Result<String, StepError> {
    #[step]
    reserve(amount).await?;
    let approved: bool = durable::wait_for_event("approve").await?;
    #[step]
    let charged = charge(amount).await?;
    Ok(format!("v1: charged {charged} (approved {approved})"))
}

/// Version 2 adds a fraud check before the approval, which would park a run of version 1
/// resumed on this code; the two versions' runs each stay on their own.
#[workflow(name = "purchase", version = 2)]
async fn purchase_v2(amount: u32) -> Result<String, StepError> {
    #[step]
    reserve(amount).await?;
    #[step]
    let risk = fraud_check(amount).await?;
    let approved: bool = durable::wait_for_event("approve").await?;
    #[step]
    let charged = charge(amount).await?;
    Ok(format!(
        "v2: charged {charged} (risk {risk}, approved {approved})"
    ))
}

async fn until_waiting(engine: &Engine, run_id: &str) {
    for _ in 0..1_000 {
        let run = engine.run(run_id).await.unwrap().unwrap();
        if run.waiting_for.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("run {run_id} never waited");
}

/// The step names of a run's journal, without its event records.
async fn steps(engine: &Engine, run_id: &str) -> Vec<String> {
    engine
        .journal(run_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.is_step())
        .map(|s| s.name)
        .collect()
}

#[test]
fn the_macro_sets_name_and_version() {
    assert_eq!((purchase_v1::NAME, purchase_v1::VERSION), ("purchase", 1));
    assert_eq!((purchase_v2::NAME, purchase_v2::VERSION), ("purchase", 2));
}

#[tokio::test(start_paused = true)]
async fn an_in_flight_run_of_version_1_finishes_on_it_while_a_new_run_starts_on_version_2() {
    let store = Arc::new(MemoryStore::new());
    // Yesterday's binary had version 1 only; a purchase waits for its approval.
    let old = Engine::with_store(Arc::clone(&store));
    old.register::<purchase_v1>().await.unwrap();
    old.start::<purchase_v1>("in-flight", (30,)).await.unwrap();
    until_waiting(&old, "in-flight").await;
    old.shutdown().await;

    // Today's binary has both, registered on one engine.
    let new = Engine::with_store(Arc::clone(&store));
    new.register::<purchase_v1>().await.unwrap();
    new.register::<purchase_v2>().await.unwrap();
    // Started through either type, a new run starts on the latest version.
    let fresh = new.start::<purchase_v1>("fresh", (50,)).await.unwrap();
    let also_fresh = new.start::<purchase_v2>("also-fresh", (70,)).await.unwrap();
    assert_eq!(new.run("fresh").await.unwrap().unwrap().version, 2);
    assert_eq!(new.run("also-fresh").await.unwrap().unwrap().version, 2);
    assert_eq!(new.run("in-flight").await.unwrap().unwrap().version, 1);

    for run_id in ["in-flight", "fresh", "also-fresh"] {
        new.send_event(run_id, "approve", true).await.unwrap();
    }
    assert_eq!(
        new.handle::<purchase_v1>("in-flight")
            .result()
            .await
            .unwrap(),
        "v1: charged 30 (approved true)"
    );
    assert_eq!(
        fresh.result().await.unwrap(),
        "v2: charged 50 (risk low, approved true)"
    );
    assert_eq!(
        also_fresh.result().await.unwrap(),
        "v2: charged 70 (risk low, approved true)"
    );
    assert_eq!(steps(&new, "in-flight").await, ["reserve", "charge"]);
    assert_eq!(
        steps(&new, "fresh").await,
        ["reserve", "fraud_check", "charge"]
    );
}

/// A receipt added inside one version by a patch, in a macro-written body.
#[workflow(name = "shop")]
async fn shop(amount: u32) -> Result<String, StepError> {
    #[step]
    let reserved = reserve(amount).await?;
    let receipt = if durable::patched("receipt") {
        #[step]
        let risk = fraud_check(reserved).await?;
        format!(", receipt ({risk})")
    } else {
        String::new()
    };
    Ok(format!("reserved {reserved}{receipt}"))
}

#[tokio::test]
async fn a_patch_in_a_macro_written_body_is_taken_by_a_new_run_and_journaled() {
    let engine = Engine::in_memory();
    let run = engine.start::<shop>("new", (20,)).await.unwrap();
    assert_eq!(run.result().await.unwrap(), "reserved 20, receipt (low)");
    let journal = engine.journal("new").await.unwrap();
    let names: Vec<&str> = journal.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["reserve", "patch:receipt", "fraud_check"]);
    // Called directly, outside an engine, the fn takes the new path too.
    assert_eq!(shop(5).await.unwrap(), "reserved 5, receipt (low)");
}
