use workflow_runtime::workflow;

async fn consume(text: String) -> anyhow::Result<usize> {
    Ok(text.len())
}

#[workflow]
async fn agent(goal: String) -> anyhow::Result<usize> {
    #[step(retries = 3)]
    let n = consume(goal).await?;
    Ok(n)
}

fn main() {}
