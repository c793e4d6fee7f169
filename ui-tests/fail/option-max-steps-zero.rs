use workflow_runtime::workflow;

#[workflow(max_steps = 0)]
async fn agent(goal: String) -> anyhow::Result<String> {
    Ok(goal)
}

fn main() {}
