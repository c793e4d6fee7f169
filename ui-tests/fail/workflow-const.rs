use workflow_runtime::workflow;

#[workflow]
const async fn agent(goal: String) -> anyhow::Result<String> {
    Ok(goal)
}

fn main() {}
