use workflow_runtime::workflow;

#[workflow]
async fn agent(goal: &str) -> anyhow::Result<String> {
    Ok(goal.to_owned())
}

fn main() {}
