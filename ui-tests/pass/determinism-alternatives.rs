//! What the determinism checks accept: the runtime's durable clock, randomness, ids and timers,
//! races with `durable::race` and `durable::race_all` instead of `select!`, `BTreeMap`
//! iteration, a `HashMap` that is only looked up or whose keys are sorted first, anything inside
//! a `#[step]`, nested helper fns, the durable timer called by a bare name after a `use`, and
//! the escape hatch `#[allow_nondeterministic]`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use workflow_runtime::durable::{Either, sleep};
use workflow_runtime::{Engine, StepError, durable, workflow};

async fn ask(question: &str) -> Result<String, std::io::Error> {
    Ok(format!("{question}!"))
}

/// A step may read the clock, the environment or the network: it runs once and is journaled.
async fn stamp(at: SystemTime) -> Result<u64, std::io::Error> {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(since.as_secs() + std::env::var("NO_SUCH_VARIABLE").map_or(0, |v| v.len() as u64))
}

#[workflow]
async fn agent(goal: String) -> Result<String, StepError> {
    let started: SystemTime = durable::now().await;
    let seed: u64 = durable::random().await;
    let request_id: String = durable::uuid().await;
    durable::sleep(Duration::from_millis(1)).await;
    // A bare name, imported: judged by its type, which is not tokio's timer.
    sleep(Duration::from_millis(1)).await;

    // Races poll their futures in order, so a tie has the same winner on replay; the losers
    // are dropped.
    let soon = || durable::sleep(Duration::from_millis(1));
    let late = || durable::sleep(Duration::from_secs(5));
    let raced = match durable::race(late(), soon()).await {
        Either::First(()) => "late",
        Either::Second(()) => "soon",
    };
    let (fastest, ()) = durable::race_all([late(), late(), soon()]).await;

    // A `#[step]`'s arguments are evaluated by its attempts, and its outcome is journaled.
    #[step]
    let stamped = stamp(SystemTime::now()).await?;

    let mut questions = BTreeMap::new();
    questions.insert("why", format!("why {goal}"));
    questions.insert("how", format!("how {goal}"));
    let mut answers = Vec::new();
    for (_, question) in &questions {
        #[step]
        let answer = ask(question).await?;
        answers.push(answer);
    }

    // Looking a `HashMap` up is deterministic; iterating it is not, unless sorted first.
    let mut weights = HashMap::new();
    weights.insert("why", 2);
    weights.insert("how", 1);
    let why = weights["why"];
    let mut keys: Vec<_> = weights.keys().copied().collect();
    keys.sort();
    let total: i32 = weights.values().sum();

    // Not part of the body: a nested fn is checked by nobody (see misuse.md).
    fn elapsed_ms(since: Instant) -> u128 {
        since.elapsed().as_millis()
    }

    // Only logged, so a different value on replay is harmless.
    #[allow_nondeterministic]
    let local_start = Instant::now();
    let took = #[allow_nondeterministic]
    elapsed_ms(Instant::now());

    // Macro arguments are checked too, when they are expressions.
    #[allow_nondeterministic]
    assert!(started <= SystemTime::now() + Duration::from_secs(1));
    assert_eq!(request_id.len(), 36);
    let _ = (seed, stamped, local_start, took);
    Ok(format!(
        "{} {why} {total} {} {raced} {fastest}",
        answers.join(" "),
        keys.join(",")
    ))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let expected = "how rust! why rust! 2 3 how,why soon 2";
    assert_eq!(agent("rust".to_owned()).await.unwrap(), expected);
    let engine = Engine::in_memory();
    let run = engine
        .start::<agent>("run-1", ("rust".to_owned(),))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), expected);
}
