use workflow_runtime::workflow;

async fn search(q: &str) -> anyhow::Result<String> {
    Ok(q.to_owned())
}

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    #[step]
    let answer = search(&#[step] search(&goal).await?).await?;
    Ok(answer)
}

fn main() {}
