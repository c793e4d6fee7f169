use workflow_runtime::workflow;

async fn search(q: &str) -> anyhow::Result<String> {
    Ok(q.to_owned())
}

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    let background = tokio::spawn(async move {
        #[step]
        let answer = search(&goal).await?;
        Ok::<_, workflow_runtime::StepError>(answer)
    });
    Ok(background.await??)
}

fn main() {}
