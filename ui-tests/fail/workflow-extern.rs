use workflow_runtime::workflow;

#[workflow]
async extern "C" fn agent(goal: String) -> anyhow::Result<String> {
    Ok(goal)
}

fn main() {}
