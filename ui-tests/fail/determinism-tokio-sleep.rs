use std::time::Duration;

use workflow_runtime::workflow;

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    tokio::time::sleep(Duration::from_secs(60)).await;
    Ok(goal)
}

fn main() {}
