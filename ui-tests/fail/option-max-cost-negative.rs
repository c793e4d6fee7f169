use workflow_runtime::workflow;

#[workflow(max_cost_usd = -1.0)]
async fn agent(goal: String) -> anyhow::Result<String> {
    Ok(goal)
}

fn main() {}
