//! Every `#[step]` option, at a call site and on an `async fn`: `name`, `retries`, `timeout`,
//! `backoff(...)` (all fields, or some: the others keep `Backoff::DEFAULT`'s), `circuit`,
//! `rate`, and the switches `at_most_once` and `non_retryable`.

use std::sync::atomic::{AtomicU32, Ordering};

use workflow_runtime::{Engine, RateLimit, StepError, step, workflow};

static ATTEMPTS: AtomicU32 = AtomicU32::new(0);

/// Fails twice, then succeeds: the retries wait by the backoff below, a millisecond or two.
async fn flaky(q: &str) -> Result<String, std::io::Error> {
    if ATTEMPTS.fetch_add(1, Ordering::SeqCst) < 2 {
        return Err(std::io::Error::other("transient"));
    }
    Ok(q.to_uppercase())
}

async fn ask(q: &str) -> Result<String, std::io::Error> {
    Ok(format!("{q}?"))
}

#[step(
    name = "summarize",
    retries = 1,
    timeout = "10s",
    backoff(initial = "1ms", max = "2ms"),
    circuit = "llm",
    rate = "llm",
    non_retryable = false
)]
async fn summarize(text: String) -> Result<String, std::io::Error> {
    Ok(format!("<{text}>"))
}

#[workflow]
async fn agent(goal: String) -> Result<String, StepError> {
    #[step(
        name = "flaky",
        retries = 3,
        timeout = "5s",
        backoff(initial = "1ms", factor = 2.0, max = "4ms", jitter = 0.0),
        circuit = "search",
        rate = "llm"
    )]
    let answer = flaky(&goal).await?;
    #[step(backoff(jitter = 0.5), at_most_once, non_retryable)]
    let question = ask(&answer).await?;
    summarize(question).await
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Called directly: the steps run with their options, unjournaled.
    assert_eq!(agent("why".to_owned()).await.unwrap(), "<WHY?>");
    assert_eq!(ATTEMPTS.load(Ordering::SeqCst), 3);

    // In an engine, `rate = "llm"` draws from the engine's bucket of that name.
    ATTEMPTS.store(0, Ordering::SeqCst);
    let engine = Engine::builder()
        .rate_limit("llm", RateLimit::requests_per_minute(600))
        .in_memory();
    let run = engine
        .start::<agent>("run-1", ("how".to_owned(),))
        .await
        .unwrap();
    assert_eq!(run.result().await.unwrap(), "<HOW?>");
}
