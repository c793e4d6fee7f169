use workflow_runtime::workflow;

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(async move { goal.len() });
    let n = tasks.join_next().await.transpose()?.unwrap_or(0);
    Ok(n.to_string())
}

fn main() {}
