use workflow_runtime::workflow;

#[workflow(max_steps: 10)]
async fn agent(goal: String) -> anyhow::Result<String> {
    Ok(goal)
}

fn main() {}
