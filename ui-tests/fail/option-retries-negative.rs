use workflow_runtime::workflow;

async fn search(q: &str) -> anyhow::Result<String> {
    Ok(q.to_owned())
}

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    #[step(retries = -1)]
    let answer = search(&goal).await?;
    Ok(answer)
}

fn main() {}
