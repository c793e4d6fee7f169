use workflow_runtime::workflow;

#[workflow]
async fn agent(goal: String) -> anyhow::Result<&'static str> {
    Ok(goal.leak())
}

fn main() {}
