use workflow_runtime::workflow;

async fn lookup(key: &str) -> Result<String, ()> {
    Ok(key.to_owned())
}

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    #[step]
    let value = lookup(&goal).await?;
    Ok(value)
}

fn main() {}
