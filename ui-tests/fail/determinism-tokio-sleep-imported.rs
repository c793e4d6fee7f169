use std::time::Duration;

use tokio::time::sleep;
use workflow_runtime::workflow;

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    sleep(Duration::from_secs(60)).await;
    Ok(goal)
}

fn main() {}
