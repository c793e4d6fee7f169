use workflow_runtime::workflow;

async fn search(q: &str) -> anyhow::Result<String> {
    Ok(q.to_owned())
}

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    #[step(timeout = 60)]
    let answer = search(&goal).await?;
    #[step(timeout = "60 seconds maybe")]
    let again = search(&answer).await?;
    Ok(again)
}

fn main() {}
