use workflow_runtime::workflow;

#[workflow]
fn agent(goal: String) -> anyhow::Result<String> {
    Ok(goal)
}

fn main() {}
