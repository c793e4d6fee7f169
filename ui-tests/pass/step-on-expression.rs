//! `#[step]` on the awaited expression of a `let`, with and without `?`. (rustfmt would move
//! the expression to a line of its own after the attribute; this file keeps it readable.)

use workflow_runtime::workflow;

async fn search(q: &str) -> anyhow::Result<String> {
    Ok(format!("answer to {q}"))
}

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    let answer = #[step] search(&goal).await?;
    let again = #[step(retries = 1)] search(&answer).await;
    Ok(again?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let report = agent("rust".to_owned()).await.unwrap();
    assert_eq!(report, "answer to answer to rust");
}
