use workflow_runtime::workflow;

async fn lookup(goal: &str) -> anyhow::Result<&'static str> {
    Ok(if goal.is_empty() {
        "nothing"
    } else {
        "something"
    })
}

#[workflow]
async fn agent(goal: String) -> anyhow::Result<String> {
    #[step]
    let found = lookup(&goal).await?;
    Ok(found.to_owned())
}

fn main() {}
