use workflow_runtime::workflow;

async fn search(q: &str) -> anyhow::Result<String> {
    Ok(q.to_owned())
}

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    async fn helper(goal: &str) -> anyhow::Result<String> {
        #[step]
        let answer = search(goal).await?;
        Ok(answer)
    }
    helper(&goal).await
}

fn main() {}
