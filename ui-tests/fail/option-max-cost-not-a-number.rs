use workflow_runtime::workflow;

#[workflow(max_cost_usd = two_dollars)]
async fn agent(goal: String) -> anyhow::Result<String> {
    Ok(goal)
}

fn main() {}
