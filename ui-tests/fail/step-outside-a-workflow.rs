use workflow_runtime::step;

async fn search(q: &str) -> anyhow::Result<String> {
    Ok(q.to_owned())
}

async fn agent(goal: String) -> anyhow::Result<String> {
    #[step]
    let answer = search(&goal).await?;
    Ok(answer)
}

fn main() {
    let _ = agent(String::new());
}
