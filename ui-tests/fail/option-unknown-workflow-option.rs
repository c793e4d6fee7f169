use workflow_runtime::workflow;

#[workflow(max_step = 10)]
async fn agent(goal: String) -> anyhow::Result<String> {
    Ok(goal)
}

fn main() {}
