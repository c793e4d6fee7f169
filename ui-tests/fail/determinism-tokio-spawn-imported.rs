use tokio::spawn;
use workflow_runtime::workflow;

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    let length = spawn(async move { goal.len() }).await?;
    Ok(length.to_string())
}

fn main() {}
