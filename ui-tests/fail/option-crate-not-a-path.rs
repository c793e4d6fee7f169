use workflow_runtime::workflow;

#[workflow(crate = "not a path")]
async fn agent(goal: String) -> anyhow::Result<String> {
    Ok(goal)
}

fn main() {}
