//! Versions of a workflow side by side: a run is pinned to the version it started on, new runs
//! start on the latest, and a run whose version a binary lacks waits, visibly.

mod support;

use std::io;
use std::sync::Arc;

use support::fail;
use workflow_runtime::store::MemoryStore;
use workflow_runtime::{
    BoxFuture, Engine, Error, StepStatus, Workflow, WorkflowFailure, durable, step,
};

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

// --- Patches: a change inside one version ------------------------------------------------

async fn named_step(name: &'static str) -> Result<String, WorkflowFailure> {
    step(name)
        .run(move || async move { Ok::<_, io::Error>(name.to_owned()) })
        .await
        .map_err(fail)
}

/// Before the patch: reserve, log, wait for approval, ship.
struct ShopBefore;

impl Workflow for ShopBefore {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "shop";

    fn run(_: ()) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let mut path = vec![named_step("reserve").await?];
            path.push(named_step("log").await?);
            approved().await?;
            path.push(named_step("ship").await?);
            Ok(path.join(" "))
        })
    }
}

/// The patch: a receipt before the log.
struct ShopPatched;

impl Workflow for ShopPatched {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "shop";

    fn run(_: ()) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let mut path = vec![named_step("reserve").await?];
            if durable::patched("receipt") {
                path.push(named_step("receipt").await?);
            }
            path.push(named_step("log").await?);
            approved().await?;
            path.push(named_step("ship").await?);
            Ok(path.join(" "))
        })
    }
}

/// Later: the old path is gone.
struct ShopDeprecated;

impl Workflow for ShopDeprecated {
    type Input = ();
    type Output = String;
    const NAME: &'static str = "shop";

    fn run(_: ()) -> BoxFuture<'static, Result<String, WorkflowFailure>> {
        Box::pin(async move {
            let mut path = vec![named_step("reserve").await?];
            durable::deprecated_patch("receipt");
            path.push(named_step("receipt").await?);
            path.push(named_step("log").await?);
            approved().await?;
            path.push(named_step("ship").await?);
            Ok(path.join(" "))
        })
    }
}

async fn until_waiting(engine: &Engine, run_id: &str) {
    for _ in 0..1_000 {
        let run = engine.run(run_id).await.unwrap().unwrap();
        if run.waiting_for.is_some() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    panic!("run {run_id} never waited");
}

#[tokio::test(start_paused = true)]
async fn a_patch_keeps_runs_from_before_it_on_the_old_path_and_new_runs_on_the_new() {
    let store = Arc::new(MemoryStore::new());
    // Waiting runs leave memory at once (an event wait at a threshold of zero used to spin
    // without end under paused time, and this test hung).
    let at_once = || {
        Engine::builder()
            .park_after(std::time::Duration::ZERO)
            .store(Arc::clone(&store))
    };
    let before = at_once();
    before.start::<ShopBefore>("old", ()).await.unwrap();
    until_waiting(&before, "old").await;
    before.shutdown().await;

    // The patch is deployed: the old run passed the patch point (its journal goes on with
    // `log` there), a new run takes the new path.
    let patched = at_once();
    patched.register::<ShopPatched>().await.unwrap();
    patched.start::<ShopPatched>("new", ()).await.unwrap();
    until_waiting(&patched, "new").await;
    patched.send_event("old", "approve", true).await.unwrap();
    assert_eq!(
        patched.handle::<ShopPatched>("old").result().await.unwrap(),
        "reserve log ship"
    );
    let journal = patched.journal("new").await.unwrap();
    let marker = journal.iter().find(|s| s.name == "patch:receipt");
    assert!(
        marker.is_some_and(|m| m.status == StepStatus::Marker && !m.is_step()),
        "the patch is journaled as a marker, not a step: {journal:?}"
    );
    patched.shutdown().await;

    // The new run resumes on code where the patch is deprecated: its marker is consumed and
    // its path replays; so does it on the patched code (checked by Engine::replay below).
    let deprecated = Engine::with_store(Arc::clone(&store));
    deprecated.register::<ShopDeprecated>().await.unwrap();
    deprecated.send_event("new", "approve", true).await.unwrap();
    assert_eq!(
        deprecated
            .handle::<ShopDeprecated>("new")
            .result()
            .await
            .unwrap(),
        "reserve receipt log ship"
    );
    assert_eq!(
        deprecated.replay::<ShopPatched>("new").await.unwrap(),
        "reserve receipt log ship"
    );
    assert_eq!(
        deprecated.replay::<ShopPatched>("old").await.unwrap(),
        "reserve log ship"
    );
    // A fresh run on the deprecated code has no marker and needs none.
    let fresh = deprecated
        .start::<ShopDeprecated>("fresh", ())
        .await
        .unwrap();
    deprecated
        .send_event("fresh", "approve", true)
        .await
        .unwrap();
    assert_eq!(fresh.result().await.unwrap(), "reserve receipt log ship");
}

// --- More budget for a run its budget stopped ---------------------------------------------

static PAID_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Eight paid calls of 0.011 USD each, under a 0.05 USD budget.
struct EightCalls;

impl Workflow for EightCalls {
    type Input = ();
    type Output = u32;
    const NAME: &'static str = "eight_calls";

    fn budget() -> workflow_runtime::Budget {
        workflow_runtime::Budget::UNLIMITED.with_max_cost_usd(0.05)
    }

    fn run(_: ()) -> BoxFuture<'static, Result<u32, WorkflowFailure>> {
        Box::pin(async move {
            for _ in 0..8 {
                step("call")
                    .run(|| async {
                        PAID_CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let ctx = workflow_runtime::StepContext::current().expect("in a step");
                        ctx.report_usage(workflow_runtime::Usage::default().with_cost_usd(0.011));
                        Ok::<_, io::Error>(())
                    })
                    .await
                    .map_err(fail)?;
            }
            Ok(8)
        })
    }
}

/// A plain retry of a run its budget stopped stops it again at once; `retry_with` gives it
/// more, and it continues where it stopped, no paid call made twice.
#[tokio::test]
async fn retry_with_a_larger_budget_continues_a_run_its_budget_stopped() {
    let engine = Engine::in_memory();
    let run = engine.start::<EightCalls>("paid", ()).await.unwrap();
    assert!(matches!(
        run.result().await,
        Err(Error::BudgetExceeded { .. })
    ));
    assert_eq!(PAID_CALLS.load(std::sync::atomic::Ordering::SeqCst), 5);

    assert!(engine.retry("paid").await.unwrap());
    assert!(matches!(
        run.result().await,
        Err(Error::BudgetExceeded { .. })
    ));
    assert_eq!(PAID_CALLS.load(std::sync::atomic::Ordering::SeqCst), 5);

    let more = workflow_runtime::Budget::UNLIMITED.with_max_cost_usd(0.20);
    assert!(engine.retry_with("paid", more).await.unwrap());
    assert_eq!(run.result().await.unwrap(), 8);
    assert_eq!(PAID_CALLS.load(std::sync::atomic::Ordering::SeqCst), 8);
    let record = engine.run("paid").await.unwrap().unwrap();
    assert_eq!(record.budget.max_cost_usd, Some(0.20));
}

// --- Migrate: a waiting run onto another version ------------------------------------------

/// A run of version 1 waiting for its approval moves onto version 2, whose journal prefix it
/// shares (reserve), and finishes on version 2's path. A run of version 2 that passed its
/// fraud check cannot move back to version 1, which has no such step: refused, left as it was.
#[tokio::test(start_paused = true)]
async fn migrate_moves_a_waiting_run_only_when_its_journal_replays_on_the_target() {
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::with_store(Arc::clone(&store));
    engine.register::<PurchaseV1>().await.unwrap();
    engine.start::<PurchaseV1>("v1-run", (10,)).await.unwrap();
    until_waiting(&engine, "v1-run").await;
    engine.register::<PurchaseV2>().await.unwrap();
    engine.start::<PurchaseV2>("v2-run", (20,)).await.unwrap();
    until_waiting(&engine, "v2-run").await;
    assert_eq!(engine.run("v2-run").await.unwrap().unwrap().version, 2);

    let refused = engine.migrate("v2-run", 1).await.unwrap_err();
    assert!(
        matches!(&refused, Error::MigrationRefused { version: 1, .. })
            && refused.to_string().contains("fraud_check"),
        "{refused}"
    );
    assert_eq!(engine.run("v2-run").await.unwrap().unwrap().version, 2);

    engine.migrate("v1-run", 2).await.unwrap();
    assert_eq!(engine.run("v1-run").await.unwrap().unwrap().version, 2);
    engine.send_event("v1-run", "approve", true).await.unwrap();
    assert_eq!(
        engine
            .handle::<PurchaseV2>("v1-run")
            .result()
            .await
            .unwrap(),
        "v2: charged 10 (risk low, approved true)"
    );
    engine.send_event("v2-run", "approve", true).await.unwrap();
    assert_eq!(
        engine
            .handle::<PurchaseV2>("v2-run")
            .result()
            .await
            .unwrap(),
        "v2: charged 20 (risk low, approved true)"
    );
}

// --- Fork: a run again from a step, on other code ------------------------------------------

/// A fork keeps the journaled steps before `from_step` (never re-run: the original's reserve
/// is handed back), runs the rest on the target version, and leaves the original as it was.
/// A prefix that does not replay on the target is refused and nothing is written.
#[tokio::test(start_paused = true)]
async fn fork_keeps_a_prefix_that_replays_and_runs_the_rest_on_the_target() {
    let engine = Engine::in_memory();
    // A run of version 1, waiting for its approval after `reserve`.
    engine.register::<PurchaseV1>().await.unwrap();
    engine.start::<PurchaseV1>("orig", (7,)).await.unwrap();
    until_waiting(&engine, "orig").await;
    engine.register::<PurchaseV2>().await.unwrap();

    engine.fork("orig", 1, 2, "forked").await.unwrap();
    engine.send_event("forked", "approve", true).await.unwrap();
    assert_eq!(
        engine
            .handle::<PurchaseV2>("forked")
            .result()
            .await
            .unwrap(),
        "v2: charged 7 (risk low, approved true)"
    );
    let names: Vec<String> = engine
        .journal("forked")
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.is_step())
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["reserve", "fraud_check", "charge"]);
    let original = engine.run("orig").await.unwrap().unwrap();
    assert_eq!(
        (original.version, original.status.is_terminal()),
        (1, false)
    );

    // The fork's prefix (reserve, fraud_check) does not replay on version 1.
    let refused = engine.fork("forked", 2, 1, "backwards").await.unwrap_err();
    assert!(refused.to_string().contains("fraud_check"), "{refused}");
    assert!(engine.run("backwards").await.unwrap().is_none());
}
