use workflow_runtime::workflow;

async fn search(q: &str) -> anyhow::Result<String> {
    Ok(q.to_owned())
}

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    #[step]
    let answer = #[step] search(&goal).await?;
    Ok(answer)
}

fn main() {}
