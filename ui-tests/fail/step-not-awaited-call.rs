use workflow_runtime::workflow;

async fn search(q: &str) -> anyhow::Result<String> {
    Ok(q.to_owned())
}

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    let pending = search(&goal);
    #[step]
    let answer = pending.await?;
    Ok(answer)
}

fn main() {}
