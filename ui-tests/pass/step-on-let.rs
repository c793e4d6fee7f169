//! `#[step]` on a `let`, with and without `?`.

use workflow_runtime::{StepError, workflow};

async fn search(q: &str) -> anyhow::Result<String> {
    Ok(format!("answer to {q}"))
}

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    #[step]
    let answer = search(&goal).await?;
    #[step(retries = 2, timeout = "5s", name = "search-again")]
    let again: Result<String, StepError> = search(&answer).await;
    Ok(again?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let report = agent("rust".to_owned()).await.unwrap();
    assert_eq!(report, "answer to answer to rust");
}
