use std::time::Duration;

use workflow_runtime::workflow;

async fn search(q: &str) -> anyhow::Result<String> {
    Ok(q.to_owned())
}

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    let answer = tokio::time::timeout(Duration::from_secs(60), search(&goal)).await??;
    Ok(answer)
}

fn main() {}
