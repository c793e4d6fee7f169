use workflow_runtime::workflow;

#[workflow(max_duration = 600)]
async fn agent(goal: String) -> anyhow::Result<String> {
    Ok(goal)
}

fn main() {}
