use workflow_runtime::workflow;

async fn search(q: &str) -> anyhow::Result<String> {
    Ok(q.to_owned())
}

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    let task = tokio::spawn(async move { search(&goal).await });
    task.await?
}

fn main() {}
